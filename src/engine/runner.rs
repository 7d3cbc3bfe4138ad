//! The one generation runner: resolves and loads models, keeps the VAE choice, add-on folders
//! and LoRA files, and runs jobs — LoRAs merged, seeds offset per image, previews made, A1111
//! metadata written, PNGs saved. Synchronous: the worker thread wraps it for the window, and
//! `latent-studio generate` calls it directly. A new capability (a mask, a control image, a
//! hires pass) is added here once and reaches both.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::hires::HiresUpscaler;
use super::job_run::JobRun;
use super::tiny_vae::TinyVaeSlot;
use super::upscale::{self, UpscaleFailure, UpscaleJob, Upscaled};
use super::{
    AddOnFolders, ControlSpec, FileRecord, FinishedImage, GenerateJob, GenerationFailure,
    LoadFailure, LoadedModel, ModelSource, PreviewMode,
};
use crate::formats::png::{write_new_png_with_parameters, write_png_with_parameters, ImageIoError};
use crate::models::controlnet::{load_controlnet, LoadedControlNet};
use crate::models::embeddings::load_embeddings_dir;
use crate::models::hashes::HashCache;
use crate::models::lora::LoraLibrary;
use crate::models::upscaler::LoadedUpscaler;
use crate::models::{
    controlnet_repo_id, default_models_dir, load_model, ControlNetFetchError, DownloadError,
    DownloadProgress, HubCache, HubClient, HubReference, LoadError, LoadOptions, StableDiffusion,
};
use crate::sampling::pipeline::{ControlUnit, GenerationRequest, RgbImage};
use crate::text::prompt::PromptSyntax;

/// What a caller of the runner hears while it works. Every method has a default that ignores
/// the news, so a caller implements only what it shows.
pub trait RunObserver {
    /// A file of a hub model is being downloaded; return `false` to stop the download.
    fn download(&mut self, source: &ModelSource, file: &str, progress: DownloadProgress) -> bool {
        let _ = (source, file, progress);
        true
    }
    /// Something the user should know that stopped nothing (an embedding that does not fit).
    fn notice(&mut self, message: String) {
        let _ = message;
    }
    /// The chosen VAE file could not be used; the model's own VAE is in use.
    fn vae_rejected(&mut self, message: String) {
        let _ = message;
    }
    /// Image `index` (0-based) of the job starts.
    fn image_started(&mut self, index: usize, seed: u64, total_steps: usize) {
        let _ = (index, seed, total_steps);
    }
    /// A denoising step of image `index` finished.
    fn step(&mut self, progress: ImageStep) {
        let _ = progress;
    }
    fn image_finished(&mut self, index: usize, image: FinishedImage) {
        let _ = (index, image);
    }
    /// Tile `done` of `total` of an upscale is finished.
    fn upscale_tile(&mut self, done: usize, total: usize) {
        let _ = (done, total);
    }
    /// Asked before every image and after every step (and upscale tile), and as files a
    /// job needs download: `true` stops the job there.
    fn is_cancelled(&self) -> bool {
        false
    }
}

/// The progress callback of a download a job needs (a ControlNet, an upscaler, the tiny
/// VAE, the depth model): told to `observer` as a download of `source`, as a model's is, and
/// stopped when the job is cancelled. A stopped download keeps its partial file, which only
/// a later download resumes (it is never loaded).
pub(super) fn add_on_download(
    observer: &mut dyn RunObserver,
    source: &ModelSource,
    file: &str,
    progress: DownloadProgress,
) -> bool {
    observer.download(source, file, progress) && !observer.is_cancelled()
}

/// One finished denoising step, for progress displays.
pub struct ImageStep {
    pub index: usize,
    /// 1-based.
    pub step: usize,
    pub total: usize,
    pub elapsed_secs: f64,
    pub preview: Option<RgbImage>,
}

/// How a job that did not fail ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOutcome {
    Completed,
    Cancelled,
}

