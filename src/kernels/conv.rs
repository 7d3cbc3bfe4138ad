//! 2-D convolution. On the CPU in f32 it runs as one matrix product per block of output rows,
//! `out (C_out × N) = W (C_out × C_in·k²) · cols (C_in·k² × N)`, with the input unfolded
//! straight into `cols` by whole-row copies. That is the layout NCHW already has, so the
//! product lands in NCHW with no transpose; 1×1 convolutions skip the unfolding entirely;
//! and unfolding a block of rows at a time bounds the scratch memory (candle's own CPU
//! convolution unfolds the whole image first: 1.2 GB for one 512² VAE layer). 3×3
//! convolutions with padding 1 (almost all of SD's) go through Winograd's F(4×4, 3×3) instead
//! ([`crate::kernels::winograd`]), 4× fewer multiply-adds (in bf16 arithmetic too, on large
//! images, where its f32 products beat unfolding into bf16 ones). Products are written
//! in place on top of the bias ([`crate::kernels::matmul`]). Everything
//! else (f16 on the CPU, grouped or dilated convolutions, the GPU without the `cudnn` feature)
//! uses candle's convolution; with it, CUDA convolutions go through cuDNN
//! ([`crate::kernels::gpu::cudnn_conv`]). With bf16 CPU
//! arithmetic ([`crate::kernels::precision`]) the same unfolded blocks go through
//! [`crate::kernels::matmul_bf16`] instead.

use candle_core::{DType, Device, Module, Result, Tensor};
#[cfg(target_arch = "x86_64")]
use std::sync::{Arc, OnceLock};

use crate::kernels::matmul::{self, Bias, MatrixRef};
#[cfg(target_arch = "x86_64")]
use crate::kernels::matmul_bf16::{self, ColumnTiles, PairedRows};
use crate::kernels::precision::{
    cpu_arithmetic, values_in_f32, weight_in_f32, with_stored_weight_precision, CpuArithmetic,
};
use crate::kernels::{winograd, with_cpu_f32};
use candle_nn::{Conv2dConfig, VarBuilder};
use rayon::prelude::*;

/// How many f32 values one block of unfolded input may hold (32 MB).
const COLUMN_BLOCK_VALUES: usize = 8 << 20;

/// `LATENT_STUDIO_CANDLE_CONV=1` keeps candle's convolution everywhere, for A/B measurements.
fn candle_only() -> bool {
    crate::kernels::ab_switch!("LATENT_STUDIO_CANDLE_CONV")
}

/// Which Winograd tiling, if any, beats unfolding for an image of `plane` pixels per channel.
/// Measured per layer on a 2-core AVX-512 machine (`cargo run --release --example conv_bench`,
/// two runs): in f32 F(4×4, 3×3) against unfolding took 45–47 vs 102–116 ms for the UNet's 320
/// channels at 64², 38–41 vs 89–103 for 640 at 32², 62–64 vs 94–103 for 1280 at 16² and 15–17
/// vs 20–26 for 640 at 16²; at 8² unfolding wins (1280 channels 21 vs 40 ms). Against F(2×2,
/// 3×3) (`LATENT_STUDIO_WINOGRAD_F2=1`) it took 0.65–0.9× the time from 32² up and the same at
/// 16². In bf16 arithmetic, unfolding into bf16 products wins below 64² (1280 channels at 16²
/// 49 vs 81 ms, 640 at 32² 44 vs 48); from 64² up the f32 F(4×4) runs. Whole 512² bf16 runs
/// (`bench --dtype bf16`, two rounds): UNet step 5.56–5.71 s against 5.59–5.85 s with F(2×2)
/// and bf16 products, VAE decode 7.67–8.08 s against 7.22–7.25 s — that F(2×2) had transforms
/// written for it alone; through the general transforms here it took 5.89–6.59 and 8.57–8.81 s,
/// so it was dropped rather than kept slower.
fn winograd_tiling(arithmetic: CpuArithmetic, plane: usize) -> Option<winograd::Tiling> {
    let smallest = match arithmetic {
        CpuArithmetic::F32 => 16 * 16,
        CpuArithmetic::Bf16 => 64 * 64,
    };
    (plane >= smallest).then(|| {
        if f2_only() {
            winograd::Tiling::F2
        } else {
            winograd::Tiling::F4
        }
    })
}

