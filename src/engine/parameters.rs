//! The A1111 `parameters` record of a generation.

use crate::formats::parameters::GenerationParameters;
use crate::models::hashes::HashCache;
use crate::models::StableDiffusion;
use crate::sampling::inpaint::{InpaintArea, InpaintMask, MaskedContent};
use crate::sampling::pipeline::{ControlUnit, GenerationRequest};
use crate::sampling::schedulers::SchedulerConfigError;
use crate::text::prompt::{extract_lora_tags, PromptSyntax};

/// The files behind a generation as A1111 records them: short SHA-256 hashes of the
/// checkpoint and of each LoRA, and the VAE file's name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileRecord {
    pub model_hash: Option<String>,
    /// `(name, 12-digit hash)` per LoRA merged into the model.
    pub loras: Vec<(String, String)>,
    pub vae: Option<String>,
}

impl FileRecord {
    /// Hashes `model`'s checkpoint file (single-file models only, as A1111 hashes its
    /// checkpoints) and its LoRAs; unreadable files are left out.
    pub fn of(model: &StableDiffusion, vae: Option<&std::path::Path>, hashes: &HashCache) -> Self {
        let model_hash = model
            .info()
            .file
            .as_deref()
            .and_then(|file| hashes.model_hash(file).ok());
        let loras = model
            .loras()
            .iter()
            .filter_map(|active| {
                let hash = hashes.lora_hash(&active.lora.path).ok()?;
                Some((active.lora.name.clone(), hash))
            })
            .collect();
        Self {
            model_hash,
            loras,
            vae: vae
                .and_then(|v| v.file_name())
                .map(|n| n.to_string_lossy().into_owned()),
        }
    }
}

/// What A1111, civitai and Latent Studio read back from a PNG made with `request`.
/// LoRAs merged into the model without a `<lora:…>` tag in the prompt get one appended, so
/// the record brings them back.
pub fn a1111_parameters(
    model: &StableDiffusion,
    request: &GenerationRequest,
    files: &FileRecord,
) -> Result<GenerationParameters, SchedulerConfigError> {
    let label = request
        .scheduler
        .a1111_label(model.pipeline().scheduler_config())?;
    let mut prompt = request.prompt.clone();
    if request.prompt_syntax == PromptSyntax::A1111 {
        let tagged: Vec<String> = extract_lora_tags(&request.prompt)
            .map(|(_, tags)| tags.into_iter().map(|t| t.name).collect())
            .unwrap_or_default();
        for active in model.loras() {
            if !tagged.contains(&active.lora.name) {
                prompt.push_str(&format!(
                    " <lora:{}:{}>",
                    active.lora.name,
                    trim_number(active.multiplier)
                ));
            }
        }
    }
    let mut extra = Vec::new();
    if let Some(vae) = &files.vae {
        extra.push(("VAE".to_string(), vae.clone()));
    }
    if let Some(mask) = request
        .init_image
        .as_ref()
        .and_then(|init| init.mask.as_ref())
    {
        extra.extend(inpaint_parameters(mask));
    }
    if let Some(variation) = request.variation.filter(|v| v.strength != 0.0) {
        extra.push(("Variation seed".to_string(), variation.seed.to_string()));
        extra.push((
            "Variation seed strength".to_string(),
            trim_number(variation.strength),
        ));
    }
    for (n, unit) in request.controls.iter().enumerate() {
        extra.push((format!("ControlNet {n}"), control_record(unit)));
    }
    if request.clip_skip > 1 {
        extra.push(("Clip skip".to_string(), request.clip_skip.to_string()));
    }
    if !files.loras.is_empty() {
        let list: Vec<String> = files
            .loras
            .iter()
            .map(|(name, hash)| format!("{name}: {hash}"))
            .collect();
        extra.push(("Lora hashes".to_string(), list.join(", ")));
    }
    if request.prompt_syntax == PromptSyntax::Plain {
        extra.push(("Prompt syntax".to_string(), "plain".to_string()));
    }
    Ok(GenerationParameters {
        prompt,
        negative_prompt: request.negative_prompt.clone().unwrap_or_default(),
        steps: request.steps,
        sampler: label.sampler.to_string(),
        schedule_type: label.schedule_type.map(str::to_string),
        cfg_scale: request.guidance,
        seed: request.seed,
        width: request.width,
        height: request.height,
        model: Some(model.info().name.clone()),
        model_hash: files.model_hash.clone(),
        denoising_strength: request.init_image.as_ref().map(|init| init.strength),
        version: Some(format!("latent-studio {}", crate::VERSION)),
        extra,
    })
}

/// A1111's inpainting keys (its infotext writes "Mask blur" for every masked run, and the
/// area and padding for "Only masked"); "Masked content" when it is not the original.
fn inpaint_parameters(mask: &InpaintMask) -> Vec<(String, String)> {
    let mut keys = vec![("Mask blur".to_string(), mask.blur.to_string())];
    if let InpaintArea::Masked { padding } = mask.area {
        keys.push(("Inpaint area".to_string(), "Only masked".to_string()));
        keys.push(("Masked area padding".to_string(), padding.to_string()));
    }
    if mask.content != MaskedContent::Original {
        keys.push((
            "Masked content".to_string(),
            mask.content.a1111_label().to_string(),
        ));
    }
    keys
}

/// A ControlNet unit as sd-webui-controlnet records it (one quoted value per unit).
/// The preprocessor's settings go in as A1111's `Threshold A` / `Threshold B`, where A1111
/// writes them (after `Resize Mode`), so that A1111 and this app restore them.
fn control_record(unit: &ControlUnit) -> String {
    let mode = unit.mode.a1111_label();
    let thresholds: String = unit
        .preprocessor_thresholds
        .iter()
        .zip(['A', 'B'])
        .map(|(value, letter)| format!(", Threshold {letter}: {}", trim_number(*value)))
        .collect();
    format!(
        "Module: {}, Model: {}, Weight: {}, Resize Mode: Just Resize{thresholds}, Guidance Start: {}, Guidance End: {}, Control Mode: {mode}",
        unit.preprocessor,
        unit.model_name,
        trim_number(unit.scale),
        trim_number(unit.start),
        trim_number(unit.end)
    )
}

/// `0.8` rather than `0.8000000000000002`, `1` rather than `1.0`.
fn trim_number(value: f64) -> String {
    let text = format!("{:.4}", value);
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}
