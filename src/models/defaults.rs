//! The settings a user gets when they give none, per model.

use crate::networks::Family;

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
}
