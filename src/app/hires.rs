//! The window's "Hires. fix" (A1111's): its settings, kept in [`State`], the job setting
//! they make, their restoring from an image's `Hires …` keys, and the upscaler file picker.
//! The engine runs the pass (`engine::HiresFix`); the CLI's `--hires-*` flags set the same.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::import::extra_value;
use super::state::State;
use super::LatentStudioApp;
use crate::engine::{
    GenerationParameters, HiresFix, HiresOverrides, HiresUpscaler, SchedulerKind, UPSCALER_CATALOG,
};
/// The scale's range is the engine's, shared with the CLI and server (A1111's slider stops at 4).
pub use crate::engine::{MAX_HIRES_SCALE, MIN_HIRES_SCALE};

/// A1111's "Hires steps" slider; 0 means "the same as the first pass".
pub const MAX_HIRES_STEPS: usize = 150;
/// How many upscaler files the picker remembers.
pub const RECENT_UPSCALERS_KEPT: usize = 8;
/// What the pictures are enlarged with when no upscaler file is chosen.
pub const LANCZOS: &str = "Lanczos";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HiresSettings {
    pub enabled: bool,
    /// Target size = size × scale (floored to the 8-pixel grid).
    pub scale: f64,
    /// Steps of the second pass; 0: the first pass's steps (A1111's "Hires steps: 0").
    pub steps: usize,
    /// The second pass's img2img strength (A1111's "Denoising strength").
    pub denoise: f64,
    /// An ESRGAN-family `.safetensors` file; `None`: Lanczos (or the latent mode).
    pub upscaler: Option<PathBuf>,
    /// A latent upscaler by A1111's name ("Latent (bicubic)", …); it wins over `upscaler`.
    pub latent: Option<String>,
    /// Upscaler files chosen before, most recent first.
    pub recent_upscalers: Vec<PathBuf>,
    /// The second pass's own prompt and negative prompt; empty: the first pass's.
    pub prompt: String,
    pub negative_prompt: String,
    /// The second pass's own sampler (its CLI name); `None`: the first pass's.
    pub sampler: Option<String>,
}

impl Default for HiresSettings {
    fn default() -> Self {
        // A1111's defaults.
        Self {
            enabled: false,
            scale: 2.0,
            steps: 0,
            denoise: 0.7,
            upscaler: None,
            latent: None,
            recent_upscalers: Vec::new(),
            prompt: String::new(),
            negative_prompt: String::new(),
            sampler: None,
        }
    }
}

impl HiresSettings {
    /// Repairs what a hand-edited settings file may carry: every value is one the CLI's
    /// `--hires-*` flags accept.
    pub fn sanitize(&mut self) {
        if !(self.scale.is_finite() && (MIN_HIRES_SCALE..=MAX_HIRES_SCALE).contains(&self.scale)) {
            self.scale = 2.0;
        }
        self.steps = self.steps.min(MAX_HIRES_STEPS);
        if !(self.denoise > 0.0 && self.denoise <= 1.0) {
            self.denoise = 0.7;
        }
        self.recent_upscalers.truncate(RECENT_UPSCALERS_KEPT);
        if self.sampler_kind().is_none() {
            self.sampler = None;
        }
        if self.latent_upscaler().is_none() {
            self.latent = None;
        }
    }

    /// The chosen latent upscaler, when `latent` names one.
    pub fn latent_upscaler(&self) -> Option<HiresUpscaler> {
        let upscaler = HiresUpscaler::built_in(self.latent.as_deref()?)?;
        matches!(upscaler, HiresUpscaler::Latent(_)).then_some(upscaler)
    }

    /// The job's hires pass, when enabled.
    pub fn fix(&self) -> Option<HiresFix> {
        self.enabled.then(|| HiresFix {
            scale: self.scale,
            steps: (self.steps > 0).then_some(self.steps),
            denoise: self.denoise,
            upscaler: match (self.latent_upscaler(), &self.upscaler) {
                (Some(latent), _) => latent,
                (None, Some(path)) => HiresUpscaler::Model(path.clone()),
                (None, None) => HiresUpscaler::Lanczos,
            },
            own: HiresOverrides {
                prompt: Some(self.prompt.clone()).filter(|p| !p.trim().is_empty()),
                negative_prompt: Some(self.negative_prompt.clone())
                    .filter(|n| !n.trim().is_empty()),
                scheduler: self.sampler_kind(),
            },
        })
    }

    /// The second pass's own sampler, when one is chosen.
    pub fn sampler_kind(&self) -> Option<SchedulerKind> {
        self.sampler.as_deref().and_then(|name| name.parse().ok())
    }

