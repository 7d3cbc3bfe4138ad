//! Loading a diffusers pipeline folder: `model_index.json`, each component's config and
//! its safetensors weights (memory-mapped; fp16 variants upcast as they are read).

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::models::{Family, ModelDefaults};
use crate::pipeline::generate::{describe_candle_error, ModelInfo, StableDiffusion, TextStage};
use crate::pipeline::schedulers::SchedulerConfig;
use crate::pipeline::text_encoder::{ClipTextConfig, ClipTextEncoder};
use crate::pipeline::tokenizer::{ClipTokenizer, TokenizerError};
use crate::pipeline::unet::{UNet2DConditionModel, UNetConfig};
use crate::pipeline::vae::{AutoencoderKL, VaeConfig};

#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub device: Device,
    /// Compute dtype; weights stored in another precision are converted as they load.
    pub dtype: DType,
}

impl LoadOptions {
    /// The fastest device this build and machine offer: CUDA or Metal in f16 when compiled in
    /// and present, else the CPU in f32.
    pub fn best_available() -> Self {
        #[cfg(feature = "cuda")]
        if let Ok(device) = Device::new_cuda(0) {
            return Self {
                device,
                dtype: DType::F16,
            };
        }
        #[cfg(feature = "metal")]
        if let Ok(device) = Device::new_metal(0) {
            return Self {
                device,
                dtype: DType::F16,
            };
        }
        Self::default()
    }
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            device: Device::Cpu,
            dtype: DType::F32,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: no such model folder or file")]
    NotFound { path: PathBuf },
    #[error("{path}: not a diffusers model folder (model_index.json is missing); pass a folder with model_index.json, unet/, vae/, text_encoder/ and tokenizer/")]
    NotDiffusersFolder { path: PathBuf },
    #[error("{path}: {message}")]
    InvalidJson { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Unsupported { path: PathBuf, message: String },
    #[error("{dir}: no safetensors weights found (looked for {looked_for}){hint}")]
    MissingWeights {
        dir: PathBuf,
        looked_for: String,
        hint: String,
    },
    #[error("{path}: cannot read weights: {message}")]
    Weights { path: PathBuf, message: String },
    #[error("{component} ({dir}): {message}")]
    Build {
        component: String,
        dir: PathBuf,
        message: String,
    },
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
}

#[derive(Debug, Deserialize)]
struct ModelIndex {
    #[serde(rename = "_class_name")]
    class_name: String,
    #[serde(default)]
    force_zeros_for_empty_prompt: Option<bool>,
    #[serde(default)]
    text_encoder_2: Option<serde_json::Value>,
}

fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|err| {
        if err.kind() == std::io::ErrorKind::NotFound {
            LoadError::NotFound {
                path: path.to_path_buf(),
            }
        } else {
            LoadError::InvalidJson {
                path: path.to_path_buf(),
                message: err.to_string(),
            }
        }
    })?;
    serde_json::from_str(&text).map_err(|err| LoadError::InvalidJson {
        path: path.to_path_buf(),
        message: format!("invalid config: {err}"),
    })
}

/// The weight files of one component, in diffusers' order of preference: the main file, a
/// sharded index, then the fp16 variant.
fn weight_files(dir: &Path) -> Result<Vec<PathBuf>, LoadError> {
    const STEMS: [&str; 2] = ["diffusion_pytorch_model", "model"];
    for variant in ["", ".fp16"] {
        for stem in STEMS {
            let single = dir.join(format!("{stem}{variant}.safetensors"));
            if single.is_file() {
                return Ok(vec![single]);
            }
            let index = dir.join(format!("{stem}{variant}.safetensors.index.json"));
            if index.is_file() {
                return shard_files(&index, dir);
            }
        }
    }
    let pickles: Vec<String> = [
        "diffusion_pytorch_model.bin",
        "pytorch_model.bin",
        "diffusion_pytorch_model.fp16.bin",
        "pytorch_model.fp16.bin",
    ]
    .iter()
    .filter(|name| dir.join(name).is_file())
    .map(|name| name.to_string())
    .collect();
    let hint = if pickles.is_empty() {
        String::new()
    } else {
        format!(
            "; only PyTorch pickle weights ({}) are here, which can run code when loaded — use a safetensors version of this model",
            pickles.join(", ")
        )
    };
    Err(LoadError::MissingWeights {
        dir: dir.to_path_buf(),
        looked_for: "diffusion_pytorch_model[.fp16].safetensors, model[.fp16].safetensors or a .safetensors.index.json".into(),
        hint,
    })
}

