//! The `generate` command as scripts drive it: parity through the CLI, PNG metadata, and one
//! clear line with exit code 2 for every kind of bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("latent-studio-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn generate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_latent-studio"))
        .arg("generate")
        .args(args)
        .output()
        .expect("run latent-studio")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A writable copy of a fixture model, to break on purpose.
fn model_copy(name: &str, tag: &str) -> PathBuf {
    let dir = scratch(tag).join(name);
    copy_dir(&fixtures().join("models").join(name), &dir);
    dir
}

fn assert_bad_input(output: &Output, expected_fragment: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    assert!(!stderr.contains("stack backtrace"), "backtrace: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {stderr}");
    assert!(
        lines[0].contains(expected_fragment),
        "expected {expected_fragment:?} in {:?}",
        lines[0]
    );
}

/// Largest per-channel difference between a written PNG and a fixture reference's `image`.
fn max_diff_from_reference(png: &Path, reference: &str) -> u8 {
    let ours = image::open(png).unwrap().to_rgb8();
    let reference =
        candle_core::safetensors::load(fixtures().join(reference), &candle_core::Device::Cpu)
            .unwrap();
    let expected: Vec<u8> = reference["image"].flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(expected.len(), ours.as_raw().len());
    ours.as_raw()
        .iter()
        .zip(&expected)
        .map(|(&a, &b)| a.abs_diff(b))
        .max()
        .unwrap()
}

fn model_arg(name: &str) -> String {
    fixtures().join("models").join(name).display().to_string()
}

