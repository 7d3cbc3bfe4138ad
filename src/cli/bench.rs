//! `latent-studio bench`: speed and memory of the full-size SD 1.5 (or, with `--arch sdxl`,
//! SDXL) architecture.
//!
//! Random weights by default (nothing to download); `--weights DIR` loads a diffusers folder
//! instead, e.g. the one `bench/diffusers_bench.py --save-weights DIR` writes, so both
//! programs run the very same numbers. Compare with that script on the same machine.

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use clap::{Args, ValueEnum};
use latent_studio::engine::{latent_preview, DEFAULT_UPSCALE_TILE};
use latent_studio::kernels::precision::cpu_arithmetic;
use latent_studio::kernels::profile;
use latent_studio::models::StableDiffusion;
use latent_studio::models::{load_model, load_model_with_random_weights, LoadOptions};
use latent_studio::networks::taesd::{TinyDecoder, TinyVaeConfig};
use latent_studio::networks::unet::AddedConditions;
use latent_studio::networks::upscalers::esrgan::EsrganLayout;
use latent_studio::networks::upscalers::tiling::{upscale_tiled, Tiling};
use latent_studio::networks::upscalers::{EsrganConfig, Upscaler, UpscalerConfig};
use latent_studio::sampling::pipeline::{decoded_to_image, Flow, GenerationRequest, PromptSyntax};
use latent_studio::sampling::schedulers::SchedulerKind;

