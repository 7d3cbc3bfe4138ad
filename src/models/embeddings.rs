//! Textual-inversion embedding files: `.safetensors` in the embeddings folder, each usable by
//! its file name in prompts ([`TextualInversion`]).

use std::path::{Path, PathBuf};

use candle_core::Device;

use crate::models::safetensors_file::SafetensorsFile;
pub use crate::text::embeddings::TextualInversion;

/// Embeddings are a few vectors: kilobytes (a 75-vector SDXL one is ~0.5 MB).
const MAX_EMBEDDING_FILE_BYTES: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum EmbeddingError {
    #[error("{path}: cannot read embedding: {message}")]
    Read { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Unsupported { path: PathBuf, message: String },
}

/// `latent-studio/embeddings` in the user's data folder, the default embeddings folder.
pub fn default_embeddings_dir() -> Option<PathBuf> {
    // The local data folder: the same as the data folder on Linux and macOS; on Windows
    // `%LOCALAPPDATA%`, since files this large must not travel with a roaming profile.
    dirs::data_local_dir().map(|d| d.join("latent-studio").join("embeddings"))
}

/// The embedding in `path`, named after the file.
pub fn load_embedding(path: &Path) -> Result<TextualInversion, EmbeddingError> {
    if let Some(extension) = crate::models::pickle_extension(path) {
        return Err(EmbeddingError::Unsupported {
            path: path.to_path_buf(),
            message: format!(
                ".{extension} embeddings are Python pickles, and loading one can run any code it contains; use a .safetensors version"
            ),
        });
    }
    let tensors = SafetensorsFile::open_at_most(path, MAX_EMBEDDING_FILE_BYTES)
        .and_then(|file| file.load_all(&Device::Cpu))
        .map_err(|err| EmbeddingError::Read {
            path: path.to_path_buf(),
            message: crate::describe_candle_error(&err),
        })?;
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    TextualInversion::from_tensors(name, path.to_path_buf(), tensors).map_err(|message| {
        EmbeddingError::Unsupported {
            path: path.to_path_buf(),
            message,
        }
    })
}

/// Every `.safetensors` embedding in `dir`, in name order; unreadable files are returned as
/// errors next to the good ones so the caller can report them and go on.
pub fn load_embeddings_dir(dir: &Path) -> (Vec<TextualInversion>, Vec<EmbeddingError>) {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    paths.sort();
    let mut loaded = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        match load_embedding(&path) {
            Ok(embedding) => loaded.push(embedding),
            Err(err) => errors.push(err),
        }
    }
    (loaded, errors)
}
