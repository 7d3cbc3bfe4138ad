//! The window's remote engine against a real `latent-studio serve` on a loopback port: the
//! same commands and events as the local worker, the same pixels and `parameters` texts,
//! live previews from `/progress`, cancel as `/interrupt`, the server's models, and clear
//! messages for a wrong address or missing credentials.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use candle_core::{DType, Device};
use events::collect_until;
use latent_studio::engine::{
    read_picture, read_png_parameters, AddOnFolders, Command, Event, GenerateJob,
    GenerationFailure, GenerationRequest, GrayImage, HiresFix, HiresOverrides, HiresUpscaler,
    ImageOutput, InitImage, InpaintArea, InpaintMask, LatentUpscale, LoadFailure, LoadOptions,
    MaskedContent, ModelSource, PreviewMode, PromptSyntax, RemoteEngine, RemoteWorker, RgbImage,
    SchedulerKind, Variation, Worker, WorkerHandle,
};
use latent_studio::server::{Server, ServerConfig, ServerOptions};

#[path = "support/events.rs"]
mod events;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn model_path(name: &str) -> PathBuf {
    fixtures().join("models").join(name)
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "latent-studio-remote-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn cpu() -> LoadOptions {
    LoadOptions {
        device: Device::Cpu,
        dtype: DType::F32,
        vae: None,
        config: None,
        keep_f16_weights: true,
    }
}

fn folders() -> AddOnFolders {
    AddOnFolders {
        loras: Some(fixtures().join("formats/loras")),
        embeddings: Some(fixtures().join("formats/embeddings")),
    }
}

fn serve(models: &[&str], api_auth: Option<&str>) -> Server {
    let config = ServerConfig::new(ServerOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        api_auth: api_auth.map(str::to_string),
        insecure: false,
        models: models
            .iter()
            .map(|name| ModelSource::Folder(model_path(name)))
            .collect(),
        load_options: cpu(),
        folders: folders(),
        upscalers: None,
    })
    .unwrap();
    Server::start(config).unwrap()
}

fn remote(server: &Server, user: &str, password: &str) -> WorkerHandle {
    let address = format!("http://{}", server.address());
    RemoteWorker::spawn(RemoteEngine::new(&address, user, password).unwrap(), || {})
}

/// The first `ServerModels` event: titles, current model, problem.
fn server_models(worker: &WorkerHandle) -> (Vec<String>, Option<String>, Option<String>) {
    let events = collect_until(worker, |e| matches!(e, Event::ServerModels { .. }));
    match events.into_iter().last() {
        Some(Event::ServerModels {
            titles,
            current,
            problem,
        }) => (titles, current, problem),
        _ => unreachable!(),
    }
}

fn load(worker: &WorkerHandle, source: ModelSource) -> Result<String, (String, LoadFailure)> {
    worker.send(Command::LoadModel(source));
    let events = collect_until(worker, |e| {
        matches!(e, Event::ModelLoaded(_) | Event::ModelFailed { .. })
    });
    match events.into_iter().last() {
        Some(Event::ModelLoaded(model)) => Ok(model.info.label),
        Some(Event::ModelFailed { message, cause, .. }) => Err((message, cause)),
        _ => unreachable!(),
    }
}

fn request(steps: usize, seed: u64) -> GenerationRequest {
    GenerationRequest {
        prompt: "A photo of an Astronaut riding a horse, on Mars! <lora:sd1_kohya:0.8>".into(),
        negative_prompt: Some("blurry, low quality".into()),
        steps,
        guidance: 7.5,
        seed,
        width: 64,
        height: 64,
        scheduler: SchedulerKind::EulerAncestral,
        init_image: None,
        prompt_syntax: PromptSyntax::A1111,
        clip_skip: 1,
        controls: Vec::new(),
        variation: None,
    }
}

fn job(
    id: u64,
    request: GenerationRequest,
    batch_count: usize,
    output: ImageOutput,
) -> GenerateJob {
    GenerateJob {
        id,
        request,
        batch_count,
        batch_size: 1,
        output,
        preview: PreviewMode::Fast,
        loras: Vec::new(),
        controls: Vec::new(),
        hires: None,
    }
}

/// Runs `job` to its `JobDone`; the events on the way.
fn run(worker: &WorkerHandle, job: GenerateJob) -> Vec<Event> {
    let id = job.id;
    worker.send(Command::Generate(job));
    collect_until(
        worker,
        |e| matches!(e, Event::JobDone { job } if *job == id),
    )
}

/// Each finished image: pixels, `parameters` text and the file written.
fn finished(events: &[Event]) -> Vec<(RgbImage, String, Option<PathBuf>)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Finished { image, .. } => Some((
                image.image.clone(),
                image.parameters.clone(),
                image.path.clone(),
            )),
            _ => None,
        })
        .collect()
}

