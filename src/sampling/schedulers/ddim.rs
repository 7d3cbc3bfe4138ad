//! `DDIMScheduler` (Song et al., "Denoising Diffusion Implicit Models", 2020) with `eta = 0`:
//! the deterministic sampler of eq. (12),
//!
//! `x_{t-1} = sqrt(a_prev) * x0_pred + sqrt(1 - a_prev) * eps_pred`,
//!
//! where `a` is `alphas_cumprod`. Mirrors diffusers 0.42.1 `scheduling_ddim.py`.

use candle_core::Tensor;

use super::common::{self, alpha_at, check_steps, check_timesteps_in_range, np_arange};
use super::common::{np_linspace, np_round, scale};
use super::config::{
    beta_params, cfg_value, parse_prediction_type, parse_spacing, require_false, BetaSchedule,
    PredictionType, SchedulerConfig, SchedulerConfigError, TimestepSpacing,
};
use super::{Scheduler, StepOutput};
use crate::sampling::noise::TorchRng;

const CLASS: &str = "DDIMScheduler";

/// DDIM with `eta = 0` (what `StableDiffusionPipeline` runs by default).
pub struct DdimScheduler {
    alphas_cumprod: Vec<f32>,
    final_alpha_cumprod: f32,
    prediction_type: PredictionType,
    /// `Some(range)` when `clip_sample` is on.
    clip_sample_range: Option<f32>,
    /// `num_train_timesteps // num_inference_steps`, the gap `step` assumes between timesteps
    /// whatever the spacing.
    step_ratio: i64,
    timesteps: Vec<i64>,
    timesteps_f64: Vec<f64>,
}

/// `DDIMScheduler.set_timesteps`: the integer timesteps, in sampling order.
pub(crate) fn ddim_timesteps(
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
            .rev()
            .map(|v| np_round(v) as i64)
            .collect(),
        TimestepSpacing::Leading => {
            let ratio = (t / n) as i64;
            (0..n as i64)
                .rev()
                .map(|i| i * ratio + steps_offset)
                .collect()
        }
        TimestepSpacing::Trailing => np_arange(t as f64, 0.0, -(t as f64 / n as f64))
            .into_iter()
            .map(|v| np_round(v) as i64 - 1)
            .collect(),
    }
}

impl DdimScheduler {
    /// `DDIMScheduler.from_config(config)` followed by `set_timesteps(num_inference_steps)`.
    pub fn new(
        config: &SchedulerConfig,
        num_inference_steps: usize,
    ) -> Result<Self, SchedulerConfigError> {
        let betas = beta_params(CLASS, config, (0.0001, 0.02, BetaSchedule::Linear), true)?;
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
        let spacing = parse_spacing(
            CLASS,
            cfg_value!(config, timestep_spacing),
            TimestepSpacing::Leading,
        )?;
        let steps_offset = cfg_value!(config, steps_offset).unwrap_or(0);
        let set_alpha_to_one = cfg_value!(config, set_alpha_to_one).unwrap_or(true);
        let clip_sample = cfg_value!(config, clip_sample).unwrap_or(true);
        let clip_sample_range = cfg_value!(config, clip_sample_range).unwrap_or(1.0) as f32;

        let t = betas.num_train_timesteps;
        check_steps(CLASS, num_inference_steps, t)?;
        let alphas_cumprod = betas.alphas_cumprod();
        let final_alpha_cumprod = if set_alpha_to_one {
            1.0
        } else {
            alphas_cumprod[0]
        };
        let timesteps = ddim_timesteps(spacing, t, num_inference_steps, steps_offset);
        check_timesteps_in_range(CLASS, num_inference_steps, &timesteps, t)?;
        Ok(Self {
            alphas_cumprod,
            final_alpha_cumprod,
            prediction_type,
            clip_sample_range: clip_sample.then_some(clip_sample_range),
            step_ratio: (t / num_inference_steps) as i64,
            timesteps_f64: timesteps.iter().map(|&v| v as f64).collect(),
            timesteps,
        })
    }

