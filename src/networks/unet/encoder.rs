//! The half of a UNet that a ControlNet copies: timestep (and SDXL size/text) embedding, the
//! input convolution, the down blocks and the middle block — built once here for both.

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{linear, Linear, VarBuilder};

use super::config::{has_cross_attention, PerBlock, UNetConfig};
use super::transformer::{Transformer2D, Transformer2DConfig};
use crate::kernels::conv::Conv2d;
use crate::networks::layers::{conv3x3, Downsample2D, ResnetBlock2D, ResnetConfig};

/// What the UNet needs besides the latents and the timestep: SDXL's pooled text and size ids.
pub struct AddedConditions {
    /// `(batch, pooled_dim)`
    pub text_embeds: Tensor,
    /// `(batch, 6)`: original size, crop top-left, target size.
    pub time_ids: Tensor,
}

/// Sinusoidal timestep features (`get_timestep_embedding`), computed in float32 like diffusers.
pub(crate) fn timestep_features(
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

pub(crate) struct TimestepEmbedding {
    linear_1: Linear,
    linear_2: Linear,
}

impl TimestepEmbedding {
    pub(crate) fn new(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            linear_1: linear(in_dim, out_dim, vb.pp("linear_1"))?,
            linear_2: linear(out_dim, out_dim, vb.pp("linear_2"))?,
        })
    }

    pub(crate) fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.linear_2.forward(&self.linear_1.forward(xs)?.silu()?)
    }
}

/// One resnet, optionally followed by a transformer.
pub(crate) struct Layer {
    pub(crate) resnet: ResnetBlock2D,
    pub(crate) attention: Option<Transformer2D>,
}

impl Layer {
    pub(crate) fn forward(&self, xs: &Tensor, temb: &Tensor, context: &Tensor) -> Result<Tensor> {
        let xs = self.resnet.forward(xs, Some(temb))?;
        match &self.attention {
            Some(attention) => attention.forward(&xs, context),
            None => Ok(xs),
        }
    }
}

pub(crate) struct DownBlock {
    pub(crate) layers: Vec<Layer>,
    pub(crate) downsampler: Option<Downsample2D>,
}

pub(crate) struct MidBlock {
    pub(crate) first: ResnetBlock2D,
    pub(crate) rest: Vec<(Transformer2D, ResnetBlock2D)>,
}

pub(crate) struct AdditionEmbedding {
    pub(crate) time_proj_dim: usize,
    pub(crate) embedding: TimestepEmbedding,
}
/// Builds resnets and transformers with one config's per-block settings.
pub(crate) struct BlockBuilder<'a> {
    cfg: &'a UNetConfig,
    pub layers_per_block: Vec<usize>,
    cross_attention_dim: Vec<usize>,
    pub transformer_layers: Vec<usize>,
    heads: Vec<usize>,
    pub time_embed_dim: usize,
}

impl<'a> BlockBuilder<'a> {
    pub fn new(cfg: &'a UNetConfig) -> Result<Self> {
        let blocks = cfg.block_out_channels.len();
        let per_block = |values: &PerBlock<usize>, key: &str| {
            values.expand(blocks, key).map_err(candle_core::Error::Msg)
        };
        Ok(Self {
            cfg,
            layers_per_block: per_block(&cfg.layers_per_block, "layers_per_block")?,
            cross_attention_dim: per_block(&cfg.cross_attention_dim, "cross_attention_dim")?,
            transformer_layers: per_block(
                &cfg.transformer_layers_per_block,
                "transformer_layers_per_block",
            )?,
            // diffusers' long-standing naming quirk: `attention_head_dim` holds the number of
            // heads unless `num_attention_heads` is given.
            heads: per_block(
                cfg.num_attention_heads
                    .as_ref()
                    .unwrap_or(&cfg.attention_head_dim),
                "num_attention_heads",
            )?,
            time_embed_dim: cfg.block_out_channels[0] * 4,
        })
    }

    /// Layer `j` of block `block`: a resnet from `in_channels` to `out_channels`, then a
    /// transformer when the block has cross-attention.
    pub fn layer(
        &self,
        in_channels: usize,
        out_channels: usize,
        block: usize,
        cross: bool,
        j: usize,
        vb_block: &VarBuilder,
    ) -> Result<Layer> {
        Ok(Layer {
            resnet: self.resnet(
                in_channels,
                out_channels,
                1.0,
                vb_block.pp(format!("resnets.{j}")),
            )?,
            attention: if cross {
                Some(self.transformer(
                    out_channels,
                    block,
                    self.transformer_layers[block],
                    vb_block.pp(format!("attentions.{j}")),
                )?)
            } else {
                None
            },
        })
    }

    /// The first block's `cross_attention_dim`: the text embeddings' width.
    pub fn context_dim(&self) -> usize {
        self.cross_attention_dim[0]
    }

    pub fn resnet(
        &self,
        in_channels: usize,
        out_channels: usize,
        scale: f64,
        vb: VarBuilder,
    ) -> Result<ResnetBlock2D> {
        ResnetBlock2D::new(
            &ResnetConfig {
                in_channels,
                out_channels,
                temb_channels: Some(self.time_embed_dim),
                groups: self.cfg.norm_num_groups,
                eps: self.cfg.norm_eps,
                output_scale_factor: scale,
            },
            vb,
        )
    }

