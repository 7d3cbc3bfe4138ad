//! The engine: [`Runner`], the one synchronous generation runner (model loading, LoRAs,
//! seeds, previews, metadata, saving), and the [`Worker`] thread that owns a runner for the
//! window — [`Command`]s in, [`Event`]s out; the UI never runs tensor code and never waits on
//! it. The CLI calls the runner directly.
//!
//! This module is the one front door of the window and of the HTTP server: every type they
//! need from the layers below is re-exported here.

mod depth;
mod hires;
mod job_run;
mod parameters;
mod preview;
mod remote;
mod runner;
mod tiny_vae;
mod upscale;
mod worker;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use depth::DEPTH_MODEL_ENV;
pub use hires::{
    HiresFix, HiresOverrides, HiresUpscaler, LatentUpscale, LATENT_UPSCALERS, MAX_HIRES_SCALE,
    MIN_HIRES_SCALE,
};
pub use parameters::{a1111_parameters, FileRecord};
pub use preview::{latent_preview, PreviewMode};
pub use remote::{RemoteEngine, RemoteWorker, ServerAddressError};
pub use runner::{batch_file_path, ImageStep, JobOutcome, ModelLoadFailure, RunObserver, Runner};
pub use upscale::{
    image_to_tensor, tensor_to_image, UpscaleFailure, UpscaleJob, Upscaled, DEFAULT_UPSCALE_TILE,
    MIN_UPSCALE_TILE,
};
pub use worker::{Worker, WorkerHandle};

pub use crate::formats::parameters::GenerationParameters;
pub use crate::formats::picture::{
    read_picture, read_picture_as_stored, read_picture_from_bytes, MAX_PICTURE_SIDE,
};
pub use crate::formats::png::{
    encode_png_with_parameters, png_parameters_from_bytes, read_png_parameters,
    write_new_png_with_parameters, write_png_with_parameters,
};
pub use crate::formats::styles::{
    apply_styles, read_styles, write_styles, PromptStyle, StyleOutcome, StyleTask, StylesError,
};
pub use crate::imaging::control::{ControlPreprocessor, PreprocessorSetting, SettingError};
pub use crate::imaging::mask::extend_canvas;
pub use crate::kernels::precision::{bf16_available, set_cpu_arithmetic, CpuArithmetic};
pub use crate::models::embeddings::default_embeddings_dir;
pub use crate::models::hashes::HashCache;
pub use crate::models::library::{LibraryError, ModelLibrary, StoredKind, StoredModel};
pub use crate::models::lora::default_lora_dir;
pub use crate::models::{controlnet_repo_id, CatalogControlNet, CONTROLNET_CATALOG};
pub use crate::models::{
    default_models_dir, format_size, Catalog, DownloadProgress, HubCache, HubReference,
    LoadOptions, ModelDefaults, ModelInfo,
};
pub use crate::models::{upscaler_repo_file, CatalogUpscaler, UPSCALER_CATALOG};
pub use crate::networks::controlnet::ControlMode;
pub use crate::networks::Family;
pub use crate::sampling::batch::MAX_BATCH_SIZE;
pub use crate::sampling::inpaint::{InpaintArea, InpaintMask, MaskedContent};
pub use crate::sampling::noise::random_seed;
pub use crate::sampling::pipeline::{
    GenerateError, GenerationRequest, GrayImage, InitImage, RgbImage, Variation, MAX_IMAGE_SIDE,
};
pub use crate::sampling::schedulers::SchedulerKind;
pub use crate::text::prompt::check_prompt;
pub use crate::text::prompt::{extract_lora_tags, token_usage, PromptSyntax};
pub use crate::text::tokenizer::ClipTokenizer;

/// Where a model comes from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ModelSource {
    /// A diffusers folder, or a single-file `.safetensors` checkpoint, on disk.
    Folder(PathBuf),
    /// Something to download, fetched when needed (see [`HubReference`]): a Hugging Face hub
    /// repository id (`org/name`, into the standard HF cache), a single `.safetensors` file in
    /// a repository (`org/name/path/file.safetensors`, into the cache too), or an `https://`
    /// URL of a `.safetensors` file (into the models folder, [`default_models_dir`]).
    Hub(String),
    /// A model of the server the window drives ([`RemoteWorker`]), by its A1111 title.
    Server(String),
}

