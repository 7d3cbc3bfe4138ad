//! Super-resolution networks of the ESRGAN family, numerically as spandrel 0.4.1 runs them:
//! ESRGAN / Real-ESRGAN / BSRGAN RRDBNets ([`esrgan`]) and Real-ESRGAN's SRVGGNetCompact
//! ([`compact`]). What a file holds — architecture, scale, channel and block counts, key
//! layout — is read from its tensor names and shapes ([`detect`]), as spandrel does, and every
//! number read is bounded before anything is built. [`tiling`] runs a network over an image
//! in overlapping tiles.

pub mod compact;
pub mod esrgan;
pub mod tiling;

use std::collections::HashMap;

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

pub use compact::{Compact, CompactConfig};
pub use esrgan::{Esrgan, EsrganConfig};

/// The tensor names of a weights file with their shapes, as its header states them.
pub type TensorShapes = HashMap<String, Vec<usize>>;

/// Why a file's tensors are not an upscaler we can build.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DetectError {
    #[error("not an ESRGAN, Real-ESRGAN or Real-ESRGAN Compact upscaler (other architectures — SwinIR, HAT, DAT, OmniSR … — are not supported){hint}")]
    UnknownArchitecture { hint: &'static str },
    #[error("tensor {name} is missing")]
    Missing { name: String },
    #[error("tensor {name} has shape {shape:?}, expected {expected}")]
    BadShape {
        name: String,
        shape: Vec<usize>,
        expected: &'static str,
    },
    #[error("{what} is {value}, more than the {limit} any known model has")]
    TooLarge {
        what: &'static str,
        value: usize,
        limit: usize,
    },
    #[error("tensor {name}: {what} index beyond the {limit} any known model has")]
    IndexTooLarge {
        name: String,
        what: &'static str,
        limit: usize,
    },
    #[error("{0}")]
    Inconsistent(String),
}

/// What a file holds, with the layout its tensor names follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpscalerConfig {
    Esrgan(EsrganConfig),
    Compact(CompactConfig),
}

impl UpscalerConfig {
    /// Output pixels per input pixel, along each side.
    pub fn scale(&self) -> usize {
        match self {
            Self::Esrgan(config) => config.scale(),
            Self::Compact(config) => config.scale,
        }
    }

    /// spandrel's name for the architecture.
    pub fn architecture(&self) -> &'static str {
        match self {
            Self::Esrgan(_) => "ESRGAN",
            Self::Compact(_) => "Compact",
        }
    }

    /// The name our modules give the file's tensor `name`; `None` for tensors the network
    /// does not use.
    pub fn module_name(&self, name: &str) -> Option<String> {
        match self {
            Self::Esrgan(config) => config.module_name(name),
            Self::Compact(_) => compact::module_name(name),
        }
    }
}

/// Tells the architecture from the tensor names (spandrel's detection conditions, in its
/// order) and reads its configuration from the shapes.
pub fn detect(shapes: &TensorShapes) -> std::result::Result<UpscalerConfig, DetectError> {
    if let Some(config) = EsrganConfig::detect(shapes)? {
        return Ok(UpscalerConfig::Esrgan(config));
    }
    if let Some(config) = CompactConfig::detect(shapes)? {
        return Ok(UpscalerConfig::Compact(config));
    }
    let has = |prefix: &str| shapes.keys().any(|name| name.starts_with(prefix));
    let hint = if has("model.diffusion_model.") {
        " — this is a Stable Diffusion checkpoint; load it with --model"
    } else if has("lora_") || shapes.keys().any(|n| n.contains(".lora_")) {
        " — this is a LoRA"
    } else if has("decoder.") || has("encoder.") {
        " — this is a VAE"
    } else {
        ""
    };
    Err(DetectError::UnknownArchitecture { hint })
}

