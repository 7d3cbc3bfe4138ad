//! Everything that turns a prompt into an image once the weights are loaded.

pub mod noise;
pub mod schedulers;
pub mod attention;
pub mod layers;
pub mod text_encoder;
pub mod unet;
pub mod vae;
pub mod generate;
pub mod tokenizer;
