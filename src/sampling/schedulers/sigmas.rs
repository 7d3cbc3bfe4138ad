//! The sigma (noise level) helpers the Euler, Euler-ancestral and DPM-Solver++ schedulers share,
//! in the notation of Karras et al., "Elucidating the Design Space of Diffusion-Based Generative
//! Models" (2022), as diffusers 0.42.1 implements them.
//!
//! The UNets are trained as discrete variance-preserving (VP) models: `x_t = sqrt(a_t) x0 +
//! sqrt(1 - a_t) eps` with `a_t = alphas_cumprod[t]`. Divided by `sqrt(a_t)`, this is the form in
//! which the paper adds noise (eq. 2: `D(y + n; sigma)`, `n ~ N(0, sigma^2 I)`; scale `s = 1`),
//! `x = x0 + sigma * eps`, with the discrete version of Table 1's VP `sigma(t)`:
//!
//! ```text
//! sigma(t) = sqrt((1 - a_t) / a_t)
//! ```
//!
//! The samplers run in that form:
//!
//! * [`train_sigmas`]: `sigma(t)` at every training timestep.
//! * [`sigma_to_t`]: `sigma^-1`, the UNet's (fractional) timestep for a sigma (Table 1, VP
//!   `c_noise`), interpolated in log sigma.
//! * [`karras_sigmas`]: eq. 5, `sigma_i = (sigma_max^(1/rho) + i / (N - 1) * (sigma_min^(1/rho) -
//!   sigma_max^(1/rho)))^rho` for `i < N`, rho = 7.
//! * [`exponential_sigmas`]: not in the paper; evenly spaced in `log sigma` (k-diffusion's
//!   `get_sigmas_exponential`).
//! * [`beta_sigmas`]: not in the paper either; Lee et al., "Beta Sampling is All You Need" (2024):
//!   `1 - i / (N - 1)` through the inverse CDF of the Beta(0.6, 0.6) distribution ([`beta_ppf`]),
//!   which crowds the steps at both ends of `[sigma_min, sigma_max]`.
//! * [`FinalSigma`]: `sigma_N`, 0 as in eq. 5, or diffusers' `sigma_min` option.
//! * [`euler_init_noise_sigma`]: Algorithm 2, line 1: `x_0 ~ N(0, sigma_max^2 I)` (diffusers uses
//!   `sqrt(sigma_max^2 + 1)` for `leading` spacing).
//! * [`scale_by_sigma`]: Table 1, VP: `c_in = 1 / sqrt(sigma^2 + 1)`. With `c_skip = 1` and
//!   `c_out = -sigma` the epsilon model gives the denoiser `D(x) = x - sigma * F(c_in x)` (eq. 7),
//!   written out in the schedulers' `step`s.
//! * [`x0_from_v`]: eq. 7 for a v-prediction model, with Table 1's EDM coefficients at
//!   `sigma_data = 1`: `c_skip = 1 / (sigma^2 + 1)`, `c_out = -sigma / sqrt(sigma^2 + 1)` (the sign
//!   is v's).
//! * [`add_noise_sigma`]: `x = x0 + sigma * n`, img2img's starting point.
//!
//! A schedule takes the training sigmas at the spaced timesteps (Euler's spacing is
//! [`euler_timesteps`]) by `np.interp`, or, with [`SigmaSpacing::Karras`] /
//! [`SigmaSpacing::Exponential`] / [`SigmaSpacing::Beta`], a new set of sigmas between their ends ([`respaced_sigmas`])
//! whose timesteps come back through [`sigma_to_t`]; then [`FinalSigma`] is appended. Float32 and
//! float64 follow diffusers' torch and numpy arithmetic operation by operation (see `common.rs`).

use candle_core::Tensor;

use super::common::{self, div_scalar, np_arange, np_linspace, np_round, scale};
use super::config::{cfg_value, SchedulerConfig, SchedulerConfigError, TimestepSpacing};

// ---------------------------------------------------------------------------------------------
// the training schedule's noise levels
// ---------------------------------------------------------------------------------------------

/// `((1 - alphas_cumprod) / alphas_cumprod) ** 0.5` in float32: the Karras-style sigma of every
/// training timestep.
pub(crate) fn train_sigmas(alphas_cumprod: &[f32]) -> Vec<f32> {
    alphas_cumprod
        .iter()
        .map(|a| ((1.0 - a) / a).sqrt())
        .collect()
}

