//! ControlNet and T2I-Adapter files: a diffusers `ControlNetModel` or `T2IAdapter` folder (`config.json` and
//! `diffusion_pytorch_model[.fp16].safetensors`, as in `lllyasviel/control_v11p_sd15_canny`),
//! one `.safetensors` file with diffusers' tensor names and its `config.json` beside it, or
//! an original single file (`control_model.*` names, as A1111 users download
//! `control_v11p_sd15_canny.safetensors`) — SD 1.x and 2.x, configured as the built-in UNet
//! of its family unless a `config.json` lies beside it. A `config.json` of class `T2IAdapter`
//! (as in `TencentARC/t2iadapter_canny_sd15v2`) makes the unit a T2I-Adapter.

use std::path::Path;
use std::sync::Arc;

use super::loading::{
    builtin_unet_config, component_files, model_name, read_json, LoadError, LoadOptions,
};
use super::safetensors_file::SafetensorsFile;
use super::single_file::controlnet_name;
use super::weights::WeightMap;
use crate::networks::controlnet::{ControlNetConfig, ControlNetModel};
use crate::networks::t2i_adapter::{T2IAdapter, T2IAdapterConfig};
use crate::networks::unet::PerBlock;
use crate::sampling::pipeline::ControlNetwork;

/// A loaded ControlNet (or T2I-Adapter) and the name it goes by in image metadata.
pub struct LoadedControlNet {
    pub name: String,
    pub net: ControlNetwork,
}

/// Tensor names of the original (A1111 / `lllyasviel/ControlNet-v1-1`) layout.
const LDM_PREFIX: &str = "control_model.";

pub fn load_controlnet(path: &Path, options: &LoadOptions) -> Result<LoadedControlNet, LoadError> {
    let (folder, files) = component_files(
        path,
        "a ControlNet must be a .safetensors file or a diffusers folder (pickle files can run code when loaded)",
    )?;
    let config_path = folder.join("config.json");
    let weights_error = |file: &Path, err: candle_core::Error| LoadError::Weights {
        path: file.to_path_buf(),
        message: crate::describe_candle_error(&err),
    };
    if let [file] = files.as_slice() {
        let reader = SafetensorsFile::open(file).map_err(|err| weights_error(file, err))?;
        if reader.names().any(|n| n.starts_with(LDM_PREFIX)) {
            return load_original(path, file, &reader, &config_path, options);
        }
    }
    for file in &files {
        let reader = SafetensorsFile::open(file).map_err(|err| weights_error(file, err))?;
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
    let class: serde_json::Value = read_json(&config_path)?;
    let is_adapter = class.get("_class_name").and_then(|c| c.as_str()) == Some("T2IAdapter")
        || class.get("adapter_type").is_some();
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
    if is_adapter {
        let config: T2IAdapterConfig = read_json(&config_path)?;
        return build_adapter(path, &config, weights, options);
    }
    let config: ControlNetConfig = read_json(&config_path)?;
    build(path, &config, weights, options)
}

fn build_adapter(
    path: &Path,
    config: &T2IAdapterConfig,
    weights: WeightMap,
    options: &LoadOptions,
) -> Result<LoadedControlNet, LoadError> {
    let adapter = build_network(path, "t2i-adapter", weights, options, |vb| {
        T2IAdapter::new(config, vb)
    })?;
    Ok(LoadedControlNet {
        name: model_name(path),
        net: ControlNetwork::Adapter(Arc::new(adapter)),
    })
}

fn build(
    path: &Path,
    config: &ControlNetConfig,
    weights: WeightMap,
    options: &LoadOptions,
) -> Result<LoadedControlNet, LoadError> {
    let net = build_network(path, "controlnet", weights, options, |vb| {
        ControlNetModel::new(config, vb)
    })?;
    Ok(LoadedControlNet {
        name: model_name(path),
        net: ControlNetwork::ControlNet(Arc::new(net)),
    })
}

/// A network from `weights`, its build failure named as `component` of `path`.
fn build_network<T>(
    path: &Path,
    component: &str,
    weights: WeightMap,
    options: &LoadOptions,
    make: impl FnOnce(candle_nn::VarBuilder) -> candle_core::Result<T>,
) -> Result<T, LoadError> {
    let weights = Arc::new(weights);
    let vb = weights.var_builder(Default::default(), options.dtype, &options.device);
    make(vb).map_err(|err| LoadError::Build {
        component: component.into(),
        dir: path.to_path_buf(),
        message: crate::describe_candle_error(&err),
    })
}

/// An original-layout ControlNet file, renamed to diffusers names.
fn load_original(
    path: &Path,
    file: &Path,
    reader: &SafetensorsFile,
    config_path: &Path,
    options: &LoadOptions,
) -> Result<LoadedControlNet, LoadError> {
    let config: ControlNetConfig = if config_path.is_file() {
        read_json(config_path)?
    } else {
        // The cross-attention width tells the family (768: SD 1.x, 1024: SD 2.x).
        let context = reader
            .shape("control_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight")
            .and_then(|shape| shape.get(1).copied());
        let text = context.and_then(builtin_unet_config).ok_or_else(|| LoadError::Unsupported {
            path: file.to_path_buf(),
            message: format!(
                "an original-layout ControlNet for text embeddings {} wide; only SD 1.x (768) and SD 2.x (1024) ones are known — put the config.json of its diffusers version beside it",
                context.map_or_else(|| "of unknown width".to_string(), |c| c.to_string())
            ),
        })?;
        serde_json::from_str(text).map_err(|err| LoadError::InvalidJson {
            path: file.to_path_buf(),
            message: format!("built-in config: {err}"),
        })?
    };
    let layers_per_block = match &config.unet.layers_per_block {
        PerBlock::One(n) => *n,
        PerBlock::Each(v) => v.first().copied().unwrap_or(2),
    };
    let hint_convs = 2 * config.conditioning_embedding_out_channels.len();
    let mut weights = WeightMap::default();
    for name in reader.names() {
        let Some(diffusers) = name
            .strip_prefix(LDM_PREFIX)
            .and_then(|rest| controlnet_name(rest, layers_per_block, hint_convs))
        else {
            continue;
        };
        let tensor = reader
            .load(name, &options.device)
            .and_then(|tensor| options.stored(tensor))
            .map_err(|err| LoadError::Weights {
                path: file.to_path_buf(),
                message: crate::describe_candle_error(&err),
            })?;
        weights.insert(diffusers, tensor);
    }
    build(path, &config, weights, options)
}
