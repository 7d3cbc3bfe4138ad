//! A window's job as A1111's txt2img / img2img request, and the pictures of the answers.

use base64::Engine as _;
use serde_json::{json, Map, Value};

use crate::engine::{
    encode_png_with_parameters, png_parameters_from_bytes, read_picture_from_bytes, GenerateJob,
    GenerationRequest, HiresFix, InpaintArea, MaskedContent, PreviewMode, PromptSyntax, RgbImage,
};

/// A1111's hires-fix fields for `hires` after the first pass `base`. An upscaler file goes by
/// its file stem, which the server looks for in its own upscaler folder.
fn put_hires(body: &mut Map<String, Value>, hires: &HiresFix, base: &GenerationRequest) {
    let mut put = |key: &str, value: Value| {
        body.insert(key.to_string(), value);
    };
    put("enable_hr", json!(true));
    put("hr_scale", json!(hires.scale));
    put("hr_second_pass_steps", json!(hires.steps.unwrap_or(0)));
    put("denoising_strength", json!(hires.denoise));
    put("hr_upscaler", json!(hires.upscaler.a1111_name()));
    let own = &hires.own;
    put("hr_prompt", json!(own.prompt.clone().unwrap_or_default()));
    put(
        "hr_negative_prompt",
        json!(own.negative_prompt.clone().unwrap_or_default()),
    );
    let sampler = own
        .scheduler
        .filter(|s| *s != base.scheduler)
        .and_then(|s| s.a1111_request_names());
    if let Some((sampler, schedule)) = sampler {
        put("hr_sampler_name", json!(sampler));
        put("hr_scheduler", json!(schedule.unwrap_or("Uniform")));
    }
}

/// The endpoint and body for `job`, made with model `title`; or what the API cannot carry.
pub fn generation_request(job: &GenerateJob, title: &str) -> Result<(&'static str, Value), String> {
    unsupported(job)?;
    let request = &job.request;
    let mut body = Map::new();
    let mut put = |key: &str, value: Value| {
        body.insert(key.to_string(), value);
    };
    put("prompt", json!(request.prompt));
    put(
        "negative_prompt",
        json!(request.negative_prompt.clone().unwrap_or_default()),
    );
    put("seed", json!(request.seed));
    put("steps", json!(request.steps));
    put("cfg_scale", json!(request.guidance));
    put("width", json!(request.width));
    put("height", json!(request.height));
    put("batch_size", json!(job.batch_size.max(1)));
    put("n_iter", json!(job.batch_count));
    // The sampler's schedule is always given: A1111 gives some samplers ("DPM++ 2M") a
    // schedule of its own choosing when the request leaves it out.
    if let Some((sampler, schedule)) = request.scheduler.a1111_request_names() {
        put("sampler_name", json!(sampler));
        put("scheduler", json!(schedule.unwrap_or("Uniform")));
    }
    if let Some(variation) = request.variation {
        put("subseed", json!(variation.seed));
        put("subseed_strength", json!(variation.strength));
    }
    // The model and clip skip go with every request, so that any server behind a load
    // balancer makes the same image.
    put(
        "override_settings",
        json!({
            "sd_model_checkpoint": title,
            "CLIP_stop_at_last_layers": request.clip_skip,
        }),
    );
    put("save_images", json!(false));
    put("send_images", json!(true));
    let Some(init) = &request.init_image else {
        if let Some(hires) = &job.hires {
            put_hires(&mut body, hires, request);
        }
        return Ok(("/sdapi/v1/txt2img", Value::Object(body)));
    };
    put("init_images", json!([png_base64(&init.image)?]));
    put("denoising_strength", json!(init.strength));
    if let Some(mask) = &init.mask {
        let gray = RgbImage {
            width: mask.mask.width,
            height: mask.mask.height,
            pixels: mask.mask.pixels.iter().flat_map(|&v| [v, v, v]).collect(),
        };
        put("mask", json!(png_base64(&gray)?));
        put("mask_blur", json!(mask.blur));
        let fill = match mask.content {
            MaskedContent::Fill => 0,
            MaskedContent::Original => 1,
            MaskedContent::LatentNoise => 2,
            MaskedContent::LatentNothing => 3,
        };
        put("inpainting_fill", json!(fill));
        match mask.area {
            InpaintArea::Whole => put("inpaint_full_res", json!(false)),
            InpaintArea::Masked { padding } => {
                put("inpaint_full_res", json!(true));
                put("inpaint_full_res_padding", json!(padding));
            }
        }
    }
    Ok(("/sdapi/v1/img2img", Value::Object(body)))
}

