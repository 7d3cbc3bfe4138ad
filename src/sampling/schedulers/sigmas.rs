//! The sigma schedules the Karras-style samplers share (Euler, Euler ancestral, DPM++ 2M):
//! training sigmas respaced linearly, as Karras et al. 2022 (eq. 5, `rho = 7`) or
//! exponentially between their ends; what the sigma after the last step is; Euler's float32
//! timesteps; and the EDM preconditioning `x / sqrt(sigma^2 + 1)` with the v-prediction and
//! noising formulas in sigma space. Mirrors diffusers 0.42.1's `scheduling_euler_discrete.py`
//! and the `_convert_to_karras` / `_convert_to_exponential` helpers it shares.

use candle_core::Tensor;

use super::common::{self, div_scalar, exponential_sigmas, karras_sigmas, scale};
use super::common::{np_arange, np_interp_unit_grid, np_linspace, np_round, sigma_to_t};
use super::common::{train_sigmas, BetaParams};
use super::config::{
    cfg_value, require_false, SchedulerConfig, SchedulerConfigError, TimestepSpacing,
};

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
