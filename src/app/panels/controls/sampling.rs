//! Sampler, steps, guidance, seed, batch; the image size and its presets.

use super::*;

pub(super) fn sampling_section(
    ui: &mut Ui,
    state: &mut State,
    view: &ControlsView<'_>,
) -> Option<UiCommand> {
    let mut command = None;
    egui::Grid::new("sampling")
        .num_columns(2)
        .spacing([10.0, 8.0])
        .show(ui, |ui| {
            let label = ui.label("Sampler");
            let combo = ComboBox::from_id_salt("scheduler")
                .selected_text(state.scheduler.a1111_name())
                .width(ui.available_width())
                .show_ui(ui, |ui| {
                    for kind in SchedulerKind::ALL {
                        ui.selectable_value(&mut state.scheduler, kind, kind.a1111_name())
                            .on_hover_text(format!("--scheduler {}", kind.name()));
                    }
                });
            combo.response.labelled_by(label.id).on_hover_text(
                "\"Model default\" is the scheduler the model ships with (the right one for Turbo models)",
            );
            ui.end_row();

            let label = ui.label("Steps");
            ui.add(Slider::new(&mut state.steps, 1..=MAX_STEPS).clamping(egui::SliderClamping::Always))
                .labelled_by(label.id)
                .on_hover_text("Denoising steps: more is slower and usually finer; Turbo models need 1–4");
            ui.end_row();

            let label = ui.label("CFG scale");
            ui.add(
                Slider::new(&mut state.guidance, 0.0..=MAX_GUIDANCE)
                    .step_by(0.5)
                    .clamping(egui::SliderClamping::Always),
            )
            .labelled_by(label.id)
            .on_hover_text("How strictly to follow the prompt. 1 or less turns guidance off (Turbo models use 0)");
            ui.end_row();

            let label = ui.label("Seed");
            ui.horizontal(|ui| {
                let seed = ui
                    .add(DragValue::new(&mut state.seed).speed(1.0).range(0..=u64::from(u32::MAX)))
                    .labelled_by(label.id)
                    .on_hover_text("The same seed and settings give the same image");
                // Typing a seed means wanting that seed.
                if seed.changed() {
                    state.seed_locked = true;
                }
                if ui
                    .button("Random")
                    .on_hover_text("A new random seed")
                    .clicked()
                {
                    command = Some(UiCommand::RandomizeSeed);
                }
                ui.checkbox(&mut state.seed_locked, "Keep")
                    .on_hover_text("Keep this seed for the next run; off: a new random seed each run");
            });
            ui.end_row();

            let label = ui.label("Variation");
            ui.horizontal(|ui| {
                ui.add(
                    DragValue::new(&mut state.variation_seed)
                        .speed(1.0)
                        .range(0..=u64::from(u32::MAX)),
                )
                .labelled_by(label.id)
                .on_hover_text("A1111's variation seed: the starting noise moves toward this seed's");
                ui.add(Slider::new(&mut state.variation_strength, 0.0..=1.0).fixed_decimals(2))
                    .on_hover_text("How far toward the variation seed: 0 off, 1 all the way");
            });
            ui.end_row();

            let label = ui.label("Batch count");
            let unit = if state.batch_count == 1 { " run" } else { " runs" };
            ui.add(DragValue::new(&mut state.batch_count).range(1..=MAX_BATCH).suffix(unit))
                .labelled_by(label.id)
                .on_hover_text(
                    "Runs per Generate, one after another; seeds seed, seed+1, … across all images",
                );
            ui.end_row();

            let label = ui.label("Batch size");
            let unit = if state.batch_size == 1 { " image" } else { " images" };
            ui.add(DragValue::new(&mut state.batch_size).range(1..=MAX_BATCH_SIZE).suffix(unit))
                .labelled_by(label.id)
                .on_hover_text(
                    "Images denoised together in each run: faster per image where the hardware has room, the same images as separate runs (inpainting, ControlNet and hires jobs make them one by one)",
                );
            ui.end_row();
        });
    if let Some(model) = view.model.loaded() {
        let d = model.info.defaults;
        let differs = (d.steps, d.width, d.height) != (state.steps, state.width, state.height)
            || (d.guidance - state.guidance).abs() > 1e-9;
        if differs
            && ui
                .small_button("Use model defaults")
                .on_hover_text(format!(
                    "{} steps, CFG {}, {}×{}",
                    d.steps, d.guidance, d.width, d.height
                ))
                .clicked()
        {
            command = Some(UiCommand::UseModelDefaults);
        }
    }
    command
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Shape {
    Square,
    Portrait,
    Landscape,
}

/// The three standard shapes at about the model's native area: SD 1.x/2.x users expect
/// 512×768 and 768×512; SDXL is trained on buckets like 832×1216.
pub(super) fn preset_size(native: usize, shape: Shape) -> (usize, usize) {
    let (short, long) = if native >= 1024 {
        let area = (native * native) as f64;
        let short = (area / 1.5).sqrt();
        let long = short * 1.5;
        (
            (short / 64.0).round() as usize * 64,
            (long / 64.0).floor() as usize * 64,
        )
    } else {
        (native, snap_to_grid(native * 3 / 2))
    };
    let (short, long) = (short.max(SIZE_STEP), long.max(SIZE_STEP));
    match shape {
        Shape::Square => (native, native),
        Shape::Portrait => (short, long),
        Shape::Landscape => (long, short),
    }
}

pub(super) fn size_section(ui: &mut Ui, state: &mut State, view: &ControlsView<'_>) {
    let native = view
        .model
        .loaded()
        .map_or(512, |m| m.info.defaults.width.max(m.info.defaults.height));
    egui::Grid::new("size")
        .num_columns(2)
        .spacing([10.0, 8.0])
        .show(ui, |ui| {
            ui.label("Size");
            ui.horizontal(|ui| {
                let width = ui
                    .add(
                        DragValue::new(&mut state.width)
                            .speed(SIZE_STEP as f64)
                            .range(SIZE_STEP..=MAX_SIDE),
                    )
                    .accessible_name("Width")
                    .on_hover_text("Width in pixels (a multiple of 8)");
                ui.label("×");
                let height = ui
                    .add(
                        DragValue::new(&mut state.height)
                            .speed(SIZE_STEP as f64)
                            .range(SIZE_STEP..=MAX_SIDE),
                    )
                    .accessible_name("Height")
                    .on_hover_text("Height in pixels (a multiple of 8)");
                // Snap once editing ends, so typing "5" on the way to "512" is not disturbed.
                if width.lost_focus() || width.drag_stopped() {
                    state.width = snap_to_grid(state.width);
                }
                if height.lost_focus() || height.drag_stopped() {
                    state.height = snap_to_grid(state.height);
                }
                if ui
                    .button("Swap")
                    .on_hover_text("Swap width and height")
                    .clicked()
                {
                    std::mem::swap(&mut state.width, &mut state.height);
                }
            });
            ui.end_row();

            ui.label("");
            ui.horizontal(|ui| {
                for (shape, name) in [
                    (Shape::Square, "Square"),
                    (Shape::Portrait, "Portrait"),
                    (Shape::Landscape, "Landscape"),
                ] {
                    let (w, h) = preset_size(native, shape);
                    let selected = (state.width, state.height) == (w, h);
                    if ui
                        .selectable_label(selected, name)
                        .on_hover_text(format!("{w}×{h}"))
                        .clicked()
                    {
                        state.width = w;
                        state.height = h;
                    }
                }
            });
            ui.end_row();
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_follow_the_family_conventions() {
        assert_eq!(preset_size(512, Shape::Portrait), (512, 768));
        assert_eq!(preset_size(512, Shape::Landscape), (768, 512));
        assert_eq!(preset_size(1024, Shape::Portrait), (832, 1216));
        assert_eq!(preset_size(1024, Shape::Square), (1024, 1024));
        assert_eq!(preset_size(64, Shape::Portrait), (64, 96));
    }
}
