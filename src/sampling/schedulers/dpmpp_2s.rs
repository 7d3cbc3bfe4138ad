//! `DPMSolverSinglestepScheduler`: the singlestep DPM-Solver++ of Lu et al., "DPM-Solver++: Fast
//! Solver for Guided Sampling of Diffusion Probabilistic Models" (2022), Algorithm 1
//! ("DPM-Solver++(2S)" at `solver_order = 2`), with the stochastic `sde-dpmsolver++` variant of
//! `dpmpp_2m.rs`. Mirrors diffusers 0.42.1 `scheduling_dpmsolver_singlestep.py`.
//!
//! A singlestep solver of order k spends k UNet evaluations on one step of its own, from the
//! sample it started at. diffusers places those evaluations on consecutive timesteps of the
//! schedule: with order 2 the orders run 1, 2, 1, 2, …; an order-1 step remembers its start
//! sample and moves on (DPM-Solver++(1), DDIM), and the order-2 step after it goes from that
//! remembered sample over both intervals, with the model outputs of both evaluations (the
//! intermediate point is the grid timestep, not the midpoint in lambda of the paper's
//! Algorithm 1). So the UNet runs once per timestep, like the multistep solvers, and the
//! result differs from k-diffusion's (A1111's) `DPM++ 2S a`, which is ancestral and evaluates
//! at the midpoint.
//!
//! diffusers-specific behaviour kept: the timesteps are always `linspace` (the class takes no
//! `timestep_spacing` or `steps_offset`), Karras timesteps are always rounded, the last step is
//! first order when the final sigma is zero, and `lower_order_final` is forced on when the step
//! count is not a multiple of the order or the final sigma is zero. An img2img run starting
//! where the order list says 2 or 3 drops to the order its history allows (first order at the
//! first step), as diffusers' `while model_outputs[-order] is None` does.

use candle_core::Tensor;

use super::common::{self, check_steps, div_scalar, np_interp_unit_grid};
use super::common::{np_linspace, np_round, scale};
use super::config::{
    beta_params, cfg_value, parse_prediction_type, require_false, require_one_of, BetaSchedule,
    PredictionType, SchedulerConfig, SchedulerConfigError,
};
use super::dpmpp_2m::{alpha_sigma, combine, data_prediction, lambda, Algorithm, SolverType};
use super::sigmas::{
    final_sigma, respaced_sigmas, sigma_spacing, sigma_to_t, train_sigmas, FinalSigma, SigmaSpacing,
};
use super::{Scheduler, StepOutput};
use crate::sampling::noise::TorchRng;

const CLASS: &str = "DPMSolverSinglestepScheduler";

/// DPM-Solver++ (singlestep), deterministic or SDE.
pub struct DpmSolverSinglestepScheduler {
    algorithm: Algorithm,
    prediction_type: PredictionType,
    solver_type: SolverType,
    /// The solver order of each step (`get_order_list`).
    order_list: Vec<usize>,
    timesteps: Vec<f64>,
    sigmas: Vec<f32>,
    /// The converted (x0) outputs of the last `solver_order` steps, oldest first.
    model_outputs: Vec<Option<Tensor>>,
    /// The sample the current singlestep started from (set by each first-order step).
    sample: Option<Tensor>,
}

/// `get_order_list(steps)`: the order of each step, from the (already forced) `lower_order_final`.
fn order_list(
    steps: usize,
    order: usize,
    lower_order_final: bool,
    final_sigma: FinalSigma,
) -> Vec<usize> {
    let repeat = |pattern: &[usize], times: usize| -> Vec<usize> {
        pattern
            .iter()
            .copied()
            .cycle()
            .take(pattern.len() * times)
            .collect()
    };
    let mut orders = match (order, lower_order_final) {
        // [1, 2, 3] * (steps // 3 - 1) + [1, 2] + [1]; + [1]; + [1, 2]
        (3, true) => match steps % 3 {
            0 => [repeat(&[1, 2, 3], steps / 3 - 1), vec![1, 2, 1]].concat(),
            1 => [repeat(&[1, 2, 3], steps / 3), vec![1]].concat(),
            _ => [repeat(&[1, 2, 3], steps / 3), vec![1, 2]].concat(),
        },
        // [1, 2] * (steps // 2 - 1) + [1, 1]; [1, 2] * (steps // 2) + [1]
        (2, true) => match steps % 2 {
            0 => [repeat(&[1, 2], steps / 2 - 1), vec![1, 1]].concat(),
            _ => [repeat(&[1, 2], steps / 2), vec![1]].concat(),
        },
        (3, false) => repeat(&[1, 2, 3], steps / 3),
        (2, false) => repeat(&[1, 2], steps / 2),
        _ => vec![1; steps],
    };
    if final_sigma == FinalSigma::Zero {
        if let Some(last) = orders.last_mut() {
            *last = 1;
        }
    }
    orders
}