/// Why a model did not load: the kind, for what to do about it, and the message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ModelLoadFailure {
    pub cause: LoadFailure,
    pub message: String,
}

pub struct Runner {
    model: Option<(ModelSource, StableDiffusion)>,
    options: LoadOptions,
    vae: Option<PathBuf>,
    vae_tiling: bool,
    folders: AddOnFolders,
    loras: LoraLibrary,
    hashes: HashCache,
    /// The ControlNets of the last job, kept for the next (by file).
    controlnets: Vec<(PathBuf, LoadedControlNet)>,
    /// The upscaler of the last upscale, kept for the next (by file).
    upscaler: Option<(PathBuf, LoadedUpscaler)>,
    /// TAESD / TAESDXL, for "Tiny VAE" previews and the fast final decode.
    tiny_vae: TinyVaeSlot,
    /// Decode finished images with the tiny autoencoder instead of the VAE.
    fast_decode: bool,
    /// The depth model of `depth_anything_v2` units, kept once loaded.
    depth: super::depth::DepthMaps,
}

impl Runner {
    pub fn new(options: LoadOptions) -> Self {
        Self {
            model: None,
            options,
            vae: None,
            vae_tiling: false,
            folders: AddOnFolders::default(),
            loras: LoraLibrary::default(),
            hashes: HashCache::user_default(),
            controlnets: Vec::new(),
            upscaler: None,
            tiny_vae: TinyVaeSlot::default(),
            fast_decode: false,
            depth: Default::default(),
        }
    }

    /// The depth model (folder or `.safetensors` file) for `depth_anything_v2` units,
    /// instead of `LATENT_STUDIO_DEPTH_MODEL`'s or the Hugging Face cache's.
    pub fn set_depth_model(&mut self, path: Option<PathBuf>) {
        self.depth.model = path;
    }

    /// The map `preprocessor` makes of `image`: pixel work, or the depth network's (whose
    /// first use downloads it, reported to `observer`).
    pub fn control_map(
        &mut self,
        preprocessor: crate::imaging::control::ControlPreprocessor,
        image: &RgbImage,
        observer: &mut dyn RunObserver,
    ) -> Result<RgbImage, String> {
        match preprocessor.apply(image) {
            Some(map) => Ok(map),
            None => self.depth.map(image, &self.options.device, observer),
        }
    }

    /// The loaded model, if any.
    pub fn model(&self) -> Option<&StableDiffusion> {
        self.model.as_ref().map(|(_, model)| model)
    }

    /// The loaded model as the window sees it.
    pub fn loaded(&self) -> Option<LoadedModel> {
        self.model
            .as_ref()
            .map(|(source, model)| describe(source, model))
    }

    /// Forgets the loaded model (after a panic left it in an unknown state).
    pub fn unload(&mut self) {
        self.model = None;
    }

    /// Use this VAE file instead of the model's own (`None`: the model's own), now and for
    /// models loaded later. A file that cannot be used is forgotten and reported.
    pub fn set_vae(&mut self, vae: Option<PathBuf>, observer: &mut dyn RunObserver) {
        self.vae = vae;
        if let Some((_, model)) = &mut self.model {
            if let Err(err) = model.replace_vae(self.vae.as_deref()) {
                self.vae = None;
                let _ = model.replace_vae(None);
                observer.vae_rejected(format!("VAE not changed: {err}"));
            }
        }
    }

    /// Decode in overlapping tiles (less memory for large images), now and for later models.
    pub fn set_vae_tiling(&mut self, enabled: bool) {
        self.vae_tiling = enabled;
        if let Some((_, model)) = &mut self.model {
            model.set_vae_tiling(enabled);
        }
    }

    /// The tiny autoencoder file or folder for previews and fast decodes (`None`: TAESD or
    /// TAESDXL from the Hugging Face cache, downloaded when missing).
    pub fn set_tiny_vae(&mut self, path: Option<PathBuf>) {
        self.tiny_vae.choose(path);
    }

