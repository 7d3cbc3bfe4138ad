//! `HeunDiscreteScheduler` (A1111 "Heun"): Algorithm 2 of Karras et al., "Elucidating the Design
//! Space of Diffusion-Based Generative Models" (2022), with `s_churn = 0`: an Euler step to the
//! next sigma, corrected by the trapezoidal rule with the derivative evaluated there. Mirrors
//! diffusers 0.42.1 `scheduling_heun_discrete.py`.
//!
//! Two UNet evaluations per step, laid out as diffusers does it: `timesteps()` holds `2N - 1`
//! entries, `[t0, t1, t1, t2, t2, ..., t(N-1), t(N-1)]`, and the sigmas `[s0, s1, s1, ..., s(N-1),
//! s(N-1), 0]`. The sampling loop calls `step` once per entry; the scheduler alternates between
//! the Euler predictor (it keeps the derivative, `dt` and the sample) and the corrector (which
//! restarts from the kept sample). The last entry is a plain Euler step down to sigma 0, where
//! the trapezoidal rule would divide by zero. Which half a call is follows the calls, as
//! diffusers' `dt is None` does; the sigmas follow the step index.
//!
//! The class's `order` is 2: img2img starts at index `2 * t_start` (see [`Scheduler::order`]).
//!
//! The schedule (timesteps, interpolated / Karras / exponential / beta sigmas, initial noise
//! scale) is Euler's ([`euler_schedule`]) with the zero final sigma, before the interleaving.

use candle_core::Tensor;

use super::common::{self, check_steps, div_scalar, scale};
use super::config::{
    beta_params, cfg_value, parse_prediction_type, parse_spacing, BetaSchedule, PredictionType,
    SchedulerConfig, SchedulerConfigError, TimestepSpacing,
};
use super::euler::{euler_schedule, EulerScheduleParams};
use super::sigmas::{
    add_noise_sigma, euler_init_noise_sigma, scale_by_sigma, sigma_spacing, x0_from_v, FinalSigma,
};
use super::{Scheduler, StepOutput};
use crate::sampling::noise::TorchRng;

const CLASS: &str = "HeunDiscreteScheduler";

/// What the predictor half of a step leaves for the corrector (`prev_derivative`, `dt`,
/// `sample` in diffusers).
struct Predictor {
    derivative: Tensor,
    dt: f32,
    sample: Tensor,
}

/// Heun's second-order sampler.
pub struct HeunDiscreteScheduler {
    prediction_type: PredictionType,
    /// `Some(range)` when `clip_sample` is on.
    clip_sample_range: Option<f32>,
    timesteps: Vec<f64>,
    /// Interleaved like the timesteps, plus the final 0.
    sigmas: Vec<f32>,
    init_noise_sigma: f64,
    predictor: Option<Predictor>,
}

impl HeunDiscreteScheduler {
    /// `HeunDiscreteScheduler.from_config(config)` followed by `set_timesteps(num_inference_steps)`.
    pub fn new(
        config: &SchedulerConfig,
        num_inference_steps: usize,
    ) -> Result<Self, SchedulerConfigError> {
        // Heun's own defaults: 0.00085 / 0.012 with a *linear* schedule; no zero-SNR rescaling.
        let betas = beta_params(CLASS, config, (0.00085, 0.012, BetaSchedule::Linear), false)?;
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
        let clip_sample = cfg_value!(config, clip_sample).unwrap_or(false);
        let clip_sample_range = cfg_value!(config, clip_sample_range).unwrap_or(1.0) as f32;
        let params = EulerScheduleParams {
            spacing: parse_spacing(
                CLASS,
                cfg_value!(config, timestep_spacing),
                TimestepSpacing::Linspace,
            )?,
            steps_offset: cfg_value!(config, steps_offset).unwrap_or(0),
            sigma_spacing: sigma_spacing(CLASS, config)?,
            // Not __init__ arguments of this class, but `from_config` keeps them in the config,
            // where `_convert_to_karras` / `_convert_to_exponential` / `_convert_to_beta` look
            // for them.
            sigma_bounds: (cfg_value!(config, sigma_min), cfg_value!(config, sigma_max)),
            final_sigma: FinalSigma::Zero,
        };
        check_steps(CLASS, num_inference_steps, betas.num_train_timesteps)?;

        let alphas_cumprod = betas.alphas_cumprod();
        let schedule = euler_schedule(&betas, &alphas_cumprod, &params, num_inference_steps, None);
        // timesteps: cat([t[:1], t[1:].repeat_interleave(2)]);
        // sigmas: cat([s[:1], s[1:-1].repeat_interleave(2), s[-1:]]).
        let mut timesteps = Vec::with_capacity(2 * schedule.timesteps.len());
        for (i, &t) in schedule.timesteps.iter().enumerate() {
            let copies = if i == 0 { 1 } else { 2 };
            timesteps.extend(std::iter::repeat_n(t as f64, copies));
        }
        let n = schedule.sigmas.len();
        let mut sigmas = Vec::with_capacity(2 * n);
        for (i, &s) in schedule.sigmas.iter().enumerate() {
            let copies = if i == 0 || i == n - 1 { 1 } else { 2 };
            sigmas.extend(std::iter::repeat_n(s, copies));
        }
        Ok(Self {
            prediction_type,
            clip_sample_range: clip_sample.then_some(clip_sample_range),
            init_noise_sigma: euler_init_noise_sigma(&sigmas, params.spacing),
            timesteps,
            sigmas,
            predictor: None,
        })
    }

