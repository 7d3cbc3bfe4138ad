//! Files dropped on the window and pictures pasted with Ctrl+V: the panel under the pointer
//! claims them (a ControlNet unit takes one as its picture); what no panel claims goes to the
//! window as before (a PNG with settings restores them, any other picture becomes the start
//! image). Panels only report the claim as a [`UiCommand`]; it is applied after the frame.

use std::path::PathBuf;
use std::sync::Arc;

use super::command::{ArrivalTarget, UiCommand};

/// How long (seconds) a drop waits for the pointer's position before it goes to the window.
const WAIT_FOR_POINTER: f64 = 0.3;

/// Files dropped while the window did not know where the pointer was. Winit reports no
/// pointer position while a file is dragged (on X11 the drag source holds the pointer until
/// the drop, and the window learns the position only as it lets go), so without this wait
/// no drop could ever land on a ControlNet unit.
#[derive(Default)]
pub struct HeldDrop {
    files: Vec<egui::DroppedFileHandle>,
    /// When the first of them arrived, on egui's clock.
    since: Option<f64>,
}

impl HeldDrop {
    /// Before the panels draw: holds this frame's drops while the pointer's position is
    /// unknown, and hands held ones back to the frame once it is known or the wait is over.
    pub fn hold_until_pointer_known(&mut self, ctx: &egui::Context) {
        let (pointer_known, now) = ctx.input(|i| (i.pointer.hover_pos().is_some(), i.time));
        ctx.input_mut(|input| {
            let arrived = &mut input.raw.dropped_files;
            if !pointer_known && !arrived.is_empty() {
                self.since.get_or_insert(now);
                self.files.append(arrived);
            }
            let waited_enough = self
                .since
                .is_some_and(|since| now - since >= WAIT_FOR_POINTER);
            if pointer_known || waited_enough {
                self.since = None;
                let mut held = std::mem::take(&mut self.files);
                held.append(arrived);
                *arrived = held;
            }
        });
        if let Some(since) = self.since {
            let left = (WAIT_FOR_POINTER - (now - since)).max(0.0);
            ctx.request_repaint_after(std::time::Duration::from_secs_f64(left));
        }
    }
}

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