/// A built upscaler. Input: `(batch, channels, height, width)` floats in [0, 1]; output: the
/// network's values, unclamped, `scale` times the size.
pub enum Upscaler {
    Esrgan(Box<Esrgan>),
    Compact(Compact),
}

impl Upscaler {
    /// Builds the network `config` describes from `vb`, which serves [`UpscalerConfig::module_name`]s.
    pub fn new(config: &UpscalerConfig, vb: VarBuilder) -> Result<Self> {
        Ok(match config {
            UpscalerConfig::Esrgan(config) => Self::Esrgan(Box::new(Esrgan::new(config, vb)?)),
            UpscalerConfig::Compact(config) => Self::Compact(Compact::new(config, vb)?),
        })
    }

    pub fn scale(&self) -> usize {
        match self {
            Self::Esrgan(net) => net.config().scale(),
            Self::Compact(net) => net.config().scale,
        }
    }

    /// Image channels the network reads.
    pub fn input_channels(&self) -> usize {
        match self {
            Self::Esrgan(net) => net.config().image_channels(),
            Self::Compact(net) => net.config().in_channels,
        }
    }

    pub fn output_channels(&self) -> usize {
        match self {
            Self::Esrgan(net) => net.config().out_channels,
            Self::Compact(net) => net.config().out_channels,
        }
    }

    /// Tiles must start at multiples of this, so that a tile groups pixels as the whole image
    /// does (pixel-unshuffling models fold blocks of this many pixels into channels).
    pub fn alignment(&self) -> usize {
        match self {
            Self::Esrgan(net) => net.config().pixel_unshuffle.unwrap_or(1),
            Self::Compact(_) => 1,
        }
    }

    /// spandrel's `ImageModelDescriptor.__call__` without its final clamp: the input padded
    /// to the model's size requirements (reflected, then replicated past what reflection
    /// allows), the network, the padding cropped off again.
    pub fn forward(&self, image: &Tensor) -> Result<Tensor> {
        let (_, _, height, width) = image.dims4()?;
        let (minimum, multiple) = match self {
            // spandrel: SizeRequirements(minimum=2, multiple_of=4 if shuffle_factor else 1)
            Self::Esrgan(net) if net.config().pixel_unshuffle.is_some() => (4, 4),
            Self::Esrgan(_) => (2, 1),
            Self::Compact(_) => (0, 1),
        };
        let padded_size = |side: usize| side.max(minimum).div_ceil(multiple) * multiple;
        let padded = pad_right_bottom(image, padded_size(height), padded_size(width))?;
        let out = match self {
            Self::Esrgan(net) => net.forward(&padded)?,
            Self::Compact(net) => net.forward(&padded)?,
        };
        let scale = self.scale();
        out.narrow(2, 0, height * scale)?
            .narrow(3, 0, width * scale)
    }
}

/// `F.pad(x, (0, right, 0, bottom), "reflect")` for as much as reflection allows (side − 1),
/// then `"replicate"` for the rest, as spandrel's `pad_tensor` does; to `height`×`width`.
pub fn pad_right_bottom(xs: &Tensor, height: usize, width: usize) -> Result<Tensor> {
    let (_, _, h, w) = xs.dims4()?;
    let xs = pad_dim(xs, 2, h, height)?;
    pad_dim(&xs, 3, w, width)
}

fn pad_dim(xs: &Tensor, dim: usize, size: usize, target: usize) -> Result<Tensor> {
    if target <= size {
        return Ok(xs.clone());
    }
    let pad = target - size;
    let reflected = pad.min(size - 1);
    // Reflection mirrors around the last pixel without repeating it; replication then
    // repeats the last pixel of the reflected tensor.
    let indices: Vec<u32> = (0..size)
        .chain((0..pad).map(|k| {
            if k < reflected {
                size - 2 - k
            } else {
                size - 1 - reflected
            }
        }))
        .map(|index| index as u32)
        .collect();
    let indices = Tensor::from_vec(indices, target, xs.device())?;
    xs.contiguous()?.index_select(&indices, dim)
}

