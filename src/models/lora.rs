//! LoRA files (kohya / A1111 and diffusers / PEFT layouts) and their merge into a loaded
//! model: `W' = W + multiplier · (alpha / rank) · up · down` for every layer the file touches.
//! The merge rebuilds the affected modules from the weights kept in memory, so changing or
//! removing LoRAs never reads the base model again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};

use crate::describe_candle_error;
use crate::models::safetensors_file::SafetensorsFile;
use crate::models::single_file::unet_name;
use crate::models::weights::WeightMap;
use crate::models::{BaseWeights, StableDiffusion};
use crate::networks::text_encoder::ClipTextEncoder;
use crate::networks::unet::{PerBlock, UNet2DConditionModel};
use crate::text::conditioning::TextStage;
use crate::text::prompt::{extract_lora_tags, PromptSyntax};

#[derive(Debug, thiserror::Error)]
pub enum LoraError {
    #[error("{path}: cannot read LoRA: {message}")]
    Read { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Unsupported { path: PathBuf, message: String },
    #[error("{path}: none of its {layers} layers fit this model ({example}); is it a LoRA for another model family?")]
    NoMatch {
        path: PathBuf,
        layers: usize,
        example: String,
    },
    #[error("{path}: layer {layer} does not fit this model: {message}")]
    Shape {
        path: PathBuf,
        layer: String,
        message: String,
    },
    #[error("this model was built without weight files (random weights) and cannot take LoRAs")]
    NoBaseWeights,
    #[error("rebuilding the model with LoRAs failed: {0}")]
    Rebuild(String),
    #[error("{path}: .{extension} LoRA files are Python pickles, and loading one can run any code it contains; use a .safetensors version")]
    Pickle { path: PathBuf, extension: String },
    #[error("no LoRA named \"{name}\" in {dir} (looked for {name}.safetensors)")]
    NotFound { name: String, dir: PathBuf },
    #[error("<lora:{name}> is not a LoRA name: a tag names a file in the LoRA folder, without folders or a path")]
    NotAName { name: String },
    #[error("<lora:{name}> in the prompt needs a LoRA folder to look in (--lora-dir, or the LoRA folder in the app)")]
    NoFolder { name: String },
    #[error("prompt: {0}")]
    Tag(String),
}

/// `latent-studio/loras` in the user's data folder: where `<lora:NAME>` is looked up unless
/// another folder is chosen.
pub fn default_lora_dir() -> Option<PathBuf> {
    // The local data folder: the same as the data folder on Linux and macOS; on Windows
    // `%LOCALAPPDATA%`, since files this large must not travel with a roaming profile.
    dirs::data_local_dir().map(|d| d.join("latent-studio").join("loras"))
}

/// LoRA files read once and kept; prompt tags are looked up in `dir`.
#[derive(Default)]
pub struct LoraLibrary {
    dir: Option<PathBuf>,
    loaded: HashMap<PathBuf, (Option<std::time::SystemTime>, Arc<LoraFile>)>,
}

impl LoraLibrary {
    pub fn new(dir: Option<PathBuf>) -> Self {
        Self {
            dir,
            loaded: HashMap::new(),
        }
    }

    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    pub fn set_dir(&mut self, dir: Option<PathBuf>) {
        self.dir = dir;
    }

    /// The LoRA at `path`, read again only when the file changed.
    pub fn file(&mut self, path: &Path) -> Result<Arc<LoraFile>, LoraError> {
        let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        if let Some((stamp, lora)) = self.loaded.get(path) {
            if *stamp == modified {
                return Ok(Arc::clone(lora));
            }
        }
        let lora = Arc::new(LoraFile::load(path)?);
        self.loaded
            .insert(path.to_path_buf(), (modified, Arc::clone(&lora)));
        Ok(lora)
    }

