//! Pillow's `Image.resize(size, Image.LANCZOS, box)` for 8-bit images, integer for integer:
//! diffusers' `VaeImageProcessor` resizes init images and masks with it, so an image or mask
//! of another size gives the same pixels here as there. `Image.BICUBIC` too, which
//! transformers' PIL image processors (Depth Anything's) resize with.
//!
//! Pillow (`libImaging/Resample.c`) resamples in two separable passes, horizontal first, each
//! rounding to 8 bits; coefficients are normalised doubles converted to 22-bit fixed point.

const PRECISION_BITS: u32 = 32 - 8 - 2;
const LANCZOS_SUPPORT: f64 = 3.0;

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let x = x * std::f64::consts::PI;
        x.sin() / x
    }
}

/// Pillow's resampling filters used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    Lanczos,
    /// Keys' cubic with `a = -0.5`, support 2.
    Bicubic,
}

impl Filter {
    fn support(self) -> f64 {
        match self {
            Self::Lanczos => LANCZOS_SUPPORT,
            Self::Bicubic => 2.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        match self {
            Self::Lanczos => lanczos(x),
            Self::Bicubic => bicubic(x),
        }
    }
}

/// Pillow's `bicubic_filter`.
fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

fn lanczos(x: f64) -> f64 {
    if (-LANCZOS_SUPPORT..LANCZOS_SUPPORT).contains(&x) {
        sinc(x) * sinc(x / 3.0)
    } else {
        0.0
    }
}

/// For each output position: the first input index and the fixed-point weights from there.
struct Coefficients {
    starts: Vec<usize>,
    weights: Vec<Vec<i32>>,
}

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for `in_size` inputs, of which the
/// span `in0..in1` maps onto `out_size` outputs.
fn coefficients(
    filter: Filter,
    in_size: usize,
    in0: f64,
    in1: f64,
    out_size: usize,
) -> Coefficients {
    let scale = (in1 - in0) / out_size as f64;
    let filter_scale = scale.max(1.0);
    let support = filter.support() * filter_scale;
    let mut starts = Vec::with_capacity(out_size);
    let mut weights = Vec::with_capacity(out_size);
    for xx in 0..out_size {
        let center = in0 + (xx as f64 + 0.5) * scale;
        // C's `(int)` truncates toward zero; the clamps make that the same as flooring here.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64)
            .min(in_size as i64)
            .max(xmin as i64) as usize;
        let raw: Vec<f64> = (xmin..xmax)
            .map(|x| filter.weight((x as f64 - center + 0.5) / filter_scale))
            .collect();
        let total: f64 = raw.iter().sum();
        let fixed = raw
            .iter()
            .map(|&w| {
                let w = if total != 0.0 { w / total } else { w };
                let scaled = w * (1u32 << PRECISION_BITS) as f64;
                // `(int)(±0.5 + w)`: rounds half away from zero.
                if w < 0.0 {
                    (scaled - 0.5) as i32
                } else {
                    (scaled + 0.5) as i32
                }
            })
            .collect();
        starts.push(xmin);
        weights.push(fixed);
    }
    Coefficients { starts, weights }
}

fn clip8(sum: i64) -> u8 {
    (sum >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes an interleaved 8-bit image (`channels` bytes per pixel) whose source region is
/// `region` = (left, top, right, bottom) in pixels, as Pillow's `resize(size, LANCZOS, box)`.
pub fn resize_lanczos_region(
    pixels: &[u8],
    width: usize,
    height: usize,
    channels: usize,
    out_width: usize,
    out_height: usize,
    region: [f64; 4],
) -> Vec<u8> {
    resize_region(
        Filter::Lanczos,
        pixels,
        width,
        height,
        channels,
        (out_width, out_height),
        region,
    )
}

/// As [`resize_lanczos_region`] with another of Pillow's filters.
pub fn resize_region(
    filter: Filter,
    pixels: &[u8],
    width: usize,
    height: usize,
    channels: usize,
    (out_width, out_height): (usize, usize),
    region: [f64; 4],
) -> Vec<u8> {
    debug_assert_eq!(pixels.len(), width * height * channels);
    let [left, top, right, bottom] = region;
    let full = left == 0.0 && top == 0.0 && right == width as f64 && bottom == height as f64;
    if full && out_width == width && out_height == height {
        return pixels.to_vec();
    }
    let need_horizontal = out_width != width || left != 0.0 || right != out_width as f64;
    let need_vertical = out_height != height || top != 0.0 || bottom != out_height as f64;
    let horizontal = coefficients(filter, width, left, right, out_width);
    let vertical = coefficients(filter, height, top, bottom, out_height);
    let half = 1i64 << (PRECISION_BITS - 1);

    // Only the rows the vertical pass reads are resampled horizontally.
    let (mut rows, mut row_width, mut row_count, mut first_row) =
        (pixels.to_vec(), width, height, 0);
    if need_horizontal {
        let first = vertical.starts[0];
        let last = vertical.starts[out_height - 1] + vertical.weights[out_height - 1].len();
        let mut out = vec![0u8; (last - first) * out_width * channels];
        for y in first..last {
            let row = &pixels[y * width * channels..(y + 1) * width * channels];
            let out_row = &mut out[(y - first) * out_width * channels..][..out_width * channels];
            for (xx, (start, weights)) in horizontal
                .starts
                .iter()
                .zip(&horizontal.weights)
                .enumerate()
            {
                for c in 0..channels {
                    let mut sum = half;
                    for (k, &w) in weights.iter().enumerate() {
                        sum += row[(start + k) * channels + c] as i64 * w as i64;
                    }
                    out_row[xx * channels + c] = clip8(sum);
                }
            }
        }
        rows = out;
        row_width = out_width;
        row_count = last - first;
        first_row = first;
    }
    if !need_vertical {
        debug_assert_eq!(row_count, out_height);
        return rows;
    }
    let mut out = vec![0u8; row_width * out_height * channels];
    for (yy, (start, weights)) in vertical.starts.iter().zip(&vertical.weights).enumerate() {
        let start = start - first_row;
        for x in 0..row_width * channels {
            let mut sum = half;
            for (k, &w) in weights.iter().enumerate() {
                sum += rows[(start + k) * row_width * channels + x] as i64 * w as i64;
            }
            out[yy * row_width * channels + x] = clip8(sum);
        }
    }
    out
}

/// Resizes a whole interleaved 8-bit image as Pillow's `resize(size, LANCZOS)`.
pub fn resize_lanczos(
    pixels: &[u8],
    width: usize,
    height: usize,
    channels: usize,
    out_width: usize,
    out_height: usize,
) -> Vec<u8> {
    resize_lanczos_region(
        pixels,
        width,
        height,
        channels,
        out_width,
        out_height,
        [0.0, 0.0, width as f64, height as f64],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_constant_image_stays_constant_at_any_size() {
        let pixels = vec![77u8; 13 * 7 * 3];
        for (w, h) in [(5, 3), (26, 14), (13, 20), (1, 1)] {
            let out = resize_lanczos(&pixels, 13, 7, 3, w, h);
            assert_eq!(out.len(), w * h * 3);
            assert!(out.iter().all(|&p| p == 77), "{w}×{h}");
        }
    }

    #[test]
    fn the_same_size_is_a_copy_and_weights_sum_to_one() {
        let pixels: Vec<u8> = (0..40u8).collect();
        assert_eq!(resize_lanczos(&pixels, 8, 5, 1, 8, 5), pixels);
        let c = coefficients(Filter::Lanczos, 100, 0.0, 100.0, 37);
        for weights in &c.weights {
            let sum: i64 = weights.iter().map(|&w| w as i64).sum();
            assert!(
                (sum - (1 << PRECISION_BITS)).abs() <= weights.len() as i64,
                "{sum}"
            );
        }
    }
}
