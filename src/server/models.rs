//! The models a server may switch between: the ones it was started with, each known by an
//! A1111 title. Requests name models by title only, so no file path ever comes from one.

use std::path::Path;
use std::sync::Arc;

use serde_json::{json, Value};

use super::ConfigError;
use crate::engine::{Family, ModelInfo, ModelSource};

#[derive(Debug, Clone)]
pub struct ServedModel {
    pub source: ModelSource,
    /// What `sd_model_checkpoint` holds: the file or folder name (`v1-5.safetensors`,
    /// `sd_turbo`), or the hub id.
    pub title: String,
    /// The title without a file extension (A1111's `model_name`).
    pub model_name: String,
}

#[derive(Debug, Clone)]
pub struct ServedModels(Arc<Vec<ServedModel>>);

impl ServedModels {
    pub fn new(sources: Vec<ModelSource>) -> Result<Self, ConfigError> {
        if sources.is_empty() {
            return Err(ConfigError::NoModel);
        }
        let mut models: Vec<ServedModel> = Vec::with_capacity(sources.len());
        for source in sources {
            let (title, model_name) = names(&source);
            if models.iter().any(|m| m.title == title) {
                return Err(ConfigError::DuplicateModelTitle(title));
            }
            models.push(ServedModel {
                source,
                title,
                model_name,
            });
        }
        Ok(Self(Arc::new(models)))
    }

    pub fn get(&self, index: usize) -> &ServedModel {
        &self.0[index]
    }

    /// The model a request names: by title, by title with A1111's ` [hash]` after it, or by
    /// `model_name` when only one model has it.
    pub fn find(&self, name: &str) -> Option<usize> {
        let name = name.trim();
        let without_hash = match name.rsplit_once(" [") {
            Some((title, hash)) if hash.ends_with(']') => title,
            _ => name,
        };
        if let Some(index) = self
            .0
            .iter()
            .position(|m| m.title == name || m.title == without_hash)
        {
            return Some(index);
        }
        let mut by_name = self
            .0
            .iter()
            .enumerate()
            .filter(|(_, m)| m.model_name == without_hash)
            .map(|(index, _)| index);
        match (by_name.next(), by_name.next()) {
            (Some(index), None) => Some(index),
            _ => None,
        }
    }

    /// The titles, for messages.
    pub fn titles(&self) -> String {
        self.0
            .iter()
            .map(|m| m.title.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `GET /sdapi/v1/sd-models`. Hashes are left out: A1111 too lists a checkpoint's hash
    /// only once it has computed it, and hashing every served file would delay the start.
    /// Models loaded so far (`described`, by index) also say what they are and their
    /// defaults under `latent_studio`, for the window's remote engine (A1111 clients read
    /// only the fields they know).
    pub fn a1111_list(&self, described: &[(usize, ModelInfo)]) -> Value {
        Value::Array(
            self.0
                .iter()
                .enumerate()
                .map(|(index, m)| {
                    let info = described
                        .iter()
                        .find(|(i, _)| *i == index)
                        .map(|(_, info)| {
                            json!({
                                "family": match info.family {
                                    Family::StableDiffusionXl => "sdxl",
                                    Family::StableDiffusion => "sd",
                                },
                                "label": info.label,
                                "distilled": info.distilled,
                                "steps": info.defaults.steps,
                                "cfg_scale": info.defaults.guidance,
                                "width": info.defaults.width,
                                "height": info.defaults.height,
                                "vae_scale_factor": info.vae_scale_factor,
                            })
                        });
                    json!({
                        "latent_studio": info,
                        "title": m.title,
                        "model_name": m.model_name,
                        "hash": null,
                        "sha256": null,
                        "filename": m.source.to_string(),
                        "config": null,
                    })
                })
                .collect(),
        )
    }
}

/// Title and model name of a source.
fn names(source: &ModelSource) -> (String, String) {
    match source {
        ModelSource::Hub(id) => {
            let name = id.rsplit('/').next().unwrap_or(id);
            (id.clone(), name.to_string())
        }
        // Not a source `serve` is given (`--model` names files, folders and hub ids).
        ModelSource::Server(title) => (title.clone(), title.clone()),
        ModelSource::Folder(path) => {
            let title = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| path.display().to_string());
            let is_checkpoint = Path::new(&title).extension().is_some_and(|ext| {
                ext.eq_ignore_ascii_case("safetensors") || ext.eq_ignore_ascii_case("ckpt")
            });
            let model_name = match Path::new(&title).file_stem() {
                Some(stem) if is_checkpoint => stem.to_string_lossy().into_owned(),
                _ => title.clone(),
            };
            (title, model_name)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn models_are_found_by_title_name_or_hashed_title_only() {
        let models = ServedModels::new(vec![
            ModelSource::Folder(PathBuf::from("/models/v1-5.safetensors")),
            ModelSource::Hub("stabilityai/sd-turbo".into()),
        ])
        .unwrap();
        assert_eq!(models.find("v1-5.safetensors"), Some(0));
        assert_eq!(models.find("v1-5.safetensors [6ce0161689]"), Some(0));
        assert_eq!(models.find("v1-5"), Some(0));
        assert_eq!(models.find("stabilityai/sd-turbo"), Some(1));
        assert_eq!(models.find("sd-turbo"), Some(1));
        assert_eq!(models.find("/models/v1-5.safetensors"), None);
        assert_eq!(models.find("../v1-5.safetensors"), None);
        assert!(matches!(
            ServedModels::new(vec![
                ModelSource::Folder(PathBuf::from("/a/sd1")),
                ModelSource::Folder(PathBuf::from("/b/sd1")),
            ]),
            Err(ConfigError::DuplicateModelTitle(_))
        ));
    }
}
