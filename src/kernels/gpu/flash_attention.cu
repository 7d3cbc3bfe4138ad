// softmax(scale · q·kᵀ)·v without the score matrix (FlashAttention-2's scheme): a block of four
// warps takes 64 queries of one (batch, head); each warp keeps its 16 query rows, their scores
// for the current 64 keys and its share of the output in registers, with a running maximum and
// sum per row. Products run on tensor cores (mma.sync m16n8k16, f16/bf16 inputs, f32 sums);
// probabilities are rounded to the input type before the product with v, as PyTorch's
// flash/memory-efficient kernels do. Needs sm_80+. Compiled to PTX by build.rs.
//
// Register fragments follow the PTX ISA's layouts for m16n8k16 (g = lane / 4, t = lane % 4):
//   A (16×16, row):  {a0,a1} = A[g][2t..2t+1], {a2,a3} = A[g+8][2t..], {a4,a5} = A[g][2t+8..],
//                    {a6,a7} = A[g+8][2t+8..]
//   B (16×8, col):   {b0,b1} = B[2t..2t+1][g], {b2,b3} = B[2t+8..2t+9][g]
//   C (16×8, f32):   c0,c1 = C[g][2t..2t+1], c2,c3 = C[g+8][2t..2t+1]
// so a score tile's C fragments are, pairwise, the A fragments of the probabilities.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

namespace {

constexpr int WARPS = 4;
constexpr int QUERIES_PER_WARP = 16;
constexpr int BLOCK_QUERIES = WARPS * QUERIES_PER_WARP;
constexpr int BLOCK_KEYS = 64;
// Shared-memory rows are padded by 8 elements (16 bytes) so that the eight rows one
// instruction touches fall in different banks.
constexpr int PAD = 8;

template <typename T> struct Pack;
template <> struct Pack<__half> {
    static __device__ __forceinline__ uint32_t two(float lo, float hi) {
        __half2 h = __floats2half2_rn(lo, hi);
        return *reinterpret_cast<uint32_t *>(&h);
    }
    static __device__ __forceinline__ void mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                     "{%0,%1,%2,%3};\n"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
};
template <> struct Pack<__nv_bfloat16> {
    static __device__ __forceinline__ uint32_t two(float lo, float hi) {
        __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
        return *reinterpret_cast<uint32_t *>(&h);
    }
    static __device__ __forceinline__ void mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                     "{%0,%1,%2,%3};\n"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
};

// Four 8×8 matrices of 16-bit values from shared memory, transposed: lanes 8i..8i+7 give the
// row addresses of matrix i, and each lane receives M_i[2t..2t+1][g] in register i.
__device__ __forceinline__ void load_matrices_transposed(uint32_t (&r)[4], const void *row_address) {
    const uint32_t address = static_cast<uint32_t>(__cvta_generic_to_shared(row_address));
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(address));
}

__device__ __forceinline__ float group_max(float v) {
    v = fmaxf(v, __shfl_xor_sync(0xffffffff, v, 1));
    return fmaxf(v, __shfl_xor_sync(0xffffffff, v, 2));
}

__device__ __forceinline__ float group_sum(float v) {
    v += __shfl_xor_sync(0xffffffff, v, 1);
    return v + __shfl_xor_sync(0xffffffff, v, 2);
}

// Copies `rows` rows of `dim` values (row r at `src + r * row_stride`) into a BLOCK_KEYS ×
// (DIM + PAD) tile, zero beyond `rows` and `dim`, in 16-byte pieces (the host checked
// alignment) with asynchronous copies (cp.async, sm_80+) that the caller waits for: a piece
// with a source size of 0 is filled with zeros.
template <typename T, int DIM>
__device__ __forceinline__ void load_tile(T (*tile)[DIM + PAD], const T *src, long long row_stride, int rows, int dim) {
    constexpr int PIECES = DIM / 8;
    for (int i = threadIdx.x; i < BLOCK_KEYS * PIECES; i += WARPS * 32) {
        const int row = i / PIECES, col = (i % PIECES) * 8;
        const bool inside = row < rows && col < dim;
        const T *from = inside ? src + row * row_stride + col : src;
        const uint32_t to = static_cast<uint32_t>(__cvta_generic_to_shared(&tile[row][col]));
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(to), "l"(from), "r"(inside ? 16 : 0));
    }
    asm volatile("cp.async.commit_group;\n" ::);
}

