//! The model manager window's data: what is downloaded (listed when the window opens and
//! after each delete, never per frame) and the delete waiting for its confirmation. The
//! listing and deleting themselves are the engine's ([`ModelLibrary`]).

use std::path::PathBuf;

use super::session::ModelStatus;
use super::LatentStudioApp;
use crate::engine::{loaded_model_location, ModelLibrary, StoredModel};

/// What the model manager's buttons ask for.
#[derive(Debug, Clone, PartialEq)]
pub enum ManagerAction {
    Open,
    Close,
    /// Ask "delete this?" for the model at this path.
    AskDelete(PathBuf),
    CancelDelete,
    /// Confirmed: delete the model at this path.
    Delete(PathBuf),
}

#[derive(Default)]
pub struct ModelManager {
    pub open: bool,
    pub listing: Vec<StoredModel>,
    /// The model whose delete waits for "Delete" or "Cancel".
    pub confirm: Option<PathBuf>,
    /// Why the last delete did not happen.
    pub error: Option<String>,
    library: Option<ModelLibrary>,
}

impl ModelManager {
    /// The listed model at `path`.
    pub fn find(&self, path: &std::path::Path) -> Option<&StoredModel> {
        self.listing.iter().find(|m| m.path == path)
    }

    fn refresh(&mut self, opened: &[PathBuf]) {
        // Read each time the window opens, so a changed HF_HUB_CACHE or models folder shows.
        let library = self.library.get_or_insert_with(ModelLibrary::from_env);
        self.listing = library.list(opened);
    }
}

impl LatentStudioApp {
    pub fn model_manager(&self) -> &ModelManager {
        &self.model_manager
    }

    pub(super) fn apply_manager_action(&mut self, action: ManagerAction) {
        let opened = self.state.recent_models.clone();
        let manager = &mut self.model_manager;
        match action {
            ManagerAction::Open => {
                manager.library = Some(ModelLibrary::from_env());
                manager.open = true;
                manager.confirm = None;
                manager.error = None;
                manager.refresh(&opened);
            }
            ManagerAction::Close => {
                manager.open = false;
                manager.confirm = None;
            }
            ManagerAction::AskDelete(path) => {
                manager.error = None;
                manager.confirm = Some(path);
            }
            ManagerAction::CancelDelete => manager.confirm = None,
            ManagerAction::Delete(path) => {
                manager.confirm = None;
                let in_use = match &self.model {
                    ModelStatus::Ready(model) => loaded_model_location(model),
                    _ => None,
                };
                let loading = matches!(self.model, ModelStatus::Loading { .. });
                let result = match (manager.find(&path), &manager.library) {
                    _ if loading => Err("a model is loading; delete when it has loaded".into()),
                    (Some(model), Some(library)) => library
                        .delete(model, in_use.as_deref())
                        .map_err(|err| err.to_string()),
                    _ => Err(format!("{} is no longer listed", path.display())),
                };
                manager.error = result.err();
                manager.refresh(&opened);
            }
        }
    }
}
