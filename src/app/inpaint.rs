//! Inpainting in the window: the mask attached to the start image, the mask canvas's state
//! and textures, outpainting, and the mask a generation sends.
//!
//! The mask lives with the start image ([`InitImageSlot::mask`]); replacing the start image
//! with a history image keeps it, so a result can be inpainted again with the same mask.

use std::sync::Arc;

use egui::{Color32, ColorImage, TextureOptions};

use super::mask::{MaskEdit, MaskLayer, PixelRect};
use super::state::snap_to_grid;
use super::viewer::Zoom;
use super::*;
use crate::engine::{extend_canvas, GrayImage, InpaintArea, InpaintMask, MAX_IMAGE_SIDE};

/// The outpaint buttons grow the canvas by this many pixels (on the VAE's 8-pixel grid).
pub const OUTPAINT_STEP: usize = 64;

/// Masked pixels are tinted this colour, at most half opaque so the picture shows through.
const TINT: [u8; 3] = [255, 40, 40];
const TINT_OPACITY: f32 = 0.5;

/// Sharp pixels when zoomed in, so the brush's real reach is visible.
const CANVAS_FILTER: TextureOptions = TextureOptions {
    magnification: egui::TextureFilter::Nearest,
    minification: egui::TextureFilter::Linear,
    wrap_mode: egui::TextureWrapMode::ClampToEdge,
    mipmap_mode: None,
};

/// The start image at full size and its mask's tinted overlay, for the mask canvas.
pub struct MaskTextures {
    pub picture: TextureHandle,
    pub overlay: TextureHandle,
    /// The mask's size when uploaded; another size means new textures.
    size: [usize; 2],
}

/// The mask canvas: whether it replaces the viewer in the centre, its zoom and its tool.
#[derive(Default)]
pub struct MaskView {
    pub open: bool,
    pub zoom: Zoom,
    /// The left button erases (the right button always does).
    pub eraser: bool,
    /// The img2img strength before inpainting set it to 1, put back when the mask is removed
    /// (unless the user changed it meanwhile).
    pub strength_before: Option<f64>,
    /// An edge of the picture being dragged outwards to outpaint.
    pub edge_drag: Option<EdgeDrag>,
}

/// A drag that grows the picture on one side.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EdgeDrag {
    /// 0 left, 1 top, 2 right, 3 bottom (the order of [`UiCommand::Outpaint`]'s sides).
    pub side: usize,
    /// Where the drag began, in screen points.
    pub origin: egui::Pos2,
}

/// The tinted overlay of `rect` of `mask`.
fn overlay_image(mask: &GrayImage, [left, top, right, bottom]: PixelRect) -> ColorImage {
    let mut pixels = Vec::with_capacity((right - left) * (bottom - top));
    for y in top..bottom {
        for &value in &mask.pixels[y * mask.width + left..y * mask.width + right] {
            let alpha = (value as f32 * TINT_OPACITY).round() as u8;
            pixels.push(Color32::from_rgba_unmultiplied(
                TINT[0], TINT[1], TINT[2], alpha,
            ));
        }
    }
    ColorImage::new([right - left, bottom - top], pixels)
}

/// Uploads what changed in the slot's mask since the last frame (only that part of the
/// overlay), or makes the canvas textures when the picture or its size is new.
pub fn sync_mask_textures(ctx: &egui::Context, slot: &mut InitImageSlot) {
    let Some(layer) = slot.mask.as_mut() else {
        slot.canvas = None;
        return;
    };
    let mask = layer.mask();
    let size = [mask.width, mask.height];
    match &mut slot.canvas {
        Some(textures) if textures.size == size => {
            if let Some(rect) = layer.take_changed() {
                let part = overlay_image(layer.mask(), rect);
                textures
                    .overlay
                    .set_partial([rect[0], rect[1]], part, CANVAS_FILTER);
            }
        }
        _ => {
            let whole = overlay_image(mask, [0, 0, size[0], size[1]]);
            let picture = history::color_image(ctx, &slot.image);
            slot.canvas = Some(MaskTextures {
                picture: ctx.load_texture("mask-picture", picture, CANVAS_FILTER),
                overlay: ctx.load_texture("mask-overlay", whole, CANVAS_FILTER),
                size,
            });
            layer.take_changed();
        }
    }
}

