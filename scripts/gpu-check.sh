#!/usr/bin/env bash
# The one prepared GPU check: parity of the CUDA build with diffusers, then SD 1.5 512² and
# SDXL 1024² timings against diffusers fp16 on the same GPU. Runs on the GPU machine, which
# has nvcc, PyTorch (with NVIDIA's CUDA 13 wheels) and a GPU, but no Rust and no network.
#
# Prepare here (a machine with Rust, no GPU needed):
#   scripts/build-cuda.sh --carry --features cudnn   # + gpu-carry/{latent-studio.xz,wheels/}
#
# Then call the device tool, from the repository root:
#   run(command="bash scripts/gpu-check.sh", carry=["gpu-carry"], timeout_s=480)
# Caveat: the tool sends every tracked file too, and it refuses trees over 64 MiB; the tracked
# tree is ~105 MiB today (tests/fixtures), so call it from a throw-away branch without the
# fixtures the check doesn't read (it reads scripts/, bench/, assets/, tests/fixtures/cases*,
# tests/fixtures/init_64.png and tests/fixtures/models/{sd1,sdxl}):
#   git switch -c gpu-tree && git rm -rq --cached tests/fixtures/formats \
#       tests/fixtures/models/{sd2v,sd_turbo,sdxl_turbo} \
#       tests/fixtures/{schedulers,noise,vae_tiling}.safetensors && git commit -qm "GPU tree" &&
#   printf '%s\n' /tests/fixtures/formats/ /tests/fixtures/models/sd2v/ \
#       /tests/fixtures/models/sd_turbo/ /tests/fixtures/models/sdxl_turbo/ \
#       /tests/fixtures/{schedulers,noise,vae_tiling}.safetensors >>.git/info/exclude
# and afterwards `git switch main && git branch -D gpu-tree` (git overwrites the ignored fixtures it
# restores; drop those exclude lines).
# It took 140–180 s on an H100/H200 (runs 3–7 of 2026-11-26), plus ~35 s to start the machine; each
# stage below has its own timeout (about 10 minutes in all, if every one ran out). Everything
# goes to stdout; $OUT/gpu-check.log (when $OUT is set) and the bench logs come back.
#
# gpu-carry/ (git-ignored) holds:
#   latent-studio.xz  the stripped `--features cudnn` release binary (CUDA 13.0, sm_90)
#   latent-studio-tests.xz  the library's unit tests from the same build (the GPU kernels' own)
#   wheels/*.whl      diffusers 0.42.1 and the pure-Python packages it needs beyond the image's
#
# Stages: (a) nvidia-smi, then the unit tests whose names start with gpu_ (our kernels against
# candle's f32 arithmetic; if flash attention fails there, the rest runs without it); (b) parity on six fixture cases (scripts/gpu_parity.py) in f32 (each
# within 2/255 of the stored diffusers image, as on the CPU) and two in f16 (reported);
# (c) `latent-studio bench` and bench/diffusers_bench.py for SD 1.5 512² and SDXL 1024² (20
# steps; ours also with the one-value-at-a-time GroupNorm kernels, both with a profile by
# layer), random weights, fp16, then a table.
set -uo pipefail
cd "$(dirname "$0")/.."
CARRY=${GPU_CARRY:-gpu-carry}
OUT=${OUT:-$(mktemp -d)}
WORK=$(mktemp -d)
BIN=$WORK/latent-studio
PY=${PYTHON:-python3}
exec > >(tee "$OUT/gpu-check.log") 2>&1
status=0
fail() {
    echo "FAIL: $*"
    status=1
}
section() { printf '\n=== %s (%ss)\n' "$*" "$SECONDS"; }

section "(a) GPU"
nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv,noheader || fail "nvidia-smi"
if [[ -f $CARRY/latent-studio.xz ]]; then
    $PY -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
        "$CARRY/latent-studio.xz" "$BIN"
elif [[ -f $CARRY/latent-studio ]]; then
    cp "$CARRY/latent-studio" "$BIN"
fi
chmod +x "$BIN" 2>/dev/null
[[ -x $BIN ]] || { echo "FAIL: no $CARRY/latent-studio(.xz) (run scripts/build-cuda.sh --carry first)"; exit 1; }

# Python: diffusers from the carried wheels, over the image's torch/transformers.
if [[ -d $CARRY/wheels ]]; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$WORK/site" "$CARRY"/wheels/*.whl || fail "pip install of carried wheels"
    export PYTHONPATH=$WORK/site${PYTHONPATH:+:$PYTHONPATH}
