//! The background worker: events in order, previews every step, cancel within a step,
//! failures reported while the worker keeps serving.

use std::path::{Path, PathBuf};

use events::collect_until;
use latent_studio::engine::{
    Command, Event, GenerateJob, GenerationFailure, GenerationRequest, ImageOutput, ModelSource,
    PreviewMode, PromptSyntax, SchedulerKind, Worker, WorkerHandle,
};

#[path = "support/events.rs"]
mod events;

fn fixture_model(name: &str) -> ModelSource {
    ModelSource::Folder(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/models")
            .join(name),
    )
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "latent-studio-worker-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn request(steps: usize) -> GenerationRequest {
    GenerationRequest {
        prompt: "A photo of an Astronaut riding a horse, on Mars!".into(),
        negative_prompt: Some("blurry, low quality".into()),
        steps,
        guidance: 7.5,
        seed: 42,
        width: 64,
        height: 64,
        scheduler: SchedulerKind::Default,
        init_image: None,
        prompt_syntax: PromptSyntax::Plain,
        clip_skip: 1,
        controls: Vec::new(),
        variation: None,
    }
}

fn load(worker: &WorkerHandle, source: ModelSource) -> Result<(), String> {
    worker.send(Command::LoadModel(source));
    let events = collect_until(worker, |e| {
        matches!(e, Event::ModelLoaded(_) | Event::ModelFailed { .. })
    });
    match events.last() {
        Some(Event::ModelLoaded(_)) => Ok(()),
        Some(Event::ModelFailed { message, .. }) => Err(message.clone()),
        _ => Err("no load outcome".into()),
    }
}

#[test]
fn batch_streams_previews_and_saves_pngs() {
    let notified = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = notified.clone();
    let worker = Worker::spawn(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    });
    load(&worker, fixture_model("sd1")).unwrap();
    let output_dir = scratch("batch");
    worker.send(Command::Generate(GenerateJob {
        id: 1,
        request: request(5),
        batch_count: 2,
        batch_size: 1,
        output: ImageOutput::Folder(output_dir.clone()),
        preview: PreviewMode::Fast,
        loras: Vec::new(),
        controls: Vec::new(),
        hires: None,
    }));
    let events = collect_until(&worker, |e| matches!(e, Event::JobDone { job: 1 }));
    let steps: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Step {
                index,
                step,
                total,
                preview,
                ..
            } => Some((*index, *step, *total, preview.is_some())),
            _ => None,
        })
        .collect();
    // PLMS: 5 steps are 6 UNet evaluations, each with a preview.
    assert_eq!(steps.len(), 12);
    assert!(steps
        .iter()
        .all(|&(_, _, total, has_preview)| total == 6 && has_preview));
    let finished: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Finished { image, .. } => Some(image.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(finished.len(), 2);
    assert_eq!(finished[0].seed, 42);
    assert_eq!(finished[1].seed, 43);
    for image in &finished {
        let path = image.path.as_ref().expect("saved");
        let text = latent_studio::formats::png::read_png_parameters(path)
            .unwrap()
            .unwrap();
        assert_eq!(text, image.parameters);
        assert!(text.contains(&format!("Seed: {}", image.seed)));
    }
    assert!(notified.load(std::sync::atomic::Ordering::SeqCst) >= events.len());

    // The first image is the diffusers reference for this prompt and seed.
    let reference = candle_core::safetensors::load(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cases/sd1_default.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let expected: Vec<u8> = reference["image"].flatten_all().unwrap().to_vec1().unwrap();
    let max = finished[0]
        .image
        .pixels
        .iter()
        .zip(&expected)
        .map(|(&a, &b)| a.abs_diff(b))
        .max()
        .unwrap();
    assert!(max <= 2, "worker image differs from diffusers by {max}/255");
    let _ = std::fs::remove_dir_all(&output_dir);
}

#[test]
fn cancel_stops_within_a_step() {
    let worker = Worker::spawn(|| {});
    load(&worker, fixture_model("sd1")).unwrap();
    worker.send(Command::Generate(GenerateJob {
        id: 7,
        request: request(40),
        batch_count: 3,
        batch_size: 1,
        output: ImageOutput::None,
        preview: PreviewMode::Off,
        loras: Vec::new(),
        controls: Vec::new(),
        hires: None,
    }));
    let mut cancelled_at = None;
    let events = collect_until(&worker, |e| {
        if let Event::Step { step: 2, .. } = e {
            worker.cancel(7);
            cancelled_at = Some(2);
        }
        matches!(e, Event::JobDone { job: 7 })
    });
    assert_eq!(cancelled_at, Some(2));
    let last_step = events
        .iter()
        .filter_map(|e| match e {
            Event::Step { step, .. } => Some(*step),
            _ => None,
        })
        .max()
        .unwrap();
    assert!(
        last_step <= 3,
        "ran to step {last_step} after cancelling at 2"
    );
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::Cancelled { job: 7 })));
    assert!(!events.iter().any(|e| matches!(e, Event::Finished { .. })));
}