    /// The LoRAs a generation asks for: `listed` (file, multiplier) pairs, then the prompt's
    /// `<lora:NAME:MULT>` tags (A1111 syntax only).
    pub fn for_request(
        &mut self,
        prompt: &str,
        syntax: PromptSyntax,
        listed: &[(PathBuf, f64)],
    ) -> Result<Vec<ActiveLora>, LoraError> {
        let mut active = Vec::new();
        for (path, multiplier) in listed {
            active.push(ActiveLora {
                lora: self.file(path)?,
                multiplier: *multiplier,
            });
        }
        if syntax == PromptSyntax::A1111 {
            let (_, tags) =
                extract_lora_tags(prompt).map_err(|err| LoraError::Tag(err.to_string()))?;
            for tag in tags {
                let Some(dir) = self.dir.clone() else {
                    return Err(LoraError::NoFolder { name: tag.name });
                };
                let path = LoraFile::find(&dir, &tag.name)?;
                active.push(ActiveLora {
                    lora: self.file(&path)?,
                    multiplier: tag.multiplier,
                });
            }
        }
        Ok(active)
    }
}

/// Which part of the pipeline a LoRA layer changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Target {
    Unet,
    /// Index of the text encoder (0, or 1 for SDXL's second).
    Text(usize),
}

/// One low-rank pair as stored in the file.
struct LoraLayer {
    target: Target,
    /// The module path as the file spells it (underscored for kohya, dotted for PEFT).
    key: String,
    down: Tensor,
    up: Tensor,
    /// `alpha / rank`.
    scale: f64,
}

/// A LoRA file, read once and kept in f32 on the CPU.
pub struct LoraFile {
    pub name: String,
    pub path: PathBuf,
    layers: Vec<LoraLayer>,
}

/// A LoRA merged into a model, with its multiplier.
#[derive(Debug, Clone)]
pub struct ActiveLora {
    pub lora: Arc<LoraFile>,
    pub multiplier: f64,
}

impl std::fmt::Debug for LoraFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoraFile")
            .field("name", &self.name)
            .field("layers", &self.layers.len())
            .finish()
    }
}

/// LoRA files are tens to hundreds of MB; the largest full-rank SDXL ones a few GB.
const MAX_LORA_FILE_BYTES: u64 = 8 << 30;

/// PEFT scaling from diffusers' `lora_adapter_metadata`: `lora_alpha / r` per component prefix
/// (`unet.lora_alpha`, `text_encoder.r`, …), with `alpha_pattern` / `rank_pattern` overrides.
struct PeftScaling {
    config: serde_json::Map<String, serde_json::Value>,
}

impl PeftScaling {
    fn scale(&self, component: &str, module: &str, rank: usize) -> f64 {
        let field = |name: &str| {
            self.config
                .get(&format!("{component}.{name}"))
                .or_else(|| self.config.get(name))
        };
        let pattern = |name: &str| -> Option<f64> {
            field(name)?
                .as_object()?
                .iter()
                .find_map(|(pattern, value)| {
                    (module == pattern || module.ends_with(&format!(".{pattern}")))
                        .then(|| value.as_f64())
                        .flatten()
                })
        };
        let rank = pattern("rank_pattern")
            .or_else(|| field("r").and_then(|v| v.as_f64()))
            .unwrap_or(rank as f64);
        let alpha = pattern("alpha_pattern")
            .or_else(|| field("lora_alpha").and_then(|v| v.as_f64()))
            .unwrap_or(rank);
        if rank > 0.0 {
            alpha / rank
        } else {
            1.0
        }
    }
}

