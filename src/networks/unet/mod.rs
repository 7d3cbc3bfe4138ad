//! `UNet2DConditionModel`, built from a diffusers `unet/config.json`.

mod transformer;

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{linear, Conv2dConfig, Linear, VarBuilder};

use crate::kernels::conv::{conv2d, Conv2d};
use crate::kernels::group_norm::{group_norm, GroupNorm};
use serde::Deserialize;

use crate::networks::layers::{conv3x3, Downsample2D, ResnetBlock2D, ResnetConfig, Upsample2D};
pub use transformer::Attention;
use transformer::{Transformer2D, Transformer2DConfig};

/// A config value diffusers accepts either once for all blocks or per block.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PerBlock<T> {
    One(T),
    Each(Vec<T>),
}

impl<T: Clone> PerBlock<T> {
    fn expand(&self, blocks: usize, key: &str) -> std::result::Result<Vec<T>, String> {
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

/// What the UNet needs besides the latents and the timestep: SDXL's pooled text and size ids.
pub struct AddedConditions {
    /// `(batch, pooled_dim)`
    pub text_embeds: Tensor,
    /// `(batch, 6)`: original size, crop top-left, target size.
    pub time_ids: Tensor,
}

/// Sinusoidal timestep features (`get_timestep_embedding`), computed in float32 like diffusers.
fn timestep_features(
    timesteps: &[f32],
    dim: usize,
    flip_sin_to_cos: bool,
    freq_shift: f64,
    device: &Device,
) -> Result<Tensor> {
    let half = dim / 2;
    let denominator = (half as f64 - freq_shift) as f32;
    let log_period = -(10000f64.ln()) as f32;
    let frequencies: Vec<f32> = (0..half)
        .map(|i| (log_period * i as f32 / denominator).exp())
        .collect();
    let mut values = Vec::with_capacity(timesteps.len() * dim);
    for &t in timesteps {
        let args: Vec<f32> = frequencies.iter().map(|f| t * f).collect();
        let sin = args.iter().map(|a| a.sin());
        let cos = args.iter().map(|a| a.cos());
        if flip_sin_to_cos {
            values.extend(cos.chain(sin));
        } else {
            values.extend(sin.chain(cos));
        }
        if dim % 2 == 1 {
            values.push(0.0);
        }
    }
    Tensor::from_vec(values, (timesteps.len(), dim), device)
}

struct TimestepEmbedding {
    linear_1: Linear,
    linear_2: Linear,
}

impl TimestepEmbedding {
    fn new(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            linear_1: linear(in_dim, out_dim, vb.pp("linear_1"))?,
            linear_2: linear(out_dim, out_dim, vb.pp("linear_2"))?,
        })
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.linear_2.forward(&self.linear_1.forward(xs)?.silu()?)
    }
}

/// One resnet, optionally followed by a transformer.
struct Layer {
    resnet: ResnetBlock2D,
    attention: Option<Transformer2D>,
}

impl Layer {
    fn forward(&self, xs: &Tensor, temb: &Tensor, context: &Tensor) -> Result<Tensor> {
        let xs = self.resnet.forward(xs, Some(temb))?;
        match &self.attention {
            Some(attention) => attention.forward(&xs, context),
            None => Ok(xs),
        }
    }
}

struct DownBlock {
    layers: Vec<Layer>,
    downsampler: Option<Downsample2D>,
}

struct UpBlock {
    layers: Vec<Layer>,
    upsampler: Option<Upsample2D>,
}

struct MidBlock {
    first: ResnetBlock2D,
    rest: Vec<(Transformer2D, ResnetBlock2D)>,
}

struct AdditionEmbedding {
    time_proj_dim: usize,
    embedding: TimestepEmbedding,
}

pub struct UNet2DConditionModel {
    /// 4 for text-to-image models; 9 for inpainting ones (latents, mask, masked image).
    in_channels: usize,
    conv_in: Conv2d,
    time_proj_dim: usize,
    time_embedding: TimestepEmbedding,
    add_embedding: Option<AdditionEmbedding>,
    down_blocks: Vec<DownBlock>,
    mid_block: MidBlock,
    up_blocks: Vec<UpBlock>,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
    flip_sin_to_cos: bool,
    freq_shift: f64,
    dtype: DType,
}

