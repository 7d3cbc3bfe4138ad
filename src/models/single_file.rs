//! Single-file checkpoints in the original (ldm / sgm) layout, as A1111 and civitai
//! distribute them: which family a file is, and the renaming of its tensors onto the
//! diffusers names our modules are built from.

use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::models::weights::WeightMap;

/// What a single file holds, told from its tensor names and shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointKind {
    /// SD 1.x: OpenAI CLIP text encoder under `cond_stage_model.transformer.`.
    Sd1,
    /// SD 2.x: OpenCLIP text encoder under `cond_stage_model.model.`.
    Sd2,
    /// SDXL base: CLIP under `conditioner.embedders.0`, OpenCLIP under `conditioner.embedders.1`.
    Sdxl,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{0}")]
    Unrecognised(String),
    #[error("cannot read tensor {name}: {message}")]
    Tensor { name: String, message: String },
}

const UNET: &str = "model.diffusion_model.";
const VAE: &str = "first_stage_model.";
const SD1_TEXT: &str = "cond_stage_model.transformer.";
const SD2_TEXT: &str = "cond_stage_model.model.";
const SDXL_TEXT: &str = "conditioner.embedders.0.transformer.";
const SDXL_TEXT_2: &str = "conditioner.embedders.1.model.";

/// Tells the family from the tensor names; `unet_in_channels` is the first conv's input
/// channel count (9 for inpainting models, 8 for instruct-pix2pix).
pub fn detect_kind(
    names: &[&str],
    unet_in_channels: Option<usize>,
) -> Result<CheckpointKind, CheckpointError> {
    let has = |prefix: &str| names.iter().any(|n| n.starts_with(prefix));
    if !has(UNET) {
        let hint = if names
            .iter()
            .any(|n| n.starts_with("lora_") || n.contains(".lora_"))
        {
            " — this is a LoRA; add it with --lora or the LoRA list"
        } else if has("decoder.") || has("encoder.") {
            " — this is a VAE; choose it with --vae or \"VAE…\""
        } else if names
            .iter()
            .any(|n| *n == "emb_params" || *n == "clip_l" || *n == "clip_g")
        {
            " — this is a textual-inversion embedding; put it in the embeddings folder"
        } else if has("down_blocks.") || has("text_model.") {
            " — these are diffusers component weights; load the whole diffusers folder instead"
        } else {
            ""
        };
        return Err(CheckpointError::Unrecognised(format!(
            "no Stable Diffusion UNet in this file (no model.diffusion_model.* tensors){hint}"
        )));
    }
    if let Some(channels) = unet_in_channels.filter(|&c| c != 4 && c != 9) {
        return Err(CheckpointError::Unrecognised(format!(
            "the UNet takes {channels} input channels (an instruct-pix2pix or other image-conditioned model); text-to-image (4 channels) and inpainting (9) checkpoints are supported"
        )));
    }
    if has(SDXL_TEXT_2) && has(SDXL_TEXT) {
        Ok(CheckpointKind::Sdxl)
    } else if has("conditioner.embedders.0.model.") {
        Err(CheckpointError::Unrecognised(
            "this is an SDXL refiner checkpoint, which is not supported; use an SDXL base model"
                .into(),
        ))
    } else if has(SD2_TEXT) {
        Ok(CheckpointKind::Sd2)
    } else if has(SD1_TEXT) {
        Ok(CheckpointKind::Sd1)
    } else {
        Err(CheckpointError::Unrecognised(
            "no text encoder in this file (neither cond_stage_model.* nor conditioner.embedders.*)"
                .into(),
        ))
    }
}

/// Which of our components a checkpoint tensor belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    Unet,
    Vae,
    TextEncoder,
    TextEncoder2,
}

/// The block layout the UNet and VAE renames depend on.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    pub unet_layers_per_block: usize,
    pub vae_blocks: usize,
}

/// A checkpoint split into components, renamed to diffusers names.
pub struct Components {
    pub unet: WeightMap,
    pub vae: WeightMap,
    pub text_encoder: WeightMap,
    pub text_encoder_2: WeightMap,
}

