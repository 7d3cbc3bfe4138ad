//! Shared by the parity tests: fixture paths and comparison with diffusers' references.
// Each test binary includes this module and uses only part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use latent_studio::models::StableDiffusion;
use latent_studio::networks::controlnet::ControlMode;
use latent_studio::sampling::inpaint::{InpaintArea, InpaintMask, MaskedContent};
use latent_studio::sampling::pipeline::{
    ControlNetwork, ControlUnit, Flow, GeneratedImage, GenerationRequest, GrayImage, InitImage,
    PromptSyntax, RgbImage,
};
use serde::Deserialize;

/// The settings every diffusers call of the fixtures has (fields of each case's JSON object).
#[derive(Debug, Deserialize)]
struct Sampling {
    prompt: String,
    negative_prompt: Option<String>,
    steps: usize,
    guidance: f64,
    seed: u64,
    width: usize,
    height: usize,
    scheduler: String,
}

impl Sampling {
    /// The txt2img request of these settings; each case adds its start image or units.
    /// Prompts are literal diffusers strings (some hold A1111-looking brackets).
    fn request(&self) -> Result<GenerationRequest, String> {
        Ok(GenerationRequest {
            prompt: self.prompt.clone(),
            negative_prompt: self.negative_prompt.clone(),
            steps: self.steps,
            guidance: self.guidance,
            seed: self.seed,
            width: self.width,
            height: self.height,
            scheduler: self.scheduler.parse().map_err(|e| format!("{e}"))?,
            init_image: None,
            prompt_syntax: PromptSyntax::Plain,
            clip_skip: 1,
            controls: Vec::new(),
            variation: None,
        })
    }
}

