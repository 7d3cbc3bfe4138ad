//! `AutoencoderKL`: latents ↔ images, built from a diffusers `vae/config.json`.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::kernels::conv::Conv2d;
use crate::kernels::group_norm::{group_norm, GroupNorm};
use crate::kernels::linear::{linear, Linear};
use serde::Deserialize;

use crate::kernels::attention::scaled_dot_product;
use crate::networks::layers::{
    conv1x1, conv3x3, Downsample2D, ResnetBlock2D, ResnetConfig, Upsample2D,
};

/// The fields of a diffusers `AutoencoderKL` config that shape the network.
#[derive(Debug, Clone, Deserialize)]
pub struct VaeConfig {
    #[serde(default = "default_three")]
    pub in_channels: usize,
    #[serde(default = "default_three")]
    pub out_channels: usize,
    #[serde(default)]
    pub down_block_types: Vec<String>,
    #[serde(default)]
    pub up_block_types: Vec<String>,
    pub block_out_channels: Vec<usize>,
    #[serde(default = "default_one")]
    pub layers_per_block: usize,
    #[serde(default = "default_four")]
    pub latent_channels: usize,
    #[serde(default = "default_groups")]
    pub norm_num_groups: usize,
    #[serde(default = "default_scaling_factor")]
    pub scaling_factor: f64,
    #[serde(default)]
    pub shift_factor: Option<f64>,
    #[serde(default = "default_true")]
    pub use_quant_conv: bool,
    #[serde(default = "default_true")]
    pub use_post_quant_conv: bool,
    #[serde(default = "default_true")]
    pub mid_block_add_attention: bool,
    #[serde(default)]
    pub sample_size: Option<usize>,
}

fn default_three() -> usize {
    3
}
fn default_one() -> usize {
    1
}
fn default_four() -> usize {
    4
}
fn default_groups() -> usize {
    32
}
fn default_scaling_factor() -> f64 {
    0.18215
}
fn default_true() -> bool {
    true
}

const VAE_EPS: f64 = 1e-6;

/// diffusers' `tile_overlap_factor`.
const TILE_OVERLAP: f64 = 0.25;

/// diffusers' `blend_v` (`axis` 2) / `blend_h` (`axis` 3): the first `extent` rows (columns)
/// of `next` fade in from the last `extent` of `previous`: `prev·(1 − k/extent) + next·k/extent`.
fn blend_edge(previous: &Tensor, next: &Tensor, extent: usize, axis: usize) -> Result<Tensor> {
    let extent = extent.min(previous.dim(axis)?).min(next.dim(axis)?);
    if extent == 0 {
        return Ok(next.clone());
    }
    let mut shape = [1usize; 4];
    shape[axis] = extent;
    let ramp: Vec<f32> = (0..extent)
        .map(|k| (k as f64 / extent as f64) as f32)
        .collect();
    let fade: Vec<f32> = (0..extent)
        .map(|k| (1.0 - k as f64 / extent as f64) as f32)
        .collect();
    let device = next.device();
    let ramp = Tensor::from_vec(ramp, &shape, device)?.to_dtype(next.dtype())?;
    let fade = Tensor::from_vec(fade, &shape, device)?.to_dtype(next.dtype())?;
    let tail = previous.narrow(axis, previous.dim(axis)? - extent, extent)?;
    let head = next.narrow(axis, 0, extent)?;
    let mixed = (tail.broadcast_mul(&fade)? + head.broadcast_mul(&ramp)?)?;
    let rest = next.dim(axis)? - extent;
    if rest == 0 {
        return Ok(mixed);
    }
    Tensor::cat(&[&mixed, &next.narrow(axis, extent, rest)?], axis)
}

impl VaeConfig {
    /// How many pixels one latent covers along each axis (8 for every Stable Diffusion VAE).
    pub fn scale_factor(&self) -> usize {
        1 << (self.block_out_channels.len().clamp(1, 6) - 1)
    }

