//! GroupNorm (+ SiLU) on CUDA devices in two kernels (`group_norm.cu`): one pass that reads
//! the input for the statistics, one that reads it again and writes the output. candle-nn's
//! GroupNorm is ten element-wise and reduction kernels (f32 copy, mean, subtract, square,
//! mean, divide, cast back, scale, shift, then SiLU), each a full pass over the tensor.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{DeviceRepr, LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::{CudaDType, WrapErr};
use candle_core::{CpuStorage, CudaStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/group_norm.ptx"));
const MODULE: &str = "latent_studio_group_norm";
/// Threads per block; `THREADS` in group_norm.cu.
const THREADS: u32 = 256;

/// `group_norm(xs)` (then `silu` when asked) for a contiguous `(B, C, …)` tensor on a CUDA
/// device; `gamma`, `beta`: `(C,)` in the input's dtype.
pub fn forward(
    xs: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    groups: usize,
    eps: f64,
    silu: bool,
) -> Result<Tensor> {
    let xs = xs.contiguous()?;
    xs.apply_op3_no_bwd(
        &gamma.contiguous()?,
        &beta.contiguous()?,
        &GroupNormOp {
            groups,
            eps: eps as f32,
            silu,
        },
    )
}

/// Whether [`forward`] takes this input: CUDA, a float dtype shared with the weights, and
/// groups small enough for the kernels' 32-bit indices.
pub fn applies(xs: &Tensor, gamma: &Tensor, groups: usize) -> bool {
    let dims = xs.dims();
    xs.device().is_cuda()
        && matches!(xs.dtype(), DType::F16 | DType::BF16 | DType::F32)
        && gamma.dtype() == xs.dtype()
        && dims.len() >= 3
        && groups > 0
        && dims[1].is_multiple_of(groups)
        && xs.elem_count() / (dims[0] * groups).max(1) < u32::MAX as usize / 2
}

/// `LATENT_STUDIO_SCALAR_GROUP_NORM=1` keeps the one-value-at-a-time kernels, for A/B runs.
fn scalar_only() -> bool {
    crate::kernels::ab_switch!("LATENT_STUDIO_SCALAR_GROUP_NORM")
}

struct GroupNormOp {
    groups: usize,
    eps: f32,
    silu: bool,
}

impl GroupNormOp {
    fn run<T: CudaDType + DeviceRepr>(
        &self,
        suffix: &str,
        (xs, xs_layout): (&CudaStorage, &Layout),
        (gamma, gamma_layout): (&CudaStorage, &Layout),
        (beta, beta_layout): (&CudaStorage, &Layout),
    ) -> Result<(CudaStorage, Shape)> {
        let dims = xs_layout.shape().dims();
        let (batch, channels) = (dims[0], dims[1]);
        if gamma_layout.shape().elem_count() != channels
            || beta_layout.shape().elem_count() != channels
        {
            candle_core::bail!("group norm: weights do not have {channels} channels");
        }
        let elements = xs_layout.shape().elem_count();
        let rows = (batch * self.groups) as u32;
        let group_len = (elements / (batch * self.groups)) as u32;
        let channels_per_group = (channels / self.groups) as u32;
        let spatial = group_len / channels_per_group.max(1);
        // 16-byte pieces where the layout allows (every Stable Diffusion shape does), else
        // one value at a time.
        let piece = (16 / std::mem::size_of::<T>()) as u32;
        let in_pieces = !scalar_only()
            && group_len.is_multiple_of(piece)
            && spatial.is_multiple_of(piece)
            && xs_layout.start_offset().is_multiple_of(piece as usize);
        let (units, kind) = if in_pieces {
            (group_len / piece, "_pieces")
        } else {
            (group_len, "")
        };
        // Enough blocks for the whole GPU even at batch 1 and 32 groups.
        let splits = units.div_ceil(THREADS * 16).clamp(1, 64);
        let normalise_blocks = units.div_ceil(THREADS * 4).clamp(1, 4096);

        let device = xs.device().clone();
        let input = xs.as_cuda_slice::<T>()?.slice(xs_layout.start_offset()..);
        let gamma = gamma
            .as_cuda_slice::<T>()?
            .slice(gamma_layout.start_offset()..);
        let beta = beta
            .as_cuda_slice::<T>()?
            .slice(beta_layout.start_offset()..);
        // SAFETY: the statistics kernel writes all `rows * splits * 3` values before the
        // normalising kernel (same stream) reads them; the latter writes every output element.
        let partials = unsafe { device.alloc::<f32>((rows * splits * 3) as usize)? };
        let mut out = unsafe { device.alloc::<T>(elements)? };

        let statistics = device.get_or_load_custom_func(
            &format!("group_norm_statistics{kind}_{suffix}"),
            MODULE,
            PTX,
        )?;
        let mut launch = statistics.builder();
        launch.arg(&input);
        launch.arg(&partials);
        launch.arg(&group_len);
        let config = LaunchConfig {
            grid_dim: (splits, rows, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: arguments match the kernel's signature in group_norm.cu.
        unsafe { launch.launch(config) }.w()?;

        let normalise = device.get_or_load_custom_func(
            &format!("group_norm_normalise{kind}_{suffix}"),
            MODULE,
            PTX,
        )?;
        let groups = self.groups as u32;
        let silu = i32::from(self.silu);
        let mut launch = normalise.builder();
        launch.arg(&input);
        launch.arg(&mut out);
        launch.arg(&partials);
        launch.arg(&gamma);
        launch.arg(&beta);
        launch.arg(&group_len);
        launch.arg(&spatial);
        launch.arg(&channels_per_group);
        launch.arg(&groups);
        launch.arg(&splits);
        launch.arg(&self.eps);
        launch.arg(&silu);
        let config = LaunchConfig {
            grid_dim: (normalise_blocks, rows, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: as above.
        unsafe { launch.launch(config) }.w()?;
        Ok((
            CudaStorage::wrap_cuda_slice(out, device),
            xs_layout.shape().clone(),
        ))
    }
}

impl CustomOp3 for GroupNormOp {
    fn name(&self) -> &'static str {
        "group-norm"
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
        candle_core::bail!("the CUDA group norm runs on CUDA devices only")
    }

    fn cuda_fwd(
        &self,
        xs: &CudaStorage,
        xs_layout: &Layout,
        gamma: &CudaStorage,
        gamma_layout: &Layout,
        beta: &CudaStorage,
        beta_layout: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        if !xs_layout.is_contiguous() {
            candle_core::bail!("group norm: the input must be contiguous");
        }
        if gamma.dtype() != xs.dtype() || beta.dtype() != xs.dtype() {
            candle_core::bail!("group norm: weights and input differ in dtype");
        }
        let (xs, gamma, beta) = ((xs, xs_layout), (gamma, gamma_layout), (beta, beta_layout));
        match xs.0.dtype() {
            DType::F32 => self.run::<f32>("f32", xs, gamma, beta),
            DType::F16 => self.run::<half::f16>("f16", xs, gamma, beta),
            DType::BF16 => self.run::<half::bf16>("bf16", xs, gamma, beta),
            other => candle_core::bail!("group norm: no {other:?} kernel"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Needs a CUDA GPU (`scripts/gpu-check.sh` runs it there); elsewhere it returns at once.
    #[test]
    fn gpu_group_norm_matches_candle() {
        let Ok(device) = crate::kernels::new_cuda_device() else {
            eprintln!("no CUDA device: group norm not tested");
            return;
        };
        // VAE- and UNet-like shapes (16-byte pieces), and one whose planes are not a whole
        // number of pieces (3×3), which takes the one-value kernels.
        for (dims, groups) in [
            ((1, 128, 64, 64), 32),
            ((2, 320, 16, 16), 32),
            ((2, 64, 3, 3), 8),
        ] {
            let channels = dims.1;
            let xs = (Tensor::randn(0f32, 2.0, dims, &device).unwrap() + 0.5).unwrap();
            let gamma = Tensor::randn(1f32, 0.2, channels, &device).unwrap();
            let beta = Tensor::randn(0f32, 0.2, channels, &device).unwrap();
            let reference_norm =
                candle_nn::GroupNorm::new(gamma.clone(), beta.clone(), channels, groups, 1e-6)
                    .unwrap();
            for dtype in [DType::F32, DType::F16] {
                for silu in [false, true] {
                    let cast = |t: &Tensor| t.to_dtype(dtype).unwrap();
                    let ours = forward(&cast(&xs), &cast(&gamma), &cast(&beta), groups, 1e-6, silu)
                        .unwrap()
                        .to_dtype(DType::F32)
                        .unwrap();
                    let mut reference = candle_core::Module::forward(&reference_norm, &xs).unwrap();
                    if silu {
                        reference = candle_nn::ops::silu(&reference).unwrap();
                    }
                    let diff = crate::kernels::max_abs_diff(&ours, &reference);
                    // f16: inputs and outputs rounded (half an ulp of values up to ~8).
                    let limit = if dtype == DType::F32 { 1e-4 } else { 2e-2 };
                    assert!(
                        diff < limit,
                        "max diff {diff} for {dims:?} {dtype:?} silu {silu}"
                    );
                }
            }
        }
    }
}
