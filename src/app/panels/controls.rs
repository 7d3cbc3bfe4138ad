//! The left panel: model and VAE, prompts, Generate, sampling settings, size, LoRAs,
//! img2img, advanced settings, output.

use std::path::Path;
use std::sync::Arc;

use egui::{
    Align, Button, Color32, ComboBox, DragValue, Layout, RichText, Slider, TextEdit, Ui, Vec2,
};

use crate::app::command::UiCommand;
use crate::app::loras::{append_to_prompt, lora_name, lora_tag, ListingStatus, LoraListing};
use crate::app::session::{format_bytes, ModelStatus, Run};
use crate::app::state::{
    snap_to_grid, State, MAX_BATCH, MAX_CLIP_SKIP, MAX_GUIDANCE, MAX_LORA_MULTIPLIER, MAX_SIDE,
    MAX_STEPS, SIZE_STEP,
};
use crate::app::InitImageSlot;
use crate::engine::Catalog;
use crate::engine::ClipTokenizer;
use crate::engine::SchedulerKind;
use crate::engine::{bf16_available, ModelSource, PreviewMode};
use crate::engine::{token_usage, PromptSyntax};

use super::{busy, style};

pub struct ControlsView<'a> {
    pub model: &'a ModelStatus,
    pub catalog: &'a Catalog,
    pub run: Option<&'a Run>,
    pub init_image: Option<&'a InitImageSlot>,
    /// The LoRA folder's files, as last listed.
    pub loras: &'a LoraListing,
    /// Put the keyboard in the prompt field this frame.
    pub focus_prompt: bool,
}

pub fn show(
    ui: &mut Ui,
    state: &mut State,
    tokens: &mut TokenCounts,
    view: &ControlsView<'_>,
) -> Vec<UiCommand> {
    let mut commands = Vec::new();
    egui::ScrollArea::vertical()
        .auto_shrink([false, false])
        .show(ui, |ui| {
            ui.add_space(6.0);
            header(ui);
            ui.add_space(6.0);
            commands.extend(model_section(ui, state, view));
            commands.extend(vae_row(ui, state));
            ui.add_space(4.0);
            ui.separator();
            prompt_section(ui, state, tokens, view);
            embedding_chips(ui, state, view);
            commands.extend(generate_buttons(ui, view));
            ui.add_space(2.0);
            ui.separator();
            commands.extend(sampling_section(ui, state, view));
            ui.separator();
            size_section(ui, state, view);
            ui.separator();
            commands.extend(lora_section(ui, state, view));
            commands.extend(img2img_section(ui, state, view));
            commands.extend(advanced_section(ui, state));
            commands.extend(output_section(ui, state));
            ui.add_space(8.0);
        });
    commands
}

/// The app's name, for screenshots and window managers without title bars.
fn header(ui: &mut Ui) {
    ui.horizontal(|ui| {
        ui.label(
            RichText::new("Latent Studio")
                .size(18.0)
                .strong()
                .color(Color32::WHITE),
        );
        ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
            ui.label(
                RichText::new(format!("v{}", env!("CARGO_PKG_VERSION")))
                    .small()
                    .weak(),
            )
            .on_hover_text(crate::VERSION);
        });
    });
}

// ---------------------------------------------------------------------------------------------
// Model

/// How a model is named in the picker: the catalog's name, a folder's or checkpoint file's
/// own name, or the hub id.
pub fn model_display_name(catalog: &Catalog, source: &ModelSource) -> String {
    match source {
        ModelSource::Hub(id) => catalog
            .find(id)
            .map_or_else(|| id.clone(), |entry| entry.name.clone()),
        ModelSource::Folder(path) => folder_name(path),
    }
}

fn folder_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

fn model_section(ui: &mut Ui, state: &State, view: &ControlsView<'_>) -> Option<UiCommand> {
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
            let text = format!(
                "Downloading {}/{} · {}",
                progress.file_index + 1,
                progress.file_count,
                short_file_name(file)
            );
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
                ui.colored_label(style::OK, "Ready");
                ui.weak(facts);
            });
        }
        ModelStatus::Failed { .. } => {
            ui.horizontal(|ui| {
                ui.colored_label(style::ERROR, "Not loaded");
                if ui.small_button("Retry").clicked() {
                    command = Some(UiCommand::RetryModel);
                }
                command = command.take().or(open_model_buttons(ui));
            });
        }
    }
    command
}