impl DpmSolverSinglestepScheduler {
    /// `DPMSolverSinglestepScheduler.from_config(config)` + `set_timesteps(num_inference_steps)`.
    pub fn new(
        config: &SchedulerConfig,
        num_inference_steps: usize,
    ) -> Result<Self, SchedulerConfigError> {
        // The class takes no `rescale_betas_zero_snr`, `timestep_spacing` or `steps_offset`.
        let betas = beta_params(CLASS, config, (0.0001, 0.02, BetaSchedule::Linear), false)?;
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
        let solver_order = solver_order as usize;
        require_false(CLASS, "thresholding", cfg_value!(config, thresholding))?;
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
        let sigma_spacing = sigma_spacing(CLASS, config)?;
        let final_sigma = final_sigma(CLASS, config)?;
        let lambda_min_clipped =
            cfg_value!(config, lambda_min_clipped).unwrap_or(f64::NEG_INFINITY);
        let t = betas.num_train_timesteps;
        let n = num_inference_steps;
        check_steps(CLASS, n, t)?;
        let alphas_cumprod = betas.alphas_cumprod();

        // Training timesteps whose lambda is below `lambda_min_clipped` are cut from the top
        // (torch.searchsorted on the ascending flipped lambdas).
        let lambdas: Vec<f32> = alphas_cumprod
            .iter()
            .map(|&a| lambda(a.sqrt(), (1.0 - a).sqrt()))
            .collect();
        let clip = lambda_min_clipped as f32;
        let clipped_idx = lambdas.iter().rev().take_while(|&&l| l < clip).count();
        // np.linspace(0, T - 1 - clipped_idx, N + 1).round()[::-1][:-1].astype(np.int64)
        let mut spaced: Vec<i64> = np_linspace(0.0, (t - 1 - clipped_idx) as f64, n + 1, true)
            .into_iter()
            .rev()
            .map(|x| np_round(x) as i64)
            .collect();
        spaced.pop();

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
                // Between the ends of the training sigmas (or the config's `sigma_min` /
                // `sigma_max`, which `from_config` keeps); timesteps back through sigma_to_t,
                // rounded for Karras (whatever the beta schedule, unlike the multistep class),
                // then cast to int64, which truncates.
                let flipped: Vec<f64> = train_f64.iter().rev().copied().collect();
                let sigmas = respaced_sigmas(
                    other,
                    &flipped,
                    (cfg_value!(config, sigma_min), cfg_value!(config, sigma_max)),
                    n,
                );
                let round = other == SigmaSpacing::Karras;
                let timesteps = sigmas
                    .iter()
                    .map(|&s| {
                        let ts = sigma_to_t(s, &log_sigmas);
                        (if round { np_round(ts) } else { ts }) as i64
                    })
                    .collect();
                (sigmas, timesteps)
            }
        };
        let mut sigmas: Vec<f32> = sigmas.into_iter().map(|s| s as f32).collect();
        sigmas.push(final_sigma.value(&alphas_cumprod));

        // `set_timesteps` turns `lower_order_final` on (in the config) for a step count that is
        // not a multiple of the order, and for a zero final sigma.
        let lower_order_final = cfg_value!(config, lower_order_final).unwrap_or(false)
            || !n.is_multiple_of(solver_order)
            || final_sigma == FinalSigma::Zero;
        Ok(Self {
            algorithm,
            prediction_type,
            solver_type,
            order_list: order_list(n, solver_order, lower_order_final, final_sigma),
            timesteps: timesteps.iter().map(|&v| v as f64).collect(),
            sigmas,
            model_outputs: vec![None; solver_order],
            sample: None,
        })
    }

    /// The sigmas of the schedule (one more than the timesteps).
    pub fn sigmas(&self) -> &[f32] {
        &self.sigmas
    }

    fn sigma(&self, index: usize) -> candle_core::Result<f32> {
        self.sigmas.get(index).copied().ok_or_else(|| {
            candle_core::Error::Msg(format!("DPM-Solver sigma index {index} out of range"))
        })
    }

    /// The `k`-th newest converted output (1 = this step's).
    fn output(&self, k: usize) -> candle_core::Result<&Tensor> {
        let n = self.model_outputs.len();
        n.checked_sub(k)
            .and_then(|i| self.model_outputs[i].as_ref())
            .ok_or_else(|| candle_core::Error::Msg("missing DPM-Solver history".into()))
    }

    /// `(alpha, sigma, lambda)` at `sigmas[index]`.
    fn point(&self, index: usize) -> candle_core::Result<(f32, f32, f32)> {
        let (alpha, sigma) = alpha_sigma(self.sigma(index)?);
        Ok((alpha, sigma, lambda(alpha, sigma)))
    }

    /// `dpm_solver_first_order_update`: from `sample` at step `i` to step `i + 1`.
    fn first_order_update(
        &self,
        sample: &Tensor,
        i: usize,
        noise: Option<&Tensor>,
    ) -> candle_core::Result<Tensor> {
        let (alpha_t, sigma_t, lambda_t) = self.point(i + 1)?;
        let (_, sigma_s, lambda_s) = self.point(i)?;
        let c = self
            .algorithm
            .coefficients(alpha_t, sigma_t, sigma_s, lambda_t - lambda_s);
        combine(&c, sample, self.output(1)?, &[], noise)
    }

    /// `singlestep_dpm_solver_second_order_update`: from `sample` at step `i - 1` to step
    /// `i + 1`, with the outputs at `i - 1` and `i`.
    fn second_order_update(
        &self,
        sample: &Tensor,
        i: usize,
        noise: Option<&Tensor>,
    ) -> candle_core::Result<Tensor> {
        let s1 = i.checked_sub(1).ok_or_else(|| {
            candle_core::Error::Msg("DPM-Solver second-order step at index 0".into())
        })?;
        let (alpha_t, sigma_t, lambda_t) = self.point(i + 1)?;
        let (_, _, lambda_s0) = self.point(i)?;
        let (_, sigma_s1, lambda_s1) = self.point(s1)?;
        let (m0, m1) = (self.output(1)?, self.output(2)?);
        let h = lambda_t - lambda_s1;
        let r0 = (lambda_s0 - lambda_s1) / h;
        let d0 = m1;
        let d1 = scale(&m0.sub(m1)?, 1.0 / r0)?;
        let c = self.algorithm.coefficients(alpha_t, sigma_t, sigma_s1, h);
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

    /// `singlestep_dpm_solver_third_order_update`: from `sample` at step `i - 2` to step
    /// `i + 1`, with the outputs at `i - 2`, `i - 1` and `i`.
    fn third_order_update(
        &self,
        sample: &Tensor,
        i: usize,
        noise: Option<&Tensor>,
    ) -> candle_core::Result<Tensor> {
        let s2 = i.checked_sub(2).ok_or_else(|| {
            candle_core::Error::Msg("DPM-Solver third-order step before index 2".into())
        })?;
        let (alpha_t, sigma_t, lambda_t) = self.point(i + 1)?;
        let (_, _, lambda_s0) = self.point(i)?;
        let (_, _, lambda_s1) = self.point(i - 1)?;
        let (_, sigma_s2, lambda_s2) = self.point(s2)?;
        let (m0, m1, m2) = (self.output(1)?, self.output(2)?, self.output(3)?);
        let h = lambda_t - lambda_s2;
        let r0 = (lambda_s0 - lambda_s2) / h;
        let r1 = (lambda_s1 - lambda_s2) / h;
        let d0 = m2;
        let d1_0 = scale(&m1.sub(m2)?, 1.0 / r1)?;
        let d1_1 = scale(&m0.sub(m2)?, 1.0 / r0)?;
        let c = self.algorithm.coefficients(alpha_t, sigma_t, sigma_s2, h);
        // The D1 coefficient the midpoint rule puts on D1_1 and the heun rule on D1.
        let d1_coef = match self.algorithm {
            Algorithm::DpmSolverPp => alpha_t * (((-h).exp() - 1.0) / h + 1.0),
            Algorithm::SdeDpmSolverPp => alpha_t * ((1.0 - (-2.0 * h).exp()) / (-2.0 * h) + 1.0),
        };
        match self.solver_type {
            SolverType::Midpoint => combine(&c, sample, d0, &[(d1_coef, &d1_1)], noise),
            SolverType::Heun => {
                // D1 = (r0 * D1_0 - r1 * D1_1) / (r0 - r1), D2 = 2 (D1_1 - D1_0) / (r0 - r1)
                let d1 = div_scalar(&scale(&d1_0, r0)?.sub(&scale(&d1_1, r1)?)?, r0 - r1)?;
                let d2 = div_scalar(&scale(&d1_1.sub(&d1_0)?, 2.0)?, r0 - r1)?;
                let d2_coef = match self.algorithm {
                    // - (alpha_t * ((e^-h - 1 + h) / h^2 - 0.5)) * D2
                    Algorithm::DpmSolverPp => -(alpha_t * (((-h).exp() - 1.0 + h) / (h * h) - 0.5)),
                    // + (alpha_t * ((1 - e^-2h + (-2h)) / (-2h)^2 - 0.5)) * D2
                    Algorithm::SdeDpmSolverPp => {
                        let m2h = -2.0 * h;
                        alpha_t * ((1.0 - (-2.0 * h).exp() + m2h) / (m2h * m2h) - 0.5)
                    }
                };
                combine(&c, sample, d0, &[(d1_coef, &d1), (d2_coef, &d2)], noise)
            }
        }
    }
}

