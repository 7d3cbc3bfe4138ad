//! `latent-studio generate`: one or more images from a prompt, written as PNG with A1111
//! `parameters` metadata.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use latent_studio::engine::a1111_parameters;
use latent_studio::formats::png::write_png_with_parameters;
use latent_studio::models::{fetch_model, load_model, Catalog, HubCache, LoadOptions};
use latent_studio::pipeline::generate::{Flow, GenerationRequest, InitImage, RgbImage};
use latent_studio::pipeline::schedulers::SchedulerKind;

use super::{select_device, select_dtype, CliError};

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// A diffusers model folder (model_index.json, unet/, vae/, text_encoder/, tokenizer/ …), or a
    /// catalog hub id (e.g. stabilityai/sd-turbo) fetched into the Hugging Face cache.
    #[arg(long)]
    model: PathBuf,
    #[arg(long)]
    prompt: String,
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
    #[arg(long)]
    width: Option<usize>,
    #[arg(long)]
    height: Option<usize>,
    /// default, ddim, pndm, euler, euler-a, dpmpp-2m, dpmpp-2m-karras or lcm.
    #[arg(long, default_value = "default")]
    scheduler: String,
    /// Start from this image (img2img).
    #[arg(long)]
    init_image: Option<PathBuf>,
    /// How much of the init image to repaint, 0 < strength ≤ 1.
    #[arg(long)]
    strength: Option<f64>,
    /// Images to make, with seeds seed, seed+1, …; written as FILE-1.png, FILE-2.png, …
    #[arg(long, default_value_t = 1)]
    batch_count: usize,
    /// cpu, cuda or metal.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// f32, f16 or bf16 (default: f32 on CPU, f16 on GPU).
    #[arg(long)]
    dtype: Option<String>,
    #[arg(long)]
    output: PathBuf,
}

fn read_init_image(path: &Path) -> Result<RgbImage, CliError> {
    let image = image::open(path).map_err(|err| {
        CliError::input(format!(
            "--init-image {}: cannot read the image ({err})",
            path.display()
        ))
    })?;
    let rgb = image.to_rgb8();
    Ok(RgbImage {
        width: rgb.width() as usize,
        height: rgb.height() as usize,
        pixels: rgb.into_raw(),
    })
}

/// `--model` as a folder: the path itself, or — for a catalog hub id such as
/// `stabilityai/sd-turbo` that is not a path here — its snapshot in the Hugging Face cache,
/// downloaded first if needed (progress on stderr).
fn model_folder(model: &Path) -> Result<PathBuf, CliError> {
    let text = model.to_string_lossy();
    let looks_like_hub_id = text.split('/').count() == 2 && !text.starts_with(['.', '/', '~']);
    if model.exists() || !looks_like_hub_id {
        return Ok(model.to_path_buf());
    }
    let entry = Catalog::builtin()
        .lookup(&text)
        .map_err(|err| CliError::input(format!("--model {text}: no such folder, and {err}")))?;
    let interactive = std::io::stderr().is_terminal();
    let mut last_report = Instant::now();
    let mut stderr = std::io::stderr();
    let folder = fetch_model(entry, &HubCache::from_env(), |file, progress| {
        let finished = progress.bytes_total == Some(progress.bytes_done);
        if finished || last_report.elapsed().as_secs_f64() >= 1.0 {
            last_report = Instant::now();
            let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
            let line = format!(
                "downloading {} {}/{} {file}: {:.1}/{} MiB, {:.1} MiB/s",
                entry.id,
                progress.file_index + 1,
                progress.file_count,
                mib(progress.bytes_done),
                progress
                    .bytes_total
                    .map_or_else(|| "?".into(), |t| format!("{:.1}", mib(t))),
                mib(progress.bytes_per_second as u64),
            );
            let _ = if interactive {
                write!(stderr, "\r{line}   ")
            } else {
                writeln!(stderr, "{line}")
            };
        }
        true
    });
    if interactive {
        eprintln!();
    }
    folder.map_err(|err| CliError::runtime(format!("--model {text}: {err}")))
}

fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    // torch seeds its generator with the low 32 bits; keep seeds in that range so they
    // mean the same thing everywhere (A1111 does the same).
    hasher.finish() & 0xffff_ffff
}

