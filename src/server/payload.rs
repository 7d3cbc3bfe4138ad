//! A1111's txt2img / img2img request fields (`StableDiffusionProcessingTxt2Img` /
//! `…Img2Img`), checked and turned into the engine's job.
//!
//! Fields left out take the loaded model's defaults for what depends on the model (steps,
//! guidance, size, sampler: an SDXL or Turbo model is not used at A1111's fixed 512², 20
//! steps, CFG 7) and A1111's defaults for the rest (denoising strength 0.75, mask blur 4,
//! "fill", "only masked"). Fields that would change the image in A1111 but are not
//! supported here are refused by name; fields that change nothing here (saving, sending)
//! and fields A1111 does not know are ignored, as A1111 ignores unknown fields.

use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::http::ApiError;
use super::models::ServedModels;
use super::options::{read_settings, Settings};
use crate::engine::{
    check_prompt, random_seed, read_picture_from_bytes, GenerateJob, GenerationRequest, GrayImage,
    ImageOutput, InitImage, InpaintArea, InpaintMask, MaskedContent, ModelInfo, PreviewMode,
    PromptSyntax, RgbImage, SchedulerKind, Variation, MAX_BATCH_SIZE, MAX_IMAGE_SIDE,
};

/// Images one request may ask for (`batch_size` × `n_iter`; A1111's UI stops at 8 × 100).
pub const MAX_IMAGES: usize = 100;
/// More steps than any scheduler's training schedule has.
const MAX_STEPS: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Txt2Img,
    Img2Img,
}

/// A request checked against everything but the model; what the model decides (steps,
/// guidance and size when left out) is filled in by [`PendingJob::into_job`].
#[derive(Debug)]
pub struct PendingJob {
    /// The served model the request names (`override_settings.sd_model_checkpoint`).
    pub model: Option<usize>,
    prompt: String,
    negative_prompt: Option<String>,
    seed: u64,
    variation: Option<Variation>,
    steps: Option<usize>,
    guidance: Option<f64>,
    width: Option<usize>,
    height: Option<usize>,
    scheduler: SchedulerKind,
    pub batch_size: usize,
    images: usize,
    clip_skip: usize,
    init: Option<InitImage>,
    hires: Option<super::hires::PendingHires>,
}

impl PendingJob {
    pub fn into_job(self, id: u64, info: &ModelInfo) -> Result<GenerateJob, ApiError> {
        // Sides left out take the init image's (rounded down to the VAE grid, as `generate`
        // does), or else the model's.
        let (default_width, default_height) = match &self.init {
            Some(init) => {
                let grid = info.vae_scale_factor;
                (
                    init.image.width / grid * grid,
                    init.image.height / grid * grid,
                )
            }
            None => (info.defaults.width, info.defaults.height),
        };
        let width = self.width.unwrap_or(default_width);
        let height = self.height.unwrap_or(default_height);
        if width == 0 || height == 0 {
            return Err(ApiError::invalid(
                "init_images: the picture is smaller than 8×8 pixels; give width and height",
            ));
        }
        let hires = self
            .hires
            .map(|hires| hires.fix(width, height))
            .transpose()?;
        Ok(GenerateJob {
            id,
            request: GenerationRequest {
                prompt: self.prompt,
                negative_prompt: self.negative_prompt,
                steps: self.steps.unwrap_or(info.defaults.steps),
                guidance: self.guidance.unwrap_or(info.defaults.guidance),
                seed: self.seed,
                width,
                height,
                scheduler: self.scheduler,
                init_image: self.init,
                prompt_syntax: PromptSyntax::A1111,
                clip_skip: self.clip_skip,
                controls: Vec::new(),
                variation: self.variation,
            },
            // A1111's `n_iter` runs of `batch_size` images denoised together.
            batch_count: self.images / self.batch_size.max(1),
            batch_size: self.batch_size,
            output: ImageOutput::None,
            preview: PreviewMode::Fast,
            loras: Vec::new(),
            controls: Vec::new(),
            hires,
        })
    }
}

