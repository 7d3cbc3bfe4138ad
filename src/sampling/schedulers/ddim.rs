//! `DDIMScheduler` (Song et al., "Denoising Diffusion Implicit Models", 2020) with `eta = 0`:
//! the deterministic sampler of eq. (12),
//!
//! `x_{t-1} = sqrt(a_prev) * x0_pred + sqrt(1 - a_prev) * eps_pred`,
//!
//! where `a` is `alphas_cumprod`. Mirrors diffusers 0.42.1 `scheduling_ddim.py`.

use candle_core::Tensor;

use super::common::{self, alpha_at, check_steps, check_timesteps_in_range, np_arange};
use super::common::{np_linspace, np_round, scale};
use super::config::{
    beta_params, cfg_value, parse_prediction_type, parse_spacing, require_false, BetaSchedule,
    PredictionType, SchedulerConfig, SchedulerConfigError, TimestepSpacing,
};
use super::{Scheduler, StepOutput};
use crate::sampling::noise::TorchRng;

const CLASS: &str = "DDIMScheduler";

/// DDIM with `eta = 0` (what `StableDiffusionPipeline` runs by default).
pub struct DdimScheduler {
    alphas_cumprod: Vec<f32>,
    final_alpha_cumprod: f32,
    prediction_type: PredictionType,
    /// `Some(range)` when `clip_sample` is on.
    clip_sample_range: Option<f32>,
    /// `num_train_timesteps // num_inference_steps`, the gap `step` assumes between timesteps
    /// whatever the spacing.
    step_ratio: i64,
    timesteps: Vec<i64>,
    timesteps_f64: Vec<f64>,
}

/// `DDIMScheduler.set_timesteps`: the integer timesteps, in sampling order.
pub(crate) fn ddim_timesteps(
    spacing: TimestepSpacing,
    num_train_timesteps: usize,
    num_inference_steps: usize,
    steps_offset: i64,
) -> Vec<i64> {
    let t = num_train_timesteps;
    let n = num_inference_steps;
    match spacing {
        TimestepSpacing::Linspace => np_linspace(0.0, (t - 1) as f64, n, true)
            .into_iter()
            .rev()
            .map(|v| np_round(v) as i64)
            .collect(),
        TimestepSpacing::Leading => {
            let ratio = (t / n) as i64;
            (0..n as i64)
                .rev()
                .map(|i| i * ratio + steps_offset)
                .collect()
        }
        TimestepSpacing::Trailing => np_arange(t as f64, 0.0, -(t as f64 / n as f64))
            .into_iter()
            .map(|v| np_round(v) as i64 - 1)
            .collect(),
    }
}

impl DdimScheduler {
    /// `DDIMScheduler.from_config(config)` followed by `set_timesteps(num_inference_steps)`.
    pub fn new(
        config: &SchedulerConfig,
        num_inference_steps: usize,
    ) -> Result<Self, SchedulerConfigError> {
        let betas = beta_params(CLASS, config, (0.0001, 0.02, BetaSchedule::Linear), true)?;
        require_false(CLASS, "thresholding", cfg_value!(config, thresholding))?;
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
        let spacing = parse_spacing(
            CLASS,
            cfg_value!(config, timestep_spacing),
            TimestepSpacing::Leading,
        )?;
        let steps_offset = cfg_value!(config, steps_offset).unwrap_or(0);
        let set_alpha_to_one = cfg_value!(config, set_alpha_to_one).unwrap_or(true);
        let clip_sample = cfg_value!(config, clip_sample).unwrap_or(true);
        let clip_sample_range = cfg_value!(config, clip_sample_range).unwrap_or(1.0) as f32;

        let t = betas.num_train_timesteps;
        check_steps(CLASS, num_inference_steps, t)?;
        let alphas_cumprod = betas.alphas_cumprod();
        let final_alpha_cumprod = if set_alpha_to_one {
            1.0
        } else {
            alphas_cumprod[0]
        };
        let timesteps = ddim_timesteps(spacing, t, num_inference_steps, steps_offset);
        check_timesteps_in_range(CLASS, num_inference_steps, &timesteps, t)?;
        Ok(Self {
            alphas_cumprod,
            final_alpha_cumprod,
            prediction_type,
            clip_sample_range: clip_sample.then_some(clip_sample_range),
            step_ratio: (t / num_inference_steps) as i64,
            timesteps_f64: timesteps.iter().map(|&v| v as f64).collect(),
            timesteps,
        })
    }

    fn alpha_at(&self, t: i64) -> candle_core::Result<f32> {
        alpha_at(&self.alphas_cumprod, t)
    }
}

