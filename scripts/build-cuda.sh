#!/usr/bin/env bash
# Builds latent-studio with `--features cuda` on a machine that has no CUDA toolkit and no
# GPU, using only PyPI: nvcc, headers and the CUDA 13.0 runtime libraries come from NVIDIA's
# wheels, installed into their own venv (never the project's Python env).
#
#   scripts/build-cuda.sh [--carry] [extra cargo args, e.g. --features cudnn]
#
#   --carry   afterwards, fill gpu-carry/ for scripts/gpu-check.sh (the stripped binary as
#             latent-studio.xz, the library's unit tests as latent-studio-tests.xz — the GPU
#             kernels' tests run there — and the diffusers wheels that the GPU machine lacks).
#
# Environment (all optional):
#   CUDA_VENV         venv holding the NVIDIA wheels       (default /work/cudaenv)
#   CUDA_ROOT_DIR     assembled CUDA root of symlinks       (default /work/cuda-root)
#   CARGO_TARGET_DIR  separate target dir for the CUDA build (default /work/target-cuda)
#   CUDA_COMPUTE_CAP  GPU architecture for candle's kernels (default 90: Hopper, H100/H200)
#
# Why CUDA 13.0 exactly: the GPU machines run driver 580 (CUDA 13.0) with PyTorch cu130.
# candle's kernels ship as PTX that the driver JIT-compiles, and a driver refuses PTX from a
# newer nvcc; cudarc links libcublas.so.13 / libnvrtc.so.13 / libcurand.so.10 /
# libcudart.so.13, which PyTorch's own nvidia-* wheels provide there at run time.
# libcuda.so (the driver) cannot come from pip: the link uses a stub generated here from
# cudarc's bindings; the real one is loaded from the driver at run time.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)

CARRY=0
if [[ ${1:-} == --carry ]]; then
    CARRY=1
    shift
fi

CUDA_VENV=${CUDA_VENV:-/work/cudaenv}
CUDA_ROOT_DIR=${CUDA_ROOT_DIR:-/work/cuda-root}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-cuda}
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
PIP_PACKAGES=(
    nvidia-cuda-nvcc==13.0.88
    nvidia-cuda-crt==13.0.88
    nvidia-nvvm==13.0.88
    nvidia-cuda-cccl==13.0.85
    nvidia-cuda-runtime==13.0.96
    nvidia-cuda-nvrtc==13.0.88
    nvidia-cublas==13.0.2.14
    nvidia-curand==10.4.0.35
)
if [[ " $* " == *cudnn* ]]; then
    PIP_PACKAGES+=(nvidia-cudnn-cu13==9.21.1.3)
fi

# 1. The NVIDIA wheels, in their own venv.
if [[ ! -x $CUDA_VENV/bin/python ]]; then
    python3 -m venv "$CUDA_VENV"
fi
installed=$("$CUDA_VENV/bin/python" -m pip freeze --disable-pip-version-check 2>/dev/null)
for package in "${PIP_PACKAGES[@]}"; do
    if ! grep -qix "$package" <<<"$installed"; then
        "$CUDA_VENV/bin/python" -m pip install -q --disable-pip-version-check "${PIP_PACKAGES[@]}"
        break
    fi
done
NV=$("$CUDA_VENV/bin/python" -c 'import os, nvidia; print(os.path.join(list(nvidia.__path__)[0], "cu13"))')
[[ -x $NV/bin/nvcc ]] || { echo "nvcc missing under $NV" >&2; exit 1; }

# 2. A CUDA root with the usual layout: bin/ include/ nvvm/ lib64/ lib64/stubs/.
mkdir -p "$CUDA_ROOT_DIR/lib64/stubs"
for d in bin include nvvm; do
    ln -sfn "$NV/$d" "$CUDA_ROOT_DIR/$d"
done
for lib in "$NV"/lib/*.so.*; do
    name=$(basename "$lib")
    ln -sfn "$lib" "$CUDA_ROOT_DIR/lib64/$name"
    case $name in # the unversioned names the linker looks for
    libcudart.so.* | libcublas.so.* | libcublasLt.so.* | libcurand.so.* | libnvrtc.so.* | libcudnn*.so.*)
        ln -sfn "$lib" "$CUDA_ROOT_DIR/lib64/${name%%.so.*}.so"
        ;;
    esac
done
if [[ " $* " == *cudnn* ]]; then # cudarc's cudnn bindings are pre-generated: no headers needed
    CUDNN=$("$CUDA_VENV/bin/python" -c 'import os, nvidia.cudnn as c; print(list(c.__path__)[0])')
    for lib in "$CUDNN"/lib/*.so.*; do
        name=$(basename "$lib")
        ln -sfn "$lib" "$CUDA_ROOT_DIR/lib64/$name"
        ln -sfn "$lib" "$CUDA_ROOT_DIR/lib64/${name%%.so.*}.so"
    done
fi

# libcuda.so stub: every cu* entry point cudarc's driver bindings can reference. Each returns
# CUDA_ERROR_NO_DEVICE (100), so with the stub on LD_LIBRARY_PATH the binary behaves as on a
# machine without a GPU (used to test the error path here); the GPU machine's driver supplies
# the real libcuda.so.1.
CUDARC_SYS=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.*/src/driver/sys/mod.rs 2>/dev/null | tail -1 || true)
if [[ -z $CUDARC_SYS ]]; then
    cargo fetch --quiet
    CUDARC_SYS=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.*/src/driver/sys/mod.rs | tail -1)
