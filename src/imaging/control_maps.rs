//! The network-free maps of sd-webui-controlnet besides canny and invert, as that extension
//! makes them with OpenCV (its `scripts/preprocessor/model_free_preprocessors.py`,
//! `scripts/preprocessor/legacy/processor.py` and `annotator/color`), at the picture's own
//! size (the extension's processor resolution set to the picture's shorter side, so its
//! resize is a copy and only its padding to multiples of 64 remains):
//!
//! - `scribble_xdog`: white where a Gaussian blur of σ 5 is brighter than one of σ 0.5 by
//!   more than half the threshold in every channel (dark strokes on a light ground);
//! - `threshold`: white where every channel is above the level;
//! - `t2ia_color_grid`: the picture shrunk 64 times with bicubic interpolation, then
//!   blown back up with nearest-neighbour cells;
//! - `tile_resample`: the picture shrunk by the down sampling rate with OpenCV's
//!   `INTER_AREA` (the generation then resizes it to its size as it does any map);
//! - `blur_gaussian`: OpenCV's 8-bit Gaussian blur, its fixed-point path (which OpenCV
//!   keeps bit-exact across platforms).
//!
//! `tests/fixtures/make_preprocessor_fixtures.py` makes OpenCV's maps for the tests.

use super::RgbImage;

/// A1111's default XDoG threshold, and its slider's range.
pub const XDOG_THRESHOLD: u32 = 32;
pub const XDOG_THRESHOLD_RANGE: std::ops::RangeInclusive<u32> = 1..=64;
/// A1111's default binarization threshold, and its slider's range.
pub const BINARY_THRESHOLD: u32 = 127;
pub const BINARY_THRESHOLD_RANGE: std::ops::RangeInclusive<u32> = 0..=255;
/// A1111's default down sampling rate (leaves the picture as it is), and its slider's range,
/// in hundredths (its slider's step).
pub const TILE_RATE_HUNDREDTHS: u32 = 100;
pub const TILE_RATE_HUNDREDTHS_RANGE: std::ops::RangeInclusive<u32> = 100..=800;
/// A1111's default blur σ, and its slider's range, in hundredths (its slider's step).
pub const BLUR_SIGMA_HUNDREDTHS: u32 = 900;
pub const BLUR_SIGMA_HUNDREDTHS_RANGE: std::ops::RangeInclusive<u32> = 1..=6400;
/// The σ of XDoG's narrow and wide blurs (fixed in the extension).
const XDOG_SIGMAS: (f64, f64) = (0.5, 5.0);
/// The colour grid's cell side at the picture's own size.
const COLOR_CELL: usize = 64;

/// A1111's `scribble_xdog`: 255 on the strokes, 0 elsewhere, in all three channels.
///
/// OpenCV blurs the float32 picture with its own SIMD or IPP summation order; these blurs
/// sum in f64 and round to f32 once, which lands within 1e-4 of OpenCV's values. The map only
/// differs where `255 − min(g2 − g1)` lies that close to an integer at the threshold; the
/// fixtures match pixel for pixel.
pub fn scribble_xdog(image: &RgbImage, threshold: u32) -> RgbImage {
    let padded = padded_to_64(image);
    let (pw, ph) = (padded.width, padded.height);
    let planes: Vec<Vec<f32>> = (0..3)
        .map(|c| {
            padded.pixels[c..]
                .iter()
                .step_by(3)
                .map(|&v| v as f32)
                .collect()
        })
        .collect();
    let narrow: Vec<Vec<f32>> = planes
        .iter()
        .map(|p| gaussian_blur(p, pw, ph, XDOG_SIGMAS.0))
        .collect();
    let wide: Vec<Vec<f32>> = planes
        .iter()
        .map(|p| gaussian_blur(p, pw, ph, XDOG_SIGMAS.1))
        .collect();
    let mut map = RgbImage::filled(image.width, image.height, [0; 3]);
    for y in 0..image.height {
        for x in 0..image.width {
            let i = y * pw + x;
            let least = (0..3)
                .map(|c| wide[c][i] - narrow[c][i])
                .fold(f32::INFINITY, f32::min);
            // numpy's float32 `255 - min`, clipped and truncated to uint8.
            let dog = (255.0 - least).clamp(0.0, 255.0) as u8;
            // The extension's `2 * (255 - dog)` is uint8 arithmetic: it wraps past 255, so a
            // very strong stroke (a difference of 128 or more) can fall below the threshold.
            let strength = (255 - dog).wrapping_mul(2);
            if u32::from(strength) > threshold {
                map.pixels[(y * image.width + x) * 3..][..3].fill(255);
            }
        }
    }
    map
}