    fn alpha_at(&self, t: i64) -> candle_core::Result<f32> {
        alpha_at(&self.alphas_cumprod, t)
    }
}

impl Scheduler for DdimScheduler {
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

        // 1. alpha_prod at this timestep and the previous one (`timestep - T // N`).
        let prev_timestep = timestep - self.step_ratio;
        let alpha_prod_t = self.alpha_at(timestep)?;
        let alpha_prod_t_prev = if prev_timestep >= 0 {
            self.alpha_at(prev_timestep)?
        } else {
            self.final_alpha_cumprod
        };
        let beta_prod_t = 1.0 - alpha_prod_t;

        // 2. x0 and epsilon from the model output (eq. 12's "predicted x0").
        let (pred_original_sample, pred_epsilon) = match self.prediction_type {
            PredictionType::Epsilon => {
                let x0 = common::div_scalar(
                    &sample.sub(&scale(&model_output, beta_prod_t.sqrt())?)?,
                    alpha_prod_t.sqrt(),
                )?;
                (x0, model_output)
            }
            PredictionType::Sample => {
                let eps = common::div_scalar(
                    &sample.sub(&scale(&model_output, alpha_prod_t.sqrt())?)?,
                    beta_prod_t.sqrt(),
                )?;
                (model_output, eps)
            }
            PredictionType::VPrediction => {
                let x0 = scale(&sample, alpha_prod_t.sqrt())?
                    .sub(&scale(&model_output, beta_prod_t.sqrt())?)?;
                let eps = scale(&model_output, alpha_prod_t.sqrt())?
                    .add(&scale(&sample, beta_prod_t.sqrt())?)?;
                (x0, eps)
            }
        };

        // 3. Optional clipping of x0.
        let pred_original_sample = match self.clip_sample_range {
            Some(range) => pred_original_sample.clamp(-range, range)?,
            None => pred_original_sample,
        };

        // 4. sigma_t = eta * sqrt(variance) with eta = 0 (computed so that a NaN variance
        //    propagates exactly as in diffusers).
        let beta_prod_t_prev = 1.0 - alpha_prod_t_prev;
        let variance = (beta_prod_t_prev / beta_prod_t) * (1.0 - alpha_prod_t / alpha_prod_t_prev);
        let std_dev_t = 0.0f32 * variance.sqrt();

        // 5. "direction pointing to x_t" and x_{t-1}.
        let direction_coeff = (1.0 - alpha_prod_t_prev - std_dev_t * std_dev_t).sqrt();
        let pred_sample_direction = scale(&pred_epsilon, direction_coeff)?;
        let prev_sample =
            scale(&pred_original_sample, alpha_prod_t_prev.sqrt())?.add(&pred_sample_direction)?;

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
        let timestep = self.timesteps[common::checked_index(step_index, self.timesteps.len())?];
        add_noise_ddpm(self.alpha_at(timestep)?, original, noise)
    }
}

/// `add_noise` of the DDPM-family schedulers: `sqrt(a_t) * x0 + sqrt(1 - a_t) * noise`.
pub(crate) fn add_noise_ddpm(
    alpha_prod: f32,
    original: &Tensor,
    noise: &Tensor,
) -> candle_core::Result<Tensor> {
    let dtype = original.dtype();
    let original = common::f32(original)?;
    let noise = common::f32(noise)?;
    let noisy =
        scale(&original, alpha_prod.sqrt())?.add(&scale(&noise, (1.0 - alpha_prod).sqrt())?)?;
    noisy.to_dtype(dtype)
}

#[cfg(test)]
mod tests {
    //! Reference values computed with diffusers 0.42.1 (see `schedulers::testing`).

    use super::super::testing::{check_reference, Img2Img, Reference};