/// Undo and redo while the mask canvas is open and no text field has the keyboard.
pub fn mask_shortcuts(ctx: &egui::Context) -> Vec<UiCommand> {
    if ctx.egui_wants_keyboard_input() {
        return Vec::new();
    }
    let shift_z = KeyboardShortcut::new(Modifiers::COMMAND | Modifiers::SHIFT, Key::Z);
    let ctrl_y = KeyboardShortcut::new(Modifiers::COMMAND, Key::Y);
    let ctrl_z = KeyboardShortcut::new(Modifiers::COMMAND, Key::Z);
    let mut commands = Vec::new();
    ctx.input_mut(|i| {
        // Ctrl+Shift+Z first: Ctrl+Z would also match it.
        if i.consume_shortcut(&shift_z) || i.consume_shortcut(&ctrl_y) {
            commands.push(UiCommand::EditMask(MaskEdit::Redo));
        }
        if i.consume_shortcut(&ctrl_z) {
            commands.push(UiCommand::EditMask(MaskEdit::Undo));
        }
        if i.key_pressed(Key::Escape) {
            commands.push(UiCommand::FinishMask);
        }
    });
    commands
}

impl LatentStudioApp {
    /// Whether the mask canvas is in the centre.
    pub fn mask_editing(&self) -> bool {
        self.mask_view.open && self.init_image.as_ref().is_some_and(|s| s.mask.is_some())
    }

    pub(super) fn set_init_image(
        &mut self,
        ctx: &egui::Context,
        name: String,
        image: Arc<RgbImage>,
        keep_mask: bool,
    ) {
        let small = files::thumbnail(&image, files::THUMBNAIL_SIDE);
        let kept = self.init_image.take().and_then(|old| old.mask);
        let mask = match kept {
            Some(layer) if keep_mask => {
                let mask = layer.mask();
                if (mask.width, mask.height) == (image.width, image.height) {
                    Some(layer)
                } else {
                    // A result made at another size: the same region of the new picture.
                    Some(MaskLayer::from_mask(
                        mask.resized(image.width, image.height),
                    ))
                }
            }
            _ => None,
        };
        if mask.is_none() {
            self.mask_view.open = false;
            self.restore_img2img_strength();
        }
        self.init_image = Some(InitImageSlot {
            texture: history::load_texture(ctx, "init-image", &small),
            name,
            image,
            mask,
            canvas: None,
        });
    }

    /// The shown history image becomes the start image, keeping the mask.
    pub(super) fn use_shown_as_init_image(&mut self, ctx: &egui::Context) {
        if let Some(full) = self.viewer.shown_full() {
            let name = self
                .history
                .get(full.entry)
                .map_or_else(|| "image".to_string(), |e| e.suggested_file_name());
            let image = full.image.clone();
            self.set_init_image(ctx, name, image, true);
        }
    }

    /// The largest picture the mask canvas can show and the engine can take.
    fn largest_maskable_side(ctx: &egui::Context) -> usize {
        MAX_IMAGE_SIDE.min(ctx.input(|i| i.max_texture_side))
    }

    /// Opens the mask canvas over the start image, making an empty mask the first time.
    pub(super) fn start_inpainting(&mut self, ctx: &egui::Context) {
        let Some(slot) = &mut self.init_image else {
            return;
        };
        let largest = Self::largest_maskable_side(ctx);
        if slot.image.width > largest || slot.image.height > largest {
            self.notices.error(
                "This picture is too large to inpaint",
                format!(
                    "{}×{} pixels; the mask canvas takes at most {largest} a side.",
                    slot.image.width, slot.image.height
                ),
                Some("Scale it down in an image editor first.".into()),
            );
            return;
        }
        if slot.mask.is_none() {
            slot.mask = Some(MaskLayer::new(slot.image.width, slot.image.height));
            self.inpainting_strength();
        }
        if !self.mask_view.open {
            self.mask_view.zoom = Zoom::default();
        }
        self.mask_view.open = true;
    }

    pub(super) fn remove_mask(&mut self) {
        if let Some(slot) = &mut self.init_image {
            slot.mask = None;
            slot.canvas = None;
        }
        self.mask_view.open = false;
        self.restore_img2img_strength();
    }

    /// Puts back the strength [`Self::inpainting_strength`] replaced, unless the user changed
    /// it since.
    fn restore_img2img_strength(&mut self) {
        if let Some(before) = self.mask_view.strength_before.take() {
            if self.state.strength == 1.0 {
                self.state.strength = before;
            }
        }
    }

    /// diffusers' inpainting pipelines default to strength 1 (A1111 to 0.75): the masked
    /// area is repainted from noise, which is what painting a mask usually asks for.
    fn inpainting_strength(&mut self) {
        self.mask_view.strength_before = Some(self.state.strength);
        self.state.strength = 1.0;
    }

    pub(super) fn edit_mask(&mut self, edit: MaskEdit) {
        if let Some(layer) = self.init_image.as_mut().and_then(|s| s.mask.as_mut()) {
            layer.apply(edit);
        }
    }

