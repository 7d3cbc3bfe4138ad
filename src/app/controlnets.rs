//! The pictures of the ControlNet units. Their settings live in [`State`]; the pictures are
//! kept for the session only, each with a small preview of the map its preprocessor makes
//! (made when the picture or the preprocessor changes, never per frame).

use std::sync::Arc;

use egui::TextureHandle;

use super::command::UiCommand;
use super::files::{FileRequest, OpenPurpose};
use super::session::AddOnDownload;
use super::state::{self, ControlUnitSettings};
use super::{files, history, LatentStudioApp};
use crate::engine::{Command, ControlPreprocessor, ControlSpec, RgbImage};

pub struct ControlPicture {
    pub name: String,
    pub image: Arc<RgbImage>,
    /// The preprocessed map, thumbnail-sized, and the preprocessor that made it.
    pub map: TextureHandle,
    map_for: ControlPreprocessor,
    /// While the engine makes a network's map (depth), the thumbnail stands in.
    pub map_pending: bool,
}

#[derive(Default)]
pub struct ControlPictures {
    slots: Vec<Option<ControlPicture>>,
    /// Maps the engine is to make: unit, preprocessor, picture.
    requests: Vec<(usize, ControlPreprocessor, Arc<RgbImage>)>,
    /// The depth model downloading for a map preview (the first depth map's wait).
    pub download: Option<AddOnDownload>,
}

impl ControlPictures {
    pub fn get(&self, unit: usize) -> Option<&ControlPicture> {
        self.slots.get(unit).and_then(Option::as_ref)
    }

    pub fn set(
        &mut self,
        ctx: &egui::Context,
        unit: usize,
        name: String,
        image: Arc<RgbImage>,
        preprocessor: ControlPreprocessor,
    ) {
        if self.slots.len() <= unit {
            self.slots.resize_with(unit + 1, || None);
        }
        let map = preview(ctx, unit, &image, preprocessor);
        if preprocessor.previews_at_full_size() {
            self.requests.push((unit, preprocessor, image.clone()));
        }
        self.slots[unit] = Some(ControlPicture {
            name,
            image,
            map,
            map_for: preprocessor,
            map_pending: preprocessor.previews_at_full_size(),
        });
    }

    pub fn clear(&mut self, unit: usize) {
        if let Some(slot) = self.slots.get_mut(unit) {
            *slot = None;
        }
    }

    /// Unit `unit` is gone: the pictures after it move up with their units.
    pub fn remove_unit(&mut self, unit: usize) {
        if unit < self.slots.len() {
            self.slots.remove(unit);
        }
    }

    /// Remakes the previews whose unit changed preprocessor since.
    pub fn refresh(&mut self, ctx: &egui::Context, units: &[ControlUnitSettings]) {
        // While a setting's slider is dragged, a map the engine makes waits for the release:
        // one map for the value let go, not one for every value passed.
        let dragging = ctx.input(|input| input.pointer.any_down());
        for (unit, settings) in units.iter().enumerate() {
            if let Some(Some(picture)) = self.slots.get_mut(unit) {
                let setting_dragged = dragging
                    && settings.preprocessor.previews_at_full_size()
                    && std::mem::discriminant(&picture.map_for)
                        == std::mem::discriminant(&settings.preprocessor);
                if picture.map_for != settings.preprocessor && !setting_dragged {
                    picture.map = preview(ctx, unit, &picture.image, settings.preprocessor);
                    picture.map_for = settings.preprocessor;
                    picture.map_pending = settings.preprocessor.previews_at_full_size();
                    if picture.map_pending {
                        let request = (unit, settings.preprocessor, picture.image.clone());
                        self.requests.push(request);
                    }
                }
            }
        }
    }

    /// The enabled units as the engine takes them, or the sentence that says which unit
    /// still lacks its ControlNet or picture.
    pub fn specs(&self, units: &[ControlUnitSettings]) -> Result<Vec<ControlSpec>, String> {
        let mut specs = Vec::new();
        for (unit, settings) in units.iter().enumerate().filter(|(_, u)| u.enabled) {
            let Some(model) = &settings.model else {
                return Err(format!(
                    "ControlNet unit {} has no ControlNet: choose a folder or file, or switch the unit off",
                    unit + 1
                ));
            };
            let Some(picture) = self.get(unit) else {
                return Err(format!(
                    "ControlNet unit {} has no picture: choose one, or switch the unit off",
                    unit + 1
                ));
            };
            specs.push(ControlSpec {
                model: model.clone(),
                image: picture.image.as_ref().clone(),
                preprocessor: settings.preprocessor,
                scale: settings.weight,
                start: settings.start,
                end: settings.end,
                mode: settings.mode,
            });
        }
        Ok(specs)
    }

