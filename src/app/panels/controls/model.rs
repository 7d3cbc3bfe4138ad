//! The model picker, its status line, the open buttons and the VAE row.

use super::*;
use crate::app::model_manager::ManagerAction;
use crate::app::session::format_duration;

/// How a model is named in the picker: the catalog's name, a folder's or checkpoint file's
/// own name, or the hub id.
pub fn model_display_name(catalog: &Catalog, source: &ModelSource) -> String {
    match source {
        ModelSource::Hub(id) => match catalog.find(id) {
            Some(entry) => entry.name.clone(),
            // A direct URL reads best as its file name.
            None if id.starts_with("http://") || id.starts_with("https://") => {
                let path = id.split(['?', '#']).next().unwrap_or(id);
                short_file_name(path.trim_end_matches('/')).to_string()
            }
            None => id.clone(),
        },
        ModelSource::Folder(path) => folder_name(path),
        ModelSource::Server(title) => title.clone(),
    }
}

pub(super) fn folder_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

pub(super) fn model_section(
    ui: &mut Ui,
    state: &State,
    view: &ControlsView<'_>,
) -> Option<UiCommand> {
    let mut command = None;
    let label = ui.strong("Model");
    let selected = state.model.as_ref().map_or_else(
        || "Choose a model…".to_string(),
        |m| model_display_name(view.catalog, m),
    );
    let combo = ComboBox::from_id_salt("model-picker")
        .selected_text(selected)
        .width(ui.available_width())
        .height(420.0)
        .show_ui(ui, |ui| {
            if state.engine.use_server {
                command = server_model_list(ui, state, view);
                return;
            }
            ui.weak("Download from Hugging Face");
            for entry in view.catalog.entries() {
                let source = ModelSource::Hub(entry.id.clone());
                let is_current = state.model.as_ref() == Some(&source);
                let text = format!(
                    "{}  ·  {}",
                    entry.name,
                    format_bytes(entry.approx_size_bytes)
                );
                let response = ui.selectable_label(is_current, text).on_hover_text(format!(
                    "{}\n{}\nLicense: {}",
                    entry.id, entry.description, entry.license
                ));
                if response.clicked() {
                    command = Some(UiCommand::SelectModel(source));
                }
            }
            if !state.recent_models.is_empty() {
                ui.separator();
                ui.weak("On this computer");
                for path in &state.recent_models {
                    let source = ModelSource::Folder(path.clone());
                    let is_current = state.model.as_ref() == Some(&source);
                    let response = ui
                        .selectable_label(is_current, folder_name(path))
                        .on_hover_text(path.display().to_string());
                    if response.clicked() {
                        command = Some(UiCommand::SelectModel(source));
                    }
                }
            }
            ui.separator();
            ui.horizontal(|ui| {
                command = command.take().or(open_model_buttons(ui));
            });
        });
    combo.response.labelled_by(label.id);
    command = command.take().or(hub_row(ui));

    match view.model {
        ModelStatus::NoModel => {
            ui.weak("No model chosen");
        }
        ModelStatus::Loading { download: None, .. } => {
            ui.horizontal(|ui| {
                busy::spinner(ui);
                ui.weak("Loading model…");
            });
        }
        ModelStatus::Loading {
            download: Some((file, progress)),
            ..
        } => {
            let fraction = progress
                .bytes_total
                .filter(|&total| total > 0)
                .map_or(0.0, |total| progress.bytes_done as f32 / total as f32);
            let mut text = format!(
                "Downloading {}/{} · {} · {}/s",
                progress.file_index + 1,
                progress.file_count,
                short_file_name(file),
                format_bytes(progress.bytes_per_second.max(0.0) as u64)
            );
            if let Some(eta) = progress.eta() {
                text.push_str(&format!(" · {} left", format_duration(eta.as_secs_f64())));
            }
            busy::progress_bar(ui, fraction, text, None);
        }
        ModelStatus::Ready(model) => {
            let info = &model.info;
            let mut facts = format!(
                "{} · {}×{}",
                info.label, info.defaults.width, info.defaults.height
            );
            if info.distilled {
                facts.push_str(" · few-step");
            }
            ui.horizontal(|ui| {
                ui.colored_label(style::ok(ui.visuals()), "Ready");
                ui.weak(facts);
            });
        }
        ModelStatus::Failed { .. } => {
            ui.horizontal(|ui| {
                ui.colored_label(style::error(ui.visuals()), "Not loaded");
                if ui.small_button("Retry").clicked() {
                    command = Some(UiCommand::RetryModel);
                }
                command = command.take().or(open_model_buttons(ui));
            });
        }
    }
    command
}

