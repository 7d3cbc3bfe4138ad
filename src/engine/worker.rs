//! The worker thread and the handle the UI holds.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{unbounded, Receiver, Sender};

use super::{
    a1111_parameters, latent_preview, AddOnFolders, Command, Event, FileRecord, FinishedImage,
    GenerateJob, LoadFailure, LoadedModel, ModelSource, PreviewMode,
};
use crate::formats::png::write_png_with_parameters;
use crate::models::embeddings::TextualInversion;
use crate::models::hashes::HashCache;
use crate::models::lora::{apply_loras, LoraLibrary};
use crate::models::{
    load_model, replace_vae, Catalog, HubCache, HubClient, LoadError, LoadOptions,
};
use crate::pipeline::generate::{Flow, GenerateError, RgbImage, StableDiffusion};
use crate::pipeline::precision::set_cpu_arithmetic;

type Notify = Arc<dyn Fn() + Send + Sync>;

pub struct Worker;

impl Worker {
    /// Starts the worker on the best device of this build (GPU in f16 when compiled in and
    /// present, else CPU in f32). `notify` runs after every event is sent (the UI passes
    /// `request_repaint`).
    pub fn spawn(notify: impl Fn() + Send + Sync + 'static) -> WorkerHandle {
        Self::spawn_with(LoadOptions::best_available(), notify)
    }

    pub fn spawn_with(
        options: LoadOptions,
        notify: impl Fn() + Send + Sync + 'static,
    ) -> WorkerHandle {
        let (command_tx, command_rx) = unbounded();
        let (event_tx, event_rx) = unbounded();
        let cancelled_below = Arc::new(AtomicU64::new(0));
        let cancel_load = Arc::new(AtomicBool::new(false));
        let state = WorkerState {
            cancel_load: cancel_load.clone(),
            model: None,
            options,
            vae: None,
            vae_tiling: false,
            folders: AddOnFolders::default(),
            loras: LoraLibrary::default(),
            hashes: HashCache::user_default(),
            events: event_tx,
            notify: Arc::new(notify),
            cancelled_below: cancelled_below.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("latent-studio-worker".into())
            .spawn(move || state.serve(command_rx))
            .ok();
        WorkerHandle {
            cancel_load,
            commands: command_tx,
            events: event_rx,
            cancelled_below,
            thread,
        }
    }
}

/// The UI's side of the worker. Dropping it shuts the worker down and waits for it.
pub struct WorkerHandle {
    cancel_load: Arc<AtomicBool>,
    commands: Sender<Command>,
    events: Receiver<Event>,
    cancelled_below: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl WorkerHandle {
    pub fn send(&self, command: Command) {
        // A send only fails once the worker has exited, when there is nobody left to tell.
        let _ = self.commands.send(command);
    }

    pub fn try_recv(&self) -> Option<Event> {
        self.events.try_recv().ok()
    }

    /// Blocks for the next event (tests and scripts; the UI uses `try_recv`).
    pub fn recv_timeout(&self, timeout: std::time::Duration) -> Option<Event> {
        self.events.recv_timeout(timeout).ok()
    }

    /// Cancels job `job` and every earlier one; takes effect within one denoising step.
    pub fn cancel(&self, job: u64) {
        // Stored as one past the job, so that 0 means "nothing cancelled" and job 0 is valid.
        self.cancelled_below
            .fetch_max(job.saturating_add(1), Ordering::SeqCst);
    }

    /// Stops a model download in progress; what was fetched is kept and resumed next time.
    pub fn cancel_download(&self) {
        self.cancel_load.store(true, Ordering::SeqCst);
    }

    /// Whether the worker thread is still alive.
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        self.cancelled_below.store(u64::MAX, Ordering::SeqCst);
        self.cancel_load.store(true, Ordering::SeqCst);
        let _ = self.commands.send(Command::Shutdown);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct WorkerState {
    cancel_load: Arc<AtomicBool>,
    model: Option<(ModelSource, StableDiffusion)>,
    options: LoadOptions,
    vae: Option<PathBuf>,
    vae_tiling: bool,
    folders: AddOnFolders,
    loras: LoraLibrary,
    hashes: HashCache,
    events: Sender<Event>,
    notify: Notify,
    cancelled_below: Arc<AtomicU64>,
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        text.to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "unknown panic".to_string()
    }
}

impl WorkerState {
    fn emit(&self, event: Event) {
        let _ = self.events.send(event);
        (self.notify)();
    }

