//! ControlNet units: each a ControlNet (folder or file), a picture and its preprocessed map,
//! weight, start/end and control mode; works with txt2img, img2img and inpainting.

use super::*;
use crate::app::arrivals;
use crate::app::command::ArrivalTarget;
use crate::app::controlnets::ControlPictures;
use crate::app::state::{ControlUnitSettings, MAX_CONTROL_UNITS, MAX_CONTROL_WEIGHT};
use crate::engine::{controlnet_repo_id, ControlMode, ControlPreprocessor, CONTROLNET_CATALOG};

pub(super) fn controlnet_section(
    ui: &mut Ui,
    state: &mut State,
    view: &ControlsView<'_>,
) -> Vec<UiCommand> {
    let mut commands = Vec::new();
    let active = state.control_units.iter().filter(|u| u.enabled).count();
    let title = if active > 0 {
        format!("ControlNet ({active})")
    } else {
        "ControlNet".to_string()
    };
    egui::CollapsingHeader::new(title)
        .id_salt("controlnet")
        .default_open(false)
        .show(ui, |ui| {
            let recent = state.recent_controlnets.clone();
            for unit in 0..state.control_units.len() {
                let frame = egui::Frame::group(ui.style()).show(ui, |ui| {
                    unit_controls(
                        ui,
                        unit,
                        &mut state.control_units[unit],
                        &recent,
                        view.control_pictures,
                        view,
                        &mut commands,
                    );
                });
                // A file dropped or a picture pasted with the pointer on the unit is its
                // picture (as in A1111 and ComfyUI), not the start image.
                if ui.rect_contains_pointer(frame.response.rect) {
                    let target = ArrivalTarget::ControlUnit(unit);
                    commands.extend(arrivals::claim(ui.ctx(), target));
                }
                ui.add_space(4.0);
            }
            let can_add = state.control_units.len() < MAX_CONTROL_UNITS;
            if ui
                .add_enabled(can_add, Button::new("Add ControlNet unit"))
                .on_hover_text("Steer the composition by an edge map, a depth map or a pose")
                .clicked()
            {
                commands.push(UiCommand::AddControlUnit);
            }
        });
    commands
}

fn unit_controls(
    ui: &mut Ui,
    unit: usize,
    settings: &mut ControlUnitSettings,
    recent: &[std::path::PathBuf],
    pictures: &ControlPictures,
    view: &ControlsView<'_>,
    commands: &mut Vec<UiCommand>,
) {
    ui.horizontal(|ui| {
        ui.checkbox(
            &mut settings.enabled,
            RichText::new(format!("Unit {}", unit + 1)).strong(),
        )
        .on_hover_text("Use this unit when generating");
        ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
            if ui
                .small_button("×")
                .accessible_name(format!("Remove ControlNet unit {}", unit + 1))
                .on_hover_text("Remove this unit")
                .clicked()
            {
                commands.push(UiCommand::RemoveControlUnit(unit));
            }
        });
    });
    ui.horizontal(|ui| {
        let selected = settings
            .model
            .as_deref()
            .map_or_else(|| "Choose a ControlNet…".to_string(), file_label);
        ComboBox::from_id_salt(("controlnet-model", unit))
            .selected_text(selected)
            // Leave room for the two buttons beside it, so the panel does not grow.
            .width((ui.available_width() - 150.0).max(80.0))
            .show_ui(ui, |ui| {
                for path in recent {
                    if ui
                        .selectable_label(settings.model.as_ref() == Some(path), file_label(path))
                        .on_hover_text(path.display().to_string())
                        .clicked()
                    {
                        settings.model = Some(path.clone());
                    }
                }
                let family = match view.model {
                    ModelStatus::Ready(loaded) => Some(loaded.info.family),
                    _ => None,
                };
                let catalog = CONTROLNET_CATALOG
                    .iter()
                    .filter(|entry| Some(entry.family) == family);
                for (n, entry) in catalog.enumerate() {
                    if n == 0 {
                        if !recent.is_empty() {
                            ui.separator();
                        }
                        ui.weak("Hugging Face (downloaded on first use)");
                    }
                    let id = std::path::PathBuf::from(entry.id);
                    if ui
                        .selectable_label(settings.model.as_ref() == Some(&id), entry.id)
                        .on_hover_text(entry.label)
                        .clicked()
                    {
                        settings.model = Some(id);
                    }
                }
                if recent.is_empty() && family.is_none() {
                    ui.weak("No ControlNet chosen yet");
                }
            })
            .response
            .on_hover_text(
                "A diffusers ControlNet folder or .safetensors file for this model's family, or a well-known one from Hugging Face",
            );
        if ui
            .small_button("Folder…")
            .on_hover_text("A diffusers ControlNet folder")
            .clicked()
        {
            commands.push(UiCommand::PickControlNetFolder(unit));
        }
        if ui
            .small_button("File…")
            .on_hover_text("A ControlNet .safetensors file")
            .clicked()
        {
            commands.push(UiCommand::PickControlNetFile(unit));
        }
    });
    ui.horizontal(|ui| {
        match pictures.get(unit) {
            Some(picture) => {
                let size = fit_within(picture.map.size_vec2(), Vec2::splat(72.0));
                let hover = if picture.map_pending {
                    format!("{}: the engine is making its map", picture.name)
                } else {
                    format!("{} as the ControlNet reads it", picture.name)
                };
                ui.add(egui::Image::new((picture.map.id(), size)).corner_radius(4.0))
                    .on_hover_text(hover);
                if picture.map_pending {
                    ui.spinner();
                }
            }
            None => {
                ui.weak("No picture");
            }
        }
        ui.vertical(|ui| {
            ui.horizontal_wrapped(|ui| {
                if ui.small_button("Choose…").clicked() {
                    commands.push(UiCommand::PickControlImage(unit));
                }
                if ui
                    .add_enabled(
                        view.init_image.is_some(),
                        Button::new("Start image").small(),
                    )
                    .on_hover_text("Read the img2img start image")
                    .clicked()
                {
                    commands.push(UiCommand::UseStartAsControlImage(unit));
                }
                if ui
                    .add_enabled(view.has_shown_image, Button::new("Shown image").small())
                    .on_hover_text("Read the image shown in the centre")
                    .clicked()
                {
                    commands.push(UiCommand::UseShownAsControlImage(unit));
                }
                if pictures.get(unit).is_some() && ui.small_button("Clear").clicked() {
                    commands.push(UiCommand::ClearControlImage(unit));
                }
            });
            ComboBox::from_id_salt(("controlnet-preprocessor", unit))
                .selected_text(preprocessor_label(settings.preprocessor))
                // Tall enough for every choice without scrolling.
                .height(360.0)
                .show_ui(ui, |ui| {
                    for choice in ControlPreprocessor::ALL {
                        let same = std::mem::discriminant(&choice)
                            == std::mem::discriminant(&settings.preprocessor);
                        if ui
                            .selectable_label(same, preprocessor_label(choice))
                            .clicked()
                            && !same
                        {
                            settings.preprocessor = choice;
                        }
                    }
                })
                .response
                .on_hover_text(
                    "What turns the picture into the map: none when the picture already is one",
                );
        });
    });
    preprocessor_sliders(ui, &mut settings.preprocessor);
    egui::Grid::new(("controlnet-grid", unit))
        .num_columns(2)
        .spacing([10.0, 4.0])
        .show(ui, |ui| {
            let label = ui.label("Weight");
            ui.add(Slider::new(&mut settings.weight, 0.0..=MAX_CONTROL_WEIGHT).fixed_decimals(2))
                .labelled_by(label.id)
                .on_hover_text("How strongly the map steers the picture");
            ui.end_row();
            let label = ui.label("Start");
            ui.add(Slider::new(&mut settings.start, 0.0..=1.0).fixed_decimals(2))
                .labelled_by(label.id)
                .on_hover_text("The fraction of the steps after which it starts to act");
            ui.end_row();
            let label = ui.label("End");
            ui.add(Slider::new(&mut settings.end, 0.0..=1.0).fixed_decimals(2))
                .labelled_by(label.id)
                .on_hover_text("The fraction of the steps after which it stops");
            ui.end_row();
            let label = ui.label("Mode");
            ComboBox::from_id_salt(("controlnet-mode", unit))
                .selected_text(settings.mode.a1111_label())
                .show_ui(ui, |ui| {
                    for mode in ControlMode::ALL {
                        ui.selectable_value(&mut settings.mode, mode, mode.a1111_label());
                    }
                })
                .response
                .labelled_by(label.id);
            ui.end_row();
        });
    if settings.start >= settings.end {
        ui.colored_label(style::warning(ui.visuals()), "Start must be before end");
    }
}