    /// The engine's map for `unit` arrived: shown if the unit still has that picture and
    /// preprocessor; else the sentence that says why there is none.
    pub fn receive_map(
        &mut self,
        ctx: &egui::Context,
        unit: usize,
        preprocessor: ControlPreprocessor,
        image: &Arc<RgbImage>,
        map: Result<RgbImage, String>,
    ) -> Result<(), String> {
        // The engine answers after its download, finished or not.
        self.download = None;
        let Some(Some(picture)) = self.slots.get_mut(unit) else {
            return Ok(());
        };
        if !Arc::ptr_eq(&picture.image, image) || picture.map_for != preprocessor {
            return Ok(());
        }
        picture.map_pending = false;
        let small = files::thumbnail(&map?, files::THUMBNAIL_SIDE);
        picture.map = history::load_texture(ctx, &format!("control-map-{unit}"), &small);
        Ok(())
    }

    /// A new worker took over: the old one's map download is gone with it, and the maps still
    /// awaited are asked of the new one (the old one will never answer them).
    pub fn worker_replaced(&mut self) {
        self.download = None;
        self.requests = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(unit, slot)| {
                let picture = slot.as_ref().filter(|picture| picture.map_pending)?;
                Some((unit, picture.map_for, picture.image.clone()))
            })
            .collect();
    }

    /// The maps the engine is to make, once each.
    pub fn take_map_requests(&mut self) -> Vec<(usize, ControlPreprocessor, Arc<RgbImage>)> {
        std::mem::take(&mut self.requests)
    }
}

/// The preprocessed map of a thumbnail of `image` (edges found on the small picture are close
/// enough to show what the preprocessor does, at a fraction of the cost).
fn preview(
    ctx: &egui::Context,
    unit: usize,
    image: &RgbImage,
    preprocessor: ControlPreprocessor,
) -> TextureHandle {
    let small = files::thumbnail(image, files::THUMBNAIL_SIDE);
    // A map that must be made at full size (depth, XDoG) is made by the engine
    // (`Command::MakeControlMap`); until it arrives the thumbnail stands in.
    let map = if preprocessor.previews_at_full_size() {
        small
    } else {
        preprocessor.apply(&small).unwrap_or(small)
    };
    history::load_texture(ctx, &format!("control-map-{unit}"), &map)
}

impl LatentStudioApp {
    /// Whether unit `unit`'s preview still waits for the engine's map (`None`: no picture).
    pub fn control_map_pending(&self, unit: usize) -> Option<bool> {
        self.control_pictures.get(unit).map(|p| p.map_pending)
    }

    /// Remakes previews whose preprocessor changed and asks the engine for the maps only it
    /// can make; once a frame.
    pub(super) fn update_control_maps(&mut self, ctx: &egui::Context) {
        self.control_pictures
            .refresh(ctx, &self.state.control_units);
        for (unit, preprocessor, image) in self.control_pictures.take_map_requests() {
            self.worker.send(Command::MakeControlMap {
                unit,
                preprocessor,
                image,
            });
        }
    }

    pub(super) fn apply_control_command(&mut self, ctx: &egui::Context, command: UiCommand) {
        let units = &mut self.state.control_units;
        match command {
            UiCommand::AddControlUnit if units.len() < state::MAX_CONTROL_UNITS => {
                units.push(state::ControlUnitSettings {
                    model: self.state.recent_controlnets.first().cloned(),
                    ..Default::default()
                });
            }
            UiCommand::RemoveControlUnit(unit) if unit < units.len() => {
                units.remove(unit);
                self.control_pictures.remove_unit(unit);
            }
            UiCommand::PickControlNetFolder(unit) | UiCommand::PickControlNetFile(unit) => {
                let picked = if matches!(command, UiCommand::PickControlNetFolder(_)) {
                    self.desktop.pick_controlnet_folder()
                } else {
                    self.desktop.pick_controlnet_file()
                };
                if let (Some(path), Some(settings)) = (picked, units.get_mut(unit)) {
                    settings.model = Some(path.clone());
                    self.state.remember_controlnet(&path);
                }
            }
            UiCommand::PickControlImage(unit) => {
                if let Some(path) = self.desktop.pick_control_image() {
                    self.files.send(FileRequest::Open {
                        path,
                        purpose: OpenPurpose::ControlImage(unit),
                    });
                }
            }
            UiCommand::UseStartAsControlImage(unit) => {
                if let Some(slot) = &self.init_image {
                    let (name, image) = (slot.name.clone(), slot.image.clone());
                    self.set_control_image(ctx, unit, name, image);
                }
            }
            UiCommand::UseShownAsControlImage(unit) => {
                if let Some(full) = self.viewer.shown_full() {
                    let name = self
                        .history
                        .get(full.entry)
                        .map_or_else(|| "image".to_string(), |e| e.suggested_file_name());
                    let image = full.image.clone();
                    self.set_control_image(ctx, unit, name, image);
                }
            }
            UiCommand::ClearControlImage(unit) => self.control_pictures.clear(unit),
            _ => {}
        }
    }

    pub(super) fn set_control_image(
        &mut self,
        ctx: &egui::Context,
        unit: usize,
        name: String,
        image: Arc<RgbImage>,
    ) {
        let Some(settings) = self.state.control_units.get(unit) else {
            return;
        };
        let preprocessor = settings.preprocessor;
        self.control_pictures
            .set(ctx, unit, name, image, preprocessor);
    }
}
