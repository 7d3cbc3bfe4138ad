//! Gaussian noise that reproduces `torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed))`.
//!
//! Matching PyTorch's CPU generator bit for bit is what makes "the same seed gives the same
//! image as diffusers" true. PyTorch seeds an MT19937 with the low 32 bits of the seed and has
//! two float32 paths: tensors of at least 16 values are filled 16 at a time with a Box–Muller
//! transform over 24-bit uniforms, smaller ones draw 53-bit double uniforms one pair at a time
//! and keep the spare normal for the next call.

use candle_core::{Device, Tensor};

const MT_N: usize = 624;
const MT_M: usize = 397;

/// The 32-bit Mersenne Twister exactly as `at::mt19937` runs it.
#[derive(Clone)]
struct Mt19937 {
    state: [u32; MT_N],
    index: usize,
}

impl Mt19937 {
    fn new(seed: u32) -> Self {
        let mut state = [0u32; MT_N];
        state[0] = seed;
        for i in 1..MT_N {
            state[i] = 1_812_433_253u32
                .wrapping_mul(state[i - 1] ^ (state[i - 1] >> 30))
                .wrapping_add(i as u32);
        }
        Self { state, index: MT_N }
    }

    fn twist(&mut self) {
        const UPPER: u32 = 0x8000_0000;
        const LOWER: u32 = 0x7fff_ffff;
        const MATRIX_A: u32 = 0x9908_b0df;
        for i in 0..MT_N {
            let y = (self.state[i] & UPPER) | (self.state[(i + 1) % MT_N] & LOWER);
            let mag = if y & 1 == 1 { MATRIX_A } else { 0 };
            self.state[i] = self.state[(i + MT_M) % MT_N] ^ (y >> 1) ^ mag;
        }
        self.index = 0;
    }

    fn next_u32(&mut self) -> u32 {
        if self.index >= MT_N {
            self.twist();
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^= y >> 18;
        y
    }
}

/// A seeded noise source with PyTorch's CPU `torch.Generator` semantics.
///
/// One generator is threaded through a whole generation (initial latents, VAE posterior
/// sample, ancestral noise), because diffusers draws all of them from the same generator.
#[derive(Clone)]
pub struct TorchRng {
    mt: Mt19937,
    spare_normal: Option<f64>,
}

impl TorchRng {
    pub fn new(seed: u64) -> Self {
        Self {
            mt: Mt19937::new(seed as u32),
            spare_normal: None,
        }
    }

    fn uniform_f32_24bit(&mut self) -> f32 {
        (self.mt.next_u32() & 0x00ff_ffff) as f32 / (1u32 << 24) as f32
    }

    fn uniform_f64_53bit(&mut self) -> f64 {
        let hi = self.mt.next_u32() as u64;
        let lo = self.mt.next_u32() as u64;
        let bits = ((hi << 32) | lo) & ((1u64 << 53) - 1);
        bits as f64 * (1.0f64 / (1u64 << 53) as f64)
    }

    fn fill_16(&mut self, out: &mut [f32]) {
        let mut u = [0f32; 16];
        for x in u.iter_mut() {
            *x = self.uniform_f32_24bit();
        }
        for j in 0..8 {
            let radius = (-2.0f32 * (1.0f32 - u[j]).ln()).sqrt();
            let theta = (2.0 * std::f64::consts::PI) as f32 * u[j + 8];
            out[j] = radius * theta.cos();
            out[j + 8] = radius * theta.sin();
        }
    }

    fn normal_f64(&mut self) -> f64 {
        if let Some(spare) = self.spare_normal.take() {
            return spare;
        }
        let u1 = self.uniform_f64_53bit();
        let u2 = self.uniform_f64_53bit();
        let radius = (-2.0 * (-u2).ln_1p()).sqrt();
        let theta = 2.0 * std::f64::consts::PI * u1;
        self.spare_normal = Some(radius * theta.sin());
        radius * theta.cos()
    }

