//! "Engine: this computer | a server": where images are made, and the server's models in
//! the model picker when it is a server.

use super::*;

pub(super) fn engine_section(
    ui: &mut Ui,
    state: &mut State,
    view: &ControlsView<'_>,
) -> Option<UiCommand> {
    let mut command = None;
    let engine = &mut state.engine;
    let title = if engine.use_server {
        format!("Engine: server {}", engine.server_url.trim())
    } else {
        "Engine: this computer".to_string()
    };
    egui::CollapsingHeader::new(title)
        .id_salt("engine")
        .default_open(false)
        .show(ui, |ui| {
            if ui.radio(!engine.use_server, "This computer").clicked() {
                command = Some(UiCommand::UseThisComputer);
            }
            if ui
                .radio(engine.use_server, "A server (latent-studio serve, A1111 --api)")
                .clicked()
                && !engine.use_server
            {
                command = Some(UiCommand::ConnectServer);
            }
            // The fields fill the panel's width without widening it (a grid cell's own
            // available width is unbounded).
            let field_width = (ui.available_width() - 72.0).max(120.0);
            egui::Grid::new("engine-grid")
                .num_columns(2)
                .spacing([8.0, 6.0])
                .show(ui, |ui| {
                    let fields = [
                        ("Address", &mut engine.server_url, "http://192.168.1.20:7860", false),
                        ("User", &mut engine.server_user, "when started with --api-auth", false),
                        ("Password", &mut engine.server_password, "", true),
                    ];
                    for (name, text, hint, secret) in fields {
                        let label = ui.label(name);
                        ui.add(
                            TextEdit::singleline(text)
                                .hint_text(hint)
                                .password(secret)
                                .desired_width(field_width),
                        )
                        .labelled_by(label.id);
                        ui.end_row();
                    }
                });
            ui.weak("The password is kept only until the app closes, never written to disk.");
            let connect = if engine.use_server {
                "Reconnect"
            } else {
                "Use this server"
            };
            if ui.button(connect).clicked() {
                command = Some(UiCommand::ConnectServer);
            }
            if engine.use_server {
                match &view.server_models.problem {
                    Some(problem) => {
                        ui.colored_label(style::ERROR, problem);
                    }
                    None => {
                        let count = view.server_models.titles.len();
                        ui.weak(format!(
                            "{count} model{} on the server. LoRA files of this computer, ControlNet and hires fix are not sent; <lora:…> tags use the server's LoRA folder.",
                            if count == 1 { "" } else { "s" }
                        ));
                    }
                }
            }
        });
    command
}

/// The model picker's entries while a server makes the images: its models, by title.
pub(super) fn server_model_list(
    ui: &mut Ui,
    state: &State,
    view: &ControlsView<'_>,
) -> Option<UiCommand> {
    let mut command = None;
    ui.weak(format!("On the server {}", state.engine.server_url.trim()));
    if let Some(problem) = &view.server_models.problem {
        ui.colored_label(style::ERROR, problem);
    }
    for title in &view.server_models.titles {
        let source = ModelSource::Server(title.clone());
        let is_current = state.model.as_ref() == Some(&source);
        if ui.selectable_label(is_current, title).clicked() {
            command = Some(UiCommand::SelectModel(source));
        }
    }
    command
}
