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

/// `x·Φ(x) = x·(1 + erf(x/√2))/2` (exact GELU), with erf from Abramowitz & Stegun 7.1.26
/// (absolute error ≤ 1.5e-7): `erf(z) = 1 − (a₁t + … + a₅t⁵)·e^(−z²)`, `t = 1/(1 + p·z)`, `z ≥ 0`,
/// odd in `z`.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub unsafe fn gelu_erf(x: __m256) -> __m256 {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_7,
        -1.453_152_1,
        1.061_405_4,
    ];
    let z = _mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::FRAC_1_SQRT_2));
    let sign_bit = _mm256_set1_ps(-0.0);
    let abs_z = _mm256_andnot_ps(sign_bit, z);
    let t = _mm256_div_ps(
        _mm256_set1_ps(1.0),
        _mm256_fmadd_ps(_mm256_set1_ps(P), abs_z, _mm256_set1_ps(1.0)),
    );
    let mut poly = _mm256_set1_ps(A[4]);
    for coefficient in [A[3], A[2], A[1], A[0]] {
        poly = _mm256_fmadd_ps(poly, t, _mm256_set1_ps(coefficient));
    }
    poly = _mm256_mul_ps(poly, t);
    let gaussian = exp_non_positive(_mm256_sub_ps(
        _mm256_setzero_ps(),
        _mm256_mul_ps(abs_z, abs_z),
    ));
    let erf_abs = _mm256_fnmadd_ps(poly, gaussian, _mm256_set1_ps(1.0));
    let erf = _mm256_or_ps(erf_abs, _mm256_and_ps(sign_bit, z));
    let half_x = _mm256_mul_ps(x, _mm256_set1_ps(0.5));
    _mm256_fmadd_ps(half_x, erf, half_x)
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

    #[test]
    fn gelu_matches_the_exact_formula() {
        if !available() {
            return;
        }
        let mut x = -12.0f32;
        while x <= 12.0 {
            let inputs: [f32; 8] = std::array::from_fn(|i| x + i as f32 * 0.003);
            let mut outputs = [0f32; 8];
            // SAFETY: `available` checked AVX2 and FMA.
            unsafe {
                _mm256_storeu_ps(
                    outputs.as_mut_ptr(),
                    gelu_erf(_mm256_loadu_ps(inputs.as_ptr())),
                )
            };
            // candle's erf-based GELU in f64 as the reference.
            let wide: Vec<f64> = inputs.iter().map(|&v| v as f64).collect();
            let reference = candle_core::Tensor::new(wide.as_slice(), &candle_core::Device::Cpu)
                .and_then(|t| t.gelu_erf())
                .and_then(|t| t.to_vec1::<f64>())
                .unwrap();
            for ((input, output), exact) in inputs.iter().zip(outputs).zip(reference) {
                let error = (output as f64 - exact).abs();
                assert!(
                    error <= 3e-7 * input.abs().max(1.0) as f64,
                    "gelu({input}) = {output}, not {exact}"
                );
            }
            x += 0.0531;
        }
    }
}
