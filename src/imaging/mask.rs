//! Mask work for inpainting: the crop around a mask that "inpaint only masked" works in
//! (diffusers' `get_crop_region`, itself A1111's), fitting a crop to the model's size and
//! back (`_resize_and_fill` / `_resize_and_crop`), pasting a result over the original through
//! the mask (`apply_overlay`), blurring a mask, A1111's "fill" of the masked area, and the
//! wider canvas of outpainting.

use super::resize::resize_lanczos_region;
use super::{GrayImage, RgbImage};

/// `(left, top, right, bottom)` in pixels.
pub type Region = [usize; 4];

/// The smallest region holding every non-zero mask pixel, grown by `padding` on each side
/// (within the image) and then to the aspect ratio of `width`×`height` — diffusers'
/// `VaeImageProcessor.get_crop_region`, step for step. `None` for an empty mask.
pub fn crop_region(
    mask: &GrayImage,
    width: usize,
    height: usize,
    padding: usize,
) -> Option<Region> {
    let (w, h) = (mask.width as i64, mask.height as i64);
    let column_used = |x: i64| (0..h).any(|y| mask.pixels[(y * w + x) as usize] != 0);
    let row_used = |y: i64| (0..w).any(|x| mask.pixels[(y * w + x) as usize] != 0);
    let left = (0..w).find(|&x| column_used(x))?;
    let right = (0..w).rev().find(|&x| column_used(x))? + 1;
    let top = (0..h).find(|&y| row_used(y))?;
    let bottom = (0..h).rev().find(|&y| row_used(y))? + 1;
    let pad = padding as i64;
    let (mut x1, mut y1) = ((left - pad).max(0), (top - pad).max(0));
    let (mut x2, mut y2) = ((right + pad).min(w), (bottom + pad).min(h));

    let ratio_crop = (x2 - x1) as f64 / (y2 - y1) as f64;
    let ratio_processing = width as f64 / height as f64;
    if ratio_crop > ratio_processing {
        let desired_height = (x2 - x1) as f64 / ratio_processing;
        (y1, y2) = grow_span(y1, y2, desired_height, h);
    } else {
        let desired_width = (y2 - y1) as f64 * ratio_processing;
        (x1, x2) = grow_span(x1, x2, desired_width, w);
    }
    Some([x1 as usize, y1 as usize, x2 as usize, y2 as usize])
}

/// `start..end` grown to `desired` (split as evenly as Python's `//` splits it), moved back
/// inside `0..limit`: one axis of `get_crop_region`'s step 3.
fn grow_span(mut start: i64, mut end: i64, desired: f64, limit: i64) -> (i64, i64) {
    // Python's `//` floors; `int()` truncates toward zero.
    let diff = (desired - (end - start) as f64) as i64;
    start -= diff.div_euclid(2);
    end += diff - diff.div_euclid(2);
    if end >= limit {
        let over = end - limit;
        end -= over;
        start -= over;
    }
    if start < 0 {
        end -= start;
        start = 0;
    }
    (start, end.min(limit))
}

/// An interleaved 8-bit image, for the fit helpers shared by RGB images and masks.
struct Plane<'a> {
    pixels: &'a [u8],
    width: usize,
    height: usize,
    channels: usize,
}

impl Plane<'_> {
    fn resize_box(&self, out_width: usize, out_height: usize, region: [f64; 4]) -> Vec<u8> {
        resize_lanczos_region(
            self.pixels,
            self.width,
            self.height,
            self.channels,
            out_width,
            out_height,
            region,
        )
    }

    fn full(&self) -> [f64; 4] {
        [0.0, 0.0, self.width as f64, self.height as f64]
    }
}

/// Copies `source` (`sw`×`sh`) into `target` (`tw` wide) at `(x, y)`, clipped to the target.
#[allow(clippy::too_many_arguments)]
fn paste(
    target: &mut [u8],
    tw: usize,
    th: usize,
    source: &[u8],
    sw: usize,
    sh: usize,
    channels: usize,
    (x, y): (i64, i64),
) {
    for sy in 0..sh as i64 {
        let ty = y + sy;
        if ty < 0 || ty >= th as i64 {
            continue;
        }
        for sx in 0..sw as i64 {
            let tx = x + sx;
            if tx < 0 || tx >= tw as i64 {
                continue;
            }
            let s = (sy as usize * sw + sx as usize) * channels;
            let t = (ty as usize * tw + tx as usize) * channels;
            target[t..t + channels].copy_from_slice(&source[s..s + channels]);
        }
    }
}

