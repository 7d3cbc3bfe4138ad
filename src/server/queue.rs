//! The generation worker: one thread owns the engine's runner and takes tasks first come,
//! first served, one at a time; request threads hand it a task and wait for the answer.
//! Progress (for `/progress`) and the interrupt flag are shared with the request threads.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender};

use super::http::{panic_message, ApiError};
use super::models::ServedModels;
use super::payload::PendingJob;
use crate::engine::{
    AddOnFolders, FinishedImage, GenerateJob, GenerationFailure, ImageStep, JobOutcome,
    LoadOptions, LoadedModel, ModelInfo, RgbImage, RunObserver, Runner,
};

/// A finished (or interrupted) request: the job as it ran and the images it made.
pub struct Generated {
    pub job: GenerateJob,
    pub images: Vec<FinishedImage>,
    pub model_title: String,
    /// `YYYYMMDDhhmmss` (UTC) of the start, as A1111's `job_timestamp`.
    pub timestamp: String,
}

enum Task {
    Generate(Box<PendingJob>, Sender<Result<Generated, ApiError>>),
    /// Load this model and use it for requests that name none.
    SwitchModel(usize, Sender<Result<(), ApiError>>),
    Stop,
}

/// What `/progress` shows of the running request.
#[derive(Debug, Clone)]
pub struct RunningJob {
    /// Images the request makes in all.
    pub images: usize,
    /// 0-based image being made (the first of those denoised together).
    pub index: usize,
    /// Images denoised together (`batch_size`); they share their steps.
    pub batch_size: usize,
    pub step: usize,
    pub steps: usize,
    pub started: Instant,
    pub timestamp: String,
    /// The latest live preview.
    pub preview: Option<RgbImage>,
    pub interrupted: bool,
}

struct Shared {
    running: Mutex<Option<RunningJob>>,
    /// Index of the model used by requests that name none.
    default_model: AtomicUsize,
    next_job: AtomicU64,
    stopping: AtomicBool,
    /// Embedding names usable with the model loaded now.
    embeddings: Mutex<Vec<String>>,
    /// What the models loaded so far are, by index (for `/sd-models`).
    described: Mutex<Vec<(usize, ModelInfo)>>,
}

impl Shared {
    fn running(&self) -> MutexGuard<'_, Option<RunningJob>> {
        // A panic while the lock was held left plain data behind; it is still usable.
        self.running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

pub struct GenerationQueue {
    tasks: Sender<Task>,
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
    models: ServedModels,
}

impl GenerationQueue {
    /// Starts the worker and loads the first model; the error is the load's message.
    pub fn start(
        models: ServedModels,
        options: LoadOptions,
        folders: AddOnFolders,
    ) -> Result<GenerationQueue, String> {
        let shared = Arc::new(Shared {
            running: Mutex::new(None),
            default_model: AtomicUsize::new(0),
            next_job: AtomicU64::new(1),
            stopping: AtomicBool::new(false),
            embeddings: Mutex::new(Vec::new()),
            described: Mutex::new(Vec::new()),
        });
        let (tasks, receiver) = crossbeam_channel::unbounded();
        let (loaded, first_load) = crossbeam_channel::bounded(1);
        let worker_shared = shared.clone();
        let worker_models = models.clone();
        let thread = std::thread::Builder::new()
            .name("generation".into())
            .spawn(move || {
                let mut worker = Worker {
                    runner: Runner::new(options),
                    models: worker_models,
                    shared: worker_shared,
                };
                worker.runner.set_folders(folders, &mut Quiet);
                let first = worker.load(0).map(drop).map_err(|err| err.detail);
                let ok = first.is_ok();
                let _ = loaded.send(first);
                if ok {
                    worker.serve(receiver);
                }
            })
            .map_err(|err| format!("cannot start the generation thread: {err}"))?;
        let first = first_load
            .recv()
            .unwrap_or_else(|_| Err("the generation thread stopped while loading".into()));
        if let Err(message) = first {
            let _ = thread.join();
            return Err(message);
        }
        Ok(GenerationQueue {
            tasks,
            shared,
            thread: Mutex::new(Some(thread)),
            models,
        })
    }

