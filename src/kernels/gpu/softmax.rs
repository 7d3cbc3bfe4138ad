//! `softmax(scale · x)` over the last dimension on CUDA devices, one block per row
//! (`softmax.cu`), for attention scores.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{DeviceRepr, LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::{CudaDType, WrapErr};
use candle_core::{CpuStorage, CudaStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/softmax.ptx"));
const MODULE: &str = "latent_studio_softmax";

/// `softmax(scale · xs)` along the last dimension; `scale` must be positive.
pub fn scaled_softmax_last_dim(xs: &Tensor, scale: f64) -> Result<Tensor> {
    if !(scale > 0.0 && scale.is_finite()) {
        candle_core::bail!("scaled softmax: the scale must be positive, got {scale}");
    }
    xs.contiguous()?.apply_op1_no_bwd(&ScaledSoftmax {
        scale: scale as f32,
    })
}

/// Whether [`scaled_softmax_last_dim`] takes this tensor: CUDA, a float dtype, rows that fit
/// the kernel's 32-bit column index.
pub fn applies(xs: &Tensor) -> bool {
    xs.device().is_cuda()
        && matches!(xs.dtype(), DType::F16 | DType::BF16 | DType::F32)
        && xs.rank() >= 1
        && xs
            .dims()
            .last()
            .is_some_and(|&cols| cols > 0 && cols < u32::MAX as usize)
}

struct ScaledSoftmax {
    scale: f32,
}

impl ScaledSoftmax {
    fn run<T: CudaDType + DeviceRepr>(
        &self,
        suffix: &str,
        xs: &CudaStorage,
        layout: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let shape = layout.shape();
        let cols = *shape.dims().last().unwrap_or(&1);
        let rows = shape.elem_count() / cols.max(1);
        let device = xs.device().clone();
        let input = xs.as_cuda_slice::<T>()?.slice(layout.start_offset()..);
        // SAFETY: the kernel writes every element of every row.
        let mut out = unsafe { device.alloc::<T>(shape.elem_count())? };
        if rows > 0 {
            let function =
                device.get_or_load_custom_func(&format!("scaled_softmax_{suffix}"), MODULE, PTX)?;
            // A warp per 128 columns, up to a full block: attention rows run from 77 keys
            // (cross-attention) to 16384 (the VAE at 1024²).
            let threads = (cols.div_ceil(128) * 32).clamp(32, 1024) as u32;
            let cols = cols as u32;
            let mut launch = function.builder();
            launch.arg(&input);
            launch.arg(&mut out);
            launch.arg(&cols);
            launch.arg(&self.scale);
            let config = LaunchConfig {
                grid_dim: (rows as u32, 1, 1),
                block_dim: (threads, 1, 1),
                shared_mem_bytes: 0,
            };
            // SAFETY: arguments match the kernel's signature in softmax.cu.
            unsafe { launch.launch(config) }.w()?;
        }
        Ok((CudaStorage::wrap_cuda_slice(out, device), shape.clone()))
    }
}

impl CustomOp1 for ScaledSoftmax {
    fn name(&self) -> &'static str {
        "scaled-softmax"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        candle_core::bail!("the CUDA softmax runs on CUDA devices only")
    }

    fn cuda_fwd(&self, xs: &CudaStorage, layout: &Layout) -> Result<(CudaStorage, Shape)> {
        if !layout.is_contiguous() {
            candle_core::bail!("scaled softmax: the input must be contiguous");
        }
        if layout.shape().elem_count() / layout.shape().dims().last().copied().unwrap_or(1).max(1)
            > i32::MAX as usize
        {
            candle_core::bail!("scaled softmax: too many rows for one launch");
        }
        match xs.dtype() {
            DType::F32 => self.run::<f32>("f32", xs, layout),
            DType::F16 => self.run::<half::f16>("f16", xs, layout),
            DType::BF16 => self.run::<half::bf16>("bf16", xs, layout),
            other => candle_core::bail!("scaled softmax: no {other:?} kernel"),
        }
    }
}
