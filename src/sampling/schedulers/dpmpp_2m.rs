//! `DPMSolverMultistepScheduler` with `algorithm_type = "dpmsolver++"`: the multistep
//! DPM-Solver++ of Lu et al., "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion
//! Probabilistic Models" (2022), Algorithm 2 ("DPM++ 2M" at `solver_order = 2`). Mirrors
//! diffusers 0.42.1 `scheduling_dpmsolver_multistep.py`.
//!
//! The solver works in `lambda = log(alpha_t / sigma_t)` with data-prediction (x0) model
//! outputs. State: the last `solver_order` converted outputs and how many lower-order warm-up
//! steps have run; both start empty, so an img2img run that begins part-way down the schedule
//! starts with a first-order step, like diffusers after `set_begin_index`.

use candle_core::Tensor;

use super::common::{self, check_steps, div_scalar, np_arange, np_interp_unit_grid};
use super::common::{np_linspace, np_round, scale, sigma_to_t, train_sigmas};
use super::config::{
    beta_params, cfg_value, parse_prediction_type, parse_spacing, require_false, require_one_of,
    BetaSchedule, PredictionType, SchedulerConfig, SchedulerConfigError, TimestepSpacing,
};
use super::euler::{final_sigma, respaced_sigmas, sigma_spacing, FinalSigma, SigmaSpacing};
use super::{Scheduler, StepOutput};
use crate::sampling::noise::TorchRng;

const CLASS: &str = "DPMSolverMultistepScheduler";

/// `solver_type`: how the second-order term is discretised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SolverType {
    Midpoint,
    Heun,
}

/// DPM-Solver++ (multistep).
pub struct DpmSolverMultistepScheduler {
    prediction_type: PredictionType,
    solver_order: usize,
    solver_type: SolverType,
    lower_order_final: bool,
    euler_at_final: bool,
    final_sigma: FinalSigma,
    sigma_spacing: SigmaSpacing,
    timesteps: Vec<f64>,
    sigmas: Vec<f32>,
    /// The converted (x0) outputs of the last `solver_order` steps, oldest first.
    model_outputs: Vec<Option<Tensor>>,
    lower_order_nums: usize,
}

/// `(alpha_t, sigma_t)` of the VP process at Karras sigma `sigma` (float32):
/// `alpha_t = 1 / sqrt(sigma^2 + 1)`, `sigma_t = sigma * alpha_t`.
fn alpha_sigma(sigma: f32) -> (f32, f32) {
    let alpha_t = 1.0 / (sigma * sigma + 1.0).sqrt();
    (alpha_t, sigma * alpha_t)
}

/// `lambda_t = log(alpha_t) - log(sigma_t)` (half the log-SNR).
fn lambda(alpha_t: f32, sigma_t: f32) -> f32 {
    alpha_t.ln() - sigma_t.ln()
}

