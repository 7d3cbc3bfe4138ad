//! `latent-studio generate`: one or more images from a prompt, written as PNG with A1111
//! `parameters` metadata.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use latent_studio::engine::{
    check_prompt, default_embeddings_dir, default_lora_dir, random_seed, read_picture,
    upscaler_repo_file, AddOnFolders, DownloadProgress, FinishedImage, GenerateJob,
    GenerationFailure, GenerationRequest, HiresFix, HiresOverrides, HiresUpscaler, ImageOutput,
    ImageStep, InitImage, LoadFailure, LoadOptions, ModelSource, PreviewMode, PromptSyntax,
    RgbImage, RunObserver, Runner, SchedulerKind, Variation, LATENT_UPSCALERS, MAX_BATCH_SIZE,
    MAX_HIRES_SCALE, MAX_IMAGE_SIDE, MIN_HIRES_SCALE,
};

use super::controlnet::ControlArgs;
use super::inpaint::InpaintArgs;
use super::{select_device, select_dtype, CliError, DownloadReports};

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// A diffusers model folder (model_index.json, unet/, vae/, text_encoder/, tokenizer/ …), a
    /// single-file .safetensors checkpoint (A1111 / civitai layout; SD 1.x, 2.x, SDXL), a hub id
    /// (e.g. stabilityai/sd-turbo) or a file in a hub repository (org/name/file.safetensors),
    /// fetched into the Hugging Face cache, or an https:// URL of a .safetensors file, fetched
    /// into the models folder.
    #[arg(long)]
    model: PathBuf,
    /// A VAE .safetensors file to use instead of the model's own (e.g. vae-ft-mse, sdxl-vae-fp16-fix).
    #[arg(long)]
    vae: Option<PathBuf>,
    /// For a single-file --model: a diffusers folder whose configs and tokenizers describe it
    /// (default: the built-in ones for the detected family).
    #[arg(long)]
    model_config: Option<PathBuf>,
    /// A LoRA .safetensors to merge, as FILE or FILE:MULTIPLIER (repeatable).
    #[arg(long = "lora", value_name = "FILE[:MULTIPLIER]")]
    loras: Vec<String>,
    /// Where <lora:NAME:MULT> in the prompt finds NAME.safetensors (default: the app's LoRA folder).
    #[arg(long)]
    lora_dir: Option<PathBuf>,
    /// Textual-inversion embeddings usable by file name in prompts (default: the app's folder).
    #[arg(long)]
    embeddings_dir: Option<PathBuf>,
    /// Decode in overlapping tiles as diffusers' enable_vae_tiling() does: far less memory for
    /// large images, a slightly different result.
    #[arg(long)]
    vae_tiling: bool,
    /// What decodes the finished image: full (the VAE, exact) or taesd (the tiny
    /// autoencoder: much faster, close but not equal; recorded as "Fast decode" in the PNG).
    #[arg(long, default_value = "full", value_parser = ["full", "taesd"])]
    decoder: String,
    /// The tiny autoencoder for --decoder taesd: a diffusers AutoencoderTiny folder or a
    /// taesd_decoder.safetensors (default: madebyollin/taesd or taesdxl from the Hugging Face
    /// cache, downloaded when missing).
    #[arg(long, value_name = "FILE|FOLDER")]
    tiny_vae: Option<PathBuf>,
    /// A1111's clip skip: 1 uses the text encoder's last layer, 2 the one before …
    #[arg(long, default_value_t = 1)]
    clip_skip: usize,
    /// a1111 ((emphasis:1.2), [less], BREAK, <lora:…>, no length limit) or plain (diffusers:
    /// the text as written, cut at 75 tokens).
    #[arg(long, default_value = "a1111", value_parser = ["a1111", "plain"])]
    prompt_syntax: String,
    /// What to draw (A1111 syntax by default: see --prompt-syntax).
    #[arg(long)]
    prompt: String,
    /// What to keep out of the picture.
    #[arg(long)]
    negative_prompt: Option<String>,
    /// Denoising steps (default: the model family's).
    #[arg(long)]
    steps: Option<usize>,
    /// Classifier-free guidance scale; 1 or less turns guidance off.
    #[arg(long)]
    guidance: Option<f64>,
    /// Same seed, same image (as diffusers with torch.Generator("cpu").manual_seed). Random when omitted.
    #[arg(long)]
    seed: Option<u64>,
    /// A1111's variation seed: the starting noise is moved toward this seed's noise by
    /// --variation-strength (counted up per image, like --seed).
    #[arg(long, value_name = "N")]
    variation_seed: Option<u64>,
    /// How far toward --variation-seed's noise: 0 (none) to 1 (all), A1111's slerp.
    #[arg(long, value_name = "F")]
    variation_strength: Option<f64>,
    /// Image width in pixels, a multiple of 8 (default: the init image's, else the model's).
    #[arg(long)]
    width: Option<usize>,
    /// Image height in pixels, a multiple of 8 (default: the init image's, else the model's).
    #[arg(long)]
    height: Option<usize>,
    /// The sampler: `default` is the model's own scheduler config; the others are diffusers'
    /// classes configured from it (A1111's names are written to the PNG).
    #[arg(long, default_value = "default", value_parser = scheduler_names())]
    scheduler: String,
    /// Start from this image (img2img).
    #[arg(long)]
    init_image: Option<PathBuf>,
    /// How much of the init image to repaint, 0 < strength ≤ 1 (default 0.75; 1 with a mask).
    #[arg(long)]
    strength: Option<f64>,
    #[command(flatten)]
    inpaint: InpaintArgs,
    #[command(flatten)]
    control: ControlArgs,
    /// Hires fix (A1111's): after the base image, upscale it by this factor and run img2img
    /// at that size.
    #[arg(long, value_name = "F")]
    hires_scale: Option<f64>,
    /// Steps of the hires pass (default: --steps).
    #[arg(long, value_name = "N")]
    hires_steps: Option<usize>,
    /// Denoising strength of the hires pass, 0 < F ≤ 1 (default 0.5).
    #[arg(long, value_name = "F")]
    hires_denoise: Option<f64>,
    /// How the base image is enlarged: lanczos (default), an upscaler .safetensors file (or
    /// org/name/file.safetensors on the Hugging Face hub, downloaded on first use), or
    /// its latents resized (A1111's latent upscalers): latent, latent-antialiased,
    /// latent-bicubic, latent-bicubic-antialiased, latent-nearest, latent-nearest-exact.
    #[arg(long, value_name = "lanczos|latent…|FILE")]
    hires_upscaler: Option<String>,
    /// The hires pass's own prompt (A1111's "Hires prompt"; default: --prompt).
    #[arg(long, value_name = "TEXT")]
    hires_prompt: Option<String>,
    /// The hires pass's own negative prompt (default: --negative-prompt; "" for none).
    #[arg(long, value_name = "TEXT")]
    hires_negative_prompt: Option<String>,
    /// The hires pass's own sampler (A1111's "Hires sampler"; default: --scheduler).
    #[arg(long, value_name = "NAME", value_parser = scheduler_names())]
    hires_sampler: Option<String>,
    /// Runs to make, each of --batch-size images; seeds seed, seed+1, … across all images,
    /// written as FILE-1.png, FILE-2.png, …
    #[arg(long, default_value_t = 1)]
    batch_count: usize,
    /// Images denoised together in each run (1 to 8; A1111's batch size): faster per image
    /// where the hardware has room, the same images as separate runs.
    #[arg(long, value_name = "N", default_value_t = 1)]
    batch_size: usize,
    /// Where the networks run.
    #[arg(long, default_value = "cpu", value_parser = ["cpu", "cuda", "metal"])]
    device: String,
    /// f32, f16 or bf16 (default: f32 on CPU, f16 on GPU). On the CPU, bf16 rounds the inputs
    /// of convolutions and linear layers to bf16 (AVX-512 BF16 CPUs only; ~1.5x faster).
    #[arg(long, value_parser = ["f32", "f16", "bf16"])]
    dtype: Option<String>,
    /// On the CPU, widen fp16/bf16 weights to f32 as the model loads (by default they stay
    /// as stored and are widened per use: the same images in ~40% less memory)
    #[arg(long)]
    f32_weights: bool,
    /// The PNG to write (with --batch-count N: FILE-1.png … FILE-N.png); never overwritten
    /// by anything but this command.
    #[arg(long)]
    output: PathBuf,
    /// Print one JSON object per finished image on stdout (path, seed, parameters, seconds)
    /// instead of its path.
    #[arg(long)]
    json: bool,
}

