//! Model families, diffusers folder layout and weight loading.

mod catalog;
mod download;
pub mod embeddings;
mod family;
pub mod hashes;
mod loading;
pub mod lora;
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
