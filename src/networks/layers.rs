//! Convolutional building blocks shared by the UNet and the VAE (diffusers' `resnet.py`,
//! `downsampling.py`, `upsampling.py`).

use candle_core::{Module, Result, Tensor};
use candle_nn::{linear, Conv2dConfig, Linear, VarBuilder};

use crate::kernels::conv::{conv2d, Conv2d};
use crate::kernels::group_norm::{group_norm, GroupNorm};

pub fn conv3x3(in_channels: usize, out_channels: usize, vb: VarBuilder) -> Result<Conv2d> {
    let config = Conv2dConfig {
        padding: 1,
        ..Default::default()
    };
    conv2d(in_channels, out_channels, 3, config, vb)
}

pub fn conv1x1(in_channels: usize, out_channels: usize, vb: VarBuilder) -> Result<Conv2d> {
    conv2d(in_channels, out_channels, 1, Default::default(), vb)
}

/// `ResnetBlock2D` with the "default" time-embedding mode (added after the first conv).
pub struct ResnetBlock2D {
    norm1: GroupNorm,
    conv1: Conv2d,
    time_emb_proj: Option<Linear>,
    norm2: GroupNorm,
    conv2: Conv2d,
    conv_shortcut: Option<Conv2d>,
    output_scale_factor: f64,
}

pub struct ResnetConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    /// `None` for the VAE, whose resnets take no time embedding.
    pub temb_channels: Option<usize>,
    pub groups: usize,
    pub eps: f64,
    pub output_scale_factor: f64,
}

impl ResnetBlock2D {
    pub fn new(cfg: &ResnetConfig, vb: VarBuilder) -> Result<Self> {
        let conv_shortcut = if cfg.in_channels != cfg.out_channels {
            Some(conv1x1(
                cfg.in_channels,
                cfg.out_channels,
                vb.pp("conv_shortcut"),
            )?)
        } else {
            None
        };
        let time_emb_proj = match cfg.temb_channels {
            Some(channels) => Some(linear(channels, cfg.out_channels, vb.pp("time_emb_proj"))?),
            None => None,
        };
        Ok(Self {
            norm1: group_norm(cfg.groups, cfg.in_channels, cfg.eps, vb.pp("norm1"))?,
            conv1: conv3x3(cfg.in_channels, cfg.out_channels, vb.pp("conv1"))?,
            time_emb_proj,
            norm2: group_norm(cfg.groups, cfg.out_channels, cfg.eps, vb.pp("norm2"))?,
            conv2: conv3x3(cfg.out_channels, cfg.out_channels, vb.pp("conv2"))?,
            conv_shortcut,
            output_scale_factor: cfg.output_scale_factor,
        })
    }

    /// `temb` is the already-activated time embedding (`silu(emb)`), shared by every block.
    pub fn forward(&self, xs: &Tensor, temb: Option<&Tensor>) -> Result<Tensor> {
        let mut hidden = self.conv1.forward(&self.norm1.forward_silu(xs)?)?;
        if let (Some(proj), Some(temb)) = (&self.time_emb_proj, temb) {
            let temb = proj.forward(temb)?.unsqueeze(2)?.unsqueeze(3)?;
            hidden = hidden.broadcast_add(&temb)?;
        }
        let hidden = self.conv2.forward(&self.norm2.forward_silu(&hidden)?)?;
        let shortcut = match &self.conv_shortcut {
            Some(conv) => conv.forward(xs)?,
            None => xs.clone(),
        };
        let out = (shortcut + hidden)?;
        if self.output_scale_factor == 1.0 {
            Ok(out)
        } else {
            out / self.output_scale_factor
        }
    }
}

/// Strided 3×3 conv. `padding == 0` is the VAE encoder's variant, which pads right/bottom by one.
pub struct Downsample2D {
    conv: Conv2d,
    pad_right_bottom: bool,
}

impl Downsample2D {
    pub fn new(channels: usize, padding: usize, vb: VarBuilder) -> Result<Self> {
        let config = Conv2dConfig {
            padding,
            stride: 2,
            ..Default::default()
        };
        Ok(Self {
            conv: conv2d(channels, channels, 3, config, vb.pp("conv"))?,
            pad_right_bottom: padding == 0,
        })
    }

    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        if self.pad_right_bottom {
            let xs = xs.pad_with_zeros(3, 0, 1)?.pad_with_zeros(2, 0, 1)?;
            self.conv.forward(&xs)
        } else {
            self.conv.forward(xs)
        }
    }
}

/// Nearest-neighbour upsampling (to an explicit size when the skip connection needs one) + 3×3 conv.
pub struct Upsample2D {
    conv: Conv2d,
}

impl Upsample2D {
    pub fn new(channels: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            conv: conv3x3(channels, channels, vb.pp("conv"))?,
        })
    }

    pub fn forward(&self, xs: &Tensor, size: Option<(usize, usize)>) -> Result<Tensor> {
        let (_, _, h, w) = xs.dims4()?;
        let (target_h, target_w) = size.unwrap_or((2 * h, 2 * w));
        self.conv
            .forward(&xs.upsample_nearest2d(target_h, target_w)?)
    }
}
