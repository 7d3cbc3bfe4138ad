//! diffusers' `AutoencoderTiny`: TAESD (SD 1/2), TAESDXL and the like — a VAE of plain 3×3
//! convolutions and ReLUs, ~1 M parameters a side, for previews and fast decodes.
//!
//! Each side is a sequence of layers: convolutions, residual blocks (three convolutions and a
//! skip) and, in the decoder, a ReLU after the first convolution and ×2 nearest upsamplings
//! between levels. The levels and their block counts (`num_decoder_blocks`,
//! `num_encoder_blocks`) are read from which `layers.N` hold a block and which a
//! convolution, so diffusers folders and the original `taesd_decoder.safetensors` files
//! (whose decoder counts one more layer, a clamp, first) are built the same way.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Conv2dConfig, VarBuilder};

use crate::kernels::conv::{conv2d, conv2d_no_bias, Conv2d};

const MAX_LEVELS: usize = 8;
const MAX_BLOCKS_PER_LEVEL: usize = 16;
const MAX_CHANNELS: usize = 1024;
/// Highest `layers.N` index of a network within the limits above.
const MAX_LAYER_INDEX: usize = 2 * MAX_LEVELS * (MAX_BLOCKS_PER_LEVEL + 2) + 2;

/// Why a file's tensors are not a tiny autoencoder half we can build.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TinyVaeError {
    #[error("no {0} layers (layers.N tensors) found")]
    Missing(&'static str),
    #[error("{0}")]
    Unexpected(String),
}

/// One side's layout, as diffusers' `num_*_blocks` and `*_block_out_channels` describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TinyVaeConfig {
    /// Channels of every block (diffusers requires them equal across levels).
    pub channels: usize,
    /// Residual blocks per level.
    pub blocks: Vec<usize>,
    /// Latent channels (decoder input, encoder output).
    pub latent_channels: usize,
    /// Image channels (decoder output, encoder input).
    pub image_channels: usize,
}

/// What occupies `layers.N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layer {
    Conv,
    Block,
}

/// What each `layers.N` under `prefix` (e.g. `decoder.layers.`) holds, by index.
fn layers(
    names: &[(&str, &[usize])],
    prefix: &str,
) -> std::result::Result<Vec<Option<Layer>>, TinyVaeError> {
    let mut found: Vec<Option<Layer>> = Vec::new();
    for (name, _) in names {
        let Some(rest) = name.strip_prefix(prefix) else {
            continue;
        };
        let (index, rest) = rest.split_once('.').unwrap_or((rest, ""));
        let parsed = (index.len() <= 4)
            .then(|| index.parse::<usize>().ok())
            .flatten();
        let index = match parsed {
            Some(index) if index <= MAX_LAYER_INDEX => index,
            _ => {
                return Err(TinyVaeError::Unexpected(format!(
                    "tensor {name}: layer index beyond any tiny autoencoder"
                )))
            }
        };
        let layer = if rest.starts_with("conv.") {
            Layer::Block
        } else if rest == "weight" || rest == "bias" {
            Layer::Conv
        } else {
            continue;
        };
        if found.len() <= index {
            found.resize(index + 1, None);
        }
        found[index] = Some(layer);
    }
    Ok(found)
}

fn shape_of<'a>(names: &[(&str, &'a [usize])], name: &str) -> Option<&'a [usize]> {
    names.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

impl TinyVaeConfig {
    /// The decoder under `prefix` (`decoder.layers.` in diffusers files, empty in
    /// `taesd_decoder.safetensors`), with `offset` parameterless layers before its first
    /// convolution (0 in diffusers, 1 — the clamp — in the original files).
    pub fn detect_decoder(
        names: &[(&str, &[usize])],
        prefix: &str,
        offset: usize,
    ) -> std::result::Result<Self, TinyVaeError> {
        let found = layers(names, prefix)?;
        // conv, relu, then per level: blocks, [upsample], conv.
        let sequence: Vec<Option<Layer>> = found.into_iter().skip(offset).collect();
        if sequence.first() != Some(&Some(Layer::Conv)) {
            return Err(TinyVaeError::Missing("decoder"));
        }
        let mut blocks = vec![0];
        for layer in sequence.iter().skip(2).flatten() {
            match layer {
                Layer::Block => *blocks.last_mut().expect("never empty") += 1,
                Layer::Conv => blocks.push(0),
            }
        }
        blocks.pop();
        Self::checked(
            names,
            prefix,
            offset,
            blocks,
            sequence.len() - 1 + offset,
            true,
        )
    }

