//! `LMSDiscreteScheduler` (A1111 "LMS", and "LMS Karras" with `use_karras_sigmas`): a linear
//! multistep method of order up to 4 on the probability-flow ODE in sigma space (k-diffusion's
//! `sample_lms`). Mirrors diffusers 0.42.1 `scheduling_lms_discrete.py`.
//!
//! Each step keeps the ODE derivative `(x - x0) / sigma` and moves by `sum_j c_j d_(i-j)`, where
//! `c_j` is the integral from `sigma_i` to `sigma_(i+1)` of the Lagrange basis polynomial of node
//! `sigma_(i-j)` over the last `order` sigmas. diffusers integrates it with
//! `scipy.integrate.quad(lms_derivative, sigmas[t], sigmas[t + 1], epsrel=1e-4)`, and the numbers
//! depend on how:
//!
//! * `quad` integrates over `[min, max]` and negates the result when the bounds were given in
//!   decreasing order (they always are here).
//! * QUADPACK's `dqagse` starts with one 21-point Gauss–Kronrod rule (`dqk21`) over the whole
//!   interval and stops when its error estimate is within `max(epsabs = 1.49e-8, epsrel *
//!   |result|)`. The integrand is a polynomial of degree <= 3, which the rule integrates exactly
//!   up to rounding, so it stops there: [`quad_qk21`] is that rule, operation by operation. A
//!   Python transcription of it (with QUADPACK's error estimate) reproduced
//!   `scipy.integrate.quad` (scipy 1.17.1) bit for bit on all 2280 coefficients of diffusers'
//!   LMS runs of 1 to 100 steps on three beta schedules (Karras included), every one accepted
//!   after that first rule. Were the estimate ever too large, scipy would go on bisecting; we
//!   keep the first result (then within scipy's own tolerance, 1e-4 relative).
//! * The integrand is evaluated in torch float32: `tau` (a Python float) is rounded to float32
//!   before each subtraction from the 0-dim float32 sigmas, and the product is float32. `quad`
//!   gets that float32 value as a double.
//! * `coeff * derivative` multiplies by the coefficient rounded to float32 (torch casts a
//!   Python scalar to the tensor's dtype), and the products are summed from the newest
//!   derivative on.
//!
//! The order is `min(step_index + 1, 4)` with the absolute step index: an img2img run that
//! starts at index 5 computes four coefficients at its first step and uses the first of them
//! (with only one derivative stored, diffusers' `zip` stops there), as diffusers does.

use candle_core::Tensor;

use super::common::{self, check_steps, div_scalar, scale};
use super::config::{
    beta_params, cfg_value, parse_prediction_type, parse_spacing, BetaSchedule, PredictionType,
    SchedulerConfig, SchedulerConfigError, TimestepSpacing,
};
use super::euler::{euler_schedule, EulerScheduleParams};
use super::sigmas::{
    add_noise_sigma, euler_init_noise_sigma, scale_by_sigma, sigma_spacing, x0_from_v, FinalSigma,
    SigmaSpacing,
};
use super::{Scheduler, StepOutput};
use crate::sampling::noise::TorchRng;

const CLASS: &str = "LMSDiscreteScheduler";

/// The default (and largest) order of `step`.
const MAX_ORDER: usize = 4;

/// Linear multistep sampler.
pub struct LmsDiscreteScheduler {
    prediction_type: PredictionType,
    sigma_spacing: SigmaSpacing,
    timesteps: Vec<f64>,
    sigmas: Vec<f32>,
    init_noise_sigma: f64,
    /// The last (up to) four derivatives, oldest first.
    derivatives: Vec<Tensor>,
}

