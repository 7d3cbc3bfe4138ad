//! `EulerAncestralDiscreteScheduler` ("Euler a"): each step goes deterministically down to
//! `sigma_down` and then adds fresh noise of standard deviation `sigma_up`, with
//! `sigma_up^2 + sigma_down^2 = sigma_next^2` (k-diffusion's `get_ancestral_step`, eta = 1).
//! Mirrors diffusers 0.42.1 `scheduling_euler_ancestral_discrete.py`.
//!
//! The noise is drawn from the generation's [`TorchRng`] on every step (the last one included,
//! where `sigma_up` is 0), with the shape of the model output, exactly like diffusers'
//! `randn_tensor(model_output.shape, generator=generator)`.

use candle_core::Tensor;

use super::common::{self, check_steps, div_scalar, np_interp_unit_grid, scale, train_sigmas};
use super::config::{
    beta_params, cfg_value, parse_prediction_type, parse_spacing, BetaSchedule, PredictionType,
    SchedulerConfig, SchedulerConfigError, TimestepSpacing,
};
use super::euler::{
    add_noise_sigma, euler_init_noise_sigma, euler_timesteps, scale_by_sigma, x0_from_v,
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
    //! Reference values computed with diffusers 0.42.1 (see `schedulers::testing`).

    use super::super::testing::{check_reference, Img2Img, Reference};

    #[test]
    fn sd_linspace() {
        let config = r#"{"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "_class_name": "EulerAncestralDiscreteScheduler"}"#;
        let reference = Reference {
            steps: 6,
            timesteps: &[
                999.0,
                799.2000122070312,
                599.4000244140625,
                399.6000061035156,
                199.8000030517578,
                0.0,
            ],
            sigmas: Some(&[
                14.614646911621094,
                5.092418670654297,
                2.2797348499298096,
                1.1628665924072266,
                0.5711901783943176,
                0.02916753478348255,
                0.0,
            ]),
            init_noise_sigma: 14.614646911621094,
            img2img: None,
            final_sample: &[
                -9.106672286987305,
                -7.65238618850708,
                -4.037942886352539,
                -3.9732844829559326,
                -3.0118250846862793,
                -4.329028606414795,
                -5.066125869750977,
                -6.337542533874512,
                -4.363116264343262,
                -6.742640018463135,
                -3.967434883117676,
                -2.391220808029175,
                -4.011728763580322,
                0.3681451082229614,
                -1.9980515241622925,
                -7.157902717590332,
            ],
        };
        check_reference(config, &reference);
    }

    #[test]
    fn v_prediction_leading() {
        let config = r#"{"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "prediction_type": "v_prediction", "timestep_spacing": "leading", "steps_offset": 1, "_class_name": "EulerAncestralDiscreteScheduler"}"#;
        let reference = Reference {
            steps: 5,
            timesteps: &[801.0, 601.0, 401.0, 201.0, 1.0],
            sigmas: Some(&[
                5.134433269500732,
                2.2928547859191895,
                1.1682164669036865,
                0.574050784111023,
                0.04131447896361351,
                0.0,
            ]),
            init_noise_sigma: 5.2309088706970215,
            img2img: None,
            final_sample: &[
                -0.8275900483131409,
                -0.2672223746776581,
                -0.05886177346110344,
                -0.12040937691926956,
                -0.27126428484916687,
                -0.4331037402153015,
                -0.12417267262935638,
                -0.23211471736431122,
                -0.4471305012702942,
                -0.10466478019952774,
                -0.009601391851902008,
                0.5884204506874084,
                -0.5311408042907715,
                0.05035807937383652,
                -0.011968574486672878,
                -0.8496044874191284,
            ],
        };
        check_reference(config, &reference);
    }

    #[test]
    fn zero_snr_trailing() {
        let config = r#"{"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "prediction_type": "v_prediction", "rescale_betas_zero_snr": true, "timestep_spacing": "trailing", "_class_name": "EulerAncestralDiscreteScheduler"}"#;
        let reference = Reference {
            steps: 4,
            timesteps: &[999.0, 749.0, 499.0, 249.0],
            sigmas: Some(&[
                4096.0,
                5.398740768432617,
                1.7680810689926147,
                0.727056086063385,
                0.0,
            ]),
            init_noise_sigma: 4096.0,
            img2img: None,
            final_sample: &[
                -0.652591347694397,
                -0.1480281502008438,
                -0.11414416134357452,
                -0.2510879635810852,
                -0.3457963466644287,
                -0.48684626817703247,
                -0.12593305110931396,
                -0.35353389382362366,
                -0.47301167249679565,
                -0.05412599444389343,
                0.021941840648651123,
                0.5980381965637207,
                -0.6725215911865234,
                -0.3500279188156128,
                -0.027621686458587646,
                -0.7387484908103943,
            ],
        };
        check_reference(config, &reference);
    }

    #[test]
    fn img2img() {
        let config = r#"{"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "timestep_spacing": "trailing", "_class_name": "EulerAncestralDiscreteScheduler"}"#;
        let reference = Reference {
            steps: 8,
            timesteps: &[999.0, 874.0, 749.0, 624.0, 499.0, 374.0, 249.0, 124.0],
            sigmas: Some(&[
                14.614646911621094,
                7.297353744506836,
                4.081730842590332,
                2.4925317764282227,
                1.6128870248794556,
                1.0689518451690674,
                0.6932054162025452,
                0.39774635434150696,
                0.0,
            ]),
            init_noise_sigma: 14.614646911621094,
            img2img: Some(Img2Img {
                strength: 0.6,
                begin: 4,
                noised: &[
                    -3.2042906284332275,
                    0.7281472086906433,
                    -2.757492780685425,
                    -3.399270534515381,
                    -2.0659186840057373,
                    1.2740057706832886,
                    -2.6852262020111084,
                    -1.8007707595825195,
                    -2.1763877868652344,
                    0.860526442527771,
                    -1.6988112926483154,
                    -0.6306593418121338,
                    1.4028828144073486,
                    0.472800612449646,
                    -0.13447311520576477,
                    -0.2302381992340088,
                ],
            }),
            final_sample: &[
                -2.9022841453552246,
                -1.30409574508667,
                -1.6610950231552124,
                -1.715794563293457,
                -0.6709122061729431,
                -0.24986696243286133,
                -1.6746697425842285,
                -1.3626190423965454,
                -1.0250204801559448,
                -0.7093977928161621,
                -1.1954981088638306,
                -0.5748473405838013,
                0.696652352809906,
                1.3345909118652344,
                -0.18038642406463623,
                -1.440152883529663,
            ],
        };
        check_reference(config, &reference);
    }
}
