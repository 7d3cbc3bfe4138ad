//! Messages for the user: errors with what to do about them, and short confirmations.

use std::time::{Duration, Instant};

use crate::engine::{GenerationFailure, LoadFailure};

/// How long a confirmation ("Saved to …") stays before it fades out by itself.
pub const INFO_LIFETIME: Duration = Duration::from_secs(6);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
    Info,
}

/// What a notice is about, so it can be withdrawn when that recovers (a model error goes
/// once a model loads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    Model,
    /// The engine thread itself (stopped, restarted).
    Engine,
    Other,
}

#[derive(Debug, Clone)]
pub struct Notice {
    pub id: u64,
    pub topic: Topic,
    pub severity: Severity,
    /// One line: what happened.
    pub title: String,
    /// The underlying message (file names, the engine's error text).
    pub detail: String,
    /// What the user can do about it.
    pub hint: Option<String>,
    pub shown_at: Instant,
}

impl Notice {
    /// Errors and warnings stay until dismissed; confirmations expire.
    pub fn expires_at(&self) -> Option<Instant> {
        (self.severity == Severity::Info).then(|| self.shown_at + INFO_LIFETIME)
    }
}

#[derive(Debug, Default)]
pub struct Notices {
    items: Vec<Notice>,
    next_id: u64,
}

/// At most this many notices are kept; a burst of errors does not push the image off screen.
const MAX_NOTICES: usize = 4;

impl Notices {
    pub fn push(
        &mut self,
        severity: Severity,
        title: impl Into<String>,
        detail: impl Into<String>,
        hint: Option<String>,
    ) {
        self.push_about(Topic::Other, severity, title, detail, hint);
    }

    pub fn push_about(
        &mut self,
        topic: Topic,
        severity: Severity,
        title: impl Into<String>,
        detail: impl Into<String>,
        hint: Option<String>,
    ) {
        let title = title.into();
        let detail = detail.into();
        // The same message twice in a row is shown once.
        self.items
            .retain(|n| !(n.title == title && n.detail == detail));
        self.next_id += 1;
        self.items.push(Notice {
            id: self.next_id,
            topic,
            severity,
            title,
            detail,
            hint,
            shown_at: Instant::now(),
        });
        if self.items.len() > MAX_NOTICES {
            let excess = self.items.len() - MAX_NOTICES;
            self.items.drain(..excess);
        }
    }

    pub fn error(
        &mut self,
        title: impl Into<String>,
        detail: impl Into<String>,
        hint: Option<String>,
    ) {
        self.push(Severity::Error, title, detail, hint);
    }

    pub fn info(&mut self, title: impl Into<String>) {
        self.push(Severity::Info, title, String::new(), None);
    }

    pub fn dismiss(&mut self, id: u64) {
        self.items.retain(|n| n.id != id);
    }

    /// Withdraws the notices about something that has since recovered.
    pub fn dismiss_topic(&mut self, topic: Topic) {
        self.items.retain(|n| n.topic != topic);
    }

    /// Removes expired confirmations; returns when the next one expires, to repaint then.
    pub fn expire(&mut self, now: Instant) -> Option<Instant> {
        self.items
            .retain(|n| n.expires_at().is_none_or(|at| at > now));
        self.items.iter().filter_map(Notice::expires_at).min()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Notice> {
        self.items.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// What to do when the server the window drives fails.
const SERVER_HINT: &str = "Check the Engine setting above the model list (the server's address, user and password), or switch Engine to \"This computer\". Your prompt and settings are kept.";

/// What to do when a model does not load.
pub fn model_failure_hint(cause: LoadFailure, message: &str) -> String {
    match cause {
        LoadFailure::Offline => "The Hugging Face hub cannot be reached. Connect to the internet and press Retry, or use \"Open model folder…\" for a diffusers folder you already have.".into(),
        LoadFailure::Download => "The download stopped. Press Retry: finished files are kept and the download resumes.".into(),
        LoadFailure::NotAModel if message.to_lowercase().contains("no such model folder") => {
            "The folder is gone or was moved. Pick another model from the list, or use \"Open model folder…\" to locate it.".into()
        }
        LoadFailure::NotAModel => "This is not a model this app can read. Use \"Open model file…\" for a single-file .safetensors checkpoint, or \"Open model folder…\" for a diffusers folder (model_index.json, unet/, vae/, text_encoder/, tokenizer/).".into(),
        LoadFailure::Invalid if is_out_of_memory(&message.to_lowercase()) => {
            "Not enough memory for this model. Close other programs or choose a smaller model (SD-Turbo or SD 1.5).".into()
        }
        LoadFailure::Invalid | LoadFailure::Internal => {
            "Pick another model from the list, or use \"Open model file…\" or \"Open model folder…\" to choose another.".into()
        }
        LoadFailure::Server => SERVER_HINT.into(),
    }
}

/// What to do when a generation fails.
pub fn generation_failure_hint(failure: &GenerationFailure) -> String {
    match failure {
        GenerationFailure::OutOfMemory(_) => "Out of memory: lower the width and height, or set the batch count to 1, then generate again.".into(),
        GenerationFailure::NoModel => "Choose a model in the Model list first; it loads in the background.".into(),
        GenerationFailure::Lora(_) => "Check the LoRA list and the <lora:…> tags in the prompt, then generate again.".into(),
        GenerationFailure::ControlNet(_) => "Check the ControlNet units: each needs a ControlNet made for this model's family and a picture.".into(),
        GenerationFailure::Server(_) => SERVER_HINT.into(),
        GenerationFailure::InvalidRequest(_)
        | GenerationFailure::Compute(_)
        | GenerationFailure::Internal(_) => {
            "Your prompt and settings are kept. Adjust them and press Generate again.".into()
        }
    }
}

fn is_out_of_memory(lower: &str) -> bool {
    lower.contains("out of memory") || lower.contains("alloc") || lower.contains("oom")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirmations_expire_and_errors_stay() {
        let mut notices = Notices::default();
        notices.error("Model failed", "x", None);
        notices.info("Saved");
        let later = Instant::now() + INFO_LIFETIME + Duration::from_secs(1);
        assert_eq!(notices.expire(later), None);
        assert_eq!(notices.iter().count(), 1);
        assert_eq!(
            notices.iter().next().map(|n| n.severity),
            Some(Severity::Error)
        );
    }

    #[test]
    fn hints_follow_the_message() {
        assert!(
            model_failure_hint(LoadFailure::NotAModel, "/x: no such model folder or file")
                .contains("Open model")
        );
        assert!(model_failure_hint(LoadFailure::Offline, "x/y: dns").contains("Retry"));
        let oom = GenerationFailure::OutOfMemory("CUDA_ERROR_OUT_OF_MEMORY".into());
        assert!(generation_failure_hint(&oom).contains("width and height"));
        assert!(generation_failure_hint(&GenerationFailure::NoModel).contains("Model list"));
    }
}
