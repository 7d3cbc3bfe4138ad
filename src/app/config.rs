//! How the window starts: from the command line, or from a test.

use std::path::PathBuf;

use crate::engine::ModelSource;

use super::desktop::{Desktop, NativeDesktop};

pub struct AppConfig {
    /// Overrides the remembered model (`--model`).
    pub model: Option<ModelSource>,
    /// Overrides the remembered output folder (`--output-dir`).
    pub output_dir: Option<PathBuf>,
    /// A picture to open as if dropped on the window (`latent-studio PICTURE`, which is how
    /// the desktop's "Open with" starts the app): a PNG with settings restores them.
    pub open_image: Option<PathBuf>,
    pub desktop: Box<dyn Desktop>,
    /// Read the settings eframe stored last time (off in tests, which start clean).
    pub restore_saved_state: bool,
    /// Where the queue is kept between runs; `None`: not kept.
    pub queue_folder: Option<PathBuf>,
}

impl AppConfig {
    pub fn new(
        model: Option<ModelSource>,
        output_dir: Option<PathBuf>,
        open_image: Option<PathBuf>,
    ) -> Self {
        Self {
            model,
            output_dir,
            open_image,
            desktop: Box::new(NativeDesktop),
            restore_saved_state: true,
            queue_folder: eframe::storage_dir("latent-studio").map(|dir| dir.join("queue")),
        }
    }
}