    /// Decode finished images with the tiny autoencoder (fast, not exact; recorded in the
    /// PNG as `Fast decode`) instead of the VAE.
    pub fn set_fast_decode(&mut self, enabled: bool) {
        self.fast_decode = enabled;
    }

    /// Where LoRA tags and embeddings are found; returns whether the embeddings changed (the
    /// loaded model then offers another set).
    pub fn set_folders(&mut self, folders: AddOnFolders, observer: &mut dyn RunObserver) -> bool {
        self.loras.set_dir(folders.loras.clone());
        let embeddings_changed = folders.embeddings != self.folders.embeddings;
        self.folders = folders;
        if embeddings_changed {
            self.load_embeddings(observer);
        }
        embeddings_changed && self.model.is_some()
    }

    /// Finds and reads the LoRAs a job will ask for (`listed` files and the prompt's
    /// `<lora:…>` tags), so that a missing or unreadable one is reported before a model
    /// loads. They are kept, and not read again when the job runs.
    pub fn check_loras(
        &mut self,
        prompt: &str,
        syntax: PromptSyntax,
        listed: &[(PathBuf, f64)],
    ) -> Result<(), GenerationFailure> {
        self.loras
            .for_request(prompt, syntax, listed)
            .map(drop)
            .map_err(|err| GenerationFailure::Lora(err.to_string()))
    }

    /// Loads `source` (downloading a hub model that is not in the Hugging Face cache yet),
    /// with the chosen VAE, tiling and embeddings. Loading the model already loaded is free.
    pub fn load(
        &mut self,
        source: &ModelSource,
        observer: &mut dyn RunObserver,
    ) -> Result<LoadedModel, ModelLoadFailure> {
        if let Some((loaded, model)) = &self.model {
            if loaded == source {
                return Ok(describe(loaded, model));
            }
        }
        // Free the old model before the new one claims its memory.
        self.model = None;
        let folder = self.resolve(source, observer)?;
        // The chosen VAE is read with the model (a checkpoint without a VAE needs one). When
        // the model loads only without it, the VAE file was at fault: say so and go on.
        let mut options = self.options.clone();
        options.vae = self.vae.clone();
        let mut model = match load_model(&folder, &options) {
            Ok(model) => model,
            Err(err) if options.vae.is_some() => {
                let failure = load_failure(err);
                options.vae = None;
                let model = load_model(&folder, &options).map_err(|_| failure.clone())?;
                self.vae = None;
                observer.vae_rejected(format!("using the model's own VAE: {}", failure.message));
                model
            }
            Err(err) => return Err(load_failure(err)),
        };
        model.set_vae_tiling(self.vae_tiling);
        // A1111's model hash, remembered per file, so the first image need not wait.
        if let Some(file) = &model.info().file {
            let _ = self.hashes.model_hash(file);
        }
        self.model = Some((source.clone(), model));
        self.load_embeddings(observer);
        Ok(self.loaded().expect("the model was just stored"))
    }

