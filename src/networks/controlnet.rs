//! `ControlNetModel`: a trainable copy of a UNet's down half (the very layers of
//! [`crate::networks::unet::encoder`]) that reads a control image (edges, depth, a pose)
//! through a small convolutional embedding and returns, through zero-initialised 1×1
//! convolutions, one residual per skip connection of the UNet and one for its middle block
//! (Zhang et al., "Adding Conditional Control to Text-to-Image Diffusion Models", 2023).

use candle_core::{Module, Result, Tensor};
use candle_nn::{Conv2dConfig, VarBuilder};
use serde::Deserialize;

use crate::kernels::conv::{conv2d, Conv2d};
use crate::networks::layers::{conv1x1, conv3x3};
use crate::networks::unet::encoder::{AddedConditions, BlockBuilder, Encoder};
use crate::networks::unet::{ControlResiduals, UNetConfig};

/// A diffusers `controlnet/config.json`: a UNet config without up blocks, plus the control
/// image's embedding.
#[derive(Debug, Clone, Deserialize)]
pub struct ControlNetConfig {
    #[serde(flatten)]
    pub unet: UNetConfig,
    #[serde(default = "default_conditioning_channels")]
    pub conditioning_channels: usize,
    #[serde(default = "default_embedding_channels")]
    pub conditioning_embedding_out_channels: Vec<usize>,
    #[serde(default = "default_channel_order")]
    pub controlnet_conditioning_channel_order: String,
    #[serde(default)]
    pub global_pool_conditions: bool,
}

fn default_conditioning_channels() -> usize {
    3
}
fn default_embedding_channels() -> Vec<usize> {
    vec![16, 32, 96, 256]
}
fn default_channel_order() -> String {
    "rgb".into()
}

impl ControlNetConfig {
    fn check_supported(&self) -> Result<()> {
        self.unet.check_down_half()?;
        let unsupported = |key: &str, value: String, supported: &str| {
            candle_core::Error::Msg(format!(
                "unsupported ControlNet config value {key} = {value} (supported: {supported})"
            ))
        };
        if self.unet.in_channels != 4 {
            return Err(unsupported(
                "in_channels",
                self.unet.in_channels.to_string(),
                "4",
            ));
        }
        if !(1..=16).contains(&self.conditioning_channels) {
            return Err(unsupported(
                "conditioning_channels",
                self.conditioning_channels.to_string(),
                "1 to 16",
            ));
        }
        let embedding = &self.conditioning_embedding_out_channels;
        if embedding.is_empty()
            || embedding.len() > 8
            || embedding.iter().any(|c| !(1..=4096).contains(c))
        {
            return Err(unsupported(
                "conditioning_embedding_out_channels",
                format!("{embedding:?}"),
                "1 to 8 values of 1 to 4096",
            ));
        }
        if !["rgb", "bgr"].contains(&self.controlnet_conditioning_channel_order.as_str()) {
            return Err(unsupported(
                "controlnet_conditioning_channel_order",
                self.controlnet_conditioning_channel_order.clone(),
                "rgb, bgr",
            ));
        }
        Ok(())
    }

    /// Pixels of the control image per latent: each embedding stage after the first halves
    /// the size.
    pub fn downscale(&self) -> usize {
        1 << (self.conditioning_embedding_out_channels.len() - 1)
    }
}

/// `ControlNetConditioningEmbedding`: convolutions with SiLU, every second one of stride 2,
/// down to the latent size, then a (zero-initialised) convolution to the UNet's width.
struct ConditioningEmbedding {
    conv_in: Conv2d,
    blocks: Vec<Conv2d>,
    conv_out: Conv2d,
}

