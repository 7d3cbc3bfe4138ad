//! The remote engine: a thread that takes the window's [`Command`]s and answers with the
//! same [`Event`]s as the local [`Worker`](super::Worker), by driving a `latent-studio serve`
//! (or AUTOMATIC1111) server over its `/sdapi/v1` HTTP API.
//!
//! A generation is one txt2img / img2img request; while it runs, `/progress` is asked a few
//! times a second for the step and the live preview, and a cancel is an `/interrupt`. The
//! images come back as PNGs with their `parameters` text and are saved here, into the
//! window's output folder, as the local engine saves them. Models are the server's own
//! (`/sd-models`); choosing one is `POST /options` with `sd_model_checkpoint`.
//!
//! - `client`: HTTP with timeouts, Basic auth, bounded answers and errors worded for users.
//! - `request`: a job as A1111's request; what the API cannot carry is refused by name.

mod client;
mod request;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError, Sender};
use serde_json::{json, Value};

use super::runner::{batch_file_path, save_numbered, write_png};
use super::{
    ClipTokenizer, Command, Event, Family, FinishedImage, GenerateJob, GenerationFailure,
    ImageOutput, LoadFailure, LoadedModel, ModelDefaults, ModelInfo, ModelSource, RgbImage,
    WorkerHandle,
};

use client::{Client, RemoteError};

pub use client::{RemoteEngine, ServerAddressError};

/// How often `/progress` is asked while a generation runs.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);
/// How long a closing window waits for an interrupted run's answer.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// Progress questions in a row that find no server before the run is given up.
const UNREACHABLE_POLLS: usize = 3;

pub struct RemoteWorker;

impl RemoteWorker {
    /// Starts the thread that drives the server at `engine`. `notify` runs after every
    /// event (the window passes `request_repaint`). The thread first lists the server's
    /// models ([`Event::ServerModels`]).
    pub fn spawn(engine: RemoteEngine, notify: impl Fn() + Send + Sync + 'static) -> WorkerHandle {
        let (command_tx, command_rx) = unbounded();
        let (event_tx, event_rx) = unbounded();
        let cancelled_below = Arc::new(AtomicU64::new(0));
        let mut remote = Remote {
            client: Client::new(engine),
            events: event_tx,
            notify: Arc::new(notify),
            cancelled_below: cancelled_below.clone(),
            model: None,
            tokenizer: None,
        };
        let thread = std::thread::Builder::new()
            .name("latent-studio-remote".into())
            .spawn(move || remote.serve(command_rx))
            .ok();
        WorkerHandle::for_thread(
            command_tx,
            event_rx,
            cancelled_below,
            Arc::new(AtomicBool::new(false)),
            thread,
        )
    }
}

/// The server's models, as `/sd-models` and `/options` tell them.
struct ServerModels {
    /// `(title, what the server says about it)`.
    models: Vec<(String, Value)>,
    current: Option<String>,
}

struct Remote {
    client: Client,
    events: Sender<Event>,
    notify: Arc<dyn Fn() + Send + Sync>,
    cancelled_below: Arc<AtomicU64>,
    /// The server model in use, by title.
    model: Option<String>,
    /// For the window's prompt token counter (the server's models all read prompts with
    /// CLIP's vocabulary).
    tokenizer: Option<Arc<ClipTokenizer>>,
}

impl Remote {
    fn emit(&self, event: Event) {
        let _ = self.events.send(event);
        (self.notify)();
    }

