//! Restoring settings from an image's A1111 `parameters`: the shown history image, a dropped
//! or opened PNG, and the model it names (by name, or by its hash in the background).

use super::command::ArrivalTarget;
use super::*;

impl LatentStudioApp {
    /// Ctrl+V of text outside the text fields: A1111 `parameters`, as A1111's paste button.
    pub(super) fn paste_parameters(&mut self, text: &str) {
        match GenerationParameters::parse_a1111(text) {
            Ok(params) => self.restore_parameters(&params, "the pasted text"),
            Err(_) => self.notices.push(
                Severity::Warning,
                "The pasted text holds no generation settings",
                "Copy the parameters text of an image (A1111's or Latent Studio's), then press Ctrl+V outside the text fields.".to_string(),
                None,
            ),
        }
    }

    /// Ctrl+V of a picture: the picture of the ControlNet unit under the pointer, else the
    /// img2img start image, as a dropped picture does.
    pub(super) fn paste_image(
        &mut self,
        ctx: &egui::Context,
        pasted: &egui::ColorImage,
        target: ArrivalTarget,
    ) {
        let [width, height] = pasted.size;
        let largest = MAX_PICTURE_SIDE as usize;
        if width == 0 || height == 0 || width > largest || height > largest {
            self.notices.error(
                "The pasted picture is not used",
                format!("It is {width}×{height} pixels; a picture has 1 to {largest} a side."),
                None,
            );
            return;
        }
        // Straight (not premultiplied) colour without alpha, as a decoded RGBA file gives.
        let pixels = pasted
            .pixels
            .iter()
            .flat_map(|pixel| {
                let [r, g, b, _] = pixel.to_srgba_unmultiplied();
                [r, g, b]
            })
            .collect();
        let image = Arc::new(RgbImage {
            width,
            height,
            pixels,
        });
        let name = "pasted picture".to_string();
        match target {
            ArrivalTarget::ControlUnit(unit) if unit < self.state.control_units.len() => {
                self.set_control_image(ctx, unit, name, image);
                self.notices.info(format!(
                    "The pasted picture ({width}×{height}) is ControlNet unit {}'s picture",
                    unit + 1
                ));
            }
            _ => {
                self.set_init_image(ctx, name, image, false);
                self.notices.info(format!(
                    "Starting from the pasted picture ({width}×{height})"
                ));
            }
        }
    }

    pub(super) fn reuse_shown_parameters(&mut self) {
        let Some(entry) = self.shown_entry() else {
            return;
        };
        match entry.parsed.clone() {
            Some(params) => self.restore_parameters(&params, "the shown image"),
            None => self.notices.push(
                Severity::Warning,
                "This image carries no generation settings",
                entry.caption(),
                None,
            ),
        }
    }

    pub(super) fn restore_parameters(&mut self, params: &GenerationParameters, from: &str) {
        let vae_before = self.state.vae.clone();
        let mut skipped = import::apply_parameters(&mut self.state, params);
        if self.state.vae != vae_before {
            self.worker.send(Command::SetVae(self.state.vae.clone()));
        }
        skipped.extend(import::restore_lora_choices(
            &mut self.state,
            params,
            &self.loras,
        ));
        skipped.extend(self.restore_model(params));
        if skipped.is_empty() {
            self.notices.info(format!("Settings restored from {from}"));
        } else {
            self.notices.push(
                Severity::Warning,
                format!("Settings restored from {from}, with changes"),
                skipped.join(" "),
                None,
            );
        }
    }

    /// Switches to the model that made the image: by name among the current, recent and
    /// catalog models, else by `Model hash` among the recent model files (hashed in the
    /// background; the answer comes later). Returns a sentence when the model is missing.
    pub(super) fn restore_model(&mut self, params: &GenerationParameters) -> Option<String> {
        let name = params
            .model
            .as_deref()
            .or(params.model_hash.as_deref())?
            .to_string();
        let current = self.state.model.clone();
        match import::model_by_name(
            &name,
            current.as_ref(),
            &self.state.recent_models,
            self.catalog,
        ) {
            Some(found) if Some(&found) == current.as_ref() => return None,
            Some(found) => {
                self.load_model(found);
                return None;
            }
            None => {}
        }
        let candidates: Vec<PathBuf> = self
            .state
            .recent_models
            .iter()
            .filter(|path| loras::is_safetensors(path))
            .cloned()
            .collect();
        match &params.model_hash {
            Some(hash) if !candidates.is_empty() => {
                self.last_hash_search += 1;
                self.model_lookup.start(HashSearch {
                    id: self.last_hash_search,
                    model_name: name,
                    hash: hash.clone(),
                    candidates,
                });
                None
            }
            _ => Some(missing_model_sentence(&name)),
        }
    }

    pub(super) fn poll_model_lookup(&mut self) {
        while let Some(result) = self.model_lookup.try_recv() {
            self.on_hash_search(result);
        }
    }

    pub(super) fn on_hash_search(&mut self, result: HashSearchResult) {
        if result.search.id != self.last_hash_search {
            return;
        }
        match result.found {
            Some(file) => {
                let source = ModelSource::Folder(file);
                if self.state.model.as_ref() != Some(&source) {
                    self.notices.info(format!(
                        "Loading {}, whose hash matches the image's model",
                        panels::controls::model_display_name(self.catalog, &source)
                    ));
                    self.load_model(source);
                }
            }
            None => self.notices.push(
                Severity::Warning,
                format!("Model {} not found", result.search.model_name),
                missing_model_sentence(&result.search.model_name),
                None,
            ),
        }
    }
}

/// What to tell the user when an image's model is not one of theirs.
fn missing_model_sentence(name: &str) -> String {
    format!(
        "The image was made with model {name}, which is not among the models opened here; the current model is kept. Use \"Open model file…\" to load it."
    )
}