fn shard_files(index: &Path, dir: &Path) -> Result<Vec<PathBuf>, LoadError> {
    #[derive(Deserialize)]
    struct ShardIndex {
        weight_map: std::collections::BTreeMap<String, String>,
    }
    let parsed: ShardIndex = read_json(index)?;
    let mut files: Vec<String> = parsed.weight_map.into_values().collect();
    files.sort();
    files.dedup();
    let invalid = |message: String| LoadError::InvalidJson {
        path: index.to_path_buf(),
        message,
    };
    if files.is_empty() {
        return Err(invalid("the weight_map lists no shard files".into()));
    }
    // Shards live next to the index; a name with a folder in it would read files elsewhere.
    if let Some(bad) = files
        .iter()
        .find(|f| Path::new(f).file_name().map(|n| n.to_string_lossy()) != Some(f.as_str().into()))
    {
        return Err(invalid(format!("shard \"{bad}\" is not a plain file name")));
    }
    let paths: Vec<PathBuf> = files.iter().map(|f| dir.join(f)).collect();
    if let Some(missing) = paths.iter().find(|p| !p.is_file()) {
        return Err(LoadError::NotFound {
            path: missing.clone(),
        });
    }
    Ok(paths)
}

fn var_builder(dir: &Path, options: &LoadOptions) -> Result<VarBuilder<'static>, LoadError> {
    let files = weight_files(dir)?;
    for file in &files {
        // Validate each file on its own so the error names the broken one.
        // SAFETY: the file is only read; if another process truncates it while mapped the
        // process may fault, the same contract every mmap-based loader (diffusers included) has.
        unsafe { candle_core::safetensors::MmapedSafetensors::new(file) }.map_err(|err| {
            LoadError::Weights {
                path: file.clone(),
                message: format!(
                    "{} (is the file truncated or not safetensors?)",
                    describe_candle_error(&err)
                ),
            }
        })?;
    }
    // SAFETY: as above.
    unsafe { VarBuilder::from_mmaped_safetensors(&files, options.dtype, &options.device) }.map_err(
        |err| LoadError::Weights {
            path: files[0].clone(),
            message: describe_candle_error(&err),
        },
    )
}

/// Where component weights come from: the folder's safetensors, or fresh random values
/// (for benchmarks of an architecture without its files).
enum Weights {
    Files,
    Random,
}

/// Fresh tensors drawn from each parameter's default initialiser. They are plain tensors,
/// not `Var`s: a `Var` makes every op record its inputs for backprop, which would keep all
/// activations of a generation alive.
struct RandomWeights;

impl candle_nn::var_builder::SimpleBackend for RandomWeights {
    fn get(
        &self,
        shape: candle_core::Shape,
        _name: &str,
        init: candle_nn::Init,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<candle_core::Tensor> {
        Ok(init.var(shape, dtype, device)?.as_detached_tensor())
    }

    fn get_unchecked(
        &self,
        name: &str,
        _: DType,
        _: &Device,
    ) -> candle_core::Result<candle_core::Tensor> {
        candle_core::bail!("random weights have no shape for {name}")
    }

    fn contains_tensor(&self, _name: &str) -> bool {
        false
    }
}

impl Weights {
    fn var_builder(
        &self,
        dir: &Path,
        options: &LoadOptions,
    ) -> Result<VarBuilder<'static>, LoadError> {
        match self {
            Weights::Files => var_builder(dir, options),
            Weights::Random => Ok(VarBuilder::from_backend(
                Box::new(RandomWeights),
                options.dtype,
                options.device.clone(),
            )),
        }
    }
}

fn build_error(component: &str, dir: &Path, err: candle_core::Error) -> LoadError {
    LoadError::Build {
        component: component.to_string(),
        dir: dir.to_path_buf(),
        message: describe_candle_error(&err),
    }
}

fn load_text_stage(
    root: &Path,
    encoder_dir: &str,
    tokenizer_dir: &Path,
    options: &LoadOptions,
    weights: &Weights,
) -> Result<TextStage, LoadError> {
    let tokenizer = ClipTokenizer::from_dir(tokenizer_dir)?;
    let dir = root.join(encoder_dir);
    let config: ClipTextConfig = read_json(&dir.join("config.json"))?;
    let vb = weights.var_builder(&dir, options)?;
    let encoder = ClipTextEncoder::new(&config, tokenizer.eos_id(), vb)
        .map_err(|err| build_error(encoder_dir, &dir, err))?;
    Ok(TextStage {
        tokenizer: std::sync::Arc::new(tokenizer),
        encoder,
    })
}

