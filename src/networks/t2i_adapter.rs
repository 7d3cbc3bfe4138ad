//! diffusers' `T2IAdapter` (TencentARC's T2I-Adapter): a small convolutional network that
//! turns a control image into one feature map per UNet down block, added inside the down path
//! (`down_intrablock_additional_residuals`). Three layouts, as diffusers builds them:
//! `full_adapter` (SD 1.x/2.x), `full_adapter_xl` (SDXL: pixel-unshuffle by 16, one
//! downsampling block) and `light_adapter`.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;
use serde::Deserialize;

use crate::kernels::conv::Conv2d;
use crate::networks::layers::{conv1x1, conv3x3};
use crate::networks::upscalers::pixel_unshuffle;

/// The largest pixel-unshuffle factor accepted from a config (diffusers uses 8 and 16).
const MAX_DOWNSCALE: usize = 64;

/// diffusers' `T2IAdapter` config (`config.json`).
#[derive(Debug, Clone, Deserialize)]
pub struct T2IAdapterConfig {
    #[serde(default = "default_in_channels")]
    pub in_channels: usize,
    #[serde(default = "default_channels")]
    pub channels: Vec<usize>,
    #[serde(default = "default_res_blocks")]
    pub num_res_blocks: usize,
    #[serde(default = "default_downscale")]
    pub downscale_factor: usize,
    #[serde(default = "default_adapter_type")]
    pub adapter_type: String,
}

fn default_in_channels() -> usize {
    3
}
fn default_channels() -> Vec<usize> {
    vec![320, 640, 1280, 1280]
}
fn default_res_blocks() -> usize {
    2
}
fn default_downscale() -> usize {
    8
}
fn default_adapter_type() -> String {
    "full_adapter".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdapterKind {
    Full,
    FullXl,
    Light,
}

/// A residual pair of convolutions with a ReLU between (`AdapterResnetBlock` has a 1×1 second
/// convolution, `LightAdapterResnetBlock` a 3×3 one).
struct ResnetBlock {
    block1: Conv2d,
    block2: Conv2d,
}

impl ResnetBlock {
    fn new(channels: usize, kind: AdapterKind, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            block1: conv3x3(channels, channels, vb.pp("block1"))?,
            block2: if kind == AdapterKind::Light {
                conv3x3(channels, channels, vb.pp("block2"))?
            } else {
                conv1x1(channels, channels, vb.pp("block2"))?
            },
        })
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let h = self.block2.forward(&self.block1.forward(xs)?.relu()?)?;
        h + xs
    }
}

/// `AdapterBlock` / `LightAdapterBlock`: optional 2×2 average pooling, an optional input
/// convolution, resnets, and (light) an output convolution.
struct Block {
    down: bool,
    in_conv: Option<Conv2d>,
    resnets: Vec<ResnetBlock>,
    out_conv: Option<Conv2d>,
}

impl Block {
    fn full(
        in_channels: usize,
        out_channels: usize,
        res_blocks: usize,
        down: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        let in_conv = if in_channels != out_channels {
            Some(conv1x1(in_channels, out_channels, vb.pp("in_conv"))?)
        } else {
            None
        };
        Ok(Self {
            down,
            in_conv,
            resnets: (0..res_blocks)
                .map(|i| {
                    ResnetBlock::new(
                        out_channels,
                        AdapterKind::Full,
                        vb.pp(format!("resnets.{i}")),
                    )
                })
                .collect::<Result<_>>()?,
            out_conv: None,
        })
    }

    fn light(
        in_channels: usize,
        out_channels: usize,
        res_blocks: usize,
        down: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        let mid = out_channels / 4;
        Ok(Self {
            down,
            in_conv: Some(conv1x1(in_channels, mid, vb.pp("in_conv"))?),
            resnets: (0..res_blocks)
                .map(|i| ResnetBlock::new(mid, AdapterKind::Light, vb.pp(format!("resnets.{i}"))))
                .collect::<Result<_>>()?,
            out_conv: Some(conv1x1(mid, out_channels, vb.pp("out_conv"))?),
        })
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let mut xs = if self.down {
            average_pool_ceil(xs)?
        } else {
            xs.clone()
        };
        if let Some(conv) = &self.in_conv {
            xs = conv.forward(&xs)?;
        }
        for resnet in &self.resnets {
            xs = resnet.forward(&xs)?;
        }
        match &self.out_conv {
            Some(conv) => conv.forward(&xs),
            None => Ok(xs),
        }
    }
}

/// `AvgPool2d(2, stride=2, ceil_mode=True)`: on an odd side the last window holds one row or
/// column and PyTorch divides by what it holds; repeating that edge gives the same average.
fn average_pool_ceil(xs: &Tensor) -> Result<Tensor> {
    let (_, _, h, w) = xs.dims4()?;
    let mut xs = xs.clone();
    if h % 2 == 1 {
        xs = Tensor::cat(&[&xs, &xs.narrow(2, h - 1, 1)?], 2)?;
    }
    if w % 2 == 1 {
        xs = Tensor::cat(&[&xs, &xs.narrow(3, w - 1, 1)?], 3)?;
    }
    xs.avg_pool2d(2)
}

