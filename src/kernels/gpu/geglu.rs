//! GEGLU's gate on CUDA devices in one kernel (`geglu.cu`).

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{DeviceRepr, LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::{CudaDType, WrapErr};
use candle_core::{CpuStorage, CudaStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/geglu.ptx"));
const MODULE: &str = "latent_studio_geglu";
const THREADS: u32 = 256;
/// Most rows of blocks per launch (CUDA's grid limit in y is 65535); more rows are strided.
const MAX_ROW_BLOCKS: usize = 65_535;

/// `projected[..., :inner] · gelu(projected[..., inner:])` for a CUDA tensor whose last
/// dimension is `2·inner`; check [`applies`] first.
pub fn geglu(projected: &Tensor, inner: usize) -> Result<Tensor> {
    projected.contiguous()?.apply_op1_no_bwd(&Geglu { inner })
}

/// Whether [`geglu`] takes this tensor: CUDA, a float dtype, the last dimension `2·inner`,
/// sizes within the kernel's 32-bit indices.
pub fn applies(projected: &Tensor, inner: usize) -> bool {
    let rows = projected.elem_count() / (2 * inner).max(1);
    projected.device().is_cuda()
        && matches!(projected.dtype(), DType::F16 | DType::BF16 | DType::F32)
        && inner > 0
        && projected.dims().last() == Some(&(2 * inner))
        && inner < u32::MAX as usize
        && rows < u32::MAX as usize
}

struct Geglu {
    inner: usize,
}

impl Geglu {
    fn run<T: CudaDType + DeviceRepr>(
        &self,
        suffix: &str,
        projected: &CudaStorage,
        layout: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let mut dims = layout.dims().to_vec();
        let rows = layout.shape().elem_count() / (2 * self.inner);
        if let Some(last) = dims.last_mut() {
            *last = self.inner;
        }
        let device = projected.device().clone();
        let input = projected
            .as_cuda_slice::<T>()?
            .slice(layout.start_offset()..);
        // SAFETY: the kernel writes every one of the `rows · inner` outputs.
        let mut out = unsafe { device.alloc::<T>(rows * self.inner)? };
        if rows > 0 {
            let function =
                device.get_or_load_custom_func(&format!("geglu_{suffix}"), MODULE, PTX)?;
            let (rows_arg, inner_arg) = (rows as u32, self.inner as u32);
            let mut launch = function.builder();
            launch.arg(&input);
            launch.arg(&mut out);
            launch.arg(&rows_arg);
            launch.arg(&inner_arg);
            let config = LaunchConfig {
                grid_dim: (
                    (self.inner as u32).div_ceil(THREADS),
                    rows.min(MAX_ROW_BLOCKS) as u32,
                    1,
                ),
                block_dim: (THREADS, 1, 1),
                shared_mem_bytes: 0,
            };
            // SAFETY: arguments match the kernel's signature in geglu.cu.
            unsafe { launch.launch(config) }.w()?;
        }
        Ok((CudaStorage::wrap_cuda_slice(out, device), Shape::from(dims)))
    }
}

impl CustomOp1 for Geglu {
    fn name(&self) -> &'static str {
        "geglu"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        candle_core::bail!("the CUDA GEGLU runs on CUDA devices only")
    }

    fn cuda_fwd(&self, projected: &CudaStorage, layout: &Layout) -> Result<(CudaStorage, Shape)> {
        if !layout.is_contiguous() || layout.dims().last() != Some(&(2 * self.inner)) {
            candle_core::bail!(
                "GEGLU: a contiguous input of 2·{} features expected",
                self.inner
            );
        }
        match projected.dtype() {
            DType::F32 => self.run::<f32>("f32", projected, layout),
            DType::F16 => self.run::<half::f16>("f16", projected, layout),
            DType::BF16 => self.run::<half::bf16>("bf16", projected, layout),
            other => candle_core::bail!("GEGLU: no {other:?} kernel"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Needs a CUDA GPU (`scripts/gpu-check.sh` runs it there); elsewhere it returns at once.
    #[test]
    fn gpu_geglu_matches_candle() {
        let Ok(device) = crate::kernels::new_cuda_device() else {
            eprintln!("no CUDA device: GEGLU not tested");
            return;
        };
        let projected = Tensor::randn(0f32, 2.0, (2, 77, 2 * 1280), &device).unwrap();
        let fused = geglu(&projected, 1280).unwrap();
        let value = projected.narrow(2, 0, 1280).unwrap();
        let gate = projected.narrow(2, 1280, 1280).unwrap();
        let reference = (value * gate.gelu_erf().unwrap()).unwrap();
        assert_eq!(fused.dims(), reference.dims());
        let diff = crate::kernels::max_abs_diff(&fused, &reference);
        assert!(diff < 1e-4, "max diff {diff}");
    }
}