/// FILE.png for a single image, FILE-1.png, FILE-2.png … for a batch.
fn output_path(base: &Path, index: usize, count: usize) -> PathBuf {
    if count == 1 {
        return base.to_path_buf();
    }
    let stem = base
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".into());
    base.with_file_name(format!("{stem}-{}.png", index + 1))
}

fn check_size(flag: &str, value: Option<usize>) -> Result<(), CliError> {
    match value {
        Some(v) if v == 0 || v % 8 != 0 => Err(CliError::input(format!(
            "{flag} {v}: must be a positive multiple of 8"
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
    if args.steps == Some(0) {
        return Err(CliError::input("--steps must be at least 1"));
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
    let init_image = match (&args.init_image, args.strength) {
        (Some(path), strength) => {
            let strength = strength.unwrap_or(0.75);
            if !(strength > 0.0 && strength <= 1.0) {
                return Err(CliError::input(format!(
                    "--strength {strength}: must be greater than 0 and at most 1"
                )));
            }
            Some(InitImage {
                image: read_init_image(path)?,
                strength,
            })
        }
        (None, Some(_)) => {
            return Err(CliError::input(
                "--strength needs --init-image (the image to start from)",
            ))
        }
        (None, None) => None,
    };
    let device = select_device(&args.device)?;
    let dtype = select_dtype(args.dtype.as_deref(), &device)?;

    let folder = model_folder(&args.model)?;
    let started = Instant::now();
    let model = load_model(&folder, &LoadOptions { device, dtype })
        .map_err(|err| CliError::input(format!("--model {}: {err}", args.model.display())))?;
    let info = model.info().clone();
    eprintln!(
        "loaded {} ({}) in {:.1}s",
        info.name,
        info.label,
        started.elapsed().as_secs_f64()
    );

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
    let steps = args.steps.unwrap_or(info.defaults.steps);
    let guidance = args.guidance.unwrap_or(info.defaults.guidance);
    // Fail on a scheduler the model's config cannot drive before any work is done.
    scheduler
        .a1111_label(model.scheduler_config())
        .map_err(|err| CliError::input(format!("--scheduler {}: {err}", args.scheduler)))?;
    let base_seed = args.seed.unwrap_or_else(random_seed);
    if args.seed.is_none() {
        eprintln!("seed {base_seed}");
    }

    let interactive = std::io::stderr().is_terminal();
    for index in 0..args.batch_count {
        let seed = base_seed.wrapping_add(index as u64);
        let request = GenerationRequest {
            prompt: args.prompt.clone(),
            negative_prompt: args.negative_prompt.clone(),
            steps,
            guidance,
            seed,
            width,
            height,
            scheduler,
            init_image: init_image.clone(),
        };
        let run_started = Instant::now();
        let mut stderr = std::io::stderr();
        let output = model
            .generate(&request, &mut |progress| {
                let elapsed = run_started.elapsed().as_secs_f64();
                let rate = progress.step as f64 / elapsed.max(1e-9);
                let line = format!("step {}/{}  {rate:.2} it/s", progress.step, progress.total);
                if interactive {
                    let _ = write!(stderr, "\r{line}   ");
                } else {
                    let _ = writeln!(stderr, "{line}");
                }
                Flow::Continue
            })
            .map_err(|err| CliError::runtime(err.to_string()))?;
        if interactive {
            eprintln!();
        }
        let parameters = a1111_parameters(&model, &request)
            .map_err(|err| CliError::input(format!("--scheduler {}: {err}", args.scheduler)))?;
        let path = output_path(&args.output, index, args.batch_count);
        write_png_with_parameters(
            &path,
            &output.image.pixels,
            output.image.width as u32,
            output.image.height as u32,
            &parameters.to_a1111_string(),
        )
        .map_err(|err| CliError::runtime(err.to_string()))?;
        println!(
            "{} (seed {seed}, {:.1}s)",
            path.display(),
            run_started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_outputs_are_numbered() {
        let base = Path::new("out/cat.png");
        assert_eq!(output_path(base, 0, 1), PathBuf::from("out/cat.png"));
        assert_eq!(output_path(base, 1, 3), PathBuf::from("out/cat-2.png"));
    }

    #[test]
    fn random_seeds_fit_in_32_bits() {
        assert!(random_seed() <= u32::MAX as u64);
    }
}
