//! Control units in the sampling loop, as diffusers' ControlNet and T2I-Adapter pipelines run
//! them. ControlNets: each unit's control image prepared once, its residuals at every step it
//! is active (`controlnet_keep`), several units summed (`MultiControlNetModel`), guess mode on
//! the conditional half of guidance only. T2I-Adapters: the feature maps made once from the
//! image and scaled (`adapter_conditioning_scale`), added at the steps the unit acts on (SDXL's
//! `adapter_conditioning_factor` is the end), several summed (`MultiAdapter`).

use candle_core::Tensor;

use crate::networks::controlnet::{ControlMode, ControlNetModel};
use crate::networks::t2i_adapter::{AdapterKind, T2IAdapter};
use crate::networks::unet::{AddedConditions, ControlResiduals};
use crate::sampling::pipeline::{
    Conditioning, ControlNetwork, ControlUnit, DiffusionPipeline, GenerateError, GenerationRequest,
    RgbImage,
};

/// A unit's input, made once before the loop.
pub(crate) enum PreparedControl {
    /// A ControlNet's image, `(batch, 3, H, W)` in [0, 1].
    Image(Tensor),
    /// A T2I-Adapter's feature maps, scaled, doubled for guidance.
    Features(Vec<Tensor>),
}

impl DiffusionPipeline {
    /// A ControlNet or T2I-Adapter made for this model, with a usable image and weights.
    pub(crate) fn check_control(
        &self,
        n: usize,
        unit: &ControlUnit,
        request: &GenerationRequest,
    ) -> Result<(), GenerateError> {
        let what = match unit.net {
            ControlNetwork::ControlNet(_) => "ControlNet",
            ControlNetwork::Adapter(_) => "T2I-Adapter",
        };
        let bad = |why: String| Err(GenerateError::InvalidRequest(format!("{what} {n}: {why}")));
        let problem = match &unit.net {
            ControlNetwork::ControlNet(net) => self.controlnet_misfit(net),
            ControlNetwork::Adapter(adapter) => self.adapter_misfit(adapter, unit, request),
        };
        if let Some(why) = problem {
            return bad(why);
        }
        if !(unit.scale.is_finite() && (0.0..=10.0).contains(&unit.scale)) {
            return bad(format!("weight {} must be between 0 and 10", unit.scale));
        }
        if !(0.0..=1.0).contains(&unit.start)
            || !(0.0..=1.0).contains(&unit.end)
            || unit.start >= unit.end
        {
            return bad(format!(
                "start {} and end {} must satisfy 0 ≤ start < end ≤ 1",
                unit.start, unit.end
            ));
        }
        let image = &unit.image;
        if image.width == 0
            || image.height == 0
            || image.pixels.len() != image.width * image.height * 3
        {
            return bad("the control image has no pixels".into());
        }
        Ok(())
    }

    fn controlnet_misfit(&self, net: &ControlNetModel) -> Option<String> {
        if net.needs_added_conditions() != self.unet.needs_added_conditions()
            || net.context_dim() != self.unet.context_dim()
        {
            return Some(format!(
                "it is made for {} models and this model is {}; choose a ControlNet for this model's family",
                family(net.needs_added_conditions(), net.context_dim()),
                family(self.unet.needs_added_conditions(), self.unet.context_dim())
            ));
        }
        if net.downscale() != self.vae_scale_factor {
            return Some(format!(
                "it reads control images at 1/{} scale and this model's latents are 1/{}",
                net.downscale(),
                self.vae_scale_factor
            ));
        }
        None
    }