/// How one checkpoint tensor becomes diffusers tensors.
#[derive(Debug, PartialEq, Eq)]
enum Conversion {
    Rename(String),
    /// A 1×1 conv kernel used as a linear layer (the VAE's mid-block attention).
    Squeeze(String),
    /// Transposed (OpenCLIP's `text_projection` is applied as `x @ P`).
    Transpose(String),
    /// OpenCLIP's fused attention input projection, split in q, k, v along the first axis.
    SplitQkv([String; 3]),
}

fn convert_name(
    kind: CheckpointKind,
    name: &str,
    layout: Layout,
) -> Option<(Component, Conversion)> {
    if let Some(rest) = name.strip_prefix(UNET) {
        return unet_name(rest, layout.unet_layers_per_block)
            .map(|n| (Component::Unet, Conversion::Rename(n)));
    }
    if let Some(rest) = name.strip_prefix(VAE) {
        return vae_conversion(rest, layout.vae_blocks).map(|c| (Component::Vae, c));
    }
    let (component, rest, open_clip) = match kind {
        CheckpointKind::Sd1 => (Component::TextEncoder, name.strip_prefix(SD1_TEXT)?, false),
        CheckpointKind::Sd2 => (Component::TextEncoder, name.strip_prefix(SD2_TEXT)?, true),
        CheckpointKind::Sdxl => match name.strip_prefix(SDXL_TEXT) {
            Some(rest) => (Component::TextEncoder, rest, false),
            None => (
                Component::TextEncoder2,
                name.strip_prefix(SDXL_TEXT_2)?,
                true,
            ),
        },
    };
    if open_clip {
        open_clip_conversion(rest).map(|c| (component, c))
    } else {
        Some((component, Conversion::Rename(rest.to_string())))
    }
}

/// Every renaming a checkpoint tensor name can go through (each family, and the standalone
/// VAE's), for the fuzz targets: no name may make them panic. Returns how many converted.
#[doc(hidden)]
pub(crate) fn convert_names_for_fuzzing(names: &[&str], layout: Layout) -> usize {
    let mut converted = 0;
    for name in names {
        for kind in [
            CheckpointKind::Sd1,
            CheckpointKind::Sd2,
            CheckpointKind::Sdxl,
        ] {
            converted += usize::from(convert_name(kind, name, layout).is_some());
        }
        let bare = name.strip_prefix(VAE).unwrap_or(name);
        converted += usize::from(vae_conversion(bare, layout.vae_blocks).is_some());
    }
    converted
}

fn resnet_part(rest: &str) -> String {
    const RENAMES: [(&str, &str); 6] = [
        ("in_layers.0.", "norm1."),
        ("in_layers.2.", "conv1."),
        ("emb_layers.1.", "time_emb_proj."),
        ("out_layers.0.", "norm2."),
        ("out_layers.3.", "conv2."),
        ("skip_connection.", "conv_shortcut."),
    ];
    for (from, to) in RENAMES {
        if let Some(tail) = rest.strip_prefix(from) {
            return format!("{to}{tail}");
        }
    }
    rest.to_string()
}

/// Splits `"4.1.rest"` into `(4, 1, "rest")`.
fn two_indices(text: &str) -> Option<(usize, usize, &str)> {
    let (first, text) = text.split_once('.')?;
    let (second, rest) = text.split_once('.')?;
    Some((first.parse().ok()?, second.parse().ok()?, rest))
}