impl ConditioningEmbedding {
    fn new(cfg: &ControlNetConfig, vb: VarBuilder) -> Result<Self> {
        let channels = &cfg.conditioning_embedding_out_channels;
        let strided = Conv2dConfig {
            padding: 1,
            stride: 2,
            ..Default::default()
        };
        let mut blocks = Vec::with_capacity(2 * channels.len());
        for i in 0..channels.len() - 1 {
            blocks.push(conv3x3(
                channels[i],
                channels[i],
                vb.pp(format!("blocks.{}", 2 * i)),
            )?);
            blocks.push(conv2d(
                channels[i],
                channels[i + 1],
                3,
                strided,
                vb.pp(format!("blocks.{}", 2 * i + 1)),
            )?);
        }
        Ok(Self {
            conv_in: conv3x3(cfg.conditioning_channels, channels[0], vb.pp("conv_in"))?,
            blocks,
            conv_out: conv3x3(
                channels[channels.len() - 1],
                cfg.unet.block_out_channels[0],
                vb.pp("conv_out"),
            )?,
        })
    }

    fn forward(&self, image: &Tensor) -> Result<Tensor> {
        let mut xs = self.conv_in.forward(image)?.silu()?;
        for block in &self.blocks {
            xs = block.forward(&xs)?.silu()?;
        }
        self.conv_out.forward(&xs)
    }
}

pub struct ControlNetModel {
    encoder: Encoder,
    conditioning: ConditioningEmbedding,
    /// `controlnet_down_blocks.{i}`: one per skip connection.
    down_zero_convs: Vec<Conv2d>,
    /// `controlnet_mid_block`.
    mid_zero_conv: Conv2d,
    bgr: bool,
    global_pool: bool,
    /// The UNet's `cross_attention_dim` (first block's), to tell the family it belongs to.
    context_dim: usize,
    downscale: usize,
}

impl std::fmt::Debug for ControlNetModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlNetModel")
            .field("context_dim", &self.context_dim)
            .field("sdxl", &self.needs_added_conditions())
            .finish_non_exhaustive()
    }
}

/// How strongly each unit's residuals count (A1111's "Control Mode").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum ControlMode {
    /// Every residual at the unit's weight, on both halves of guidance (diffusers' default).
    #[default]
    Balanced,
    /// A1111's "My prompt is more important": the residuals fade toward the input side
    /// (weight × 0.825^(12 − i) for the 13 residuals of SD), on both halves.
    PromptMoreImportant,
    /// "ControlNet is more important": diffusers' `guess_mode` — residuals only on the
    /// conditional half of guidance, scaled from 0.1 (first) to 1 (middle block) in log space.
    ControlNetMoreImportant,
}

impl ControlMode {
    pub const ALL: [ControlMode; 3] = [
        Self::Balanced,
        Self::PromptMoreImportant,
        Self::ControlNetMoreImportant,
    ];

    /// A1111's label (sd-webui-controlnet's "Control Mode" radio buttons and infotext).
    pub fn a1111_label(self) -> &'static str {
        match self {
            Self::Balanced => "Balanced",
            Self::PromptMoreImportant => "My prompt is more important",
            Self::ControlNetMoreImportant => "ControlNet is more important",
        }
    }

    pub fn from_a1111_label(label: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|m| m.a1111_label() == label.trim())
    }
}

impl ControlNetModel {
    pub fn new(cfg: &ControlNetConfig, vb: VarBuilder) -> Result<Self> {
        cfg.check_supported()?;
        let unet = &cfg.unet;
        let builder = BlockBuilder::new(unet)?;
        let encoder = Encoder::new(unet, &builder, &vb)?;
        let channels = &unet.block_out_channels;
        // The skips the UNet keeps: conv_in's output, each layer's, each downsampler's.
        let mut skip_channels = vec![channels[0]];
        for (i, &c) in channels.iter().enumerate() {
            skip_channels.extend(std::iter::repeat_n(c, builder.layers_per_block[i]));
            if i + 1 < channels.len() {
                skip_channels.push(c);
            }
        }
        let down_zero_convs = skip_channels
            .iter()
            .enumerate()
            .map(|(i, &c)| conv1x1(c, c, vb.pp(format!("controlnet_down_blocks.{i}"))))
            .collect::<Result<Vec<_>>>()?;
        let last = channels[channels.len() - 1];
        let context_dim = builder.context_dim();
        Ok(Self {
            encoder,
            conditioning: ConditioningEmbedding::new(cfg, vb.pp("controlnet_cond_embedding"))?,
            down_zero_convs,
            mid_zero_conv: conv1x1(last, last, vb.pp("controlnet_mid_block"))?,
            bgr: cfg.controlnet_conditioning_channel_order == "bgr",
            global_pool: cfg.global_pool_conditions,
            context_dim,
            downscale: cfg.downscale(),
        })
    }

