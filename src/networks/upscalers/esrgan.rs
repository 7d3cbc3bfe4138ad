//! ESRGAN's RRDBNet as spandrel 0.4.1 builds it (`architectures/ESRGAN`), which reads every
//! RRDBNet people use: ESRGAN and its community models (`4x-UltraSharp`, `4x_NMKD-Siax`: the
//! old `model.N.sub…` keys), Real-ESRGAN (`RealESRGAN_x4plus`: basicsr's `conv_first`,
//! `body.N.rdbK`, `conv_body`, `conv_up1`, `conv_hr`, `conv_last`), BSRGAN (`RRDB_trunk`,
//! `trunk_conv`, `upconv1`, `HRconv`) and ESRGAN+ (`conv1x1` shortcuts).
//!
//! Features → 23-ish RRDBs (three residual dense blocks each, five 3×3 convolutions whose
//! inputs are all earlier outputs concatenated) → a long skip → one ×2 nearest upsampling and
//! convolution per factor of two → two convolutions. Real-ESRGAN's ×2 and ×1 models run the
//! same ×4 network on a pixel-unshuffled input (blocks of 2×2 or 4×4 pixels folded into
//! channels), which spandrel recognises by the first convolution having 4 or 16 times the
//! output's channels.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::{bounded, conv_shape, leading_index, pad_right_bottom, pixel_unshuffle};
use super::{DetectError, TensorShapes};
use crate::kernels::conv::{conv2d_no_bias, Conv2d};
use crate::networks::layers::conv3x3;

/// More than any published model (23 blocks, 64 features, 32 growth channels, ×8).
const MAX_BLOCKS: usize = 256;
const MAX_FEATURES: usize = 1024;
const MAX_IMAGE_CHANNELS: usize = 64;
const MAX_UPSAMPLINGS: usize = 4;
/// `model.N` indices of the old layout: 5 + 3 per upsampling.
const MAX_OLD_INDEX: usize = 5 + 3 * MAX_UPSAMPLINGS;
/// LeakyReLU's negative slope in every RRDBNet.
const LEAKY_SLOPE: f64 = 0.2;
/// The residual scaling of every dense block and RRDB.
const RESIDUAL_SCALE: f64 = 0.2;

/// Which tensor names a file uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EsrganLayout {
    /// ESRGAN's original `model.0`, `model.1.sub.N.RDBk.convj.0`, `model.3` … names.
    Old,
    /// basicsr's (Real-ESRGAN) or BSRGAN's names.
    Named,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EsrganConfig {
    pub layout: EsrganLayout,
    /// Channels into the first convolution: the image's, times `pixel_unshuffle²`.
    pub in_channels: usize,
    pub out_channels: usize,
    pub features: usize,
    /// Channels each dense-block convolution adds (32 in every published model).
    pub growth_channels: usize,
    pub blocks: usize,
    /// ×2 upsamplings: the network enlarges by 2^upsamplings.
    pub upsamplings: usize,
    /// Real-ESRGAN ×2 / ×1: the input's 2×2 or 4×4 blocks are folded into channels first.
    pub pixel_unshuffle: Option<usize>,
    /// ESRGAN+: 1×1 shortcut convolutions inside each dense block.
    pub plus: bool,
}

impl EsrganConfig {
    /// Output pixels per input pixel.
    pub fn scale(&self) -> usize {
        (1 << self.upsamplings) / self.pixel_unshuffle.unwrap_or(1)
    }

    pub fn image_channels(&self) -> usize {
        let fold = self.pixel_unshuffle.unwrap_or(1);
        self.in_channels / (fold * fold)
    }