    /// The local folder or file a model source stands for.
    fn resolve(
        &self,
        source: &ModelSource,
        observer: &mut dyn RunObserver,
    ) -> Result<PathBuf, ModelLoadFailure> {
        let id = match source {
            ModelSource::Folder(path) => return Ok(path.clone()),
            ModelSource::Hub(id) => id,
            ModelSource::Server(title) => {
                return Err(ModelLoadFailure {
                    cause: LoadFailure::NotAModel,
                    message: format!("{title} is a model of a server; set Engine to that server, or choose a model on this computer"),
                })
            }
        };
        let not_a_model = |message: String| ModelLoadFailure {
            cause: LoadFailure::NotAModel,
            message,
        };
        let reference =
            HubReference::parse(id).map_err(|err| not_a_model(format!("{id}: {err}")))?;
        let models_dir = default_models_dir().ok_or_else(|| {
            not_a_model(format!(
                "{id}: no data folder to save downloaded models in; set LATENT_STUDIO_MODELS_DIR"
            ))
        })?;
        // Returns at once, without network, when the HF cache or the models folder already
        // holds the files.
        let path = HubClient::from_env()
            .fetch(
                &reference,
                &HubCache::from_env(),
                &models_dir,
                |file, progress| observer.download(source, file, progress),
            )
            .map_err(|err| ModelLoadFailure {
                cause: if err.is_offline() {
                    LoadFailure::Offline
                } else if matches!(
                    err,
                    DownloadError::NotDiffusers { .. }
                        | DownloadError::PickleRefused { .. }
                        | DownloadError::NotSafetensors { .. }
                        | DownloadError::BadReference { .. }
                ) {
                    LoadFailure::NotAModel
                } else {
                    LoadFailure::Download
                },
                message: format!("{id}: {err}"),
            })?;
        crate::models::library::mark_used(&path);
        Ok(path)
    }

    /// Reads the embeddings folder and gives the loaded model the embeddings that fit it.
    fn load_embeddings(&mut self, observer: &mut dyn RunObserver) {
        let Some((_, model)) = &mut self.model else {
            return;
        };
        let (found, errors) = match &self.folders.embeddings {
            Some(dir) => load_embeddings_dir(dir),
            None => (Vec::new(), Vec::new()),
        };
        let skipped = model.set_embeddings(found.into_iter().map(Arc::new).collect());
        for err in errors {
            observer.notice(format!("embedding skipped: {err}"));
        }
        if !skipped.is_empty() {
            observer.notice(format!(
                "embeddings made for another model family skipped: {}",
                skipped.join(", ")
            ));
        }
    }

    /// Everything about `request` the loaded model can tell before it runs (a scheduler its
    /// config can drive for this many steps, a clip skip within its layers, a size whose
    /// decode fits in memory …); `run` checks the same first.
    pub fn check(&self, request: &GenerationRequest) -> Result<(), GenerationFailure> {
        let model = self.model().ok_or(GenerationFailure::NoModel)?;
        request
            .scheduler
            .a1111_label(model.pipeline().scheduler_config())
            .map_err(|err| GenerationFailure::InvalidRequest(format!("scheduler: {err}")))?;
        model.pipeline().check(request)?;
        Ok(())
    }

    /// [`Self::check`] for a whole job: its ControlNets are loaded (and kept for the run)
    /// and checked against the model too. Hub ControlNets and the depth model download here
    /// on first use, reported to `observer`.
    pub fn check_job(
        &mut self,
        job: &GenerateJob,
        observer: &mut dyn RunObserver,
    ) -> Result<(), GenerationFailure> {
        let mut request = job.request.clone();
        request.controls = self.control_units(&job.controls, observer)?;
        self.check(&request)
    }

    /// Loads the upscaler `job` names (kept for the next upscale; a hub file downloads on
    /// first use, reported to `observer`) and checks the picture against it, before any
    /// work; returns the upscaler's scale.
    pub fn check_upscale(
        &mut self,
        job: &UpscaleJob,
        observer: &mut dyn RunObserver,
    ) -> Result<usize, UpscaleFailure> {
        let upscaler =
            upscale::load_cached(&mut self.upscaler, &job.model, &self.options, observer)?;
        upscale::check_upscale(upscaler, &job.image, job.tile)?;
        Ok(upscaler.net.scale())
    }

    /// Upscales `job.image` with its upscaler, tile by tile (reported to the observer, which
    /// may cancel: then `None`, also while a hub upscaler still downloads).
    pub fn upscale(
        &mut self,
        job: &UpscaleJob,
        observer: &mut dyn RunObserver,
    ) -> Result<Option<Upscaled>, UpscaleFailure> {
        let loaded = upscale::load_cached(&mut self.upscaler, &job.model, &self.options, observer);
        let upscaler = match loaded {
            Ok(upscaler) => upscaler,
            Err(_) if observer.is_cancelled() => return Ok(None),
            Err(err) => return Err(err),
        };
        upscale::run_upscale(upscaler, &job.image, job.tile, &self.options, observer)
    }

