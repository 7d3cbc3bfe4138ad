//! Everything that turns a prompt into an image once the weights are loaded.

pub mod attention;
pub mod conditioning;
pub mod conv;
mod geglu;
pub mod generate;
pub mod group_norm;
pub mod layers;
pub mod linear;
#[cfg(target_arch = "x86_64")]
mod matmul_bf16;
pub mod noise;
pub mod precision;
pub mod prompt;
pub mod schedulers;
#[cfg(target_arch = "x86_64")]
mod simd;
pub mod text_encoder;
pub mod tokenizer;
pub mod unet;
pub mod vae;

/// Largest absolute difference between two tensors of the same shape, for tests.
#[cfg(test)]
pub(crate) fn max_abs_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
    (a - b)
        .and_then(|d| d.abs())
        .and_then(|d| d.max_all())
        .and_then(|d| d.to_scalar::<f32>())
        .expect("tensors of the same shape")
}