/// `torch.pixel_unshuffle`: blocks of `factor`×`factor` pixels into channels.
pub fn pixel_unshuffle(xs: &Tensor, factor: usize) -> Result<Tensor> {
    let (batch, channels, height, width) = xs.dims4()?;
    let (h, w) = (height / factor, width / factor);
    xs.reshape((batch, channels, h, factor, w, factor))?
        .permute((0, 1, 3, 5, 2, 4))?
        .reshape((batch, channels * factor * factor, h, w))
}

/// `torch.pixel_shuffle`: the inverse of [`pixel_unshuffle`].
pub fn pixel_shuffle(xs: &Tensor, factor: usize) -> Result<Tensor> {
    let (batch, channels, height, width) = xs.dims4()?;
    let out_channels = channels / (factor * factor);
    xs.reshape((batch, out_channels, factor, factor, height, width))?
        .permute((0, 1, 4, 2, 5, 3))?
        .reshape((batch, out_channels, height * factor, width * factor))
}

/// Reads the decimal index at the start of `text` (up to the next `.`), refusing anything
/// longer than `limit` allows before parsing it.
pub(crate) fn leading_index(text: &str, limit: usize) -> Option<(usize, &str)> {
    let (digits, rest) = text.split_once('.').unwrap_or((text, ""));
    if digits.is_empty() || digits.len() > 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let index: usize = digits.parse().ok()?;
    (index <= limit).then_some((index, rest))
}

/// The shape of `name`, which must be a 4-D convolution weight.
fn conv_shape(shapes: &TensorShapes, name: &str) -> std::result::Result<[usize; 4], DetectError> {
    let shape = shapes.get(name).ok_or_else(|| DetectError::Missing {
        name: name.to_string(),
    })?;
    match shape.as_slice() {
        &[out, input, kh, kw] => Ok([out, input, kh, kw]),
        _ => Err(DetectError::BadShape {
            name: name.to_string(),
            shape: shape.clone(),
            expected: "a 4-D convolution weight",
        }),
    }
}

