//! Latent Studio: a Stable Diffusion engine on candle that reproduces diffusers' numbers.
//!
//! The layers, each importing only from those below it:
//!
//! - [`app`]: the desktop window (egui), which only draws and talks to the engine.
//! - [`server`]: beside the window, AUTOMATIC1111's HTTP API over the same engine.
//! - [`engine`]: the one generation runner (used by the worker thread behind the window and
//!   by the CLI alike) and the worker itself: commands in, events out.
//! - [`models`]: model files — the catalog, hub downloads, diffusers folders and single-file
//!   checkpoints, LoRAs, embeddings files, hashes — and the loaded model that owns them.
//! - [`sampling`]: schedulers, noise and the denoising loop ([`sampling::pipeline`]).
//! - [`text`]: tokenizer, A1111 prompt syntax, embeddings and text conditioning.
//! - [`networks`]: UNet, VAE and CLIP text encoders.
//! - [`kernels`]: convolutions, matrix products, attention, norms; CPU SIMD and CUDA.
//!
//! [`formats`] (PNG files and their A1111 `parameters` text) stands beside them and imports
//! none of them; [`files`] (opening only bounded regular files) and [`system`] (free memory)
//! are used by all.

pub mod app;
pub mod engine;
pub mod files;
pub mod formats;
#[doc(hidden)]
pub mod fuzz_entry;
pub mod imaging;
pub mod kernels;
pub mod models;
pub mod networks;
pub mod sampling;
pub mod server;
pub mod system;
pub mod text;

/// The git commit this binary was built from (`$LATENT_STUDIO_COMMIT` at build time for a
/// tree without git; "unknown commit" when neither says).
pub const GIT_COMMIT: &str = env!("LATENT_STUDIO_GIT");

/// `latent-studio <version> (<git commit>)`, as written into image metadata.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("LATENT_STUDIO_GIT"),
    ")"
);

/// A candle error as one line, without the backtrace candle may attach.
pub fn describe_candle_error(err: &candle_core::Error) -> String {
    let text = match err {
        candle_core::Error::WithBacktrace { inner, .. } => inner.to_string(),
        other => other.to_string(),
    };
    text.lines().next().unwrap_or("unknown error").to_string()
}