/// diffusers' `_resize_and_fill`: scaled to fit inside `width`×`height` keeping the aspect
/// ratio, centred, and the bands left over filled by stretching the nearest edge.
fn resize_and_fill(plane: &Plane, width: usize, height: usize) -> Vec<u8> {
    let c = plane.channels;
    let ratio = width as f64 / height as f64;
    let src_ratio = plane.width as f64 / plane.height as f64;
    let src_w = if ratio < src_ratio {
        width
    } else {
        plane.width * height / plane.height
    };
    let src_h = if ratio >= src_ratio {
        height
    } else {
        plane.height * width / plane.width
    };
    let resized = plane.resize_box(src_w, src_h, plane.full());
    let scaled = Plane {
        pixels: &resized,
        width: src_w,
        height: src_h,
        channels: c,
    };
    let mut out = vec![0u8; width * height * c];
    let at = (
        (width / 2) as i64 - (src_w / 2) as i64,
        (height / 2) as i64 - (src_h / 2) as i64,
    );
    paste(&mut out, width, height, &resized, src_w, src_h, c, at);
    if ratio < src_ratio {
        let fill = (height / 2).saturating_sub(src_h / 2);
        if fill > 0 {
            let top = scaled.resize_box(width, fill, [0.0, 0.0, width as f64, 0.0]);
            paste(&mut out, width, height, &top, width, fill, c, (0, 0));
            let edge = src_h as f64;
            let bottom = scaled.resize_box(width, fill, [0.0, edge, width as f64, edge]);
            paste(
                &mut out,
                width,
                height,
                &bottom,
                width,
                fill,
                c,
                (0, (fill + src_h) as i64),
            );
        }
    } else if ratio > src_ratio {
        let fill = (width / 2).saturating_sub(src_w / 2);
        if fill > 0 {
            let left = scaled.resize_box(fill, height, [0.0, 0.0, 0.0, height as f64]);
            paste(&mut out, width, height, &left, fill, height, c, (0, 0));
            let edge = src_w as f64;
            let right = scaled.resize_box(fill, height, [edge, 0.0, edge, height as f64]);
            paste(
                &mut out,
                width,
                height,
                &right,
                fill,
                height,
                c,
                ((fill + src_w) as i64, 0),
            );
        }
    }
    out
}

/// diffusers' `_resize_and_crop`: scaled to cover `width`×`height`, centred, the excess cut.
fn resize_and_crop(plane: &Plane, width: usize, height: usize) -> Vec<u8> {
    let ratio = width as f64 / height as f64;
    let src_ratio = plane.width as f64 / plane.height as f64;
    let src_w = if ratio > src_ratio {
        width
    } else {
        plane.width * height / plane.height
    };
    let src_h = if ratio <= src_ratio {
        height
    } else {
        plane.height * width / plane.width
    };
    let resized = plane.resize_box(src_w, src_h, plane.full());
    let mut out = vec![0u8; width * height * plane.channels];
    let at = (
        (width / 2) as i64 - (src_w / 2) as i64,
        (height / 2) as i64 - (src_h / 2) as i64,
    );
    paste(
        &mut out,
        width,
        height,
        &resized,
        src_w,
        src_h,
        plane.channels,
        at,
    );
    out
}

/// `region` of `image`, fitted to `width`×`height` as diffusers' preprocessing with
/// `padding_mask_crop` does (crop, then `resize_mode="fill"`).
pub fn crop_and_fit(image: &RgbImage, region: Region, width: usize, height: usize) -> RgbImage {
    let crop = image.cropped(region);
    let plane = Plane {
        pixels: &crop.pixels,
        width: crop.width,
        height: crop.height,
        channels: 3,
    };
    RgbImage {
        width,
        height,
        pixels: resize_and_fill(&plane, width, height),
    }
}

/// As [`crop_and_fit`], for a mask.
pub fn crop_and_fit_mask(
    mask: &GrayImage,
    region: Region,
    width: usize,
    height: usize,
) -> GrayImage {
    let crop = mask.cropped(region);
    let plane = Plane {
        pixels: &crop.pixels,
        width: crop.width,
        height: crop.height,
        channels: 1,
    };
    GrayImage {
        width,
        height,
        pixels: resize_and_fill(&plane, width, height),
    }
}