/// The JSON object of a request body.
pub fn parse_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::bad_request("the body must be a JSON object")),
        Err(err) => Err(ApiError::bad_request(format!("invalid JSON: {err}"))),
    }
}

/// Fields of a JSON object read as typed values, with the field's name in every error.
pub struct Fields<'a>(pub &'a Map<String, Value>);

impl Fields<'_> {
    /// The field as `T`; `None` when it is absent or `null`. A whole number written as a
    /// float (`20.0`, as some clients send counts) reads as an integer, as A1111 (pydantic)
    /// reads it.
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, ApiError> {
        let value = match self.0.get(name) {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Number(n)) => match n.as_f64() {
                Some(x)
                    if !n.is_i64()
                        && !n.is_u64()
                        && x.fract() == 0.0
                        && x.abs() < 2f64.powi(53) =>
                {
                    Value::from(x as i64)
                }
                _ => Value::Number(n.clone()),
            },
            Some(value) => value.clone(),
        };
        serde_json::from_value(value)
            .map(Some)
            .map_err(|err| ApiError::invalid(format!("{name}: {err}")))
    }

    /// A yes/no field, as `true`/`false` or `1`/`0` (A1111's clients send both).
    pub fn flag(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(value)) => Ok(Some(*value)),
            Some(Value::Number(n)) if n.as_u64() == Some(0) => Ok(Some(false)),
            Some(Value::Number(n)) if n.as_u64() == Some(1) => Ok(Some(true)),
            Some(other) => Err(ApiError::invalid(format!(
                "{name}: expected true/false or 1/0, got {other}"
            ))),
        }
    }
}

/// The value at which a field leaves A1111's image as this engine makes it.
#[derive(Debug, Clone, Copy)]
enum Neutral {
    False,
    True,
    Zero,
    One,
    /// Zero or less (A1111 uses -1 and 0 for "off").
    NotPositive,
    /// An empty string, list or object, or the text "None".
    Empty,
}

impl Neutral {
    fn accepts(self, value: &Value) -> bool {
        let number = value.as_f64();
        match (self, value) {
            (_, Value::Null) => true,
            (Neutral::False, Value::Bool(b)) => !b,
            (Neutral::True, Value::Bool(b)) => *b,
            (Neutral::False | Neutral::Zero, Value::Number(_)) => number == Some(0.0),
            (Neutral::True | Neutral::One, Value::Number(_)) => number == Some(1.0),
            (Neutral::NotPositive, Value::Number(_)) => number.is_some_and(|n| n <= 0.0),
            (Neutral::Empty, Value::String(s)) => s.is_empty() || s.eq_ignore_ascii_case("none"),
            (Neutral::Empty, Value::Array(items)) => items.is_empty(),
            (Neutral::Empty, Value::Object(fields)) => fields.is_empty(),
            _ => false,
        }
    }
}

/// Fields that change A1111's image and are not supported here: accepted only at their
/// neutral value.
const IMAGE_CHANGING: [(&str, Neutral, &str); 17] = [
    (
        "firstpass_image",
        Neutral::Empty,
        "a hires fix from a given first pass",
    ),
    ("restore_faces", Neutral::False, "face restoration"),
    ("tiling", Neutral::False, "tiling"),
    (
        "seed_resize_from_w",
        Neutral::NotPositive,
        "resizing the seed",
    ),
    (
        "seed_resize_from_h",
        Neutral::NotPositive,
        "resizing the seed",
    ),
    (
        "styles",
        Neutral::Empty,
        "styles (send their text in the prompt)",
    ),
    ("script_name", Neutral::Empty, "scripts"),
    ("script_args", Neutral::Empty, "scripts"),
    (
        "alwayson_scripts",
        Neutral::Empty,
        "extensions (alwayson_scripts)",
    ),
    ("refiner_checkpoint", Neutral::Empty, "the refiner"),
    ("s_churn", Neutral::Zero, "sampler noise settings"),
    ("s_tmin", Neutral::Zero, "sampler noise settings"),
    ("s_tmax", Neutral::Zero, "sampler noise settings"),
    ("s_noise", Neutral::One, "sampler noise settings"),
    (
        "s_min_uncond",
        Neutral::Zero,
        "skipping the negative prompt at low noise",
    ),
    (
        "disable_extra_networks",
        Neutral::False,
        "turning off <lora:…> tags",
    ),
    (
        "infotext",
        Neutral::Empty,
        "infotext (send the fields it holds)",
    ),
];

