//! Files a job needs from the hub (a ControlNet, an upscaler, the tiny VAE, the depth model),
//! fetched by the worker through
//! the fake hub of `tests/download.rs`: their progress reaches the window as the job's
//! downloads, before its image, and the job's cancel stops them within moments, leaving only a
//! partial file that no later run takes for a complete one (the next one resumes it).
//!
//! The engine finds the hub and the cache in `HF_ENDPOINT` and `HF_HUB_CACHE`, so the tests
//! take turns: each holds [`HubEnvironment`] while it runs.

#[allow(dead_code)]
#[path = "download/fake_hub.rs"]
mod fake_hub;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use events::collect_until;
use fake_hub::{
    FakeHub, TempDir, CONTROLNET_REPO, DEPTH_REPO, SLOW_CONTROLNET_REPO, TAESD_REPO, UPSCALER_FILE,
    UPSCALER_REPO,
};
use latent_studio::engine::{
    Command, ControlMode, ControlPreprocessor, ControlSpec, DownloadProgress, DownloadPurpose,
    Event, GenerateJob, GenerationRequest, HubCache, ImageOutput, ModelSource, PreviewMode,
    PromptSyntax, RgbImage, SchedulerKind, UpscaleImageJob, UpscaleJob, Worker, WorkerHandle,
};
use latent_studio::models::HubClient;

#[path = "support/events.rs"]
mod events;

/// The weights file `fetch_controlnet` picks in the fake hub's ControlNet repositories.
const WEIGHTS: &str = "diffusion_pytorch_model.fp16.safetensors";

/// A fake hub and an empty cache, named in the environment for as long as this lives.
struct HubEnvironment {
    hub: FakeHub,
    cache: TempDir,
    _turn: MutexGuard<'static, ()>,
}

impl HubEnvironment {
    fn new(name: &str) -> HubEnvironment {
        static TURN: Mutex<()> = Mutex::new(());
        let turn = TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let hub = FakeHub::start();
        let cache = TempDir::new(name);
        std::env::set_var("HF_ENDPOINT", hub.endpoint());
        std::env::set_var("HF_HUB_CACHE", &cache.0);
        std::env::remove_var("HF_HUB_OFFLINE");
        HubEnvironment {
            hub,
            cache,
            _turn: turn,
        }
    }

    fn cache(&self) -> HubCache {
        HubCache::new(&self.cache.0)
    }
}

fn job_done(id: u64) -> impl FnMut(&Event) -> bool {
    move |event| matches!(event, Event::JobDone { job } if *job == id)
}

/// A worker with the SD 1 fixture loaded.
fn worker_with_model() -> WorkerHandle {
    let worker = Worker::spawn(|| {});
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models/sd1");
    worker.send(Command::LoadModel(ModelSource::Folder(model)));
    let events = collect_until(&worker, |e| {
        matches!(e, Event::ModelLoaded(_) | Event::ModelFailed { .. })
    });
    if let Some(Event::ModelFailed { message, .. }) = events.last() {
        panic!("the fixture model did not load: {message}");
    }
    worker
}

/// Two steps at 64×64 with one ControlNet unit of `controlnet`.
fn controlnet_job(id: u64, controlnet: &str) -> GenerateJob {
    GenerateJob {
        id,
        request: GenerationRequest {
            prompt: "a house by a lake".into(),
            negative_prompt: None,
            steps: 2,
            guidance: 7.5,
            seed: 80,
            width: 64,
            height: 64,
            scheduler: SchedulerKind::Default,
            init_image: None,
            prompt_syntax: PromptSyntax::Plain,
            clip_skip: 1,
            controls: Vec::new(),
            variation: None,
        },
        batch_count: 1,
        batch_size: 1,
        output: ImageOutput::None,
        preview: PreviewMode::Off,
        loras: Vec::new(),
        controls: vec![ControlSpec {
            model: PathBuf::from(controlnet),
            image: RgbImage::filled(64, 64, [200, 40, 40]),
            preprocessor: ControlPreprocessor::None,
            scale: 1.0,
            start: 0.0,
            end: 1.0,
            mode: ControlMode::Balanced,
        }],
        hires: None,
    }
}