/// Reads one of the fixtures' JSON lists.
fn read_fixture_json<T: serde::de::DeserializeOwned>(file: &str) -> T {
    let path = fixtures().join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// One generation of `tests/fixtures/cases.json`, as `make_fixtures.py` ran it in diffusers.
#[derive(Debug, Deserialize)]
pub struct Case {
    #[serde(flatten)]
    sampling: Sampling,
    pub name: String,
    pub model: String,
    mode: String,
    init_image: Option<String>,
    strength: Option<f64>,
}

pub fn parity_cases() -> Vec<Case> {
    parity_cases_from("cases.json")
}

/// The cases of another list in the layout of `cases.json` (`cases_more.json`).
#[allow(dead_code)] // not every test binary that includes `support` reads one
pub fn parity_cases_from(file: &str) -> Vec<Case> {
    read_fixture_json(file)
}

/// Runs a case through our pipeline; fails if no step progress was reported.
pub fn generate_case(model: &StableDiffusion, case: &Case) -> Result<GeneratedImage, String> {
    let init_image = match (&case.init_image, case.strength) {
        (Some(path), Some(strength)) => Some(InitImage {
            image: load_png(&fixtures().join(path)),
            strength,
            mask: None,
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
        init_image,
        ..case.sampling.request()?
    };
    let mut steps_seen = 0;
    let output = model
        .pipeline()
        .generate(&request, &mut |_| {
            steps_seen += 1;
            Flow::Continue
        })
        .map_err(|e| e.to_string())?;
    if steps_seen == 0 {
        return Err("no step progress reported".into());
    }
    Ok(output)
}

/// One run of diffusers' inpainting pipelines (`inpaint.json`, `make_inpaint_fixtures.py`).
#[derive(Debug, Deserialize)]
pub struct InpaintCase {
    #[serde(flatten)]
    sampling: Sampling,
    pub name: String,
    pub model: String,
    /// The 9-channel UNet that replaces `model`'s, for inpainting models.
    pub unet: Option<String>,
    strength: f64,
    init_image: String,
    mask: String,
    padding_mask_crop: Option<usize>,
}

pub fn inpaint_cases() -> Vec<InpaintCase> {
    read_fixture_json("inpaint.json")
}

/// A mask file as the CLI reads one (white or opaque = repaint).
pub fn load_mask(path: &Path) -> GrayImage {
    GrayImage::mask_from_picture(&image::open(path).expect("mask image"))
}

impl InpaintCase {
    pub fn request(&self) -> Result<GenerationRequest, String> {
        let area = match self.padding_mask_crop {
            Some(padding) => InpaintArea::Masked { padding },
            None => InpaintArea::Whole,
        };
        Ok(GenerationRequest {
            init_image: Some(InitImage {
                image: load_png(&fixtures().join(&self.init_image)),
                strength: self.strength,
                mask: Some(InpaintMask {
                    mask: load_mask(&fixtures().join(&self.mask)),
                    blur: 0,
                    area,
                    content: MaskedContent::Original,
                }),
            }),
            ..self.sampling.request()?
        })
    }
}

/// A model folder made of the fixture model `base` with its `unet/` replaced by the fixture
/// UNet folder `unet` (how the inpainting fixtures store a whole model in a few MB).
pub fn model_with_unet(base: &str, unet: &str, scratch: &Path) -> PathBuf {
    let target = scratch.join(format!("{base}+{unet}"));
    if target.exists() {
        return target;
    }
    copy_dir(&fixtures().join("models").join(base), &target);
    std::fs::remove_dir_all(target.join("unet")).unwrap();
    copy_dir(&fixtures().join("models").join(unet), &target.join("unet"));
    target
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        if path.is_dir() {
            copy_dir(&path, &to.join(entry.file_name()));
        } else {
            std::fs::copy(&path, to.join(entry.file_name())).unwrap();
        }
    }
}

/// One run of diffusers' ControlNet pipelines (`controlnet.json`, `make_controlnet_fixtures.py`).
#[derive(Debug, Deserialize)]
pub struct ControlNetCase {
    #[serde(flatten)]
    sampling: Sampling,
    pub name: String,
    pub model: String,
    pub units: Vec<ControlUnitCase>,
    mode: String,
    strength: Option<f64>,
    init_image: Option<String>,
    mask: Option<String>,
    guess_mode: bool,
}

#[derive(Debug, Deserialize)]
pub struct ControlUnitCase {
    /// A fixture model folder holding the ControlNet.
    pub controlnet: String,
    image: String,
    scale: f64,
    start: f64,
    end: f64,
}

pub fn controlnet_cases() -> Vec<ControlNetCase> {
    read_fixture_json("controlnet.json")
}

impl ControlNetCase {
    /// The request, with `load` giving the network of each unit's fixture folder.
    pub fn request(
        &self,
        load: &mut dyn FnMut(&str) -> ControlNetwork,
    ) -> Result<GenerationRequest, String> {
        let mode = if self.guess_mode {
            ControlMode::ControlNetMoreImportant
        } else {
            ControlMode::Balanced
        };
        let controls = self
            .units
            .iter()
            .map(|unit| ControlUnit {
                net: load(&unit.controlnet),
                image: load_png(&fixtures().join(&unit.image)),
                scale: unit.scale,
                start: unit.start,
                end: unit.end,
                mode,
                model_name: unit.controlnet.clone(),
                preprocessor: "none".into(),
                preprocessor_thresholds: Vec::new(),
            })
            .collect();
        let init_image = match self.mode.as_str() {
            "txt2img" => None,
            _ => Some(InitImage {
                image: load_png(&fixtures().join(self.init_image.as_ref().unwrap())),
                strength: self.strength.unwrap(),
                mask: self.mask.as_ref().map(|mask| InpaintMask {
                    mask: load_mask(&fixtures().join(mask)),
                    blur: 0,
                    area: InpaintArea::Whole,
                    content: MaskedContent::Original,
                }),
            }),
        };
        Ok(GenerationRequest {
            init_image,
            controls,
            ..self.sampling.request()?
        })
    }
}

/// One run of diffusers' T2I-Adapter pipelines (`adapter.json`, `make_adapter_fixtures.py`).
#[derive(Debug, Deserialize)]
pub struct AdapterCase {
    #[serde(flatten)]
    sampling: Sampling,
    pub name: String,
    pub model: String,
    /// A fixture model folder holding the adapter.
    pub adapter: String,
    image: String,
    scale: f64,
    /// SDXL's `adapter_conditioning_factor`: the unit's end.
    factor: f64,
}

pub fn adapter_cases() -> Vec<AdapterCase> {
    read_fixture_json("adapter.json")
}

impl AdapterCase {
    pub fn request(&self, adapter: ControlNetwork) -> Result<GenerationRequest, String> {
        Ok(GenerationRequest {
            controls: vec![ControlUnit {
                net: adapter,
                image: load_png(&fixtures().join(&self.image)),
                scale: self.scale,
                start: 0.0,
                end: self.factor,
                mode: ControlMode::Balanced,
                model_name: self.adapter.clone(),
                preprocessor: "none".into(),
                preprocessor_thresholds: Vec::new(),
            }],
            ..self.sampling.request()?
        })
    }
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn load_png(path: &Path) -> RgbImage {
    let image = image::open(path).expect("init image").to_rgb8();
    RgbImage {
        width: image.width() as usize,
        height: image.height() as usize,
        pixels: image.into_raw(),
    }
}

pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
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

/// Compares a generation with a reference file holding diffusers' `latents` and `image`;
/// prints the differences and fails past the limits every parity test uses.
pub fn compare_with_reference(
    name: &str,
    output: &GeneratedImage,
    reference: &Path,
) -> Result<(), String> {
    let reference = candle_core::safetensors::load(reference, &Device::Cpu)
        .map_err(|e| format!("{}: {e}", reference.display()))?;
    let latent_diff = max_abs_diff(&output.latents, &reference["latents"]);
    let expected: Vec<u8> = reference["image"].flatten_all().unwrap().to_vec1().unwrap();
    if expected.len() != output.image.pixels.len() {
        return Err(format!(
            "image size {} vs {}",
            output.image.pixels.len(),
            expected.len()
        ));
    }
    let (mean, max) = image_diff(&output.image.pixels, &expected);
    eprintln!(
        "{name:<24} latents max|Δ| {latent_diff:.2e}  image mean|Δ| {mean:.4}/255 max|Δ| {max}/255"
    );
    if latent_diff > 1e-3 || mean > 0.25 || max > 2.0 {
        return Err(format!(
            "{name}: latents max diff {latent_diff}, image mean {mean}/255, max {max}/255"
        ));
    }
    Ok(())
}

/// Mean and max absolute difference of two 8-bit buffers.
pub fn image_diff(a: &[u8], b: &[u8]) -> (f64, f64) {
    let diffs: Vec<f64> = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y as f64).abs())
        .collect();
    let mean = diffs.iter().sum::<f64>() / diffs.len().max(1) as f64;
    let max = diffs.iter().cloned().fold(0.0, f64::max);
    (mean, max)
}

/// A hires fix with a latent upscaler as `make_latent_hires_fixtures.py` ran it: diffusers'
/// txt2img to latents, torch's `F.interpolate`, diffusers' img2img from those latents.
#[derive(Debug, Deserialize)]
pub struct LatentHiresCase {
    #[serde(flatten)]
    sampling: Sampling,
    pub name: String,
    pub model: String,
    /// A1111's name of the latent upscaler.
    pub upscaler: String,
    pub hires_steps: usize,
    pub strength: f64,
    pub hires_width: usize,
    pub hires_height: usize,
}

/// One resize of `latent_hires/resize.safetensors`.
#[derive(Debug, Deserialize)]
pub struct ResizeCase {
    pub upscaler: String,
    pub key: String,
    pub height: usize,
    pub width: usize,
}

#[derive(Debug, Deserialize)]
pub struct LatentHiresFixtures {
    pub cases: Vec<LatentHiresCase>,
    pub resize: Vec<ResizeCase>,
}

pub fn latent_hires_fixtures() -> LatentHiresFixtures {
    read_fixture_json("latent_hires.json")
}

impl LatentHiresCase {
    /// The first pass (txt2img at the base size).
    pub fn first_pass(&self) -> Result<GenerationRequest, String> {
        self.sampling.request()
    }
}
