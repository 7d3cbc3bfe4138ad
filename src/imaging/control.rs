//! Control-image preprocessors: what turns a picture into the map a ControlNet reads.
//! "none" passes the picture as it is (a map made elsewhere); "invert" turns white-on-black
//! into black-on-white and back (for line art drawn dark on light); "canny" finds edges as
//! OpenCV's `cv2.Canny` does (Sobel 3×3, L1 gradient, non-maximum suppression, hysteresis
//! between two thresholds), on the picture's luma; "depth_anything_v2" is a depth map made by
//! a network (Depth Anything V2), so the engine makes it, not these pixel functions
//! ([`super::depth`] has its pixel work).

use super::{GrayImage, RgbImage};

/// A1111's default Canny thresholds.
pub const CANNY_LOW: u32 = 100;
pub const CANNY_HIGH: u32 = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ControlPreprocessor {
    None,
    Invert,
    Canny {
        low: u32,
        high: u32,
    },
    /// Depth Anything V2's depth map (A1111's `depth_anything_v2`), white nearest.
    Depth,
}

impl ControlPreprocessor {
    /// Every choice with its default settings.
    pub const ALL: [ControlPreprocessor; 4] = [
        Self::None,
        Self::Invert,
        Self::Canny {
            low: CANNY_LOW,
            high: CANNY_HIGH,
        },
        Self::Depth,
    ];

    /// The CLI value and A1111's module name.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Invert => "invert",
            Self::Canny { .. } => "canny",
            Self::Depth => "depth_anything_v2",
        }
    }

    /// Whether the map comes from a network (made by the engine) rather than [`Self::apply`].
    pub fn needs_network(self) -> bool {
        matches!(self, Self::Depth)
    }

    /// From a CLI value or an A1111 module name (`canny`, `invert (from white bg & black
    /// line)`, `depth_anything_v2`; `depth` for short), with default settings.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim().to_ascii_lowercase();
        let first = text.split_whitespace().next().unwrap_or("");
        if first == "depth" {
            return Some(Self::Depth);
        }
        Self::ALL.into_iter().find(|p| p.name() == first)
    }

    /// The map of a pixel preprocessor; `None` for one that needs a network
    /// ([`Self::needs_network`]), whose map the engine makes.
    pub fn apply(self, image: &RgbImage) -> Option<RgbImage> {
        Some(match self {
            Self::Depth => return None,
            Self::None => image.clone(),
            Self::Invert => RgbImage {
                width: image.width,
                height: image.height,
                pixels: image.pixels.iter().map(|&p| 255 - p).collect(),
            },
            Self::Canny { low, high } => canny(&GrayImage::luma_of(image), low, high).to_rgb(),
        })
    }
}

