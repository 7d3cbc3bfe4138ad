//! The start image and its strength.

use super::*;

pub(super) fn img2img_section(
    ui: &mut Ui,
    state: &mut State,
    view: &ControlsView<'_>,
) -> Vec<UiCommand> {
    let mut commands = Vec::new();
    let header = egui::CollapsingHeader::new("Start from an image")
        .id_salt("img2img")
        .default_open(false)
        .open(view.init_image.is_some().then_some(true));
    header.show(ui, |ui| {
        match view.init_image {
            Some(slot) => {
                ui.horizontal(|ui| {
                    let size = fit_within(
                        Vec2::new(slot.image.width as f32, slot.image.height as f32),
                        Vec2::splat(72.0),
                    );
                    ui.add(egui::Image::new((slot.texture.id(), size)).corner_radius(4.0));
                    ui.vertical(|ui| {
                        ui.label(RichText::new(&slot.name).strong());
                        ui.weak(format!("{}×{}", slot.image.width, slot.image.height));
                        ui.horizontal(|ui| {
                            if ui.small_button("Replace…").clicked() {
                                commands.push(UiCommand::PickInitImage);
                            }
                            if ui.small_button("Remove").clicked() {
                                commands.push(UiCommand::ClearInitImage);
                            }
                            if ui
                                .small_button("Use its size")
                                .on_hover_text(
                                    "Set width and height to the image's, on the 8-pixel grid",
                                )
                                .clicked()
                            {
                                state.width = snap_to_grid(slot.image.width);
                                state.height = snap_to_grid(slot.image.height);
                            }
                        });
                    });
                });
            }
            None => {
                if ui.button("Choose image…").clicked() {
                    commands.push(UiCommand::PickInitImage);
                }
                ui.weak("or drop an image on the window");
            }
        }
        ui.horizontal(|ui| {
            let label = ui.label("Strength");
            ui.add_enabled(
                view.init_image.is_some(),
                Slider::new(&mut state.strength, 0.01..=1.0).fixed_decimals(2),
            )
            .labelled_by(label.id)
            .on_hover_text("How much of the image is repainted: low keeps it, 1 replaces it");
        });
    });
    commands
}

pub(super) fn fit_within(size: Vec2, bounds: Vec2) -> Vec2 {
    let scale = (bounds.x / size.x.max(1.0)).min(bounds.y / size.y.max(1.0));
    size * scale
}
