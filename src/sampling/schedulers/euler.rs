//! `EulerDiscreteScheduler`: Algorithm 2 of Karras et al., "Elucidating the Design Space of
//! Diffusion-Based Generative Models" (2022), with `s_churn = 0` (plain Euler steps on the
//! probability-flow ODE in sigma space). Mirrors diffusers 0.42.1 `scheduling_euler_discrete.py`.
//!
//! The UNet is evaluated at (possibly fractional) training timesteps; the ODE runs on
//! `sigma = sqrt((1 - alpha_cumprod) / alpha_cumprod)`, with the model input scaled by
//! `1 / sqrt(sigma^2 + 1)`.
//!
//! Steps are addressed by index, which is what diffusers does once `set_begin_index` has been
//! called (its img2img pipelines always call it): `add_noise(.., i)` uses `sigmas[i]`, and a
//! run that starts at index `i` steps from `sigmas[i]` to `sigmas[i + 1]`.

use candle_core::Tensor;

use super::common::{self, check_steps, div_scalar, np_interp_unit_grid, scale, BetaParams};
use super::config::{
    beta_params, cfg_value, parse_prediction_type, parse_spacing, require_one_of, BetaSchedule,
    PredictionType, SchedulerConfig, SchedulerConfigError, TimestepSpacing,
};
use super::sigmas::{
    add_noise_sigma, check_custom_timesteps, euler_init_noise_sigma, euler_timesteps, final_sigma,
    respaced_sigmas, scale_by_sigma, sigma_spacing, sigma_to_t, train_sigmas, x0_from_v,
    FinalSigma, SigmaSpacing,
};
use super::{Scheduler, StepOutput};
use crate::sampling::noise::TorchRng;

const CLASS: &str = "EulerDiscreteScheduler";

/// Everything `EulerDiscreteScheduler.set_timesteps` leaves behind.
pub(crate) struct EulerSchedule {
    /// The UNet timesteps as float32 values.
    pub timesteps: Vec<f32>,
    /// One more entry than `timesteps`: the sigma each step ends at comes last.
    pub sigmas: Vec<f32>,
}

pub(crate) struct EulerScheduleParams {
    pub spacing: TimestepSpacing,
    pub steps_offset: i64,
    pub sigma_spacing: SigmaSpacing,
    pub sigma_bounds: (Option<f64>, Option<f64>),
    pub final_sigma: FinalSigma,
}

/// `set_timesteps(num_inference_steps)`, or `set_timesteps(timesteps=custom)` (whose timesteps
/// replace the spacing's; `num_inference_steps` is then their count).
pub(crate) fn euler_schedule(
    betas: &BetaParams,
    alphas_cumprod: &[f32],
    params: &EulerScheduleParams,
    num_inference_steps: usize,
    custom: Option<&[i64]>,
) -> EulerSchedule {
    let t = betas.num_train_timesteps;
    let timesteps = match custom {
        // np.array(timesteps).astype(np.float32)
        Some(custom) => custom.iter().map(|&ts| ts as f32).collect(),
        None => euler_timesteps(params.spacing, t, num_inference_steps, params.steps_offset),
    };
    let train = train_sigmas(alphas_cumprod);
    let train_f64: Vec<f64> = train.iter().map(|&s| s as f64).collect();
    let log_sigmas: Vec<f32> = train.iter().map(|s| s.ln()).collect();

    // `interpolation_type == "linear"`: np.interp(timesteps, arange(T), sigmas).
    let interpolated: Vec<f64> = timesteps
        .iter()
        .map(|&ts| np_interp_unit_grid(ts as f64, &train_f64))
        .collect();
    let (sigmas, timesteps): (Vec<f64>, Vec<f32>) = match params.sigma_spacing {
        SigmaSpacing::Interpolated => (interpolated, timesteps),
        spacing => {
            let sigmas = respaced_sigmas(
                spacing,
                &interpolated,
                params.sigma_bounds,
                num_inference_steps,
            );
            let timesteps = sigmas
                .iter()
                .map(|&s| sigma_to_t(s, &log_sigmas) as f32)
                .collect();
            (sigmas, timesteps)
        }
    };
    let mut sigmas: Vec<f32> = sigmas.into_iter().map(|s| s as f32).collect();
    sigmas.push(params.final_sigma.value(alphas_cumprod));
    EulerSchedule { timesteps, sigmas }
}

/// Euler (Karras) discrete sampler.
pub struct EulerDiscreteScheduler {
    prediction_type: PredictionType,
    timesteps: Vec<f64>,
    sigmas: Vec<f32>,
    init_noise_sigma: f64,
}

impl EulerDiscreteScheduler {
    /// `EulerDiscreteScheduler.from_config(config)` followed by `set_timesteps(num_inference_steps)`.
    pub fn new(
        config: &SchedulerConfig,
        num_inference_steps: usize,
    ) -> Result<Self, SchedulerConfigError> {
        Self::build(config, num_inference_steps, None)
    }

