//! The start image and its strength; inpainting's mask buttons and settings; outpainting.

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
                commands.extend(mask_buttons(ui, slot, view.mask_editing));
            }
            None => {
                if ui.button("Choose image…").clicked() {
                    commands.push(UiCommand::PickInitImage);
                }
                ui.weak("or drop an image on the window");
            }
        }
        let masked = view.init_image.is_some_and(|slot| slot.mask.is_some());
        ui.horizontal(|ui| {
            let label = ui.label("Strength");
            ui.add_enabled(
                view.init_image.is_some(),
                Slider::new(&mut state.strength, 0.01..=1.0).fixed_decimals(2),
            )
            .labelled_by(label.id)
            .on_hover_text(if masked {
                "How much of the masked area is repainted. Inpainting starts at 1, diffusers' default (A1111 uses 0.75): the area is painted afresh"
            } else {
                "How much of the image is repainted: low keeps it, 1 replaces it"
            });
        });
        if masked {
            inpaint_settings(ui, state);
        }
        if view.init_image.is_some() {
            commands.extend(outpaint_buttons(ui));
        }
    });
    commands
}

fn mask_buttons(ui: &mut Ui, slot: &InitImageSlot, editing: bool) -> Vec<UiCommand> {
    let mut commands = Vec::new();
    ui.horizontal(|ui| {
        match (&slot.mask, editing) {
            (None, _) => {
                if ui
                    .button("Inpaint")
                    .on_hover_text("Paint over what to repaint; the rest of the picture is kept")
                    .clicked()
                {
                    commands.push(UiCommand::Inpaint);
                }
            }
            (Some(_), false) => {
                if ui
                    .button("Edit mask")
                    .on_hover_text("Paint the mask in the centre of the window")
                    .clicked()
                {
                    commands.push(UiCommand::Inpaint);
                }
            }
            (Some(_), true) => {
                if ui
                    .button("Done painting")
                    .on_hover_text("Back to the images; the mask is kept (Esc)")
                    .clicked()
                {
                    commands.push(UiCommand::FinishMask);
                }
            }
        }
        if slot.mask.is_some()
            && ui
                .button("Remove mask")
                .on_hover_text("Repaint the whole picture again (plain img2img)")
                .clicked()
        {
            commands.push(UiCommand::RemoveMask);
        }
    });
    commands
}

/// A1111's inpainting settings: mask blur, inpaint area and padding, masked content.
fn inpaint_settings(ui: &mut Ui, state: &mut State) {
    ui.horizontal(|ui| {
        let label = ui.label("Mask blur");
        ui.add(Slider::new(&mut state.mask_blur, 0..=MAX_MASK_BLUR).suffix(" px"))
            .labelled_by(label.id)
            .on_hover_text("Soften the mask's edge by this many pixels; the result is blended into the picture through it");
    });
    ui.horizontal(|ui| {
        ui.label("Inpaint area");
        ui.selectable_value(&mut state.inpaint_only_masked, false, "Whole picture")
            .on_hover_text("Work on the whole picture at the chosen size");
        ui.selectable_value(&mut state.inpaint_only_masked, true, "Only masked")
            .on_hover_text("Work on a crop around the mask at the chosen size (more detail for small areas), then paste it back");
    });
    if state.inpaint_only_masked {
        ui.horizontal(|ui| {
            let label = ui.label("Padding");
            ui.add(Slider::new(&mut state.inpaint_padding, 0..=MAX_INPAINT_PADDING).suffix(" px"))
                .labelled_by(label.id)
                .on_hover_text("Pixels of the picture around the mask that the crop includes");
        });
    }
    ui.horizontal(|ui| {
        let label = ui.label("Masked content");
        let combo = ComboBox::from_id_salt("masked-content")
            .selected_text(content_label(state.masked_content))
            .show_ui(ui, |ui| {
                for content in MaskedContent::ALL {
                    ui.selectable_value(&mut state.masked_content, content, content_label(content));
                }
            });
        combo
            .response
            .labelled_by(label.id)
            .on_hover_text("What the masked area starts from before it is repainted; matters when strength is below 1 or the model is not an inpainting model");
    });
}

fn content_label(content: MaskedContent) -> &'static str {
    match content {
        MaskedContent::Original => "Original",
        MaskedContent::Fill => "Fill",
        MaskedContent::LatentNoise => "Latent noise",
        MaskedContent::LatentNothing => "Latent nothing",
    }
}

/// Grows the start image by [`OUTPAINT_STEP`] pixels on one side.
fn outpaint_buttons(ui: &mut Ui) -> Vec<UiCommand> {
    let mut commands = Vec::new();
    ui.horizontal(|ui| {
        ui.label("Outpaint")
            .on_hover_text(format!("Grow the picture by {OUTPAINT_STEP} pixels on a side; the new area is filled from the edges and masked"));
        let step = OUTPAINT_STEP;
        for (label, side, sides) in [
            ("Left", "left", [step, 0, 0, 0]),
            ("Top", "top", [0, step, 0, 0]),
            ("Right", "right", [0, 0, step, 0]),
            ("Bottom", "bottom", [0, 0, 0, step]),
        ] {
            if ui
                .small_button(label)
                .accessible_name(format!("Outpaint {side}"))
                .on_hover_text(format!("Add {step} pixels on the {side}"))
                .clicked()
            {
                commands.push(UiCommand::Outpaint(sides));
            }
        }
    });
    commands
}

pub(super) fn fit_within(size: Vec2, bounds: Vec2) -> Vec2 {
    let scale = (bounds.x / size.x.max(1.0)).min(bounds.y / size.y.max(1.0));
    size * scale
}
