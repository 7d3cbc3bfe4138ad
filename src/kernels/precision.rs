//! The arithmetic of the CPU's large matrix products (convolutions, linear layers): float32,
//! or bfloat16 inputs with float32 sums on CPUs with AVX-512 BF16 — about twice the
//! arithmetic per instruction, for images that differ slightly from float32 (measured in
//! docs/performance-log.md). Process-wide, like the kernels it selects; every other operation
//! (norms, softmax, schedulers) stays f32 either way.
//!
//! Also here: how convolution and linear weights may stay in the f16/bf16 their file stores
//! them in and be widened to f32 per use, which halves their memory without changing a result.

use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CpuArithmetic {
    #[default]
    F32,
    Bf16,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "bf16 arithmetic needs a CPU with AVX-512 BF16 (AMD Zen 4, Intel Sapphire Rapids or newer); \
     this CPU has none — use f32"
)]
pub struct Bf16Unavailable;

static BF16: AtomicBool = AtomicBool::new(false);

/// Whether this CPU can do bf16 products.
pub fn bf16_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    return super::matmul_bf16::available();
    #[cfg(not(target_arch = "x86_64"))]
    false
}

pub fn set_cpu_arithmetic(arithmetic: CpuArithmetic) -> Result<(), Bf16Unavailable> {
    if arithmetic == CpuArithmetic::Bf16 && !bf16_available() {
        return Err(Bf16Unavailable);
    }
    BF16.store(arithmetic == CpuArithmetic::Bf16, Ordering::Relaxed);
    Ok(())
}

pub fn cpu_arithmetic() -> CpuArithmetic {
    if BF16.load(Ordering::Relaxed) {
        CpuArithmetic::Bf16
    } else {
        CpuArithmetic::F32
    }
}

thread_local! {
    static STORED_WEIGHT_PRECISION: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `build`, a convolution's or linear layer's constructor, letting the weight loader hand
/// out its weight matrix in the precision the file stores it in when the model is loaded with
/// `LoadOptions::keep_f16_weights`; the layer converts it to f32 for each use
/// ([`weight_in_f32`]). f16 → f32 is exact, so results are those of f32 weights.
pub(crate) fn with_stored_weight_precision<R>(build: impl FnOnce() -> R) -> R {
    /// Puts the flag back even if `build` panics (the worker survives panics while loading).
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            STORED_WEIGHT_PRECISION.with(|flag| flag.set(self.0));
        }
    }
    let _restore = Restore(STORED_WEIGHT_PRECISION.with(|flag| flag.replace(true)));
    build()
}

/// Whether a layer being built takes its weight matrix in stored precision (for loaders).
pub(crate) fn stored_weight_precision_allowed() -> bool {
    STORED_WEIGHT_PRECISION.with(|flag| flag.get())
}

/// A CPU tensor's values as one f32 vector, f16/bf16 ones widened ([`weight_in_f32`]).
pub(crate) fn values_in_f32(tensor: &candle_core::Tensor) -> candle_core::Result<Vec<f32>> {
    weight_in_f32(tensor)?.flatten_all()?.to_vec1::<f32>()
}

/// `weight` as f32: itself when it is f32, else converted with the CPU's conversion
/// instructions on all cores (candle's element-by-element conversion takes ~10× longer).
pub(crate) fn weight_in_f32(
    weight: &candle_core::Tensor,
) -> candle_core::Result<candle_core::Tensor> {
    use candle_core::{DType, Storage, Tensor};
    use half::slice::HalfFloatSliceExt;
    use rayon::prelude::*;

    const CHUNK: usize = 1 << 16;
    if weight.dtype() == DType::F32 {
        return Ok(weight.clone());
    }
    if !weight.device().is_cpu() || !matches!(weight.dtype(), DType::F16 | DType::BF16) {
        return weight.to_dtype(DType::F32);
    }
    let weight = weight.contiguous()?;
    let count = weight.elem_count();
    let mut out = vec![0f32; count];
    {
        let (storage, layout) = weight.storage_and_layout();
        let Storage::Cpu(cpu) = &*storage else {
            candle_core::bail!("weight_in_f32: not a CPU tensor");
        };
        let start = layout.start_offset();
        match weight.dtype() {
            DType::F16 => {
                let values = &cpu.as_slice::<half::f16>()?[start..start + count];
                out.par_chunks_mut(CHUNK)
                    .zip(values.par_chunks(CHUNK))
                    .for_each(|(out, values)| values.convert_to_f32_slice(out));
            }
            _ => {
                let values = &cpu.as_slice::<half::bf16>()?[start..start + count];
                out.par_chunks_mut(CHUNK)
                    .zip(values.par_chunks(CHUNK))
                    .for_each(|(out, values)| values.convert_to_f32_slice(out));
            }
        }
    }
    Tensor::from_vec(out, weight.shape(), weight.device())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_precision_scope_ends_even_when_the_build_panics() {
        assert!(!stored_weight_precision_allowed());
        assert!(with_stored_weight_precision(
            stored_weight_precision_allowed
        ));
        let panicked = std::panic::catch_unwind(|| {
            with_stored_weight_precision(|| panic!("a layer failed to build"))
        });
        assert!(panicked.is_err());
        assert!(!stored_weight_precision_allowed());
    }

    #[test]
    fn f16_weights_widen_exactly() {
        let values: Vec<half::f16> = (0..70_000)
            .map(|i| half::f16::from_f32((i as f32 - 35_000.0) * 0.37))
            .collect();
        let tensor =
            candle_core::Tensor::from_vec(values.clone(), (700, 100), &candle_core::Device::Cpu)
                .unwrap();
        let widened = weight_in_f32(&tensor).unwrap();
        assert_eq!(widened.dtype(), candle_core::DType::F32);
        assert_eq!(widened.dims(), &[700, 100]);
        let expected: Vec<f32> = values.iter().map(|v| v.to_f32()).collect();
        assert_eq!(
            widened.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            expected
        );
    }
}
