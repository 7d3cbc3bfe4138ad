//! The strip along the bottom: every image of the session and of the output folder, newest on
//! the left. A click shows it in the centre.

use egui::{Color32, RichText, Stroke, Ui, Vec2};

use crate::app::command::UiCommand;
use crate::app::history::History;

use super::style;

const THUMBNAIL_HEIGHT: f32 = 84.0;

pub fn show(ui: &mut Ui, history: &History, shown: Option<u64>) -> Option<UiCommand> {
    let mut command = None;
    ui.add_space(4.0);
    ui.horizontal(|ui| {
        ui.label(RichText::new("History").strong());
        ui.weak(match history.len() {
            0 => "no images yet".to_string(),
            1 => "1 image".to_string(),
            n => format!("{n} images"),
        });
        if history.len() > 1 {
            ui.weak("· arrow keys browse");
        }
    });
    egui::ScrollArea::horizontal()
        .auto_shrink([false, true])
        .min_scrolled_height(THUMBNAIL_HEIGHT + 12.0)
        .show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.set_min_height(THUMBNAIL_HEIGHT + 8.0);
                for (position, entry) in history.entries().iter().enumerate() {
                    let aspect = entry.width.max(1) as f32 / entry.height.max(1) as f32;
                    let size = Vec2::new(
                        (THUMBNAIL_HEIGHT * aspect).clamp(32.0, THUMBNAIL_HEIGHT * 2.0),
                        THUMBNAIL_HEIGHT,
                    );
                    let selected = shown == Some(entry.id);
                    let image = egui::Image::new((entry.thumbnail.id(), size)).corner_radius(4.0);
                    // The shown image gets an accent outline (not a filled frame, which would
                    // tint the thumbnail's surround).
                    let mut button = egui::Button::image(image).frame(selected);
                    if selected {
                        button = button
                            .fill(Color32::TRANSPARENT)
                            .stroke(Stroke::new(2.0, style::ACCENT));
                    }
                    let response = ui
                        .add(button)
                        .accessible_name(format!("History image {}", position + 1))
                        .on_hover_text(entry.caption());
                    if selected
                        && ui.ctx().input(|i| {
                            i.key_pressed(egui::Key::ArrowLeft)
                                || i.key_pressed(egui::Key::ArrowRight)
                        })
                    {
                        response.scroll_to_me(None);
                    }
                    if response.clicked() {
                        command = Some(UiCommand::ShowEntry(entry.id));
                    }
                }
            });
        });
    command
}