/// `LATENT_STUDIO_WINOGRAD_F2=1` runs the Winograd convolutions (in either arithmetic) as F(2×2,
/// 3×3) instead of F(4×4, 3×3), for A/B measurements.
fn f2_only() -> bool {
    crate::kernels::ab_switch!("LATENT_STUDIO_WINOGRAD_F2")
}

/// `LATENT_STUDIO_DIRECT_CONV=1` unfolds 3×3 convolutions (f32 and bf16) as the others instead
/// of computing them by Winograd's minimal filtering, for A/B measurements.
fn direct_only() -> bool {
    crate::kernels::ab_switch!("LATENT_STUDIO_DIRECT_CONV")
}

#[derive(Debug, Clone)]
pub struct Conv2d {
    weight: Tensor,
    bias: Option<Tensor>,
    config: Conv2dConfig,
    /// The weight rounded to bf16, made on first use in bf16 arithmetic.
    #[cfg(target_arch = "x86_64")]
    bf16_weight: Arc<OnceLock<PairedRows>>,
}

/// A convolution with a `kernel × kernel` window and a bias, read from `vb` (`weight`, `bias`),
/// as `candle_nn::conv2d` builds it.
pub fn conv2d(
    in_channels: usize,
    out_channels: usize,
    kernel: usize,
    config: Conv2dConfig,
    vb: VarBuilder,
) -> Result<Conv2d> {
    let inner = with_stored_weight_precision(|| {
        candle_nn::conv2d(in_channels, out_channels, kernel, config, vb)
    })?;
    Ok(Conv2d::new(
        inner.weight().clone(),
        inner.bias().cloned(),
        config,
    ))
}

/// As [`conv2d`], for a convolution without a bias (`weight` only).
pub fn conv2d_no_bias(
    in_channels: usize,
    out_channels: usize,
    kernel: usize,
    config: Conv2dConfig,
    vb: VarBuilder,
) -> Result<Conv2d> {
    let inner = with_stored_weight_precision(|| {
        candle_nn::conv2d_no_bias(in_channels, out_channels, kernel, config, vb)
    })?;
    Ok(Conv2d::new(inner.weight().clone(), None, config))
}

impl Conv2d {
    pub fn new(weight: Tensor, bias: Option<Tensor>, config: Conv2dConfig) -> Self {
        Self {
            weight,
            bias,
            config,
            #[cfg(target_arch = "x86_64")]
            bf16_weight: Arc::default(),
        }
    }

    /// candle's own convolution, for comparison in benchmarks.
    pub fn forward_with_candle(&self, xs: &Tensor) -> Result<Tensor> {
        self.candle_forward(xs)
    }

    fn fast_path_applies(&self, xs: &Tensor) -> bool {
        !candle_only()
            && matches!(xs.device(), Device::Cpu)
            && xs.dtype() == DType::F32
            && matches!(self.weight.dtype(), DType::F32 | DType::F16 | DType::BF16)
            && self.config.groups == 1
            && self.config.dilation == 1
            && xs.rank() == 4
    }

    /// With the `cudnn` feature, CUDA tensors may go through [`crate::kernels::gpu::cudnn_conv`].
    #[cfg(feature = "cudnn")]
    fn cudnn_applies(&self, xs: &Tensor) -> bool {
        !candle_only()
            && xs.device().is_cuda()
            && self.config.groups == 1
            && self.config.dilation == 1
            && xs.rank() == 4
    }

    /// cuDNN or candle's im2col, whichever ran this shape faster ([`crate::kernels::gpu::conv_race`]).
    #[cfg(feature = "cudnn")]
    fn cuda_forward(&self, xs: &Tensor) -> Result<Tensor> {
        let c = &self.config;
        crate::kernels::gpu::conv_race::run(
            (xs, &self.weight, c.padding, c.stride),
            || self.cudnn_forward(xs),
            || self.candle_forward(xs),
        )
    }

    #[cfg(feature = "cudnn")]
    fn cudnn_forward(&self, xs: &Tensor) -> Result<Tensor> {
        let c = &self.config;
        let out = crate::kernels::gpu::cudnn_conv::conv2d(xs, &self.weight, c.padding, c.stride)?;
        self.add_bias(out)
    }

