//! `KDPM2AncestralDiscreteScheduler` (A1111 "DPM2 a"): k-diffusion's `sample_dpm_2_ancestral`.
//! Each step is DPM2's midpoint step (see `kdpm2.rs`) aimed at `sigma_down` instead of the next
//! sigma, followed by fresh noise of standard deviation `sigma_up`, with `sigma_up^2 +
//! sigma_down^2 = sigma_next^2` (k-diffusion's `get_ancestral_step`, eta = 1); the midpoint is
//! the geometric mean of the sigma and `sigma_down`. Mirrors diffusers 0.42.1
//! `scheduling_k_dpm_2_ancestral_discrete.py`.
//!
//! Two UNet evaluations per step (`order` 2): `timesteps()` is `[t0, ti0, t1, ti1, ..., t(N-1)]`,
//! each step's midpoint timestep right after its own. The noise is drawn from the generation's
//! [`TorchRng`] in the second half of every step but the last (a plain Euler step to sigma 0,
//! whose second half never comes), with the model output's shape, exactly like diffusers'
//! `randn_tensor(model_output.shape, generator=generator)`.
//!
//! The schedule's float32 arithmetic (`sigma_up`, `sigma_down`, the midpoints' `log` / `lerp` /
//! `exp`, the midpoint timesteps) follows torch's as described in `kdpm2.rs`.

use candle_core::Tensor;

use super::common::{self, div_scalar, scale};
use super::config::{PredictionType, SchedulerConfig, SchedulerConfigError};
use super::kdpm2::{
    dpm2_base_schedule, dpm2_x0, interleave, interleave_timesteps, lerp_half, second_half_index,
    sigma_to_t_f32,
};
use super::sigmas::{add_noise_sigma, euler_init_noise_sigma, scale_by_sigma};
use super::{Scheduler, StepOutput};
use crate::sampling::noise::TorchRng;

const CLASS: &str = "KDPM2AncestralDiscreteScheduler";

/// DPM2 ancestral sampler.
pub struct Kdpm2AncestralDiscreteScheduler {
    prediction_type: PredictionType,
    timesteps: Vec<f64>,
    /// Interleaved, `2N + 2` entries; `sigmas_interpol`, `sigmas_up` and `sigmas_down` alike
    /// (their last entries are 0 or NaN and never used).
    sigmas: Vec<f32>,
    sigmas_interpol: Vec<f32>,
    sigmas_up: Vec<f32>,
    sigmas_down: Vec<f32>,
    init_noise_sigma: f64,
    /// The sample the first half of a step started from (diffusers' `self.sample`).
    sample: Option<Tensor>,
}

impl Kdpm2AncestralDiscreteScheduler {
    /// `KDPM2AncestralDiscreteScheduler.from_config(config)` + `set_timesteps(num_inference_steps)`.
    pub fn new(
        config: &SchedulerConfig,
        num_inference_steps: usize,
    ) -> Result<Self, SchedulerConfigError> {
        let base = dpm2_base_schedule(CLASS, config, num_inference_steps)?;
        let sigmas = &base.sigmas;
        let n = sigmas.len();
        // sigmas_next = sigmas.roll(-1); sigmas_next[-1] = 0
        let next = |i: usize| if i + 1 < n { sigmas[i + 1] } else { 0.0 };
        let sigmas_up: Vec<f32> = (0..n)
            .map(|i| {
                let (s, sn) = (sigmas[i], next(i));
                (sn * sn * (s * s - sn * sn) / (s * s)).sqrt()
            })
            .collect();
        let mut sigmas_down: Vec<f32> = (0..n)
            .map(|i| {
                let sn = next(i);
                (sn * sn - sigmas_up[i] * sigmas_up[i]).sqrt()
            })
            .collect();
        sigmas_down[n - 1] = 0.0;
        // sigmas.log().lerp(sigmas_down.log(), 0.5).exp(); sigmas_interpol[-2:] = 0
        let mut interpol: Vec<f32> = (0..n)
            .map(|i| lerp_half(sigmas[i].ln(), sigmas_down[i].ln()).exp())
            .collect();
        for v in interpol.iter_mut().skip(n.saturating_sub(2)) {
            *v = 0.0;
        }
        let midpoint_timesteps: Vec<f64> = interpol[..n - 2]
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
            sigmas_up: interleave(&sigmas_up),
            sigmas_down: interleave(&sigmas_down),
            sample: None,
        })
    }

    /// The interleaved sigmas (`2N + 2` entries, as diffusers' `scheduler.sigmas`).
    pub fn sigmas(&self) -> &[f32] {
        &self.sigmas
    }
}

impl Scheduler for Kdpm2AncestralDiscreteScheduler {
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
            self.sigmas_interpol[second_half_index(i)?]
        };
        scale_by_sigma(sample, sigma)
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

        let (prev_sample, x0) = match self.sample.take() {
            None => {
                // First half: Euler from sigmas[i] to the midpoint (s_churn = 0).
                let sigma_hat = self.sigmas[i] * (0.0 + 1.0);
                let sigma_interpol = self.sigmas_interpol[i];
                let x0 = dpm2_x0(self.prediction_type, &model_output, &sample, sigma_hat)?;
                let derivative = div_scalar(&sample.sub(&x0)?, sigma_hat)?;
                let dt = sigma_interpol - sigma_hat;
                let prev = sample.add(&scale(&derivative, dt)?)?;
                self.sample = Some(sample);
                (prev, x0)
            }
            Some(start) => {
                // Second half: the midpoint slope from the kept sample down to sigma_down, then
                // noise up to the next sigma.
                let prev = second_half_index(i)?;
                let sigma_hat = self.sigmas[prev] * (0.0 + 1.0);
                let sigma_interpol = self.sigmas_interpol[prev];
                let sigma_up = self.sigmas_up[prev];
                let sigma_down = self.sigmas_down[prev];
                let x0 = dpm2_x0(self.prediction_type, &model_output, &sample, sigma_interpol)?;
                let derivative = div_scalar(&sample.sub(&x0)?, sigma_interpol)?;
                let dt = sigma_down - sigma_hat;
                let prev_sample = start.add(&scale(&derivative, dt)?)?;
                let noise = rng.randn_tensor(model_output.dims(), model_output.device())?;
                (prev_sample.add(&scale(&noise, sigma_up)?)?, x0)
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

    super::super::testing::reference_cases!("kdpm2_ancestral":
        class_defaults,
        sd_linspace,
        karras,
        v_prediction_leading,
        exponential,
        one_step,
        img2img,
        beta_sigmas,
    );
}
