//! Tiny autoencoder files ([`crate::networks::taesd`]): a diffusers `AutoencoderTiny` folder
//! (`madebyollin/taesd`, `madebyollin/taesdxl`: `config.json` and
//! `diffusion_pytorch_model.safetensors`), one `.safetensors` with its names, or the
//! original `taesd_decoder.safetensors` / `taesd_encoder.safetensors` files, whose tensors
//! are the layers' bare indices (the decoder's shifted by one by a leading clamp).

use std::path::Path;
use std::sync::Arc;

use super::loading::{model_name, read_json, weight_files, LoadError, LoadOptions};
use super::safetensors_file::SafetensorsFile;
use super::weights::WeightMap;
use super::{CatalogEntry, ModelDefaults};
use crate::networks::taesd::{TinyDecoder, TinyEncoder, TinyVaeConfig};
use crate::networks::Family;

/// Tiny autoencoders are ~5 MB a file.
const MAX_TINY_VAE_FILE_BYTES: u64 = 1 << 30;

/// A loaded tiny autoencoder: either half may be missing (the original files hold one each).
pub struct TinyVae {
    pub name: String,
    pub decoder: Option<Arc<TinyDecoder>>,
    pub encoder: Option<Arc<TinyEncoder>>,
}

#[derive(serde::Deserialize)]
struct TinyConfigJson {
    #[serde(rename = "_class_name")]
    class_name: String,
    #[serde(default = "one")]
    scaling_factor: f64,
}

fn one() -> f64 {
    1.0
}

/// Where the layers of each half sit in a file: diffusers names or original bare indices.
enum Naming {
    Diffusers,
    OriginalDecoder,
    OriginalEncoder,
}

pub fn load_tiny_vae(path: &Path, options: &LoadOptions) -> Result<TinyVae, LoadError> {
    let unsupported = |message: String| LoadError::Unsupported {
        path: path.to_path_buf(),
        message,
    };
    if !path.exists() {
        return Err(LoadError::NotFound {
            path: path.to_path_buf(),
        });
    }
    let file = if path.is_dir() {
        let config: TinyConfigJson = read_json(&path.join("config.json"))?;
        if config.class_name != "AutoencoderTiny" {
            return Err(unsupported(format!(
                "a {} folder, not an AutoencoderTiny",
                config.class_name
            )));
        }
        // Pipelines divide latents by this before decoding; every TAESD uses 1.
        if config.scaling_factor != 1.0 {
            return Err(unsupported(format!(
                "scaling_factor {} (every tiny autoencoder uses 1.0)",
                config.scaling_factor
            )));
        }
        match weight_files(path)?.as_slice() {
            [file] => file.clone(),
            _ => return Err(unsupported("sharded weights in a tiny autoencoder".into())),
        }
    } else {
        if let Some(extension) = super::pickle_extension(path) {
            return Err(unsupported(format!(
                "a .{extension} file is a Python pickle, which can run code when loaded; use the .safetensors version"
            )));
        }
        path.to_path_buf()
    };
    let weights_error = |err: candle_core::Error| LoadError::Weights {
        path: file.clone(),
        message: crate::describe_candle_error(&err),
    };
    let reader =
        SafetensorsFile::open_at_most(&file, MAX_TINY_VAE_FILE_BYTES).map_err(weights_error)?;
    let names: Vec<(&str, &[usize])> = reader
        .names()
        .filter_map(|name| Some((name, reader.shape(name)?)))
        .collect();
    let has = |name: &str| names.iter().any(|(n, _)| *n == name);
    let naming = if has("decoder.layers.0.weight") || has("encoder.layers.0.weight") {
        Naming::Diffusers
    } else if has("0.weight") && has("1.conv.0.weight") {
        Naming::OriginalEncoder
    } else if has("1.weight") && !has("0.weight") {
        Naming::OriginalDecoder
    } else {
        return Err(unsupported(
            "not a tiny autoencoder (TAESD): no decoder.layers.* / encoder.layers.* tensors, nor the layers of taesd_decoder / taesd_encoder files".into(),
        ));
    };
    let detected = |result: Result<TinyVaeConfig, _>| {
        result.map_err(|err: crate::networks::taesd::TinyVaeError| unsupported(err.to_string()))
    };
    let (decoder_config, encoder_config) = match naming {
        Naming::Diffusers => (
            has("decoder.layers.0.weight")
                .then(|| detected(TinyVaeConfig::detect_decoder(&names, "decoder.layers.", 0)))
                .transpose()?,
            has("encoder.layers.0.weight")
                .then(|| detected(TinyVaeConfig::detect_encoder(&names, "encoder.layers.")))
                .transpose()?,
        ),
        Naming::OriginalDecoder => (
            Some(detected(TinyVaeConfig::detect_decoder(&names, "", 1))?),
            None,
        ),
        Naming::OriginalEncoder => (
            None,
            Some(detected(TinyVaeConfig::detect_encoder(&names, ""))?),
        ),
    };
    // Every tensor under diffusers' names.
    let mut weights = WeightMap::default();
    for (name, _) in &names {
        let renamed = match naming {
            Naming::Diffusers => name.to_string(),
            Naming::OriginalEncoder => format!("encoder.layers.{name}"),
            Naming::OriginalDecoder => {
                let Some((index, rest)) = name.split_once('.') else {
                    continue;
                };
                match index.parse::<usize>() {
                    Ok(index) if (1..10_000).contains(&index) => {
                        format!("decoder.layers.{}.{rest}", index - 1)
                    }
                    _ => continue,
                }
            }
        };
        let tensor = reader
            .load(name, &options.device)
            .and_then(|tensor| options.stored(tensor))
            .map_err(weights_error)?;
        weights.insert(renamed, tensor);
    }
    let weights = Arc::new(weights);
    let vb = weights.var_builder(Default::default(), options.dtype, &options.device);
    let build_error = |component: &str, err: candle_core::Error| LoadError::Build {
        component: component.into(),
        dir: path.to_path_buf(),
        message: crate::describe_candle_error(&err),
    };
    let decoder = decoder_config
        .map(|config| TinyDecoder::new(&config, vb.pp("decoder.layers")))
        .transpose()
        .map_err(|err| build_error("tiny VAE decoder", err))?;
    let encoder = encoder_config
        .map(|config| TinyEncoder::new(&config, vb.pp("encoder.layers")))
        .transpose()
        .map_err(|err| build_error("tiny VAE encoder", err))?;
    Ok(TinyVae {
        name: model_name(path),
        decoder: decoder.map(Arc::new),
        encoder: encoder.map(Arc::new),
    })
}

/// The tiny autoencoder made for `family`'s latents, as a hub download: `madebyollin/taesd`
/// (SD 1 and 2) or `madebyollin/taesdxl`, ~5 MB each. The same form as the model catalog's
/// entries, but not in its list: they are not models to generate with.
pub fn tiny_vae_entry(family: Family) -> CatalogEntry {
    let (id, name) = match family {
        Family::StableDiffusion => ("madebyollin/taesd", "TAESD"),
        Family::StableDiffusionXl => ("madebyollin/taesdxl", "TAESDXL"),
    };
    CatalogEntry {
        id: id.into(),
        name: name.into(),
        family,
        revision: "main".into(),
        description: "Tiny autoencoder for live previews and fast decodes".into(),
        license: "MIT".into(),
        defaults: ModelDefaults::for_model(family, false, 512),
        approx_size_bytes: 10_000_000,
        files: vec![
            "config.json".into(),
            "diffusion_pytorch_model.safetensors".into(),
        ],
    }
}