    /// Runs `job` after the requests before it; blocks until it is done.
    pub fn generate(&self, job: PendingJob) -> Result<Generated, ApiError> {
        let (reply, answer) = crossbeam_channel::bounded(1);
        self.submit(Task::Generate(Box::new(job), reply))?;
        answer.recv().unwrap_or_else(|_| Err(worker_gone()))
    }

    /// Loads model `index` (after the requests before) and makes it the default.
    pub fn switch_model(&self, index: usize) -> Result<(), ApiError> {
        let (reply, answer) = crossbeam_channel::bounded(1);
        self.submit(Task::SwitchModel(index, reply))?;
        answer.recv().unwrap_or_else(|_| Err(worker_gone()))
    }

    fn submit(&self, task: Task) -> Result<(), ApiError> {
        if self.shared.stopping.load(Ordering::SeqCst) {
            return Err(ApiError::unavailable("the server is stopping"));
        }
        self.tasks.send(task).map_err(|_| worker_gone())
    }

    /// Stops the running request after its current step; its finished images are returned.
    /// Requests waiting in line are not affected (as in A1111).
    pub fn interrupt(&self) {
        if let Some(job) = self.shared.running().as_mut() {
            job.interrupted = true;
        }
    }

    pub fn running(&self) -> Option<RunningJob> {
        self.shared.running().clone()
    }

    /// The embeddings usable in prompts with the model loaded now.
    pub fn embeddings(&self) -> Vec<String> {
        self.shared
            .embeddings
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The models loaded so far, by index, as the loader described them.
    pub fn described_models(&self) -> Vec<(usize, ModelInfo)> {
        self.shared
            .described
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Title of the model used by requests that name none.
    pub fn default_model_title(&self) -> String {
        let index = self.shared.default_model.load(Ordering::SeqCst);
        self.models.get(index).title.clone()
    }

    /// Refuses new work, interrupts the running request, answers the waiting ones 503 and
    /// waits for the worker to end.
    pub fn stop(&self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.interrupt();
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(thread) = thread {
            let _ = self.tasks.send(Task::Stop);
            let _ = thread.join();
        }
    }
}

fn worker_gone() -> ApiError {
    ApiError::unavailable("the generation worker has stopped")
}

struct Worker {
    runner: Runner,
    models: ServedModels,
    shared: Arc<Shared>,
}

impl Worker {
    /// Takes tasks until told to stop. Tasks still waiting then are dropped with the
    /// channel, and the requests waiting on them hear that the worker is gone.
    fn serve(&mut self, tasks: Receiver<Task>) {
        for task in tasks {
            if self.shared.stopping.load(Ordering::SeqCst) {
                return;
            }
            match task {
                Task::Generate(job, reply) => {
                    let _ = reply.send(self.generate(*job));
                }
                Task::SwitchModel(index, reply) => {
                    let result = self.load(index).map(|_| {
                        self.shared.default_model.store(index, Ordering::SeqCst);
                    });
                    let _ = reply.send(result);
                }
                Task::Stop => return,
            }
        }
    }

    /// Loads model `index` unless it is loaded already.
    fn load(&mut self, index: usize) -> Result<LoadedModel, ApiError> {
        let model = self.models.get(index);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            self.runner.load(&model.source, &mut Quiet)
        }));
        match outcome {
            Ok(Ok(loaded)) => {
                *self
                    .shared
                    .embeddings
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = loaded.embeddings.clone();
                let mut described = self
                    .shared
                    .described
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                if !described.iter().any(|(i, _)| *i == index) {
                    described.push((index, loaded.info.clone()));
                }
                Ok(loaded)
            }
            Ok(Err(failure)) => Err(ApiError::internal(format!(
                "cannot load model {}: {}",
                model.title, failure.message
            ))),
            Err(panic) => {
                self.runner.unload();
                Err(ApiError::internal(format!(
                    "internal error loading model {}: {}",
                    model.title,
                    panic_message(panic)
                )))
            }
        }
    }