/// The downloads of job `id` among `events`, in order: (position, source, file, progress).
fn job_downloads(events: &[Event], id: u64) -> Vec<(usize, &ModelSource, &str, DownloadProgress)> {
    events
        .iter()
        .enumerate()
        .filter_map(|(at, event)| match event {
            Event::Download {
                source,
                file,
                progress,
                purpose: DownloadPurpose::Job(job),
            } if *job == id => Some((at, source, file.as_str(), *progress)),
            _ => None,
        })
        .collect()
}

fn position(events: &[Event], wanted: impl Fn(&Event) -> bool) -> Option<usize> {
    events.iter().position(wanted)
}

#[test]
fn a_hub_controlnet_reports_its_download_as_the_jobs_before_the_image() {
    let env = HubEnvironment::new("controlnet-progress");
    let worker = worker_with_model();
    worker.send(Command::Generate(controlnet_job(1, CONTROLNET_REPO)));
    let events = collect_until(&worker, job_done(1));

    let finished = position(&events, |e| matches!(e, Event::Finished { job: 1, .. }))
        .expect("the job made its image");
    let downloads = job_downloads(&events, 1);
    assert!(!downloads.is_empty(), "no download reported for the job");
    let source = ModelSource::Hub(CONTROLNET_REPO.to_string());
    for (at, reported, file, progress) in &downloads {
        assert!(*at < finished, "{file} reported after the image");
        assert_eq!(*reported, &source);
        assert_eq!(progress.file_count, 2, "{file}");
    }
    let size = env.hub.files[&format!("{CONTROLNET_REPO}/{WEIGHTS}")]
        .data
        .len() as u64;
    let weights: Vec<DownloadProgress> = downloads
        .iter()
        .filter(|(_, _, file, _)| *file == WEIGHTS)
        .map(|(_, _, _, progress)| *progress)
        .collect();
    let last = weights.last().expect("the weights' progress");
    assert_eq!((last.file_index, last.bytes_done), (1, size));
    assert_eq!(last.bytes_total, Some(size));
    // No download is told as the model's: the model stays loaded.
    assert!(!events.iter().any(|e| matches!(
        e,
        Event::Download {
            purpose: DownloadPurpose::Model,
            ..
        } | Event::ModelLoading { .. }
    )));
    let snapshot = env
        .cache()
        .repo_dir(CONTROLNET_REPO)
        .join("snapshots")
        .join(fake_hub::COMMIT);
    assert_eq!(
        std::fs::metadata(snapshot.join(WEIGHTS)).unwrap().len(),
        size
    );
}

#[test]
fn a_hub_upscaler_reports_its_download_as_the_jobs_before_the_image() {
    let env = HubEnvironment::new("upscaler-progress");
    let worker = Worker::spawn(|| {});
    let reference = format!("{UPSCALER_REPO}/{UPSCALER_FILE}");
    worker.send(Command::Upscale(UpscaleImageJob {
        id: 7,
        upscale: UpscaleJob {
            model: PathBuf::from(&reference),
            image: RgbImage::filled(16, 16, [10, 120, 240]),
            tile: None,
        },
        parameters: String::new(),
        output: ImageOutput::None,
    }));
    let events = collect_until(&worker, job_done(7));

    let finished = position(&events, |e| matches!(e, Event::Finished { job: 7, .. }))
        .expect("the upscale made its image");
    let downloads = job_downloads(&events, 7);
    let size = env.hub.files[&reference].data.len() as u64;
    let (at, source, file, last) = downloads.last().expect("the upscaler's progress");
    assert!(*at < finished);
    assert_eq!(*source, &ModelSource::Hub(reference.clone()));
    assert_eq!(*file, UPSCALER_FILE);
    assert_eq!((last.file_index, last.file_count), (0, 1));
    assert_eq!((last.bytes_done, last.bytes_total), (size, Some(size)));
}

