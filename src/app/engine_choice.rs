//! Which engine the window drives: this computer's, or a `latent-studio serve` (or A1111)
//! server's over HTTP — the setting as it is remembered.

use serde::{Deserialize, Serialize};

use crate::engine::ModelSource;

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct EngineSettings {
    /// Generate on the server at `server_url` instead of this computer.
    pub use_server: bool,
    /// `http://host:7860` (`host:port` is read as http).
    pub server_url: String,
    /// The server's `--api-auth` user; empty when it asks for none.
    pub server_user: String,
    /// Kept for this session only: the settings file is plain text, so the password is
    /// asked again after a restart.
    #[serde(skip)]
    pub server_password: String,
    /// The model chosen on the other engine, taken back when switching to it again.
    pub other_model: Option<ModelSource>,
}