    /// Numbers that size loops and tensors, bounded before the network is built.
    fn check_bounds(&self) -> Result<()> {
        let bad = |key: &str, value: &dyn std::fmt::Debug, supported: &str| {
            candle_core::Error::Msg(format!(
                "unsupported VAE config value {key} = {value:?} (supported: {supported})"
            ))
        };
        if !(1..=6).contains(&self.block_out_channels.len()) {
            return Err(bad(
                "block_out_channels",
                &self.block_out_channels,
                "1 to 6 blocks",
            ));
        }
        if !(1..=16).contains(&self.layers_per_block) {
            return Err(bad("layers_per_block", &self.layers_per_block, "1 to 16"));
        }
        if !(1..=64).contains(&self.latent_channels) {
            return Err(bad("latent_channels", &self.latent_channels, "1 to 64"));
        }
        if self.norm_num_groups == 0 {
            return Err(bad("norm_num_groups", &self.norm_num_groups, "at least 1"));
        }
        Ok(())
    }
}

/// Single-head self-attention over all pixels, with its own group norm and residual.
struct SpatialAttention {
    group_norm: GroupNorm,
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
}

impl SpatialAttention {
    fn new(channels: usize, groups: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            group_norm: group_norm(groups, channels, VAE_EPS, vb.pp("group_norm"))?,
            to_q: linear(channels, channels, vb.pp("to_q"))?,
            to_k: linear(channels, channels, vb.pp("to_k"))?,
            to_v: linear(channels, channels, vb.pp("to_v"))?,
            to_out: linear(channels, channels, vb.pp("to_out.0"))?,
        })
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let (batch, channels, height, width) = xs.dims4()?;
        let tokens = self
            .group_norm
            .forward(xs)?
            .reshape((batch, channels, height * width))?
            .transpose(1, 2)?
            .contiguous()?;
        let heads = |t: Tensor| t.unsqueeze(1);
        let q = heads(self.to_q.forward(&tokens)?)?;
        let k = heads(self.to_k.forward(&tokens)?)?;
        let v = heads(self.to_v.forward(&tokens)?)?;
        let attended =
            scaled_dot_product(&q, &k, &v, 1.0 / (channels as f64).sqrt())?.squeeze(1)?;
        let out = self
            .to_out
            .forward(&attended)?
            .transpose(1, 2)?
            .reshape((batch, channels, height, width))?;
        out + xs
    }
}

struct MidBlock {
    resnet_in: ResnetBlock2D,
    attention: Option<SpatialAttention>,
    resnet_out: ResnetBlock2D,
}

impl MidBlock {
    fn new(channels: usize, cfg: &VaeConfig, vb: VarBuilder) -> Result<Self> {
        let resnet_cfg = resnet_config(channels, channels, cfg);
        Ok(Self {
            resnet_in: ResnetBlock2D::new(&resnet_cfg, vb.pp("resnets.0"))?,
            attention: if cfg.mid_block_add_attention {
                Some(SpatialAttention::new(
                    channels,
                    cfg.norm_num_groups,
                    vb.pp("attentions.0"),
                )?)
            } else {
                None
            },
            resnet_out: ResnetBlock2D::new(&resnet_cfg, vb.pp("resnets.1"))?,
        })
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let mut xs = self.resnet_in.forward(xs, None)?;
        if let Some(attention) = &self.attention {
            xs = attention.forward(&xs)?;
        }
        self.resnet_out.forward(&xs, None)
    }
}

fn resnet_config(in_channels: usize, out_channels: usize, cfg: &VaeConfig) -> ResnetConfig {
    ResnetConfig {
        in_channels,
        out_channels,
        temb_channels: None,
        groups: cfg.norm_num_groups,
        eps: VAE_EPS,
        output_scale_factor: 1.0,
    }
}

