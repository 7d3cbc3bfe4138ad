//! The arithmetic of the CPU's large matrix products (convolutions, linear layers): float32,
//! or bfloat16 inputs with float32 sums on CPUs with AVX-512 BF16 — about twice the
//! arithmetic per instruction, for images that differ slightly from float32 (measured in
//! docs/performance-log.md). Process-wide, like the kernels it selects; weights stay f32 and
//! every other operation (norms, softmax, schedulers) stays f32 either way.

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
