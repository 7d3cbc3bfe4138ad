//! Loading a diffusers pipeline folder: `model_index.json`, each component's config and
//! its safetensors weights (memory-mapped; fp16 variants upcast as they are read).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::describe_candle_error;
use crate::models::single_file::{Checkpoint, CheckpointError, CheckpointKind, Layout};
use crate::models::weights::WeightMap;
use crate::models::{BaseWeights, ModelInfo, StableDiffusion};
use crate::models::{Family, ModelDefaults};
use crate::networks::text_encoder::{ClipTextConfig, ClipTextEncoder};
use crate::networks::unet::{UNet2DConditionModel, UNetConfig};
use crate::networks::vae::{AutoencoderKL, VaeConfig};
use crate::sampling::pipeline::DiffusionPipeline;
use crate::sampling::schedulers::SchedulerConfig;
use crate::text::conditioning::TextStage;
use crate::text::tokenizer::{ClipTokenizer, TokenizerError};

#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub device: Device,
    /// Compute dtype; weights stored in another precision are converted as they load.
    pub dtype: DType,
    /// A VAE file (ldm or diffusers names) used instead of the model's own.
    pub vae: Option<PathBuf>,
    /// On the CPU in f32: keep convolution and linear weights that the files store in f16 or
    /// bf16 in that precision, widening them to f32 per use. The images are the same (f16 →
    /// f32 is exact) and the UNet's weights take half the memory, for 0–9 % more time
    /// (docs/performance-log.md). On by default.
    pub keep_f16_weights: bool,
    /// A diffusers folder whose configs and tokenizers describe a single-file checkpoint,
    /// instead of the built-in ones for its family.
    pub config: Option<PathBuf>,
}

impl LoadOptions {
    /// Whether f16/bf16 weights stay in that precision ([`LoadOptions::keep_f16_weights`],
    /// which only applies to f32 arithmetic on the CPU).
    pub(crate) fn keeps_half_weights(&self) -> bool {
        self.keep_f16_weights && self.device.is_cpu() && self.dtype == DType::F32
    }

    /// A tensor as read from a file, in the precision weights are kept in: f16/bf16 as stored
    /// when [`Self::keeps_half_weights`], else the arithmetic's dtype.
    pub(crate) fn stored(
        &self,
        tensor: candle_core::Tensor,
    ) -> candle_core::Result<candle_core::Tensor> {
        if self.keeps_half_weights() && matches!(tensor.dtype(), DType::F16 | DType::BF16) {
            Ok(tensor)
        } else {
            tensor.to_dtype(self.dtype)
        }
    }