pub struct T2IAdapter {
    kind: AdapterKind,
    in_channels: usize,
    downscale: usize,
    conv_in: Option<Conv2d>,
    body: Vec<Block>,
    /// Channels of each feature map, first to last.
    feature_channels: Vec<usize>,
}

impl T2IAdapter {
    /// The weights under `vb` (`adapter.conv_in`, `adapter.body.N…`, as diffusers names them).
    pub fn new(cfg: &T2IAdapterConfig, vb: VarBuilder) -> Result<Self> {
        let kind = match cfg.adapter_type.as_str() {
            "full_adapter" => AdapterKind::Full,
            "full_adapter_xl" => AdapterKind::FullXl,
            "light_adapter" => AdapterKind::Light,
            other => candle_core::bail!(
                "adapter_type {other:?} is not one diffusers builds (full_adapter, full_adapter_xl, light_adapter)"
            ),
        };
        let channels = &cfg.channels;
        if channels.is_empty() || channels.len() > 8 || channels.iter().any(|&c| c == 0 || c > 4096)
        {
            candle_core::bail!("the adapter's channels {channels:?} are not a usable list");
        }
        if !(1..=MAX_DOWNSCALE).contains(&cfg.downscale_factor)
            || !(1..=4).contains(&cfg.in_channels)
            || cfg.num_res_blocks > 16
        {
            candle_core::bail!(
                "the adapter's downscale_factor {}, in_channels {} or num_res_blocks {} is out of range",
                cfg.downscale_factor,
                cfg.in_channels,
                cfg.num_res_blocks
            );
        }
        let vb = vb.pp("adapter");
        let unshuffled = cfg.in_channels * cfg.downscale_factor * cfg.downscale_factor;
        let res = cfg.num_res_blocks;
        let body = vb.pp("body");
        let block = |i: usize| body.pp(i.to_string());
        let (conv_in, blocks, feature_channels) = match kind {
            AdapterKind::Full => {
                let conv_in = conv3x3(unshuffled, channels[0], vb.pp("conv_in"))?;
                let mut blocks = vec![Block::full(channels[0], channels[0], res, false, block(0))?];
                for i in 1..channels.len() {
                    blocks.push(Block::full(
                        channels[i - 1],
                        channels[i],
                        res,
                        true,
                        block(i),
                    )?);
                }
                (Some(conv_in), blocks, channels.clone())
            }
            AdapterKind::FullXl => {
                let conv_in = conv3x3(unshuffled, channels[0], vb.pp("conv_in"))?;
                let mut blocks = Vec::new();
                let mut features = Vec::new();
                for i in 0..channels.len() {
                    let (input, output, down) = match i {
                        1 => (channels[0], channels[1], false),
                        2 => (channels[1], channels[2], true),
                        _ => (channels[i], channels[i], false),
                    };
                    blocks.push(Block::full(input, output, res, down, block(i))?);
                    features.push(output);
                }
                (Some(conv_in), blocks, features)
            }
            AdapterKind::Light => {
                let mut blocks = vec![Block::light(unshuffled, channels[0], res, false, block(0))?];
                for i in 0..channels.len() - 1 {
                    blocks.push(Block::light(
                        channels[i],
                        channels[i + 1],
                        res,
                        true,
                        block(i + 1),
                    )?);
                }
                let last = *channels.last().unwrap_or(&channels[0]);
                blocks.push(Block::light(last, last, res, true, block(channels.len()))?);
                let mut features = channels.clone();
                features.push(last);
                (None, blocks, features)
            }
        };
        Ok(Self {
            kind,
            in_channels: cfg.in_channels,
            downscale: cfg.downscale_factor,
            conv_in,
            body: blocks,
            feature_channels,
        })
    }

    pub fn kind(&self) -> AdapterKind {
        self.kind
    }

    /// 3 for colour control images, 1 for grey ones (sketches).
    pub fn in_channels(&self) -> usize {
        self.in_channels
    }

    /// The pixel-unshuffle factor: image sides must be multiples of it.
    pub fn downscale(&self) -> usize {
        self.downscale
    }

    pub fn feature_channels(&self) -> &[usize] {
        &self.feature_channels
    }

    /// The feature maps for a `(batch, in_channels, H, W)` image in [0, 1], first to last.
    pub fn forward(&self, image: &Tensor) -> Result<Vec<Tensor>> {
        let mut xs = pixel_unshuffle(image, self.downscale)?;
        if let Some(conv) = &self.conv_in {
            xs = conv.forward(&xs)?;
        }
        let mut features = Vec::with_capacity(self.body.len());
        for block in &self.body {
            xs = block.forward(&xs)?;
            features.push(xs.clone());
        }
        Ok(features)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn ceil_mode_pooling_averages_what_the_edge_window_holds() {
        let xs = Tensor::arange(0f32, 15.0, &Device::Cpu)
            .unwrap()
            .reshape((1, 1, 3, 5))
            .unwrap();
        let pooled = average_pool_ceil(&xs).unwrap();
        // Windows: rows {0,1} and {2}; columns {0,1}, {2,3}, {4}.
        let expected = [3.0, 5.0, 6.5, 10.5, 12.5, 14.0];
        assert_eq!(pooled.dims(), &[1, 1, 2, 3]);
        assert_eq!(
            pooled.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            expected
        );
    }
}
