//! ControlNet units in the sampling loop, as diffusers' ControlNet pipelines run them: each
//! unit's control image prepared once, its residuals at every step it is active
//! (`controlnet_keep`), several units summed (`MultiControlNetModel`), guess mode on the
//! conditional half of guidance only.

use candle_core::Tensor;

use crate::networks::controlnet::ControlMode;
use crate::networks::unet::{AddedConditions, ControlResiduals};
use crate::sampling::pipeline::{
    Conditioning, ControlUnit, DiffusionPipeline, GenerateError, GenerationRequest,
};

impl DiffusionPipeline {
    /// A ControlNet made for this model's family, with a usable image and weights.
    pub(crate) fn check_control(&self, n: usize, unit: &ControlUnit) -> Result<(), GenerateError> {
        let bad = |why: String| {
            Err(GenerateError::InvalidRequest(format!(
                "ControlNet {n}: {why}"
            )))
        };
        let net = &unit.net;
        if net.needs_added_conditions() != self.unet.needs_added_conditions()
            || net.context_dim() != self.unet.context_dim()
        {
            let family = |sdxl: bool, dim: usize| match (sdxl, dim) {
                (true, _) => "SDXL".to_string(),
                (false, 768) => "SD 1.x".to_string(),
                (false, 1024) => "SD 2.x".to_string(),
                (false, d) => format!("a {d}-wide text encoder"),
            };
            return bad(format!(
                "it is made for {} models and this model is {}; choose a ControlNet for this model's family",
                family(net.needs_added_conditions(), net.context_dim()),
                family(self.unet.needs_added_conditions(), self.unet.context_dim())
            ));
        }
        if net.downscale() != self.vae_scale_factor {
            return bad(format!(
                "it reads control images at 1/{} scale and this model's latents are 1/{}",
                net.downscale(),
                self.vae_scale_factor
            ));
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

    /// Each unit's control image as `(batch, 3, H, W)` in [0, 1] at the generation's size,
    /// doubled for guidance unless the unit acts on the conditional half only.
    pub(crate) fn control_images(
        &self,
        request: &GenerationRequest,
        guided: bool,
    ) -> Result<Vec<Tensor>, GenerateError> {
        request
            .controls
            .iter()
            .map(|unit| {
                let resized = unit.image.resized(request.width, request.height);
                let values: Vec<f32> = resized.pixels.iter().map(|&p| p as f32 / 255.0).collect();
                let image =
                    Tensor::from_vec(values, (request.height, request.width, 3), &self.device)?
                        .permute((2, 0, 1))?
                        .unsqueeze(0)?
                        .contiguous()?
                        .to_dtype(self.dtype)?;
                let both_halves = guided && !self.cond_half_only(unit);
                Ok(if both_halves {
                    Tensor::cat(&[&image, &image], 0)?
                } else {
                    image
                })
            })
            .collect()
    }

    /// diffusers' guess mode: the unit acts on the conditional half of guidance only.
    fn cond_half_only(&self, unit: &ControlUnit) -> bool {
        unit.mode == ControlMode::ControlNetMoreImportant || unit.net.pools_conditions()
    }

    /// The summed residuals of the units active at step `position.0` of `position.1`
    /// (diffusers' `controlnet_keep`: a unit acts while `i / n >= start` and `(i + 1) / n <= end`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn control_residuals(
        &self,
        request: &GenerationRequest,
        images: &[Tensor],
        (step, steps): (usize, usize),
        scaled: &Tensor,
        timestep: f64,
        conditioning: &Conditioning,
        guided: bool,
    ) -> Result<Option<ControlResiduals>, GenerateError> {
        let mut total: Option<ControlResiduals> = None;
        for (unit, image) in request.controls.iter().zip(images) {
            let (i, n) = (step as f64, steps as f64);
            let keep = !(i / n < unit.start || (i + 1.0) / n > unit.end);
            // diffusers still runs a unit at weight 0 and adds zeros; skipping it is the same.
            if !keep || unit.scale == 0.0 {
                continue;
            }
            let half = guided && self.cond_half_only(unit);
            let residuals = if half {
                let cond = |t: &Tensor| t.narrow(0, 1, 1);
                let added = match &conditioning.added {
                    Some(added) => Some(AddedConditions {
                        text_embeds: cond(&added.text_embeds)?,
                        time_ids: cond(&added.time_ids)?,
                    }),
                    None => None,
                };
                let r = unit.net.forward(
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
                    mid: pad(r.mid)?,
                }
            } else {
                unit.net.forward(
                    scaled,
                    timestep,
                    &conditioning.context,
                    conditioning.added.as_ref(),
                    image,
                    unit.scale,
                    unit.mode,
                )?
            };
            total = Some(match total {
                None => residuals,
                Some(sum) => ControlResiduals {
                    down: sum
                        .down
                        .iter()
                        .zip(&residuals.down)
                        .map(|(a, b)| a + b)
                        .collect::<candle_core::Result<_>>()?,
                    mid: (sum.mid + residuals.mid)?,
                },
            });
        }
        Ok(total)
    }
}
