//! Scaled dot-product attention shared by the UNet's transformers and the VAE's mid block.
//! On x86-64 CPUs with AVX2 it runs fused ([`online_softmax`]), in f16/bf16 on NVIDIA GPUs
//! with tensor cores too (`gpu::flash_attention`); elsewhere as matrix products over slices
//! of queries.

#[cfg(target_arch = "x86_64")]
mod online_softmax;
#[cfg(target_arch = "x86_64")]
mod online_softmax_avx512;

use candle_core::{Result, Tensor};

#[cfg(target_arch = "x86_64")]
use crate::kernels::with_cpu_f32;

/// Largest attention-score block materialised at once on the CPU, in elements (64 MiB of f32).
const SCORE_BLOCK_ELEMENTS: usize = 16 * 1024 * 1024;
/// The same on a GPU (512 MiB of f16), where each slice costs kernel launches and copies
/// more than memory: SDXL at 1024² (20 × 4096² scores) runs in two slices, not twenty-one.
const GPU_SCORE_BLOCK_ELEMENTS: usize = 256 * 1024 * 1024;

/// `softmax(q·kᵀ·scale)·v` for `q: (B, H, N, D)`, `k, v: (B, H, M, D)`.
///
/// The inputs may be strided views (e.g. `(B, N, H, D)` transposed); only the last dimension
/// must be contiguous for the fused path. The `N×M` score matrix of a large image never exists
/// whole: either it is computed block by block with a running softmax, or queries are
/// processed in slices (each slice is exact, so the result equals the unsliced computation).
pub fn scaled_dot_product(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64) -> Result<Tensor> {
    crate::kernels::profile::measure("attention (softmax(q·kᵀ)·v)", q.device(), || {
        dispatch(q, k, v, scale)
    })
}

fn dispatch(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if crate::kernels::gpu::flash_attention::applies(q, k, v) {
        return crate::kernels::gpu::flash_attention::attention(q, k, v, scale);
    }
    #[cfg(target_arch = "x86_64")]
    if fused_applies(q, k, v)? {
        // bf16 mode computes the products in bf16 too, where the CPU has the instructions.
        use crate::kernels::precision::{cpu_arithmetic, CpuArithmetic};
        let arithmetic = if cpu_arithmetic() == CpuArithmetic::Bf16
            && online_softmax_avx512::available::<online_softmax_avx512::Bf16>(q.dim(3)?)
        {
            online_softmax::Arithmetic::Bf16
        } else if avx2_only() {
            online_softmax::Arithmetic::F32Avx2
        } else {
            online_softmax::Arithmetic::F32
        };
        return fused(arithmetic, q, k, v, scale);
    }
    let block = if q.device().is_cpu() {
        SCORE_BLOCK_ELEMENTS
    } else {
        GPU_SCORE_BLOCK_ELEMENTS
    };
    sliced(q, k, v, scale, block)
}

/// `LATENT_STUDIO_AVX2_ATTENTION=1` keeps the AVX2 f32 kernels on AVX-512 CPUs, for A/B runs.
#[cfg(target_arch = "x86_64")]
fn avx2_only() -> bool {
    crate::kernels::ab_switch!("LATENT_STUDIO_AVX2_ATTENTION")
}

