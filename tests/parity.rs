//! End-to-end parity with diffusers on tiny random-weight pipelines of every family.
//! References come from `tests/fixtures/make_fixtures.py`.

mod support;

use std::collections::HashMap;

use latent_studio::models::StableDiffusion;
use latent_studio::models::{load_model, LoadOptions};
use latent_studio::sampling::pipeline::Flow;
use support::{
    compare_with_reference, controlnet_cases, fixtures, generate_case, inpaint_cases,
    model_with_unet, parity_cases, parity_cases_from, Case,
};

fn run_case(model: &StableDiffusion, case: &Case, dir: &str) -> Result<(), String> {
    let output = generate_case(model, case)?;
    compare_with_reference(
        &case.name,
        &output,
        &fixtures()
            .join(dir)
            .join(format!("{}.safetensors", case.name)),
    )
}

#[test]
fn every_case_matches_diffusers() {
    let cases = parity_cases();
    assert!(cases.len() >= 20);
    run_cases(&cases, "cases");
}

/// The samplers added after `cases.json` was made (`cases_more.json`, stage `cases_more`):
/// Heun and DPM2 (two UNet evaluations per step, txt2img and img2img), LMS, UniPC, and the
/// noise-drawing DPM2 a and DDPM, through the whole pipeline.
#[test]
fn added_sampler_cases_match_diffusers() {
    let cases = parity_cases_from("cases_more.json");
    assert!(cases.len() >= 10);
    run_cases(&cases, "cases_more");
}

/// diffusers' `StableDiffusionInpaintPipeline` / `StableDiffusionXLInpaintPipeline`: 9-channel
/// inpainting UNets and the 4-channel blend, strengths 1 and below, a mask of another size,
/// `padding_mask_crop` (our "inpaint only masked"), several samplers, SD 1 and SDXL.
#[test]
fn inpainting_matches_diffusers() {
    let cases = inpaint_cases();
    assert!(cases.len() >= 10);
    let scratch =
        std::env::temp_dir().join(format!("latent-studio-inpaint-{}", std::process::id()));
    let mut models: HashMap<String, StableDiffusion> = HashMap::new();
    let mut failures = Vec::new();
    for case in &cases {
        let folder = match &case.unet {
            Some(unet) => model_with_unet(&case.model, unet, &scratch),
            None => fixtures().join("models").join(&case.model),
        };
        let key = folder.display().to_string();
        let model = models.entry(key).or_insert_with(|| {
            load_model(&folder, &LoadOptions::default())
                .unwrap_or_else(|e| panic!("loading {}: {e}", folder.display()))
        });
        let result = case.request().and_then(|request| {
            model
                .pipeline()
                .generate(&request, &mut |_| Flow::Continue)
                .map_err(|e| e.to_string())
        });
        let reference = fixtures()
            .join("inpaint")
            .join(format!("{}.safetensors", case.name));
        if let Err(err) =
            result.and_then(|output| compare_with_reference(&case.name, &output, &reference))
        {
            failures.push(format!("{}: {err}", case.name));
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    assert!(
        failures.is_empty(),
        "{} of {} inpainting cases differ from diffusers:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// diffusers' ControlNet pipelines (txt2img, img2img, inpaint; SD 1 and SDXL): one unit, a
/// partial start/end with a control image of another size, two units summed, guess mode.
#[test]
fn controlnet_matches_diffusers() {
    use latent_studio::models::controlnet::load_controlnet;
    let cases = controlnet_cases();
    assert!(cases.len() >= 7);
    let mut models: HashMap<String, StableDiffusion> = HashMap::new();
    let mut nets = HashMap::new();
    let mut failures = Vec::new();
    for case in &cases {
        let model = models.entry(case.model.clone()).or_insert_with(|| {
            load_model(
                &fixtures().join("models").join(&case.model),
                &LoadOptions::default(),
            )
            .unwrap_or_else(|e| panic!("loading {}: {e}", case.model))
        });
        let mut load = |name: &str| {
            nets.entry(name.to_string())
                .or_insert_with(|| {
                    load_controlnet(
                        &fixtures().join("models").join(name),
                        &LoadOptions::default(),
                    )
                    .unwrap_or_else(|e| panic!("loading {name}: {e}"))
                    .net
                })
                .clone()
        };
        let result = case.request(&mut load).and_then(|request| {
            model
                .pipeline()
                .generate(&request, &mut |_| Flow::Continue)
                .map_err(|e| e.to_string())
        });
        let reference = fixtures()
            .join("controlnet")
            .join(format!("{}.safetensors", case.name));
        if let Err(err) =
            result.and_then(|output| compare_with_reference(&case.name, &output, &reference))
        {
            failures.push(format!("{}: {err}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} ControlNet cases differ from diffusers:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

fn run_cases(cases: &[Case], dir: &str) {
    let mut models: HashMap<String, StableDiffusion> = HashMap::new();
    let mut failures = Vec::new();
    for case in cases {
        if !models.contains_key(&case.model) {
            let model = load_model(
                &fixtures().join("models").join(&case.model),
                &LoadOptions::default(),
            )
            .unwrap_or_else(|e| panic!("loading {}: {e}", case.model));
            models.insert(case.model.clone(), model);
        }
        if let Err(err) = run_case(&models[&case.model], case, dir) {
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

/// Tiled VAE decoding against diffusers' `enable_tiling()`: a 4×5 grid of tiles with partial
/// edge tiles, and a latent small enough for one tile (decoded untiled, as diffusers does).
#[test]
fn tiled_vae_decode_matches_diffusers() {
    let model = load_model(&fixtures().join("models/sd1"), &LoadOptions::default()).unwrap();
    let reference = candle_core::safetensors::load(
        fixtures().join("vae_tiling.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    for name in ["grid", "single"] {
        let latents = &reference[&format!("{name}_latents")];
        let ours = model.pipeline().vae().decode_tiled(latents).unwrap();
        let expected = &reference[&format!("{name}_decoded")];
        assert_eq!(ours.dims(), expected.dims(), "{name}");
        let diff = support::max_abs_diff(&ours, expected);
        eprintln!("tiled decode {name}: max |Δ| {diff:.2e}");
        assert!(diff < 1e-4, "{name}: tiled decode differs by {diff}");
    }
    // Tiling changes the result slightly; an untiled decode of the grid is not the same.
    let grid = &reference["grid_latents"];
    let untiled = model.pipeline().vae().decode(grid).unwrap();
    assert!(support::max_abs_diff(&untiled, &reference["grid_decoded"]) > 1e-3);
}
