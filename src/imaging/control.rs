//! Control-image preprocessors: what turns a picture into the map a ControlNet reads.
//! "none" passes the picture as it is (a map made elsewhere); "invert" turns white-on-black
//! into black-on-white and back (for line art drawn dark on light); "canny" finds edges as
//! sd-webui-controlnet's `cv2.Canny` call does, pixel for pixel ([`super::canny`]);
//! "scribble_xdog", "threshold",
//! "t2ia_color_grid", "tile_resample" and "blur_gaussian" are sd-webui-controlnet's other
//! network-free maps
//! ([`super::control_maps`]); "depth_anything_v2" is a depth map made by a network (Depth
//! Anything V2), so the engine makes it, not these pixel functions ([`super::depth`] has its
//! pixel work).

use super::canny;
use super::control_maps::{
    self, BINARY_THRESHOLD, BINARY_THRESHOLD_RANGE, BLUR_SIGMA_HUNDREDTHS,
    BLUR_SIGMA_HUNDREDTHS_RANGE, TILE_RATE_HUNDREDTHS, TILE_RATE_HUNDREDTHS_RANGE, XDOG_THRESHOLD,
    XDOG_THRESHOLD_RANGE,
};
use super::RgbImage;

/// A1111's default Canny thresholds.
pub const CANNY_LOW: u32 = 100;
pub const CANNY_HIGH: u32 = 200;
/// The range of A1111's Canny sliders.
pub const CANNY_RANGE: std::ops::RangeInclusive<u32> = 1..=255;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ControlPreprocessor {
    None,
    Invert,
    Canny {
        low: u32,
        high: u32,
    },
    /// A1111's `scribble_xdog`: dark strokes as white lines, where the difference of a
    /// σ 5 and a σ 0.5 Gaussian blur exceeds half the threshold (1–64).
    ScribbleXdog {
        threshold: u32,
    },
    /// A1111's `threshold`: white where every channel is above the level (0–255).
    Threshold {
        level: u32,
    },
    /// A1111's `t2ia_color_grid` (module `color`): one colour per 64×64 cell.
    ColorGrid,
    /// A1111's `tile_resample`: the picture shrunk by the down sampling rate (1–8, in
    /// hundredths: 250 is 2.5; below 1.1 it is left as it is).
    TileResample {
        rate_hundredths: u32,
    },
    /// A1111's `blur_gaussian`: OpenCV's 8-bit Gaussian blur of σ 0.01–64 (in hundredths:
    /// 900 is 9).
    BlurGaussian {
        sigma_hundredths: u32,
    },
    /// Depth Anything V2's depth map (A1111's `depth_anything_v2`), white nearest.
    Depth,
}

/// A setting of a preprocessor as A1111 names it (`Threshold A`, `Threshold B`), in the
/// steps of its slider: whole numbers, or hundredths for a rate or a σ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreprocessorSetting {
    /// What the slider is called in A1111's unit.
    pub label: &'static str,
    pub steps: u32,
    pub range: (u32, u32),
    /// Whether a step is a hundredth (A1111's 0.01 slider step) rather than one.
    pub hundredths: bool,
}

impl PreprocessorSetting {
    /// A number of steps as the user sees it (A1111's slider value).
    pub fn shown(self, steps: u32) -> f64 {
        if self.hundredths {
            f64::from(steps) / 100.0
        } else {
            f64::from(steps)
        }
    }

    pub fn value(self) -> f64 {
        self.shown(self.steps)
    }

    pub fn shown_range(self) -> (f64, f64) {
        (self.shown(self.range.0), self.shown(self.range.1))
    }

    /// The steps of a value as the user gives it, if in range: hundredths rounded; a
    /// fraction of a whole-number setting dropped, which changes nothing A1111 makes (it
    /// truncates canny's thresholds, and compares whole pixel values with the XDoG and
    /// binarization thresholds, where `x > 32.5` is `x > 32`).
    fn steps_of(self, value: f64) -> Option<u32> {
        let (low, high) = self.shown_range();
        if !(low..=high).contains(&value) {
            return None;
        }
        Some(if self.hundredths {
            (value * 100.0).round() as u32
        } else {
            value.floor() as u32
        })
    }
}

impl ControlPreprocessor {
    /// Every choice with its default settings.
    pub const ALL: [ControlPreprocessor; 9] = [
        Self::None,
        Self::Invert,
        Self::Canny {
            low: CANNY_LOW,
            high: CANNY_HIGH,
        },
        Self::ScribbleXdog {
            threshold: XDOG_THRESHOLD,
        },
        Self::Threshold {
            level: BINARY_THRESHOLD,
        },
        Self::ColorGrid,
        Self::TileResample {
            rate_hundredths: TILE_RATE_HUNDREDTHS,
        },
        Self::BlurGaussian {
            sigma_hundredths: BLUR_SIGMA_HUNDREDTHS,
        },
        Self::Depth,
    ];