impl LoraFile {
    pub fn load(path: &Path) -> Result<Self, LoraError> {
        if let Some(extension) = crate::models::pickle_extension(path) {
            return Err(LoraError::Pickle {
                path: path.to_path_buf(),
                extension,
            });
        }
        let read_error = |message: String| LoraError::Read {
            path: path.to_path_buf(),
            message,
        };
        let file = SafetensorsFile::open_at_most(path, MAX_LORA_FILE_BYTES)
            .map_err(|err| read_error(describe_candle_error(&err)))?;
        let tensors = file
            .load_all(&Device::Cpu)
            .map_err(|err| read_error(describe_candle_error(&err)))?;
        let metadata = file.metadata();
        let peft = PeftScaling {
            config: metadata
                .get("lora_adapter_metadata")
                .and_then(|raw| serde_json::from_str(raw).ok())
                .unwrap_or_default(),
        };
        let unsupported = |message: String| LoraError::Unsupported {
            path: path.to_path_buf(),
            message,
        };
        if let Some(kind) = tensors.keys().find_map(|k| {
            [
                ("hada_w1_a", "LoHa"),
                ("lokr_w1", "LoKr"),
                ("dora_scale", "DoRA"),
                ("lora_mid", "LoCon with a Tucker mid weight"),
            ]
            .into_iter()
            .find(|(marker, _)| k.contains(marker))
            .map(|(_, kind)| kind)
        }) {
            return Err(unsupported(format!(
                "{kind} layers are not supported (plain LoRA and LoCon are)"
            )));
        }

        let mut layers = Vec::new();
        for (name, down) in &tensors {
            let Some((key, up_name, style)) = split_down_name(name) else {
                continue;
            };
            let Some(up) = tensors.get(&up_name) else {
                return Err(unsupported(format!("{name} has no matching {up_name}")));
            };
            let Some((target, key)) = target_of(key, style) else {
                continue;
            };
            let rank = down
                .dim(0)
                .map_err(|e| read_error(describe_candle_error(&e)))?;
            let scale = match style {
                KeyStyle::Kohya | KeyStyle::DiffusersLegacy => {
                    let alpha_name = format!("{}.alpha", name_stem(name));
                    match tensors.get(&alpha_name) {
                        Some(alpha) => {
                            let alpha = alpha
                                .to_dtype(DType::F64)
                                .and_then(|a| a.flatten_all())
                                .and_then(|a| a.to_vec1::<f64>())
                                .map_err(|e| read_error(describe_candle_error(&e)))?;
                            alpha.first().copied().unwrap_or(rank as f64) / rank as f64
                        }
                        None => 1.0,
                    }
                }
                KeyStyle::Peft => {
                    let component = match target {
                        Target::Unet => "unet",
                        Target::Text(0) => "text_encoder",
                        Target::Text(_) => "text_encoder_2",
                    };
                    peft.scale(component, &key, rank)
                }
            };
            let as_f32 = |t: &Tensor| {
                t.to_dtype(DType::F32)
                    .map_err(|e| read_error(describe_candle_error(&e)))
            };
            layers.push(LoraLayer {
                target,
                key,
                down: as_f32(down)?,
                up: as_f32(up)?,
                scale,
            });
        }
        if layers.is_empty() {
            return Err(unsupported(
                "no LoRA layers found (expected lora_down/lora_up, lora_A/lora_B or lora.down/lora.up tensors)".into(),
            ));
        }
        layers.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Self {
            name: path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            path: path.to_path_buf(),
            layers,
        })
    }

    /// `NAME.safetensors` in `dir`, as `<lora:NAME:…>` refers to it.
    pub fn find(dir: &Path, name: &str) -> Result<PathBuf, LoraError> {
        // Prompts arrive from dropped PNGs: `<lora:../../x>` must not reach outside the folder.
        let mut components = Path::new(name).components();
        let single_name = matches!(
            (components.next(), components.next()),
            (Some(std::path::Component::Normal(_)), None)
        );
        if !single_name || name.contains(['/', '\\', '\0']) {
            return Err(LoraError::NotAName {
                name: name.to_string(),
            });
        }
        let candidate = dir.join(format!("{name}.safetensors"));
        if candidate.is_file() {
            return Ok(candidate);
        }
        // A1111 also matches names case-insensitively.
        let lower = name.to_lowercase();
        std::fs::read_dir(dir)
            .ok()
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.extension().is_some_and(|e| e == "safetensors")
                    && p.file_stem()
                        .is_some_and(|s| s.to_string_lossy().to_lowercase() == lower)
            })
            .ok_or_else(|| LoraError::NotFound {
                name: name.to_string(),
                dir: dir.to_path_buf(),
            })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyStyle {
    /// `lora_unet_…` / `lora_te_…` with `.lora_down.weight`, `.lora_up.weight`, `.alpha`.
    Kohya,
    /// `unet.….lora_A.weight` / `lora_B.weight` (diffusers ≥ 0.24 with PEFT).
    Peft,
    /// `unet.….lora.down.weight` / `lora.up.weight` (older diffusers).
    DiffusersLegacy,
}