/// `_sigma_to_t(sigma, log_sigmas)`: the (fractional) training timestep whose sigma is `sigma`,
/// by linear interpolation in log-sigma. `log_sigmas` is the float32 `np.log(sigmas)` table.
pub(crate) fn sigma_to_t(sigma: f64, log_sigmas: &[f32]) -> f64 {
    let log_sigma = sigma.max(1e-10).ln();
    // `np.cumsum(dists >= 0).argmax()`: the last index whose log-sigma is <= log_sigma (0 when
    // there is none), clipped so that a right neighbour exists.
    let n = log_sigmas.len();
    let mut low_idx = 0usize;
    for (i, &ls) in log_sigmas.iter().enumerate() {
        if log_sigma - ls as f64 >= 0.0 {
            low_idx = i;
        }
    }
    low_idx = low_idx.min(n.saturating_sub(2));
    let high_idx = low_idx + 1;
    let low = log_sigmas[low_idx];
    let high = log_sigmas[high_idx];
    // `low - high` is a float32 subtraction; the rest is float64.
    let w = ((low as f64 - log_sigma) / (low - high) as f64).clamp(0.0, 1.0);
    (1.0 - w) * low_idx as f64 + w * high_idx as f64
}

// ---------------------------------------------------------------------------------------------
// inference sigmas and timesteps
// ---------------------------------------------------------------------------------------------

/// How the inference sigmas are laid out between the largest and smallest one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SigmaSpacing {
    /// The training sigmas at the spaced timesteps.
    Interpolated,
    /// `use_karras_sigmas`: rho = 7 spacing (Karras et al. eq. 5).
    Karras,
    /// `use_exponential_sigmas`: evenly spaced in log sigma.
    Exponential,
    /// `use_beta_sigmas`: Beta(0.6, 0.6) quantiles.
    Beta,
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
    Ok(if karras {
        SigmaSpacing::Karras
    } else if exponential {
        SigmaSpacing::Exponential
    } else if beta {
        SigmaSpacing::Beta
    } else {
        SigmaSpacing::Interpolated
    })
}

/// `_convert_to_karras`: the Karras et al. (2022) schedule with rho = 7 between `sigma_max` and
/// `sigma_min` (float64).
pub(crate) fn karras_sigmas(
    sigma_min: f64,
    sigma_max: f64,
    num_inference_steps: usize,
) -> Vec<f64> {
    const RHO: f64 = 7.0;
    let min_inv_rho = sigma_min.powf(1.0 / RHO);
    let max_inv_rho = sigma_max.powf(1.0 / RHO);
    np_linspace(0.0, 1.0, num_inference_steps, true)
        .into_iter()
        .map(|ramp| (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)).powf(RHO))
        .collect()
}

/// `_convert_to_exponential`: sigmas evenly spaced in log space (float64).
pub(crate) fn exponential_sigmas(
    sigma_min: f64,
    sigma_max: f64,
    num_inference_steps: usize,
) -> Vec<f64> {
    np_linspace(sigma_max.ln(), sigma_min.ln(), num_inference_steps, true)
        .into_iter()
        .map(f64::exp)
        .collect()
}

/// `_convert_to_beta`: `sigma_min + ppf * (sigma_max - sigma_min)` for the Beta(0.6, 0.6)
/// quantiles `ppf` of `1 - np.linspace(0, 1, N)` (float64; diffusers calls
/// `scipy.stats.beta.ppf`, here [`beta_ppf`]).
pub(crate) fn beta_sigmas(sigma_min: f64, sigma_max: f64, num_inference_steps: usize) -> Vec<f64> {
    np_linspace(0.0, 1.0, num_inference_steps, true)
        .into_iter()
        .map(|t| sigma_min + beta_ppf(1.0 - t) * (sigma_max - sigma_min))
        .collect()
}

/// `_convert_to_karras` / `_convert_to_exponential` / `_convert_to_beta` bounds: the config's `sigma_min` /
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
        SigmaSpacing::Beta => beta_sigmas(sigma_min, sigma_max, num_inference_steps),
        SigmaSpacing::Interpolated => in_sigmas.to_vec(),
    }
}