#[test]
fn failures_are_reported_and_the_worker_keeps_serving() {
    let worker = Worker::spawn(|| {});
    // Generating with no model loaded.
    worker.send(Command::Generate(GenerateJob {
        id: 1,
        request: request(2),
        batch_count: 1,
        batch_size: 1,
        output: ImageOutput::None,
        preview: PreviewMode::Off,
        loras: Vec::new(),
        controls: Vec::new(),
        hires: None,
    }));
    let events = collect_until(&worker, |e| matches!(e, Event::JobDone { job: 1 }));
    assert!(events.iter().any(|e| matches!(
        e,
        Event::Failed {
            failure: GenerationFailure::NoModel,
            ..
        }
    )));

    // A folder that is not a model.
    let broken = scratch("broken");
    std::fs::create_dir_all(&broken).unwrap();
    let err = load(&worker, ModelSource::Folder(broken.clone())).unwrap_err();
    assert!(err.contains("model_index.json"), "{err}");

    // An invalid request on a good model fails the job, not the worker.
    load(&worker, fixture_model("sd_turbo")).unwrap();
    let mut bad = request(1);
    bad.width = 60;
    worker.send(Command::Generate(GenerateJob {
        id: 2,
        request: bad,
        batch_count: 1,
        batch_size: 1,
        output: ImageOutput::None,
        preview: PreviewMode::Off,
        loras: Vec::new(),
        controls: Vec::new(),
        hires: None,
    }));
    let events = collect_until(&worker, |e| matches!(e, Event::JobDone { job: 2 }));
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::Failed { failure: GenerationFailure::InvalidRequest(message), .. } if message.contains("width 60"))));

    let mut good = request(1);
    good.guidance = 0.0;
    worker.send(Command::Generate(GenerateJob {
        id: 3,
        request: good,
        batch_count: 1,
        batch_size: 1,
        output: ImageOutput::None,
        preview: PreviewMode::Vae { every: 1 },
        loras: Vec::new(),
        controls: Vec::new(),
        hires: None,
    }));
    let events = collect_until(&worker, |e| matches!(e, Event::JobDone { job: 3 }));
    let preview = events.iter().find_map(|e| match e {
        Event::Step {
            preview: Some(p), ..
        } => Some(p.clone()),
        _ => None,
    });
    assert_eq!(
        preview.map(|p| (p.width, p.height)),
        Some((64, 64)),
        "VAE preview is full size"
    );
    assert!(events.iter().any(|e| matches!(e, Event::Finished { .. })));
    let _ = std::fs::remove_dir_all(&broken);
}

