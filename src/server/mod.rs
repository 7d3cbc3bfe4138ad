//! `latent-studio serve`: the engine behind AUTOMATIC1111's `/sdapi/v1` HTTP API, so that
//! the clients written for A1111 (scripts, Krita and Photoshop plugins, chat bots) drive this
//! engine unchanged.
//!
//! A layer beside the window: it imports from the engine only. One worker thread owns the
//! engine's [`Runner`](crate::engine::Runner) and runs generations first come, first served,
//! one at a time; each HTTP connection has a thread that parses the request, hands the job
//! to the worker and waits for its images. Nothing a request depends on is kept between
//! requests beyond the loaded model (a per-request model is loaded for that request only),
//! so N servers behind an ordinary load balancer serve a team.
//!
//! - `http`: the HTTP/1.1 listener (bounded bodies, Basic auth, a panic answers 500).
//! - `routes`: which endpoint answers which path.
//! - `payload`: A1111's txt2img / img2img fields, checked and turned into a job.
//! - `options`: A1111's options, as `override_settings` and `/options` set them.
//! - `reply`: the answers, in A1111's shapes.
//! - `queue`: the worker thread, progress and interrupt.
//! - `models`: the models a server may switch between, by A1111 title.

mod hires;
mod http;
mod models;
mod options;
mod payload;
mod queue;
mod reply;
mod routes;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::engine::{AddOnFolders, LoadOptions, ModelSource};

pub use http::Credentials;

/// A1111's default address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7860";

/// What `serve` was asked for, before it is checked.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub listen: SocketAddr,
    /// `user:password` (several separated by commas, as A1111's `--api-auth`).
    pub api_auth: Option<String>,
    /// Serve beyond this computer without a password.
    pub insecure: bool,
    /// The models requests may name; the first is loaded at start and used when a request
    /// names none.
    pub models: Vec<ModelSource>,
    pub load_options: LoadOptions,
    /// Where `<lora:NAME>` and embedding names in prompts are looked up.
    pub folders: AddOnFolders,
    /// Where `hr_upscaler` names are looked up (`.safetensors` upscaler files).
    pub upscalers: Option<PathBuf>,
}

/// Checked [`ServerOptions`]: safe to start.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    listen: SocketAddr,
    credentials: Vec<Credentials>,
    models: models::ServedModels,
    load_options: LoadOptions,
    folders: AddOnFolders,
    upscalers: Option<PathBuf>,
}

/// Why options cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("--listen {0}: reaches beyond this computer; give --api-auth user:password (or --insecure to serve anyone who can connect)")]
    OpenWithoutPassword(SocketAddr),
    #[error("--api-auth: {0}")]
    Credentials(String),
    #[error("give at least one --model")]
    NoModel,
    #[error("--model: two models are both called {0:?}; requests could not tell them apart")]
    DuplicateModelTitle(String),
}

impl ServerConfig {
    pub fn new(options: ServerOptions) -> Result<Self, ConfigError> {
        let credentials = match &options.api_auth {
            Some(text) => Credentials::parse_list(text).map_err(ConfigError::Credentials)?,
            None => Vec::new(),
        };
        if !options.listen.ip().is_loopback() && credentials.is_empty() && !options.insecure {
            return Err(ConfigError::OpenWithoutPassword(options.listen));
        }
        Ok(Self {
            listen: options.listen,
            credentials,
            models: models::ServedModels::new(options.models)?,
            load_options: options.load_options,
            folders: options.folders,
            upscalers: options.upscalers,
        })
    }

    pub fn listen(&self) -> SocketAddr {
        self.listen
    }
}

/// Why a server did not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("--model {model}: {message}")]
    Model { model: String, message: String },
}

/// A running server; dropping it stops it.
pub struct Server {
    address: SocketAddr,
    listener: Option<http::Listener>,
    queue: Arc<queue::GenerationQueue>,
}

impl Server {
    /// Binds the address, loads the first model and starts answering. Returns once requests
    /// are served; [`Server::address`] is the bound address (a port of 0 picks a free one).
    pub fn start(config: ServerConfig) -> Result<Server, ServerError> {
        let socket =
            std::net::TcpListener::bind(config.listen).map_err(|source| ServerError::Listen {
                address: config.listen,
                source,
            })?;
        let address = socket.local_addr().map_err(|source| ServerError::Listen {
            address: config.listen,
            source,
        })?;
        let first_model = config.models.get(0).title.clone();
        let queue = queue::GenerationQueue::start(
            config.models.clone(),
            config.load_options,
            config.folders.clone(),
        )
        .map_err(|message| ServerError::Model {
            model: first_model,
            message,
        })?;
        let queue = Arc::new(queue);
        let routes = routes::Routes::new(
            queue.clone(),
            config.models,
            config.folders,
            config.upscalers,
        );
        let listener = http::Listener::start(socket, config.credentials, Arc::new(routes));
        Ok(Server {
            address,
            listener: Some(listener),
            queue,
        })
    }

    /// Where the server listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Serves until the process ends.
    pub fn wait(mut self) {
        if let Some(listener) = self.listener.take() {
            listener.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(listener) = self.listener.take() {
            listener.stop();
        }
        self.queue.stop();
    }
}