/// The largest default latent size a config may ask for (4096 pixels at a VAE scale of 8).
pub const MAX_SAMPLE_SIZE: usize = 512;

fn unsupported(key: &str, value: impl std::fmt::Debug, supported: &str) -> candle_core::Error {
    candle_core::Error::Msg(format!(
        "unsupported UNet config value {key} = {value:?} (supported: {supported})"
    ))
}

impl UNetConfig {
    fn check_supported(&self) -> Result<()> {
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
        // 4: latents; 9: latents + mask + masked-image latents (inpainting). Others (8,
        // instruct-pix2pix) need conditioning the pipeline does not make.
        if ![4, 9].contains(&self.in_channels) || self.out_channels != 4 {
            return Err(unsupported(
                "in_channels/out_channels",
                format!("{}/{}", self.in_channels, self.out_channels),
                "4 or 9 in (text-to-image or inpainting), 4 out",
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
        if self.down_block_types.len() != self.block_out_channels.len()
            || self.up_block_types.len() != self.block_out_channels.len()
        {
            candle_core::bail!(
                "UNet config lists {} down blocks and {} up blocks for {} block_out_channels",
                self.down_block_types.len(),
                self.up_block_types.len(),
                self.block_out_channels.len()
            );
        }
        Ok(())
    }
}

fn has_cross_attention(block_type: &str, position: &str) -> Result<bool> {
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

impl UNet2DConditionModel {
    /// The input channels: 4 (latents) or 9 (inpainting: latents, mask, masked image).
    pub fn in_channels(&self) -> usize {
        self.in_channels
    }

    pub fn new(cfg: &UNetConfig, vb: VarBuilder) -> Result<Self> {
        cfg.check_supported()?;
        let blocks = cfg.block_out_channels.len();
        let per_block = |values: &PerBlock<usize>, key: &str| {
            values.expand(blocks, key).map_err(candle_core::Error::Msg)
        };
        let layers_per_block = per_block(&cfg.layers_per_block, "layers_per_block")?;
        let cross_attention_dim = per_block(&cfg.cross_attention_dim, "cross_attention_dim")?;
        let transformer_layers = per_block(
            &cfg.transformer_layers_per_block,
            "transformer_layers_per_block",
        )?;
        // diffusers' long-standing naming quirk: `attention_head_dim` holds the number of heads
        // unless `num_attention_heads` is given.
        let heads = per_block(
            cfg.num_attention_heads
                .as_ref()
                .unwrap_or(&cfg.attention_head_dim),
            "num_attention_heads",
        )?;
        let channels = &cfg.block_out_channels;
        let groups = cfg.norm_num_groups;
        let eps = cfg.norm_eps;
        let time_proj_dim = channels[0];
        let time_embed_dim = channels[0] * 4;

        let conv_in = conv3x3(cfg.in_channels, channels[0], vb.pp("conv_in"))?;
        let time_embedding =
            TimestepEmbedding::new(time_proj_dim, time_embed_dim, vb.pp("time_embedding"))?;
        let add_embedding = match cfg.addition_embed_type.as_deref() {
            Some("text_time") => {
                let (Some(time_dim), Some(input_dim)) = (
                    cfg.addition_time_embed_dim,
                    cfg.projection_class_embeddings_input_dim,
                ) else {
                    candle_core::bail!(
                        "addition_embed_type text_time needs addition_time_embed_dim and projection_class_embeddings_input_dim"
                    );
                };
                Some(AdditionEmbedding {
                    time_proj_dim: time_dim,
                    embedding: TimestepEmbedding::new(
                        input_dim,
                        time_embed_dim,
                        vb.pp("add_embedding"),
                    )?,
                })
            }
            _ => None,
        };
        let resnet = |in_channels: usize, out_channels: usize, scale: f64, vb: VarBuilder| {
            ResnetBlock2D::new(
                &ResnetConfig {
                    in_channels,
                    out_channels,
                    temb_channels: Some(time_embed_dim),
                    groups,
                    eps,
                    output_scale_factor: scale,
                },
                vb,
            )
        };
        let transformer = |channels: usize, block: usize, layers: usize, vb: VarBuilder| {
            Transformer2D::new(
                &Transformer2DConfig {
                    channels,
                    heads: heads[block],
                    layers,
                    context_dim: cross_attention_dim[block],
                    groups,
                    use_linear_projection: cfg.use_linear_projection,
                },
                vb,
            )
        };

        let mut down_blocks = Vec::with_capacity(blocks);
        let mut out_channels = channels[0];
        for (i, block_type) in cfg.down_block_types.iter().enumerate() {
            let cross = has_cross_attention(block_type, "down")?;
            let in_channels = out_channels;
            out_channels = channels[i];
            let vb_block = vb.pp(format!("down_blocks.{i}"));
            let layers = (0..layers_per_block[i])
                .map(|j| {
                    let resnet_in = if j == 0 { in_channels } else { out_channels };
                    Ok(Layer {
                        resnet: resnet(
                            resnet_in,
                            out_channels,
                            1.0,
                            vb_block.pp(format!("resnets.{j}")),
                        )?,
                        attention: if cross {
                            Some(transformer(
                                out_channels,
                                i,
                                transformer_layers[i],
                                vb_block.pp(format!("attentions.{j}")),
                            )?)
                        } else {
                            None
                        },
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let downsampler = if i + 1 < blocks {
                Some(Downsample2D::new(
                    out_channels,
                    cfg.downsample_padding,
                    vb_block.pp("downsamplers.0"),
                )?)
            } else {
                None
            };
            down_blocks.push(DownBlock {
                layers,
                downsampler,
            });
        }

        let last = blocks - 1;
        let mid_channels = channels[last];
        let vb_mid = vb.pp("mid_block");
        let mid_block = MidBlock {
            first: resnet(
                mid_channels,
                mid_channels,
                cfg.mid_block_scale_factor,
                vb_mid.pp("resnets.0"),
            )?,
            rest: vec![(
                transformer(
                    mid_channels,
                    last,
                    transformer_layers[last],
                    vb_mid.pp("attentions.0"),
                )?,
                resnet(
                    mid_channels,
                    mid_channels,
                    cfg.mid_block_scale_factor,
                    vb_mid.pp("resnets.1"),
                )?,
            )],
        };

        let mut up_blocks = Vec::with_capacity(blocks);
        let mut out_channels = channels[last];
        for (i, block_type) in cfg.up_block_types.iter().enumerate() {
            let cross = has_cross_attention(block_type, "up")?;
            let block = last - i;
            let prev_out_channels = out_channels;
            out_channels = channels[block];
            let in_channels = channels[block.saturating_sub(1)];
            let num_layers = layers_per_block[block] + 1;
            let vb_block = vb.pp(format!("up_blocks.{i}"));
            let layers = (0..num_layers)
                .map(|j| {
                    let skip_channels = if j == num_layers - 1 {
                        in_channels
                    } else {
                        out_channels
                    };
                    let resnet_in = if j == 0 {
                        prev_out_channels
                    } else {
                        out_channels
                    };
                    Ok(Layer {
                        resnet: resnet(
                            resnet_in + skip_channels,
                            out_channels,
                            1.0,
                            vb_block.pp(format!("resnets.{j}")),
                        )?,
                        attention: if cross {
                            Some(transformer(
                                out_channels,
                                block,
                                transformer_layers[block],
                                vb_block.pp(format!("attentions.{j}")),
                            )?)
                        } else {
                            None
                        },
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let upsampler = if i < last {
                Some(Upsample2D::new(out_channels, vb_block.pp("upsamplers.0"))?)
            } else {
                None
            };
            up_blocks.push(UpBlock { layers, upsampler });
        }

        let conv_out_config = Conv2dConfig {
            padding: 1,
            ..Default::default()
        };
        Ok(Self {
            in_channels: cfg.in_channels,
            conv_in,
            time_proj_dim,
            time_embedding,
            add_embedding,
            down_blocks,
            mid_block,
            up_blocks,
            conv_norm_out: group_norm(groups, channels[0], eps, vb.pp("conv_norm_out"))?,
            conv_out: conv2d(
                channels[0],
                cfg.out_channels,
                3,
                conv_out_config,
                vb.pp("conv_out"),
            )?,
            flip_sin_to_cos: cfg.flip_sin_to_cos,
            freq_shift: cfg.freq_shift,
            dtype: vb.dtype(),
        })
    }

    pub fn needs_added_conditions(&self) -> bool {
        self.add_embedding.is_some()
    }

    /// Predicts noise (or v / x0, per the scheduler's prediction type) for a batch of latents.
    pub fn forward(
        &self,
        sample: &Tensor,
        timestep: f64,
        encoder_hidden_states: &Tensor,
        added: Option<&AddedConditions>,
    ) -> Result<Tensor> {
        // 1. Time embedding (plus, for SDXL, the pooled text and size/crop ids).
        let batch = sample.dim(0)?;
        let device = sample.device();
        let timesteps = vec![timestep as f32; batch];
        let t_features = timestep_features(
            &timesteps,
            self.time_proj_dim,
            self.flip_sin_to_cos,
            self.freq_shift,
            device,
        )?
        .to_dtype(self.dtype)?;
        let mut emb = self.time_embedding.forward(&t_features)?;
        if let Some(add) = &self.add_embedding {
            let Some(added) = added else {
                candle_core::bail!("this UNet (SDXL) needs pooled text embeddings and time ids");
            };
            let ids: Vec<f32> = added
                .time_ids
                .to_dtype(DType::F32)?
                .flatten_all()?
                .to_vec1()?;
            let time_features = timestep_features(
                &ids,
                add.time_proj_dim,
                self.flip_sin_to_cos,
                self.freq_shift,
                device,
            )?
            .reshape((batch, ()))?
            .to_dtype(self.dtype)?;
            let add_input = Tensor::cat(
                &[&added.text_embeds.to_dtype(self.dtype)?, &time_features],
                1,
            )?;
            emb = (emb + add.embedding.forward(&add_input)?)?;
        }
        let temb = emb.silu()?;
        let context = encoder_hidden_states;

        // 2. Down path: every block's output is kept for the skip connections.
        let mut xs = self.conv_in.forward(sample)?;
        let mut skips = vec![xs.clone()];
        for block in &self.down_blocks {
            for layer in &block.layers {
                xs = layer.forward(&xs, &temb, context)?;
                skips.push(xs.clone());
            }
            if let Some(down) = &block.downsampler {
                xs = down.forward(&xs)?;
                skips.push(xs.clone());
            }
        }

        // 3. Middle block: resnet, then (attention, resnet) pairs.
        xs = self.mid_block.first.forward(&xs, Some(&temb))?;
        for (attention, resnet) in &self.mid_block.rest {
            xs = attention.forward(&xs, context)?;
            xs = resnet.forward(&xs, Some(&temb))?;
        }

        // 4. Up path: each layer takes the latest skip back from the down path.
        for block in &self.up_blocks {
            for layer in &block.layers {
                let Some(skip) = skips.pop() else {
                    candle_core::bail!("UNet skip connections exhausted");
                };
                xs = Tensor::cat(&[&xs, &skip], 1)?;
                xs = layer.forward(&xs, &temb, context)?;
            }
            if let Some(up) = &block.upsampler {
                let size = match skips.last() {
                    Some(next) => {
                        let (_, _, h, w) = next.dims4()?;
                        Some((h, w))
                    }
                    None => None,
                };
                xs = up.forward(&xs, size)?;
            }
        }

        // 5. Output: GroupNorm + SiLU, then back to the latent channels.
        let xs = self.conv_norm_out.forward_silu(&xs)?;
        self.conv_out.forward(&xs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestep_features_flip_puts_cosine_first() {
        let features = timestep_features(&[0.0], 4, true, 0.0, &Device::Cpu).unwrap();
        let values: Vec<f32> = features.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(values, vec![1.0, 1.0, 0.0, 0.0]);
    }

    #[test]
    fn a_config_without_blocks_is_an_error_not_a_panic() {
        let cfg: UNetConfig = serde_json::from_str(
            r#"{"down_block_types": [], "up_block_types": [], "block_out_channels": [], "cross_attention_dim": 8}"#,
        )
        .unwrap();
        let vb = VarBuilder::zeros(DType::F32, &Device::Cpu);
        let err = UNet2DConditionModel::new(&cfg, vb)
            .err()
            .expect("must fail");
        assert!(err.to_string().contains("block_out_channels"), "{err}");
    }

    #[test]
    fn per_block_values_expand_or_complain() {
        assert_eq!(PerBlock::One(3usize).expand(2, "k").unwrap(), vec![3, 3]);
        assert!(PerBlock::Each(vec![1usize]).expand(2, "k").is_err());
    }
}
