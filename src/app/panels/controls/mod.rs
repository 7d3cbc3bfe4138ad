//! The left panel: model and VAE, prompts, Generate, sampling settings, size, LoRAs,
//! img2img, advanced settings, output — one file per section; this one holds the shared
//! imports and [`show`], which lays the sections out.

use std::path::Path;
use std::sync::Arc;

use egui::{
    Align, Button, Color32, ComboBox, DragValue, Layout, RichText, Slider, TextEdit, Ui, Vec2,
};

use crate::app::command::UiCommand;
use crate::app::inpaint::OUTPAINT_STEP;
use crate::app::loras::{append_to_prompt, lora_name, lora_tag, ListingStatus, LoraListing};
use crate::app::session::{format_bytes, ModelStatus, Run};
use crate::app::state::{
    snap_to_grid, State, ThemeChoice, MAX_BATCH, MAX_BATCH_SIZE, MAX_CLIP_SKIP, MAX_GUIDANCE,
    MAX_INPAINT_PADDING, MAX_LORA_MULTIPLIER, MAX_MASK_BLUR, MAX_SIDE, MAX_STEPS, SIZE_STEP,
};
use crate::app::styles::StylesBook;
use crate::app::InitImageSlot;
use crate::engine::Catalog;
use crate::engine::ClipTokenizer;
use crate::engine::MaskedContent;
use crate::engine::SchedulerKind;
use crate::engine::{bf16_available, ModelSource, PreviewMode};
use crate::engine::{token_usage, PromptSyntax};

use super::{busy, style};

mod add_ons;
mod controlnet;
mod engine;
mod hires;
mod img2img;
mod model;
mod output;
mod prompt;
mod sampling;
mod styles;

use add_ons::*;
use controlnet::*;
use engine::*;
use hires::*;
use img2img::*;
use model::*;
use output::*;
use prompt::*;
use sampling::*;
use styles::*;

pub use model::model_display_name;
pub use prompt::TokenCounts;

pub struct ControlsView<'a> {
    pub model: &'a ModelStatus,
    pub catalog: &'a Catalog,
    pub run: Option<&'a Run>,
    pub init_image: Option<&'a InitImageSlot>,
    /// The mask canvas is in the centre.
    pub mask_editing: bool,
    /// The LoRA folder's files, as last listed.
    pub loras: &'a LoraListing,
    /// The styles file as last read.
    pub styles: &'a StylesBook,
    /// The ControlNet units' pictures.
    pub control_pictures: &'a crate::app::controlnets::ControlPictures,
    /// An image is shown in full in the centre (it can be a ControlNet's picture).
    pub has_shown_image: bool,
    /// Put the keyboard in the prompt field this frame.
    pub focus_prompt: bool,
    /// The models of the server the window drives, when it drives one.
    pub server_models: &'a crate::app::remote::ServerModelList,
    /// Jobs waiting for the engine: Generate adds to them.
    pub queue: &'a crate::app::queue::Queue,
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
            commands.extend(header(ui, state));
            ui.add_space(6.0);
            commands.extend(engine_section(ui, state, view));
            commands.extend(model_section(ui, state, view));
            commands.extend(vae_row(ui, state));
            ui.add_space(4.0);
            ui.separator();
            prompt_section(ui, state, tokens, view);
            embedding_chips(ui, state, view);
            commands.extend(styles_section(ui, state, view));
            commands.extend(generate_buttons(ui, view));
            ui.add_space(2.0);
            ui.separator();
            commands.extend(sampling_section(ui, state, view));
            ui.separator();
            size_section(ui, state, view);
            commands.extend(hires_section(ui, state));
            ui.separator();
            commands.extend(lora_section(ui, state, view));
            commands.extend(img2img_section(ui, state, view));
            commands.extend(controlnet_section(ui, state, view));
            commands.extend(advanced_section(ui, state));
            commands.extend(output_section(ui, state));
            ui.add_space(8.0);
        });
    commands
}

/// The app's name, for screenshots and window managers without title bars, the About button
/// and the theme.
fn header(ui: &mut Ui, state: &mut State) -> Option<UiCommand> {
    let theme = state.theme;
    let mut command = None;
    ui.horizontal(|ui| {
        ui.label(RichText::new("Latent Studio").size(18.0).strong());
        ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
            let combo = ComboBox::from_id_salt("theme")
                .selected_text(theme.label())
                .width(70.0)
                .show_ui(ui, |ui| {
                    for choice in ThemeChoice::ALL {
                        if ui
                            .selectable_label(choice == theme, choice.label())
                            .clicked()
                            && choice != theme
                        {
                            command = Some(UiCommand::ChangeTheme(choice));
                        }
                    }
                });
            let label = ui.weak("Theme");
            combo
                .response
                .labelled_by(label.id)
                .on_hover_text("Dark, light, or as the desktop is set");
            ui.add_space(6.0);
            if ui
                .small_button("About")
                .on_hover_text(format!("Latent Studio {}", crate::VERSION))
                .clicked()
            {
                state.about_open = !state.about_open;
            }
            ui.label(
                RichText::new(format!("v{}", env!("CARGO_PKG_VERSION")))
                    .small()
                    .weak(),
            );
        });
    });
    super::about::show(ui.ctx(), state);
    command
}
