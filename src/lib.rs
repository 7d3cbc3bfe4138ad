//! Latent Studio: a Stable Diffusion engine on candle that reproduces diffusers' numbers.
//!
//! - [`pipeline`]: tokenizer, text encoders, UNet, VAE, schedulers, noise and the sampling loop.
//! - [`models`]: model families, diffusers folder configs and weight loading.
//! - [`formats`]: images and their A1111-compatible `parameters` metadata.

pub mod models;
pub mod pipeline;
