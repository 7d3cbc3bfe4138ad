//! Model families, diffusers folder layout and weight loading.

mod family;
mod loading;

pub use family::{Family, ModelDefaults};
pub use loading::{load_model, load_model_with_random_weights, LoadError, LoadOptions};