    /// `None` when the tensors are not an RRDBNet (spandrel's detection keys); an error when
    /// they are one we cannot build.
    pub fn detect(shapes: &TensorShapes) -> Result2<Option<Self>> {
        let has = |name: &str| shapes.contains_key(name);
        let layout = if has("model.0.weight")
            && (has("model.1.sub.0.RDB1.conv1.0.weight")
                || has("model.1.sub.0.RDB1.conv1x1.weight"))
        {
            EsrganLayout::Old
        } else if has("conv_first.weight")
            && has("conv_last.weight")
            && ((has("body.0.rdb1.conv1.weight") && has("conv_body.weight"))
                || (has("RRDB_trunk.0.RDB1.conv1.weight") && has("trunk_conv.weight")))
        {
            EsrganLayout::Named
        } else {
            return Ok(None);
        };
        let (blocks, upsamplings) = match layout {
            EsrganLayout::Old => old_layout_counts(shapes)?,
            EsrganLayout::Named => named_layout_counts(shapes)?,
        };
        let mut config = Self {
            layout,
            in_channels: 0,
            out_channels: 0,
            features: 0,
            growth_channels: 0,
            blocks,
            upsamplings,
            pixel_unshuffle: None,
            plus: false,
        };
        // The shapes under our module names.
        let ours: TensorShapes = shapes
            .iter()
            .filter_map(|(name, shape)| Some((config.module_name(name)?, shape.clone())))
            .collect();
        let [features, in_channels, _, _] = conv_shape(&ours, "conv_first.weight")?;
        let [out_channels, _, _, _] = conv_shape(&ours, "conv_last.weight")?;
        let [growth, _, _, _] = conv_shape(&ours, "body.0.rdb1.conv1.weight")?;
        config.features = bounded("the feature count", features, MAX_FEATURES)?;
        config.growth_channels = bounded("the growth channel count", growth, MAX_FEATURES)?;
        config.in_channels = bounded(
            "the input channel count",
            in_channels,
            MAX_IMAGE_CHANNELS * 16,
        )?;
        config.out_channels =
            bounded("the output channel count", out_channels, MAX_IMAGE_CHANNELS)?;
        config.plus = ours.keys().any(|name| name.contains(".conv1x1."));
        // spandrel: the input has 4 or 16 times the output's channels → pixel-unshuffled.
        config.pixel_unshuffle = if in_channels == out_channels * 4 {
            Some(2)
        } else if in_channels == out_channels * 16 {
            Some(4)
        } else {
            None
        };
        if let Some(fold) = config.pixel_unshuffle {
            if 1 << upsamplings < fold {
                return Err(DetectError::Inconsistent(format!(
                    "a pixel-unshuffling RRDBNet (by {fold}) that enlarges only {}×",
                    1 << upsamplings
                )));
            }
        }
        Ok(Some(config))
    }

    /// Our module name for the file's tensor `name` (basicsr's names, which say what each
    /// layer is): `conv_first`, `body.N.rdbK.convJ`, `body.N.rdbK.conv1x1`, `conv_body`,
    /// `conv_upN`, `conv_hr`, `conv_last`.
    pub fn module_name(&self, name: &str) -> Option<String> {
        match self.layout {
            EsrganLayout::Old => self.old_module_name(name),
            EsrganLayout::Named => named_module_name(name),
        }
    }

    fn old_module_name(&self, name: &str) -> Option<String> {
        let (index, rest) = leading_index(name.strip_prefix("model.")?, MAX_OLD_INDEX)?;
        let up = self.upsamplings;
        let layer = match index {
            0 => "conv_first".to_string(),
            1 => {
                let (block, rest) = leading_index(rest.strip_prefix("sub.")?, MAX_BLOCKS)?;
                if block == self.blocks {
                    return parameter(rest).map(|kind| format!("conv_body.{kind}"));
                }
                // RDBk.convj.0.{weight,bias} or RDBk.conv1x1.weight
                let (dense, rest) = rest.strip_prefix("RDB")?.split_once('.')?;
                let rest = rest.strip_prefix("conv")?;
                let (conv, rest) = rest.split_once('.')?;
                let kind = match conv {
                    "1x1" => parameter(rest)?,
                    _ => parameter(rest.strip_prefix("0.")?)?,
                };
                return dense_name(block, dense, conv, kind);
            }
            i if i % 3 == 0 && (1..=up).contains(&(i / 3)) => format!("conv_up{}", i / 3),
            i if i == 3 * up + 2 => "conv_hr".to_string(),
            i if i == 3 * up + 4 => "conv_last".to_string(),
            _ => return None,
        };
        parameter(rest).map(|kind| format!("{layer}.{kind}"))
    }
}

type Result2<T> = std::result::Result<T, DetectError>;

/// `weight` or `bias`, and nothing after it.
fn parameter(rest: &str) -> Option<&str> {
    matches!(rest, "weight" | "bias").then_some(rest)
}

/// `body.{block}.rdb{dense}.conv{conv}.{kind}`, for dense blocks 1–3 and convolutions 1–5 / 1x1.
fn dense_name(block: usize, dense: &str, conv: &str, kind: &str) -> Option<String> {
    let dense_ok = matches!(dense, "1" | "2" | "3");
    let conv_ok = matches!(conv, "1" | "2" | "3" | "4" | "5" | "1x1");
    (dense_ok && conv_ok).then(|| format!("body.{block}.rdb{dense}.conv{conv}.{kind}"))
}

