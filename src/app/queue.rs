//! The generation queue: jobs waiting for the engine, sent to it one at a time.
//!
//! Pure data. Generate adds a snapshot of every setting (the job exactly as the worker will
//! receive it, and the model it was made for) to the back; the window takes the front one
//! whenever the engine is free and the queue is not paused. "Generate forever" (A1111's)
//! queues the same settings again, with a fresh seed, each time such a job completes.

use std::sync::Arc;

use crate::engine::{GenerateJob, ModelSource};

/// More waiting jobs than anyone queues by hand; a bound for a damaged queue file too.
pub const MAX_QUEUED: usize = 500;
/// How much of the prompt a summary shows.
const SUMMARY_PROMPT_CHARS: usize = 40;

/// Everything a queued generation needs, frozen when Generate was pressed.
#[derive(Debug, Clone)]
pub struct QueuedJob {
    /// The model the job was queued with; loaded first when another one is in use then.
    pub model: Option<ModelSource>,
    /// What the worker receives (its `id` is set when it is sent).
    pub job: GenerateJob,
}

impl QueuedJob {
    /// `"a lighthouse at dusk · 512×512 · 25 steps · euler-a · seed 42 · 4 images"`.
    pub fn summary(&self) -> String {
        let request = &self.job.request;
        let prompt = request.prompt.trim();
        let mut text: String = prompt.chars().take(SUMMARY_PROMPT_CHARS).collect();
        if prompt.chars().count() > SUMMARY_PROMPT_CHARS {
            text.push('…');
        }
        if text.is_empty() {
            text.push_str("(no prompt)");
        }
        let mut parts = vec![
            text,
            format!("{}×{}", request.width, request.height),
            format!("{} steps", request.steps),
            request.scheduler.name().to_string(),
            format!("seed {}", request.seed),
        ];
        let (count, size) = (self.job.batch_count, self.job.batch_size);
        match (count, size) {
            (1, 1) => {}
            (count, 1) => parts.push(format!("{count} images")),
            (count, size) => parts.push(format!("{count}×{size} images")),
        }
        if request.init_image.is_some() {
            parts.push("img2img".into());
        }
        parts.join(" · ")
    }

    /// The same settings with another seed (variation seeds follow, as A1111 counts them).
    pub fn reseeded(&self, seed: u64) -> QueuedJob {
        let mut copy = self.clone();
        copy.job.request.seed = seed;
        copy
    }
}

/// One job in the queue.
#[derive(Debug, Clone)]
pub struct QueueEntry {
    /// Unique within the queue, also across restarts (restored entries keep theirs).
    pub id: u64,
    pub job: Arc<QueuedJob>,
    /// Queued by "Generate forever": queued again when it completes, while that is on.
    pub forever: bool,
}

/// Why a job was not queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error("the queue already holds {MAX_QUEUED} jobs; remove some or wait for them")]
    Full,
}

#[derive(Debug, Default)]
pub struct Queue {
    waiting: Vec<QueueEntry>,
    /// The entry the engine is running.
    current: Option<QueueEntry>,
    paused: bool,
    /// The waiting jobs came from the last session (and the queue was paused for that).
    restored: bool,
    forever: bool,
    next_id: u64,
    /// Counts changes, so the window knows when to save.
    revision: u64,
}

impl Queue {
    /// A queue holding the jobs of the last session, paused so that nothing starts unasked.
    pub fn restored(entries: Vec<QueueEntry>, forever: bool) -> Queue {
        let next_id = entries.iter().map(|e| e.id).max().map_or(0, |id| id + 1);
        let restored = !entries.is_empty();
        let mut waiting = entries;
        waiting.truncate(MAX_QUEUED);
        Queue {
            forever: forever && waiting.iter().any(|e| e.forever),
            waiting,
            current: None,
            paused: restored,
            restored,
            next_id,
            revision: 0,
        }
    }

    /// Adds a job at the back; returns its entry id.
    pub fn push(&mut self, job: Arc<QueuedJob>) -> Result<u64, QueueError> {
        self.push_entry(job, false)
    }

    /// Turns "Generate forever" on with this job.
    pub fn start_forever(&mut self, job: Arc<QueuedJob>) -> Result<u64, QueueError> {
        let id = self.push_entry(job, true)?;
        self.forever = true;
        Ok(id)
    }

