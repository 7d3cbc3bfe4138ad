//! Upscaling a picture with an ESRGAN-family network: the 8-bit picture to floats in [0, 1]
//! (`x / 255`, as `torch.from_numpy(pixels).float() / 255`), the network in tiles
//! ([`crate::networks::upscalers::tiling`]), and back to 8 bits clamped and rounded, as
//! A1111 converts spandrel's output (`(255 * x.clamp(0, 1)).round()`). Pictures go in as
//! RGB, the channel order ESRGAN, Real-ESRGAN and basicsr train in (and the order ComfyUI
//! and chaiNNer feed them).
//!
//! [`super::Runner::upscale`] is the entry point; it keeps the last upscaler loaded.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use super::runner::{
    add_on_download, load_failure, save_numbered, write_png, ModelLoadFailure, RunObserver,
};
use super::{FinishedImage, ImageOutput, ModelSource, UpscaleImageJob};
use crate::formats::parameters::GenerationParameters;
use crate::formats::picture::MAX_PICTURE_SIDE;
use crate::models::upscaler::{load_upscaler, LoadedUpscaler};
use crate::models::{upscaler_repo_file, HubCache, HubClient, LoadOptions, UpscalerFetchError};
use crate::networks::upscalers::tiling::{upscale_tiled, TileProgress, Tiling};
use crate::sampling::pipeline::RgbImage;

/// Tiles smaller than this would spend most of their work on the overlap.
pub const MIN_UPSCALE_TILE: usize = 32;
/// Input pixels a side per tile unless asked otherwise: an RRDBNet's ×4 stage then holds
/// 1024² × 64 channels (256 MiB) per tensor.
pub const DEFAULT_UPSCALE_TILE: usize = 256;

/// One picture to upscale.
#[derive(Debug, Clone)]
pub struct UpscaleJob {
    /// An upscaler `.safetensors` file, or `org/name/file.safetensors` on the hub
    /// (see [`upscaler_path`]).
    pub model: PathBuf,
    pub image: RgbImage,
    /// Tile edge in input pixels; `None` runs the whole picture at once.
    pub tile: Option<usize>,
}

/// An upscaled picture and what made it.
#[derive(Debug, Clone)]
pub struct Upscaled {
    pub image: RgbImage,
    /// The upscaler's file name without extension.
    pub upscaler: String,
    pub scale: usize,
}

/// Why an upscale failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpscaleFailure {
    /// The upscaler file could not be loaded.
    #[error(transparent)]
    Model(#[from] ModelLoadFailure),
    /// The picture or the tile size cannot be used with this upscaler.
    #[error("{0}")]
    InvalidRequest(String),
    #[error("computation failed: {0}")]
    Compute(String),
    /// A hub upscaler could not be fetched (offline without a cached copy, no such file).
    #[error("{0}")]
    Fetch(String),
}

/// The upscaled picture of `job` saved where it asks, with the source's parameters and
/// A1111's postprocessing keys.
pub(super) fn finish(job: &UpscaleImageJob, upscaled: Upscaled) -> FinishedImage {
    let parameters = postprocess_parameters(&job.parameters, &upscaled);
    let seed = GenerationParameters::parse_a1111(&job.parameters).map_or(0, |p| p.seed);
    let image = upscaled.image;
    let saved = match &job.output {
        ImageOutput::None => Ok(None),
        ImageOutput::Folder(dir) => save_numbered(dir, &image, seed, &parameters).map(Some),
        ImageOutput::File(path) => {
            write_png(path, &image, &parameters).map(|()| Some(path.clone()))
        }
    };
    let (path, save_error) = match saved {
        Ok(path) => (path, None),
        Err(message) => (None, Some(message)),
    };
    FinishedImage {
        image,
        seed,
        parameters,
        path,
        save_error,
    }
}

/// `parameters` with `Postprocess upscale by` and `Postprocess upscaler` added to its last
/// line, as A1111's Extras tab records an upscale.
pub fn postprocess_parameters(parameters: &str, upscaled: &Upscaled) -> String {
    let note = format!(
        "Postprocess upscale by: {}, Postprocess upscaler: {}",
        upscaled.scale, upscaled.upscaler
    );
    match parameters.trim_end() {
        "" => note,
        text => format!("{text}, {note}"),
    }
}

/// The file upscaler `model` names: a local path that exists as given; else
/// `org/name/file.safetensors` fetched from the hub into its cache on first use (no network
/// once cached), the download reported to `observer`, which may stop it. Used by Upscale and
/// the hires fix alike.
pub fn upscaler_path(
    model: &Path,
    observer: &mut dyn RunObserver,
) -> Result<PathBuf, UpscalerFetchError> {
    let Some((id, file)) = upscaler_repo_file(model) else {
        return Ok(model.to_path_buf());
    };
    let source = ModelSource::Hub(format!("{id}/{file}"));
    HubClient::from_env().fetch_upscaler(&id, &file, &HubCache::from_env(), |name, progress| {
        add_on_download(observer, &source, name, progress)
    })
}

