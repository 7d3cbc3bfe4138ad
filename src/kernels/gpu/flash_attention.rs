//! Fused attention on CUDA devices (`flash_attention.cu`): `softmax(scale·q·kᵀ)·v` on tensor
//! cores with a running softmax, so the `N×M` score matrix is never written. It reads q, k and
//! v through their strides (the UNet's `(B, N, H, D)` projections seen as `(B, H, N, D)` need
//! no copies) and writes `(B, N, H, D)`, which merges back into channels for free.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{DeviceRepr, LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::{CudaDType, WrapErr};
use candle_core::{
    CpuStorage, CudaStorage, CustomOp3, DType, Device, Layout, Result, Shape, Tensor,
};

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/flash_attention.ptx"));
const MODULE: &str = "latent_studio_flash_attention";
/// Head sizes the kernels are instantiated for (`FLASH_ATTENTION_SIZES`); a head runs in the
/// smallest one that holds it, zero-padded.
const PADDED_HEAD_SIZES: [usize; 7] = [32, 48, 64, 80, 96, 128, 160];
/// Queries per block and threads per block (`BLOCK_QUERIES`, `WARPS` · 32 in the kernel).
const BLOCK_QUERIES: usize = 64;
const THREADS: u32 = 128;

/// `softmax(q·kᵀ·scale)·v` for `q: (B, H, N, D)`, `k, v: (B, H, M, D)` on a CUDA device;
/// returns a `(B, H, N, D)` view of a `(B, N, H, D)` buffer. Check [`applies`] first.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64) -> Result<Tensor> {
    let (batch, heads, _, head_dim) = q.dims4()?;
    let (k_batch, k_heads, _, k_dim) = k.dims4()?;
    if (k_batch, k_heads, k_dim) != (batch, heads, head_dim) || v.dims() != k.dims() {
        candle_core::bail!(
            "attention: q {:?}, k {:?} and v {:?} do not fit together",
            q.dims(),
            k.dims(),
            v.dims()
        );
    }
    q.apply_op3_no_bwd(
        k,
        v,
        &FlashAttention {
            scale_log2: (scale * std::f64::consts::LOG2_E) as f32,
        },
    )?
    .transpose(1, 2)
}

/// Whether [`attention`] takes these tensors: f16/bf16 on a CUDA GPU with tensor-core
/// `mma.sync` (compute capability 8.0+), an even head size up to 160 that is a multiple of 8,
/// every dimension but the head's strided in whole 16-byte pieces (the kernel's loads), and
/// sizes within its 32-bit indices. `LATENT_STUDIO_UNFUSED_ATTENTION=1` turns it off, for
/// A/B runs against the sliced matrix products.
pub fn applies(q: &Tensor, k: &Tensor, v: &Tensor) -> bool {
    let unfused = crate::kernels::ab_switch!("LATENT_STUDIO_UNFUSED_ATTENTION");
    let Device::Cuda(device) = q.device() else {
        return false;
    };
    let suitable = |t: &Tensor| {
        let (stride, offset) = (t.stride(), t.layout().start_offset());
        t.device().same_device(q.device())
            && t.dtype() == q.dtype()
            && t.rank() == 4
            && stride[3] == 1
            && stride[..3].iter().all(|s| s % 8 == 0)
            && offset % 8 == 0
            && t.dims().iter().all(|&d| d > 0 && d < i32::MAX as usize)
    };
    let head_dim = q.dims().last().copied().unwrap_or(0);
    !unfused
        && matches!(q.dtype(), DType::F16 | DType::BF16)
        && suitable(q)
        && suitable(k)
        && suitable(v)
        && head_dim % 8 == 0
        && head_dim <= PADDED_HEAD_SIZES[PADDED_HEAD_SIZES.len() - 1]
        && q.dim(0)
            .ok()
            .zip(q.dim(1).ok())
            .is_some_and(|(b, h)| b * h < 65_536)
        && has_tensor_cores(device)
}

