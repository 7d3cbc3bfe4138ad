//! `KDPM2DiscreteScheduler` (A1111 "DPM2"): k-diffusion's `sample_dpm_2`, the second-order
//! DPM-Solver step of Lu et al. (2022) written for the probability-flow ODE in sigma space
//! (Karras et al. 2022): an Euler step to the midpoint sigma (the geometric mean of this sigma
//! and the next), a second model evaluation there, and the full step with the midpoint slope.
//! Mirrors diffusers 0.42.1 `scheduling_k_dpm_2_discrete.py`.
//!
//! Two UNet evaluations per step, as with Heun (`order` 2): `timesteps()` is `[t0, ti1, t1, ti2,
//! t2, ..., ti(N-1), t(N-1)]` where `ti(k)` is the timestep of the midpoint sigma between
//! `s(k-1)` and `s(k)`: the second evaluation of step `k - 1` happens at the *next* step's
//! timestep slot, as diffusers lays it out. The last step is a plain Euler step to sigma 0.
//! Which half a `step` call is follows the calls (diffusers' `self.sample is None`); the sigmas
//! follow the step index. `sample` prediction is not implemented by diffusers, nor here.
//!
//! Numerics, where they differ from Euler's schedule:
//!
//! * midpoint sigmas `sigmas.log().lerp(sigmas.roll(1).log(), 0.5).exp()` in float32 (torch's
//!   `lerp` at weight 0.5 is `end - (end - start) * 0.5`). torch's CPU `log` / `exp` (SLEEF
//!   kernels on vectorised stretches) need not round as the C library's do, which we use: a
//!   midpoint sigma can be one float32 ulp apart (the midpoint timesteps of the fixtures are
//!   within 1.3e-7 relative).
//! * the midpoint timesteps: `_sigma_to_t` of a float32 tensor against float32 `log_sigmas`
//!   tensors, so (unlike Euler's float64 `_sigma_to_t`) the interpolation runs in float32
//!   ([`sigma_to_t_f32`]).
//! * Karras timesteps are rounded (`np.round`) and the whole timestep list is then float64;
//!   exponential ones are float64 unrounded; the others float32.

use candle_core::Tensor;

use super::common::{self, check_steps, div_scalar, np_interp_unit_grid, np_round, scale};
use super::config::{
    beta_params, cfg_value, parse_prediction_type, parse_spacing, BetaSchedule, PredictionType,
    SchedulerConfig, SchedulerConfigError, TimestepSpacing,
};
use super::sigmas::{
    add_noise_sigma, euler_init_noise_sigma, euler_timesteps, respaced_sigmas, scale_by_sigma,
    sigma_spacing, sigma_to_t, train_sigmas, x0_from_v, SigmaSpacing,
};
use super::{Scheduler, StepOutput};
use crate::sampling::noise::TorchRng;

const CLASS: &str = "KDPM2DiscreteScheduler";

/// The part of `set_timesteps` both DPM2 classes share: the per-step timesteps and sigmas
/// before the interleaving.
pub(crate) struct Dpm2BaseSchedule {
    /// `N` timesteps (float32 values, or float64 for Karras / exponential / beta sigmas).
    pub timesteps: Vec<f64>,
    /// `N + 1` sigmas, the last 0.
    pub sigmas: Vec<f32>,
    /// `np.log` of the training sigmas (float32).
    pub log_sigmas: Vec<f32>,
    pub spacing: TimestepSpacing,
    pub prediction_type: PredictionType,
}

