//! Textual-inversion embeddings: a few learned token vectors, used by writing the embedding's
//! name in a prompt (A1111 style). Reading them from files is the model layer's job.

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Tensor};

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
    /// The embedding in a file's tensors: `clip_l` + `clip_g` (SDXL), `emb_params` (A1111),
    /// or a single tensor of any name (diffusers). The error says why the tensors are not one.
    pub fn from_tensors(
        name: String,
        path: PathBuf,
        mut tensors: HashMap<String, Tensor>,
    ) -> Result<Self, String> {
        let as_matrix = |t: Tensor| -> Result<Tensor, String> {
            let t = t
                .to_dtype(DType::F32)
                .map_err(|err| crate::describe_candle_error(&err))?;
            match t.rank() {
                1 => t
                    .unsqueeze(0)
                    .map_err(|err| crate::describe_candle_error(&err)),
                2 => Ok(t),
                _ => Err(format!("embedding tensor has shape {:?}", t.dims())),
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
                    let (_, t) = tensors
                        .into_iter()
                        .next()
                        .ok_or_else(|| "empty file".to_string())?;
                    Vectors::Any(as_matrix(t)?)
                }
                None => {
                    return Err("not a textual-inversion embedding (expected emb_params, clip_l + clip_g, or a single tensor)".into())
                }
            },
        };
        Ok(Self {
            name,
            path,
            vectors,
        })
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
