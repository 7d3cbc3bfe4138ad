//! torch's `F.interpolate(x, size=(h, w), mode=…, align_corners=False, antialias=…)` on NCHW
//! tensors, for the hires fix's latent upscalers (A1111's `latent_upscale_modes`). Each mode
//! follows ATen's CPU kernels (`UpSampleKernel.cpp`, `UpSample.h`): index and weight arithmetic
//! in f32 as there, the antialiased modes as its separable `_upsample_*2d_aa` filters (width
//! first, then height). The work is small (latents are 1/64 of the picture), so it runs on the
//! host and the result goes back to the input's device and dtype.

use candle_core::{DType, Tensor};

/// The interpolation modes A1111 offers for latents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InterpolateMode {
    /// `mode="bilinear"`.
    Bilinear,
    /// `mode="bilinear", antialias=True`.
    BilinearAntialiased,
    /// `mode="bicubic"` (Keys' cubic, A = −0.75).
    Bicubic,
    /// `mode="bicubic", antialias=True` (Pillow's cubic filter, A = −0.5).
    BicubicAntialiased,
    /// `mode="nearest"`: `floor(dst · scale)`.
    Nearest,
    /// `mode="nearest-exact"`: `floor((dst + 0.5) · scale)`.
    NearestExact,
}

/// `input` (N, C, H, W) resized to `height`×`width` as torch does.
pub fn interpolate(
    input: &Tensor,
    height: usize,
    width: usize,
    mode: InterpolateMode,
) -> candle_core::Result<Tensor> {
    let (n, c, in_h, in_w) = input.dims4()?;
    if height == 0 || width == 0 {
        candle_core::bail!("interpolate: the output size {height}×{width} is empty");
    }
    let planes = n * c;
    let values = input
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let horizontal = axis_weights(in_w, width, mode);
    let vertical = axis_weights(in_h, height, mode);
    let mut output = Vec::with_capacity(planes * height * width);
    let mut rows = vec![0f32; in_h * width];
    for plane in values.chunks_exact(in_h * in_w) {
        for (y, row) in plane.chunks_exact(in_w).enumerate() {
            for (x, taps) in horizontal.iter().enumerate() {
                rows[y * width + x] = taps.apply(|i| row[i]);
            }
        }
        for taps in &vertical {
            for x in 0..width {
                output.push(taps.apply(|i| rows[i * width + x]));
            }
        }
    }
    Tensor::from_vec(output, (n, c, height, width), &candle_core::Device::Cpu)?
        .to_dtype(input.dtype())?
        .to_device(input.device())
}

/// The source indices and weights of one output index along one axis.
#[derive(Debug, Clone, PartialEq)]
struct Taps {
    indices: Vec<usize>,
    weights: Vec<f32>,
}

impl Taps {
    fn apply(&self, value: impl Fn(usize) -> f32) -> f32 {
        self.indices
            .iter()
            .zip(&self.weights)
            .fold(0.0, |sum, (&i, &w)| sum + value(i) * w)
    }
}

fn axis_weights(input: usize, output: usize, mode: InterpolateMode) -> Vec<Taps> {
    // `area_pixel_compute_scale` without align_corners: input / output, in f32.
    let scale = input as f32 / output as f32;
    (0..output)
        .map(|dst| match mode {
            InterpolateMode::Nearest => nearest(input, output, dst, scale, false),
            InterpolateMode::NearestExact => nearest(input, output, dst, scale, true),
            InterpolateMode::Bilinear => linear(input, dst, scale),
            InterpolateMode::Bicubic => cubic(input, dst, scale),
            InterpolateMode::BilinearAntialiased => antialiased(input, dst, scale, 2.0, triangle),
            InterpolateMode::BicubicAntialiased => {
                antialiased(input, dst, scale, 4.0, pillow_cubic)
            }
        })
        .collect()
}

fn nearest(input: usize, output: usize, dst: usize, scale: f32, exact: bool) -> Taps {
    // `nearest_idx` / `nearest_exact_idx`, with their same-size and doubling shortcuts.
    let src = if output == input {
        dst
    } else if !exact && output == 2 * input {
        dst >> 1
    } else {
        let offset = if exact { 0.5 } else { 0.0 };
        (((dst as f32 + offset) * scale).floor() as usize).min(input - 1)
    };
    Taps {
        indices: vec![src],
        weights: vec![1.0],
    }
}