impl DpmSolverMultistepScheduler {
    /// `DPMSolverMultistepScheduler.from_config(config)` + `set_timesteps(num_inference_steps)`.
    pub fn new(
        config: &SchedulerConfig,
        num_inference_steps: usize,
    ) -> Result<Self, SchedulerConfigError> {
        let betas = beta_params(CLASS, config, (0.0001, 0.02, BetaSchedule::Linear), true)?;
        let beta_schedule_name =
            cfg_value!(config, beta_schedule).unwrap_or_else(|| "linear".into());
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
        require_one_of(
            CLASS,
            "algorithm_type",
            cfg_value!(config, algorithm_type).as_deref(),
            // diffusers maps the DEIS name onto dpmsolver++.
            &["dpmsolver++", "deis"],
            "dpmsolver++",
        )?;
        let solver_type = match cfg_value!(config, solver_type).as_deref() {
            // diffusers maps the UniPC / DEIS solver names onto midpoint.
            None | Some("midpoint") | Some("logrho") | Some("bh1") | Some("bh2") => {
                SolverType::Midpoint
            }
            Some("heun") => SolverType::Heun,
            Some(other) => {
                return Err(SchedulerConfigError::UnsupportedValue {
                    class: CLASS,
                    key: "solver_type",
                    value: other.to_string(),
                    supported: "midpoint, heun",
                })
            }
        };
        let solver_order = cfg_value!(config, solver_order).unwrap_or(2);
        if !(1..=3).contains(&solver_order) {
            return Err(SchedulerConfigError::UnsupportedValue {
                class: CLASS,
                key: "solver_order",
                value: solver_order.to_string(),
                supported: "1, 2, 3",
            });
        }
        require_false(CLASS, "thresholding", cfg_value!(config, thresholding))?;
        require_false(CLASS, "use_lu_lambdas", cfg_value!(config, use_lu_lambdas))?;
        require_false(
            CLASS,
            "use_flow_sigmas",
            cfg_value!(config, use_flow_sigmas),
        )?;
        if prediction_type == PredictionType::Epsilon {
            require_one_of(
                CLASS,
                "variance_type",
                cfg_value!(config, variance_type).as_deref(),
                &[],
                "null (learned variances are not supported)",
            )?;
        }
        let spacing = parse_spacing(
            CLASS,
            cfg_value!(config, timestep_spacing),
            TimestepSpacing::Linspace,
        )?;
        let steps_offset = cfg_value!(config, steps_offset).unwrap_or(0);
        let sigma_spacing = sigma_spacing(CLASS, config)?;
        let final_sigma = final_sigma(CLASS, config)?;
        let lambda_min_clipped =
            cfg_value!(config, lambda_min_clipped).unwrap_or(f64::NEG_INFINITY);
        let t = betas.num_train_timesteps;
        check_steps(CLASS, num_inference_steps, t)?;

        let mut alphas_cumprod = betas.alphas_cumprod();
        if betas.rescale_betas_zero_snr {
            if let Some(last) = alphas_cumprod.last_mut() {
                *last = 2f32.powi(-24);
            }
        }

        // `last_timestep`: training timesteps whose lambda is below `lambda_min_clipped` are
        // cut from the top (torch.searchsorted on the ascending flipped lambdas).
        let lambdas: Vec<f32> = alphas_cumprod
            .iter()
            .map(|&a| lambda(a.sqrt(), (1.0 - a).sqrt()))
            .collect();
        let clip = lambda_min_clipped as f32;
        let clipped_idx = lambdas.iter().rev().take_while(|&&l| l < clip).count();
        let last_timestep = t - clipped_idx;

        let n = num_inference_steps;
        let spaced: Vec<i64> = match spacing {
            TimestepSpacing::Linspace => {
                let mut v: Vec<i64> = np_linspace(0.0, last_timestep as f64 - 1.0, n + 1, true)
                    .into_iter()
                    .rev()
                    .map(|x| np_round(x) as i64)
                    .collect();
                v.pop();
                v
            }
            TimestepSpacing::Leading => {
                let ratio = (last_timestep / (n + 1)) as i64;
                let mut v: Vec<i64> = (0..=n as i64).rev().map(|i| i * ratio).collect();
                v.pop();
                v.into_iter().map(|x| x + steps_offset).collect()
            }
            TimestepSpacing::Trailing => {
                np_arange(last_timestep as f64, 0.0, -(t as f64 / n as f64))
                    .into_iter()
                    .map(|x| np_round(x) as i64 - 1)
                    .collect()
            }
        };

        let train = train_sigmas(&alphas_cumprod);
        let train_f64: Vec<f64> = train.iter().map(|&s| s as f64).collect();
        let log_sigmas: Vec<f32> = train.iter().map(|s| s.ln()).collect();
        let (sigmas, timesteps): (Vec<f64>, Vec<i64>) = match sigma_spacing {
            SigmaSpacing::Interpolated => {
                let sigmas = spaced
                    .iter()
                    .map(|&ts| np_interp_unit_grid(ts as f64, &train_f64))
                    .collect();
                (sigmas, spaced)
            }
            other => {
                // The bounds come from the full training schedule, largest first. diffusers
                // reads `sigma_min` / `sigma_max` from the config when the file has them
                // (they are not __init__ arguments of this class, but `from_config` keeps them).
                let flipped: Vec<f64> = train_f64.iter().rev().copied().collect();
                let sigmas = respaced_sigmas(
                    other,
                    &flipped,
                    (cfg_value!(config, sigma_min), cfg_value!(config, sigma_max)),
                    n,
                );
                let round =
                    other == SigmaSpacing::Karras && beta_schedule_name != "squaredcos_cap_v2";
                let timesteps = sigmas
                    .iter()
                    .map(|&s| {
                        let ts = sigma_to_t(s, &log_sigmas);
                        // `.round()` then (for all) the int64 cast, which truncates.
                        (if round { np_round(ts) } else { ts }) as i64
                    })
                    .collect();
                (sigmas, timesteps)
            }
        };
        let mut sigmas: Vec<f32> = sigmas.into_iter().map(|s| s as f32).collect();
        sigmas.push(final_sigma.value(&alphas_cumprod));

        Ok(Self {
            prediction_type,
            solver_order: solver_order as usize,
            solver_type,
            lower_order_final: cfg_value!(config, lower_order_final).unwrap_or(true),
            euler_at_final: cfg_value!(config, euler_at_final).unwrap_or(false),
            final_sigma,
            sigma_spacing,
            timesteps: timesteps.iter().map(|&v| v as f64).collect(),
            sigmas,
            model_outputs: vec![None; solver_order as usize],
            lower_order_nums: 0,
        })
    }