#[test]
fn hub_models_fail_with_a_cause_the_window_can_explain() {
    use latent_studio::engine::LoadFailure;
    // Nothing listens on port 9 of the loopback: an unreachable hub. Only this test in this
    // binary reads these variables.
    std::env::set_var("HF_ENDPOINT", "http://127.0.0.1:9");
    std::env::set_var("HF_HUB_CACHE", scratch("hub-cache"));
    let worker = Worker::spawn(|| {});
    let failure = |source: ModelSource| {
        worker.send(Command::LoadModel(source));
        let events = collect_until(&worker, |e| {
            matches!(e, Event::ModelLoaded(_) | Event::ModelFailed { .. })
        });
        match events.last() {
            Some(Event::ModelFailed { cause, message, .. }) => (*cause, message.clone()),
            _ => panic!("expected a failure"),
        }
    };
    let (cause, message) = failure(ModelSource::Hub("stabilityai/sd-turbo".into()));
    assert_eq!(cause, LoadFailure::Offline, "{message}");
    assert!(message.contains("Open model"), "{message}");
    // Any repository id goes to the hub, which is out of reach.
    let (cause, message) = failure(ModelSource::Hub("someone/unknown-model".into()));
    assert_eq!(cause, LoadFailure::Offline, "{message}");
    // A pickle is refused by its name, before the hub is asked.
    let (cause, message) = failure(ModelSource::Hub("someone/model/model.ckpt".into()));
    assert_eq!(cause, LoadFailure::NotAModel, "{message}");
    assert!(message.contains("pickle"), "{message}");
}

/// Batch size: both images are denoised together (one `Started`, one step count), reported
/// one by one, and the second — seed 42 — is still the diffusers reference for seed 42.
#[test]
fn a_batch_shares_its_steps_and_each_image_keeps_its_seed() {
    let worker = Worker::spawn(|| {});
    load(&worker, fixture_model("sd1")).unwrap();
    let mut first = request(5);
    first.seed = 41;
    worker.send(Command::Generate(GenerateJob {
        id: 1,
        request: first,
        batch_count: 1,
        batch_size: 2,
        output: ImageOutput::None,
        preview: PreviewMode::Fast,
        loras: Vec::new(),
        controls: Vec::new(),
        hires: None,
    }));
    let events = collect_until(&worker, |e| matches!(e, Event::JobDone { job: 1 }));
    let started: Vec<(usize, u64)> = events
        .iter()
        .filter_map(|e| match e {
            Event::Started { index, seed, .. } => Some((*index, *seed)),
            _ => None,
        })
        .collect();
    assert_eq!(started, [(0, 41)], "one start for the batch");
    let steps = events
        .iter()
        .filter(|e| {
            matches!(
                e,
                Event::Step {
                    index: 0,
                    preview: Some(_),
                    ..
                }
            )
        })
        .count();
    assert_eq!(
        steps, 6,
        "PLMS: 5 steps are 6 UNet evaluations, shared by the batch"
    );
    let finished: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Finished { index, image, .. } => Some((*index, image.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(finished.len(), 2);
    assert_eq!((finished[0].0, finished[0].1.seed), (0, 41));
    assert_eq!((finished[1].0, finished[1].1.seed), (1, 42));
    assert!(finished[1].1.parameters.contains("Seed: 42,"));

    let reference = candle_core::safetensors::load(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cases/sd1_default.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let expected: Vec<u8> = reference["image"].flatten_all().unwrap().to_vec1().unwrap();
    let max = finished[1]
        .1
        .image
        .pixels
        .iter()
        .zip(&expected)
        .map(|(&a, &b)| a.abs_diff(b))
        .max()
        .unwrap();
    assert!(
        max <= 2,
        "the batch's seed-42 image differs from diffusers by {max}/255"
    );

    // More than the UNet batch allows is refused with the reason.
    worker.send(Command::Generate(GenerateJob {
        id: 2,
        request: request(2),
        batch_count: 1,
        batch_size: 9,
        output: ImageOutput::None,
        preview: PreviewMode::Off,
        loras: Vec::new(),
        controls: Vec::new(),
        hires: None,
    }));
    let events = collect_until(&worker, |e| matches!(e, Event::JobDone { job: 2 }));
    assert!(events.iter().any(|e| matches!(
        e,
        Event::Failed { failure: GenerationFailure::InvalidRequest(message), .. }
            if message.contains("batch size 9")
    )));
}

fn fixture_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/models")
        .join(name)
}

/// "Tiny VAE" previews are the tiny autoencoder's decode (`AutoencoderTiny`, checked against
/// diffusers in tests/parity.rs) of each step's denoised latents; the fast final decode is its
/// decode of the finished latents, recorded in the PNG.
#[test]
fn tiny_vae_previews_decode_each_steps_latents() {
    use latent_studio::models::{load_model, taesd::load_tiny_vae, LoadOptions};
    use latent_studio::sampling::pipeline::{decoded_to_image, Flow};

    let tiny_folder = fixture_dir("taesd_tiny");
    let options = LoadOptions::default();
    let decoder = load_tiny_vae(&tiny_folder, &options)
        .unwrap()
        .decoder
        .unwrap();
    let model = load_model(&fixture_dir("sd1"), &options).unwrap();
    let mut expected = Vec::new();
    let generated = model
        .pipeline()
        .generate(&request(3), &mut |progress| {
            let decoded = decoder.forward(progress.denoised).unwrap();
            expected.push(decoded_to_image(&decoded).unwrap());
            Flow::Continue
        })
        .unwrap();
    let expected_final = decoded_to_image(&decoder.forward(&generated.latents).unwrap()).unwrap();

    let worker = Worker::spawn(|| {});
    worker.send(Command::SetTinyVae(Some(tiny_folder)));
    load(&worker, fixture_model("sd1")).unwrap();
    let job = |id: u64, preview: PreviewMode| {
        Command::Generate(GenerateJob {
            id,
            request: request(3),
            batch_count: 1,
            batch_size: 1,
            output: ImageOutput::None,
            preview,
            loras: Vec::new(),
            controls: Vec::new(),
            hires: None,
        })
    };
    worker.send(job(1, PreviewMode::TinyVae));
    let events = collect_until(&worker, |e| matches!(e, Event::JobDone { job: 1 }));
    let previews: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Step { preview, .. } => preview.clone(),
            _ => None,
        })
        .collect();
    assert_eq!(previews.len(), expected.len());
    assert_eq!(previews, expected);
    assert_eq!((previews[0].width, previews[0].height), (64, 64));
    let plain = events.iter().find_map(|e| match e {
        Event::Finished { image, .. } => Some(image.clone()),
        _ => None,
    });
    let plain = plain.expect("finished");
    assert_ne!(plain.image, expected_final);
    assert!(!plain.parameters.contains("Fast decode"));

    worker.send(Command::SetFastDecode(true));
    worker.send(job(2, PreviewMode::Fast));
    let events = collect_until(&worker, |e| matches!(e, Event::JobDone { job: 2 }));
    let fast = events.iter().find_map(|e| match e {
        Event::Finished { image, .. } => Some(image.clone()),
        _ => None,
    });
    let fast = fast.expect("finished");
    assert_eq!(fast.image, expected_final);
    assert!(fast.parameters.contains("Fast decode: taesd_tiny"));
}