    /// The encoder under `prefix` (`encoder.layers.` or empty): per level a convolution
    /// (strided from the second level on) and blocks, then a last convolution.
    pub fn detect_encoder(
        names: &[(&str, &[usize])],
        prefix: &str,
    ) -> std::result::Result<Self, TinyVaeError> {
        let found = layers(names, prefix)?;
        if found.first() != Some(&Some(Layer::Conv)) {
            return Err(TinyVaeError::Missing("encoder"));
        }
        let mut blocks: Vec<usize> = Vec::new();
        for layer in found.iter().flatten() {
            match layer {
                Layer::Conv => blocks.push(0),
                Layer::Block => *blocks.last_mut().expect("starts with a conv") += 1,
            }
        }
        blocks.pop();
        Self::checked(names, prefix, 0, blocks, found.len() - 1, false)
    }

    fn checked(
        names: &[(&str, &[usize])],
        prefix: &str,
        first: usize,
        blocks: Vec<usize>,
        last: usize,
        decoder: bool,
    ) -> std::result::Result<Self, TinyVaeError> {
        let conv = |index: usize| {
            let name = format!("{prefix}{index}.weight");
            match shape_of(names, &name) {
                Some(&[out, input, 3, 3]) => Ok((out, input)),
                other => Err(TinyVaeError::Unexpected(format!(
                    "tensor {name} has shape {other:?}, expected a 3×3 convolution"
                ))),
            }
        };
        let (channels, first_in) = conv(first)?;
        let (last_out, _) = conv(last)?;
        if blocks.is_empty() || blocks.len() > MAX_LEVELS {
            return Err(TinyVaeError::Unexpected(format!(
                "{} levels; a tiny autoencoder has 1 to {MAX_LEVELS}",
                blocks.len()
            )));
        }
        if blocks.iter().any(|&b| b > MAX_BLOCKS_PER_LEVEL) || channels > MAX_CHANNELS {
            return Err(TinyVaeError::Unexpected(format!(
                "{blocks:?} blocks of {channels} channels: more than any tiny autoencoder"
            )));
        }
        let (latent_channels, image_channels) = if decoder {
            (first_in, last_out)
        } else {
            (last_out, first_in)
        };
        if latent_channels > 64 || image_channels > 64 {
            return Err(TinyVaeError::Unexpected(format!(
                "{latent_channels} latent and {image_channels} image channels: more than any tiny autoencoder"
            )));
        }
        Ok(Self {
            channels,
            blocks,
            latent_channels,
            image_channels,
        })
    }
}

fn conv3x3(
    input: usize,
    output: usize,
    bias: bool,
    stride: usize,
    vb: VarBuilder,
) -> Result<Conv2d> {
    let config = Conv2dConfig {
        padding: 1,
        stride,
        ..Default::default()
    };
    if bias {
        conv2d(input, output, 3, config, vb)
    } else {
        conv2d_no_bias(input, output, 3, config, vb)
    }
}

/// diffusers' `AutoencoderTinyBlock` with equal channels: `relu(convs(x) + x)`.
struct Block {
    convs: [Conv2d; 3],
}

impl Block {
    fn new(channels: usize, vb: VarBuilder) -> Result<Self> {
        let vb = vb.pp("conv");
        Ok(Self {
            convs: [
                conv3x3(channels, channels, true, 1, vb.pp(0))?,
                conv3x3(channels, channels, true, 1, vb.pp(2))?,
                conv3x3(channels, channels, true, 1, vb.pp(4))?,
            ],
        })
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let [a, b, c] = &self.convs;
        let hidden = a.forward(xs)?.relu()?;
        let hidden = b.forward(&hidden)?.relu()?;
        (c.forward(&hidden)? + xs)?.relu()
    }
}

enum Step {
    Conv(Conv2d),
    Block(Block),
    Relu,
    Upsample,
}

fn run(steps: &[Step], xs: &Tensor) -> Result<Tensor> {
    let mut xs = xs.clone();
    for step in steps {
        xs = match step {
            Step::Conv(conv) => conv.forward(&xs)?,
            Step::Block(block) => block.forward(&xs)?,
            Step::Relu => xs.relu()?,
            Step::Upsample => {
                let (_, _, h, w) = xs.dims4()?;
                xs.upsample_nearest2d(2 * h, 2 * w)?
            }
        };
    }
    Ok(xs)
}

