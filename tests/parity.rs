//! End-to-end parity with diffusers on tiny random-weight pipelines of every family.
//! References come from `tests/fixtures/make_fixtures.py`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use latent_studio::models::{load_model, LoadOptions};
use latent_studio::pipeline::generate::{
    Flow, GenerationRequest, InitImage, PromptSyntax, RgbImage, StableDiffusion,
};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Case {
    name: String,
    model: String,
    mode: String,
    prompt: String,
    negative_prompt: Option<String>,
    steps: usize,
    guidance: f64,
    seed: u64,
    width: usize,
    height: usize,
    scheduler: String,
    init_image: Option<String>,
    strength: Option<f64>,
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn load_png(path: &Path) -> RgbImage {
    let image = image::open(path).expect("init image").to_rgb8();
    RgbImage {
        width: image.width() as usize,
        height: image.height() as usize,
        pixels: image.into_raw(),
    }
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    let a = a.to_dtype(DType::F32).unwrap();
    let b = b.to_dtype(DType::F32).unwrap().reshape(a.shape()).unwrap();
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar()
        .unwrap()
}

fn run_case(model: &StableDiffusion, case: &Case) -> Result<(), String> {
    let reference = candle_core::safetensors::load(
        fixtures()
            .join("cases")
            .join(format!("{}.safetensors", case.name)),
        &Device::Cpu,
    )
    .map_err(|e| e.to_string())?;
    let init_image = match (&case.init_image, case.strength) {
        (Some(path), Some(strength)) => Some(InitImage {
            image: load_png(&fixtures().join(path)),
            strength,
        }),
        _ => None,
    };
    assert_eq!(
        init_image.is_some(),
        case.mode == "img2img",
        "{}",
        case.name
    );
    let request = GenerationRequest {
        prompt: case.prompt.clone(),
        negative_prompt: case.negative_prompt.clone(),
        steps: case.steps,
        guidance: case.guidance,
        seed: case.seed,
        width: case.width,
        height: case.height,
        scheduler: case.scheduler.parse().map_err(|e| format!("{e}"))?,
        init_image,
        // These cases are literal diffusers calls (some prompts hold A1111-looking brackets).
        prompt_syntax: PromptSyntax::Plain,
        clip_skip: 1,
    };
    let mut steps_seen = 0;
    let output = model
        .generate(&request, &mut |_| {
            steps_seen += 1;
            Flow::Continue
        })
        .map_err(|e| e.to_string())?;
    if steps_seen == 0 {
        return Err("no step progress reported".into());
    }
    let latent_diff = max_abs_diff(&output.latents, &reference["latents"]);
    let expected: Vec<u8> = reference["image"].flatten_all().unwrap().to_vec1().unwrap();
    if expected.len() != output.image.pixels.len() {
        return Err(format!(
            "image size {} vs {}",
            output.image.pixels.len(),
            expected.len()
        ));
    }
    let diffs: Vec<f64> = output
        .image
        .pixels
        .iter()
        .zip(&expected)
        .map(|(&a, &b)| (a as f64 - b as f64).abs())
        .collect();
    let mean = diffs.iter().sum::<f64>() / diffs.len() as f64;
    let max = diffs.iter().cloned().fold(0.0, f64::max);
    eprintln!(
        "{:<24} latents max|Δ| {latent_diff:.2e}  image mean|Δ| {mean:.4}/255 max|Δ| {max}/255",
        case.name
    );
    if latent_diff > 1e-3 || mean > 0.25 || max > 2.0 {
        return Err(format!(
            "{}: latents max diff {latent_diff}, image mean {mean}/255, max {max}/255",
            case.name
        ));
    }
    Ok(())
}

#[test]
fn every_case_matches_diffusers() {
    let cases: Vec<Case> =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("cases.json")).unwrap())
            .unwrap();
    assert!(cases.len() >= 20);
    let mut models: HashMap<String, StableDiffusion> = HashMap::new();
    let mut failures = Vec::new();
    for case in &cases {
        if !models.contains_key(&case.model) {
            let model = load_model(
                &fixtures().join("models").join(&case.model),
                &LoadOptions::default(),
            )
            .unwrap_or_else(|e| panic!("loading {}: {e}", case.model));
            models.insert(case.model.clone(), model);
        }
        if let Err(err) = run_case(&models[&case.model], case) {
            failures.push(format!("{}: {err}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from diffusers:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