    /// Upscales a finished picture and saves it (see [`super::UpscaleImageJob`]), handing
    /// it to the observer as image 0.
    pub fn upscale_and_save(
        &mut self,
        job: &super::UpscaleImageJob,
        observer: &mut dyn RunObserver,
    ) -> Result<JobOutcome, UpscaleFailure> {
        match self.upscale(&job.upscale, observer)? {
            Some(upscaled) => {
                observer.image_finished(0, upscale::finish(job, upscaled));
                Ok(JobOutcome::Completed)
            }
            None => Ok(JobOutcome::Cancelled),
        }
    }

    /// Runs `job`: `batch_count` images with seeds `seed`, `seed + 1`, … Images finished
    /// before a failure or a cancel have been handed to the observer (and saved).
    pub fn run(
        &mut self,
        job: &GenerateJob,
        observer: &mut dyn RunObserver,
    ) -> Result<JobOutcome, GenerationFailure> {
        if self.model.is_none() {
            return Err(GenerationFailure::NoModel);
        }
        let mut request = job.request.clone();
        // A download the cancel stopped (a hub ControlNet, the depth model) is the cancel.
        request.controls = match self.control_units(&job.controls, observer) {
            Ok(units) => units,
            Err(_) if observer.is_cancelled() => return Ok(JobOutcome::Cancelled),
            Err(err) => return Err(err),
        };
        let Some((_, model)) = &mut self.model else {
            return Err(GenerationFailure::NoModel);
        };
        let request = &request;
        let loras = self
            .loras
            .for_request(&request.prompt, request.prompt_syntax, &job.loras)
            .map_err(|err| GenerationFailure::Lora(err.to_string()))?;
        model
            .apply_loras(loras)
            .map_err(|err| GenerationFailure::Lora(err.to_string()))?;
        self.check(request)?;
        // The second pass is checked (size, memory, strength) before the first one starts,
        // and its upscaler loaded.
        if let Some(hires) = &job.hires {
            let (width, height) = hires.target_size(request.width, request.height);
            self.check(&hires.second_pass(request, RgbImage::filled(width, height, [0; 3])))?;
            if let HiresUpscaler::Model(path) = &hires.upscaler {
                match upscale::load_cached(&mut self.upscaler, path, &self.options, observer) {
                    Ok(_) => {}
                    Err(_) if observer.is_cancelled() => return Ok(JobOutcome::Cancelled),
                    Err(err) => {
                        return Err(GenerationFailure::InvalidRequest(format!(
                            "hires upscaler: {err}"
                        )))
                    }
                }
            }
        }
        let wants_tiny = job.preview == PreviewMode::TinyVae || self.fast_decode;
        let tiny = match (&self.model, wants_tiny) {
            (Some((_, model)), true) => {
                let family = model.info().family;
                self.tiny_vae.decoder(family, &self.options, observer)
            }
            _ => None,
        };
        if observer.is_cancelled() {
            // Cancelled while the tiny VAE downloaded.
            return Ok(JobOutcome::Cancelled);
        }
        let final_decoder = tiny.as_ref().filter(|_| self.fast_decode);
        if let Some((_, model)) = &mut self.model {
            model.set_final_decoder(final_decoder.map(|tiny| tiny.decoder.clone()));
        }
        let Some((_, model)) = &self.model else {
            return Err(GenerationFailure::NoModel);
        };
        JobRun {
            job,
            request,
            model,
            tiny: tiny.as_ref(),
            fast_decode: final_decoder.map(|tiny| tiny.name.as_str()),
            files: FileRecord::of(model, self.vae.as_deref(), &self.hashes),
            upscaler: self.upscaler.as_ref().map(|(_, loaded)| loaded),
            options: &self.options,
        }
        .run(observer)
    }
}