/// diffusers' `DecoderTiny`: latents in, pictures in [-1, 1] (roughly) out.
pub struct TinyDecoder {
    steps: Vec<Step>,
}

impl TinyDecoder {
    /// `vb` holds `layers.N` as diffusers numbers them (`decoder.` in a diffusers file).
    pub fn new(config: &TinyVaeConfig, vb: VarBuilder) -> Result<Self> {
        let channels = config.channels;
        let mut steps = vec![
            Step::Conv(conv3x3(
                config.latent_channels,
                channels,
                true,
                1,
                vb.pp(0),
            )?),
            Step::Relu,
        ];
        let mut index = 2;
        let levels = config.blocks.len();
        for (level, &blocks) in config.blocks.iter().enumerate() {
            for _ in 0..blocks {
                steps.push(Step::Block(Block::new(channels, vb.pp(index))?));
                index += 1;
            }
            let last = level + 1 == levels;
            if !last {
                steps.push(Step::Upsample);
                index += 1;
            }
            let out = if last {
                config.image_channels
            } else {
                channels
            };
            steps.push(Step::Conv(conv3x3(channels, out, last, 1, vb.pp(index))?));
            index += 1;
        }
        Ok(Self { steps })
    }

    pub fn forward(&self, latents: &Tensor) -> Result<Tensor> {
        // The clamp of `DecoderTiny.forward`: tanh(x / 3) · 3.
        let xs = ((latents / 3.0)?.tanh()? * 3.0)?;
        let xs = run(&self.steps, &xs)?;
        // TAESD decodes to [0, 1]; diffusers maps it to [-1, 1] like its other VAEs.
        (xs * 2.0)? - 1.0
    }
}

/// diffusers' `EncoderTiny`: pictures in [-1, 1] in, latents out (no scaling factor: 1.0).
pub struct TinyEncoder {
    steps: Vec<Step>,
}

impl TinyEncoder {
    pub fn new(config: &TinyVaeConfig, vb: VarBuilder) -> Result<Self> {
        let channels = config.channels;
        let mut steps = Vec::new();
        let mut index = 0;
        for (level, &blocks) in config.blocks.iter().enumerate() {
            steps.push(Step::Conv(if level == 0 {
                conv3x3(config.image_channels, channels, true, 1, vb.pp(index))?
            } else {
                conv3x3(channels, channels, false, 2, vb.pp(index))?
            }));
            index += 1;
            for _ in 0..blocks {
                steps.push(Step::Block(Block::new(channels, vb.pp(index))?));
                index += 1;
            }
        }
        steps.push(Step::Conv(conv3x3(
            channels,
            config.latent_channels,
            true,
            1,
            vb.pp(index),
        )?));
        Ok(Self { steps })
    }

    pub fn forward(&self, image: &Tensor) -> Result<Tensor> {
        // diffusers' [-1, 1] to TAESD's [0, 1].
        let xs = ((image + 1.0)? / 2.0)?;
        run(&self.steps, &xs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(out: usize, input: usize) -> Vec<usize> {
        vec![out, input, 3, 3]
    }

    #[test]
    fn levels_are_read_from_the_layer_sequence() {
        // The original TAESD decoder: clamp, conv, relu, 3 blocks, up, conv, 3, up, conv, 3, up, conv, 1, conv.
        let mut shapes: Vec<(String, Vec<usize>)> = vec![("1.weight".into(), conv(64, 4))];
        let mut index = 3;
        for (level, blocks) in [3, 3, 3, 1].into_iter().enumerate() {
            for _ in 0..blocks {
                shapes.push((format!("{index}.conv.0.weight"), conv(64, 64)));
                index += 1;
            }
            if level < 3 {
                index += 1;
            }
            let out = if level < 3 { 64 } else { 3 };
            shapes.push((format!("{index}.weight"), conv(out, 64)));
            index += 1;
        }
        assert_eq!(index, 20);
        let names: Vec<(&str, &[usize])> = shapes
            .iter()
            .map(|(n, s)| (n.as_str(), s.as_slice()))
            .collect();
        let config = TinyVaeConfig::detect_decoder(&names, "", 1).unwrap();
        assert_eq!(
            config,
            TinyVaeConfig {
                channels: 64,
                blocks: vec![3, 3, 3, 1],
                latent_channels: 4,
                image_channels: 3,
            }
        );
        let huge = [("99999.weight", &[64usize, 4, 3, 3][..])];
        assert!(TinyVaeConfig::detect_decoder(&huge, "", 1).is_err());
    }
}