/// `--scheduler`'s values, from the sampler list itself.
fn scheduler_names() -> clap::builder::PossibleValuesParser {
    SchedulerKind::ALL.map(SchedulerKind::name).into()
}

fn read_init_image(path: &Path) -> Result<RgbImage, CliError> {
    read_picture(path)
        .map(RgbImage::from)
        .map_err(|err| CliError::input(format!("--init-image {err}")))
}

/// Prints what the runner reports: progress on stderr, written files on stdout.
struct Terminal {
    interactive: bool,
    /// `--json`: one JSON object per image on stdout.
    json: bool,
    downloads: DownloadReports,
    vae_rejected: Option<String>,
    save_error: Option<String>,
    /// When the current image started, and how many the job makes.
    image_started: Option<Instant>,
    image_count: usize,
}

impl Terminal {
    fn line(&self, line: &str) {
        let mut stderr = std::io::stderr();
        let _ = if self.interactive {
            write!(stderr, "\r{line}   ")
        } else {
            writeln!(stderr, "{line}")
        };
    }

    fn end_line(&self) {
        if self.interactive {
            eprintln!();
        }
    }
}

impl RunObserver for Terminal {
    fn download(&mut self, source: &ModelSource, file: &str, progress: DownloadProgress) -> bool {
        if let Some(line) = self.downloads.line(source, file, progress) {
            self.line(&line);
        }
        true
    }