/// Loads the upscaler `model` names ([`upscaler_path`]) unless `cached` already holds it.
pub(super) fn load_cached<'a>(
    cached: &'a mut Option<(PathBuf, LoadedUpscaler)>,
    model: &PathBuf,
    options: &LoadOptions,
    observer: &mut dyn RunObserver,
) -> Result<&'a LoadedUpscaler, UpscaleFailure> {
    if cached.as_ref().is_none_or(|(loaded, _)| loaded != model) {
        // Free the old network before the new one claims its memory.
        *cached = None;
        let path =
            upscaler_path(model, observer).map_err(|err| UpscaleFailure::Fetch(err.to_string()))?;
        let upscaler = load_upscaler(&path, options).map_err(load_failure)?;
        *cached = Some((model.clone(), upscaler));
    }
    Ok(&cached.as_ref().expect("loaded just above").1)
}

/// What can be told before any work: the network reads and writes RGB, the result is not
/// larger than pictures this app reads, the tile is not too small.
pub fn check_upscale(
    upscaler: &LoadedUpscaler,
    image: &RgbImage,
    tile: Option<usize>,
) -> Result<(), UpscaleFailure> {
    let net = &upscaler.net;
    if net.input_channels() != 3 || net.output_channels() != 3 {
        return Err(UpscaleFailure::InvalidRequest(format!(
            "{} maps {} channels to {}; only RGB upscalers (3 to 3) are supported",
            upscaler.name,
            net.input_channels(),
            net.output_channels()
        )));
    }
    let scale = net.scale();
    let largest = image.width.max(image.height) * scale;
    if largest > MAX_PICTURE_SIDE as usize {
        return Err(UpscaleFailure::InvalidRequest(format!(
            "{}×{} upscaled {scale}× would be {} pixels a side, more than the {MAX_PICTURE_SIDE} this app handles",
            image.width, image.height, largest
        )));
    }
    if image.width == 0 || image.height == 0 {
        return Err(UpscaleFailure::InvalidRequest(
            "the picture is empty".into(),
        ));
    }
    if let Some(tile) = tile.filter(|&t| t < MIN_UPSCALE_TILE) {
        return Err(UpscaleFailure::InvalidRequest(format!(
            "tile {tile}: at least {MIN_UPSCALE_TILE} pixels (0 for no tiling)"
        )));
    }
    Ok(())
}

/// Upscales `image`; `None` when the observer cancelled.
pub(super) fn run_upscale(
    upscaler: &LoadedUpscaler,
    image: &RgbImage,
    tile: Option<usize>,
    options: &LoadOptions,
    observer: &mut dyn RunObserver,
) -> Result<Option<Upscaled>, UpscaleFailure> {
    check_upscale(upscaler, image, tile)?;
    let compute =
        |err: candle_core::Error| UpscaleFailure::Compute(crate::describe_candle_error(&err));
    let input = image_to_tensor(image, &options.device, options.dtype).map_err(compute)?;
    let output = upscale_tiled(
        &upscaler.net,
        &input,
        tile.map(Tiling::with_tile),
        &mut |progress: TileProgress| {
            observer.upscale_tile(progress.done, progress.total);
            !observer.is_cancelled()
        },
    )
    .map_err(compute)?;
    let Some(output) = output else {
        return Ok(None);
    };
    Ok(Some(Upscaled {
        image: tensor_to_image(&output).map_err(compute)?,
        upscaler: upscaler.name.clone(),
        scale: upscaler.net.scale(),
    }))
}

/// `(1, 3, height, width)`: each byte divided by 255 in f32, as torch does it.
pub fn image_to_tensor(
    image: &RgbImage,
    device: &Device,
    dtype: DType,
) -> candle_core::Result<Tensor> {
    let values: Vec<f32> = image.pixels.iter().map(|&p| p as f32 / 255.0).collect();
    Tensor::from_vec(values, (image.height, image.width, 3), &Device::Cpu)?
        .permute((2, 0, 1))?
        .unsqueeze(0)?
        .to_dtype(dtype)?
        .to_device(device)
}

/// A `(1, 3, height, width)` output as 8 bits: clamped to [0, 1], times 255, rounded half to
/// even (numpy's `round`, which A1111 uses).
pub fn tensor_to_image(output: &Tensor) -> candle_core::Result<RgbImage> {
    let (_, channels, height, width) = output.dims4()?;
    if channels != 3 {
        candle_core::bail!("expected 3 output channels, got {channels}");
    }
    let values = output
        .to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?
        .squeeze(0)?
        .permute((1, 2, 0))?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let pixels = values
        .into_iter()
        .map(|v| (v.clamp(0.0, 1.0) * 255.0).round_ties_even() as u8)
        .collect();
    Ok(RgbImage {
        width,
        height,
        pixels,
    })
}