/// The generated `result` over `original` through `mask` (255 = the result, 0 = the
/// original, between = a blend): diffusers' `apply_overlay`, A1111's paste-back. With a
/// `region`, the result is first fitted back onto that part of the original.
pub fn overlay(
    original: &RgbImage,
    mask: &GrayImage,
    result: &RgbImage,
    region: Option<Region>,
) -> RgbImage {
    let (width, height) = (original.width, original.height);
    // What the result covers, at the original's size, and how opaque it is there.
    let mut placed = vec![0u8; width * height * 3];
    let mut covered = vec![0u8; width * height];
    match region {
        Some([x1, y1, x2, y2]) => {
            let plane = Plane {
                pixels: &result.pixels,
                width: result.width,
                height: result.height,
                channels: 3,
            };
            let fitted = resize_and_crop(&plane, x2 - x1, y2 - y1);
            paste(
                &mut placed,
                width,
                height,
                &fitted,
                x2 - x1,
                y2 - y1,
                3,
                (x1 as i64, y1 as i64),
            );
            for y in y1..y2 {
                covered[y * width + x1..y * width + x2].fill(255);
            }
        }
        None => {
            let fitted = result.resized(width, height);
            placed = fitted.pixels;
            covered.fill(255);
        }
    }
    let mut pixels = vec![0u8; width * height * 3];
    for i in 0..width * height {
        let keep = (255 - mask.pixels[i]) as f32 / 255.0;
        let under = covered[i] as f32 / 255.0;
        // The original (alpha `keep`) composited over the placed result (alpha `under`).
        let alpha = keep + under * (1.0 - keep);
        for c in 0..3 {
            let top = original.pixels[i * 3 + c] as f32 * keep;
            let bottom = placed[i * 3 + c] as f32 * under * (1.0 - keep);
            let value = if alpha > 0.0 {
                (top + bottom) / alpha
            } else {
                0.0
            };
            pixels[i * 3 + c] = value.round().clamp(0.0, 255.0) as u8;
        }
    }
    RgbImage {
        width,
        height,
        pixels,
    }
}

/// A Gaussian blur of `sigma` pixels over interleaved float channels, as three box blurs
/// (the approximation Pillow's `GaussianBlur` uses), edges extended.
fn gaussian_blur(values: &mut [f32], width: usize, height: usize, channels: usize, sigma: f32) {
    if sigma <= 0.0 || width == 0 || height == 0 {
        return;
    }
    const PASSES: usize = 3;
    // The box radius whose three passes have the variance of the Gaussian.
    let radius = ((12.0 * sigma * sigma / PASSES as f32 + 1.0).sqrt() - 1.0) / 2.0;
    let radius = radius.round().max(1.0) as usize;
    let mut line = Vec::new();
    for _ in 0..PASSES {
        for y in 0..height {
            line.clear();
            line.extend((0..width).flat_map(|x| {
                let at = (y * width + x) * channels;
                values[at..at + channels].to_vec()
            }));
            box_blur_line(&line, width, channels, radius, |x, c, v| {
                values[(y * width + x) * channels + c] = v
            });
        }
        for x in 0..width {
            line.clear();
            line.extend((0..height).flat_map(|y| {
                let at = (y * width + x) * channels;
                values[at..at + channels].to_vec()
            }));
            box_blur_line(&line, height, channels, radius, |y, c, v| {
                values[(y * width + x) * channels + c] = v
            });
        }
    }
}

/// One box-blur pass along a line of `len` pixels; the edge pixels extend past the ends.
fn box_blur_line(
    line: &[f32],
    len: usize,
    channels: usize,
    radius: usize,
    mut out: impl FnMut(usize, usize, f32),
) {
    let at = |i: i64, c: usize| line[(i.clamp(0, len as i64 - 1) as usize) * channels + c];
    let window = (2 * radius + 1) as f32;
    for c in 0..channels {
        let mut sum: f32 = (-(radius as i64)..=radius as i64).map(|i| at(i, c)).sum();
        for i in 0..len as i64 {
            out(i as usize, c, sum / window);
            sum += at(i + radius as i64 + 1, c) - at(i - radius as i64, c);
        }
    }
}

/// The mask blurred by `pixels` (A1111's "Mask blur"; 0 leaves it as it is).
pub fn blur_mask(mask: &GrayImage, pixels: usize) -> GrayImage {
    let mut values: Vec<f32> = mask.pixels.iter().map(|&p| p as f32).collect();
    gaussian_blur(&mut values, mask.width, mask.height, 1, pixels as f32);
    GrayImage {
        width: mask.width,
        height: mask.height,
        pixels: values
            .iter()
            .map(|v| v.round().clamp(0.0, 255.0) as u8)
            .collect(),
    }
}