/// For a "down" tensor name: the module key, the matching "up" tensor name and the style.
fn split_down_name(name: &str) -> Option<(&str, String, KeyStyle)> {
    if let Some(key) = name.strip_suffix(".lora_down.weight") {
        let style = if key.starts_with("lora_") {
            KeyStyle::Kohya
        } else {
            KeyStyle::DiffusersLegacy
        };
        return Some((key, format!("{key}.lora_up.weight"), style));
    }
    if let Some(key) = name.strip_suffix(".lora_A.weight") {
        return Some((key, format!("{key}.lora_B.weight"), KeyStyle::Peft));
    }
    if let Some(key) = name.strip_suffix(".lora.down.weight") {
        return Some((
            key,
            format!("{key}.lora.up.weight"),
            KeyStyle::DiffusersLegacy,
        ));
    }
    None
}

/// `x.lora_down.weight` → `x` (where kohya keeps `x.alpha`).
fn name_stem(name: &str) -> &str {
    name.rsplit_once(".lora_down.weight")
        .or_else(|| name.rsplit_once(".lora.down.weight"))
        .map_or(name, |(stem, _)| stem)
}

fn target_of(key: &str, style: KeyStyle) -> Option<(Target, String)> {
    match style {
        KeyStyle::Kohya => {
            const PREFIXES: [(&str, Target); 4] = [
                ("lora_unet_", Target::Unet),
                ("lora_te1_", Target::Text(0)),
                ("lora_te2_", Target::Text(1)),
                ("lora_te_", Target::Text(0)),
            ];
            PREFIXES.iter().find_map(|(prefix, target)| {
                key.strip_prefix(prefix)
                    .map(|rest| (*target, rest.to_string()))
            })
        }
        KeyStyle::Peft | KeyStyle::DiffusersLegacy => {
            const PREFIXES: [(&str, Target); 3] = [
                ("unet.", Target::Unet),
                ("text_encoder.", Target::Text(0)),
                ("text_encoder_2.", Target::Text(1)),
            ];
            let (target, rest) = PREFIXES.iter().find_map(|(prefix, target)| {
                key.strip_prefix(prefix).map(|rest| (*target, rest))
            })?;
            // Older diffusers files name the attention processor's layers.
            let rest = rest
                .replace(".processor.to_q_lora", ".to_q")
                .replace(".processor.to_k_lora", ".to_k")
                .replace(".processor.to_v_lora", ".to_v")
                .replace(".processor.to_out_lora", ".to_out.0");
            Some((target, rest))
        }
    }
}

/// Weight names of one component, found from the spellings LoRA files use for them.
struct ModuleIndex {
    by_underscored: HashMap<String, String>,
}

impl ModuleIndex {
    fn new(weights: &WeightMap) -> Self {
        let mut by_underscored = HashMap::new();
        for name in weights.names() {
            let Some(module) = name.strip_suffix(".weight") else {
                continue;
            };
            let underscored = module.replace('.', "_");
            // Text encoders are saved with the `text_model.` prefix (transformers 4, single
            // files, kohya's names) or without it (transformers 5, recent PEFT files); a LoRA
            // of either kind must find a model of either kind.
            let other_spelling = match underscored.strip_prefix("text_model_") {
                Some(bare) => bare.to_string(),
                None => format!("text_model_{underscored}"),
            };
            by_underscored.insert(other_spelling, name.to_string());
            by_underscored.insert(underscored, name.to_string());
        }
        Self { by_underscored }
    }

    /// The weight a LoRA key changes: a dotted diffusers path, an underscored one, or
    /// kohya's SDXL spelling with the original UNet's block names.
    fn resolve(&self, key: &str, layers_per_block: usize) -> Option<&str> {
        let underscored = key.replace('.', "_");
        if let Some(found) = self.by_underscored.get(&underscored) {
            return Some(found);
        }
        let dotted = ldm_kohya_to_dotted(&underscored)?;
        let renamed = unet_name(&format!("{dotted}.weight"), layers_per_block)?;
        let module = renamed.strip_suffix(".weight")?;
        self.by_underscored
            .get(&module.replace('.', "_"))
            .map(String::as_str)
    }
}