    fn generate(&mut self, pending: PendingJob) -> Result<Generated, ApiError> {
        let index = pending
            .model
            .unwrap_or_else(|| self.shared.default_model.load(Ordering::SeqCst));
        let loaded = self.load(index)?;
        let id = self.shared.next_job.fetch_add(1, Ordering::SeqCst);
        let job = pending.into_job(id, &loaded.info)?;
        self.runner
            .check_job(&job, &mut Quiet)
            .map_err(failure_to_error)?;
        let timestamp = utc_timestamp(SystemTime::now());
        *self.shared.running() = Some(RunningJob {
            images: job.batch_count * job.batch_size.max(1),
            index: 0,
            batch_size: job.batch_size.max(1),
            step: 0,
            steps: 0,
            started: Instant::now(),
            timestamp: timestamp.clone(),
            preview: None,
            interrupted: false,
        });
        let mut observer = JobObserver {
            shared: &self.shared,
            images: Vec::new(),
        };
        let runner = &mut self.runner;
        let outcome = catch_unwind(AssertUnwindSafe(|| runner.run(&job, &mut observer)));
        let images = observer.images;
        *self.shared.running() = None;
        match outcome {
            Ok(Ok(JobOutcome::Completed | JobOutcome::Cancelled)) => Ok(Generated {
                job,
                images,
                model_title: self.models.get(index).title.clone(),
                timestamp,
            }),
            Ok(Err(failure)) => Err(failure_to_error(failure)),
            Err(panic) => {
                // The model may be half-changed (LoRAs merging): load it afresh next time.
                self.runner.unload();
                Err(ApiError::internal(format!(
                    "internal error: {}",
                    panic_message(panic)
                )))
            }
        }
    }
}

/// Bad requests are the client's (422); the rest is the server's.
fn failure_to_error(failure: GenerationFailure) -> ApiError {
    match failure {
        GenerationFailure::InvalidRequest(_)
        | GenerationFailure::Lora(_)
        | GenerationFailure::ControlNet(_) => ApiError::invalid(failure.to_string()),
        GenerationFailure::NoModel => ApiError::unavailable(failure.to_string()),
        GenerationFailure::OutOfMemory(_) => ApiError::unavailable(failure.to_string()),
        GenerationFailure::Compute(_)
        | GenerationFailure::Internal(_)
        | GenerationFailure::Server(_) => ApiError::internal(failure.to_string()),
    }
}

/// Loading reports: notices go to the server's log.
struct Quiet;

impl RunObserver for Quiet {
    fn notice(&mut self, message: String) {
        eprintln!("serve: {message}");
    }

    fn vae_rejected(&mut self, message: String) {
        eprintln!("serve: {message}");
    }
}

/// Feeds `/progress` and collects the images; asks the interrupt flag.
struct JobObserver<'a> {
    shared: &'a Shared,
    images: Vec<FinishedImage>,
}

impl RunObserver for JobObserver<'_> {
    fn notice(&mut self, message: String) {
        eprintln!("serve: {message}");
    }

    fn image_started(&mut self, index: usize, _seed: u64, total_steps: usize) {
        if let Some(job) = self.shared.running().as_mut() {
            job.index = index;
            job.step = 0;
            job.steps = total_steps;
        }
    }

    fn step(&mut self, progress: ImageStep) {
        if let Some(job) = self.shared.running().as_mut() {
            job.index = progress.index;
            job.step = progress.step;
            job.steps = progress.total;
            if progress.preview.is_some() {
                job.preview = progress.preview;
            }
        }
    }

    fn image_finished(&mut self, _index: usize, image: FinishedImage) {
        self.images.push(image);
    }

    fn is_cancelled(&self) -> bool {
        self.shared
            .running()
            .as_ref()
            .is_some_and(|job| job.interrupted)
    }
}

/// `YYYYMMDDhhmmss` in UTC.
fn utc_timestamp(at: SystemTime) -> String {
    let seconds = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}{:02}{:02}{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_utc_calendar_time() {
        let at = |secs| SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
        assert_eq!(utc_timestamp(at(0)), "19700101000000");
        // 2024-02-29 23:59:59 UTC
        assert_eq!(utc_timestamp(at(1_709_251_199)), "20240229235959");
        // 2026-12-04 16:00:00 UTC
        assert_eq!(utc_timestamp(at(1_796_400_000)), "20261204160000");
    }
}
