//! Switching the window between this computer's engine and a server's
//! ([`crate::engine::RemoteWorker`]): both answer the same commands with the same events, so
//! the rest of the window does not know which one it drives.

use super::*;
use crate::engine::{LoadFailure, RemoteEngine, RemoteWorker, ServerAddressError, Worker};
use engine_choice::EngineSettings;

/// The server's models as last listed, or why they could not be.
#[derive(Debug, Default)]
pub struct ServerModelList {
    pub titles: Vec<String>,
    pub problem: Option<String>,
}

/// Starts the engine `settings` choose; a server address that cannot be used (a settings
/// file edited by hand) falls back to this computer, and a notice says which and why.
pub(super) fn spawn_worker(
    ctx: &egui::Context,
    settings: &mut EngineSettings,
    notices: &mut Notices,
) -> WorkerHandle {
    let repaint = ctx.clone();
    let notify = move || repaint.request_repaint();
    if settings.use_server {
        match server_engine(settings) {
            Ok(engine) => return RemoteWorker::spawn(engine, notify),
            Err(err) => {
                settings.use_server = false;
                notices.push_about(
                    Topic::Engine,
                    Severity::Error,
                    "The saved server address cannot be used; this computer generates instead",
                    format!("{}: {err}", settings.server_url),
                    Some(
                        "Correct the address under \"Engine\" and choose the server again.".into(),
                    ),
                );
            }
        }
    }
    Worker::spawn(notify)
}

fn server_engine(settings: &EngineSettings) -> Result<RemoteEngine, ServerAddressError> {
    RemoteEngine::new(
        &settings.server_url,
        &settings.server_user,
        &settings.server_password,
    )
}

impl LatentStudioApp {
    /// The server's models, for the model picker.
    pub fn server_models(&self) -> &ServerModelList {
        &self.server_models
    }

    /// Drives the server in the Engine settings (again, after a change of address or
    /// password).
    pub(super) fn connect_server(&mut self) {
        if let Err(err) = server_engine(&self.state.engine) {
            // About the engine: cleared once a server is in use.
            self.notices.push_about(
                Topic::Engine,
                Severity::Error,
                "This server address cannot be used",
                err.to_string(),
                None,
            );
            return;
        }
        if self.state.engine.use_server {
            self.switch_engine();
        } else {
            self.switch_engine_to(true);
        }
    }

    pub(super) fn use_this_computer(&mut self) {
        if self.state.engine.use_server {
            self.switch_engine_to(false);
        }
    }

    /// Each engine keeps the model chosen on it.
    fn switch_engine_to(&mut self, use_server: bool) {
        if self.refuse_switch_while_running() {
            return;
        }
        let engine = &mut self.state.engine;
        engine.use_server = use_server;
        std::mem::swap(&mut self.state.model, &mut engine.other_model);
        if !use_server && self.state.model.is_none() {
            self.state.model = Some(ModelSource::Hub(self.catalog.default_entry().id.clone()));
        }
        self.switch_engine();
    }

    fn refuse_switch_while_running(&mut self) -> bool {
        if self.run.is_some() {
            self.notices.error(
                "The engine cannot change during a run",
                String::new(),
                Some("Wait for the images, or press Cancel, then switch.".into()),
            );
        }
        self.run.is_some()
    }

    fn switch_engine(&mut self) {
        if self.refuse_switch_while_running() {
            return;
        }
        self.model = ModelStatus::NoModel;
        self.server_models = ServerModelList::default();
        self.notices.dismiss_topic(Topic::Model);
        self.notices.dismiss_topic(Topic::Engine);
        self.worker = spawn_worker(&self.egui_ctx, &mut self.state.engine, &mut self.notices);
        self.engine_stopped = false;
        self.configure_worker();
    }

    /// The server listed its models: with none chosen for it yet, the one it uses now.
    pub(super) fn on_server_models(
        &mut self,
        titles: Vec<String>,
        current: Option<String>,
        problem: Option<String>,
    ) {
        let first = titles.first().cloned();
        self.server_models = ServerModelList {
            titles,
            problem: problem.clone(),
        };
        if self.state.model.is_some() {
            // A load is under way; it reports its own failure.
            return;
        }
        match problem {
            Some(problem) => self.notices.push_about(
                Topic::Model,
                Severity::Error,
                "The server cannot be used",
                problem,
                Some(notices::model_failure_hint(LoadFailure::Server, "")),
            ),
            None => {
                if let Some(title) = current.or(first) {
                    self.load_model(ModelSource::Server(title));
                }
            }
        }
    }
}
