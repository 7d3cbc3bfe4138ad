//! The worker thread and the handle the UI holds.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{unbounded, Receiver, Sender};

use super::{
    Command, DownloadProgress, DownloadPurpose, Event, FinishedImage, GenerateJob,
    GenerationFailure, ImageStep, JobOutcome, LoadFailure, ModelSource, RunObserver, Runner,
    UpscaleImageJob,
};
use crate::kernels::precision::set_cpu_arithmetic;
use crate::models::LoadOptions;

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
            runner: Runner::new(options),
            events: Events {
                sender: event_tx,
                notify: Arc::new(notify),
                cancel_load: cancel_load.clone(),
                cancelled_below: cancelled_below.clone(),
                job: 0,
                serving: DownloadPurpose::Model,
                tiles_as_steps: false,
                started: Instant::now(),
            },
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
    /// A handle on another thread that serves the same commands and flags (the remote
    /// engine's), so the window holds one type whichever engine it drives.
    pub(super) fn for_thread(
        commands: Sender<Command>,
        events: Receiver<Event>,
        cancelled_below: Arc<AtomicU64>,
        cancel_load: Arc<AtomicBool>,
        thread: Option<JoinHandle<()>>,
    ) -> Self {
        Self {
            cancel_load,
            commands,
            events,
            cancelled_below,
            thread,
        }
    }

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

    /// Stops a model download in progress, or the depth model's for a map preview; what was
    /// fetched is kept and resumed next time. (A job's downloads stop with [`Self::cancel`].)
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
    runner: Runner,
    events: Events,
}

/// The worker's [`RunObserver`]: turns what the runner reports into events for the window,
/// and answers its cancel questions from the handle's flags.
struct Events {
    sender: Sender<Event>,
    notify: Notify,
    cancel_load: Arc<AtomicBool>,
    cancelled_below: Arc<AtomicU64>,
    /// The job being run, for its events and its cancel flag.
    job: u64,
    /// What the command being served downloads for: its downloads are reported as such, and
    /// stopped by that purpose's cancel.
    serving: DownloadPurpose,
    /// An upscale job reports its tiles as steps (a hires pass's tiles are not reported).
    tiles_as_steps: bool,
    started: Instant,
}

impl Events {
    fn emit(&self, event: Event) {
        let _ = self.sender.send(event);
        (self.notify)();
    }
}

impl RunObserver for Events {
    fn download(&mut self, source: &ModelSource, file: &str, progress: DownloadProgress) -> bool {
        self.emit(Event::Download {
            source: source.clone(),
            file: file.to_string(),
            progress,
            purpose: self.serving,
        });
        match self.serving {
            DownloadPurpose::Job(_) => !self.is_cancelled(),
            DownloadPurpose::Model | DownloadPurpose::ControlMap { .. } => {
                !self.cancel_load.load(Ordering::SeqCst)
            }
        }
    }

    fn notice(&mut self, message: String) {
        self.emit(Event::Notice { message });
    }

    fn vae_rejected(&mut self, message: String) {
        self.emit(Event::VaeRejected { message });
    }

    fn image_started(&mut self, index: usize, seed: u64, total_steps: usize) {
        self.emit(Event::Started {
            job: self.job,
            index,
            seed,
            total_steps,
        });
    }

    fn step(&mut self, progress: ImageStep) {
        self.emit(Event::Step {
            job: self.job,
            index: progress.index,
            step: progress.step,
            total: progress.total,
            elapsed_secs: progress.elapsed_secs,
            preview: progress.preview,
        });
    }

    fn image_finished(&mut self, index: usize, image: FinishedImage) {
        self.emit(Event::Finished {
            job: self.job,
            index,
            image,
        });
    }

    fn upscale_tile(&mut self, done: usize, total: usize) {
        if self.tiles_as_steps {
            self.emit(Event::Step {
                job: self.job,
                index: 0,
                step: done,
                total,
                elapsed_secs: self.started.elapsed().as_secs_f64(),
                preview: None,
            });
        }
    }

