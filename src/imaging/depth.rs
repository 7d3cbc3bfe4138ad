//! The pixel work around a depth network (Depth Anything): the input as transformers' PIL
//! `DPTImageProcessor` makes it for `depth-anything/Depth-Anything-V2-Small-hf`
//! (`keep_aspect_ratio`, `ensure_multiple_of` 14, size 518, Pillow's bicubic on the 8-bit
//! picture, then /255 and ImageNet's mean and std), and the map as sd-webui-controlnet's
//! `depth_anything_v2` preprocessor makes it from the predicted depth (resized bilinearly
//! back to the picture's size, min–max to 0–255, truncated to 8 bits, grey RGB).

use super::resize::{resize_region, Filter};
use super::{GrayImage, RgbImage};

/// How the processor sizes and normalises its input (`preprocessor_config.json`).
#[derive(Debug, Clone, PartialEq)]
pub struct DepthInput {
    pub height: usize,
    pub width: usize,
    pub keep_aspect_ratio: bool,
    pub ensure_multiple_of: usize,
    pub mean: [f64; 3],
    pub std: [f64; 3],
}

impl Default for DepthInput {
    /// Depth-Anything-V2-Small-hf's settings.
    fn default() -> Self {
        Self {
            height: 518,
            width: 518,
            keep_aspect_ratio: true,
            ensure_multiple_of: 14,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
        }
    }
}

impl DepthInput {
    /// transformers' `get_resize_output_image_size`: scale as little as possible (the side
    /// whose scale is nearer 1 decides both), then round each side to the multiple (Python's
    /// `round`, ties to even), `(width, height)`.
    pub fn size_for(&self, width: usize, height: usize) -> (usize, usize) {
        let mut scale_height = self.height as f64 / height as f64;
        let mut scale_width = self.width as f64 / width as f64;
        if self.keep_aspect_ratio {
            if (1.0 - scale_width).abs() < (1.0 - scale_height).abs() {
                scale_height = scale_width;
            } else {
                scale_width = scale_height;
            }
        }
        let multiple = self.ensure_multiple_of.max(1);
        let constrain = |value: f64| -> usize {
            let x = (value / multiple as f64).round_ties_even() as usize * multiple;
            if x == 0 {
                (value / multiple as f64).ceil() as usize * multiple
            } else {
                x
            }
        };
        (
            constrain(scale_width * width as f64).max(multiple),
            constrain(scale_height * height as f64).max(multiple),
        )
    }

    /// `pixel_values` (3 planes, `height × width`) for `picture`, with its size.
    pub fn pixel_values(&self, picture: &RgbImage) -> (Vec<f32>, usize, usize) {
        let (width, height) = self.size_for(picture.width, picture.height);
        let resized = resize_region(
            Filter::Bicubic,
            &picture.pixels,
            picture.width,
            picture.height,
            3,
            (width, height),
            [0.0, 0.0, picture.width as f64, picture.height as f64],
        );
        let plane = width * height;
        let mut values = vec![0f32; 3 * plane];
        for (i, rgb) in resized.chunks_exact(3).enumerate() {
            for c in 0..3 {
                // rescale (float32 product), then normalise, as the processor's NumPy steps
                let scaled = (rgb[c] as f32 * (1.0f32 / 255.0)) as f64;
                values[c * plane + i] = ((scaled - self.mean[c]) / self.std[c]) as f32;
            }
        }
        (values, width, height)
    }
}

/// PyTorch's `interpolate(mode="bilinear", align_corners=False)` of one plane, in f32.
pub fn bilinear_resize(
    plane: &[f32],
    in_w: usize,
    in_h: usize,
    out_w: usize,
    out_h: usize,
) -> Vec<f32> {
    let taps = |in_size: usize, out_size: usize| -> Vec<(usize, usize, f32, f32)> {
        let scale = in_size as f32 / out_size as f32;
        (0..out_size)
            .map(|i| {
                let real = (scale * (i as f32 + 0.5) - 0.5).max(0.0);
                let i0 = real as usize;
                let i1 = if i0 < in_size - 1 { i0 + 1 } else { i0 };
                let l1 = real - i0 as f32;
                (i0, i1, 1.0 - l1, l1)
            })
            .collect()
    };
    let rows = taps(in_h, out_h);
    let cols = taps(in_w, out_w);
    let mut out = Vec::with_capacity(out_w * out_h);
    for &(y0, y1, wy0, wy1) in &rows {
        for &(x0, x1, wx0, wx1) in &cols {
            let at = |y: usize, x: usize| plane[y * in_w + x];
            out.push(
                wy0 * (wx0 * at(y0, x0) + wx1 * at(y0, x1))
                    + wy1 * (wx0 * at(y1, x0) + wx1 * at(y1, x1)),
            );
        }
    }
    out
}

/// The 8-bit map of `depth` (`depth_w × depth_h`, larger is nearer) at the picture's size:
/// white nearest, black farthest; a flat prediction gives black.
pub fn depth_map(
    depth: &[f32],
    depth_w: usize,
    depth_h: usize,
    width: usize,
    height: usize,
) -> RgbImage {
    let resized = bilinear_resize(depth, depth_w, depth_h, width, height);
    let min = resized.iter().copied().fold(f32::INFINITY, f32::min);
    let max = resized.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let range = max - min;
    let pixels = resized
        .iter()
        .map(|&d| {
            let value = (d - min) / range * 255.0;
            // NumPy's astype(uint8) truncates; NaN (a flat map) becomes 0.
            if value.is_finite() {
                value.clamp(0.0, 255.0) as u8
            } else {
                0
            }
        })
        .collect();
    GrayImage {
        width,
        height,
        pixels,
    }
    .to_rgb()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_the_processor() {
        let input = DepthInput::default();
        // 512×512: scale 518/512 → 518.0 → 37·14
        assert_eq!(input.size_for(512, 512), (518, 518));
        // 768×512: the height's scale (1.01) is nearer 1 than the width's (0.67)
        assert_eq!(input.size_for(768, 512), (784, 518));
        let small = DepthInput {
            height: 56,
            width: 56,
            ..Default::default()
        };
        assert_eq!(small.size_for(64, 48), (56, 42));
    }

    #[test]
    fn a_ramp_maps_to_the_full_range_and_a_flat_one_to_black() {
        let ramp: Vec<f32> = (0..16).map(|i| i as f32).collect();
        let map = depth_map(&ramp, 4, 4, 4, 4);
        assert_eq!(map.pixels[0], 0);
        assert_eq!(map.pixels[15 * 3], 255);
        let flat = depth_map(&[0.5; 4], 2, 2, 3, 3);
        assert!(flat.pixels.iter().all(|&p| p == 0));
    }
}