fi
$PY -c 'import torch, diffusers, transformers; print("torch", torch.__version__, "cuda", torch.version.cuda, "| diffusers", diffusers.__version__, "| transformers", transformers.__version__)' ||
    fail "python imports"

# The binary links libcudart/libcublas/libcublasLt/libcurand/libnvrtc (CUDA 13) and the
# driver's libcuda.so.1: take the first from PyTorch's NVIDIA wheels, the last from the driver.
NVLIBS=$($PY - <<'EOF'
import glob, os
dirs = []
try:
    import nvidia
    for root in nvidia.__path__:
        dirs += glob.glob(os.path.join(root, "cu13", "lib")) + glob.glob(os.path.join(root, "*", "lib"))
except ImportError:
    pass
import torch
dirs.append(os.path.join(os.path.dirname(torch.__file__), "lib"))
print(":".join(d for d in dirs if os.path.isdir(d)))
EOF
)
export LD_LIBRARY_PATH=$NVLIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/lib/x86_64-linux-gnu; do
    [[ -e $d/libcuda.so.1 ]] && LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$d
done
if ldd "$BIN" | grep 'not found'; then
    fail "shared libraries missing for $BIN (LD_LIBRARY_PATH=$LD_LIBRARY_PATH)"
    exit 1
fi
ldd "$BIN" | grep -E 'libcu|libnvrtc' | sed 's/^\s*/  /'

if [[ -f $CARRY/latent-studio-tests.xz ]]; then
    $PY -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
        "$CARRY/latent-studio-tests.xz" "$WORK/latent-studio-tests" && chmod +x "$WORK/latent-studio-tests"
    echo "--- GPU kernel unit tests"
    timeout 120 "$WORK/latent-studio-tests" --test-threads 1 --nocapture gpu_ 2>&1 | tail -25
    if ! timeout 60 "$WORK/latent-studio-tests" --test-threads 1 -q gpu_flash_attention >/dev/null 2>&1; then
        fail "flash attention kernel test: the rest runs with LATENT_STUDIO_UNFUSED_ATTENTION=1"
        export LATENT_STUDIO_UNFUSED_ATTENTION=1
    fi
    if ! timeout 60 "$WORK/latent-studio-tests" --test-threads 1 -q gpu_cublaslt_linear >/dev/null 2>&1; then
        fail "cuBLASLt linear test: the rest runs with LATENT_STUDIO_CANDLE_LINEAR=1"
        export LATENT_STUDIO_CANDLE_LINEAR=1
    fi
    if ! timeout 60 "$WORK/latent-studio-tests" --test-threads 1 -q gpu_group_norm >/dev/null 2>&1; then
        fail "group norm test: the rest runs with LATENT_STUDIO_SCALAR_GROUP_NORM=1"
        export LATENT_STUDIO_SCALAR_GROUP_NORM=1
    fi
fi

section "(b) parity with diffusers on the fixture cases (tests/fixtures/models/{sd1,sdxl})"
# f32 must stay within the CPU parity tests' 2/255 of diffusers' float32 image; f16 is reported.
timeout 100 $PY scripts/gpu_parity.py --bin "$BIN" --out "$WORK" --timeout 40 \
    --cases sd1_default,sd1_euler_a,sd1_dpmpp_2m_karras,sd1_img2img_ddim,sdxl_neg_text,sdxl_img2img \
    --dtype f32:2 || fail "parity (f32)"
timeout 45 $PY scripts/gpu_parity.py --bin "$BIN" --out "$WORK" --timeout 40 \
    --cases sd1_default,sdxl_neg_text --dtype f16 || fail "generate --dtype f16"
# Every convolution through cuDNN (the default races it against im2col per shape).
LATENT_STUDIO_CUDA_CONV=cudnn timeout 45 $PY scripts/gpu_parity.py --bin "$BIN" --out "$WORK" \
    --timeout 40 --cases sd1_euler_a,sdxl_img2img --dtype f32:2 || fail "parity (f32, cuDNN)"

