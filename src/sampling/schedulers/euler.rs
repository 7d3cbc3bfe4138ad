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
use crate::sampling::noise::TorchRng;

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
    //! Reference values computed with diffusers 0.42.1 (see `schedulers::testing`).

    use super::super::testing::{check_reference, Img2Img, Reference};

    #[test]
    fn karras_linspace() {
        let config = r#"{"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "use_karras_sigmas": true, "_class_name": "EulerDiscreteScheduler"}"#;
        let reference = Reference {
            steps: 10,
            timesteps: &[
                999.0,
                916.2840576171875,
                815.0449829101562,
                687.1532592773438,
                523.198974609375,
                327.1472473144531,
                145.93905639648438,
                40.856876373291016,
                6.732410907745361,
                0.0,
            ],
            sigmas: Some(&[
                14.614646911621094,
                9.102937698364258,
                5.478401184082031,
                3.1686110496520996,
                1.7494231462478638,
                0.9140765070915222,
                0.44692090153694153,
                0.20139986276626587,
                0.08191105723381042,
                0.02916753478348255,
                0.0,
            ]),
            init_noise_sigma: 14.614646911621094,
            img2img: None,
            final_sample: &[
                -7.794920444488525,
                -7.877708911895752,
                -5.062597751617432,
                -5.634810447692871,
                -1.6309212446212769,
                -2.1200993061065674,
                -5.266863822937012,
                -10.883488655090332,
                -3.2743070125579834,
                -8.224142074584961,
                -3.1878092288970947,
                -3.318451404571533,
                -3.906247615814209,
                -0.41673508286476135,
                -0.7940909266471863,
                -5.0522942543029785,
            ],
        };
        check_reference(config, &reference);
    }

    #[test]
    fn karras_leading_offset() {
        let config = r#"{"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "use_karras_sigmas": true, "timestep_spacing": "leading", "steps_offset": 1, "_class_name": "EulerDiscreteScheduler"}"#;
        let reference = Reference {
            steps: 8,
            timesteps: &[
                876.0,
                760.0445556640625,
                610.5750122070312,
                420.8460693359375,
                217.31642150878906,
                71.62703704833984,
                13.752820014953613,
                1.0000001192092896,
            ],
            sigmas: Some(&[
                7.371846675872803,
                4.279825687408447,
                2.3734230995178223,
                1.246688961982727,
                0.6134698987007141,
                0.278661847114563,
                0.11448768526315689,
                0.04131447896361351,
                0.0,
            ]),
            init_noise_sigma: 7.439363479614258,
            img2img: None,
            final_sample: &[
                -4.77705192565918,
                -4.834187030792236,
                -2.891383409500122,
                -3.2862861156463623,
                -0.5230688452720642,
                -0.8606665730476379,
                -3.0323550701141357,
                -6.908576488494873,
                -1.657224416732788,
                -5.07327127456665,
                -1.5975291728973389,
                -1.6876897811889648,
                -2.0933477878570557,
                0.3148822784423828,
                0.05445605143904686,
                -2.884272813796997,
            ],
        };
        check_reference(config, &reference);
    }

    #[test]
    fn karras_config_bounds() {
        let config = r#"{"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "use_karras_sigmas": true, "sigma_min": 0.1, "sigma_max": 10.0, "_class_name": "EulerDiscreteScheduler"}"#;
        let reference = Reference {
            steps: 6,
            timesteps: &[
                933.5066528320312,
                791.522216796875,
                593.5430908203125,
                327.90423583984375,
                93.98987579345703,
                10.382168769836426,
            ],
            sigmas: Some(&[
                10.0,
                4.918109893798828,
                2.2324869632720947,
                0.9164254069328308,
                0.3303318917751312,
                0.10000000149011612,
                0.0,
            ]),
            init_noise_sigma: 10.0,
            img2img: None,
            final_sample: &[
                -6.407041072845459,
                -6.4774322509765625,
                -4.083887100219727,
                -4.570409774780273,
                -1.1661092042922974,
                -1.5820322036743164,
                -4.257565021514893,
                -9.033093452453613,
                -2.5633957386016846,
                -6.77198600769043,
                -2.489851236343384,
                -2.6009294986724854,
                -3.1007027626037598,
                -0.13374891877174377,
                -0.4545953869819641,
                -4.075127124786377,
            ],
        };
        check_reference(config, &reference);
    }

    #[test]
    fn exponential_sigmas() {
        let config = r#"{"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "use_exponential_sigmas": true, "_class_name": "EulerDiscreteScheduler"}"#;
        let reference = Reference {
            steps: 6,
            timesteps: &[
                999.0,
                756.5120849609375,
                413.1634216308594,
                102.97428894042969,
                10.631170272827148,
                0.0,
            ],
            sigmas: Some(&[
                14.614646911621094,
                4.2151265144348145,
                1.215718150138855,
                0.35063493251800537,
                0.10112940520048141,
                0.02916753478348255,
                0.0,
            ]),
            init_noise_sigma: 14.614646911621094,
            img2img: None,
            final_sample: &[
                -10.052459716796875,
                -10.151833534240723,
                -6.772756099700928,
                -7.459602355957031,
                -2.653597116470337,
                -3.2407736778259277,
                -7.017945289611816,
                -13.75977611541748,
                -4.626209735870361,
                -10.567668914794922,
                -4.522383689880371,
                -4.679196834564209,
                -5.384751319885254,
                -1.1961673498153687,
                -1.6491206884384155,
                -6.7603888511657715,
            ],
        };
        check_reference(config, &reference);
    }

    #[test]
    fn final_sigma_min_linear_betas() {
        let config =
            r#"{"final_sigmas_type": "sigma_min", "_class_name": "EulerDiscreteScheduler"}"#;
        let reference = Reference {
            steps: 5,
            timesteps: &[999.0, 749.25, 499.5, 249.75, 0.0],
            sigmas: Some(&[
                157.4072723388672,
                17.279888153076172,
                3.4335522651672363,
                0.9567592740058899,
                0.010001329705119133,
                0.010001329705119133,
            ]),
            init_noise_sigma: 157.4072723388672,
            img2img: None,
            final_sample: &[
                -67.01864624023438,
                -67.616455078125,
                -47.28868865966797,
                -51.42060852050781,
                -22.508747100830078,
                -26.041072845458984,
                -48.76369857788086,
                -89.321044921875,
                -34.37554931640625,
                -70.11802673339844,
                -33.750953674316406,
                -34.694313049316406,
                -38.938758850097656,
                -13.741172790527344,
                -16.466041564941406,
                -47.21430206298828,
            ],
        };
        check_reference(config, &reference);
    }

    #[test]
    fn continuous_v_prediction() {
        let config = r#"{"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "prediction_type": "v_prediction", "timestep_type": "continuous", "_class_name": "EulerDiscreteScheduler"}"#;
        let reference = Reference {
            steps: 5,
            timesteps: &[
                0.6705060601234436,
                0.35189712047576904,
                0.11992403864860535,
                -0.09090656042098999,
                -0.8836747407913208,
            ],
            sigmas: Some(&[
                14.614646911621094,
                4.086089611053467,
                1.6155834197998047,
                0.6951509714126587,
                0.02916753478348255,
                0.0,
            ]),
            init_noise_sigma: 14.614646911621094,
            img2img: None,
            final_sample: &[
                -0.32146570086479187,
                -0.3290374279022217,
                -0.07157336175441742,
                -0.1239067018032074,
                0.24228033423423767,
                0.19754113256931305,
                -0.09025521576404572,
                -0.6039395928382874,
                0.09197978675365448,
                -0.3607213497161865,
                0.09989066421985626,
                0.0879424586892128,
                0.03418382257223129,
                0.3533272445201874,
                0.3188150227069855,
                -0.07063107192516327,
            ],
        };
        check_reference(config, &reference);
    }

    #[test]
    fn zero_snr_v_prediction_trailing() {
        let config = r#"{"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "prediction_type": "v_prediction", "rescale_betas_zero_snr": true, "timestep_spacing": "trailing", "_class_name": "EulerDiscreteScheduler"}"#;
        let reference = Reference {
            steps: 5,
            timesteps: &[999.0, 799.0, 599.0, 399.0, 199.0],
            sigmas: Some(&[
                4096.0,
                7.410707473754883,
                2.604856252670288,
                1.24137544631958,
                0.59475177526474,
                0.0,
            ]),
            init_noise_sigma: 4096.0,
            img2img: None,
            final_sample: &[
                -0.7086188197135925,
                -0.7163687944412231,
                -0.453246533870697,
                -0.50672847032547,
                -0.1325148642063141,
                -0.17823132872581482,
                -0.4723380208015442,
                -0.9972841143608093,
                -0.28610721230506897,
                -0.7487289905548096,
                -0.2780274450778961,
                -0.29023465514183044,
                -0.345172256231308,
                -0.019037798047065735,
                -0.05430418252944946,
                -0.4522855281829834,
            ],
        };
        check_reference(config, &reference);
    }

    #[test]
    fn sample_prediction_leading() {
        let config = r#"{"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "prediction_type": "sample", "timestep_spacing": "leading", "steps_offset": 1, "_class_name": "EulerDiscreteScheduler"}"#;
        let reference = Reference {
            steps: 4,
            timesteps: &[751.0, 501.0, 251.0, 1.0],
            sigmas: Some(&[
                4.116698265075684,
                1.6236929893493652,
                0.6983985900878906,
                0.04131447896361351,
                0.0,
            ]),
            init_noise_sigma: 4.236413955688477,
            img2img: None,
            final_sample: &[
                -0.0451880544424057,
                -0.051929373294115067,
                0.17729926109313965,
                0.13070523738861084,
                0.456733375787735,
                0.416900634765625,
                0.16066622734069824,
                -0.2966836392879486,
                0.3229158818721771,
                -0.08013856410980225,
                0.3299592435359955,
                0.31932133436203003,
                0.27145829796791077,
                0.5556020140647888,
                0.5248746275901794,
                0.17813822627067566,
            ],
        };
        check_reference(config, &reference);
    }

    #[test]
    fn karras_img2img() {
        let config = r#"{"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "use_karras_sigmas": true, "_class_name": "EulerDiscreteScheduler"}"#;
        let reference = Reference {
            steps: 10,
            timesteps: &[
                999.0,
                916.2840576171875,
                815.0449829101562,
                687.1532592773438,
                523.198974609375,
                327.1472473144531,
                145.93905639648438,
                40.856876373291016,
                6.732410907745361,
                0.0,
            ],
            sigmas: Some(&[
                14.614646911621094,
                9.102937698364258,
                5.478401184082031,
                3.1686110496520996,
                1.7494231462478638,
                0.9140765070915222,
                0.44692090153694153,
                0.20139986276626587,
                0.08191105723381042,
                0.02916753478348255,
                0.0,
            ]),
            init_noise_sigma: 14.614646911621094,
            img2img: Some(Img2Img {
                strength: 0.5,
                begin: 5,
                noised: &[
                    -2.4769678115844727,
                    0.08761453628540039,
                    -1.8461108207702637,
                    -2.6238157749176025,
                    -1.2142236232757568,
                    0.45807981491088867,
                    -1.9463095664978027,
                    -1.7177245616912842,
                    -1.5419796705245972,
                    0.619281530380249,
                    -1.2995572090148926,
                    -0.46636277437210083,
                    0.6987577676773071,
                    0.9989221692085266,
                    0.022758692502975464,
                    0.07212737202644348,
                ],
            }),
            final_sample: &[
                -1.804192304611206,
                -0.1018240749835968,
                -1.3854299783706665,
                -1.901669979095459,
                -0.9659836292266846,
                0.14409056305885315,
                -1.4519418478012085,
                -1.3002070188522339,
                -1.1835477352142334,
                0.2510961592197418,
                -1.0226279497146606,
                -0.46955394744873047,
                0.3038524389266968,
                0.5031014084815979,
                -0.14487533271312714,
                -0.11210444569587708,
            ],
        };
        check_reference(config, &reference);
    }
}