// Waits until at most `PENDING` of this thread's copy groups are in flight.
template <int PENDING> __device__ __forceinline__ void wait_for_copies() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(PENDING));
}

struct Strides {
    long long batch, head, token;
};

// q: (B, H, N, D) and k, v: (B, H, M, D) given by strides; out: (B, N, H, D) contiguous.
// Grid: (ceil(N / 64), B·H), WARPS·32 threads. DIM: head size padded to a multiple of 16.
// STAGES: key/value tiles in shared memory; with 2 the next tile's copy overlaps this one's
// products (double buffering), as long as both fit the 48 KiB of static shared memory.
template <typename T, int DIM, int STAGES>
__device__ void attend(const T *__restrict__ q, const T *__restrict__ k, const T *__restrict__ v, T *__restrict__ out,
                       Strides qs, Strides ks, Strides vs, int heads, int queries, int keys, int dim,
                       float scale_log2) {
    static_assert(DIM % 16 == 0, "head size padded to whole k-steps");
    static_assert(STAGES == 1 || STAGES == 2, "single or double buffering");
    __shared__ __align__(16) T k_tiles[STAGES][BLOCK_KEYS][DIM + PAD];
    __shared__ __align__(16) T v_tiles[STAGES][BLOCK_KEYS][DIM + PAD];

    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int g = lane >> 2, t = lane & 3;
    const int batch = blockIdx.y / heads, head = blockIdx.y % heads;
    q += batch * qs.batch + head * qs.head;
    k += batch * ks.batch + head * ks.head;
    v += batch * vs.batch + head * vs.head;

    // This warp's query rows as A fragments, one per 16 columns of the head.
    const int row0 = blockIdx.x * BLOCK_QUERIES + warp * QUERIES_PER_WARP + g, row1 = row0 + 8;
    uint32_t q_frag[DIM / 16][4];
#pragma unroll
    for (int step = 0; step < DIM / 16; ++step) {
#pragma unroll
        for (int half = 0; half < 2; ++half) {
            const int col = step * 16 + half * 8 + 2 * t;
            const bool in_dim = col < dim;
            q_frag[step][half * 2] =
                row0 < queries && in_dim ? *reinterpret_cast<const uint32_t *>(q + row0 * qs.token + col) : 0u;
            q_frag[step][half * 2 + 1] =
                row1 < queries && in_dim ? *reinterpret_cast<const uint32_t *>(q + row1 * qs.token + col) : 0u;
        }
    }

    float acc[DIM / 8][4];
#pragma unroll
    for (int j = 0; j < DIM / 8; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;
    float max0 = -INFINITY, max1 = -INFINITY, sum0 = 0.f, sum1 = 0.f;

    const auto load_keys = [&](int key0, int stage) {
        const int tile_keys = min(BLOCK_KEYS, keys - key0);
        load_tile<T, DIM>(k_tiles[stage], k + key0 * ks.token, ks.token, tile_keys, dim);
        load_tile<T, DIM>(v_tiles[stage], v + key0 * vs.token, vs.token, tile_keys, dim);
    };
    if (STAGES == 2) load_keys(0, 0);
    for (int key0 = 0, tile = 0; key0 < keys; key0 += BLOCK_KEYS, ++tile) {
        const int tile_keys = min(BLOCK_KEYS, keys - key0);
        const int stage = STAGES == 2 ? tile & 1 : 0;
        if (STAGES == 2) {
            // The other buffer was released by the barrier that ended the previous tile.
            if (key0 + BLOCK_KEYS < keys) {
                load_keys(key0 + BLOCK_KEYS, stage ^ 1);
                wait_for_copies<2>(); // this tile's two groups are done, the next two may fly
            } else {
                wait_for_copies<0>();
            }
        } else {
            load_keys(key0, 0);
            wait_for_copies<0>();
        }
        __syncthreads(); // the tile is in shared memory for every warp
        T(*k_tile)[DIM + PAD] = k_tiles[stage];
        T(*v_tile)[DIM + PAD] = v_tiles[stage];

        // Scores for 64 keys: eight 16×8 tiles, scaled to base 2.
        float s[BLOCK_KEYS / 8][4];
#pragma unroll
        for (int j = 0; j < BLOCK_KEYS / 8; ++j) {
            s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
#pragma unroll
            for (int step = 0; step < DIM / 16; ++step) {
                const T *key_row = &k_tile[j * 8 + g][step * 16 + 2 * t];
                const uint32_t b0 = *reinterpret_cast<const uint32_t *>(key_row);
                const uint32_t b1 = *reinterpret_cast<const uint32_t *>(key_row + 8);
                Pack<T>::mma(s[j], q_frag[step], b0, b1);
            }
        }
        float tile_max0 = -INFINITY, tile_max1 = -INFINITY;
#pragma unroll
        for (int j = 0; j < BLOCK_KEYS / 8; ++j) {
            const int key = j * 8 + 2 * t;
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const bool valid = key + (e & 1) < tile_keys;
                s[j][e] = valid ? s[j][e] * scale_log2 : -INFINITY;
            }
            tile_max0 = fmaxf(tile_max0, fmaxf(s[j][0], s[j][1]));
            tile_max1 = fmaxf(tile_max1, fmaxf(s[j][2], s[j][3]));
        }
        // Every tile holds at least one valid key, so the new maxima are finite.
        const float new_max0 = fmaxf(max0, group_max(tile_max0));
        const float new_max1 = fmaxf(max1, group_max(tile_max1));
        const float rescale0 = exp2f(max0 - new_max0), rescale1 = exp2f(max1 - new_max1);
        max0 = new_max0;
        max1 = new_max1;
        float tile_sum0 = 0.f, tile_sum1 = 0.f;
#pragma unroll
        for (int j = 0; j < BLOCK_KEYS / 8; ++j) {
            s[j][0] = exp2f(s[j][0] - new_max0);
            s[j][1] = exp2f(s[j][1] - new_max0);
            s[j][2] = exp2f(s[j][2] - new_max1);
            s[j][3] = exp2f(s[j][3] - new_max1);
            tile_sum0 += s[j][0] + s[j][1];
            tile_sum1 += s[j][2] + s[j][3];
        }
        // Per-lane partial sums; the four lanes of a row are added at the end.
        sum0 = sum0 * rescale0 + tile_sum0;
        sum1 = sum1 * rescale1 + tile_sum1;
#pragma unroll
        for (int j = 0; j < DIM / 8; ++j) {
            acc[j][0] *= rescale0;
            acc[j][1] *= rescale0;
            acc[j][2] *= rescale1;
            acc[j][3] *= rescale1;
        }

        // out += p·v, 16 keys per step; v's B fragments come transposed from its tile.
#pragma unroll
        for (int step = 0; step < BLOCK_KEYS / 16; ++step) {
            const uint32_t p_frag[4] = {
                Pack<T>::two(s[2 * step][0], s[2 * step][1]),
                Pack<T>::two(s[2 * step][2], s[2 * step][3]),
                Pack<T>::two(s[2 * step + 1][0], s[2 * step + 1][1]),
                Pack<T>::two(s[2 * step + 1][2], s[2 * step + 1][3]),
            };
            // Matrices: (keys +0, cols +0), (keys +8, cols +0), (keys +0, cols +8), (keys +8, cols +8).
            const int matrix = lane >> 3;
            const int key_row = step * 16 + (lane & 7) + ((matrix & 1) << 3);
#pragma unroll
            for (int j = 0; j < DIM / 8; j += 2) {
                uint32_t b[4];
                load_matrices_transposed(b, &v_tile[key_row][j * 8 + ((matrix >> 1) << 3)]);
                Pack<T>::mma(acc[j], p_frag, b[0], b[1]);
                Pack<T>::mma(acc[j + 1], p_frag, b[2], b[3]);
            }
        }
        __syncthreads(); // every warp is done with this tile's buffer
    }

    const float inverse0 = 1.f / group_sum(sum0), inverse1 = 1.f / group_sum(sum1);
    const long long out_row = (long long)heads * dim;
    T *out0 = out + ((long long)batch * queries + row0) * out_row + (long long)head * dim;
    T *out1 = out0 + 8 * out_row;
#pragma unroll
    for (int j = 0; j < DIM / 8; ++j) {
        const int col = j * 8 + 2 * t;
        if (col < dim) {
            if (row0 < queries)
                *reinterpret_cast<uint32_t *>(out0 + col) = Pack<T>::two(acc[j][0] * inverse0, acc[j][1] * inverse0);
            if (row1 < queries)
                *reinterpret_cast<uint32_t *>(out1 + col) = Pack<T>::two(acc[j][2] * inverse1, acc[j][3] * inverse1);
        }
    }
}

} // namespace

