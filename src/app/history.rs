//! Every image of the session plus the PNGs already in the output folder, newest first.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use egui::{ColorImage, TextureHandle, TextureOptions};

use crate::engine::FinishedImage;
use crate::engine::GenerationParameters;
use crate::engine::RgbImage;

use super::files::{thumbnail, ScannedImage, THUMBNAIL_SIDE};

pub struct HistoryEntry {
    pub id: u64,
    /// Where the image is on disk; `None` when saving failed (the pixels are then kept here).
    pub path: Option<PathBuf>,
    /// The A1111 `parameters` text; empty when the file has none.
    pub parameters: String,
    pub parsed: Option<GenerationParameters>,
    pub width: usize,
    pub height: usize,
    pub thumbnail: TextureHandle,
    /// The full image, kept in memory only while it exists nowhere else.
    pub unsaved: Option<Arc<RgbImage>>,
    pub modified: SystemTime,
    /// Made in this session (as opposed to listed from the folder).
    pub from_session: bool,
}

impl HistoryEntry {
    pub fn seed(&self) -> Option<u64> {
        self.parsed.as_ref().map(|p| p.seed)
    }

    /// A file name for "Save as…": the original name, else `latent-studio-SEED.png`.
    pub fn suggested_file_name(&self) -> String {
        match (&self.path, self.seed()) {
            (Some(path), _) => path
                .file_name()
                .map_or_else(|| "image.png".into(), |n| n.to_string_lossy().into_owned()),
            (None, Some(seed)) => format!("latent-studio-{seed}.png"),
            (None, None) => "latent-studio.png".into(),
        }
    }

    /// One line for tooltips: the prompt, shortened.
    pub fn caption(&self) -> String {
        let prompt = self.parsed.as_ref().map_or("", |p| p.prompt.as_str());
        let name = self
            .path
            .as_deref()
            .and_then(Path::file_name)
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "not saved".into());
        if prompt.is_empty() {
            name
        } else {
            format!("{name}: {}", shorten(prompt, 120))
        }
    }
}

#[derive(Default)]
pub struct History {
    /// Newest first.
    entries: Vec<HistoryEntry>,
    next_id: u64,
}

impl History {
    pub fn entries(&self) -> &[HistoryEntry] {
        &self.entries
    }

    pub fn get(&self, id: u64) -> Option<&HistoryEntry> {
        self.entries.iter().find(|e| e.id == id)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry before/after `id` in display order (for arrow-key browsing).
    pub fn neighbour(&self, id: u64, forward: bool) -> Option<u64> {
        let index = self.entries.iter().position(|e| e.id == id)?;
        let next = if forward {
            index.checked_add(1)?
        } else {
            index.checked_sub(1)?
        };
        self.entries.get(next).map(|e| e.id)
    }

    /// Adds a just-made image at the front; returns its id.
    pub fn add_finished(&mut self, ctx: &egui::Context, finished: &FinishedImage) -> u64 {
        let small = thumbnail(&finished.image, THUMBNAIL_SIDE);
        let id = self.allocate_id();
        if let Some(path) = &finished.path {
            // The folder scan may have listed it already, when it ran right after the save.
            self.entries.retain(|e| e.path.as_ref() != Some(path));
        }
        self.entries.insert(
            0,
            HistoryEntry {
                id,
                path: finished.path.clone(),
                parsed: GenerationParameters::parse_a1111(&finished.parameters).ok(),
                parameters: finished.parameters.clone(),
                width: finished.image.width,
                height: finished.image.height,
                thumbnail: load_texture(ctx, &format!("thumbnail-{id}"), &small),
                unsaved: finished
                    .path
                    .is_none()
                    .then(|| Arc::new(finished.image.clone())),
                modified: SystemTime::now(),
                from_session: true,
            },
        );
        id
    }

    /// Adds a file found in the output folder, in date order; `None` if it is listed already.
    pub fn add_scanned(&mut self, ctx: &egui::Context, scanned: ScannedImage) -> Option<u64> {
        if self
            .entries
            .iter()
            .any(|e| e.path.as_ref() == Some(&scanned.path))
        {
            return None;
        }
        let id = self.allocate_id();
        let parameters = scanned.parameters.unwrap_or_default();
        let entry = HistoryEntry {
            id,
            parsed: GenerationParameters::parse_a1111(&parameters).ok(),
            parameters,
            path: Some(scanned.path),
            width: scanned.width,
            height: scanned.height,
            thumbnail: load_texture(ctx, &format!("thumbnail-{id}"), &scanned.thumbnail),
            unsaved: None,
            modified: scanned.modified,
            from_session: false,
        };
        let position = self
            .entries
            .iter()
            .position(|e| !e.from_session && e.modified < entry.modified)
            .unwrap_or(self.entries.len());
        self.entries.insert(position, entry);
        Some(id)
    }

    /// Forgets what was listed from a folder (the output folder changed); the session's own
    /// images stay.
    pub fn forget_listed(&mut self) {
        self.entries.retain(|e| e.from_session);
    }

    fn allocate_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
}

pub fn color_image(image: &RgbImage) -> ColorImage {
    let expected = image.width * image.height * 3;
    if image.pixels.len() != expected {
        // A malformed buffer shows as a grey square rather than taking the window down.
        return ColorImage::filled(
            [image.width.max(1), image.height.max(1)],
            egui::Color32::GRAY,
        );
    }
    ColorImage::from_rgb([image.width, image.height], &image.pixels)
}

pub fn load_texture(ctx: &egui::Context, name: &str, image: &RgbImage) -> TextureHandle {
    ctx.load_texture(name, color_image(image), TextureOptions::LINEAR)
}

/// At most `max` characters, with an ellipsis when cut.
pub fn shorten(text: &str, max: usize) -> String {
    let single_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if single_line.chars().count() <= max {
        single_line
    } else {
        let cut: String = single_line.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}