    /// The sigmas of the schedule (one more than the timesteps).
    pub fn sigmas(&self) -> &[f32] {
        &self.sigmas
    }

    /// Whether the sigmas follow the Karras schedule.
    pub fn uses_karras_sigmas(&self) -> bool {
        self.sigma_spacing == SigmaSpacing::Karras
    }

    fn sigma(&self, index: usize) -> candle_core::Result<f32> {
        self.sigmas.get(index).copied().ok_or_else(|| {
            candle_core::Error::Msg(format!("DPM-Solver sigma index {index} out of range"))
        })
    }

    /// `convert_model_output`: the data prediction x0 (DPM-Solver++ works with x0).
    fn convert_model_output(
        &self,
        model_output: &Tensor,
        sample: &Tensor,
        step_index: usize,
    ) -> candle_core::Result<Tensor> {
        let (alpha_t, sigma_t) = alpha_sigma(self.sigma(step_index)?);
        match self.prediction_type {
            PredictionType::Epsilon => {
                div_scalar(&sample.sub(&scale(model_output, sigma_t)?)?, alpha_t)
            }
            PredictionType::Sample => Ok(model_output.clone()),
            PredictionType::VPrediction => {
                scale(sample, alpha_t)?.sub(&scale(model_output, sigma_t)?)
            }
        }
    }

    /// `dpm_solver_first_order_update` (DPM-Solver++(1), equivalent to DDIM).
    fn first_order_update(
        &self,
        x0: &Tensor,
        sample: &Tensor,
        i: usize,
    ) -> candle_core::Result<Tensor> {
        let (alpha_t, sigma_t) = alpha_sigma(self.sigma(i + 1)?);
        let (alpha_s, sigma_s) = alpha_sigma(self.sigma(i)?);
        let h = lambda(alpha_t, sigma_t) - lambda(alpha_s, sigma_s);
        scale(sample, sigma_t / sigma_s)?.sub(&scale(x0, alpha_t * ((-h).exp() - 1.0))?)
    }

    /// `multistep_dpm_solver_second_order_update` (DPM-Solver++(2M)).
    fn second_order_update(&self, sample: &Tensor, i: usize) -> candle_core::Result<Tensor> {
        let prev = i.checked_sub(1).ok_or_else(|| {
            candle_core::Error::Msg("DPM-Solver second-order step at index 0".into())
        })?;
        let (alpha_t, sigma_t) = alpha_sigma(self.sigma(i + 1)?);
        let (alpha_s0, sigma_s0) = alpha_sigma(self.sigma(i)?);
        let (alpha_s1, sigma_s1) = alpha_sigma(self.sigma(prev)?);
        let lambda_t = lambda(alpha_t, sigma_t);
        let lambda_s0 = lambda(alpha_s0, sigma_s0);
        let lambda_s1 = lambda(alpha_s1, sigma_s1);
        let (m0, m1) = self.last_outputs2()?;
        let h = lambda_t - lambda_s0;
        let h_0 = lambda_s0 - lambda_s1;
        let r0 = h_0 / h;
        let d0 = m0;
        let d1 = scale(&m0.sub(m1)?, 1.0 / r0)?;
        let exp_term = alpha_t * ((-h).exp() - 1.0);
        let base = scale(sample, sigma_t / sigma_s0)?.sub(&scale(d0, exp_term)?)?;
        match self.solver_type {
            SolverType::Midpoint => base.sub(&scale(&d1, 0.5 * exp_term)?),
            SolverType::Heun => base.add(&scale(&d1, alpha_t * (((-h).exp() - 1.0) / h + 1.0))?),
        }
    }