impl ModelSource {
    /// A model as a user names it on the command line or in the model box: an existing file
    /// or folder, an `http(s)://` URL, `org/name`, `org/name/…/file.safetensors`, or else a
    /// path.
    pub fn from_arg(arg: &str) -> Self {
        let arg = arg.trim();
        let path = Path::new(arg);
        let is_url = arg.starts_with("https://") || arg.starts_with("http://");
        let parts = arg.split('/').count();
        let looks_like_hub_id = !arg.starts_with(['.', '/', '~'])
            && !arg.contains('\\')
            && (parts == 2 || (parts > 2 && names_a_checkpoint(arg)));
        if is_url {
            ModelSource::Hub(arg.to_string())
        } else if path.exists() || !looks_like_hub_id {
            // Absolute, so a remembered folder still works when started from elsewhere.
            ModelSource::Folder(std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()))
        } else {
            ModelSource::Hub(arg.to_string())
        }
    }
}

/// `…/x.safetensors`, or a pickle (`.ckpt`, `.bin` …), which the download then refuses by name
/// with a clear message.
fn names_a_checkpoint(arg: &str) -> bool {
    let path = Path::new(arg);
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"))
        || crate::models::pickle_extension(path).is_some()
}

/// Where a loaded model lives on disk, for "is it in use?" before a delete: its checkpoint
/// file, its folder, or the hub cache folder of its repository.
pub fn loaded_model_location(model: &LoadedModel) -> Option<PathBuf> {
    if let Some(file) = &model.info.file {
        return Some(file.clone());
    }
    match &model.source {
        ModelSource::Folder(path) => Some(path.clone()),
        ModelSource::Hub(text) => match HubReference::parse(text).ok()? {
            HubReference::Repo { id } | HubReference::RepoFile { id, .. } => {
                Some(crate::models::HubCache::from_env().repo_dir(&id))
            }
            HubReference::Url(_) => None,
        },
        // On another machine: nothing here to delete.
        ModelSource::Server(_) => None,
    }
}

impl std::fmt::Display for ModelSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelSource::Folder(path) => write!(f, "{}", path.display()),
            ModelSource::Hub(id) => f.write_str(id),
            ModelSource::Server(title) => write!(f, "{title} (on the server)"),
        }
    }
}

/// One press of "Generate": `batch_count` runs of `batch_size` images, with seeds
/// `request.seed`, `+1`, … across them all (A1111's numbering).
#[derive(Debug, Clone)]
pub struct GenerateJob {
    pub id: u64,
    pub request: GenerationRequest,
    pub batch_count: usize,
    /// Images denoised together in one run (at most [`MAX_BATCH_SIZE`]).
    pub batch_size: usize,
    pub output: ImageOutput,
    pub preview: PreviewMode,
    /// LoRA files and multipliers to merge, besides the prompt's `<lora:…>` tags.
    pub loras: Vec<(PathBuf, f64)>,
    /// ControlNet units; the runner loads the files and preprocesses the images.
    pub controls: Vec<ControlSpec>,
    /// A1111's "Hires. fix": a second, img2img pass at a larger size.
    pub hires: Option<HiresFix>,
}

impl GenerateJob {
    /// Every image the job makes: runs × images per run.
    pub fn image_count(&self) -> usize {
        self.batch_count.max(1) * self.batch_size.max(1)
    }
}

/// "Upscale" on a finished picture: the result is saved as a new image whose `parameters`
/// are the picture's, plus A1111's `Postprocess upscale by` and `Postprocess upscaler`.
/// Its tiles are reported as the job's steps.
#[derive(Debug, Clone)]
pub struct UpscaleImageJob {
    pub id: u64,
    pub upscale: UpscaleJob,
    /// The picture's A1111 `parameters` (empty when it has none).
    pub parameters: String,
    pub output: ImageOutput,
}

/// A ControlNet unit as a user sets it up: which file, which picture, which preprocessor.
#[derive(Debug, Clone)]
pub struct ControlSpec {
    /// A diffusers ControlNet folder or `.safetensors` file; or, when no such path exists, a
    /// Hugging Face repository id (`org/name`) fetched into the hub cache on first use.
    pub model: PathBuf,
    /// The picture the preprocessor reads.
    pub image: RgbImage,
    pub preprocessor: ControlPreprocessor,
    pub scale: f64,
    pub start: f64,
    pub end: f64,
    pub mode: ControlMode,
}