/// A1111's "fill" masked content: the masked area painted with the colours around it,
/// blurred ever less (A1111 blurs the unmasked image at radii 256 … 0 and stacks the
/// results, so far pixels get the average colour and near ones their neighbours').
pub fn fill_masked(image: &RgbImage, mask: &GrayImage) -> RgbImage {
    let (width, height) = (image.width, image.height);
    // Premultiplied RGBA of the kept pixels.
    let kept: Vec<f32> = (0..width * height)
        .flat_map(|i| {
            let alpha = (255 - mask.pixels[i]) as f32 / 255.0;
            let p = &image.pixels[i * 3..i * 3 + 3];
            [
                p[0] as f32 * alpha,
                p[1] as f32 * alpha,
                p[2] as f32 * alpha,
                alpha,
            ]
        })
        .collect();
    let mut result = vec![0f32; width * height * 4];
    for (radius, repeats) in [
        (256.0, 1),
        (64.0, 1),
        (16.0, 2),
        (4.0, 4),
        (2.0, 2),
        (0.0, 1),
    ] {
        let mut blurred = kept.clone();
        gaussian_blur(&mut blurred, width, height, 4, radius);
        for _ in 0..repeats {
            // "over" in premultiplied alpha.
            for (dst, src) in result.chunks_exact_mut(4).zip(blurred.chunks_exact(4)) {
                let keep = 1.0 - src[3];
                for c in 0..4 {
                    dst[c] = src[c] + dst[c] * keep;
                }
            }
        }
    }
    let pixels = result
        .chunks_exact(4)
        .flat_map(|p| {
            let alpha = p[3].max(1e-6);
            [0, 1, 2].map(|c| (p[c] / alpha).round().clamp(0.0, 255.0) as u8)
        })
        .collect();
    RgbImage {
        width,
        height,
        pixels,
    }
}

/// The canvas grown by `[left, top, right, bottom]` pixels for outpainting: the new area
/// filled from the picture's edges ([`fill_masked`]) and masked (with what `mask` already
/// marked, if given).
pub fn extend_canvas(
    image: &RgbImage,
    mask: Option<&GrayImage>,
    [left, top, right, bottom]: [usize; 4],
) -> (RgbImage, GrayImage) {
    let width = image.width + left + right;
    let height = image.height + top + bottom;
    let mut pixels = vec![0u8; width * height * 3];
    paste(
        &mut pixels,
        width,
        height,
        &image.pixels,
        image.width,
        image.height,
        3,
        (left as i64, top as i64),
    );
    let mut grown = GrayImage::filled(width, height, 255);
    let inner = mask
        .map(|m| m.pixels.clone())
        .unwrap_or_else(|| vec![0; image.width * image.height]);
    paste(
        &mut grown.pixels,
        width,
        height,
        &inner,
        image.width,
        image.height,
        1,
        (left as i64, top as i64),
    );
    let canvas = RgbImage {
        width,
        height,
        pixels,
    };
    let filled = fill_masked(&canvas, &grown);
    (filled, grown)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask_with(width: usize, height: usize, region: Region) -> GrayImage {
        let mut mask = GrayImage::filled(width, height, 0);
        for y in region[1]..region[3] {
            for x in region[0]..region[2] {
                mask.pixels[y * width + x] = 255;
            }
        }
        mask
    }

    #[test]
    fn crop_region_pads_and_matches_the_aspect_ratio() {
        let mask = mask_with(100, 80, [40, 30, 50, 40]);
        assert_eq!(crop_region(&mask, 64, 64, 0), Some([40, 30, 50, 40]));
        // 10×10 padded by 5 → 20×20, then widened to 2:1.
        assert_eq!(crop_region(&mask, 128, 64, 5), Some([25, 25, 65, 45]));
        assert_eq!(crop_region(&GrayImage::filled(8, 8, 0), 64, 64, 4), None);
    }

    #[test]
    fn overlay_keeps_the_unmasked_original_exactly() {
        let original = RgbImage::filled(16, 16, [10, 20, 30]);
        let result = RgbImage::filled(16, 16, [200, 100, 50]);
        let mask = mask_with(16, 16, [4, 4, 8, 8]);
        let out = overlay(&original, &mask, &result, None);
        assert_eq!(&out.pixels[0..3], &[10, 20, 30]);
        let inside = (5 * 16 + 5) * 3;
        assert_eq!(&out.pixels[inside..inside + 3], &[200, 100, 50]);
    }

    #[test]
    fn blur_softens_an_edge_and_keeps_flat_areas() {
        let mask = mask_with(32, 32, [0, 0, 16, 32]);
        let blurred = blur_mask(&mask, 4);
        assert_eq!(blurred.pixels[16 * 32], 255);
        assert_eq!(blurred.pixels[16 * 32 + 31], 0);
        let edge = blurred.pixels[16 * 32 + 16];
        assert!(edge > 20 && edge < 235, "{edge}");
    }

    #[test]
    fn outpainting_masks_exactly_the_new_area_and_fills_it_from_the_picture() {
        let image = RgbImage::filled(8, 8, [90, 60, 30]);
        let (canvas, mask) = extend_canvas(&image, None, [8, 0, 0, 16]);
        assert_eq!((canvas.width, canvas.height), (16, 24));
        assert_eq!(mask.pixels[0], 255);
        assert_eq!(mask.pixels[8], 0);
        assert_eq!(mask.pixels[15 * 16 + 8], 255);
        // A flat picture fills its new area with its own colour.
        assert!(canvas.pixels.chunks(3).all(|p| p == [90, 60, 30]));
    }
}