    fn notice(&mut self, message: String) {
        eprintln!("{message}");
    }

    fn vae_rejected(&mut self, message: String) {
        self.vae_rejected = Some(message);
    }

    fn image_started(&mut self, _index: usize, _seed: u64, _total_steps: usize) {
        self.image_started = Some(Instant::now());
    }

    fn step(&mut self, progress: ImageStep) {
        let rate = progress.step as f64 / progress.elapsed_secs.max(1e-9);
        let left = progress.total.saturating_sub(progress.step) as f64 / rate.max(1e-9);
        let image = if self.image_count > 1 {
            format!("image {}/{}  ", progress.index + 1, self.image_count)
        } else {
            String::new()
        };
        let line = format!(
            "{image}step {}/{}  {rate:.2} it/s  ETA {}",
            progress.step,
            progress.total,
            format_duration(left)
        );
        if self.interactive {
            const WIDTH: usize = 24;
            let filled = WIDTH * progress.step / progress.total.max(1);
            let bar = format!("[{}{}]", "#".repeat(filled), "-".repeat(WIDTH - filled));
            self.line(&format!("{bar} {line}"));
        } else {
            self.line(&line);
        }
    }

    fn image_finished(&mut self, _index: usize, image: FinishedImage) {
        self.end_line();
        let seconds = self
            .image_started
            .map_or(0.0, |at| at.elapsed().as_secs_f64());
        match (&image.path, image.save_error) {
            (Some(path), _) if self.json => println!(
                "{}",
                serde_json::json!({
                    "path": path,
                    "seed": image.seed,
                    "parameters": image.parameters,
                    "seconds": (seconds * 1000.0).round() / 1000.0,
                })
            ),
            (Some(path), _) => println!("{} (seed {})", path.display(), image.seed),
            (None, error) => {
                self.save_error = Some(error.unwrap_or_else(|| "the image was not saved".into()))
            }
        }
    }

    /// A file that cannot be written stops the batch: the next would fail the same way.
    fn is_cancelled(&self) -> bool {
        self.save_error.is_some()
    }
}

