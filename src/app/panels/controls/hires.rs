//! "Hires. fix", under the size: a second, img2img pass at a larger size (A1111's).

use super::*;
use crate::app::hires::{
    catalog_upscalers, upscaler_label, CATALOG_UPSCALERS_HEADING, LANCZOS, MAX_HIRES_SCALE,
    MAX_HIRES_STEPS, MIN_HIRES_SCALE,
};
use crate::engine::LATENT_UPSCALERS;

pub(super) fn hires_section(ui: &mut Ui, state: &mut State) -> Vec<UiCommand> {
    let mut commands = Vec::new();
    let (width, height) = (state.width, state.height);
    let hires = &mut state.hires;
    ui.checkbox(&mut hires.enabled, "Hires. fix").on_hover_text(
        "Generate at this size, enlarge, then refine at the larger size with a second img2img \
         pass: more detail than generating large directly",
    );
    if !hires.enabled {
        return commands;
    }
    egui::Grid::new("hires")
        .num_columns(2)
        .spacing([10.0, 6.0])
        .show(ui, |ui| {
            let label = ui.label("Upscale by");
            ui.horizontal(|ui| {
                ui.add(
                    DragValue::new(&mut hires.scale)
                        .speed(0.05)
                        .range(MIN_HIRES_SCALE..=MAX_HIRES_SCALE)
                        .fixed_decimals(2),
                )
                .labelled_by(label.id)
                .on_hover_text("The second pass's size is this size times this (on the 8-pixel grid)");
                let fix = hires.fix().expect("enabled");
                let (w, h) = fix.target_size(width, height);
                ui.weak(format!("gives {w}×{h}"));
            });
            ui.end_row();

            let label = ui.label("Upscaler");
            ui.horizontal(|ui| {
                let selected = match (&hires.latent, hires.upscaler.as_deref()) {
                    (Some(latent), _) => latent.clone(),
                    (None, Some(path)) => upscaler_label(path),
                    (None, None) => LANCZOS.to_string(),
                };
                let recent = hires.recent_upscalers.clone();
                ComboBox::from_id_salt("hires-upscaler")
                    .selected_text(selected)
                    // A fixed width: inside the grid, the available width would grow the panel.
                    .width(150.0)
                    .show_ui(ui, |ui| {
                        if ui
                            .selectable_label(
                                hires.upscaler.is_none() && hires.latent.is_none(),
                                LANCZOS,
                            )
                            .on_hover_text("Lanczos resampling of the picture (no model)")
                            .clicked()
                        {
                            hires.upscaler = None;
                            hires.latent = None;
                        }
                        for (_, name, _) in LATENT_UPSCALERS {
                            if ui
                                .selectable_label(hires.latent.as_deref() == Some(name), name)
                                .on_hover_text(
                                    "Resize the first pass's latents (torch's interpolation) \
                                     and denoise from them; no decode and re-encode",
                                )
                                .clicked()
                            {
                                hires.upscaler = None;
                                hires.latent = Some(name.to_string());
                            }
                        }
                        for path in &recent {
                            if ui
                                .selectable_label(
                                    hires.upscaler.as_ref() == Some(path),
                                    upscaler_label(path),
                                )
                                .on_hover_text(path.display().to_string())
                                .clicked()
                            {
                                hires.upscaler = Some(path.clone());
                                hires.latent = None;
                            }
                        }
                        ui.separator();
                        ui.weak(CATALOG_UPSCALERS_HEADING);
                        for (label, reference) in catalog_upscalers() {
                            let chosen = hires.upscaler.as_ref() == Some(&reference);
                            if ui
                                .selectable_label(chosen, label)
                                .on_hover_text(reference.display().to_string())
                                .clicked()
                            {
                                hires.upscaler = Some(reference);
                                hires.latent = None;
                            }
                        }
                    })
                    .response
                    .labelled_by(label.id)
                    .on_hover_text(
                        "What enlarges the first picture: Lanczos, its latents resized, or an \
                         ESRGAN-family upscaler .safetensors file, local or from the Hugging \
                         Face hub (then Lanczos to the exact size)",
                    );
                if ui
                    .small_button("File…")
                    .on_hover_text("An upscaler .safetensors file (ESRGAN, Real-ESRGAN, …)")
                    .clicked()
                {
                    commands.push(UiCommand::PickHiresUpscaler);
                }
            });
            ui.end_row();

            let label = ui.label("Hires steps");
            ui.add(
                DragValue::new(&mut hires.steps)
                    .range(0..=MAX_HIRES_STEPS)
                    .custom_formatter(|steps, _| {
                        if steps == 0.0 {
                            "same".to_string()
                        } else {
                            format!("{steps}")
                        }
                    }),
            )
            .labelled_by(label.id)
            .on_hover_text("Steps of the second pass; 0: the same as the first");
            ui.end_row();

            let label = ui.label("Denoising");
            ui.add(Slider::new(&mut hires.denoise, 0.01..=1.0).fixed_decimals(2))
                .labelled_by(label.id)
                .on_hover_text(
                    "How much the second pass may change the enlarged picture (its img2img strength)",
                );
            ui.end_row();

            let label = ui.label("Hires sampler");
            let selected = hires
                .sampler_kind()
                .map_or_else(|| "Same as above".to_string(), SchedulerKind::a1111_name);
            ComboBox::from_id_salt("hires-sampler")
                .selected_text(selected)
                .width(150.0)
                .show_ui(ui, |ui| {
                    ui.selectable_value(&mut hires.sampler, None, "Same as above");
                    for kind in SchedulerKind::ALL {
                        ui.selectable_value(
                            &mut hires.sampler,
                            Some(kind.name().to_string()),
                            kind.a1111_name(),
                        );
                    }
                })
                .response
                .labelled_by(label.id);
            ui.end_row();

            for (title, text) in [
                ("Hires prompt", &mut hires.prompt),
                ("Hires negative", &mut hires.negative_prompt),
            ] {
                let label = ui.label(title);
                ui.add(
                    TextEdit::singleline(text)
                        .hint_text("same as above")
                        .desired_width(150.0),
                )
                .labelled_by(label.id)
                .on_hover_text("The second pass's own text (A1111's Hires prompt); empty: the prompt above");
                ui.end_row();
            }
        });
    commands
}