fn has_tensor_cores(device: &candle_core::CudaDevice) -> bool {
    static CAPABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *CAPABLE.get_or_init(|| {
        device
            .cuda_stream()
            .context()
            .compute_capability()
            .is_ok_and(|(major, _)| major >= 8)
    })
}

/// Key/value tiles in flight: two (the next tile's copy overlapping this one's products)
/// where both fit the kernel's 48 KiB of static shared memory, i.e. padded head sizes ≤ 80.
/// `LATENT_STUDIO_FLASH_STAGES=1` keeps one, for A/B runs.
fn stages(padded_head: usize) -> usize {
    let single = crate::kernels::ab_switch!("LATENT_STUDIO_FLASH_STAGES");
    if single || padded_head > 80 {
        1
    } else {
        2
    }
}

struct FlashAttention {
    scale_log2: f32,
}

/// Batch, head and token strides of a `(B, H, N, D)` layout, in elements.
fn strides(layout: &Layout) -> [i64; 3] {
    let stride = layout.stride();
    [stride[0] as i64, stride[1] as i64, stride[2] as i64]
}

impl FlashAttention {
    fn run<T: CudaDType + DeviceRepr>(
        &self,
        suffix: &str,
        (q, q_layout): (&CudaStorage, &Layout),
        (k, k_layout): (&CudaStorage, &Layout),
        (v, v_layout): (&CudaStorage, &Layout),
    ) -> Result<(CudaStorage, Shape)> {
        let [batch, heads, queries, head_dim] = *q_layout.dims() else {
            candle_core::bail!("flash attention: q must be (B, H, N, D)");
        };
        let keys = k_layout.dims()[2];
        let Some(padded) = PADDED_HEAD_SIZES.iter().find(|&&size| size >= head_dim) else {
            candle_core::bail!("flash attention: no kernel for head size {head_dim}");
        };
        let device = q.device().clone();
        let q_data = q.as_cuda_slice::<T>()?.slice(q_layout.start_offset()..);
        let k_data = k.as_cuda_slice::<T>()?.slice(k_layout.start_offset()..);
        let v_data = v.as_cuda_slice::<T>()?.slice(v_layout.start_offset()..);
        let elements = batch * queries * heads * head_dim;
        // SAFETY: every (query, head) row of the output is written by exactly one warp.
        let mut out = unsafe { device.alloc::<T>(elements)? };
        let function = device.get_or_load_custom_func(
            &format!("flash_attention_{suffix}_{padded}_{}", stages(*padded)),
            MODULE,
            PTX,
        )?;
        let [q_batch, q_head, q_token] = strides(q_layout);
        let [k_batch, k_head, k_token] = strides(k_layout);
        let [v_batch, v_head, v_token] = strides(v_layout);
        let (heads_arg, queries_arg, keys_arg, dim_arg) =
            (heads as i32, queries as i32, keys as i32, head_dim as i32);
        let mut launch = function.builder();
        launch.arg(&q_data);
        launch.arg(&k_data);
        launch.arg(&v_data);
        launch.arg(&mut out);
        for stride in [
            &q_batch, &q_head, &q_token, &k_batch, &k_head, &k_token, &v_batch, &v_head, &v_token,
        ] {
            launch.arg(stride);
        }
        launch.arg(&heads_arg);
        launch.arg(&queries_arg);
        launch.arg(&keys_arg);
        launch.arg(&dim_arg);
        launch.arg(&self.scale_log2);
        let config = LaunchConfig {
            grid_dim: (
                queries.div_ceil(BLOCK_QUERIES) as u32,
                (batch * heads) as u32,
                1,
            ),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: arguments match `flash_attention_<suffix>_<padded>_<stages>` in the .cu file;
        // `applies` checked the strides, alignment and index ranges the kernel relies on.
        unsafe { launch.launch(config) }.w()?;
        Ok((
            CudaStorage::wrap_cuda_slice(out, device),
            Shape::from((batch, queries, heads, head_dim)),
        ))
    }
}

impl CustomOp3 for FlashAttention {
    fn name(&self) -> &'static str {
        "flash-attention"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        candle_core::bail!("flash attention runs on CUDA devices only")
    }