    /// The fastest device this build and machine offer: CUDA or Metal in f16 when compiled in
    /// and present, else the CPU in f32.
    pub fn best_available() -> Self {
        #[cfg(feature = "cuda")]
        if let Ok(device) = crate::kernels::new_cuda_device() {
            return Self {
                device,
                dtype: DType::F16,
                ..Self::default()
            };
        }
        #[cfg(feature = "metal")]
        if let Ok(device) = Device::new_metal(0) {
            return Self {
                device,
                dtype: DType::F16,
                ..Self::default()
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
            vae: None,
            config: None,
            keep_f16_weights: true,
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

pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, LoadError> {
    let text = crate::files::read_text(path).map_err(|err| {
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

/// Where a component that `path` names lies: a diffusers folder (its weight files, see
/// [`weight_files`]) or one `.safetensors` file with the folder it lies in, where its
/// `config.json` is looked for. Anything else is refused with `not_safetensors`, the
/// component's own message.
pub(crate) fn component_files(
    path: &Path,
    not_safetensors: &str,
) -> Result<(PathBuf, Vec<PathBuf>), LoadError> {
    if !path.exists() {
        return Err(LoadError::NotFound {
            path: path.to_path_buf(),
        });
    }
    if path.is_dir() {
        return Ok((path.to_path_buf(), weight_files(path)?));
    }
    let is_safetensors = path
        .extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("safetensors"));
    if !is_safetensors {
        return Err(LoadError::Unsupported {
            path: path.to_path_buf(),
            message: not_safetensors.to_string(),
        });
    }
    let folder = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    Ok((folder, vec![path.to_path_buf()]))
}

/// The weight files of one component, in diffusers' order of preference: the main file, a
/// sharded index, then the fp16 variant.
pub(crate) fn weight_files(dir: &Path) -> Result<Vec<PathBuf>, LoadError> {
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

/// A component's weights, read from its folder (validating each file on its own so an error
/// names the broken one).
fn read_weights(dir: &Path, options: &LoadOptions) -> Result<WeightMap, LoadError> {
    let files = weight_files(dir)?;
    let mut map = WeightMap::default();
    for file in &files {
        map.read_safetensors(
            file,
            options.dtype,
            &options.device,
            options.keeps_half_weights(),
        )
        .map_err(|err| LoadError::Weights {
            path: file.clone(),
            message: format!(
                "{} (is the file truncated or not safetensors?)",
                describe_candle_error(&err)
            ),
        })?;
    }
    Ok(map)
}

/// Fresh tensors drawn from each parameter's default initialiser. They are plain tensors,
/// not `Var`s: a `Var` makes every op record its inputs for backprop, which would keep all
/// activations of a generation alive.
/// Random weights; with `keep_half`, convolution and linear weights are drawn as f16, as
/// fp16-distributed weights load with [`LoadOptions::keep_f16_weights`].
struct RandomWeights {
    keep_half: bool,
}

impl candle_nn::var_builder::SimpleBackend for RandomWeights {
    fn get(
        &self,
        shape: candle_core::Shape,
        _name: &str,
        init: candle_nn::Init,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<candle_core::Tensor> {
        if self.keep_half
            && dtype == DType::F32
            && shape.rank() >= 2
            && crate::kernels::precision::stored_weight_precision_allowed()
        {
            return init
                .var(shape, DType::F32, device)?
                .as_detached_tensor()
                .to_dtype(DType::F16);
        }
        // candle's CUDA backend draws random numbers in f32/f64 only: draw f16/bf16 weights
        // in f32 there and convert.
        if device.is_cpu() || matches!(dtype, DType::F32 | DType::F64) {
            return Ok(init.var(shape, dtype, device)?.as_detached_tensor());
        }
        init.var(shape, DType::F32, device)?
            .as_detached_tensor()
            .to_dtype(dtype)
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

/// Where a component's weights come from.
enum Source {
    Map(Arc<WeightMap>),
    /// Fresh random values, for benchmarks of an architecture without its files.
    Random,
}

impl Source {
    fn var_builder(&self, options: &LoadOptions) -> VarBuilder<'static> {
        match self {
            Source::Map(map) => map.var_builder(Arc::default(), options.dtype, &options.device),
            Source::Random => VarBuilder::from_backend(
                Box::new(RandomWeights {
                    keep_half: options.keeps_half_weights(),
                }),
                options.dtype,
                options.device.clone(),
            ),
        }
    }
}

fn build_error(component: &str, origin: &Path, err: candle_core::Error) -> LoadError {
    LoadError::Build {
        component: component.to_string(),
        dir: origin.to_path_buf(),
        message: describe_candle_error(&err),
    }
}

/// A model's name for people and image metadata: the hub id for a Hugging Face cache snapshot
/// (`…/models--org--name/snapshots/<commit>` → `org/name`), the file stem of a single-file
/// checkpoint, else the folder's name.
pub(crate) fn model_name(path: &Path) -> String {
    let folder = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
    if path.is_file() {
        if let Some(stem) = path.file_stem() {
            return stem.to_string_lossy().into_owned();
        }
    }
    let parent = path.parent();
    let repo = parent.and_then(Path::parent).and_then(folder);
    if parent.and_then(folder).as_deref() == Some("snapshots") {
        if let Some(id) = repo.as_deref().and_then(|r| r.strip_prefix("models--")) {
            return id.replacen("--", "/", 1);
        }
    }
    folder(path).unwrap_or_else(|| path.display().to_string())
}

/// Loads a model: a diffusers pipeline folder (SD 1.x, SD 2.x, SDXL and their Turbo variants)
/// or a single-file `.safetensors` checkpoint in the original layout.
pub fn load_model(path: &Path, options: &LoadOptions) -> Result<StableDiffusion, LoadError> {
    if path.is_file() {
        return load_single_file(path, options);
    }
    let configs = FolderConfigs::read(path, None)?;
    let weights = |name: &str| -> Result<Source, LoadError> {
        Ok(Source::Map(Arc::new(read_weights(
            &path.join(name),
            options,
        )?)))
    };
    let text = configs
        .text_components()
        .iter()
        .map(|name| weights(name))
        .collect::<Result<Vec<_>, _>>()?;
    let unet = weights("unet")?;
    let vae = match &options.vae {
        Some(file) => Source::Map(Arc::new(read_vae_file(file, &configs.vae, options)?)),
        None => weights("vae")?,
    };
    assemble(configs, text, unet, vae, model_name(path), options)
}

/// Builds the architecture a diffusers folder's configs describe with random weights; the
/// folder needs no weight files. `tokenizer_dir` replaces the folder's `tokenizer/`.
pub fn load_model_with_random_weights(
    config_dir: &Path,
    tokenizer_dir: &Path,
    options: &LoadOptions,
) -> Result<StableDiffusion, LoadError> {
    let configs = FolderConfigs::read(config_dir, Some(tokenizer_dir))?;
    let text = configs
        .text_components()
        .iter()
        .map(|_| Source::Random)
        .collect();
    let name = model_name(config_dir);
    assemble(configs, text, Source::Random, Source::Random, name, options)
}

/// Everything but the weights: which pipeline, its configs and tokenizers.
struct FolderConfigs {
    /// Where the configs came from, for error messages.
    origin: PathBuf,
    class_name: String,
    family: Family,
    force_zeros_for_empty_prompt: bool,
    scheduler: SchedulerConfig,
    text: Vec<(ClipTokenizer, ClipTextConfig)>,
    unet: UNetConfig,
    vae: VaeConfig,
}

impl FolderConfigs {
    fn read(path: &Path, tokenizer_override: Option<&Path>) -> Result<Self, LoadError> {
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
        let family = family_of(&index, &index_path)?;
        let scheduler_path = path.join("scheduler").join("scheduler_config.json");
        let scheduler =
            SchedulerConfig::from_file(&scheduler_path).map_err(|err| LoadError::InvalidJson {
                path: scheduler_path.clone(),
                message: err.to_string(),
            })?;
        let mut text = Vec::new();
        for (encoder, tokenizer) in text_folders(family) {
            let tokenizer_dir = tokenizer_override
                .map(Path::to_path_buf)
                .unwrap_or_else(|| path.join(tokenizer));
            let tokenizer = ClipTokenizer::from_dir(&tokenizer_dir)?;
            let config: ClipTextConfig = read_json(&path.join(encoder).join("config.json"))?;
            text.push((tokenizer, config));
        }
        Ok(Self {
            origin: path.to_path_buf(),
            class_name: index.class_name,
            family,
            force_zeros_for_empty_prompt: index.force_zeros_for_empty_prompt.unwrap_or(false),
            scheduler,
            text,
            unet: read_json(&path.join("unet").join("config.json"))?,
            vae: read_json(&path.join("vae").join("config.json"))?,
        })
    }

    /// The configs shipped for a single-file checkpoint's family (`assets/configs/`).
    fn embedded(kind: CheckpointKind) -> Result<Self, LoadError> {
        let (folder, files) = match kind {
            CheckpointKind::Sd1 => ("sd15", &embedded::SD15),
            CheckpointKind::Sd2 => ("sd2", &embedded::SD2),
            CheckpointKind::Sdxl => ("sdxl", &embedded::SDXL),
        };
        let origin = PathBuf::from(format!("assets/configs/{folder}"));
        fn parse<T: DeserializeOwned>(
            origin: &Path,
            file: &str,
            text: &str,
        ) -> Result<T, LoadError> {
            serde_json::from_str(text).map_err(|err| LoadError::InvalidJson {
                path: origin.join(file),
                message: format!("invalid built-in config: {err}"),
            })
        }
        let index: ModelIndex = parse(&origin, "model_index.json", files.model_index)?;
        let family = family_of(&index, &origin.join("model_index.json"))?;
        let scheduler = SchedulerConfig::from_json_str(files.scheduler).map_err(|err| {
            LoadError::InvalidJson {
                path: origin.join("scheduler/scheduler_config.json"),
                message: err.to_string(),
            }
        })?;
        let pads: &[&str] = match kind {
            CheckpointKind::Sd1 => &["<|endoftext|>"],
            CheckpointKind::Sd2 => &["!"],
            CheckpointKind::Sdxl => &["<|endoftext|>", "!"],
        };
        let text = files
            .text
            .iter()
            .zip(pads)
            .map(|(config, pad)| -> Result<_, LoadError> {
                Ok((
                    ClipTokenizer::embedded(pad)?,
                    parse(&origin, "text_encoder/config.json", config)?,
                ))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            origin: origin.clone(),
            class_name: index.class_name,
            family,
            force_zeros_for_empty_prompt: index.force_zeros_for_empty_prompt.unwrap_or(false),
            scheduler,
            text,
            unet: parse(&origin, "unet/config.json", files.unet)?,
            vae: parse(&origin, "vae/config.json", files.vae)?,
        })
    }

    fn text_components(&self) -> &'static [&'static str] {
        match self.family {
            Family::StableDiffusion => &["text_encoder"],
            Family::StableDiffusionXl => &["text_encoder", "text_encoder_2"],
        }
    }

    fn layout(&self) -> Layout {
        let unet_layers_per_block = match &self.unet.layers_per_block {
            crate::networks::unet::PerBlock::One(n) => *n,
            crate::networks::unet::PerBlock::Each(v) => v.first().copied().unwrap_or(2),
        };
        Layout {
            unet_layers_per_block,
            vae_blocks: self.vae.block_out_channels.len(),
        }
    }
}

/// The built-in UNet config for SD 1.x (`768`-wide text) or SD 2.x (`1024`), which original
/// ControlNet files of those families copy (a ControlNet's config is its UNet's, less the up
/// blocks).
pub(crate) fn builtin_unet_config(context_dim: usize) -> Option<&'static str> {
    match context_dim {
        768 => Some(embedded::SD15.unet),
        1024 => Some(embedded::SD2.unet),
        _ => None,
    }
}

/// The configs of `assets/configs/`, compiled in so a single file needs nothing on disk.
mod embedded {
    pub struct Files {
        pub model_index: &'static str,
        pub scheduler: &'static str,
        pub text: &'static [&'static str],
        pub unet: &'static str,
        pub vae: &'static str,
    }

    macro_rules! config {
        ($folder:literal, $file:literal) => {
            include_str!(concat!("../../assets/configs/", $folder, "/", $file))
        };
    }

    pub const SD15: Files = Files {
        model_index: config!("sd15", "model_index.json"),
        scheduler: config!("sd15", "scheduler/scheduler_config.json"),
        text: &[config!("sd15", "text_encoder/config.json")],
        unet: config!("sd15", "unet/config.json"),
        vae: config!("sd15", "vae/config.json"),
    };
    pub const SD2: Files = Files {
        model_index: config!("sd2", "model_index.json"),
        scheduler: config!("sd2", "scheduler/scheduler_config.json"),
        text: &[config!("sd2", "text_encoder/config.json")],
        unet: config!("sd2", "unet/config.json"),
        vae: config!("sd2", "vae/config.json"),
    };
    pub const SDXL: Files = Files {
        model_index: config!("sdxl", "model_index.json"),
        scheduler: config!("sdxl", "scheduler/scheduler_config.json"),
        text: &[
            config!("sdxl", "text_encoder/config.json"),
            config!("sdxl", "text_encoder_2/config.json"),
        ],
        unet: config!("sdxl", "unet/config.json"),
        vae: config!("sdxl", "vae/config.json"),
    };
}

fn text_folders(family: Family) -> &'static [(&'static str, &'static str)] {
    match family {
        Family::StableDiffusion => &[("text_encoder", "tokenizer")],
        Family::StableDiffusionXl => &[
            ("text_encoder", "tokenizer"),
            ("text_encoder_2", "tokenizer_2"),
        ],
    }
}

fn family_of(index: &ModelIndex, index_path: &Path) -> Result<Family, LoadError> {
    let is_xl = index.class_name.contains("XL")
        || index
            .text_encoder_2
            .as_ref()
            .is_some_and(|v| v.as_array().is_some_and(|a| a.iter().all(|x| !x.is_null())));
    match index.class_name.as_str() {
        name if name.starts_with("StableDiffusion")
            && !name.contains("Upscale")
            && !name.contains('3') =>
        {
            Ok(if is_xl {
                Family::StableDiffusionXl
            } else {
                Family::StableDiffusion
            })
        }
        other => Err(LoadError::Unsupported {
            path: index_path.to_path_buf(),
            message: format!(
                "pipeline class \"{other}\" is not supported (supported: StableDiffusionPipeline, StableDiffusionXLPipeline and their img2img variants)"
            ),
        }),
    }
}

fn pickle_refusal(path: &Path) -> Option<LoadError> {
    let extension = crate::models::pickle_extension(path)?;
    Some(LoadError::Unsupported {
        path: path.to_path_buf(),
        message: format!(
            ".{extension} files are Python pickles, and loading one can run any code it contains; use a .safetensors version of this model (most model pages offer one)"
        ),
    })
}

fn open_checkpoint(path: &Path) -> Result<Checkpoint, LoadError> {
    if let Some(refusal) = pickle_refusal(path) {
        return Err(refusal);
    }
    Checkpoint::open(path).map_err(|err| LoadError::Weights {
        path: path.to_path_buf(),
        message: format!(
            "{} (is the file truncated or not safetensors?)",
            describe_candle_error(&err)
        ),
    })
}

fn checkpoint_error(path: &Path, err: CheckpointError) -> LoadError {
    LoadError::Unsupported {
        path: path.to_path_buf(),
        message: err.to_string(),
    }
}

/// A standalone VAE file (ldm or diffusers names) for a model whose VAE config is `config`.
fn read_vae_file(
    path: &Path,
    config: &VaeConfig,
    options: &LoadOptions,
) -> Result<WeightMap, LoadError> {
    open_checkpoint(path)?
        .vae(
            config.block_out_channels.len(),
            options.dtype,
            &options.device,
            options.keeps_half_weights(),
        )
        .map_err(|err| checkpoint_error(path, err))
}

/// A single-file checkpoint (A1111 / civitai layout). The family comes from the tensor names;
/// configs and tokenizers from `options.config` when given, else the built-in ones. SD 2.x
/// files are taken as v-prediction at 768², as diffusers' single-file loader does when the
/// file carries no training step.
fn load_single_file(path: &Path, options: &LoadOptions) -> Result<StableDiffusion, LoadError> {
    let checkpoint = open_checkpoint(path)?;
    let kind = checkpoint
        .kind()
        .map_err(|err| checkpoint_error(path, err))?;
    let mut configs = match &options.config {
        Some(dir) => FolderConfigs::read(dir, None)?,
        None => FolderConfigs::embedded(kind)?,
    };
    // Inpainting checkpoints differ from their family's only in the UNet's first layer
    // (9 input channels: latents, mask, masked-image latents), as diffusers' single-file
    // loader reads them.
    if let Some(channels) = checkpoint.unet_in_channels() {
        configs.unet.in_channels = channels;
        // stabilityai/stable-diffusion-2-inpainting predicts noise at 512², unlike the 768-v
        // base model the SD 2 built-in configs describe.
        if channels == 9 && kind == CheckpointKind::Sd2 && options.config.is_none() {
            configs.scheduler.prediction_type = Some("epsilon".into());
            configs.unet.sample_size = Some(64);
        }
    }
    let expected = match kind {
        CheckpointKind::Sdxl => Family::StableDiffusionXl,
        _ => Family::StableDiffusion,
    };
    if configs.family != expected {
        return Err(LoadError::Unsupported {
            path: path.to_path_buf(),
            message: format!(
                "the file is a {} checkpoint but the configs in {} describe a {} pipeline",
                expected.label(0),
                configs.origin.display(),
                configs.family.label(0)
            ),
        });
    }
    let parts = checkpoint
        .components(
            kind,
            configs.layout(),
            options.dtype,
            &options.device,
            options.keeps_half_weights(),
        )
        .map_err(|err| checkpoint_error(path, err))?;
    let vae = match &options.vae {
        Some(file) => read_vae_file(file, &configs.vae, options)?,
        None if parts.vae.is_empty() => {
            return Err(LoadError::Unsupported {
                path: path.to_path_buf(),
                message: "the checkpoint has no VAE (no first_stage_model.* tensors); choose a VAE file with --vae or \"VAE…\"".into(),
            })
        }
        None => parts.vae,
    };
    let mut text = vec![Source::Map(Arc::new(parts.text_encoder))];
    if kind == CheckpointKind::Sdxl {
        text.push(Source::Map(Arc::new(parts.text_encoder_2)));
    }
    let unet = Source::Map(Arc::new(parts.unet));
    let mut model = assemble(
        configs,
        text,
        unet,
        Source::Map(Arc::new(vae)),
        model_name(path),
        options,
    )
    .map_err(|err| match err {
        // Name the file the tensors came from, not the config folder.
        LoadError::Build {
            component, message, ..
        } => LoadError::Build {
            component,
            dir: path.to_path_buf(),
            message,
        },
        other => other,
    })?;
    model.info.file = Some(path.to_path_buf());
    Ok(model)
}

impl StableDiffusion {
    /// Swaps the VAE for the one in `file` (ldm or diffusers names), or back to the model's
    /// own with `None`, without reloading anything else.
    pub fn replace_vae(&mut self, file: Option<&Path>) -> Result<(), LoadError> {
        let Some(base) = &self.base else {
            return Err(LoadError::Unsupported {
                path: file.map(Path::to_path_buf).unwrap_or_default(),
                message: "this model was built without weight files and cannot change its VAE"
                    .into(),
            });
        };
        let options = LoadOptions {
            device: self.pipeline.device().clone(),
            dtype: self.pipeline.dtype(),
            ..LoadOptions::default()
        };
        let weights = match file {
            Some(file) => Arc::new(read_vae_file(file, &base.vae_config, &options)?),
            None => Arc::clone(&base.vae),
        };
        let origin = file.map(Path::to_path_buf).unwrap_or_default();
        let vae = AutoencoderKL::new(
            &base.vae_config,
            weights.var_builder(Arc::default(), options.dtype, &options.device),
        )
        .map_err(|err| build_error("vae", &origin, err))?;
        self.pipeline.vae = vae;
        Ok(())
    }
}

fn assemble(
    configs: FolderConfigs,
    text: Vec<Source>,
    unet: Source,
    vae: Source,
    name: String,
    options: &LoadOptions,
) -> Result<StableDiffusion, LoadError> {
    let FolderConfigs {
        origin,
        class_name,
        family,
        force_zeros_for_empty_prompt,
        scheduler: scheduler_config,
        text: text_configs,
        unet: unet_config,
        vae: vae_config,
    } = configs;
    let mut text_stages = Vec::new();
    let mut text_bases = Vec::new();
    for ((tokenizer, config), (source, component)) in text_configs.into_iter().zip(
        text.iter()
            .zip(text_folders(family).iter().map(|(c, _)| *c)),
    ) {
        let encoder =
            ClipTextEncoder::new(&config, tokenizer.eos_id(), source.var_builder(options))
                .map_err(|err| build_error(component, &origin.join(component), err))?;
        text_stages.push(TextStage {
            tokenizer: Arc::new(tokenizer),
            encoder,
        });
        if let Source::Map(map) = source {
            text_bases.push((config, Arc::clone(map)));
        }
    }

    let unet_model = UNet2DConditionModel::new(&unet_config, unet.var_builder(options))
        .map_err(|err| build_error("unet", &origin.join("unet"), err))?;
    if (family == Family::StableDiffusionXl) != unet_model.needs_added_conditions() {
        return Err(LoadError::Unsupported {
            path: origin.join("unet").join("config.json"),
            message: format!(
                "{class_name} pipeline with a UNet {} text_time embedding",
                if unet_model.needs_added_conditions() {
                    "that has a"
                } else {
                    "without the"
                }
            ),
        });
    }
    let vae_model = AutoencoderKL::new(&vae_config, vae.var_builder(options))
        .map_err(|err| build_error("vae", &origin.join("vae"), err))?;

    let vae_scale_factor = vae_config.scale_factor();
    let native_size = unet_config
        .sample_size
        .map(|s| s * vae_scale_factor)
        .unwrap_or(match family {
            Family::StableDiffusion => 512,
            Family::StableDiffusionXl => 1024,
        });
    let distilled = name.to_lowercase().contains("turbo")
        || scheduler_config.timestep_spacing.as_deref() == Some("trailing");
    let cross_dim = match &unet_config.cross_attention_dim {
        crate::networks::unet::PerBlock::One(d) => *d,
        crate::networks::unet::PerBlock::Each(v) => v.first().copied().unwrap_or(0),
    };
    let info = ModelInfo {
        name,
        family,
        label: family.label(cross_dim).to_string(),
        distilled,
        defaults: ModelDefaults::for_model(family, distilled, native_size),
        vae_scale_factor,
        file: None,
    };
    let base = match (unet, vae) {
        (Source::Map(unet), Source::Map(vae)) if text_bases.len() == text_stages.len() => {
            Some(BaseWeights {
                unet_config: unet_config.clone(),
                unet,
                vae_config: vae_config.clone(),
                vae,
                text: text_bases,
            })
        }
        _ => None,
    };
    let pipeline = DiffusionPipeline {
        family,
        vae_scale_factor,
        text_stages,
        unet: unet_model,
        vae: vae_model,
        scheduler_config,
        force_zeros_for_empty_prompt,
        device: options.device.clone(),
        dtype: options.dtype,
        embeddings: Vec::new(),
        vae_tiling: false,
        final_decoder: None,
        finished_decodes: Default::default(),
    };
    Ok(StableDiffusion {
        pipeline,
        info,
        base,
        loras: Vec::new(),
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
    fn built_in_configs_describe_each_single_file_family() {
        let sd1 = FolderConfigs::embedded(CheckpointKind::Sd1).unwrap();
        assert_eq!(sd1.family, Family::StableDiffusion);
        assert_eq!(sd1.text[0].0.pad_id(), 49407);
        assert_eq!(sd1.layout().unet_layers_per_block, 2);
        let sd2 = FolderConfigs::embedded(CheckpointKind::Sd2).unwrap();
        assert_eq!(sd2.text[0].0.pad_id(), 0);
        assert_eq!(sd2.text[0].1.num_hidden_layers, 23);
        assert_eq!(
            sd2.scheduler.prediction_type.as_deref(),
            Some("v_prediction")
        );
        let xl = FolderConfigs::embedded(CheckpointKind::Sdxl).unwrap();
        assert_eq!(xl.family, Family::StableDiffusionXl);
        assert!(xl.force_zeros_for_empty_prompt);
        let pads: Vec<u32> = xl.text.iter().map(|(t, _)| t.pad_id()).collect();
        assert_eq!(pads, vec![49407, 0]);
        assert!(xl.text[1].1.has_projection());
        assert_eq!(xl.vae.scale_factor(), 8);
    }

    #[test]
    fn pickle_checkpoints_are_refused_before_reading() {
        let dir = scratch("ckpt");
        let file = dir.join("model.ckpt");
        std::fs::write(&file, b"\x80\x02").unwrap();
        let message = load_model(&file, &LoadOptions::default())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            message.contains("pickle") && message.contains(".safetensors"),
            "{message}"
        );
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

    /// The sd1 fixture with every weight file rewritten in f16, as most published models are.
    fn f16_copy_of_sd1_fixture() -> PathBuf {
        fn copy(from: &Path, to: &Path) {
            std::fs::create_dir_all(to).unwrap();
            for entry in std::fs::read_dir(from).unwrap() {
                let path = entry.unwrap().path();
                let target = to.join(path.file_name().unwrap());
                if path.is_dir() {
                    copy(&path, &target);
                } else if path.extension().is_some_and(|e| e == "safetensors") {
                    let tensors = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
                    let halved: std::collections::HashMap<String, candle_core::Tensor> = tensors
                        .into_iter()
                        .map(|(name, t)| {
                            let t = if t.dtype() == DType::F32 {
                                t.to_dtype(DType::F16).unwrap()
                            } else {
                                t
                            };
                            (name, t)
                        })
                        .collect();
                    candle_core::safetensors::save(&halved, &target).unwrap();
                } else {
                    std::fs::copy(&path, &target).unwrap();
                }
            }
        }
        let dir = scratch("f16-sd1");
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models/sd1");
        copy(&fixture, &dir);
        dir
    }

    #[test]
    fn f16_weights_kept_as_f16_give_the_same_numbers_as_widened_at_load() {
        let dir = f16_copy_of_sd1_fixture();
        let widened = load_model(
            &dir,
            &LoadOptions {
                keep_f16_weights: false,
                ..LoadOptions::default()
            },
        )
        .unwrap();
        let kept = load_model(&dir, &LoadOptions::default()).unwrap();
        let stored = |model: &StableDiffusion, name: &str| {
            let base = model.base.as_ref().unwrap();
            base.unet.get(name).unwrap().dtype()
        };
        // The option takes effect (the map the layers share holds f16)...
        assert_eq!(stored(&widened, "conv_in.weight"), DType::F32);
        assert_eq!(stored(&kept, "conv_in.weight"), DType::F16);

        // ... and changes no number: UNet and VAE outputs are bit for bit the same.
        let device = Device::Cpu;
        let latents = candle_core::Tensor::randn(0f32, 1.0, (2, 4, 8, 8), &device).unwrap();
        let hidden = widened.pipeline().text_stages()[0].encoder.hidden_size();
        let context = candle_core::Tensor::randn(0f32, 1.0, (2, 77, hidden), &device).unwrap();
        let unet = |model: &StableDiffusion| {
            model
                .pipeline()
                .unet()
                .forward(&latents, 500.0, &context, None)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        assert_eq!(unet(&widened), unet(&kept));
        let decode = |model: &StableDiffusion| {
            model
                .pipeline()
                .vae()
                .decode(&latents.narrow(0, 0, 1).unwrap())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        assert_eq!(decode(&widened), decode(&kept));
        let encode = |model: &StableDiffusion| {
            let stage = &model.pipeline().text_stages()[0];
            let ids = stage.tokenizer.encode_padded("a photo of a cat");
            stage
                .encoder
                .forward(&ids)
                .unwrap()
                .last_hidden_state
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        assert_eq!(encode(&widened), encode(&kept));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
