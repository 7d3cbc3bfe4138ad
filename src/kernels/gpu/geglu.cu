// GEGLU's gate, value · gelu(gate) with exact (erf) GELU, over rows of [value | gate]: one
// pass that reads the projection once and writes half of it, in f32, rounded once (candle
// takes a strided narrow, a GELU kernel and a product kernel). Compiled to PTX by build.rs.
#include "convert.cuh"

// Grid: x over the columns (blockDim.x each), y over rows, striding when there are more rows.
template <typename T>
__device__ void geglu(const T *projected, T *out, unsigned int rows, unsigned int inner) {
    const unsigned int col = blockIdx.x * blockDim.x + threadIdx.x;
    if (col >= inner) return;
    for (unsigned int row = blockIdx.y; row < rows; row += gridDim.y) {
        const T *in = projected + 2ull * inner * row;
        const float gate = to_float(in[inner + col]);
        const float gelu = 0.5f * gate * (1.f + erff(gate * 0.70710678118654752f));
        out[(unsigned long long)inner * row + col] = from_float<T>(to_float(in[col]) * gelu);
    }
}

#define GEGLU(SUFFIX, T)                                                                           \
    extern "C" __global__ void geglu_##SUFFIX(const T *projected, T *out, unsigned int rows,         \
                                              unsigned int inner) {                                \
        geglu<T>(projected, out, rows, inner);                                                     \
    }

GEGLU(f32, float)
GEGLU(f16, __half)
GEGLU(bf16, __nv_bfloat16)
