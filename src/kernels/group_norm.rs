//! GroupNorm, optionally followed by SiLU (every ResNet block does `silu(norm(x))`).
//!
//! On the CPU in f32 it is one task per (image, group) — a group's channels are contiguous in
//! NCHW — that reads the group twice for its mean and variance and writes the normalised,
//! scaled, shifted and activated values in a third pass. candle's GroupNorm followed by its
//! SiLU makes about eight passes over the tensor and a scalar `expf` per element, which at
//! 128 channels × 512² (the VAE) is pure memory traffic. On CUDA devices two kernels of our own
//! do the same ([`crate::kernels::gpu::group_norm`]); elsewhere candle's modules run.

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::VarBuilder;
use rayon::prelude::*;

#[derive(Debug, Clone)]
pub struct GroupNorm {
    weight: Tensor,
    bias: Tensor,
    groups: usize,
    eps: f64,
    inner: candle_nn::GroupNorm,
}

/// `weight` and `bias` of `channels` from `vb`, as `candle_nn::group_norm` reads them.
pub fn group_norm(groups: usize, channels: usize, eps: f64, vb: VarBuilder) -> Result<GroupNorm> {
    let weight = vb.get(channels, "weight")?;
    let bias = vb.get(channels, "bias")?;
    let inner = candle_nn::GroupNorm::new(weight.clone(), bias.clone(), channels, groups, eps)?;
    Ok(GroupNorm {
        weight,
        bias,
        groups,
        eps,
        inner,
    })
}

impl GroupNorm {
    /// `silu(group_norm(xs))`.
    pub fn forward_silu(&self, xs: &Tensor) -> Result<Tensor> {
        crate::kernels::profile::measure("group norm", xs.device(), || self.dispatch(xs, true))
    }

    fn dispatch(&self, xs: &Tensor, silu: bool) -> Result<Tensor> {
        if self.fast_path_applies(xs) {
            return self.cpu_forward(xs, silu);
        }
        #[cfg(feature = "cuda")]
        if self.cuda_applies(xs) {
            return self.cuda_forward(xs, silu);
        }
        let normed = self.inner.forward(xs)?;
        if silu {
            normed.silu()
        } else {
            Ok(normed)
        }
    }

    /// `LATENT_STUDIO_CANDLE_GROUP_NORM=1` keeps candle-nn's GroupNorm on GPUs, for A/B runs.
    #[cfg(feature = "cuda")]
    fn cuda_applies(&self, xs: &Tensor) -> bool {
        let candle_only = crate::kernels::ab_switch!("LATENT_STUDIO_CANDLE_GROUP_NORM");
        !candle_only && crate::kernels::gpu::group_norm::applies(xs, &self.weight, self.groups)
    }

    #[cfg(feature = "cuda")]
    fn cuda_forward(&self, xs: &Tensor, silu: bool) -> Result<Tensor> {
        crate::kernels::gpu::group_norm::forward(
            xs,
            &self.weight,
            &self.bias,
            self.groups,
            self.eps,
            silu,
        )
    }

    fn fast_path_applies(&self, xs: &Tensor) -> bool {
        matches!(xs.device(), Device::Cpu)
            && xs.dtype() == DType::F32
            && self.weight.dtype() == DType::F32
            && xs.rank() >= 3
            && xs.dim(1).is_ok_and(|c| c > 0 && c % self.groups == 0)
    }

    fn cpu_forward(&self, xs: &Tensor, silu: bool) -> Result<Tensor> {
        let xs = xs.contiguous()?;
        let (batch, channels) = (xs.dim(0)?, xs.dim(1)?);
        let spatial = xs.elem_count() / (batch * channels).max(1);
        let per_group = channels / self.groups;
        let gamma = self.weight.to_vec1::<f32>()?;
        let beta = self.bias.to_vec1::<f32>()?;
        let group_len = per_group * spatial;
        let mut out = vec![0f32; xs.elem_count()];
        if group_len > 0 {
            crate::kernels::with_cpu_f32(&xs, |input| {
                out.par_chunks_mut(group_len)
                    .zip(input[..xs.elem_count()].par_chunks(group_len))
                    .enumerate()
                    .for_each(|(index, (out, input))| {
                        let first_channel = (index % self.groups) * per_group;
                        let (mean, variance) = mean_and_variance(input);
                        let inverse_std = 1.0 / (variance + self.eps).sqrt();
                        for (c, (out, input)) in out
                            .chunks_exact_mut(spatial)
                            .zip(input.chunks_exact(spatial))
                            .enumerate()
                        {
                            let scale = inverse_std * gamma[first_channel + c] as f64;
                            let shift = beta[first_channel + c] as f64 - mean * scale;
                            scale_shift(input, out, scale as f32, shift as f32, silu);
                        }
                    })
            })?;
        }
        Tensor::from_vec(out, xs.shape(), xs.device())
    }
}