/// Any model on the hub or the web: `org/name`, `org/name/file.safetensors` or an `https://`
/// URL, typed or pasted, loaded (and downloaded) with "Load" or Enter; "Models…" opens the
/// model manager.
fn hub_row(ui: &mut Ui) -> Option<UiCommand> {
    let mut command = None;
    let id = egui::Id::unique("hub-model-text");
    let mut text: String = ui.data_mut(|d| d.get_temp(id).unwrap_or_default());
    // Right to left: the buttons take their room first, the field the rest, so the row never
    // widens the panel.
    let row = Vec2::new(ui.available_width(), ui.spacing().interact_size.y);
    ui.allocate_ui_with_layout(row, Layout::right_to_left(Align::Center), |ui| {
        if ui
            .small_button("Models…")
            .on_hover_text("What is downloaded: sizes, last used, show in folder, delete")
            .clicked()
        {
            command = Some(UiCommand::ModelManager(ManagerAction::Open));
        }
        let load = ui
            .add_enabled(!text.trim().is_empty(), Button::new("Load").small())
            .on_hover_text("Download (if needed) and load it");
        let field = ui.add(
            TextEdit::singleline(&mut text)
                .hint_text("Hugging Face id or URL")
                .desired_width(ui.available_width()),
        );
        field.widget_info(|| {
            egui::WidgetInfo::labeled(egui::Role::TextInput, true, "Hugging Face id or URL")
        });
        let entered = field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
        field.on_hover_text(
            "org/name (a diffusers repository), org/name/file.safetensors (one checkpoint in a repository), or an https:// link to a .safetensors file (civitai and the like)",
        );
        if (load.clicked() || entered) && !text.trim().is_empty() {
            command = Some(UiCommand::SelectModel(ModelSource::from_arg(text.trim())));
        }
    });
    ui.data_mut(|d| d.insert_temp(id, text));
    command
}

/// "Open model file…" and "Open model folder…", in the picker and after a failed load.
pub(super) fn open_model_buttons(ui: &mut Ui) -> Option<UiCommand> {
    let mut command = None;
    if ui
        .small_button("Open model file…")
        .on_hover_text("A single-file .safetensors checkpoint (SD 1.x, SD 2.x or SDXL), as A1111 and civitai use")
        .clicked()
    {
        command = Some(UiCommand::OpenModelFile);
    }
    if ui
        .small_button("Open model folder…")
        .on_hover_text(
            "A diffusers folder: model_index.json, unet/, vae/, text_encoder/, tokenizer/",
        )
        .clicked()
    {
        command = Some(UiCommand::OpenModelFolder);
    }
    command
}

/// The VAE in use: the model's own, or a file that replaces it (for models whose own VAE
/// washes colours out, or single-file checkpoints saved without one).
pub(super) fn vae_row(ui: &mut Ui, state: &State) -> Option<UiCommand> {
    let mut command = None;
    ui.horizontal(|ui| {
        let label = ui.label("VAE");
        let selected = state
            .vae
            .as_deref()
            .map_or_else(|| "Model's own".to_string(), folder_name);
        let combo = ComboBox::from_id_salt("vae-picker")
            .selected_text(selected)
            .width(ui.available_width())
            .show_ui(ui, |ui| {
                if ui
                    .selectable_label(state.vae.is_none(), "Model's own")
                    .clicked()
                {
                    command = Some(UiCommand::ChooseVae(None));
                }
                for path in &state.recent_vaes {
                    let is_current = state.vae.as_ref() == Some(path);
                    if ui
                        .selectable_label(is_current, folder_name(path))
                        .on_hover_text(path.display().to_string())
                        .clicked()
                    {
                        command = Some(UiCommand::ChooseVae(Some(path.clone())));
                    }
                }
                ui.separator();
                if ui.button("Choose VAE file…").clicked() {
                    command = Some(UiCommand::PickVaeFile);
                }
            });
        combo
            .response
            .labelled_by(label.id)
            .on_hover_text("Decodes the final image; applies to every model until changed");
    });
    command
}

pub(super) fn short_file_name(file: &str) -> &str {
    file.rsplit('/').next().unwrap_or(file)
}
