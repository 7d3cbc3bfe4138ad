//! The look: dark (images read best on a dark surround), one accent colour for the primary
//! action and the selection, a little more air than egui's defaults.

use egui::{Color32, Theme, ThemePreference, Vec2};

pub const ACCENT: Color32 = Color32::from_rgb(0x6d, 0x5d, 0xfc);
pub const ACCENT_HOVER: Color32 = Color32::from_rgb(0x84, 0x77, 0xff);
pub const ERROR: Color32 = Color32::from_rgb(0xf0, 0x6a, 0x6a);
pub const WARNING: Color32 = Color32::from_rgb(0xe8, 0xb3, 0x4b);
pub const OK: Color32 = Color32::from_rgb(0x6b, 0xcf, 0x8e);
/// Behind the image: darker than the panels, so the picture stands out.
pub const CANVAS: Color32 = Color32::from_rgb(0x14, 0x14, 0x17);

pub fn apply(ctx: &egui::Context) {
    ctx.set_theme(ThemePreference::Dark);
    ctx.style_mut_of(Theme::Dark, |style| {
        style.spacing.item_spacing = Vec2::new(8.0, 6.0);
        style.spacing.button_padding = Vec2::new(10.0, 4.0);
        style.spacing.interact_size.y = 24.0;
        style.spacing.slider_width = 170.0;
        style.visuals.selection.bg_fill = ACCENT;
        style.visuals.selection.stroke.color = Color32::WHITE;
        style.visuals.hyperlink_color = ACCENT_HOVER;
        style.visuals.panel_fill = Color32::from_rgb(0x1f, 0x1f, 0x24);
        style.visuals.extreme_bg_color = Color32::from_rgb(0x16, 0x16, 0x1a);
    });
}
