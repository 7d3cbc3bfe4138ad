//! Numerics shared by the schedulers.
//!
//! diffusers builds its schedules with a mix of torch float32 tensors and numpy float64
//! arrays, and the exact rounding of every intermediate decides whether a timestep lands on
//! 980 or 981. The helpers here reproduce those library routines operation by operation:
//! `torch.linspace`, `torch.cumprod`, `np.linspace`, `np.arange`, `np.round`, `np.interp`,
//! plus the scheduler-level helpers diffusers copies between its classes (beta schedules,
//! `rescale_zero_terminal_snr`, ...). The sigma helpers (`_sigma_to_t`, `_convert_to_karras`,
//! `_convert_to_exponential`, ...) are in `sigmas.rs`.

use candle_core::{DType, Tensor};

use super::config::{BetaSchedule, SchedulerConfigError};

// ---------------------------------------------------------------------------------------------
// torch emulation
// ---------------------------------------------------------------------------------------------

/// `torch.linspace(start, end, steps, dtype=torch.float32)` on the CPU.
///
/// ATen computes a float32 step and fills the first half forwards from `start` and the second
/// half backwards from `end`; its x86 kernels are compiled with FMA contraction, so each value
/// is a single fused multiply-add.
pub(crate) fn torch_linspace_f32(start: f64, end: f64, steps: usize) -> Vec<f32> {
    match steps {
        0 => Vec::new(),
        1 => vec![start as f32],
        _ => {
            let start = start as f32;
            let end = end as f32;
            let step = (end - start) / (steps - 1) as f32;
            let halfway = steps / 2;
            (0..steps)
                .map(|i| {
                    if i < halfway {
                        step.mul_add(i as f32, start)
                    } else {
                        (-step).mul_add((steps - i - 1) as f32, end)
                    }
                })
                .collect()
        }
    }
}

/// `torch.cumprod` of a float32 tensor on the CPU: the running product is kept in float64
/// (ATen's CPU accumulation type for float) and each prefix is stored as float32.
pub(crate) fn torch_cumprod_f32(values: &[f32]) -> Vec<f32> {
    let mut acc = 1.0f64;
    values
        .iter()
        .map(|&v| {
            acc *= v as f64;
            acc as f32
        })
        .collect()
}

/// Python-style indexing of a per-train-timestep table (`alphas_cumprod[t]` with a tensor
/// index): negative values count from the end, as torch does.
pub(crate) fn index_wrapped(len: usize, t: i64) -> Option<usize> {
    let len_i = len as i64;
    if t >= len_i || t < -len_i {
        None
    } else if t < 0 {
        Some((t + len_i) as usize)
    } else {
        Some(t as usize)
    }
}

/// `alphas_cumprod[t]` for a timestep value, failing like torch's IndexError when out of range.
pub(crate) fn alpha_at(alphas_cumprod: &[f32], t: i64) -> candle_core::Result<f32> {
    index_wrapped(alphas_cumprod.len(), t)
        .map(|i| alphas_cumprod[i])
        .ok_or_else(|| {
            candle_core::Error::Msg(format!(
                "timestep {t} is outside the {} training timesteps",
                alphas_cumprod.len()
            ))
        })
}

// ---------------------------------------------------------------------------------------------
// numpy emulation
// ---------------------------------------------------------------------------------------------

/// `np.linspace(start, stop, num, endpoint=endpoint)` in float64: `i * step + start`, with the
/// last value replaced by `stop` when the endpoint is included.
pub(crate) fn np_linspace(start: f64, stop: f64, num: usize, endpoint: bool) -> Vec<f64> {
    let div = if endpoint { num.saturating_sub(1) } else { num };
    let delta = stop - start;
    let mut y: Vec<f64> = (0..num).map(|i| i as f64).collect();
    if div > 0 {
        let step = delta / div as f64;
        if step == 0.0 {
            for v in y.iter_mut() {
                *v = *v / div as f64 * delta;
            }
        } else {
            for v in y.iter_mut() {
                *v *= step;
            }
        }
    } else {
        for v in y.iter_mut() {
            *v *= delta;
        }
    }
    for v in y.iter_mut() {
        *v += start;
    }
    if endpoint && num > 1 {
        y[num - 1] = stop;
    }
    y
}

