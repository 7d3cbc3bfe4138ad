//! `DPMSolverMultistepScheduler` with `algorithm_type = "dpmsolver++"` or `"sde-dpmsolver++"`:
//! the multistep DPM-Solver++ of Lu et al., "DPM-Solver++: Fast Solver for Guided Sampling of
//! Diffusion Probabilistic Models" (2022), Algorithm 2 ("DPM++ 2M" at `solver_order = 2`), and its
//! stochastic variant ("DPM++ 2M SDE", k-diffusion's `sample_dpmpp_2m_sde`). Mirrors diffusers
//! 0.42.1 `scheduling_dpmsolver_multistep.py`.
//!
//! The solver works in `lambda = log(alpha_t / sigma_t)` with data-prediction (x0) model
//! outputs. State: the last `solver_order` converted outputs and how many lower-order warm-up
//! steps have run; both start empty, so an img2img run that begins part-way down the schedule
//! starts with a first-order step, like diffusers after `set_begin_index`.
//!
//! The SDE variant solves the reverse SDE instead of the probability-flow ODE over each step
//! `h = lambda_t - lambda_s`: the linear part is integrated exactly, so the sample keeps a
//! fraction `sigma_t / sigma_s * e^-h` (the ODE keeps `sigma_t / sigma_s`), the data prediction
//! enters with `alpha_t (1 - e^-2h)`, and fresh Gaussian noise with standard deviation
//! `sigma_t sqrt(1 - e^-2h)` is added. diffusers draws that noise at every step (the last one
//! too, where it is multiplied by zero) with `randn_tensor(model_output.shape, generator)`, in
//! float32, after converting the model output; we draw it from the same point of the torch CPU
//! stream.

use candle_core::Tensor;

use super::common::{self, check_steps, div_scalar, np_arange, np_interp_unit_grid};
use super::common::{np_linspace, np_round, scale};
use super::config::{
    beta_params, cfg_value, parse_prediction_type, parse_spacing, require_false, require_one_of,
    BetaSchedule, PredictionType, SchedulerConfig, SchedulerConfigError, TimestepSpacing,
};
use super::sigmas::{
    check_custom_timesteps, final_sigma, respaced_sigmas, sigma_spacing, sigma_to_t, train_sigmas,
    FinalSigma, SigmaSpacing,
};
use super::{Scheduler, StepOutput};
use crate::sampling::noise::TorchRng;

const CLASS: &str = "DPMSolverMultistepScheduler";

/// `solver_type`: how the second-order term is discretised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SolverType {
    Midpoint,
    Heun,
}

impl SolverType {
    /// `solver_type` resolved for `class` (default `midpoint`).
    pub(crate) fn from_config(
        class: &'static str,
        config: &SchedulerConfig,
    ) -> Result<Self, SchedulerConfigError> {
        match cfg_value!(config, solver_type).as_deref() {
            // diffusers maps the UniPC / DEIS solver names onto midpoint.
            None | Some("midpoint") | Some("logrho") | Some("bh1") | Some("bh2") => {
                Ok(Self::Midpoint)
            }
            Some("heun") => Ok(Self::Heun),
            Some(other) => Err(SchedulerConfigError::UnsupportedValue {
                class,
                key: "solver_type",
                value: other.to_string(),
                supported: "midpoint, heun",
            }),
        }
    }
}

/// `algorithm_type`: the probability-flow ODE solver or its SDE counterpart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Algorithm {
    /// `dpmsolver++` (and `deis`, which diffusers maps onto it).
    DpmSolverPp,
    /// `sde-dpmsolver++`: draws Gaussian noise at every step.
    SdeDpmSolverPp,
}

impl Algorithm {
    /// `algorithm_type` resolved for `class` (default `dpmsolver++`). The deprecated
    /// noise-prediction solvers `dpmsolver` / `sde-dpmsolver` are not implemented.
    pub(crate) fn from_config(
        class: &'static str,
        config: &SchedulerConfig,
    ) -> Result<Self, SchedulerConfigError> {
        match cfg_value!(config, algorithm_type).as_deref() {
            // diffusers maps the DEIS name onto dpmsolver++.
            None | Some("dpmsolver++") | Some("deis") => Ok(Self::DpmSolverPp),
            Some("sde-dpmsolver++") => Ok(Self::SdeDpmSolverPp),
            Some(other) => Err(SchedulerConfigError::UnsupportedValue {
                class,
                key: "algorithm_type",
                value: other.to_string(),
                supported: "dpmsolver++, sde-dpmsolver++",
            }),
        }
    }
}