    /// The interleaved sigmas (one more than the timesteps; the last is 0).
    pub fn sigmas(&self) -> &[f32] {
        &self.sigmas
    }

    /// x0 from the model output at noise level `sigma` (clipped when `clip_sample` is on).
    fn pred_original_sample(
        &self,
        model_output: &Tensor,
        sample: &Tensor,
        sigma: f32,
    ) -> candle_core::Result<Tensor> {
        let x0 = match self.prediction_type {
            PredictionType::Epsilon => sample.sub(&scale(model_output, sigma)?)?,
            PredictionType::VPrediction => x0_from_v(model_output, sample, sigma)?,
            PredictionType::Sample => model_output.clone(),
        };
        match self.clip_sample_range {
            Some(range) => x0.clamp(-range, range),
            None => Ok(x0),
        }
    }
}

impl Scheduler for HeunDiscreteScheduler {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn order(&self) -> usize {
        2
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
        _rng: &mut TorchRng,
    ) -> candle_core::Result<StepOutput> {
        let i = common::checked_index(step_index, self.timesteps.len())?;
        let dtype = model_output.dtype();
        let model_output = common::f32(model_output)?;
        let sample = common::f32(sample)?;

        let (prev_sample, pred_original_sample) = match self.predictor.take() {
            None => {
                // Predictor: an Euler step from sigmas[i] to sigmas[i + 1] (s_churn = 0, so
                // sigma_hat = sigma).
                let sigma_hat = self.sigmas[i] * (0.0 + 1.0);
                let sigma_next = self.sigmas[i + 1];
                let x0 = self.pred_original_sample(&model_output, &sample, sigma_hat)?;
                let derivative = div_scalar(&sample.sub(&x0)?, sigma_hat)?;
                let dt = sigma_next - sigma_hat;
                let prev = sample.add(&scale(&derivative, dt)?)?;
                self.predictor = Some(Predictor {
                    derivative,
                    dt,
                    sample,
                });
                (prev, x0)
            }
            Some(predictor) => {
                // Corrector: the model was evaluated at the predicted sample, sigma_next =
                // sigmas[i]; average the two slopes and redo the step from the kept sample.
                let sigma_next = self.sigmas[i];
                let x0 = self.pred_original_sample(&model_output, &sample, sigma_next)?;
                let derivative = div_scalar(&sample.sub(&x0)?, sigma_next)?;
                let derivative = div_scalar(&predictor.derivative.add(&derivative)?, 2.0)?;
                let prev = predictor.sample.add(&scale(&derivative, predictor.dt)?)?;
                (prev, x0)
            }
        };
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
    //! Reference values: `tests/fixtures/scheduler_cases_more.json` and, for the beta sigmas,
    //! `scheduler_cases_extra.json` (see `schedulers::testing`).

    super::super::testing::reference_cases!("heun":
        class_defaults,
        sd_linspace,
        karras_leading_offset,
        karras_config_bounds,
        exponential_sigmas,
        v_prediction_trailing_clip,
        sample_prediction,
        one_step,
        img2img,
        beta_sigmas,
    );
}
