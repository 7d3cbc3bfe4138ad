//! `PNDMScheduler` (Liu et al., "Pseudo Numerical Methods for Diffusion Models on Manifolds",
//! 2022). Mirrors diffusers 0.42.1 `scheduling_pndm.py`.
//!
//! With `skip_prk_steps = true` (Stable Diffusion's config) this is PLMS: a linear multistep
//! method over the stored noise predictions, warmed up by one Heun-like step. Its timestep list
//! has `N + 1` entries — the second-to-last training timestep of the grid appears twice:
//! `[980, 960, 960, 940, ..., 0]` for 50 steps with `leading` spacing. The first step moves
//! from 980 to 960 with the raw prediction; the second re-evaluates at 960 and restarts from the
//! stored 980 sample with the average of both predictions.
//!
//! With `skip_prk_steps = false` (the class default, used when a config without the key is
//! loaded as PNDM) the first 12 model evaluations are pseudo Runge–Kutta (PRK) steps over
//! half-step timesteps, followed by PLMS: `N + 9` timesteps in all.
//!
//! The multistep state is driven by a call counter, not by the step index: the first `step`
//! call after construction is always the warm-up, whatever timestep it is given (this is what
//! happens in img2img, which starts part-way down the list).

use candle_core::Tensor;

use super::common::{self, alpha_at, check_steps, check_timesteps_in_range, div_scalar};
use super::common::{np_arange, np_linspace, np_round, scale};
use super::config::{
    beta_params, cfg_value, parse_prediction_type, parse_spacing, BetaSchedule, PredictionType,
    SchedulerConfig, SchedulerConfigError, TimestepSpacing,
};
use super::ddim::add_noise_ddpm;
use super::{Scheduler, StepOutput};
use crate::sampling::noise::TorchRng;

const CLASS: &str = "PNDMScheduler";

/// PNDM / PLMS.
pub struct PndmScheduler {
    alphas_cumprod: Vec<f32>,
    final_alpha_cumprod: f32,
    prediction_type: PredictionType,
    skip_prk_steps: bool,
    /// `num_train_timesteps // num_inference_steps`.
    step_ratio: i64,
    prk_len: usize,
    timesteps: Vec<i64>,
    timesteps_f64: Vec<f64>,

    // Multistep state (`counter`, `ets`, `cur_sample`, `cur_model_output` in diffusers).
    counter: usize,
    ets: Vec<Tensor>,
    cur_sample: Option<Tensor>,
    cur_model_output: Option<Tensor>,
}

/// The ascending `_timesteps` grid of `PNDMScheduler.set_timesteps`.
fn base_timesteps(
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
            .map(|v| np_round(v) as i64)
            .collect(),
        TimestepSpacing::Leading => {
            let ratio = (t / n) as i64;
            (0..n as i64).map(|i| i * ratio + steps_offset).collect()
        }
        TimestepSpacing::Trailing => np_arange(t as f64, 0.0, -(t as f64 / n as f64))
            .into_iter()
            .rev()
            .map(|v| np_round(v) as i64 - 1)
            .collect(),
    }
}

/// The PRK half-step timesteps and the PLMS timesteps, both in sampling order.
pub(crate) fn pndm_timesteps(
    spacing: TimestepSpacing,
    num_train_timesteps: usize,
    num_inference_steps: usize,
    steps_offset: i64,
    skip_prk_steps: bool,
) -> (Vec<i64>, Vec<i64>) {
    let base = base_timesteps(
        spacing,
        num_train_timesteps,
        num_inference_steps,
        steps_offset,
    );
    let len = base.len();
    if skip_prk_steps {
        // concat(_timesteps[:-1], _timesteps[-2:-1], _timesteps[-1:])[::-1]
        let mut plms: Vec<i64> = base[..len.saturating_sub(1)].to_vec();
        if len >= 2 {
            plms.push(base[len - 2]);
        }
        if len >= 1 {
            plms.push(base[len - 1]);
        }
        plms.reverse();
        (Vec::new(), plms)
    } else {
        const PNDM_ORDER: usize = 4;
        let half = (num_train_timesteps / num_inference_steps / 2) as i64;
        // The last four grid points, each followed by its half step ...
        let last = &base[len.saturating_sub(PNDM_ORDER)..];
        let with_halves: Vec<i64> = last.iter().flat_map(|&v| [v, v + half]).collect();
        // ... then `[:-1].repeat(2)[1:-1][::-1]`.
        let trimmed = &with_halves[..with_halves.len().saturating_sub(1)];
        let doubled: Vec<i64> = trimmed.iter().flat_map(|&v| [v, v]).collect();
        let mut prk: Vec<i64> = if doubled.len() >= 2 {
            doubled[1..doubled.len() - 1].to_vec()
        } else {
            Vec::new()
        };
        prk.reverse();
        let mut plms: Vec<i64> = base[..len.saturating_sub(3)].to_vec();
        plms.reverse();
        (prk, plms)
    }
}

