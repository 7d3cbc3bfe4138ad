//! sd-webui-controlnet's `canny` map, pixel for pixel: `cv2.Canny(picture, low, high)` of the
//! RGB picture itself (no grey conversion: OpenCV takes each pixel's gradient from the channel
//! where it is largest), after the extension's padding of the right and bottom edges out to
//! multiples of 64, cropped back. OpenCV's steps, all in integers: 3×3 Sobel with the edge
//! pixels repeated outward (Canny's own BORDER_REPLICATE), the L1 magnitude |dx| + |dy|,
//! non-maximum suppression in four sectors split by tan 22.5° in 15-bit fixed point, then
//! hysteresis: a local maximum above `low` is an edge when it touches (8-connected, through
//! such maxima) one above `high`.

use super::{GrayImage, RgbImage};

/// tan 22.5° in 15-bit fixed point, truncated as OpenCV's `TG22`.
const TAN_22_5_FIXED: i64 = 13573;
const FIXED_SHIFT: u32 = 15;

/// The extension's canny map of `image`: 255 on an edge, 0 elsewhere. `low` and `high` are
/// swapped when reversed, as OpenCV does.
pub fn canny(image: &RgbImage, low: u32, high: u32) -> GrayImage {
    // The padding repeats the last column and row, so a padded pixel's Sobel taps are the
    // picture's own with coordinates clamped into it; only the suppression and the hysteresis
    // see the padded area (its magnitudes and the edges through it), so it is walked whole.
    let padded_width = image.width.div_ceil(64) * 64;
    let padded_height = image.height.div_ceil(64) * 64;
    let edges = canny_channels(
        &image.pixels,
        3,
        (image.width, image.height),
        (padded_width, padded_height),
        low,
        high,
    );
    let pixels = edges
        .chunks_exact(padded_width)
        .take(image.height)
        .flat_map(|row| &row[..image.width])
        .copied()
        .collect();
    GrayImage {
        width: image.width,
        height: image.height,
        pixels,
    }
}

