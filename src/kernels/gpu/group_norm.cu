// GroupNorm (+ SiLU) for NCHW tensors in one statistics pass and one normalising pass, as
// PyTorch computes it: f32 statistics (Welford, merged with Chan's formula), the affine
// transform in f32, one rounding to the output type. Compiled to PTX by build.rs.
#include "convert.cuh"

// Adds the moments (count, mean, M2) of a second set of values to the first.
__device__ __forceinline__ void merge(float &n, float &mean, float &m2, float n_b, float mean_b,
                                      float m2_b) {
    if (n_b == 0.f) return;
    const float n_ab = n + n_b;
    const float delta = mean_b - mean;
    mean += delta * (n_b / n_ab);
    m2 += m2_b + delta * delta * (n * (n_b / n_ab));
    n = n_ab;
}

constexpr int THREADS = 256;

// Merges the block's per-thread moments (all THREADS threads call it) and has thread 0 write
// them, as (count, mean, M2), to `out`.
__device__ __forceinline__ void write_block_moments(float n, float mean, float m2, float *out) {
    __shared__ float s_n[THREADS], s_mean[THREADS], s_m2[THREADS];
    const unsigned int t = threadIdx.x;
    s_n[t] = n;
    s_mean[t] = mean;
    s_m2[t] = m2;
    __syncthreads();
    for (unsigned int half_width = THREADS / 2; half_width > 0; half_width >>= 1) {
        if (t < half_width) {
            merge(s_n[t], s_mean[t], s_m2[t], s_n[t + half_width], s_mean[t + half_width],
                  s_m2[t + half_width]);
        }
        __syncthreads();
    }
    if (t == 0) {
        out[0] = s_n[0];
        out[1] = s_mean[0];
        out[2] = s_m2[0];
    }
}

// The mean and 1/sqrt(variance + eps) of a group from the moments of its `splits` slices
// (all threads of the block call it; thread 0 merges, every thread gets the result).
__device__ __forceinline__ void group_moments(const float *slices, unsigned int splits, float eps, float &mean,
                                              float &rstd) {
    __shared__ float s_mean, s_rstd;
    if (threadIdx.x == 0) {
        float n = 0.f, m = 0.f, m2 = 0.f;
        for (unsigned int s = 0; s < splits; ++s) merge(n, m, m2, slices[3 * s], slices[3 * s + 1], slices[3 * s + 2]);
        s_mean = m;
        s_rstd = rsqrtf(m2 / n + eps);
    }
    __syncthreads();
    mean = s_mean;
    rstd = s_rstd;
}

// grid (splits, batch * groups): block (s, g) writes the moments of the s-th slice of group g
// to partials[(g * splits + s) * 3 ..].
template <typename T>
__device__ void statistics(const T *x, float *partials, unsigned int group_len) {
    const unsigned int g = blockIdx.y, split = blockIdx.x, splits = gridDim.x;
    const T *group = x + (size_t)g * group_len;
    const unsigned int chunk = (group_len + splits - 1) / splits;
    const unsigned int begin = split * chunk;
    const unsigned int end = min(group_len, begin + chunk);
    float n = 0.f, mean = 0.f, m2 = 0.f;
    for (unsigned int i = begin + threadIdx.x; i < end; i += THREADS) {
        const float v = to_float(group[i]);
        n += 1.f;
        const float delta = v - mean;
        mean += delta / n;
        m2 += delta * (v - mean);
    }
    write_block_moments(n, mean, m2, partials + ((size_t)g * splits + split) * 3);
}

// grid (blocks, batch * groups): normalises group g with the merged moments of its slices.
template <typename T>
__device__ void normalise(const T *x, T *y, const float *partials, const T *gamma, const T *beta,
                          unsigned int group_len, unsigned int spatial,
                          unsigned int channels_per_group, unsigned int groups,
                          unsigned int splits, float eps, int silu) {
    const unsigned int g = blockIdx.y;
    float mean, rstd;
    group_moments(partials + (size_t)g * splits * 3, splits, eps, mean, rstd);
    const unsigned int first_channel = (g % groups) * channels_per_group;
    const T *in = x + (size_t)g * group_len;
    T *out = y + (size_t)g * group_len;
    for (unsigned int i = blockIdx.x * THREADS + threadIdx.x; i < group_len; i += gridDim.x * THREADS) {
        const unsigned int c = first_channel + i / spatial;
        float v = (to_float(in[i]) - mean) * rstd * to_float(gamma[c]) + to_float(beta[c]);
        if (silu) v = v / (1.f + expf(-v));
        out[i] = from_float<T>(v);
    }
}

