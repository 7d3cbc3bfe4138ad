// softmax(scale · x) over the last dimension, one block per row: f32 arithmetic, each output
// rounded once (candle's kernel runs one warp per row and rounds exp() to the data type before
// dividing). The scale is applied here so attention needs no separate pass over q. Compiled to
// PTX by build.rs.
#include "convert.cuh"

__device__ __forceinline__ float warp_max(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffff, v, offset));
    return v;
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffff, v, offset);
    return v;
}

// blockDim.x is a multiple of 32, at most 1024.
template <bool IS_MAX> __device__ float block_reduce(float v, float *scratch) {
    const unsigned int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = IS_MAX ? warp_max(v) : warp_sum(v);
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    const float identity = IS_MAX ? -INFINITY : 0.f;
    v = threadIdx.x < warps ? scratch[threadIdx.x] : identity;
    if (warp == 0) {
        v = IS_MAX ? warp_max(v) : warp_sum(v);
        if (lane == 0) scratch[0] = v;
    }
    __syncthreads();
    const float total = scratch[0];
    __syncthreads();
    return total;
}

template <typename T>
__device__ void scaled_softmax(const T *x, T *y, unsigned int cols, float scale) {
    __shared__ float scratch[32];
    const T *in = x + (size_t)blockIdx.x * cols;
    T *out = y + (size_t)blockIdx.x * cols;
    float max_value = -INFINITY;
    for (unsigned int c = threadIdx.x; c < cols; c += blockDim.x) max_value = fmaxf(max_value, to_float(in[c]));
    max_value = block_reduce<true>(max_value, scratch);
    float sum = 0.f;
    for (unsigned int c = threadIdx.x; c < cols; c += blockDim.x) sum += expf((to_float(in[c]) - max_value) * scale);
    const float inverse = 1.f / block_reduce<false>(sum, scratch);
    for (unsigned int c = threadIdx.x; c < cols; c += blockDim.x) {
        out[c] = from_float<T>(expf((to_float(in[c]) - max_value) * scale) * inverse);
    }
}

#define SCALED_SOFTMAX(SUFFIX, T)                                                                  \
    extern "C" __global__ void __launch_bounds__(1024)                                            \
        scaled_softmax_##SUFFIX(const T *x, T *y, unsigned int cols, float scale) {                \
        scaled_softmax<T>(x, y, cols, scale);                                                      \
    }

SCALED_SOFTMAX(f32, float)
SCALED_SOFTMAX(f16, __half)
SCALED_SOFTMAX(bf16, __nv_bfloat16)
