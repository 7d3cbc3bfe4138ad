//! `UniPCMultistepScheduler` (A1111 "UniPC"): the unified predictor–corrector of Zhao et al.,
//! "UniPC: A Unified Predictor-Corrector Framework for Fast Sampling of Diffusion Models" (2023).
//! Mirrors diffusers 0.42.1 `scheduling_unipc_multistep.py`.
//!
//! Like DPM-Solver++ it works in `lambda = log(alpha_t / sigma_t)` with data-prediction (x0)
//! outputs (or noise predictions with `predict_x0 = false`). Each `step` first corrects the
//! sample the previous step predicted, using the model output just computed at it (UniC; skipped
//! at the first step, and at steps listed in `disable_corrector`), then predicts the next sample
//! (UniP). Both use the B(h) variant `bh1` (`B(h) = h`) or `bh2` (`B(h) = e^h - 1`, the default;
//! DPM-Solver's solver names map to it, as in diffusers). Order up to `solver_order`, warmed up
//! one order per step and lowered at the end (`lower_order_final`) as diffusers does.
//!
//! Numerics: the coefficients are float32 scalars as diffusers' 0-dim tensors. The order-2
//! predictor and order-1 corrector use diffusers' fixed `rhos = [0.5]`; the larger ones solve
//! `R rhos = b` with `torch.linalg.solve` (LAPACK `sgesv`), done here by the same LU
//! factorisation with partial pivoting in float32 ([`solve_f32`]) — which an optimised LAPACK may
//! round differently in the last bit (fused multiply-adds). So may `torch.einsum` over more than
//! one history term (order >= 3 predictor, order >= 2 corrector), summed here in index order.

use candle_core::Tensor;

use super::common::{self, check_steps, div_scalar, np_arange, np_interp_unit_grid};
use super::common::{np_linspace, np_round, scale};
use super::config::{
    beta_params, cfg_value, parse_prediction_type, parse_spacing, require_false, BetaSchedule,
    PredictionType, SchedulerConfig, SchedulerConfigError, TimestepSpacing,
};
use super::dpmpp_2m::{alpha_sigma, lambda};
use super::sigmas::{
    final_sigma, respaced_sigmas, sigma_spacing, sigma_to_t, train_sigmas, FinalSigma, SigmaSpacing,
};
use super::{Scheduler, StepOutput};
use crate::sampling::noise::TorchRng;

const CLASS: &str = "UniPCMultistepScheduler";

/// UniPC (multistep predictor–corrector).
pub struct UniPcMultistepScheduler {
    prediction_type: PredictionType,
    predict_x0: bool,
    solver_order: usize,
    /// `solver_type == "bh2"` (else `bh1`).
    bh2: bool,
    lower_order_final: bool,
    disable_corrector: Vec<i64>,
    sigma_spacing: SigmaSpacing,
    timesteps: Vec<f64>,
    sigmas: Vec<f32>,
    /// The converted outputs of the last `solver_order` steps, oldest first.
    model_outputs: Vec<Option<Tensor>>,
    lower_order_nums: usize,
    /// The sample the last predictor started from (corrected), and its order.
    last_sample: Option<Tensor>,
    this_order: usize,
}

/// The coefficients UniP and UniC share: `h phi_1(h)`, `B(h)`, and the system `R rhos = b`.
struct BhCoefficients {
    h_phi_1: f32,
    b_h: f32,
    /// `R[i][k] = rks[k]^i`, `order` x `order`.
    r: Vec<Vec<f32>>,
    b: Vec<f32>,
}

/// `torch.pow(x, e)` for the small integer exponents UniPC uses (ATen's special cases).
fn pow_int(x: f32, e: usize) -> f32 {
    match e {
        0 => 1.0,
        1 => x,
        2 => x * x,
        3 => x * x * x,
        _ => x.powi(e as i32),
    }
}