impl Runner {
    /// The job's ControlNet units: files loaded (or kept from the last job), pictures
    /// preprocessed. Networks no unit uses any more are dropped.
    fn control_units(
        &mut self,
        specs: &[ControlSpec],
        observer: &mut dyn RunObserver,
    ) -> Result<Vec<ControlUnit>, GenerationFailure> {
        let mut kept = Vec::new();
        let mut units = Vec::with_capacity(specs.len());
        for (n, spec) in specs.iter().enumerate() {
            let cached = self
                .controlnets
                .iter()
                .chain(kept.iter())
                .find(|(path, _)| *path == spec.model)
                .map(|(_, loaded): &(PathBuf, LoadedControlNet)| {
                    (loaded.name.clone(), loaded.net.clone())
                });
            let (name, net) = match cached {
                Some(found) => found,
                None => {
                    let path = controlnet_path(&spec.model, observer).map_err(|err| {
                        GenerationFailure::ControlNet(format!("ControlNet {n}: {err}"))
                    })?;
                    let loaded = load_controlnet(&path, &self.options).map_err(|err| {
                        GenerationFailure::ControlNet(format!("ControlNet {n}: {err}"))
                    })?;
                    let found = (loaded.name.clone(), loaded.net.clone());
                    kept.push((spec.model.clone(), loaded));
                    found
                }
            };
            let image = self
                .control_map(spec.preprocessor, &spec.image, observer)
                .map_err(|err| GenerationFailure::ControlNet(format!("ControlNet {n}: {err}")))?;
            units.push(ControlUnit {
                net,
                image,
                scale: spec.scale,
                start: spec.start,
                end: spec.end,
                mode: spec.mode,
                model_name: name,
                preprocessor: spec.preprocessor.name().to_string(),
                preprocessor_thresholds: spec
                    .preprocessor
                    .settings()
                    .iter()
                    .map(|setting| setting.value())
                    .collect(),
            });
        }
        let used: Vec<&PathBuf> = specs.iter().map(|spec| &spec.model).collect();
        self.controlnets.retain(|(path, _)| used.contains(&path));
        self.controlnets.extend(kept);
        Ok(units)
    }
}

/// The folder or file to load for a unit's `model`: itself, or for a Hugging Face
/// repository id (`org/name`, no such path on disk) its snapshot in the hub cache,
/// downloaded on first use (reported to `observer`, which may stop it).
fn controlnet_path(
    model: &Path,
    observer: &mut dyn RunObserver,
) -> Result<PathBuf, ControlNetFetchError> {
    let Some(id) = controlnet_repo_id(model) else {
        return Ok(model.to_path_buf());
    };
    let source = ModelSource::Hub(id.to_string());
    HubClient::from_env().fetch_controlnet(id, &HubCache::from_env(), |file, progress| {
        add_on_download(observer, &source, file, progress)
    })
}

pub(super) fn load_failure(err: LoadError) -> ModelLoadFailure {
    let cause = match err {
        LoadError::NotFound { .. }
        | LoadError::NotDiffusersFolder { .. }
        | LoadError::MissingWeights { .. } => LoadFailure::NotAModel,
        _ => LoadFailure::Invalid,
    };
    ModelLoadFailure {
        cause,
        message: err.to_string(),
    }
}

/// A loaded model as the window sees it.
fn describe(source: &ModelSource, model: &StableDiffusion) -> LoadedModel {
    LoadedModel {
        source: source.clone(),
        info: model.info().clone(),
        tokenizer: model.pipeline().tokenizer().clone(),
        embeddings: model.pipeline().embedding_names(),
    }
}

pub(super) fn write_png(path: &Path, image: &RgbImage, parameters: &str) -> Result<(), String> {
    write_png_with_parameters(
        path,
        &image.pixels,
        image.width as u32,
        image.height as u32,
        parameters,
    )
    .map_err(|err| err.to_string())
}

