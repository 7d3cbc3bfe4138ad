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

use super::common::{self, check_steps, div_scalar, exponential_sigmas, karras_sigmas, scale};
use super::common::{np_arange, np_interp_unit_grid, np_linspace, np_round, sigma_to_t};
use super::common::{train_sigmas, BetaParams};
use super::config::{
    beta_params, cfg_value, parse_prediction_type, parse_spacing, require_false, require_one_of,
    BetaSchedule, PredictionType, SchedulerConfig, SchedulerConfigError, TimestepSpacing,
};
use super::{Scheduler, StepOutput};
use crate::pipeline::noise::TorchRng;

const CLASS: &str = "EulerDiscreteScheduler";

/// How the inference sigmas are laid out between the largest and smallest one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SigmaSpacing {
    /// The training sigmas at the spaced timesteps.
    Interpolated,
    /// `use_karras_sigmas`: rho = 7 spacing (Karras et al. eq. 5).
    Karras,
    /// `use_exponential_sigmas`: evenly spaced in log sigma.
    Exponential,
}

/// `use_karras_sigmas` / `use_exponential_sigmas` / `use_beta_sigmas` resolved for `class`.
pub(crate) fn sigma_spacing(
    class: &'static str,
    config: &SchedulerConfig,
) -> Result<SigmaSpacing, SchedulerConfigError> {
    let karras = cfg_value!(config, use_karras_sigmas).unwrap_or(false);
    let exponential = cfg_value!(config, use_exponential_sigmas).unwrap_or(false);
    let beta = cfg_value!(config, use_beta_sigmas).unwrap_or(false);
    if [karras, exponential, beta].iter().filter(|&&b| b).count() > 1 {
        return Err(SchedulerConfigError::IncompatibleOptions {
            class,
            reason:
                "only one of use_beta_sigmas, use_exponential_sigmas, use_karras_sigmas can be used"
                    .into(),
        });
    }
    require_false(class, "use_beta_sigmas", Some(beta))?;
    Ok(if karras {
        SigmaSpacing::Karras
    } else if exponential {
        SigmaSpacing::Exponential
    } else {
        SigmaSpacing::Interpolated
    })
}

/// `final_sigmas_type`: what the sigma after the last step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FinalSigma {
    /// `zero`: the last step lands on the clean image.
    Zero,
    /// `sigma_min`: the last step lands on the smallest training sigma.
    SigmaMin,
}

pub(crate) fn final_sigma(
    class: &'static str,
    config: &SchedulerConfig,
) -> Result<FinalSigma, SchedulerConfigError> {
    match cfg_value!(config, final_sigmas_type).as_deref() {
        None | Some("zero") => Ok(FinalSigma::Zero),
        Some("sigma_min") => Ok(FinalSigma::SigmaMin),
        Some(other) => Err(SchedulerConfigError::UnsupportedValue {
            class,
            key: "final_sigmas_type",
            value: other.to_string(),
            supported: "zero, sigma_min",
        }),
    }
}

impl FinalSigma {
    /// The value appended after the inference sigmas (float32).
    pub(crate) fn value(self, alphas_cumprod: &[f32]) -> f32 {
        match self {
            Self::Zero => 0.0,
            Self::SigmaMin => ((1.0 - alphas_cumprod[0]) / alphas_cumprod[0]).sqrt(),
        }
    }
}

/// The float32 timesteps Euler and Euler-ancestral space the same way.
pub(crate) fn euler_timesteps(
    spacing: TimestepSpacing,
    num_train_timesteps: usize,
    num_inference_steps: usize,
    steps_offset: i64,
) -> Vec<f32> {
    let t = num_train_timesteps;
    let n = num_inference_steps;
    match spacing {
        // np.linspace(0, T - 1, N, dtype=np.float32)[::-1]
        TimestepSpacing::Linspace => np_linspace(0.0, (t - 1) as f64, n, true)
            .into_iter()
            .rev()
            .map(|v| v as f32)
            .collect(),
        // (np.arange(0, N) * (T // N)).round()[::-1].astype(np.float32) + steps_offset
        TimestepSpacing::Leading => {
            let ratio = t / n;
            (0..n)
                .rev()
                .map(|i| (i * ratio) as f32 + steps_offset as f32)
                .collect()
        }
        // np.arange(T, 0, -T / N).round().astype(np.float32) - 1
        TimestepSpacing::Trailing => np_arange(t as f64, 0.0, -(t as f64 / n as f64))
            .into_iter()
            .map(|v| np_round(v) as f32 - 1.0)
            .collect(),
    }
}