/// A1111's `threshold`: 255 where every channel is above `level`, 0 elsewhere.
pub fn threshold(image: &RgbImage, level: u32) -> RgbImage {
    RgbImage {
        width: image.width,
        height: image.height,
        pixels: image
            .pixels
            .chunks_exact(3)
            .flat_map(|rgb| {
                let least = rgb.iter().copied().min().unwrap_or(0);
                [if u32::from(least) > level { 255 } else { 0 }; 3]
            })
            .collect(),
    }
}

/// A1111's `t2ia_color_grid` (module `color`): `width / 64` × `height / 64` bicubic
/// samples (OpenCV's `INTER_CUBIC`, which samples four pixels and does not average a cell),
/// each filling its cell (`INTER_NEAREST`). A side under 64 pixels, where OpenCV refuses the
/// empty size and A1111 fails, gets one cell.
///
/// OpenCV's x86 builds (opencv-python's wheels) hand 8-bit cubic resizes to Intel IPP,
/// which weighs in float32; so does this, with the weights of the exact sample positions,
/// and it matches IPP in all but 1 of 8 646 colours of 301 test pictures (one level, at an
/// exact half). OpenCV without IPP (ARM builds) rounds its own fixed-point weights and
/// differs from IPP, and from this, by one level in ~2% of colours.
pub fn color_grid(image: &RgbImage) -> RgbImage {
    let columns = (image.width / COLOR_CELL).max(1);
    let rows = (image.height / COLOR_CELL).max(1);
    let cells = resize_cubic(image, columns, rows);
    resize_nearest(&cells, image.width, image.height)
}

/// A1111's `tile_resample`: the picture shrunk to `⌊width / rate⌋ × ⌊height / rate⌋` with
/// `cv2.resize(…, INTER_AREA)`; below a rate of 1.1 the picture as it is (as the extension).
/// A side that would shrink to nothing keeps one pixel (OpenCV refuses it, A1111 fails).
pub fn tile_resample(image: &RgbImage, rate: f64) -> RgbImage {
    if rate < 1.1 {
        return image.clone();
    }
    let width = ((image.width as f64 / rate) as usize).max(1);
    let height = ((image.height as f64 / rate) as usize).max(1);
    resize_area(image, width, height)
}

/// `cv2.resize(image, (width, height), interpolation=INTER_AREA)` for a smaller size, as
/// OpenCV's own code computes it (IPP leaves it alone): whole-number scales on both axes sum
/// each block (2×2 rounds half up, the rest multiply by 1/area in float32 and round half to
/// even); other scales weigh source pixels by their overlap in float32, row by row.
fn resize_area(image: &RgbImage, width: usize, height: usize) -> RgbImage {
    let scale_x = 1.0 / (width as f64 / image.width as f64);
    let scale_y = 1.0 / (height as f64 / image.height as f64);
    let (whole_x, whole_y) = (scale_x.round_ties_even(), scale_y.round_ties_even());
    if (scale_x - whole_x).abs() < f64::EPSILON && (scale_y - whole_y).abs() < f64::EPSILON {
        return resize_area_blocks(image, width, height, whole_x as usize, whole_y as usize);
    }
    let across = area_taps(image.width, width, scale_x);
    let down = area_taps(image.height, height, scale_y);
    let mut pixels = vec![0u8; width * height * 3];
    let mut sum = vec![0f32; width * 3];
    let mut current: Option<usize> = None;
    let flush = |pixels: &mut [u8], row: usize, sum: &[f32]| {
        for (out, value) in pixels[row * width * 3..][..width * 3].iter_mut().zip(sum) {
            *out = value.round_ties_even().clamp(0.0, 255.0) as u8;
        }
    };
    for &(dy, sy, beta) in &down {
        let source = &image.pixels[sy * image.width * 3..][..image.width * 3];
        let mut row = vec![0f32; width * 3];
        for &(dx, sx, alpha) in &across {
            for c in 0..3 {
                row[dx * 3 + c] += f32::from(source[sx * 3 + c]) * alpha;
            }
        }
        if current == Some(dy) {
            for (s, r) in sum.iter_mut().zip(&row) {
                *s += beta * r;
            }
        } else {
            if let Some(done) = current {
                flush(&mut pixels, done, &sum);
            }
            for (s, r) in sum.iter_mut().zip(&row) {
                *s = beta * r;
            }
            current = Some(dy);
        }
    }
    if let Some(done) = current {
        flush(&mut pixels, done, &sum);
    }
    RgbImage {
        width,
        height,
        pixels,
    }
}