    /// The CLI value and A1111's module name.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Invert => "invert",
            Self::Canny { .. } => "canny",
            Self::ScribbleXdog { .. } => "scribble_xdog",
            Self::Threshold { .. } => "threshold",
            Self::ColorGrid => "t2ia_color_grid",
            Self::TileResample { .. } => "tile_resample",
            Self::BlurGaussian { .. } => "blur_gaussian",
            Self::Depth => "depth_anything_v2",
        }
    }

    /// Whether the map comes from a network (made by the engine) rather than [`Self::apply`].
    pub fn needs_network(self) -> bool {
        matches!(self, Self::Depth)
    }

    /// Whether a preview must be made from the whole picture rather than a thumbnail: a
    /// network's map, or one sized in the picture's pixels — Canny's gradients (a thumbnail
    /// averages away the fine edges the generation's map keeps, and its thresholds then pick
    /// other ones), XDoG's blurs (on a thumbnail they would wash out the strokes the full-size
    /// map keeps) and the colour grid's 64-pixel cells (a thumbnail would have fewer, larger
    /// ones), and the tile's shrinking (of a thumbnail it would show a coarser map than the
    /// generation reads).
    pub fn previews_at_full_size(self) -> bool {
        matches!(
            self,
            Self::Depth
                | Self::Canny { .. }
                | Self::ScribbleXdog { .. }
                | Self::ColorGrid
                | Self::TileResample { .. }
                | Self::BlurGaussian { .. }
        )
    }

    /// From a CLI value or an A1111 module name (`canny`, `invert (from white bg & black
    /// line)`, `scribble_xdog`, `threshold`, `t2ia_color_grid` or `color`, `tile_resample`,
    /// `blur_gaussian`, `depth_anything_v2`; `depth` for short), with default settings.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim().to_ascii_lowercase();
        let first = text.split_whitespace().next().unwrap_or("");
        match first {
            "depth" => return Some(Self::Depth),
            "color" => return Some(Self::ColorGrid),
            _ => {}
        }
        Self::ALL.into_iter().find(|p| p.name() == first)
    }

    /// Its settings as A1111's `Threshold A` and `Threshold B` (none, one or two).
    pub fn settings(self) -> Vec<PreprocessorSetting> {
        let setting = |label, steps, range: &std::ops::RangeInclusive<u32>| PreprocessorSetting {
            label,
            steps,
            range: (*range.start(), *range.end()),
            hundredths: false,
        };
        match self {
            Self::Canny { low, high } => vec![
                setting("Low Threshold", low, &CANNY_RANGE),
                setting("High Threshold", high, &CANNY_RANGE),
            ],
            Self::ScribbleXdog { threshold } => {
                vec![setting("XDoG Threshold", threshold, &XDOG_THRESHOLD_RANGE)]
            }
            Self::Threshold { level } => vec![setting(
                "Binarization Threshold",
                level,
                &BINARY_THRESHOLD_RANGE,
            )],
            Self::TileResample { rate_hundredths } => vec![PreprocessorSetting {
                hundredths: true,
                ..setting(
                    "Down Sampling Rate",
                    rate_hundredths,
                    &TILE_RATE_HUNDREDTHS_RANGE,
                )
            }],
            Self::BlurGaussian { sigma_hundredths } => vec![PreprocessorSetting {
                hundredths: true,
                ..setting("Sigma", sigma_hundredths, &BLUR_SIGMA_HUNDREDTHS_RANGE)
            }],
            Self::None | Self::Invert | Self::ColorGrid | Self::Depth => Vec::new(),
        }
    }

    /// The same preprocessor with its settings replaced by `values` (A1111's `Threshold A`,
    /// `Threshold B` as its sliders show them; missing ones keep theirs), or which value does
    /// not fit.
    pub fn with_settings(self, values: &[Option<f64>]) -> Result<Self, SettingError> {
        let settings = self.settings();
        let mut chosen: Vec<u32> = settings.iter().map(|s| s.steps).collect();
        for (index, value) in values.iter().enumerate() {
            let Some(value) = *value else { continue };
            let Some(setting) = settings.get(index) else {
                return Err(SettingError::Unused {
                    index,
                    preprocessor: self.name(),
                });
            };
            let Some(steps) = setting.steps_of(value) else {
                return Err(SettingError::OutOfRange {
                    index,
                    value,
                    setting: *setting,
                    preprocessor: self.name(),
                });
            };
            chosen[index] = steps;
        }
        Ok(match self {
            Self::Canny { .. } => Self::Canny {
                low: chosen[0],
                high: chosen[1],
            },
            Self::ScribbleXdog { .. } => Self::ScribbleXdog {
                threshold: chosen[0],
            },
            Self::Threshold { .. } => Self::Threshold { level: chosen[0] },
            Self::TileResample { .. } => Self::TileResample {
                rate_hundredths: chosen[0],
            },
            Self::BlurGaussian { .. } => Self::BlurGaussian {
                sigma_hundredths: chosen[0],
            },
            other => other,
        })
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
            Self::Canny { low, high } => canny::canny(image, low, high).to_rgb(),
            Self::ScribbleXdog { threshold } => control_maps::scribble_xdog(image, threshold),
            Self::Threshold { level } => control_maps::threshold(image, level),
            Self::ColorGrid => control_maps::color_grid(image),
            Self::TileResample { rate_hundredths } => {
                control_maps::tile_resample(image, f64::from(rate_hundredths) / 100.0)
            }
            Self::BlurGaussian { sigma_hundredths } => {
                control_maps::blur_gaussian(image, f64::from(sigma_hundredths) / 100.0)
            }
        })
    }
}

