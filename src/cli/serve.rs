//! `latent-studio serve`: the engine behind AUTOMATIC1111's `/sdapi/v1` HTTP API, without a
//! window. Parses the flags into a checked server configuration and runs the server.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use clap::Args;
use latent_studio::engine::{
    default_embeddings_dir, default_lora_dir, AddOnFolders, LoadOptions, ModelSource,
};
use latent_studio::server::{Server, ServerConfig, ServerError, ServerOptions, DEFAULT_LISTEN};

use super::{select_device, select_dtype, CliError};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A model requests may use: a diffusers folder, a single-file .safetensors checkpoint, a
    /// hub id, a file in a hub repository or an https:// URL (repeatable). The first is loaded at start and used by requests that
    /// name none; requests switch among these by name only.
    #[arg(long = "model", value_name = "PATH|HUB-ID", required = true)]
    models: Vec<String>,
    /// Address and port to listen on. Beyond this computer (e.g. 0.0.0.0:7860) only with
    /// --api-auth or --insecure. Port 0 picks a free port (printed at start).
    #[arg(long, value_name = "ADDRESS:PORT", default_value = DEFAULT_LISTEN)]
    listen: String,
    /// Require HTTP Basic auth with this user and password (several pairs separated by
    /// commas), as A1111's --api-auth.
    #[arg(long, value_name = "USER:PASSWORD")]
    api_auth: Option<String>,
    /// Allow listening beyond this computer without --api-auth.
    #[arg(long)]
    insecure: bool,
    /// Where <lora:NAME:MULT> in prompts finds NAME.safetensors (default: the app's LoRA folder).
    #[arg(long)]
    lora_dir: Option<PathBuf>,
    /// Textual-inversion embeddings usable by file name in prompts (default: the app's folder).
    #[arg(long)]
    embeddings_dir: Option<PathBuf>,
    /// Upscaler .safetensors files that requests' hr_upscaler may name (by file name).
    #[arg(long)]
    upscaler_dir: Option<PathBuf>,
    /// cpu, cuda or metal.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// f32, f16 or bf16 (default: f32 on CPU, f16 on GPU).
    #[arg(long)]
    dtype: Option<String>,
}

fn listen_address(text: &str) -> Result<SocketAddr, CliError> {
    let bad = || {
        CliError::input(format!(
            "--listen {text}: give ADDRESS:PORT, e.g. {DEFAULT_LISTEN} or 0.0.0.0:7860"
        ))
    };
    text.to_socket_addrs()
        .map_err(|_| bad())?
        .next()
        .ok_or_else(bad)
}

pub fn run(args: ServeArgs) -> Result<(), CliError> {
    let listen = listen_address(&args.listen)?;
    for (flag, dir) in [
        ("--lora-dir", &args.lora_dir),
        ("--embeddings-dir", &args.embeddings_dir),
        ("--upscaler-dir", &args.upscaler_dir),
    ] {
        if let Some(dir) = dir.as_ref().filter(|dir| !dir.is_dir()) {
            return Err(CliError::input(format!(
                "{flag} {}: no such folder",
                dir.display()
            )));
        }
    }
    let device = select_device(&args.device)?;
    let dtype = select_dtype(args.dtype.as_deref(), &device)?;
    let config = ServerConfig::new(ServerOptions {
        listen,
        api_auth: args.api_auth,
        insecure: args.insecure,
        models: args
            .models
            .iter()
            .map(|m| ModelSource::from_arg(m))
            .collect(),
        load_options: LoadOptions {
            device,
            dtype,
            vae: None,
            config: None,
            keep_f16_weights: true,
        },
        folders: AddOnFolders {
            loras: args.lora_dir.or_else(default_lora_dir),
            embeddings: args.embeddings_dir.or_else(default_embeddings_dir),
        },
        upscalers: args.upscaler_dir,
    })
    .map_err(|err| CliError::input(err.to_string()))?;
    eprintln!("loading {}…", args.models[0]);
    let server = Server::start(config).map_err(|err| match err {
        ServerError::Listen { .. } => CliError::runtime(err.to_string()),
        ServerError::Model { .. } => CliError::input(err.to_string()),
    })?;
    eprintln!(
        "listening on http://{} (AUTOMATIC1111 API under /sdapi/v1)",
        server.address()
    );
    server.wait();
    Ok(())
}