    /// `multistep_dpm_solver_third_order_update` (DPM-Solver++(3M)).
    fn third_order_update(&self, sample: &Tensor, i: usize) -> candle_core::Result<Tensor> {
        if i < 2 {
            return Err(candle_core::Error::Msg(
                "DPM-Solver third-order step before index 2".into(),
            ));
        }
        let (alpha_t, sigma_t) = alpha_sigma(self.sigma(i + 1)?);
        let (alpha_s0, sigma_s0) = alpha_sigma(self.sigma(i)?);
        let (alpha_s1, sigma_s1) = alpha_sigma(self.sigma(i - 1)?);
        let (alpha_s2, sigma_s2) = alpha_sigma(self.sigma(i - 2)?);
        let lambda_t = lambda(alpha_t, sigma_t);
        let lambda_s0 = lambda(alpha_s0, sigma_s0);
        let lambda_s1 = lambda(alpha_s1, sigma_s1);
        let lambda_s2 = lambda(alpha_s2, sigma_s2);
        let n = self.model_outputs.len();
        let get = |k: usize| {
            self.model_outputs[n - k]
                .as_ref()
                .ok_or_else(|| candle_core::Error::Msg("missing DPM-Solver history".into()))
        };
        let (m0, m1, m2) = (get(1)?, get(2)?, get(3)?);
        let h = lambda_t - lambda_s0;
        let h_0 = lambda_s0 - lambda_s1;
        let h_1 = lambda_s1 - lambda_s2;
        let r0 = h_0 / h;
        let r1 = h_1 / h;
        let d1_0 = scale(&m0.sub(m1)?, 1.0 / r0)?;
        let d1_1 = scale(&m1.sub(m2)?, 1.0 / r1)?;
        let d1 = d1_0.add(&scale(&d1_0.sub(&d1_1)?, r0 / (r0 + r1))?)?;
        let d2 = scale(&d1_0.sub(&d1_1)?, 1.0 / (r0 + r1))?;
        let em1 = (-h).exp() - 1.0;
        scale(sample, sigma_t / sigma_s0)?
            .sub(&scale(m0, alpha_t * em1)?)?
            .add(&scale(&d1, alpha_t * (em1 / h + 1.0))?)?
            .sub(&scale(&d2, alpha_t * ((em1 + h) / (h * h) - 0.5))?)
    }

    fn last_outputs2(&self) -> candle_core::Result<(&Tensor, &Tensor)> {
        let n = self.model_outputs.len();
        match (&self.model_outputs[n - 1], &self.model_outputs[n - 2]) {
            (Some(m0), Some(m1)) => Ok((m0, m1)),
            _ => Err(candle_core::Error::Msg("missing DPM-Solver history".into())),
        }
    }
}

impl Scheduler for DpmSolverMultistepScheduler {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn step(
        &mut self,
        model_output: &Tensor,
        step_index: usize,
        sample: &Tensor,
        _rng: &mut TorchRng,
    ) -> candle_core::Result<StepOutput> {
        let len = self.timesteps.len();
        let i = common::checked_index(step_index, len)?;
        let dtype = model_output.dtype();
        let model_output = common::f32(model_output)?;
        let sample = common::f32(sample)?;

        // Drop to first order at the very end (always with a zero final sigma, where the
        // second-order correction is undefined) and, for short schedules, to second order at
        // the step before (only matters for solver_order 3).
        let lower_order_final = i == len - 1
            && (self.euler_at_final
                || (self.lower_order_final && len < 15)
                || self.final_sigma == FinalSigma::Zero);
        let lower_order_second = len >= 2 && i == len - 2 && self.lower_order_final && len < 15;

        let x0 = self.convert_model_output(&model_output, &sample, i)?;
        self.model_outputs.rotate_left(1);
        if let Some(last) = self.model_outputs.last_mut() {
            *last = Some(x0.clone());
        }

        let prev_sample =
            if self.solver_order == 1 || self.lower_order_nums < 1 || lower_order_final {
                self.first_order_update(&x0, &sample, i)?
            } else if self.solver_order == 2 || self.lower_order_nums < 2 || lower_order_second {
                self.second_order_update(&sample, i)?
            } else {
                self.third_order_update(&sample, i)?
            };
        if self.lower_order_nums < self.solver_order {
            self.lower_order_nums += 1;
        }
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
        let (alpha_t, sigma_t) = alpha_sigma(self.sigmas[i]);
        let dtype = original.dtype();
        scale(&common::f32(original)?, alpha_t)?
            .add(&scale(&common::f32(noise)?, sigma_t)?)?
            .to_dtype(dtype)
    }
}

#[cfg(test)]
mod tests {
    //! Reference values computed with diffusers 0.42.1 (see `schedulers::testing`).

    use super::super::testing::{check_reference, Img2Img, Reference};