    fn serve(&mut self, commands: Receiver<Command>) {
        let listed = self.list_models();
        self.announce(&listed);
        while let Ok(command) = commands.recv() {
            match command {
                Command::Shutdown => break,
                Command::LoadModel(source) => self.load(&source),
                Command::SetVae(Some(file)) => self.emit(Event::Notice {
                    message: format!(
                        "The VAE file {} is on this computer; the server decodes with its model's own VAE.",
                        file.display()
                    ),
                }),
                Command::SetVaeTiling(true) => self.emit(Event::Notice {
                    message: "VAE tiling applies to this computer's engine; the server decodes as it is set up to.".into(),
                }),
                // The server looks for `<lora:…>` tags and embeddings in its own folders, and
                // computes in its own precision.
                Command::SetVae(None)
                | Command::SetVaeTiling(false)
                | Command::SetFolders(_)
                | Command::SetCpuArithmetic(_) => {}
                Command::SetFastDecode(true) => self.emit(Event::Notice {
                    message: "Fast final decode applies to this computer's engine; the server decodes with its model's VAE.".into(),
                }),
                // The server previews and decodes as it is set up to.
                Command::SetTinyVae(_) | Command::SetFastDecode(false) => {}
                Command::Generate(job) => {
                    let id = job.id;
                    self.generate(&job);
                    self.emit(Event::JobDone { job: id });
                }
                // Pixel maps need no network; a depth map needs the depth model, which lives
                // with this computer's engine (ControlNet units do not go to a server anyway).
                Command::MakeControlMap {
                    unit,
                    preprocessor,
                    image,
                } => {
                    let map = preprocessor.apply(&image).ok_or_else(|| {
                        "the depth map is made by this computer's engine; choose Engine: This computer".to_string()
                    });
                    self.emit(Event::ControlMap {
                        unit,
                        preprocessor,
                        image,
                        map,
                    });
                }
                Command::Upscale(job) => {
                    self.emit(Event::Failed {
                        job: job.id,
                        failure: GenerationFailure::Server(
                            "Upscale runs on this computer's engine (the A1111 API has no upscaler models here); choose Engine: This computer".into(),
                        ),
                    });
                    self.emit(Event::JobDone { job: job.id });
                }
            }
        }
    }

    fn list_models(&self) -> Result<ServerModels, RemoteError> {
        let list = self.client.get("/sdapi/v1/sd-models")?;
        let models = list
            .as_array()
            .map(|entries| {
                entries
                    .iter()
                    .filter_map(|entry| Some((entry["title"].as_str()?.to_string(), entry.clone())))
                    .collect()
            })
            .unwrap_or_default();
        let current = self
            .client
            .get("/sdapi/v1/options")?
            .get("sd_model_checkpoint")
            .and_then(Value::as_str)
            .map(str::to_string);
        Ok(ServerModels { models, current })
    }

    fn announce(&self, listed: &Result<ServerModels, RemoteError>) {
        self.emit(match listed {
            Ok(listed) => Event::ServerModels {
                titles: listed.models.iter().map(|(t, _)| t.clone()).collect(),
                current: listed.current.clone(),
                problem: None,
            },
            Err(err) => Event::ServerModels {
                titles: Vec::new(),
                current: None,
                problem: Some(err.to_string()),
            },
        });
    }