/// The step coefficients both algorithms share the shape of, computed as diffusers' 0-dim
/// float32 tensors: `x_t = sample_coef * sample + x0_coef * D0 (+ D1, D2 terms) + noise_coef * z`.
pub(crate) struct Coefficients {
    /// `sigma_t / sigma_s` (ODE) or `sigma_t / sigma_s * e^-h` (SDE).
    pub sample: f32,
    /// `-alpha_t (e^-h - 1)` (ODE) or `alpha_t (1 - e^-2h)` (SDE).
    pub x0: f32,
    /// `sigma_t sqrt(1 - e^-2h)` (SDE only).
    pub noise: Option<f32>,
}

impl Algorithm {
    /// The `sample` and `D0` (x0) coefficients of a step that ends at `(alpha_t, sigma_t)`,
    /// starts from `sigma_s` and spans `h` in lambda, plus the SDE's noise coefficient.
    pub(crate) fn coefficients(
        self,
        alpha_t: f32,
        sigma_t: f32,
        sigma_s: f32,
        h: f32,
    ) -> Coefficients {
        match self {
            // (sigma_t / sigma_s) * x - (alpha_t * (e^-h - 1)) * D0
            Self::DpmSolverPp => Coefficients {
                sample: sigma_t / sigma_s,
                x0: -(alpha_t * ((-h).exp() - 1.0)),
                noise: None,
            },
            // (sigma_t / sigma_s * e^-h) * x + (alpha_t * (1 - e^-2h)) * D0
            //   + sigma_t * sqrt(1 - e^-2h) * z
            Self::SdeDpmSolverPp => Coefficients {
                sample: sigma_t / sigma_s * (-h).exp(),
                x0: alpha_t * (1.0 - (-2.0 * h).exp()),
                noise: Some(sigma_t * (1.0 - (-2.0 * h).exp()).sqrt()),
            },
        }
    }
}

/// `sample_coef * sample + x0_coef * d0`, plus the higher-order `terms` and the SDE's noise,
/// summed left to right as diffusers writes them.
pub(crate) fn combine(
    c: &Coefficients,
    sample: &Tensor,
    d0: &Tensor,
    terms: &[(f32, &Tensor)],
    noise: Option<&Tensor>,
) -> candle_core::Result<Tensor> {
    let mut x = scale(sample, c.sample)?.add(&scale(d0, c.x0)?)?;
    for &(coef, term) in terms {
        x = x.add(&scale(term, coef)?)?;
    }
    match (c.noise, noise) {
        (Some(coef), Some(noise)) => x.add(&scale(noise, coef)?),
        (None, _) => Ok(x),
        (Some(_), None) => Err(candle_core::Error::Msg(
            "the SDE DPM-Solver step needs noise".into(),
        )),
    }
}

/// `convert_model_output` for DPM-Solver++: the data prediction x0 at `sigma`.
pub(crate) fn data_prediction(
    prediction_type: PredictionType,
    model_output: &Tensor,
    sample: &Tensor,
    sigma: f32,
) -> candle_core::Result<Tensor> {
    let (alpha_t, sigma_t) = alpha_sigma(sigma);
    match prediction_type {
        PredictionType::Epsilon => {
            div_scalar(&sample.sub(&scale(model_output, sigma_t)?)?, alpha_t)
        }
        PredictionType::Sample => Ok(model_output.clone()),
        PredictionType::VPrediction => scale(sample, alpha_t)?.sub(&scale(model_output, sigma_t)?),
    }
}

/// DPM-Solver++ (multistep), deterministic or SDE.
pub struct DpmSolverMultistepScheduler {
    algorithm: Algorithm,
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
pub(crate) fn alpha_sigma(sigma: f32) -> (f32, f32) {
    let alpha_t = 1.0 / (sigma * sigma + 1.0).sqrt();
    (alpha_t, sigma * alpha_t)
}

/// `lambda_t = log(alpha_t) - log(sigma_t)` (half the log-SNR).
pub(crate) fn lambda(alpha_t: f32, sigma_t: f32) -> f32 {
    alpha_t.ln() - sigma_t.ln()
}

impl DpmSolverMultistepScheduler {
    /// `DPMSolverMultistepScheduler.from_config(config)` + `set_timesteps(num_inference_steps)`.
    pub fn new(
        config: &SchedulerConfig,
        num_inference_steps: usize,
    ) -> Result<Self, SchedulerConfigError> {
        Self::build(config, num_inference_steps, None)
    }

