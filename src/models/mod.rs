//! Model families, diffusers folder layout and weight loading.

mod catalog;
mod download;
pub mod embeddings;
mod family;
pub mod hashes;
mod loading;
pub mod lora;
mod safetensors_file;
pub mod single_file;
pub mod weights;

pub use catalog::{Catalog, CatalogEntry, CatalogError};
pub use download::{
    fetch_model, DownloadError, DownloadProgress, HubCache, HubClient, DEFAULT_ENDPOINT,
};
pub use family::{Family, ModelDefaults};
pub use loading::{
    load_model, load_model_with_random_weights, replace_vae, LoadError, LoadOptions,
};

/// The extension of a Python pickle file (`.ckpt`, `.pt`, `.pth`, `.bin`), which we never
/// open: unpickling can run any code the file contains.
pub(crate) fn pickle_extension(path: &std::path::Path) -> Option<String> {
    let extension = path.extension()?.to_string_lossy().to_lowercase();
    ["ckpt", "pt", "pth", "bin"]
        .contains(&extension.as_str())
        .then_some(extension)
}
