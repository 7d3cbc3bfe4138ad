//! A1111's "Hires. fix": generate at the base size, upscale the picture (Pillow's Lanczos, or
//! an upscaler model followed by Lanczos to the exact size), then run img2img at the target
//! size with its own steps and denoising strength. diffusers has no hires pipeline; its second
//! half here *is* diffusers' img2img (the same seed, a fresh generator), so the result equals
//! `generate --init-image BASE.png --width W --height H --strength D` on the base image.
//! The latent upscalers (A1111's "Latent …" names) instead resize the first pass's final
//! latents with torch's `F.interpolate` (exactly, see [`crate::kernels::resize`]) and start the
//! second pass from them as diffusers' img2img does when `image` is 4-channel latents (no VAE
//! encode; nor is the first pass decoded, as nothing uses its picture). A1111 differs in that second half: its own sampler code runs `int(denoise · steps)`
//! steps of a schedule of `steps / denoise`; that is documented in the README, not imitated.

use std::path::PathBuf;

use crate::imaging::RgbImage;
pub use crate::kernels::resize::InterpolateMode as LatentUpscale;
use crate::sampling::pipeline::{GenerationRequest, InitImage};
use crate::sampling::schedulers::SchedulerKind;

/// Sides of the second pass are kept on the 8-pixel latent grid.
const GRID: usize = 8;

/// How much the hires fix may enlarge, in the window, the CLI and the server alike.
pub const MIN_HIRES_SCALE: f64 = 1.0;
pub const MAX_HIRES_SCALE: f64 = 8.0;

#[derive(Debug, Clone, PartialEq)]
pub struct HiresFix {
    /// Target size = base size × scale (floored to multiples of 8).
    pub scale: f64,
    /// Steps of the second pass; `None`: the base steps (A1111's "Hires steps: 0").
    pub steps: Option<usize>,
    /// The second pass's img2img strength (A1111's "Denoising strength").
    pub denoise: f64,
    pub upscaler: HiresUpscaler,
    /// The second pass's own prompt, negative prompt and sampler, where set.
    pub own: HiresOverrides,
}

/// A1111's "Hires prompt", "Hires negative prompt" and "Hires sampler": the second pass's
/// own, each `None` to keep the first pass's.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HiresOverrides {
    pub prompt: Option<String>,
    /// `Some("")` is no negative prompt (diffusers' `None`) for the second pass.
    pub negative_prompt: Option<String>,
    pub scheduler: Option<SchedulerKind>,
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
        let own = &self.own;
        GenerationRequest {
            width,
            height,
            steps: self.steps.unwrap_or(base.steps),
            prompt: own.prompt.clone().unwrap_or_else(|| base.prompt.clone()),
            negative_prompt: match &own.negative_prompt {
                Some(negative) => Some(negative.clone()).filter(|n| !n.trim().is_empty()),
                None => base.negative_prompt.clone(),
            },
            scheduler: own.scheduler.unwrap_or(base.scheduler),
            init_image: Some(InitImage {
                image: picture,
                strength: self.denoise,
                mask: None,
            }),
            ..base.clone()
        }
    }

    /// What A1111 writes for the pass ("Hires upscale", "Hires steps", "Hires upscaler", and
    /// as A1111 only where they differ from the first pass's: "Hires prompt", "Hires negative
    /// prompt", "Hires sampler" with its "Hires schedule type").
    pub fn record(&self, upscaler_name: &str, base: &GenerationRequest) -> Vec<(String, String)> {
        let mut keys = vec![("Hires upscale".to_string(), trim(self.scale))];
        if let Some(steps) = self.steps {
            keys.push(("Hires steps".to_string(), steps.to_string()));
        }
        keys.push(("Hires upscaler".to_string(), upscaler_name.to_string()));
        let own = &self.own;
        if let Some(prompt) = own.prompt.as_ref().filter(|p| **p != base.prompt) {
            keys.push(("Hires prompt".to_string(), prompt.clone()));
        }
        let base_negative = base.negative_prompt.as_deref().unwrap_or("");
        if let Some(negative) = own.negative_prompt.as_ref().filter(|n| *n != base_negative) {
            keys.push(("Hires negative prompt".to_string(), negative.clone()));
        }
        let names = own
            .scheduler
            .filter(|s| *s != base.scheduler)
            .and_then(SchedulerKind::a1111_request_names);
        if let Some((sampler, schedule)) = names {
            keys.push(("Hires sampler".to_string(), sampler.to_string()));
            if let Some(schedule) = schedule {
                keys.push(("Hires schedule type".to_string(), schedule.to_string()));
            }
        }
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

    fn base_request() -> GenerationRequest {
        GenerationRequest {
            prompt: "a cat".into(),
            negative_prompt: Some("blur".into()),
            steps: 20,
            guidance: 7.0,
            seed: 1,
            width: 64,
            height: 64,
            scheduler: SchedulerKind::EulerAncestral,
            init_image: None,
            prompt_syntax: Default::default(),
            clip_skip: 1,
            controls: Vec::new(),
            variation: None,
        }
    }

    #[test]
    fn the_target_size_stays_on_the_grid() {
        let fix = HiresFix {
            scale: 1.5,
            steps: None,
            denoise: 0.5,
            upscaler: HiresUpscaler::Lanczos,
            own: HiresOverrides::default(),
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
        let base = base_request();
        assert_eq!(
            fix.record("Lanczos", &base)[0],
            ("Hires upscale".into(), "1.5".into())
        );
        assert_eq!(fix.record("Lanczos", &base).len(), 2);
    }

    /// The second pass's own prompt, negative prompt and sampler replace the first pass's and
    /// are recorded with A1111's keys; ones equal to the first pass's are not.
    #[test]
    fn the_second_pass_can_have_its_own_prompt_and_sampler() {
        let base = base_request();
        let fix = HiresFix {
            scale: 2.0,
            steps: Some(5),
            denoise: 0.4,
            upscaler: HiresUpscaler::Lanczos,
            own: HiresOverrides {
                prompt: Some("a cat, detailed fur".into()),
                negative_prompt: Some(String::new()),
                scheduler: Some(SchedulerKind::DpmPp2mKarras),
            },
        };
        let second = fix.second_pass(&base, RgbImage::filled(128, 128, [0; 3]));
        assert_eq!(second.prompt, "a cat, detailed fur");
        assert_eq!(second.negative_prompt, None);
        assert_eq!(second.scheduler, SchedulerKind::DpmPp2mKarras);
        let keys = fix.record("Lanczos", &base);
        let value = |key: &str| keys.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        assert_eq!(value("Hires prompt"), Some("a cat, detailed fur"));
        assert_eq!(value("Hires negative prompt"), Some(""));
        assert_eq!(value("Hires sampler"), Some("DPM++ 2M"));
        assert_eq!(value("Hires schedule type"), Some("Karras"));
        let same = HiresFix {
            own: HiresOverrides {
                prompt: Some("a cat".into()),
                negative_prompt: Some("blur".into()),
                scheduler: Some(SchedulerKind::EulerAncestral),
            },
            ..fix
        };
        assert_eq!(same.record("Lanczos", &base).len(), 3);
    }
}