struct Encoder {
    conv_in: Conv2d,
    down_blocks: Vec<(Vec<ResnetBlock2D>, Option<Downsample2D>)>,
    mid_block: MidBlock,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
}

impl Encoder {
    fn new(cfg: &VaeConfig, vb: VarBuilder) -> Result<Self> {
        let channels = &cfg.block_out_channels;
        let mut down_blocks = Vec::with_capacity(channels.len());
        let mut out_channels = channels[0];
        for (i, &block_channels) in channels.iter().enumerate() {
            let in_channels = out_channels;
            out_channels = block_channels;
            let vb_block = vb.pp(format!("down_blocks.{i}"));
            let resnets = (0..cfg.layers_per_block)
                .map(|j| {
                    let resnet_in = if j == 0 { in_channels } else { out_channels };
                    ResnetBlock2D::new(
                        &resnet_config(resnet_in, out_channels, cfg),
                        vb_block.pp(format!("resnets.{j}")),
                    )
                })
                .collect::<Result<Vec<_>>>()?;
            let downsampler = if i + 1 < channels.len() {
                Some(Downsample2D::new(
                    out_channels,
                    0,
                    vb_block.pp("downsamplers.0"),
                )?)
            } else {
                None
            };
            down_blocks.push((resnets, downsampler));
        }
        let last = channels[channels.len() - 1];
        Ok(Self {
            conv_in: conv3x3(cfg.in_channels, channels[0], vb.pp("conv_in"))?,
            down_blocks,
            mid_block: MidBlock::new(last, cfg, vb.pp("mid_block"))?,
            conv_norm_out: group_norm(cfg.norm_num_groups, last, VAE_EPS, vb.pp("conv_norm_out"))?,
            conv_out: conv3x3(last, 2 * cfg.latent_channels, vb.pp("conv_out"))?,
        })
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let mut xs = self.conv_in.forward(xs)?;
        for (resnets, downsampler) in &self.down_blocks {
            for resnet in resnets {
                xs = resnet.forward(&xs, None)?;
            }
            if let Some(down) = downsampler {
                xs = down.forward(&xs)?;
            }
        }
        let xs = self.mid_block.forward(&xs)?;
        self.conv_out
            .forward(&self.conv_norm_out.forward_silu(&xs)?)
    }
}

struct Decoder {
    conv_in: Conv2d,
    mid_block: MidBlock,
    up_blocks: Vec<(Vec<ResnetBlock2D>, Option<Upsample2D>)>,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
}

impl Decoder {
    fn new(cfg: &VaeConfig, vb: VarBuilder) -> Result<Self> {
        let reversed: Vec<usize> = cfg.block_out_channels.iter().rev().copied().collect();
        let mut up_blocks = Vec::with_capacity(reversed.len());
        let mut out_channels = reversed[0];
        for (i, &block_channels) in reversed.iter().enumerate() {
            let in_channels = out_channels;
            out_channels = block_channels;
            let vb_block = vb.pp(format!("up_blocks.{i}"));
            let resnets = (0..cfg.layers_per_block + 1)
                .map(|j| {
                    let resnet_in = if j == 0 { in_channels } else { out_channels };
                    ResnetBlock2D::new(
                        &resnet_config(resnet_in, out_channels, cfg),
                        vb_block.pp(format!("resnets.{j}")),
                    )
                })
                .collect::<Result<Vec<_>>>()?;
            let upsampler = if i + 1 < reversed.len() {
                Some(Upsample2D::new(out_channels, vb_block.pp("upsamplers.0"))?)
            } else {
                None
            };
            up_blocks.push((resnets, upsampler));
        }
        let first = cfg.block_out_channels[0];
        Ok(Self {
            conv_in: conv3x3(cfg.latent_channels, reversed[0], vb.pp("conv_in"))?,
            mid_block: MidBlock::new(reversed[0], cfg, vb.pp("mid_block"))?,
            up_blocks,
            conv_norm_out: group_norm(cfg.norm_num_groups, first, VAE_EPS, vb.pp("conv_norm_out"))?,
            conv_out: conv3x3(first, cfg.out_channels, vb.pp("conv_out"))?,
        })
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let xs = self.conv_in.forward(xs)?;
        let mut xs = self.mid_block.forward(&xs)?;
        for (resnets, upsampler) in &self.up_blocks {
            for resnet in resnets {
                xs = resnet.forward(&xs, None)?;
            }
            if let Some(up) = upsampler {
                xs = up.forward(&xs, None)?;
            }
        }
        self.conv_out
            .forward(&self.conv_norm_out.forward_silu(&xs)?)
    }
}

