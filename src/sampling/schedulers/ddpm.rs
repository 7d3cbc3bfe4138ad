//! `DDPMScheduler`: ancestral sampling of Ho et al., "Denoising Diffusion Probabilistic Models"
//! (2020), eq. (7), over the spaced timesteps: the posterior mean `mu(x_t, x0)` between the
//! current and the previous timestep of the schedule plus fresh noise of the posterior's
//! standard deviation. Mirrors diffusers 0.42.1 `scheduling_ddpm.py`.
//!
//! The noise is drawn from the generation's [`TorchRng`] at every step whose timestep is above
//! 0 (after the mean is computed), with the model output's shape, like diffusers'
//! `randn_tensor(model_output.shape, generator=generator)`.
//!
//! `variance_type`: `fixed_small` (the default, `beta~_t`), `fixed_small_log` (the same through
//! `exp(0.5 log v)`) and `fixed_large` (`beta_t`). `fixed_large_log` is refused: diffusers then
//! takes the square root of a log (a NaN image); so are `learned` / `learned_range`, which need
//! a UNet that predicts its variance (twice the latent channels; Stable Diffusion's do not).
//! There is no A1111 sampler of this name; PNGs record `DDPM`, which this app reads back.

use candle_core::Tensor;

use super::common::{self, alpha_at, check_steps, check_timesteps_in_range, div_scalar, scale};
use super::config::{
    beta_params, cfg_value, parse_prediction_type, parse_spacing, require_false, BetaSchedule,
    PredictionType, SchedulerConfig, SchedulerConfigError, TimestepSpacing,
};
use super::ddim::{add_noise_ddpm, ddim_timesteps};
use super::{Scheduler, StepOutput};
use crate::sampling::noise::TorchRng;

const CLASS: &str = "DDPMScheduler";

/// `variance_type`: the standard deviation of the noise each step adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VarianceType {
    Small,
    SmallLog,
    Large,
}

/// DDPM (ancestral) sampler.
pub struct DdpmScheduler {
    alphas_cumprod: Vec<f32>,
    prediction_type: PredictionType,
    variance_type: VarianceType,
    /// `Some(range)` when `clip_sample` is on.
    clip_sample_range: Option<f32>,
    timesteps: Vec<i64>,
    timesteps_f64: Vec<f64>,
}

impl DdpmScheduler {
    /// `DDPMScheduler.from_config(config)` followed by `set_timesteps(num_inference_steps)`.
    pub fn new(
        config: &SchedulerConfig,
        num_inference_steps: usize,
    ) -> Result<Self, SchedulerConfigError> {
        let betas = beta_params(CLASS, config, (0.0001, 0.02, BetaSchedule::Linear), true)?;
        let prediction_type = parse_prediction_type(
            CLASS,
            cfg_value!(config, prediction_type),
            &[
                PredictionType::Epsilon,
                PredictionType::VPrediction,
                PredictionType::Sample,
            ],
            false,
        )?;
        let variance_type = match cfg_value!(config, variance_type).as_deref() {
            None | Some("fixed_small") => VarianceType::Small,
            Some("fixed_small_log") => VarianceType::SmallLog,
            Some("fixed_large") => VarianceType::Large,
            Some(other) => {
                return Err(SchedulerConfigError::UnsupportedValue {
                    class: CLASS,
                    key: "variance_type",
                    value: other.to_string(),
                    supported: "fixed_small, fixed_small_log, fixed_large",
                })
            }
        };
        require_false(CLASS, "thresholding", cfg_value!(config, thresholding))?;
        let clip_sample = cfg_value!(config, clip_sample).unwrap_or(true);
        let clip_sample_range = cfg_value!(config, clip_sample_range).unwrap_or(1.0) as f32;
        let spacing = parse_spacing(
            CLASS,
            cfg_value!(config, timestep_spacing),
            TimestepSpacing::Leading,
        )?;
        let steps_offset = cfg_value!(config, steps_offset).unwrap_or(0);
        let t = betas.num_train_timesteps;
        check_steps(CLASS, num_inference_steps, t)?;
        let timesteps = ddim_timesteps(spacing, t, num_inference_steps, steps_offset);
        check_timesteps_in_range(CLASS, num_inference_steps, &timesteps, t)?;
        Ok(Self {
            alphas_cumprod: betas.alphas_cumprod(),
            prediction_type,
            variance_type,
            clip_sample_range: clip_sample.then_some(clip_sample_range),
            timesteps_f64: timesteps.iter().map(|&v| v as f64).collect(),
            timesteps,
        })
    }