    fn adapter_misfit(
        &self,
        adapter: &T2IAdapter,
        unit: &ControlUnit,
        request: &GenerationRequest,
    ) -> Option<String> {
        let sdxl = self.unet.needs_added_conditions();
        let xl_adapter = adapter.kind() == AdapterKind::FullXl;
        if xl_adapter != sdxl {
            return Some(format!(
                "it is made for {} models and this model is {}; choose an adapter for this model's family",
                if xl_adapter { "SDXL" } else { "SD 1.x/2.x" },
                family(sdxl, self.unet.context_dim())
            ));
        }
        // Feature i goes into down block i (the last one of an SDXL adapter onto the middle
        // block, whose channels are the last block's).
        let blocks = self.unet.block_channels();
        let fits = adapter
            .feature_channels()
            .iter()
            .enumerate()
            .all(|(i, c)| blocks.get(i).or(blocks.last()) == Some(c));
        if !fits {
            return Some(format!(
                "its feature maps have {:?} channels and this model's down blocks {:?}; choose an adapter for this model",
                adapter.feature_channels(),
                blocks
            ));
        }
        if unit.mode != ControlMode::Balanced {
            return Some(
                "control modes other than Balanced are ControlNet settings; T2I-Adapters have none"
                    .into(),
            );
        }
        let block = adapter.downscale();
        if !request.width.is_multiple_of(block) || !request.height.is_multiple_of(block) {
            return Some(format!(
                "it reads pictures in blocks of {block} pixels and the size is {}×{}; choose a width and height that are multiples of {block}",
                request.width, request.height
            ));
        }
        None
    }

    /// Each unit's input at the generation's size: a ControlNet's image as `(batch, 3, H, W)`
    /// in [0, 1], doubled for guidance unless the unit acts on the conditional half only; a
    /// T2I-Adapter's feature maps (diffusers' `_preprocess_adapter_image`: Lanczos-resized,
    /// /255, grey for one-channel adapters), scaled, doubled for guidance.
    pub(crate) fn prepare_controls(
        &self,
        request: &GenerationRequest,
        guided: bool,
    ) -> Result<Vec<PreparedControl>, GenerateError> {
        let double = |t: Tensor, both: bool| -> candle_core::Result<Tensor> {
            if both {
                Tensor::cat(&[&t, &t], 0)
            } else {
                Ok(t)
            }
        };
        request
            .controls
            .iter()
            .map(|unit| {
                let resized = || unit.image.resized(request.width, request.height);
                Ok(match &unit.net {
                    ControlNetwork::ControlNet(net) => {
                        let image = self.image_tensor(&resized().pixels, 3, request)?;
                        let both_halves = guided && !cond_half_only(net, unit);
                        PreparedControl::Image(double(image, both_halves)?)
                    }
                    ControlNetwork::Adapter(adapter) => {
                        let image = if adapter.in_channels() == 1 {
                            // Pillow's "L" picture, then resized (grey in all three channels
                            // resizes as the one channel would).
                            let grey = RgbImage {
                                pixels: unit
                                    .image
                                    .pixels
                                    .chunks_exact(3)
                                    .flat_map(|rgb| [pillow_luma(rgb); 3])
                                    .collect(),
                                ..unit.image.clone()
                            };
                            let grey = grey.resized(request.width, request.height);
                            let luma: Vec<u8> = grey.pixels.iter().step_by(3).copied().collect();
                            self.image_tensor(&luma, 1, request)?
                        } else {
                            self.image_tensor(&resized().pixels, 3, request)?
                        };
                        let features = adapter
                            .forward(&image)?
                            .into_iter()
                            .map(|feature| double((feature * unit.scale)?, guided))
                            .collect::<candle_core::Result<_>>()?;
                        PreparedControl::Features(features)
                    }
                })
            })
            .collect()
    }

    /// 8-bit pixels, `channels` per pixel, as `(1, channels, H, W)` in [0, 1].
    fn image_tensor(
        &self,
        pixels: &[u8],
        channels: usize,
        request: &GenerationRequest,
    ) -> candle_core::Result<Tensor> {
        let values: Vec<f32> = pixels.iter().map(|&p| p as f32 / 255.0).collect();
        Tensor::from_vec(
            values,
            (request.height, request.width, channels),
            &self.device,
        )?
        .permute((2, 0, 1))?
        .unsqueeze(0)?
        .contiguous()?
        .to_dtype(self.dtype)
    }

