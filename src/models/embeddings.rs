//! Textual-inversion embeddings: a few learned token vectors, used by writing the file's name
//! in a prompt (A1111 style).

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use crate::pipeline::generate::describe_candle_error;

#[derive(Debug, thiserror::Error)]
pub enum EmbeddingError {
    #[error("{path}: cannot read embedding: {message}")]
    Read { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Unsupported { path: PathBuf, message: String },
}

/// `latent-studio/embeddings` in the user's data folder, the default embeddings folder.
pub fn default_embeddings_dir() -> Option<PathBuf> {
    dirs::data_dir().map(|d| d.join("latent-studio").join("embeddings"))
}

/// One embedding: its name (the file stem) and, per text encoder, the vectors `(n, dim)`.
#[derive(Debug)]
pub struct TextualInversion {
    pub name: String,
    pub path: PathBuf,
    /// A1111 `emb_params` / diffusers single-key files: one tensor for any encoder of the
    /// right width. SDXL files: `clip_l` (first encoder) and `clip_g` (second).
    vectors: Vectors,
}

#[derive(Debug)]
enum Vectors {
    Any(Tensor),
    PerEncoder { clip_l: Tensor, clip_g: Tensor },
}

impl TextualInversion {
    pub fn load(path: &Path) -> Result<Self, EmbeddingError> {
        if let Some(extension) = crate::models::pickle_extension(path) {
            return Err(EmbeddingError::Unsupported {
                path: path.to_path_buf(),
                message: format!(
                    ".{extension} embeddings are Python pickles, and loading one can run any code it contains; use a .safetensors version"
                ),
            });
        }
        let mut tensors = candle_core::safetensors::load(path, &Device::Cpu).map_err(|err| {
            EmbeddingError::Read {
                path: path.to_path_buf(),
                message: describe_candle_error(&err),
            }
        })?;
        let as_matrix = |t: Tensor| -> Result<Tensor, EmbeddingError> {
            let t = t.to_dtype(DType::F32).map_err(|err| EmbeddingError::Read {
                path: path.to_path_buf(),
                message: describe_candle_error(&err),
            })?;
            let unsupported = |message: String| EmbeddingError::Unsupported {
                path: path.to_path_buf(),
                message,
            };
            match t.rank() {
                1 => t
                    .unsqueeze(0)
                    .map_err(|err| unsupported(describe_candle_error(&err))),
                2 => Ok(t),
                _ => Err(unsupported(format!(
                    "embedding tensor has shape {:?}",
                    t.dims()
                ))),
            }
        };
        let vectors = match (tensors.remove("clip_l"), tensors.remove("clip_g")) {
            (Some(clip_l), Some(clip_g)) => Vectors::PerEncoder {
                clip_l: as_matrix(clip_l)?,
                clip_g: as_matrix(clip_g)?,
            },
            _ => match tensors.remove("emb_params") {
                Some(t) => Vectors::Any(as_matrix(t)?),
                None if tensors.len() == 1 => {
                    let (_, t) = tensors.into_iter().next().ok_or_else(|| {
                        EmbeddingError::Unsupported {
                            path: path.to_path_buf(),
                            message: "empty file".into(),
                        }
                    })?;
                    Vectors::Any(as_matrix(t)?)
                }
                None => {
                    return Err(EmbeddingError::Unsupported {
                        path: path.to_path_buf(),
                        message: "not a textual-inversion embedding (expected emb_params, clip_l + clip_g, or a single tensor)".into(),
                    })
                }
            },
        };
        Ok(Self {
            name: path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            path: path.to_path_buf(),
            vectors,
        })
    }

    /// Every `.safetensors` embedding in `dir`, in name order; unreadable files are returned
    /// as errors next to the good ones so the caller can report them and go on.
    pub fn load_dir(dir: &Path) -> (Vec<TextualInversion>, Vec<EmbeddingError>) {
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
            match Self::load(&path) {
                Ok(embedding) => loaded.push(embedding),
                Err(err) => errors.push(err),
            }
        }
        (loaded, errors)
    }

    /// The vectors for text encoder `index` of `encoders` with hidden width `width`, or `None`
    /// when the embedding was trained for another model.
    pub fn vectors_for(&self, index: usize, encoders: usize, width: usize) -> Option<&Tensor> {
        let tensor = match (&self.vectors, encoders) {
            (Vectors::Any(t), 1) => t,
            (Vectors::PerEncoder { clip_l, .. }, 2) if index == 0 => clip_l,
            (Vectors::PerEncoder { clip_g, .. }, 2) if index == 1 => clip_g,
            _ => return None,
        };
        (tensor.dim(1).ok() == Some(width)).then_some(tensor)
    }

    /// How many token positions the embedding takes.
    pub fn vector_count(&self) -> usize {
        let tensor = match &self.vectors {
            Vectors::Any(t) => t,
            Vectors::PerEncoder { clip_l, .. } => clip_l,
        };
        tensor.dim(0).unwrap_or(0)
    }
}
