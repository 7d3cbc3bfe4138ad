//! Depth Anything against Hugging Face transformers (tests/fixtures/make_depth_fixtures.py):
//! a tiny random-weight `DepthAnythingForDepthEstimation` saved with `save_pretrained`, the
//! PIL `DPTImageProcessor`'s `pixel_values` for a 64×48 picture, the predicted depth, and
//! the 8-bit map as sd-webui-controlnet's `depth_anything_v2` makes it.

use std::path::PathBuf;

use candle_core::{Device, Tensor};
use latent_studio::imaging::RgbImage;
use latent_studio::models::depth::load_depth_model;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn reference() -> std::collections::HashMap<String, Tensor> {
    candle_core::safetensors::load(
        fixtures().join("depth/depth_tiny.safetensors"),
        &Device::Cpu,
    )
    .unwrap()
}

fn picture() -> RgbImage {
    image::open(fixtures().join("depth/picture_64x48.png"))
        .unwrap()
        .to_rgb8()
        .into()
}

fn values(t: &Tensor) -> Vec<f32> {
    t.to_dtype(candle_core::DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

#[test]
fn the_processor_input_matches_transformers() {
    let reference = reference();
    let expected = &reference["pixel_values"];
    let (_, _, h, w) = expected.dims4().unwrap();
    let input = latent_studio::imaging::depth::DepthInput {
        height: 56,
        width: 56,
        ..Default::default()
    };
    let (ours, width, height) = input.pixel_values(&picture());
    assert_eq!((width, height), (w, h));
    let worst = ours
        .iter()
        .zip(values(expected))
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    eprintln!("pixel_values: worst {worst}");
    assert!(worst <= 1e-5, "pixel_values differ by up to {worst}");
}

#[test]
fn depth_and_map_match_transformers() {
    let reference = reference();
    let model = load_depth_model(&fixtures().join("models/depth_tiny"), &Device::Cpu).unwrap();
    let (depth, w, h) = model.predict(&picture()).unwrap();
    let expected_depth = &reference["predicted_depth"];
    assert_eq!(expected_depth.dims(), &[1, h, w]);
    let expected = values(expected_depth);
    let range = expected.iter().copied().fold(f32::MIN, f32::max)
        - expected.iter().copied().fold(f32::MAX, f32::min);
    assert!(range > 0.0);
    let worst = depth
        .iter()
        .zip(&expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        worst <= 1e-4 * range,
        "depth differs by up to {worst} (range {range})"
    );

    eprintln!("depth: worst {worst}, range {range}");
    let map = model.depth_map(&picture()).unwrap();
    let expected_map = values(&reference["map"]);
    assert_eq!((map.width, map.height), (64, 48));
    let mut worst_map = 0;
    for (i, &e) in expected_map.iter().enumerate() {
        let ours = map.pixels[i * 3];
        assert_eq!(map.pixels[i * 3 + 1], ours);
        worst_map = worst_map.max((ours as i32 - e as i32).abs());
    }
    eprintln!("map: worst {worst_map}/255");
    assert!(worst_map <= 1, "map differs by up to {worst_map}/255");
}

fn generate(args: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_latent-studio"));
    command
        .arg("generate")
        .args(args)
        .env_remove("LATENT_STUDIO_DEPTH_MODEL");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("run latent-studio")
}

fn scratch(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("latent-studio-depth-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn controlnet_args<'a>(image: &'a str, preprocess: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "--model",
        "MODEL",
        "--prompt",
        "a mountain road",
        "--controlnet",
        "NET",
        "--control-image",
        image,
        "--control-preprocess",
        preprocess,
        "--scheduler",
        "euler",
        "--steps",
        "3",
        "--guidance",
        "5",
        "--seed",
        "81",
        "--width",
        "64",
        "--height",
        "64",
        "--prompt-syntax",
        "plain",
        "--output",
        out,
    ]
}

/// `--control-preprocess depth` with the tiny model as `--depth-model` makes the reference
/// map and generates as `--control-preprocess none` given that map; the PNG records
/// A1111's module name. Without a depth model anywhere and no hub, one line names what to
/// download.
#[test]
fn the_cli_makes_the_depth_map_before_the_unit_runs() {
    let dir = scratch("cli");
    let model = fixtures().join("models/sd1").display().to_string();
    let net = fixtures()
        .join("models/sd1_controlnet")
        .display()
        .to_string();
    let depth_model = fixtures().join("models/depth_tiny").display().to_string();
    let picture_path = fixtures()
        .join("depth/picture_64x48.png")
        .display()
        .to_string();
    let expected_map: Vec<u8> = reference()["map"].flatten_all().unwrap().to_vec1().unwrap();
    let map_path = dir.join("map.png");
    image::GrayImage::from_raw(64, 48, expected_map)
        .unwrap()
        .save(&map_path)
        .unwrap();
    let with = |args: Vec<&str>| -> Vec<String> {
        args.into_iter()
            .map(|a| match a {
                "MODEL" => model.clone(),
                "NET" => net.clone(),
                other => other.to_string(),
            })
            .collect()
    };
    let run = |args: Vec<String>, env: &[(&str, &std::ffi::OsStr)]| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        generate(&args, env)
    };
    let depth_out = dir.join("depth.png").display().to_string();
    let mut depth_args = with(controlnet_args(&picture_path, "depth", &depth_out));
    depth_args.extend(["--depth-model".to_string(), depth_model]);
    let output = run(depth_args, &[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let map_out = dir.join("map-none.png").display().to_string();
    let map_arg = map_path.display().to_string();
    let output = run(with(controlnet_args(&map_arg, "none", &map_out)), &[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let a = image::open(&depth_out).unwrap().to_rgb8();
    let b = image::open(&map_out).unwrap().to_rgb8();
    let worst = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| (*x as i32 - *y as i32).abs())
        .max()
        .unwrap();
    assert!(
        worst <= 1,
        "depth unit differs from the reference map's by {worst}/255"
    );
    let text = latent_studio::formats::png::read_png_parameters(std::path::Path::new(&depth_out))
        .unwrap()
        .unwrap();
    assert!(
        text.contains("ControlNet 0: \"Module: depth_anything_v2, Model: sd1_controlnet"),
        "{text}"
    );

    // No --depth-model, no LATENT_STUDIO_DEPTH_MODEL, an empty Hugging Face cache and a hub
    // that cannot be reached (a closed local port): the download fails, one line says why.
    let empty_cache = dir.join("hub");
    std::fs::create_dir_all(&empty_cache).unwrap();
    let missing_out = dir.join("missing.png").display().to_string();
    let output = run(
        with(controlnet_args(&picture_path, "depth", &missing_out)),
        &[
            ("HF_HUB_CACHE", empty_cache.as_os_str()),
            ("HF_ENDPOINT", std::ffi::OsStr::new("http://127.0.0.1:9")),
            ("HF_HUB_OFFLINE", std::ffi::OsStr::new("")),
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].contains("depth-anything/Depth-Anything-V2-Small-hf")
            && lines[0].contains("--depth-model"),
        "{stderr}"
    );
    assert!(!std::path::Path::new(&missing_out).exists());
}

/// The window's preview path: the worker makes a depth map on request (the depth model from
/// `LATENT_STUDIO_DEPTH_MODEL`), the same map as the reference.
#[test]
fn the_worker_makes_depth_maps_for_previews() {
    use latent_studio::engine::{Command, ControlPreprocessor, Event, LoadOptions, Worker};
    // Only this test reads the variable in this process (the CLI test's children drop it).
    std::env::set_var(
        latent_studio::engine::DEPTH_MODEL_ENV,
        fixtures().join("models/depth_tiny"),
    );
    let worker = Worker::spawn_with(LoadOptions::default(), || {});
    let image = std::sync::Arc::new(picture());
    worker.send(Command::MakeControlMap {
        unit: 1,
        preprocessor: ControlPreprocessor::Depth,
        image: image.clone(),
    });
    let event = worker
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("an answer");
    let Event::ControlMap {
        unit,
        preprocessor,
        image: answered,
        map,
    } = event
    else {
        panic!("expected a ControlMap event");
    };
    assert_eq!((unit, preprocessor), (1, ControlPreprocessor::Depth));
    assert!(std::sync::Arc::ptr_eq(&answered, &image));
    let map = map.unwrap();
    let expected: Vec<u8> = reference()["map"].flatten_all().unwrap().to_vec1().unwrap();
    let worst = expected
        .iter()
        .enumerate()
        .map(|(i, &e)| (map.pixels[i * 3] as i32 - e as i32).abs())
        .max()
        .unwrap();
    assert!(worst <= 1, "worker's map differs by {worst}/255");
}

/// A picture so elongated that keeping its aspect ratio would make a huge network input is
/// refused with a sentence, before any work.
#[test]
fn a_very_elongated_picture_is_refused() {
    let model = load_depth_model(&fixtures().join("models/depth_tiny"), &Device::Cpu).unwrap();
    // 56 wide fits the width (scale 1), so the height stays 5000: beyond 4096.
    let tall = RgbImage::filled(56, 5000, [90, 90, 90]);
    let err = model.depth_map(&tall).unwrap_err().to_string();
    assert!(err.contains("crop it nearer to square"), "{err}");
}