/// What diffusers' `set_timesteps(timesteps=...)` requires of custom timesteps: a plain sigma
/// schedule (it raises for Karras, exponential and beta sigmas) and, for the tables they index,
/// values inside the training timesteps.
pub(crate) fn check_custom_timesteps(
    class: &'static str,
    timesteps: &[i64],
    num_train_timesteps: usize,
    spacing: SigmaSpacing,
) -> Result<(), SchedulerConfigError> {
    if spacing != SigmaSpacing::Interpolated {
        return Err(SchedulerConfigError::IncompatibleOptions {
            class,
            reason: "custom timesteps cannot be used with Karras, exponential or beta sigmas"
                .into(),
        });
    }
    common::check_timesteps_in_range(class, timesteps.len(), timesteps, num_train_timesteps)
}

/// `final_sigmas_type`: what the sigma after the last step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FinalSigma {
    /// `zero`: the last step lands on the clean image.
    Zero,
    /// `sigma_min`: the last step lands on the smallest training sigma.
    SigmaMin,
}

/// `final_sigmas_type` resolved for `class` (`zero` when absent).
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

/// Euler's initial noise scale: the largest sigma, or `sqrt(sigma_max^2 + 1)` for `leading`
/// spacing (float32).
pub(crate) fn euler_init_noise_sigma(sigmas: &[f32], spacing: TimestepSpacing) -> f64 {
    let max_sigma = sigmas.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    match spacing {
        TimestepSpacing::Linspace | TimestepSpacing::Trailing => max_sigma as f64,
        TimestepSpacing::Leading => (max_sigma * max_sigma + 1.0).sqrt() as f64,
    }
}

// ---------------------------------------------------------------------------------------------
// the Beta(0.6, 0.6) distribution
// ---------------------------------------------------------------------------------------------

/// The shape parameters diffusers' `_convert_to_beta` uses (`alpha = beta = 0.6`, not configurable).
const BETA_SHAPE: f64 = 0.6;
/// `ln B(0.6, 0.6) = ln(Gamma(0.6)^2 / Gamma(1.2))` = 0.88184180614178559… (mpmath, 40 digits).
const LN_BETA_FN: f64 = 0.881_841_806_141_785_6;

/// `scipy.stats.beta.ppf(p, 0.6, 0.6)`: the quantile function of the symmetric Beta(0.6, 0.6)
/// distribution, to within a few float64 ulps (scipy's Boost `ibeta_inv` is not bit-reproduced;
/// both are within ~1e-15 relative of the exact value, far below the float32 rounding of the
/// sigmas built from it).
///
/// The symmetry `ppf(p) = 1 - ppf(1 - p)` keeps the root finding on `[0, 1/2]`, where the
/// regularized incomplete beta function's continued fraction converges fast and `1 - p` is
/// exact (Sterbenz).
pub(crate) fn beta_ppf(p: f64) -> f64 {
    if p.is_nan() {
        return f64::NAN;
    }
    if p <= 0.0 {
        return 0.0;
    }
    if p >= 1.0 {
        return 1.0;
    }
    if p > 0.5 {
        return 1.0 - beta_ppf_lower(1.0 - p);
    }
    beta_ppf_lower(p)
}

/// The root `x` in `(0, 1/2]` of `I_x(0.6, 0.6) = q` for `q` in `(0, 1/2]`, by Newton's method
/// from `x0 = (q a B)^(1/a)` (the small-`x` form of `I_x`). `I_x` is concave there (the density
/// falls until 1/2), so iterates left of the root climb to it monotonically; one that lands
/// outside `(0, 1/2]` is pulled back halfway.
fn beta_ppf_lower(q: f64) -> f64 {
    let a = BETA_SHAPE;
    let mut x = (q * a * LN_BETA_FN.exp()).powf(1.0 / a).min(0.5);
    for _ in 0..100 {
        let density = ((a - 1.0) * x.ln() + (a - 1.0) * (-x).ln_1p() - LN_BETA_FN).exp();
        let mut next = x - (regularized_incomplete_beta(x) - q) / density;
        if next <= 0.0 {
            next = x / 2.0;
        } else if next > 0.5 {
            next = (x + 0.5) / 2.0;
        }
        let done = (next - x).abs() <= f64::EPSILON * next;
        x = next;
        if done {
            break;
        }
    }
    x
}

