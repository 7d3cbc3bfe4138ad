//! The models Latent Studio offers to download: `assets/models.json`, embedded at build time.
//!
//! Each entry names a Hugging Face hub repository in the diffusers layout and the exact files
//! to fetch from it (fp16 weight variants where the repository has them, configs, tokenizer
//! files; never pickles, safety checkers or feature extractors).

use std::sync::OnceLock;

use serde::{Deserialize, Deserializer};

use crate::models::{Family, ModelDefaults};

const BUILTIN_JSON: &str = include_str!("../../assets/models.json");

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("invalid model catalog: {0}")]
    Json(#[from] serde_json::Error),
    #[error("invalid model catalog: {0}")]
    Invalid(String),
    #[error("{id} is not in the model catalog ({known}); for another model, download its diffusers folder and open that folder")]
    UnknownModel { id: String, known: String },
}

/// One downloadable model.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CatalogEntry {
    /// Hub repository id, `org/name`.
    pub id: String,
    /// Name for display.
    pub name: String,
    #[serde(deserialize_with = "deserialize_family")]
    pub family: Family,
    /// Branch, tag or commit to fetch; `main` unless the catalog pins one.
    #[serde(default = "default_revision")]
    pub revision: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub license: String,
    /// Settings the model is made for.
    #[serde(deserialize_with = "deserialize_defaults")]
    pub defaults: ModelDefaults,
    /// Approximate download size of `files`, in bytes.
    pub approx_size_bytes: u64,
    /// Repository paths to fetch, `/`-separated (e.g. `unet/diffusion_pytorch_model.fp16.safetensors`).
    pub files: Vec<String>,
}

impl CatalogEntry {
    /// `org` and `name` of the repository id.
    pub fn owner_and_name(&self) -> Option<(&str, &str)> {
        self.id.split_once('/')
    }
}

/// The list of downloadable models and which one is offered first. Built only by
/// [`Catalog::from_json`], so it always has its default entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Catalog {
    /// Id of the entry offered by default.
    default: String,
    models: Vec<CatalogEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalog {
    default: String,
    models: Vec<CatalogEntry>,
}

