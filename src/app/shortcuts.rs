//! Keys that work wherever the keyboard focus is: generate, save, cancel, paste settings,
//! browse the history. A pasted picture is claimed like a dropped file ([`super::arrivals`]).

use super::*;

impl LatentStudioApp {
    /// Consumed before the panels draw, so the prompt field does not also get the Enter.
    pub(super) fn shortcuts(&self, ctx: &egui::Context, commands: &mut Vec<UiCommand>) {
        if ctx.input_mut(|i| i.consume_shortcut(&GENERATE_SHORTCUT)) {
            commands.push(UiCommand::Generate);
        }
        if ctx.input_mut(|i| i.consume_shortcut(&SAVE_SHORTCUT)) {
            commands.push(UiCommand::SaveAs);
        }
        if self.mask_editing() {
            commands.extend(inpaint::mask_shortcuts(ctx));
        }
        // Only a text field keeps these keys for itself (a focused button does not).
        if !ctx.egui_wants_keyboard_input() {
            // Esc stops the run (the mask canvas takes it first, to close).
            if !self.mask_editing()
                && self.run.is_some()
                && ctx.input(|i| i.key_pressed(Key::Escape))
            {
                commands.push(UiCommand::Cancel);
            }
            // Ctrl+V outside a text field: A1111 `parameters` text, as A1111's paste button reads it.
            let pasted = ctx.input(|i| {
                i.events.iter().find_map(|event| match event {
                    egui::Event::Paste(text) => Some(text.clone()),
                    _ => None,
                })
            });
            if let Some(text) = pasted {
                commands.push(UiCommand::PasteParameters(text));
            }
        }
        // Arrow keys browse the history while no text field has the keyboard (and the
        // history is on screen, not the mask canvas).
        if ctx.memory(|m| m.focused().is_none()) && !self.mask_editing() {
            if let Some(id) = self.viewer.shown_entry() {
                let step = ctx.input(|i| {
                    if i.key_pressed(Key::ArrowLeft) {
                        Some(false)
                    } else if i.key_pressed(Key::ArrowRight) {
                        Some(true)
                    } else {
                        None
                    }
                });
                // Left is newer (the strip runs newest first from the left).
                if let Some(next) = step.and_then(|forward| self.history.neighbour(id, forward)) {
                    commands.push(UiCommand::ShowEntry(next));
                }
            }
        }
    }
}