/// Where a job's finished images are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageOutput {
    /// Kept in memory only.
    None,
    /// `NNNNN-SEED.png` in this folder (created if missing), numbered as A1111 does.
    Folder(PathBuf),
    /// This file for one image; `NAME-1.png`, `NAME-2.png` … beside it for a batch.
    File(PathBuf),
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
// A few commands a second cross the channel; a job's size (its pictures live on the heap)
// costs nothing worth boxing it for.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    LoadModel(ModelSource),
    /// Use this VAE file instead of the model's own (`None`: the model's own), now and for
    /// models loaded later.
    SetVae(Option<PathBuf>),
    SetFolders(AddOnFolders),
    /// Decode in overlapping tiles (less memory for large images), now and for later models.
    SetVaeTiling(bool),
    /// The tiny autoencoder for "Tiny VAE" previews and fast decodes (`None`: TAESD or
    /// TAESDXL from the Hugging Face cache, downloaded when missing).
    SetTinyVae(Option<PathBuf>),
    /// Decode finished images with the tiny autoencoder instead of the VAE.
    SetFastDecode(bool),
    /// f32 or bf16 matrix products on the CPU, from now on (a notice if the CPU lacks bf16).
    SetCpuArithmetic(CpuArithmetic),
    Generate(GenerateJob),
    /// Upscale a finished picture and save it as a new image (A1111's "Extras").
    Upscale(UpscaleImageJob),
    /// The map `preprocessor` makes of `image` (for a preview; a depth map needs the depth
    /// network, which lives here): answered with [`Event::ControlMap`].
    MakeControlMap {
        unit: usize,
        preprocessor: ControlPreprocessor,
        image: Arc<RgbImage>,
    },
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
    /// A file of `source` is being fetched from the hub (or a URL); `purpose` says what
    /// waits for it.
    Download {
        source: ModelSource,
        file: String,
        progress: DownloadProgress,
        purpose: DownloadPurpose,
    },
    ModelLoaded(LoadedModel),
    /// The models a server offers ([`RemoteWorker`]), by A1111 title, and the one it uses
    /// for requests that name none.
    ServerModels {
        titles: Vec<String>,
        current: Option<String>,
        /// Why the server could not be asked (then the lists are empty).
        problem: Option<String>,
    },
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
        failure: GenerationFailure,
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
    /// The answer to [`Command::MakeControlMap`]: the map, or why there is none.
    ControlMap {
        unit: usize,
        preprocessor: ControlPreprocessor,
        image: Arc<RgbImage>,
        map: Result<RgbImage, String>,
    },
}

/// What waits for a download, so the window shows it in the right place and knows which
/// cancel stops it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownloadPurpose {
    /// The model being loaded ([`Event::ModelLoading`] came first); stopped by
    /// [`WorkerHandle::cancel_download`].
    Model,
    /// A file job `id` needs: a ControlNet or T2I-Adapter, an upscaler, the tiny VAE, the
    /// depth model. Stopped by cancelling the job.
    Job(u64),
    /// The depth model, for the map preview of ControlNet unit `unit`
    /// ([`Command::MakeControlMap`]); stopped by [`WorkerHandle::cancel_download`].
    ControlMap { unit: usize },
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
    /// The server the window drives could not be reached, or refused.
    Server,
}

/// Why a generation failed, so the window can say what to do about it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GenerationFailure {
    #[error("no model is loaded; pick one in the model list first")]
    NoModel,
    /// The request cannot be run as it is (a size, a prompt, a scheduler the model lacks).
    #[error("{0}")]
    InvalidRequest(String),
    /// A LoRA could not be found, read or merged.
    #[error("{0}")]
    Lora(String),
    /// A ControlNet could not be found, read or used with this model.
    #[error("{0}")]
    ControlNet(String),
    #[error("out of memory: {0}")]
    OutOfMemory(String),
    #[error("computation failed: {0}")]
    Compute(String),
    /// A bug: the generation panicked.
    #[error("internal error: {0}")]
    Internal(String),
    /// The server the window drives could not be reached, refused the request, or cannot
    /// carry what it asks for.
    #[error("{0}")]
    Server(String),
}

impl From<GenerateError> for GenerationFailure {
    fn from(err: GenerateError) -> Self {
        match err {
            GenerateError::InvalidRequest(message) => Self::InvalidRequest(message),
            GenerateError::Scheduler(
                err @ crate::sampling::schedulers::SchedulerConfigError::InvalidSteps { .. },
            ) => Self::InvalidRequest(format!("steps: {err}")),
            GenerateError::Scheduler(err) => Self::InvalidRequest(format!("scheduler: {err}")),
            GenerateError::Cancelled => Self::Internal("cancelled without a cancel".into()),
            // Device allocators report exhaustion as an error (a CPU allocation failure ends
            // the process instead); candle passes their text on.
            GenerateError::Compute(message) if mentions_out_of_memory(&message) => {
                Self::OutOfMemory(message)
            }
            GenerateError::Compute(message) => Self::Compute(message),
        }
    }
}

fn mentions_out_of_memory(message: &str) -> bool {
    let lower = message.to_lowercase();
    lower.contains("out of memory") || lower.contains("out_of_memory")
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