    fn serve(mut self, commands: Receiver<Command>) {
        while let Ok(command) = commands.recv() {
            match command {
                Command::Shutdown => break,
                Command::LoadModel(source) => {
                    let outcome = catch_unwind(AssertUnwindSafe(|| self.load(source.clone())));
                    if let Err(panic) = outcome {
                        self.model = None;
                        self.emit(Event::ModelFailed {
                            source,
                            message: format!(
                                "internal error while loading: {}",
                                panic_message(panic)
                            ),
                            cause: LoadFailure::Internal,
                        });
                    }
                }
                Command::SetVae(vae) => {
                    self.vae = vae;
                    if let Some((_, model)) = &mut self.model {
                        if let Err(err) = replace_vae(model, self.vae.as_deref()) {
                            self.vae = None;
                            let _ = replace_vae(model, None);
                            self.emit(Event::VaeRejected {
                                message: format!("VAE not changed: {err}"),
                            });
                        }
                    }
                }
                Command::SetCpuArithmetic(arithmetic) => {
                    if let Err(err) = set_cpu_arithmetic(arithmetic) {
                        self.emit(Event::Notice {
                            message: err.to_string(),
                        });
                    }
                }
                Command::SetVaeTiling(enabled) => {
                    self.vae_tiling = enabled;
                    if let Some((_, model)) = &mut self.model {
                        model.set_vae_tiling(enabled);
                    }
                }
                Command::SetFolders(folders) => {
                    self.loras.set_dir(folders.loras.clone());
                    let embeddings_changed = folders.embeddings != self.folders.embeddings;
                    self.folders = folders;
                    if embeddings_changed {
                        self.load_embeddings();
                        if let Some((source, model)) = &self.model {
                            self.emit(Event::ModelLoaded(describe(source, model)));
                        }
                    }
                }
                Command::Generate(job) => {
                    let id = job.id;
                    let outcome = catch_unwind(AssertUnwindSafe(|| self.generate(job)));
                    if let Err(panic) = outcome {
                        self.emit(Event::Failed {
                            job: id,
                            message: format!("internal error: {}", panic_message(panic)),
                        });
                        self.emit(Event::JobDone { job: id });
                    }
                }
            }
        }
    }

    fn load(&mut self, source: ModelSource) {
        if let Some((loaded, model)) = &self.model {
            if *loaded == source {
                self.emit(Event::ModelLoaded(describe(loaded, model)));
                return;
            }
        }
        // Free the old model before the new one claims its memory.
        self.model = None;
        self.emit(Event::ModelLoading {
            source: source.clone(),
        });
        let folder = match self.resolve(&source) {
            Ok(folder) => folder,
            Err((cause, message)) => {
                self.emit(Event::ModelFailed {
                    source,
                    message,
                    cause,
                });
                return;
            }
        };
        match load_model(&folder, &self.options) {
            Ok(mut model) => {
                model.set_vae_tiling(self.vae_tiling);
                if let Some(vae) = self.vae.clone() {
                    if let Err(err) = replace_vae(&mut model, Some(&vae)) {
                        self.vae = None;
                        self.emit(Event::VaeRejected {
                            message: format!("using the model's own VAE: {err}"),
                        });
                    }
                }
                self.model = Some((source, model));
                self.load_embeddings();
                if let Some((source, model)) = &self.model {
                    self.emit(Event::ModelLoaded(describe(source, model)));
                    // A1111's model hash, remembered per file, so the first image need not wait.
                    if let Some(file) = &model.info().file {
                        let _ = self.hashes.model_hash(file);
                    }
                }
            }
            Err(err) => {
                let cause = match err {
                    LoadError::NotFound { .. }
                    | LoadError::NotDiffusersFolder { .. }
                    | LoadError::MissingWeights { .. } => LoadFailure::NotAModel,
                    _ => LoadFailure::Invalid,
                };
                self.emit(Event::ModelFailed {
                    source,
                    message: err.to_string(),
                    cause,
                })
            }
        }
    }

    /// The local folder a model source stands for, downloading hub models that are not in
    /// the Hugging Face cache yet.
    fn resolve(&self, source: &ModelSource) -> Result<PathBuf, (LoadFailure, String)> {
        let id = match source {
            ModelSource::Folder(path) => return Ok(path.clone()),
            ModelSource::Hub(id) => id,
        };
        let entry = Catalog::builtin()
            .lookup(id)
            .map_err(|err| (LoadFailure::NotAModel, err.to_string()))?;
        // Returns at once, without network, when the HF cache already holds every file.
        let cache = HubCache::from_env();
        self.cancel_load.store(false, Ordering::SeqCst);
        let result = HubClient::from_env().fetch_model(entry, &cache, |file, progress| {
            self.emit(Event::Download {
                source: source.clone(),
                file: file.to_string(),
                progress,
            });
            !self.cancel_load.load(Ordering::SeqCst)
        });
        result.map_err(|err| {
            let cause = if err.is_offline() {
                LoadFailure::Offline
            } else {
                LoadFailure::Download
            };
            (cause, format!("{id}: {err}"))
        })
    }

    /// Reads the embeddings folder and gives the loaded model the embeddings that fit it.
    fn load_embeddings(&mut self) {
        let Some((_, model)) = &mut self.model else {
            return;
        };
        let (found, errors) = match &self.folders.embeddings {
            Some(dir) => TextualInversion::load_dir(dir),
            None => (Vec::new(), Vec::new()),
        };
        let skipped = model.set_embeddings(found.into_iter().map(Arc::new).collect());
        let mut notices: Vec<String> = errors
            .iter()
            .map(|e| format!("embedding skipped: {e}"))
            .collect();
        if !skipped.is_empty() {
            notices.push(format!(
                "embeddings made for another model family skipped: {}",
                skipped.join(", ")
            ));
        }
        for message in notices {
            self.emit(Event::Notice { message });
        }
    }