/// `generate --model MODEL --prompt x --output DIR/x.png EXTRA…`, writing into `dir`.
fn generate_quick(model: &Path, dir: &Path, extra: &[&str]) -> Output {
    let out = dir.join("x.png");
    let mut args = vec![
        "--model",
        model.to_str().unwrap(),
        "--prompt",
        "x",
        "--output",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    generate(&args)
}

/// Replaces `from` with `to` in a component's config.json of a model copy.
fn edit_config(model: &Path, component: &str, from: &str, to: &str) {
    let path = model.join(component).join("config.json");
    let config = std::fs::read_to_string(&path).unwrap();
    assert!(config.contains(from), "{from} not in {}", path.display());
    std::fs::write(&path, config.replace(from, to)).unwrap();
}

#[test]
fn generate_matches_diffusers_and_writes_parameters() {
    let out = scratch("ok").join("cat.png");
    let output = generate(&[
        "--model",
        &model_arg("sd1"),
        "--prompt",
        "A photo of an Astronaut riding a horse, on Mars!",
        "--negative-prompt",
        "blurry, low quality",
        "--steps",
        "5",
        "--guidance",
        "7.5",
        "--seed",
        "42",
        "--width",
        "64",
        "--height",
        "64",
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    // PLMS evaluates the UNet steps + 1 times (diffusers repeats its second timestep).
    assert!(stderr.contains("step 6/6"), "progress missing: {stderr}");

    let max = max_diff_from_reference(&out, "cases/sd1_default.safetensors");
    assert!(max <= 2, "image differs from diffusers by {max}/255");

    let text = latent_studio::formats::png::read_png_parameters(&out)
        .unwrap()
        .expect("parameters chunk");
    assert!(text.starts_with("A photo of an Astronaut riding a horse, on Mars!\nNegative prompt: blurry, low quality\n"), "{text}");
    assert!(
        text.contains("Steps: 5, Sampler: PLMS, CFG scale: 7.5, Seed: 42, Size: 64x64, Model: sd1"),
        "{text}"
    );
}

#[test]
fn batch_count_numbers_files_and_seeds() {
    let dir = scratch("batch");
    let out = dir.join("turbo.png");
    let output = generate(&[
        "--model",
        &model_arg("sd_turbo"),
        "--prompt",
        "a cat",
        "--seed",
        "7",
        "--batch-count",
        "2",
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for (index, seed) in [(1, 7), (2, 8)] {
        let path = dir.join(format!("turbo-{index}.png"));
        let text = latent_studio::formats::png::read_png_parameters(&path)
            .unwrap()
            .unwrap();
        assert!(text.contains(&format!("Seed: {seed},")), "{text}");
        // Turbo defaults: one step, no guidance, the model's native size.
        assert!(
            text.contains("Steps: 1,")
                && text.contains("CFG scale: 0,")
                && text.contains("Size: 64x64"),
            "{text}"
        );
    }
}

#[test]
fn missing_model_folder_is_one_line() {
    let output = generate_quick(Path::new("/nonexistent/model"), &scratch("missing"), &[]);
    assert_bad_input(&output, "/nonexistent/model");
}

#[test]
fn truncated_weights_name_the_file() {
    let model = model_copy("sd1", "truncated");
    let weights = model.join("unet/diffusion_pytorch_model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    let output = generate_quick(&model, &model, &[]);
    assert_bad_input(&output, "diffusion_pytorch_model.safetensors");
}

#[test]
fn garbage_weights_name_the_file() {
    let model = model_copy("sd1", "garbage");
    std::fs::write(
        model.join("vae/diffusion_pytorch_model.safetensors"),
        b"not a safetensors file",
    )
    .unwrap();
    let output = generate_quick(&model, &model, &[]);
    assert_bad_input(&output, "vae");
}

#[test]
fn shape_mismatch_names_tensor_and_shapes() {
    let model = model_copy("sd1", "shape");
    edit_config(
        &model,
        "unet",
        "\"cross_attention_dim\": 32",
        "\"cross_attention_dim\": 48",
    );
    let output = generate_quick(&model, &model, &[]);
    assert_bad_input(&output, "attn2.to_k.weight");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("[32, 48]") && stderr.contains("[32, 32]"),
        "{stderr}"
    );
}

#[test]
fn unsupported_config_value_is_named() {
    let model = model_copy("sd1", "unsupported");
    edit_config(
        &model,
        "unet",
        "\"act_fn\": \"silu\"",
        "\"act_fn\": \"mish\"",
    );
    let output = generate_quick(&model, &model, &[]);
    assert_bad_input(&output, "act_fn");
}

#[test]
fn config_numbers_that_size_allocations_are_bounded() {
    let cases = [
        (
            "unet",
            "\"sample_size\": 8",
            "\"sample_size\": 1048576",
            "sample_size",
        ),
        (
            "unet",
            "\"layers_per_block\": 2",
            "\"layers_per_block\": 0",
            "layers_per_block",
        ),
        (
            "vae",
            "\"layers_per_block\": 1",
            "\"layers_per_block\": 4000000000",
            "layers_per_block",
        ),
        (
            "scheduler",
            "\"num_train_timesteps\": 1000",
            "\"num_train_timesteps\": 1152921504606846976",
            "num_train_timesteps",
        ),
    ];
    for (component, from, to, named) in cases {
        let model = model_copy("sd1", &format!("bounds-{component}-{named}"));
        let config = if component == "scheduler" {
            model.join("scheduler").join("scheduler_config.json")
        } else {
            model.join(component).join("config.json")
        };
        let text = std::fs::read_to_string(&config).unwrap();
        assert!(text.contains(from), "{from} not in {}", config.display());
        std::fs::write(&config, text.replace(from, to)).unwrap();
        let output = generate_quick(&model, &model, &[]);
        assert_bad_input(&output, named);
    }
}

#[test]
fn a_fifo_named_config_json_is_refused_not_waited_on() {
    let model = model_copy("sd1", "fifo");
    let config = model.join("unet").join("config.json");
    std::fs::remove_file(&config).unwrap();
    let made = std::process::Command::new("mkfifo").arg(&config).status();
    if !made.is_ok_and(|s| s.success()) {
        return; // no mkfifo here: nothing to test
    }
    let output = generate_quick(&model, &model, &[]);
    assert_bad_input(&output, "not a regular file");
}

#[test]
fn size_must_be_a_multiple_of_8() {
    let model = fixtures().join("models/sd1");
    let output = generate_quick(&model, &scratch("size"), &["--width", "100"]);
    assert_bad_input(&output, "--width 100");
}

#[test]
fn unknown_scheduler_lists_valid_ones() {
    let model = fixtures().join("models/sd1");
    let output = generate_quick(&model, &scratch("sched"), &["--scheduler", "dpmpp-sde"]);
    assert_bad_input(&output, "dpmpp-2m-karras");
}

#[test]
fn unreadable_init_image_is_named() {
    let dir = scratch("init");
    let bad = dir.join("init.png");
    std::fs::write(&bad, b"definitely not a png").unwrap();
    let model = fixtures().join("models/sd1");
    let output = generate_quick(
        &model,
        &dir,
        &["--init-image", bad.to_str().unwrap(), "--strength", "0.5"],
    );
    assert_bad_input(&output, "--init-image");
}

#[test]
fn img2img_takes_the_init_image_size_and_matches_diffusers() {
    let out = scratch("img2img").join("sunrise.png");
    let init = fixtures().join("init_64.png");
    let output = generate(&[
        "--model",
        &model_arg("sd1"),
        "--prompt",
        "A watercolor painting of a Sunrise",
        "--init-image",
        init.to_str().unwrap(),
        "--strength",
        "0.6",
        "--scheduler",
        "ddim",
        "--steps",
        "5",
        "--guidance",
        "7.5",
        "--seed",
        "60",
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(image::open(&out).unwrap().to_rgb8().dimensions(), (64, 64));
    let max = max_diff_from_reference(&out, "cases/sd1_img2img_ddim.safetensors");
    assert!(max <= 2, "img2img differs from diffusers by {max}/255");
    let text = latent_studio::formats::png::read_png_parameters(&out)
        .unwrap()
        .unwrap();
    assert!(
        text.contains("Sampler: DDIM") && text.contains("Denoising strength: 0.6"),
        "{text}"
    );
}

/// A catalog id given to `--model` is found in the Hugging Face cache without any network
/// (the endpoint points at a closed port), and the image records the repository as the model.
#[test]
fn hub_id_is_served_from_the_hugging_face_cache() {
    let cache = scratch("hf-cache");
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let repo = cache.join("models--stabilityai--sd-turbo");
    copy_dir(
        &fixtures().join("models/sd_turbo"),
        &repo.join("snapshots").join(commit),
    );
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), commit).unwrap();
    let out = cache.join("turbo.png");
    let output = Command::new(env!("CARGO_BIN_EXE_latent-studio"))
        .args([
            "generate",
            "--model",
            "stabilityai/sd-turbo",
            "--prompt",
            "a cat",
            "--seed",
            "3",
        ])
        .args(["--output", out.to_str().unwrap()])
        .env("HF_HUB_CACHE", &cache)
        .env("HF_ENDPOINT", "http://127.0.0.1:9")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = latent_studio::formats::png::read_png_parameters(&out)
        .unwrap()
        .unwrap();
    assert!(text.contains("Model: stabilityai/sd-turbo"), "{text}");
}

/// Any hub id or URL may be given; a pickle is refused by its name, before any download.
#[test]
fn a_pickle_named_as_the_model_is_refused_before_any_download() {
    for model in [
        "someone/not-a-model/model.ckpt",
        "https://example.invalid/files/model.pt",
    ] {
        let output = generate_quick(Path::new(model), &scratch("pickle-hub"), &[]);
        assert_bad_input(&output, "pickle");
    }
}

#[test]
fn single_file_with_lora_matches_diffusers_and_records_hashes() {
    let dir = scratch("single-lora");
    let out = dir.join("fox.png");
    let single = fixtures().join("formats/single/sd1.safetensors");
    let lora = fixtures().join("formats/loras/sd1_peft.safetensors");
    let lora_flag = format!("{}:1.0", lora.display());
    let output = Command::new(env!("CARGO_BIN_EXE_latent-studio"))
        .env("XDG_CACHE_HOME", dir.join("cache"))
        .args([
            "generate",
            "--model",
            single.to_str().unwrap(),
            "--model-config",
            &model_arg("sd1"),
            "--lora",
            &lora_flag,
            "--prompt",
            "a red fox in the snow, photo",
            "--negative-prompt",
            "blurry",
            "--steps",
            "4",
            "--guidance",
            "7.5",
            "--seed",
            "102",
            "--width",
            "64",
            "--height",
            "64",
            "--clip-skip",
            "1",
            "--output",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let max = max_diff_from_reference(&out, "formats/cases/lora_sd1_peft_single.safetensors");
    assert!(max <= 2, "image differs from diffusers by {max}/255");

    let text = latent_studio::formats::png::read_png_parameters(&out)
        .unwrap()
        .expect("parameters chunk");
    let sha = |path: &Path| latent_studio::models::hashes::sha256_file(path).unwrap();
    let model_hash = format!("Model hash: {}, Model: sd1,", &sha(&single)[..10]);
    let lora_hashes = format!("Lora hashes: \"sd1_peft: {}\"", &sha(&lora)[..12]);
    // The LoRA came from --lora, so the record carries it as a prompt tag A1111 understands.
    assert!(
        text.starts_with("a red fox in the snow, photo <lora:sd1_peft:1>\n"),
        "{text}"
    );
    assert!(text.contains(&model_hash), "{text}");
    assert!(text.contains(&lora_hashes), "{text}");
}

#[test]
fn pickle_checkpoints_are_refused_with_the_reason() {
    let dir = scratch("pickle");
    let ckpt = dir.join("model.ckpt");
    std::fs::write(&ckpt, b"not really a pickle").unwrap();
    let output = generate_quick(&ckpt, &dir, &[]);
    assert_bad_input(&output, "pickle");
    let lora = format!("{}:0.7", ckpt.display());
    let output = generate_quick(&fixtures().join("models/sd1"), &dir, &["--lora", &lora]);
    assert_bad_input(&output, "pickle");
}

#[test]
fn lora_problems_are_one_line() {
    let dir = scratch("lora-bad");
    let model = fixtures().join("models/sd1");
    let output = generate_quick(&model, &dir, &["--lora", "/nowhere/x.safetensors:0.5"]);
    assert_bad_input(&output, "--lora /nowhere/x.safetensors:0.5: no such file");
    let lora_dir = fixtures().join("formats/loras");
    let out = dir.join("x.png");
    let output = generate(&[
        "--model",
        model.to_str().unwrap(),
        "--prompt",
        "a fox <lora:no_such_lora:0.8>",
        "--lora-dir",
        lora_dir.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_bad_input(&output, "no LoRA named \"no_such_lora\"");
    let output = generate_quick(&model, &dir, &["--clip-skip", "0"]);
    assert_bad_input(&output, "--clip-skip");
    let output = generate_quick(&model, &dir, &["--prompt-syntax", "comfy"]);
    assert_bad_input(&output, "--prompt-syntax");
}

#[test]
fn careless_input_is_refused_before_the_model_loads() {
    let dir = scratch("careless");
    let folder = dir.join("folder.png");
    std::fs::create_dir_all(&folder).unwrap();
    // A model that does not exist: each check must fire before anything is loaded.
    let missing = Path::new("/nonexistent/model");
    let cases: [(&[&str], &str); 5] = [
        (&["--guidance", "NaN"], "--guidance NaN"),
        (&["--guidance=-1"], "--guidance -1"),
        (&["--width", "1048576"], "--width 1048576"),
        (&["--height", "1048576"], "--height 1048576"),
        (&["--negative-prompt", "a (cat:1.2.3)"], "--negative-prompt"),
    ];
    for (extra, expected) in cases {
        let output = generate_quick(missing, &dir, extra);
        assert_bad_input(&output, expected);
    }
    let output = generate(&[
        "--model",
        missing.to_str().unwrap(),
        "--prompt",
        "x",
        "--output",
        folder.to_str().unwrap(),
    ]);
    assert_bad_input(&output, "is a folder");
}

#[test]
fn what_only_the_model_can_tell_is_still_one_line_and_exit_2() {
    let dir = scratch("after-load");
    let model = fixtures().join("models/sd1");
    let output = generate_quick(&model, &dir, &["--clip-skip", "50"]);
    assert_bad_input(&output, "clip skip 50");
    let output = generate_quick(&model, &dir, &["--steps", "5000"]);
    assert_bad_input(
        &output,
        "steps: PNDMScheduler: cannot run 5000 inference steps",
    );
    let init = fixtures().join("init_64.png");
    let output = generate_quick(
        &model,
        &dir,
        &[
            "--init-image",
            init.to_str().unwrap(),
            "--strength",
            "0.01",
            "--steps",
            "20",
        ],
    );
    assert_bad_input(&output, "strength 0.01 at 20 steps");
    assert!(pngs_written(&dir).is_empty());
}

fn pngs_written(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect()
}

#[test]
fn a_lora_file_given_as_the_model_is_explained() {
    let dir = scratch("lora-as-model");
    let output = generate_quick(
        &fixtures().join("formats/loras/sd1_kohya.safetensors"),
        &dir,
        &[],
    );
    assert_bad_input(&output, "this is a LoRA");
}

/// `--init-image --mask` with defaults is diffusers' inpainting pipeline (the blend path of a
/// text-to-image model here), and the PNG records A1111's inpainting keys.
#[test]
fn inpainting_matches_diffusers_and_records_a1111_keys() {
    let out = scratch("inpaint").join("path.png");
    let init = fixtures().join("init_64.png");
    let mask = fixtures().join("mask_64.png");
    let output = generate(&[
        "--model",
        &model_arg("sd1"),
        "--prompt",
        "a stone path",
        "--negative-prompt",
        "ugly",
        "--init-image",
        init.to_str().unwrap(),
        "--mask",
        mask.to_str().unwrap(),
        "--scheduler",
        "euler-a",
        "--steps",
        "4",
        "--guidance",
        "5",
        "--seed",
        "75",
        "--prompt-syntax",
        "plain",
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let max = max_diff_from_reference(&out, "inpaint/sd1_4ch_euler_a.safetensors");
    assert!(max <= 1, "inpainting differs from diffusers by {max}/255");
    let text = latent_studio::formats::png::read_png_parameters(&out)
        .unwrap()
        .unwrap();
    assert!(
        text.contains("Denoising strength: 1") && text.contains("Mask blur: 0"),
        "{text}"
    );
}

/// Outpainting grows the canvas (and so the default size), "only masked" pastes back at the
/// picture's size, and the record says so.
#[test]
fn outpainting_grows_the_canvas_and_only_masked_keeps_the_picture_size() {
    let dir = scratch("outpaint");
    let init = fixtures().join("init_64.png");
    let model = fixtures().join("models/sd1");
    let output = generate_quick(
        &model,
        &dir,
        &[
            "--init-image",
            init.to_str().unwrap(),
            "--outpaint",
            "16,0,0,8",
            "--steps",
            "2",
            "--masked-content",
            "fill",
        ],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let grown = image::open(dir.join("x.png")).unwrap().to_rgb8();
    assert_eq!(grown.dimensions(), (80, 72));
    // The kept picture is pasted back only with a blurred mask; here it went through the VAE.
    let mask = fixtures().join("mask_small_64.png");
    let output = generate_quick(
        &model,
        &dir,
        &[
            "--init-image",
            init.to_str().unwrap(),
            "--mask",
            mask.to_str().unwrap(),
            "--inpaint-area",
            "masked",
            "--inpaint-padding",
            "8",
            "--mask-blur",
            "2",
            "--width",
            "32",
            "--height",
            "32",
            "--steps",
            "2",
        ],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let path = dir.join("x.png");
    let result = image::open(&path).unwrap().to_rgb8();
    assert_eq!(result.dimensions(), (64, 64));
    // Far from the mask the original comes back untouched.
    let original = image::open(&init).unwrap().to_rgb8();
    assert_eq!(result.get_pixel(60, 2), original.get_pixel(60, 2));
    let text = latent_studio::formats::png::read_png_parameters(&path)
        .unwrap()
        .unwrap();
    assert!(
        text.contains("Mask blur: 2")
            && text.contains("Inpaint area: Only masked")
            && text.contains("Masked area padding: 8"),
        "{text}"
    );
}

#[test]
fn inpainting_mistakes_are_one_line() {
    let dir = scratch("inpaint-bad");
    let model = fixtures().join("models/sd1");
    let init = fixtures().join("init_64.png");
    let init = init.to_str().unwrap();
    let mask = fixtures().join("mask_64.png");
    let mask = mask.to_str().unwrap();
    let output = generate_quick(&model, &dir, &["--mask", mask]);
    assert_bad_input(&output, "--mask needs --init-image");
    let inputs = dir.join("inputs");
    std::fs::create_dir_all(&inputs).unwrap();
    let black = inputs.join("black.png");
    image::GrayImage::new(64, 64).save(&black).unwrap();
    let output = generate_quick(
        &model,
        &dir,
        &["--init-image", init, "--mask", black.to_str().unwrap()],
    );
    assert_bad_input(&output, "the mask is empty");
    let fake = inputs.join("fake.png");
    std::fs::write(&fake, b"not a picture").unwrap();
    let output = generate_quick(
        &model,
        &dir,
        &["--init-image", init, "--mask", fake.to_str().unwrap()],
    );
    assert_bad_input(&output, "--mask");
    let output = generate_quick(&model, &dir, &["--init-image", init, "--mask-blur", "4"]);
    assert_bad_input(&output, "--mask-blur needs --mask");
    let output = generate_quick(
        &model,
        &dir,
        &[
            "--init-image",
            init,
            "--mask",
            mask,
            "--outpaint",
            "3,0,0,0",
        ],
    );
    assert_bad_input(&output, "multiple of 8");
    let output = generate_quick(
        &model,
        &dir,
        &[
            "--init-image",
            init,
            "--mask",
            mask,
            "--masked-content",
            "sand",
        ],
    );
    assert_bad_input(&output, "invalid value 'sand' for '--masked-content");
    // An inpainting model needs a mask.
    let scratch_models = dir.join("models");
    let inpainting = model_with_unet("sd1", "sd1_inpaint_unet", &scratch_models);
    let output = generate_quick(&inpainting, &dir, &[]);
    assert_bad_input(&output, "this is an inpainting model");
    assert!(pngs_written(&dir).is_empty());
}

/// The fixture model `base` with the fixture UNet folder `unet` in place of its own.
fn model_with_unet(base: &str, unet: &str, scratch: &Path) -> PathBuf {
    let target = scratch.join(format!("{base}+{unet}"));
    copy_dir(&fixtures().join("models").join(base), &target);
    std::fs::remove_dir_all(target.join("unet")).unwrap();
    copy_dir(&fixtures().join("models").join(unet), &target.join("unet"));
    target
}

/// `--controlnet DIR --control-image IMG` with `--control-preprocess none` is diffusers'
/// ControlNet pipeline; the PNG records the unit as sd-webui-controlnet does.
#[test]
fn controlnet_matches_diffusers_and_records_the_unit() {
    let out = scratch("controlnet").join("house.png");
    let controlnet = fixtures().join("models/sd1_controlnet");
    let lines = fixtures().join("control_lines_64.png");
    let output = generate(&[
        "--model",
        &model_arg("sd1"),
        "--prompt",
        "a house by a lake",
        "--negative-prompt",
        "blurry",
        "--controlnet",
        controlnet.to_str().unwrap(),
        "--control-image",
        lines.to_str().unwrap(),
        "--control-preprocess",
        "none",
        "--scheduler",
        "euler",
        "--steps",
        "4",
        "--guidance",
        "5",
        "--seed",
        "80",
        "--width",
        "64",
        "--height",
        "64",
        "--prompt-syntax",
        "plain",
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let max = max_diff_from_reference(&out, "controlnet/sd1_single.safetensors");
    assert!(max <= 1, "ControlNet differs from diffusers by {max}/255");
    let text = latent_studio::formats::png::read_png_parameters(&out)
        .unwrap()
        .unwrap();
    assert!(
        text.contains("ControlNet 0: \"Module: none, Model: sd1_controlnet, Weight: 1,"),
        "{text}"
    );
}

/// `--control-preprocess scribble_xdog --control-threshold-a 20` makes the library's XDoG
/// map of the picture and generates exactly what that map given with `none` generates; the
/// PNG records the module and its setting as sd-webui-controlnet does.
#[test]
fn an_xdog_unit_generates_from_its_map_and_records_its_threshold() {
    let dir = scratch("controlnet-xdog");
    let controlnet = fixtures().join("models/sd1_controlnet");
    // Dark lines on white, what XDoG looks for.
    let lines = image::open(fixtures().join("control_lines_64.png"))
        .unwrap()
        .to_rgb8();
    let mut sketch = lines.clone();
    image::imageops::invert(&mut sketch);
    let sketch_path = dir.join("sketch.png");
    sketch.save(&sketch_path).unwrap();
    let map = latent_studio::engine::ControlPreprocessor::ScribbleXdog { threshold: 20 }
        .apply(&latent_studio::engine::RgbImage::from(sketch))
        .unwrap();
    assert!(map.pixels.contains(&255) && map.pixels.contains(&0));
    let map_path = dir.join("map.png");
    image::RgbImage::from_raw(64, 64, map.pixels)
        .unwrap()
        .save(&map_path)
        .unwrap();
    let run = |picture: &Path, preprocess: &[&str], out: &Path| {
        let mut args = vec![
            "--model".to_string(),
            model_arg("sd1"),
            "--prompt".into(),
            "a house by a lake".into(),
            "--controlnet".into(),
            controlnet.to_str().unwrap().into(),
            "--control-image".into(),
            picture.to_str().unwrap().into(),
            "--steps".into(),
            "2".into(),
            "--seed".into(),
            "81".into(),
            "--width".into(),
            "64".into(),
            "--height".into(),
            "64".into(),
            "--output".into(),
            out.to_str().unwrap().into(),
        ];
        args.extend(preprocess.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = generate(&args);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        image::open(out).unwrap().to_rgb8()
    };
    let from_xdog = run(
        &sketch_path,
        &[
            "--control-preprocess",
            "scribble_xdog",
            "--control-threshold-a",
            "20",
        ],
        &dir.join("xdog.png"),
    );
    let from_map = run(
        &map_path,
        &["--control-preprocess", "none"],
        &dir.join("map-out.png"),
    );
    assert!(from_xdog == from_map, "the XDoG unit did not read its map");
    let text = latent_studio::formats::png::read_png_parameters(&dir.join("xdog.png"))
        .unwrap()
        .unwrap();
    assert!(
        text.contains("ControlNet 0: \"Module: scribble_xdog, Model: sd1_controlnet, Weight: 1, Resize Mode: Just Resize, Threshold A: 20, Guidance Start"),
        "{text}"
    );
}

/// A tile_resample map is smaller than the image; the generation resizes it as any map, and
/// the record carries the rate as A1111 writes it.
#[test]
fn a_tile_resample_unit_generates_and_records_its_rate() {
    let dir = scratch("controlnet-tile");
    let controlnet = fixtures().join("models/sd1_controlnet");
    let picture = fixtures().join("init_64.png");
    let output = generate_quick(
        &fixtures().join("models/sd1"),
        &dir,
        &[
            "--controlnet",
            controlnet.to_str().unwrap(),
            "--control-image",
            picture.to_str().unwrap(),
            "--control-preprocess",
            "tile_resample",
            "--control-threshold-a",
            "2.5",
            "--steps",
            "1",
            "--width",
            "64",
            "--height",
            "64",
        ],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = latent_studio::formats::png::read_png_parameters(&dir.join("x.png"))
        .unwrap()
        .unwrap();
    assert!(
        text.contains("\"Module: tile_resample, Model: sd1_controlnet, Weight: 1, Resize Mode: Just Resize, Threshold A: 2.5, Guidance Start"),
        "{text}"
    );
}

#[test]
fn controlnet_mistakes_are_one_line() {
    let dir = scratch("controlnet-bad");
    let model = fixtures().join("models/sd1");
    let sd1_net = fixtures().join("models/sd1_controlnet");
    let sd1_net = sd1_net.to_str().unwrap();
    let xl_net = fixtures().join("models/sdxl_controlnet");
    let lines = fixtures().join("control_lines_64.png");
    let lines = lines.to_str().unwrap();
    let output = generate_quick(
        &model,
        &dir,
        &[
            "--controlnet",
            xl_net.to_str().unwrap(),
            "--control-image",
            lines,
            "--steps",
            "1",
        ],
    );
    assert_bad_input(&output, "ControlNet 0: it is made for SDXL models");
    let output = generate_quick(&model, &dir, &["--controlnet", sd1_net]);
    assert_bad_input(
        &output,
        "--control-image is given 0 times for 1 --controlnet",
    );
    let output = generate_quick(
        &model,
        &dir,
        &[
            "--controlnet",
            sd1_net,
            "--control-image",
            lines,
            "--control-scale",
            "1",
            "--control-scale",
            "2",
        ],
    );
    assert_bad_input(
        &output,
        "--control-scale is given 2 times for 1 --controlnet",
    );
    let inputs = dir.join("inputs");
    std::fs::create_dir_all(&inputs).unwrap();
    let fake = inputs.join("fake.png");
    std::fs::write(&fake, b"not a picture").unwrap();
    let output = generate_quick(
        &model,
        &dir,
        &[
            "--controlnet",
            sd1_net,
            "--control-image",
            fake.to_str().unwrap(),
        ],
    );
    assert_bad_input(&output, "--control-image");
    let output = generate_quick(&model, &dir, &["--control-image", lines]);
    assert_bad_input(&output, "--control-image needs --controlnet");
    let output = generate_quick(
        &model,
        &dir,
        &[
            "--controlnet",
            sd1_net,
            "--control-image",
            lines,
            "--control-preprocess",
            "openpose",
        ],
    );
    assert_bad_input(
        &output,
        "invalid value 'openpose' for '--control-preprocess",
    );
    let with_setting = |preprocess: &str, flag: &str, value: &str| {
        generate_quick(
            &model,
            &dir,
            &[
                "--controlnet",
                sd1_net,
                "--control-image",
                lines,
                "--control-preprocess",
                preprocess,
                flag,
                value,
            ],
        )
    };
    assert_bad_input(
        &with_setting("scribble_xdog", "--control-threshold-a", "70"),
        "--control-threshold-a: Threshold A 70 is out of range for scribble_xdog's XDoG Threshold: use 1 to 64",
    );
    assert_bad_input(
        &with_setting("threshold", "--control-threshold-b", "5"),
        "--control-threshold-b: threshold has no Threshold B setting",
    );
    assert_bad_input(
        &with_setting("tile_resample", "--control-threshold-a", "0.5"),
        "--control-threshold-a: Threshold A 0.5 is out of range for tile_resample's Down Sampling Rate: use 1 to 8",
    );
    assert!(pngs_written(&dir).is_empty());
}

/// A T2I-Adapter folder given to `--controlnet` runs as diffusers' adapter pipeline; one made
/// for SDXL is refused on SD 1 in one line, naming the unit.
#[test]
fn t2i_adapters_go_through_the_controlnet_flags() {
    let dir = scratch("adapter");
    let out = dir.join("house.png");
    let adapter = fixtures().join("models/sd1_adapter");
    let lines = fixtures().join("control_lines_64.png");
    let output = generate(&[
        "--model",
        &model_arg("sd1"),
        "--prompt",
        "a house by a lake",
        "--negative-prompt",
        "blurry",
        "--controlnet",
        adapter.to_str().unwrap(),
        "--control-image",
        lines.to_str().unwrap(),
        "--control-scale",
        "2.5",
        "--scheduler",
        "euler",
        "--steps",
        "4",
        "--guidance",
        "5",
        "--seed",
        "90",
        "--width",
        "64",
        "--height",
        "64",
        "--prompt-syntax",
        "plain",
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let max = max_diff_from_reference(&out, "adapter/sd1_full.safetensors");
    assert!(
        max <= 1,
        "the T2I-Adapter run differs from diffusers by {max}/255"
    );

    let xl_adapter = fixtures().join("models/sdxl_adapter");
    let output = generate_quick(
        &fixtures().join("models/sd1"),
        &dir,
        &[
            "--controlnet",
            xl_adapter.to_str().unwrap(),
            "--control-image",
            lines.to_str().unwrap(),
            "--steps",
            "1",
        ],
    );
    assert_bad_input(&output, "T2I-Adapter 0: it is made for SDXL models");
}

/// A variation seed at full strength starts from that seed's noise: with a sampler that draws
/// nothing more, the image is the variation seed's own; the PNG records both seeds.
#[test]
fn variation_seed_at_full_strength_is_that_seeds_image() {
    let dir = scratch("variation");
    let model = fixtures().join("models/sd1");
    let common = [
        "--scheduler",
        "euler",
        "--steps",
        "3",
        "--width",
        "64",
        "--height",
        "64",
    ];
    let plain = dir.join("plain.png");
    let mut args = vec![
        "--model",
        model.to_str().unwrap(),
        "--prompt",
        "x",
        "--seed",
        "42",
    ];
    args.extend_from_slice(&common);
    args.extend_from_slice(&["--output", plain.to_str().unwrap()]);
    assert!(generate(&args).status.success());
    let varied = dir.join("varied.png");
    let mut args = vec![
        "--model",
        model.to_str().unwrap(),
        "--prompt",
        "x",
        "--seed",
        "3",
    ];
    args.extend_from_slice(&common);
    args.extend_from_slice(&[
        "--variation-seed",
        "42",
        "--variation-strength",
        "1",
        "--output",
        varied.to_str().unwrap(),
    ]);
    let output = generate(&args);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        image::open(&plain).unwrap().to_rgb8(),
        image::open(&varied).unwrap().to_rgb8()
    );
    let text = latent_studio::formats::png::read_png_parameters(&varied)
        .unwrap()
        .unwrap();
    assert!(
        text.contains("Seed: 3,")
            && text.contains("Variation seed: 42, Variation seed strength: 1"),
        "{text}"
    );
    let output = generate_quick(&model, &dir, &["--variation-seed", "5"]);
    assert_bad_input(
        &output,
        "--variation-seed and --variation-strength go together",
    );
}

/// `--json` prints one object per image for scripts; `--help` explains every flag and lists
/// the values of the enumerated ones.
#[test]
fn json_lines_and_help_on_every_flag() {
    let dir = scratch("json");
    let model = fixtures().join("models/sd1");
    let output = generate_quick(
        &model,
        &dir,
        &[
            "--steps",
            "1",
            "--batch-count",
            "2",
            "--seed",
            "9",
            "--json",
        ],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}")))
        .collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert_eq!(lines[1]["seed"], 10);
    assert!(lines[0]["path"].as_str().unwrap().ends_with("x-1.png"));
    assert!(lines[0]["parameters"].as_str().unwrap().contains("Seed: 9"));
    assert!(lines[0]["seconds"].as_f64().is_some());

    let help = Command::new(env!("CARGO_BIN_EXE_latent-studio"))
        .args(["generate", "--help"])
        .output()
        .unwrap();
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let flag = line.trim_start();
        if flag.starts_with("--") && !flag.starts_with("--help") && !flag.starts_with("--version") {
            let described = lines.get(i + 1).is_some_and(|next| {
                let next = next.trim();
                !next.is_empty() && !next.starts_with('-')
            });
            assert!(described, "no help for {flag}");
        }
    }
    for values in [
        "[possible values: default, ddim",
        "[possible values: a1111, plain]",
        "[possible values: cpu, cuda, metal]",
    ] {
        assert!(text.contains(values), "{values} missing from --help");
    }
}

fn upscale(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_latent-studio"))
        .arg("upscale")
        .args(args)
        .output()
        .expect("run latent-studio")
}

/// `upscale` end to end: a PNG in, spandrel's 8-bit picture out (the Real-ESRGAN ×2 fixture,
/// pixel-unshuffled from an odd size), the input's A1111 parameters kept, and the default
/// output name beside the input, never replacing a file.
#[test]
fn upscale_matches_spandrel_and_keeps_the_parameters() {
    let dir = scratch("upscale");
    let references = candle_core::safetensors::load(
        fixtures().join("upscalers/references.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let case = "esrgan_new_x2_unshuffle";
    let input = &references[&format!("{case}.input")];
    let (height, width, _) = input.dims3().unwrap();
    let pixels: Vec<u8> = input.flatten_all().unwrap().to_vec1().unwrap();
    let picture = dir.join("small.png");
    latent_studio::engine::write_png_with_parameters(
        &picture,
        &pixels,
        width as u32,
        height as u32,
        "a cat\nSteps: 20, Seed: 7",
    )
    .unwrap();
    let model = fixtures().join(format!("upscalers/{case}.safetensors"));
    let args = [
        "--model",
        model.to_str().unwrap(),
        "--input",
        picture.to_str().unwrap(),
    ];
    let output = upscale(&args);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let written = dir.join("small-x2.png");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        written.to_str().unwrap()
    );
    let ours = image::open(&written).unwrap().to_rgb8();
    assert_eq!(
        (ours.width() as usize, ours.height() as usize),
        (2 * width, 2 * height)
    );
    let expected: Vec<u8> = references[&format!("{case}.image")]
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let max = ours
        .as_raw()
        .iter()
        .zip(&expected)
        .map(|(&a, &b)| a.abs_diff(b))
        .max();
    assert!(max <= Some(1), "max difference {max:?}");
    let parameters = latent_studio::engine::read_png_parameters(&written).unwrap();
    assert_eq!(parameters.as_deref(), Some("a cat\nSteps: 20, Seed: 7"));
    // Run again: the default output exists and is not replaced.
    assert_bad_input(&upscale(&args), "exists");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn upscale_mistakes_are_one_line() {
    let dir = scratch("upscale-mistakes");
    let picture = fixtures().join("init_64.png");
    let picture = picture.to_str().unwrap();
    let model = fixtures().join("upscalers/compact_x4.safetensors");
    let model = model.to_str().unwrap();
    let pickle = dir.join("4x-UltraSharp.pth");
    std::fs::write(&pickle, b"not opened").unwrap();
    let vae = fixtures().join("models/sd1/vae/diffusion_pytorch_model.safetensors");
    let truncated = dir.join("truncated.safetensors");
    let bytes = std::fs::read(fixtures().join("upscalers/compact_x4.safetensors")).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() - 100]).unwrap();
    let out = dir.join("out.png");
    let out = out.to_str().unwrap();
    let cases: [(&[&str], &str); 7] = [
        (
            &[
                "--model",
                pickle.to_str().unwrap(),
                "--input",
                picture,
                "--output",
                out,
            ],
            "pickle",
        ),
        (
            &[
                "--model",
                vae.to_str().unwrap(),
                "--input",
                picture,
                "--output",
                out,
            ],
            "this is a VAE",
        ),
        (
            &[
                "--model",
                truncated.to_str().unwrap(),
                "--input",
                picture,
                "--output",
                out,
            ],
            "outside the file",
        ),
        (
            &[
                "--model",
                model,
                "--input",
                "/nonexistent.png",
                "--output",
                out,
            ],
            "--input",
        ),
        (
            &["--model", model, "--input", picture, "--output", "x.jpg"],
            "must end in .png",
        ),
        (
            &[
                "--model", model, "--input", picture, "--output", out, "--tile", "8",
            ],
            "--tile 8",
        ),
        (
            &["--model", "/nonexistent.safetensors", "--input", picture],
            "no such file",
        ),
    ];
    for (args, expected) in cases {
        assert_bad_input(&upscale(args), expected);
    }
    assert!(!Path::new(out).exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The hires fix is the base image, enlarged with Lanczos, through diffusers' img2img at the
/// larger size with the same seed: exactly what `--init-image BASE --width --height` gives.
#[test]
fn hires_fix_is_img2img_on_the_enlarged_base_image() {
    let dir = scratch("hires");
    let model = fixtures().join("models/sd1");
    let model = model.to_str().unwrap();
    let common = [
        "--prompt",
        "a castle",
        "--seed",
        "5",
        "--scheduler",
        "euler",
    ];
    let run = |extra: &[&str], out: &Path| {
        let mut args = vec!["--model", model];
        args.extend_from_slice(&common);
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--output", out.to_str().unwrap()]);
        let output = generate(&args);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let base = dir.join("base.png");
    run(&["--width", "64", "--height", "48", "--steps", "3"], &base);
    let hires = dir.join("hires.png");
    run(
        &[
            "--width",
            "64",
            "--height",
            "48",
            "--steps",
            "3",
            "--hires-scale",
            "1.5",
            "--hires-steps",
            "4",
            "--hires-denoise",
            "0.6",
        ],
        &hires,
    );
    let by_hand = dir.join("by-hand.png");
    run(
        &[
            "--init-image",
            base.to_str().unwrap(),
            "--width",
            "96",
            "--height",
            "72",
            "--steps",
            "4",
            "--strength",
            "0.6",
        ],
        &by_hand,
    );
    let hires_image = image::open(&hires).unwrap().to_rgb8();
    assert_eq!(hires_image.dimensions(), (96, 72));
    assert_eq!(hires_image, image::open(&by_hand).unwrap().to_rgb8());
    let text = latent_studio::formats::png::read_png_parameters(&hires)
        .unwrap()
        .unwrap();
    assert!(
        text.contains("Size: 64x48")
            && text.contains("Denoising strength: 0.6")
            && text.contains("Hires upscale: 1.5, Hires steps: 4, Hires upscaler: Lanczos"),
        "{text}"
    );
    let output = generate_quick(Path::new(model), &dir, &["--hires-denoise", "0.5"]);
    assert_bad_input(&output, "--hires-denoise needs --hires-scale");

    // The second pass's own prompt and sampler (A1111's Hires prompt / Hires sampler): the
    // same as img2img with them on the enlarged base image, recorded with A1111's keys.
    let own = dir.join("own.png");
    run(
        &[
            "--width",
            "64",
            "--height",
            "48",
            "--steps",
            "3",
            "--hires-scale",
            "1.5",
            "--hires-steps",
            "4",
            "--hires-denoise",
            "0.6",
            "--hires-prompt",
            "a red castle, at dusk",
            "--hires-sampler",
            "dpmpp-2m-karras",
        ],
        &own,
    );
    let own_by_hand = dir.join("own-by-hand.png");
    let output = generate(&[
        "--model",
        model,
        "--seed",
        "5",
        "--init-image",
        base.to_str().unwrap(),
        "--width",
        "96",
        "--height",
        "72",
        "--steps",
        "4",
        "--strength",
        "0.6",
        "--prompt",
        "a red castle, at dusk",
        "--scheduler",
        "dpmpp-2m-karras",
        "--output",
        own_by_hand.to_str().unwrap(),
    ]);
    assert!(output.status.success());
    let own_image = image::open(&own).unwrap().to_rgb8();
    assert_eq!(own_image, image::open(&own_by_hand).unwrap().to_rgb8());
    assert_ne!(own_image, hires_image);
    let text = latent_studio::formats::png::read_png_parameters(&own)
        .unwrap()
        .unwrap();
    assert!(
        text.contains("Hires prompt: \"a red castle, at dusk\", Hires sampler: DPM++ 2M, Hires schedule type: Karras"),
        "{text}"
    );
    let output = generate_quick(Path::new(model), &dir, &["--hires-prompt", "x"]);
    assert_bad_input(&output, "--hires-prompt needs --hires-scale");

    // A latent upscaler: the base's latents resized, then img2img from them (its parity with
    // diffusers and torch is in tests/parity.rs); A1111's name in the PNG.
    let latent = dir.join("latent.png");
    run(
        &[
            "--width",
            "64",
            "--height",
            "48",
            "--steps",
            "3",
            "--hires-scale",
            "1.5",
            "--hires-upscaler",
            "latent-nearest",
        ],
        &latent,
    );
    assert_eq!(
        image::open(&latent).unwrap().to_rgb8().dimensions(),
        (96, 72)
    );
    let text = latent_studio::formats::png::read_png_parameters(&latent)
        .unwrap()
        .unwrap();
    assert!(text.contains("Hires upscaler: Latent (nearest)"), "{text}");
    let output = generate_quick(
        Path::new(model),
        &dir,
        &["--hires-scale", "2", "--hires-upscaler", "latent-fancy"],
    );
    assert_bad_input(
        &output,
        "--hires-upscaler latent-fancy: neither lanczos, latent",
    );
}

/// Largest per-channel difference between two PNGs of the same size.
fn max_png_diff(a: &Path, b: &Path) -> u8 {
    let a = image::open(a).unwrap().to_rgb8();
    let b = image::open(b).unwrap().to_rgb8();
    assert_eq!(a.dimensions(), b.dimensions());
    a.as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(&x, &y)| x.abs_diff(y))
        .max()
        .unwrap()
}

/// `--batch-size` denoises images together; each equals the separate run with its seed (A1111
/// numbering: seeds run on across the batch count), for an ancestral sampler with guidance
/// (its own random stream per image), for img2img (its own VAE sample per image) and for
/// SDXL (pooled text and size conditions repeated per image).
#[test]
fn batch_size_images_equal_separate_runs_with_their_seeds() {
    let init = fixtures().join("init_64.png");
    let cases: [(&str, &str, Vec<&str>); 3] = [
        ("txt", "sd1", vec!["--scheduler", "euler-a", "--steps", "3"]),
        ("xl", "sdxl", vec!["--steps", "3"]),
        (
            "img",
            "sd1",
            vec![
                "--init-image",
                init.to_str().unwrap(),
                "--strength",
                "0.7",
                "--steps",
                "4",
            ],
        ),
    ];
    for (tag, model, settings) in cases {
        let model = fixtures().join("models").join(model);
        let dir = scratch(&format!("batch-size-{tag}"));
        let mut args = vec![
            "--seed",
            "7",
            "--guidance",
            "6",
            "--batch-size",
            "2",
            "--batch-count",
            "2",
        ];
        args.extend(&settings);
        let output = generate_quick(&model, &dir, &args);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        for (index, seed) in [(1, 7), (2, 8), (3, 9), (4, 10)] {
            let batched = dir.join(format!("x-{index}.png"));
            let text = latent_studio::formats::png::read_png_parameters(&batched)
                .unwrap()
                .unwrap();
            assert!(text.contains(&format!("Seed: {seed},")), "{text}");
            if index % 2 == 1 {
                continue;
            }
            // The second image of each batch against its own run.
            let single_dir = scratch(&format!("batch-size-{tag}-{seed}"));
            let seed_text = seed.to_string();
            let mut args = vec!["--seed", seed_text.as_str(), "--guidance", "6"];
            args.extend(&settings);
            let output = generate_quick(&model, &single_dir, &args);
            assert!(output.status.success());
            let diff = max_png_diff(&batched, &single_dir.join("x.png"));
            assert!(diff <= 1, "{tag} seed {seed}: max difference {diff}/255");
        }
    }

    let model = fixtures().join("models").join("sd1");
    let dir = scratch("batch-size-bad");
    assert_bad_input(
        &generate_quick(&model, &dir, &["--batch-size", "9"]),
        "--batch-size 9",
    );
    assert_bad_input(
        &generate_quick(&model, &dir, &["--batch-size", "0"]),
        "--batch-size 0",
    );
}

/// `--decoder taesd` decodes the finished image with the tiny autoencoder and says so in the
/// PNG; a tiny autoencoder that cannot be read leaves the full VAE in use, with a notice.
#[test]
fn fast_decode_is_recorded_and_falls_back_to_the_vae() {
    let dir = scratch("fast-decode");
    let model = fixtures().join("models/sd1");
    let tiny = fixtures().join("models/taesd_tiny");
    let output = generate_quick(
        &model,
        &dir,
        &[
            "--width",
            "64",
            "--height",
            "64",
            "--steps",
            "2",
            "--decoder",
            "taesd",
            "--tiny-vae",
            tiny.to_str().unwrap(),
        ],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = latent_studio::formats::png::read_png_parameters(&dir.join("x.png"))
        .unwrap()
        .unwrap();
    assert!(text.contains("Fast decode: taesd_tiny"), "{text}");

    let missing = dir.join("no-such-taesd");
    let output = generate_quick(
        &model,
        &dir,
        &[
            "--width",
            "64",
            "--height",
            "64",
            "--steps",
            "2",
            "--decoder",
            "taesd",
            "--tiny-vae",
            missing.to_str().unwrap(),
        ],
    );
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("tiny VAE not available"));
    let text = latent_studio::formats::png::read_png_parameters(&dir.join("x.png"))
        .unwrap()
        .unwrap();
    assert!(!text.contains("Fast decode"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--version` names the commit (the About window shows the same), and a first argument that
/// is neither a subcommand nor a picture is one clear error instead of an empty window.
#[test]
fn version_names_the_commit_and_a_missing_picture_is_an_error() {
    let bin = env!("CARGO_BIN_EXE_latent-studio");
    let version = Command::new(bin).arg("--version").output().unwrap();
    assert!(version.status.success());
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("latent-studio {}", latent_studio::VERSION)
    );
    assert!(!latent_studio::GIT_COMMIT.is_empty());

    let missing = Command::new(bin)
        .arg("no-such-picture.png")
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        stderr.starts_with("error: no-such-picture.png: no such picture"),
        "{stderr}"
    );
}