/// Reads the config the way both DPM2 classes do and builds their shared schedule.
pub(crate) fn dpm2_base_schedule(
    class: &'static str,
    config: &SchedulerConfig,
    num_inference_steps: usize,
) -> Result<Dpm2BaseSchedule, SchedulerConfigError> {
    let betas = beta_params(class, config, (0.00085, 0.012, BetaSchedule::Linear), false)?;
    let prediction_type = parse_prediction_type(
        class,
        cfg_value!(config, prediction_type),
        &[PredictionType::Epsilon, PredictionType::VPrediction],
        false,
    )?;
    let spacing = parse_spacing(
        class,
        cfg_value!(config, timestep_spacing),
        TimestepSpacing::Linspace,
    )?;
    let steps_offset = cfg_value!(config, steps_offset).unwrap_or(0);
    let sigma_spacing = sigma_spacing(class, config)?;
    // Not __init__ arguments, but `from_config` keeps them where the conversions look.
    let bounds = (cfg_value!(config, sigma_min), cfg_value!(config, sigma_max));
    check_steps(class, num_inference_steps, betas.num_train_timesteps)?;

    let alphas_cumprod = betas.alphas_cumprod();
    let train = train_sigmas(&alphas_cumprod);
    let train_f64: Vec<f64> = train.iter().map(|&s| s as f64).collect();
    let log_sigmas: Vec<f32> = train.iter().map(|s| s.ln()).collect();
    let spaced = euler_timesteps(
        spacing,
        betas.num_train_timesteps,
        num_inference_steps,
        steps_offset,
    );
    let interpolated: Vec<f64> = spaced
        .iter()
        .map(|&t| np_interp_unit_grid(t as f64, &train_f64))
        .collect();
    let (sigmas, timesteps): (Vec<f64>, Vec<f64>) = match sigma_spacing {
        SigmaSpacing::Interpolated => (interpolated, spaced.iter().map(|&t| t as f64).collect()),
        other => {
            let sigmas = respaced_sigmas(other, &interpolated, bounds, num_inference_steps);
            let timesteps = sigmas
                .iter()
                .map(|&s| {
                    let t = sigma_to_t(s, &log_sigmas);
                    // Karras: `.round()`; both stay float64.
                    if other == SigmaSpacing::Karras {
                        np_round(t)
                    } else {
                        t
                    }
                })
                .collect();
            (sigmas, timesteps)
        }
    };
    let mut sigmas: Vec<f32> = sigmas.into_iter().map(|s| s as f32).collect();
    sigmas.push(0.0);
    Ok(Dpm2BaseSchedule {
        timesteps,
        sigmas,
        log_sigmas,
        spacing,
        prediction_type,
    })
}

/// torch's `a.lerp(b, 0.5)` for float32: `b - (b - a) * 0.5`.
pub(crate) fn lerp_half(a: f32, b: f32) -> f32 {
    b - (b - a) * 0.5
}

/// `_sigma_to_t(sigma, log_sigmas)` as DPM2 calls it for its midpoint sigmas: a float32 sigma
/// against the float32 `log_sigmas` tensor, every operation in float32.
pub(crate) fn sigma_to_t_f32(sigma: f32, log_sigmas: &[f32]) -> f32 {
    // np.maximum propagates NaN (the unused first midpoint of DPM2 is NaN).
    let clamped = if sigma.is_nan() {
        sigma
    } else {
        sigma.max(1e-10)
    };
    let log_sigma = clamped.ln();
    let n = log_sigmas.len();
    let mut low_idx = 0usize;
    for (i, &ls) in log_sigmas.iter().enumerate() {
        if log_sigma - ls >= 0.0 {
            low_idx = i;
        }
    }
    low_idx = low_idx.min(n.saturating_sub(2));
    let high_idx = low_idx + 1;
    let low = log_sigmas[low_idx];
    let high = log_sigmas[high_idx];
    let w = (low - log_sigma) / (low - high);
    // np.clip keeps NaN.
    let w = if w.is_nan() { w } else { w.clamp(0.0, 1.0) };
    (1.0 - w) * low_idx as f32 + w * high_idx as f32
}

/// `cat([x[:1], x[1:].repeat_interleave(2), x[-1:]])`.
pub(crate) fn interleave(values: &[f32]) -> Vec<f32> {
    let mut out = Vec::with_capacity(2 * values.len() + 1);
    if let Some((&first, rest)) = values.split_first() {
        out.push(first);
        for &v in rest {
            out.extend([v, v]);
        }
        if let Some(&last) = values.last() {
            out.push(last);
        }
    }
    out
}

/// `cat([timesteps[:1], stack((mid, timesteps[1:]), -1).flatten()])`: each later timestep is
/// preceded by its midpoint timestep.
pub(crate) fn interleave_timesteps(timesteps: &[f64], midpoints: &[f64]) -> Vec<f64> {
    let mut out = Vec::with_capacity(2 * timesteps.len());
    if let Some((&first, rest)) = timesteps.split_first() {
        out.push(first);
        for (&mid, &t) in midpoints.iter().zip(rest) {
            out.extend([mid, t]);
        }
    }
    out
}

/// The index of the first half of the step whose second half is at `i`.
pub(crate) fn second_half_index(i: usize) -> candle_core::Result<usize> {
    i.checked_sub(1).ok_or_else(|| {
        candle_core::Error::Msg("DPM2: the second half of a step cannot be the first entry".into())
    })
}

