//! End-to-end parity with diffusers on tiny random-weight pipelines of every family.
//! References come from `tests/fixtures/make_fixtures.py`.

mod support;

use std::collections::HashMap;
use std::path::PathBuf;

use latent_studio::models::StableDiffusion;
use latent_studio::models::{load_model, LoadOptions};
use latent_studio::sampling::pipeline::{Flow, GenerationRequest};
use support::{
    compare_with_reference, controlnet_cases, fixtures, generate_case, inpaint_cases,
    latent_hires_fixtures, max_abs_diff, model_with_unet, parity_cases, parity_cases_from, Case,
};

/// Each model folder loaded once for all of a test's cases.
#[derive(Default)]
struct Models(HashMap<PathBuf, StableDiffusion>);

impl Models {
    fn get(&mut self, folder: PathBuf) -> &StableDiffusion {
        self.0.entry(folder).or_insert_with_key(|folder| {
            load_model(folder, &LoadOptions::default())
                .unwrap_or_else(|e| panic!("loading {}: {e}", folder.display()))
        })
    }

    /// A model of `tests/fixtures/models`.
    fn fixture(&mut self, name: &str) -> &StableDiffusion {
        self.get(fixtures().join("models").join(name))
    }
}

/// Checks every case, then fails once listing each that differs from diffusers.
fn assert_all_match<C>(
    what: &str,
    cases: &[C],
    name: impl Fn(&C) -> &str,
    mut check: impl FnMut(&C) -> Result<(), String>,
) {
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|case| {
            check(case)
                .err()
                .map(|err| format!("{}: {err}", name(case)))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} {what} cases differ from diffusers:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// The image `request` makes, compared with diffusers' in `tests/fixtures/DIR/NAME.safetensors`.
fn matches_reference(
    model: &StableDiffusion,
    request: Result<GenerationRequest, String>,
    dir: &str,
    name: &str,
) -> Result<(), String> {
    let output = model
        .pipeline()
        .generate(&request?, &mut |_| Flow::Continue)
        .map_err(|e| e.to_string())?;
    let reference = fixtures().join(dir).join(format!("{name}.safetensors"));
    compare_with_reference(name, &output, &reference)
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
    let mut models = Models::default();
    assert_all_match(
        "inpainting",
        &cases,
        |c| &c.name,
        |case| {
            let folder = match &case.unet {
                Some(unet) => model_with_unet(&case.model, unet, &scratch),
                None => fixtures().join("models").join(&case.model),
            };
            matches_reference(models.get(folder), case.request(), "inpaint", &case.name)
        },
    );
    let _ = std::fs::remove_dir_all(&scratch);
}

/// torch's `F.interpolate` in every mode of A1111's latent upscalers, up and down.
#[test]
fn latent_resize_matches_torch() {
    use latent_studio::engine::HiresUpscaler;
    use latent_studio::kernels::resize::interpolate;
    let resizes = latent_hires_fixtures().resize;
    assert_eq!(resizes.len(), 12);
    let tensors = candle_core::safetensors::load(
        fixtures().join("latent_hires/resize.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    for case in &resizes {
        let Some(HiresUpscaler::Latent(mode)) = HiresUpscaler::built_in(&case.upscaler) else {
            panic!("{} is not a latent upscaler", case.upscaler);
        };
        let ours = interpolate(&tensors["input"], case.height, case.width, mode).unwrap();
        let diff = max_abs_diff(&ours, &tensors[&case.key]);
        eprintln!("{:<36} max|Δ| {diff:.2e}", case.key);
        assert!(diff < 1e-5, "{}: {diff}", case.key);
    }
}

/// The hires fix with a latent upscaler, as diffusers does its two halves: txt2img, torch's
/// resize of its latents, img2img from those latents (SD 1 and SDXL; three modes).
#[test]
fn latent_hires_matches_diffusers() {
    use latent_studio::engine::HiresUpscaler;
    use latent_studio::kernels::resize::interpolate;
    use latent_studio::sampling::pipeline::{InitImage, RgbImage};
    let cases = latent_hires_fixtures().cases;
    assert!(cases.len() >= 4);
    let mut models = Models::default();
    assert_all_match(
        "latent hires",
        &cases,
        |c| &c.name,
        |case| {
            let model = models.fixture(&case.model);
            let path = fixtures()
                .join("latent_hires")
                .join(format!("{}.safetensors", case.name));
            let reference =
                candle_core::safetensors::load(&path, &candle_core::Device::Cpu).unwrap();
            let Some(HiresUpscaler::Latent(mode)) = HiresUpscaler::built_in(&case.upscaler) else {
                panic!("{} is not a latent upscaler", case.upscaler);
            };
            let pipeline = model.pipeline();
            case.first_pass().and_then(|first| {
                let output = pipeline
                    .generate(&first, &mut |_| Flow::Continue)
                    .map_err(|e| e.to_string())?;
                let first_diff = max_abs_diff(&output.latents, &reference["first_latents"]);
                let start = interpolate(
                    &output.latents,
                    case.hires_height / 8,
                    case.hires_width / 8,
                    mode,
                )
                .map_err(|e| e.to_string())?;
                let resize_diff = max_abs_diff(&start, &reference["upscaled"]);
                eprintln!(
                    "{:<24} first pass max|Δ| {first_diff:.2e}  resized max|Δ| {resize_diff:.2e}",
                    case.name
                );
                if first_diff > 1e-3 || resize_diff > 1e-3 {
                    return Err(format!("first pass {first_diff}, resized {resize_diff}"));
                }
                let second = latent_studio::sampling::pipeline::GenerationRequest {
                    width: case.hires_width,
                    height: case.hires_height,
                    steps: case.hires_steps,
                    init_image: Some(InitImage {
                        image: RgbImage::filled(case.hires_width, case.hires_height, [0; 3]),
                        strength: case.strength,
                        mask: None,
                    }),
                    ..first
                };
                let output = pipeline
                    .generate_from_latents(&second, &start, &mut |_| Flow::Continue)
                    .map_err(|e| e.to_string())?;
                compare_with_reference(&case.name, &output, &path)
            })
        },
    );
}

/// diffusers' ControlNet pipelines (txt2img, img2img, inpaint; SD 1 and SDXL): one unit, a
/// partial start/end with a control image of another size, two units summed, guess mode.
#[test]
fn controlnet_matches_diffusers() {
    use latent_studio::models::controlnet::load_controlnet;
    let cases = controlnet_cases();
    assert!(cases.len() >= 7);
    let mut models = Models::default();
    let mut nets = HashMap::new();
    assert_all_match(
        "ControlNet",
        &cases,
        |c| &c.name,
        |case| {
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
            let request = case.request(&mut load);
            matches_reference(
                models.fixture(&case.model),
                request,
                "controlnet",
                &case.name,
            )
        },
    );
}

/// diffusers' T2I-Adapter pipelines: a full adapter (SD 1), a light one on a grey picture of
/// another size, and SDXL's adapter acting on the first half of the steps.
#[test]
fn t2i_adapters_match_diffusers() {
    use latent_studio::models::controlnet::load_controlnet;
    let cases = support::adapter_cases();
    assert!(cases.len() >= 3);
    let mut models = Models::default();
    assert_all_match(
        "T2I-Adapter",
        &cases,
        |c| &c.name,
        |case| {
            let adapter = load_controlnet(
                &fixtures().join("models").join(&case.adapter),
                &LoadOptions::default(),
            )
            .unwrap_or_else(|e| panic!("loading {}: {e}", case.adapter));
            let request = case.request(adapter.net);
            matches_reference(models.fixture(&case.model), request, "adapter", &case.name)
        },
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
    let mut models = Models::default();
    assert_all_match(
        "sampler",
        cases,
        |c| &c.name,
        |case| {
            let output = generate_case(models.fixture(&case.model), case)?;
            let reference = fixtures()
                .join(dir)
                .join(format!("{}.safetensors", case.name));
            compare_with_reference(&case.name, &output, &reference)
        },
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

/// One network of `tests/fixtures/upscalers.json` (`make_upscaler_fixtures.py`) with what
/// spandrel's loader detected in it.
#[derive(serde::Deserialize)]
struct UpscalerCase {
    file: String,
    architecture: String,
    scale: usize,
    tags: Vec<String>,
}

fn upscaler_cases() -> Vec<(String, UpscalerCase)> {
    #[derive(serde::Deserialize)]
    struct Cases {
        cases: std::collections::BTreeMap<String, UpscalerCase>,
    }
    let text = std::fs::read_to_string(fixtures().join("upscalers.json")).unwrap();
    let cases: Cases = serde_json::from_str(&text).unwrap();
    cases.cases.into_iter().collect()
}

fn upscaler_references() -> HashMap<String, candle_core::Tensor> {
    let path = fixtures().join("upscalers/references.safetensors");
    candle_core::safetensors::load(path, &candle_core::Device::Cpu).unwrap()
}

fn rgb_from_tensor(pixels: &candle_core::Tensor) -> latent_studio::engine::RgbImage {
    let (height, width, _) = pixels.dims3().unwrap();
    latent_studio::engine::RgbImage {
        width,
        height,
        pixels: pixels.flatten_all().unwrap().to_vec1().unwrap(),
    }
}

/// ESRGAN (old `model.N` keys, ×1/×2/×4/×8, ESRGAN+), Real-ESRGAN (basicsr keys, ×4 and the
/// pixel-unshuffling ×2 and ×1 on odd sizes), BSRGAN keys and SRVGGNetCompact (×1/×2/×4),
/// from f32 and f16 files: the architecture and scale spandrel detected, its output before
/// the clamp within 1e-4, and its 8-bit picture within one level.
#[test]
fn upscalers_match_spandrel() {
    use latent_studio::engine::{image_to_tensor, tensor_to_image};
    use latent_studio::models::upscaler::load_upscaler;
    let references = upscaler_references();
    let cases = upscaler_cases();
    assert!(cases.len() >= 12);
    let mut failures = Vec::new();
    for (name, case) in &cases {
        let loaded = load_upscaler(&fixtures().join(&case.file), &LoadOptions::default())
            .unwrap_or_else(|err| panic!("{name}: {err}"));
        let scale = loaded.net.scale();
        if loaded.config.architecture() != case.architecture || scale != case.scale {
            failures.push(format!(
                "{name}: detected {} ×{scale}, spandrel {} ×{} {:?}",
                loaded.config.architecture(),
                case.architecture,
                case.scale,
                case.tags
            ));
            continue;
        }
        let picture = rgb_from_tensor(&references[&format!("{name}.input")]);
        let input =
            image_to_tensor(&picture, &candle_core::Device::Cpu, candle_core::DType::F32).unwrap();
        let raw = loaded.net.forward(&input).unwrap();
        let expected_raw = &references[&format!("{name}.raw")];
        if raw.dims() != expected_raw.dims() {
            failures.push(format!(
                "{name}: shape {:?} vs {:?}",
                raw.dims(),
                expected_raw.dims()
            ));
            continue;
        }
        let float_diff = support::max_abs_diff(&raw, expected_raw);
        let image = tensor_to_image(&raw).unwrap();
        let expected: Vec<u8> = references[&format!("{name}.image")]
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let (mean, max) = support::image_diff(&image.pixels, &expected);
        eprintln!(
            "{name:<26} {} ×{scale}  max|Δ| {float_diff:.2e}  image mean|Δ| {mean:.4}/255 max|Δ| {max}/255",
            case.architecture
        );
        if float_diff > 1e-4 || max > 1.0 {
            failures.push(format!(
                "{name}: max float diff {float_diff}, image max diff {max}/255"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// What tiling costs against one untiled run, on a picture 96×80 in tiles of 32 input
/// pixels overlapping by 16 (the fixture networks see fewer pixels than real ones, so the
/// numbers bound seams rather than predict them for a 23-block RRDBNet). A picture that
/// fits in one tile is computed untiled: bit-identical.
#[test]
fn tiled_upscales_stay_close_to_untiled() {
    use latent_studio::engine::{image_to_tensor, tensor_to_image};
    use latent_studio::models::upscaler::load_upscaler;
    use latent_studio::networks::upscalers::tiling::{upscale_tiled, Tiling};
    let (width, height) = (96, 80);
    let pixels = (0..width * height * 3)
        .map(|i| {
            let (p, c) = (i / 3, i % 3);
            let (x, y) = (p % width, p / width);
            ((x * 5 + y * 3 + c * 70) % 256) as u8 ^ (((x / 7 + y / 5) % 2) * 60) as u8
        })
        .collect();
    let picture = latent_studio::engine::RgbImage {
        width,
        height,
        pixels,
    };
    let input =
        image_to_tensor(&picture, &candle_core::Device::Cpu, candle_core::DType::F32).unwrap();
    for name in ["esrgan_old_x4", "esrgan_new_x1_unshuffle", "compact_x4"] {
        let loaded = load_upscaler(
            &fixtures().join(format!("upscalers/{name}.safetensors")),
            &LoadOptions::default(),
        )
        .unwrap();
        let whole = loaded.net.forward(&input).unwrap();
        let run = |tiling| {
            upscale_tiled(&loaded.net, &input, tiling, &mut |_| true)
                .unwrap()
                .unwrap()
        };
        let one_tile = run(Some(Tiling::with_tile(96)));
        assert_eq!(support::max_abs_diff(&one_tile, &whole), 0.0, "{name}");
        let tiled = run(Some(Tiling {
            tile: 32,
            overlap: 16,
        }));
        assert_eq!(tiled.dims(), whole.dims());
        let float_diff = support::max_abs_diff(&tiled, &whole);
        let rms = ((&tiled - &whole)
            .unwrap()
            .sqr()
            .unwrap()
            .mean_all()
            .unwrap())
        .to_scalar::<f32>()
        .unwrap()
        .sqrt();
        let (mean, max) = support::image_diff(
            &tensor_to_image(&tiled).unwrap().pixels,
            &tensor_to_image(&whole).unwrap().pixels,
        );
        eprintln!(
            "{name:<26} tiled 32/16 vs whole: max|Δ| {float_diff:.2e} rms {rms:.2e}  image mean|Δ| {mean:.4}/255 max|Δ| {max}/255"
        );
        // Measured: ≤ 1 level for the ×4 networks; the ×1 Real-ESRGAN runs on 8×8 unshuffled
        // tiles here, where zero padding reaches every feature (9 levels at most, rms 5e-3).
        assert!(
            rms < 1e-2 && max <= 12.0,
            "{name}: rms {rms}, max {max}/255"
        );
    }
}

/// diffusers' `AutoencoderTiny` (`make_taesd_fixtures.py`): a tiny random folder with uneven
/// block counts, decoded and encoded, then the same weights as the original
/// `taesd_decoder.safetensors` / `taesd_encoder.safetensors` files (renamed here).
#[test]
fn tiny_vae_matches_diffusers() {
    use latent_studio::models::taesd::load_tiny_vae;
    let folder = fixtures().join("models/taesd_tiny");
    let references = candle_core::safetensors::load(
        fixtures().join("taesd/references.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let vae = load_tiny_vae(&folder, &LoadOptions::default()).unwrap();
    let decoder = vae.decoder.as_ref().unwrap();
    let encoder = vae.encoder.as_ref().unwrap();
    let decoded = decoder.forward(&references["latents"]).unwrap();
    let decode_diff = support::max_abs_diff(&decoded, &references["decoded"]);
    let encoded = encoder
        .forward(&references["decoded"].clamp(-1f32, 1f32).unwrap())
        .unwrap();
    let encode_diff = support::max_abs_diff(&encoded, &references["encoded"]);
    eprintln!("AutoencoderTiny decode max|Δ| {decode_diff:.2e}, encode max|Δ| {encode_diff:.2e}");
    assert!(decode_diff < 1e-5 && encode_diff < 1e-5);

    let dir = std::env::temp_dir().join(format!("latent-studio-taesd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let all = candle_core::safetensors::load(
        folder.join("diffusion_pytorch_model.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let original = |half: &str, shift: usize| -> HashMap<String, candle_core::Tensor> {
        all.iter()
            .filter_map(|(name, tensor)| {
                let rest = name.strip_prefix(&format!("{half}.layers."))?;
                let (index, rest) = rest.split_once('.').unwrap();
                let index: usize = index.parse().unwrap();
                Some((format!("{}.{rest}", index + shift), tensor.clone()))
            })
            .collect()
    };
    let decoder_file = dir.join("taesd_decoder.safetensors");
    candle_core::safetensors::save(&original("decoder", 1), &decoder_file).unwrap();
    let encoder_file = dir.join("taesd_encoder.safetensors");
    candle_core::safetensors::save(&original("encoder", 0), &encoder_file).unwrap();
    let only_decoder = load_tiny_vae(&decoder_file, &LoadOptions::default()).unwrap();
    assert!(only_decoder.encoder.is_none());
    let again = only_decoder
        .decoder
        .unwrap()
        .forward(&references["latents"])
        .unwrap();
    assert_eq!(support::max_abs_diff(&again, &decoded), 0.0);
    let only_encoder = load_tiny_vae(&encoder_file, &LoadOptions::default()).unwrap();
    assert!(only_encoder.decoder.is_none());
    let again = only_encoder
        .encoder
        .unwrap()
        .forward(&references["decoded"].clamp(-1f32, 1f32).unwrap())
        .unwrap();
    assert_eq!(support::max_abs_diff(&again, &encoded), 0.0);
    let _ = std::fs::remove_dir_all(&dir);
}