/// basicsr's and BSRGAN's names onto ours (spandrel accepts either spelling of each layer).
fn named_module_name(name: &str) -> Option<String> {
    let (layer, kind) = name.rsplit_once('.')?;
    let kind = parameter(kind)?;
    let ours = match layer {
        "conv_first" | "conv_last" | "conv_hr" | "conv_body" => layer.to_string(),
        "HRconv" => "conv_hr".to_string(),
        "trunk_conv" => "conv_body".to_string(),
        _ => {
            if let Some(n) = layer
                .strip_prefix("conv_up")
                .or_else(|| layer.strip_prefix("upconv"))
            {
                let (n, rest) = leading_index(n, MAX_UPSAMPLINGS)?;
                return (n >= 1 && rest.is_empty()).then(|| format!("conv_up{n}.{kind}"));
            }
            let (rest, dense_prefix) = if let Some(rest) = layer.strip_prefix("body.") {
                (rest, ".rdb")
            } else {
                (layer.strip_prefix("RRDB_trunk.")?, ".RDB")
            };
            let (block, rest) = leading_index(rest, MAX_BLOCKS)?;
            let rest = format!(".{rest}");
            let rest = rest.strip_prefix(dense_prefix)?;
            let (dense, conv) = rest.split_once(".conv")?;
            return dense_name(block, dense, conv, kind);
        }
    };
    Some(format!("{ours}.{kind}"))
}

/// Blocks and upsamplings of an old-layout file, as spandrel counts them: the `model`
/// sequence is 5 layers plus 3 per upsampling, `model.1.sub` the blocks plus one convolution.
fn old_layout_counts(shapes: &TensorShapes) -> Result2<(usize, usize)> {
    let mut sequence = 0;
    let mut sub = 0;
    for name in shapes.keys() {
        let Some(rest) = name.strip_prefix("model.") else {
            continue;
        };
        let (index, rest) = leading_index(rest, MAX_OLD_INDEX).ok_or_else(|| {
            DetectError::Inconsistent(format!(
                "tensor {name}: not a layer index of an RRDBNet up to ×{}",
                1 << MAX_UPSAMPLINGS
            ))
        })?;
        sequence = sequence.max(index + 1);
        if let Some(rest) = rest.strip_prefix("sub.") {
            let (block, _) =
                leading_index(rest, MAX_BLOCKS).ok_or_else(|| DetectError::IndexTooLarge {
                    name: name.clone(),
                    what: "block",
                    limit: MAX_BLOCKS,
                })?;
            sub = sub.max(block + 1);
        }
    }
    if sequence < 5 || sub < 2 {
        return Err(DetectError::Inconsistent(
            "an RRDBNet without its final convolutions".into(),
        ));
    }
    Ok((sub - 1, (sequence - 5) / 3))
}

fn named_layout_counts(shapes: &TensorShapes) -> Result2<(usize, usize)> {
    let mut blocks = 0;
    let mut upsamplings = 0;
    for name in shapes.keys() {
        if let Some(rest) = name
            .strip_prefix("body.")
            .or_else(|| name.strip_prefix("RRDB_trunk."))
        {
            let (block, _) =
                leading_index(rest, MAX_BLOCKS).ok_or_else(|| DetectError::IndexTooLarge {
                    name: name.clone(),
                    what: "block",
                    limit: MAX_BLOCKS,
                })?;
            blocks = blocks.max(block + 1);
        }
        if let Some(rest) = name
            .strip_prefix("conv_up")
            .or_else(|| name.strip_prefix("upconv"))
        {
            let (n, _) =
                leading_index(rest, MAX_UPSAMPLINGS).ok_or_else(|| DetectError::IndexTooLarge {
                    name: name.clone(),
                    what: "upsampling",
                    limit: MAX_UPSAMPLINGS,
                })?;
            upsamplings = upsamplings.max(n);
        }
    }
    Ok((blocks, upsamplings))
}

fn leaky_relu(xs: &Tensor) -> Result<Tensor> {
    // max(x, 0.2·x) is x for x ≥ 0 and 0.2·x below: PyTorch's LeakyReLU, bit for bit.
    xs.maximum(&(xs * LEAKY_SLOPE)?)
}