/// `input_blocks_4_1_transformer_blocks_0_attn1_to_q` → `input_blocks.4.1.transformer_blocks_0_attn1_to_q`
/// (resnet parts dotted as the original names are), for [`unet_name`].
fn ldm_kohya_to_dotted(key: &str) -> Option<String> {
    let (head, rest) = if let Some(rest) = key.strip_prefix("input_blocks_") {
        ("input_blocks", rest)
    } else if let Some(rest) = key.strip_prefix("output_blocks_") {
        ("output_blocks", rest)
    } else if let Some(rest) = key.strip_prefix("middle_block_") {
        let (part, tail) = rest.split_once('_')?;
        return Some(format!("middle_block.{part}.{}", dotted_tail(tail)));
    } else {
        return None;
    };
    let (index, rest) = rest.split_once('_')?;
    let (part, tail) = rest.split_once('_')?;
    Some(format!("{head}.{index}.{part}.{}", dotted_tail(tail)))
}

fn dotted_tail(tail: &str) -> String {
    const PARTS: [&str; 6] = [
        "in_layers_0",
        "in_layers_2",
        "emb_layers_1",
        "out_layers_0",
        "out_layers_3",
        "skip_connection",
    ];
    for part in PARTS {
        if tail == part {
            // `in_layers_2` → `in_layers.2`
            return match part.rsplit_once('_') {
                Some((name, index)) if index.parse::<usize>().is_ok() => format!("{name}.{index}"),
                _ => part.to_string(),
            };
        }
    }
    tail.to_string()
}

/// Changes to add to a component's weights, by weight name.
type Deltas = HashMap<String, Tensor>;

/// The sum of all active LoRAs' changes: for the UNet, and for each text encoder.
fn deltas(base: &BaseWeights, loras: &[ActiveLora]) -> Result<(Deltas, Vec<Deltas>), LoraError> {
    let layers_per_block = match &base.unet_config.layers_per_block {
        PerBlock::One(n) => *n,
        PerBlock::Each(v) => v.first().copied().unwrap_or(2),
    };
    let unet_index = ModuleIndex::new(&base.unet);
    let text_indexes: Vec<ModuleIndex> =
        base.text.iter().map(|(_, w)| ModuleIndex::new(w)).collect();
    let mut unet = HashMap::new();
    let mut text: Vec<HashMap<String, Tensor>> = vec![HashMap::new(); base.text.len()];
    for active in loras {
        let lora = &active.lora;
        let mut matched = 0;
        for layer in &lora.layers {
            let (index, weights, out) = match layer.target {
                Target::Unet => (&unet_index, &base.unet, &mut unet),
                Target::Text(i) if i < text.len() => {
                    (&text_indexes[i], &base.text[i].1, &mut text[i])
                }
                Target::Text(_) => continue,
            };
            let Some(name) = index.resolve(&layer.key, layers_per_block) else {
                continue;
            };
            let Some(weight) = weights.get(name) else {
                continue;
            };
            let shape_error = |err: candle_core::Error| LoraError::Shape {
                path: lora.path.clone(),
                layer: layer.key.clone(),
                message: describe_candle_error(&err),
            };
            let delta =
                layer_delta(layer, weight.dims(), active.multiplier).map_err(shape_error)?;
            let delta = match out.remove(name) {
                Some(previous) => (previous + delta).map_err(shape_error)?,
                None => delta,
            };
            out.insert(name.to_string(), delta);
            matched += 1;
        }
        if matched == 0 {
            return Err(LoraError::NoMatch {
                path: lora.path.clone(),
                layers: lora.layers.len(),
                example: lora
                    .layers
                    .first()
                    .map(|l| l.key.clone())
                    .unwrap_or_default(),
            });
        }
    }
    Ok((unet, text))
}