impl LmsDiscreteScheduler {
    /// `LMSDiscreteScheduler.from_config(config)` followed by `set_timesteps(num_inference_steps)`.
    pub fn new(
        config: &SchedulerConfig,
        num_inference_steps: usize,
    ) -> Result<Self, SchedulerConfigError> {
        // No zero-SNR rescaling in this class.
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
        let sigma_spacing = sigma_spacing(CLASS, config)?;
        // `_convert_to_karras` of this class always spans the interpolated sigmas;
        // `_convert_to_exponential` takes `sigma_min` / `sigma_max` from the config when it has
        // them (not __init__ arguments, but `from_config` keeps them).
        let sigma_bounds = match sigma_spacing {
            SigmaSpacing::Karras => (None, None),
            _ => (cfg_value!(config, sigma_min), cfg_value!(config, sigma_max)),
        };
        let params = EulerScheduleParams {
            spacing: parse_spacing(
                CLASS,
                cfg_value!(config, timestep_spacing),
                TimestepSpacing::Linspace,
            )?,
            steps_offset: cfg_value!(config, steps_offset).unwrap_or(0),
            sigma_spacing,
            sigma_bounds,
            final_sigma: FinalSigma::Zero,
        };
        check_steps(CLASS, num_inference_steps, betas.num_train_timesteps)?;

        let alphas_cumprod = betas.alphas_cumprod();
        let schedule = euler_schedule(&betas, &alphas_cumprod, &params, num_inference_steps, None);
        Ok(Self {
            prediction_type,
            sigma_spacing,
            init_noise_sigma: euler_init_noise_sigma(&schedule.sigmas, params.spacing),
            timesteps: schedule.timesteps.iter().map(|&t| t as f64).collect(),
            sigmas: schedule.sigmas,
            derivatives: Vec::with_capacity(MAX_ORDER + 1),
        })
    }

    /// The sigmas of the schedule (one more than the timesteps; the last is 0).
    pub fn sigmas(&self) -> &[f32] {
        &self.sigmas
    }

    /// Whether the sigmas follow the Karras schedule.
    pub fn uses_karras_sigmas(&self) -> bool {
        self.sigma_spacing == SigmaSpacing::Karras
    }

    /// `get_lms_coefficient(order, t, current_order)`.
    fn lms_coefficient(&self, order: usize, t: usize, current_order: usize) -> f64 {
        let sigmas = &self.sigmas;
        let basis = |tau: f64| -> f64 {
            let tau = tau as f32;
            let mut prod = 1.0f32;
            for k in (0..order).filter(|&k| k != current_order) {
                prod *= (tau - sigmas[t - k]) / (sigmas[t - current_order] - sigmas[t - k]);
            }
            prod as f64
        };
        quad(basis, sigmas[t] as f64, sigmas[t + 1] as f64)
    }
}

/// `scipy.integrate.quad(f, a, b)` (`epsabs = 1.49e-8`) for integrands that the first
/// Gauss–Kronrod rule of `dqagse` integrates to within its tolerance (see the module docs).
fn quad(f: impl Fn(f64) -> f64, a: f64, b: f64) -> f64 {
    if a == b {
        return 0.0;
    }
    let flip = b < a;
    let integral = quad_qk21(f, a.min(b), a.max(b));
    if flip {
        -integral
    } else {
        integral
    }
}