impl Scheduler for DpmSolverSinglestepScheduler {
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
        let i = common::checked_index(step_index, self.timesteps.len())?;
        let dtype = model_output.dtype();
        let model_output = common::f32(model_output)?;
        let sample = common::f32(sample)?;

        let x0 = data_prediction(self.prediction_type, &model_output, &sample, self.sigma(i)?)?;
        self.model_outputs.rotate_left(1);
        if let Some(last) = self.model_outputs.last_mut() {
            *last = Some(x0.clone());
        }
        // Drawn at every step, before the order is known, as diffusers does.
        let noise = match self.algorithm {
            Algorithm::DpmSolverPp => None,
            Algorithm::SdeDpmSolverPp => Some(rng.randn_tensor(x0.dims(), x0.device())?),
        };
        let noise = noise.as_ref();

        // A run that starts part-way down the schedule (img2img) has no history yet.
        let mut order = self.order_list.get(i).copied().unwrap_or(1);
        let n = self.model_outputs.len();
        while order > 1 && self.model_outputs[n - order].is_none() {
            order -= 1;
        }
        if order == 1 {
            self.sample = Some(sample.clone());
        }
        let start = self.sample.as_ref().ok_or_else(|| {
            candle_core::Error::Msg("DPM-Solver singlestep without a start sample".into())
        })?;
        let prev_sample = match order {
            1 => self.first_order_update(start, i, noise)?,
            2 => self.second_order_update(start, i, noise)?,
            _ => self.third_order_update(start, i, noise)?,
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
        let (alpha_t, sigma_t) = alpha_sigma(self.sigmas[i]);
        let dtype = original.dtype();
        scale(&common::f32(original)?, alpha_t)?
            .add(&scale(&common::f32(noise)?, sigma_t)?)?
            .to_dtype(dtype)
    }
}