section "(c) timings, random weights, fp16"
bench() { # name timeout command...
    local name=$1 limit=$2
    shift 2
    echo "--- $name"
    # Peak GPU memory while it runs, sampled every 100 ms (process-wide, CUDA context included).
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 >"$WORK/$name.mem" 2>/dev/null &
    local sampler=$!
    timeout "$limit" "$@" 2>&1 | tee "$WORK/$name.log" | grep -v '^\s*$'
    local rc=${PIPESTATUS[0]}
    kill $sampler 2>/dev/null
    wait $sampler 2>/dev/null
    echo "peak GPU memory used: $(sort -n "$WORK/$name.mem" | tail -1) MiB" | tee -a "$WORK/$name.log"
    ((rc == 0)) || fail "$name exited with $rc"
    cp "$WORK/$name.log" "$OUT/" 2>/dev/null
}
# A first, untimed run: the first process on a fresh machine ran ~30% slower throughout.
timeout 60 "$BIN" bench --device cuda --dtype f16 --sizes 512 --iters 1 --steps 1 >/dev/null 2>&1
LATENT_STUDIO_CONV_LOG=1 bench ours_sd15 100 \
    "$BIN" bench --device cuda --dtype f16 --sizes 512 --iters 3 --steps 20 --profile
# A/B: GroupNorm one value at a time instead of in 16-byte pieces.
LATENT_STUDIO_SCALAR_GROUP_NORM=1 bench ours_sd15_scalar_gn 100 \
    "$BIN" bench --device cuda --dtype f16 --sizes 512 --iters 3 --steps 20
bench diffusers_sd15 100 $PY bench/diffusers_bench.py --device cuda --dtype fp16 --sizes 512 \
    --pipeline-size 512 --pipeline-steps 20 --iters 3 --warmup 1 --profile
LATENT_STUDIO_CONV_LOG=1 bench ours_sdxl 130 \
    "$BIN" bench --arch sdxl --device cuda --dtype f16 --sizes 1024 --iters 3 --steps 20 --profile
LATENT_STUDIO_SCALAR_GROUP_NORM=1 bench ours_sdxl_scalar_gn 130 \
    "$BIN" bench --arch sdxl --device cuda --dtype f16 --sizes 1024 --iters 2 --steps 20
bench diffusers_sdxl 130 $PY bench/diffusers_bench.py --arch sdxl --device cuda --dtype fp16 --sizes 1024 \
    --pipeline-size 1024 --pipeline-steps 20 --iters 2 --warmup 1 --profile

section "summary"
$PY - "$WORK" <<'EOF'
import os, re, sys
work = sys.argv[1]
line = re.compile(r"^(?P<name>.+?)\s+mean\s+(?P<mean>[\d.]+) ms\s+min\s+(?P<min>[\d.]+) ms")
def part(name):
    n = name.lower()
    for key in ("text", "unet", "vae"):
        if n.startswith(key):
            return key
    return "whole generation" if n.startswith(("generate", "pipeline")) else None
def read(name):
    rows = {}
    try:
        for l in open(os.path.join(work, name + ".log")):
            m = line.match(l.strip())
            if m and part(m["name"]):
                rows[part(m["name"])] = float(m["min"])
    except FileNotFoundError:
        pass
    return rows
def peak_memory(name):
    try:
        for l in open(os.path.join(work, name + ".log")):
            m = re.match(r"peak GPU memory used: (\d+) MiB", l.strip())
            if m:
                return int(m[1])
    except FileNotFoundError:
        pass
    return None
columns = [("ours", "ours_{}"), ("scalar GN", "ours_{}_scalar_gn"), ("diffusers", "diffusers_{}")]
print(f"{'arch':6} {'part (min ms)':18}" + "".join(f"{c:>14}" for c, _ in columns) + f"{'ours/diffusers':>16}")
for arch in ("sd15", "sdxl"):
    runs = [read(log.format(arch)) for _, log in columns]
    fmt = lambda v: f"{v:14.1f}" if v else f"{'-':>14}"
    for key in ("text", "unet", "vae", "whole generation"):
        values = [run.get(key) for run in runs]
        o, r = values[0], values[-1]
        ratio = f"{o / r:.2f}x" if o and r else "-"
        print(f"{arch:6} {key:18}" + "".join(fmt(v) for v in values) + f"{ratio:>16}")
    mem = [peak_memory(log.format(arch)) for _, log in columns]
    print(f"{arch:6} {'peak GPU MiB':18}" + "".join(f"{m:14d}" if m else f"{'-':>14}" for m in mem))
print("(text: ours encodes cond and uncond as two batch-1 passes; unet: one CFG step at batch 2;\n"
      " whole generation: prompt to decoded image, ours at its default scheduler = PNDM / Euler like diffusers)")
EOF
section "done, status $status"
exit $status
