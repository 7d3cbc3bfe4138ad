//! Prompt styles (A1111's `styles.csv`): choose styles for the next runs, merge them into the
//! prompt fields, save the prompts as a style.

use super::*;

pub(super) fn styles_section(
    ui: &mut Ui,
    state: &mut State,
    view: &ControlsView<'_>,
) -> Vec<UiCommand> {
    let mut commands = Vec::new();
    let book = view.styles;
    let title = match state.selected_styles.len() {
        0 => "Styles".to_string(),
        n => format!("Styles ({n} chosen)"),
    };
    egui::CollapsingHeader::new(title)
        .id_salt("styles")
        .default_open(false)
        .show(ui, |ui| {
            if let Some(problem) = &book.problem {
                ui.colored_label(style::error(ui.visuals()), problem);
            } else if book.styles.is_empty() {
                ui.weak("No styles yet: write a prompt and save it as a style below, or use AUTOMATIC1111's styles.csv.");
            }
            for prompt_style in &book.styles {
                let mut chosen = state.selected_styles.contains(&prompt_style.name);
                ui.horizontal(|ui| {
                    let hover = if prompt_style.negative_prompt.is_empty() {
                        prompt_style.prompt.clone()
                    } else {
                        format!(
                            "{}\n\nNegative: {}",
                            prompt_style.prompt, prompt_style.negative_prompt
                        )
                    };
                    if ui
                        .checkbox(&mut chosen, &prompt_style.name)
                        .on_hover_text(hover)
                        .changed()
                    {
                        if chosen {
                            state.selected_styles.push(prompt_style.name.clone());
                        } else {
                            state.selected_styles.retain(|s| *s != prompt_style.name);
                        }
                    }
                    ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
                        if ui
                            .small_button("Delete")
                            .on_hover_text(format!("Delete \"{}\" from the styles file", prompt_style.name))
                            .clicked()
                        {
                            commands.push(UiCommand::DeleteStyle(prompt_style.name.clone()));
                        }
                    });
                });
            }
            if !state.selected_styles.is_empty() {
                let (prompt, negative) = book.styled_prompts(state);
                if ui
                    .button("Apply to the prompts")
                    .on_hover_text(format!(
                        "Write the chosen styles into the prompt fields (and unchoose them). \
                         Otherwise they are merged in at Generate:\n\n{prompt}\n\nNegative: {negative}"
                    ))
                    .clicked()
                {
                    commands.push(UiCommand::ApplyStylesToPrompts);
                }
            }
            let mut enter = false;
            ui.horizontal(|ui| {
                let label = ui.label("New style");
                let field = ui
                    .add(
                        TextEdit::singleline(&mut state.new_style_name)
                            .hint_text("Name")
                            .desired_width(f32::INFINITY),
                    )
                    .labelled_by(label.id);
                enter = field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
            });
            let named = !state.new_style_name.trim().is_empty();
            let save = ui
                .add_enabled(named, Button::new("Save prompts as style"))
                .on_hover_text(
                    "The prompt fields become a style; {prompt} in them marks where a prompt \
                     goes when the style is used",
                );
            if save.clicked() || (enter && named) {
                commands.push(UiCommand::SaveStyle(state.new_style_name.clone()));
            }
            ui.horizontal(|ui| {
                ui.label(RichText::new(book.path.display().to_string()).small().weak())
                    .on_hover_text("The styles file, in AUTOMATIC1111's format");
            });
            ui.horizontal(|ui| {
                if ui.button("Use another styles.csv…").clicked() {
                    commands.push(UiCommand::PickStylesFile);
                }
                if ui.button("Reload").on_hover_text("Read the file again").clicked() {
                    commands.push(UiCommand::ReloadStyles);
                }
            });
        });
    commands
}
