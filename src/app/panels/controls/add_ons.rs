//! The LoRA list and folder; clip skip, prompt syntax, CPU arithmetic.

use super::*;

/// The LoRA folder's files, each with a switch and a strength, like A1111's extra-networks
/// tab; "Tag" puts `<lora:NAME:MULT>` in the prompt instead of using the switch.
pub(super) fn lora_section(
    ui: &mut Ui,
    state: &mut State,
    view: &ControlsView<'_>,
) -> Vec<UiCommand> {
    let mut commands = Vec::new();
    let enabled = state.loras.values().filter(|c| c.enabled).count();
    let title = if enabled > 0 {
        format!("LoRA ({enabled} on)")
    } else {
        "LoRA".to_string()
    };
    egui::CollapsingHeader::new(title)
        .id_salt("loras")
        .default_open(false)
        .show(ui, |ui| {
            commands.extend(folder_row(
                ui,
                state.lora_folder_in_use().as_deref(),
                state.lora_folder.is_some(),
                UiCommand::PickLoraFolder,
                UiCommand::UseDefaultLoraFolder,
            ));
            ui.horizontal(|ui| {
                match &view.loras.status {
                    ListingStatus::Reading => {
                        busy::spinner(ui);
                        ui.weak("Reading the folder…");
                    }
                    ListingStatus::Failed(message) => {
                        ui.colored_label(style::error(ui.visuals()), message);
                    }
                    ListingStatus::Ready if view.loras.files.is_empty() => {
                        ui.weak("No .safetensors files here yet");
                    }
                    ListingStatus::Ready => {}
                }
                if ui
                    .small_button("Refresh")
                    .on_hover_text("List the folder again")
                    .clicked()
                {
                    commands.push(UiCommand::RefreshLoras);
                }
            });
            for file in &view.loras.files {
                lora_row(ui, state, file);
            }
        });
    commands
}

/// A LoRA's switch and "Tag" on one line; its strength below while it is switched on, so a
/// folder of many LoRAs stays a short list.
pub(super) fn lora_row(ui: &mut Ui, state: &mut State, file: &str) {
    let name = lora_name(file);
    let mut choice = state.lora_choice(file);
    ui.horizontal(|ui| {
        ui.checkbox(&mut choice.enabled, name)
            .on_hover_text(format!("Merge {file} into every generation"));
        ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
            let tag = lora_tag(name, choice.multiplier);
            if ui
                .small_button("Tag")
                .on_hover_text(format!("Add {tag} to the prompt"))
                .clicked()
            {
                append_to_prompt(&mut state.prompt, &tag);
            }
        });
    });
    if choice.enabled {
        ui.horizontal(|ui| {
            ui.add_space(ui.spacing().icon_width + ui.spacing().icon_spacing);
            ui.spacing_mut().slider_width = (ui.available_width() - 70.0).max(60.0);
            ui.add(
                Slider::new(
                    &mut choice.multiplier,
                    -MAX_LORA_MULTIPLIER..=MAX_LORA_MULTIPLIER,
                )
                .step_by(0.05)
                .fixed_decimals(2),
            )
            .accessible_name(format!("{name} strength"))
            .on_hover_text("Strength: 1 as trained, 0 off, negative reverses it");
        });
    }
    // Stored only once touched, so the settings file lists just the LoRAs the user set.
    if choice != state.lora_choice(file) {
        state.loras.insert(file.to_string(), choice);
    }
}

/// A folder's path with "Change…", "Default" (when another one is chosen) and "Open".
pub(super) fn folder_row(
    ui: &mut Ui,
    folder: Option<&Path>,
    is_custom: bool,
    change: UiCommand,
    use_default: UiCommand,
) -> Vec<UiCommand> {
    let mut commands = Vec::new();
    let shown = folder.map_or_else(
        || "(no data folder on this system; choose one)".to_string(),
        |f| f.display().to_string(),
    );
    ui.add(egui::Label::new(RichText::new(shown).monospace().small()).wrap());
    ui.horizontal(|ui| {
        if ui.small_button("Change…").clicked() {
            commands.push(change);
        }
        if is_custom && ui.small_button("Default").clicked() {
            commands.push(use_default);
        }
        if let Some(folder) = folder {
            if ui
                .small_button("Open")
                .on_hover_text("Open in the file manager (creates the folder if needed)")
                .clicked()
            {
                commands.push(UiCommand::OpenFolder(folder.to_path_buf()));
            }
        }
    });
    commands
}

pub(super) fn advanced_section(ui: &mut Ui, state: &mut State) -> Vec<UiCommand> {
    let mut commands = Vec::new();
    egui::CollapsingHeader::new("Advanced")
        .id_salt("advanced")
        .default_open(false)
        .show(ui, |ui| {
            egui::Grid::new("advanced-grid")
                .num_columns(2)
                .spacing([10.0, 8.0])
                .show(ui, |ui| {
                    let label = ui.label("Clip skip");
                    ui.add(DragValue::new(&mut state.clip_skip).range(1..=MAX_CLIP_SKIP))
                        .labelled_by(label.id)
                        .on_hover_text("A1111 numbering: 1 uses the text encoder's last layer; 2 is what most anime models expect");
                    ui.end_row();

                    let label = ui.label("Prompt syntax");
                    let combo = ComboBox::from_id_salt("prompt-syntax")
                        .selected_text(prompt_syntax_label(state.prompt_syntax))
                        .show_ui(ui, |ui| {
                            for syntax in PromptSyntax::ALL {
                                ui.selectable_value(
                                    &mut state.prompt_syntax,
                                    syntax,
                                    prompt_syntax_label(syntax),
                                );
                            }
                        });
                    combo.response.labelled_by(label.id).on_hover_text(
                        "A1111: (word:1.2) weights, [word], BREAK, <lora:…> tags, any length. Plain: the text as written, first 75 tokens (as diffusers)",
                    );
                    ui.end_row();
                });
            ui.add_space(4.0);
            let available = bf16_available();
            let checkbox = ui.add_enabled(
                available,
                egui::Checkbox::new(&mut state.bf16_arithmetic, "Faster bf16 arithmetic (CPU)"),
            );
            let checkbox = if available {
                checkbox.on_hover_text(
                    "Convolutions and linear layers with bf16 inputs and f32 sums: denoising steps \
                     1.6–1.8× faster on a Zen 4 CPU, a whole image ~1.4×; images differ from f32 by \
                     under 1/255 on average",
                )
            } else {
                checkbox.on_disabled_hover_text(
                    "Needs a CPU with AVX-512 BF16 (AMD Zen 4, Intel Sapphire Rapids or newer)",
                )
            };
            if checkbox.changed() {
                commands.push(UiCommand::SetBf16Arithmetic(state.bf16_arithmetic));
            }
            ui.add_space(4.0);
            ui.label("Embeddings folder");
            commands.extend(folder_row(
                ui,
                state.embeddings_folder_in_use().as_deref(),
                state.embeddings_folder.is_some(),
                UiCommand::PickEmbeddingsFolder,
                UiCommand::UseDefaultEmbeddingsFolder,
            ));
        });
    commands
}

pub fn prompt_syntax_label(syntax: PromptSyntax) -> &'static str {
    match syntax {
        PromptSyntax::A1111 => "A1111",
        PromptSyntax::Plain => "Plain (diffusers)",
    }
}
