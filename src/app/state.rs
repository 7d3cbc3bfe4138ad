//! Everything the window remembers between runs, in one serde struct.
//!
//! eframe stores it (as RON) under [`eframe::APP_KEY`] when the window closes and every 30 s;
//! the window's own size and position are stored by eframe itself (`persist_window`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::engine::MaskedContent;
use crate::engine::ModelDefaults;
use crate::engine::PromptSyntax;
use crate::engine::SchedulerKind;
pub use crate::engine::MAX_BATCH_SIZE;
use crate::engine::{AddOnFolders, ModelSource, PreviewMode};
use crate::engine::{ControlMode, ControlPreprocessor};

use super::engine_choice::EngineSettings;

/// How many local models (folders and checkpoint files) the picker remembers.
pub const RECENT_MODELS_KEPT: usize = 8;
/// How many VAE files the VAE picker remembers.
pub const RECENT_VAES_KEPT: usize = 6;
/// A1111's clip-skip slider goes to 12, the depth of SD 1.x's text encoder.
pub const MAX_CLIP_SKIP: usize = 12;
/// The LoRA strength slider's range; A1111 allows more in tags, rarely useful.
pub const MAX_LORA_MULTIPLIER: f64 = 2.0;

/// Sizes are kept on the VAE's 8-pixel grid (every SD family uses a scale factor of 8).
pub const SIZE_STEP: usize = 8;
pub const MAX_SIDE: usize = 4096;
pub const MAX_STEPS: usize = 150;
pub const MAX_BATCH: usize = 64;
pub const MAX_GUIDANCE: f64 = 30.0;
/// ControlNet units at once (A1111's default maximum is 3).
pub const MAX_CONTROL_UNITS: usize = 4;
/// How many ControlNet folders and files the unit pickers remember.
pub const RECENT_CONTROLNETS_KEPT: usize = 8;
/// The ControlNet weight slider's range (A1111's).
pub const MAX_CONTROL_WEIGHT: f64 = 2.0;

/// How many prompts the prompt history keeps.
pub const PROMPT_HISTORY_KEPT: usize = 200;

/// A prompt (with its negative prompt) as generated once, for the prompt history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptRecord {
    pub prompt: String,
    pub negative: String,
}

/// One ControlNet unit as the window keeps it; its picture lives only for the session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ControlUnitSettings {
    pub enabled: bool,
    /// A diffusers ControlNet folder or `.safetensors` file.
    pub model: Option<PathBuf>,
    pub preprocessor: ControlPreprocessor,
    pub weight: f64,
    /// The fraction of the steps it acts on.
    pub start: f64,
    pub end: f64,
    pub mode: ControlMode,
}

impl Default for ControlUnitSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            model: None,
            preprocessor: ControlPreprocessor::None,
            weight: 1.0,
            start: 0.0,
            end: 1.0,
            mode: ControlMode::Balanced,
        }
    }
}

/// A1111's mask blur slider goes to 64 pixels.
pub const MAX_MASK_BLUR: usize = 64;
/// A1111's "Only masked padding" slider goes to 256 pixels.
pub const MAX_INPAINT_PADDING: usize = 256;
/// The brush's diameter range, in image pixels.
pub const MIN_BRUSH_SIZE: f32 = 1.0;
pub const MAX_BRUSH_SIZE: f32 = 512.0;

/// Which theme the window uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ThemeChoice {
    #[default]
    Dark,
    Light,
    /// Follows the desktop's light/dark setting, also when it changes.
    System,
}

impl ThemeChoice {
    pub const ALL: [ThemeChoice; 3] = [ThemeChoice::Dark, ThemeChoice::Light, ThemeChoice::System];