/// `x·0.2 + residual`, in that order, as PyTorch evaluates `x * 0.2 + x`.
fn scaled_residual(xs: &Tensor, residual: &Tensor) -> Result<Tensor> {
    (xs * RESIDUAL_SCALE)? + residual
}

/// Five 3×3 convolutions, each reading the block input and every earlier output.
struct DenseBlock {
    convs: [Conv2d; 5],
    /// ESRGAN+: a 1×1 convolution of the input added to the second output, which is also
    /// added to the fourth.
    shortcut: Option<Conv2d>,
}

impl DenseBlock {
    fn new(features: usize, growth: usize, plus: bool, vb: VarBuilder) -> Result<Self> {
        let conv = |i: usize, out: usize| {
            conv3x3(features + (i - 1) * growth, out, vb.pp(format!("conv{i}")))
        };
        Ok(Self {
            convs: [
                conv(1, growth)?,
                conv(2, growth)?,
                conv(3, growth)?,
                conv(4, growth)?,
                conv(5, features)?,
            ],
            shortcut: if plus {
                Some(conv2d_no_bias(
                    features,
                    growth,
                    1,
                    Default::default(),
                    vb.pp("conv1x1"),
                )?)
            } else {
                None
            },
        })
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let [conv1, conv2, conv3, conv4, conv5] = &self.convs;
        let x1 = leaky_relu(&conv1.forward(xs)?)?;
        let mut x2 = leaky_relu(&conv2.forward(&Tensor::cat(&[xs, &x1], 1)?)?)?;
        if let Some(shortcut) = &self.shortcut {
            x2 = (x2 + shortcut.forward(xs)?)?;
        }
        let x3 = leaky_relu(&conv3.forward(&Tensor::cat(&[xs, &x1, &x2], 1)?)?)?;
        let mut x4 = leaky_relu(&conv4.forward(&Tensor::cat(&[xs, &x1, &x2, &x3], 1)?)?)?;
        if self.shortcut.is_some() {
            x4 = (x4 + &x2)?;
        }
        let x5 = conv5.forward(&Tensor::cat(&[xs, &x1, &x2, &x3, &x4], 1)?)?;
        scaled_residual(&x5, xs)
    }
}

/// Residual in residual dense block: three dense blocks and a scaled skip around them.
struct Rrdb {
    dense: [DenseBlock; 3],
}

impl Rrdb {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let mut out = xs.clone();
        for block in &self.dense {
            out = block.forward(&out)?;
        }
        scaled_residual(&out, xs)
    }
}

pub struct Esrgan {
    config: EsrganConfig,
    conv_first: Conv2d,
    body: Vec<Rrdb>,
    conv_body: Conv2d,
    conv_up: Vec<Conv2d>,
    conv_hr: Conv2d,
    conv_last: Conv2d,
}

