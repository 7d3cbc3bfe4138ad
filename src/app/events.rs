//! What the background services answer, applied to the window: the engine's events (model
//! loads, progress and previews, finished images, failures), the file thread's results
//! (listed, opened and exported images) and dropped files.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use super::command::ArrivalTarget;
use super::session::AddOnDownload;
use super::*;
use crate::engine::{DownloadProgress, DownloadPurpose};

impl LatentStudioApp {
    /// The engine's events applied; then the control maps only it can make are asked for.
    pub(super) fn poll_worker(&mut self, ctx: &egui::Context) {
        while let Some(event) = self.worker.try_recv() {
            self.on_worker_event(ctx, event);
        }
        self.update_control_maps(ctx);
    }

    pub(super) fn on_worker_event(&mut self, ctx: &egui::Context, event: Event) {
        match event {
            Event::ServerModels {
                titles,
                current,
                problem,
            } => self.on_server_models(titles, current, problem),
            Event::ControlMap {
                unit,
                preprocessor,
                image,
                map,
            } => {
                let shown = self
                    .control_pictures
                    .receive_map(ctx, unit, preprocessor, &image, map);
                if let Err(message) = shown {
                    let title = format!("ControlNet {unit}: no preview");
                    self.notices.push(Severity::Warning, &title, message, None);
                }
            }
            Event::Notice { message } => {
                self.notices.push(Severity::Warning, "Note", message, None);
            }
            Event::VaeRejected { message } => {
                // The worker went back to the model's own VAE; the picker must say so too.
                self.state.vae = None;
                self.notices.push(Severity::Warning, "Note", message, None);
            }
            Event::ModelLoading { source } => {
                self.model = ModelStatus::Loading {
                    source,
                    download: None,
                };
            }
            Event::Download {
                source,
                file,
                progress,
                purpose,
            } => self.on_download(source, file, progress, purpose),
            Event::ModelLoaded(model) => {
                let current = self.state.model.as_ref() == Some(&model.source);
                if current && self.state.defaults_applied_for.as_ref() != Some(&model.source) {
                    let defaults = model.info.defaults;
                    self.state.apply_model_defaults(&model.source, &defaults);
                }
                self.notices.dismiss_topic(Topic::Model);
                self.model = ModelStatus::Ready(model);
            }
            Event::ModelFailed {
                source,
                message,
                cause,
            } => {
                self.notices.push_about(
                    Topic::Model,
                    Severity::Error,
                    format!(
                        "Could not load {}",
                        panels::controls::model_display_name(self.catalog, &source)
                    ),
                    message.clone(),
                    Some(notices::model_failure_hint(cause, &message)),
                );
                self.model = ModelStatus::Failed { source, message };
            }
            Event::Started {
                job,
                index,
                seed,
                total_steps,
            } => {
                if let Some(run) = self.run.as_mut().filter(|r| r.job == job) {
                    run.download = None;
                    run.image_index = index;
                    run.seed = seed;
                    run.step = 0;
                    run.total_steps = total_steps;
                    run.elapsed_secs = 0.0;
                    run.image_started = Instant::now();
                    self.viewer.clear_preview();
                    if self.viewer.follow_run {
                        self.viewer.show_live();
                    }
                }
            }
            Event::Step {
                job,
                index,
                step,
                total,
                elapsed_secs,
                preview,
            } => {
                if let Some(run) = self.run.as_mut().filter(|r| r.job == job) {
                    run.image_index = index;
                    run.step = step;
                    run.total_steps = total;
                    run.elapsed_secs = elapsed_secs;
                    if let Some(preview) = preview {
                        self.viewer.set_preview(ctx, &preview);
                    }
                }
            }
            Event::Finished { image, .. } => self.on_finished(ctx, image),
            Event::Cancelled { job } => {
                if self.run.as_ref().is_some_and(|r| r.job == job) {
                    self.notices
                        .info("Generation cancelled; finished images are kept");
                    self.queue.current_stopped();
                }
            }
            Event::Failed { job, failure } => {
                if self.run.as_ref().is_some_and(|r| r.job == job) {
                    self.queue.current_stopped();
                }
                let hint = notices::generation_failure_hint(&failure);
                self.notices
                    .error("Generation failed", failure.to_string(), Some(hint));
            }
            Event::JobDone { job } => {
                if self.run.as_ref().is_some_and(|r| r.job == job) {
                    self.run = None;
                    // Nothing finished (cancelled or failed before the first image): show the
                    // last real image rather than a half-denoised preview.
                    if self.viewer.showing == Showing::Live {
                        let latest = self.history.entries().first().map(|e| e.id);
                        match latest {
                            Some(id) => self.show_entry(ctx, id),
                            None => self.viewer.showing = Showing::Nothing,
                        }
                        self.viewer.follow_run = true;
                    }
                }
            }
        }
    }

    /// A model's download shows as the model loading; a job's in its progress bar (until its
    /// last file is in); a map preview's above the canvas.
    fn on_download(
        &mut self,
        source: ModelSource,
        file: String,
        progress: DownloadProgress,
        purpose: DownloadPurpose,
    ) {
        let add_on = || {
            let download = AddOnDownload {
                name: source.to_string(),
                file: file.clone(),
                progress,
            };
            (!download.is_finished()).then_some(download)
        };
        match purpose {
            DownloadPurpose::Model => {
                self.model = ModelStatus::Loading {
                    source: source.clone(),
                    download: Some((file.clone(), progress)),
                };
            }
            DownloadPurpose::Job(job) => {
                if let Some(run) = self.run.as_mut().filter(|r| r.job == job) {
                    run.download = add_on();
                }
            }
            DownloadPurpose::ControlMap { .. } => self.control_pictures.download = add_on(),
        }
    }

