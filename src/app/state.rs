//! Everything the window remembers between runs, in one serde struct.
//!
//! eframe stores it (as RON) under [`eframe::APP_KEY`] when the window closes and every 30 s;
//! the window's own size and position are stored by eframe itself (`persist_window`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::engine::{ModelSource, PreviewMode};
use crate::models::ModelDefaults;
use crate::pipeline::schedulers::SchedulerKind;

/// How many local model folders the picker remembers.
pub const RECENT_FOLDERS_KEPT: usize = 8;

/// Sizes are kept on the VAE's 8-pixel grid (every SD family uses a scale factor of 8).
pub const SIZE_STEP: usize = 8;
pub const MAX_SIDE: usize = 4096;
pub const MAX_STEPS: usize = 150;
pub const MAX_BATCH: usize = 64;
pub const MAX_GUIDANCE: f64 = 30.0;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
// A file written by an older or newer version still loads: missing fields take their defaults.
#[serde(default)]
pub struct State {
    /// The model to load at start and to generate with.
    pub model: Option<ModelSource>,
    /// Local diffusers folders opened before, most recent first.
    pub recent_folders: Vec<PathBuf>,
    /// The model whose defaults (size, steps, CFG) were last applied to the settings, so that
    /// reopening the app with the same model keeps the user's own adjustments.
    pub defaults_applied_for: Option<ModelSource>,

    pub prompt: String,
    pub negative_prompt: String,
    #[serde(with = "scheduler_by_name")]
    pub scheduler: SchedulerKind,
    pub steps: usize,
    pub guidance: f64,
    /// The seed of the next run when `seed_locked`, else the seed of the last one.
    pub seed: u64,
    /// Keep `seed` for the next run instead of drawing a fresh one.
    pub seed_locked: bool,
    pub width: usize,
    pub height: usize,
    /// Images per press of Generate (seeds `seed`, `seed + 1`, …).
    pub batch_count: usize,
    /// img2img: how much of the init image is repainted, 0 < strength ≤ 1.
    pub strength: f64,

    /// Where the worker writes finished images.
    pub output_dir: PathBuf,
    pub preview: PreviewMode,
}

impl Default for State {
    fn default() -> Self {
        Self {
            model: None,
            recent_folders: Vec::new(),
            defaults_applied_for: None,
            prompt: String::new(),
            negative_prompt: String::new(),
            scheduler: SchedulerKind::Default,
            steps: 25,
            guidance: 7.5,
            seed: random_seed(),
            seed_locked: false,
            width: 512,
            height: 512,
            batch_count: 1,
            strength: 0.6,
            output_dir: default_output_dir(),
            preview: PreviewMode::Fast,
        }
    }
}

impl State {
    /// Takes a freshly loaded model's native size, steps and guidance.
    pub fn apply_model_defaults(&mut self, source: &ModelSource, defaults: &ModelDefaults) {
        self.steps = defaults.steps.clamp(1, MAX_STEPS);
        self.guidance = defaults.guidance;
        self.width = snap_to_grid(defaults.width);
        self.height = snap_to_grid(defaults.height);
        self.defaults_applied_for = Some(source.clone());
    }

    /// Puts a folder at the front of the recent list (once).
    pub fn remember_folder(&mut self, folder: &Path) {
        self.recent_folders.retain(|known| known != folder);
        self.recent_folders.insert(0, folder.to_path_buf());
        self.recent_folders.truncate(RECENT_FOLDERS_KEPT);
    }

    /// Repairs values a hand-edited or corrupt settings file may carry, so that every value
    /// the panels show is one the engine accepts.
    pub fn sanitized(mut self) -> Self {
        self.steps = self.steps.clamp(1, MAX_STEPS);
        if !self.guidance.is_finite() {
            self.guidance = 7.5;
        }
        self.guidance = self.guidance.clamp(0.0, MAX_GUIDANCE);
        self.width = snap_to_grid(self.width);
        self.height = snap_to_grid(self.height);
        self.batch_count = self.batch_count.clamp(1, MAX_BATCH);
        if !(self.strength > 0.0 && self.strength <= 1.0) {
            self.strength = 0.6;
        }
        if self.output_dir.as_os_str().is_empty() {
            self.output_dir = default_output_dir();
        }
        if let PreviewMode::Vae { every } = &mut self.preview {
            *every = (*every).max(1);
        }
        self
    }
}

/// The nearest size on the 8-pixel grid within `SIZE_STEP..=MAX_SIDE`.
pub fn snap_to_grid(value: usize) -> usize {
    let snapped = (value + SIZE_STEP / 2) / SIZE_STEP * SIZE_STEP;
    snapped.clamp(SIZE_STEP, MAX_SIDE)
}

/// `Pictures/Latent Studio`, or `~/Latent Studio` where the system names no pictures folder.
pub fn default_output_dir() -> PathBuf {
    dirs::picture_dir()
        .or_else(dirs::home_dir)
        .unwrap_or_else(std::env::temp_dir)
        .join("Latent Studio")
}

/// A fresh seed in 0..2³², the range torch, A1111 and the CLI use, so a seed means the same
/// image in all of them.
pub fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    hasher.finish() & 0xffff_ffff
}

/// The scheduler is stored by its CLI name, so the file stays readable and an unknown name
/// (from a newer version) falls back to the model's own scheduler instead of failing the load.
mod scheduler_by_name {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::pipeline::schedulers::SchedulerKind;

    pub fn serialize<S: Serializer>(
        kind: &SchedulerKind,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(kind.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<SchedulerKind, D::Error> {
        let name = String::deserialize(deserializer)?;
        Ok(name.parse().unwrap_or(SchedulerKind::Default))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_snap_to_the_grid() {
        assert_eq!(snap_to_grid(0), 8);
        assert_eq!(snap_to_grid(515), 512);
        assert_eq!(snap_to_grid(517), 520);
        assert_eq!(snap_to_grid(100_000), MAX_SIDE);
    }

    #[test]
    fn state_round_trips_through_json_and_tolerates_unknown_schedulers() {
        let state = State {
            model: Some(ModelSource::Hub("stabilityai/sd-turbo".into())),
            scheduler: SchedulerKind::DpmPp2mKarras,
            preview: PreviewMode::Vae { every: 5 },
            ..State::default()
        };
        let text = serde_json::to_string(&state).expect("serialize");
        let back: State = serde_json::from_str(&text).expect("deserialize");
        assert_eq!(back, state);

        let odd = text.replace("dpmpp-2m-karras", "some-future-sampler");
        let back: State = serde_json::from_str(&odd).expect("deserialize");
        assert_eq!(back.scheduler, SchedulerKind::Default);

        let partial: State =
            serde_json::from_str(r#"{"prompt": "a cat", "steps": 0}"#).expect("partial");
        let partial = partial.sanitized();
        assert_eq!(partial.prompt, "a cat");
        assert_eq!(partial.steps, 1);
    }

    #[test]
    fn recent_folders_are_unique_and_bounded() {
        let mut state = State::default();
        for i in 0..20 {
            state.remember_folder(Path::new(&format!("/models/{i}")));
        }
        state.remember_folder(Path::new("/models/5"));
        assert_eq!(state.recent_folders.len(), RECENT_FOLDERS_KEPT);
        assert_eq!(state.recent_folders[0], Path::new("/models/5"));
        assert_eq!(
            state
                .recent_folders
                .iter()
                .filter(|p| p.as_path() == Path::new("/models/5"))
                .count(),
            1
        );
    }
}