    fn cuda_fwd(
        &self,
        q: &CudaStorage,
        q_layout: &Layout,
        k: &CudaStorage,
        k_layout: &Layout,
        v: &CudaStorage,
        v_layout: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        if k.dtype() != q.dtype() || v.dtype() != q.dtype() {
            candle_core::bail!("flash attention: q, k and v differ in dtype");
        }
        let (q, k, v) = ((q, q_layout), (k, k_layout), (v, v_layout));
        match q.0.dtype() {
            DType::F16 => self.run::<half::f16>("f16", q, k, v),
            DType::BF16 => self.run::<half::bf16>("bf16", q, k, v),
            other => candle_core::bail!("flash attention: no {other:?} kernel"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(B, N, H·D)` projections seen as `(B, H, N, D)`, as the UNet passes them.
    fn heads_view(device: &Device, dims: (usize, usize, usize, usize), spread: f64) -> Tensor {
        let (batch, tokens, heads, head_dim) = dims;
        Tensor::randn(
            0f32,
            spread as f32,
            (batch, tokens, heads * head_dim),
            device,
        )
        .and_then(|t| t.to_dtype(DType::F16))
        .and_then(|t| t.reshape((batch, tokens, heads, head_dim)))
        .and_then(|t| t.transpose(1, 2))
        .expect("random input on the GPU")
    }

    /// Needs a CUDA GPU with compute capability 8.0+ (`scripts/gpu-check.sh` runs it there);
    /// elsewhere there is nothing to test and it returns at once.
    #[test]
    fn gpu_flash_attention_matches_f32_products() {
        let Ok(device) = crate::kernels::new_cuda_device() else {
            eprintln!("no CUDA device: flash attention not tested");
            return;
        };
        // (batch, heads, queries, keys, head_dim): SD 1.5's self/cross-attention head sizes
        // (40, 80, 160), SDXL's and SD 2's (64), partial query blocks and key tiles.
        let cases = [
            (2, 8, 4096, 4096, 40),
            (2, 8, 1024, 77, 80),
            (2, 8, 256, 256, 160),
            (2, 10, 4096, 4096, 64),
            (2, 20, 1024, 77, 64),
            (1, 3, 70, 131, 64),
            (1, 2, 1, 1, 40),
            (1, 1, 100, 65, 32),
            (1, 2, 130, 200, 96),
            (1, 1, 65, 64, 128),
        ];
        for (batch, heads, queries, keys, head_dim) in cases {
            let q = heads_view(&device, (batch, queries, heads, head_dim), 2.0);
            let k = heads_view(&device, (batch, keys, heads, head_dim), 1.0);
            let v = heads_view(&device, (batch, keys, heads, head_dim), 1.0);
            assert!(applies(&q, &k, &v), "not taken: {head_dim}");
            let scale = 1.0 / (head_dim as f64).sqrt();
            let fused = attention(&q, &k, &v, scale)
                .and_then(|t| t.to_dtype(DType::F32))
                .expect("flash attention");
            let f32 = |t: &Tensor| t.to_dtype(DType::F32).and_then(|t| t.contiguous());
            let (q, k, v) = (f32(&q).unwrap(), f32(&k).unwrap(), f32(&v).unwrap());
            let reference = candle_nn::ops::softmax_last_dim(
                &(q.matmul(&k.t().unwrap()).unwrap() * scale).unwrap(),
            )
            .unwrap()
            .matmul(&v)
            .unwrap();
            assert_eq!(fused.dims(), reference.dims());
            let diff = crate::kernels::max_abs_diff(&fused, &reference);
            // f16 inputs, probabilities and result: ~3 significant digits; a wrong fragment or
            // tile index would be off by O(1).
            assert!(
                diff < 1e-2,
                "max diff {diff} for {:?}",
                (batch, heads, queries, keys, head_dim)
            );
        }
    }
}