/// `np.arange(start, stop, step)` for float64 arguments.
///
/// numpy sizes the result as `ceil((stop - start) / step)`, stores `start` and `start + step`,
/// then fills the rest as `start + i * delta` with `delta = (start + step) - start`. The size
/// can exceed the "intended" count by one (e.g. `np.arange(1000, 0, -1000 / 61)` has 62
/// entries), and diffusers' trailing spacing inherits that.
pub(crate) fn np_arange(start: f64, stop: f64, step: f64) -> Vec<f64> {
    let len = ((stop - start) / step).ceil();
    if len.is_nan() || len <= 0.0 {
        return Vec::new();
    }
    let len = len as usize;
    let mut out = Vec::with_capacity(len);
    out.push(start);
    if len > 1 {
        let second = start + step;
        out.push(second);
        let delta = second - start;
        for i in 2..len {
            out.push(start + i as f64 * delta);
        }
    }
    out
}

/// `np.round` / `ndarray.round()`: round half to even.
pub(crate) fn np_round(x: f64) -> f64 {
    x.round_ties_even()
}

/// `np.interp(x, np.arange(len(fp)), fp)` with numpy's default clamping at both ends.
pub(crate) fn np_interp_unit_grid(x: f64, fp: &[f64]) -> f64 {
    let n = fp.len();
    if x.is_nan() || n == 0 {
        return f64::NAN;
    }
    let last = (n - 1) as f64;
    if x <= 0.0 {
        return fp[0];
    }
    if x >= last {
        return fp[n - 1];
    }
    // numpy finds j with xp[j] <= x < xp[j + 1]; on the integer grid that is floor(x).
    let j = x.floor() as usize;
    let xj = j as f64;
    if xj == x {
        return fp[j];
    }
    let slope = (fp[j + 1] - fp[j]) / ((j + 1) as f64 - xj);
    let mut y = slope * (x - xj) + fp[j];
    if y.is_nan() {
        y = slope * (x - (j + 1) as f64) + fp[j + 1];
        if y.is_nan() && fp[j] == fp[j + 1] {
            y = fp[j];
        }
    }
    y
}

// ---------------------------------------------------------------------------------------------
// Noise schedule
// ---------------------------------------------------------------------------------------------

/// `betas_for_alpha_bar(num_diffusion_timesteps)` with the cosine `alpha_bar` of Nichol &
/// Dhariwal (the `squaredcos_cap_v2` schedule), computed in float64 and stored as float32.
fn betas_for_alpha_bar_cosine(num_train_timesteps: usize) -> Vec<f32> {
    const MAX_BETA: f64 = 0.999;
    let alpha_bar = |t: f64| {
        ((t + 0.008) / 1.008 * std::f64::consts::PI / 2.0)
            .cos()
            .powf(2.0)
    };
    (0..num_train_timesteps)
        .map(|i| {
            let t1 = i as f64 / num_train_timesteps as f64;
            let t2 = (i + 1) as f64 / num_train_timesteps as f64;
            (1.0 - alpha_bar(t2) / alpha_bar(t1)).min(MAX_BETA) as f32
        })
        .collect()
}

/// The `betas` every scheduler's `__init__` builds (float32).
pub(crate) fn make_betas(
    schedule: BetaSchedule,
    num_train_timesteps: usize,
    beta_start: f64,
    beta_end: f64,
) -> Vec<f32> {
    match schedule {
        BetaSchedule::Linear => torch_linspace_f32(beta_start, beta_end, num_train_timesteps),
        BetaSchedule::ScaledLinear => {
            torch_linspace_f32(beta_start.sqrt(), beta_end.sqrt(), num_train_timesteps)
                .into_iter()
                .map(|b| b * b)
                .collect()
        }
        BetaSchedule::SquaredcosCapV2 => betas_for_alpha_bar_cosine(num_train_timesteps),
    }
}

