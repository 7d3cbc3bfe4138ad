//! What kind of Stable Diffusion a network stack is: it decides the text conditioning
//! (one CLIP encoder, or two with pooled text and size ids) and the UNet's added inputs.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_follow_the_conditioning_width() {
        assert_eq!(Family::StableDiffusion.label(768), "SD 1.x");
        assert_eq!(Family::StableDiffusion.label(1024), "SD 2.x");
        assert_eq!(Family::StableDiffusionXl.label(2048), "SDXL");
    }
}