    /// `DPMSolverMultistepScheduler.from_config(config)` + `set_timesteps(timesteps=...)` (a
    /// published schedule such as Align Your Steps', in place of the config's spacing).
    pub fn with_timesteps(
        config: &SchedulerConfig,
        timesteps: &[i64],
    ) -> Result<Self, SchedulerConfigError> {
        Self::build(config, timesteps.len(), Some(timesteps))
    }

    /// `set_timesteps(num_inference_steps)` or, with `custom`, `set_timesteps(timesteps=custom)`
    /// (`num_inference_steps` is then their count).
    pub(crate) fn build(
        config: &SchedulerConfig,
        num_inference_steps: usize,
        custom: Option<&[i64]>,
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
        let algorithm = Algorithm::from_config(CLASS, config)?;
        let solver_type = SolverType::from_config(CLASS, config)?;
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
        if let Some(custom) = custom {
            check_custom_timesteps(CLASS, custom, t, sigma_spacing)?;
        }
        let spaced: Vec<i64> = match (custom, spacing) {
            // np.array(timesteps).astype(np.int64)
            (Some(custom), _) => custom.to_vec(),
            (None, TimestepSpacing::Linspace) => {
                let mut v: Vec<i64> = np_linspace(0.0, last_timestep as f64 - 1.0, n + 1, true)
                    .into_iter()
                    .rev()
                    .map(|x| np_round(x) as i64)
                    .collect();
                v.pop();
                v
            }
            (None, TimestepSpacing::Leading) => {
                let ratio = (last_timestep / (n + 1)) as i64;
                let mut v: Vec<i64> = (0..=n as i64).rev().map(|i| i * ratio).collect();
                v.pop();
                v.into_iter().map(|x| x + steps_offset).collect()
            }
            (None, TimestepSpacing::Trailing) => {
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
            algorithm,
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

    /// `dpm_solver_first_order_update` (DPM-Solver++(1), equivalent to DDIM; the SDE's to DDIM
    /// with eta = 1).
    fn first_order_update(
        &self,
        x0: &Tensor,
        sample: &Tensor,
        i: usize,
        noise: Option<&Tensor>,
    ) -> candle_core::Result<Tensor> {
        let (alpha_t, sigma_t) = alpha_sigma(self.sigma(i + 1)?);
        let (alpha_s, sigma_s) = alpha_sigma(self.sigma(i)?);
        let h = lambda(alpha_t, sigma_t) - lambda(alpha_s, sigma_s);
        let c = self.algorithm.coefficients(alpha_t, sigma_t, sigma_s, h);
        combine(&c, sample, x0, &[], noise)
    }

    /// `multistep_dpm_solver_second_order_update` (DPM-Solver++(2M), or its SDE).
    fn second_order_update(
        &self,
        sample: &Tensor,
        i: usize,
        noise: Option<&Tensor>,
    ) -> candle_core::Result<Tensor> {
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
        let c = self.algorithm.coefficients(alpha_t, sigma_t, sigma_s0, h);
        let d1_coef = match (self.algorithm, self.solver_type) {
            // - 0.5 * (alpha_t * (e^-h - 1)) * D1
            (Algorithm::DpmSolverPp, SolverType::Midpoint) => {
                -(0.5 * (alpha_t * ((-h).exp() - 1.0)))
            }
            // + (alpha_t * ((e^-h - 1) / h + 1)) * D1
            (Algorithm::DpmSolverPp, SolverType::Heun) => alpha_t * (((-h).exp() - 1.0) / h + 1.0),
            // + 0.5 * (alpha_t * (1 - e^-2h)) * D1
            (Algorithm::SdeDpmSolverPp, SolverType::Midpoint) => 0.5 * c.x0,
            // + (alpha_t * ((1 - e^-2h) / (-2h) + 1)) * D1
            (Algorithm::SdeDpmSolverPp, SolverType::Heun) => {
                alpha_t * ((1.0 - (-2.0 * h).exp()) / (-2.0 * h) + 1.0)
            }
        };
        combine(&c, sample, d0, &[(d1_coef, &d1)], noise)
    }

    /// `multistep_dpm_solver_third_order_update` (DPM-Solver++(3M), or its SDE).
    fn third_order_update(
        &self,
        sample: &Tensor,
        i: usize,
        noise: Option<&Tensor>,
    ) -> candle_core::Result<Tensor> {
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
        let c = self.algorithm.coefficients(alpha_t, sigma_t, sigma_s0, h);
        let (d1_coef, d2_coef) = match self.algorithm {
            // + (alpha_t * ((e^-h - 1) / h + 1)) * D1
            // - (alpha_t * ((e^-h - 1 + h) / h^2 - 0.5)) * D2
            Algorithm::DpmSolverPp => {
                let em1 = (-h).exp() - 1.0;
                (
                    alpha_t * (em1 / h + 1.0),
                    -(alpha_t * ((em1 + h) / (h * h) - 0.5)),
                )
            }
            // + (alpha_t * ((1 - e^-2h) / (-2h) + 1)) * D1
            // + (alpha_t * ((1 - e^-2h - 2h) / (2h)^2 - 0.5)) * D2
            Algorithm::SdeDpmSolverPp => {
                let one_m = 1.0 - (-2.0 * h).exp();
                let two_h = 2.0 * h;
                (
                    alpha_t * (one_m / (-2.0 * h) + 1.0),
                    alpha_t * ((one_m - two_h) / (two_h * two_h) - 0.5),
                )
            }
        };
        combine(&c, sample, m0, &[(d1_coef, &d1), (d2_coef, &d2)], noise)
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
        rng: &mut TorchRng,
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

        let x0 = data_prediction(self.prediction_type, &model_output, &sample, self.sigma(i)?)?;
        self.model_outputs.rotate_left(1);
        if let Some(last) = self.model_outputs.last_mut() {
            *last = Some(x0.clone());
        }

        let noise = match self.algorithm {
            Algorithm::DpmSolverPp => None,
            Algorithm::SdeDpmSolverPp => Some(rng.randn_tensor(x0.dims(), x0.device())?),
        };
        let noise = noise.as_ref();
        let prev_sample =
            if self.solver_order == 1 || self.lower_order_nums < 1 || lower_order_final {
                self.first_order_update(&x0, &sample, i, noise)?
            } else if self.solver_order == 2 || self.lower_order_nums < 2 || lower_order_second {
                self.second_order_update(&sample, i, noise)?
            } else {
                self.third_order_update(&sample, i, noise)?
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
    //! Reference values: `tests/fixtures/scheduler_cases.json` and, for the SDE variant,
    //! `scheduler_cases_extra.json` (see `schedulers::testing`).

    super::super::testing::reference_cases!("dpmpp_2m":
        karras_10,
        karras_20_no_lower_order_final,
        third_order,
        third_order_20_sigma_min,
        heun,
        sigma_min_final_second_order,
        euler_at_final,
        cosine_linspace_lambda_clipped,
        exponential,
        sample_prediction,
        v_prediction_leading,
        karras_img2img,
        sde_linspace,
        sde_karras,
        sde_exponential,
        sde_heun,
        sde_third_order,
        sde_third_order_20_sigma_min,
        sde_first_order,
        sde_v_prediction_leading,
        sde_sample_prediction_trailing,
        sde_one_step,
        sde_karras_img2img,
        beta,
        beta_leading_sigma_min,
        sde_beta_img2img,
    );

    /// diffusers casts the unrounded (squaredcos_cap_v2) Karras timesteps to int64, which
    /// truncates and repeats 998. (diffusers' own txt2img loop cannot run this schedule: its
    /// `index_for_timestep(998)` picks the second 998 and steps past the end, so only the
    /// schedule is compared.)
    #[test]
    fn cosine_karras_timesteps_are_truncated() {
        use super::super::testing::schedule;
        use super::super::{Scheduler, SchedulerConfig};
        use super::DpmSolverMultistepScheduler;
        let reference = schedule("dpmpp_2m.cosine_karras_timesteps_are_truncated");
        assert!(
            reference.timesteps.windows(2).any(|w| w[0] == w[1]),
            "the reference repeats a timestep: {:?}",
            reference.timesteps
        );
        let config = SchedulerConfig::from_json_str(&reference.config.to_string()).expect("config");
        let s = DpmSolverMultistepScheduler::new(&config, reference.steps).expect("builds");
        assert_eq!(s.timesteps(), reference.timesteps);
        for (got, &want) in s.sigmas().iter().zip(&reference.sigmas) {
            assert!(
                ((*got as f64) - want).abs() <= 1e-6 * want,
                "{got} vs {want}"
            );
        }
    }
}