/// OpenCV's `computeResizeAreaTab`: for each output, the source pixels it covers with their
/// share of its cell, in order (output, source, weight).
fn area_taps(from: usize, to: usize, scale: f64) -> Vec<(usize, usize, f32)> {
    let mut taps = Vec::new();
    for d in 0..to {
        let start = d as f64 * scale;
        let end = start + scale;
        let cell = scale.min(from as f64 - start);
        let last = (end.floor() as usize).min(from - 1);
        let first = (start.ceil() as usize).min(last);
        if first as f64 - start > 1e-3 {
            taps.push((d, first - 1, ((first as f64 - start) / cell) as f32));
        }
        for s in first..last {
            taps.push((d, s, (1.0 / cell) as f32));
        }
        if end - last as f64 > 1e-3 {
            taps.push((
                d,
                last,
                ((end - last as f64).min(1.0).min(cell) / cell) as f32,
            ));
        }
    }
    taps
}

/// OpenCV's `resizeAreaFast_`: each output the mean of its `block_x`×`block_y` block.
fn resize_area_blocks(
    image: &RgbImage,
    width: usize,
    height: usize,
    block_x: usize,
    block_y: usize,
) -> RgbImage {
    let area = block_x * block_y;
    let inverse = 1.0 / area as f32;
    let mut pixels = Vec::with_capacity(width * height * 3);
    for y in 0..height {
        for x in 0..width {
            for c in 0..3 {
                let mut total = 0u32;
                for sy in y * block_y..(y + 1) * block_y {
                    for sx in x * block_x..(x + 1) * block_x {
                        total += u32::from(image.pixels[(sy * image.width + sx) * 3 + c]);
                    }
                }
                // The 2×2 case runs in OpenCV's vector code, which rounds half up.
                let mean = if area == 4 && block_x == 2 {
                    (total + 2) >> 2
                } else {
                    (total as f32 * inverse).round_ties_even() as u32
                };
                pixels.push(mean.min(255) as u8);
            }
        }
    }
    RgbImage {
        width,
        height,
        pixels,
    }
}

/// The extension's padding: the right and bottom edges repeated out to multiples of 64.
fn padded_to_64(image: &RgbImage) -> RgbImage {
    let width = image.width.div_ceil(64) * 64;
    let height = image.height.div_ceil(64) * 64;
    let mut pixels = Vec::with_capacity(width * height * 3);
    for y in 0..height {
        let row = &image.pixels[y.min(image.height - 1) * image.width * 3..][..image.width * 3];
        pixels.extend_from_slice(row);
        let last = &row[row.len() - 3..];
        for _ in image.width..width {
            pixels.extend_from_slice(last);
        }
    }
    RgbImage {
        width,
        height,
        pixels,
    }
}

/// `cv2.getGaussianKernel(n, sigma, CV_32F)` with the `n` that `cv2.GaussianBlur` picks for a
/// float picture and `ksize (0, 0)`: round(8σ + 1), made odd. OpenCV evaluates the Gaussian
/// at doubled offsets and normalises with a reciprocal; so does this, in f64, before the one
/// rounding to f32.
pub fn gaussian_kernel(sigma: f64) -> Vec<f32> {
    let size = ((sigma * 8.0 + 1.0).round_ties_even() as usize) | 1;
    gaussian_kernel_f64(size, sigma)
        .into_iter()
        .map(|k| k as f32)
        .collect()
}