/// Everything `EulerDiscreteScheduler.set_timesteps` leaves behind.
pub(crate) struct EulerSchedule {
    /// The UNet timesteps as float32 values.
    pub timesteps: Vec<f32>,
    /// One more entry than `timesteps`: the sigma each step ends at comes last.
    pub sigmas: Vec<f32>,
}

/// `_convert_to_karras` / `_convert_to_exponential` bounds: the config's `sigma_min` /
/// `sigma_max` when set, else the ends of `in_sigmas` (which runs from large to small).
pub(crate) fn respaced_sigmas(
    spacing: SigmaSpacing,
    in_sigmas: &[f64],
    config_bounds: (Option<f64>, Option<f64>),
    num_inference_steps: usize,
) -> Vec<f64> {
    let sigma_min = config_bounds
        .0
        .unwrap_or_else(|| in_sigmas.last().copied().unwrap_or(0.0));
    let sigma_max = config_bounds
        .1
        .unwrap_or_else(|| in_sigmas.first().copied().unwrap_or(0.0));
    match spacing {
        SigmaSpacing::Karras => karras_sigmas(sigma_min, sigma_max, num_inference_steps),
        SigmaSpacing::Exponential => exponential_sigmas(sigma_min, sigma_max, num_inference_steps),
        SigmaSpacing::Interpolated => in_sigmas.to_vec(),
    }
}

pub(crate) struct EulerScheduleParams {
    pub spacing: TimestepSpacing,
    pub steps_offset: i64,
    pub sigma_spacing: SigmaSpacing,
    pub sigma_bounds: (Option<f64>, Option<f64>),
    pub final_sigma: FinalSigma,
}

pub(crate) fn euler_schedule(
    betas: &BetaParams,
    alphas_cumprod: &[f32],
    params: &EulerScheduleParams,
    num_inference_steps: usize,
) -> EulerSchedule {
    let t = betas.num_train_timesteps;
    let timesteps = euler_timesteps(params.spacing, t, num_inference_steps, params.steps_offset);
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

/// Euler's initial noise scale: the largest sigma, or `sqrt(sigma_max^2 + 1)` for `leading`
/// spacing (float32).
pub(crate) fn euler_init_noise_sigma(sigmas: &[f32], spacing: TimestepSpacing) -> f64 {
    let max_sigma = sigmas.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    match spacing {
        TimestepSpacing::Linspace | TimestepSpacing::Trailing => max_sigma as f64,
        TimestepSpacing::Leading => (max_sigma * max_sigma + 1.0).sqrt() as f64,
    }
}

/// `sample / sqrt(sigma^2 + 1)`: the EDM input preconditioning for a VP-trained UNet.
pub(crate) fn scale_by_sigma(sample: &Tensor, sigma: f32) -> candle_core::Result<Tensor> {
    let dtype = sample.dtype();
    div_scalar(&common::f32(sample)?, (sigma * sigma + 1.0).sqrt())?.to_dtype(dtype)
}

/// x0 from a v-prediction at `sigma`: `v * (-sigma / sqrt(sigma^2 + 1)) + x / (sigma^2 + 1)`.
pub(crate) fn x0_from_v(
    model_output: &Tensor,
    sample: &Tensor,
    sigma: f32,
) -> candle_core::Result<Tensor> {
    let s2p1 = sigma * sigma + 1.0;
    scale(model_output, -sigma / s2p1.sqrt())?.add(&div_scalar(sample, s2p1)?)
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

        let mut alphas_cumprod = betas.alphas_cumprod();
        if betas.rescale_betas_zero_snr {
            // Keeps the terminal sigma finite (diffusers sets it to 2**-24).
            if let Some(last) = alphas_cumprod.last_mut() {
                *last = 2f32.powi(-24);
            }
        }
        let schedule = euler_schedule(&betas, &alphas_cumprod, &params, num_inference_steps);
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

/// `original + noise * sigma` (variance-exploding form used by the Euler family).
pub(crate) fn add_noise_sigma(
    original: &Tensor,
    noise: &Tensor,
    sigma: f32,
) -> candle_core::Result<Tensor> {
    let dtype = original.dtype();
    common::f32(original)?
        .add(&scale(&common::f32(noise)?, sigma)?)?
        .to_dtype(dtype)
}

#[cfg(test)]
mod tests {
    //! Reference values: `tests/fixtures/scheduler_cases.json` (see `schedulers::testing`).

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
    );
}
