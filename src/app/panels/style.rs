//! The look: dark by default (images read best on a dark surround), light or the system's
//! choice on request; one accent colour for the primary action and the selection, a little
//! more air than egui's defaults.

use egui::{Color32, Theme, ThemePreference, Vec2, Visuals};

use crate::app::state::ThemeChoice;

pub const ACCENT: Color32 = Color32::from_rgb(0x6d, 0x5d, 0xfc);
pub const ACCENT_HOVER: Color32 = Color32::from_rgb(0x84, 0x77, 0xff);
pub const ERROR: Color32 = Color32::from_rgb(0xf0, 0x6a, 0x6a);
pub const WARNING: Color32 = Color32::from_rgb(0xe8, 0xb3, 0x4b);
pub const OK: Color32 = Color32::from_rgb(0x6b, 0xcf, 0x8e);

/// Sets up both themes once and picks `choice`; call again when the choice changes.
pub fn apply(ctx: &egui::Context, choice: ThemeChoice) {
    ctx.set_theme(match choice {
        ThemeChoice::Dark => ThemePreference::Dark,
        ThemeChoice::Light => ThemePreference::Light,
        ThemeChoice::System => ThemePreference::System,
    });
    for theme in [Theme::Dark, Theme::Light] {
        ctx.style_mut_of(theme, |style| {
            style.spacing.item_spacing = Vec2::new(8.0, 6.0);
            style.spacing.button_padding = Vec2::new(10.0, 4.0);
            style.spacing.interact_size.y = 24.0;
            style.spacing.slider_width = 170.0;
            style.visuals.selection.bg_fill = ACCENT;
            style.visuals.selection.stroke.color = Color32::WHITE;
            style.visuals.hyperlink_color = if theme == Theme::Dark {
                ACCENT_HOVER
            } else {
                ACCENT
            };
            if theme == Theme::Dark {
                style.visuals.panel_fill = Color32::from_rgb(0x1f, 0x1f, 0x24);
                style.visuals.extreme_bg_color = Color32::from_rgb(0x16, 0x16, 0x1a);
            }
        });
    }
}

/// Behind the image: darker than the panels in the dark theme, a neutral grey in the light
/// one, so the picture stands out and its colours are not judged against white.
pub fn canvas(visuals: &Visuals) -> Color32 {
    if visuals.dark_mode {
        Color32::from_rgb(0x14, 0x14, 0x17)
    } else {
        Color32::from_rgb(0xc8, 0xc8, 0xcc)
    }
}

/// Status colours readable on either theme: the light theme gets darker shades of the same hues.
pub fn ok(visuals: &Visuals) -> Color32 {
    if visuals.dark_mode {
        OK
    } else {
        Color32::from_rgb(0x1d, 0x7f, 0x45)
    }
}

pub fn warning(visuals: &Visuals) -> Color32 {
    if visuals.dark_mode {
        WARNING
    } else {
        Color32::from_rgb(0x9a, 0x62, 0x00)
    }
}

pub fn error(visuals: &Visuals) -> Color32 {
    if visuals.dark_mode {
        ERROR
    } else {
        Color32::from_rgb(0xc0, 0x2b, 0x2b)
    }
}
