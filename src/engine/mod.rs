//! The worker: one background thread that owns the loaded model, takes [`Command`]s and
//! answers with [`Event`]s. The UI never runs tensor code and never waits on it.

mod parameters;
mod preview;
mod worker;

use std::path::PathBuf;
use std::sync::Arc;

pub use parameters::{a1111_parameters, FileRecord};
pub use preview::{latent_preview, PreviewMode};
pub use worker::{Worker, WorkerHandle};

pub use crate::models::DownloadProgress;
use crate::pipeline::generate::{GenerationRequest, ModelInfo, RgbImage};
pub use crate::pipeline::precision::{bf16_available, CpuArithmetic};
use crate::pipeline::tokenizer::ClipTokenizer;

/// Where a model comes from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ModelSource {
    /// A diffusers folder, or a single-file `.safetensors` checkpoint, on disk.
    Folder(PathBuf),
    /// A Hugging Face hub repository id, fetched into the standard HF cache when needed.
    Hub(String),
}

impl std::fmt::Display for ModelSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelSource::Folder(path) => write!(f, "{}", path.display()),
            ModelSource::Hub(id) => f.write_str(id),
        }
    }
}

/// One press of "Generate": `batch_count` images with seeds `request.seed`, `+1`, …
#[derive(Debug, Clone)]
pub struct GenerateJob {
    pub id: u64,
    pub request: GenerationRequest,
    pub batch_count: usize,
    /// Where finished images are written (created if missing). `None`: not saved.
    pub output_dir: Option<PathBuf>,
    pub preview: PreviewMode,
    /// LoRA files and multipliers to merge, besides the prompt's `<lora:…>` tags.
    pub loras: Vec<(PathBuf, f64)>,
}

/// Folders the worker looks in for add-ons.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddOnFolders {
    /// Where `<lora:NAME:…>` finds `NAME.safetensors`.
    pub loras: Option<PathBuf>,
    /// Textual-inversion embeddings, usable by file name in prompts.
    pub embeddings: Option<PathBuf>,
}

#[derive(Debug)]
pub enum Command {
    LoadModel(ModelSource),
    /// Use this VAE file instead of the model's own (`None`: the model's own), now and for
    /// models loaded later.
    SetVae(Option<PathBuf>),
    SetFolders(AddOnFolders),
    /// Decode in overlapping tiles (less memory for large images), now and for later models.
    SetVaeTiling(bool),
    /// f32 or bf16 matrix products on the CPU, from now on (a notice if the CPU lacks bf16).
    SetCpuArithmetic(CpuArithmetic),
    Generate(GenerateJob),
    Shutdown,
}

/// A loaded model as the UI sees it.
#[derive(Clone)]
pub struct LoadedModel {
    pub source: ModelSource,
    pub info: ModelInfo,
    /// For the prompt token counter.
    pub tokenizer: Arc<ClipTokenizer>,
    /// Textual-inversion embeddings usable in prompts with this model.
    pub embeddings: Vec<String>,
}

pub enum Event {
    ModelLoading {
        source: ModelSource,
    },
    Download {
        source: ModelSource,
        file: String,
        progress: DownloadProgress,
    },
    ModelLoaded(LoadedModel),
    ModelFailed {
        source: ModelSource,
        message: String,
        cause: LoadFailure,
    },
    /// Image `index` (0-based) of job `job` has started.
    Started {
        job: u64,
        index: usize,
        seed: u64,
        total_steps: usize,
    },
    Step {
        job: u64,
        index: usize,
        step: usize,
        total: usize,
        elapsed_secs: f64,
        preview: Option<RgbImage>,
    },
    Finished {
        job: u64,
        index: usize,
        image: FinishedImage,
    },
    Cancelled {
        job: u64,
    },
    /// The job stopped with an error; the worker keeps serving.
    Failed {
        job: u64,
        message: String,
    },
    /// Every image of the job is done.
    JobDone {
        job: u64,
    },
    /// Something the user should know that stopped nothing (an embedding that does not fit
    /// the model, a VAE file that could not be used, …).
    Notice {
        message: String,
    },
    /// The chosen VAE file could not be used; the model's own VAE is in use.
    VaeRejected {
        message: String,
    },
}

/// Why a model did not load, so the UI can say what to do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadFailure {
    /// The hub could not be reached at all.
    Offline,
    /// The download started but failed; finished files are kept for a retry.
    Download,
    /// The source is not in the catalog, or the folder is missing or not a diffusers model.
    NotAModel,
    /// Configs or weights could not be used (unsupported, corrupt, mismatched).
    Invalid,
    /// A bug: the loader panicked.
    Internal,
}

/// A finished image with what made it.
#[derive(Debug, Clone)]
pub struct FinishedImage {
    pub image: RgbImage,
    pub seed: u64,
    /// The A1111 `parameters` text written into the PNG.
    pub parameters: String,
    /// Where it was saved, when it was; `save_error` says why not.
    pub path: Option<PathBuf>,
    pub save_error: Option<String>,
}