fn failure(events: &[Event]) -> Option<&GenerationFailure> {
    events.iter().find_map(|e| match e {
        Event::Failed { failure, .. } => Some(failure),
        _ => None,
    })
}

#[test]
fn remote_images_are_the_local_engines_and_are_saved_here() {
    let server = serve(&["sd1"], None);
    let worker = remote(&server, "", "");
    let (titles, current, problem) = server_models(&worker);
    assert_eq!(titles, ["sd1"]);
    assert_eq!(current.as_deref(), Some("sd1"));
    assert_eq!(problem, None);
    load(&worker, ModelSource::Server("sd1".into())).unwrap();

    let local = Worker::spawn_with(cpu(), || {});
    local.send(Command::SetFolders(folders()));
    local.send(Command::LoadModel(ModelSource::Folder(model_path("sd1"))));
    collect_until(&local, |e| matches!(e, Event::ModelLoaded(_)));

    let init = RgbImage::from(read_picture(&fixtures().join("init_64.png")).unwrap());
    let mask_picture = image::open(fixtures().join("mask_64.png")).unwrap();
    let mut variation = request(3, 42);
    variation.variation = Some(Variation {
        seed: 1234,
        strength: 0.3,
    });
    let mut karras = request(3, 5);
    karras.scheduler = SchedulerKind::DpmPp2m;
    let mut inpaint = request(4, 7);
    inpaint.scheduler = SchedulerKind::Euler;
    inpaint.init_image = Some(InitImage {
        image: init.clone(),
        strength: 0.6,
        mask: Some(InpaintMask {
            mask: GrayImage::mask_from_picture(&mask_picture),
            blur: 2,
            area: InpaintArea::Masked { padding: 8 },
            content: MaskedContent::Original,
        }),
    });
    // A hires fix through the server's enable_hr: a latent upscaler, its own prompt and sampler.
    let hires = HiresFix {
        scale: 1.5,
        steps: Some(2),
        denoise: 0.6,
        upscaler: HiresUpscaler::Latent(LatentUpscale::Bicubic),
        own: HiresOverrides {
            prompt: Some("a lighthouse, at night".into()),
            negative_prompt: None,
            scheduler: Some(SchedulerKind::Euler),
        },
    };
    let cases = [
        ("txt2img", variation, 2, None),
        ("dpm-2m-uniform", karras, 1, None),
        ("inpaint", inpaint, 1, None),
        ("hires", request(2, 9), 1, Some(hires)),
    ];
    for (n, (name, request, count, hires)) in cases.into_iter().enumerate() {
        let job = |id, request, count, output| GenerateJob {
            hires: hires.clone(),
            ..job(id, request, count, output)
        };
        let (remote_dir, local_dir) = (
            scratch(&format!("{name}-remote")),
            scratch(&format!("{name}-local")),
        );
        let id = n as u64 + 1;
        let remote_events = run(
            &worker,
            job(
                id,
                request.clone(),
                count,
                ImageOutput::Folder(remote_dir.clone()),
            ),
        );
        assert_eq!(failure(&remote_events), None, "{name}");
        let local_events = run(
            &local,
            job(id, request, count, ImageOutput::Folder(local_dir)),
        );
        let (remote_images, local_images) = (finished(&remote_events), finished(&local_events));
        assert_eq!(remote_images.len(), count, "{name}");
        assert_eq!(local_images.len(), count, "{name}");
        for ((image, text, path), (local_image, local_text, _)) in
            remote_images.iter().zip(&local_images)
        {
            assert!(image.pixels == local_image.pixels, "{name}: pixels differ");
            assert_eq!(text, local_text, "{name}");
            // Saved here, with the text, for the history and "reuse parameters".
            let path = path.as_ref().expect("saved");
            assert!(path.starts_with(&remote_dir), "{}", path.display());
            assert_eq!(read_png_parameters(path).unwrap().as_ref(), Some(text));
            assert!(RgbImage::from(read_picture(path).unwrap()).pixels == image.pixels);
        }
        // Each image is announced before it finishes, with its seed.
        let starts: Vec<u64> = remote_events
            .iter()
            .filter_map(|e| match e {
                Event::Started { seed, .. } => Some(*seed),
                _ => None,
            })
            .collect();
        let seed = [42, 5, 7, 9][n];
        assert_eq!(
            starts,
            (0..count as u64).map(|i| seed + i).collect::<Vec<_>>(),
            "{name}"
        );
    }

    // What A1111's API cannot carry is refused by name, not dropped.
    let mut with_lora = job(10, request(3, 1), 1, ImageOutput::None);
    with_lora.loras = vec![(fixtures().join("formats/loras/sd1_kohya.safetensors"), 0.5)];
    let events = run(&worker, with_lora);
    let failure = failure(&events).expect("refused");
    assert!(
        matches!(failure, GenerationFailure::Server(m) if m.contains("sd1_kohya")),
        "{failure}"
    );
    assert!(finished(&events).is_empty());
}