/// A preprocessor setting that does not fit.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SettingError {
    #[error("{preprocessor} has no Threshold {} setting", threshold_letter(*index))]
    Unused {
        index: usize,
        preprocessor: &'static str,
    },
    #[error(
        "Threshold {} {value} is out of range for {preprocessor}'s {}: use {} to {}",
        threshold_letter(*index), setting.label, setting.shown_range().0,
        setting.shown_range().1
    )]
    OutOfRange {
        index: usize,
        value: f64,
        setting: PreprocessorSetting,
        preprocessor: &'static str,
    },
}

/// A1111's name of setting `index`: Threshold A, B.
fn threshold_letter(index: usize) -> char {
    (b'A' + index.min(25) as u8) as char
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(ControlPreprocessor::parse("shuffle"), None);
        for name in ["color", "t2ia_color_grid"] {
            assert_eq!(
                ControlPreprocessor::parse(name),
                Some(ControlPreprocessor::ColorGrid)
            );
        }
        assert_eq!(
            ControlPreprocessor::parse("scribble_xdog"),
            Some(ControlPreprocessor::ScribbleXdog { threshold: 32 })
        );
        assert_eq!(
            ControlPreprocessor::parse("threshold"),
            Some(ControlPreprocessor::Threshold { level: 127 })
        );
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

    #[test]
    fn settings_replace_within_a1111s_ranges_and_refuse_outside() {
        let xdog = ControlPreprocessor::parse("scribble_xdog").unwrap();
        assert_eq!(
            xdog.with_settings(&[Some(12.0)]),
            Ok(ControlPreprocessor::ScribbleXdog { threshold: 12 })
        );
        let err = xdog.with_settings(&[Some(65.0)]).unwrap_err().to_string();
        assert_eq!(
            err,
            "Threshold A 65 is out of range for scribble_xdog's XDoG Threshold: use 1 to 64"
        );
        let err = xdog
            .with_settings(&[None, Some(3.0)])
            .unwrap_err()
            .to_string();
        assert_eq!(err, "scribble_xdog has no Threshold B setting");
        let canny = ControlPreprocessor::parse("canny").unwrap();
        assert_eq!(
            canny.with_settings(&[None, Some(150.0)]),
            Ok(ControlPreprocessor::Canny {
                low: 100,
                high: 150
            })
        );
        assert_eq!(
            ControlPreprocessor::Threshold { level: 0 }.settings()[0].range,
            (0, 255)
        );
        assert!(ControlPreprocessor::ColorGrid.settings().is_empty());
        assert_eq!(
            xdog.with_settings(&[Some(12.5)]),
            Ok(ControlPreprocessor::ScribbleXdog { threshold: 12 }),
            "a fraction changes nothing A1111 makes"
        );
        let blur = ControlPreprocessor::parse("blur_gaussian").unwrap();
        assert_eq!(blur.settings()[0].value(), 9.0);
        assert_eq!(
            blur.with_settings(&[Some(0.01)]),
            Ok(ControlPreprocessor::BlurGaussian {
                sigma_hundredths: 1
            })
        );
        let tile = ControlPreprocessor::parse("tile_resample").unwrap();
        assert_eq!(tile.settings()[0].value(), 1.0);
        assert_eq!(
            tile.with_settings(&[Some(2.5)]),
            Ok(ControlPreprocessor::TileResample {
                rate_hundredths: 250
            })
        );
        let err = tile.with_settings(&[Some(9.0)]).unwrap_err().to_string();
        assert_eq!(
            err,
            "Threshold A 9 is out of range for tile_resample's Down Sampling Rate: use 1 to 8"
        );
        let grid = ControlPreprocessor::ColorGrid
            .apply(&RgbImage::filled(3, 2, [9; 3]))
            .unwrap();
        assert_eq!(grid, RgbImage::filled(3, 2, [9; 3]));
    }
}