/// One slider per setting of the preprocessor (A1111's labels and ranges).
fn preprocessor_sliders(ui: &mut Ui, preprocessor: &mut ControlPreprocessor) {
    let settings = preprocessor.settings();
    if settings.is_empty() {
        return;
    }
    let mut values: Vec<f64> = settings.iter().map(|s| s.value()).collect();
    for (setting, value) in settings.iter().zip(&mut values) {
        let (low, high) = setting.shown_range();
        let (step, decimals) = if setting.hundredths {
            (0.01, 2)
        } else {
            (1.0, 0)
        };
        ui.horizontal(|ui| {
            // Short sliders, so that A1111's longer labels ("Binarization Threshold") fit.
            ui.spacing_mut().slider_width = 100.0;
            ui.add(
                Slider::new(value, low..=high)
                    .step_by(step)
                    .fixed_decimals(decimals)
                    .text(setting.label),
            );
        });
    }
    let values: Vec<Option<f64>> = values.into_iter().map(Some).collect();
    // The sliders keep the values in range, so this only fails if they did not.
    if let Ok(changed) = preprocessor.with_settings(&values) {
        *preprocessor = changed;
    }
}

fn preprocessor_label(preprocessor: ControlPreprocessor) -> &'static str {
    match preprocessor {
        ControlPreprocessor::None => "None (the picture is the map)",
        ControlPreprocessor::Invert => "Invert (dark lines on light)",
        ControlPreprocessor::Canny { .. } => "Canny edges",
        ControlPreprocessor::ScribbleXdog { .. } => "Scribble XDoG (dark strokes)",
        ControlPreprocessor::Threshold { .. } => "Threshold (black and white)",
        ControlPreprocessor::ColorGrid => "Colour grid (T2I-Adapter color)",
        ControlPreprocessor::TileResample { .. } => "Tile resample (shrunk)",
        ControlPreprocessor::BlurGaussian { .. } => "Gaussian blur",
        ControlPreprocessor::Depth => "Depth (Depth Anything V2)",
    }
}

/// A file's or folder's name; a hub ControlNet's whole id (`org/name`).
fn file_label(path: &Path) -> String {
    if let Some(id) = controlnet_repo_id(path) {
        return id.to_string();
    }
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}
