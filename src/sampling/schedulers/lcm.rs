//! `LCMScheduler`: multistep consistency sampling for Latent Consistency Models (Luo et al.,
//! "Latent Consistency Models", 2023, Algorithm 1). Mirrors diffusers 0.42.1
//! `scheduling_lcm.py`.
//!
//! Each step predicts the clean latents through the consistency function
//! `f(x, t) = c_skip(t) * x + c_out(t) * x0_pred` and, except on the last step, re-noises them
//! to the next timestep with fresh noise from the generation's [`TorchRng`]
//! (`randn_tensor(model_output.shape, generator=generator)`).
//!
//! The timesteps are a subset of the `original_inference_steps`-point distillation schedule
//! (`k - 1, 2k - 1, ...` with `k = T // original_inference_steps`); diffusers' LCM ignores
//! `timestep_spacing` and `steps_offset`.

use candle_core::Tensor;

use super::common::{self, alpha_at, check_steps, div_scalar, np_linspace, scale};
use super::config::{
    beta_params, cfg_value, parse_prediction_type, require_false, BetaSchedule, PredictionType,
    SchedulerConfig, SchedulerConfigError,
};
use super::ddim::add_noise_ddpm;
use super::{Scheduler, StepOutput};
use crate::sampling::noise::TorchRng;

const CLASS: &str = "LCMScheduler";

/// Latent consistency model sampler.
pub struct LcmScheduler {
    alphas_cumprod: Vec<f32>,
    final_alpha_cumprod: f32,
    prediction_type: PredictionType,
    clip_sample_range: Option<f32>,
    timestep_scaling: f32,
    num_inference_steps: usize,
    timesteps: Vec<i64>,
    timesteps_f64: Vec<f64>,
}

/// `LCMScheduler.set_timesteps(num_inference_steps)` (strength 1).
pub(crate) fn lcm_timesteps(
    num_train_timesteps: usize,
    original_inference_steps: usize,
    num_inference_steps: usize,
) -> Result<Vec<i64>, SchedulerConfigError> {
    let invalid = |reason: String| SchedulerConfigError::InvalidSteps {
        class: CLASS,
        steps: num_inference_steps,
        reason,
    };
    if original_inference_steps == 0 || original_inference_steps > num_train_timesteps {
        return Err(SchedulerConfigError::UnsupportedValue {
            class: CLASS,
            key: "original_inference_steps",
            value: original_inference_steps.to_string(),
            supported: "1 ..= num_train_timesteps",
        });
    }
    check_steps(CLASS, num_inference_steps, num_train_timesteps)?;
    // The distillation schedule, largest first.
    let k = (num_train_timesteps / original_inference_steps) as i64;
    let origin: Vec<i64> = (1..=original_inference_steps as i64)
        .rev()
        .map(|i| i * k - 1)
        .collect();
    if origin.len() / num_inference_steps < 1 || num_inference_steps > original_inference_steps {
        return Err(invalid(format!(
            "cannot exceed original_inference_steps ({original_inference_steps})"
        )));
    }
    // floor(np.linspace(0, len, N, endpoint=False)) picks evenly spaced entries.
    Ok(
        np_linspace(0.0, origin.len() as f64, num_inference_steps, false)
            .into_iter()
            .map(|x| origin[x.floor() as usize])
            .collect(),
    )
}

impl LcmScheduler {
    /// `LCMScheduler.from_config(config)` followed by `set_timesteps(num_inference_steps)`.
    pub fn new(
        config: &SchedulerConfig,
        num_inference_steps: usize,
    ) -> Result<Self, SchedulerConfigError> {
        let betas = beta_params(
            CLASS,
            config,
            (0.00085, 0.012, BetaSchedule::ScaledLinear),
            true,
        )?;
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
        let original_inference_steps =
            cfg_value!(config, original_inference_steps).unwrap_or(50) as usize;
        let clip_sample = cfg_value!(config, clip_sample).unwrap_or(false);
        let clip_sample_range = cfg_value!(config, clip_sample_range).unwrap_or(1.0) as f32;
        let set_alpha_to_one = cfg_value!(config, set_alpha_to_one).unwrap_or(true);
        let timestep_scaling = cfg_value!(config, timestep_scaling).unwrap_or(10.0) as f32;

        let timesteps = lcm_timesteps(
            betas.num_train_timesteps,
            original_inference_steps,
            num_inference_steps,
        )?;
        let alphas_cumprod = betas.alphas_cumprod();
        let final_alpha_cumprod = if set_alpha_to_one {
            1.0
        } else {
            alphas_cumprod[0]
        };
        Ok(Self {
            alphas_cumprod,
            final_alpha_cumprod,
            prediction_type,
            clip_sample_range: clip_sample.then_some(clip_sample_range),
            timestep_scaling,
            num_inference_steps,
            timesteps_f64: timesteps.iter().map(|&v| v as f64).collect(),
            timesteps,
        })
    }

