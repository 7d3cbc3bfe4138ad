//! A loaded model: the networks the sampling loop runs, plus what came from files — the base
//! weights (kept so LoRAs can be merged in and taken out, and a VAE swapped, without reading
//! the model again), the LoRAs merged now, and descriptive facts for the window and PNGs.
//! Its LoRA and VAE methods live beside the file formats they read (`lora.rs`, `loading.rs`).

use std::path::PathBuf;
use std::sync::Arc;

use crate::models::lora::ActiveLora;
use crate::models::weights::WeightMap;
use crate::models::ModelDefaults;
use crate::networks::text_encoder::ClipTextConfig;
use crate::networks::unet::UNetConfig;
use crate::networks::vae::VaeConfig;
use crate::networks::Family;
use crate::sampling::pipeline::DiffusionPipeline;
use crate::text::embeddings::TextualInversion;

/// Descriptive facts about a loaded model.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub name: String,
    pub family: Family,
    /// "SD 1.x", "SD 2.x", "SDXL" …
    pub label: String,
    /// Made for few steps without guidance (SD-Turbo, SDXL-Turbo).
    pub distilled: bool,
    pub defaults: ModelDefaults,
    /// Pixels per latent along each axis.
    pub vae_scale_factor: usize,
    /// The checkpoint file, for single-file models (what A1111's model hash is taken of).
    pub file: Option<PathBuf>,
}

/// The weights a model was built from.
pub(crate) struct BaseWeights {
    pub(crate) unet_config: UNetConfig,
    pub(crate) unet: Arc<WeightMap>,
    pub(crate) vae_config: VaeConfig,
    /// The model's own VAE, for going back from a VAE file.
    pub(crate) vae: Arc<WeightMap>,
    /// One per text stage: config and weights.
    pub(crate) text: Vec<(ClipTextConfig, Arc<WeightMap>)>,
}

/// A Stable Diffusion model loaded from files (or built with random weights for benchmarks).
pub struct StableDiffusion {
    pub(crate) pipeline: DiffusionPipeline,
    pub(crate) info: ModelInfo,
    /// `None` for random-weight models (benchmarks), which cannot take LoRAs.
    pub(crate) base: Option<BaseWeights>,
    /// LoRAs merged into the weights now, with their multipliers.
    pub(crate) loras: Vec<ActiveLora>,
}

impl StableDiffusion {
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// The networks and the sampling loop.
    pub fn pipeline(&self) -> &DiffusionPipeline {
        &self.pipeline
    }

    /// The LoRAs merged into the weights now.
    pub fn loras(&self) -> &[ActiveLora] {
        &self.loras
    }

    /// Textual-inversion embeddings usable by name in prompts from now on (replacing the
    /// previous set); returns the names of those that don't fit this model's text encoders.
    pub fn set_embeddings(&mut self, embeddings: Vec<Arc<TextualInversion>>) -> Vec<String> {
        self.pipeline.set_embeddings(embeddings)
    }

    /// Decode in overlapping tiles (diffusers' `enable_vae_tiling()`).
    pub fn set_vae_tiling(&mut self, enabled: bool) {
        self.pipeline.set_vae_tiling(enabled);
    }

    /// Decode finished images with a tiny autoencoder instead of the VAE (`None`: the VAE).
    pub fn set_final_decoder(&mut self, decoder: Option<Arc<crate::networks::taesd::TinyDecoder>>) {
        self.pipeline.set_final_decoder(decoder);
    }
}
