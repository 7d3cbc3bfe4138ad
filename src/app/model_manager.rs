//! The model manager window's data: what is downloaded (listed when the window opens and
//! after each delete, never per frame) and the delete waiting for its confirmation. The
//! listing and deleting themselves are the engine's ([`ModelLibrary`]), run on the file thread.

use std::path::PathBuf;

use super::files::FileRequest;
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
}

impl LatentStudioApp {
    pub fn model_manager(&self) -> &ModelManager {
        &self.model_manager
    }

    /// Lists (after deleting `delete`, when given) on the file thread: a cache walk, or a
    /// delete of gigabytes, never holds up a frame. The answer comes to [`Self::on_models_listed`].
    fn list_models(&mut self, delete: Option<(StoredModel, Option<PathBuf>)>) {
        // Read each time the window opens, so a changed HF_HUB_CACHE or models folder shows.
        let library = self
            .model_manager
            .library
            .get_or_insert_with(ModelLibrary::from_env)
            .clone();
        self.files.send(FileRequest::ManageModels {
            library,
            opened: self.state.recent_models.clone(),
            delete,
        });
    }

    pub(super) fn on_models_listed(
        &mut self,
        listing: Vec<StoredModel>,
        deleted: Option<Result<(), String>>,
    ) {
        let manager = &mut self.model_manager;
        manager.listing = listing;
        if let Some(Err(message)) = deleted {
            manager.error = Some(message);
        }
    }

    pub(super) fn apply_manager_action(&mut self, action: ManagerAction) {
        let manager = &mut self.model_manager;
        match action {
            ManagerAction::Open => {
                manager.library = Some(ModelLibrary::from_env());
                manager.open = true;
                manager.confirm = None;
                manager.error = None;
                self.list_models(None);
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
                if matches!(self.model, ModelStatus::Loading { .. }) {
                    manager.error = Some("a model is loading; delete when it has loaded".into());
                    return;
                }
                match manager.find(&path).cloned() {
                    Some(model) => self.list_models(Some((model, in_use))),
                    None => manager.error = Some(format!("{} is no longer listed", path.display())),
                }
            }
        }
    }
}