/// Without a usable tiny autoencoder, "Tiny VAE" previews fall back to the fast ones, with
/// one notice, not an error per step or per job.
#[test]
fn tiny_vae_previews_fall_back_with_one_notice() {
    let worker = Worker::spawn(|| {});
    worker.send(Command::SetTinyVae(Some(scratch("no-such-taesd"))));
    load(&worker, fixture_model("sd1")).unwrap();
    let mut notices = 0;
    for id in 1..=2 {
        worker.send(Command::Generate(GenerateJob {
            id,
            request: request(2),
            batch_count: 1,
            batch_size: 1,
            output: ImageOutput::None,
            preview: PreviewMode::TinyVae,
            loras: Vec::new(),
            controls: Vec::new(),
            hires: None,
        }));
        let events = collect_until(
            &worker,
            |e| matches!(e, Event::JobDone { job } if *job == id),
        );
        assert!(!events.iter().any(|e| matches!(e, Event::Failed { .. })));
        notices += events
            .iter()
            .filter(|e| matches!(e, Event::Notice { message } if message.contains("tiny VAE not available")))
            .count();
        let previews: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                Event::Step { preview, .. } => preview.clone(),
                _ => None,
            })
            .collect();
        assert!(!previews.is_empty());
        // The fast preview is at latent resolution.
        assert!(previews.iter().all(|p| (p.width, p.height) == (8, 8)));
    }
    assert_eq!(notices, 1);
}