    fn is_cancelled(&self, job: u64) -> bool {
        self.cancelled_below.load(Ordering::SeqCst) > job
    }

    fn generate(&mut self, job: GenerateJob) {
        let Some((_, model)) = &mut self.model else {
            self.emit(Event::Failed {
                job: job.id,
                message: "no model is loaded; pick one in the model list first".into(),
            });
            self.emit(Event::JobDone { job: job.id });
            return;
        };
        let loras = self
            .loras
            .for_request(&job.request.prompt, job.request.prompt_syntax, &job.loras)
            .and_then(|loras| apply_loras(model, loras));
        if let Err(err) = loras {
            self.emit(Event::Failed {
                job: job.id,
                message: err.to_string(),
            });
            self.emit(Event::JobDone { job: job.id });
            return;
        }
        let Some((_, model)) = &self.model else {
            return;
        };
        let files = FileRecord::of(model, self.vae.as_deref(), &self.hashes);
        for index in 0..job.batch_count.max(1) {
            if self.is_cancelled(job.id) {
                self.emit(Event::Cancelled { job: job.id });
                break;
            }
            let mut request = job.request.clone();
            request.seed = job.request.seed.wrapping_add(index as u64);
            let total_steps = model.planned_steps(&request).unwrap_or(request.steps);
            self.emit(Event::Started {
                job: job.id,
                index,
                seed: request.seed,
                total_steps,
            });
            let started = Instant::now();
            let family = model.info().family;
            let result = model.generate(&request, &mut |progress| {
                let preview = match job.preview {
                    PreviewMode::Off => None,
                    PreviewMode::Vae { every } if every > 0 && progress.step % every == 0 => {
                        model.decode(progress.denoised).ok()
                    }
                    PreviewMode::Fast | PreviewMode::Vae { .. } => {
                        latent_preview(progress.denoised, family).ok()
                    }
                };
                self.emit(Event::Step {
                    job: job.id,
                    index,
                    step: progress.step,
                    total: progress.total,
                    elapsed_secs: started.elapsed().as_secs_f64(),
                    preview,
                });
                if self.is_cancelled(job.id) {
                    Flow::Cancel
                } else {
                    Flow::Continue
                }
            });
            match result {
                Ok(output) => {
                    let parameters = a1111_parameters(model, &request, &files)
                        .map(|p| p.to_a1111_string())
                        .unwrap_or_default();
                    let (path, save_error) = match &job.output_dir {
                        Some(dir) => match save(dir, &output.image, request.seed, &parameters) {
                            Ok(path) => (Some(path), None),
                            Err(message) => (None, Some(message)),
                        },
                        None => (None, None),
                    };
                    self.emit(Event::Finished {
                        job: job.id,
                        index,
                        image: FinishedImage {
                            image: output.image,
                            seed: request.seed,
                            parameters,
                            path,
                            save_error,
                        },
                    });
                }
                Err(GenerateError::Cancelled) => {
                    self.emit(Event::Cancelled { job: job.id });
                    break;
                }
                Err(err) => {
                    self.emit(Event::Failed {
                        job: job.id,
                        message: err.to_string(),
                    });
                    break;
                }
            }
        }
        self.emit(Event::JobDone { job: job.id });
    }
}

/// A loaded model as the UI sees it.
fn describe(source: &ModelSource, model: &StableDiffusion) -> LoadedModel {
    LoadedModel {
        source: source.clone(),
        info: model.info().clone(),
        tokenizer: model.tokenizer().clone(),
        embeddings: model.embedding_names(),
    }
}

/// Writes `NNNNN-SEED.png` (A1111's naming) into `dir`, numbering after the highest there.
fn save(dir: &Path, image: &RgbImage, seed: u64, parameters: &str) -> Result<PathBuf, String> {
    std::fs::create_dir_all(dir)
        .map_err(|err| format!("cannot create output folder {}: {err}", dir.display()))?;
    let next = std::fs::read_dir(dir)
        .map_err(|err| format!("cannot read output folder {}: {err}", dir.display()))?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            name.split(['-', '.']).next()?.parse::<u64>().ok()
        })
        .max()
        .map_or(0, |n| n + 1);
    let path = dir.join(format!("{next:05}-{seed}.png"));
    write_png_with_parameters(
        &path,
        &image.pixels,
        image.width as u32,
        image.height as u32,
        parameters,
    )
    .map_err(|err| err.to_string())?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let path = save(
            &dir,
            &image,
            42,
            "a cat\nSteps: 1, Sampler: Euler, CFG scale: 0, Seed: 42, Size: 1x1",
        )
        .unwrap();
        assert_eq!(path.file_name().unwrap(), "00008-42.png");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