impl Catalog {
    /// The catalog shipped with the app (`assets/models.json`).
    pub fn builtin() -> &'static Catalog {
        static BUILTIN: OnceLock<Catalog> = OnceLock::new();
        BUILTIN.get_or_init(|| {
            // The embedded asset is checked by this module's tests; it cannot fail at run time.
            Catalog::from_json(BUILTIN_JSON).expect("assets/models.json is a valid catalog")
        })
    }

    /// Parses and checks a catalog in the format of `assets/models.json`.
    pub fn from_json(text: &str) -> Result<Catalog, CatalogError> {
        let raw: RawCatalog = serde_json::from_str(text)?;
        let catalog = Catalog {
            default: raw.default,
            models: raw.models,
        };
        catalog.validate()?;
        Ok(catalog)
    }

    pub fn entries(&self) -> &[CatalogEntry] {
        &self.models
    }

    /// The entry with this repository id (hub ids are case-insensitive).
    pub fn find(&self, id: &str) -> Option<&CatalogEntry> {
        self.models.iter().find(|e| e.id.eq_ignore_ascii_case(id))
    }

    /// The entry for `id`, or an error that lists the ids the catalog has.
    pub fn lookup(&self, id: &str) -> Result<&CatalogEntry, CatalogError> {
        self.find(id).ok_or_else(|| CatalogError::UnknownModel {
            id: id.to_string(),
            known: self
                .models
                .iter()
                .map(|e| e.id.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// The entry offered first.
    pub fn default_entry(&self) -> &CatalogEntry {
        // `validate` guarantees it exists; fall back to the first entry all the same.
        self.find(&self.default).unwrap_or(&self.models[0])
    }

    fn validate(&self) -> Result<(), CatalogError> {
        let invalid = |msg: String| Err(CatalogError::Invalid(msg));
        if self.models.is_empty() {
            return invalid("no models".into());
        }
        if self.find(&self.default).is_none() {
            return invalid(format!(
                "default model {:?} is not in the list",
                self.default
            ));
        }
        for (i, entry) in self.models.iter().enumerate() {
            let valid_part = |s: &str| {
                !s.is_empty()
                    && s != "."
                    && s != ".."
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            };
            match entry.owner_and_name() {
                Some((org, name)) if valid_part(org) && valid_part(name) => {}
                _ => {
                    return invalid(format!(
                        "{:?} is not a hub repository id (org/name)",
                        entry.id
                    ))
                }
            }
            if self.models[..i]
                .iter()
                .any(|e| e.id.eq_ignore_ascii_case(&entry.id))
            {
                return invalid(format!("{} is listed twice", entry.id));
            }
            if entry.revision.is_empty() || entry.revision.contains("..") {
                return invalid(format!("{}: bad revision {:?}", entry.id, entry.revision));
            }
            if entry.files.is_empty() {
                return invalid(format!("{}: no files", entry.id));
            }
            for file in &entry.files {
                if !is_safe_repo_path(file) {
                    return invalid(format!("{}: bad file path {file:?}", entry.id));
                }
            }
        }
        Ok(())
    }
}

/// A relative `/`-separated path that stays inside the folder it is joined to.
pub(crate) fn is_safe_repo_path(path: &str) -> bool {
    !path.is_empty()
        && !path.contains('\\')
        && !path.contains(':')
        && path
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
}

fn default_revision() -> String {
    "main".to_string()
}

fn deserialize_family<'de, D: Deserializer<'de>>(d: D) -> Result<Family, D::Error> {
    let name = String::deserialize(d)?;
    match name.as_str() {
        "sd" => Ok(Family::StableDiffusion),
        "sdxl" => Ok(Family::StableDiffusionXl),
        other => Err(serde::de::Error::custom(format!(
            "unknown family {other:?} (expected \"sd\" or \"sdxl\")"
        ))),
    }
}

fn deserialize_defaults<'de, D: Deserializer<'de>>(d: D) -> Result<ModelDefaults, D::Error> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Raw {
        steps: usize,
        guidance: f64,
        width: usize,
        height: usize,
    }
    let raw = Raw::deserialize(d)?;
    Ok(ModelDefaults {
        steps: raw.steps,
        guidance: raw.guidance,
        width: raw.width,
        height: raw.height,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn has_file(entry: &CatalogEntry, prefix: &str, suffix: &str) -> bool {
        entry
            .files
            .iter()
            .any(|f| f.starts_with(prefix) && f.ends_with(suffix))
    }

    #[test]
    fn builtin_catalog_parses_with_the_required_models() {
        let catalog = Catalog::from_json(BUILTIN_JSON).unwrap();
        for id in [
            "stabilityai/sd-turbo",
            "stable-diffusion-v1-5/stable-diffusion-v1-5",
            "stabilityai/stable-diffusion-xl-base-1.0",
            "stabilityai/sdxl-turbo",
        ] {
            assert!(catalog.find(id).is_some(), "{id} missing");
        }
        assert_eq!(Catalog::builtin(), &catalog);
        assert!(catalog.find("STABILITYAI/SD-TURBO").is_some());
        assert!(catalog.find("runwayml/stable-diffusion-v1-5").is_none());
    }

    #[test]
    fn default_entry_is_sd_turbo() {
        let entry = Catalog::builtin().default_entry();
        assert_eq!(entry.id, "stabilityai/sd-turbo");
        assert_eq!(entry.family, Family::StableDiffusion);
        assert_eq!(
            entry.defaults,
            ModelDefaults {
                steps: 1,
                guidance: 0.0,
                width: 512,
                height: 512
            }
        );
        assert_eq!(entry.revision, "main");
    }

    #[test]
    fn every_entry_has_the_diffusers_components() {
        for entry in Catalog::builtin().entries() {
            let id = &entry.id;
            assert!(entry.files.iter().any(|f| f == "model_index.json"), "{id}");
            assert!(
                entry
                    .files
                    .iter()
                    .any(|f| f == "scheduler/scheduler_config.json"),
                "{id}"
            );
            for component in ["unet/", "vae/"] {
                assert!(
                    entry.files.contains(&format!("{component}config.json")),
                    "{id} {component}"
                );
                assert!(
                    has_file(entry, component, ".safetensors"),
                    "{id} {component}"
                );
            }
            let mut encoders = vec![("text_encoder/", "tokenizer/")];
            if entry.family == Family::StableDiffusionXl {
                encoders.push(("text_encoder_2/", "tokenizer_2/"));
            }
            for (encoder, tokenizer) in encoders {
                assert!(
                    entry.files.contains(&format!("{encoder}config.json")),
                    "{id} {encoder}"
                );
                assert!(has_file(entry, encoder, ".safetensors"), "{id} {encoder}");
                for name in [
                    "vocab.json",
                    "merges.txt",
                    "tokenizer_config.json",
                    "special_tokens_map.json",
                ] {
                    assert!(
                        entry.files.contains(&format!("{tokenizer}{name}")),
                        "{id} {tokenizer}{name}"
                    );
                }
            }
            if entry.family == Family::StableDiffusion {
                assert!(!has_file(entry, "text_encoder_2/", ""), "{id}");
            }
            assert!(entry.approx_size_bytes > 1_000_000_000, "{id}");
        }
    }

    #[test]
    fn entries_fetch_fp16_safetensors_and_nothing_unneeded() {
        for entry in Catalog::builtin().entries() {
            for file in &entry.files {
                assert!(is_safe_repo_path(file), "{file}");
                for banned in ["safety_checker", "feature_extractor"] {
                    assert!(!file.contains(banned), "{}: {file}", entry.id);
                }
                assert!(
                    !file.ends_with(".bin") && !file.ends_with(".ckpt") && !file.ends_with(".pt"),
                    "{}: {file}",
                    entry.id
                );
                if file.ends_with(".safetensors") {
                    assert!(file.ends_with(".fp16.safetensors"), "{}: {file}", entry.id);
                }
            }
            let mut sorted = entry.files.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(
                sorted.len(),
                entry.files.len(),
                "{}: duplicate files",
                entry.id
            );
        }
    }

    #[test]
    fn sdxl_entries_have_the_second_encoder() {
        let catalog = Catalog::builtin();
        for id in [
            "stabilityai/stable-diffusion-xl-base-1.0",
            "stabilityai/sdxl-turbo",
        ] {
            let entry = catalog.find(id).unwrap();
            assert_eq!(entry.family, Family::StableDiffusionXl);
            assert!(entry
                .files
                .contains(&"text_encoder_2/model.fp16.safetensors".to_string()));
            assert!(entry.files.contains(&"tokenizer_2/vocab.json".to_string()));
        }
        assert_eq!(
            catalog
                .find("stabilityai/sdxl-turbo")
                .unwrap()
                .defaults
                .steps,
            1
        );
        assert_eq!(
            catalog
                .find("stabilityai/stable-diffusion-xl-base-1.0")
                .unwrap()
                .defaults
                .width,
            1024
        );
    }

    #[test]
    fn bad_catalogs_are_refused() {
        let entry = |id: &str, file: &str| {
            format!(
                r#"{{"id": "{id}", "name": "x", "family": "sd", "approx_size_bytes": 1,
                "defaults": {{"steps": 1, "guidance": 0.0, "width": 8, "height": 8}},
                "files": ["{file}"]}}"#
            )
        };
        let catalog = |default: &str, entries: &[String]| {
            format!(
                r#"{{"default": "{default}", "models": [{}]}}"#,
                entries.join(",")
            )
        };
        assert!(Catalog::from_json(&catalog("a/b", &[entry("a/b", "model_index.json")])).is_ok());
        for bad in [
            catalog("a/c", &[entry("a/b", "model_index.json")]),
            catalog("a/b", &[entry("a/b", "../evil")]),
            catalog("a/b", &[entry("a/b", "/etc/passwd")]),
            catalog("a/b", &[entry("a/b", "unet//x")]),
            catalog("ab", &[entry("ab", "model_index.json")]),
            catalog("a/b", &[entry("a/b", "x"), entry("A/B", "y")]),
            catalog("a/b", &[]),
            catalog("a/b", &[entry("a/b", "x").replace("\"sd\"", "\"flux\"")]),
        ] {
            assert!(Catalog::from_json(&bad).is_err(), "{bad}");
        }
    }
}