    pub fn transformer(
        &self,
        channels: usize,
        block: usize,
        layers: usize,
        vb: VarBuilder,
    ) -> Result<Transformer2D> {
        Transformer2D::new(
            &Transformer2DConfig {
                channels,
                heads: self.heads[block],
                layers,
                context_dim: self.cross_attention_dim[block],
                groups: self.cfg.norm_num_groups,
                use_linear_projection: self.cfg.use_linear_projection,
            },
            vb,
        )
    }
}

/// The shared down half: everything up to and including the middle block.
pub(crate) struct Encoder {
    pub conv_in: Conv2d,
    time_proj_dim: usize,
    time_embedding: TimestepEmbedding,
    add_embedding: Option<AdditionEmbedding>,
    pub down_blocks: Vec<DownBlock>,
    pub mid_block: MidBlock,
    flip_sin_to_cos: bool,
    freq_shift: f64,
    pub dtype: DType,
}

impl Encoder {
    /// The weights under `vb` (`conv_in`, `time_embedding`, `add_embedding`, `down_blocks`,
    /// `mid_block`, as diffusers names them in UNets and ControlNets alike).
    pub fn new(cfg: &UNetConfig, builder: &BlockBuilder, vb: &VarBuilder) -> Result<Self> {
        let channels = &cfg.block_out_channels;
        let blocks = channels.len();
        let time_proj_dim = channels[0];
        let time_embed_dim = builder.time_embed_dim;
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

        let mut down_blocks = Vec::with_capacity(blocks);
        let mut out_channels = channels[0];
        for (i, block_type) in cfg.down_block_types.iter().enumerate() {
            let cross = has_cross_attention(block_type, "down")?;
            let in_channels = out_channels;
            out_channels = channels[i];
            let vb_block = vb.pp(format!("down_blocks.{i}"));
            let layers = (0..builder.layers_per_block[i])
                .map(|j| {
                    let resnet_in = if j == 0 { in_channels } else { out_channels };
                    builder.layer(resnet_in, out_channels, i, cross, j, &vb_block)
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
            first: builder.resnet(
                mid_channels,
                mid_channels,
                cfg.mid_block_scale_factor,
                vb_mid.pp("resnets.0"),
            )?,
            rest: vec![(
                builder.transformer(
                    mid_channels,
                    last,
                    builder.transformer_layers[last],
                    vb_mid.pp("attentions.0"),
                )?,
                builder.resnet(
                    mid_channels,
                    mid_channels,
                    cfg.mid_block_scale_factor,
                    vb_mid.pp("resnets.1"),
                )?,
            )],
        };
        Ok(Self {
            conv_in,
            time_proj_dim,
            time_embedding,
            add_embedding,
            down_blocks,
            mid_block,
            flip_sin_to_cos: cfg.flip_sin_to_cos,
            freq_shift: cfg.freq_shift,
            dtype: vb.dtype(),
        })
    }

    pub fn needs_added_conditions(&self) -> bool {
        self.add_embedding.is_some()
    }

    /// The time embedding after its SiLU (plus, for SDXL, the pooled text and size/crop ids).
    pub fn embed(
        &self,
        timestep: f64,
        batch: usize,
        added: Option<&AddedConditions>,
        device: &Device,
    ) -> Result<Tensor> {
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
                candle_core::bail!("this network (SDXL) needs pooled text embeddings and time ids");
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
        emb.silu()
    }

    /// The down path from the input convolution's output `xs`: the final activations and
    /// every block's output (the skip connections), first to last.
    ///
    /// T2I-Adapter `features` are taken one per block, as diffusers adds them: in a block with
    /// cross-attention onto the last layer's output (before the downsampler); in one without,
    /// onto the block's output, downsampled or not — in place in PyTorch, so the skip
    /// connection it was saved as gets it too.
    pub fn down(
        &self,
        mut xs: Tensor,
        temb: &Tensor,
        context: &Tensor,
        features: &mut std::slice::Iter<'_, Tensor>,
    ) -> Result<(Tensor, Vec<Tensor>)> {
        let mut skips = vec![xs.clone()];
        for block in &self.down_blocks {
            let cross = block.layers.iter().any(|layer| layer.attention.is_some());
            let last = block.layers.len().saturating_sub(1);
            for (j, layer) in block.layers.iter().enumerate() {
                xs = layer.forward(&xs, temb, context)?;
                if cross && j == last {
                    if let Some(feature) = features.next() {
                        xs = (xs + feature)?;
                    }
                }
                skips.push(xs.clone());
            }
            if let Some(down) = &block.downsampler {
                xs = down.forward(&xs)?;
                skips.push(xs.clone());
            }
            if !cross {
                if let Some(feature) = features.next() {
                    xs = (xs + feature)?;
                    if let Some(saved) = skips.last_mut() {
                        *saved = xs.clone();
                    }
                }
            }
        }
        Ok((xs, skips))
    }

    /// The middle block: resnet, then (attention, resnet) pairs.
    pub fn mid(&self, xs: &Tensor, temb: &Tensor, context: &Tensor) -> Result<Tensor> {
        let mut xs = self.mid_block.first.forward(xs, Some(temb))?;
        for (attention, resnet) in &self.mid_block.rest {
            xs = attention.forward(&xs, context)?;
            xs = resnet.forward(&xs, Some(temb))?;
        }
        Ok(xs)
    }
}
