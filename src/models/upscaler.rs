//! Upscaler files: one `.safetensors` of an ESRGAN-family network
//! ([`crate::networks::upscalers`]), its architecture and scale told from the tensors as
//! spandrel tells them. Pickles (`.pth`, the format most upscalers are published in) are
//! refused: unpickling can run any code the file contains.

use std::path::Path;
use std::sync::Arc;

use super::loading::{model_name, LoadError, LoadOptions};
use super::safetensors_file::SafetensorsFile;
use super::weights::WeightMap;
use crate::networks::upscalers::{detect, TensorShapes, Upscaler, UpscalerConfig};

/// Upscaler files are a few MB (RealESRGAN_x4plus: 67 MB in f32); nothing real comes near this.
const MAX_UPSCALER_FILE_BYTES: u64 = 4 << 30;

/// A loaded upscaler and what it is.
pub struct LoadedUpscaler {
    /// The file name without its extension, as image metadata names it.
    pub name: String,
    pub config: UpscalerConfig,
    pub net: Arc<Upscaler>,
}

pub fn load_upscaler(path: &Path, options: &LoadOptions) -> Result<LoadedUpscaler, LoadError> {
    if !path.exists() {
        return Err(LoadError::NotFound {
            path: path.to_path_buf(),
        });
    }
    if let Some(extension) = super::pickle_extension(path) {
        return Err(LoadError::Unsupported {
            path: path.to_path_buf(),
            message: format!(
                "a .{extension} file is a Python pickle, which can run code when loaded; use the model's .safetensors version (chaiNNer converts .pth upscalers to .safetensors)"
            ),
        });
    }
    let is_safetensors = path
        .extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("safetensors"));
    if path.is_dir() || !is_safetensors {
        return Err(LoadError::Unsupported {
            path: path.to_path_buf(),
            message: "an upscaler must be one .safetensors file".into(),
        });
    }
    let weights_error = |err: candle_core::Error| LoadError::Weights {
        path: path.to_path_buf(),
        message: crate::describe_candle_error(&err),
    };
    let reader =
        SafetensorsFile::open_at_most(path, MAX_UPSCALER_FILE_BYTES).map_err(weights_error)?;
    // Detection reads the header only: names and shapes, every number bounded there.
    let shapes: TensorShapes = reader
        .names()
        .filter_map(|name| Some((name.to_string(), reader.shape(name)?.to_vec())))
        .collect();
    let config = detect(&shapes).map_err(|err| LoadError::Unsupported {
        path: path.to_path_buf(),
        message: err.to_string(),
    })?;
    let mut weights = WeightMap::default();
    for name in reader.names() {
        let Some(module) = config.module_name(name) else {
            continue;
        };
        let tensor = reader
            .load(name, &options.device)
            .and_then(|tensor| options.stored(tensor))
            .map_err(weights_error)?;
        weights.insert(module, tensor);
    }
    let weights = Arc::new(weights);
    let vb = weights.var_builder(Default::default(), options.dtype, &options.device);
    let net = Upscaler::new(&config, vb).map_err(|err| LoadError::Build {
        component: format!("{} upscaler", config.architecture()),
        dir: path.to_path_buf(),
        message: crate::describe_candle_error(&err),
    })?;
    Ok(LoadedUpscaler {
        name: model_name(path),
        config,
        net: Arc::new(net),
    })
}