/// A model's name for people and image metadata: the hub id for a Hugging Face cache snapshot
/// (`…/models--org--name/snapshots/<commit>` → `org/name`), else the folder's name.
fn model_name(path: &Path) -> String {
    let folder = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
    let parent = path.parent();
    let repo = parent.and_then(Path::parent).and_then(folder);
    if parent.and_then(folder).as_deref() == Some("snapshots") {
        if let Some(id) = repo.as_deref().and_then(|r| r.strip_prefix("models--")) {
            return id.replacen("--", "/", 1);
        }
    }
    folder(path).unwrap_or_else(|| path.display().to_string())
}

/// Loads a diffusers pipeline folder (SD 1.x, SD 2.x, SDXL and their Turbo variants).
pub fn load_model(path: &Path, options: &LoadOptions) -> Result<StableDiffusion, LoadError> {
    load(path, None, options, &Weights::Files)
}

/// Builds the architecture a diffusers folder's configs describe with random weights; the
/// folder needs no weight files. `tokenizer_dir` replaces the folder's `tokenizer/`.
pub fn load_model_with_random_weights(
    config_dir: &Path,
    tokenizer_dir: &Path,
    options: &LoadOptions,
) -> Result<StableDiffusion, LoadError> {
    load(config_dir, Some(tokenizer_dir), options, &Weights::Random)
}