impl Scheduler for DdimScheduler {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps_f64
    }

    fn step(
        &mut self,
        model_output: &Tensor,
        step_index: usize,
        sample: &Tensor,
        _rng: &mut TorchRng,
    ) -> candle_core::Result<StepOutput> {
        let timestep = self.timesteps[common::checked_index(step_index, self.timesteps.len())?];
        let dtype = sample.dtype();
        let model_output = common::f32(model_output)?;
        let sample = common::f32(sample)?;

        // 1. alpha_prod at this timestep and the previous one (`timestep - T // N`).
        let prev_timestep = timestep - self.step_ratio;
        let alpha_prod_t = self.alpha_at(timestep)?;
        let alpha_prod_t_prev = if prev_timestep >= 0 {
            self.alpha_at(prev_timestep)?
        } else {
            self.final_alpha_cumprod
        };
        let beta_prod_t = 1.0 - alpha_prod_t;

        // 2. x0 and epsilon from the model output (eq. 12's "predicted x0").
        let (pred_original_sample, pred_epsilon) = match self.prediction_type {
            PredictionType::Epsilon => {
                let x0 = common::div_scalar(
                    &sample.sub(&scale(&model_output, beta_prod_t.sqrt())?)?,
                    alpha_prod_t.sqrt(),
                )?;
                (x0, model_output)
            }
            PredictionType::Sample => {
                let eps = common::div_scalar(
                    &sample.sub(&scale(&model_output, alpha_prod_t.sqrt())?)?,
                    beta_prod_t.sqrt(),
                )?;
                (model_output, eps)
            }
            PredictionType::VPrediction => {
                let x0 = scale(&sample, alpha_prod_t.sqrt())?
                    .sub(&scale(&model_output, beta_prod_t.sqrt())?)?;
                let eps = scale(&model_output, alpha_prod_t.sqrt())?
                    .add(&scale(&sample, beta_prod_t.sqrt())?)?;
                (x0, eps)
            }
        };

        // 3. Optional clipping of x0.
        let pred_original_sample = match self.clip_sample_range {
            Some(range) => pred_original_sample.clamp(-range, range)?,
            None => pred_original_sample,
        };

        // 4. sigma_t = eta * sqrt(variance) with eta = 0 (computed so that a NaN variance
        //    propagates exactly as in diffusers).
        let beta_prod_t_prev = 1.0 - alpha_prod_t_prev;
        let variance = (beta_prod_t_prev / beta_prod_t) * (1.0 - alpha_prod_t / alpha_prod_t_prev);
        let std_dev_t = 0.0f32 * variance.sqrt();

        // 5. "direction pointing to x_t" and x_{t-1}.
        let direction_coeff = (1.0 - alpha_prod_t_prev - std_dev_t * std_dev_t).sqrt();
        let pred_sample_direction = scale(&pred_epsilon, direction_coeff)?;
        let prev_sample =
            scale(&pred_original_sample, alpha_prod_t_prev.sqrt())?.add(&pred_sample_direction)?;

        Ok(StepOutput {
            prev_sample: prev_sample.to_dtype(dtype)?,
            pred_original_sample: Some(pred_original_sample.to_dtype(dtype)?),
        })
    }

    fn add_noise(
        &self,
        original: &Tensor,
        noise: &Tensor,
        step_index: usize,
    ) -> candle_core::Result<Tensor> {
        let timestep = self.timesteps[common::checked_index(step_index, self.timesteps.len())?];
        add_noise_ddpm(self.alpha_at(timestep)?, original, noise)
    }
}

/// `add_noise` of the DDPM-family schedulers: `sqrt(a_t) * x0 + sqrt(1 - a_t) * noise`.
pub(crate) fn add_noise_ddpm(
    alpha_prod: f32,
    original: &Tensor,
    noise: &Tensor,
) -> candle_core::Result<Tensor> {
    let dtype = original.dtype();
    let original = common::f32(original)?;
    let noise = common::f32(noise)?;
    let noisy =
        scale(&original, alpha_prod.sqrt())?.add(&scale(&noise, (1.0 - alpha_prod).sqrt())?)?;
    noisy.to_dtype(dtype)
}

#[cfg(test)]
mod tests {
    //! Reference values: `tests/fixtures/scheduler_cases.json` (see `schedulers::testing`).

    super::super::testing::reference_cases!("ddim":
        class_defaults_clip_and_alpha_one,
        sd_epsilon_trailing,
        sd_sample_prediction_linspace,
        zero_snr_v_prediction_trailing,
        cosine_betas_leading,
        trailing_61_steps_has_62_timesteps,
        sd_img2img,
    );
}
