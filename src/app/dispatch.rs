//! Generate and the queue: a press of Generate (or Ctrl+Enter) freezes every setting into a
//! job at the back of the [`Queue`]; whenever the engine is free and the queue is not paused,
//! the front job goes to the worker (its model loaded first when another is in use). The
//! queue is saved after every change, so it survives a restart.

use super::command::QueueCommand;
use super::queue::{Queue, QueuedJob};
use super::*;

impl LatentStudioApp {
    /// The current settings as the worker will receive them, or `None` (with a notice) when
    /// they cannot run: no model, a ControlNet unit without its picture, an empty mask.
    fn snapshot_job(&mut self) -> Option<QueuedJob> {
        match &self.model {
            ModelStatus::Ready(_) | ModelStatus::Loading { .. } => {}
            ModelStatus::NoModel | ModelStatus::Failed { .. } => {
                self.notices.error(
                    "No model is loaded",
                    String::new(),
                    Some("Choose a model in the Model list, or use \"Open model file…\" for a .safetensors checkpoint.".into()),
                );
                return None;
            }
        }
        let controls = match self.control_pictures.specs(&self.state.control_units) {
            Ok(controls) => controls,
            Err(problem) => {
                self.notices.error("ControlNet is not ready", problem, None);
                return None;
            }
        };
        if !self.mask_ready() {
            return None;
        }
        if !self.state.seed_locked {
            self.state.seed = state::random_seed();
        }
        self.state.remember_prompt();
        let mask = self.inpaint_mask();
        let loras = self.listed_loras_for_job();
        let state = &self.state;
        let (prompt, negative) = self.styles.styled_prompts(state);
        let request = GenerationRequest {
            prompt,
            // Empty means diffusers' `negative_prompt=None` (SDXL then uses zeroed embeddings).
            negative_prompt: (!negative.trim().is_empty()).then_some(negative),
            steps: state.steps,
            guidance: state.guidance,
            seed: state.seed,
            width: state.width,
            height: state.height,
            scheduler: state.scheduler,
            init_image: self.init_image.as_ref().map(|slot| InitImage {
                image: slot.image.as_ref().clone(),
                strength: state.strength,
                mask,
            }),
            prompt_syntax: state.prompt_syntax,
            clip_skip: state.clip_skip,
            controls: Vec::new(),
            variation: (state.variation_strength > 0.0).then_some(Variation {
                seed: state.variation_seed,
                strength: state.variation_strength,
            }),
        };
        Some(QueuedJob {
            model: state.model.clone(),
            job: GenerateJob {
                id: 0,
                request,
                batch_count: state.batch_count,
                batch_size: state.batch_size,
                output: ImageOutput::Folder(state.output_dir.clone()),
                preview: state.preview,
                loras,
                controls,
                hires: state.hires.fix(),
            },
        })
    }

    /// Generate: the settings join the queue (and start at once when the engine is free).
    /// With `forever`, "Generate forever" toggles instead.
    pub(super) fn enqueue(&mut self, forever: bool) {
        if forever && self.queue.is_forever() {
            self.queue.stop_forever();
            self.notices
                .info("Generate forever is off; the running job finishes");
            return;
        }
        let Some(job) = self.snapshot_job() else {
            return;
        };
        let job = Arc::new(job);
        let queued = if forever {
            self.queue.start_forever(job)
        } else {
            self.queue.push(job)
        };
        match queued {
            Ok(_) if self.run.is_some() || self.queue.is_paused() => {
                let paused = if self.queue.is_paused() {
                    " (paused: press Resume to start it)"
                } else {
                    ""
                };
                self.notices
                    .info(format!("Queued; {} waiting{paused}", self.queue.len()));
            }
            Ok(_) => {}
            Err(err) => self.notices.error("Not queued", err.to_string(), None),
        }
        self.pump_queue();
    }

    pub(super) fn apply_queue(&mut self, command: QueueCommand) {
        match command {
            QueueCommand::MoveUp(id) => {
                self.queue.move_up(id);
            }
            QueueCommand::MoveDown(id) => {
                self.queue.move_down(id);
            }
            QueueCommand::Remove(id) => {
                self.queue.remove(id);
            }
            QueueCommand::Pause => self.queue.pause(),
            QueueCommand::Resume => {
                self.queue.resume();
                self.pump_queue();
            }
            QueueCommand::StopForever => self.queue.stop_forever(),
        }
    }

    /// Ends the queue's current job once the engine is done with it, sends the next one when
    /// the engine is free, and saves the queue when it changed. Runs every frame.
    pub(super) fn pump_queue(&mut self) {
        if self.run.is_none() && self.queue.current().is_some() {
            self.queue.finish_current(state::random_seed());
        }
        if self.run.is_none() && !self.engine_stopped {
            if let Some(entry) = self.queue.start_next() {
                let queued = entry.job.clone();
                self.send_job(&queued);
            }
        }
        if let Some(store) = &self.queue_store {
            if self.queue.revision() != self.saved_queue_revision {
                self.saved_queue_revision = self.queue.revision();
                store.save(self.queue.is_forever(), &self.queue.unfinished());
            }
            if let Some(problem) = store.try_error() {
                self.notices.error(
                    "The queue could not be saved",
                    problem,
                    Some("It keeps running; it may not be there after a restart.".into()),
                );
            }
        }
    }

    /// Hands `queued` to the worker, loading its model first when another one is in use.
    fn send_job(&mut self, queued: &QueuedJob) {
        if let Some(model) = &queued.model {
            if self.state.model.as_ref() != Some(model) {
                self.load_model(model.clone());
            }
        }
        self.last_job += 1;
        let mut job = queued.job.clone();
        job.id = self.last_job;
        let request = &job.request;
        self.run = Some(Run {
            batch_count: job.batch_count * job.batch_size.max(1),
            batch_size: job.batch_size.max(1),
            seed: request.seed,
            ..Run::new(job.id, request.width, request.height)
        });
        self.worker.send(Command::Generate(job));
        self.viewer.follow_run = true;
        self.viewer.clear_preview();
        self.viewer.show_live();
        // The canvas makes way for the live preview and the result.
        self.mask_view.open = false;
    }

    /// The queue as the window starts it: the last session's jobs (paused, so nothing starts
    /// unasked) when `folder` is given, with its writer.
    pub(super) fn open_queue(
        folder: Option<PathBuf>,
        notices: &mut Notices,
    ) -> (Queue, Option<queue_store::QueueStore>) {
        let Some(folder) = folder else {
            return (Queue::default(), None);
        };
        let restored = queue_store::load(&folder);
        for problem in &restored.problems {
            notices.push(Severity::Warning, "Queue", problem.clone(), None);
        }
        let store = queue_store::QueueStore::spawn(folder, &restored.entries);
        (
            Queue::restored(restored.entries, restored.forever),
            Some(store),
        )
    }

    /// The queue: the jobs waiting and the one running (tests and embedding).
    pub fn queue(&self) -> &Queue {
        &self.queue
    }
}