#[test]
fn previews_arrive_and_cancel_interrupts_the_run() {
    let server = serve(&["sd_turbo"], None);
    let worker = remote(&server, "", "");
    server_models(&worker);
    load(&worker, ModelSource::Server("sd_turbo".into())).unwrap();
    let mut long = request(1000, 1);
    long.prompt = "a horse".into();
    long.scheduler = SchedulerKind::Euler;
    worker.send(Command::Generate(job(1, long, 3, ImageOutput::None)));
    let events = collect_until(
        &worker,
        |e| matches!(e, Event::Step { preview: Some(_), step, .. } if *step >= 2),
    );
    assert!(events.iter().any(|e| matches!(
        e,
        Event::Started {
            index: 0,
            seed: 1,
            total_steps: 1000,
            ..
        }
    )));
    let cancelled_at = Instant::now();
    worker.cancel(1);
    let rest = collect_until(&worker, |e| matches!(e, Event::JobDone { job: 1 }));
    assert!(
        cancelled_at.elapsed() < Duration::from_secs(30),
        "the run did not stop soon after the cancel"
    );
    assert!(rest
        .iter()
        .any(|e| matches!(e, Event::Cancelled { job: 1 })));
    assert!(
        finished(&rest).is_empty(),
        "the first of 3 × 1000 steps was not done yet"
    );
    // The server serves the next request at once.
    let events = run(&worker, job(2, request(1, 3), 1, ImageOutput::None));
    assert_eq!(finished(&events).len(), 1);
}

#[test]
fn the_servers_models_are_listed_and_switched() {
    let server = serve(&["sd1", "sd_turbo"], None);
    let worker = remote(&server, "", "");
    let (titles, current, _) = server_models(&worker);
    assert_eq!(titles, ["sd1", "sd_turbo"]);
    assert_eq!(current.as_deref(), Some("sd1"));
    // The model's own description (what the window shows and takes defaults from).
    worker.send(Command::LoadModel(ModelSource::Server("sd_turbo".into())));
    let events = collect_until(&worker, |e| {
        matches!(e, Event::ModelLoaded(_) | Event::ModelFailed { .. })
    });
    let Some(Event::ModelLoaded(model)) = events.last() else {
        panic!("not loaded")
    };
    assert_eq!(model.source, ModelSource::Server("sd_turbo".into()));
    assert!(model.info.distilled);
    assert_eq!(model.info.defaults.steps, 1);
    // A model the server does not have is named with the ones it has; the server now
    // uses sd_turbo for requests that name none.
    worker.send(Command::LoadModel(ModelSource::Server("sdxl".into())));
    let events = collect_until(&worker, |e| matches!(e, Event::ModelFailed { .. }));
    assert!(events.iter().any(|e| matches!(
        e,
        Event::ServerModels { current: Some(current), .. } if current == "sd_turbo"
    )));
    let Some(Event::ModelFailed { message, cause, .. }) = events.last() else {
        unreachable!()
    };
    assert_eq!(*cause, LoadFailure::Server);
    assert!(
        message.contains("no model \"sdxl\"") && message.contains("sd1, sd_turbo"),
        "{message}"
    );
}

#[test]
fn a_wrong_address_says_which_and_what_to_do() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let worker = RemoteWorker::spawn(RemoteEngine::new(&url, "", "").unwrap(), || {});
    let (titles, _, problem) = server_models(&worker);
    assert!(titles.is_empty());
    assert_eq!(
        problem.unwrap(),
        format!("cannot reach {url}: connection refused — is `latent-studio serve` running there?")
    );
    let (message, cause) = load(&worker, ModelSource::Server("sd1".into())).unwrap_err();
    assert_eq!(cause, LoadFailure::Server);
    assert!(
        message.starts_with(&format!("cannot reach {url}")),
        "{message}"
    );
    let events = run(&worker, job(1, request(1, 1), 1, ImageOutput::None));
    assert_eq!(failure(&events), Some(&GenerationFailure::NoModel));
}

#[test]
fn credentials_are_asked_for_and_used() {
    let server = serve(&["sd1"], Some("ann:secret"));
    let (_, _, problem) = server_models(&remote(&server, "", ""));
    assert!(problem.unwrap().contains("needs --api-auth credentials"));
    let (_, _, problem) = server_models(&remote(&server, "ann", "wrong"));
    assert!(problem
        .unwrap()
        .contains("did not accept the password of user ann"));
    let worker = remote(&server, "ann", "secret");
    let (titles, _, problem) = server_models(&worker);
    assert_eq!((titles, problem), (vec!["sd1".to_string()], None));
    load(&worker, ModelSource::Server("sd1".into())).unwrap();
    let events = run(&worker, job(1, request(2, 9), 1, ImageOutput::None));
    assert_eq!(finished(&events).len(), 1);
}