/// `torch.linalg.solve(a, b)` in float32: LU with partial pivoting (LAPACK `sgetrf2` scales the
/// column below the pivot by its reciprocal), then the two triangular solves.
fn solve_f32(mut a: Vec<Vec<f32>>, mut b: Vec<f32>) -> Vec<f32> {
    let n = b.len();
    for col in 0..n {
        let mut pivot = col;
        for row in col + 1..n {
            if a[row][col].abs() > a[pivot][col].abs() {
                pivot = row;
            }
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        let (upper, lower) = a.split_at_mut(col + 1);
        let pivot_row = &upper[col];
        let p = pivot_row[col];
        if p != 0.0 {
            let inv = 1.0 / p;
            for row in lower.iter_mut() {
                row[col] *= inv;
            }
        }
        for row in lower.iter_mut() {
            let l = row[col];
            for (x, &u) in row.iter_mut().zip(pivot_row).skip(col + 1) {
                *x -= l * u;
            }
        }
    }
    for row in 0..n {
        for c in 0..row {
            let y = b[c];
            b[row] -= a[row][c] * y;
        }
    }
    for row in (0..n).rev() {
        for c in row + 1..n {
            let x = b[c];
            b[row] -= a[row][c] * x;
        }
        b[row] /= a[row][row];
    }
    b
}

/// `sum_k rhos[k] * d[k]` (`torch.einsum("k,bkc...->bc...", rhos, D1s)`).
fn weighted_sum(rhos: &[f32], d: &[Tensor]) -> candle_core::Result<Option<Tensor>> {
    let mut acc: Option<Tensor> = None;
    for (&rho, d) in rhos.iter().zip(d) {
        let term = scale(d, rho)?;
        acc = Some(match acc {
            Some(acc) => acc.add(&term)?,
            None => term,
        });
    }
    Ok(acc)
}

impl UniPcMultistepScheduler {
    /// `UniPCMultistepScheduler.from_config(config)` followed by `set_timesteps(num_inference_steps)`.
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
            false,
        )?;
        let bh2 = match cfg_value!(config, solver_type).as_deref() {
            // diffusers registers DPM-Solver's and DEIS's solver names as bh2.
            None | Some("bh2") | Some("midpoint") | Some("heun") | Some("logrho") => true,
            Some("bh1") => false,
            Some(other) => {
                return Err(SchedulerConfigError::UnsupportedValue {
                    class: CLASS,
                    key: "solver_type",
                    value: other.to_string(),
                    supported: "bh1, bh2",
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
        require_false(
            CLASS,
            "use_flow_sigmas",
            cfg_value!(config, use_flow_sigmas),
        )?;
        require_false(
            CLASS,
            "use_dynamic_shifting",
            cfg_value!(config, use_dynamic_shifting),
        )?;
        let spacing = parse_spacing(
            CLASS,
            cfg_value!(config, timestep_spacing),
            TimestepSpacing::Linspace,
        )?;
        let steps_offset = cfg_value!(config, steps_offset).unwrap_or(0);
        let sigma_spacing = sigma_spacing(CLASS, config)?;
        let final_sigma = final_sigma(CLASS, config)?;
        let t = betas.num_train_timesteps;
        let n = num_inference_steps;
        check_steps(CLASS, n, t)?;

        let mut alphas_cumprod = betas.alphas_cumprod();
        if betas.rescale_betas_zero_snr {
            if let Some(last) = alphas_cumprod.last_mut() {
                *last = 2f32.powi(-24);
            }
        }

        let spaced: Vec<i64> = match spacing {
            // np.linspace(0, T - 1, N + 1).round()[::-1][:-1]
            TimestepSpacing::Linspace => {
                let mut v: Vec<i64> = np_linspace(0.0, t as f64 - 1.0, n + 1, true)
                    .into_iter()
                    .rev()
                    .map(|x| np_round(x) as i64)
                    .collect();
                v.pop();
                v
            }
            // (np.arange(0, N + 1) * (T // (N + 1))).round()[::-1][:-1] + steps_offset
            TimestepSpacing::Leading => {
                let ratio = (t / (n + 1)) as i64;
                let mut v: Vec<i64> = (0..=n as i64).rev().map(|i| i * ratio).collect();
                v.pop();
                v.into_iter().map(|x| x + steps_offset).collect()
            }
            // np.arange(T, 0, -T / N).round() - 1
            TimestepSpacing::Trailing => np_arange(t as f64, 0.0, -(t as f64 / n as f64))
                .into_iter()
                .map(|x| np_round(x) as i64 - 1)
                .collect(),
        };

        let train = train_sigmas(&alphas_cumprod);
        let train_f64: Vec<f64> = train.iter().map(|&s| s as f64).collect();
        let log_sigmas: Vec<f32> = train.iter().map(|s| s.ln()).collect();
        let (mut sigmas, timesteps): (Vec<f32>, Vec<i64>) = match sigma_spacing {
            SigmaSpacing::Interpolated => {
                let sigmas = spaced
                    .iter()
                    .map(|&ts| np_interp_unit_grid(ts as f64, &train_f64) as f32)
                    .collect();
                (sigmas, spaced)
            }
            other => {
                // Between the ends of the full training schedule (largest first), or the
                // config's sigma_min / sigma_max.
                let flipped: Vec<f64> = train_f64.iter().rev().copied().collect();
                let sigmas = respaced_sigmas(
                    other,
                    &flipped,
                    (cfg_value!(config, sigma_min), cfg_value!(config, sigma_max)),
                    n,
                );
                let timesteps = sigmas
                    .iter()
                    .map(|&s| {
                        let ts = sigma_to_t(s, &log_sigmas);
                        // Karras: `.round()`; then the int64 cast, which truncates.
                        (if other == SigmaSpacing::Karras {
                            np_round(ts)
                        } else {
                            ts
                        }) as i64
                    })
                    .collect();
                (sigmas.into_iter().map(|s| s as f32).collect(), timesteps)
            }
        };
        let last = match (final_sigma, sigma_spacing) {
            (FinalSigma::Zero, _) => 0.0,
            // The respaced schedules end on their own last sigma ...
            (
                FinalSigma::SigmaMin,
                SigmaSpacing::Karras | SigmaSpacing::Exponential | SigmaSpacing::Beta,
            ) => sigmas.last().copied().unwrap_or(0.0),
            // ... the interpolated one on the first training sigma.
            (FinalSigma::SigmaMin, SigmaSpacing::Interpolated) => {
                final_sigma.value(&alphas_cumprod)
            }
        };
        sigmas.push(last);

        Ok(Self {
            prediction_type,
            predict_x0: cfg_value!(config, predict_x0).unwrap_or(true),
            solver_order: solver_order as usize,
            bh2,
            lower_order_final: cfg_value!(config, lower_order_final).unwrap_or(true),
            disable_corrector: cfg_value!(config, disable_corrector).unwrap_or_default(),
            sigma_spacing,
            timesteps: timesteps.iter().map(|&v| v as f64).collect(),
            sigmas,
            model_outputs: vec![None; solver_order as usize],
            lower_order_nums: 0,
            last_sample: None,
            this_order: 0,
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
            candle_core::Error::Msg(format!("UniPC sigma index {index} out of range"))
        })
    }

    fn lambda_at(&self, index: usize) -> candle_core::Result<f32> {
        let (alpha, sigma) = alpha_sigma(self.sigma(index)?);
        Ok(lambda(alpha, sigma))
    }

    /// The model output `j` steps back (1 = the newest).
    fn history(&self, j: usize) -> candle_core::Result<&Tensor> {
        let n = self.model_outputs.len();
        n.checked_sub(j)
            .and_then(|i| self.model_outputs[i].as_ref())
            .ok_or_else(|| candle_core::Error::Msg("missing UniPC history".into()))
    }

    /// `convert_model_output`: x0 (or epsilon with `predict_x0 = false`) at `sigmas[index]`.
    fn convert_model_output(
        &self,
        model_output: &Tensor,
        sample: &Tensor,
        index: usize,
    ) -> candle_core::Result<Tensor> {
        let (alpha_t, sigma_t) = alpha_sigma(self.sigma(index)?);
        match (self.predict_x0, self.prediction_type) {
            (true, PredictionType::Epsilon) => {
                div_scalar(&sample.sub(&scale(model_output, sigma_t)?)?, alpha_t)
            }
            (true, PredictionType::Sample) => Ok(model_output.clone()),
            (true, PredictionType::VPrediction) => {
                scale(sample, alpha_t)?.sub(&scale(model_output, sigma_t)?)
            }
            (false, PredictionType::Epsilon) => Ok(model_output.clone()),
            (false, PredictionType::Sample) => {
                div_scalar(&sample.sub(&scale(model_output, alpha_t)?)?, sigma_t)
            }
            (false, PredictionType::VPrediction) => {
                scale(model_output, alpha_t)?.add(&scale(sample, sigma_t)?)
            }
        }
    }

    /// The coefficient set for step size `h` and ratios `rks` (the last one 1).
    fn coefficients(&self, h: f32, rks: &[f32]) -> BhCoefficients {
        let order = rks.len();
        let hh = if self.predict_x0 { -h } else { h };
        let h_phi_1 = hh.exp_m1();
        let mut h_phi_k = h_phi_1 / hh - 1.0;
        let mut factorial_i: u64 = 1;
        let b_h = if self.bh2 { hh.exp_m1() } else { hh };
        let mut r = Vec::with_capacity(order);
        let mut b = Vec::with_capacity(order);
        for i in 1..=order {
            r.push(rks.iter().map(|&rk| pow_int(rk, i - 1)).collect());
            b.push(h_phi_k * factorial_i as f32 / b_h);
            factorial_i *= i as u64 + 1;
            h_phi_k = h_phi_k / hh - (1.0 / factorial_i as f64) as f32;
        }
        BhCoefficients { h_phi_1, b_h, r, b }
    }

    /// `x_t_`: the first-order part of both updates, from `x` at `s0` to `t`.
    fn first_order_part(
        &self,
        x: &Tensor,
        m0: &Tensor,
        (alpha_t, sigma_t): (f32, f32),
        (alpha_s0, sigma_s0): (f32, f32),
        h_phi_1: f32,
    ) -> candle_core::Result<Tensor> {
        if self.predict_x0 {
            scale(x, sigma_t / sigma_s0)?.sub(&scale(m0, alpha_t * h_phi_1)?)
        } else {
            scale(x, alpha_t / alpha_s0)?.sub(&scale(m0, sigma_t * h_phi_1)?)
        }
    }

    /// The factor of the higher-order terms: `alpha_t B(h)` (x0) or `sigma_t B(h)`.
    fn correction_factor(&self, (alpha_t, sigma_t): (f32, f32), b_h: f32) -> f32 {
        if self.predict_x0 {
            alpha_t * b_h
        } else {
            sigma_t * b_h
        }
    }

    /// `multistep_uni_p_bh_update`: predicts the sample at `sigmas[k + 1]` from `sample` at
    /// `sigmas[k]` and the stored outputs (the newest is this step's).
    fn predict(&self, sample: &Tensor, k: usize, order: usize) -> candle_core::Result<Tensor> {
        let m0 = self.history(1)?;
        let at_t = alpha_sigma(self.sigma(k + 1)?);
        let at_s0 = alpha_sigma(self.sigma(k)?);
        let lambda_t = lambda(at_t.0, at_t.1);
        let lambda_s0 = lambda(at_s0.0, at_s0.1);
        let h = lambda_t - lambda_s0;
        let mut rks = Vec::with_capacity(order);
        let mut d1s = Vec::with_capacity(order);
        for i in 1..order {
            let si = k.checked_sub(i).ok_or_else(|| {
                candle_core::Error::Msg("UniPC predictor order exceeds its history".into())
            })?;
            let rk = (self.lambda_at(si)? - lambda_s0) / h;
            rks.push(rk);
            d1s.push(div_scalar(&self.history(i + 1)?.sub(m0)?, rk)?);
        }
        rks.push(1.0);
        let c = self.coefficients(h, &rks);
        let x_t = self.first_order_part(sample, m0, at_t, at_s0, c.h_phi_1)?;
        if d1s.is_empty() {
            return Ok(x_t);
        }
        let rhos_p = if order == 2 {
            vec![0.5]
        } else {
            let r: Vec<Vec<f32>> = c.r[..order - 1]
                .iter()
                .map(|row| row[..order - 1].to_vec())
                .collect();
            solve_f32(r, c.b[..order - 1].to_vec())
        };
        match weighted_sum(&rhos_p, &d1s)? {
            Some(pred_res) => x_t.sub(&scale(&pred_res, self.correction_factor(at_t, c.b_h))?),
            None => Ok(x_t),
        }
    }

    /// `multistep_uni_c_bh_update`: corrects `this_sample` (predicted at `sigmas[k]` from
    /// `last_sample` at `sigmas[k - 1]`) with this step's converted output `model_t`.
    fn correct(
        &self,
        model_t: &Tensor,
        last_sample: &Tensor,
        k: usize,
        order: usize,
    ) -> candle_core::Result<Tensor> {
        let m0 = self.history(1)?;
        let s0 = k
            .checked_sub(1)
            .ok_or_else(|| candle_core::Error::Msg("UniPC corrector at the first step".into()))?;
        let at_t = alpha_sigma(self.sigma(k)?);
        let at_s0 = alpha_sigma(self.sigma(s0)?);
        let lambda_t = lambda(at_t.0, at_t.1);
        let lambda_s0 = lambda(at_s0.0, at_s0.1);
        let h = lambda_t - lambda_s0;
        let mut rks = Vec::with_capacity(order);
        let mut d1s = Vec::with_capacity(order);
        for i in 1..order {
            let si = k.checked_sub(i + 1).ok_or_else(|| {
                candle_core::Error::Msg("UniPC corrector order exceeds its history".into())
            })?;
            let rk = (self.lambda_at(si)? - lambda_s0) / h;
            rks.push(rk);
            d1s.push(div_scalar(&self.history(i + 1)?.sub(m0)?, rk)?);
        }
        rks.push(1.0);
        let c = self.coefficients(h, &rks);
        let rhos_c = if order == 1 {
            vec![0.5]
        } else {
            solve_f32(c.r.clone(), c.b.clone())
        };
        let x_t = self.first_order_part(last_sample, m0, at_t, at_s0, c.h_phi_1)?;
        let d1_t = model_t.sub(m0)?;
        let last_term = scale(&d1_t, rhos_c[rhos_c.len() - 1])?;
        let total = match weighted_sum(&rhos_c[..rhos_c.len() - 1], &d1s)? {
            Some(corr_res) => corr_res.add(&last_term)?,
            None => last_term,
        };
        x_t.sub(&scale(&total, self.correction_factor(at_t, c.b_h))?)
    }
}

impl Scheduler for UniPcMultistepScheduler {
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
        let k = common::checked_index(step_index, len)?;
        let dtype = model_output.dtype();
        let model_output = common::f32(model_output)?;
        let sample = common::f32(sample)?;

        let use_corrector = k > 0 && !self.disable_corrector.contains(&(k as i64 - 1));
        let converted = self.convert_model_output(&model_output, &sample, k)?;
        let sample = match (&self.last_sample, use_corrector) {
            (Some(last), true) => self.correct(&converted, last, k, self.this_order)?,
            _ => sample,
        };

        self.model_outputs.rotate_left(1);
        if let Some(newest) = self.model_outputs.last_mut() {
            *newest = Some(converted.clone());
        }
        let order = if self.lower_order_final {
            self.solver_order.min(len - k)
        } else {
            self.solver_order
        };
        self.this_order = order.min(self.lower_order_nums + 1);
        let prev_sample = self.predict(&sample, k, self.this_order)?;
        self.last_sample = Some(sample);
        if self.lower_order_nums < self.solver_order {
            self.lower_order_nums += 1;
        }
        // diffusers' UniPC returns no x0; the converted output is one when predicting x0.
        let preview = if self.predict_x0 {
            Some(converted.to_dtype(dtype)?)
        } else {
            None
        };
        Ok(StepOutput {
            prev_sample: prev_sample.to_dtype(dtype)?,
            pred_original_sample: preview,
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
    //! Reference values: `tests/fixtures/scheduler_cases_more.json` and, for the beta sigmas,
    //! `scheduler_cases_extra.json` (see `schedulers::testing`).

    super::super::testing::reference_cases!("unipc":
        class_defaults,
        sd_linspace,
        karras,
        karras_sigma_min_final,
        exponential,
        bh1_order_3,
        order_3_no_lower_order_final,
        order_1,
        noise_prediction,
        v_prediction_leading,
        sample_prediction_trailing,
        disable_corrector,
        zero_snr_trailing,
        img2img,
        beta_sigma_min_final,
    );

    #[test]
    fn solve_matches_a_known_system() {
        // [[2, 1], [4, 3]] x = [3, 7] -> x = [1, 1] (pivots on the 4).
        let x = super::solve_f32(vec![vec![2.0, 1.0], vec![4.0, 3.0]], vec![3.0, 7.0]);
        assert_eq!(x, vec![1.0, 1.0]);
    }
}
