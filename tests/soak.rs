//! A soak of the worker: 100 jobs with cancels at random steps, model switches and LoRA
//! changes, in a fixed pseudo-random order. Every job must end with `JobDone` (after its
//! images, a `Cancelled` or a `Failed`), memory must stay flat after warm-up, and no thread
//! may be left behind.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use events::wait_for;
use latent_studio::engine::{
    Command, Event, GenerateJob, GenerationRequest, ImageOutput, LoadOptions, ModelSource,
    PreviewMode, PromptSyntax, SchedulerKind, Worker,
};

#[path = "support/events.rs"]
mod events;

const JOBS: u64 = 100;
/// Jobs before memory is first measured: every model, LoRA set and code path has run.
const WARM_UP: u64 = 30;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// xorshift: the same sequence of choices on every run.
struct Choices(u64);

impl Choices {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[cfg(target_os = "linux")]
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[cfg(target_os = "linux")]
fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

fn request(steps: usize, guidance: f64, seed: u64) -> GenerationRequest {
    GenerationRequest {
        prompt: "a lighthouse at dusk".into(),
        negative_prompt: None,
        steps,
        guidance,
        seed,
        width: 64,
        height: 64,
        scheduler: SchedulerKind::Default,
        init_image: None,
        prompt_syntax: PromptSyntax::A1111,
        clip_skip: 1,
        controls: Vec::new(),
        variation: None,
    }
}

#[test]
fn a_hundred_jobs_with_cancels_model_switches_and_lora_changes() {
    let models = [
        ModelSource::Folder(fixtures().join("formats/single/sd1.safetensors")),
        ModelSource::Folder(fixtures().join("models/sd_turbo")),
    ];
    let loras = [
        vec![],
        vec![(fixtures().join("formats/loras/sd1_kohya.safetensors"), 0.8)],
        vec![
            (fixtures().join("formats/loras/sd1_kohya.safetensors"), 0.5),
            (fixtures().join("formats/loras/sd1_peft.safetensors"), 1.0),
        ],
    ];
    // Process-wide pools (rayon's, candle's) start on first use and stay: start them with a
    // worker of their own, so that the count below is of what a worker leaves behind.
    let options = || LoadOptions {
        // The single file is a tiny model: its configs come from the sd1 fixture folder.
        config: Some(fixtures().join("models/sd1")),
        ..LoadOptions::default()
    };
    {
        let worker = Worker::spawn_with(options(), || {});
        worker.send(Command::LoadModel(models[1].clone()));
        wait_for(&worker, "a model load", |e| {
            matches!(e, Event::ModelLoaded(_))
        });
        worker.send(Command::Generate(GenerateJob {
            id: 0,
            request: request(1, 0.0, 0),
            batch_count: 1,
            batch_size: 1,
            output: ImageOutput::None,
            preview: PreviewMode::Fast,
            loras: Vec::new(),
            controls: Vec::new(),
            hires: None,
        }));
        wait_for(&worker, "a warm-up job", |e| {
            matches!(e, Event::JobDone { .. })
        });
    }
    #[cfg(target_os = "linux")]
    let threads_before = thread_count();
    let mut choices = Choices(0x9E37_79B9_7F4A_7C15);
    let mut warm_rss = 0;
    let mut peak_rss_after_warm_up = 0;
    let mut outcomes = [0usize; 3]; // finished, cancelled, failed
    {
        let worker = Worker::spawn_with(options(), || {});
        let mut model = 0;
        for job in 0..JOBS {
            if job % 10 == 0 {
                model = choices.below(2) as usize;
                worker.send(Command::LoadModel(models[model].clone()));
                let events = wait_for(&worker, "a model load", |e| {
                    matches!(e, Event::ModelLoaded(_) | Event::ModelFailed { .. })
                });
                if let Some(Event::ModelFailed { message, .. }) = events.last() {
                    panic!("job {job}: model {model} did not load: {message}");
                }
            }
            let steps = 2 + choices.below(3) as usize;
            let cancel_after = match choices.below(4) {
                0 => Some(choices.below(steps as u64) as usize),
                _ => None,
            };
            worker.send(Command::Generate(GenerateJob {
                id: job,
                request: GenerationRequest {
                    // One job in eight asks for a size the VAE grid refuses: it must fail
                    // and the worker go on.
                    width: if choices.below(8) == 0 { 60 } else { 64 },
                    ..request(steps, if model == 0 { 5.0 } else { 0.0 }, job)
                },
                batch_count: 1 + choices.below(2) as usize,
                batch_size: 1,
                output: ImageOutput::None,
                preview: PreviewMode::Fast,
                loras: loras[choices.below(3) as usize].clone(),
                controls: Vec::new(),
                hires: None,
            }));
            let mut steps_seen = 0;
            let events = wait_for(&worker, "the job's end", |event| {
                if let Event::Step { job: j, .. } = event {
                    assert_eq!(*j, job);
                    steps_seen += 1;
                    if cancel_after == Some(steps_seen) {
                        worker.cancel(job);
                    }
                }
                matches!(event, Event::JobDone { job: j } if *j == job)
            });
            let ended = events.iter().rev().skip(1).find_map(|event| match event {
                Event::Finished { .. } => Some(0),
                Event::Cancelled { .. } => Some(1),
                Event::Failed { .. } => Some(2),
                _ => None,
            });
            let ended = ended.unwrap_or_else(|| panic!("job {job} ended without an outcome"));
            outcomes[ended] += 1;
            #[cfg(target_os = "linux")]
            {
                let rss = resident_bytes();
                if job == WARM_UP {
                    warm_rss = rss;
                } else if job > WARM_UP {
                    peak_rss_after_warm_up = peak_rss_after_warm_up.max(rss);
                }
            }
        }
        assert!(worker.is_running());
    }
    // Every kind of ending happened.
    assert!(outcomes.iter().all(|&n| n > 0), "outcomes {outcomes:?}");
    #[cfg(target_os = "linux")]
    {
        let growth = peak_rss_after_warm_up as f64 / warm_rss as f64;
        assert!(
            growth < 1.05,
            "resident memory grew {:.1} % after warm-up ({warm_rss} → {peak_rss_after_warm_up} bytes)",
            (growth - 1.0) * 100.0
        );
        // The worker is joined when its handle drops; what it started has ended with it.
        let deadline = Instant::now() + Duration::from_secs(5);
        while thread_count() > threads_before && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            thread_count() <= threads_before,
            "threads: {threads_before} before, {} after: {:?}",
            thread_count(),
            thread_names()
        );
    }
}

#[cfg(target_os = "linux")]
fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("comm")).ok())
        .map(|name| name.trim().to_string())
        .collect()
}
