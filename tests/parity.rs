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

/// The samplers added after those (`cases_extra.json`, stage `cases_extra`): DPM++ 2M SDE (noise
/// drawn at every step) on SD 1 txt2img and img2img and on SDXL, the exponential schedule with
/// DPM++ 2M on SD 1 and Euler on SDXL, DPM++ 2S (singlestep) on SD 1 txt2img and img2img, the beta
/// schedule with Euler on SD 1 and DPM++ 2M SDE on SDXL, Align Your Steps with DPM++ 2M SDE on SDXL
/// and Euler on SD 1 img2img.
#[test]
fn extra_sampler_cases_match_diffusers() {
    let cases = parity_cases_from("cases_extra.json");
    assert!(cases.len() >= 3);
    run_cases(&cases, "cases_extra");
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

/// A diffusers UNet (or ControlNet down-half) tensor name in the original ldm layout, for a
/// UNet with `per_block` layers per down block whose up blocks have attention where
/// `up_attention` says: written independently of the loader's renaming, so a wrong rename
/// there fails here.
fn original_unet_name(name: &str, per_block: usize, up_attention: &[bool]) -> Option<String> {
    let resnet = |part: &str| {
        [
            ("norm1.", "in_layers.0."),
            ("conv1.", "in_layers.2."),
            ("time_emb_proj.", "emb_layers.1."),
            ("norm2.", "out_layers.0."),
            ("conv2.", "out_layers.3."),
            ("conv_shortcut.", "skip_connection."),
        ]
        .iter()
        .find_map(|(from, to)| part.strip_prefix(from).map(|tail| format!("{to}{tail}")))
        .unwrap_or_else(|| part.to_string())
    };
    let number = |text: &str| text.parse::<usize>().unwrap();
    let parts: Vec<&str> = name.splitn(5, '.').collect();
    Some(match parts.as_slice() {
        ["conv_in", rest @ ..] => format!("input_blocks.0.0.{}", rest.join(".")),
        ["time_embedding", "linear_1", rest @ ..] => format!("time_embed.0.{}", rest.join(".")),
        ["time_embedding", "linear_2", rest @ ..] => format!("time_embed.2.{}", rest.join(".")),
        ["conv_norm_out", rest @ ..] => format!("out.0.{}", rest.join(".")),
        ["conv_out", rest @ ..] => format!("out.2.{}", rest.join(".")),
        ["down_blocks", b, "resnets", l, rest] => {
            let index = 1 + (per_block + 1) * number(b) + number(l);
            format!("input_blocks.{index}.0.{}", resnet(rest))
        }
        ["down_blocks", b, "attentions", l, rest] => {
            let index = 1 + (per_block + 1) * number(b) + number(l);
            format!("input_blocks.{index}.1.{rest}")
        }
        ["down_blocks", b, "downsamplers", "0", rest] => {
            let index = (per_block + 1) * (number(b) + 1);
            format!(
                "input_blocks.{index}.0.op.{}",
                rest.strip_prefix("conv.").unwrap()
            )
        }
        ["up_blocks", b, "resnets", l, rest] => {
            let index = (per_block + 1) * number(b) + number(l);
            format!("output_blocks.{index}.0.{}", resnet(rest))
        }
        ["up_blocks", b, "attentions", l, rest] => {
            let index = (per_block + 1) * number(b) + number(l);
            format!("output_blocks.{index}.1.{rest}")
        }
        ["up_blocks", b, "upsamplers", "0", rest] => {
            let index = (per_block + 1) * number(b) + per_block;
            let part = if up_attention[number(b)] { 2 } else { 1 };
            format!("output_blocks.{index}.{part}.{rest}")
        }
        ["mid_block", "resnets", "0", rest @ ..] => {
            format!("middle_block.0.{}", resnet(&rest.join(".")))
        }
        ["mid_block", "attentions", "0", rest @ ..] => format!("middle_block.1.{}", rest.join(".")),
        ["mid_block", "resnets", "1", rest @ ..] => {
            format!("middle_block.2.{}", resnet(&rest.join(".")))
        }
        _ => return None,
    })
}

/// The fixture ControlNet's tensor names in the original (`control_model.*`) layout (2
/// layers per block, 4 conditioning-embedding stages).
fn original_controlnet_name(name: &str) -> String {
    let parts: Vec<&str> = name.splitn(3, '.').collect();
    let mapped = match parts.as_slice() {
        ["controlnet_cond_embedding", "conv_in", rest] => format!("input_hint_block.0.{rest}"),
        ["controlnet_cond_embedding", "blocks", rest] => {
            let (k, tail) = rest.split_once('.').unwrap();
            format!(
                "input_hint_block.{}.{tail}",
                2 * (k.parse::<usize>().unwrap() + 1)
            )
        }
        ["controlnet_cond_embedding", "conv_out", rest] => format!("input_hint_block.14.{rest}"),
        ["controlnet_down_blocks", i, rest] => format!("zero_convs.{i}.0.{rest}"),
        ["controlnet_mid_block", rest @ ..] => format!("middle_block_out.0.{}", rest.join(".")),
        _ => original_unet_name(name, 2, &[])
            .unwrap_or_else(|| panic!("no original name for {name}")),
    };
    format!("control_model.{mapped}")
}

/// An inpainting single file (a 9-channel UNet in the A1111 layout) gives diffusers'
/// inpainting result, as its diffusers folder does.
#[test]
fn inpainting_single_file_matches_diffusers() {
    let dir =
        std::env::temp_dir().join(format!("latent-studio-inpaint-file-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let device = candle_core::Device::Cpu;
    // The fixture model's own text encoder (SD 1 single files prefix its names), and its
    // VAE given as a separate file, as users pass --vae.
    let mut tensors: HashMap<String, candle_core::Tensor> = candle_core::safetensors::load(
        fixtures().join("models/sd1/text_encoder/model.safetensors"),
        &device,
    )
    .unwrap()
    .into_iter()
    .map(|(name, tensor)| (format!("cond_stage_model.transformer.{name}"), tensor))
    .collect();
    let unet = candle_core::safetensors::load(
        fixtures().join("models/sd1_inpaint_unet/diffusion_pytorch_model.safetensors"),
        &device,
    )
    .unwrap();
    // The fixture's up blocks: UpBlock2D, CrossAttnUpBlock2D; one layer per down block.
    for (name, tensor) in unet {
        let original = original_unet_name(&name, 1, &[false, true])
            .unwrap_or_else(|| panic!("no original name for {name}"));
        tensors.insert(format!("model.diffusion_model.{original}"), tensor);
    }
    let file = dir.join("tiny-inpainting.safetensors");
    candle_core::safetensors::save(&tensors, &file).unwrap();
    let config = model_with_unet("sd1", "sd1_inpaint_unet", &dir);
    let options = LoadOptions {
        config: Some(config),
        vae: Some(fixtures().join("models/sd1/vae/diffusion_pytorch_model.safetensors")),
        ..LoadOptions::default()
    };
    let model = load_model(&file, &options).unwrap();
    let case = inpaint_cases()
        .into_iter()
        .find(|c| c.name == "sd1_9ch_euler")
        .unwrap();
    let output = model
        .pipeline()
        .generate(&case.request().unwrap(), &mut |_| Flow::Continue)
        .unwrap();
    let result = compare_with_reference(
        "inpainting single file",
        &output,
        &fixtures().join("inpaint/sd1_9ch_euler.safetensors"),
    );
    let _ = std::fs::remove_dir_all(&dir);
    result.unwrap();
}

/// An original-layout ControlNet file (as A1111 users download them) gives diffusers' result;
/// without a config for an unknown family it is refused with the reason.
#[test]
fn original_layout_controlnet_file_matches_diffusers() {
    use latent_studio::models::controlnet::load_controlnet;

    let dir = std::env::temp_dir().join(format!("latent-studio-cn-file-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let source = fixtures().join("models/sd1_controlnet");
    let tensors = candle_core::safetensors::load(
        source.join("diffusion_pytorch_model.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let renamed: HashMap<String, candle_core::Tensor> = tensors
        .into_iter()
        .map(|(name, tensor)| (original_controlnet_name(&name), tensor))
        .collect();
    let file = dir.join("control_tiny_canny.safetensors");
    candle_core::safetensors::save(&renamed, &file).unwrap();
    let err = load_controlnet(&file, &LoadOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("only SD 1.x (768) and SD 2.x (1024)"), "{err}");
    std::fs::copy(source.join("config.json"), dir.join("config.json")).unwrap();
    let net = load_controlnet(&file, &LoadOptions::default()).unwrap();
    assert_eq!(net.name, "control_tiny_canny");

    let case = support::controlnet_cases()
        .into_iter()
        .find(|c| c.name == "sd1_single")
        .unwrap();
    let model = load_model(&fixtures().join("models/sd1"), &LoadOptions::default()).unwrap();
    let request = case.request(&mut |_| net.net.clone()).unwrap();
    assert_eq!(request.controls.len(), 1);
    let output = model
        .pipeline()
        .generate(&request, &mut |_| Flow::Continue)
        .unwrap();
    let result = compare_with_reference(
        "original-layout file",
        &output,
        &fixtures().join("controlnet/sd1_single.safetensors"),
    );
    let _ = std::fs::remove_dir_all(&dir);
    result.unwrap();
}