pub struct AutoencoderKL {
    encoder: Encoder,
    quant_conv: Option<Conv2d>,
    decoder: Decoder,
    post_quant_conv: Option<Conv2d>,
    config: VaeConfig,
}

impl AutoencoderKL {
    /// Roughly what an untiled decode holds per output pixel at its peak: a few f32 tensors
    /// of the first block's width at full resolution (128 channels: 2 KiB a pixel; a 512²
    /// decode measured 0.5–0.6 GB above the weights).
    pub fn decode_bytes_per_pixel(&self) -> u64 {
        let channels = self
            .config
            .block_out_channels
            .first()
            .copied()
            .unwrap_or(128) as u64;
        4 * channels * 4
    }

    pub fn new(cfg: &VaeConfig, vb: VarBuilder) -> Result<Self> {
        cfg.check_bounds()?;
        if cfg.block_out_channels.is_empty() {
            candle_core::bail!("VAE config has no block_out_channels");
        }
        for (key, types, expected) in [
            (
                "down_block_types",
                &cfg.down_block_types,
                "DownEncoderBlock2D",
            ),
            ("up_block_types", &cfg.up_block_types, "UpDecoderBlock2D"),
        ] {
            if let Some(other) = types.iter().find(|t| t.as_str() != expected) {
                candle_core::bail!(
                    "unsupported VAE config value {key} entry \"{other}\" (supported: {expected})"
                );
            }
        }
        let latent = cfg.latent_channels;
        Ok(Self {
            encoder: Encoder::new(cfg, vb.pp("encoder"))?,
            quant_conv: if cfg.use_quant_conv {
                Some(conv1x1(2 * latent, 2 * latent, vb.pp("quant_conv"))?)
            } else {
                None
            },
            decoder: Decoder::new(cfg, vb.pp("decoder"))?,
            post_quant_conv: if cfg.use_post_quant_conv {
                Some(conv1x1(latent, latent, vb.pp("post_quant_conv"))?)
            } else {
                None
            },
            config: cfg.clone(),
        })
    }

    pub fn config(&self) -> &VaeConfig {
        &self.config
    }

    /// Decodes *scaled* latents (as the UNet sees them) to an image in [-1, 1].
    pub fn decode(&self, latents: &Tensor) -> Result<Tensor> {
        self.decode_unscaled(&self.unscale(latents)?)
    }

    fn unscale(&self, latents: &Tensor) -> Result<Tensor> {
        let z = (latents / self.config.scaling_factor)?;
        match self.config.shift_factor {
            Some(shift) => z + shift,
            None => Ok(z),
        }
    }

    fn decode_unscaled(&self, z: &Tensor) -> Result<Tensor> {
        match &self.post_quant_conv {
            Some(conv) => self.decoder.forward(&conv.forward(z)?),
            None => self.decoder.forward(z),
        }
    }

    /// Pixels per side of one decoded tile: the VAE's `sample_size` (512 for SD 1.x).
    fn tile_pixels(&self) -> usize {
        self.config.sample_size.unwrap_or(512)
    }