    /// Makes the server use `source` for this window's requests (and, as A1111 does, for
    /// requests that name no model).
    fn load(&mut self, source: &ModelSource) {
        let failed = |message: String, cause| Event::ModelFailed {
            source: source.clone(),
            message,
            cause,
        };
        let listed = self.list_models();
        self.announce(&listed);
        let listed = match listed {
            Ok(listed) => listed,
            Err(err) => return self.emit(failed(err.to_string(), LoadFailure::Server)),
        };
        let wanted = match source {
            ModelSource::Server(title) => title.clone(),
            // A model of this computer is used when the server has one of the same name.
            ModelSource::Hub(id) => id.clone(),
            ModelSource::Folder(path) => path
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        };
        let Some((title, _)) = listed.models.iter().find(|(title, _)| *title == wanted) else {
            let titles: Vec<&str> = listed.models.iter().map(|(t, _)| t.as_str()).collect();
            let message = format!(
                "{}: the server has no model {wanted:?}; its models: {}",
                self.client.url(),
                titles.join(", ")
            );
            return self.emit(failed(message, LoadFailure::Server));
        };
        let title = title.clone();
        self.emit(Event::ModelLoading {
            source: source.clone(),
        });
        if listed.current.as_deref() != Some(title.as_str()) {
            let body = json!({ "sd_model_checkpoint": title });
            let Some(answer_rx) = self.request_in_background("/sdapi/v1/options", body) else {
                return self.emit(failed(
                    "cannot start a thread for the request".into(),
                    LoadFailure::Internal,
                ));
            };
            // Loading takes as long as it takes; a window that closes meanwhile does not wait.
            let answer = loop {
                match answer_rx.recv_timeout(PROGRESS_INTERVAL) {
                    Ok(answer) => break answer,
                    Err(RecvTimeoutError::Timeout) if !self.shutting_down() => {}
                    Err(_) => return,
                }
            };
            if let Err(err) = answer {
                return self.emit(failed(err.to_string(), LoadFailure::Server));
            }
        }
        // The server describes a model once it has loaded it.
        let described = self
            .list_models()
            .ok()
            .and_then(|l| l.models.into_iter().find(|(t, _)| *t == title))
            .map(|(_, entry)| entry);
        let embeddings = self
            .client
            .get("/sdapi/v1/embeddings")
            .ok()
            .and_then(|answer| {
                answer["loaded"]
                    .as_object()
                    .map(|loaded| loaded.keys().cloned().collect())
            })
            .unwrap_or_default();
        let tokenizer = match &self.tokenizer {
            Some(tokenizer) => tokenizer.clone(),
            None => match ClipTokenizer::embedded("<|endoftext|>") {
                Ok(tokenizer) => Arc::new(tokenizer),
                Err(err) => return self.emit(failed(err.to_string(), LoadFailure::Internal)),
            },
        };
        self.tokenizer = Some(tokenizer.clone());
        self.model = Some(title.clone());
        self.emit(Event::ModelLoaded(LoadedModel {
            source: ModelSource::Server(title.clone()),
            info: model_info(&title, described.as_ref()),
            tokenizer,
            embeddings,
        }));
    }

    fn is_cancelled(&self, job: u64) -> bool {
        self.cancelled_below.load(Ordering::SeqCst) > job
    }

    /// The window dropped its handle (which cancels everything).
    fn shutting_down(&self) -> bool {
        self.cancelled_below.load(Ordering::SeqCst) == u64::MAX
    }

    /// A POST that may take minutes, on a thread of its own, so that this one can follow
    /// progress meanwhile and need not wait for it when the window closes (it ends when its
    /// connection does).
    fn request_in_background(
        &self,
        path: &'static str,
        body: Value,
    ) -> Option<Receiver<Result<Value, RemoteError>>> {
        let (answer_tx, answer_rx) = crossbeam_channel::bounded(1);
        let client = self.client.clone();
        std::thread::Builder::new()
            .name("latent-studio-remote-request".into())
            .spawn(move || {
                let _ = answer_tx.send(client.post_patiently(path, &body));
            })
            .ok()?;
        Some(answer_rx)
    }