    fn is_cancelled(&self) -> bool {
        self.cancelled_below.load(Ordering::SeqCst) > self.job
    }
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
    fn serve(mut self, commands: Receiver<Command>) {
        while let Ok(command) = commands.recv() {
            match command {
                Command::Shutdown => break,
                Command::MakeControlMap {
                    unit,
                    preprocessor,
                    image,
                } => {
                    self.events.serving = DownloadPurpose::ControlMap { unit };
                    self.events.cancel_load.store(false, Ordering::SeqCst);
                    let map = catch_unwind(AssertUnwindSafe(|| {
                        self.runner
                            .control_map(preprocessor, &image, &mut self.events)
                    }))
                    .unwrap_or_else(|panic| {
                        Err(format!("internal error: {}", panic_message(panic)))
                    });
                    self.events.emit(Event::ControlMap {
                        unit,
                        preprocessor,
                        image,
                        map,
                    });
                }
                Command::LoadModel(source) => {
                    let outcome = catch_unwind(AssertUnwindSafe(|| self.load(&source)));
                    if let Err(panic) = outcome {
                        self.runner.unload();
                        self.events.emit(Event::ModelFailed {
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
                    let outcome = catch_unwind(AssertUnwindSafe(|| {
                        self.runner.set_vae(vae, &mut self.events)
                    }));
                    if let Err(panic) = outcome {
                        self.runner.set_vae(None, &mut self.events);
                        self.events.emit(Event::VaeRejected {
                            message: format!("internal error: {}", panic_message(panic)),
                        });
                    }
                }
                Command::SetCpuArithmetic(arithmetic) => {
                    if let Err(err) = set_cpu_arithmetic(arithmetic) {
                        self.events.emit(Event::Notice {
                            message: err.to_string(),
                        });
                    }
                }
                Command::SetVaeTiling(enabled) => self.runner.set_vae_tiling(enabled),
                Command::SetTinyVae(path) => self.runner.set_tiny_vae(path),
                Command::SetFastDecode(enabled) => self.runner.set_fast_decode(enabled),
                Command::SetFolders(folders) => {
                    if self.runner.set_folders(folders, &mut self.events) {
                        if let Some(loaded) = self.runner.loaded() {
                            self.events.emit(Event::ModelLoaded(loaded));
                        }
                    }
                }
                Command::Upscale(job) => {
                    let id = job.id;
                    self.events.tiles_as_steps = true;
                    let outcome = catch_unwind(AssertUnwindSafe(|| self.upscale(&job)));
                    self.events.tiles_as_steps = false;
                    if let Err(panic) = outcome {
                        self.events.emit(Event::Failed {
                            job: id,
                            failure: GenerationFailure::Internal(panic_message(panic)),
                        });
                    }
                    self.events.emit(Event::JobDone { job: id });
                }
                Command::Generate(job) => {
                    let id = job.id;
                    let outcome = catch_unwind(AssertUnwindSafe(|| self.generate(&job)));
                    if let Err(panic) = outcome {
                        self.events.emit(Event::Failed {
                            job: id,
                            failure: GenerationFailure::Internal(panic_message(panic)),
                        });
                    }
                    self.events.emit(Event::JobDone { job: id });
                }
            }
        }
    }

    fn load(&mut self, source: &ModelSource) {
        let already = self
            .runner
            .loaded()
            .filter(|loaded| loaded.source == *source);
        if let Some(loaded) = already {
            self.events.emit(Event::ModelLoaded(loaded));
            return;
        }
        self.runner.unload();
        self.events.emit(Event::ModelLoading {
            source: source.clone(),
        });
        self.events.serving = DownloadPurpose::Model;
        self.events.cancel_load.store(false, Ordering::SeqCst);
        match self.runner.load(source, &mut self.events) {
            Ok(loaded) => self.events.emit(Event::ModelLoaded(loaded)),
            Err(failure) => self.events.emit(Event::ModelFailed {
                source: source.clone(),
                message: failure.message,
                cause: failure.cause,
            }),
        }
    }

    fn upscale(&mut self, job: &UpscaleImageJob) {
        self.events.job = job.id;
        self.events.serving = DownloadPurpose::Job(job.id);
        self.events.started = Instant::now();
        match self.runner.upscale_and_save(job, &mut self.events) {
            Ok(JobOutcome::Completed) => {}
            Ok(JobOutcome::Cancelled) => self.events.emit(Event::Cancelled { job: job.id }),
            Err(failure) => self.events.emit(Event::Failed {
                job: job.id,
                failure: GenerationFailure::InvalidRequest(format!("upscale: {failure}")),
            }),
        }
    }

    fn generate(&mut self, job: &GenerateJob) {
        self.events.job = job.id;
        self.events.serving = DownloadPurpose::Job(job.id);
        match self.runner.run(job, &mut self.events) {
            Ok(JobOutcome::Completed) => {}
            Ok(JobOutcome::Cancelled) => self.events.emit(Event::Cancelled { job: job.id }),
            Err(failure) => self.events.emit(Event::Failed {
                job: job.id,
                failure,
            }),
        }
    }
}