/// `area_pixel_compute_source_index` without align_corners.
fn source_index(scale: f32, dst: usize, cubic: bool) -> f32 {
    let src = scale * (dst as f32 + 0.5) - 0.5;
    if !cubic && src < 0.0 {
        0.0
    } else {
        src
    }
}

fn linear(input: usize, dst: usize, scale: f32) -> Taps {
    let src = source_index(scale, dst, false);
    let low = (src as usize).min(input - 1);
    let high = (low + 1).min(input - 1);
    let lambda = (src - low as f32).clamp(0.0, 1.0);
    Taps {
        indices: vec![low, high],
        weights: vec![1.0 - lambda, lambda],
    }
}

fn cubic(input: usize, dst: usize, scale: f32) -> Taps {
    const A: f32 = -0.75;
    let src = source_index(scale, dst, true);
    let floor = src.floor();
    let t = src - floor;
    let near = |x: f32| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let far = |x: f32| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
    let base = floor as i64;
    let clamp = |i: i64| i.clamp(0, input as i64 - 1) as usize;
    Taps {
        indices: (-1..=2).map(|k| clamp(base + k)).collect(),
        weights: vec![far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)],
    }
}

fn triangle(x: f32) -> f32 {
    let x = x.abs();
    if x < 1.0 {
        1.0 - x
    } else {
        0.0
    }
}

/// Pillow's bicubic filter (A = −0.5), which torch's antialiased bicubic uses.
fn pillow_cubic(x: f32) -> f32 {
    const A: f32 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// `_compute_indices_min_size_weights_aa`: the filter stretched by the scale when shrinking,
/// its taps normalised to sum to one (which is what differs from the plain modes at the edges).
fn antialiased(
    input: usize,
    dst: usize,
    scale: f32,
    interp_size: f32,
    filter: fn(f32) -> f32,
) -> Taps {
    let support = if scale >= 1.0 {
        interp_size * 0.5 * scale
    } else {
        interp_size * 0.5
    };
    let max_taps = (support.ceil() as usize) * 2 + 1;
    let center = scale * (dst as f32 + 0.5);
    let invscale = if scale >= 1.0 { 1.0 / scale } else { 1.0 };
    let min = ((center - support + 0.5) as i64).max(0) as usize;
    let end = ((center + support + 0.5) as i64).min(input as i64).max(0) as usize;
    let size = end.saturating_sub(min).min(max_taps);
    let mut weights: Vec<f32> = (0..size)
        .map(|j| filter(((j + min) as f32 - center + 0.5) * invscale))
        .collect();
    let total: f32 = weights.iter().sum();
    if total != 0.0 {
        for weight in &mut weights {
            *weight /= total;
        }
    }
    Taps {
        indices: (min..min + size).collect(),
        weights,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mode_keeps_a_constant_plane_constant() {
        let input = Tensor::full(0.25f32, (1, 2, 3, 5), &candle_core::Device::Cpu).unwrap();
        for mode in [
            InterpolateMode::Bilinear,
            InterpolateMode::BilinearAntialiased,
            InterpolateMode::Bicubic,
            InterpolateMode::BicubicAntialiased,
            InterpolateMode::Nearest,
            InterpolateMode::NearestExact,
        ] {
            let output = interpolate(&input, 7, 4, mode).unwrap();
            assert_eq!(output.dims(), [1, 2, 7, 4]);
            for value in output.flatten_all().unwrap().to_vec1::<f32>().unwrap() {
                assert!((value - 0.25).abs() < 1e-6, "{mode:?}: {value}");
            }
        }
    }

    #[test]
    fn nearest_modes_pick_the_documented_sources() {
        // 2 → 3: nearest floor(dst·2/3) = 0,0,1; nearest-exact floor((dst+.5)·2/3) = 0,1,1.
        let input = Tensor::new(&[[[[1f32, 2.0]]]], &candle_core::Device::Cpu).unwrap();
        let row = |mode| {
            interpolate(&input, 1, 3, mode)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        assert_eq!(row(InterpolateMode::Nearest), [1.0, 1.0, 2.0]);
        assert_eq!(row(InterpolateMode::NearestExact), [1.0, 2.0, 2.0]);
    }
}