// The same two passes over 16-byte pieces (VEC values each): one load instruction per piece,
// a piece's moments computed in registers and merged once (one division per piece instead
// of one per value), one channel lookup per piece. The host checks that group_len and
// spatial are multiples of VEC and that x starts 16-byte aligned.
template <typename T, int VEC> struct Piece {
    static_assert(VEC * sizeof(T) == 16, "a piece is 16 bytes");
    float v[VEC];
    __device__ __forceinline__ void load(const T *at) {
        uint4 raw = *reinterpret_cast<const uint4 *>(at);
        const T *values = reinterpret_cast<const T *>(&raw);
#pragma unroll
        for (int k = 0; k < VEC; ++k) v[k] = to_float(values[k]);
    }
    __device__ __forceinline__ void store(T *at) const {
        uint4 raw;
        T *values = reinterpret_cast<T *>(&raw);
#pragma unroll
        for (int k = 0; k < VEC; ++k) values[k] = from_float<T>(v[k]);
        *reinterpret_cast<uint4 *>(at) = raw;
    }
};

template <typename T, int VEC>
__device__ void statistics_pieces(const T *x, float *partials, unsigned int group_len) {
    const unsigned int g = blockIdx.y, split = blockIdx.x, splits = gridDim.x;
    const T *group = x + (size_t)g * group_len;
    const unsigned int pieces = group_len / VEC;
    const unsigned int chunk = (pieces + splits - 1) / splits;
    const unsigned int begin = split * chunk;
    const unsigned int end = min(pieces, begin + chunk);
    float n = 0.f, mean = 0.f, m2 = 0.f;
    for (unsigned int i = begin + threadIdx.x; i < end; i += THREADS) {
        Piece<T, VEC> piece;
        piece.load(group + (size_t)i * VEC);
        float sum = 0.f;
#pragma unroll
        for (int k = 0; k < VEC; ++k) sum += piece.v[k];
        const float piece_mean = sum * (1.f / VEC);
        float piece_m2 = 0.f;
#pragma unroll
        for (int k = 0; k < VEC; ++k) piece_m2 += (piece.v[k] - piece_mean) * (piece.v[k] - piece_mean);
        merge(n, mean, m2, (float)VEC, piece_mean, piece_m2);
    }
    write_block_moments(n, mean, m2, partials + ((size_t)g * splits + split) * 3);
}

template <typename T, int VEC>
__device__ void normalise_pieces(const T *x, T *y, const float *partials, const T *gamma, const T *beta,
                                 unsigned int group_len, unsigned int spatial,
                                 unsigned int channels_per_group, unsigned int groups,
                                 unsigned int splits, float eps, int silu) {
    const unsigned int g = blockIdx.y;
    float mean, rstd;
    group_moments(partials + (size_t)g * splits * 3, splits, eps, mean, rstd);
    const unsigned int first_channel = (g % groups) * channels_per_group;
    const T *in = x + (size_t)g * group_len;
    T *out = y + (size_t)g * group_len;
    const unsigned int pieces = group_len / VEC;
    for (unsigned int i = blockIdx.x * THREADS + threadIdx.x; i < pieces; i += gridDim.x * THREADS) {
        // spatial is a multiple of VEC: a piece lies in one channel.
        const unsigned int c = first_channel + i * VEC / spatial;
        const float weight = to_float(gamma[c]), bias = to_float(beta[c]);
        Piece<T, VEC> piece;
        piece.load(in + (size_t)i * VEC);
#pragma unroll
        for (int k = 0; k < VEC; ++k) {
            float v = (piece.v[k] - mean) * rstd * weight + bias;
            if (silu) v = v / (1.f + expf(-v));
            piece.v[k] = v;
        }
        piece.store(out + (size_t)i * VEC);
    }
}

#define GROUP_NORM(SUFFIX, T)                                                                      \
    extern "C" __global__ void __launch_bounds__(THREADS)                                         \
        group_norm_statistics_##SUFFIX(const T *x, float *partials, unsigned int group_len) {      \
        statistics<T>(x, partials, group_len);                                                     \
    }                                                                                              \
    extern "C" __global__ void __launch_bounds__(THREADS) group_norm_normalise_##SUFFIX(          \
        const T *x, T *y, const float *partials, const T *gamma, const T *beta,                    \
        unsigned int group_len, unsigned int spatial, unsigned int channels_per_group,             \
        unsigned int groups, unsigned int splits, float eps, int silu) {                           \
        normalise<T>(x, y, partials, gamma, beta, group_len, spatial, channels_per_group, groups,  \
                     splits, eps, silu);                                                           \
    }                                                                                              \
    extern "C" __global__ void __launch_bounds__(THREADS) group_norm_statistics_pieces_##SUFFIX(  \
        const T *x, float *partials, unsigned int group_len) {                                     \
        statistics_pieces<T, 16 / sizeof(T)>(x, partials, group_len);                              \
    }                                                                                              \
    extern "C" __global__ void __launch_bounds__(THREADS) group_norm_normalise_pieces_##SUFFIX(   \
        const T *x, T *y, const float *partials, const T *gamma, const T *beta,                    \
        unsigned int group_len, unsigned int spatial, unsigned int channels_per_group,             \
        unsigned int groups, unsigned int splits, float eps, int silu) {                           \
        normalise_pieces<T, 16 / sizeof(T)>(x, y, partials, gamma, beta, group_len, spatial,       \
                                            channels_per_group, groups, splits, eps, silu);        \
    }

GROUP_NORM(f32, float)
GROUP_NORM(f16, __half)
GROUP_NORM(bf16, __nv_bfloat16)