/// ldm UNet names (after `model.diffusion_model.`) to diffusers `UNet2DConditionModel` names.
pub fn unet_name(name: &str, layers_per_block: usize) -> Option<String> {
    const FIXED: [(&str, &str); 7] = [
        ("time_embed.0.", "time_embedding.linear_1."),
        ("time_embed.2.", "time_embedding.linear_2."),
        ("label_emb.0.0.", "add_embedding.linear_1."),
        ("label_emb.0.2.", "add_embedding.linear_2."),
        ("input_blocks.0.0.", "conv_in."),
        ("out.0.", "conv_norm_out."),
        ("out.2.", "conv_out."),
    ];
    for (from, to) in FIXED {
        if let Some(tail) = name.strip_prefix(from) {
            return Some(format!("{to}{tail}"));
        }
    }
    let per_block = layers_per_block + 1;
    if let Some(rest) = name.strip_prefix("input_blocks.") {
        let (index, part, rest) = two_indices(rest)?;
        let block = index.checked_sub(1)? / per_block;
        let layer = (index - 1) % per_block;
        return if layer < layers_per_block {
            match part {
                0 => Some(format!(
                    "down_blocks.{block}.resnets.{layer}.{}",
                    resnet_part(rest)
                )),
                1 => Some(format!("down_blocks.{block}.attentions.{layer}.{rest}")),
                _ => None,
            }
        } else {
            let tail = rest.strip_prefix("op.")?;
            Some(format!("down_blocks.{block}.downsamplers.0.conv.{tail}"))
        };
    }
    if let Some(rest) = name.strip_prefix("middle_block.") {
        let (part, rest) = rest.split_once('.')?;
        return match part {
            "0" => Some(format!("mid_block.resnets.0.{}", resnet_part(rest))),
            "1" => Some(format!("mid_block.attentions.0.{rest}")),
            "2" => Some(format!("mid_block.resnets.1.{}", resnet_part(rest))),
            _ => None,
        };
    }
    if let Some(rest) = name.strip_prefix("output_blocks.") {
        let (index, part, rest) = two_indices(rest)?;
        let (block, layer) = (index / per_block, index % per_block);
        return match (part, rest.strip_prefix("conv.")) {
            (0, _) => Some(format!(
                "up_blocks.{block}.resnets.{layer}.{}",
                resnet_part(rest)
            )),
            (_, Some(tail)) => Some(format!("up_blocks.{block}.upsamplers.0.conv.{tail}")),
            (1, None) => Some(format!("up_blocks.{block}.attentions.{layer}.{rest}")),
            _ => None,
        };
    }
    None
}

/// Original ControlNet names (after `control_model.`, as in `control_v11p_sd15_canny`) to
/// diffusers `ControlNetModel` names: the UNet's down half as [`unet_name`] renames it, the
/// hint convolutions (every second module of `input_hint_block`; SiLUs between) as the
/// conditioning embedding whose last is `conv_out`, `zero_convs.N.0` and `middle_block_out.0`.
pub fn controlnet_name(name: &str, layers_per_block: usize, hint_convs: usize) -> Option<String> {
    if let Some(rest) = name.strip_prefix("input_hint_block.") {
        let (module, tail) = rest.split_once('.')?;
        let module: usize = module.parse().ok()?;
        if !module.is_multiple_of(2) {
            return None;
        }
        let conv = module / 2;
        return match conv {
            0 => Some(format!("controlnet_cond_embedding.conv_in.{tail}")),
            c if c + 1 == hint_convs => Some(format!("controlnet_cond_embedding.conv_out.{tail}")),
            c if c < hint_convs => {
                Some(format!("controlnet_cond_embedding.blocks.{}.{tail}", c - 1))
            }
            _ => None,
        };
    }
    if let Some(rest) = name.strip_prefix("zero_convs.") {
        let (index, part, tail) = two_indices(rest)?;
        return (part == 0).then(|| format!("controlnet_down_blocks.{index}.{tail}"));
    }
    if let Some(tail) = name.strip_prefix("middle_block_out.0.") {
        return Some(format!("controlnet_mid_block.{tail}"));
    }
    if name.starts_with("output_blocks.") || name.starts_with("out.") {
        return None;
    }
    unet_name(name, layers_per_block)
}

