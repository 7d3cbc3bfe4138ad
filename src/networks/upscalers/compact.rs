//! Real-ESRGAN's SRVGGNetCompact (`realesr-general-x4v3`, `realesr-animevideov3`) as spandrel
//! 0.4.1 builds it (`architectures/Compact`): a plain stack of 3×3 convolutions with PReLU at
//! the input's resolution, a pixel shuffle to the output's, and the input enlarged by
//! nearest neighbour added, so the network only learns the residual.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::{bounded, conv_shape, leading_index, pixel_shuffle};
use super::{DetectError, TensorShapes};
use crate::kernels::conv::Conv2d;
use crate::networks::layers::conv3x3;

/// More than any published model (64 features, 32 convolutions, ×4).
const MAX_CONVS: usize = 1024;
const MAX_FEATURES: usize = 1024;
const MAX_IMAGE_CHANNELS: usize = 64;
const MAX_SCALE: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    pub features: usize,
    /// Convolutions between the first and the last.
    pub convs: usize,
    pub scale: usize,
}

impl CompactConfig {
    /// `None` when the tensors are not an SRVGGNetCompact (`body.0.weight` and
    /// `body.1.weight`, spandrel's condition); an error when they are one we cannot build.
    pub fn detect(shapes: &TensorShapes) -> std::result::Result<Option<Self>, DetectError> {
        if !(shapes.contains_key("body.0.weight") && shapes.contains_key("body.1.weight")) {
            return Ok(None);
        }
        // `body` alternates convolutions and PReLUs and ends with a convolution.
        let mut length = 0;
        for name in shapes.keys() {
            if let Some(rest) = name.strip_prefix("body.") {
                let (index, _) = leading_index(rest, 2 * MAX_CONVS + 2).ok_or_else(|| {
                    DetectError::IndexTooLarge {
                        name: name.clone(),
                        what: "layer",
                        limit: 2 * MAX_CONVS + 2,
                    }
                })?;
                length = length.max(index + 1);
            }
        }
        let last = length - 1;
        if last < 2 || last % 2 != 0 {
            return Err(DetectError::Inconsistent(format!(
                "an SRVGGNetCompact body must end with a convolution (body.{last} is an activation)"
            )));
        }
        let [features, in_channels, _, _] = conv_shape(shapes, "body.0.weight")?;
        let [shuffled, _, _, _] = conv_shape(shapes, &format!("body.{last}.weight"))?;
        let in_channels = bounded("the input channel count", in_channels, MAX_IMAGE_CHANNELS)?;
        let (scale, out_channels) = scale_and_output_channels(shuffled, in_channels)
            .ok_or_else(|| {
                DetectError::Inconsistent(format!(
                    "the last convolution's {shuffled} channels are no scale² × 1, 3 or 4 output channels"
                ))
            })?;
        Ok(Some(Self {
            in_channels,
            out_channels,
            features: bounded("the feature count", features, MAX_FEATURES)?,
            convs: (last - 2) / 2,
            scale: bounded("the scale", scale, MAX_SCALE)?,
        }))
    }
}

/// spandrel's `get_scale_and_output_channels`: the first of the input's channel count, 3, 4
/// and 1 that leaves a square when dividing `channels`.
fn scale_and_output_channels(channels: usize, in_channels: usize) -> Option<(usize, usize)> {
    [in_channels, 3, 4, 1].into_iter().find_map(|out| {
        if out == 0 || !channels.is_multiple_of(out) {
            return None;
        }
        let square = channels / out;
        let side = square.isqrt();
        (side * side == square && side > 0).then_some((side, out))
    })
}

/// The file's names are the module names: `body.N.weight` / `body.N.bias`.
pub fn module_name(name: &str) -> Option<String> {
    let (_, kind) = leading_index(name.strip_prefix("body.")?, 2 * MAX_CONVS + 2)?;
    matches!(kind, "weight" | "bias").then(|| name.to_string())
}

/// A convolution followed by a PReLU with one slope per channel.
struct ConvPrelu {
    conv: Conv2d,
    /// `(1, channels, 1, 1)`.
    slopes: Tensor,
}

impl ConvPrelu {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let xs = self.conv.forward(xs)?;
        // PyTorch's PReLU: x where x > 0, slope·x elsewhere.
        let scaled = xs.broadcast_mul(&self.slopes)?;
        xs.gt(0.0)?.where_cond(&xs, &scaled)
    }
}

pub struct Compact {
    config: CompactConfig,
    body: Vec<ConvPrelu>,
    conv_last: Conv2d,
}

impl Compact {
    pub fn new(config: &CompactConfig, vb: VarBuilder) -> Result<Self> {
        let vb = vb.pp("body");
        let body = (0..=config.convs)
            .map(|i| {
                let in_channels = if i == 0 {
                    config.in_channels
                } else {
                    config.features
                };
                Ok(ConvPrelu {
                    conv: conv3x3(in_channels, config.features, vb.pp(2 * i))?,
                    slopes: vb.pp(2 * i + 1).get(config.features, "weight")?.reshape((
                        1,
                        config.features,
                        1,
                        1,
                    ))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let shuffled = config.out_channels * config.scale * config.scale;
        Ok(Self {
            config: config.clone(),
            body,
            conv_last: conv3x3(config.features, shuffled, vb.pp(2 * config.convs + 2))?,
        })
    }

    pub fn config(&self) -> &CompactConfig {
        &self.config
    }

    pub fn forward(&self, image: &Tensor) -> Result<Tensor> {
        let mut xs = image.clone();
        for layer in &self.body {
            xs = layer.forward(&xs)?;
        }
        let out = pixel_shuffle(&self.conv_last.forward(&xs)?, self.config.scale)?;
        let (_, _, h, w) = image.dims4()?;
        let scale = self.config.scale;
        out.broadcast_add(&image.upsample_nearest2d(h * scale, w * scale)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_and_channels_as_spandrel_guesses_them() {
        assert_eq!(scale_and_output_channels(48, 3), Some((4, 3)));
        assert_eq!(scale_and_output_channels(12, 3), Some((2, 3)));
        assert_eq!(scale_and_output_channels(3, 3), Some((1, 3)));
        assert_eq!(scale_and_output_channels(64, 3), Some((4, 4)));
        assert_eq!(scale_and_output_channels(16, 1), Some((4, 1)));
        assert_eq!(scale_and_output_channels(7, 3), None);
    }
}
