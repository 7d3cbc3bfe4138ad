//! Prompt styles in the window: A1111's `styles.csv` (ours in the app's data folder, or the
//! user's own A1111 file), styles chosen for the next runs, merged into the prompts at Generate
//! or into the prompt fields on request, and the current prompts saved as a style. The file is
//! read and written on the file thread (`StyleTask::run`); the window keeps the last reading.

use std::path::PathBuf;

use crate::engine::{apply_styles, PromptStyle, StyleOutcome, StyleTask};

use super::files::FileRequest;
use super::state::State;
use super::LatentStudioApp;

/// Where styles are kept unless the user picks another file.
pub fn default_styles_file() -> PathBuf {
    dirs::data_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("latent-studio")
        .join("styles.csv")
}

/// The styles file as last read.
#[derive(Debug, Default)]
pub struct StylesBook {
    pub path: PathBuf,
    pub styles: Vec<PromptStyle>,
    /// Why the file could not be read, shown in the styles section.
    pub problem: Option<String>,
}

impl StylesBook {
    /// The book of a reading of `path` (its styles, or why it could not be read).
    pub fn read(path: PathBuf, reading: Result<Vec<PromptStyle>, String>) -> Self {
        match reading {
            Ok(styles) => Self {
                path,
                styles,
                problem: None,
            },
            Err(problem) => Self {
                path,
                styles: Vec::new(),
                problem: Some(problem),
            },
        }
    }

    /// The chosen styles that the file has, in the order chosen.
    pub fn chosen<'a>(&'a self, names: &'a [String]) -> impl Iterator<Item = &'a PromptStyle> {
        names
            .iter()
            .filter_map(|name| self.styles.iter().find(|style| style.name == *name))
    }

    /// The prompt and negative prompt the next Generate uses.
    pub fn styled_prompts(&self, state: &State) -> (String, String) {
        apply_styles(
            &state.prompt,
            &state.negative_prompt,
            self.chosen(&state.selected_styles),
        )
    }
}

impl LatentStudioApp {
    fn styles_path(&self) -> PathBuf {
        self.state
            .styles_file
            .clone()
            .unwrap_or_else(default_styles_file)
    }

    fn send_style_task(&self, task: StyleTask) {
        self.files.send(FileRequest::Styles {
            path: self.styles_path(),
            task,
        });
    }

    /// Reads the styles file again (after another program changed it, or a new one was picked).
    pub(super) fn reload_styles(&mut self) {
        self.send_style_task(StyleTask::Read);
    }

    pub(super) fn pick_styles_file(&mut self) {
        if let Some(path) = self.desktop.pick_styles_file() {
            self.state.styles_file = Some(path);
            self.send_style_task(StyleTask::Picked);
        }
    }

    /// A reading of a styles file from the file thread, with what its task did.
    pub(super) fn on_styles_read(
        &mut self,
        path: PathBuf,
        task: StyleTask,
        reading: Result<Vec<PromptStyle>, String>,
        outcome: Option<StyleOutcome>,
    ) {
        match outcome {
            Some(Ok(done)) => {
                if let StyleTask::Save(style) = &task {
                    if self.state.new_style_name.trim() == style.name {
                        self.state.new_style_name.clear();
                    }
                }
                self.notices.info(done);
            }
            Some(Err((title, reason))) => self.notices.error(title, reason, None),
            None => {}
        }
        // A reading of a file no longer in use is dropped.
        if path == self.styles_path() {
            self.styles = StylesBook::read(path, reading);
        }
    }

    /// A1111's "apply styles": the chosen styles go into the prompt fields and are unchosen,
    /// so they are not applied a second time.
    pub(super) fn apply_styles_to_prompts(&mut self) {
        let (prompt, negative) = self.styles.styled_prompts(&self.state);
        self.state.prompt = prompt;
        self.state.negative_prompt = negative;
        self.state.selected_styles.clear();
    }

    /// Saves the prompt fields as style `name` (replacing one of that name).
    pub(super) fn save_style(&mut self, name: String) {
        let name = name.trim().to_string();
        if name.is_empty() {
            self.notices
                .error("Style not saved", "Give the style a name first.", None);
            return;
        }
        self.send_style_task(StyleTask::Save(PromptStyle {
            name,
            prompt: self.state.prompt.clone(),
            negative_prompt: self.state.negative_prompt.clone(),
        }));
    }

    pub(super) fn delete_style(&mut self, name: &str) {
        self.state.selected_styles.retain(|s| s != name);
        self.send_style_task(StyleTask::Delete(name.to_string()));
    }
}