#[cfg(test)]
mod tests {
    //! Reference values: `tests/fixtures/scheduler_cases_extra.json` (see `schedulers::testing`).

    super::super::testing::reference_cases!("dpmpp_2s":
        class_defaults,
        sd_linspace,
        sd_odd_steps,
        karras,
        exponential_config_bounds,
        heun,
        third_order,
        third_order_heun_sigma_min,
        order_1,
        sigma_min_no_lower_order_final,
        cosine_lambda_clipped,
        v_prediction,
        sample_prediction,
        sde,
        sde_heun_third_order,
        one_step,
        img2img,
        img2img_odd_start,
        beta,
    );

    #[test]
    fn order_lists_follow_diffusers() {
        use super::{order_list, FinalSigma};
        let zero = FinalSigma::Zero;
        let min = FinalSigma::SigmaMin;
        assert_eq!(order_list(6, 2, true, zero), [1, 2, 1, 2, 1, 1]);
        assert_eq!(order_list(5, 2, true, zero), [1, 2, 1, 2, 1]);
        assert_eq!(order_list(1, 2, true, zero), [1]);
        assert_eq!(order_list(2, 2, true, zero), [1, 1]);
        assert_eq!(order_list(6, 2, false, min), [1, 2, 1, 2, 1, 2]);
        assert_eq!(order_list(6, 3, true, zero), [1, 2, 3, 1, 2, 1]);
        assert_eq!(order_list(7, 3, true, zero), [1, 2, 3, 1, 2, 3, 1]);
        assert_eq!(order_list(8, 3, true, min), [1, 2, 3, 1, 2, 3, 1, 2]);
        assert_eq!(order_list(6, 3, false, min), [1, 2, 3, 1, 2, 3]);
        assert_eq!(order_list(3, 1, true, zero), [1, 1, 1]);
    }
}