    /// Decodes like [`Self::decode`] in overlapping tiles, as diffusers' `enable_vae_tiling()`
    /// does: tiles of `sample_size` pixels that overlap by a quarter, blended linearly across
    /// the overlap. Peak memory then follows the tile, not the image; the result differs a
    /// little from an untiled decode (the decoder's group norms see one tile at a time), so it
    /// is used only when asked for. Latents that fit in one tile decode untiled.
    pub fn decode_tiled(&self, latents: &Tensor) -> Result<Tensor> {
        let z = self.unscale(latents)?;
        let (_, _, height, width) = z.dims4()?;
        let tile_pixels = self.tile_pixels();
        let tile_latents = tile_pixels / self.config.scale_factor();
        if tile_latents == 0 || (height <= tile_latents && width <= tile_latents) {
            return self.decode_unscaled(&z);
        }
        // diffusers' integer arithmetic: int(64 * 0.75), int(512 * 0.25).
        let stride = (tile_latents as f64 * (1.0 - TILE_OVERLAP)) as usize;
        let blend = (tile_pixels as f64 * TILE_OVERLAP) as usize;
        let keep = tile_pixels - blend;
        let starts = |size: usize| (0..size).step_by(stride.max(1)).collect::<Vec<_>>();
        let (row_starts, column_starts) = (starts(height), starts(width));
        // Each tile is blended with its upper and left neighbours *after* they were blended
        // with theirs, as diffusers' in-place loop does.
        let mut blended: Vec<Vec<Tensor>> = Vec::with_capacity(row_starts.len());
        let mut rows = Vec::with_capacity(row_starts.len());
        for (i, &top) in row_starts.iter().enumerate() {
            let mut row_tiles: Vec<Tensor> = Vec::with_capacity(column_starts.len());
            let mut cropped = Vec::with_capacity(column_starts.len());
            for (j, &left) in column_starts.iter().enumerate() {
                let tile = z.narrow(2, top, tile_latents.min(height - top))?.narrow(
                    3,
                    left,
                    tile_latents.min(width - left),
                )?;
                let mut tile = self.decode_unscaled(&tile)?;
                if i > 0 {
                    tile = blend_edge(&blended[i - 1][j], &tile, blend, 2)?;
                }
                if j > 0 {
                    tile = blend_edge(&row_tiles[j - 1], &tile, blend, 3)?;
                }
                let (_, _, tile_height, tile_width) = tile.dims4()?;
                cropped.push(tile.narrow(2, 0, keep.min(tile_height))?.narrow(
                    3,
                    0,
                    keep.min(tile_width),
                )?);
                row_tiles.push(tile);
            }
            rows.push(Tensor::cat(&cropped, 3)?);
            blended.push(row_tiles);
            // Only the previous row is needed for blending.
            if i >= 1 {
                blended[i - 1].clear();
            }
        }
        Tensor::cat(&rows, 2)
    }

    /// Encodes an image in [-1, 1] and samples the posterior with the standard normal noise
    /// `draw_noise` returns for a shape, giving scaled latents — diffusers'
    /// `retrieve_latents(vae.encode(x), generator) * scaling_factor`.
    pub fn encode_sample(
        &self,
        image: &Tensor,
        draw_noise: impl FnOnce(&[usize]) -> Result<Tensor>,
    ) -> Result<Tensor> {
        let mut moments = self.encoder.forward(image)?;
        if let Some(conv) = &self.quant_conv {
            moments = conv.forward(&moments)?;
        }
        let latent = self.config.latent_channels;
        let mean = moments.narrow(1, 0, latent)?;
        let logvar = moments.narrow(1, latent, latent)?.clamp(-30f32, 20f32)?;
        let std = (logvar * 0.5)?.exp()?;
        let noise = draw_noise(mean.dims())?.to_dtype(mean.dtype())?;
        let sample = (mean + (std * noise)?)?;
        let sample = match self.config.shift_factor {
            Some(shift) => (sample - shift)?,
            None => sample,
        };
        sample * self.config.scaling_factor
    }
}
