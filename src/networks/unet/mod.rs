//! `UNet2DConditionModel`, built from a diffusers `unet/config.json`. Its down half
//! ([`encoder`]) is shared with the ControlNet network.

mod config;
pub(crate) mod encoder;
mod transformer;

use candle_core::{Module, Result, Tensor};
use candle_nn::{Conv2dConfig, VarBuilder};

use crate::kernels::conv::{conv2d, Conv2d};
use crate::kernels::group_norm::{group_norm, GroupNorm};
use crate::networks::layers::Upsample2D;
use config::has_cross_attention;
pub use config::{PerBlock, UNetConfig, MAX_SAMPLE_SIZE};
pub use encoder::AddedConditions;
use encoder::{BlockBuilder, Encoder, Layer};
pub use transformer::Attention;

struct UpBlock {
    layers: Vec<Layer>,
    upsampler: Option<Upsample2D>,
}

/// What image conditioning adds to the UNet. ControlNets: one residual per skip connection of
/// the down path and one for the middle block's output (diffusers'
/// `down_block_additional_residuals` and `mid_block_additional_residual`). T2I-Adapters: feature
/// maps added inside the down blocks, first to last (`down_intrablock_additional_residuals`).
#[derive(Default)]
pub struct ControlResiduals {
    /// Empty without ControlNets.
    pub down: Vec<Tensor>,
    pub mid: Option<Tensor>,
    /// Empty without T2I-Adapters.
    pub intrablock: Vec<Tensor>,
}

pub struct UNet2DConditionModel {
    /// 4 for text-to-image models; 9 for inpainting ones (latents, mask, masked image).
    in_channels: usize,
    /// The text embeddings' width (first block's `cross_attention_dim`).
    context_dim: usize,
    /// Each down block's output channels (what T2I-Adapter features must match).
    block_channels: Vec<usize>,
    encoder: Encoder,
    up_blocks: Vec<UpBlock>,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
}

impl UNet2DConditionModel {
    /// The input channels: 4 (latents) or 9 (inpainting: latents, mask, masked image).
    pub fn in_channels(&self) -> usize {
        self.in_channels
    }

    pub fn new(cfg: &UNetConfig, vb: VarBuilder) -> Result<Self> {
        cfg.check_supported()?;
        let builder = BlockBuilder::new(cfg)?;
        let encoder = Encoder::new(cfg, &builder, &vb)?;
        let channels = &cfg.block_out_channels;
        let blocks = channels.len();
        let last = blocks - 1;
        let groups = cfg.norm_num_groups;
        let eps = cfg.norm_eps;

        let mut up_blocks = Vec::with_capacity(blocks);
        let mut out_channels = channels[last];
        for (i, block_type) in cfg.up_block_types.iter().enumerate() {
            let cross = has_cross_attention(block_type, "up")?;
            let block = last - i;
            let prev_out_channels = out_channels;
            out_channels = channels[block];
            let in_channels = channels[block.saturating_sub(1)];
            let num_layers = builder.layers_per_block[block] + 1;
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
                    builder.layer(
                        resnet_in + skip_channels,
                        out_channels,
                        block,
                        cross,
                        j,
                        &vb_block,
                    )
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
            context_dim: builder.context_dim(),
            block_channels: channels.clone(),
            encoder,
            up_blocks,
            conv_norm_out: group_norm(groups, channels[0], eps, vb.pp("conv_norm_out"))?,
            conv_out: conv2d(
                channels[0],
                cfg.out_channels,
                3,
                conv_out_config,
                vb.pp("conv_out"),
            )?,
        })
    }

    pub fn needs_added_conditions(&self) -> bool {
        self.encoder.needs_added_conditions()
    }

    /// Each down block's output channels, first to last.
    pub fn block_channels(&self) -> &[usize] {
        &self.block_channels
    }

    /// The width of the text embeddings it attends to.
    pub fn context_dim(&self) -> usize {
        self.context_dim
    }

    /// Predicts noise (or v / x0, per the scheduler's prediction type) for a batch of latents.
    pub fn forward(
        &self,
        sample: &Tensor,
        timestep: f64,
        encoder_hidden_states: &Tensor,
        added: Option<&AddedConditions>,
    ) -> Result<Tensor> {
        self.forward_with_control(sample, timestep, encoder_hidden_states, added, None)
    }

    /// As [`Self::forward`], with ControlNet residuals added to the skip connections and the
    /// middle block's output.
    pub fn forward_with_control(
        &self,
        sample: &Tensor,
        timestep: f64,
        encoder_hidden_states: &Tensor,
        added: Option<&AddedConditions>,
        control: Option<&ControlResiduals>,
    ) -> Result<Tensor> {
        // 1. Time embedding (plus, for SDXL, the pooled text and size/crop ids).
        let temb = self
            .encoder
            .embed(timestep, sample.dim(0)?, added, sample.device())?;
        let context = encoder_hidden_states;

        // 2. Down path: every block's output is kept for the skip connections.
        let xs = self.encoder.conv_in.forward(sample)?;
        let mut features = control.map_or([].iter(), |c| c.intrablock.iter());
        let (xs, mut skips) = self.encoder.down(xs, &temb, context, &mut features)?;

        // 3. Middle block (SDXL adapters' last feature map goes on its output, as diffusers
        // adds one there when its shape fits).
        let mut xs = self.encoder.mid(&xs, &temb, context)?;
        if let Some(feature) = features.next() {
            if feature.dims() == xs.dims() {
                xs = (xs + feature)?;
            }
        }
        if let Some(control) = control.filter(|c| !c.down.is_empty()) {
            if control.down.len() != skips.len() {
                candle_core::bail!(
                    "the ControlNet gives {} residuals for the UNet's {} skip connections",
                    control.down.len(),
                    skips.len()
                );
            }
            for (skip, residual) in skips.iter_mut().zip(&control.down) {
                *skip = (&*skip + residual)?;
            }
            if let Some(mid) = &control.mid {
                xs = (xs + mid)?;
            }
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
    use super::encoder::timestep_features;
    use super::*;
    use candle_core::{DType, Device};

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