/// ldm VAE names (after `first_stage_model.`, or a standalone VAE file's) to diffusers
/// `AutoencoderKL` names; `blocks` is the number of encoder/decoder blocks.
fn vae_conversion(name: &str, blocks: usize) -> Option<Conversion> {
    const PASS: [&str; 6] = [
        "encoder.conv_in.",
        "encoder.conv_out.",
        "decoder.conv_in.",
        "decoder.conv_out.",
        "quant_conv.",
        "post_quant_conv.",
    ];
    if PASS.iter().any(|p| name.starts_with(p)) {
        return Some(Conversion::Rename(name.to_string()));
    }
    let (coder, rest) = name.split_once('.')?;
    if coder != "encoder" && coder != "decoder" {
        return None;
    }
    let resnet = |rest: &str| rest.replacen("nin_shortcut.", "conv_shortcut.", 1);
    if let Some(tail) = rest.strip_prefix("norm_out.") {
        return Some(Conversion::Rename(format!("{coder}.conv_norm_out.{tail}")));
    }
    if let Some(rest) = rest.strip_prefix("mid.") {
        if let Some(tail) = rest.strip_prefix("block_1.") {
            return Some(Conversion::Rename(format!(
                "{coder}.mid_block.resnets.0.{}",
                resnet(tail)
            )));
        }
        if let Some(tail) = rest.strip_prefix("block_2.") {
            return Some(Conversion::Rename(format!(
                "{coder}.mid_block.resnets.1.{}",
                resnet(tail)
            )));
        }
        let tail = rest.strip_prefix("attn_1.")?;
        let (layer, param) = tail.split_once('.')?;
        let target = |new: &str| format!("{coder}.mid_block.attentions.0.{new}.{param}");
        return Some(match layer {
            "norm" => Conversion::Rename(target("group_norm")),
            "q" => Conversion::Squeeze(target("to_q")),
            "k" => Conversion::Squeeze(target("to_k")),
            "v" => Conversion::Squeeze(target("to_v")),
            "proj_out" => Conversion::Squeeze(target("to_out.0")),
            _ => return None,
        });
    }
    let (direction, rest) = match coder {
        "encoder" => ("down", rest.strip_prefix("down.")?),
        _ => ("up", rest.strip_prefix("up.")?),
    };
    let (index, rest) = rest.split_once('.')?;
    let index: usize = index.parse().ok()?;
    // The ldm decoder counts its blocks from the lowest resolution up, diffusers from the top.
    let block = if direction == "up" {
        blocks.checked_sub(1)?.checked_sub(index)?
    } else {
        index
    };
    let prefix = format!("{coder}.{direction}_blocks.{block}");
    if let Some(rest) = rest.strip_prefix("block.") {
        let (layer, tail) = rest.split_once('.')?;
        return Some(Conversion::Rename(format!(
            "{prefix}.resnets.{layer}.{}",
            resnet(tail)
        )));
    }
    let sampler = if direction == "up" {
        "upsample."
    } else {
        "downsample."
    };
    let tail = rest.strip_prefix(sampler)?.strip_prefix("conv.")?;
    Some(Conversion::Rename(format!(
        "{prefix}.{direction}samplers.0.conv.{tail}"
    )))
}