    /// `get_scalings_for_boundary_condition_discrete`: `(c_skip, c_out)` with sigma_data = 0.5,
    /// computed in float32 as torch does for a tensor timestep (`0.25 / x` is evaluated as
    /// `reciprocal(x) * 0.25`).
    fn boundary_scalings(&self, timestep: i64) -> (f32, f32) {
        let sigma_data_sq = 0.25f32;
        let scaled = timestep as f32 * self.timestep_scaling;
        let denom = scaled * scaled + sigma_data_sq;
        let c_skip = (1.0 / denom) * sigma_data_sq;
        let c_out = scaled / denom.sqrt();
        (c_skip, c_out)
    }
}

impl Scheduler for LcmScheduler {
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
        let i = common::checked_index(step_index, self.timesteps.len())?;
        let timestep = self.timesteps[i];
        let dtype = sample.dtype();
        let model_output = common::f32(model_output)?;
        let sample = common::f32(sample)?;

        // 1. The next timestep in the schedule (the last step stays put).
        let prev_timestep = self.timesteps.get(i + 1).copied().unwrap_or(timestep);

        // 2. alphas and betas.
        let alpha_prod_t = alpha_at(&self.alphas_cumprod, timestep)?;
        let alpha_prod_t_prev = if prev_timestep >= 0 {
            alpha_at(&self.alphas_cumprod, prev_timestep)?
        } else {
            self.final_alpha_cumprod
        };
        let beta_prod_t = 1.0 - alpha_prod_t;
        let beta_prod_t_prev = 1.0 - alpha_prod_t_prev;

        // 3. Boundary-condition scalings.
        let (c_skip, c_out) = self.boundary_scalings(timestep);

        // 4. x0 from the model output.
        let predicted_original_sample = match self.prediction_type {
            PredictionType::Epsilon => div_scalar(
                &sample.sub(&scale(&model_output, beta_prod_t.sqrt())?)?,
                alpha_prod_t.sqrt(),
            )?,
            PredictionType::Sample => model_output.clone(),
            PredictionType::VPrediction => scale(&sample, alpha_prod_t.sqrt())?
                .sub(&scale(&model_output, beta_prod_t.sqrt())?)?,
        };
        let predicted_original_sample = match self.clip_sample_range {
            Some(range) => predicted_original_sample.clamp(-range, range)?,
            None => predicted_original_sample,
        };

        // 5. The consistency function's output.
        let denoised = scale(&predicted_original_sample, c_out)?.add(&scale(&sample, c_skip)?)?;

        // 6. Re-noise to the next timestep, except after the last step.
        let prev_sample = if i != self.num_inference_steps - 1 {
            let noise = rng.randn_tensor(model_output.dims(), model_output.device())?;
            scale(&denoised, alpha_prod_t_prev.sqrt())?
                .add(&scale(&noise, beta_prod_t_prev.sqrt())?)?
        } else {
            denoised.clone()
        };
        Ok(StepOutput {
            prev_sample: prev_sample.to_dtype(dtype)?,
            pred_original_sample: Some(denoised.to_dtype(dtype)?),
        })
    }

    fn add_noise(
        &self,
        original: &Tensor,
        noise: &Tensor,
        step_index: usize,
    ) -> candle_core::Result<Tensor> {
        let i = common::checked_index(step_index, self.timesteps.len())?;
        add_noise_ddpm(
            alpha_at(&self.alphas_cumprod, self.timesteps[i])?,
            original,
            noise,
        )
    }
}

#[cfg(test)]
mod tests {
    //! Reference values: `tests/fixtures/scheduler_cases.json` (see `schedulers::testing`).

    super::super::testing::reference_cases!("lcm":
        class_defaults_4,
        class_defaults_1,
        v_prediction_clip_options,
        sample_prediction,
        img2img,
    );
}