    /// Puts an upscaler file at the front of the recent list (once); hub catalog entries are
    /// always listed and not remembered.
    pub fn remember_upscaler(&mut self, path: &Path) {
        if catalog_upscalers().any(|(_, reference)| reference == path) {
            return;
        }
        self.recent_upscalers.retain(|p| p != path);
        self.recent_upscalers.insert(0, path.to_path_buf());
        self.recent_upscalers.truncate(RECENT_UPSCALERS_KEPT);
    }
}

/// What the pickers call an upscaler: a hub catalog entry's label, else the name images
/// record for a file (its stem, as the engine writes it).
pub fn upscaler_label(path: &Path) -> String {
    if let Some((label, _)) = catalog_upscalers().find(|(_, reference)| reference == path) {
        return label.to_string();
    }
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// The hub catalog's upscalers as the pickers offer them: label and the
/// `org/name/file.safetensors` reference jobs carry.
pub fn catalog_upscalers() -> impl Iterator<Item = (&'static str, PathBuf)> {
    UPSCALER_CATALOG
        .iter()
        .map(|entry| (entry.label, PathBuf::from(entry.reference())))
}

/// Heading of the pickers' hub group.
pub const CATALOG_UPSCALERS_HEADING: &str = "Hugging Face (downloaded on first use)";

/// Takes an image's `Hires upscale`, `Hires steps`, `Hires upscaler` and `Denoising strength`
/// into the hires settings (no `Hires upscale`: the fix is turned off, as the image was made
/// without it). Returns what could not be taken over, one sentence each.
pub fn apply_hires_parameters(state: &mut State, params: &GenerationParameters) -> Vec<String> {
    let mut skipped = Vec::new();
    let hires = &mut state.hires;
    let Some(scale) = extra_value(params, "Hires upscale") else {
        hires.enabled = false;
        return skipped;
    };
    match scale.parse::<f64>() {
        Ok(scale) if (MIN_HIRES_SCALE..=MAX_HIRES_SCALE).contains(&scale) => {
            hires.enabled = true;
            hires.scale = scale;
        }
        _ => {
            hires.enabled = false;
            skipped.push(format!(
                "Hires upscale \"{scale}\" is not {MIN_HIRES_SCALE} to {MAX_HIRES_SCALE}; hires fix left off."
            ));
            return skipped;
        }
    }
    // A1111 leaves `Hires steps` out when the pass takes the first pass's steps.
    hires.steps = match extra_value(params, "Hires steps") {
        None => 0,
        Some(text) => match text.parse::<usize>() {
            Ok(steps) if steps <= MAX_HIRES_STEPS => steps,
            _ => {
                skipped.push(format!(
                    "Hires steps \"{text}\" is not 0 to {MAX_HIRES_STEPS}; using the same steps."
                ));
                0
            }
        },
    };
    if let Some(denoise) = params.denoising_strength.filter(|d| *d > 0.0 && *d <= 1.0) {
        hires.denoise = denoise;
    }
    // A1111 writes these only where the second pass's differ from the first's.
    hires.prompt = extra_value(params, "Hires prompt")
        .unwrap_or("")
        .to_string();
    hires.negative_prompt = extra_value(params, "Hires negative prompt")
        .unwrap_or("")
        .to_string();
    hires.sampler = None;
    if let Some(sampler) = extra_value(params, "Hires sampler") {
        let schedule = extra_value(params, "Hires schedule type");
        match SchedulerKind::from_a1111(sampler, schedule) {
            Some(kind) => hires.sampler = Some(kind.name().to_string()),
            None => skipped.push(format!(
                "Hires sampler \"{sampler}\" is not one this app has; the hires pass uses the sampler above."
            )),
        }
    }
    hires.latent = None;
    match extra_value(params, "Hires upscaler") {
        None => hires.upscaler = None,
        Some(name) if name.eq_ignore_ascii_case(LANCZOS) => hires.upscaler = None,
        Some(name)
            if matches!(
                HiresUpscaler::built_in(name),
                Some(HiresUpscaler::Latent(_))
            ) =>
        {
            hires.upscaler = None;
            hires.latent =
                Some(HiresUpscaler::built_in(name).map_or_else(String::new, |u| u.a1111_name()));
        }
        Some(name) => {
            let known = hires
                .recent_upscalers
                .iter()
                .find(|path| upscaler_label(path).eq_ignore_ascii_case(name))
                .cloned()
                .or_else(|| {
                    // The engine records a hub file's stem, as for any file.
                    catalog_upscalers()
                        .map(|(_, reference)| reference)
                        .find(|reference| {
                            reference
                                .file_stem()
                                .is_some_and(|stem| stem.eq_ignore_ascii_case(name))
                        })
                });
            match known {
                Some(path) => hires.upscaler = Some(path),
                None => {
                    hires.upscaler = None;
                    skipped.push(format!(
                        "Hires upscaler \"{name}\" is not among the upscaler files chosen here; using {LANCZOS}. Choose its .safetensors file under Hires. fix to use it."
                    ));
                }
            }
        }
    }
    skipped
}

impl LatentStudioApp {
    /// Gives the worker the decoding settings (at start and after a restart).
    pub(super) fn configure_decoding(&self) {
        self.worker.send(crate::engine::Command::SetFastDecode(
            self.state.fast_decode,
        ));
    }

    /// Asks for an upscaler `.safetensors` file and uses it for the hires pass.
    pub(super) fn pick_hires_upscaler(&mut self) {
        if let Some(path) = self.desktop.pick_upscaler_file() {
            self.state.hires.remember_upscaler(&path);
            self.state.hires.upscaler = Some(path);
            self.state.hires.latent = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(extra: &[(&str, &str)], denoise: Option<f64>) -> GenerationParameters {
        let mut params = GenerationParameters::parse_a1111(
            "a castle\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 512x512",
        )
        .unwrap();
        params.extra = extra
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        params.denoising_strength = denoise;
        params
    }

    #[test]
    fn a_hub_upscaler_reads_as_its_label_is_not_remembered_and_is_restored_by_stem() {
        let mut state = State::default();
        let (label, reference) = catalog_upscalers().next().expect("a catalog");
        assert_eq!(upscaler_label(&reference), label);
        state.hires.remember_upscaler(&reference);
        assert!(state.hires.recent_upscalers.is_empty());
        let stem = reference.file_stem().unwrap().to_str().unwrap().to_string();
        let skipped = apply_hires_parameters(
            &mut state,
            &params(&[("Hires upscale", "2"), ("Hires upscaler", &stem)], None),
        );
        assert!(skipped.is_empty(), "{skipped:?}");
        assert_eq!(state.hires.upscaler, Some(reference));
    }

    #[test]
    fn hires_keys_are_restored() {
        let mut state = State::default();
        let upscaler = PathBuf::from("/models/4x-UltraSharp.safetensors");
        state.hires.remember_upscaler(&upscaler);
        let skipped = apply_hires_parameters(
            &mut state,
            &params(
                &[
                    ("Hires upscale", "1.5"),
                    ("Hires steps", "12"),
                    ("Hires upscaler", "4x-UltraSharp"),
                    ("Hires prompt", "a castle, detailed"),
                    ("Hires sampler", "DPM++ 2M"),
                    ("Hires schedule type", "Karras"),
                ],
                Some(0.45),
            ),
        );
        assert!(skipped.is_empty(), "{skipped:?}");
        let fix = state.hires.fix().expect("enabled");
        assert_eq!(
            fix,
            HiresFix {
                scale: 1.5,
                steps: Some(12),
                denoise: 0.45,
                upscaler: HiresUpscaler::Model(upscaler),
                own: HiresOverrides {
                    prompt: Some("a castle, detailed".into()),
                    negative_prompt: None,
                    scheduler: Some(SchedulerKind::DpmPp2mKarras),
                },
            }
        );

        // A latent upscaler by A1111's name is restored as one.
        let skipped = apply_hires_parameters(
            &mut state,
            &params(
                &[
                    ("Hires upscale", "2"),
                    ("Hires upscaler", "Latent (nearest-exact)"),
                ],
                None,
            ),
        );
        assert!(skipped.is_empty(), "{skipped:?}");
        assert_eq!(
            state.hires.fix().unwrap().upscaler,
            HiresUpscaler::Latent(crate::engine::LatentUpscale::NearestExact)
        );

        // An unknown upscaler falls back to Lanczos, and says so; no key turns it off.
        let skipped = apply_hires_parameters(
            &mut state,
            &params(
                &[("Hires upscale", "2"), ("Hires upscaler", "SwinIR_4x")],
                None,
            ),
        );
        assert_eq!(skipped.len(), 1);
        assert_eq!(state.hires.upscaler, None);
        assert_eq!(state.hires.fix().unwrap().upscaler, HiresUpscaler::Lanczos);
        assert_eq!(state.hires.fix().unwrap().steps, None);
        apply_hires_parameters(&mut state, &params(&[], Some(0.5)));
        assert!(state.hires.fix().is_none());
    }

    #[test]
    fn odd_values_are_refused_or_repaired() {
        let mut state = State::default();
        let skipped = apply_hires_parameters(&mut state, &params(&[("Hires upscale", "40")], None));
        assert_eq!(skipped.len(), 1);
        assert!(!state.hires.enabled);
        let mut settings = HiresSettings {
            scale: f64::NAN,
            denoise: 0.0,
            steps: 10_000,
            ..HiresSettings::default()
        };
        settings.sanitize();
        assert_eq!(
            (settings.scale, settings.denoise, settings.steps),
            (2.0, 0.7, MAX_HIRES_STEPS)
        );
    }
}