/// `cv2.Canny` of an interleaved `channels`-channel picture of `size`, walked over `extent`
/// (at least `size`; pixels beyond it repeat the last column and row).
fn canny_channels(
    pixels: &[u8],
    channels: usize,
    (width, height): (usize, usize),
    (ew, eh): (usize, usize),
    low: u32,
    high: u32,
) -> Vec<u8> {
    let (low, high) = (low.min(high) as i32, low.max(high) as i32);
    let at = |x: isize, y: isize, c: usize| -> i32 {
        let x = x.clamp(0, width as isize - 1) as usize;
        let y = y.clamp(0, height as isize - 1) as usize;
        i32::from(pixels[(y * width + x) * channels + c])
    };
    // Each pixel's gradient from its channel of largest magnitude, the first on a tie.
    let mut dx = vec![0i32; ew * eh];
    let mut dy = vec![0i32; ew * eh];
    let mut magnitude = vec![0i32; ew * eh];
    for y in 0..eh as isize {
        for x in 0..ew as isize {
            let i = y as usize * ew + x as usize;
            for c in 0..channels {
                let gx = (at(x + 1, y - 1, c) + 2 * at(x + 1, y, c) + at(x + 1, y + 1, c))
                    - (at(x - 1, y - 1, c) + 2 * at(x - 1, y, c) + at(x - 1, y + 1, c));
                let gy = (at(x - 1, y + 1, c) + 2 * at(x, y + 1, c) + at(x + 1, y + 1, c))
                    - (at(x - 1, y - 1, c) + 2 * at(x, y - 1, c) + at(x + 1, y - 1, c));
                let m = gx.abs() + gy.abs();
                if c == 0 || m > magnitude[i] {
                    (dx[i], dy[i], magnitude[i]) = (gx, gy, m);
                }
            }
        }
    }
    // Outside the walked area the magnitude is 0, as in OpenCV's zero-bordered rows.
    let mag = |x: isize, y: isize| -> i32 {
        if x < 0 || y < 0 || x >= ew as isize || y >= eh as isize {
            0
        } else {
            magnitude[y as usize * ew + x as usize]
        }
    };
    // Non-maximum suppression along the gradient's sector; OpenCV's comparisons are strict
    // towards the left / upper neighbour and not towards the right / lower one in the
    // horizontal and vertical sectors, strict both ways on the diagonals.
    let mut state = vec![Candidate::None; ew * eh];
    let mut strong = Vec::new();
    for y in 0..eh as isize {
        for x in 0..ew as isize {
            let i = y as usize * ew + x as usize;
            let m = magnitude[i];
            if m <= low {
                continue;
            }
            let ax = i64::from(dx[i].unsigned_abs());
            let ay = i64::from(dy[i].unsigned_abs()) << FIXED_SHIFT;
            let tan_22_5 = ax * TAN_22_5_FIXED;
            let tan_67_5 = tan_22_5 + (ax << (FIXED_SHIFT + 1));
            let is_max = if ay < tan_22_5 {
                m > mag(x - 1, y) && m >= mag(x + 1, y)
            } else if ay > tan_67_5 {
                m > mag(x, y - 1) && m >= mag(x, y + 1)
            } else {
                let step = if (dx[i] ^ dy[i]) < 0 { -1 } else { 1 };
                m > mag(x - step, y - 1) && m > mag(x + step, y + 1)
            };
            if !is_max {
                continue;
            }
            if m > high {
                state[i] = Candidate::Edge;
                strong.push(i);
            } else {
                state[i] = Candidate::Weak;
            }
        }
    }
    // Hysteresis: the weak maxima reachable from a strong one become edges (the order of the
    // walk does not change which are reached).
    while let Some(i) = strong.pop() {
        let (x, y) = ((i % ew) as isize, (i / ew) as isize);
        for (ox, oy) in [
            (-1, -1),
            (0, -1),
            (1, -1),
            (-1, 0),
            (1, 0),
            (-1, 1),
            (0, 1),
            (1, 1),
        ] {
            let (nx, ny) = (x + ox, y + oy);
            if nx < 0 || ny < 0 || nx >= ew as isize || ny >= eh as isize {
                continue;
            }
            let j = ny as usize * ew + nx as usize;
            if state[j] == Candidate::Weak {
                state[j] = Candidate::Edge;
                strong.push(j);
            }
        }
    }
    state
        .iter()
        .map(|&s| if s == Candidate::Edge { 255 } else { 0 })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Candidate {
    None,
    /// A local maximum between the thresholds: an edge only if connected to a strong one.
    Weak,
    Edge,
}

#[cfg(test)]
mod tests {
    use super::super::control_maps::tests::{compare, pictures, read_fixture};
    use super::*;

    #[test]
    fn canny_finds_the_edge_of_a_square_and_nothing_in_flat_areas() {
        let mut image = RgbImage::filled(32, 32, [20; 3]);
        for y in 8..24 {
            for x in 8..24 {
                image.pixels[(y * 32 + x) * 3..][..3].copy_from_slice(&[220; 3]);
            }
        }
        let edges = canny(&image, 100, 200);
        assert_eq!(edges.pixels[16 * 32 + 16], 0, "inside");
        assert_eq!(edges.pixels[2 * 32 + 2], 0, "outside");
        let across: Vec<usize> = (0..32)
            .filter(|&x| edges.pixels[16 * 32 + x] == 255)
            .collect();
        // Thin: one pixel on each side, where the magnitude first peaks.
        assert_eq!(across, [7, 23]);
    }

    #[test]
    fn canny_follows_the_strongest_channel_not_the_luma() {
        // Red against green of nearly the same luma: an edge in every channel but none in
        // the grey picture.
        let mut image = RgbImage::filled(16, 16, [150, 0, 0]);
        for y in 0..16 {
            for x in 8..16 {
                image.pixels[(y * 16 + x) * 3..][..3].copy_from_slice(&[0, 76, 0]);
            }
        }
        let edges = canny(&image, 100, 200);
        assert!((0..16).all(|y| edges.pixels[y * 16 + 7] == 255));
        assert_eq!(edges.pixels.iter().filter(|&&p| p == 255).count(), 16);
    }

    #[test]
    fn canny_maps_equal_sd_webui_controlnets() {
        // Busy noise, grey steps at the thresholds, gradients on the sectors' boundaries.
        let made = ["noise", "steps", "sectors"]
            .map(|name| (name, read_fixture(&format!("preprocessors/{name}.png"))));
        for (name, picture) in pictures().into_iter().chain(made) {
            for (low, high) in [(100, 200), (50, 100), (160, 150)] {
                let map = canny(&picture, low, high).to_rgb();
                let reference = format!("{name}_canny_{low}_{high}");
                assert_eq!(compare(&reference, &map), (0, 0), "{reference}");
            }
        }
    }
}