    #[test]
    fn class_defaults_clip_and_alpha_one() {
        let config = r#"{"_class_name": "DDIMScheduler"}"#;
        let reference = Reference {
            steps: 10,
            timesteps: &[
                900.0, 800.0, 700.0, 600.0, 500.0, 400.0, 300.0, 200.0, 100.0, 0.0,
            ],
            sigmas: None,
            init_noise_sigma: 1.0,
            img2img: None,
            final_sample: &[
                0.4567021131515503,
                0.4504294991493225,
                0.663720428943634,
                0.6203659772872925,
                1.0,
                1.0,
                0.6482439637184143,
                0.24560576677322388,
                0.7992129921913147,
                0.42418164014816284,
                0.8151764273643494,
                0.7958685159683228,
                0.7513331174850464,
                1.0,
                1.0,
                0.6645011305809021,
            ],
        };
        check_reference(config, &reference);
    }

    #[test]
    fn sd_epsilon_trailing() {
        let config = r#"{"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "clip_sample": false, "set_alpha_to_one": false, "steps_offset": 1, "timestep_spacing": "trailing", "_class_name": "DDIMScheduler"}"#;
        let reference = Reference {
            steps: 7,
            timesteps: &[999.0, 856.0, 713.0, 570.0, 428.0, 285.0, 142.0],
            sigmas: None,
            init_noise_sigma: 1.0,
            img2img: None,
            final_sample: &[
                -8.09815788269043,
                -8.183245658874512,
                -5.2899956703186035,
                -5.878091335296631,
                -1.7630687952041626,
                -2.265824794769287,
                -5.499932765960693,
                -11.272454261779785,
                -3.452068567276001,
                -8.539290428161621,
                -3.363170623779297,
                -3.4974374771118164,
                -4.101551055908203,
                -0.5151812434196472,
                -0.90301114320755,
                -5.2794060707092285,
            ],
        };
        check_reference(config, &reference);
    }

    #[test]
    fn sd_sample_prediction_linspace() {
        let config = r#"{"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "clip_sample": false, "set_alpha_to_one": false, "prediction_type": "sample", "timestep_spacing": "linspace", "_class_name": "DDIMScheduler"}"#;
        let reference = Reference {
            steps: 5,
            timesteps: &[999.0, 749.0, 500.0, 250.0, 0.0],
            sigmas: None,
            init_noise_sigma: 1.0,
            img2img: None,
            final_sample: &[
                -0.30923816561698914,
                -0.32852309942245483,
                0.3272278904914856,
                0.19393697381019592,
                1.1266008615493774,
                1.0126519203186035,
                0.2796459496021271,
                -1.028687834739685,
                0.7437912821769714,
                -0.40922072529792786,
                0.7639400362968445,
                0.7335083484649658,
                0.5965872406959534,
                1.4094328880310059,
                1.3215315341949463,
                0.3296278715133667,
            ],
        };
        check_reference(config, &reference);
    }

    #[test]
    fn zero_snr_v_prediction_trailing() {
        let config = r#"{"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "clip_sample": false, "set_alpha_to_one": false, "prediction_type": "v_prediction", "rescale_betas_zero_snr": true, "timestep_spacing": "trailing", "_class_name": "DDIMScheduler"}"#;
        let reference = Reference {
            steps: 4,
            timesteps: &[999.0, 749.0, 499.0, 249.0],
            sigmas: None,
            init_noise_sigma: 1.0,
            img2img: None,
            final_sample: &[
                -0.7007788419723511,
                -0.7078534960746765,
                -0.4672926068305969,
                -0.5161900520324707,
                -0.1740441918373108,
                -0.21584610641002655,
                -0.48474785685539246,
                -0.964707612991333,
                -0.3144771158695221,
                -0.737457275390625,
                -0.30708563327789307,
                -0.318249374628067,
                -0.36847859621047974,
                -0.07028783112764359,
                -0.10253419727087021,
                -0.46641212701797485,
            ],
        };
        check_reference(config, &reference);
    }

