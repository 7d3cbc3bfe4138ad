//! `EulerAncestralDiscreteScheduler` ("Euler a"): each step goes deterministically down to
//! `sigma_down` and then adds fresh noise of standard deviation `sigma_up`, with
//! `sigma_up^2 + sigma_down^2 = sigma_next^2` (k-diffusion's `get_ancestral_step`, eta = 1).
//! Mirrors diffusers 0.42.1 `scheduling_euler_ancestral_discrete.py`.
//!
//! The noise is drawn from the generation's [`TorchRng`] on every step (the last one included,
//! where `sigma_up` is 0), with the shape of the model output, exactly like diffusers'
//! `randn_tensor(model_output.shape, generator=generator)`.

use candle_core::Tensor;

use super::common::{self, check_steps, div_scalar, np_interp_unit_grid, scale};
use super::config::{
    beta_params, cfg_value, parse_prediction_type, parse_spacing, BetaSchedule, PredictionType,
    SchedulerConfig, SchedulerConfigError, TimestepSpacing,
};
use super::sigmas::{
    add_noise_sigma, euler_init_noise_sigma, euler_timesteps, scale_by_sigma, train_sigmas,
    x0_from_v,
};
use super::{Scheduler, StepOutput};
use crate::sampling::noise::TorchRng;

const CLASS: &str = "EulerAncestralDiscreteScheduler";

/// Euler ancestral sampler.
pub struct EulerAncestralDiscreteScheduler {
    prediction_type: PredictionType,
    timesteps: Vec<f64>,
    sigmas: Vec<f32>,
    init_noise_sigma: f64,
}

impl EulerAncestralDiscreteScheduler {
    /// `EulerAncestralDiscreteScheduler.from_config(config)` + `set_timesteps(num_inference_steps)`.
    pub fn new(
        config: &SchedulerConfig,
        num_inference_steps: usize,
    ) -> Result<Self, SchedulerConfigError> {
        let betas = beta_params(CLASS, config, (0.0001, 0.02, BetaSchedule::Linear), true)?;
        let prediction_type = parse_prediction_type(
            CLASS,
            cfg_value!(config, prediction_type),
            &[PredictionType::Epsilon, PredictionType::VPrediction],
            false,
        )?;
        let spacing = parse_spacing(
            CLASS,
            cfg_value!(config, timestep_spacing),
            TimestepSpacing::Linspace,
        )?;
        let steps_offset = cfg_value!(config, steps_offset).unwrap_or(0);
        check_steps(CLASS, num_inference_steps, betas.num_train_timesteps)?;

        let mut alphas_cumprod = betas.alphas_cumprod();
        if betas.rescale_betas_zero_snr {
            if let Some(last) = alphas_cumprod.last_mut() {
                *last = 2f32.powi(-24);
            }
        }
        let timesteps = euler_timesteps(
            spacing,
            betas.num_train_timesteps,
            num_inference_steps,
            steps_offset,
        );
        let train: Vec<f64> = train_sigmas(&alphas_cumprod)
            .into_iter()
            .map(|s| s as f64)
            .collect();
        let mut sigmas: Vec<f32> = timesteps
            .iter()
            .map(|&t| np_interp_unit_grid(t as f64, &train) as f32)
            .collect();
        sigmas.push(0.0);
        Ok(Self {
            prediction_type,
            init_noise_sigma: euler_init_noise_sigma(&sigmas, spacing),
            timesteps: timesteps.iter().map(|&t| t as f64).collect(),
            sigmas,
        })
    }

    /// The sigmas of the schedule (one more than the timesteps; the last is 0).
    pub fn sigmas(&self) -> &[f32] {
        &self.sigmas
    }
}

impl Scheduler for EulerAncestralDiscreteScheduler {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn init_noise_sigma(&self) -> f64 {
        self.init_noise_sigma
    }

    fn scale_model_input(&self, sample: &Tensor, step_index: usize) -> candle_core::Result<Tensor> {
        let i = common::checked_index(step_index, self.timesteps.len())?;
        scale_by_sigma(sample, self.sigmas[i])
    }

    fn step(
        &mut self,
        model_output: &Tensor,
        step_index: usize,
        sample: &Tensor,
        rng: &mut TorchRng,
    ) -> candle_core::Result<StepOutput> {
        let i = common::checked_index(step_index, self.timesteps.len())?;
        let dtype = model_output.dtype();
        let model_output = common::f32(model_output)?;
        let sample = common::f32(sample)?;
        let sigma = self.sigmas[i];

        let pred_original_sample = match self.prediction_type {
            PredictionType::VPrediction => x0_from_v(&model_output, &sample, sigma)?,
            _ => sample.sub(&scale(&model_output, sigma)?)?,
        };

        let sigma_from = sigma;
        let sigma_to = self.sigmas[i + 1];
        let sigma_up = (sigma_to * sigma_to * (sigma_from * sigma_from - sigma_to * sigma_to)
            / (sigma_from * sigma_from))
            .sqrt();
        let sigma_down = (sigma_to * sigma_to - sigma_up * sigma_up).sqrt();

        let derivative = div_scalar(&sample.sub(&pred_original_sample)?, sigma)?;
        let dt = sigma_down - sigma;
        let prev_sample = sample.add(&scale(&derivative, dt)?)?;

        let noise = rng.randn_tensor(model_output.dims(), model_output.device())?;
        let prev_sample = prev_sample.add(&scale(&noise, sigma_up)?)?;
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
        let i = common::checked_index(step_index, self.timesteps.len())?;
        add_noise_sigma(original, noise, self.sigmas[i])
    }
}

#[cfg(test)]
mod tests {
    //! Reference values: `tests/fixtures/scheduler_cases.json` (see `schedulers::testing`).

    super::super::testing::reference_cases!("euler_ancestral":
        sd_linspace,
        v_prediction_leading,
        zero_snr_trailing,
        img2img,
    );
}
