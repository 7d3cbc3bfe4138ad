//! The neural networks of Stable Diffusion, as diffusers defines them, built on
//! [`crate::kernels`]: the UNet, the VAE, the CLIP text encoders and the blocks they share.
//! Each network's plain config struct sits beside the module that uses it.

pub mod controlnet;
pub mod depth_anything;
mod depth_anything_config;
mod family;
pub mod layers;
pub mod t2i_adapter;
pub mod taesd;
pub mod text_encoder;
pub mod unet;
pub mod upscalers;
pub mod vae;

pub use family::Family;