    pub fn label(self) -> &'static str {
        match self {
            ThemeChoice::Dark => "Dark",
            ThemeChoice::Light => "Light",
            ThemeChoice::System => "System",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
// A file written by an older or newer version still loads: missing fields take their defaults.
#[serde(default)]
pub struct State {
    /// The model to load at start and to generate with.
    pub model: Option<ModelSource>,
    /// Local models opened before (diffusers folders and single-file checkpoints), most
    /// recent first. Older versions stored only folders, as `recent_folders`.
    #[serde(alias = "recent_folders")]
    pub recent_models: Vec<PathBuf>,
    /// A VAE file used instead of the model's own; `None`: the model's own.
    pub vae: Option<PathBuf>,
    /// VAE files chosen before, most recent first.
    pub recent_vaes: Vec<PathBuf>,
    /// Decode in overlapping tiles (less memory for large images).
    pub vae_tiling: bool,
    /// Decode finished images with the tiny autoencoder (fast, not exact).
    pub fast_decode: bool,
    /// bf16 matrix products on CPUs that have them (faster, slightly different images).
    pub bf16_arithmetic: bool,
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
    /// Runs per press of Generate (seeds `seed`, `seed + 1`, … across all their images).
    pub batch_count: usize,
    /// Images denoised together in each run (A1111's batch size).
    pub batch_size: usize,
    /// img2img: how much of the init image is repainted, 0 < strength ≤ 1.
    pub strength: f64,
    /// A1111 numbering: 1 uses the text encoder's last layer, 2 the one before, …
    pub clip_skip: usize,
    /// How prompt text is read (A1111 weights and tags, or literal as diffusers).
    #[serde(with = "syntax_by_name")]
    pub prompt_syntax: PromptSyntax,

    /// Inpainting: the mask's Gaussian blur in pixels (A1111's "Mask blur").
    pub mask_blur: usize,
    /// Inpainting: work on a crop around the mask (A1111's "Only masked") instead of the
    /// whole picture.
    pub inpaint_only_masked: bool,
    /// Inpainting "only masked": pixels of context around the mask.
    pub inpaint_padding: usize,
    /// Inpainting: what the masked area starts from.
    #[serde(with = "masked_content_by_name")]
    pub masked_content: MaskedContent,
    /// The mask brush's diameter in image pixels.
    pub brush_size: f32,
    /// 0: hard edge; 1: fades from the centre.
    pub brush_softness: f32,

    /// Where `<lora:NAME:…>` and the LoRA list look; `None`: the default folder.
    pub lora_folder: Option<PathBuf>,
    /// Textual-inversion embeddings; `None`: the default folder.
    pub embeddings_folder: Option<PathBuf>,
    /// The LoRA list's settings, by file name. Entries stay when a file goes away, so
    /// putting it back restores its setting.
    pub loras: BTreeMap<String, LoraChoice>,

    /// Prompts generated before, most recent first.
    pub prompt_history: Vec<PromptRecord>,
    /// What the prompt history is filtered by (not kept between runs).
    #[serde(skip)]
    pub prompt_history_search: String,
    /// The About window is open (not kept between runs).
    #[serde(skip)]
    pub about_open: bool,
    /// ControlNet units (their pictures are not kept between runs).
    pub control_units: Vec<ControlUnitSettings>,
    /// ControlNet folders and files chosen before, most recent first.
    pub recent_controlnets: Vec<PathBuf>,
    /// A1111's variation seed: the starting noise moved toward this seed's by the strength
    /// (0 = off).
    pub variation_seed: u64,
    pub variation_strength: f64,
    /// A1111's `styles.csv` in use; `None`: the one in the app's data folder.
    pub styles_file: Option<PathBuf>,
    /// Styles merged into the prompts at Generate, in the order chosen.
    pub selected_styles: Vec<String>,
    /// The name typed for "save as style" (not kept between runs).
    #[serde(skip)]
    pub new_style_name: String,
    pub theme: ThemeChoice,

    /// Where the worker writes finished images.
    pub output_dir: PathBuf,
    pub preview: PreviewMode,
    /// This computer's engine, or a server's.
    pub engine: EngineSettings,
    /// A1111's "Hires. fix".
    pub hires: crate::app::hires::HiresSettings,
}

impl Default for State {
    fn default() -> Self {
        Self {
            model: None,
            recent_models: Vec::new(),
            vae: None,
            recent_vaes: Vec::new(),
            vae_tiling: false,
            fast_decode: false,
            bf16_arithmetic: false,
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
            batch_size: 1,
            strength: 0.6,
            clip_skip: 1,
            prompt_syntax: PromptSyntax::A1111,
            // A1111's defaults.
            mask_blur: 4,
            inpaint_only_masked: false,
            inpaint_padding: 32,
            masked_content: MaskedContent::Original,
            brush_size: 40.0,
            brush_softness: 0.2,
            lora_folder: None,
            embeddings_folder: None,
            loras: BTreeMap::new(),
            prompt_history: Vec::new(),
            prompt_history_search: String::new(),
            about_open: false,
            control_units: Vec::new(),
            recent_controlnets: Vec::new(),
            variation_seed: 0,
            variation_strength: 0.0,
            styles_file: None,
            selected_styles: Vec::new(),
            new_style_name: String::new(),
            theme: ThemeChoice::Dark,
            output_dir: default_output_dir(),
            preview: PreviewMode::Fast,
            engine: EngineSettings::default(),
            hires: Default::default(),
        }
    }
}

impl State {
    /// Puts the current prompt pair at the top of the prompt history (moving it there when it
    /// was already in it).
    pub fn remember_prompt(&mut self) {
        if self.prompt.trim().is_empty() {
            return;
        }
        let record = PromptRecord {
            prompt: self.prompt.clone(),
            negative: self.negative_prompt.clone(),
        };
        self.prompt_history.retain(|r| *r != record);
        self.prompt_history.insert(0, record);
        self.prompt_history.truncate(PROMPT_HISTORY_KEPT);
    }

    /// Prompt history entries whose prompt or negative prompt contains every word of the
    /// search (case-insensitive), most recent first.
    pub fn prompt_history_matches(&self) -> impl Iterator<Item = &PromptRecord> {
        let words: Vec<String> = self
            .prompt_history_search
            .split_whitespace()
            .map(str::to_lowercase)
            .collect();
        self.prompt_history.iter().filter(move |record| {
            let text = format!("{}\n{}", record.prompt, record.negative).to_lowercase();
            words.iter().all(|word| text.contains(word))
        })
    }

    /// Remembers a ControlNet folder or file at the top of the recent list.
    pub fn remember_controlnet(&mut self, path: &Path) {
        self.recent_controlnets.retain(|p| p != path);
        self.recent_controlnets.insert(0, path.to_path_buf());
        self.recent_controlnets.truncate(RECENT_CONTROLNETS_KEPT);
    }

    /// Takes a freshly loaded model's native size, steps and guidance.
    pub fn apply_model_defaults(&mut self, source: &ModelSource, defaults: &ModelDefaults) {
        self.steps = defaults.steps.clamp(1, MAX_STEPS);
        self.guidance = defaults.guidance;
        self.width = snap_to_grid(defaults.width);
        self.height = snap_to_grid(defaults.height);
        self.defaults_applied_for = Some(source.clone());
    }

    /// Puts a model folder or file at the front of the recent list (once).
    pub fn remember_model(&mut self, path: &Path) {
        remember(&mut self.recent_models, path, RECENT_MODELS_KEPT);
    }

    /// Puts a VAE file at the front of the recent list (once).
    pub fn remember_vae(&mut self, path: &Path) {
        remember(&mut self.recent_vaes, path, RECENT_VAES_KEPT);
    }

    /// The LoRA folder in use: the chosen one, else the default (which may not exist yet).
    pub fn lora_folder_in_use(&self) -> Option<PathBuf> {
        self.lora_folder
            .clone()
            .or_else(crate::engine::default_lora_dir)
    }

    /// The embeddings folder in use: the chosen one, else the default.
    pub fn embeddings_folder_in_use(&self) -> Option<PathBuf> {
        self.embeddings_folder
            .clone()
            .or_else(crate::engine::default_embeddings_dir)
    }

    /// What the worker is told with [`crate::engine::Command::SetFolders`].
    pub fn add_on_folders(&self) -> AddOnFolders {
        AddOnFolders {
            loras: self.lora_folder_in_use(),
            embeddings: self.embeddings_folder_in_use(),
        }
    }

    /// The list setting of LoRA file `file_name` (off at strength 1 until touched).
    pub fn lora_choice(&self, file_name: &str) -> LoraChoice {
        self.loras.get(file_name).copied().unwrap_or_default()
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
        self.batch_size = self.batch_size.clamp(1, MAX_BATCH_SIZE);
        if !(self.strength > 0.0 && self.strength <= 1.0) {
            self.strength = 0.6;
        }
        if self.output_dir.as_os_str().is_empty() {
            self.output_dir = default_output_dir();
        }
        self.hires.sanitize();
        if let PreviewMode::Vae { every } = &mut self.preview {
            *every = (*every).max(1);
        }
        self.clip_skip = self.clip_skip.clamp(1, MAX_CLIP_SKIP);
        self.mask_blur = self.mask_blur.min(MAX_MASK_BLUR);
        self.inpaint_padding = self.inpaint_padding.min(MAX_INPAINT_PADDING);
        self.brush_size = if self.brush_size.is_finite() {
            self.brush_size.clamp(MIN_BRUSH_SIZE, MAX_BRUSH_SIZE)
        } else {
            40.0
        };
        self.brush_softness = if self.brush_softness.is_finite() {
            self.brush_softness.clamp(0.0, 1.0)
        } else {
            0.2
        };
        for choice in self.loras.values_mut() {
            choice.multiplier = sane_lora_multiplier(choice.multiplier);
        }
        self.recent_models.truncate(RECENT_MODELS_KEPT);
        self.recent_vaes.truncate(RECENT_VAES_KEPT);
        self
    }
}

/// One row of the LoRA list: merged into every generation while `enabled`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoraChoice {
    pub enabled: bool,
    pub multiplier: f64,
}

impl Default for LoraChoice {
    fn default() -> Self {
        Self {
            enabled: false,
            multiplier: 1.0,
        }
    }
}

/// A multiplier the slider can show: finite and within ±[`MAX_LORA_MULTIPLIER`].
pub fn sane_lora_multiplier(multiplier: f64) -> f64 {
    if multiplier.is_finite() {
        multiplier.clamp(-MAX_LORA_MULTIPLIER, MAX_LORA_MULTIPLIER)
    } else {
        1.0
    }
}

/// Moves `path` to the front of `list` (once), keeping at most `kept` entries.
fn remember(list: &mut Vec<PathBuf>, path: &Path, kept: usize) {
    list.retain(|known| known != path);
    list.insert(0, path.to_path_buf());
    list.truncate(kept);
}

/// The nearest size on the 8-pixel grid within `SIZE_STEP..=MAX_SIDE`.
pub fn snap_to_grid(value: usize) -> usize {
    let snapped = value.saturating_add(SIZE_STEP / 2) / SIZE_STEP * SIZE_STEP;
    snapped.clamp(SIZE_STEP, MAX_SIDE)
}

/// `Pictures/Latent Studio`, or `~/Latent Studio` where the system names no pictures folder.
pub fn default_output_dir() -> PathBuf {
    dirs::picture_dir()
        .or_else(dirs::home_dir)
        .unwrap_or_else(std::env::temp_dir)
        .join("Latent Studio")
}

pub use crate::engine::random_seed;

/// The scheduler is stored by its CLI name, so the file stays readable and an unknown name
/// (from a newer version) falls back to the model's own scheduler instead of failing the load.
mod scheduler_by_name {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::engine::SchedulerKind;

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

/// The prompt syntax is stored by name, like the scheduler, so a name from a newer version
/// falls back to A1111 syntax instead of failing the whole settings file.
mod syntax_by_name {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::engine::PromptSyntax;