    fn candle_forward(&self, xs: &Tensor) -> Result<Tensor> {
        let c = &self.config;
        let weight = if xs.dtype() == DType::F32 {
            weight_in_f32(&self.weight)?
        } else {
            self.weight.clone()
        };
        let out = xs.conv2d(&weight, c.padding, c.stride, c.dilation, c.groups)?;
        self.add_bias(out)
    }

    fn add_bias(&self, out: Tensor) -> Result<Tensor> {
        match &self.bias {
            Some(bias) => out.broadcast_add(&bias.reshape((1, bias.dim(0)?, 1, 1))?),
            None => Ok(out),
        }
    }

    /// `block_values`: how many values one block of unfolded input may hold.
    fn cpu_forward(
        &self,
        xs: &Tensor,
        block_values: usize,
        arithmetic: CpuArithmetic,
    ) -> Result<Tensor> {
        let (batch, channels, height, width) = xs.dims4()?;
        let (out_channels, in_channels, kernel_h, kernel_w) = self.weight.dims4()?;
        if channels != in_channels {
            candle_core::bail!(
                "conv2d: input has {channels} channels, the weight expects {in_channels}"
            );
        }
        let (pad, stride) = (self.config.padding, self.config.stride.max(1));
        if height + 2 * pad < kernel_h || width + 2 * pad < kernel_w {
            candle_core::bail!("conv2d: {height}×{width} input is smaller than the kernel");
        }
        let out_h = (height + 2 * pad - kernel_h) / stride + 1;
        let out_w = (width + 2 * pad - kernel_w) / stride + 1;
        let depth = in_channels * kernel_h * kernel_w;
        // Weights kept in f16 are widened here, for this call only (bf16 arithmetic caches its
        // own rounded copy instead).
        let f32_weight = || weight_in_f32(&self.weight)?.reshape((out_channels, depth));

        let pointwise = kernel_h == 1 && kernel_w == 1 && pad == 0 && stride == 1;
        let xs = xs.contiguous()?;
        let geometry = Geometry {
            height,
            width,
            kernel_h,
            kernel_w,
            pad,
            stride,
            out_w,
        };
        let rows_per_block = (block_values / (depth * out_w).max(1)).clamp(1, out_h);
        let image_len = channels * height * width;
        let plane = out_h * out_w;
        let bias_values = self.bias.as_ref().map(values_in_f32).transpose()?;
        let bias = bias_values.as_deref().map_or(Bias::None, Bias::PerRow);
        // Every block's product lands in its place in `out`, on top of the bias: no gathering
        // of blocks, stacking of images or adding of the bias afterwards.
        let mut out = vec![0f32; batch * out_channels * plane];

        let tiling = winograd_tiling(arithmetic, height * width)
            .filter(|_| (kernel_h, kernel_w, pad, stride) == (3, 3, 1, 1) && !direct_only());
        if let Some(tiling) = tiling {
            // The f32 weight, widened for this call: the transform makes its own copy anyway.
            let weight = f32_weight()?.contiguous()?;
            let shape = winograd::Shape {
                batch,
                in_channels,
                out_channels,
                height,
                width,
            };
            with_cpu_f32(&weight, |weight| {
                with_cpu_f32(&xs, |input| {
                    let bias = bias_values.as_deref();
                    let limits = winograd::Limits::DEFAULT;
                    winograd::conv3x3(input, weight, bias, shape, &mut out, limits, tiling)
                })
            })??;
        } else if arithmetic == CpuArithmetic::Bf16 {
            #[cfg(target_arch = "x86_64")]
            {
                let paired = self.bf16_weight(out_channels, depth)?;
                with_cpu_f32(&xs, |input| {
                    for (item, target) in out.chunks_exact_mut(out_channels * plane).enumerate() {
                        let image = &input[item * image_len..][..image_len];
                        if pointwise {
                            let tiles = ColumnTiles::new(image, depth, plane);
                            matmul_bf16::multiply(paired, &tiles, target, plane, bias);
                            continue;
                        }
                        // Unfolded straight from a bf16 copy of the image into the product's
                        // tiles: no f32 matrix of columns in between.
                        let image = matmul_bf16::round_to_bf16(image);
                        for first_row in (0..out_h).step_by(rows_per_block) {
                            let rows = rows_per_block.min(out_h - first_row);
                            let tiles =
                                ColumnTiles::from_fn(depth, rows * out_w, |tap, column, out| {
                                    let first = first_row * out_w + column;
                                    geometry.unfold_range(&image, tap, first, out)
                                });
                            let target = &mut target[first_row * out_w..];
                            matmul_bf16::multiply(paired, &tiles, target, plane, bias);
                        }
                    }
                })?;
            }
            #[cfg(not(target_arch = "x86_64"))]
            candle_core::bail!("conv2d: bf16 arithmetic on a CPU without it");
        } else {
            let weight = f32_weight()?;
            with_cpu_f32(&weight, |weight| {
                let weight = MatrixRef::row_major(weight, out_channels, depth);
                with_cpu_f32(&xs, |input| {
                    let mut cols = Vec::new();
                    for (item, target) in out.chunks_exact_mut(out_channels * plane).enumerate() {
                        let image = &input[item * image_len..][..image_len];
                        if pointwise {
                            let image = MatrixRef::row_major(image, depth, plane);
                            matmul::multiply(weight, image, target, plane, bias);
                            continue;
                        }
                        for first_row in (0..out_h).step_by(rows_per_block) {
                            let columns = rows_per_block.min(out_h - first_row) * out_w;
                            cols.resize(depth * columns, 0.0);
                            cols.par_chunks_mut(columns)
                                .enumerate()
                                .for_each(|(tap, row)| {
                                    geometry.unfold_range(image, tap, first_row * out_w, row)
                                });
                            let cols = MatrixRef::row_major(&cols, depth, columns);
                            let target = &mut target[first_row * out_w..];
                            matmul::multiply(weight, cols, target, plane, bias);
                        }
                    }
                })
            })??;
        }
        Tensor::from_vec(out, (batch, out_channels, out_h, out_w), &Device::Cpu)
    }