impl Esrgan {
    /// Built from our module names ([`EsrganConfig::module_name`]).
    pub fn new(config: &EsrganConfig, vb: VarBuilder) -> Result<Self> {
        let features = config.features;
        let body = (0..config.blocks)
            .map(|i| {
                let vb = vb.pp(format!("body.{i}"));
                let dense = |k: usize| {
                    DenseBlock::new(
                        features,
                        config.growth_channels,
                        config.plus,
                        vb.pp(format!("rdb{k}")),
                    )
                };
                Ok(Rrdb {
                    dense: [dense(1)?, dense(2)?, dense(3)?],
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let conv_up = (1..=config.upsamplings)
            .map(|n| conv3x3(features, features, vb.pp(format!("conv_up{n}"))))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            config: config.clone(),
            conv_first: conv3x3(config.in_channels, features, vb.pp("conv_first"))?,
            body,
            conv_body: conv3x3(features, features, vb.pp("conv_body"))?,
            conv_up,
            conv_hr: conv3x3(features, features, vb.pp("conv_hr"))?,
            conv_last: conv3x3(features, config.out_channels, vb.pp("conv_last"))?,
        })
    }

    pub fn config(&self) -> &EsrganConfig {
        &self.config
    }

    /// spandrel's `RRDBNet.forward`: `(batch, image channels, h, w)` in, `scale` times larger out.
    pub fn forward(&self, image: &Tensor) -> Result<Tensor> {
        let (_, _, height, width) = image.dims4()?;
        let xs = match self.config.pixel_unshuffle {
            Some(fold) => {
                let padded = pad_right_bottom(
                    image,
                    height.div_ceil(fold) * fold,
                    width.div_ceil(fold) * fold,
                )?;
                pixel_unshuffle(&padded, fold)?
            }
            None => image.clone(),
        };
        let features = self.conv_first.forward(&xs)?;
        let mut trunk = features.clone();
        for block in &self.body {
            trunk = block.forward(&trunk)?;
        }
        let mut xs = (features + self.conv_body.forward(&trunk)?)?;
        for conv in &self.conv_up {
            let (_, _, h, w) = xs.dims4()?;
            xs = leaky_relu(&conv.forward(&xs.upsample_nearest2d(2 * h, 2 * w)?)?)?;
        }
        let out = self
            .conv_last
            .forward(&leaky_relu(&self.conv_hr.forward(&xs)?)?)?;
        match self.config.pixel_unshuffle {
            Some(_) => {
                let scale = self.config.scale();
                out.narrow(2, 0, height * scale)?
                    .narrow(3, 0, width * scale)
            }
            None => Ok(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(layout: EsrganLayout, blocks: usize, upsamplings: usize) -> EsrganConfig {
        EsrganConfig {
            layout,
            in_channels: 3,
            out_channels: 3,
            features: 64,
            growth_channels: 32,
            blocks,
            upsamplings,
            pixel_unshuffle: None,
            plus: false,
        }
    }

    #[test]
    fn old_names_map_onto_module_names() {
        let old = config(EsrganLayout::Old, 23, 2);
        let cases = [
            ("model.0.weight", Some("conv_first.weight")),
            (
                "model.1.sub.22.RDB3.conv5.0.bias",
                Some("body.22.rdb3.conv5.bias"),
            ),
            (
                "model.1.sub.0.RDB1.conv1x1.weight",
                Some("body.0.rdb1.conv1x1.weight"),
            ),
            ("model.1.sub.23.weight", Some("conv_body.weight")),
            ("model.3.weight", Some("conv_up1.weight")),
            ("model.6.bias", Some("conv_up2.bias")),
            ("model.8.weight", Some("conv_hr.weight")),
            ("model.10.bias", Some("conv_last.bias")),
            ("model.9.weight", None),
            ("model.1.sub.24.weight", None),
            ("model.1.sub.0.RDB4.conv1.0.weight", None),
            ("model.1.sub.0.RDB1.conv1.weight", None),
        ];
        for (name, expected) in cases {
            assert_eq!(old.module_name(name).as_deref(), expected, "{name}");
        }
        let named = config(EsrganLayout::Named, 23, 2);
        let cases = [
            ("conv_first.weight", Some("conv_first.weight")),
            ("body.5.rdb2.conv3.weight", Some("body.5.rdb2.conv3.weight")),
            (
                "RRDB_trunk.5.RDB2.conv3.bias",
                Some("body.5.rdb2.conv3.bias"),
            ),
            ("trunk_conv.weight", Some("conv_body.weight")),
            ("upconv2.weight", Some("conv_up2.weight")),
            ("conv_up1.bias", Some("conv_up1.bias")),
            ("HRconv.bias", Some("conv_hr.bias")),
            ("conv_up9.bias", None),
            ("body.5.rdb2.conv3.running_mean", None),
        ];
        for (name, expected) in cases {
            assert_eq!(named.module_name(name).as_deref(), expected, "{name}");
        }
    }

    #[test]
    fn counts_and_sizes_are_bounded() {
        let mut shapes = TensorShapes::new();
        shapes.insert("model.0.weight".into(), vec![64, 3, 3, 3]);
        shapes.insert(
            "model.1.sub.0.RDB1.conv1.0.weight".into(),
            vec![32, 64, 3, 3],
        );
        shapes.insert("model.1.sub.100000.weight".into(), vec![64, 64, 3, 3]);
        shapes.insert("model.4.weight".into(), vec![3, 64, 3, 3]);
        let err = EsrganConfig::detect(&shapes).unwrap_err();
        assert!(matches!(err, DetectError::IndexTooLarge { .. }), "{err}");

        shapes.remove("model.1.sub.100000.weight");
        shapes.insert("model.1.sub.1.weight".into(), vec![64, 64, 3, 3]);
        let detected = EsrganConfig::detect(&shapes).unwrap().unwrap();
        assert_eq!((detected.blocks, detected.scale()), (1, 1));
        shapes.insert("model.0.weight".into(), vec![1 << 40, 3, 3, 3]);
        let err = EsrganConfig::detect(&shapes).unwrap_err();
        assert!(err.to_string().contains("feature count"), "{err}");
    }
}