/// The hires-fix flags as one setting (`None` without `--hires-scale`).
fn resolve_hires(args: &GenerateArgs) -> Result<Option<HiresFix>, CliError> {
    let Some(scale) = args.hires_scale else {
        let stray = [
            ("--hires-steps", args.hires_steps.is_some()),
            ("--hires-denoise", args.hires_denoise.is_some()),
            ("--hires-upscaler", args.hires_upscaler.is_some()),
            ("--hires-prompt", args.hires_prompt.is_some()),
            (
                "--hires-negative-prompt",
                args.hires_negative_prompt.is_some(),
            ),
            ("--hires-sampler", args.hires_sampler.is_some()),
        ]
        .into_iter()
        .find(|(_, given)| *given);
        return match stray {
            Some((flag, _)) => Err(CliError::input(format!("{flag} needs --hires-scale"))),
            None => Ok(None),
        };
    };
    if !(scale.is_finite() && (MIN_HIRES_SCALE..=MAX_HIRES_SCALE).contains(&scale)) {
        return Err(CliError::input(format!(
            "--hires-scale {scale}: must be between {MIN_HIRES_SCALE} and {MAX_HIRES_SCALE}"
        )));
    }
    let denoise = args.hires_denoise.unwrap_or(0.5);
    if !(denoise > 0.0 && denoise <= 1.0) {
        return Err(CliError::input(format!(
            "--hires-denoise {denoise}: must be greater than 0 and at most 1"
        )));
    }
    if args.hires_steps == Some(0) {
        return Err(CliError::input("--hires-steps must be at least 1"));
    }
    let named = args.hires_upscaler.as_deref();
    let upscaler = match (named, named.and_then(HiresUpscaler::built_in)) {
        (None, _) => HiresUpscaler::Lanczos,
        (Some(_), Some(built_in)) => built_in,
        (Some(file), None) => {
            let path = PathBuf::from(file);
            if !path.is_file() && upscaler_repo_file(&path).is_none() {
                let latent: Vec<&str> = LATENT_UPSCALERS.iter().map(|(_, _, cli)| *cli).collect();
                return Err(CliError::input(format!(
                    "--hires-upscaler {file}: neither lanczos, {}, an upscaler file nor org/name/file.safetensors on the hub",
                    latent.join(", ")
                )));
            }
            HiresUpscaler::Model(path)
        }
    };
    let scheduler = match &args.hires_sampler {
        Some(name) => Some(
            name.parse::<SchedulerKind>()
                .map_err(|err| CliError::input(format!("--hires-sampler: {err}")))?,
        ),
        None => None,
    };
    Ok(Some(HiresFix {
        scale,
        steps: args.hires_steps,
        denoise,
        upscaler,
        own: HiresOverrides {
            prompt: args.hires_prompt.clone(),
            negative_prompt: args.hires_negative_prompt.clone(),
            scheduler,
        },
    }))
}

/// `42s`, `3m 05s`.
fn format_duration(seconds: f64) -> String {
    let seconds = seconds.round() as u64;
    if seconds < 60 {
        format!("{seconds}s")
    } else {
        format!("{}m {:02}s", seconds / 60, seconds % 60)
    }
}

/// `FILE` or `FILE:MULTIPLIER` (the last `:` separates, so Windows drive letters survive).
fn parse_lora_flag(text: &str) -> Result<(PathBuf, f64), CliError> {
    let bad = |why: String| CliError::input(format!("--lora {text}: {why}"));
    let (file, multiplier) = match text.rsplit_once(':') {
        Some((file, number)) if !file.is_empty() && number.parse::<f64>().is_ok() => {
            (file, number.parse::<f64>().unwrap_or(1.0))
        }
        _ => (text, 1.0),
    };
    if !multiplier.is_finite() {
        return Err(bad("the multiplier must be a number".into()));
    }
    let path = PathBuf::from(file);
    if !path.is_file() {
        return Err(bad("no such file".into()));
    }
    Ok((path, multiplier))
}

fn check_size(flag: &str, value: Option<usize>) -> Result<(), CliError> {
    match value {
        Some(v) if v == 0 || v % 8 != 0 => Err(CliError::input(format!(
            "{flag} {v}: must be a positive multiple of 8"
        ))),
        Some(v) if v > MAX_IMAGE_SIDE => Err(CliError::input(format!(
            "{flag} {v}: at most {MAX_IMAGE_SIDE}; generate smaller and upscale"
        ))),
        _ => Ok(()),
    }
}