/// Edges of `gray`: 255 on an edge, 0 elsewhere.
pub fn canny(gray: &GrayImage, low: u32, high: u32) -> GrayImage {
    let (w, h) = (gray.width, gray.height);
    let (low, high) = (low.min(high) as i32, low.max(high) as i32);
    // Edge pixels repeat outward, as OpenCV's default border (reflect-101) nearly does.
    let at = |x: isize, y: isize| -> i32 {
        let x = x.clamp(0, w as isize - 1) as usize;
        let y = y.clamp(0, h as isize - 1) as usize;
        gray.pixels[y * w + x] as i32
    };
    let mut dx = vec![0i32; w * h];
    let mut dy = vec![0i32; w * h];
    let mut magnitude = vec![0i32; w * h];
    for y in 0..h as isize {
        for x in 0..w as isize {
            let gx = (at(x + 1, y - 1) + 2 * at(x + 1, y) + at(x + 1, y + 1))
                - (at(x - 1, y - 1) + 2 * at(x - 1, y) + at(x - 1, y + 1));
            let gy = (at(x - 1, y + 1) + 2 * at(x, y + 1) + at(x + 1, y + 1))
                - (at(x - 1, y - 1) + 2 * at(x, y - 1) + at(x + 1, y - 1));
            let i = y as usize * w + x as usize;
            dx[i] = gx;
            dy[i] = gy;
            magnitude[i] = gx.abs() + gy.abs();
        }
    }
    // Non-maximum suppression along the gradient direction (four sectors), then the strong
    // edges; weak ones join when connected to a strong one.
    let mag = |x: isize, y: isize| -> i32 {
        if x < 0 || y < 0 || x >= w as isize || y >= h as isize {
            0
        } else {
            magnitude[y as usize * w + x as usize]
        }
    };
    // tan(22.5°) and tan(67.5°) in 15-bit fixed point, as OpenCV compares them.
    const TAN22: i64 = 13573;
    let mut state = vec![0u8; w * h]; // 0 none, 1 weak, 2 strong
    let mut stack = Vec::new();
    for y in 0..h as isize {
        for x in 0..w as isize {
            let i = y as usize * w + x as usize;
            let m = magnitude[i];
            if m <= low {
                continue;
            }
            let (ax, ay) = (dx[i].abs() as i64, dy[i].abs() as i64);
            let tg22 = ax * TAN22;
            let tg67 = tg22 + (ax << 16);
            let ay = ay << 15;
            let is_max = if ay < tg22 {
                m > mag(x - 1, y) && m >= mag(x + 1, y)
            } else if ay > tg67 {
                m > mag(x, y - 1) && m >= mag(x, y + 1)
            } else {
                let step = if (dx[i] ^ dy[i]) < 0 { -1 } else { 1 };
                m > mag(x - step, y - 1) && m > mag(x + step, y + 1)
            };
            if !is_max {
                continue;
            }
            if m > high {
                state[i] = 2;
                stack.push(i);
            } else {
                state[i] = 1;
            }
        }
    }
    while let Some(i) = stack.pop() {
        let (x, y) = ((i % w) as isize, (i / w) as isize);
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
            if nx < 0 || ny < 0 || nx >= w as isize || ny >= h as isize {
                continue;
            }
            let j = ny as usize * w + nx as usize;
            if state[j] == 1 {
                state[j] = 2;
                stack.push(j);
            }
        }
    }
    GrayImage {
        width: w,
        height: h,
        pixels: state
            .iter()
            .map(|&s| if s == 2 { 255 } else { 0 })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canny_finds_the_edge_of_a_square_and_nothing_in_flat_areas() {
        let mut image = GrayImage::filled(32, 32, 20);
        for y in 8..24 {
            for x in 8..24 {
                image.pixels[y * 32 + x] = 220;
            }
        }
        let edges = canny(&image, CANNY_LOW, CANNY_HIGH);
        assert_eq!(edges.pixels[16 * 32 + 16], 0, "inside");
        assert_eq!(edges.pixels[2 * 32 + 2], 0, "outside");
        let on_left_edge = (6..10).any(|x| edges.pixels[16 * 32 + x] == 255);
        assert!(on_left_edge);
        // Thin: at most two pixels of the edge across.
        let across = (0..32)
            .filter(|&x| edges.pixels[16 * 32 + x] == 255)
            .count();
        assert!((2..=4).contains(&across), "{across}");
    }

    #[test]
    fn preprocessors_parse_cli_and_a1111_names() {
        assert_eq!(
            ControlPreprocessor::parse("canny").map(|p| p.name()),
            Some("canny")
        );
        assert_eq!(
            ControlPreprocessor::parse("invert (from white bg & black line)"),
            Some(ControlPreprocessor::Invert)
        );
        assert_eq!(ControlPreprocessor::parse("depth_midas"), None);
        for name in ["depth", "depth_anything_v2"] {
            assert_eq!(
                ControlPreprocessor::parse(name),
                Some(ControlPreprocessor::Depth)
            );
        }
        assert!(ControlPreprocessor::Depth
            .apply(&RgbImage::filled(1, 1, [0; 3]))
            .is_none());
        let image = RgbImage::filled(2, 2, [10, 20, 30]);
        assert_eq!(
            ControlPreprocessor::Invert.apply(&image).unwrap().pixels[..3],
            [245, 235, 225]
        );
    }
}