fi
STUB_C=$CUDA_ROOT_DIR/lib64/stubs/libcuda_stub.c
{
    echo 'int cuGetErrorString(int e, const char **s) { *s = e == 100 ? "no CUDA-capable device is detected (libcuda stub)" : "unknown error"; return 0; }'
    echo 'int cuGetErrorName(int e, const char **s) { *s = e == 100 ? "CUDA_ERROR_NO_DEVICE" : "CUDA_ERROR_UNKNOWN"; return 0; }'
    grep -oE 'pub unsafe fn cu[A-Za-z0-9_]+' "$CUDARC_SYS" | awk '{print $4}' | sort -u |
        grep -vxE 'cuGetErrorString|cuGetErrorName' | sed 's/.*/int &(void) { return 100; }/'
} >"$STUB_C.new"
if ! cmp -s "$STUB_C.new" "$STUB_C" || [[ ! -f $CUDA_ROOT_DIR/lib64/stubs/libcuda.so.1 ]]; then
    mv "$STUB_C.new" "$STUB_C"
    cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$CUDA_ROOT_DIR/lib64/stubs/libcuda.so" "$STUB_C"
    ln -sfn libcuda.so "$CUDA_ROOT_DIR/lib64/stubs/libcuda.so.1"
fi
rm -f "$STUB_C.new"

# 3. Build.
export CUDA_HOME=$CUDA_ROOT_DIR CUDA_PATH=$CUDA_ROOT_DIR CUDA_ROOT=$CUDA_ROOT_DIR
export PATH=$CUDA_ROOT_DIR/bin:$PATH
export NVCC=$CUDA_ROOT_DIR/bin/nvcc
export CUDARC_CUDA_VERSION=13000
export CUDAFORGE_THREADS=${CUDAFORGE_THREADS:-$(nproc)}
export LD_LIBRARY_PATH=$CUDA_ROOT_DIR/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
nvcc --version | tail -2
features=(--features cuda)
[[ " $* " == *--features* ]] && features=()
start=$(date +%s)
nice -n 19 cargo build --release "${features[@]}" "$@"
echo "cuda build took $(($(date +%s) - start)) s: $CARGO_TARGET_DIR/release/latent-studio"

# 4. Optionally, the folder scripts/gpu-check.sh reads on the GPU machine.
if ((CARRY)); then
    mkdir -p gpu-carry/wheels
    # Stripped and xz-compressed: 82 MB -> ~12 MB, under the device tool's 64 MiB transfer.
    rm -f gpu-carry/latent-studio gpu-carry/latent-studio.xz
    strip -o gpu-carry/latent-studio "$CARGO_TARGET_DIR/release/latent-studio"
    nice -n 19 xz -6 gpu-carry/latent-studio
    # The library's unit tests, built with the same features (the kernels' tests need a GPU).
    tests=$(nice -n 19 cargo test --release "${features[@]}" "$@" --lib --no-run --message-format=json |
        python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["lib"]:
        print(m["executable"])' | tail -1)
    [[ -x $tests ]] || { echo "no unit-test binary from cargo test --no-run" >&2; exit 1; }
    rm -f gpu-carry/latent-studio-tests gpu-carry/latent-studio-tests.xz
    strip -o gpu-carry/latent-studio-tests "$tests"
    nice -n 19 xz -6 gpu-carry/latent-studio-tests
    # The GPU image has torch, transformers, safetensors, huggingface_hub, numpy, Pillow,
    # regex and requests but not diffusers; diffusers 0.42.1 also needs importlib_metadata
    # (which needs zipp and lazy-importer), all pure Python.
    python3 -m pip download -q --no-deps --only-binary=:all: -d gpu-carry/wheels \
        diffusers==0.42.1 importlib_metadata==10.2.0 zipp==4.1.2 lazy-importer==0.1.0
    ls -la gpu-carry gpu-carry/wheels
fi
