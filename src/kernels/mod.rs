//! The numeric kernels every network is built from: convolutions (unfolded and Winograd),
//! matrix products (f32 and bf16), attention, GroupNorm, GEGLU, SIMD helpers, the CPU
//! arithmetic switch, per-layer profiling, and the CUDA kernels under `gpu/`. Nothing here
//! knows about models, files or prompts.

/// An A/B switch for measurements, read from the environment once: true when `$name` is `1`.
macro_rules! ab_switch {
    ($name:literal) => {{
        static SWITCH: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *SWITCH.get_or_init(|| std::env::var($name).is_ok_and(|value| value == "1"))
    }};
}
pub(crate) use ab_switch;

pub mod attention;
pub mod conv;
pub mod geglu;
#[cfg(feature = "cuda")]
mod gpu;
pub mod group_norm;
pub mod linear;
mod matmul;
#[cfg(target_arch = "x86_64")]
mod matmul_bf16;
pub mod precision;
pub mod profile;
pub mod resize;
#[cfg(target_arch = "x86_64")]
mod simd;
mod winograd;

/// The first CUDA GPU, with candle's per-tensor CUDA event tracking off. That tracking is
/// for tensors shared between streams; everything here runs on the device's one stream, and
/// the events it records and waits on around every kernel launch cost CPU time between the
/// GPU's many short kernels. `LATENT_STUDIO_CUDA_EVENTS=1` keeps it, for A/B runs.
pub fn new_cuda_device() -> candle_core::Result<candle_core::Device> {
    let device = candle_core::Device::new_cuda(0)?;
    #[cfg(feature = "cuda")]
    if let candle_core::Device::Cuda(cuda) = &device {
        if !std::env::var("LATENT_STUDIO_CUDA_EVENTS").is_ok_and(|v| v == "1") {
            // SAFETY: no tensor of this device is used on another stream (see above); the
            // switch affects only tensors created after it, and none exist yet.
            unsafe { cuda.disable_event_tracking() };
        }
    }
    Ok(device)
}

/// Runs `read` on a CPU f32 tensor's data from its first element on: a contiguous tensor's
/// values are the first `elem_count()`, a strided view's lie where its layout's strides say.
/// The CPU kernels read candle's buffer in place through this instead of copying it out.
pub(crate) fn with_cpu_f32<R>(
    tensor: &candle_core::Tensor,
    read: impl FnOnce(&[f32]) -> R,
) -> candle_core::Result<R> {
    let (storage, layout) = tensor.storage_and_layout();
    let candle_core::Storage::Cpu(cpu) = &*storage else {
        candle_core::bail!("a CPU kernel was given a tensor on {:?}", tensor.device());
    };
    Ok(read(&cpu.as_slice::<f32>()?[layout.start_offset()..]))
}

/// Deterministic values in ±2 with a spread of magnitudes and signs (xorshift), for tests.
#[cfg(test)]
pub(crate) fn test_values(count: usize, seed: u32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(2654435761).wrapping_add(1);
    (0..count)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state as f32 / u32::MAX as f32 - 0.5) * 4.0
        })
        .collect()
}

/// Largest absolute difference between two tensors of the same shape, for tests.
#[cfg(test)]
pub(crate) fn max_abs_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
    (a - b)
        .and_then(|d| d.abs())
        .and_then(|d| d.max_all())
        .and_then(|d| d.to_scalar::<f32>())
        .expect("tensors of the same shape")
}
