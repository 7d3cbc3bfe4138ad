//! GEGLU's gating, `value · gelu(gate)` with `value, gate` the two halves of the last
//! dimension (diffusers' `GEGLU`: exact, erf-based GELU). On x86-64 CPUs with AVX2 it is one
//! pass over the projection with a vectorised erf, instead of two strided halves, a scalar
//! erf per element and a product as separate tensors; on CUDA devices one kernel
//! (`gpu::geglu`).

use candle_core::{Result, Tensor};

/// `projected[..., :inner] · gelu(projected[..., inner:])`.
pub fn geglu(projected: &Tensor, inner: usize) -> Result<Tensor> {
    crate::kernels::profile::measure("GEGLU gate", projected.device(), || gate(projected, inner))
}

fn gate(projected: &Tensor, inner: usize) -> Result<Tensor> {
    let last = projected.rank().saturating_sub(1);
    #[cfg(feature = "cuda")]
    if crate::kernels::gpu::geglu::applies(projected, inner) {
        return crate::kernels::gpu::geglu::geglu(projected, inner);
    }
    #[cfg(target_arch = "x86_64")]
    if matches!(projected.device(), candle_core::Device::Cpu)
        && projected.dtype() == candle_core::DType::F32
        && projected.dim(last)? == 2 * inner
        && inner > 0
        && crate::kernels::simd::available()
    {
        return avx2::fused(projected, inner);
    }
    let value = projected.narrow(last, 0, inner)?;
    let gate = projected.narrow(last, inner, inner)?;
    value * gate.gelu_erf()?
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use candle_core::{Result, Tensor};
    use rayon::prelude::*;
    use std::arch::x86_64::*;

    pub(super) fn fused(projected: &Tensor, inner: usize) -> Result<Tensor> {
        let projected = projected.contiguous()?;
        let mut out = vec![0f32; projected.elem_count() / 2];
        crate::kernels::with_cpu_f32(&projected, |input| {
            out.par_chunks_mut(inner)
                .zip(input[..projected.elem_count()].par_chunks(2 * inner))
                .for_each(|(out, row)| {
                    let (value, gate) = row.split_at(inner);
                    // SAFETY: `geglu` checked AVX2 and FMA.
                    unsafe { gate_row(value, gate, out) };
                })
        })?;
        let mut dims = projected.dims().to_vec();
        if let Some(last) = dims.last_mut() {
            *last = inner;
        }
        Tensor::from_vec(out, dims, projected.device())
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn gate_row(value: &[f32], gate: &[f32], out: &mut [f32]) {
        use crate::kernels::simd::gelu_erf;
        let mut values = value.chunks_exact(8);
        let mut gates = gate.chunks_exact(8);
        let mut outs = out.chunks_exact_mut(8);
        for ((value, gate), out) in (&mut values).zip(&mut gates).zip(&mut outs) {
            let gated = gelu_erf(_mm256_loadu_ps(gate.as_ptr()));
            let product = _mm256_mul_ps(_mm256_loadu_ps(value.as_ptr()), gated);
            _mm256_storeu_ps(out.as_mut_ptr(), product);
        }
        let (values, gates) = (values.remainder(), gates.remainder());
        let out = outs.into_remainder();
        if !out.is_empty() {
            // The last few lanes through the same kernel, so every element rounds alike.
            let (mut gate_lanes, mut out_lanes) = ([0f32; 8], [0f32; 8]);
            gate_lanes[..gates.len()].copy_from_slice(gates);
            _mm256_storeu_ps(
                out_lanes.as_mut_ptr(),
                gelu_erf(_mm256_loadu_ps(gate_lanes.as_ptr())),
            );
            for ((out, &value), &gated) in out.iter_mut().zip(values).zip(&out_lanes) {
                *out = value * gated;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn fused_equals_candles_halves() {
        let device = Device::Cpu;
        // 2 × 3 tokens, inner 13 (not a multiple of 8: a tail in every row).
        let projected = Tensor::randn(0f32, 3.0, (2, 3, 26), &device).unwrap();
        let ours = geglu(&projected, 13).unwrap();
        let value = projected.narrow(2, 0, 13).unwrap();
        let gate = projected.narrow(2, 13, 13).unwrap();
        let reference = (value * gate.gelu_erf().unwrap()).unwrap();
        assert_eq!(ours.dims(), [2, 3, 13]);
        let diff = crate::kernels::max_abs_diff(&ours, &reference);
        assert!(diff < 1e-5, "geglu differs by {diff}");
    }
}
