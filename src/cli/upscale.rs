//! `latent-studio upscale`: one picture through an ESRGAN-family upscaler, written as PNG.
//! A picture that carries A1111 `parameters` keeps them, so the upscale still says how the
//! original was made.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use latent_studio::engine::{
    read_picture, read_png_parameters, upscaler_repo_file, write_new_png_with_parameters,
    write_png_with_parameters, DownloadProgress, LoadFailure, LoadOptions, ModelSource, RgbImage,
    RunObserver, Runner, UpscaleFailure, UpscaleJob, DEFAULT_UPSCALE_TILE, MIN_UPSCALE_TILE,
};

use super::{select_device, select_dtype, CliError, DownloadReports};

#[derive(Debug, Args)]
pub struct UpscaleArgs {
    /// An upscaler .safetensors file: ESRGAN / Real-ESRGAN (RealESRGAN_x4plus, 4x-UltraSharp,
    /// 4x_NMKD-Siax …) or Real-ESRGAN Compact (realesr-general-x4v3, animevideo); or
    /// org/name/file.safetensors on the Hugging Face hub, downloaded into its cache on first use.
    #[arg(long)]
    model: PathBuf,
    /// The picture to upscale (PNG, JPEG or WebP).
    #[arg(long)]
    input: PathBuf,
    /// Where to write the PNG (default: INPUT-xSCALE.png beside the input, never replacing a file).
    #[arg(long)]
    output: Option<PathBuf>,
    /// Tile edge in input pixels (0: the whole picture at once, which needs far more memory).
    #[arg(long, value_name = "PX", default_value_t = DEFAULT_UPSCALE_TILE)]
    tile: usize,
    /// cpu, cuda or metal.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// f32, f16 or bf16 (default: f32 on CPU, f16 on GPU).
    #[arg(long)]
    dtype: Option<String>,
}

/// Prints download and tile progress on stderr.
struct Terminal {
    interactive: bool,
    started: Instant,
    downloads: DownloadReports,
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
}

impl RunObserver for Terminal {
    fn download(&mut self, source: &ModelSource, file: &str, progress: DownloadProgress) -> bool {
        if let Some(line) = self.downloads.line(source, file, progress) {
            self.line(&line);
        }
        true
    }

    fn upscale_tile(&mut self, done: usize, total: usize) {
        let seconds = self.started.elapsed().as_secs_f64();
        self.line(&format!("tile {done}/{total}  {seconds:.1}s"));
    }
}

fn failed(failure: UpscaleFailure) -> CliError {
    match failure {
        UpscaleFailure::Model(failure) => {
            let message = format!("--model {}", failure.message);
            match failure.cause {
                LoadFailure::NotAModel | LoadFailure::Invalid => CliError::input(message),
                _ => CliError::runtime(message),
            }
        }
        UpscaleFailure::InvalidRequest(message) => CliError::input(message),
        UpscaleFailure::Fetch(message) => CliError::input(format!("--model {message}")),
        other @ UpscaleFailure::Compute(_) => CliError::runtime(other.to_string()),
    }
}

fn check_output(output: &Path) -> Result<(), CliError> {
    if output.is_dir() {
        return Err(CliError::input(format!(
            "--output {}: is a folder; give a file name ending in .png",
            output.display()
        )));
    }
    if output
        .extension()
        .is_none_or(|ext| !ext.eq_ignore_ascii_case("png"))
    {
        return Err(CliError::input(format!(
            "--output {}: the file name must end in .png",
            output.display()
        )));
    }
    if let Some(parent) = output.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !parent.is_dir() {
            return Err(CliError::input(format!(
                "--output {}: folder {} does not exist",
                output.display(),
                parent.display()
            )));
        }
    }
    Ok(())
}

/// `INPUT-x4.png` beside the input.
fn default_output(input: &Path, scale: usize) -> PathBuf {
    let stem = input
        .file_stem()
        .map_or_else(|| "upscaled".into(), |s| s.to_string_lossy().into_owned());
    input.with_file_name(format!("{stem}-x{scale}.png"))
}

pub fn run(args: UpscaleArgs) -> Result<(), CliError> {
    if args.tile != 0 && args.tile < MIN_UPSCALE_TILE {
        return Err(CliError::input(format!(
            "--tile {}: at least {MIN_UPSCALE_TILE} pixels (0 for no tiling)",
            args.tile
        )));
    }
    if let Some(output) = &args.output {
        check_output(output)?;
    }
    if !args.model.exists() && upscaler_repo_file(&args.model).is_none() {
        return Err(CliError::input(format!(
            "--model {}: no such file (nor org/name/file.safetensors on the hub)",
            args.model.display()
        )));
    }
    let image: RgbImage = read_picture(&args.input)
        .map(RgbImage::from)
        .map_err(|err| CliError::input(format!("--input {err}")))?;
    // A picture without readable parameters is upscaled all the same.
    let parameters = read_png_parameters(&args.input)
        .ok()
        .flatten()
        .unwrap_or_default();
    let device = select_device(&args.device)?;
    let dtype = select_dtype(args.dtype.as_deref(), &device)?;
    let mut runner = Runner::new(LoadOptions {
        device,
        dtype,
        ..LoadOptions::default()
    });
    let job = UpscaleJob {
        model: args.model.clone(),
        image,
        tile: (args.tile > 0).then_some(args.tile),
    };
    let mut terminal = Terminal {
        interactive: std::io::stderr().is_terminal(),
        started: Instant::now(),
        downloads: DownloadReports::default(),
    };
    let scale = runner.check_upscale(&job, &mut terminal).map_err(failed)?;
    if terminal.interactive && terminal.downloads.printed_any() {
        eprintln!();
    }
    let output = match &args.output {
        Some(output) => output.clone(),
        None => {
            let output = default_output(&args.input, scale);
            if output.exists() {
                return Err(CliError::input(format!(
                    "{} exists; give --output to choose another file",
                    output.display()
                )));
            }
            output
        }
    };
    terminal.started = Instant::now();
    let upscaled = runner
        .upscale(&job, &mut terminal)
        .map_err(failed)?
        .ok_or_else(|| CliError::runtime("the upscale was cancelled"))?;
    if terminal.interactive {
        eprintln!();
    }
    let image = &upscaled.image;
    let write = if args.output.is_some() {
        write_png_with_parameters
    } else {
        write_new_png_with_parameters
    };
    write(
        &output,
        &image.pixels,
        image.width as u32,
        image.height as u32,
        &parameters,
    )
    .map_err(|err| CliError::runtime(err.to_string()))?;
    eprintln!(
        "upscaled {}×{} to {}×{} with {} (×{}) in {:.1}s",
        job.image.width,
        job.image.height,
        image.width,
        image.height,
        upscaled.upscaler,
        upscaled.scale,
        terminal.started.elapsed().as_secs_f64()
    );
    println!("{}", output.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_output_sits_beside_the_input() {
        assert_eq!(
            default_output(Path::new("/pictures/cat.jpg"), 4),
            Path::new("/pictures/cat-x4.png")
        );
    }
}
