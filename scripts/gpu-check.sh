#!/usr/bin/env bash
# The one prepared GPU check: parity of the CUDA build with diffusers, then SD 1.5 512² and
# SDXL 1024² timings against diffusers fp16 on the same GPU. Runs on the GPU machine, which
# has nvcc, PyTorch (with NVIDIA's CUDA 13 wheels) and a GPU, but no Rust and no network.
#
# Prepare here (a machine with Rust, no GPU needed):
#   scripts/build-cuda.sh --carry      # CUDA build + gpu-carry/{latent-studio.xz,wheels/}
#
# Then call the device tool, from the repository root:
#   run(command="bash scripts/gpu-check.sh", carry=["gpu-carry"], timeout_s=600)
# Caveat: the tool sends every tracked file too, and it refuses trees over 64 MiB; the tracked
# tree is ~105 MiB today (tests/fixtures), so the call needs a smaller tree first (the check
# itself needs only scripts/, bench/, assets/, tests/fixtures/models/sd1 and
# tests/fixtures/cases/sd1_default.safetensors).
# It takes about 5–8 minutes on an H100 (each stage below has its own timeout). Everything
# goes to stdout; $OUT/gpu-check.log (when $OUT is set), the four bench logs and the two parity PNGs come back.
#
# gpu-carry/ (git-ignored) holds:
#   latent-studio.xz  the stripped `--features cuda` release binary (CUDA 13.0, sm_90)
#   wheels/*.whl      diffusers 0.42.1 and the pure-Python packages it needs beyond the image's
#
# Stages: (a) nvidia-smi; (b) parity on the tiny fixture (tests/cli.rs
# generate_matches_diffusers_and_writes_parameters) in f32 (must be within 2/255 of the stored
# diffusers image) and f16 (reported); (c) `latent-studio bench` and bench/diffusers_bench.py
# for SD 1.5 512² (20 steps) and SDXL 1024² (20 steps), random weights, fp16, then a table.
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
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || fail "nvidia-smi"
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

section "(b) parity with diffusers, tests/fixtures/models/sd1 (sd1_default case)"
parity_args=(generate --model tests/fixtures/models/sd1
    --prompt "A photo of an Astronaut riding a horse, on Mars!"
    --negative-prompt "blurry, low quality" --steps 5 --guidance 7.5 --seed 42
    --width 64 --height 64 --device cuda)
for dtype in f32 f16; do
    timeout 180 "$BIN" "${parity_args[@]}" --dtype "$dtype" --output "$OUT/parity_$dtype.png" ||
        fail "generate --device cuda --dtype $dtype"
done
$PY - "$OUT" <<'EOF' || fail "parity"
import os, sys
import numpy as np
from PIL import Image
from safetensors.numpy import load_file
out = sys.argv[1]
ref = load_file("tests/fixtures/cases/sd1_default.safetensors")["image"].astype(np.int16)
ok = True
for dtype, limit in (("f32", 2), ("f16", None)):
    path = os.path.join(out, f"parity_{dtype}.png")
    if not os.path.exists(path):
        print(f"{dtype}: no image"); ok = False; continue
    img = np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)
    d = np.abs(img - ref)
    verdict = "" if limit is None else ("  OK (<= %d/255)" % limit if d.max() <= limit else "  FAIL (> %d/255)" % limit)
    print(f"cuda {dtype}: max |diff| {d.max()}/255, mean {d.mean():.3f}/255{verdict}")
    if limit is not None and d.max() > limit:
        ok = False
sys.exit(0 if ok else 1)
EOF

section "(c) timings, random weights, fp16"
bench() { # name timeout command...
    local name=$1 limit=$2
    shift 2
    echo "--- $name"
    timeout "$limit" "$@" 2>&1 | tee "$WORK/$name.log" | grep -v '^\s*$'
    local rc=${PIPESTATUS[0]}
    ((rc == 0)) || fail "$name exited with $rc"
    cp "$WORK/$name.log" "$OUT/" 2>/dev/null
}
bench ours_sd15 150 "$BIN" bench --device cuda --dtype f16 --sizes 512 --iters 3 --steps 20
bench diffusers_sd15 150 $PY bench/diffusers_bench.py --device cuda --dtype fp16 --sizes 512 \
    --pipeline-size 512 --pipeline-steps 20 --iters 3 --warmup 1
bench ours_sdxl 200 "$BIN" bench --arch sdxl --device cuda --dtype f16 --sizes 1024 --iters 3 --steps 20
bench diffusers_sdxl 200 $PY bench/diffusers_bench.py --arch sdxl --device cuda --dtype fp16 --sizes 1024 \
    --pipeline-size 1024 --pipeline-steps 20 --iters 2 --warmup 1

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
print(f"{'arch':6} {'part (min ms)':18} {'ours f16':>10} {'diffusers':>10} {'ours/diffusers':>15}")
for arch, label in (("sd15", "SD 1.5 512², 20 steps"), ("sdxl", "SDXL 1024², 20 steps")):
    ours, ref = read("ours_" + arch), read("diffusers_" + arch)
    for key in ("text", "unet", "vae", "whole generation"):
        o, r = ours.get(key), ref.get(key)
        ratio = f"{o / r:.2f}x" if o and r else "-"
        fmt = lambda v: f"{v:10.1f}" if v else f"{'-':>10}"
        print(f"{arch:6} {key:18} {fmt(o)} {fmt(r)} {ratio:>15}")
print("(text: ours encodes cond and uncond as two batch-1 passes; unet: one CFG step at batch 2;\n"
      " whole generation: prompt to decoded image, ours at its default scheduler = PNDM / Euler like diffusers)")
EOF
section "done, status $status"
exit $status
