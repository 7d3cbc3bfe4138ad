//! Prompt styles in the window: A1111's `styles.csv` (ours in the app's data folder, or the
//! user's own A1111 file), styles chosen for the next runs, merged into the prompts at Generate
//! or into the prompt fields on request, and the current prompts saved as a style.

use std::path::PathBuf;

use crate::engine::{apply_styles, read_styles, write_styles, PromptStyle};

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
    pub fn load(path: PathBuf) -> Self {
        match read_styles(&path) {
            Ok(styles) => Self {
                path,
                styles,
                problem: None,
            },
            Err(err) => Self {
                path,
                styles: Vec::new(),
                problem: Some(err.to_string()),
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

    /// Reads the styles file again (after another program changed it, or a new one was picked).
    pub(super) fn reload_styles(&mut self) {
        self.styles = StylesBook::load(self.styles_path());
    }

    pub(super) fn pick_styles_file(&mut self) {
        if let Some(path) = self.desktop.pick_styles_file() {
            self.state.styles_file = Some(path);
            self.reload_styles();
            match &self.styles.problem {
                Some(problem) => self
                    .notices
                    .error("Styles not loaded", problem.clone(), None),
                None => self.notices.info(format!(
                    "{} styles from {}",
                    self.styles.styles.len(),
                    self.styles.path.display()
                )),
            }
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

    /// Saves the prompt fields as style `name` (replacing one of that name, as A1111 does),
    /// re-reading the file first so styles another program added meanwhile are kept.
    pub(super) fn save_style(&mut self, name: String) {
        let name = name.trim().to_string();
        if name.is_empty() {
            self.notices
                .error("Style not saved", "Give the style a name first.", None);
            return;
        }
        let path = self.styles_path();
        let mut styles = match read_styles(&path) {
            Ok(styles) => styles,
            Err(err) => {
                // Never overwrite a file we could not read: it may hold the user's styles.
                self.notices.error("Style not saved", err.to_string(), None);
                return;
            }
        };
        let style = PromptStyle {
            name: name.clone(),
            prompt: self.state.prompt.clone(),
            negative_prompt: self.state.negative_prompt.clone(),
        };
        match styles.iter_mut().find(|s| s.name == name) {
            Some(existing) => *existing = style,
            None => styles.push(style),
        }
        self.write_styles_and_reload(&path, &styles, format!("Style \"{name}\" saved"));
    }

    pub(super) fn delete_style(&mut self, name: &str) {
        let path = self.styles_path();
        let styles = match read_styles(&path) {
            Ok(styles) => styles,
            Err(err) => {
                self.notices
                    .error("Style not deleted", err.to_string(), None);
                return;
            }
        };
        let kept: Vec<_> = styles.into_iter().filter(|s| s.name != name).collect();
        self.state.selected_styles.retain(|s| s != name);
        self.write_styles_and_reload(&path, &kept, format!("Style \"{name}\" deleted"));
    }

    fn write_styles_and_reload(
        &mut self,
        path: &std::path::Path,
        styles: &[PromptStyle],
        done: String,
    ) {
        match write_styles(path, styles) {
            Ok(()) => {
                self.notices.info(done);
                self.state.new_style_name.clear();
            }
            Err(err) => self
                .notices
                .error("Styles not saved", err.to_string(), None),
        }
        self.reload_styles();
    }
}
