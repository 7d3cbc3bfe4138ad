//! Model files and the loaded model: the catalog and hub downloads, diffusers folders and
//! single-file checkpoints, LoRAs, embeddings files, A1111 hashes, and [`StableDiffusion`],
//! which owns the networks together with the weights they were built from.

mod catalog;
pub mod controlnet;
mod defaults;
pub mod depth;
mod download;
pub mod embeddings;
pub mod hashes;
pub mod library;
mod loading;
pub mod lora;
mod model;
mod safetensors_file;
pub mod single_file;
pub mod taesd;
pub mod upscaler;
pub mod weights;

pub use catalog::{Catalog, CatalogEntry, CatalogError};
pub use defaults::ModelDefaults;
pub use download::{
    controlnet_repo_id, default_models_dir, fetch_model, format_size, CatalogControlNet,
    ControlNetFetchError, DownloadError, DownloadProgress, FreeSpace, HubCache, HubClient,
    HubReference, RetryPolicy, CONTROLNET_CATALOG, DEFAULT_ENDPOINT, DISK_MARGIN_BYTES,
};
pub use download::{upscaler_repo_file, CatalogUpscaler, UpscalerFetchError, UPSCALER_CATALOG};
pub use loading::{load_model, load_model_with_random_weights, LoadError, LoadOptions};
pub(crate) use model::BaseWeights;
pub use model::{ModelInfo, StableDiffusion};

pub use crate::networks::Family;

/// The extension of a Python pickle file (`.ckpt`, `.pt`, `.pth`, `.bin`), which we never
/// open: unpickling can run any code the file contains.
pub(crate) fn pickle_extension(path: &std::path::Path) -> Option<String> {
    let extension = path.extension()?.to_string_lossy().to_lowercase();
    ["ckpt", "pt", "pth", "bin"]
        .contains(&extension.as_str())
        .then_some(extension)
}