fn load(
    path: &Path,
    tokenizer_override: Option<&Path>,
    options: &LoadOptions,
    weights: &Weights,
) -> Result<StableDiffusion, LoadError> {
    if !path.exists() {
        return Err(LoadError::NotFound {
            path: path.to_path_buf(),
        });
    }
    let index_path = path.join("model_index.json");
    if !index_path.is_file() {
        return Err(LoadError::NotDiffusersFolder {
            path: path.to_path_buf(),
        });
    }
    let index: ModelIndex = read_json(&index_path)?;
    let is_xl = index.class_name.contains("XL")
        || index
            .text_encoder_2
            .as_ref()
            .is_some_and(|v| v.as_array().is_some_and(|a| a.iter().all(|x| !x.is_null())));
    let family = match index.class_name.as_str() {
        name if name.starts_with("StableDiffusion") && !name.contains("Upscale") && !name.contains("3") => {
            if is_xl {
                Family::StableDiffusionXl
            } else {
                Family::StableDiffusion
            }
        }
        other => {
            return Err(LoadError::Unsupported {
                path: index_path,
                message: format!(
                    "pipeline class \"{other}\" is not supported (supported: StableDiffusionPipeline, StableDiffusionXLPipeline and their img2img variants)"
                ),
            })
        }
    };

    let scheduler_path = path.join("scheduler").join("scheduler_config.json");
    let scheduler_config =
        SchedulerConfig::from_file(&scheduler_path).map_err(|err| LoadError::InvalidJson {
            path: scheduler_path.clone(),
            message: err.to_string(),
        })?;

    let tokenizer_dir = |name: &str| {
        tokenizer_override
            .map(Path::to_path_buf)
            .unwrap_or_else(|| path.join(name))
    };
    let mut text_stages = vec![load_text_stage(
        path,
        "text_encoder",
        &tokenizer_dir("tokenizer"),
        options,
        weights,
    )?];
    if family == Family::StableDiffusionXl {
        text_stages.push(load_text_stage(
            path,
            "text_encoder_2",
            &tokenizer_dir("tokenizer_2"),
            options,
            weights,
        )?);
    }

    let unet_dir = path.join("unet");
    let unet_config: UNetConfig = read_json(&unet_dir.join("config.json"))?;
    let unet = UNet2DConditionModel::new(&unet_config, weights.var_builder(&unet_dir, options)?)
        .map_err(|err| build_error("unet", &unet_dir, err))?;
    if (family == Family::StableDiffusionXl) != unet.needs_added_conditions() {
        return Err(LoadError::Unsupported {
            path: unet_dir.join("config.json"),
            message: format!(
                "{} pipeline with a UNet {} text_time embedding",
                index.class_name,
                if unet.needs_added_conditions() {
                    "that has a"
                } else {
                    "without the"
                }
            ),
        });
    }

    let vae_dir = path.join("vae");
    let vae_config: VaeConfig = read_json(&vae_dir.join("config.json"))?;
    let vae = AutoencoderKL::new(&vae_config, weights.var_builder(&vae_dir, options)?)
        .map_err(|err| build_error("vae", &vae_dir, err))?;

    let vae_scale_factor = vae_config.scale_factor();
    let native_size = unet_config
        .sample_size
        .map(|s| s * vae_scale_factor)
        .unwrap_or(match family {
            Family::StableDiffusion => 512,
            Family::StableDiffusionXl => 1024,
        });
    let name = model_name(path);
    let distilled = name.to_lowercase().contains("turbo")
        || scheduler_config.timestep_spacing.as_deref() == Some("trailing");
    let cross_dim = match &unet_config.cross_attention_dim {
        crate::pipeline::unet::PerBlock::One(d) => *d,
        crate::pipeline::unet::PerBlock::Each(v) => v.first().copied().unwrap_or(0),
    };
    let info = ModelInfo {
        name,
        family,
        label: family.label(cross_dim).to_string(),
        distilled,
        defaults: ModelDefaults::for_model(family, distilled, native_size),
        vae_scale_factor,
    };
    Ok(StableDiffusion {
        info,
        text_stages,
        unet,
        vae,
        scheduler_config,
        force_zeros_for_empty_prompt: index.force_zeros_for_empty_prompt.unwrap_or(false),
        device: options.device.clone(),
        dtype: options.dtype,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "latent-studio-loading-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn hub_cache_snapshots_are_named_by_their_repository() {
        let snapshot = Path::new("/cache/hub/models--stabilityai--sd-turbo/snapshots/0123abcd");
        assert_eq!(model_name(snapshot), "stabilityai/sd-turbo");
        assert_eq!(model_name(Path::new("/models/my-merge")), "my-merge");
    }

    #[test]
    fn main_file_wins_over_fp16_variant() {
        let dir = scratch("variant");
        std::fs::write(dir.join("diffusion_pytorch_model.fp16.safetensors"), b"").unwrap();
        assert_eq!(
            weight_files(&dir).unwrap(),
            vec![dir.join("diffusion_pytorch_model.fp16.safetensors")]
        );
        std::fs::write(dir.join("diffusion_pytorch_model.safetensors"), b"").unwrap();
        assert_eq!(
            weight_files(&dir).unwrap(),
            vec![dir.join("diffusion_pytorch_model.safetensors")]
        );
    }

    #[test]
    fn sharded_index_lists_each_shard_once() {
        let dir = scratch("sharded");
        for shard in [
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors",
        ] {
            std::fs::write(dir.join(shard), b"").unwrap();
        }
        std::fs::write(
            dir.join("model.safetensors.index.json"),
            r#"{"metadata": {}, "weight_map": {"a": "model-00002-of-00002.safetensors",
                "b": "model-00001-of-00002.safetensors", "c": "model-00002-of-00002.safetensors"}}"#,
        )
        .unwrap();
        assert_eq!(
            weight_files(&dir).unwrap(),
            vec![
                dir.join("model-00001-of-00002.safetensors"),
                dir.join("model-00002-of-00002.safetensors")
            ]
        );
    }

    #[test]
    fn shard_indexes_must_list_plain_files() {
        let dir = scratch("bad-index");
        std::fs::write(
            dir.join("model.safetensors.index.json"),
            r#"{"weight_map": {}}"#,
        )
        .unwrap();
        let message = weight_files(&dir).unwrap_err().to_string();
        assert!(message.contains("no shard files"), "{message}");
        std::fs::write(
            dir.join("model.safetensors.index.json"),
            r#"{"weight_map": {"a": "../elsewhere.safetensors"}}"#,
        )
        .unwrap();
        let message = weight_files(&dir).unwrap_err().to_string();
        assert!(message.contains("not a plain file name"), "{message}");
    }

    #[test]
    fn pickle_only_folders_are_refused_with_a_reason() {
        let dir = scratch("pickle");
        std::fs::write(dir.join("diffusion_pytorch_model.bin"), b"").unwrap();
        let message = weight_files(&dir).unwrap_err().to_string();
        assert!(
            message.contains("pickle") && message.contains("safetensors"),
            "{message}"
        );
    }
}