/// As [`IMAGE_CHANGING`], for img2img's own fields.
const IMAGE_CHANGING_IMG2IMG: [(&str, Neutral, &str); 5] = [
    (
        "enable_hr",
        Neutral::False,
        "the hires fix (a txt2img setting)",
    ),
    (
        "resize_mode",
        Neutral::Zero,
        "resize modes other than 0 (just resize)",
    ),
    (
        "initial_noise_multiplier",
        Neutral::One,
        "a noise multiplier",
    ),
    ("latent_mask", Neutral::Empty, "a separate latent mask"),
    ("mask_round", Neutral::True, "unrounded masks"),
];

fn unsupported_fields(body: &Map<String, Value>, mode: Mode) -> Vec<(String, String)> {
    let own: &[(&str, Neutral, &str)] = match mode {
        Mode::Txt2Img => &[],
        Mode::Img2Img => &IMAGE_CHANGING_IMG2IMG,
    };
    IMAGE_CHANGING
        .iter()
        .chain(own)
        .filter(|(name, neutral, _)| body.get(*name).is_some_and(|v| !neutral.accepts(v)))
        .map(|(name, _, what)| (name.to_string(), format!("{what} is not supported")))
        .collect()
}

/// Checks a txt2img or img2img body and turns it into a job.
pub fn parse_generation(
    body: &Map<String, Value>,
    mode: Mode,
    models: &ServedModels,
    upscalers: Option<&std::path::Path>,
) -> Result<PendingJob, ApiError> {
    let fields = Fields(body);
    let scheduler = sampler(&fields)?;
    let mut unsupported = unsupported_fields(body, mode);
    if let Some(problem) = eta_problem(&fields, scheduler)? {
        unsupported.push(("eta".into(), problem));
    }
    if !unsupported.is_empty() {
        return Err(ApiError::unsupported(unsupported));
    }
    let prompt: String = fields.get("prompt")?.unwrap_or_default();
    let negative_prompt: Option<String> = fields.get("negative_prompt")?;
    for (name, text) in [
        ("prompt", Some(&prompt)),
        ("negative_prompt", negative_prompt.as_ref()),
    ] {
        if let Some(text) = text {
            check_prompt(text, PromptSyntax::A1111)
                .map_err(|err| ApiError::invalid(format!("{name}: {err}")))?;
        }
    }
    let seed = seed_field(&fields, "seed")?;
    let variation = match fields.get::<f64>("subseed_strength")? {
        None => None,
        Some(0.0) => None,
        Some(strength) if (0.0..=1.0).contains(&strength) => Some(Variation {
            seed: seed_field(&fields, "subseed")?,
            strength,
        }),
        Some(strength) => {
            return Err(ApiError::invalid(format!(
                "subseed_strength {strength}: must be between 0 and 1"
            )))
        }
    };
    let steps: Option<usize> = fields.get("steps")?;
    if let Some(steps) = steps.filter(|s| !(1..=MAX_STEPS).contains(s)) {
        return Err(ApiError::invalid(format!(
            "steps {steps}: from 1 to {MAX_STEPS}"
        )));
    }
    let guidance: Option<f64> = fields.get("cfg_scale")?;
    if let Some(guidance) = guidance.filter(|g| !(g.is_finite() && *g >= 0.0)) {
        return Err(ApiError::invalid(format!(
            "cfg_scale {guidance}: must be a number ≥ 0 (1 or less turns guidance off)"
        )));
    }
    let width = side(&fields, "width")?;
    let height = side(&fields, "height")?;
    let batch_size = count(&fields, "batch_size")?;
    if batch_size > MAX_BATCH_SIZE {
        return Err(ApiError::invalid(format!(
            "batch_size {batch_size}: at most {MAX_BATCH_SIZE} images are denoised together; use n_iter for more"
        )));
    }
    let n_iter = count(&fields, "n_iter")?;
    let images = batch_size.saturating_mul(n_iter);
    if images > MAX_IMAGES {
        return Err(ApiError::invalid(format!(
            "batch_size × n_iter is {images}; at most {MAX_IMAGES} images a request"
        )));
    }
    let settings = match body.get("override_settings") {
        None | Some(Value::Null) => Settings::default(),
        Some(Value::Object(settings)) => read_settings(settings, models)?,
        Some(_) => {
            return Err(ApiError::invalid(
                "override_settings: expected an object of option names and values",
            ))
        }
    };
    let (init, hires) = match mode {
        Mode::Txt2Img => (None, super::hires::parse_hires(&fields, upscalers)?),
        Mode::Img2Img => (Some(init_image(&fields)?), None),
    };
    Ok(PendingJob {
        model: settings.model,
        prompt,
        negative_prompt: negative_prompt.filter(|text| !text.is_empty()),
        seed,
        variation,
        steps,
        guidance,
        width,
        height,
        scheduler,
        batch_size,
        images,
        clip_skip: settings.clip_skip.unwrap_or(1),
        init,
        hires,
    })
}

