//! A1111's "Hires. fix": generate at the base size, upscale the picture (Pillow's Lanczos, or
//! an upscaler model followed by Lanczos to the exact size), then run img2img at the target
//! size with its own steps and denoising strength. diffusers has no hires pipeline; its second
//! half here *is* diffusers' img2img (the same seed, a fresh generator), so the result equals
//! `generate --init-image BASE.png --width W --height H --strength D` on the base image.
//! The latent upscalers (A1111's "Latent …" names) instead resize the first pass's final
//! latents with torch's `F.interpolate` (exactly, see [`crate::kernels::resize`]) and start the
//! second pass from them as diffusers' img2img does when `image` is 4-channel latents (no VAE
//! encode). A1111 differs in that second half: its own sampler code runs `int(denoise · steps)`
//! steps of a schedule of `steps / denoise`; that is documented in the README, not imitated.

use std::path::PathBuf;

use crate::imaging::RgbImage;
pub use crate::kernels::resize::InterpolateMode as LatentUpscale;
use crate::sampling::pipeline::{GenerationRequest, InitImage};

/// Sides of the second pass are kept on the 8-pixel latent grid.
const GRID: usize = 8;

#[derive(Debug, Clone, PartialEq)]
pub struct HiresFix {
    /// Target size = base size × scale (floored to multiples of 8).
    pub scale: f64,
    /// Steps of the second pass; `None`: the base steps (A1111's "Hires steps: 0").
    pub steps: Option<usize>,
    /// The second pass's img2img strength (A1111's "Denoising strength").
    pub denoise: f64,
    pub upscaler: HiresUpscaler,
}

#[derive(Debug, Clone, PartialEq)]
pub enum HiresUpscaler {
    /// Pillow's Lanczos resize.
    Lanczos,
    /// An ESRGAN-family upscaler file, then Lanczos to the target size.
    Model(PathBuf),
    /// The first pass's latents resized with torch's interpolation; no decode and re-encode.
    Latent(LatentUpscale),
}

/// The latent modes: A1111's name (written in PNGs, taken by the server) and the CLI's.
pub const LATENT_UPSCALERS: [(LatentUpscale, &str, &str); 6] = [
    (LatentUpscale::Bilinear, "Latent", "latent"),
    (
        LatentUpscale::BilinearAntialiased,
        "Latent (antialiased)",
        "latent-antialiased",
    ),
    (LatentUpscale::Bicubic, "Latent (bicubic)", "latent-bicubic"),
    (
        LatentUpscale::BicubicAntialiased,
        "Latent (bicubic antialiased)",
        "latent-bicubic-antialiased",
    ),
    (LatentUpscale::Nearest, "Latent (nearest)", "latent-nearest"),
    (
        LatentUpscale::NearestExact,
        "Latent (nearest-exact)",
        "latent-nearest-exact",
    ),
];

impl HiresUpscaler {
    /// The built-in upscaler A1111 calls `name` ("Lanczos", "Latent (bicubic)", …; any case),
    /// or the CLI's spelling of it ("lanczos", "latent-bicubic", …).
    pub fn built_in(name: &str) -> Option<HiresUpscaler> {
        if name.eq_ignore_ascii_case("lanczos") {
            return Some(HiresUpscaler::Lanczos);
        }
        LATENT_UPSCALERS
            .iter()
            .find(|(_, a1111, cli)| name.eq_ignore_ascii_case(a1111) || name == *cli)
            .map(|(mode, _, _)| HiresUpscaler::Latent(*mode))
    }

    /// A1111's name for a built-in upscaler; a model file's is its file stem.
    pub fn a1111_name(&self) -> String {
        match self {
            HiresUpscaler::Lanczos => "Lanczos".to_string(),
            HiresUpscaler::Latent(mode) => LATENT_UPSCALERS
                .iter()
                .find(|(m, _, _)| m == mode)
                .map_or("Latent", |(_, name, _)| name)
                .to_string(),
            HiresUpscaler::Model(path) => path
                .file_stem()
                .map_or_else(String::new, |stem| stem.to_string_lossy().into_owned()),
        }
    }
}

impl HiresFix {
    /// The second pass's size for a `width`×`height` base.
    pub fn target_size(&self, width: usize, height: usize) -> (usize, usize) {
        let side = |v: usize| ((v as f64 * self.scale) as usize / GRID * GRID).max(GRID);
        (side(width), side(height))
    }

    /// The second pass: `base` at the target size, starting from `picture` (the upscaled first
    /// image, or a stand-in of the right size for checking the request before any work).
    pub fn second_pass(&self, base: &GenerationRequest, picture: RgbImage) -> GenerationRequest {
        let (width, height) = self.target_size(base.width, base.height);
        GenerationRequest {
            width,
            height,
            steps: self.steps.unwrap_or(base.steps),
            init_image: Some(InitImage {
                image: picture,
                strength: self.denoise,
                mask: None,
            }),
            ..base.clone()
        }
    }

    /// What A1111 writes for the pass ("Hires upscale", "Hires steps", "Hires upscaler").
    pub fn record(&self, upscaler_name: &str) -> Vec<(String, String)> {
        let mut keys = vec![("Hires upscale".to_string(), trim(self.scale))];
        if let Some(steps) = self.steps {
            keys.push(("Hires steps".to_string(), steps.to_string()));
        }
        keys.push(("Hires upscaler".to_string(), upscaler_name.to_string()));
        keys
    }
}

fn trim(value: f64) -> String {
    let text = format!("{value:.4}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_size_stays_on_the_grid() {
        let fix = HiresFix {
            scale: 1.5,
            steps: None,
            denoise: 0.5,
            upscaler: HiresUpscaler::Lanczos,
        };
        assert_eq!(fix.target_size(512, 768), (768, 1152));
        assert_eq!(fix.target_size(64, 40), (96, 56));
        for (mode, a1111, cli) in LATENT_UPSCALERS {
            assert_eq!(
                HiresUpscaler::built_in(a1111),
                Some(HiresUpscaler::Latent(mode))
            );
            assert_eq!(
                HiresUpscaler::built_in(cli),
                Some(HiresUpscaler::Latent(mode))
            );
            assert_eq!(HiresUpscaler::Latent(mode).a1111_name(), a1111);
        }
        assert_eq!(
            HiresUpscaler::built_in("Lanczos"),
            Some(HiresUpscaler::Lanczos)
        );
        assert_eq!(HiresUpscaler::built_in("Latent (fancy)"), None);
        assert_eq!(
            fix.record("Lanczos")[0],
            ("Hires upscale".into(), "1.5".into())
        );
    }
}