    /// Turns "Generate forever" off: its waiting job goes; a running one finishes.
    pub fn stop_forever(&mut self) {
        self.forever = false;
        self.waiting.retain(|e| !e.forever);
        self.changed();
    }

    pub fn is_forever(&self) -> bool {
        self.forever
    }

    fn push_entry(&mut self, job: Arc<QueuedJob>, forever: bool) -> Result<u64, QueueError> {
        if self.waiting.len() >= MAX_QUEUED {
            return Err(QueueError::Full);
        }
        let id = self.next_id;
        self.next_id += 1;
        self.waiting.push(QueueEntry { id, job, forever });
        self.changed();
        Ok(id)
    }

    /// The jobs waiting, next first.
    pub fn waiting(&self) -> &[QueueEntry] {
        &self.waiting
    }

    pub fn current(&self) -> Option<&QueueEntry> {
        self.current.as_ref()
    }

    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Moves entry `id` one place toward the front; false when it is first or gone.
    pub fn move_up(&mut self, id: u64) -> bool {
        match self.position(id) {
            Some(at) if at > 0 => {
                self.waiting.swap(at, at - 1);
                self.changed();
                true
            }
            _ => false,
        }
    }

    /// Moves entry `id` one place toward the back; false when it is last or gone.
    pub fn move_down(&mut self, id: u64) -> bool {
        match self.position(id) {
            Some(at) if at + 1 < self.waiting.len() => {
                self.waiting.swap(at, at + 1);
                self.changed();
                true
            }
            _ => false,
        }
    }

    /// Takes entry `id` out of the queue; false when it is not waiting.
    pub fn remove(&mut self, id: u64) -> bool {
        let Some(at) = self.position(id) else {
            return false;
        };
        let entry = self.waiting.remove(at);
        if entry.forever {
            self.forever = false;
        }
        self.changed();
        true
    }

    /// Sends nothing more until [`Self::resume`]; the running job finishes.
    pub fn pause(&mut self) {
        self.paused = true;
        self.changed();
    }

    pub fn resume(&mut self) {
        self.paused = false;
        self.restored = false;
        self.changed();
    }

    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Paused because the waiting jobs came from the last session.
    pub fn was_restored(&self) -> bool {
        self.restored && self.paused
    }

    /// The next job for the engine, when it is free and the queue is not paused; it becomes
    /// the current one.
    pub fn start_next(&mut self) -> Option<&QueueEntry> {
        if self.paused || self.current.is_some() || self.waiting.is_empty() {
            return None;
        }
        self.current = Some(self.waiting.remove(0));
        self.changed();
        self.current.as_ref()
    }

    /// The current job was cancelled or failed: a "Generate forever" chain stops with it
    /// rather than repeating a failure.
    pub fn current_stopped(&mut self) {
        if self.current.as_ref().is_some_and(|c| c.forever) {
            self.stop_forever();
        }
    }

    /// The current job ended. A "Generate forever" job is queued again at the back with
    /// `next_seed` while that is on.
    pub fn finish_current(&mut self, next_seed: u64) {
        let Some(done) = self.current.take() else {
            return;
        };
        if done.forever && self.forever {
            let again = Arc::new(done.job.reseeded(next_seed));
            // A full queue ends the chain rather than dropping other jobs.
            if self.push_entry(again, true).is_err() {
                self.forever = false;
            }
        }
        self.changed();
    }

    /// The running entry first, then the waiting ones: what a restart should find.
    pub fn unfinished(&self) -> Vec<QueueEntry> {
        self.current.iter().chain(&self.waiting).cloned().collect()
    }