/// QUADPACK's `dqk21`: the 21-point Kronrod rule over `[a, b]`, summed in QUADPACK's order
/// (the Gauss nodes' pairs first, then the Kronrod-only ones), as scipy runs it.
// The constants as QUADPACK publishes them (they round to the same doubles scipy uses).
#[allow(clippy::excessive_precision)]
fn quad_qk21(f: impl Fn(f64) -> f64, a: f64, b: f64) -> f64 {
    // Nodes (xgk) and weights (wgk) of the 21-point Kronrod rule; xgk[1], xgk[3], ... are the
    // 10-point Gauss nodes. The 10-point Gauss weights only enter QUADPACK's error estimate.
    const XGK: [f64; 11] = [
        0.995_657_163_025_808_080_735_527_280_689,
        0.973_906_528_517_171_720_077_964_012_084,
        0.930_157_491_355_708_226_001_207_180_060,
        0.865_063_366_688_984_510_732_096_688_423,
        0.780_817_726_586_416_897_063_717_578_345,
        0.679_409_568_299_024_406_234_327_365_115,
        0.562_757_134_668_604_683_339_000_099_273,
        0.433_395_394_129_247_190_799_265_943_166,
        0.294_392_862_701_460_198_131_126_603_104,
        0.148_874_338_981_631_210_884_826_001_130,
        0.0,
    ];
    const WGK: [f64; 11] = [
        0.011_694_638_867_371_874_278_064_396_062,
        0.032_558_162_307_964_727_478_818_972_459,
        0.054_755_896_574_351_996_031_381_300_245,
        0.075_039_674_810_919_952_767_043_140_916,
        0.093_125_454_583_697_605_535_065_465_083,
        0.109_387_158_802_297_641_899_210_590_326,
        0.123_491_976_262_065_851_077_958_109_831,
        0.134_709_217_311_473_325_928_054_001_772,
        0.142_775_938_577_060_080_797_094_273_139,
        0.147_739_104_901_338_491_374_841_515_972,
        0.149_445_554_002_916_905_664_936_468_390,
    ];
    let centr = 0.5 * (a + b);
    let hlgth = 0.5 * (b - a);
    let mut resk = WGK[10] * f(centr);
    for jtw in [1, 3, 5, 7, 9, 0, 2, 4, 6, 8] {
        let absc = hlgth * XGK[jtw];
        let fsum = f(centr - absc) + f(centr + absc);
        resk += WGK[jtw] * fsum;
    }
    resk * hlgth
}

impl Scheduler for LmsDiscreteScheduler {
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

        let pred_original_sample = match self.prediction_type {
            PredictionType::Epsilon => sample.sub(&scale(&model_output, sigma)?)?,
            PredictionType::VPrediction => x0_from_v(&model_output, &sample, sigma)?,
            PredictionType::Sample => model_output.clone(),
        };
        let derivative = div_scalar(&sample.sub(&pred_original_sample)?, sigma)?;
        self.derivatives.push(derivative);
        if self.derivatives.len() > MAX_ORDER {
            self.derivatives.remove(0);
        }

        let order = (i + 1).min(MAX_ORDER);
        // `sum(coeff * d for coeff, d in zip(coeffs, reversed(derivatives)))`: Python's sum
        // starts from 0, which adds nothing.
        let mut update: Option<Tensor> = None;
        for (current_order, d) in self.derivatives.iter().rev().enumerate().take(order) {
            let coeff = self.lms_coefficient(order, i, current_order) as f32;
            let term = scale(d, coeff)?;
            update = Some(match update {
                Some(acc) => acc.add(&term)?,
                None => term,
            });
        }
        let prev_sample = match update {
            Some(update) => sample.add(&update)?,
            None => sample.clone(),
        };
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
    //! Reference values: `tests/fixtures/scheduler_cases_more.json` and, for the beta sigmas,
    //! `scheduler_cases_extra.json` (see `schedulers::testing`).

    super::super::testing::reference_cases!("lms":
        class_defaults,
        sd_linspace,
        sd_karras,
        karras_leading_offset,
        exponential_config_bounds,
        v_prediction_trailing,
        sample_prediction,
        two_steps,
        img2img,
        karras_img2img,
        beta_sigmas,
    );

    /// The 21-point rule integrates cubics exactly (up to rounding), in both directions.
    #[test]
    fn quad_integrates_cubics() {
        let f = |x: f64| 4.0 * x * x * x - 3.0 * x * x + 1.0;
        // The antiderivative x^4 - x^3 + x from 0.5 to 2.5: 25.9375 - 0.4375.
        let want = 25.5;
        assert!((super::quad(f, 0.5, 2.5) - want).abs() < 1e-12);
        assert!((super::quad(f, 2.5, 0.5) + want).abs() < 1e-12);
        assert_eq!(super::quad(f, 1.0, 1.0), 0.0);
    }
}