/// A seed as A1111 takes it: -1 (or none) for a random one.
fn seed_field(fields: &Fields, name: &str) -> Result<u64, ApiError> {
    match fields.get::<i64>(name)? {
        None | Some(-1) => Ok(random_seed()),
        Some(seed) if seed >= 0 => Ok(seed as u64),
        Some(seed) => Err(ApiError::invalid(format!(
            "{name} {seed}: give -1 for a random seed, or a seed ≥ 0"
        ))),
    }
}

fn side(fields: &Fields, name: &str) -> Result<Option<usize>, ApiError> {
    let value: Option<usize> = fields.get(name)?;
    match value {
        Some(v) if v == 0 || v % 8 != 0 => Err(ApiError::invalid(format!(
            "{name} {v}: must be a positive multiple of 8"
        ))),
        Some(v) if v > MAX_IMAGE_SIDE => Err(ApiError::invalid(format!(
            "{name} {v}: at most {MAX_IMAGE_SIDE}"
        ))),
        _ => Ok(value),
    }
}

fn count(fields: &Fields, name: &str) -> Result<usize, ApiError> {
    match fields.get::<usize>(name)? {
        None => Ok(1),
        Some(0) => Err(ApiError::invalid(format!("{name} must be at least 1"))),
        Some(n) => Ok(n),
    }
}

/// The schedule type A1111 ≥ 1.9 gives a sampler when the request leaves it "Automatic"
/// (the others' automatic schedule is their plain one).
const AUTOMATIC_SCHEDULES: [(&str, &str); 2] =
    [("DPM++ 2M", "Karras"), ("DPM++ 2M SDE", "Exponential")];

/// Schedule types older clients write into the sampler's name (`"DPM++ 2M Karras"`).
const NAMED_SCHEDULES: [&str; 4] = ["Karras", "Exponential", "Beta", "Align Your Steps"];