    /// The weight rounded to bf16 and paired, made on first use.
    #[cfg(target_arch = "x86_64")]
    fn bf16_weight(&self, rows: usize, depth: usize) -> Result<&PairedRows> {
        if let Some(paired) = self.bf16_weight.get() {
            return Ok(paired);
        }
        let values = values_in_f32(&self.weight)?;
        Ok(self
            .bf16_weight
            .get_or_init(|| PairedRows::new(&values, rows, depth)))
    }
}

/// The shapes an unfolding needs.
struct Geometry {
    height: usize,
    width: usize,
    kernel_h: usize,
    kernel_w: usize,
    pad: usize,
    stride: usize,
    out_w: usize,
}

impl Geometry {
    /// Fills `out` with the input under kernel tap `tap` = (channel, ky, kx) for the output
    /// positions `first..first + out.len()` (row-major over the output image); 0 where the
    /// tap falls on the padding.
    fn unfold_range<T: Copy + Default>(
        &self,
        image: &[T],
        tap: usize,
        first: usize,
        out: &mut [T],
    ) {
        let taps_per_channel = self.kernel_h * self.kernel_w;
        let channel = tap / taps_per_channel;
        let ky = (tap % taps_per_channel) / self.kernel_w;
        let kx = tap % self.kernel_w;
        let plane = &image[channel * self.height * self.width..][..self.height * self.width];
        let mut written = 0;
        while written < out.len() {
            let position = first + written;
            let (oy, first_x) = (position / self.out_w, position % self.out_w);
            let len = (self.out_w - first_x).min(out.len() - written);
            let target = &mut out[written..written + len];
            written += len;
            let iy = oy * self.stride + ky;
            if iy < self.pad || iy - self.pad >= self.height {
                target.fill(T::default());
                continue;
            }
            let source = &plane[(iy - self.pad) * self.width..][..self.width];
            if self.stride == 1 {
                // Output columns whose input column ox + kx - pad lies inside the image.
                let inside_from = self.pad.saturating_sub(kx).max(first_x);
                let inside_to = (self.width + self.pad)
                    .saturating_sub(kx)
                    .min(first_x + len)
                    .max(inside_from);
                let (before, rest) = target.split_at_mut(inside_from - first_x);
                let (inside, after) = rest.split_at_mut(inside_to - inside_from);
                before.fill(T::default());
                after.fill(T::default());
                let start = inside_from + kx - self.pad;
                inside.copy_from_slice(&source[start..start + inside.len()]);
            } else {
                for (i, value) in target.iter_mut().enumerate() {
                    let ix = (first_x + i) * self.stride + kx;
                    *value = if ix >= self.pad && ix - self.pad < self.width {
                        source[ix - self.pad]
                    } else {
                        T::default()
                    };
                }
            }
        }
    }
}