    #[test]
    fn cosine_betas_leading() {
        let config = r#"{"beta_schedule": "squaredcos_cap_v2", "clip_sample": false, "steps_offset": 1, "_class_name": "DDIMScheduler"}"#;
        let reference = Reference {
            steps: 6,
            timesteps: &[831.0, 665.0, 499.0, 333.0, 167.0, 1.0],
            sigmas: None,
            init_noise_sigma: 1.0,
            img2img: None,
            final_sample: &[
                -3.1540958881378174,
                -3.1938586235046387,
                -1.8417826890945435,
                -2.116611957550049,
                -0.1935761570930481,
                -0.428524374961853,
                -1.9398908615112305,
                -4.637511253356934,
                -0.982881486415863,
                -3.3602476119995117,
                -0.9413372278213501,
                -1.004083514213562,
                -1.2863976955413818,
                0.389587938785553,
                0.20834660530090332,
                -1.836834192276001,
            ],
        };
        check_reference(config, &reference);
    }

    #[test]
    fn trailing_61_steps_has_62_timesteps() {
        let config = r#"{"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "clip_sample": false, "set_alpha_to_one": false, "timestep_spacing": "trailing", "_class_name": "DDIMScheduler"}"#;
        let reference = Reference {
            steps: 61,
            timesteps: &[
                999.0, 983.0, 966.0, 950.0, 933.0, 917.0, 901.0, 884.0, 868.0, 851.0, 835.0, 819.0,
                802.0, 786.0, 769.0, 753.0, 737.0, 720.0, 704.0, 688.0, 671.0, 655.0, 638.0, 622.0,
                606.0, 589.0, 573.0, 556.0, 540.0, 524.0, 507.0, 491.0, 474.0, 458.0, 442.0, 425.0,
                409.0, 392.0, 376.0, 360.0, 343.0, 327.0, 310.0, 294.0, 278.0, 261.0, 245.0, 229.0,
                212.0, 196.0, 179.0, 163.0, 147.0, 130.0, 114.0, 97.0, 81.0, 65.0, 48.0, 32.0,
                15.0, -1.0,
            ],
            sigmas: None,
            init_noise_sigma: 1.0,
            img2img: None,
            final_sample: &[
                -46.61064529418945,
                -47.14282989501953,
                -29.04741668701172,
                -32.7255859375,
                -6.988728046417236,
                -10.133146286010742,
                -30.36042022705078,
                -66.46390533447266,
                -17.55234718322754,
                -49.36969757080078,
                -16.996347427368164,
                -17.836095809936523,
                -21.61444854736328,
                0.8160150051116943,
                -1.6096129417419434,
                -28.981184005737305,
            ],
        };
        check_reference(config, &reference);
    }

    #[test]
    fn sd_img2img() {
        let config = r#"{"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "clip_sample": false, "set_alpha_to_one": false, "steps_offset": 1, "_class_name": "DDIMScheduler"}"#;
        let reference = Reference {
            steps: 10,
            timesteps: &[
                901.0, 801.0, 701.0, 601.0, 501.0, 401.0, 301.0, 201.0, 101.0, 1.0,
            ],
            sigmas: None,
            init_noise_sigma: 1.0,
            img2img: Some(Img2Img {
                strength: 0.35,
                begin: 7,
                noised: &[
                    -1.8412563800811768,
                    -0.1943139135837555,
                    -1.2164669036865234,
                    -1.9483006000518799,
                    -0.6936426162719727,
                    0.052962303161621094,
                    -1.3761441707611084,
                    -1.4546722173690796,
                    -1.0695860385894775,
                    0.4352761507034302,
                    -0.9585748910903931,
                    -0.335127055644989,
                    0.3088718056678772,
                    1.0883452892303467,
                    0.08608806878328323,
                    0.19014869630336761,
                ],
            }),
            final_sample: &[
                -1.6966071128845215,
                -0.24126142263412476,
                -1.1445022821426392,
                -1.7911980152130127,
                -0.6825006604194641,
                -0.022752074524760246,
                -1.285603642463684,
                -1.3549959659576416,
                -1.0147088766098022,
                0.3150852918624878,
                -0.9166121482849121,
                -0.3656930923461914,
                0.20338618755340576,
                0.8921797275543213,
                0.006520004011690617,
                0.09847474843263626,
            ],
        };
        check_reference(config, &reference);
    }
}