impl Module for GroupNorm {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        crate::kernels::profile::measure("group norm", xs.device(), || self.dispatch(xs, false))
    }
}

/// Mean and (biased) variance, in two passes: the second sums squared deviations, so that a
/// large mean does not cancel the variance away. Sums run in 8 f32 lanes per block of 512
/// values and in f64 across blocks.
fn mean_and_variance(values: &[f32]) -> (f64, f64) {
    let count = values.len().max(1) as f64;
    let mean = total(values, |v| v) / count;
    let mean_f32 = mean as f32;
    let variance = total(values, |v| (v - mean_f32) * (v - mean_f32)) / count;
    (mean, variance)
}

/// `Σ term(v)`: 8 f32 lanes per block of 512 values, f64 across blocks. Generic, so that
/// `term` is inlined into the vectorised loop.
fn total(values: &[f32], term: impl Fn(f32) -> f32) -> f64 {
    values
        .chunks(512)
        .map(|block| {
            let mut lanes = [0f32; 8];
            let mut chunks = block.chunks_exact(8);
            for chunk in &mut chunks {
                for (lane, &value) in lanes.iter_mut().zip(chunk) {
                    *lane += term(value);
                }
            }
            let tail: f32 = chunks.remainder().iter().map(|&v| term(v)).sum();
            lanes.iter().map(|&l| l as f64).sum::<f64>() + tail as f64
        })
        .sum()
}

/// `out = input·scale + shift`, then SiLU if asked.
fn scale_shift(input: &[f32], out: &mut [f32], scale: f32, shift: f32, silu: bool) {
    #[cfg(target_arch = "x86_64")]
    if crate::kernels::simd::available() {
        // SAFETY: AVX2 and FMA were just checked.
        unsafe { scale_shift_avx2(input, out, scale, shift, silu) };
        return;
    }
    for (out, &x) in out.iter_mut().zip(input) {
        let y = x * scale + shift;
        *out = if silu { y / (1.0 + (-y).exp()) } else { y };
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn scale_shift_avx2(input: &[f32], out: &mut [f32], scale: f32, shift: f32, silu: bool) {
    use std::arch::x86_64::*;
    let (scale_v, shift_v) = (_mm256_set1_ps(scale), _mm256_set1_ps(shift));
    let mut inputs = input.chunks_exact(8);
    let mut outputs = out.chunks_exact_mut(8);
    for (input, out) in (&mut inputs).zip(&mut outputs) {
        let mut y = _mm256_fmadd_ps(_mm256_loadu_ps(input.as_ptr()), scale_v, shift_v);
        if silu {
            y = crate::kernels::simd::silu(y);
        }
        _mm256_storeu_ps(out.as_mut_ptr(), y);
    }
    for (out, &x) in outputs.into_remainder().iter_mut().zip(inputs.remainder()) {
        let y = x * scale + shift;
        *out = if silu { y / (1.0 + (-y).exp()) } else { y };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equals_candles_group_norm_and_silu() {
        let device = Device::Cpu;
        let weights = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&weights, DType::F32, &device);
        // 12 channels in 4 groups; 5×7 pixels leave a tail after the 8-lane blocks; a mean of 3
        // checks the variance does not cancel.
        let norm = group_norm(4, 12, 1e-5, vb.pp("norm")).unwrap();
        let gamma = Tensor::randn(1f32, 0.5, 12, &device).unwrap();
        let beta = Tensor::randn(0f32, 0.5, 12, &device).unwrap();
        let norm = GroupNorm {
            inner: candle_nn::GroupNorm::new(gamma.clone(), beta.clone(), 12, 4, 1e-5).unwrap(),
            weight: gamma,
            bias: beta,
            ..norm
        };
        for shape in [(2, 12, 5, 7), (1, 12, 64, 64)] {
            let xs = (Tensor::randn(0f32, 2.0, shape, &device).unwrap() + 3.0).unwrap();
            let reference = norm.inner.forward(&xs).unwrap();
            let ours = norm.forward(&xs).unwrap();
            let diff = crate::kernels::max_abs_diff(&ours, &reference);
            assert!(diff < 1e-5, "group norm differs by {diff} at {shape:?}");
            let ours = norm.forward_silu(&xs).unwrap();
            let diff = crate::kernels::max_abs_diff(&ours, &reference.silu().unwrap());
            assert!(
                diff < 1e-5,
                "group norm + silu differs by {diff} at {shape:?}"
            );
        }
    }
}