    /// What the units active at step `position.0` of `position.1` add to the UNet: ControlNet
    /// residuals (diffusers' `controlnet_keep`: a unit acts while `i / n >= start` and
    /// `(i + 1) / n <= end`) and adapter features (while `i >= n × start` and
    /// `i < int(n × end)`, SDXL's `adapter_conditioning_factor` test).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn control_residuals(
        &self,
        request: &GenerationRequest,
        prepared: &[PreparedControl],
        (step, steps): (usize, usize),
        scaled: &Tensor,
        timestep: f64,
        conditioning: &Conditioning,
        guided: bool,
    ) -> Result<Option<ControlResiduals>, GenerateError> {
        let mut total: Option<ControlResiduals> = None;
        let (i, n) = (step as f64, steps as f64);
        for (unit, input) in request.controls.iter().zip(prepared) {
            let (net, image) = match (&unit.net, input) {
                (ControlNetwork::ControlNet(net), PreparedControl::Image(image)) => (net, image),
                (ControlNetwork::Adapter(_), PreparedControl::Features(features)) => {
                    let keep = i >= n * unit.start && i < (n * unit.end).floor();
                    // At weight 0 the features are zeros; leaving them out is the same.
                    if keep && unit.scale != 0.0 {
                        let sum = total.get_or_insert_with(ControlResiduals::default);
                        sum.intrablock = add_all(&sum.intrablock, features)?;
                    }
                    continue;
                }
                _ => unreachable!("prepare_controls keeps each unit's kind"),
            };
            let keep = !(i / n < unit.start || (i + 1.0) / n > unit.end);
            // diffusers still runs a unit at weight 0 and adds zeros; skipping it is the same.
            if !keep || unit.scale == 0.0 {
                continue;
            }
            let half = guided && cond_half_only(net, unit);
            let residuals = if half {
                let cond = |t: &Tensor| t.narrow(0, 1, 1);
                let added = match &conditioning.added {
                    Some(added) => Some(AddedConditions {
                        text_embeds: cond(&added.text_embeds)?,
                        time_ids: cond(&added.time_ids)?,
                    }),
                    None => None,
                };
                let r = net.forward(
                    &cond(scaled)?,
                    timestep,
                    &cond(&conditioning.context)?,
                    added.as_ref(),
                    image,
                    unit.scale,
                    unit.mode,
                )?;
                // Zeros for the unconditional half.
                let pad = |t: Tensor| -> candle_core::Result<Tensor> {
                    Tensor::cat(&[&t.zeros_like()?, &t], 0)
                };
                ControlResiduals {
                    down: r
                        .down
                        .into_iter()
                        .map(pad)
                        .collect::<candle_core::Result<_>>()?,
                    mid: r.mid.map(pad).transpose()?,
                    intrablock: Vec::new(),
                }
            } else {
                net.forward(
                    scaled,
                    timestep,
                    &conditioning.context,
                    conditioning.added.as_ref(),
                    image,
                    unit.scale,
                    unit.mode,
                )?
            };
            let sum = total.get_or_insert_with(ControlResiduals::default);
            sum.down = add_all(&sum.down, &residuals.down)?;
            sum.mid = match (sum.mid.take(), residuals.mid) {
                (Some(a), Some(b)) => Some((a + b)?),
                (a, b) => a.or(b),
            };
        }
        Ok(total)
    }
}

/// diffusers' guess mode: the unit acts on the conditional half of guidance only.
fn cond_half_only(net: &ControlNetModel, unit: &ControlUnit) -> bool {
    unit.mode == ControlMode::ControlNetMoreImportant || net.pools_conditions()
}

/// Element-wise sums; an empty list is zeros.
fn add_all(sum: &[Tensor], more: &[Tensor]) -> candle_core::Result<Vec<Tensor>> {
    if sum.is_empty() {
        return Ok(more.to_vec());
    }
    sum.iter().zip(more).map(|(a, b)| a + b).collect()
}

/// Pillow's `convert("L")`: ITU-R 601-2 luma in 16-bit fixed point, rounded.
fn pillow_luma(rgb: &[u8]) -> u8 {
    let [r, g, b] = [rgb[0], rgb[1], rgb[2]].map(u32::from);
    ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16) as u8
}

fn family(sdxl: bool, context_dim: usize) -> String {
    match (sdxl, context_dim) {
        (true, _) => "SDXL".to_string(),
        (false, 768) => "SD 1.x".to_string(),
        (false, 1024) => "SD 2.x".to_string(),
        (false, d) => format!("a {d}-wide text encoder"),
    }
}