/// A hires fix with a latent upscaler starts its second pass from the first pass's latents,
/// resized, so the first pass is never decoded: one decode of a finished image per image,
/// where Lanczos decodes both passes. What the user sees is unchanged: every step of both
/// passes comes with its preview, and each image is the pipeline's two halves run by hand
/// (text-to-image, torch's resize of its latents, img2img from them; each half's parity with
/// diffusers is in tests/parity.rs), pixel for pixel.
#[test]
fn a_latent_hires_fix_decodes_only_its_final_image() {
    use latent_studio::engine::{
        FinishedImage, HiresFix, HiresOverrides, HiresUpscaler, ImageStep, LatentUpscale,
        LoadOptions, RgbImage, RunObserver, Runner,
    };
    use latent_studio::kernels::resize::interpolate;
    use latent_studio::sampling::pipeline::Flow;

    #[derive(Default)]
    struct Seen {
        /// (step, total, with a preview)
        steps: Vec<(usize, usize, bool)>,
        images: Vec<FinishedImage>,
    }
    impl RunObserver for Seen {
        fn step(&mut self, progress: ImageStep) {
            self.steps
                .push((progress.step, progress.total, progress.preview.is_some()));
        }
        fn image_finished(&mut self, _: usize, image: FinishedImage) {
            self.images.push(image);
        }
    }
    /// Decodes of finished images during a run of `job`, and what the run showed.
    fn run(runner: &mut Runner, job: &GenerateJob) -> (usize, Seen) {
        let decodes = |runner: &Runner| runner.model().unwrap().pipeline().finished_decodes();
        let before = decodes(runner);
        let mut seen = Seen::default();
        runner.run(job, &mut seen).unwrap();
        (decodes(runner) - before, seen)
    }

    let mut runner = Runner::new(LoadOptions::default());
    runner
        .load(&fixture_model("sd1"), &mut Seen::default())
        .unwrap();
    let base = GenerationRequest {
        width: 64,
        height: 48,
        scheduler: SchedulerKind::Euler,
        ..request(3)
    };
    let job = |upscaler| GenerateJob {
        id: 1,
        request: base.clone(),
        batch_count: 2,
        batch_size: 1,
        output: ImageOutput::None,
        preview: PreviewMode::Fast,
        loras: Vec::new(),
        controls: Vec::new(),
        hires: Some(HiresFix {
            scale: 1.5,
            steps: Some(4),
            denoise: 0.6,
            upscaler,
            own: HiresOverrides::default(),
        }),
    };

    let (lanczos_decodes, _) = run(&mut runner, &job(HiresUpscaler::Lanczos));
    assert_eq!(lanczos_decodes, 4, "two passes of two images");
    let latent = job(HiresUpscaler::Latent(LatentUpscale::Bicubic));
    let (latent_decodes, seen) = run(&mut runner, &latent);
    assert_eq!(latent_decodes, 2, "the first passes were decoded too");

    // Euler: 3 first-pass steps, then 2 of the second pass's 4 (denoise 0.6), per image.
    let per_image: Vec<_> = (1..=5).map(|step| (step, 5, true)).collect();
    assert_eq!(seen.steps, [per_image.clone(), per_image].concat());
    assert_eq!(seen.images.len(), 2);
    let hires = latent.hires.as_ref().unwrap();
    let pipeline = runner.model().unwrap().pipeline();
    for (n, finished) in seen.images.iter().enumerate() {
        let first = GenerationRequest {
            seed: base.seed + n as u64,
            ..base.clone()
        };
        let first_pass = pipeline.generate(&first, &mut |_| Flow::Continue).unwrap();
        let start = interpolate(&first_pass.latents, 9, 12, LatentUpscale::Bicubic).unwrap();
        let second = hires.second_pass(&first, RgbImage::filled(96, 72, [0; 3]));
        let by_hand = pipeline
            .generate_from_latents(&second, &start, &mut |_| Flow::Continue)
            .unwrap();
        assert_eq!(finished.seed, first.seed);
        assert_eq!((finished.image.width, finished.image.height), (96, 72));
        assert!(finished.image == by_hand.image, "image {n} differs");
    }
}