    fn generate(&mut self, job: &GenerateJob) {
        let fail = |failure| Event::Failed {
            job: job.id,
            failure,
        };
        let Some(title) = self.model.clone() else {
            return self.emit(fail(GenerationFailure::NoModel));
        };
        let (path, body) = match request::generation_request(job, &title) {
            Ok(request) => request,
            Err(message) => return self.emit(fail(GenerationFailure::Server(message))),
        };
        // The request waits for the whole run; this thread meanwhile follows its progress.
        let Some(answer_rx) = self.request_in_background(path, body) else {
            return self.emit(fail(GenerationFailure::Internal(
                "cannot start a thread for the request".into(),
            )));
        };
        let mut progress = Progress::new(job);
        let mut interrupted = false;
        let mut interrupted_at = Instant::now();
        let mut unreachable = 0;
        let answer = loop {
            match answer_rx.recv_timeout(PROGRESS_INTERVAL) {
                Ok(answer) => break answer,
                Err(RecvTimeoutError::Disconnected) => {
                    return self.emit(fail(GenerationFailure::Internal(
                        "the request thread ended without an answer".into(),
                    )))
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
            // Closing the window waits for the interrupt to land, not for a hung server.
            if interrupted && self.shutting_down() && interrupted_at.elapsed() > SHUTDOWN_GRACE {
                return;
            }
            if !interrupted && self.is_cancelled(job.id) {
                interrupted = true;
                interrupted_at = Instant::now();
                // A failed interrupt shows in the progress questions that follow.
                let _ = self.client.post("/sdapi/v1/interrupt", &json!({}));
            }
            match self.client.get(request::progress_path(job.preview)) {
                Ok(answer) => {
                    unreachable = 0;
                    for event in progress.read(&answer) {
                        self.emit(event);
                    }
                }
                Err(err) if err.is_unreachable() => {
                    unreachable += 1;
                    if unreachable >= UNREACHABLE_POLLS {
                        break Err(err);
                    }
                }
                // A server without progress (or an odd answer): the run goes on without it.
                Err(_) => {}
            }
        };
        let answer = match answer {
            Ok(answer) => answer,
            Err(err) => return self.emit(fail(GenerationFailure::Server(err.to_string()))),
        };
        if let Err(message) = self.finish(job, &answer, &mut progress) {
            return self.emit(fail(GenerationFailure::Server(format!(
                "{}: {message}",
                self.client.url()
            ))));
        }
        if interrupted {
            self.emit(Event::Cancelled { job: job.id });
        }
    }

    /// Decodes, saves and hands over the answer's images.
    fn finish(
        &self,
        job: &GenerateJob,
        answer: &Value,
        progress: &mut Progress,
    ) -> Result<(), String> {
        let images = answer["images"]
            .as_array()
            .ok_or("the answer has no images")?;
        // A1111 puts a grid of the batch first (when it is set to); the images follow.
        let skip = images.len().saturating_sub(job.image_count());
        let infotexts: Vec<String> = answer["info"]
            .as_str()
            .and_then(|info| serde_json::from_str::<Value>(info).ok())
            .and_then(|info| {
                info["infotexts"].as_array().map(|texts| {
                    texts
                        .iter()
                        .map(|t| t.as_str().unwrap_or_default().to_string())
                        .collect()
                })
            })
            .unwrap_or_default();
        for (index, encoded) in images.iter().skip(skip).enumerate() {
            let (image, parameters) =
                request::decode_picture(&format!("images[{}]", index + skip), encoded)?;
            let parameters = parameters
                .or_else(|| infotexts.get(index).cloned())
                .unwrap_or_default();
            for started in progress.start(index, progress.total) {
                self.emit(started);
            }
            let seed = job.request.seed.wrapping_add(index as u64);
            let (path, save_error) = match save(
                &job.output,
                index,
                job.image_count(),
                &image,
                seed,
                &parameters,
            ) {
                Ok(path) => (path, None),
                Err(message) => (None, Some(message)),
            };
            self.emit(Event::Finished {
                job: job.id,
                index,
                image: FinishedImage {
                    image,
                    seed,
                    parameters,
                    path,
                    save_error,
                },
            });
        }
        Ok(())
    }
}

/// Writes an image where the job's images go, as the local engine does.
fn save(
    output: &ImageOutput,
    index: usize,
    count: usize,
    image: &RgbImage,
    seed: u64,
    parameters: &str,
) -> Result<Option<PathBuf>, String> {
    match output {
        ImageOutput::None => Ok(None),
        ImageOutput::Folder(dir) => save_numbered(dir, image, seed, parameters).map(Some),
        ImageOutput::File(base) => {
            let path = batch_file_path(base, index, count);
            write_png(&path, image, parameters).map(|()| Some(path))
        }
    }
}

/// `/progress` answers turned into the local engine's `Started` and `Step` events.
struct Progress {
    job: u64,
    images: usize,
    seed: u64,
    /// The image started last, and when this window heard of it.
    image: Option<(usize, Instant)>,
    step: usize,
    /// Steps an image takes, as the server last said (the request's until it has).
    total: usize,
}

impl Progress {
    fn new(job: &GenerateJob) -> Self {
        Self {
            job: job.id,
            images: job.image_count(),
            seed: job.request.seed,
            image: None,
            step: 0,
            total: job.request.steps,
        }
    }

    /// `Started` for image `index` and any before it not announced yet (a fast image can
    /// start and finish between two progress questions), so each image is announced once,
    /// in order.
    fn start(&mut self, index: usize, total_steps: usize) -> Vec<Event> {
        let first = self.image.map_or(0, |(started, _)| started + 1);
        if first > index {
            return Vec::new();
        }
        self.image = Some((index, Instant::now()));
        self.step = 0;
        (first..=index)
            .map(|index| Event::Started {
                job: self.job,
                index,
                seed: self.seed.wrapping_add(index as u64),
                total_steps,
            })
            .collect()
    }

    fn read(&mut self, answer: &Value) -> Vec<Event> {
        let state = &answer["state"];
        let count = |key: &str| state[key].as_u64().map(|n| n as usize);
        let (Some(jobs), Some(index), Some(step), Some(total)) = (
            count("job_count"),
            count("job_no"),
            count("sampling_step"),
            count("sampling_steps"),
        ) else {
            return Vec::new();
        };
        // Nothing running yet (ours waits in the server's queue), or not a run of ours.
        if jobs == 0 || index >= self.images || total == 0 {
            return Vec::new();
        }
        self.total = total;
        let mut events = self.start(index, total);
        let Some((current, started)) = self.image else {
            return events;
        };
        if current != index || step == 0 || step == self.step {
            return events;
        }
        self.step = step;
        let preview = answer
            .get("current_image")
            .filter(|v| !v.is_null())
            .and_then(|encoded| request::decode_picture("current_image", encoded).ok())
            .map(|(image, _)| image);
        events.push(Event::Step {
            job: self.job,
            index,
            step: step.min(total),
            total,
            elapsed_secs: started.elapsed().as_secs_f64(),
            preview,
        });
        events
    }
}

/// What the window knows of a server model: what `latent-studio serve` tells of a model it
/// has loaded (`latent_studio` in its `/sd-models` entry), else A1111's defaults.
fn model_info(title: &str, entry: Option<&Value>) -> ModelInfo {
    let described = entry.and_then(|e| e.get("latent_studio"));
    let number = |key: &str| described.and_then(|d| d[key].as_f64());
    let family = match described.and_then(|d| d["family"].as_str()) {
        Some("sdxl") => Family::StableDiffusionXl,
        _ => Family::StableDiffusion,
    };
    let label = described
        .and_then(|d| d["label"].as_str())
        .unwrap_or("A1111 server")
        .to_string();
    let side = |key: &str| {
        number(key)
            .filter(|&n| (8.0..=4096.0).contains(&n))
            .map_or(512, |n| n as usize)
    };
    ModelInfo {
        name: title.to_string(),
        family,
        label,
        distilled: described.and_then(|d| d["distilled"].as_bool()) == Some(true),
        defaults: ModelDefaults {
            steps: number("steps")
                .filter(|&n| (1.0..=1000.0).contains(&n))
                .map_or(20, |n| n as usize),
            guidance: number("cfg_scale")
                .filter(|g| g.is_finite() && *g >= 0.0)
                .unwrap_or(7.0),
            width: side("width"),
            height: side("height"),
        },
        vae_scale_factor: number("vae_scale_factor")
            .filter(|&n| (1.0..=64.0).contains(&n))
            .map_or(8, |n| n as usize),
        file: None,
    }
}