#[test]
fn cancelling_a_job_stops_its_download_and_leaves_only_a_partial_file() {
    let env = HubEnvironment::new("controlnet-cancel");
    let worker = worker_with_model();
    worker.send(Command::Generate(controlnet_job(1, SLOW_CONTROLNET_REPO)));
    // The weights are arriving (64 KiB each 100 ms): cancel the job.
    collect_until(&worker, |e| {
        matches!(e, Event::Download { file, progress, purpose: DownloadPurpose::Job(1), .. }
            if file == WEIGHTS && progress.bytes_done > 0)
    });
    worker.cancel(1);
    let events = collect_until(&worker, job_done(1));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Cancelled { job: 1 })),
        "the job did not end cancelled"
    );
    assert!(!events
        .iter()
        .any(|e| matches!(e, Event::Failed { .. } | Event::Finished { .. })));

    // The weights stopped part-way: kept as `.incomplete`, never as the blob or in the
    // snapshot.
    let key = format!("{SLOW_CONTROLNET_REPO}/{WEIGHTS}");
    let (etag, size) = (env.hub.etag(&key), env.hub.files[&key].data.len() as u64);
    let cache = env.cache();
    let repo = cache.repo_dir(SLOW_CONTROLNET_REPO);
    let incomplete = repo.join("blobs").join(format!("{etag}.incomplete"));
    let partial = std::fs::metadata(&incomplete).map_or(0, |m| m.len());
    assert!(partial > 0 && partial < size, "{partial} of {size} bytes");
    assert!(!repo.join("blobs").join(&etag).exists());
    let snapshot = repo.join("snapshots").join(fake_hub::COMMIT);
    assert!(!snapshot.join(WEIGHTS).exists());
    // A later run does not take it for a download that finished: offline, it is not found.
    let offline = HubClient::new(&env.hub.endpoint())
        .with_offline(true)
        .fetch_controlnet(SLOW_CONTROLNET_REPO, &cache, |_, _| true)
        .unwrap_err();
    assert!(
        offline.to_string().contains("could not be reached"),
        "{offline}"
    );

    // The next job resumes from the partial file and makes its image.
    worker.send(Command::Generate(controlnet_job(2, SLOW_CONTROLNET_REPO)));
    let events = collect_until(&worker, job_done(2));
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::Finished { job: 2, .. })));
    let range = format!("bytes={partial}-");
    assert!(env
        .hub
        .requests()
        .iter()
        .any(|r| r.range.as_deref() == Some(range.as_str())));
    assert_eq!(
        std::fs::metadata(snapshot.join(WEIGHTS)).unwrap().len(),
        size
    );
}

#[test]
fn the_tiny_vae_from_the_hub_reports_its_download_as_the_jobs_before_the_first_step() {
    let _env = HubEnvironment::new("taesd-progress");
    let worker = worker_with_model();
    let mut job = controlnet_job(3, CONTROLNET_REPO);
    job.controls.clear();
    job.preview = PreviewMode::TinyVae;
    worker.send(Command::Generate(job));
    let events = collect_until(&worker, job_done(3));

    let first_step = position(&events, |e| matches!(e, Event::Step { job: 3, .. }))
        .expect("the job ran its steps");
    let downloads = job_downloads(&events, 3);
    let source = ModelSource::Hub(TAESD_REPO.to_string());
    assert!(
        downloads
            .iter()
            .any(|(at, reported, file, progress)| *at < first_step
                && *reported == &source
                && *file == "diffusion_pytorch_model.safetensors"
                && progress.bytes_total == Some(progress.bytes_done)),
        "{} downloads reported",
        downloads.len()
    );
    assert!(!events
        .iter()
        .any(|e| matches!(e, Event::Notice { .. } | Event::Failed { .. })));
}

#[test]
fn the_depth_model_for_a_map_preview_reports_its_download_as_the_previews() {
    let _env = HubEnvironment::new("depth-progress");
    let worker = Worker::spawn(|| {});
    worker.send(Command::MakeControlMap {
        unit: 2,
        preprocessor: ControlPreprocessor::Depth,
        image: Arc::new(RgbImage::filled(64, 48, [90, 160, 30])),
    });
    let events = collect_until(&worker, |e| matches!(e, Event::ControlMap { .. }));

    let Some(Event::ControlMap { unit: 2, map, .. }) = events.last() else {
        panic!("no map for unit 2");
    };
    let map = map.as_ref().expect("the depth map");
    assert_eq!((map.width, map.height), (64, 48));
    let weights: Vec<&DownloadProgress> = events
        .iter()
        .filter_map(|event| match event {
            Event::Download {
                source: ModelSource::Hub(id),
                file,
                progress,
                purpose: DownloadPurpose::ControlMap { unit: 2 },
            } if id == DEPTH_REPO && file == "model.safetensors" => Some(progress),
            _ => None,
        })
        .collect();
    let last = weights.last().expect("the depth weights' progress");
    assert_eq!(last.bytes_total, Some(last.bytes_done));
    assert_eq!(last.file_count, 3);
}