use super::{select_device, select_dtype, CliError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Arch {
    Sd15,
    Sdxl,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Which architecture to build with random weights (ignored with --weights).
    #[arg(long, value_enum, default_value = "sd15")]
    arch: Arch,
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
    /// Draw the random weights of convolutions and linear layers in f16, as most published
    /// models are distributed, and keep them so as `generate` does (CPU only)
    #[arg(long)]
    f16_weights: bool,
    /// After each UNet and VAE timing, one more run that reports its time per kind of layer
    /// (each layer waits for the device, so the run is slower than the timed ones).
    #[arg(long)]
    profile: bool,
    /// Instead of Stable Diffusion: time RealESRGAN_x4plus's architecture (random weights)
    /// upscaling a picture this many pixels a side 4×, in tiles of 256 as `upscale` does.
    #[arg(long, value_name = "PX")]
    upscale: Option<usize>,
    /// Only the live-preview methods' cost per step at each size: the fast latent→RGB map,
    /// the tiny autoencoder (TAESD's architecture) and the full VAE decode.
    #[arg(long)]
    previews: bool,
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

/// Times `run` after one warm-up. GPU work is queued asynchronously, so each run ends with a
/// device synchronization before the clock stops.
fn time<T>(
    name: &str,
    device: &Device,
    iters: usize,
    mut run: impl FnMut() -> candle_core::Result<T>,
) -> Result<(), CliError> {
    reset_peak_rss();
    let fail = |e: candle_core::Error| CliError::runtime(format!("{name}: {e}"));
    run().and_then(|_| device.synchronize()).map_err(fail)?;
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters.max(1) {
        let started = Instant::now();
        run().and_then(|_| device.synchronize()).map_err(fail)?;
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

/// One run of `run` with [`profile`] measuring, printed as time per kind of layer; what no
/// measured layer covers (element-wise arithmetic, reshapes, copies, the step's embeddings) is
/// the rest.
fn profile_run<T>(
    name: &str,
    device: &Device,
    run: impl FnOnce() -> candle_core::Result<T>,
) -> Result<(), CliError> {
    let fail = |e: candle_core::Error| CliError::runtime(format!("{name} (profiled): {e}"));
    device.synchronize().map_err(fail)?;
    profile::set_enabled(true);
    let started = Instant::now();
    let outcome = run().and_then(|_| device.synchronize());
    let total = started.elapsed().as_secs_f64() * 1000.0;
    profile::set_enabled(false);
    outcome.map_err(fail)?;
    println!("  profile of one {name}: {total:.1} ms");
    let mut covered = 0.0;
    for (kind, time, calls) in profile::totals() {
        let ms = time.as_secs_f64() * 1000.0;
        covered += ms;
        println!(
            "    {kind:30} {ms:9.1} ms {:5.1}%  ({calls} calls)",
            100.0 * ms / total
        );
    }
    let rest = (total - covered).max(0.0);
    println!(
        "    {:30} {rest:9.1} ms {:5.1}%",
        "rest",
        100.0 * rest / total
    );
    Ok(())
}

/// The source tree's `assets/`, or `./assets` when the binary runs away from the tree it was
/// built in (e.g. a CUDA build copied to a GPU machine and run from a checkout there).
fn assets() -> PathBuf {
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
    if built.is_dir() {
        built
    } else {
        PathBuf::from("assets")
    }
}

pub fn run(args: BenchArgs) -> Result<(), CliError> {
    let device = select_device(&args.device)?;
    let dtype = select_dtype(args.dtype.as_deref(), &device)?;
    if let Some(size) = args.upscale {
        return bench_upscale(size, &device, dtype, args.iters);
    }
    if args.f16_weights && !device.is_cpu() {
        return Err(CliError::input(
            "--f16-weights applies to the CPU only (on a GPU the weights are f16 already); drop it or use --device cpu",
        ));
    }
    let options = LoadOptions {
        device: device.clone(),
        dtype,
        keep_f16_weights: args.f16_weights,
        ..LoadOptions::default()
    };
    let started = Instant::now();
    let model: StableDiffusion = match &args.weights {
        Some(dir) => load_model(dir, &options)
            .map_err(|e| CliError::input(format!("--weights {}: {e}", dir.display())))?,
        None => load_model_with_random_weights(
            &assets().join(match args.arch {
                Arch::Sd15 => "configs/sd15",
                Arch::Sdxl => "configs/sdxl",
            }),
            &assets().join("clip-tokenizer"),
            &options,
        )
        .map_err(|e| CliError::runtime(e.to_string()))?,
    };
    println!(
        "latent-studio {} bench: {} architecture, {} weights, {:?}{} on {:?}, {} threads; built in {:.1}s, RSS {:.0} MiB",
        latent_studio::VERSION,
        model.info().label,
        if args.weights.is_some() { "loaded" } else { "random" },
        dtype,
        if device.is_cpu() {
            format!(" ({:?} products)", cpu_arithmetic())
        } else {
            String::new()
        },
        device,
        candle_core::utils::get_num_threads(),
        started.elapsed().as_secs_f64(),
        peak_rss_mib().unwrap_or(f64::NAN)
    );

    if args.previews {
        for &size in &args.sizes {
            check_size(size)?;
            let latent = size / 8;
            let latents = Tensor::randn(0f32, 1.0, (1, 4, latent, latent), &device)
                .and_then(|t| t.to_dtype(dtype))
                .map_err(runtime)?;
            bench_previews(size, &latents, &model, &device, dtype, args.iters)?;
            time(
                &format!("preview full VAE {size}x{size}"),
                &device,
                args.iters,
                || {
                    model
                        .pipeline()
                        .decode(&latents)
                        .map_err(|e| candle_core::Error::Msg(e.to_string()))
                },
            )?;
        }
        return Ok(());
    }
    let stages = model.pipeline().text_stages();
    time("text encode (cond + uncond)", &device, args.iters, || {
        let mut last = None;
        for stage in stages {
            let ids = stage
                .tokenizer
                .encode_padded("a photograph of an astronaut riding a horse");
            let empty = stage.tokenizer.encode_padded("");
            stage.encoder.forward(&ids)?;
            last = Some(stage.encoder.forward(&empty)?);
        }
        Ok(last)
    })?;
    let stage = &stages[0];
    let ids = stage
        .tokenizer
        .encode_padded("a photograph of an astronaut riding a horse");
    let empty = stage.tokenizer.encode_padded("");
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
    // SDXL's UNet reads both encoders' states (2048 wide) and pooled embeddings + size ids:
    // random stand-ins of the right shapes are as good as real ones for timing.
    let sdxl = model.pipeline().unet().needs_added_conditions();
    let (context, added) = if sdxl {
        let width: usize = stages.iter().map(|s| s.encoder.hidden_size()).sum();
        let pooled = stages.last().map_or(0, |s| s.encoder.hidden_size());
        let random = |shape: &[usize]| {
            Tensor::randn(0f32, 1.0, shape, &device).and_then(|t| t.to_dtype(dtype))
        };
        let context = random(&[2, 77, width]).map_err(runtime)?;
        let added = AddedConditions {
            text_embeds: random(&[2, pooled]).map_err(runtime)?,
            time_ids: Tensor::new(&[[1024f32, 1024., 0., 0., 1024., 1024.]; 2], &device)
                .and_then(|t| t.to_dtype(dtype))
                .map_err(runtime)?,
        };
        (context, Some(added))
    } else {
        (context, None)
    };

    for &size in &args.sizes {
        check_size(size)?;
        let latent = size / 8;
        let latents = Tensor::randn(0f32, 1.0, (2, 4, latent, latent), &device)
            .and_then(|t| t.to_dtype(dtype))
            .map_err(runtime)?;
        time(
            &format!("unet step {size}x{size} (CFG, batch 2)"),
            &device,
            args.iters,
            || {
                model
                    .pipeline()
                    .unet()
                    .forward(&latents, 500.0, &context, added.as_ref())
            },
        )?;
        if args.profile {
            profile_run(&format!("unet step {size}x{size}"), &device, || {
                model
                    .pipeline()
                    .unet()
                    .forward(&latents, 500.0, &context, added.as_ref())
            })?;
        }
    }
    for &size in &args.sizes {
        let latent = size / 8;
        let latents = Tensor::randn(0f32, 1.0, (1, 4, latent, latent), &device)
            .and_then(|t| t.to_dtype(dtype))
            .map_err(runtime)?;
        time(
            &format!("vae decode {size}x{size}"),
            &device,
            args.iters,
            || model.pipeline().vae().decode(&latents),
        )?;
        if args.profile {
            profile_run(&format!("vae decode {size}x{size}"), &device, || {
                model.pipeline().vae().decode(&latents)
            })?;
        }
        bench_previews(size, &latents, &model, &device, dtype, args.iters)?;
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
        controls: Vec::new(),
        variation: None,
    };
    time(
        &format!("generate {size}x{size}, {} steps", args.steps),
        &device,
        1,
        || {
            model
                .pipeline()
                .generate(&request, &mut |_| Flow::Continue)
                .map_err(|e| candle_core::Error::Msg(e.to_string()))
        },
    )?;
    Ok(())
}

/// What a live preview costs a step, beside the full VAE decode above: the fast linear map
/// (at latent size) and the tiny autoencoder (TAESD's architecture, random weights).
fn bench_previews(
    size: usize,
    latents: &Tensor,
    model: &StableDiffusion,
    device: &Device,
    dtype: DType,
    iters: usize,
) -> Result<(), CliError> {
    let family = model.info().family;
    time(
        &format!("preview fast {size}x{size}"),
        device,
        iters,
        || latent_preview(latents, family),
    )?;
    // madebyollin/taesd and taesdxl: 64 channels, 3-3-3-1 blocks.
    let config = TinyVaeConfig {
        channels: 64,
        blocks: vec![3, 3, 3, 1],
        latent_channels: 4,
        image_channels: 3,
    };
    let weights = candle_nn::VarMap::new();
    let decoder = TinyDecoder::new(
        &config,
        candle_nn::VarBuilder::from_varmap(&weights, dtype, device),
    )
    .map_err(runtime)?;
    time(
        &format!("preview tiny VAE {size}x{size}"),
        device,
        iters,
        || decoded_to_image(&decoder.forward(latents)?),
    )
}

fn check_size(size: usize) -> Result<(), CliError> {
    if size == 0 || !size.is_multiple_of(8) {
        return Err(CliError::input(format!(
            "--sizes {size}: sizes must be positive multiples of 8"
        )));
    }
    Ok(())
}

fn runtime(err: candle_core::Error) -> CliError {
    CliError::runtime(err.to_string())
}

/// RealESRGAN_x4plus: 64 features, 23 RRDBs of 32 growth channels, ×4 (16.7 M parameters).
fn bench_upscale(size: usize, device: &Device, dtype: DType, iters: usize) -> Result<(), CliError> {
    if !(1..=4096).contains(&size) {
        return Err(CliError::input(format!(
            "--upscale {size}: a picture side from 1 to 4096 pixels"
        )));
    }
    let config = UpscalerConfig::Esrgan(EsrganConfig {
        layout: EsrganLayout::Named,
        in_channels: 3,
        out_channels: 3,
        features: 64,
        growth_channels: 32,
        blocks: 23,
        upsamplings: 2,
        pixel_unshuffle: None,
        plus: false,
    });
    let fail = |e: candle_core::Error| CliError::runtime(format!("upscaler: {e}"));
    let weights = candle_nn::VarMap::new();
    let net = Upscaler::new(
        &config,
        candle_nn::VarBuilder::from_varmap(&weights, dtype, device),
    )
    .map_err(fail)?;
    let picture = Tensor::rand(0f32, 1.0, (1, 3, size, size), device)
        .and_then(|t| t.to_dtype(dtype))
        .map_err(fail)?;
    println!(
        "latent-studio {} bench: RealESRGAN_x4plus architecture, random weights, {dtype:?} on {device:?}, {} threads",
        latent_studio::VERSION,
        candle_core::utils::get_num_threads(),
    );
    let tiling = Some(Tiling::with_tile(DEFAULT_UPSCALE_TILE));
    time(
        &format!(
            "upscale {size}² → {}² (tiles {DEFAULT_UPSCALE_TILE})",
            4 * size
        ),
        device,
        iters,
        || upscale_tiled(&net, &picture, tiling, &mut |_| true),
    )
}
