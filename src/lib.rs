//! Latent Studio: a Stable Diffusion engine on candle that reproduces diffusers' numbers.
//!
//! - [`pipeline`]: tokenizer, text encoders, UNet, VAE, schedulers, noise and the sampling loop.
//! - [`models`]: model families, diffusers folder configs and weight loading.
//! - [`formats`]: images and their A1111-compatible `parameters` metadata.
//! - [`engine`]: the background worker that owns the model (commands in, events out).
//! - [`app`]: the desktop window (egui), which only draws and talks to the engine.

pub mod app;
pub mod engine;
pub mod formats;
pub mod models;
pub mod pipeline;

/// `latent-studio <version> (<git commit>)`, as written into image metadata.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("LATENT_STUDIO_GIT"),
    ")"
);
