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

/// `image` as texture data no larger than the GPU takes (`max_texture_side`): a picture
/// wider or taller is scaled down first (uploading it whole makes the renderer abort).
pub fn color_image(ctx: &egui::Context, image: &RgbImage) -> ColorImage {
    fit_for_texture(image, ctx.input(|i| i.max_texture_side))
}

/// `image` as egui image data, scaled down to at most `max_side` pixels a side.
pub fn fit_for_texture(image: &RgbImage, max_side: usize) -> ColorImage {
    let max_side = max_side.max(1);
    let expected = image
        .width
        .checked_mul(image.height)
        .and_then(|n| n.checked_mul(3));
    if expected != Some(image.pixels.len()) {
        // A malformed buffer shows as a grey square rather than taking the window down.
        return ColorImage::filled([1, 1], egui::Color32::GRAY);
    }
    if image.width > max_side || image.height > max_side {
        let fitted = thumbnail(image, max_side as u32);
        return ColorImage::from_rgb([fitted.width, fitted.height], &fitted.pixels);
    }
    ColorImage::from_rgb([image.width, image.height], &image.pixels)
}

pub fn load_texture(ctx: &egui::Context, name: &str, image: &RgbImage) -> TextureHandle {
    ctx.load_texture(name, color_image(ctx, image), TextureOptions::LINEAR)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pictures_beyond_the_texture_limit_are_scaled_to_fit() {
        let wide = RgbImage {
            width: 65536,
            height: 1,
            pixels: vec![9; 65536 * 3],
        };
        let fitted = fit_for_texture(&wide, 16384);
        assert_eq!(fitted.size, [16384, 1]);
        let broken = RgbImage {
            width: usize::MAX,
            height: 2,
            pixels: vec![],
        };
        assert_eq!(fit_for_texture(&broken, 16384).size, [1, 1]);
        let small = RgbImage {
            width: 2,
            height: 2,
            pixels: vec![1; 12],
        };
        assert_eq!(fit_for_texture(&small, 16384).size, [2, 2]);
    }
}