    /// Grows the start image by `sides` (`[left, top, right, bottom]`), fills the new area
    /// from the picture's edges and masks it; the size to generate follows.
    pub(super) fn outpaint(&mut self, ctx: &egui::Context, sides: [usize; 4]) {
        let largest = Self::largest_maskable_side(ctx);
        let Some(slot) = &mut self.init_image else {
            return;
        };
        let width = slot.image.width + sides[0] + sides[2];
        let height = slot.image.height + sides[1] + sides[3];
        if width > largest || height > largest {
            self.notices.error(
                "The picture cannot grow further",
                format!("{width}×{height} pixels would pass the limit of {largest} a side."),
                None,
            );
            return;
        }
        let had_mask = slot.mask.is_some();
        // Only the new area is filled: the picture under the painted mask stays as it is, for
        // "Masked content: Original" to start from.
        let (image, mut mask) = extend_canvas(&slot.image, None, sides);
        if let Some(layer) = &slot.mask {
            paste_mask(&mut mask, layer.mask(), sides[0], sides[1]);
        }
        slot.texture = history::load_texture(
            ctx,
            "init-image",
            &files::thumbnail(&image, files::THUMBNAIL_SIDE),
        );
        slot.image = Arc::new(image);
        // The history's masks are of the old size; outpainting starts a new one.
        slot.mask = Some(MaskLayer::from_mask(mask));
        slot.canvas = None;
        if !had_mask {
            self.inpainting_strength();
        }
        self.state.width = snap_to_grid(width);
        self.state.height = snap_to_grid(height);
    }

    /// The mask and its settings for the next generation, if the start image has one.
    pub(super) fn inpaint_mask(&self) -> Option<InpaintMask> {
        let layer = self.init_image.as_ref()?.mask.as_ref()?;
        Some(InpaintMask {
            mask: layer.mask().clone(),
            blur: self.state.mask_blur,
            area: if self.state.inpaint_only_masked {
                InpaintArea::Masked {
                    padding: self.state.inpaint_padding,
                }
            } else {
                InpaintArea::Whole
            },
            content: self.state.masked_content,
        })
    }

    /// Says so (and returns false) when the start image has a mask with nothing painted.
    pub(super) fn mask_ready(&mut self) -> bool {
        let empty = self
            .init_image
            .as_ref()
            .and_then(|s| s.mask.as_ref())
            .is_some_and(|layer| layer.mask().is_empty());
        if empty {
            self.notices.error(
                "The mask is empty",
                String::new(),
                Some("Paint over what to repaint, or press \"Remove mask\" to start from the whole image.".into()),
            );
        }
        !empty
    }
}

/// `inner` over `grown` with its top-left corner at (`left`, `top`); it must fit.
fn paste_mask(grown: &mut GrayImage, inner: &GrayImage, left: usize, top: usize) {
    for y in 0..inner.height {
        let from = &inner.pixels[y * inner.width..(y + 1) * inner.width];
        let start = (top + y) * grown.width + left;
        grown.pixels[start..start + inner.width].copy_from_slice(from);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outpainted_mask_keeps_the_painted_part_where_the_picture_moved() {
        let picture = RgbImage {
            width: 2,
            height: 2,
            pixels: vec![10; 12],
        };
        let painted = GrayImage {
            width: 2,
            height: 2,
            pixels: vec![255, 0, 0, 128],
        };
        let (grown_picture, mut grown) = extend_canvas(&picture, None, [1, 0, 0, 1]);
        paste_mask(&mut grown, &painted, 1, 0);
        assert_eq!((grown.width, grown.height), (3, 3));
        assert_eq!(grown.pixels, vec![255, 255, 0, 255, 0, 128, 255, 255, 255]);
        // The old picture is untouched where the mask was painted.
        assert_eq!(&grown_picture.pixels[3..9], &[10; 6]);
    }

    #[test]
    fn the_overlay_tints_masked_pixels_and_leaves_the_rest_clear() {
        let mask = GrayImage {
            width: 3,
            height: 2,
            pixels: vec![0, 128, 255, 255, 0, 0],
        };
        let whole = overlay_image(&mask, [0, 0, 3, 2]);
        assert_eq!(whole.size, [3, 2]);
        assert_eq!(whole.pixels[0].a(), 0);
        assert_eq!(whole.pixels[1].a(), 64);
        assert_eq!(whole.pixels[2].a(), 128);
        let part = overlay_image(&mask, [1, 0, 3, 2]);
        assert_eq!(part.size, [2, 2]);
        assert_eq!(part.pixels[2].a(), 0, "row 2 starts at x = 1");
        assert_eq!(part.pixels[1].a(), 128);
    }
}