/// OpenCLIP text-transformer names (after `cond_stage_model.model.` or
/// `conditioner.embedders.1.model.`) to transformers `CLIPTextModel` names.
fn open_clip_conversion(name: &str) -> Option<Conversion> {
    let text = |rest: &str| Conversion::Rename(format!("text_model.{rest}"));
    match name {
        "token_embedding.weight" => return Some(text("embeddings.token_embedding.weight")),
        "positional_embedding" => return Some(text("embeddings.position_embedding.weight")),
        "text_projection" => return Some(Conversion::Transpose("text_projection.weight".into())),
        _ => {}
    }
    if let Some(tail) = name.strip_prefix("ln_final.") {
        return Some(text(&format!("final_layer_norm.{tail}")));
    }
    let rest = name.strip_prefix("transformer.resblocks.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let prefix = format!("text_model.encoder.layers.{layer}");
    if let Some(param) = rest.strip_prefix("attn.in_proj_") {
        return Some(Conversion::SplitQkv(
            ["q", "k", "v"].map(|p| format!("{prefix}.self_attn.{p}_proj.{param}")),
        ));
    }
    const RENAMES: [(&str, &str); 5] = [
        ("ln_1.", "layer_norm1."),
        ("ln_2.", "layer_norm2."),
        ("attn.out_proj.", "self_attn.out_proj."),
        ("mlp.c_fc.", "mlp.fc1."),
        ("mlp.c_proj.", "mlp.fc2."),
    ];
    RENAMES.iter().find_map(|(from, to)| {
        rest.strip_prefix(from)
            .map(|tail| Conversion::Rename(format!("{prefix}.{to}{tail}")))
    })
}

fn apply(conversion: Conversion, tensor: Tensor, out: &mut WeightMap) -> candle_core::Result<()> {
    match conversion {
        Conversion::Rename(name) => out.insert(name, tensor),
        Conversion::Squeeze(name) => {
            let tensor = match tensor.rank() {
                4 => tensor.squeeze(3)?.squeeze(2)?,
                _ => tensor,
            };
            out.insert(name, tensor);
        }
        Conversion::Transpose(name) => out.insert(name, tensor.t()?.contiguous()?),
        Conversion::SplitQkv(names) => {
            let third = tensor.dim(0)? / 3;
            for (i, name) in names.into_iter().enumerate() {
                out.insert(name, tensor.narrow(0, i * third, third)?.contiguous()?);
            }
        }
    }
    Ok(())
}

/// An open single file: its tensor names, without reading the data yet.
pub struct Checkpoint {
    file: super::safetensors_file::SafetensorsFile,
}

impl Checkpoint {
    pub fn open(path: &Path) -> candle_core::Result<Self> {
        Ok(Self {
            file: super::safetensors_file::SafetensorsFile::open(path)?,
        })
    }

    pub fn names(&self) -> Vec<&str> {
        self.file.names().collect()
    }

    /// The UNet's input channels, from the first conv's weight shape.
    pub fn unet_in_channels(&self) -> Option<usize> {
        let shape = self.file.shape(&format!("{UNET}input_blocks.0.0.weight"))?;
        shape.get(1).copied()
    }

    pub fn kind(&self) -> Result<CheckpointKind, CheckpointError> {
        detect_kind(&self.names(), self.unet_in_channels())
    }

    /// A tensor in `dtype`, or as stored when `keep_half` and it is stored in f16/bf16 (see
    /// `LoadOptions::keep_f16_weights`).
    fn load(
        &self,
        name: &str,
        dtype: DType,
        device: &Device,
        keep_half: bool,
    ) -> Result<Tensor, CheckpointError> {
        self.file
            .load(name, device)
            .and_then(|t| {
                if keep_half && matches!(t.dtype(), DType::F16 | DType::BF16) {
                    Ok(t)
                } else {
                    t.to_dtype(dtype)
                }
            })
            .map_err(|err| CheckpointError::Tensor {
                name: name.to_string(),
                message: crate::describe_candle_error(&err),
            })
    }

    /// Every tensor of a known component, renamed; the rest (EMA copies, training state) is
    /// never read.
    pub fn components(
        &self,
        kind: CheckpointKind,
        layout: Layout,
        dtype: DType,
        device: &Device,
        keep_half: bool,
    ) -> Result<Components, CheckpointError> {
        let mut components = Components {
            unet: WeightMap::default(),
            vae: WeightMap::default(),
            text_encoder: WeightMap::default(),
            text_encoder_2: WeightMap::default(),
        };
        for name in self.file.names() {
            let Some((component, conversion)) = convert_name(kind, name, layout) else {
                continue;
            };
            let tensor = self.load(name, dtype, device, keep_half)?;
            let out = match component {
                Component::Unet => &mut components.unet,
                Component::Vae => &mut components.vae,
                Component::TextEncoder => &mut components.text_encoder,
                Component::TextEncoder2 => &mut components.text_encoder_2,
            };
            apply(conversion, tensor, out).map_err(|err| CheckpointError::Tensor {
                name: name.to_string(),
                message: crate::describe_candle_error(&err),
            })?;
        }
        Ok(components)
    }

    /// A standalone VAE file: ldm names (`decoder.up.…`, optionally under
    /// `first_stage_model.`) are converted, diffusers names (`decoder.up_blocks.…`) kept.
    pub fn vae(
        &self,
        blocks: usize,
        dtype: DType,
        device: &Device,
        keep_half: bool,
    ) -> Result<WeightMap, CheckpointError> {
        let diffusers_layout = self.file.names().any(|n| n.contains("up_blocks."));
        let mut vae = WeightMap::default();
        for name in self.file.names() {
            let bare = name.strip_prefix(VAE).unwrap_or(name);
            let conversion = if diffusers_layout {
                Some(Conversion::Rename(bare.to_string()))
            } else {
                vae_conversion(bare, blocks)
            };
            let Some(conversion) = conversion else {
                continue;
            };
            let tensor = self.load(name, dtype, device, keep_half)?;
            apply(conversion, tensor, &mut vae).map_err(|err| CheckpointError::Tensor {
                name: name.to_string(),
                message: crate::describe_candle_error(&err),
            })?;
        }
        if vae.is_empty() {
            return Err(CheckpointError::Unrecognised(
                "no VAE tensors in this file (expected encoder.* / decoder.*)".into(),
            ));
        }
        Ok(vae)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unet_blocks_map_as_diffusers_converts_them() {
        let cases = [
            ("input_blocks.0.0.weight", "conv_in.weight"),
            (
                "input_blocks.1.0.in_layers.0.weight",
                "down_blocks.0.resnets.0.norm1.weight",
            ),
            (
                "input_blocks.2.1.proj_in.weight",
                "down_blocks.0.attentions.1.proj_in.weight",
            ),
            (
                "input_blocks.3.0.op.weight",
                "down_blocks.0.downsamplers.0.conv.weight",
            ),
            (
                "input_blocks.4.0.skip_connection.bias",
                "down_blocks.1.resnets.0.conv_shortcut.bias",
            ),
            (
                "input_blocks.5.1.transformer_blocks.0.attn2.to_k.weight",
                "down_blocks.1.attentions.1.transformer_blocks.0.attn2.to_k.weight",
            ),
            (
                "middle_block.0.emb_layers.1.weight",
                "mid_block.resnets.0.time_emb_proj.weight",
            ),
            (
                "middle_block.1.norm.bias",
                "mid_block.attentions.0.norm.bias",
            ),
            (
                "middle_block.2.out_layers.3.weight",
                "mid_block.resnets.1.conv2.weight",
            ),
            (
                "output_blocks.2.1.conv.weight",
                "up_blocks.0.upsamplers.0.conv.weight",
            ),
            (
                "output_blocks.3.0.out_layers.0.bias",
                "up_blocks.1.resnets.0.norm2.bias",
            ),
            (
                "output_blocks.5.1.proj_out.weight",
                "up_blocks.1.attentions.2.proj_out.weight",
            ),
            (
                "output_blocks.5.2.conv.bias",
                "up_blocks.1.upsamplers.0.conv.bias",
            ),
            ("time_embed.2.weight", "time_embedding.linear_2.weight"),
            ("label_emb.0.0.bias", "add_embedding.linear_1.bias"),
            ("out.2.weight", "conv_out.weight"),
        ];
        for (ldm, diffusers) in cases {
            assert_eq!(unet_name(ldm, 2).as_deref(), Some(diffusers), "{ldm}");
        }
        assert_eq!(unet_name("betas", 2), None);
    }

    #[test]
    fn vae_decoder_blocks_are_reversed_and_attention_squeezed() {
        let rename = |n: &str| vae_conversion(n, 4);
        assert_eq!(
            rename("decoder.up.0.block.2.nin_shortcut.weight"),
            Some(Conversion::Rename(
                "decoder.up_blocks.3.resnets.2.conv_shortcut.weight".into()
            ))
        );
        assert_eq!(
            rename("decoder.up.3.upsample.conv.bias"),
            Some(Conversion::Rename(
                "decoder.up_blocks.0.upsamplers.0.conv.bias".into()
            ))
        );
        assert_eq!(
            rename("encoder.down.1.downsample.conv.weight"),
            Some(Conversion::Rename(
                "encoder.down_blocks.1.downsamplers.0.conv.weight".into()
            ))
        );
        assert_eq!(
            rename("encoder.mid.attn_1.q.weight"),
            Some(Conversion::Squeeze(
                "encoder.mid_block.attentions.0.to_q.weight".into()
            ))
        );
        assert_eq!(
            rename("decoder.mid.attn_1.norm.bias"),
            Some(Conversion::Rename(
                "decoder.mid_block.attentions.0.group_norm.bias".into()
            ))
        );
        assert_eq!(
            rename("encoder.norm_out.weight"),
            Some(Conversion::Rename("encoder.conv_norm_out.weight".into()))
        );
        assert_eq!(rename("loss.logvar"), None);
    }

    #[test]
    fn open_clip_attention_is_split_and_projection_transposed() {
        assert_eq!(
            open_clip_conversion("transformer.resblocks.3.attn.in_proj_bias"),
            Some(Conversion::SplitQkv([
                "text_model.encoder.layers.3.self_attn.q_proj.bias".into(),
                "text_model.encoder.layers.3.self_attn.k_proj.bias".into(),
                "text_model.encoder.layers.3.self_attn.v_proj.bias".into(),
            ]))
        );
        assert_eq!(
            open_clip_conversion("text_projection"),
            Some(Conversion::Transpose("text_projection.weight".into()))
        );
        assert_eq!(
            open_clip_conversion("transformer.resblocks.0.mlp.c_proj.weight"),
            Some(Conversion::Rename(
                "text_model.encoder.layers.0.mlp.fc2.weight".into()
            ))
        );
        let mut out = WeightMap::default();
        let fused = Tensor::arange(0f32, 6.0, &Device::Cpu)
            .unwrap()
            .reshape((6, 1))
            .unwrap();
        apply(
            open_clip_conversion("transformer.resblocks.0.attn.in_proj_weight").unwrap(),
            fused,
            &mut out,
        )
        .unwrap();
        let v: Vec<Vec<f32>> = out
            .get("text_model.encoder.layers.0.self_attn.v_proj.weight")
            .unwrap()
            .to_vec2()
            .unwrap();
        assert_eq!(v, vec![vec![4.0], vec![5.0]]);
    }

    #[test]
    fn families_are_told_apart_and_other_files_explained() {
        let sd1 = [
            "model.diffusion_model.out.2.weight",
            "cond_stage_model.transformer.text_model.final_layer_norm.weight",
        ];
        assert_eq!(detect_kind(&sd1, Some(4)).unwrap(), CheckpointKind::Sd1);
        let sd2 = [
            "model.diffusion_model.out.2.weight",
            "cond_stage_model.model.ln_final.weight",
        ];
        assert_eq!(detect_kind(&sd2, Some(4)).unwrap(), CheckpointKind::Sd2);
        let xl = [
            "model.diffusion_model.out.2.weight",
            "conditioner.embedders.0.transformer.text_model.final_layer_norm.weight",
            "conditioner.embedders.1.model.ln_final.weight",
        ];
        assert_eq!(detect_kind(&xl, Some(4)).unwrap(), CheckpointKind::Sdxl);
        assert_eq!(detect_kind(&sd1, Some(9)).unwrap(), CheckpointKind::Sd1);
        let instruct = detect_kind(&sd1, Some(8)).unwrap_err().to_string();
        assert!(instruct.contains("instruct-pix2pix"), "{instruct}");
        let lora = ["lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight"];
        assert!(detect_kind(&lora, None)
            .unwrap_err()
            .to_string()
            .contains("LoRA"));
        let refiner = [
            "model.diffusion_model.out.2.weight",
            "conditioner.embedders.0.model.ln_final.weight",
        ];
        assert!(detect_kind(&refiner, Some(4))
            .unwrap_err()
            .to_string()
            .contains("refiner"));
    }
}
