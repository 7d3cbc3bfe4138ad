//! The fields of a diffusers `UNet2DConditionModel` config (and of a `ControlNetModel`'s,
//! which shares them), each bounded before it sizes anything.

use candle_core::Result;
use serde::Deserialize;

/// A config value diffusers accepts either once for all blocks or per block.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PerBlock<T> {
    One(T),
    Each(Vec<T>),
}

impl<T: Clone> PerBlock<T> {
    pub(crate) fn expand(&self, blocks: usize, key: &str) -> std::result::Result<Vec<T>, String> {
        match self {
            Self::One(value) => Ok(vec![value.clone(); blocks]),
            Self::Each(values) if values.len() == blocks => Ok(values.clone()),
            Self::Each(values) => Err(format!(
                "{key} has {} entries but the UNet has {blocks} blocks",
                values.len()
            )),
        }
    }
}

fn default_one<T: From<u8>>() -> PerBlock<T> {
    PerBlock::One(T::from(1))
}

/// The fields of a diffusers `UNet2DConditionModel` config that shape the network.
#[derive(Debug, Clone, Deserialize)]
pub struct UNetConfig {
    #[serde(default = "default_four")]
    pub in_channels: usize,
    #[serde(default = "default_four")]
    pub out_channels: usize,
    pub down_block_types: Vec<String>,
    /// Empty in a ControlNet's config.
    #[serde(default)]
    pub up_block_types: Vec<String>,
    #[serde(default)]
    pub mid_block_type: Option<String>,
    pub block_out_channels: Vec<usize>,
    #[serde(default = "default_layers_per_block")]
    pub layers_per_block: PerBlock<usize>,
    #[serde(default = "default_one_usize")]
    pub downsample_padding: usize,
    #[serde(default = "default_one_f64")]
    pub mid_block_scale_factor: f64,
    #[serde(default = "default_silu")]
    pub act_fn: String,
    #[serde(default = "default_groups")]
    pub norm_num_groups: usize,
    #[serde(default = "default_norm_eps")]
    pub norm_eps: f64,
    pub cross_attention_dim: PerBlock<usize>,
    #[serde(default = "default_one")]
    pub transformer_layers_per_block: PerBlock<usize>,
    #[serde(default)]
    pub reverse_transformer_layers_per_block: Option<serde_json::Value>,
    #[serde(default = "default_head_dim")]
    pub attention_head_dim: PerBlock<usize>,
    #[serde(default)]
    pub num_attention_heads: Option<PerBlock<usize>>,
    #[serde(default)]
    pub use_linear_projection: bool,
    #[serde(default = "default_true")]
    pub flip_sin_to_cos: bool,
    #[serde(default)]
    pub freq_shift: f64,
    #[serde(default)]
    pub addition_embed_type: Option<String>,
    #[serde(default)]
    pub addition_time_embed_dim: Option<usize>,
    #[serde(default)]
    pub projection_class_embeddings_input_dim: Option<usize>,
    #[serde(default)]
    pub class_embed_type: Option<String>,
    #[serde(default)]
    pub time_cond_proj_dim: Option<usize>,
    #[serde(default)]
    pub time_embedding_type: Option<String>,
    #[serde(default)]
    pub resnet_time_scale_shift: Option<String>,
    #[serde(default)]
    pub only_cross_attention: Option<serde_json::Value>,
    #[serde(default)]
    pub dual_cross_attention: bool,
    #[serde(default)]
    pub center_input_sample: bool,
    #[serde(default)]
    pub encoder_hid_dim: Option<usize>,
    #[serde(default)]
    pub sample_size: Option<usize>,
}

fn default_four() -> usize {
    4
}
fn default_one_usize() -> usize {
    1
}
fn default_one_f64() -> f64 {
    1.0
}
fn default_layers_per_block() -> PerBlock<usize> {
    PerBlock::One(2)
}
fn default_silu() -> String {
    "silu".into()
}
fn default_groups() -> usize {
    32
}
fn default_norm_eps() -> f64 {
    1e-5
}
fn default_head_dim() -> PerBlock<usize> {
    PerBlock::One(8)
}
fn default_true() -> bool {
    true
}

/// The largest default latent size a config may ask for (4096 pixels at a VAE scale of 8).
pub const MAX_SAMPLE_SIZE: usize = 512;

pub(crate) fn unsupported(
    key: &str,
    value: impl std::fmt::Debug,
    supported: &str,
) -> candle_core::Error {
    candle_core::Error::Msg(format!(
        "unsupported UNet config value {key} = {value:?} (supported: {supported})"
    ))
}

impl UNetConfig {
    pub(crate) fn check_supported(&self) -> Result<()> {
        self.check_down_half()?;
        // 4: latents; 9: latents + mask + masked-image latents (inpainting). Others (8,
        // instruct-pix2pix) need conditioning the pipeline does not make.
        if ![4, 9].contains(&self.in_channels) || self.out_channels != 4 {
            return Err(unsupported(
                "in_channels/out_channels",
                format!("{}/{}", self.in_channels, self.out_channels),
                "4 or 9 in (text-to-image or inpainting), 4 out",
            ));
        }
        if self.up_block_types.len() != self.block_out_channels.len() {
            candle_core::bail!(
                "UNet config lists {} up blocks for {} block_out_channels",
                self.up_block_types.len(),
                self.block_out_channels.len()
            );
        }
        Ok(())
    }

