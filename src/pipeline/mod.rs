//! Everything that turns a prompt into an image once the weights are loaded.

pub mod attention;
pub mod conditioning;
pub mod conv;
pub mod generate;
pub mod layers;
pub mod noise;
pub mod prompt;
pub mod schedulers;
pub mod text_encoder;
pub mod tokenizer;
pub mod unet;
pub mod vae;
