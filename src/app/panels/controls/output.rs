//! Output folder, preview method, VAE tiling.

use super::*;

pub(super) fn output_section(ui: &mut Ui, state: &mut State) -> Vec<UiCommand> {
    let mut commands = Vec::new();
    egui::CollapsingHeader::new("Output and preview")
        .id_salt("output")
        .default_open(false)
        .show(ui, |ui| {
            ui.label("Finished images are saved to");
            ui.add(
                egui::Label::new(
                    RichText::new(state.output_dir.display().to_string())
                        .monospace()
                        .small(),
                )
                .wrap(),
            )
            .on_hover_text("Each image is written as a PNG carrying its settings (A1111 format)");
            ui.horizontal(|ui| {
                if ui.button("Change…").clicked() {
                    commands.push(UiCommand::PickOutputFolder);
                }
                if ui.button("Open folder").clicked() {
                    commands.push(UiCommand::OpenOutputFolder);
                }
            });
            ui.add_space(4.0);
            ui.label("Live preview");
            ui.horizontal_wrapped(|ui| {
                ui.radio_value(&mut state.preview, PreviewMode::Off, "Off")
                    .on_hover_text("Fastest: no preview while denoising");
                ui.radio_value(&mut state.preview, PreviewMode::Fast, "Fast")
                    .on_hover_text("An approximate colour preview every step, at almost no cost");
                ui.radio_value(&mut state.preview, PreviewMode::TinyVae, "Tiny VAE")
                    .on_hover_text(
                        "A full-size preview every step from the tiny autoencoder (TAESD): close \
                         to the real decode at a small cost; downloaded once (~5 MB)",
                    );
                let vae = matches!(state.preview, PreviewMode::Vae { .. });
                if ui
                    .radio(vae, "Full (VAE)")
                    .on_hover_text("The real decoder every few steps: exact, but costs time")
                    .clicked()
                    && !vae
                {
                    state.preview = PreviewMode::Vae { every: 5 };
                }
            });
            if let PreviewMode::Vae { every } = &mut state.preview {
                ui.horizontal(|ui| {
                    let label = ui.label("Decode every");
                    ui.add(DragValue::new(every).range(1..=50).suffix(" steps"))
                        .labelled_by(label.id);
                });
            }
            ui.add_space(4.0);
            if ui
                .checkbox(&mut state.fast_decode, "Fast final decode (tiny VAE)")
                .on_hover_text(
                    "Decode finished images with the tiny autoencoder instead of the VAE: much \
                     faster, slightly less detail; recorded in the PNG as \"Fast decode\"",
                )
                .changed()
            {
                commands.push(UiCommand::SetFastDecode(state.fast_decode));
            }
            if ui
                .checkbox(&mut state.vae_tiling, "Tiled VAE decode")
                .on_hover_text(
                    "Decode large images in overlapping tiles (as diffusers' enable_vae_tiling): \
                     far less memory at 1024² and up, a slightly different result",
                )
                .changed()
            {
                commands.push(UiCommand::SetVaeTiling(state.vae_tiling));
            }
        });
    commands
}