/// `I_x(0.6, 0.6)` for `x` in `(0, 1/2]`: `x^a (1 - x)^a / (a B(a, a))` times the continued
/// fraction of Numerical Recipes' `betacf` (modified Lentz), which converges for
/// `x < (a + 1) / (2a + 2) = 1/2` and at it.
fn regularized_incomplete_beta(x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let (a, b) = (BETA_SHAPE, BETA_SHAPE);
    let front = (a * x.ln() + b * (-x).ln_1p() - LN_BETA_FN).exp() / a;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let guard = |v: f64| if v.abs() < TINY { TINY } else { v };
    let mut c = 1.0;
    let mut d = 1.0 / guard(1.0 - qab * x / qap);
    let mut h = d;
    for m in 1..=300 {
        let m = m as f64;
        let m2 = 2.0 * m;
        // The even step of the fraction ...
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 / guard(1.0 + aa * d);
        c = guard(1.0 + aa / c);
        h *= d * c;
        // ... and the odd one.
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 / guard(1.0 + aa * d);
        c = guard(1.0 + aa / c);
        let delta = d * c;
        h *= delta;
        if (delta - 1.0).abs() <= f64::EPSILON {
            break;
        }
    }
    front * h
}

// ---------------------------------------------------------------------------------------------
// the denoiser in sigma form
// ---------------------------------------------------------------------------------------------

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
    use super::beta_ppf;
    use crate::networks::Family;
    use crate::sampling::schedulers::testing::{beta_ppf_reference, schedules_named};
    use crate::sampling::schedulers::{
        build_scheduler, sigma_schedule, SchedulerConfig, SchedulerKind,
    };

    /// Our quantiles against scipy's at the probabilities diffusers asks for and in both tails.
    /// Both are within ~1e-15 relative of the exact value; they need not agree bit for bit.
    #[test]
    fn beta_ppf_matches_scipy() {
        let reference = beta_ppf_reference();
        assert_eq!((reference.a, reference.b), (0.6, 0.6));
        assert!(reference.p.len() > 50);
        let mut worst = 0.0f64;
        for (&p, &want) in reference.p.iter().zip(&reference.x) {
            let got = beta_ppf(p);
            let err = if want == 0.0 {
                got.abs()
            } else {
                ((got - want) / want).abs()
            };
            worst = worst.max(err);
            assert!(err <= 4e-15, "ppf({p}) = {got:e}, scipy {want:e}");
        }
        eprintln!("beta ppf: worst relative difference from scipy {worst:.2e}");
        assert_eq!(beta_ppf(0.0), 0.0);
        assert_eq!(beta_ppf(1.0), 1.0);
        // Symmetric about 1/2.
        for p in [1e-9, 0.01, 0.3] {
            assert!((beta_ppf(p) + beta_ppf(1.0 - p) - 1.0).abs() <= 2e-16);
        }
    }

    /// Euler's beta schedule at many step counts: the float32 sigmas (each a float64 quantile
    /// rounded to float32) equal diffusers' exactly, the timesteps to float32 rounding.
    #[test]
    fn beta_schedules_match_diffusers_exactly() {
        let schedules = schedules_named("sigmas.beta_");
        assert!(schedules.len() >= 10);
        for reference in schedules {
            let config =
                SchedulerConfig::from_json_str(&reference.config.to_string()).expect("config");
            let n = reference.steps;
            let sigmas =
                sigma_schedule(SchedulerKind::Default, &config, n, Family::StableDiffusion)
                    .expect("builds")
                    .expect("sigmas");
            let want: Vec<f32> = reference.sigmas.iter().map(|&s| s as f32).collect();
            assert_eq!(sigmas, want, "{n} steps");
            let scheduler =
                build_scheduler(SchedulerKind::Default, &config, n, Family::StableDiffusion)
                    .expect("builds");
            for (got, want) in scheduler.timesteps().iter().zip(&reference.timesteps) {
                assert!(
                    (got - want).abs() <= 1e-6 * want.abs(),
                    "{n} steps: {got} vs {want}"
                );
            }
        }
    }
}