/// `rescale_zero_terminal_snr(betas)` (Lin et al. 2023, Algorithm 1), in float32 like diffusers.
pub(crate) fn rescale_zero_terminal_snr(betas: &[f32]) -> Vec<f32> {
    let alphas: Vec<f32> = betas.iter().map(|b| 1.0 - b).collect();
    let mut sqrt_ac: Vec<f32> = torch_cumprod_f32(&alphas)
        .iter()
        .map(|a| a.sqrt())
        .collect();
    let (Some(&first), Some(&last)) = (sqrt_ac.first(), sqrt_ac.last()) else {
        return Vec::new();
    };
    let scale = first / (first - last);
    for v in sqrt_ac.iter_mut() {
        *v -= last;
        *v *= scale;
    }
    let alphas_bar: Vec<f32> = sqrt_ac.iter().map(|v| v * v).collect();
    let mut out = Vec::with_capacity(alphas_bar.len());
    out.push(1.0 - alphas_bar[0]);
    for w in alphas_bar.windows(2) {
        out.push(1.0 - w[1] / w[0]);
    }
    out
}

/// The validated beta parameters a scheduler class resolved from its config.
pub(crate) struct BetaParams {
    pub num_train_timesteps: usize,
    pub beta_start: f64,
    pub beta_end: f64,
    /// `None` when `trained_betas` is given (diffusers then never looks at `beta_schedule`).
    pub schedule: Option<BetaSchedule>,
    pub trained_betas: Option<Vec<f64>>,
    pub rescale_betas_zero_snr: bool,
}

impl BetaParams {
    /// `alphas_cumprod` in float32, as `torch.cumprod(1.0 - betas, dim=0)`.
    pub fn alphas_cumprod(&self) -> Vec<f32> {
        let mut betas = match (&self.trained_betas, self.schedule) {
            (Some(trained), _) => trained.iter().map(|&b| b as f32).collect(),
            (None, Some(schedule)) => make_betas(
                schedule,
                self.num_train_timesteps,
                self.beta_start,
                self.beta_end,
            ),
            (None, None) => Vec::new(),
        };
        if self.rescale_betas_zero_snr {
            betas = rescale_zero_terminal_snr(&betas);
        }
        let alphas: Vec<f32> = betas.iter().map(|b| 1.0 - b).collect();
        torch_cumprod_f32(&alphas)
    }
}

/// Checks the number of inference steps before any schedule arithmetic divides by it.
pub(crate) fn check_steps(
    class: &'static str,
    num_inference_steps: usize,
    num_train_timesteps: usize,
) -> Result<(), SchedulerConfigError> {
    if num_inference_steps == 0 {
        return Err(SchedulerConfigError::InvalidSteps {
            class,
            steps: num_inference_steps,
            reason: "at least one step is required".into(),
        });
    }
    if num_inference_steps > num_train_timesteps {
        return Err(SchedulerConfigError::InvalidSteps {
            class,
            steps: num_inference_steps,
            reason: format!("cannot exceed num_train_timesteps ({num_train_timesteps})"),
        });
    }
    Ok(())
}

