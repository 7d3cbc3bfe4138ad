//! Files dropped on the window and pictures pasted with Ctrl+V: the panel under the pointer
//! claims them (a ControlNet unit takes one as its picture); what no panel claims goes to the
//! window as before (a PNG with settings restores them, any other picture becomes the start
//! image). Panels only report the claim as a [`UiCommand`]; it is applied after the frame.

use std::path::PathBuf;
use std::sync::Arc;

use super::command::{ArrivalTarget, UiCommand};

/// The commands that hand this frame's dropped files and pasted picture to `target`; empty
/// when nothing arrived.
pub fn claim(ctx: &egui::Context, target: ArrivalTarget) -> Vec<UiCommand> {
    let mut commands = Vec::new();
    let paths = dropped_paths(ctx);
    if !paths.is_empty() {
        commands.push(UiCommand::DropFiles { paths, target });
    }
    if let Some(image) = pasted_picture(ctx) {
        commands.push(UiCommand::PasteImage { image, target });
    }
    commands
}

/// What arrived this frame and no panel in `commands` claimed, for the window.
pub fn unclaimed(ctx: &egui::Context, commands: &[UiCommand]) -> Vec<UiCommand> {
    let dropped_claimed = commands
        .iter()
        .any(|command| matches!(command, UiCommand::DropFiles { .. }));
    let paste_claimed = commands
        .iter()
        .any(|command| matches!(command, UiCommand::PasteImage { .. }));
    claim(ctx, ArrivalTarget::Window)
        .into_iter()
        .filter(|command| match command {
            UiCommand::DropFiles { .. } => !dropped_claimed,
            UiCommand::PasteImage { .. } => !paste_claimed,
            _ => true,
        })
        .collect()
}

fn dropped_paths(ctx: &egui::Context) -> Vec<PathBuf> {
    ctx.input(|i| {
        i.raw
            .dropped_files
            .iter()
            .map(|file| file.path().to_path_buf())
            .collect()
    })
}

/// A copied picture (a screenshot, an image from a browser): egui sends it only when the
/// clipboard holds no text, so no text field wants it.
fn pasted_picture(ctx: &egui::Context) -> Option<Arc<egui::ColorImage>> {
    ctx.input(|i| {
        i.events.iter().find_map(|event| match event {
            egui::Event::PasteImage(image) => Some(image.clone()),
            _ => None,
        })
    })
}