    /// `previous_timestep(t)`: the entry after the first occurrence of `t`, or -1 at the end.
    fn previous_timestep(&self, t: i64) -> i64 {
        let first = self.timesteps.iter().position(|&v| v == t);
        match first.and_then(|i| self.timesteps.get(i + 1)) {
            Some(&prev) => prev,
            None => -1,
        }
    }

    /// `alphas_cumprod[t]` and `alphas_cumprod[prev_t]` (1 before the first timestep).
    fn alphas(&self, t: i64) -> candle_core::Result<(f32, f32)> {
        let prev_t = self.previous_timestep(t);
        let alpha_prod_t = alpha_at(&self.alphas_cumprod, t)?;
        let alpha_prod_t_prev = if prev_t >= 0 {
            alpha_at(&self.alphas_cumprod, prev_t)?
        } else {
            1.0
        };
        Ok((alpha_prod_t, alpha_prod_t_prev))
    }

    /// The standard deviation of the added noise (`_get_variance` and what `step` makes of it).
    fn noise_std(&self, t: i64) -> candle_core::Result<f32> {
        let (alpha_prod_t, alpha_prod_t_prev) = self.alphas(t)?;
        let current_beta_t = 1.0 - alpha_prod_t / alpha_prod_t_prev;
        // Eq. (7)'s beta~_t, clamped away from 0.
        let variance =
            ((1.0 - alpha_prod_t_prev) / (1.0 - alpha_prod_t) * current_beta_t).max(1e-20);
        Ok(match self.variance_type {
            VarianceType::Small => variance.sqrt(),
            VarianceType::SmallLog => (0.5 * variance.ln()).exp(),
            VarianceType::Large => current_beta_t.sqrt(),
        })
    }
}

impl Scheduler for DdpmScheduler {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps_f64
    }

    fn step(
        &mut self,
        model_output: &Tensor,
        step_index: usize,
        sample: &Tensor,
        rng: &mut TorchRng,
    ) -> candle_core::Result<StepOutput> {
        let t = self.timesteps[common::checked_index(step_index, self.timesteps.len())?];
        let dtype = model_output.dtype();
        let model_output = common::f32(model_output)?;
        let sample = common::f32(sample)?;

        let (alpha_prod_t, alpha_prod_t_prev) = self.alphas(t)?;
        let beta_prod_t = 1.0 - alpha_prod_t;
        let beta_prod_t_prev = 1.0 - alpha_prod_t_prev;
        let current_alpha_t = alpha_prod_t / alpha_prod_t_prev;
        let current_beta_t = 1.0 - current_alpha_t;

        // 1. x0 from the model output (eq. 15), optionally clipped.
        let x0 = match self.prediction_type {
            PredictionType::Epsilon => div_scalar(
                &sample.sub(&scale(&model_output, beta_prod_t.sqrt())?)?,
                alpha_prod_t.sqrt(),
            )?,
            PredictionType::Sample => model_output.clone(),
            PredictionType::VPrediction => scale(&sample, alpha_prod_t.sqrt())?
                .sub(&scale(&model_output, beta_prod_t.sqrt())?)?,
        };
        let x0 = match self.clip_sample_range {
            Some(range) => x0.clamp(-range, range)?,
            None => x0,
        };

        // 2. The posterior mean (eq. 7).
        let x0_coeff = (alpha_prod_t_prev.sqrt() * current_beta_t) / beta_prod_t;
        let sample_coeff = current_alpha_t.sqrt() * beta_prod_t_prev / beta_prod_t;
        let mut prev_sample = scale(&x0, x0_coeff)?.add(&scale(&sample, sample_coeff)?)?;

        // 3. Fresh noise, except at timestep 0.
        if t > 0 {
            let noise = rng.randn_tensor(model_output.dims(), model_output.device())?;
            prev_sample = prev_sample.add(&scale(&noise, self.noise_std(t)?)?)?;
        }
        Ok(StepOutput {
            prev_sample: prev_sample.to_dtype(dtype)?,
            pred_original_sample: Some(x0.to_dtype(dtype)?),
        })
    }

    fn add_noise(
        &self,
        original: &Tensor,
        noise: &Tensor,
        step_index: usize,
    ) -> candle_core::Result<Tensor> {
        let t = self.timesteps[common::checked_index(step_index, self.timesteps.len())?];
        add_noise_ddpm(alpha_at(&self.alphas_cumprod, t)?, original, noise)
    }
}

#[cfg(test)]
mod tests {
    //! Reference values: `tests/fixtures/scheduler_cases_more.json` (see `schedulers::testing`).

    super::super::testing::reference_cases!("ddpm":
        class_defaults_clip,
        sd_leading_offset,
        fixed_small_log_linspace,
        fixed_large_trailing,
        v_prediction,
        sample_prediction,
        zero_snr_trailing,
        cosine_betas,
        img2img,
    );
}
