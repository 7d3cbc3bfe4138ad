//! What kind of Stable Diffusion a model is, and the settings a user gets when they give none.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// SD 1.x / 2.x: one CLIP encoder, last hidden state.
    StableDiffusion,
    /// SDXL: two encoders, penultimate states, pooled text and size ids.
    StableDiffusionXl,
}

impl Family {
    /// The generation of the model, for display: decided by the text conditioning width.
    pub fn label(self, cross_attention_dim: usize) -> &'static str {
        match (self, cross_attention_dim) {
            (Family::StableDiffusionXl, _) => "SDXL",
            (Family::StableDiffusion, 768) => "SD 1.x",
            (Family::StableDiffusion, 1024) => "SD 2.x",
            (Family::StableDiffusion, _) => "SD",
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::StableDiffusion => "Stable Diffusion",
            Family::StableDiffusionXl => "Stable Diffusion XL",
        })
    }
}

/// Defaults for omitted settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelDefaults {
    pub steps: usize,
    pub guidance: f64,
    pub width: usize,
    pub height: usize,
}

impl ModelDefaults {
    /// `native_size` is the UNet's `sample_size` times the VAE scale, as diffusers uses it.
    /// Distilled models (SD-Turbo, SDXL-Turbo) are made for one step without guidance.
    pub fn for_model(family: Family, distilled: bool, native_size: usize) -> Self {
        let (steps, guidance) = match (distilled, family) {
            (true, _) => (1, 0.0),
            (false, Family::StableDiffusion) => (25, 7.5),
            (false, Family::StableDiffusionXl) => (25, 5.0),
        };
        Self {
            steps,
            guidance,
            width: native_size,
            height: native_size,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turbo_defaults_to_one_step_without_guidance() {
        let d = ModelDefaults::for_model(Family::StableDiffusionXl, true, 512);
        assert_eq!((d.steps, d.guidance, d.width), (1, 0.0, 512));
    }

    #[test]
    fn labels_follow_the_conditioning_width() {
        assert_eq!(Family::StableDiffusion.label(768), "SD 1.x");
        assert_eq!(Family::StableDiffusion.label(1024), "SD 2.x");
        assert_eq!(Family::StableDiffusionXl.label(2048), "SDXL");
    }
}