impl PndmScheduler {
    /// `PNDMScheduler.from_config(config)` followed by `set_timesteps(num_inference_steps)`.
    pub fn new(
        config: &SchedulerConfig,
        num_inference_steps: usize,
    ) -> Result<Self, SchedulerConfigError> {
        // PNDM takes no `rescale_betas_zero_snr`.
        let betas = beta_params(CLASS, config, (0.0001, 0.02, BetaSchedule::Linear), false)?;
        let prediction_type = parse_prediction_type(
            CLASS,
            cfg_value!(config, prediction_type),
            &[PredictionType::Epsilon, PredictionType::VPrediction],
            false,
        )?;
        let spacing = parse_spacing(
            CLASS,
            cfg_value!(config, timestep_spacing),
            TimestepSpacing::Leading,
        )?;
        let steps_offset = cfg_value!(config, steps_offset).unwrap_or(0);
        let set_alpha_to_one = cfg_value!(config, set_alpha_to_one).unwrap_or(false);
        let skip_prk_steps = cfg_value!(config, skip_prk_steps).unwrap_or(false);

        let t = betas.num_train_timesteps;
        check_steps(CLASS, num_inference_steps, t)?;
        if !skip_prk_steps && num_inference_steps < 4 {
            return Err(SchedulerConfigError::InvalidSteps {
                class: CLASS,
                steps: num_inference_steps,
                reason: "PRK warm-up (skip_prk_steps = false) needs at least 4 steps".into(),
            });
        }
        let alphas_cumprod = betas.alphas_cumprod();
        let final_alpha_cumprod = if set_alpha_to_one {
            1.0
        } else {
            alphas_cumprod[0]
        };
        let (prk, plms) = pndm_timesteps(
            spacing,
            t,
            num_inference_steps,
            steps_offset,
            skip_prk_steps,
        );
        let prk_len = prk.len();
        let timesteps: Vec<i64> = prk.into_iter().chain(plms).collect();
        check_timesteps_in_range(CLASS, num_inference_steps, &timesteps, t)?;
        let step_ratio = (t / num_inference_steps) as i64;
        Ok(Self {
            alphas_cumprod,
            final_alpha_cumprod,
            prediction_type,
            skip_prk_steps,
            step_ratio,
            prk_len,
            timesteps_f64: timesteps.iter().map(|&v| v as f64).collect(),
            timesteps,
            counter: 0,
            ets: Vec::new(),
            cur_sample: None,
            cur_model_output: None,
        })
    }

    fn alpha_at(&self, t: i64) -> candle_core::Result<f32> {
        alpha_at(&self.alphas_cumprod, t)
    }

    /// `_get_prev_sample`: eq. (9) of the PNDM paper, x_t -> x_{t-delta} given a noise estimate.
    fn prev_sample(
        &self,
        sample: &Tensor,
        timestep: i64,
        prev_timestep: i64,
        model_output: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let alpha_prod_t = self.alpha_at(timestep)?;
        let alpha_prod_t_prev = if prev_timestep >= 0 {
            self.alpha_at(prev_timestep)?
        } else {
            self.final_alpha_cumprod
        };
        let beta_prod_t = 1.0 - alpha_prod_t;
        let beta_prod_t_prev = 1.0 - alpha_prod_t_prev;

        let model_output = match self.prediction_type {
            PredictionType::VPrediction => scale(model_output, alpha_prod_t.sqrt())?
                .add(&scale(sample, beta_prod_t.sqrt())?)?,
            _ => model_output.clone(),
        };

        let sample_coeff = (alpha_prod_t_prev / alpha_prod_t).sqrt();
        let model_output_denom_coeff = alpha_prod_t * beta_prod_t_prev.sqrt()
            + (alpha_prod_t * beta_prod_t * alpha_prod_t_prev).sqrt();
        let correction = div_scalar(
            &scale(&model_output, alpha_prod_t_prev - alpha_prod_t)?,
            model_output_denom_coeff,
        )?;
        scale(sample, sample_coeff)?.sub(&correction)
    }