    /// `count` standard normal float32 values, as `torch.randn` of a tensor with that many elements.
    pub fn randn(&mut self, count: usize) -> Vec<f32> {
        let mut out = vec![0f32; count];
        if count < 16 {
            for x in out.iter_mut() {
                *x = self.normal_f64() as f32;
            }
            return out;
        }
        let full = count - count % 16;
        for chunk in out[..full].chunks_exact_mut(16) {
            self.fill_16(chunk);
        }
        if full != count {
            // PyTorch draws a uniform for every element before transforming, then recomputes
            // the last 16 values from 16 fresh uniforms.
            for _ in full..count {
                self.uniform_f32_24bit();
            }
            let mut tail = [0f32; 16];
            self.fill_16(&mut tail);
            out[count - 16..].copy_from_slice(&tail);
        }
        out
    }

    /// A float32 tensor of standard normal noise with the given shape on `device`.
    pub fn randn_tensor(
        &mut self,
        shape: &[usize],
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let count = shape.iter().product();
        Tensor::from_vec(self.randn(count), shape, &Device::Cpu)?.to_device(device)
    }
}

/// A fresh seed in 0..2³²: torch seeds its generator with the low 32 bits, and A1111 keeps
/// seeds in that range too, so a seed means the same image in every tool.
pub fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    hasher.finish() & 0xffff_ffff
}

/// A1111's variation seed ("Variation seed", "Variation seed strength"): the initial noise
/// `noise` (`(1, C, H, W)`, drawn from the image's seed) moved toward the noise of
/// `variation_seed` by spherical interpolation, with A1111's `slerp` exactly as it is —
/// norms taken over dim 1 of the unbatched `(C, H, W)` noise (its rows), and the nearly
/// parallel case falling back to `noise · strength + other · (1 − strength)` — so that a
/// seed pair gives A1111's picture (with its "CPU" noise source).
pub fn a1111_variation(
    noise: &Tensor,
    variation_seed: u64,
    strength: f64,
) -> candle_core::Result<Tensor> {
    let (batch, channels, height, width) = noise.dims4()?;
    if batch != 1 {
        candle_core::bail!("variation noise is made one image at a time");
    }
    let low: Vec<f32> = noise
        .to_dtype(candle_core::DType::F32)?
        .flatten_all()?
        .to_vec1()?;
    let high: Vec<f32> = TorchRng::new(variation_seed)
        .randn_tensor(&[channels, height, width], &Device::Cpu)?
        .flatten_all()?
        .to_vec1()?;
    let at = |c: usize, y: usize, x: usize| (c * height + y) * width + x;
    // Per (channel, column): the norms over the rows and the cosine between the two noises.
    let mut dots = vec![0f32; channels * width];
    for c in 0..channels {
        for x in 0..width {
            let norm = |v: &[f32]| {
                (0..height)
                    .map(|y| v[at(c, y, x)].powi(2))
                    .sum::<f32>()
                    .sqrt()
            };
            let (low_norm, high_norm) = (norm(&low), norm(&high));
            dots[c * width + x] = (0..height)
                .map(|y| (low[at(c, y, x)] / low_norm) * (high[at(c, y, x)] / high_norm))
                .sum();
        }
    }
    let val = strength as f32;
    let mean = dots.iter().sum::<f32>() / dots.len() as f32;
    let mixed: Vec<f32> = if mean > 0.9995 {
        low.iter()
            .zip(&high)
            .map(|(l, h)| l * val + h * (1.0 - val))
            .collect()
    } else {
        let mut out = vec![0f32; low.len()];
        for c in 0..channels {
            for x in 0..width {
                let omega = dots[c * width + x].acos();
                let so = omega.sin();
                let (a, b) = (((1.0 - val) * omega).sin() / so, (val * omega).sin() / so);
                for y in 0..height {
                    let i = at(c, y, x);
                    out[i] = a * low[i] + b * high[i];
                }
            }
        }
        out
    };
    Tensor::from_vec(mixed, (1, channels, height, width), noise.device())?.to_dtype(noise.dtype())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_known_torch_values_for_seed_zero() {
        // torch.randn(16, generator=torch.Generator().manual_seed(0))[:4]
        let values = TorchRng::new(0).randn(16);
        let expected = [-1.1258398f32, -1.1523602, -0.2505786, -0.4338788];
        for (got, want) in values.iter().zip(expected) {
            assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        }
    }

    #[test]
    fn only_low_32_bits_of_the_seed_matter() {
        let a = TorchRng::new(5).randn(32);
        let b = TorchRng::new((1u64 << 32) + 5).randn(32);
        assert_eq!(a, b);
    }
}