/// `sampler_name` (or the older `sampler_index`) and `scheduler`, as A1111 reads them: the
/// model's own scheduler when neither is given, a schedule type written into the name as
/// before A1111 1.9 (`"DPM++ 2M Karras"`), or given apart (`"scheduler": "Karras"`).
fn sampler(fields: &Fields) -> Result<SchedulerKind, ApiError> {
    let name: Option<String> = match fields.get("sampler_name")? {
        Some(name) => Some(name),
        None => fields.get("sampler_index")?,
    };
    let schedule: Option<String> = fields.get("scheduler")?;
    let Some(name) = name.filter(|n| !n.trim().is_empty()) else {
        if schedule.as_deref().is_some_and(|s| !is_automatic(s)) {
            return Err(ApiError::invalid(
                "scheduler: give sampler_name too (the model's own sampler has its own schedule)",
            ));
        }
        return Ok(SchedulerKind::Default);
    };
    let name = name.trim();
    let (sampler, schedule) = match schedule.as_deref().filter(|s| !is_automatic(s)) {
        Some(schedule) => (name, Some(schedule.trim())),
        None => match NAMED_SCHEDULES
            .iter()
            .find_map(|schedule| Some((name.strip_suffix(schedule)?.strip_suffix(' ')?, *schedule)))
        {
            Some((sampler, schedule)) => (sampler, Some(schedule)),
            None => {
                let automatic = AUTOMATIC_SCHEDULES
                    .iter()
                    .find(|(sampler, _)| sampler.eq_ignore_ascii_case(name))
                    .map(|(_, schedule)| *schedule);
                (name, automatic)
            }
        },
    };
    SchedulerKind::from_a1111(sampler, schedule).ok_or_else(|| {
        let with = schedule
            .map(|s| format!(" with schedule type {s:?}"))
            .unwrap_or_default();
        ApiError::invalid(format!(
            "sampler_name {sampler:?}{with}: not a sampler this server has (GET /sdapi/v1/samplers)"
        ))
    })
}

fn is_automatic(schedule: &str) -> bool {
    schedule.trim().is_empty() || schedule.trim().eq_ignore_ascii_case("automatic")
}

/// `eta` changes only DDIM (A1111's default 0) and the ancestral and SDE samplers (default
/// 1); a value other than those defaults is refused there and ignored elsewhere.
fn eta_problem(fields: &Fields, scheduler: SchedulerKind) -> Result<Option<String>, ApiError> {
    let Some(eta) = fields.get::<f64>("eta")? else {
        return Ok(None);
    };
    let neutral = match scheduler {
        SchedulerKind::Ddim => Some(0.0),
        SchedulerKind::EulerAncestral
        | SchedulerKind::Dpm2Ancestral
        | SchedulerKind::DpmPp2mSde
        | SchedulerKind::DpmPp2mSdeKarras
        | SchedulerKind::DpmPp2mSdeBeta
        | SchedulerKind::DpmPp2mSdeAys => Some(1.0),
        SchedulerKind::Default => {
            return Ok(Some(
                "give sampler_name with eta (what eta does depends on the sampler)".into(),
            ))
        }
        _ => None,
    };
    Ok(neutral
        .filter(|&n| n != eta)
        .map(|n| format!("only {n} (A1111's default for this sampler) is supported")))
}

/// The bytes of a base64 picture, with or without a `data:image/…;base64,` prefix.
pub fn decode_base64(field: &str, text: &str) -> Result<Vec<u8>, ApiError> {
    let data = match text.split_once(";base64,") {
        Some((prefix, data)) if prefix.starts_with("data:") => data,
        _ => text,
    };
    let data: String = data.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let lenient = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    lenient
        .decode(data)
        .map_err(|err| ApiError::invalid(format!("{field}: not base64: {err}")))
}

fn picture(field: &str, text: &str) -> Result<image::DynamicImage, ApiError> {
    let bytes = decode_base64(field, text)?;
    read_picture_from_bytes(&bytes, field).map_err(ApiError::invalid)
}