    /// `step_prk`: one of the four Runge–Kutta evaluations per grid step.
    fn step_prk(
        &mut self,
        model_output: &Tensor,
        timestep: i64,
        sample: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let half = self.step_ratio / 2;
        let diff_to_prev = if self.counter % 2 == 1 { 0 } else { half };
        let prev_timestep = timestep - diff_to_prev;
        let timestep = self.timesteps[self.counter / 4 * 4];

        let accumulate = |acc: &Option<Tensor>, term: Tensor| -> candle_core::Result<Tensor> {
            match acc {
                Some(acc) => acc.add(&term),
                None => Ok(term),
            }
        };
        let model_output = match self.counter % 4 {
            0 => {
                self.cur_model_output = Some(accumulate(
                    &self.cur_model_output,
                    scale(model_output, (1.0f64 / 6.0) as f32)?,
                )?);
                self.ets.push(model_output.clone());
                self.cur_sample = Some(sample.clone());
                model_output.clone()
            }
            1 | 2 => {
                self.cur_model_output = Some(accumulate(
                    &self.cur_model_output,
                    scale(model_output, (1.0f64 / 3.0) as f32)?,
                )?);
                model_output.clone()
            }
            _ => {
                let combined = accumulate(
                    &self.cur_model_output,
                    scale(model_output, (1.0f64 / 6.0) as f32)?,
                )?;
                self.cur_model_output = None;
                combined
            }
        };
        let cur_sample = self.cur_sample.clone().unwrap_or_else(|| sample.clone());
        let prev = self.prev_sample(&cur_sample, timestep, prev_timestep, &model_output)?;
        self.counter += 1;
        Ok(prev)
    }

    /// `step_plms`: the linear multistep update (Adams–Bashforth of order up to 4).
    fn step_plms(
        &mut self,
        model_output: &Tensor,
        timestep: i64,
        sample: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let mut timestep = timestep;
        let mut prev_timestep = timestep - self.step_ratio;
        if self.counter != 1 {
            let keep = self.ets.len().saturating_sub(3);
            self.ets.drain(..keep);
            self.ets.push(model_output.clone());
        } else {
            prev_timestep = timestep;
            timestep += self.step_ratio;
        }

        let mut sample = sample.clone();
        let n = self.ets.len();
        let ets = self.ets.clone();
        let e = |k: usize| &ets[n - k];
        let model_output = if n == 1 && self.counter == 0 {
            self.cur_sample = Some(sample.clone());
            model_output.clone()
        } else if n == 1 && self.counter == 1 {
            if let Some(cur) = self.cur_sample.take() {
                sample = cur;
            }
            model_output.add(e(1))?.affine(0.5, 0.0)?
        } else if n == 2 {
            div_scalar(&scale(e(1), 3.0)?.sub(e(2))?, 2.0)?
        } else if n == 3 {
            let sum = scale(e(1), 23.0)?
                .sub(&scale(e(2), 16.0)?)?
                .add(&scale(e(3), 5.0)?)?;
            div_scalar(&sum, 12.0)?
        } else {
            let sum = scale(e(1), 55.0)?
                .sub(&scale(e(2), 59.0)?)?
                .add(&scale(e(3), 37.0)?)?
                .sub(&scale(e(4), 9.0)?)?;
            scale(&sum, (1.0f64 / 24.0) as f32)?
        };

        let prev = self.prev_sample(&sample, timestep, prev_timestep, &model_output)?;
        self.counter += 1;
        Ok(prev)
    }

    /// A preview of the clean latents at `timestep` (PNDM itself returns none).
    fn preview_x0(
        &self,
        model_output: &Tensor,
        timestep: i64,
        sample: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let alpha_prod_t = self.alpha_at(timestep)?;
        let beta_prod_t = 1.0 - alpha_prod_t;
        match self.prediction_type {
            PredictionType::VPrediction => {
                scale(sample, alpha_prod_t.sqrt())?.sub(&scale(model_output, beta_prod_t.sqrt())?)
            }
            _ => div_scalar(
                &sample.sub(&scale(model_output, beta_prod_t.sqrt())?)?,
                alpha_prod_t.sqrt(),
            ),
        }
    }
}

impl Scheduler for PndmScheduler {
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
        let preview = self.preview_x0(&model_output, timestep, &sample)?;
        let prev_sample = if self.counter < self.prk_len && !self.skip_prk_steps {
            self.step_prk(&model_output, timestep, &sample)?
        } else {
            self.step_plms(&model_output, timestep, &sample)?
        };
        Ok(StepOutput {
            prev_sample: prev_sample.to_dtype(dtype)?,
            pred_original_sample: Some(preview.to_dtype(dtype)?),
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

#[cfg(test)]
mod tests {
    //! Reference values: `tests/fixtures/scheduler_cases.json` (see `schedulers::testing`).

    super::super::testing::reference_cases!("pndm":
        sd_plms_leading,
        class_defaults_prk,
        prk_v_prediction_linspace,
        plms_trailing_alpha_one,
        plms_two_steps,
        plms_img2img,
    );
}