    /// Increases with every change, so a saved copy can tell it is out of date.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    fn position(&self, id: u64) -> Option<usize> {
        self.waiting.iter().position(|e| e.id == id)
    }

    fn changed(&mut self) {
        self.revision += 1;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::engine::{GenerationRequest, ImageOutput, PreviewMode, PromptSyntax, SchedulerKind};

    pub(crate) fn job(prompt: &str, seed: u64) -> Arc<QueuedJob> {
        Arc::new(QueuedJob {
            model: Some(ModelSource::Hub("stabilityai/sd-turbo".into())),
            job: GenerateJob {
                id: 0,
                request: GenerationRequest {
                    prompt: prompt.into(),
                    negative_prompt: None,
                    steps: 20,
                    guidance: 7.0,
                    seed,
                    width: 512,
                    height: 768,
                    scheduler: SchedulerKind::EulerAncestral,
                    init_image: None,
                    prompt_syntax: PromptSyntax::A1111,
                    clip_skip: 1,
                    controls: Vec::new(),
                    variation: None,
                },
                batch_count: 3,
                batch_size: 1,
                output: ImageOutput::None,
                preview: PreviewMode::Off,
                loras: Vec::new(),
                controls: Vec::new(),
                hires: None,
            },
        })
    }

    fn prompts(queue: &Queue) -> Vec<String> {
        queue
            .waiting()
            .iter()
            .map(|e| e.job.job.request.prompt.clone())
            .collect()
    }

    #[test]
    fn jobs_run_in_order_one_at_a_time_and_can_be_reordered_and_removed() {
        let mut queue = Queue::default();
        let a = queue.push(job("a", 1)).unwrap();
        let b = queue.push(job("b", 2)).unwrap();
        let c = queue.push(job("c", 3)).unwrap();
        assert!(queue.move_up(c));
        assert_eq!(prompts(&queue), ["a", "c", "b"]);
        assert!(!queue.move_up(a), "the first cannot move up");
        assert!(!queue.move_down(b), "the last cannot move down");
        assert!(queue.move_down(a));
        assert_eq!(prompts(&queue), ["c", "a", "b"]);
        assert!(queue.remove(a));
        assert!(!queue.remove(a));
        assert_eq!(prompts(&queue), ["c", "b"]);

        assert_eq!(queue.start_next().map(|e| e.id), Some(c));
        assert!(queue.start_next().is_none(), "one job at a time");
        queue.finish_current(0);
        assert_eq!(queue.start_next().map(|e| e.id), Some(b));
        queue.finish_current(0);
        assert!(queue.start_next().is_none());
        assert!(queue.is_empty());
    }

    #[test]
    fn a_paused_queue_starts_nothing_and_a_restored_one_starts_paused() {
        let mut queue = Queue::default();
        queue.push(job("a", 1)).unwrap();
        queue.pause();
        assert!(queue.start_next().is_none());
        queue.resume();
        assert!(queue.start_next().is_some());

        let entries = vec![
            QueueEntry {
                id: 7,
                job: job("x", 1),
                forever: false,
            },
            QueueEntry {
                id: 3,
                job: job("y", 1),
                forever: false,
            },
        ];
        let mut restored = Queue::restored(entries, false);
        assert!(restored.is_paused() && restored.was_restored());
        assert!(restored.start_next().is_none());
        assert_eq!(restored.push(job("z", 1)).unwrap(), 8, "ids stay unique");
        restored.resume();
        assert!(!restored.was_restored());
        assert_eq!(restored.start_next().map(|e| e.id), Some(7));
        assert!(!Queue::restored(Vec::new(), true).is_paused());
    }

    #[test]
    fn generate_forever_requeues_with_new_seeds_until_stopped() {
        let mut queue = Queue::default();
        queue.start_forever(job("loop", 10)).unwrap();
        queue.push(job("other", 1)).unwrap();
        queue.start_next();
        queue.finish_current(99);
        assert_eq!(prompts(&queue), ["other", "loop"]);
        assert_eq!(queue.waiting()[1].job.job.request.seed, 99);
        assert!(queue.waiting()[1].forever);

        queue.start_next();
        queue.finish_current(5);
        queue.start_next();
        queue.stop_forever();
        queue.finish_current(6);
        assert!(
            queue.is_empty(),
            "stopping ends the chain after the running job"
        );
        assert!(!queue.is_forever());

        queue.start_forever(job("loop", 10)).unwrap();
        queue.start_next();
        queue.current_stopped();
        queue.finish_current(7);
        assert!(
            queue.is_empty() && !queue.is_forever(),
            "a cancel ends it too"
        );
    }

    #[test]
    fn the_queue_is_bounded_and_counts_changes() {
        let mut queue = Queue::default();
        let before = queue.revision();
        for i in 0..MAX_QUEUED {
            queue.push(job("x", i as u64)).unwrap();
        }
        assert!(queue.revision() > before);
        assert_eq!(queue.push(job("x", 0)), Err(QueueError::Full));
    }

    #[test]
    fn summaries_name_the_settings() {
        let long = "a very long prompt about a lighthouse standing at dusk by the sea";
        let summary = job(long, 42).summary();
        assert_eq!(
            summary,
            "a very long prompt about a lighthouse st… · 512×768 · 20 steps · euler-a · seed 42 · 3 images"
        );
    }
}
