//! Command-line interface: the window (no subcommand), `generate`, `serve`, `upscale` and `bench`.

mod bench;
mod controlnet;
mod generate;
mod inpaint;
mod serve;
mod upscale;

use std::fmt;
use std::path::PathBuf;
use std::time::Instant;

use candle_core::{DType, Device};
use clap::{Parser, Subcommand};
use latent_studio::describe_candle_error;
use latent_studio::engine::{set_cpu_arithmetic, CpuArithmetic, DownloadProgress, ModelSource};

#[derive(Debug, Parser)]
#[command(name = "latent-studio", version = latent_studio::VERSION, about = "Stable Diffusion on your own machine, numerically faithful to diffusers")]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Open the window with this model: a diffusers folder, a .safetensors checkpoint, a Hugging
    /// Face hub id (e.g. stabilityai/sd-turbo), org/name/file.safetensors, or an https:// URL.
    #[arg(long, value_name = "PATH|HUB-ID")]
    model: Option<String>,
    /// Where the window saves finished images (default: Pictures/Latent Studio).
    #[arg(long, value_name = "DIR")]
    output_dir: Option<PathBuf>,
    /// Open the window with this picture, as if dropped on it: a PNG made by Latent Studio or
    /// AUTOMATIC1111 restores its settings; any other picture becomes the img2img start image.
    #[arg(value_name = "PICTURE")]
    picture: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate images from a prompt without opening a window.
    Generate(Box<generate::GenerateArgs>),
    /// Serve AUTOMATIC1111's HTTP API (/sdapi/v1) over the engine, without a window.
    Serve(Box<serve::ServeArgs>),
    /// Upscale a picture with an ESRGAN-family upscaler (.safetensors).
    Upscale(upscale::UpscaleArgs),
    /// Time the full-size SD 1.5 architecture (random weights, no files needed).
    Bench(bench::BenchArgs),
}

/// A failure the CLI reports as one line. Bad input exits with 2, anything else with 1.
#[derive(Debug)]
pub struct CliError {
    message: String,
    bad_input: bool,
}

impl CliError {
    pub fn input(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            bad_input: true,
        }
    }

    pub fn runtime(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            bad_input: false,
        }
    }

    pub fn exit_code(&self) -> u8 {
        if self.bad_input {
            2
        } else {
            1
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One line, always: the message may quote file contents.
        f.write_str(&self.message.replace('\n', " "))
    }
}

pub fn run(args: Args) -> Result<(), CliError> {
    match args.command {
        Some(Command::Generate(args)) => generate::run(*args),
        Some(Command::Serve(args)) => serve::run(*args),
        Some(Command::Upscale(args)) => upscale::run(args),
        Some(Command::Bench(args)) => bench::run(args),
        None => open_window(args.model.as_deref(), args.output_dir, args.picture),
    }
}

fn open_window(
    model: Option<&str>,
    output_dir: Option<PathBuf>,
    picture: Option<PathBuf>,
) -> Result<(), CliError> {
    use latent_studio::app::{run_window, AppConfig};
    use latent_studio::engine::ModelSource;
    if let Some(path) = picture.as_deref().filter(|path| !path.is_file()) {
        return Err(CliError::input(format!(
            "{}: no such picture (nor a subcommand: see `latent-studio --help`)",
            path.display()
        )));
    }
    let model = model.map(ModelSource::from_arg);
    run_window(AppConfig::new(model, output_dir, picture)).map_err(|err| {
        CliError::runtime(format!(
            "cannot open the window: {err} (no display? `latent-studio generate --help` works without one)"
        ))
    })
}

/// `--device` and `--dtype` as the user gave them, resolved against what this build supports.
pub fn select_device(name: &str) -> Result<Device, CliError> {
    match name {
        "cpu" => Ok(Device::Cpu),
        "cuda" => {
            if !cfg!(feature = "cuda") {
                return Err(CliError::input(
                    "--device cuda: this build has no CUDA support; rebuild with `cargo build --release --features cuda`",
                ));
            }
            latent_studio::kernels::new_cuda_device().map_err(|e| {
                CliError::runtime(format!(
                    "--device cuda: no usable CUDA GPU: {}",
                    describe_candle_error(&e)
                ))
            })
        }
        "metal" => {
            if !cfg!(feature = "metal") {
                return Err(CliError::input(
                    "--device metal: this build has no Metal support; rebuild with `cargo build --release --features metal`",
                ));
            }
            Device::new_metal(0).map_err(|e| {
                CliError::runtime(format!(
                    "--device metal: no usable Metal GPU: {}",
                    describe_candle_error(&e)
                ))
            })
        }
        other => Err(CliError::input(format!(
            "--device {other}: unknown device (valid: cpu, cuda, metal)"
        ))),
    }
}

/// On the CPU, `bf16` switches the matrix products to bf16 arithmetic (process-wide) and
/// returns f32 for everything else.
pub fn select_dtype(name: Option<&str>, device: &Device) -> Result<DType, CliError> {
    match name {
        None if device.is_cpu() => Ok(DType::F32),
        None => Ok(DType::F16),
        Some("f32") => Ok(DType::F32),
        Some("f16") => Ok(DType::F16),
        // On the CPU, bf16 means f32 weights and activations with bf16 matrix products.
        Some("bf16") if device.is_cpu() => {
            set_cpu_arithmetic(CpuArithmetic::Bf16)
                .map_err(|e| CliError::input(format!("--dtype bf16: {e}")))?;
            Ok(DType::F32)
        }
        Some("bf16") => Ok(DType::BF16),
        Some(other) => Err(CliError::input(format!(
            "--dtype {other}: unknown precision (valid: f32, f16, bf16)"
        ))),
    }
}

/// Download progress as `generate` and `upscale` print it, for a model and for the files a
/// job needs (a ControlNet, an upscaler, the depth model) alike: at most a line a second,
/// plus each file's last.
#[derive(Default)]
pub struct DownloadReports {
    last: Option<Instant>,
}

impl DownloadReports {
    /// Whether a line was printed (the interactive one then needs its end).
    pub fn printed_any(&self) -> bool {
        self.last.is_some()
    }

    /// The line to print now, if one is due.
    pub fn line(
        &mut self,
        source: &ModelSource,
        file: &str,
        progress: DownloadProgress,
    ) -> Option<String> {
        let finished = progress.bytes_total == Some(progress.bytes_done);
        let due = self.last.is_none_or(|at| at.elapsed().as_secs_f64() >= 1.0);
        if !(finished || due) {
            return None;
        }
        self.last = Some(Instant::now());
        let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
        Some(format!(
            "downloading {source} {}/{} {file}: {:.1}/{} MiB, {:.1} MiB/s",
            progress.file_index + 1,
            progress.file_count,
            mib(progress.bytes_done),
            progress
                .bytes_total
                .map_or_else(|| "?".into(), |t| format!("{:.1}", mib(t))),
            mib(progress.bytes_per_second as u64),
        ))
    }
}
