//! Depth Anything weights: a Hugging Face folder (`config.json`, `model.safetensors`,
//! `preprocessor_config.json`, as `depth-anything/Depth-Anything-V2-Small-hf`) or one
//! `.safetensors` file with that `config.json` beside it; and the depth map of a picture.

use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device};
use serde::Deserialize;

use super::loading::{component_files, read_json, LoadError};
use super::weights::WeightMap;
use crate::imaging::depth::{depth_map, DepthInput};
use crate::imaging::RgbImage;
use crate::networks::depth_anything::{DepthAnything, DepthAnythingConfig};

/// The Hub repository of the depth model the `depth_anything_v2` preprocessor uses.
pub const DEPTH_ANYTHING_V2_SMALL: &str = "depth-anything/Depth-Anything-V2-Small-hf";

/// Largest side the processor may be configured to resize to.
const MAX_INPUT_SIDE: usize = 4096;

/// A loaded depth network with its processor settings.
pub struct DepthEstimator {
    net: DepthAnything,
    input: DepthInput,
    device: Device,
}

#[derive(Debug, Deserialize)]
struct ProcessorConfig {
    #[serde(default)]
    size: Option<ProcessorSize>,
    #[serde(default)]
    keep_aspect_ratio: Option<bool>,
    #[serde(default)]
    ensure_multiple_of: Option<usize>,
    #[serde(default)]
    image_mean: Option<[f64; 3]>,
    #[serde(default)]
    image_std: Option<[f64; 3]>,
    #[serde(default)]
    do_pad: Option<bool>,
    #[serde(default)]
    do_resize: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct ProcessorSize {
    height: usize,
    width: usize,
}

/// Loads a depth model from `path` (folder or `.safetensors` file) onto `device`, in f32.
pub fn load_depth_model(path: &Path, device: &Device) -> Result<DepthEstimator, LoadError> {
    let (folder, files) = component_files(
        path,
        "a depth model must be a .safetensors file or a Hugging Face folder (pickle files can run code when loaded)",
    )?;
    let config_path = folder.join("config.json");
    if !config_path.is_file() {
        return Err(LoadError::Unsupported {
            path: path.to_path_buf(),
            message: format!(
                "no config.json at {}; a depth model needs the config.json of its Hugging Face repository (such as {DEPTH_ANYTHING_V2_SMALL}) beside it",
                config_path.display()
            ),
        });
    }
    let config: DepthAnythingConfig = read_json(&config_path)?;
    config.check().map_err(|message| LoadError::Unsupported {
        path: config_path.clone(),
        message: format!("not a supported Depth Anything config: {message}"),
    })?;
    let input = read_processor(&folder.join("preprocessor_config.json"))?;
    let mut weights = WeightMap::default();
    for file in &files {
        weights
            .read_safetensors(file, DType::F32, device, false)
            .map_err(|err| LoadError::Weights {
                path: file.clone(),
                message: crate::describe_candle_error(&err),
            })?;
    }
    let vb = Arc::new(weights).var_builder(Default::default(), DType::F32, device);
    let net = DepthAnything::new(&config, vb).map_err(|err| LoadError::Build {
        component: "depth model".into(),
        dir: path.to_path_buf(),
        message: crate::describe_candle_error(&err),
    })?;
    Ok(DepthEstimator {
        net,
        input,
        device: device.clone(),
    })
}

/// The processor settings beside the weights, or Depth-Anything-V2-Small-hf's without one.
fn read_processor(path: &Path) -> Result<DepthInput, LoadError> {
    let defaults = DepthInput::default();
    if !path.is_file() {
        return Ok(defaults);
    }
    let config: ProcessorConfig = read_json(path)?;
    let invalid = |message: String| LoadError::InvalidJson {
        path: path.to_path_buf(),
        message,
    };
    if config.do_pad == Some(true) || config.do_resize == Some(false) {
        return Err(invalid(
            "do_pad true or do_resize false is not supported (Depth Anything resizes to a multiple of the patch size and does not pad)".into(),
        ));
    }
    let (height, width) = match config.size {
        Some(size) => (size.height, size.width),
        None => (defaults.height, defaults.width),
    };
    let multiple = config
        .ensure_multiple_of
        .unwrap_or(defaults.ensure_multiple_of);
    if !(1..=MAX_INPUT_SIDE).contains(&height)
        || !(1..=MAX_INPUT_SIDE).contains(&width)
        || !(1..=64).contains(&multiple)
    {
        return Err(invalid(format!(
            "size {width}×{height} or ensure_multiple_of {multiple} out of range (sides 1..={MAX_INPUT_SIDE}, multiple 1..=64)"
        )));
    }
    let std = config.image_std.unwrap_or(defaults.std);
    if std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
        return Err(invalid("image_std must be positive".into()));
    }
    Ok(DepthInput {
        height,
        width,
        keep_aspect_ratio: config.keep_aspect_ratio.unwrap_or(false),
        ensure_multiple_of: multiple,
        mean: config.image_mean.unwrap_or(defaults.mean),
        std,
    })
}

impl DepthEstimator {
    /// The predicted depth for `picture` as the network gives it: values row by row and
    /// `(width, height)` (the processor's input size).
    pub fn predict(&self, picture: &RgbImage) -> candle_core::Result<(Vec<f32>, usize, usize)> {
        // Keeping the aspect ratio of a very elongated picture makes a long side far beyond
        // the processor's size (and the network's tokens with it): refused before resizing.
        let (width, height) = self.input.size_for(picture.width, picture.height);
        if width > MAX_INPUT_SIDE || height > MAX_INPUT_SIDE {
            candle_core::bail!(
                "a {}×{} picture would be a {width}×{height} depth input (at most {MAX_INPUT_SIDE} a side); crop it nearer to square",
                picture.width,
                picture.height
            );
        }
        let (values, width, height) = self.input.pixel_values(picture);
        let (depth, h, w) = self.net.predict(&values, height, width, &self.device)?;
        Ok((depth, w, h))
    }

    /// The `depth_anything_v2` map of `picture` at its size (grey RGB, white nearest).
    pub fn depth_map(&self, picture: &RgbImage) -> candle_core::Result<RgbImage> {
        let (depth, w, h) = self.predict(picture)?;
        Ok(depth_map(&depth, w, h, picture.width, picture.height))
    }
}