/// `multiplier · scale · up · down`, shaped like the weight (linear or conv).
/// The product's shape is checked against the weight's before it is computed: a small file
/// can hold an `up` and a `down` whose product would not fit in any memory.
fn layer_delta(
    layer: &LoraLayer,
    weight_dims: &[usize],
    multiplier: f64,
) -> candle_core::Result<Tensor> {
    let rank = layer.down.dim(0)?;
    let rows = layer.up.dim(0)?;
    let columns = layer.down.elem_count() / rank.max(1);
    let expected: usize = weight_dims.iter().product();
    if rows.checked_mul(columns) != Some(expected) || layer.up.elem_count() != rows * rank {
        candle_core::bail!(
            "LoRA layer is {:?} · {:?}, the model's weight is {:?}",
            layer.up.dims(),
            layer.down.dims(),
            weight_dims
        );
    }
    let up = layer.up.reshape((rows, rank))?;
    let down = layer.down.flatten_from(1)?;
    let product = up.matmul(&down)?;
    product.reshape(weight_dims)? * (multiplier * layer.scale)
}

impl StableDiffusion {
    /// Merges `loras` into the weights (replacing whatever was merged before). An empty list
    /// restores the base weights.
    pub fn apply_loras(&mut self, loras: Vec<ActiveLora>) -> Result<(), LoraError> {
        let same = self.loras.len() == loras.len()
            && self
                .loras
                .iter()
                .zip(&loras)
                .all(|(a, b)| Arc::ptr_eq(&a.lora, &b.lora) && a.multiplier == b.multiplier);
        if same {
            return Ok(());
        }
        let Some(base) = &self.base else {
            return if loras.is_empty() {
                Ok(())
            } else {
                Err(LoraError::NoBaseWeights)
            };
        };
        let (unet_deltas, text_deltas) = deltas(base, &loras)?;
        let rebuild = |err: candle_core::Error| LoraError::Rebuild(describe_candle_error(&err));
        let (dtype, device) = (self.pipeline.dtype, self.pipeline.device.clone());
        let unet = UNet2DConditionModel::new(
            &base.unet_config,
            base.unet.var_builder(Arc::new(unet_deltas), dtype, &device),
        )
        .map_err(rebuild)?;
        let mut stages = Vec::with_capacity(base.text.len());
        for ((config, weights), (deltas, stage)) in base
            .text
            .iter()
            .zip(text_deltas.into_iter().zip(&self.pipeline.text_stages))
        {
            let encoder = ClipTextEncoder::new(
                config,
                stage.tokenizer.eos_id(),
                weights.var_builder(Arc::new(deltas), dtype, &device),
            )
            .map_err(rebuild)?;
            stages.push(TextStage {
                tokenizer: Arc::clone(&stage.tokenizer),
                encoder,
            });
        }
        self.pipeline.unet = unet;
        self.pipeline.text_stages = stages;
        self.loras = loras;
        Ok(())
    }
}