/// Fails when a timestep value cannot index `alphas_cumprod` (torch would raise IndexError).
pub(crate) fn check_timesteps_in_range(
    class: &'static str,
    num_inference_steps: usize,
    timesteps: &[i64],
    num_train_timesteps: usize,
) -> Result<(), SchedulerConfigError> {
    match timesteps
        .iter()
        .find(|&&t| index_wrapped(num_train_timesteps, t).is_none())
    {
        Some(t) => Err(SchedulerConfigError::InvalidSteps {
            class,
            steps: num_inference_steps,
            reason: format!(
                "timestep {t} is outside the {num_train_timesteps} training timesteps (check steps_offset)"
            ),
        }),
        None => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------------
// Tensor arithmetic with float32 scalars
// ---------------------------------------------------------------------------------------------

/// `scalar * tensor` where the scalar is a float32 value (a 0-dim torch tensor in diffusers).
pub(crate) fn scale(t: &Tensor, c: f32) -> candle_core::Result<Tensor> {
    t.affine(c as f64, 0.0)
}

/// `tensor / scalar` as a true elementwise division (not a multiplication by the reciprocal).
pub(crate) fn div_scalar(t: &Tensor, c: f32) -> candle_core::Result<Tensor> {
    let c = Tensor::new(c, t.device())?.to_dtype(t.dtype())?;
    t.broadcast_div(&c)
}

/// The float32 working copy of a tensor (diffusers' schedulers run in float32).
pub(crate) fn f32(t: &Tensor) -> candle_core::Result<Tensor> {
    t.to_dtype(DType::F32)
}

/// A step index that has to address `len` entries.
pub(crate) fn checked_index(step_index: usize, len: usize) -> candle_core::Result<usize> {
    if step_index < len {
        Ok(step_index)
    } else {
        Err(candle_core::Error::Msg(format!(
            "scheduler step index {step_index} is out of range for {len} timesteps"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linspace_matches_numpy_endpoints() {
        let v = np_linspace(0.0, 999.0, 4, true);
        assert_eq!(v, vec![0.0, 333.0, 666.0, 999.0]);
        let v = np_linspace(0.0, 50.0, 4, false);
        assert_eq!(v, vec![0.0, 12.5, 25.0, 37.5]);
    }

    #[test]
    fn round_is_half_to_even() {
        assert_eq!(np_round(0.5), 0.0);
        assert_eq!(np_round(1.5), 2.0);
        assert_eq!(np_round(498.5), 498.0);
        assert_eq!(np_round(-0.5), -0.0);
    }

    #[test]
    fn arange_has_numpys_extra_entry() {
        // len(np.arange(1000, 0, -1000 / 61)) == 62 and np.round of its last entry is 0.
        let v = np_arange(1000.0, 0.0, -1000.0 / 61.0);
        assert_eq!(v.len(), 62);
        assert_eq!(np_round(v[61]), 0.0);
        assert_eq!(np_arange(1000.0, 0.0, -1000.0 / 50.0).len(), 50);
    }

    #[test]
    fn interp_clamps_and_interpolates() {
        let fp = [1.0, 3.0, 7.0];
        assert_eq!(np_interp_unit_grid(-1.0, &fp), 1.0);
        assert_eq!(np_interp_unit_grid(5.0, &fp), 7.0);
        assert_eq!(np_interp_unit_grid(1.0, &fp), 3.0);
        assert_eq!(np_interp_unit_grid(1.5, &fp), 5.0);
    }

    /// `DDIMScheduler(**kw).alphas_cumprod` from diffusers 0.42.1 (torch 2.15, x86-64), from
    /// `tests/fixtures/scheduler_cases.json`: six entries bit for bit, and the float64 sum of all
    /// 1000 (which moves by ~2e-10 relative if a single entry is one float32 ulp off).
    ///
    /// `rescale_betas_zero_snr` is the exception: it takes `torch.sqrt` of a tensor, and torch's
    /// CPU sqrt (MKL VML) is not correctly rounded (up to 0.75 ulp; ~20% of float32 inputs
    /// come out one ulp away from IEEE `sqrt`), so there the entries agree to a few ulp.
    #[test]
    fn alphas_cumprod_match_torch_bit_for_bit() {
        use super::super::testing::{alphas_cumprod_cases, fixture_f32};
        let cases = alphas_cumprod_cases();
        assert!(!cases.is_empty());
        for case in cases {
            let config = &case.config;
            let schedule = [
                BetaSchedule::Linear,
                BetaSchedule::ScaledLinear,
                BetaSchedule::SquaredcosCapV2,
            ]
            .into_iter()
            .find(|s| s.as_str() == config.beta_schedule)
            .expect("known beta_schedule");
            let rescale = config.rescale_betas_zero_snr;
            let params = BetaParams {
                num_train_timesteps: case.num_train_timesteps,
                beta_start: config.beta_start,
                beta_end: config.beta_end,
                schedule: Some(schedule),
                trained_betas: None,
                rescale_betas_zero_snr: rescale,
            };
            let ac = params.alphas_cumprod();
            let (entry_rtol, sum_rtol) = if rescale { (1e-6, 1e-7) } else { (0.0, 1e-12) };
            assert_eq!(case.indices.len(), case.entries.len());
            for (&i, &want) in case.indices.iter().zip(&case.entries) {
                let want = fixture_f32(want) as f64;
                assert!(
                    (ac[i] as f64 - want).abs() <= entry_rtol * want.abs(),
                    "{schedule:?} rescale={rescale} [{i}]: {} vs {want}",
                    ac[i]
                );
            }
            let sum = case.sum;
            let got_sum: f64 = ac.iter().map(|&a| a as f64).sum();
            assert!(
                ((got_sum - sum) / sum).abs() < sum_rtol,
                "{schedule:?} rescale={rescale}: sum {got_sum} vs {sum}"
            );
        }
    }
}
