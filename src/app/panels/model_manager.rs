//! The model manager window: each downloaded or opened model with its size and when it was
//! last used, "Show in folder", and Delete behind a confirmation.

use std::time::SystemTime;

use egui::{Grid, RichText, ScrollArea};

use crate::app::command::UiCommand;
use crate::app::model_manager::{ManagerAction, ModelManager};
use crate::app::session::format_bytes;
use crate::engine::{StoredKind, StoredModel};

use super::style;

pub fn show(ctx: &egui::Context, manager: &ModelManager) -> Option<UiCommand> {
    if !manager.open {
        return None;
    }
    let mut command = None;
    let mut open = true;
    egui::Window::new("Models")
        .open(&mut open)
        .default_width(640.0)
        .collapsible(false)
        .show(ctx, |ui| {
            ui.weak("Downloaded models (Hugging Face cache and the models folder), and models opened from elsewhere.");
            if let Some(error) = &manager.error {
                ui.colored_label(style::ERROR, error);
            }
            if let Some(path) = &manager.confirm {
                if let Some(model) = manager.find(path) {
                    command = command.take().or(confirmation(ui, model));
                }
            }
            if manager.listing.is_empty() {
                ui.label("Nothing downloaded yet.");
            }
            ScrollArea::vertical().max_height(420.0).show(ui, |ui| {
                Grid::new("model-manager")
                    .striped(true)
                    .num_columns(5)
                    .show(ui, |ui| {
                        for model in &manager.listing {
                            command = command.take().or(row(ui, model));
                            ui.end_row();
                        }
                    });
            });
        });
    if !open {
        command = Some(UiCommand::ModelManager(ManagerAction::Close));
    }
    command
}

fn row(ui: &mut egui::Ui, model: &StoredModel) -> Option<UiCommand> {
    let mut command = None;
    ui.label(&model.name)
        .on_hover_text(model.path.display().to_string());
    ui.weak(match model.kind {
        StoredKind::HubRepo => "Hugging Face cache",
        StoredKind::ModelsFolder => "models folder",
        StoredKind::Opened => "opened",
    });
    ui.label(format_bytes(model.size_bytes));
    ui.weak(model.last_used.map_or_else(|| "?".into(), ago));
    ui.horizontal(|ui| {
        if ui.small_button("Show in folder").clicked() {
            command = Some(UiCommand::ShowInFolder(model.path.clone()));
        }
        if model.deletable() {
            if ui.small_button(format!("Delete {}…", model.name)).clicked() {
                command = Some(UiCommand::ModelManager(ManagerAction::AskDelete(
                    model.path.clone(),
                )));
            }
        } else {
            ui.weak("—").on_hover_text(
                "Opened from elsewhere: Latent Studio deletes only what it downloaded",
            );
        }
    });
    command
}

fn confirmation(ui: &mut egui::Ui, model: &StoredModel) -> Option<UiCommand> {
    let mut command = None;
    ui.group(|ui| {
        ui.label(
            RichText::new(format!(
                "Delete {} ({}) from disk? {}",
                model.name,
                format_bytes(model.size_bytes),
                model.path.display()
            ))
            .strong(),
        );
        ui.horizontal(|ui| {
            if ui.button("Delete").clicked() {
                command = Some(UiCommand::ModelManager(ManagerAction::Delete(
                    model.path.clone(),
                )));
            }
            if ui.button("Keep it").clicked() {
                command = Some(UiCommand::ModelManager(ManagerAction::CancelDelete));
            }
        });
    });
    command
}

/// `3 days ago`, `5 min ago`, `just now`.
fn ago(time: SystemTime) -> String {
    let secs = SystemTime::now()
        .duration_since(time)
        .map_or(0, |d| d.as_secs());
    match secs {
        0..60 => "just now".into(),
        60..3600 => format!("{} min ago", secs / 60),
        3600..86_400 => format!("{} h ago", secs / 3600),
        _ => format!("{} days ago", secs / 86_400),
    }
}