/// img2img's picture, strength and (when inpainting) mask, with A1111's defaults.
fn init_image(fields: &Fields) -> Result<InitImage, ApiError> {
    let pictures: Vec<String> = fields.get("init_images")?.unwrap_or_default();
    let encoded =
        match pictures.as_slice() {
            [one] => one,
            [] => {
                return Err(ApiError::invalid(
                    "init_images: give the picture to start from",
                ))
            }
            _ => return Err(ApiError::invalid(
                "init_images: give one picture (several, one per batch image, are not supported)",
            )),
        };
    let image = RgbImage::from(picture("init_images[0]", encoded)?.to_rgb8());
    let strength: f64 = fields.get("denoising_strength")?.unwrap_or(0.75);
    if !(strength > 0.0 && strength <= 1.0) {
        return Err(ApiError::invalid(format!(
            "denoising_strength {strength}: must be greater than 0 and at most 1"
        )));
    }
    let mask = match fields.get::<String>("mask")? {
        Some(encoded) => Some(inpaint_mask(fields, &encoded)?),
        None => None,
    };
    Ok(InitImage {
        image,
        strength,
        mask,
    })
}

fn inpaint_mask(fields: &Fields, encoded: &str) -> Result<InpaintMask, ApiError> {
    let mut mask = GrayImage::mask_from_picture(&picture("mask", encoded)?);
    if fields.flag("inpainting_mask_invert")? == Some(true) {
        mask = mask.inverted();
    }
    if mask.is_empty() {
        return Err(ApiError::invalid(
            "mask: nothing to repaint (all black or transparent); paint the area in white",
        ));
    }
    let blur_x: Option<usize> = fields.get("mask_blur_x")?;
    let blur_y: Option<usize> = fields.get("mask_blur_y")?;
    // A1111 copies `mask_blur`, when given, to both directions.
    let blur = match (fields.get::<usize>("mask_blur")?, blur_x, blur_y) {
        (Some(blur), ..) => blur,
        (None, Some(x), Some(y)) if x != y => {
            return Err(ApiError::unsupported(vec![(
                "mask_blur_x".into(),
                "a blur that differs across and down is not supported".into(),
            )]))
        }
        (None, x, y) => x.or(y).unwrap_or(4),
    };
    let content = match fields.get::<u8>("inpainting_fill")?.unwrap_or(0) {
        0 => MaskedContent::Fill,
        1 => MaskedContent::Original,
        2 => MaskedContent::LatentNoise,
        3 => MaskedContent::LatentNothing,
        other => {
            return Err(ApiError::invalid(format!(
                "inpainting_fill {other}: 0 (fill), 1 (original), 2 (latent noise) or 3 (latent nothing)"
            )))
        }
    };
    let area = if fields.flag("inpaint_full_res")?.unwrap_or(true) {
        InpaintArea::Masked {
            padding: fields.get("inpaint_full_res_padding")?.unwrap_or(0),
        }
    } else {
        InpaintArea::Whole
    };
    Ok(InpaintMask {
        mask,
        blur,
        area,
        content,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn samplers_read_as_a1111_names_them() {
        let kind = |value: Value| sampler(&Fields(&fields(value)));
        assert_eq!(kind(json!({})).unwrap(), SchedulerKind::Default);
        assert_eq!(
            kind(json!({"sampler_name": "Euler a"})).unwrap(),
            SchedulerKind::EulerAncestral
        );
        assert_eq!(
            kind(json!({"sampler_index": "DDIM"})).unwrap(),
            SchedulerKind::Ddim
        );
        for karras in [
            json!({"sampler_name": "DPM++ 2M Karras"}),
            json!({"sampler_name": "DPM++ 2M", "scheduler": "Karras"}),
            json!({"sampler_name": "DPM++ 2M", "scheduler": "Automatic"}),
            json!({"sampler_name": "DPM++ 2M"}),
        ] {
            assert_eq!(kind(karras).unwrap(), SchedulerKind::DpmPp2mKarras);
        }
        assert_eq!(
            kind(json!({"sampler_name": "DPM++ 2M", "scheduler": "uniform"})).unwrap(),
            SchedulerKind::DpmPp2m
        );
        assert_eq!(
            kind(json!({"sampler_name": "LMS Karras"})).unwrap(),
            SchedulerKind::LmsKarras
        );
        assert_eq!(
            kind(json!({"sampler_name": "Euler", "scheduler": "Beta"})).unwrap(),
            SchedulerKind::EulerBeta
        );
        assert_eq!(
            kind(json!({"sampler_name": "DPM++ 2M SDE Karras"})).unwrap(),
            SchedulerKind::DpmPp2mSdeKarras
        );
        assert_eq!(
            kind(json!({"sampler_name": "DPM++ 2M SDE", "scheduler": "Uniform"})).unwrap(),
            SchedulerKind::DpmPp2mSde
        );
        // A1111's automatic schedule for it is Exponential, which this engine lacks.
        let err = kind(json!({"sampler_name": "DPM++ 2M SDE"})).unwrap_err();
        assert!(err.detail.contains("Exponential"), "{err}");
        assert!(kind(json!({"sampler_name": "DPM++ SDE"})).is_err());
        assert!(kind(json!({"sampler_name": "Euler", "scheduler": "SGM Uniform"})).is_err());
        assert!(kind(json!({"scheduler": "Karras"})).is_err());
    }

    #[test]
    fn image_changing_fields_are_named_and_neutral_values_pass() {
        let body = fields(json!({
            "enable_hr": true, "restore_faces": false, "tiling": 0, "styles": [],
            "script_name": "None", "alwayson_scripts": {"ADetailer": {}},
            "seed_resize_from_w": -1, "s_noise": 1.0,
            "save_images": true, "resize_mode": 1
        }));
        let names: Vec<String> = unsupported_fields(&body, Mode::Txt2Img)
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        // The hires fix is txt2img's (src/server/hires.rs reads it).
        assert_eq!(names, ["alwayson_scripts"]);
        let img2img: Vec<String> = unsupported_fields(&body, Mode::Img2Img)
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        assert_eq!(img2img, ["alwayson_scripts", "enable_hr", "resize_mode"]);
    }

    #[test]
    fn eta_matters_only_where_a1111_uses_it() {
        let problem = |eta: f64, kind| eta_problem(&Fields(&fields(json!({"eta": eta}))), kind);
        assert_eq!(problem(1.0, SchedulerKind::EulerAncestral).unwrap(), None);
        assert!(problem(0.5, SchedulerKind::EulerAncestral)
            .unwrap()
            .is_some());
        assert!(problem(1.0, SchedulerKind::Ddim).unwrap().is_some());
        assert_eq!(problem(0.3, SchedulerKind::Euler).unwrap(), None);
    }

    #[test]
    fn whole_floats_read_as_counts() {
        let body = fields(json!({"steps": 20.0, "cfg_scale": 7, "width": 64.5}));
        let fields = Fields(&body);
        assert_eq!(fields.get::<usize>("steps").unwrap(), Some(20));
        assert_eq!(fields.get::<f64>("cfg_scale").unwrap(), Some(7.0));
        let err = fields.get::<usize>("width").unwrap_err();
        assert!(err.detail.starts_with("width: "), "{err}");
        assert_eq!(fields.get::<usize>("height").unwrap(), None);
    }

    #[test]
    fn base64_is_read_leniently() {
        let png = decode_base64("x", "data:image/png;base64,iVBO\nRw0K").unwrap();
        assert_eq!(png, b"\x89PNG\r\n");
        assert_eq!(decode_base64("x", "aGk").unwrap(), b"hi");
        let err = decode_base64("init_images[0]", "not base64!").unwrap_err();
        assert!(
            err.detail.starts_with("init_images[0]: not base64"),
            "{err}"
        );
    }
}
