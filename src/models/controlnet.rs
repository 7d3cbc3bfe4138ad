//! ControlNet files: a diffusers `ControlNetModel` folder (`config.json` and
//! `diffusion_pytorch_model[.fp16].safetensors`, as in `lllyasviel/control_v11p_sd15_canny`),
//! or one `.safetensors` file with diffusers' tensor names and its `config.json` beside it.

use std::path::Path;
use std::sync::Arc;

use super::loading::{model_name, read_json, weight_files, LoadError, LoadOptions};
use super::safetensors_file::SafetensorsFile;
use super::weights::WeightMap;
use crate::networks::controlnet::{ControlNetConfig, ControlNetModel};

/// A loaded ControlNet and the name it goes by in image metadata.
pub struct LoadedControlNet {
    pub name: String,
    pub net: Arc<ControlNetModel>,
}

/// Tensor names of the original (A1111 / `lllyasviel/ControlNet-v1-1`) layout.
const LDM_PREFIX: &str = "control_model.";

pub fn load_controlnet(path: &Path, options: &LoadOptions) -> Result<LoadedControlNet, LoadError> {
    if !path.exists() {
        return Err(LoadError::NotFound {
            path: path.to_path_buf(),
        });
    }
    let (config_path, files) = if path.is_dir() {
        (path.join("config.json"), weight_files(path)?)
    } else {
        let is_safetensors = path
            .extension()
            .is_some_and(|ext| ext.eq_ignore_ascii_case("safetensors"));
        if !is_safetensors {
            return Err(LoadError::Unsupported {
                path: path.to_path_buf(),
                message: "a ControlNet must be a .safetensors file or a diffusers folder (pickle files can run code when loaded)".into(),
            });
        }
        let folder = path.parent().unwrap_or(Path::new("."));
        (folder.join("config.json"), vec![path.to_path_buf()])
    };
    for file in &files {
        let reader = SafetensorsFile::open(file).map_err(|err| LoadError::Weights {
            path: file.clone(),
            message: crate::describe_candle_error(&err),
        })?;
        if reader.names().any(|n| n.starts_with(LDM_PREFIX)) {
            return Err(LoadError::Unsupported {
                path: file.clone(),
                message: "this ControlNet is in the original (control_model.*) layout, which is not supported yet; use its diffusers version (a folder with config.json, e.g. lllyasviel/control_v11p_sd15_canny)".into(),
            });
        }
        if reader.names().any(|n| n.starts_with("up_blocks.")) {
            return Err(LoadError::Unsupported {
                path: file.clone(),
                message: "this is a UNet, not a ControlNet".into(),
            });
        }
    }
    if !config_path.is_file() {
        return Err(LoadError::Unsupported {
            path: path.to_path_buf(),
            message: format!(
                "no ControlNet config.json at {}; a ControlNet file needs the config.json of its diffusers repository beside it",
                config_path.display()
            ),
        });
    }
    let config: ControlNetConfig = read_json(&config_path)?;
    let mut weights = WeightMap::default();
    for file in &files {
        weights
            .read_safetensors(
                file,
                options.dtype,
                &options.device,
                options.keeps_half_weights(),
            )
            .map_err(|err| LoadError::Weights {
                path: file.clone(),
                message: crate::describe_candle_error(&err),
            })?;
    }
    let weights = Arc::new(weights);
    let vb = weights.var_builder(Default::default(), options.dtype, &options.device);
    let net = ControlNetModel::new(&config, vb).map_err(|err| LoadError::Build {
        component: "controlnet".into(),
        dir: path.to_path_buf(),
        message: crate::describe_candle_error(&err),
    })?;
    Ok(LoadedControlNet {
        name: model_name(path),
        net: Arc::new(net),
    })
}