    /// `EulerDiscreteScheduler.from_config(config)` followed by `set_timesteps(timesteps=...)`
    /// (a published schedule such as Align Your Steps', in place of the config's spacing).
    pub fn with_timesteps(
        config: &SchedulerConfig,
        timesteps: &[i64],
    ) -> Result<Self, SchedulerConfigError> {
        Self::build(config, timesteps.len(), Some(timesteps))
    }

    /// `set_timesteps(num_inference_steps)` or, with `custom`, `set_timesteps(timesteps=custom)`
    /// (`num_inference_steps` is then their count).
    pub(crate) fn build(
        config: &SchedulerConfig,
        num_inference_steps: usize,
        custom: Option<&[i64]>,
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
            true,
        )?;
        require_one_of(
            CLASS,
            "interpolation_type",
            cfg_value!(config, interpolation_type).as_deref(),
            &["linear"],
            "linear",
        )?;
        let continuous = match cfg_value!(config, timestep_type).as_deref() {
            None | Some("discrete") => false,
            Some("continuous") => true,
            Some(other) => {
                return Err(SchedulerConfigError::UnsupportedValue {
                    class: CLASS,
                    key: "timestep_type",
                    value: other.to_string(),
                    supported: "discrete, continuous",
                })
            }
        };
        let params = EulerScheduleParams {
            spacing: parse_spacing(
                CLASS,
                cfg_value!(config, timestep_spacing),
                TimestepSpacing::Linspace,
            )?,
            steps_offset: cfg_value!(config, steps_offset).unwrap_or(0),
            sigma_spacing: sigma_spacing(CLASS, config)?,
            sigma_bounds: (cfg_value!(config, sigma_min), cfg_value!(config, sigma_max)),
            final_sigma: final_sigma(CLASS, config)?,
        };
        check_steps(CLASS, num_inference_steps, betas.num_train_timesteps)?;
        if let Some(custom) = custom {
            check_custom_timesteps(
                CLASS,
                custom,
                betas.num_train_timesteps,
                params.sigma_spacing,
            )?;
            if continuous && prediction_type == PredictionType::VPrediction {
                return Err(SchedulerConfigError::IncompatibleOptions {
                    class: CLASS,
                    reason: "custom timesteps cannot be used with timestep_type = continuous and \
                             v_prediction"
                        .into(),
                });
            }
        }

        let mut alphas_cumprod = betas.alphas_cumprod();
        if betas.rescale_betas_zero_snr {
            // Keeps the terminal sigma finite (diffusers sets it to 2**-24).
            if let Some(last) = alphas_cumprod.last_mut() {
                *last = 2f32.powi(-24);
            }
        }
        let schedule = euler_schedule(
            &betas,
            &alphas_cumprod,
            &params,
            num_inference_steps,
            custom,
        );
        let timesteps: Vec<f64> = if continuous && prediction_type == PredictionType::VPrediction {
            // `0.25 * sigma.log()` in float32.
            schedule.sigmas[..schedule.sigmas.len() - 1]
                .iter()
                .map(|s| (0.25f32 * s.ln()) as f64)
                .collect()
        } else {
            schedule.timesteps.iter().map(|&t| t as f64).collect()
        };
        Ok(Self {
            prediction_type,
            init_noise_sigma: euler_init_noise_sigma(&schedule.sigmas, params.spacing),
            timesteps,
            sigmas: schedule.sigmas,
        })
    }

    /// The sigmas of the schedule (one more than the timesteps; the last is 0 or sigma_min).
    pub fn sigmas(&self) -> &[f32] {
        &self.sigmas
    }
}

impl Scheduler for EulerDiscreteScheduler {
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
        _rng: &mut TorchRng,
    ) -> candle_core::Result<StepOutput> {
        let i = common::checked_index(step_index, self.timesteps.len())?;
        let dtype = model_output.dtype();
        let model_output = common::f32(model_output)?;
        let sample = common::f32(sample)?;
        let sigma = self.sigmas[i];
        // s_churn = 0, so gamma = 0 and sigma_hat = sigma.
        let sigma_hat = sigma * (0.0 + 1.0);

        let pred_original_sample = match self.prediction_type {
            PredictionType::Sample => model_output.clone(),
            PredictionType::Epsilon => sample.sub(&scale(&model_output, sigma_hat)?)?,
            PredictionType::VPrediction => x0_from_v(&model_output, &sample, sigma)?,
        };
        // The ODE derivative (Karras et al. eq. 3) and one Euler step.
        let derivative = div_scalar(&sample.sub(&pred_original_sample)?, sigma_hat)?;
        let dt = self.sigmas[i + 1] - sigma_hat;
        let prev_sample = sample.add(&scale(&derivative, dt)?)?;
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
    //! Reference values: `tests/fixtures/scheduler_cases.json` and, for the beta sigmas,
    //! `scheduler_cases_extra.json` (see `schedulers::testing`).

    super::super::testing::reference_cases!("euler":
        karras_linspace,
        karras_leading_offset,
        karras_config_bounds,
        exponential_sigmas,
        final_sigma_min_linear_betas,
        continuous_v_prediction,
        zero_snr_v_prediction_trailing,
        sample_prediction_leading,
        karras_img2img,
        beta_sigmas,
        beta_leading_offset,
        beta_config_bounds,
        beta_img2img,
    );
}
