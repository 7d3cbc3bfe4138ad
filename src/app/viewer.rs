//! What the centre of the window shows: the live preview of the running job, or one image
//! from the history, with its zoom.

use std::sync::Arc;

use egui::{Pos2, Rect, TextureHandle, TextureOptions, Vec2};

use crate::engine::RgbImage;

use super::history::{color_image, load_texture};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Showing {
    Nothing,
    /// The running job's latest preview.
    Live,
    /// A history entry.
    Entry(u64),
}

/// Zoom relative to the image's own pixels; `fit` tracks the panel size instead.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Zoom {
    pub fit: bool,
    /// Screen points per image pixel when not fitting.
    pub scale: f32,
    /// Offset of the image centre from the panel centre, in points.
    pub pan: Vec2,
}

impl Default for Zoom {
    fn default() -> Self {
        Self {
            fit: true,
            scale: 1.0,
            pan: Vec2::ZERO,
        }
    }
}

impl Zoom {
    /// Screen points per image pixel and the image centre's offset from the area's centre;
    /// `fit_scale` is the scale that fits the image in the area.
    pub fn scale_and_pan(&self, fit_scale: f32) -> (f32, Vec2) {
        if self.fit {
            (fit_scale, Vec2::ZERO)
        } else {
            (self.scale, self.pan)
        }
    }

    /// Multiplies the scale by `factor`, keeping the image point under `pointer` where it is.
    pub fn zoom_around(&mut self, area: Rect, pointer: Pos2, factor: f32, fit_scale: f32) {
        let (old_scale, old_pan) = self.scale_and_pan(fit_scale);
        let new_scale = (old_scale * factor).clamp(MIN_SCALE, MAX_SCALE);
        let from_centre = pointer - area.center() - old_pan;
        *self = Zoom {
            fit: false,
            scale: new_scale,
            pan: old_pan + from_centre - from_centre * (new_scale / old_scale),
        };
    }

    /// Moves the image by `delta` points (leaving fit mode at the fitting scale).
    pub fn pan_by(&mut self, delta: Vec2, fit_scale: f32) {
        let (scale, pan) = self.scale_and_pan(fit_scale);
        *self = Zoom {
            fit: false,
            scale,
            pan: pan + delta,
        };
    }

    /// Where an image of `image_size` pixels lies on screen within `area`.
    pub fn image_rect(&self, area: Rect, image_size: Vec2) -> Rect {
        let (scale, pan) = self.scale_and_pan(fit_scale(area, image_size));
        Rect::from_center_size(area.center() + pan, image_size * scale)
    }
}

/// The scale at which an image of `image_size` pixels fits `area`.
pub fn fit_scale(area: Rect, image_size: Vec2) -> f32 {
    (area.width() / image_size.x.max(1.0))
        .min(area.height() / image_size.y.max(1.0))
        .max(MIN_SCALE)
}

pub const MIN_SCALE: f32 = 0.05;

/// Smooth when shrunk to fit; sharp pixels when enlarged, so zooming in shows what is really
/// there (as image viewers do). Live previews stay smooth: they are latent-sized estimates.
const FULL_IMAGE_FILTER: TextureOptions = TextureOptions {
    magnification: egui::TextureFilter::Nearest,
    minification: egui::TextureFilter::Linear,
    wrap_mode: egui::TextureWrapMode::ClampToEdge,
    mipmap_mode: None,
};
pub const MAX_SCALE: f32 = 32.0;

/// A full-size image on screen, with the pixels kept for copy and export.
pub struct FullImage {
    pub entry: u64,
    pub image: Arc<RgbImage>,
    pub texture: TextureHandle,
}

pub struct LiveImage {
    pub texture: TextureHandle,
    /// Whether any step preview arrived yet (before that the texture is a placeholder).
    pub has_preview: bool,
}

pub struct Viewer {
    pub showing: Showing,
    /// Show each new preview and result as it comes, until the user picks something else.
    pub follow_run: bool,
    pub live: Option<LiveImage>,
    pub full: Option<FullImage>,
    pub zoom: Zoom,
}

impl Default for Viewer {
    fn default() -> Self {
        Self {
            showing: Showing::Nothing,
            follow_run: true,
            live: None,
            full: None,
            zoom: Zoom::default(),
        }
    }
}

impl Viewer {
    pub fn show_live(&mut self) {
        if self.showing != Showing::Live {
            self.zoom = Zoom::default();
        }
        self.showing = Showing::Live;
    }

    pub fn set_preview(&mut self, ctx: &egui::Context, preview: &RgbImage) {
        match &mut self.live {
            Some(live) => {
                live.texture
                    .set(color_image(ctx, preview), TextureOptions::LINEAR);
                live.has_preview = true;
            }
            None => {
                self.live = Some(LiveImage {
                    texture: load_texture(ctx, "live-preview", preview),
                    has_preview: true,
                });
            }
        }
    }

    /// Forgets the last run's preview (a new run starts from noise).
    pub fn clear_preview(&mut self) {
        if let Some(live) = &mut self.live {
            live.has_preview = false;
        }
    }

    /// Shows history entry `entry`; its pixels follow with [`Self::set_full`] when not at hand.
    pub fn show_entry(&mut self, entry: u64) {
        if self.showing != Showing::Entry(entry) {
            // Keep the zoom when stepping between images of one size, as image viewers do.
            self.zoom.pan = Vec2::ZERO;
        }
        self.showing = Showing::Entry(entry);
    }

    pub fn set_full(&mut self, ctx: &egui::Context, entry: u64, image: Arc<RgbImage>) {
        let texture = match self.full.take() {
            Some(mut full) => {
                full.texture
                    .set(color_image(ctx, &image), FULL_IMAGE_FILTER);
                full.texture
            }
            None => ctx.load_texture("viewed-image", color_image(ctx, &image), FULL_IMAGE_FILTER),
        };
        self.full = Some(FullImage {
            entry,
            image,
            texture,
        });
    }

    /// The full image of the shown entry, once loaded.
    pub fn shown_full(&self) -> Option<&FullImage> {
        match self.showing {
            Showing::Entry(id) => self.full.as_ref().filter(|f| f.entry == id),
            _ => None,
        }
    }

    pub fn shown_entry(&self) -> Option<u64> {
        match self.showing {
            Showing::Entry(id) => Some(id),
            _ => None,
        }
    }
}