/// OpenCV's `getGaussianKernelBitExact` in f64: `size` taps of σ `sigma`, summing to one.
fn gaussian_kernel_f64(size: usize, sigma: f64) -> Vec<f64> {
    let half = (size - 1) / 2;
    let scale = -0.125 / (sigma * sigma);
    let values: Vec<f64> = (0..half)
        .map(|i| {
            let x = 2 * i as i64 + 1 - size as i64;
            ((x * x) as f64 * scale).exp()
        })
        .collect();
    let sum = values.iter().sum::<f64>() * 2.0 + 1.0;
    let reciprocal = 1.0 / sum;
    let mut kernel = vec![0f64; size];
    for (i, value) in values.iter().enumerate() {
        kernel[i] = value * reciprocal;
        kernel[size - 1 - i] = kernel[i];
    }
    kernel[half] = reciprocal;
    kernel
}

/// A1111's `blur_gaussian`: `cv2.GaussianBlur(picture, (0, 0), sigma)` on the 8-bit picture,
/// as OpenCV's fixed-point path computes it: round(6σ + 1) taps (made odd) in 8-bit fixed
/// point with the rounding error carried outward-in and the centre taking the rest of 256,
/// rows summed into 16 bits, columns into 32, rounded half up; edges mirrored as
/// `BORDER_REFLECT_101`.
pub fn blur_gaussian(image: &RgbImage, sigma: f64) -> RgbImage {
    let size = ((sigma * 6.0 + 1.0).round_ties_even() as usize) | 1;
    if size == 1 {
        return image.clone();
    }
    let kernel = fixed_point_kernel(&gaussian_kernel_f64(size, sigma));
    let radius = size / 2;
    let (width, height) = (image.width, image.height);
    // Each row mirrored out by the radius, so that the taps index it directly.
    let across: Vec<usize> = (-(radius as isize)..(width + radius) as isize)
        .map(|x| reflect_101(x, width))
        .collect();
    let mut padded = vec![0u32; across.len()];
    let mut rows = vec![0u32; width * height * 3];
    for y in 0..height {
        let source = &image.pixels[y * width * 3..][..width * 3];
        for c in 0..3 {
            for (value, &x) in padded.iter_mut().zip(&across) {
                *value = u32::from(source[x * 3 + c]);
            }
            for x in 0..width {
                let centre = x + radius;
                let mut sum = kernel[radius] * padded[centre];
                for k in 1..=radius {
                    sum += kernel[radius + k] * (padded[centre + k] + padded[centre - k]);
                }
                // A ufixedpoint16: the kernel sums to 256, so it never saturates.
                rows[(y * width + x) * 3 + c] = sum.min(u32::from(u16::MAX));
            }
        }
    }
    let down: Vec<usize> = (-(radius as isize)..(height + radius) as isize)
        .map(|y| reflect_101(y, height))
        .collect();
    let mut pixels = vec![0u8; width * height * 3];
    let mut sums = vec![0u64; width * 3];
    for y in 0..height {
        let row = |k: usize| &rows[down[k] * width * 3..][..width * 3];
        for (sum, &centre) in sums.iter_mut().zip(row(y + radius)) {
            *sum = u64::from(kernel[radius]) * u64::from(centre);
        }
        for k in 1..=radius {
            let weight = u64::from(kernel[radius + k]);
            for ((sum, &below), &above) in sums
                .iter_mut()
                .zip(row(y + radius + k))
                .zip(row(y + radius - k))
            {
                *sum += weight * u64::from(below + above);
            }
        }
        for (out, &sum) in pixels[y * width * 3..][..width * 3].iter_mut().zip(&sums) {
            *out = ((sum + (1 << 15)) >> 16).min(255) as u8;
        }
    }
    RgbImage {
        width,
        height,
        pixels,
    }
}

/// OpenCV's `getGaussianKernelFixedPoint_ED` with 8 fraction bits: each outer tap rounded
/// (half to even) after adding the previous tap's rounding error, the centre what is left.
fn fixed_point_kernel(kernel: &[f64]) -> Vec<u32> {
    let half = kernel.len() / 2;
    let mut fixed = vec![0u32; kernel.len()];
    let mut error = 0.0;
    let mut outer = 0u32;
    for i in 0..half {
        let adjusted = kernel[i] * 256.0 + error;
        let rounded = adjusted.round_ties_even();
        error = adjusted - rounded;
        fixed[i] = rounded as u32;
        fixed[kernel.len() - 1 - i] = fixed[i];
        outer += fixed[i];
    }
    fixed[half] = 256 - 2 * outer;
    fixed
}