impl Module for Conv2d {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        crate::kernels::profile::measure("convolution", xs.device(), || self.dispatch(xs))
    }
}

impl Conv2d {
    fn dispatch(&self, xs: &Tensor) -> Result<Tensor> {
        if self.fast_path_applies(xs) {
            return self.cpu_forward(xs, COLUMN_BLOCK_VALUES, cpu_arithmetic());
        }
        #[cfg(feature = "cudnn")]
        if self.cudnn_applies(xs) {
            return self.cuda_forward(xs);
        }
        self.candle_forward(xs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(
        batch: usize,
        channels: usize,
        size: (usize, usize),
        out: usize,
        kernel: usize,
        config: Conv2dConfig,
        block_values: usize,
    ) {
        // Seeded values: an unseeded draw made the f32 tolerance fail now and then on the
        // widest case's tails.
        let device = Device::Cpu;
        let values = |shape: &[usize], seed: u32| {
            let count = shape.iter().product();
            Tensor::from_vec(crate::kernels::test_values(count, seed), shape, &device).unwrap()
        };
        let xs = values(&[batch, channels, size.0, size.1], 1);
        let weight = values(&[out, channels, kernel, kernel], 2);
        let bias = values(&[out], 3);
        let conv = Conv2d::new(weight, Some(bias), config);
        let ours = conv
            .cpu_forward(&xs, block_values, CpuArithmetic::F32)
            .unwrap();
        let reference = conv.candle_forward(&xs).unwrap();
        assert_eq!(ours.dims(), reference.dims());
        let diff = crate::kernels::max_abs_diff(&ours, &reference);
        assert!(diff < 1e-3, "max diff {diff} for k{kernel} {config:?}");
        if crate::kernels::precision::bf16_available() {
            // bf16 keeps 8 bits of mantissa: sums of `depth` products of N(0,1) values are off
            // by about 2⁻⁸·√depth; an error in the unfolding would be of the order of the sums.
            let ours = conv
                .cpu_forward(&xs, block_values, CpuArithmetic::Bf16)
                .unwrap();
            let diff = crate::kernels::max_abs_diff(&ours, &reference);
            let depth = (channels * kernel * kernel) as f32;
            assert!(
                diff < 0.03 * depth.sqrt(),
                "bf16 max diff {diff} for k{kernel} {config:?}"
            );
        }
    }

    #[test]
    fn matches_candle_for_every_shape_the_models_use() {
        let pad1 = Conv2dConfig {
            padding: 1,
            ..Default::default()
        };
        let down = Conv2dConfig {
            padding: 1,
            stride: 2,
            ..Default::default()
        };
        let down_unpadded = Conv2dConfig {
            stride: 2,
            ..Default::default()
        };
        let block = COLUMN_BLOCK_VALUES;
        check(2, 5, (9, 7), 6, 3, pad1, block);
        check(1, 4, (8, 8), 3, 3, down, block);
        check(1, 4, (9, 9), 3, 3, down_unpadded, block);
        check(2, 6, (5, 11), 4, 1, Conv2dConfig::default(), block);
        check(1, 3, (4, 4), 2, 3, Conv2dConfig::default(), block);
        // Large enough for Winograd's F(4×4, 3×3) in f32 (from 16² up), sums of 576 products.
        check(2, 64, (24, 20), 32, 3, pad1, block);
    }

    #[test]
    fn inputs_are_unfolded_block_by_block() {
        let pad1 = Conv2dConfig {
            padding: 1,
            ..Default::default()
        };
        let unpadded = Conv2dConfig::default();
        // 4 channels · 9 taps · 8 columns = 288 values per output row: blocks of 2 rows, the
        // last one short. (Padded 3×3 convolutions in f32 go through Winograd's algorithm,
        // which has its own blocks and tests; bf16 unfolds them too.)
        check(2, 4, (11, 10), 3, 3, unpadded, 600);
        check(2, 4, (11, 10), 3, 3, pad1, 800);
        // A block smaller than one row still takes one row.
        check(1, 4, (5, 10), 3, 3, unpadded, 10);
        check(1, 4, (5, 10), 3, 3, pad1, 10);
    }
}