/// What A1111's API has no field for, named so the user can turn it off, rather than
/// dropped silently (which would make another image than the one asked for).
fn unsupported(job: &GenerateJob) -> Result<(), String> {
    let mut problems = Vec::new();
    if !job.loras.is_empty() {
        let names: Vec<String> = job
            .loras
            .iter()
            .map(|(path, _)| {
                path.file_stem().map_or_else(
                    || path.display().to_string(),
                    |s| s.to_string_lossy().into(),
                )
            })
            .collect();
        problems.push(format!(
            "LoRA files of this computer ({}): turn them off in the LoRA list and write <lora:NAME:weight> in the prompt instead, for LoRAs in the server's LoRA folder",
            names.join(", ")
        ));
    }
    if !job.controls.is_empty() || !job.request.controls.is_empty() {
        problems.push("ControlNet: turn the ControlNet units off".to_string());
    }
    if job.hires.is_some() && job.request.init_image.is_some() {
        problems.push(
            "hires fix with a start image (A1111's img2img has none): turn it off".to_string(),
        );
    }
    if job.request.prompt_syntax != PromptSyntax::A1111 {
        problems.push(format!(
            "prompt syntax {}: the server reads prompts as A1111 does; choose that syntax",
            job.request.prompt_syntax.name()
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "a server cannot do this through A1111's API: {}",
            problems.join("; ")
        ))
    }
}

fn png_base64(image: &RgbImage) -> Result<String, String> {
    let png =
        encode_png_with_parameters(&image.pixels, image.width as u32, image.height as u32, None)
            .map_err(|err| format!("cannot encode a picture for the server: {err}"))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(png))
}

/// A picture of an answer (`images[N]`, `current_image`) and its `parameters` text.
pub fn decode_picture(field: &str, encoded: &Value) -> Result<(RgbImage, Option<String>), String> {
    let text = encoded
        .as_str()
        .ok_or_else(|| format!("{field}: not a base64 text"))?;
    let data = match text.split_once(";base64,") {
        Some((prefix, data)) if prefix.starts_with("data:") => data,
        _ => text,
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|err| format!("{field}: not base64: {err}"))?;
    let picture = read_picture_from_bytes(&bytes, field)?;
    let parameters = png_parameters_from_bytes(&bytes).ok().flatten();
    Ok((RgbImage::from(picture.to_rgb8()), parameters))
}

/// The progress query: without the preview picture when previews are off.
pub fn progress_path(preview: PreviewMode) -> &'static str {
    if preview == PreviewMode::Off {
        "/sdapi/v1/progress?skip_current_image=true"
    } else {
        "/sdapi/v1/progress?skip_current_image=false"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{GenerationRequest, ImageOutput, SchedulerKind};

    fn job(scheduler: SchedulerKind) -> GenerateJob {
        GenerateJob {
            id: 1,
            request: GenerationRequest {
                prompt: "a cat".into(),
                negative_prompt: None,
                steps: 3,
                guidance: 7.5,
                seed: 42,
                width: 64,
                height: 64,
                scheduler,
                init_image: None,
                prompt_syntax: PromptSyntax::A1111,
                clip_skip: 2,
                controls: Vec::new(),
                variation: None,
            },
            batch_count: 2,
            batch_size: 1,
            output: ImageOutput::None,
            preview: PreviewMode::Fast,
            loras: Vec::new(),
            controls: Vec::new(),
            hires: None,
        }
    }

    #[test]
    fn samplers_are_sent_with_their_schedule() {
        let (path, body) = generation_request(&job(SchedulerKind::DpmPp2m), "sd1").unwrap();
        assert_eq!(path, "/sdapi/v1/txt2img");
        assert_eq!(body["sampler_name"], "DPM++ 2M");
        assert_eq!(body["scheduler"], "Uniform");
        assert_eq!(body["n_iter"], 2);
        assert_eq!(body["override_settings"]["sd_model_checkpoint"], "sd1");
        assert_eq!(body["override_settings"]["CLIP_stop_at_last_layers"], 2);
        let (_, body) = generation_request(&job(SchedulerKind::DpmPp2mKarras), "sd1").unwrap();
        assert_eq!(body["scheduler"], "Karras");
        let (_, body) = generation_request(&job(SchedulerKind::Default), "sd1").unwrap();
        assert!(body.get("sampler_name").is_none());
    }

    #[test]
    fn what_the_api_cannot_carry_is_named() {
        let mut with_lora = job(SchedulerKind::Euler);
        with_lora.loras = vec![("/loras/style.safetensors".into(), 0.8)];
        with_lora.request.prompt_syntax = PromptSyntax::Plain;
        let err = generation_request(&with_lora, "sd1").unwrap_err();
        assert!(err.contains("style"), "{err}");
        assert!(err.contains("prompt syntax"), "{err}");
    }
}