/// OpenCV's default border (`BORDER_REFLECT_101`): `gfedcb|abcdefgh|gfedcba`.
fn reflect_101(index: isize, len: usize) -> usize {
    if len == 1 {
        return 0;
    }
    let last = len as isize - 1;
    let mut i = index;
    while i < 0 || i > last {
        i = if i < 0 { -i } else { 2 * last - i };
    }
    i as usize
}

/// `cv2.GaussianBlur(plane, (0, 0), sigma)` of one float32 plane: rows, then columns.
fn gaussian_blur(plane: &[f32], width: usize, height: usize, sigma: f64) -> Vec<f32> {
    let kernel: Vec<f64> = gaussian_kernel(sigma).into_iter().map(f64::from).collect();
    let radius = kernel.len() as isize / 2;
    let taps = |len: usize| -> Vec<Vec<usize>> {
        (0..len as isize)
            .map(|at| {
                (-radius..=radius)
                    .map(|offset| reflect_101(at + offset, len))
                    .collect()
            })
            .collect()
    };
    let across = taps(width);
    let mut rows = vec![0f32; width * height];
    for y in 0..height {
        let source = &plane[y * width..][..width];
        for (x, sources) in across.iter().enumerate() {
            let sum: f64 = sources
                .iter()
                .zip(&kernel)
                .map(|(&s, &k)| f64::from(source[s]) * k)
                .sum();
            rows[y * width + x] = sum as f32;
        }
    }
    let down = taps(height);
    let mut blurred = vec![0f32; width * height];
    for (y, sources) in down.iter().enumerate() {
        for x in 0..width {
            let sum: f64 = sources
                .iter()
                .zip(&kernel)
                .map(|(&s, &k)| f64::from(rows[s * width + x]) * k)
                .sum();
            blurred[y * width + x] = sum as f32;
        }
    }
    blurred
}

/// Bicubic weights (a = −0.75, OpenCV's) for a sample `fraction` past its pixel.
fn cubic_weights(fraction: f64) -> [f32; 4] {
    const A: f64 = -0.75;
    let x = fraction;
    let w0 = ((A * (x + 1.0) - 5.0 * A) * (x + 1.0) + 8.0 * A) * (x + 1.0) - 4.0 * A;
    let w1 = ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let w2 = ((A + 2.0) * (1.0 - x) - (A + 3.0)) * (1.0 - x) * (1.0 - x) + 1.0;
    [w0, w1, w2, 1.0 - w0 - w1 - w2].map(|w| w as f32)
}

/// For each of `to` outputs: its four source pixels (clamped to the picture, as OpenCV
/// repeats the edge) and their weights; output `d` samples source position
/// `(d + ½)·from/to − ½`.
fn cubic_taps(from: usize, to: usize) -> Vec<([usize; 4], [f32; 4])> {
    (0..to)
        .map(|d| {
            let position = (d as f64 + 0.5) * from as f64 / to as f64 - 0.5;
            let start = position.floor();
            let weights = cubic_weights(position - start);
            let start = start as isize - 1;
            let sources = [0, 1, 2, 3].map(|k| (start + k).clamp(0, from as isize - 1) as usize);
            (sources, weights)
        })
        .collect()
}

/// `cv2.resize(image, (width, height), interpolation=INTER_CUBIC)`, rows first, in float32.
fn resize_cubic(image: &RgbImage, width: usize, height: usize) -> RgbImage {
    let across = cubic_taps(image.width, width);
    let down = cubic_taps(image.height, height);
    let weigh = |values: [f32; 4], weights: &[f32; 4]| -> f32 {
        values
            .iter()
            .zip(weights)
            .fold(0.0, |sum, (&v, &w)| sum + v * w)
    };
    let mut rows = vec![0f32; image.height * width * 3];
    for y in 0..image.height {
        let source = &image.pixels[y * image.width * 3..][..image.width * 3];
        for (x, (sources, weights)) in across.iter().enumerate() {
            for c in 0..3 {
                let values = sources.map(|s| f32::from(source[s * 3 + c]));
                rows[(y * width + x) * 3 + c] = weigh(values, weights);
            }
        }
    }
    let mut pixels = vec![0u8; width * height * 3];
    for (y, (sources, weights)) in down.iter().enumerate() {
        for i in 0..width * 3 {
            let value = weigh(sources.map(|s| rows[s * width * 3 + i]), weights);
            pixels[y * width * 3 + i] = value.round_ties_even().clamp(0.0, 255.0) as u8;
        }
    }
    RgbImage {
        width,
        height,
        pixels,
    }
}

