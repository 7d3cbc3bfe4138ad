//! The prompt fields with their token counters, embeddings chips and the Generate buttons.

use super::*;

/// Token counts of the two prompts, recomputed only when the text, the syntax or the
/// tokenizer changes.
#[derive(Default)]
pub struct TokenCounts {
    prompt: CachedCount,
    negative: CachedCount,
}

#[derive(Default)]
pub(super) struct CachedCount {
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

pub(super) fn prompt_section(
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
    prompt_history(ui, state);
}

/// Prompts generated before: searchable, newest first; a click puts one back.
fn prompt_history(ui: &mut Ui, state: &mut State) {
    if state.prompt_history.is_empty() {
        return;
    }
    const SHOWN: usize = 30;
    egui::CollapsingHeader::new(format!("Prompt history ({})", state.prompt_history.len()))
        .id_salt("prompt-history")
        .default_open(false)
        .show(ui, |ui| {
            ui.add(
                TextEdit::singleline(&mut state.prompt_history_search)
                    .hint_text("Search prompts")
                    .desired_width(f32::INFINITY),
            );
            let mut chosen = None;
            for record in state.prompt_history_matches().take(SHOWN) {
                let first_line = record.prompt.lines().next().unwrap_or_default();
                let shown: String = first_line.chars().take(60).collect();
                let response = ui.selectable_label(false, shown).on_hover_text(
                    if record.negative.is_empty() {
                        record.prompt.clone()
                    } else {
                        format!("{}\n\nNegative: {}", record.prompt, record.negative)
                    },
                );
                if response.clicked() {
                    chosen = Some(record.clone());
                }
            }
            if let Some(record) = chosen {
                state.prompt = record.prompt;
                state.negative_prompt = record.negative;
            }
        });
}

/// A field title with the token counter ("23/75", "80/150") on the right; returns the
/// title's response.
pub(super) fn labelled_row(
    ui: &mut Ui,
    title: &str,
    count: Option<(usize, usize)>,
) -> egui::Response {
    ui.horizontal(|ui| {
        let label = ui.strong(title);
        ui.with_layout(Layout::right_to_left(Align::Center), |ui| match count {
            Some((count, capacity)) => {
                let text = RichText::new(format!("{count}/{capacity}")).small();
                // Only plain syntax has a limit: A1111 syntax opens another 75-token chunk.
                if count > capacity {
                    ui.label(text.color(style::warning(ui.visuals()))).on_hover_text(format!(
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
pub(super) fn embedding_chips(ui: &mut Ui, state: &mut State, view: &ControlsView<'_>) {
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

pub(super) fn generate_buttons(ui: &mut Ui, view: &ControlsView<'_>) -> Option<UiCommand> {
    let mut command = None;
    let can_generate = matches!(
        view.model,
        ModelStatus::Ready(_) | ModelStatus::Loading { .. }
    );
    // While the engine is busy (or jobs wait), Generate adds to the queue.
    let queues = view.run.is_some() || !view.queue.is_empty();
    ui.add_space(4.0);
    ui.horizontal(|ui| {
        let height = 36.0;
        let cancel_width = if view.run.is_some() { 96.0 } else { 0.0 };
        let width = (ui.available_width() - cancel_width).max(80.0);
        let generate = Button::new(
            RichText::new(if queues { "Add to queue" } else { "Generate" })
                .size(16.0)
                .strong()
                .color(Color32::WHITE),
        )
        .fill(style::ACCENT)
        .min_size(Vec2::new(width, height));
        let response = ui
            .add_enabled(can_generate, generate)
            .on_hover_text(if queues {
                "Queue these settings; they run after the jobs before them (Ctrl+Enter from anywhere)"
            } else {
                "Ctrl+Enter from anywhere"
            })
            .on_disabled_hover_text(match view.model {
                ModelStatus::Failed { .. } => "The model did not load; choose another one above",
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
                .on_hover_text(
                    "Stop after the current step; finished images are kept and the queue goes on",
                )
                .clicked()
            {
                command = Some(UiCommand::Cancel);
            }
        }
    });
    let forever = view.queue.is_forever();
    let label = if forever {
        "Stop generating forever"
    } else {
        "Generate forever"
    };
    let toggle = ui
        .add_enabled(can_generate || forever, Button::new(label).small())
        .on_hover_text(
            "Run these settings again and again, each time with a new random seed, until stopped",
        );
    if toggle.clicked() {
        command = Some(UiCommand::GenerateForever);
    }
    ui.add_space(4.0);
    command
}