#[cfg(target_arch = "x86_64")]
fn fused_applies(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<bool> {
    // `LATENT_STUDIO_UNFUSED_ATTENTION=1` keeps the sliced matrix products, for A/B measurements.
    let unfused = crate::kernels::ab_switch!("LATENT_STUDIO_UNFUSED_ATTENTION");
    let cpu_f32 = |t: &Tensor| {
        matches!(t.device(), candle_core::Device::Cpu) && t.dtype() == candle_core::DType::F32
    };
    Ok(!unfused
        && cpu_f32(q)
        && cpu_f32(k)
        && cpu_f32(v)
        && q.rank() == 4
        && online_softmax::available(q.dim(3)?))
}

/// The fused path; returns a `(B, H, N, D)` view of a `(B, N, H, D)` buffer, so that callers
/// merging heads back into channels need no copy.
#[cfg(target_arch = "x86_64")]
fn fused(
    arithmetic: online_softmax::Arithmetic,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f64,
) -> Result<Tensor> {
    use online_softmax::{HeadsView, Shape};
    let (batch, heads, queries, head_dim) = q.dims4()?;
    let (k_batch, k_heads, keys, k_dim) = k.dims4()?;
    if (k_batch, k_heads, k_dim) != (batch, heads, head_dim) || v.dims() != k.dims() {
        candle_core::bail!(
            "attention: q {:?}, k {:?} and v {:?} do not fit together",
            q.dims(),
            k.dims(),
            v.dims()
        );
    }
    // The kernels read whole head rows; a view whose rows are not contiguous is copied first.
    let rows_contiguous = |t: &Tensor| -> Result<Tensor> {
        if t.stride()[3] == 1 {
            Ok(t.clone())
        } else {
            t.contiguous()
        }
    };
    let (q, k, v) = (
        rows_contiguous(q)?,
        rows_contiguous(k)?,
        rows_contiguous(v)?,
    );
    let view = |t: &Tensor| {
        let stride = t.stride();
        HeadsView {
            batch_stride: stride[0],
            head_stride: stride[1],
            token_stride: stride[2],
        }
    };
    let shape = Shape {
        batch,
        heads,
        queries,
        keys,
        head_dim,
    };
    let mut out = vec![0f32; batch * queries * heads * head_dim];
    with_cpu_f32(&q, |q_data| {
        with_cpu_f32(&k, |k_data| {
            with_cpu_f32(&v, |v_data| {
                online_softmax::attend(
                    arithmetic,
                    shape,
                    scale as f32,
                    (q_data, view(&q)),
                    (k_data, view(&k)),
                    (v_data, view(&v)),
                    &mut out,
                )
            })
        })
    })???;
    Tensor::from_vec(out, (batch, queries, heads, head_dim), q.device())?.transpose(1, 2)
}

fn sliced(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64, block_elements: usize) -> Result<Tensor> {
    let (q, k, v) = (&q.contiguous()?, &k.contiguous()?, &v.contiguous()?);
    let (batch, heads, queries, _) = q.dims4()?;
    let keys = k.dim(2)?;
    let k_t = k.t()?.contiguous()?;
    let per_query = (batch * heads * keys).max(1);
    let slice = (block_elements / per_query).clamp(1, queries.max(1));
    let probabilities = ScaledSoftmax::for_device(q, scale);
    let q = probabilities.prescaled(q)?;
    if slice >= queries {
        return probabilities.of(&q.matmul(&k_t)?)?.matmul(v);
    }
    let mut outputs = Vec::with_capacity(queries.div_ceil(slice));
    let mut start = 0;
    while start < queries {
        let len = slice.min(queries - start);
        let q_slice = q.narrow(2, start, len)?.contiguous()?;
        outputs.push(probabilities.of(&q_slice.matmul(&k_t)?)?.matmul(v)?);
        start += len;
    }
    Tensor::cat(&outputs, 2)
}

/// Where the `scale` of `softmax(q·kᵀ·scale)` goes: into q before the product (candle's
/// softmax), or into our CUDA softmax, which saves a pass over q and rounds once.
/// `LATENT_STUDIO_CANDLE_SOFTMAX=1` keeps candle's on GPUs, for A/B runs.
enum ScaledSoftmax {
    ScaleQueries(f64),
    #[cfg(feature = "cuda")]
    Fused(f64),
}

impl ScaledSoftmax {
    #[cfg_attr(not(feature = "cuda"), allow(unused_variables))]
    fn for_device(q: &Tensor, scale: f64) -> Self {
        #[cfg(feature = "cuda")]
        {
            let candle_only = crate::kernels::ab_switch!("LATENT_STUDIO_CANDLE_SOFTMAX");
            if !candle_only && scale > 0.0 && crate::kernels::gpu::softmax::applies(q) {
                return Self::Fused(scale);
            }
        }
        Self::ScaleQueries(scale)
    }

    fn prescaled(&self, q: &Tensor) -> Result<Tensor> {
        match self {
            Self::ScaleQueries(scale) => q * *scale,
            #[cfg(feature = "cuda")]
            Self::Fused(_) => Ok(q.clone()),
        }
    }

    fn of(&self, scores: &Tensor) -> Result<Tensor> {
        match self {
            Self::ScaleQueries(_) => candle_nn::ops::softmax_last_dim(scores),
            #[cfg(feature = "cuda")]
            Self::Fused(scale) => {
                crate::kernels::gpu::softmax::scaled_softmax_last_dim(scores, *scale)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn sliced_equals_whole() {
        let device = Device::Cpu;
        let q = Tensor::randn(0f32, 1.0, (1, 1, 7, 4), &device).unwrap();
        let k = Tensor::randn(0f32, 1.0, (1, 1, 6, 4), &device).unwrap();
        let v = Tensor::randn(0f32, 1.0, (1, 1, 6, 4), &device).unwrap();
        // A block of 12 scores forces slices of 2 queries (and a short last one for 7 queries).
        let in_slices = sliced(&q, &k, &v, 0.5, 12).unwrap();
        let manual = {
            let scores = (q.matmul(&k.t().unwrap()).unwrap() * 0.5).unwrap();
            candle_nn::ops::softmax_last_dim(&scores)
                .unwrap()
                .matmul(&v)
                .unwrap()
        };
        let diff = crate::kernels::max_abs_diff(&in_slices, &manual);
        assert!(diff < 1e-5);
    }

    /// `(B, N, H·D)` projections seen as `(B, H, N, D)`, as the UNet's attention passes them.
    #[cfg(target_arch = "x86_64")]
    fn heads_view(
        batch: usize,
        tokens: usize,
        heads: usize,
        head_dim: usize,
        scale: f32,
    ) -> Tensor {
        let t =
            Tensor::randn(0f32, scale, (batch, tokens, heads * head_dim), &Device::Cpu).unwrap();
        t.reshape((batch, tokens, heads, head_dim))
            .unwrap()
            .transpose(1, 2)
            .unwrap()
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn fused_equals_sliced_products() {
        if !online_softmax::available(8) {
            return;
        }
        // (batch, heads, queries, keys, head_dim): SD 1.x self- and cross-attention shapes in
        // small, keys spanning several blocks with a partial tile, the VAE's single wide head,
        // and query counts that leave partial register tiles and blocks.
        let cases = [
            (2, 3, 70, 77, 40),
            (1, 2, 131, 1300, 40),
            (2, 1, 67, 64, 512),
            (1, 4, 5, 9, 64),
            (1, 2, 64, 700, 160),
            (1, 2, 100, 333, 80),
            (1, 1, 1, 1, 8),
        ];
        for (batch, heads, queries, keys, head_dim) in cases {
            // A large spread of scores checks the running maximum across key blocks.
            let q = heads_view(batch, queries, heads, head_dim, 3.0);
            let k = heads_view(batch, keys, heads, head_dim, 1.0);
            let v = heads_view(batch, keys, heads, head_dim, 1.0);
            let scale = 1.0 / (head_dim as f64).sqrt();
            let reference = sliced(&q, &k, &v, scale, SCORE_BLOCK_ELEMENTS).unwrap();
            // The AVX-512 kernels where this CPU has them, and the AVX2 ones in any case.
            for arithmetic in [
                online_softmax::Arithmetic::F32,
                online_softmax::Arithmetic::F32Avx2,
            ] {
                let fused = fused(arithmetic, &q, &k, &v, scale).unwrap();
                assert_eq!(fused.dims(), reference.dims());
                let diff = crate::kernels::max_abs_diff(&fused, &reference);
                assert!(
                    diff < 2e-5,
                    "max diff {diff} for {arithmetic:?} {:?}",
                    (batch, heads, queries, keys, head_dim)
                );
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn fused_bf16_is_close_to_f32() {
        if !online_softmax::available(8)
            || !online_softmax_avx512::available::<online_softmax_avx512::Bf16>(8)
        {
            return;
        }
        // As above, plus an odd number of keys in a partial tile and the VAE's 512-wide head.
        let cases = [
            (2, 3, 70, 77, 40),
            (1, 2, 131, 1300, 40),
            (2, 1, 67, 65, 512),
            (1, 4, 5, 9, 64),
            (1, 2, 64, 700, 160),
            (1, 2, 100, 333, 80),
            (1, 1, 1, 1, 8),
        ];
        for (batch, heads, queries, keys, head_dim) in cases {
            let q = heads_view(batch, queries, heads, head_dim, 1.0);
            let k = heads_view(batch, keys, heads, head_dim, 1.0);
            let v = heads_view(batch, keys, heads, head_dim, 1.0);
            let scale = 1.0 / (head_dim as f64).sqrt();
            let bf16 = fused(online_softmax::Arithmetic::Bf16, &q, &k, &v, scale).unwrap();
            let reference = sliced(&q, &k, &v, scale, SCORE_BLOCK_ELEMENTS).unwrap();
            assert_eq!(bf16.dims(), reference.dims());
            let diff = crate::kernels::max_abs_diff(&bf16, &reference);
            // Inputs and probabilities rounded to 8 bits of mantissa (relative 2⁻⁹), outputs of
            // size ≤ ~3: differences of a few 1e-3, against O(1) for a wrong index.
            assert!(
                diff > 0.0 && diff < 2e-2,
                "max diff {diff} for {:?}",
                (batch, heads, queries, keys, head_dim)
            );
        }
    }
}