    /// Everything about the time embedding, down blocks and mid block — all a ControlNet
    /// (which has no up blocks) is made of.
    pub(crate) fn check_down_half(&self) -> Result<()> {
        // Numbers that size loops, tables and the default image: bounded before use, so that
        // a stranger's config cannot divide by zero or ask for terabytes.
        let per_block_within = |values: &PerBlock<usize>, max: usize| match values {
            PerBlock::One(v) => (1..=max).contains(v),
            PerBlock::Each(vs) => !vs.is_empty() && vs.iter().all(|v| (1..=max).contains(v)),
        };
        if !(1..=6).contains(&self.block_out_channels.len()) {
            return Err(unsupported(
                "block_out_channels",
                &self.block_out_channels,
                "1 to 6 blocks",
            ));
        }
        if !per_block_within(&self.layers_per_block, 16) {
            return Err(unsupported(
                "layers_per_block",
                &self.layers_per_block,
                "1 to 16",
            ));
        }
        if !per_block_within(&self.transformer_layers_per_block, 64) {
            return Err(unsupported(
                "transformer_layers_per_block",
                &self.transformer_layers_per_block,
                "1 to 64",
            ));
        }
        if !per_block_within(&self.attention_head_dim, 4096) {
            return Err(unsupported(
                "attention_head_dim",
                &self.attention_head_dim,
                "1 to 4096",
            ));
        }
        if self.norm_num_groups == 0 {
            return Err(unsupported(
                "norm_num_groups",
                self.norm_num_groups,
                "at least 1",
            ));
        }
        if let Some(size) = self
            .sample_size
            .filter(|s| !(1..=MAX_SAMPLE_SIZE).contains(s))
        {
            return Err(unsupported("sample_size", size, "1 to 512 latents"));
        }
        if self.act_fn != "silu" {
            return Err(unsupported("act_fn", &self.act_fn, "silu"));
        }
        if let Some(kind) = &self.class_embed_type {
            return Err(unsupported("class_embed_type", kind, "null"));
        }
        if let Some(dim) = self.time_cond_proj_dim {
            return Err(unsupported("time_cond_proj_dim", dim, "null"));
        }
        if let Some(dim) = self.encoder_hid_dim {
            return Err(unsupported("encoder_hid_dim", dim, "null"));
        }
        if let Some(kind) = self.time_embedding_type.as_deref() {
            if kind != "positional" {
                return Err(unsupported("time_embedding_type", kind, "positional"));
            }
        }
        if let Some(kind) = self.resnet_time_scale_shift.as_deref() {
            if kind != "default" {
                return Err(unsupported("resnet_time_scale_shift", kind, "default"));
            }
        }
        if let Some(value) = &self.only_cross_attention {
            let any_true = match value {
                serde_json::Value::Bool(b) => *b,
                serde_json::Value::Array(items) => items.iter().any(|v| v.as_bool() == Some(true)),
                _ => false,
            };
            if any_true {
                return Err(unsupported("only_cross_attention", value, "false"));
            }
        }
        if self.dual_cross_attention {
            return Err(unsupported("dual_cross_attention", true, "false"));
        }
        if self.center_input_sample {
            return Err(unsupported("center_input_sample", true, "false"));
        }
        if self
            .reverse_transformer_layers_per_block
            .as_ref()
            .is_some_and(|v| !v.is_null())
        {
            return Err(unsupported(
                "reverse_transformer_layers_per_block",
                &self.reverse_transformer_layers_per_block,
                "null",
            ));
        }
        if let Some(kind) = self.mid_block_type.as_deref() {
            if kind != "UNetMidBlock2DCrossAttn" {
                return Err(unsupported(
                    "mid_block_type",
                    kind,
                    "UNetMidBlock2DCrossAttn",
                ));
            }
        }
        match self.addition_embed_type.as_deref() {
            None | Some("text_time") => {}
            Some(other) => {
                return Err(unsupported("addition_embed_type", other, "null, text_time"))
            }
        }
        if self.block_out_channels.is_empty() {
            candle_core::bail!("UNet config has no block_out_channels");
        }
        if self.down_block_types.len() != self.block_out_channels.len() {
            candle_core::bail!(
                "UNet config lists {} down blocks for {} block_out_channels",
                self.down_block_types.len(),
                self.block_out_channels.len()
            );
        }
        Ok(())
    }
}

pub(crate) fn has_cross_attention(block_type: &str, position: &str) -> Result<bool> {
    match (position, block_type) {
        ("down", "CrossAttnDownBlock2D") | ("up", "CrossAttnUpBlock2D") => Ok(true),
        ("down", "DownBlock2D") | ("up", "UpBlock2D") => Ok(false),
        _ => Err(unsupported(
            &format!("{position}_block_types"),
            block_type,
            if position == "down" {
                "CrossAttnDownBlock2D, DownBlock2D"
            } else {
                "CrossAttnUpBlock2D, UpBlock2D"
            },
        )),
    }
}