/// "Open model file…" and "Open model folder…", in the picker and after a failed load.
fn open_model_buttons(ui: &mut Ui) -> Option<UiCommand> {
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
fn vae_row(ui: &mut Ui, state: &State) -> Option<UiCommand> {
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

fn short_file_name(file: &str) -> &str {
    file.rsplit('/').next().unwrap_or(file)
}

// ---------------------------------------------------------------------------------------------
// Prompts

/// Token counts of the two prompts, recomputed only when the text, the syntax or the
/// tokenizer changes.
#[derive(Default)]
pub struct TokenCounts {
    prompt: CachedCount,
    negative: CachedCount,
}

#[derive(Default)]
struct CachedCount {
    text: String,
    syntax: PromptSyntax,
    tokenizer: usize,
    /// Tokens used and room in the chunks so far (A1111's "80/150").
    usage: (usize, usize),
}

impl CachedCount {
    fn get(
        &mut self,
        tokenizer: &Arc<ClipTokenizer>,
        text: &str,
        syntax: PromptSyntax,
    ) -> (usize, usize) {
        let identity = Arc::as_ptr(tokenizer) as usize;
        if self.tokenizer != identity || self.syntax != syntax || self.text != text {
            self.usage = token_usage(tokenizer, text, syntax);
            self.text = text.to_string();
            self.syntax = syntax;
            self.tokenizer = identity;
        }
        self.usage
    }
}

fn prompt_section(
    ui: &mut Ui,
    state: &mut State,
    tokens: &mut TokenCounts,
    view: &ControlsView<'_>,
) {
    let tokenizer = view.model.loaded().map(|m| &m.tokenizer);
    let syntax = state.prompt_syntax;
    let prompt_count = tokenizer.map(|t| tokens.prompt.get(t, &state.prompt, syntax));
    let negative_count = tokenizer.map(|t| tokens.negative.get(t, &state.negative_prompt, syntax));

    let label = labelled_row(ui, "Prompt", prompt_count);
    let prompt = ui
        .add(
            TextEdit::multiline(&mut state.prompt)
                .hint_text("Describe the image… (Ctrl+Enter to generate)")
                .desired_rows(5)
                .desired_width(f32::INFINITY),
        )
        .labelled_by(label.id);
    if view.focus_prompt {
        prompt.request_focus();
    }

    let label = labelled_row(ui, "Negative prompt", negative_count);
    ui.add(
        TextEdit::multiline(&mut state.negative_prompt)
            .hint_text("What to avoid (optional)")
            .desired_rows(2)
            .desired_width(f32::INFINITY),
    )
    .labelled_by(label.id);
}

/// A field title with the token counter ("23/75", "80/150") on the right; returns the
/// title's response.
fn labelled_row(ui: &mut Ui, title: &str, count: Option<(usize, usize)>) -> egui::Response {
    ui.horizontal(|ui| {
        let label = ui.strong(title);
        ui.with_layout(Layout::right_to_left(Align::Center), |ui| match count {
            Some((count, capacity)) => {
                let text = RichText::new(format!("{count}/{capacity}")).small();
                // Only plain syntax has a limit: A1111 syntax opens another 75-token chunk.
                if count > capacity {
                    ui.label(text.color(style::WARNING)).on_hover_text(format!(
                        "Only the first {capacity} tokens reach the model; the rest is ignored. A1111 syntax (under Advanced) reads longer prompts in 75-token chunks."
                    ));
                } else {
                    ui.label(text.weak()).on_hover_text(
                        "Tokens used / room in the text encoder's 75-token chunks so far",
                    );
                }
            }
            None => {
                ui.label(RichText::new("–").small().weak())
                    .on_hover_text("The token count appears once a model is loaded");
            }
        });
        label
    })
    .inner
}

/// The loaded model's textual-inversion embeddings, as chips: a click adds the name to the
/// prompt, a right click to the negative prompt (where most negative embeddings go).
fn embedding_chips(ui: &mut Ui, state: &mut State, view: &ControlsView<'_>) {
    let Some(model) = view.model.loaded() else {
        return;
    };
    if model.embeddings.is_empty() {
        return;
    }
    ui.horizontal_wrapped(|ui| {
        ui.weak("Embeddings");
        for name in &model.embeddings {
            let chip = ui.small_button(name).on_hover_text(
                "Click: add to the prompt · Right click: add to the negative prompt",
            );
            if chip.clicked() {
                append_to_prompt(&mut state.prompt, name);
            }
            if chip.secondary_clicked() {
                append_to_prompt(&mut state.negative_prompt, name);
            }
        }
    });
}

fn generate_buttons(ui: &mut Ui, view: &ControlsView<'_>) -> Option<UiCommand> {
    let mut command = None;
    let can_generate = view.run.is_none()
        && matches!(
            view.model,
            ModelStatus::Ready(_) | ModelStatus::Loading { .. }
        );
    ui.add_space(4.0);
    ui.horizontal(|ui| {
        let height = 36.0;
        let cancel_width = if view.run.is_some() { 96.0 } else { 0.0 };
        let width = (ui.available_width() - cancel_width).max(80.0);
        let generate = Button::new(
            RichText::new("Generate")
                .size(16.0)
                .strong()
                .color(Color32::WHITE),
        )
        .fill(style::ACCENT)
        .min_size(Vec2::new(width, height));
        let response = ui
            .add_enabled(can_generate, generate)
            .on_hover_text("Ctrl+Enter from anywhere")
            .on_disabled_hover_text(match (view.run, view.model) {
                (Some(_), _) => "Generating… (Cancel to stop)",
                (None, ModelStatus::Failed { .. }) => {
                    "The model did not load; choose another one above"
                }
                _ => "Choose a model first",
            });
        if response.clicked() {
            command = Some(UiCommand::Generate);
        }
        if let Some(run) = view.run {
            let cancel = Button::new(if run.cancelling {
                "Stopping…"
            } else {
                "Cancel"
            })
            .min_size(Vec2::new(ui.available_width(), height));
            if ui
                .add_enabled(!run.cancelling, cancel)
                .on_hover_text("Stop after the current step; finished images are kept")
                .clicked()
            {
                command = Some(UiCommand::Cancel);
            }
        }
    });
    ui.add_space(4.0);
    command
}

// ---------------------------------------------------------------------------------------------
// Sampling

fn sampling_section(ui: &mut Ui, state: &mut State, view: &ControlsView<'_>) -> Option<UiCommand> {
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

            let label = ui.label("Batch");
            let unit = if state.batch_count == 1 { " image" } else { " images" };
            ui.add(DragValue::new(&mut state.batch_count).range(1..=MAX_BATCH).suffix(unit))
                .labelled_by(label.id)
                .on_hover_text("Images per Generate, with seeds seed, seed+1, …");
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

// ---------------------------------------------------------------------------------------------
// Size

#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Square,
    Portrait,
    Landscape,
}

/// The three standard shapes at about the model's native area: SD 1.x/2.x users expect
/// 512×768 and 768×512; SDXL is trained on buckets like 832×1216.
fn preset_size(native: usize, shape: Shape) -> (usize, usize) {
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

fn size_section(ui: &mut Ui, state: &mut State, view: &ControlsView<'_>) {
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

// ---------------------------------------------------------------------------------------------
// LoRA

/// The LoRA folder's files, each with a switch and a strength, like A1111's extra-networks
/// tab; "Tag" puts `<lora:NAME:MULT>` in the prompt instead of using the switch.
fn lora_section(ui: &mut Ui, state: &mut State, view: &ControlsView<'_>) -> Vec<UiCommand> {
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
                        ui.colored_label(style::ERROR, message);
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
fn lora_row(ui: &mut Ui, state: &mut State, file: &str) {
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
fn folder_row(
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

// ---------------------------------------------------------------------------------------------
// Advanced

fn advanced_section(ui: &mut Ui, state: &mut State) -> Vec<UiCommand> {
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

// ---------------------------------------------------------------------------------------------
// img2img

fn img2img_section(ui: &mut Ui, state: &mut State, view: &ControlsView<'_>) -> Vec<UiCommand> {
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

fn fit_within(size: Vec2, bounds: Vec2) -> Vec2 {
    let scale = (bounds.x / size.x.max(1.0)).min(bounds.y / size.y.max(1.0));
    size * scale
}

// ---------------------------------------------------------------------------------------------
// Output and preview

fn output_section(ui: &mut Ui, state: &mut State) -> Vec<UiCommand> {
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