/// `cv2.resize(image, (width, height), interpolation=INTER_NEAREST)`: output pixel `d` takes
/// source pixel `floor(d · from / to)`.
fn resize_nearest(image: &RgbImage, width: usize, height: usize) -> RgbImage {
    let source_of = |d: usize, from: usize, to: usize| -> usize {
        let step = 1.0 / (to as f64 / from as f64);
        ((d as f64 * step).floor() as usize).min(from - 1)
    };
    let columns: Vec<usize> = (0..width)
        .map(|x| source_of(x, image.width, width))
        .collect();
    let mut pixels = Vec::with_capacity(width * height * 3);
    for y in 0..height {
        let row = source_of(y, image.height, height) * image.width;
        for &x in &columns {
            pixels.extend_from_slice(&image.pixels[(row + x) * 3..][..3]);
        }
    }
    RgbImage {
        width,
        height,
        pixels,
    }
}

/// The pictures and the comparison of `make_preprocessor_fixtures.py`'s maps, shared with
/// [`super::canny`]'s tests.
#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::path::PathBuf;

    fn fixtures() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
    }

    /// A picture under tests/fixtures, as RGB.
    pub(in super::super) fn read_fixture(relative: &str) -> RgbImage {
        read(fixtures().join(relative))
    }

    fn read(path: PathBuf) -> RgbImage {
        let picture = image::open(&path)
            .unwrap_or_else(|err| panic!("{}: {err}", path.display()))
            .to_rgb8();
        RgbImage::from(picture)
    }

    /// The pictures of `make_preprocessor_fixtures.py`, made the same way.
    pub(in super::super) fn pictures() -> Vec<(&'static str, RgbImage)> {
        let init = read(fixtures().join("init_64.png"));
        let lines = read(fixtures().join("control_lines_64.png"));
        let lines = RgbImage {
            pixels: lines.pixels.iter().map(|&v| 255 - v).collect(),
            ..lines
        };
        let sketch = RgbImage {
            pixels: init
                .pixels
                .iter()
                .zip(&lines.pixels)
                .map(|(&a, &b)| a.min(b))
                .collect(),
            ..init.clone()
        };
        let mut tiled = RgbImage::filled(150, 136, [0; 3]);
        for y in 0..136 {
            for x in 0..150 {
                let from = ((y % 64) * 64 + x % 64) * 3;
                tiled.pixels[(y * 150 + x) * 3..][..3]
                    .copy_from_slice(&sketch.pixels[from..from + 3]);
            }
        }
        let mut mosaic = RgbImage::filled(333, 270, [0; 3]);
        for y in 0..270 {
            for x in 0..333 {
                let from = (((5 * y) % 64) * 64 + (7 * x) % 64) * 3;
                mosaic.pixels[(y * 333 + x) * 3..][..3]
                    .copy_from_slice(&init.pixels[from..from + 3]);
            }
        }
        vec![
            ("lines", lines),
            ("sketch", sketch.cropped([0, 0, 50, 37])),
            ("tiled", tiled),
            ("mosaic", mosaic),
        ]
    }

    /// Pixels that differ from OpenCV's map, and how far at most.
    pub(in super::super) fn compare(name: &str, ours: &RgbImage) -> (usize, u8) {
        let reference = read(fixtures().join(format!("preprocessors/{name}.png")));
        assert_eq!(
            (ours.width, ours.height),
            (reference.width, reference.height),
            "{name}"
        );
        let differing = ours
            .pixels
            .iter()
            .zip(&reference.pixels)
            .filter(|(a, b)| a != b)
            .count();
        let furthest = ours
            .pixels
            .iter()
            .zip(&reference.pixels)
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap_or(0);
        (differing, furthest)
    }

    #[test]
    fn gaussian_kernels_are_opencvs_bit_for_bit() {
        let text = std::fs::read_to_string(fixtures().join("preprocessors/kernels.json")).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        let kernels = json["kernels"].as_array().unwrap();
        assert_eq!(kernels.len(), 2);
        for entry in kernels {
            let sigma = entry["sigma"].as_f64().unwrap();
            let ours: Vec<u32> = gaussian_kernel(sigma).iter().map(|k| k.to_bits()).collect();
            let theirs: Vec<u32> = entry["bits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b.as_u64().unwrap() as u32)
                .collect();
            assert_eq!(
                ours.len() as u64,
                entry["size"].as_u64().unwrap(),
                "σ {sigma}"
            );
            assert_eq!(ours, theirs, "σ {sigma}");
        }
    }

    /// XDoG and threshold maps equal OpenCV's exactly: both are 0/255 maps, so one level off
    /// would be a whole pixel wrong.
    #[test]
    fn xdog_and_threshold_maps_equal_sd_webui_controlnets() {
        for (picture, image) in pictures() {
            for t in [32, 8, 60] {
                let name = format!("{picture}_scribble_xdog_{t}");
                assert_eq!(compare(&name, &scribble_xdog(&image, t)), (0, 0), "{name}");
            }
            for level in [127, 0, 200] {
                let name = format!("{picture}_threshold_{level}");
                assert_eq!(compare(&name, &threshold(&image, level)), (0, 0), "{name}");
            }
        }
    }

    /// Exact on the fixtures (made on x86, where OpenCV resizes through IPP); made without
    /// IPP they could differ by a level here and there (see [`color_grid`]).
    #[test]
    fn color_grids_equal_sd_webui_controlnets() {
        for (picture, image) in pictures() {
            if image.width < 64 || image.height < 64 {
                continue;
            }
            let name = format!("{picture}_t2ia_color_grid");
            assert_eq!(compare(&name, &color_grid(&image)), (0, 0), "{name}");
        }
    }

    /// Exact: OpenCV's area resize is its own code (no IPP), reproduced step by step.
    #[test]
    fn tile_resamples_equal_sd_webui_controlnets() {
        for (picture, image) in pictures() {
            if picture == "mosaic" {
                continue;
            }
            for rate in ["2.0", "2.5", "3.7"] {
                let name = format!("{picture}_tile_resample_{rate}");
                let ours = tile_resample(&image, rate.parse().unwrap());
                assert_eq!(compare(&name, &ours), (0, 0), "{name}");
            }
        }
        let image = RgbImage::filled(5, 3, [7; 3]);
        assert_eq!(tile_resample(&image, 1.05), image);
        assert_eq!(tile_resample(&image, 8.0), RgbImage::filled(1, 1, [7; 3]));
    }

    /// Exact: OpenCV's 8-bit Gaussian is its bit-exact fixed-point code, reproduced here.
    #[test]
    fn gaussian_blurs_equal_sd_webui_controlnets() {
        for (picture, image) in pictures() {
            if picture == "mosaic" {
                continue;
            }
            for sigma in ["9.0", "1.5", "0.3"] {
                let name = format!("{picture}_blur_gaussian_{sigma}");
                let ours = blur_gaussian(&image, sigma.parse().unwrap());
                assert_eq!(compare(&name, &ours), (0, 0), "{name}");
            }
        }
        let image = RgbImage::filled(3, 2, [200, 10, 0]);
        assert_eq!(blur_gaussian(&image, 0.01), image, "one tap: a copy");
        assert_eq!(blur_gaussian(&image, 64.0), image, "flat stays flat");
    }

    #[test]
    fn xdog_draws_dark_strokes_and_a_tiny_color_grid_is_one_cell() {
        let mut image = RgbImage::filled(40, 30, [240; 3]);
        for y in 0..30 {
            image.pixels[(y * 40 + 20) * 3..][..3].fill(10);
        }
        let map = scribble_xdog(&image, XDOG_THRESHOLD);
        assert_eq!((map.width, map.height), (40, 30));
        assert_eq!(map.pixels[(15 * 40 + 20) * 3], 255, "on the stroke");
        assert_eq!(map.pixels[(15 * 40 + 5) * 3], 0, "on the ground");
        let grid = color_grid(&RgbImage::filled(20, 10, [1, 2, 3]));
        assert_eq!(grid, RgbImage::filled(20, 10, [1, 2, 3]));
    }
}