/// x0 from the model output at noise level `sigma` (epsilon or v-prediction).
pub(crate) fn dpm2_x0(
    prediction_type: PredictionType,
    model_output: &Tensor,
    sample: &Tensor,
    sigma: f32,
) -> candle_core::Result<Tensor> {
    match prediction_type {
        PredictionType::VPrediction => x0_from_v(model_output, sample, sigma),
        _ => sample.sub(&scale(model_output, sigma)?),
    }
}

/// DPM2 sampler.
pub struct Kdpm2DiscreteScheduler {
    prediction_type: PredictionType,
    timesteps: Vec<f64>,
    /// Interleaved, `2N + 2` entries.
    sigmas: Vec<f32>,
    /// The midpoint sigmas, interleaved like `sigmas` (the first is NaN and never used).
    sigmas_interpol: Vec<f32>,
    init_noise_sigma: f64,
    /// The sample the first half of a step started from (diffusers' `self.sample`).
    sample: Option<Tensor>,
}

impl Kdpm2DiscreteScheduler {
    /// `KDPM2DiscreteScheduler.from_config(config)` followed by `set_timesteps(num_inference_steps)`.
    pub fn new(
        config: &SchedulerConfig,
        num_inference_steps: usize,
    ) -> Result<Self, SchedulerConfigError> {
        let base = dpm2_base_schedule(CLASS, config, num_inference_steps)?;
        let sigmas = &base.sigmas;
        let n = sigmas.len();
        // sigmas.log().lerp(sigmas.roll(1).log(), 0.5).exp()
        let interpol: Vec<f32> = (0..n)
            .map(|i| lerp_half(sigmas[i].ln(), sigmas[(i + n - 1) % n].ln()).exp())
            .collect();
        let midpoint_timesteps: Vec<f64> = interpol[1..n - 1]
            .iter()
            .map(|&s| sigma_to_t_f32(s, &base.log_sigmas) as f64)
            .collect();
        let timesteps = interleave_timesteps(&base.timesteps, &midpoint_timesteps);
        let sigmas = interleave(sigmas);
        Ok(Self {
            prediction_type: base.prediction_type,
            init_noise_sigma: euler_init_noise_sigma(&sigmas, base.spacing),
            timesteps,
            sigmas,
            sigmas_interpol: interleave(&interpol),
            sample: None,
        })
    }

    /// The interleaved sigmas (`2N + 2` entries, as diffusers' `scheduler.sigmas`).
    pub fn sigmas(&self) -> &[f32] {
        &self.sigmas
    }
}

impl Scheduler for Kdpm2DiscreteScheduler {
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
        let sigma = if self.sample.is_none() {
            self.sigmas[i]
        } else {
            self.sigmas_interpol[i]
        };
        scale_by_sigma(sample, sigma)
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

        let (prev_sample, x0) = match self.sample.take() {
            None => {
                // First half: Euler from sigmas[i] to the midpoint (s_churn = 0).
                let sigma_hat = self.sigmas[i] * (0.0 + 1.0);
                let sigma_interpol = self.sigmas_interpol[i + 1];
                let x0 = dpm2_x0(self.prediction_type, &model_output, &sample, sigma_hat)?;
                let derivative = div_scalar(&sample.sub(&x0)?, sigma_hat)?;
                let dt = sigma_interpol - sigma_hat;
                let prev = sample.add(&scale(&derivative, dt)?)?;
                self.sample = Some(sample);
                (prev, x0)
            }
            Some(start) => {
                // Second half: the slope at the midpoint, applied from the kept sample.
                let prev = second_half_index(i)?;
                let sigma_hat = self.sigmas[prev] * (0.0 + 1.0);
                let sigma_interpol = self.sigmas_interpol[i];
                let sigma_next = self.sigmas[i];
                let x0 = dpm2_x0(self.prediction_type, &model_output, &sample, sigma_interpol)?;
                let derivative = div_scalar(&sample.sub(&x0)?, sigma_interpol)?;
                let dt = sigma_next - sigma_hat;
                (start.add(&scale(&derivative, dt)?)?, x0)
            }
        };
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
        let i = common::checked_index(step_index, self.timesteps.len())?;
        add_noise_sigma(original, noise, self.sigmas[i])
    }
}

#[cfg(test)]
mod tests {
    //! Reference values: `tests/fixtures/scheduler_cases_more.json` and, for the beta sigmas,
    //! `scheduler_cases_extra.json` (see `schedulers::testing`).

    super::super::testing::reference_cases!("kdpm2":
        class_defaults,
        sd_linspace,
        karras,
        karras_leading_offset,
        exponential_config_bounds,
        v_prediction_trailing,
        one_step,
        img2img,
        beta_sigmas,
    );
}