    pub(super) fn on_finished(&mut self, ctx: &egui::Context, finished: FinishedImage) {
        let id = self.history.add_finished(ctx, &finished);
        if let Some(message) = &finished.save_error {
            self.notices.error(
                "The image could not be saved",
                message.clone(),
                Some("It is kept in this session: use \"Save as…\" to write it elsewhere, or choose another output folder.".into()),
            );
        }
        if self.viewer.follow_run {
            self.viewer.show_entry(id);
            self.viewer.set_full(ctx, id, Arc::new(finished.image));
        }
    }

    pub(super) fn poll_files(&mut self, ctx: &egui::Context) {
        while let Some(result) = self.files.try_recv() {
            self.on_file_result(ctx, result);
        }
    }

    pub(super) fn on_file_result(&mut self, ctx: &egui::Context, result: FileResult) {
        match result {
            FileResult::Scanned { generation, image } => {
                if generation != self.scan_generation {
                    return;
                }
                let added = self.history.add_scanned(ctx, image);
                // At start, show the newest image instead of an empty canvas.
                if let (Some(id), Showing::Nothing, None) = (added, self.viewer.showing, &self.run)
                {
                    self.show_entry(ctx, id);
                    self.viewer.follow_run = true;
                }
            }
            FileResult::ScanFailed {
                generation,
                folder,
                message,
            } => {
                if generation == self.scan_generation {
                    self.notices.push(
                        Severity::Warning,
                        "Earlier images could not be listed",
                        message,
                        Some(format!(
                            "New images are still saved to {} when it becomes writable; or choose another output folder.",
                            folder.display()
                        )),
                    );
                }
            }
            FileResult::Opened {
                path,
                purpose,
                outcome,
            } => self.on_opened(ctx, &path, purpose, outcome),
            FileResult::LorasListed { folder, outcome } => {
                // A listing of a folder no longer in use is dropped.
                if self.loras.folder.as_ref() == Some(&folder) {
                    match outcome {
                        Ok(files) => {
                            self.loras.files = files;
                            self.loras.status = ListingStatus::Ready;
                        }
                        Err(message) => self.loras.status = ListingStatus::Failed(message),
                    }
                }
            }
            FileResult::StylesRead {
                path,
                task,
                reading,
                outcome,
            } => self.on_styles_read(path, task, reading, outcome),
            FileResult::ModelsListed { listing, deleted } => {
                self.on_models_listed(listing, deleted)
            }
            FileResult::Exported { path, outcome } => match outcome {
                Ok(()) => self.notices.info(format!("Saved {}", path.display())),
                Err(message) => self.notices.error(
                    "Save as… failed",
                    message,
                    Some("Choose another folder or file name and try again.".into()),
                ),
            },
        }
    }

    pub(super) fn on_opened(
        &mut self,
        ctx: &egui::Context,
        path: &Path,
        purpose: OpenPurpose,
        outcome: Result<files::OpenedImage, String>,
    ) {
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let opened = match outcome {
            Ok(opened) => opened,
            Err(message) => {
                self.notices.error(
                    format!("Cannot open {name}"),
                    message,
                    Some("Use a PNG, JPEG or WebP image.".into()),
                );
                return;
            }
        };
        match purpose {
            OpenPurpose::View { entry } => {
                if self.viewer.shown_entry() == Some(entry) {
                    self.viewer.set_full(ctx, entry, Arc::new(opened.image));
                }
            }
            OpenPurpose::InitImage => {
                self.set_init_image(ctx, name.clone(), Arc::new(opened.image), false);
                self.notices.info(format!("Starting from {name}"));
            }
            OpenPurpose::ControlImage(unit) => {
                self.set_control_image(ctx, unit, name, Arc::new(opened.image));
            }
            OpenPurpose::DroppedOnControlUnit(unit) => {
                self.set_control_image(ctx, unit, name.clone(), Arc::new(opened.image));
                self.notices
                    .info(format!("{name} is ControlNet unit {}'s picture", unit + 1));
            }
            OpenPurpose::Dropped => {
                let params = opened
                    .parameters
                    .as_deref()
                    .and_then(|text| GenerationParameters::parse_a1111(text).ok());
                match params {
                    Some(params) => self.restore_parameters(&params, &name),
                    None => {
                        self.set_init_image(ctx, name.clone(), Arc::new(opened.image), false);
                        self.notices.info(format!(
                            "{name} has no generation settings; starting from it (img2img)"
                        ));
                    }
                }
            }
        }
    }

    /// Files dropped on the window. On a ControlNet unit the first becomes its picture, as
    /// "Choose…" reads it (a PNG's settings are not restored: the user aimed at the unit);
    /// elsewhere PNGs with settings restore them and other images become the init image.
    /// Decoding happens on the file thread.
    pub(super) fn drop_files(&mut self, paths: Vec<PathBuf>, target: ArrivalTarget) {
        match target {
            ArrivalTarget::ControlUnit(unit) if unit < self.state.control_units.len() => {
                if let Some(path) = paths.into_iter().next() {
                    self.files.send(FileRequest::Open {
                        path,
                        purpose: OpenPurpose::DroppedOnControlUnit(unit),
                    });
                }
            }
            _ => {
                for path in paths {
                    self.open_as_dropped(path);
                }
            }
        }
    }

    /// A picture given on the command line ("Open with Latent Studio"): what dropping it on
    /// the window does — a PNG with settings restores them, any other picture becomes the
    /// img2img start image.
    pub(super) fn open_as_dropped(&mut self, path: PathBuf) {
        let purpose = if files::is_png(&path) {
            OpenPurpose::Dropped
        } else {
            OpenPurpose::InitImage
        };
        self.files.send(FileRequest::Open { path, purpose });
    }
}
