//! "Upscale" on the shown image: an upscaler file (from the recent list or a dialog), the
//! engine's upscale job, and the result saved as a new image in the output folder with the
//! source's parameters and A1111's `Postprocess …` keys; it arrives as a finished image.

use std::path::PathBuf;

use super::session::Run;
use super::LatentStudioApp;
use crate::engine::{Command, ImageOutput, UpscaleImageJob, UpscaleJob, DEFAULT_UPSCALE_TILE};

impl LatentStudioApp {
    pub(super) fn upscale_shown(&mut self, upscaler: Option<PathBuf>) {
        if self.run.is_some() {
            return;
        }
        let Some(model) = upscaler.or_else(|| self.desktop.pick_upscaler_file()) else {
            return;
        };
        self.state.hires.remember_upscaler(&model);
        let Some(full) = self.viewer.shown_full() else {
            return;
        };
        let image = full.image.as_ref().clone();
        let parameters = self
            .history
            .get(full.entry)
            .map(|entry| entry.parameters.clone())
            .unwrap_or_default();
        self.last_job += 1;
        let job = self.last_job;
        self.run = Some(Run::new(job, image.width, image.height));
        self.worker.send(Command::Upscale(UpscaleImageJob {
            id: job,
            upscale: UpscaleJob {
                model,
                image,
                tile: Some(DEFAULT_UPSCALE_TILE),
            },
            parameters,
            output: ImageOutput::Folder(self.state.output_dir.clone()),
        }));
        // The source stays on screen; the result replaces it when it is saved.
        self.viewer.follow_run = true;
    }
}