    #[test]
    fn karras_10() {
        let config = r#"{"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "use_karras_sigmas": true, "_class_name": "DPMSolverMultistepScheduler"}"#;
        let reference = Reference {
            steps: 10,
            timesteps: &[
                999.0, 916.0, 815.0, 687.0, 523.0, 327.0, 146.0, 41.0, 7.0, 0.0,
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
            init_noise_sigma: 1.0,
            img2img: None,
            final_sample: &[
                -5.745388031005859,
                -5.813284873962402,
                -3.5046114921569824,
                -3.9738831520080566,
                -0.6902962923049927,
                -1.0914708375930786,
                -3.6721303462982178,
                -8.278321266174316,
                -2.0380353927612305,
                -6.09739351272583,
                -1.9670990705490112,
                -2.0742385387420654,
                -2.556290864944458,
                0.3054572641849518,
                -0.004012217745184898,
                -3.496162176132202,
            ],
        };
        check_reference(config, &reference);
    }

    #[test]
    fn karras_20_no_lower_order_final() {
        let config = r#"{"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "use_karras_sigmas": true, "lower_order_final": false, "_class_name": "DPMSolverMultistepScheduler"}"#;
        let reference = Reference {
            steps: 20,
            timesteps: &[
                999.0, 962.0, 921.0, 876.0, 827.0, 772.0, 710.0, 640.0, 561.0, 474.0, 380.0, 285.0,
                197.0, 123.0, 69.0, 35.0, 15.0, 6.0, 2.0, 0.0,
            ],
            sigmas: Some(&[
                14.614646911621094,
                11.725372314453125,
                9.340211868286133,
                7.383626937866211,
                5.789421081542969,
                4.499844074249268,
                3.4647555351257324,
                2.640847682952881,
                1.9909217357635498,
                1.4832167625427246,
                1.0907906293869019,
                0.7909495830535889,
                0.5647245049476624,
                0.396392285823822,
                0.2730397880077362,
                0.18416932225227356,
                0.12134244292974472,
                0.07786081731319427,
                0.04848191514611244,
                0.02916753478348255,
                0.0,
            ]),
            init_noise_sigma: 1.0,
            img2img: None,
            final_sample: &[
                -6.179635047912598,
                -6.25080680847168,
                -3.8307600021362305,
                -4.322669506072998,
                -0.8806777596473694,
                -1.3012055158615112,
                -4.0063605308532715,
                -8.834759712219238,
                -2.293433904647827,
                -6.548619747161865,
                -2.2190754413604736,
                -2.331383466720581,
                -2.8366904258728027,
                0.16311268508434296,
                -0.16128630936145782,
                -3.821901321411133,
            ],
        };
        check_reference(config, &reference);
    }

    #[test]
    fn third_order() {
        let config = r#"{"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "solver_order": 3, "_class_name": "DPMSolverMultistepScheduler"}"#;
        let reference = Reference {
            steps: 8,
            timesteps: &[999.0, 874.0, 749.0, 624.0, 500.0, 375.0, 250.0, 125.0],
            sigmas: Some(&[
                14.614646911621094,
                7.297353744506836,
                4.081730842590332,
                2.4925317764282227,
                1.6182796955108643,
                1.0724865198135376,
                0.6957994699478149,
                0.3999822735786438,
                0.0,
            ]),
            init_noise_sigma: 1.0,
            img2img: None,
            final_sample: &[
                -6.689919948577881,
                -6.764224529266357,
                -4.237568378448486,
                -4.751148700714111,
                -1.157524585723877,
                -1.5965782403945923,
                -4.420904636383057,
                -9.462010383605957,
                -2.6325180530548096,
                -7.075160503387451,
                -2.5548834800720215,
                -2.6721391677856445,
                -3.199706792831421,
                -0.06775210797786713,
                -0.40644147992134094,
                -4.228320598602295,
            ],
        };
        check_reference(config, &reference);
    }

    #[test]
    fn third_order_20_sigma_min() {
        let config = r#"{"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "solver_order": 3, "final_sigmas_type": "sigma_min", "_class_name": "DPMSolverMultistepScheduler"}"#;
        let reference = Reference {
            steps: 20,
            timesteps: &[
                999.0, 949.0, 899.0, 849.0, 799.0, 749.0, 699.0, 649.0, 599.0, 549.0, 500.0, 450.0,
                400.0, 350.0, 300.0, 250.0, 200.0, 150.0, 100.0, 50.0,
            ],
            sigmas: Some(&[
                14.614646911621094,
                10.904239654541016,
                8.30280590057373,
                6.442957401275635,
                5.087765216827393,
                4.081730842590332,
                3.321084499359131,
                2.7354702949523926,
                2.2764639854431152,
                1.9102516174316406,
                1.6182796955108643,
                1.3716686964035034,
                1.1643916368484497,
                0.9871089458465576,
                0.8327531814575195,
                0.6957994699478149,
                0.5716663599014282,
                0.4560753107070923,
                0.34393182396888733,
                0.225582554936409,
                0.02916753478348255,
            ]),
            init_noise_sigma: 1.0,
            img2img: None,
            final_sample: &[
                -6.552702903747559,
                -6.62677001953125,
                -4.108205795288086,
                -4.620136260986328,
                -1.0380250215530396,
                -1.4756717681884766,
                -4.290955066680908,
                -9.31590747833252,
                -2.508296251296997,
                -6.936704158782959,
                -2.4309089183807373,
                -2.5477850437164307,
                -3.0736680030822754,
                0.04825752228498459,
                -0.28934794664382935,
                -4.0989813804626465,
            ],
        };
        check_reference(config, &reference);
    }

    #[test]
    fn heun() {
        let config = r#"{"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "solver_type": "heun", "_class_name": "DPMSolverMultistepScheduler"}"#;
        let reference = Reference {
            steps: 8,
            timesteps: &[999.0, 874.0, 749.0, 624.0, 500.0, 375.0, 250.0, 125.0],
            sigmas: Some(&[
                14.614646911621094,
                7.297353744506836,
                4.081730842590332,
                2.4925317764282227,
                1.6182796955108643,
                1.0724865198135376,
                0.6957994699478149,
                0.3999822735786438,
                0.0,
            ]),
            init_noise_sigma: 1.0,
            img2img: None,
            final_sample: &[
                -6.375365734100342,
                -6.447359561920166,
                -3.9993574619293213,
                -4.496950149536133,
                -1.0151951313018799,
                -1.44058096408844,
                -4.176985740661621,
                -9.061164855957031,
                -2.444272041320801,
                -6.748615264892578,
                -2.369054079055786,
                -2.4826602935791016,
                -2.9938039779663086,
                0.04065282642841339,
                -0.2874929904937744,
                -3.9903969764709473,
            ],
        };
        check_reference(config, &reference);
    }

    #[test]
    fn sigma_min_final_second_order() {
        let config = r#"{"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "final_sigmas_type": "sigma_min", "lower_order_final": false, "_class_name": "DPMSolverMultistepScheduler"}"#;
        let reference = Reference {
            steps: 20,
            timesteps: &[
                999.0, 949.0, 899.0, 849.0, 799.0, 749.0, 699.0, 649.0, 599.0, 549.0, 500.0, 450.0,
                400.0, 350.0, 300.0, 250.0, 200.0, 150.0, 100.0, 50.0,
            ],
            sigmas: Some(&[
                14.614646911621094,
                10.904239654541016,
                8.30280590057373,
                6.442957401275635,
                5.087765216827393,
                4.081730842590332,
                3.321084499359131,
                2.7354702949523926,
                2.2764639854431152,
                1.9102516174316406,
                1.6182796955108643,
                1.3716686964035034,
                1.1643916368484497,
                0.9871089458465576,
                0.8327531814575195,
                0.6957994699478149,
                0.5716663599014282,
                0.4560753107070923,
                0.34393182396888733,
                0.225582554936409,
                0.02916753478348255,
            ]),
            init_noise_sigma: 1.0,
            img2img: None,
            final_sample: &[
                -6.393942832946777,
                -6.467441558837891,
                -3.9683492183685303,
                -4.476323127746582,
                -0.9219117164611816,
                -1.3561742305755615,
                -4.149684906005859,
                -9.135793685913086,
                -2.380812406539917,
                -6.774982929229736,
                -2.3040244579315186,
                -2.42000150680542,
                -2.941812515258789,
                0.15597115457057953,
                -0.17902347445487976,
                -3.9592044353485107,
            ],
        };
        check_reference(config, &reference);
    }

    #[test]
    fn euler_at_final() {
        let config = r#"{"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "final_sigmas_type": "sigma_min", "euler_at_final": true, "_class_name": "DPMSolverMultistepScheduler"}"#;
        let reference = Reference {
            steps: 20,
            timesteps: &[
                999.0, 949.0, 899.0, 849.0, 799.0, 749.0, 699.0, 649.0, 599.0, 549.0, 500.0, 450.0,
                400.0, 350.0, 300.0, 250.0, 200.0, 150.0, 100.0, 50.0,
            ],
            sigmas: Some(&[
                14.614646911621094,
                10.904239654541016,
                8.30280590057373,
                6.442957401275635,
                5.087765216827393,
                4.081730842590332,
                3.321084499359131,
                2.7354702949523926,
                2.2764639854431152,
                1.9102516174316406,
                1.6182796955108643,
                1.3716686964035034,
                1.1643916368484497,
                0.9871089458465576,
                0.8327531814575195,
                0.6957994699478149,
                0.5716663599014282,
                0.4560753107070923,
                0.34393182396888733,
                0.225582554936409,
                0.02916753478348255,
            ]),
            init_noise_sigma: 1.0,
            img2img: None,
            final_sample: &[
                -6.37966251373291,
                -6.4525604248046875,
                -3.9738821983337402,
                -4.477707862854004,
                -0.9523310661315918,
                -1.383046269416809,
                -4.153738021850586,
                -9.099114418029785,
                -2.3993139266967773,
                -6.7575883865356445,
                -2.323153495788574,
                -2.438182830810547,
                -2.9557316303253174,
                0.11674683541059494,
                -0.21551130712032318,
                -3.9648122787475586,
            ],
        };
        check_reference(config, &reference);
    }

    #[test]
    fn cosine_linspace_lambda_clipped() {
        let config = r#"{"beta_schedule": "squaredcos_cap_v2", "lambda_min_clipped": -5.1, "_class_name": "DPMSolverMultistepScheduler"}"#;
        let reference = Reference {
            steps: 10,
            timesteps: &[
                995.0, 896.0, 796.0, 696.0, 597.0, 498.0, 398.0, 298.0, 199.0, 100.0,
            ],
            sigmas: Some(&[
                160.41366577148438,
                6.176133632659912,
                3.0547263622283936,
                1.9578906297683716,
                1.3816450834274292,
                1.009238839149475,
                0.7354666590690613,
                0.518397867679596,
                0.33572447299957275,
                0.1710437536239624,
                0.0,
            ]),
            init_noise_sigma: 1.0,
            img2img: None,
            final_sample: &[
                -71.90135955810547,
                -72.52778625488281,
                -51.22718811035156,
                -55.55684280395508,
                -25.261356353759766,
                -28.962736129760742,
                -52.77279281616211,
                -95.27105712890625,
                -37.69607162475586,
                -75.14906311035156,
                -37.04158020019531,
                -38.03007507324219,
                -42.4776611328125,
                -16.074195861816406,
                -18.929468154907227,
                -51.14923858642578,
            ],
        };
        check_reference(config, &reference);
    }

    #[test]
    fn exponential() {
        let config = r#"{"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "use_exponential_sigmas": true, "_class_name": "DPMSolverMultistepScheduler"}"#;
        let reference = Reference {
            steps: 10,
            timesteps: &[
                998.0, 874.0, 723.0, 538.0, 329.0, 152.0, 52.0, 14.0, 2.0, 0.0,
            ],
            sigmas: Some(&[
                14.614646911621094,
                7.324882984161377,
                3.6712424755096436,
                1.8400323390960693,
                0.9222270250320435,
                0.46222156286239624,
                0.23166616261005402,
                0.11611142754554749,
                0.05819522589445114,
                0.02916753478348255,
                0.0,
            ]),
            init_noise_sigma: 1.0,
            img2img: None,
            final_sample: &[
                -6.000617504119873,
                -6.070376873016357,
                -3.6983652114868164,
                -4.180511474609375,
                -0.8068400621414185,
                -1.219020962715149,
                -3.8704822063446045,
                -8.603045463562012,
                -2.1915550231933594,
                -6.362280368804932,
                -2.1186723709106445,
                -2.2287516593933105,
                -2.724027395248413,
                0.21623238921165466,
                -0.10172741115093231,
                -3.6896846294403076,
            ],
        };
        check_reference(config, &reference);
    }

    #[test]
    fn sample_prediction() {
        let config = r#"{"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "prediction_type": "sample", "_class_name": "DPMSolverMultistepScheduler"}"#;
        let reference = Reference {
            steps: 6,
            timesteps: &[999.0, 832.0, 666.0, 500.0, 333.0, 166.0],
            sigmas: Some(&[
                14.614646911621094,
                5.934703826904297,
                2.9183084964752197,
                1.6182796955108643,
                0.9323583841323853,
                0.49240967631340027,
                0.0,
            ]),
            init_noise_sigma: 1.0,
            img2img: None,
            final_sample: &[
                -0.06580550968647003,
                -0.07776226103305817,
                0.3288058638572693,
                0.24616500735282898,
                0.8244200944900513,
                0.7537713646888733,
                0.29930490255355835,
                -0.5118670463562012,
                0.587076723575592,
                -0.1277949959039688,
                0.5995689630508423,
                0.5807012915611267,
                0.49580973386764526,
                0.99977707862854,
                0.9452779293060303,
                0.3302938938140869,
            ],
        };
        check_reference(config, &reference);
    }

    #[test]
    fn v_prediction_leading() {
        let config = r#"{"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "prediction_type": "v_prediction", "timestep_spacing": "leading", "steps_offset": 1, "_class_name": "DPMSolverMultistepScheduler"}"#;
        let reference = Reference {
            steps: 10,
            timesteps: &[
                901.0, 811.0, 721.0, 631.0, 541.0, 451.0, 361.0, 271.0, 181.0, 91.0,
            ],
            sigmas: Some(&[
                8.390686988830566,
                5.376337051391602,
                3.6306543350219727,
                2.557664632797241,
                1.858561396598816,
                1.376179575920105,
                1.02392578125,
                0.7515089511871338,
                0.5269757509231567,
                0.32353323698043823,
                0.0,
            ]),
            init_noise_sigma: 1.0,
            img2img: None,
            final_sample: &[
                -0.8139734268188477,
                -0.8260648250579834,
                -0.41491934657096863,
                -0.4984905421733856,
                0.086274653673172,
                0.014830552041530609,
                -0.44475257396698,
                -1.26505708694458,
                -0.15374073386192322,
                -0.8766608238220215,
                -0.14110784232616425,
                -0.1601880043745041,
                -0.24603533744812012,
                0.26360583305358887,
                0.20849311351776123,
                -0.4134146571159363,
            ],
        };
        check_reference(config, &reference);
    }

    #[test]
    fn karras_img2img() {
        let config = r#"{"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "use_karras_sigmas": true, "_class_name": "DPMSolverMultistepScheduler"}"#;
        let reference = Reference {
            steps: 10,
            timesteps: &[
                999.0, 916.0, 815.0, 687.0, 523.0, 327.0, 146.0, 41.0, 7.0, 0.0,
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
            init_noise_sigma: 1.0,
            img2img: Some(Img2Img {
                strength: 0.45,
                begin: 6,
                noised: &[
                    -1.817497730255127,
                    -0.31094157695770264,
                    -1.1292084455490112,
                    -1.922189474105835,
                    -0.5887423753738403,
                    -0.07976391911506653,
                    -1.32594633102417,
                    -1.5175471305847168,
                    -1.020588994026184,
                    0.4181487560272217,
                    -0.9427839517593384,
                    -0.3255017101764679,
                    0.2082023173570633,
                    1.2330899238586426,
                    0.11674001812934875,
                    0.2503904700279236,
                ],
            }),
            final_sample: &[
                -1.6271542310714722,
                -0.2995671033859253,
                -1.0206292867660522,
                -1.7194092273712158,
                -0.5443668961524963,
                -0.09585177898406982,
                -1.1939955949783325,
                -1.3628360033035278,
                -0.9249130487442017,
                0.34291210770606995,
                -0.8563507795333862,
                -0.3123975396156311,
                0.15790598094463348,
                1.0610435009002686,
                0.07730879634618759,
                0.19508245587348938,
            ],
        };
        check_reference(config, &reference);
    }

    /// diffusers casts the unrounded (squaredcos_cap_v2) Karras timesteps to int64, which
    /// truncates and repeats 998. (diffusers' own txt2img loop cannot run this schedule: its
    /// `index_for_timestep(998)` picks the second 998 and steps past the end, so only the
    /// schedule is compared.)
    #[test]
    fn cosine_karras_timesteps_are_truncated() {
        use super::super::{Scheduler, SchedulerConfig};
        use super::DpmSolverMultistepScheduler;
        let config = SchedulerConfig::from_json_str(
            r#"{"beta_schedule": "squaredcos_cap_v2", "use_karras_sigmas": true}"#,
        )
        .expect("config");
        let s = DpmSolverMultistepScheduler::new(&config, 10).expect("builds");
        assert_eq!(
            s.timesteps(),
            [998.0, 998.0, 998.0, 998.0, 997.0, 995.0, 983.0, 894.0, 259.0, 0.0]
        );
        let want = [
            20291.302734375,
            9856.4345703125,
            4405.77001953125,
            1773.39453125,
            622.9054565429688,
            181.96337890625,
            40.84315490722656,
            6.096719741821289,
            0.44390273094177246,
            0.006427108775824308,
            0.0,
        ];
        for (got, want) in s.sigmas().iter().zip(want) {
            assert!(
                ((*got as f64) - want).abs() <= 1e-6 * want,
                "{got} vs {want}"
            );
        }
    }
}