    pub fn serialize<S: Serializer>(
        syntax: &PromptSyntax,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(syntax.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<PromptSyntax, D::Error> {
        let name = String::deserialize(deserializer)?;
        Ok(name.parse().unwrap_or_default())
    }
}

/// Masked content is stored by its CLI name; an unknown one falls back to the original.
mod masked_content_by_name {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::engine::MaskedContent;

    pub fn serialize<S: Serializer>(
        content: &MaskedContent,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(content.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<MaskedContent, D::Error> {
        let name = String::deserialize(deserializer)?;
        Ok(MaskedContent::parse(&name).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prompt_history_keeps_each_prompt_once_newest_first_and_searches_words() {
        let mut state = State::default();
        for prompt in ["a red boat", "a Blue house", "a red boat", "  "] {
            state.prompt = prompt.into();
            state.remember_prompt();
        }
        let prompts: Vec<&str> = state
            .prompt_history
            .iter()
            .map(|r| r.prompt.as_str())
            .collect();
        assert_eq!(prompts, ["a red boat", "a Blue house"]);
        state.prompt_history_search = "blue HOUSE".into();
        let found: Vec<&str> = state
            .prompt_history_matches()
            .map(|r| r.prompt.as_str())
            .collect();
        assert_eq!(found, ["a Blue house"]);
        for i in 0..PROMPT_HISTORY_KEPT + 5 {
            state.prompt = format!("prompt {i}");
            state.remember_prompt();
        }
        assert_eq!(state.prompt_history.len(), PROMPT_HISTORY_KEPT);
    }

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
    fn recent_models_are_unique_and_bounded() {
        let mut state = State::default();
        for i in 0..20 {
            state.remember_model(Path::new(&format!("/models/{i}")));
        }
        state.remember_model(Path::new("/models/5"));
        assert_eq!(state.recent_models.len(), RECENT_MODELS_KEPT);
        assert_eq!(state.recent_models[0], Path::new("/models/5"));
        assert_eq!(
            state
                .recent_models
                .iter()
                .filter(|p| p.as_path() == Path::new("/models/5"))
                .count(),
            1
        );
    }

    #[test]
    fn older_settings_load_and_new_fields_survive_odd_values() {
        let old: State =
            serde_json::from_str(r#"{"recent_folders": ["/models/a"]}"#).expect("old settings");
        assert_eq!(old.recent_models, vec![PathBuf::from("/models/a")]);
        assert_eq!(old.clip_skip, 1);
        assert_eq!(old.prompt_syntax, PromptSyntax::A1111);
        assert_eq!(old.vae, None);

        let state = State {
            prompt_syntax: PromptSyntax::Plain,
            clip_skip: 2,
            vae: Some("/vae/x.safetensors".into()),
            ..State::default()
        };
        let text = serde_json::to_string(&state).expect("serialize");
        assert!(text.contains(r#""prompt_syntax":"plain""#), "{text}");
        let back: State = serde_json::from_str(&text).expect("deserialize");
        assert_eq!(back, state);
        let future = text.replace(r#""plain""#, r#""some-future-syntax""#);
        let back: State = serde_json::from_str(&future).expect("deserialize");
        assert_eq!(back.prompt_syntax, PromptSyntax::A1111);

        let odd: State = serde_json::from_str(
            r#"{"clip_skip": 40, "loras": {"a.safetensors": {"enabled": true, "multiplier": 9.0}}}"#,
        )
        .expect("odd values");
        let odd = odd.sanitized();
        assert_eq!(odd.clip_skip, MAX_CLIP_SKIP);
        assert_eq!(
            odd.lora_choice("a.safetensors"),
            LoraChoice {
                enabled: true,
                multiplier: MAX_LORA_MULTIPLIER
            }
        );
        assert_eq!(odd.lora_choice("other.safetensors"), LoraChoice::default());

        // A huge size used to overflow while snapping to the grid (a panic at start).
        let huge: State = serde_json::from_str(
            r#"{"width": 18446744073709551615, "height": 18446744073709551615, "steps": 18446744073709551615, "batch_count": 18446744073709551615}"#,
        )
        .expect("huge values");
        let huge = huge.sanitized();
        assert_eq!((huge.width, huge.height), (MAX_SIDE, MAX_SIDE));
        assert_eq!((huge.steps, huge.batch_count), (MAX_STEPS, MAX_BATCH));
    }

    #[test]
    fn inpainting_settings_round_trip_and_odd_values_are_repaired() {
        let state = State {
            mask_blur: 9,
            inpaint_only_masked: true,
            inpaint_padding: 48,
            masked_content: MaskedContent::LatentNoise,
            ..State::default()
        };
        let text = serde_json::to_string(&state).expect("serialize");
        assert!(text.contains(r#""masked_content":"noise""#), "{text}");
        let back: State = serde_json::from_str(&text).expect("deserialize");
        assert_eq!(back, state);

        let odd: State = serde_json::from_str(
            r#"{"masked_content": "glitter", "mask_blur": 1000, "inpaint_padding": 9999, "brush_size": -3.0, "brush_softness": 7.0}"#,
        )
        .expect("odd values");
        let odd = odd.sanitized();
        assert_eq!(odd.masked_content, MaskedContent::Original);
        assert_eq!(odd.mask_blur, MAX_MASK_BLUR);
        assert_eq!(odd.inpaint_padding, MAX_INPAINT_PADDING);
        assert_eq!(odd.brush_size, MIN_BRUSH_SIZE);
        assert_eq!(odd.brush_softness, 1.0);
    }
}
