//! What the generation endpoints and `png-info` answer, in A1111's shapes.

use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::http::ApiError;
use super::queue::Generated;
use crate::engine::{encode_png_with_parameters, GenerationParameters, RgbImage};

/// A PNG in base64, as A1111 sends pictures; with the `parameters` chunk when given.
pub fn png_base64(image: &RgbImage, parameters: Option<&str>) -> Result<String, ApiError> {
    let png = encode_png_with_parameters(
        &image.pixels,
        image.width as u32,
        image.height as u32,
        parameters,
    )
    .map_err(|err| ApiError::internal(format!("cannot encode PNG: {err}")))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(png))
}

/// `{images, parameters, info}` for txt2img / img2img. `parameters` echoes the request
/// without its pictures (as A1111 does); `info` is a JSON text (A1111's
/// `Processed.js()`), with the images' `parameters` texts as `infotexts`.
pub fn generation_reply(
    request: &Map<String, Value>,
    generated: &Generated,
    batch_size: usize,
) -> Result<Value, ApiError> {
    let images = generated
        .images
        .iter()
        .map(|image| png_base64(&image.image, Some(&image.parameters)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut echo = request.clone();
    for picture_field in ["init_images", "mask"] {
        if echo.contains_key(picture_field) {
            echo.insert(picture_field.to_string(), Value::Null);
        }
    }
    let info = info(generated, batch_size);
    Ok(json!({
        "images": images,
        "parameters": echo,
        "info": info.to_string(),
    }))
}

fn info(generated: &Generated, batch_size: usize) -> Value {
    let request = &generated.job.request;
    let count = generated.job.batch_count * generated.job.batch_size.max(1);
    let seeds: Vec<u64> = (0..count as u64)
        .map(|i| request.seed.wrapping_add(i))
        .collect();
    // Without a variation, A1111 still reports a (random, unused) subseed; the seed
    // stands in for it here.
    let (subseed, subseed_strength) = match request.variation {
        Some(variation) => (variation.seed, variation.strength),
        None => (request.seed, 0.0),
    };
    let subseeds: Vec<u64> = (0..count as u64).map(|i| subseed.wrapping_add(i)).collect();
    let negative = request.negative_prompt.clone().unwrap_or_default();
    let infotexts: Vec<&str> = generated
        .images
        .iter()
        .map(|image| image.parameters.as_str())
        .collect();
    // Sampler, model and hash as the PNGs name them.
    let recorded = infotexts
        .first()
        .and_then(|text| GenerationParameters::parse_a1111(text).ok());
    let sampler = recorded.as_ref().map(|p| match &p.schedule_type {
        Some(schedule) => format!("{} {schedule}", p.sampler),
        None => p.sampler.clone(),
    });
    let model_name = recorded
        .as_ref()
        .and_then(|p| p.model.clone())
        .unwrap_or_else(|| generated.model_title.clone());
    let model_hash = recorded.as_ref().and_then(|p| p.model_hash.clone());
    let init = request.init_image.as_ref();
    json!({
        "prompt": request.prompt,
        "all_prompts": vec![&request.prompt; count],
        "negative_prompt": negative,
        "all_negative_prompts": vec![&negative; count],
        "seed": request.seed,
        "all_seeds": seeds,
        "subseed": subseed,
        "all_subseeds": subseeds,
        "subseed_strength": subseed_strength,
        "width": request.width,
        "height": request.height,
        "sampler_name": sampler,
        "cfg_scale": request.guidance,
        "steps": request.steps,
        "batch_size": batch_size,
        "restore_faces": false,
        "face_restoration_model": null,
        "sd_model_name": model_name,
        "sd_model_hash": model_hash,
        "sd_vae_name": null,
        "sd_vae_hash": null,
        "seed_resize_from_w": -1,
        "seed_resize_from_h": -1,
        "denoising_strength": init.map(|i| i.strength),
        "extra_generation_params": {},
        "index_of_first_image": 0,
        "infotexts": infotexts,
        "styles": [],
        "job_timestamp": generated.timestamp,
        "clip_skip": request.clip_skip,
        "is_using_inpainting_conditioning": init.is_some_and(|i| i.mask.is_some()),
        "version": crate::VERSION,
    })
}

/// A1111's `parse_generation_parameters` dictionary of a `parameters` text: every value a
/// string, the size split into `Size-1` and `Size-2`; empty when the text has no parameter
/// line.
pub fn parameters_dictionary(text: &str) -> Value {
    let Ok(parameters) = GenerationParameters::parse_a1111(text) else {
        return json!({});
    };
    let mut dictionary = Map::new();
    let mut put = |key: &str, value: String| {
        dictionary.insert(key.to_string(), Value::String(value));
    };
    put("Prompt", parameters.prompt.clone());
    put("Negative prompt", parameters.negative_prompt.clone());
    put("Steps", parameters.steps.to_string());
    put("Sampler", parameters.sampler.clone());
    if let Some(schedule) = &parameters.schedule_type {
        put("Schedule type", schedule.clone());
    }
    put("CFG scale", parameters.cfg_scale.to_string());
    put("Seed", parameters.seed.to_string());
    put("Size-1", parameters.width.to_string());
    put("Size-2", parameters.height.to_string());
    if let Some(hash) = &parameters.model_hash {
        put("Model hash", hash.clone());
    }
    if let Some(model) = &parameters.model {
        put("Model", model.clone());
    }
    if let Some(strength) = parameters.denoising_strength {
        put("Denoising strength", strength.to_string());
    }
    if let Some(version) = &parameters.version {
        put("Version", version.clone());
    }
    for (key, value) in &parameters.extra {
        put(key, value.clone());
    }
    Value::Object(dictionary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_read_into_a1111_dictionary() {
        let text = "a cat\nNegative prompt: dog\nSteps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 42, Size: 512x768, Model: sd1, Clip skip: 2";
        let dictionary = parameters_dictionary(text);
        assert_eq!(dictionary["Prompt"], "a cat");
        assert_eq!(dictionary["Negative prompt"], "dog");
        assert_eq!(dictionary["Steps"], "20");
        assert_eq!(dictionary["Schedule type"], "Karras");
        assert_eq!(dictionary["Size-1"], "512");
        assert_eq!(dictionary["Size-2"], "768");
        assert_eq!(dictionary["Clip skip"], "2");
        assert_eq!(parameters_dictionary("just a prompt"), json!({}));
    }
}
