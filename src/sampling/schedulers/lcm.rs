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
    //! Reference values computed with diffusers 0.42.1 (see `schedulers::testing`).

    use super::super::testing::{check_reference, Img2Img, Reference};

    #[test]
    fn class_defaults_4() {
        let config = r#"{"_class_name": "LCMScheduler"}"#;
        let reference = Reference {
            steps: 4,
            timesteps: &[999.0, 759.0, 499.0, 259.0],
            sigmas: None,
            init_noise_sigma: 1.0,
            img2img: None,
            final_sample: &[
                -8.80062484741211,
                -7.935864448547363,
                -4.789468288421631,
                -4.828983783721924,
                -3.117014169692993,
                -5.5721306800842285,
                -5.214715480804443,
                -6.630293369293213,
                -4.255730628967285,
                -6.6834893226623535,
                -4.156549453735352,
                -2.7159411907196045,
                -4.13930606842041,
                -0.9294052124023438,
                -2.6056149005889893,
                -7.576832294464111,
            ],
        };
        check_reference(config, &reference);
    }

    #[test]
    fn class_defaults_1() {
        let config = r#"{"_class_name": "LCMScheduler"}"#;
        let reference = Reference {
            steps: 1,
            timesteps: &[999.0],
            sigmas: None,
            init_noise_sigma: 1.0,
            img2img: None,
            final_sample: &[
                -22.865381240844727,
                -23.06007957458496,
                -16.439655303955078,
                -17.78535270690918,
                -8.369230270385742,
                -9.519649505615234,
                -16.9200382232666,
                -30.128908157348633,
                -12.234052658081055,
                -23.874799728393555,
                -12.030632019042969,
                -12.337868690490723,
                -13.72021770477295,
                -5.513773441314697,
                -6.401216983795166,
                -16.415424346923828,
            ],
        };
        check_reference(config, &reference);
    }

    #[test]
    fn v_prediction_clip_options() {
        let config = r#"{"original_inference_steps": 100, "timestep_scaling": 5.0, "prediction_type": "v_prediction", "clip_sample": true, "clip_sample_range": 1.5, "set_alpha_to_one": false, "_class_name": "LCMScheduler"}"#;
        let reference = Reference {
            steps: 7,
            timesteps: &[999.0, 859.0, 719.0, 579.0, 429.0, 289.0, 149.0],
            sigmas: None,
            init_noise_sigma: 1.0,
            img2img: None,
            final_sample: &[
                0.1655275821685791,
                -0.5029686093330383,
                -0.28540346026420593,
                -0.06904523819684982,
                -0.9356171488761902,
                -0.7364141345024109,
                -0.16419942677021027,
                -0.11040161550045013,
                -0.3135191798210144,
                0.15811677277088165,
                -0.5482198596000671,
                -0.17306773364543915,
                -0.37841278314590454,
                -0.6575059294700623,
                -0.046626828610897064,
                -0.3762996792793274,
            ],
        };
        check_reference(config, &reference);
    }

    #[test]
    fn sample_prediction() {
        let config = r#"{"prediction_type": "sample", "_class_name": "LCMScheduler"}"#;
        let reference = Reference {
            steps: 3,
            timesteps: &[999.0, 679.0, 339.0],
            sigmas: None,
            init_noise_sigma: 1.0,
            img2img: None,
            final_sample: &[
                0.16502760350704193,
                0.3275207281112671,
                0.5617810487747192,
                0.8511160016059875,
                0.9195007085800171,
                0.43137550354003906,
                0.7942142486572266,
                1.0528268814086914,
                0.7439976930618286,
                0.7778570652008057,
                0.5211514234542847,
                0.6993627548217773,
                1.0638506412506104,
                1.7423681020736694,
                0.3290812075138092,
                -0.05804212763905525,
            ],
        };
        check_reference(config, &reference);
    }

    #[test]
    fn img2img() {
        let config = r#"{"_class_name": "LCMScheduler"}"#;
        let reference = Reference {
            steps: 6,
            timesteps: &[999.0, 839.0, 679.0, 499.0, 339.0, 179.0],
            sigmas: None,
            init_noise_sigma: 1.0,
            img2img: Some(Img2Img {
                strength: 0.5,
                begin: 3,
                noised: &[
                    -1.6884801387786865,
                    0.3836924433708191,
                    -1.453042984008789,
                    -1.7912236452102661,
                    -1.0886224508285522,
                    0.6713290810585022,
                    -1.4149625301361084,
                    -0.9489044547080994,
                    -1.1468334197998047,
                    0.4534488320350647,
                    -0.8951776027679443,
                    -0.3323218822479248,
                    0.7392400503158569,
                    0.24913924932479858,
                    -0.07085973769426346,
                    -0.12132251262664795,
                ],
            }),
            final_sample: &[
                -2.7572031021118164,
                -1.768779993057251,
                -1.4379552602767944,
                -1.6205966472625732,
                -0.697990357875824,
                -0.6703842878341675,
                -1.8128718137741089,
                -1.5379797220230103,
                -0.9214825630187988,
                -1.3378667831420898,
                -1.1406326293945312,
                -0.708066999912262,
                0.27473750710487366,
                0.620055079460144,
                0.12932899594306946,
                -1.2705518007278442,
            ],
        };
        check_reference(config, &reference);
    }
}