/// FILE.png for a single image, FILE-1.png, FILE-2.png … for a batch.
pub fn batch_file_path(base: &Path, index: usize, count: usize) -> PathBuf {
    if count == 1 {
        return base.to_path_buf();
    }
    let stem = base
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".into());
    base.with_file_name(format!("{stem}-{}.png", index + 1))
}

/// Writes `NNNNN-SEED.png` (A1111's naming) into `dir`, numbering after the highest there.
/// Never replaces a file: names that are taken (by another program, or a race) are skipped.
pub(super) fn save_numbered(
    dir: &Path,
    image: &RgbImage,
    seed: u64,
    parameters: &str,
) -> Result<PathBuf, String> {
    /// Numbers past this are not ours (A1111 and we count up from 0); a file named
    /// `18446744073709551615-x.png` must not make the count wrap.
    const MAX_NUMBER: u64 = 999_999_999;
    const ATTEMPTS: u64 = 1000;
    std::fs::create_dir_all(dir)
        .map_err(|err| format!("cannot create output folder {}: {err}", dir.display()))?;
    let highest = std::fs::read_dir(dir)
        .map_err(|err| format!("cannot read output folder {}: {err}", dir.display()))?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            name.split(['-', '.']).next()?.parse::<u64>().ok()
        })
        .filter(|&n| n <= MAX_NUMBER)
        .max();
    let first = highest.map_or(0, |n| n + 1);
    for number in first..first + ATTEMPTS {
        let path = dir.join(format!("{number:05}-{seed}.png"));
        match write_new_png_with_parameters(
            &path,
            &image.pixels,
            image.width as u32,
            image.height as u32,
            parameters,
        ) {
            Ok(()) => return Ok(path),
            Err(ImageIoError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(err) => return Err(err.to_string()),
        }
    }
    Err(format!(
        "no free file name in {} after {ATTEMPTS} tries",
        dir.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_outputs_are_numbered() {
        let base = Path::new("out/cat.png");
        assert_eq!(batch_file_path(base, 0, 1), PathBuf::from("out/cat.png"));
        assert_eq!(batch_file_path(base, 1, 3), PathBuf::from("out/cat-2.png"));
    }

    #[test]
    fn saved_files_are_numbered_after_the_highest() {
        let dir = std::env::temp_dir().join(format!("latent-studio-save-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("00007-1.png"), b"x").unwrap();
        std::fs::write(dir.join("notes.txt"), b"x").unwrap();
        let image = RgbImage {
            width: 1,
            height: 1,
            pixels: vec![1, 2, 3],
        };
        let path = save_numbered(
            &dir,
            &image,
            42,
            "a cat\nSteps: 1, Sampler: Euler, CFG scale: 0, Seed: 42, Size: 1x1",
        )
        .unwrap();
        assert_eq!(path.file_name().unwrap(), "00008-42.png");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn numbering_never_wraps_or_overwrites() {
        let dir =
            std::env::temp_dir().join(format!("latent-studio-save-max-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("18446744073709551615-x.png"), b"keep").unwrap();
        std::fs::write(dir.join("00003-1.png"), b"keep").unwrap();
        // Taken by another program although below the highest number.
        std::fs::write(dir.join("00004-9.png"), b"keep").unwrap();
        std::fs::write(dir.join("00004-42.png"), b"keep").unwrap();
        let image = RgbImage {
            width: 1,
            height: 1,
            pixels: vec![1, 2, 3],
        };
        let path = save_numbered(&dir, &image, 42, "x").unwrap();
        assert_eq!(path.file_name().unwrap(), "00005-42.png");
        for kept in [
            "18446744073709551615-x.png",
            "00003-1.png",
            "00004-9.png",
            "00004-42.png",
        ] {
            assert_eq!(std::fs::read(dir.join(kept)).unwrap(), b"keep", "{kept}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