fn bounded(
    what: &'static str,
    value: usize,
    limit: usize,
) -> std::result::Result<usize, DetectError> {
    if value > limit {
        Err(DetectError::TooLarge { what, value, limit })
    } else {
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn pixel_shuffle_inverts_unshuffle_and_orders_channels_as_torch() {
        let xs = Tensor::arange(0f32, 32.0, &Device::Cpu)
            .unwrap()
            .reshape((1, 2, 4, 4))
            .unwrap();
        let folded = pixel_unshuffle(&xs, 2).unwrap();
        assert_eq!(folded.dims4().unwrap(), (1, 8, 2, 2));
        // torch.pixel_unshuffle(arange(32).reshape(1,2,4,4), 2)[0, :4, 0, 0]
        let first: Vec<f32> = folded
            .narrow(2, 0, 1)
            .unwrap()
            .narrow(3, 0, 1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(first, [0.0, 1.0, 4.0, 5.0, 16.0, 17.0, 20.0, 21.0]);
        let back = pixel_shuffle(&folded, 2).unwrap();
        let diff = (back - &xs).unwrap().abs().unwrap().max_all().unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
    }

    #[test]
    fn padding_reflects_then_replicates() {
        let xs = Tensor::new(&[1f32, 2.0, 3.0], &Device::Cpu)
            .unwrap()
            .reshape((1, 1, 1, 3))
            .unwrap();
        // reflect by min(4, 2) = 2: 1 2 3 2 1, then replicate 2: 1 1
        let padded = pad_right_bottom(&xs, 3, 7).unwrap();
        let row: Vec<f32> = padded
            .get(0)
            .unwrap()
            .get(0)
            .unwrap()
            .get(0)
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(row, [1.0, 2.0, 3.0, 2.0, 1.0, 1.0, 1.0]);
        // One row cannot reflect at all: replicated.
        let column: Vec<f32> = padded
            .narrow(3, 2, 1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(column, [3.0, 3.0, 3.0]);
    }

    /// The tensor shapes of an RRDBNet with basicsr's names (`conv_up` per ×2).
    fn real_esrgan(in_channels: usize, upsamplings: usize) -> TensorShapes {
        let mut shapes = TensorShapes::new();
        let mut conv = |name: String, out: usize, input: usize| {
            shapes.insert(format!("{name}.weight"), vec![out, input, 3, 3]);
            shapes.insert(format!("{name}.bias"), vec![out]);
        };
        conv("conv_first".into(), 64, in_channels);
        for block in 0..23 {
            for dense in 1..=3 {
                for i in 1..=5 {
                    let out = if i == 5 { 64 } else { 32 };
                    conv(
                        format!("body.{block}.rdb{dense}.conv{i}"),
                        out,
                        64 + (i - 1) * 32,
                    );
                }
            }
        }
        conv("conv_body".into(), 64, 64);
        for n in 1..=upsamplings {
            conv(format!("conv_up{n}"), 64, 64);
        }
        conv("conv_hr".into(), 64, 64);
        conv("conv_last".into(), 3, 64);
        shapes
    }

    fn compact(convs: usize, scale: usize) -> TensorShapes {
        let mut shapes = TensorShapes::new();
        for i in 0..=convs {
            let input = if i == 0 { 3 } else { 64 };
            shapes.insert(format!("body.{}.weight", 2 * i), vec![64, input, 3, 3]);
            shapes.insert(format!("body.{}.bias", 2 * i), vec![64]);
            shapes.insert(format!("body.{}.weight", 2 * i + 1), vec![64]);
        }
        let last = 2 * convs + 2;
        shapes.insert(
            format!("body.{last}.weight"),
            vec![3 * scale * scale, 64, 3, 3],
        );
        shapes.insert(format!("body.{last}.bias"), vec![3 * scale * scale]);
        shapes
    }

    #[test]
    fn published_models_are_recognised_at_full_size() {
        let x4plus = detect(&real_esrgan(3, 2)).unwrap();
        let UpscalerConfig::Esrgan(config) = &x4plus else {
            panic!("{x4plus:?}")
        };
        assert_eq!(
            (
                config.blocks,
                config.features,
                config.growth_channels,
                x4plus.scale()
            ),
            (23, 64, 32, 4)
        );
        // RealESRGAN_x2plus: 2×2 blocks folded into 12 channels, then the ×4 network.
        let x2plus = detect(&real_esrgan(12, 2)).unwrap();
        assert_eq!(x2plus.scale(), 2);
        assert!(matches!(&x2plus, UpscalerConfig::Esrgan(c) if c.pixel_unshuffle == Some(2)));
        // realesr-general-x4v3 (32 convolutions) and realesr-animevideov3 (16).
        for (convs, scale) in [(32, 4), (16, 4), (16, 2)] {
            let config = detect(&compact(convs, scale)).unwrap();
            assert_eq!(
                config,
                UpscalerConfig::Compact(CompactConfig {
                    in_channels: 3,
                    out_channels: 3,
                    features: 64,
                    convs,
                    scale,
                })
            );
        }
        let mut vae = TensorShapes::new();
        vae.insert("decoder.conv_in.weight".into(), vec![512, 4, 3, 3]);
        let err = detect(&vae).unwrap_err().to_string();
        assert!(err.contains("this is a VAE"), "{err}");
    }

    #[test]
    fn indices_are_bounded_before_use() {
        assert_eq!(leading_index("12.weight", 64), Some((12, "weight")));
        assert_eq!(leading_index("65.weight", 64), None);
        assert_eq!(
            leading_index("99999999999999999999.weight", usize::MAX),
            None
        );
        assert_eq!(leading_index("x.weight", 64), None);
        assert_eq!(leading_index("", 64), None);
    }
}