pub fn run(args: GenerateArgs) -> Result<(), CliError> {
    let scheduler: SchedulerKind = args
        .scheduler
        .parse()
        .map_err(|err| CliError::input(format!("--scheduler: {err}")))?;
    check_size("--width", args.width)?;
    check_size("--height", args.height)?;
    if args.batch_count == 0 {
        return Err(CliError::input("--batch-count must be at least 1"));
    }
    if !(1..=MAX_BATCH_SIZE).contains(&args.batch_size) {
        return Err(CliError::input(format!(
            "--batch-size {}: must be between 1 and {MAX_BATCH_SIZE} (use --batch-count for more images)",
            args.batch_size
        )));
    }
    if args.steps == Some(0) {
        return Err(CliError::input("--steps must be at least 1"));
    }
    if let Some(guidance) = args.guidance.filter(|g| !(g.is_finite() && *g >= 0.0)) {
        return Err(CliError::input(format!(
            "--guidance {guidance}: must be a number ≥ 0 (1 or less turns guidance off)"
        )));
    }
    if args.output.is_dir() {
        return Err(CliError::input(format!(
            "--output {}: is a folder; give a file name ending in .png",
            args.output.display()
        )));
    }
    if args
        .output
        .extension()
        .is_none_or(|ext| !ext.eq_ignore_ascii_case("png"))
    {
        return Err(CliError::input(format!(
            "--output {}: the file name must end in .png",
            args.output.display()
        )));
    }
    if let Some(parent) = args.output.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !parent.is_dir() {
            return Err(CliError::input(format!(
                "--output {}: folder {} does not exist",
                args.output.display(),
                parent.display()
            )));
        }
    }
    if args.init_image.is_none() && args.strength.is_some() {
        return Err(CliError::input(
            "--strength needs --init-image (the image to start from)",
        ));
    }
    // diffusers' inpainting pipeline repaints fully by default; img2img keeps a quarter.
    let strength = args
        .strength
        .unwrap_or(if args.inpaint.requested() { 1.0 } else { 0.75 });
    if !(strength > 0.0 && strength <= 1.0) {
        return Err(CliError::input(format!(
            "--strength {strength}: must be greater than 0 and at most 1"
        )));
    }
    let picture = args
        .init_image
        .as_deref()
        .map(read_init_image)
        .transpose()?;
    let (picture, mask) = args.inpaint.resolve(picture)?;
    let init_image = picture.map(|image| InitImage {
        image,
        strength,
        mask,
    });
    let controls = args.control.resolve()?;
    let hires = resolve_hires(&args)?;
    let variation = match (args.variation_seed, args.variation_strength) {
        (None, None) => None,
        (Some(_), None) | (None, Some(_)) => {
            return Err(CliError::input(
                "--variation-seed and --variation-strength go together",
            ))
        }
        (Some(seed), Some(strength)) if (0.0..=1.0).contains(&strength) => {
            Some(Variation { seed, strength })
        }
        (Some(_), Some(strength)) => {
            return Err(CliError::input(format!(
                "--variation-strength {strength}: must be between 0 and 1"
            )))
        }
    };
    let prompt_syntax: PromptSyntax = args
        .prompt_syntax
        .parse()
        .map_err(|err| CliError::input(format!("--prompt-syntax: {err}")))?;
    for (flag, text) in [
        ("--prompt", Some(&args.prompt)),
        ("--negative-prompt", args.negative_prompt.as_ref()),
        ("--hires-prompt", args.hires_prompt.as_ref()),
        (
            "--hires-negative-prompt",
            args.hires_negative_prompt.as_ref(),
        ),
    ] {
        if let Some(text) = text {
            check_prompt(text, prompt_syntax)
                .map_err(|err| CliError::input(format!("{flag}: {err}")))?;
        }
    }
    if args.clip_skip == 0 {
        return Err(CliError::input(
            "--clip-skip must be at least 1 (1 = the text encoder's last layer)",
        ));
    }
    let listed_loras = args
        .loras
        .iter()
        .map(|flag| parse_lora_flag(flag))
        .collect::<Result<Vec<_>, _>>()?;
    for (flag, path) in [("--vae", &args.vae), ("--model-config", &args.model_config)] {
        if let Some(path) = path {
            if !path.exists() {
                return Err(CliError::input(format!(
                    "{flag} {}: no such file or folder",
                    path.display()
                )));
            }
        }
    }
    for (flag, dir) in [
        ("--lora-dir", &args.lora_dir),
        ("--embeddings-dir", &args.embeddings_dir),
    ] {
        if let Some(dir) = dir {
            if !dir.is_dir() {
                return Err(CliError::input(format!(
                    "{flag} {}: no such folder",
                    dir.display()
                )));
            }
        }
    }
    let device = select_device(&args.device)?;
    let dtype = select_dtype(args.dtype.as_deref(), &device)?;

    let mut terminal = Terminal {
        interactive: std::io::stderr().is_terminal(),
        json: args.json,
        downloads: DownloadReports::default(),
        vae_rejected: None,
        save_error: None,
        image_started: None,
        image_count: args.batch_count.saturating_mul(args.batch_size),
    };
    let mut runner = Runner::new(LoadOptions {
        device,
        dtype,
        vae: None,
        config: args.model_config.clone(),
        keep_f16_weights: !args.f32_weights,
    });
    runner.set_vae_tiling(args.vae_tiling);
    runner.set_fast_decode(args.decoder == "taesd");
    runner.set_tiny_vae(args.tiny_vae.clone());
    runner.set_depth_model(args.control.depth_model.clone());
    runner.set_vae(args.vae.clone(), &mut terminal);
    runner.set_folders(
        AddOnFolders {
            loras: args.lora_dir.clone().or_else(default_lora_dir),
            embeddings: args.embeddings_dir.clone().or_else(default_embeddings_dir),
        },
        &mut terminal,
    );
    // A LoRA that is missing or unreadable fails before the model loads.
    runner
        .check_loras(&args.prompt, prompt_syntax, &listed_loras)
        .map_err(|failure| CliError::input(failure.to_string()))?;
    let started = Instant::now();
    let model_text = args.model.to_string_lossy();
    let loaded = runner
        .load(&ModelSource::from_arg(&model_text), &mut terminal)
        .map_err(|failure| {
            let message = format!("--model {model_text}: {}", failure.message);
            match failure.cause {
                LoadFailure::Offline
                | LoadFailure::Download
                | LoadFailure::Internal
                | LoadFailure::Server => CliError::runtime(message),
                LoadFailure::NotAModel | LoadFailure::Invalid => CliError::input(message),
            }
        })?;
    terminal.end_line();
    if let (Some(vae), Some(message)) = (&args.vae, terminal.vae_rejected.take()) {
        return Err(CliError::input(format!(
            "--vae {}: {message}",
            vae.display()
        )));
    }
    let info = loaded.info;

    // Each side not given takes the init image's (rounded down to the VAE grid, as diffusers'
    // image processor does), or else the model's default.
    let (default_width, default_height) = match &init_image {
        Some(init) => {
            let grid = info.vae_scale_factor;
            (
                init.image.width / grid * grid,
                init.image.height / grid * grid,
            )
        }
        None => (info.defaults.width, info.defaults.height),
    };
    let width = args.width.unwrap_or(default_width);
    let height = args.height.unwrap_or(default_height);
    if width == 0 || height == 0 {
        return Err(CliError::input(
            "--init-image is smaller than 8×8 pixels; give --width and --height",
        ));
    }
    let seed = args.seed.unwrap_or_else(random_seed);
    let job = GenerateJob {
        id: 0,
        request: GenerationRequest {
            prompt: args.prompt.clone(),
            negative_prompt: args.negative_prompt.clone(),
            steps: args.steps.unwrap_or(info.defaults.steps),
            guidance: args.guidance.unwrap_or(info.defaults.guidance),
            seed,
            width,
            height,
            scheduler,
            init_image,
            prompt_syntax,
            clip_skip: args.clip_skip,
            controls: Vec::new(),
            variation,
        },
        batch_count: args.batch_count,
        batch_size: args.batch_size,
        output: ImageOutput::File(args.output.clone()),
        preview: PreviewMode::Off,
        loras: listed_loras,
        controls,
        hires,
    };
    let failed = |failure: GenerationFailure| match failure {
        GenerationFailure::InvalidRequest(message) if message.starts_with("scheduler") => {
            CliError::input(format!("--scheduler {}: {message}", args.scheduler))
        }
        GenerationFailure::InvalidRequest(_)
        | GenerationFailure::Lora(_)
        | GenerationFailure::ControlNet(_) => CliError::input(failure.to_string()),
        other => CliError::runtime(other.to_string()),
    };
    // What only the loaded model can tell is still bad input: one line, exit 2, no work done.
    runner.check_job(&job, &mut terminal).map_err(failed)?;
    eprintln!(
        "loaded {} ({}) in {:.1}s",
        info.name,
        info.label,
        started.elapsed().as_secs_f64()
    );
    if args.seed.is_none() {
        eprintln!("seed {seed}");
    }
    runner.run(&job, &mut terminal).map_err(failed)?;
    match terminal.save_error {
        Some(message) => Err(CliError::runtime(message)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_seeds_fit_in_32_bits() {
        assert!(random_seed() <= u32::MAX as u64);
    }
}