#[doc(hidden)]
pub(crate) mod fuzz_hooks;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kohya_sdxl_names_resolve_through_the_original_block_layout() {
        let mut weights = WeightMap::default();
        for name in [
            "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight",
            "down_blocks.0.resnets.0.conv1.weight",
            "mid_block.attentions.0.proj_in.weight",
            "up_blocks.0.attentions.2.transformer_blocks.1.ff.net.0.proj.weight",
        ] {
            weights.insert(
                name.into(),
                Tensor::zeros(1, DType::F32, &Device::Cpu).unwrap(),
            );
        }
        let index = ModuleIndex::new(&weights);
        let cases = [
            (
                "input_blocks_4_1_transformer_blocks_0_attn1_to_q",
                "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight",
            ),
            (
                "input_blocks_1_0_in_layers_2",
                "down_blocks.0.resnets.0.conv1.weight",
            ),
            (
                "middle_block_1_proj_in",
                "mid_block.attentions.0.proj_in.weight",
            ),
            (
                "output_blocks_2_1_transformer_blocks_1_ff_net_0_proj",
                "up_blocks.0.attentions.2.transformer_blocks.1.ff.net.0.proj.weight",
            ),
            (
                "down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q",
                "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight",
            ),
            (
                "mid_block.attentions.0.proj_in",
                "mid_block.attentions.0.proj_in.weight",
            ),
        ];
        for (key, want) in cases {
            assert_eq!(index.resolve(key, 2), Some(want), "{key}");
        }
        assert_eq!(index.resolve("input_blocks_7_1_proj_out", 2), None);
    }

    #[test]
    fn text_encoder_keys_find_prefixed_and_root_layouts() {
        let mut root = WeightMap::default();
        root.insert(
            "encoder.layers.0.self_attn.q_proj.weight".into(),
            Tensor::zeros(1, DType::F32, &Device::Cpu).unwrap(),
        );
        let index = ModuleIndex::new(&root);
        assert_eq!(
            index.resolve("text_model_encoder_layers_0_self_attn_q_proj", 2),
            Some("encoder.layers.0.self_attn.q_proj.weight")
        );
    }

    #[test]
    fn delta_is_scaled_and_shaped_like_the_weight() {
        let layer = LoraLayer {
            target: Target::Unet,
            key: "conv".into(),
            down: Tensor::ones((1, 2, 1, 1), DType::F32, &Device::Cpu).unwrap(),
            up: Tensor::new(&[[[[2.0f32]]], [[[3.0]]]], &Device::Cpu).unwrap(),
            scale: 0.5,
        };
        let delta = layer_delta(&layer, &[2, 2, 1, 1], 0.8).unwrap();
        let values: Vec<f32> = delta.flatten_all().unwrap().to_vec1().unwrap();
        let expected = [0.8f32, 0.8, 1.2, 1.2];
        for (v, e) in values.iter().zip(expected) {
            assert!((v - e).abs() < 1e-6, "{values:?}");
        }
        assert!(layer_delta(&layer, &[3, 2], 1.0).is_err());
    }

    #[test]
    fn tags_name_files_in_the_folder_only() {
        let dir =
            std::env::temp_dir().join(format!("latent-studio-lora-names-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("sub").join("x.safetensors"), b"").unwrap();
        std::fs::write(dir.join("Style.safetensors"), b"").unwrap();
        for name in [
            "../x",
            "/etc/passwd",
            "sub/x",
            "sub\\x",
            "..",
            ".",
            "",
            "C:x",
        ] {
            let result = LoraFile::find(&dir, name);
            assert!(
                matches!(
                    result,
                    Err(LoraError::NotAName { .. }) | Err(LoraError::NotFound { .. })
                ),
                "{name}: {result:?}"
            );
        }
        assert!(matches!(
            LoraFile::find(&dir, "../x"),
            Err(LoraError::NotAName { .. })
        ));
        assert_eq!(
            LoraFile::find(&dir, "style").unwrap(),
            dir.join("Style.safetensors")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_product_larger_than_the_weight_is_refused_before_it_is_computed() {
        // Rank 1, 2¹⁸ × 2¹⁸: the product would take 256 GiB; the file holds 2 MiB.
        let side = 1 << 18;
        let layer = LoraLayer {
            target: Target::Unet,
            key: "bomb".into(),
            down: Tensor::zeros((1, side), DType::F32, &Device::Cpu).unwrap(),
            up: Tensor::zeros((side, 1), DType::F32, &Device::Cpu).unwrap(),
            scale: 1.0,
        };
        let err = layer_delta(&layer, &[320, 320], 1.0).unwrap_err();
        assert!(
            err.to_string().contains("the model's weight is [320, 320]"),
            "{err}"
        );
    }

    #[test]
    fn peft_metadata_sets_alpha_over_rank_with_patterns() {
        let config: serde_json::Map<String, serde_json::Value> = serde_json::from_str(
            r#"{"unet.r": 4, "unet.lora_alpha": 8, "unet.alpha_pattern": {"to_k": 2},
                "text_encoder.r": 4, "text_encoder.lora_alpha": 4}"#,
        )
        .unwrap();
        let peft = PeftScaling { config };
        assert_eq!(peft.scale("unet", "down_blocks.0.attn1.to_q", 4), 2.0);
        assert_eq!(peft.scale("unet", "down_blocks.0.attn1.to_k", 4), 0.5);
        assert_eq!(peft.scale("text_encoder", "x.q_proj", 4), 1.0);
        let empty = PeftScaling {
            config: Default::default(),
        };
        assert_eq!(empty.scale("unet", "x", 8), 1.0);
    }
}
