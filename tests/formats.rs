//! The models people actually have, against diffusers: single-file checkpoints (diffusers'
//! own conversion scripts made them; its `from_single_file` made the references), separate VAE
//! files, LoRAs (`load_lora_weights` + `fuse_lora`), textual inversion, clip skip, and A1111
//! prompt weighting (a Python implementation of A1111's algorithm feeding `prompt_embeds`).
//! References come from `tests/fixtures/make_format_fixtures.py`.

mod support;

use std::path::PathBuf;
use std::sync::Arc;

use latent_studio::models::embeddings::load_embedding;
use latent_studio::models::lora::LoraLibrary;
use latent_studio::models::StableDiffusion;
use latent_studio::models::{load_model, LoadOptions};
use latent_studio::sampling::pipeline::{Flow, GeneratedImage, GenerationRequest, PromptSyntax};
use latent_studio::text::prompt::{chunk_text, CHUNK_LENGTH};
use serde::Deserialize;
use support::{compare_with_reference, fixtures, image_diff};

#[derive(Debug, Deserialize)]
struct LoraEntry {
    file: String,
    scale: f64,
}

#[derive(Debug, Deserialize)]
struct ChunkRecord {
    ids: Vec<u32>,
}

#[derive(Debug, Deserialize)]
struct Chunks {
    prompt: Vec<ChunkRecord>,
    negative: Option<Vec<ChunkRecord>>,
}

#[derive(Debug, Deserialize)]
struct Case {
    name: String,
    model: String,
    prompt: String,
    negative_prompt: Option<String>,
    steps: usize,
    guidance: f64,
    seed: u64,
    width: usize,
    height: usize,
    scheduler: String,
    single_file: Option<String>,
    vae_file: Option<String>,
    loras: Vec<LoraEntry>,
    embeddings: Vec<String>,
    clip_skip: usize,
    prompt_syntax: String,
    chunks: Option<Chunks>,
}

fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(fixtures().join("formats/cases.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn load(case: &Case) -> StableDiffusion {
    let folder = fixtures().join("models").join(&case.model);
    let options = LoadOptions {
        vae: case.vae_file.as_ref().map(|f| fixtures().join(f)),
        // The tiny models' configs; real checkpoints use the built-in ones for their family.
        config: case.single_file.as_ref().map(|_| folder.clone()),
        ..LoadOptions::default()
    };
    let path = match &case.single_file {
        Some(file) => fixtures().join(file),
        None => folder,
    };
    let mut model =
        load_model(&path, &options).unwrap_or_else(|e| panic!("{}: loading: {e}", case.name));
    let embeddings = case
        .embeddings
        .iter()
        .map(|f| Arc::new(load_embedding(&fixtures().join(f)).unwrap()))
        .collect();
    assert!(model.set_embeddings(embeddings).is_empty(), "{}", case.name);
    model
}

fn request(case: &Case) -> GenerationRequest {
    GenerationRequest {
        prompt: case.prompt.clone(),
        negative_prompt: case.negative_prompt.clone(),
        steps: case.steps,
        guidance: case.guidance,
        seed: case.seed,
        width: case.width,
        height: case.height,
        scheduler: case.scheduler.parse().unwrap(),
        init_image: None,
        prompt_syntax: case.prompt_syntax.parse().unwrap(),
        clip_skip: case.clip_skip,
        controls: Vec::new(),
        variation: None,
    }
}

fn generate(model: &StableDiffusion, request: &GenerationRequest) -> GeneratedImage {
    model
        .pipeline()
        .generate(request, &mut |_| Flow::Continue)
        .unwrap_or_else(|e| panic!("generate: {e}"))
}

/// `<lora:…>` tags are looked up where the fixture LoRAs are.
fn lora_library() -> LoraLibrary {
    LoraLibrary::new(Some(fixtures().join("formats/loras")))
}

fn run(case: &Case) -> Result<(), String> {
    let mut model = load(case);
    let request = request(case);
    let listed: Vec<(PathBuf, f64)> = case
        .loras
        .iter()
        .map(|l| (fixtures().join(&l.file), l.scale))
        .collect();
    let loras = lora_library()
        .for_request(&request.prompt, request.prompt_syntax, &listed)
        .map_err(|e| e.to_string())?;
    model.apply_loras(loras).map_err(|e| e.to_string())?;
    let output = generate(&model, &request);
    compare_with_reference(
        &case.name,
        &output,
        &fixtures().join(format!("formats/cases/{}.safetensors", case.name)),
    )
}

#[test]
fn every_case_matches_diffusers() {
    let cases = cases();
    assert!(cases.len() >= 15);
    let failures: Vec<String> = cases.iter().filter_map(|c| run(c).err()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from diffusers:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// Our chunking and 77-token layout give the ids the reference encoded, chunk by chunk.
#[test]
fn a1111_chunks_match_the_reference_ids() {
    let mut checked = 0;
    for case in cases().iter().filter(|c| c.prompt_syntax == "a1111") {
        let Some(chunks) = &case.chunks else { continue };
        let model = load(case);
        let tokenizer = model.pipeline().tokenizer();
        let layout = |text: &str| -> Vec<Vec<u32>> {
            chunk_text(tokenizer, text, PromptSyntax::A1111, &[])
                .unwrap()
                .chunks
                .iter()
                .map(|chunk| {
                    let mut ids = vec![tokenizer.bos_id()];
                    ids.extend(&chunk.tokens);
                    ids.push(tokenizer.eos_id());
                    ids.resize(CHUNK_LENGTH + 2, tokenizer.pad_id());
                    ids
                })
                .collect()
        };
        let expected: Vec<Vec<u32>> = chunks.prompt.iter().map(|c| c.ids.clone()).collect();
        assert_eq!(layout(&case.prompt), expected, "{} prompt", case.name);
        if let (Some(negative), Some(text)) = (&chunks.negative, &case.negative_prompt) {
            let expected: Vec<Vec<u32>> = negative.iter().map(|c| c.ids.clone()).collect();
            // The reference pads the negative with empty-prompt chunks to the prompt's count.
            let ours = layout(text);
            assert_eq!(ours[..], expected[..ours.len()], "{} negative", case.name);
        }
        checked += 1;
    }
    assert!(checked >= 3);
}

/// Taking LoRAs out again restores the base model exactly, without reloading it.
#[test]
fn removing_loras_restores_the_base_weights() {
    let cases = cases();
    let case = cases
        .iter()
        .find(|c| c.name == "lora_sd1_kohya_peft")
        .unwrap();
    let mut model = load(case);
    let request = request(case);
    let before = generate(&model, &request);
    let listed: Vec<(PathBuf, f64)> = case
        .loras
        .iter()
        .map(|l| (fixtures().join(&l.file), l.scale))
        .collect();
    let mut library = lora_library();
    let loras = library
        .for_request(&request.prompt, request.prompt_syntax, &listed)
        .unwrap();
    model.apply_loras(loras).unwrap();
    let with_loras = generate(&model, &request);
    let (mean, _) = image_diff(&before.image.pixels, &with_loras.image.pixels);
    assert!(mean > 1.0, "the LoRAs changed nothing (mean diff {mean})");
    model.apply_loras(Vec::new()).unwrap();
    let after = generate(&model, &request);
    assert_eq!(before.image.pixels, after.image.pixels);
    assert!(model.loras().is_empty());
}

/// A LoRA that fits nothing, or whose shapes don't fit, is refused with the file named, and
/// the model keeps working.
#[test]
fn a_lora_that_does_not_fit_is_refused() {
    use candle_core::{DType, Device, Tensor};
    let cases = cases();
    let case = cases.iter().find(|c| c.name == "lora_sd1_kohya").unwrap();
    let mut model = load(case);
    let dir = std::env::temp_dir().join(format!("latent-studio-lora-fit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, module: &str, rank_in: (usize, usize)| {
        let path = dir.join(name);
        let tensors = std::collections::HashMap::from([
            (
                format!("{module}.lora_down.weight"),
                Tensor::ones(rank_in, DType::F32, &Device::Cpu).unwrap(),
            ),
            (
                format!("{module}.lora_up.weight"),
                Tensor::ones((32, rank_in.0), DType::F32, &Device::Cpu).unwrap(),
            ),
        ]);
        candle_core::safetensors::save(&tensors, &path).unwrap();
        path
    };
    // SDXL's real 1280-wide text encoder layer has no counterpart here.
    let foreign = write(
        "foreign.safetensors",
        "lora_te2_text_model_encoder_layers_30_mlp_fc1",
        (4, 1280),
    );
    // A real layer name with the wrong input width.
    let misshapen = write(
        "misshapen.safetensors",
        "lora_te_text_model_encoder_layers_0_self_attn_q_proj",
        (4, 768),
    );
    let mut library = lora_library();
    for (path, expected) in [
        (foreign, "none of its 1 layers fit"),
        (misshapen, "does not fit"),
    ] {
        let loras = library
            .for_request("", PromptSyntax::A1111, &[(path.clone(), 1.0)])
            .unwrap();
        let message = model.apply_loras(loras).unwrap_err().to_string();
        assert!(
            message.contains(&path.display().to_string()) && message.contains(expected),
            "{message}"
        );
    }
    let missing = library
        .for_request("<lora:nope:0.5>", PromptSyntax::A1111, &[])
        .unwrap_err()
        .to_string();
    assert!(missing.contains("nope"), "{missing}");
    assert!(model.loras().is_empty());
    generate(&model, &request(case));
    let _ = std::fs::remove_dir_all(&dir);
}
