//! AVX2/FMA helpers shared by the CPU kernels (x86-64 only).

use std::arch::x86_64::*;

/// Whether this CPU has AVX2 and FMA.
pub fn available() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
}

/// `eˣ` for `x ≤ 0`, to within about one unit in the last place: `x = n·ln 2 + r` with
/// `|r| ≤ ln 2 / 2`, `eʳ` by its Taylor series to the 7th power (remainder < 6e-9), and `2ⁿ`
/// written into the exponent bits. Inputs below −87 (including −∞) give `e⁻⁸⁷ ≈ 1.6e-38`,
/// which vanishes next to the row's largest term, `e⁰ = 1`.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub unsafe fn exp_non_positive(x: __m256) -> __m256 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let x = _mm256_max_ps(x, _mm256_set1_ps(-87.0));
    let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
        x,
        _mm256_set1_ps(std::f32::consts::LOG2_E),
    ));
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), x);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), r);
    let mut poly = _mm256_set1_ps(1.0 / 5040.0);
    for coefficient in [
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        poly = _mm256_fmadd_ps(poly, r, _mm256_set1_ps(coefficient));
    }
    let exponent = _mm256_slli_epi32::<23>(_mm256_add_epi32(
        _mm256_cvtps_epi32(n),
        _mm256_set1_epi32(127),
    ));
    _mm256_mul_ps(poly, _mm256_castsi256_ps(exponent))
}

/// `x·sigmoid(x)` (SiLU), with `sigmoid` from `e^-|x|` so that only non-positive powers are
/// taken: `1/(1+t)` for `x ≥ 0`, `t/(1+t)` below.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub unsafe fn silu(x: __m256) -> __m256 {
    let negative_abs = _mm256_min_ps(x, _mm256_sub_ps(_mm256_setzero_ps(), x));
    let t = exp_non_positive(negative_abs);
    let denominator = _mm256_add_ps(_mm256_set1_ps(1.0), t);
    let positive = _mm256_cmp_ps::<_CMP_GE_OQ>(x, _mm256_setzero_ps());
    let numerator = _mm256_blendv_ps(t, _mm256_set1_ps(1.0), positive);
    _mm256_mul_ps(x, _mm256_div_ps(numerator, denominator))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_accurate_to_an_ulp_or_two() {
        if !available() {
            return;
        }
        let mut worst = 0f32;
        let mut x = -90.0f32;
        while x <= 0.0 {
            let inputs: [f32; 8] = std::array::from_fn(|i| x - i as f32 * 1e-3);
            let mut outputs = [0f32; 8];
            // SAFETY: `available` checked AVX2 and FMA.
            unsafe {
                _mm256_storeu_ps(
                    outputs.as_mut_ptr(),
                    exp_non_positive(_mm256_loadu_ps(inputs.as_ptr())),
                )
            };
            for (input, output) in inputs.iter().zip(outputs) {
                let exact = (*input as f64).exp();
                if *input >= -87.0 {
                    worst = worst.max(((output as f64 - exact) / exact).abs() as f32);
                } else {
                    assert!(output < 2e-38);
                }
            }
            x += 0.0173;
        }
        assert!(worst < 3e-7, "relative error {worst}");
    }

    #[test]
    fn silu_matches_the_formula() {
        if !available() {
            return;
        }
        let mut x = -100.0f32;
        while x <= 100.0 {
            let inputs: [f32; 8] = std::array::from_fn(|i| x + i as f32 * 0.01);
            let mut outputs = [0f32; 8];
            // SAFETY: `available` checked AVX2 and FMA.
            unsafe {
                _mm256_storeu_ps(outputs.as_mut_ptr(), silu(_mm256_loadu_ps(inputs.as_ptr())))
            };
            for (input, output) in inputs.iter().zip(outputs) {
                let exact = *input as f64 / (1.0 + (-*input as f64).exp());
                let error = (output as f64 - exact).abs();
                assert!(
                    error <= 1e-6 * exact.abs().max(1e-3),
                    "silu({input}) = {output}, not {exact}"
                );
            }
            x += 0.137;
        }
    }
}
