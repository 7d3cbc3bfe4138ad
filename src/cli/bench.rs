//! `latent-studio bench`: speed and memory of the full-size SD 1.5 architecture.
//!
//! Random weights by default (nothing to download); `--weights DIR` loads a diffusers folder
//! instead, e.g. the one `bench/diffusers_bench.py --save-weights DIR` writes, so both
//! programs run the very same numbers. Compare with that script on the same machine.

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::Tensor;
use clap::Args;
use latent_studio::models::{load_model, load_model_with_random_weights, LoadOptions};
use latent_studio::pipeline::generate::{Flow, GenerationRequest, PromptSyntax, StableDiffusion};
use latent_studio::pipeline::schedulers::SchedulerKind;

use super::{select_device, select_dtype, CliError};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Image sizes to time the UNet and VAE at (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "256,512")]
    sizes: Vec<usize>,
    /// Timed repetitions of each measurement (after one warm-up).
    #[arg(long, default_value_t = 2)]
    iters: usize,
    /// Steps of the whole-generation measurement (at the smallest size, CFG 7.5).
    #[arg(long, default_value_t = 4)]
    steps: usize,
    /// A diffusers folder to load instead of random weights.
    #[arg(long)]
    weights: Option<PathBuf>,
    #[arg(long, default_value = "cpu")]
    device: String,
    #[arg(long)]
    dtype: Option<String>,
}

/// Peak resident memory since the last reset, in MiB (Linux; `None` elsewhere).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Resets the kernel's peak-RSS counter so each measurement reports its own peak.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn time<T>(
    name: &str,
    iters: usize,
    mut run: impl FnMut() -> candle_core::Result<T>,
) -> Result<(), CliError> {
    reset_peak_rss();
    let fail = |e: candle_core::Error| CliError::runtime(format!("{name}: {e}"));
    run().map_err(fail)?;
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters.max(1) {
        let started = Instant::now();
        run().map_err(fail)?;
        times.push(started.elapsed().as_secs_f64());
    }
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    let min = times.iter().cloned().fold(f64::INFINITY, f64::min);
    let peak = peak_rss_mib()
        .map(|m| format!("{m:8.0} MiB"))
        .unwrap_or_else(|| "       ?".into());
    println!(
        "{name:32} mean {:9.1} ms   min {:9.1} ms   peak RSS {peak}",
        mean * 1000.0,
        min * 1000.0
    );
    Ok(())
}

fn assets() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets")
}

pub fn run(args: BenchArgs) -> Result<(), CliError> {
    let device = select_device(&args.device)?;
    let dtype = select_dtype(args.dtype.as_deref(), &device)?;
    let options = LoadOptions {
        device: device.clone(),
        dtype,
        ..LoadOptions::default()
    };
    let started = Instant::now();
    let model: StableDiffusion = match &args.weights {
        Some(dir) => load_model(dir, &options)
            .map_err(|e| CliError::input(format!("--weights {}: {e}", dir.display())))?,
        None => load_model_with_random_weights(
            &assets().join("configs/sd15"),
            &assets().join("clip-tokenizer"),
            &options,
        )
        .map_err(|e| CliError::runtime(e.to_string()))?,
    };
    println!(
        "latent-studio {} bench: SD 1.5 architecture, {} weights, {:?} on {:?}, {} threads; built in {:.1}s, RSS {:.0} MiB",
        latent_studio::VERSION,
        if args.weights.is_some() { "loaded" } else { "random" },
        dtype,
        device,
        candle_core::utils::get_num_threads(),
        started.elapsed().as_secs_f64(),
        peak_rss_mib().unwrap_or(f64::NAN)
    );

    let stage = &model.text_stages()[0];
    let ids = stage
        .tokenizer
        .encode_padded("a photograph of an astronaut riding a horse");
    let empty = stage.tokenizer.encode_padded("");
    time("text encode (cond + uncond)", args.iters, || {
        stage.encoder.forward(&ids)?;
        stage.encoder.forward(&empty)
    })?;
    let context = Tensor::cat(
        &[
            &stage
                .encoder
                .forward(&empty)
                .map_err(runtime)?
                .last_hidden_state,
            &stage
                .encoder
                .forward(&ids)
                .map_err(runtime)?
                .last_hidden_state,
        ],
        0,
    )
    .map_err(runtime)?;

    for &size in &args.sizes {
        if size == 0 || size % 8 != 0 {
            return Err(CliError::input(format!(
                "--sizes {size}: sizes must be positive multiples of 8"
            )));
        }
        let latent = size / 8;
        let latents = Tensor::randn(0f32, 1.0, (2, 4, latent, latent), &device)
            .and_then(|t| t.to_dtype(dtype))
            .map_err(runtime)?;
        time(
            &format!("unet step {size}x{size} (CFG, batch 2)"),
            args.iters,
            || model.unet().forward(&latents, 500.0, &context, None),
        )?;
    }
    for &size in &args.sizes {
        let latent = size / 8;
        let latents = Tensor::randn(0f32, 1.0, (1, 4, latent, latent), &device)
            .and_then(|t| t.to_dtype(dtype))
            .map_err(runtime)?;
        time(&format!("vae decode {size}x{size}"), args.iters, || {
            model.vae().decode(&latents)
        })?;
    }

    let size = args.sizes.iter().copied().min().unwrap_or(256);
    let request = GenerationRequest {
        prompt: "a photograph of an astronaut riding a horse".into(),
        negative_prompt: None,
        steps: args.steps,
        guidance: 7.5,
        seed: 0,
        width: size,
        height: size,
        scheduler: SchedulerKind::Default,
        init_image: None,
        prompt_syntax: PromptSyntax::Plain,
        clip_skip: 1,
    };
    time(
        &format!("generate {size}x{size}, {} steps", args.steps),
        1,
        || {
            model
                .generate(&request, &mut |_| Flow::Continue)
                .map_err(|e| candle_core::Error::Msg(e.to_string()))
        },
    )?;
    Ok(())
}

fn runtime(err: candle_core::Error) -> CliError {
    CliError::runtime(err.to_string())
}