#define FLASH_ATTENTION_STAGES(SUFFIX, T, DIM, STAGES)                                                                \
    extern "C" __global__ void __launch_bounds__(WARPS * 32) flash_attention_##SUFFIX##_##DIM##_##STAGES(             \
        const T *q, const T *k, const T *v, T *out, long long q_batch, long long q_head, long long q_token,           \
        long long k_batch, long long k_head, long long k_token, long long v_batch, long long v_head,                  \
        long long v_token, int heads, int queries, int keys, int dim, float scale_log2) {                             \
        attend<T, DIM, STAGES>(q, k, v, out, Strides{q_batch, q_head, q_token}, Strides{k_batch, k_head, k_token},  \
                               Strides{v_batch, v_head, v_token}, heads, queries, keys, dim, scale_log2);             \
    }

// Every size single-buffered; double-buffered where two stages fit 48 KiB (head sizes ≤ 80).
#define FLASH_ATTENTION(SUFFIX, T, DIM)                                                                               \
    FLASH_ATTENTION_STAGES(SUFFIX, T, DIM, 1)                                                                         \
    FLASH_ATTENTION_STAGES_2_##DIM(SUFFIX, T)
#define FLASH_ATTENTION_STAGES_2_32(SUFFIX, T) FLASH_ATTENTION_STAGES(SUFFIX, T, 32, 2)
#define FLASH_ATTENTION_STAGES_2_48(SUFFIX, T) FLASH_ATTENTION_STAGES(SUFFIX, T, 48, 2)
#define FLASH_ATTENTION_STAGES_2_64(SUFFIX, T) FLASH_ATTENTION_STAGES(SUFFIX, T, 64, 2)
#define FLASH_ATTENTION_STAGES_2_80(SUFFIX, T) FLASH_ATTENTION_STAGES(SUFFIX, T, 80, 2)
#define FLASH_ATTENTION_STAGES_2_96(SUFFIX, T)
#define FLASH_ATTENTION_STAGES_2_128(SUFFIX, T)
#define FLASH_ATTENTION_STAGES_2_160(SUFFIX, T)

#define FLASH_ATTENTION_SIZES(SUFFIX, T)                                                                              \
    FLASH_ATTENTION(SUFFIX, T, 32)                                                                                    \
    FLASH_ATTENTION(SUFFIX, T, 48)                                                                                    \
    FLASH_ATTENTION(SUFFIX, T, 64)                                                                                    \
    FLASH_ATTENTION(SUFFIX, T, 80)                                                                                    \
    FLASH_ATTENTION(SUFFIX, T, 96)                                                                                    \
    FLASH_ATTENTION(SUFFIX, T, 128)                                                                                   \
    FLASH_ATTENTION(SUFFIX, T, 160)

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
FLASH_ATTENTION_SIZES(f16, __half)
FLASH_ATTENTION_SIZES(bf16, __nv_bfloat16)
#endif