    /// SDXL ControlNets take the pooled text and size ids, like the SDXL UNet.
    pub fn needs_added_conditions(&self) -> bool {
        self.encoder.needs_added_conditions()
    }

    /// The width of the text embeddings it attends to (768 for SD 1, 1024 for SD 2, 2048
    /// for SDXL).
    pub fn context_dim(&self) -> usize {
        self.context_dim
    }

    /// Control image pixels per latent.
    pub fn downscale(&self) -> usize {
        self.downscale
    }

    /// diffusers' `global_pool_conditions` (shuffle ControlNets): always run in guess mode.
    pub fn pools_conditions(&self) -> bool {
        self.global_pool
    }

    /// The residuals for the UNet at `timestep`: `sample` as the UNet sees it (4 channels,
    /// already scaled), `image` the control image in [0, 1] as `(batch, 3, H, W)`, `scale`
    /// the unit's weight at this step.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        sample: &Tensor,
        timestep: f64,
        encoder_hidden_states: &Tensor,
        added: Option<&AddedConditions>,
        image: &Tensor,
        scale: f64,
        mode: ControlMode,
    ) -> Result<ControlResiduals> {
        let temb = self
            .encoder
            .embed(timestep, sample.dim(0)?, added, sample.device())?;
        let image = if self.bgr {
            image.flip(&[1])?
        } else {
            image.clone()
        };
        let conditioning = self
            .conditioning
            .forward(&image.to_dtype(self.encoder.dtype)?)?;
        let xs = (self.encoder.conv_in.forward(sample)? + conditioning)?;
        let (xs, skips) = self
            .encoder
            .down(xs, &temb, encoder_hidden_states, &mut [].iter())?;
        let xs = self.encoder.mid(&xs, &temb, encoder_hidden_states)?;
        let count = skips.len();
        let scales: Vec<f64> = match mode {
            ControlMode::Balanced => vec![scale; count + 1],
            // torch.logspace(-1, 0, count + 1) × scale
            ControlMode::ControlNetMoreImportant if !self.global_pool => (0..=count)
                .map(|i| {
                    let exponent = -1.0 + i as f32 / count as f32;
                    10f32.powf(exponent) as f64 * scale
                })
                .collect(),
            ControlMode::ControlNetMoreImportant => vec![scale; count + 1],
            ControlMode::PromptMoreImportant => (0..=count)
                .map(|i| scale * 0.825f64.powi(count as i32 - i as i32))
                .collect(),
        };
        let pool = |t: Tensor| -> Result<Tensor> {
            if self.global_pool {
                t.mean_keepdim(2)?.mean_keepdim(3)
            } else {
                Ok(t)
            }
        };
        let down = skips
            .iter()
            .zip(&self.down_zero_convs)
            .zip(&scales)
            .map(|((skip, conv), &s)| pool((conv.forward(skip)? * s)?))
            .collect::<Result<Vec<_>>>()?;
        let mid = pool((self.mid_zero_conv.forward(&xs)? * scales[count])?)?;
        Ok(ControlResiduals {
            down,
            mid: Some(mid),
            intrablock: Vec::new(),
        })
    }
}
