//! What a user can name as a model to download, and which files of a diffusers repository
//! are fetched for it.

use super::http::{is_transient_error, percent_decode, percent_encode};
use super::{DownloadError, HubClient, MAX_LISTING_BYTES};
use crate::models::catalog::is_safe_repo_path;

/// The hub API's answer about a repository at a revision (`/api/models/{id}/revision/{rev}`).
#[derive(Debug, serde::Deserialize)]
pub(super) struct RepoListing {
    pub sha: Option<String>,
    #[serde(default)]
    pub siblings: Vec<Sibling>,
}

#[derive(Debug, serde::Deserialize)]
pub(super) struct Sibling {
    pub rfilename: String,
}

impl HubClient {
    /// The hub's file list of `repo_id` at `revision`.
    pub(super) fn list_repo(
        &self,
        repo_id: &str,
        revision: &str,
    ) -> Result<RepoListing, DownloadError> {
        let url = format!(
            "{}/api/models/{repo_id}/revision/{}",
            self.endpoint,
            percent_encode(revision)
        );
        let response = self.send(false, &url, None)?;
        let status = response.status().as_u16();
        if status == 404 {
            return Err(DownloadError::NotFound {
                repo: repo_id.to_string(),
                file: "the repository".into(),
                url,
            });
        }
        if !(200..300).contains(&status) {
            return Err(self.status_error(status, repo_id, "", &url));
        }
        let text = response
            .into_body()
            .with_config()
            .limit(MAX_LISTING_BYTES)
            .read_to_string()
            .map_err(|err| DownloadError::Network {
                url: url.clone(),
                message: err.to_string(),
                transient: is_transient_error(&err),
            })?;
        serde_json::from_str(&text).map_err(|err| DownloadError::Protocol {
            url,
            message: format!("unreadable file list: {err}"),
        })
    }
}

/// A model to fetch, as typed in the model box or after `--model`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HubReference {
    /// `org/name`: a diffusers repository on the hub (the catalog's file list when the
    /// catalog has it, else the repository's own).
    Repo { id: String },
    /// `org/name/path/file.safetensors`: one single-file checkpoint inside a repository.
    RepoFile { id: String, path: String },
    /// `https://…`: a checkpoint file anywhere (civitai and the like), saved into the models
    /// folder.
    Url(String),
}

impl HubReference {
    /// Reads `org/name`, `org/name/path/file.safetensors`, a hub page or file URL
    /// (`https://huggingface.co/org/name`, `…/org/name/blob/main/x.safetensors`), or any other
    /// `http(s)://` URL. Pickle files (`.ckpt`, `.pt`, `.pth`, `.bin`) are refused by name.
    pub fn parse(text: &str) -> Result<HubReference, DownloadError> {
        let text = text.trim();
        let bad = |why: &str| DownloadError::BadReference {
            text: text.to_string(),
            why: why.to_string(),
        };
        if let Some(rest) = text
            .strip_prefix("https://")
            .or_else(|| text.strip_prefix("http://"))
        {
            let path_end = rest.find(['?', '#']).unwrap_or(rest.len());
            let (host, path) = rest[..path_end]
                .split_once('/')
                .unwrap_or((&rest[..path_end], ""));
            if host.is_empty() {
                return Err(bad("the URL has no host"));
            }
            refuse_pickle(&percent_decode(path.rsplit('/').next().unwrap_or("")))?;
            if host.eq_ignore_ascii_case("huggingface.co") || host.eq_ignore_ascii_case("hf.co") {
                if let Some(reference) = hub_page(path) {
                    return Ok(reference);
                }
            }
            return Ok(HubReference::Url(text.to_string()));
        }
        let parts: Vec<&str> = text.split('/').collect();
        if parts.len() < 2 || !is_repo_part(parts[0]) || !is_repo_part(parts[1]) {
            return Err(bad(
                "expected org/name, org/name/file.safetensors or an https:// URL",
            ));
        }
        let id = format!("{}/{}", parts[0], parts[1]);
        if parts.len() == 2 {
            return Ok(HubReference::Repo { id });
        }
        let path = parts[2..].join("/");
        refuse_pickle(parts[parts.len() - 1])?;
        if !is_safe_repo_path(&path) {
            return Err(bad("the file path inside the repository is not valid"));
        }
        if !path.to_ascii_lowercase().ends_with(".safetensors") {
            return Err(bad(
                "a single file inside a repository must be a .safetensors checkpoint",
            ));
        }
        Ok(HubReference::RepoFile { id, path })
    }
}

/// `org/name`, `org/name/tree/main`, `org/name/blob/main/x`, `org/name/resolve/main/x`.
fn hub_page(path: &str) -> Option<HubReference> {
    let parts: Vec<String> = path
        .split('/')
        .filter(|p| !p.is_empty())
        .map(percent_decode)
        .collect();
    let (org, name) = (parts.first()?, parts.get(1)?);
    if !is_repo_part(org) || !is_repo_part(name) {
        return None;
    }
    let id = format!("{org}/{name}");
    match parts.get(2).map(String::as_str) {
        None => Some(HubReference::Repo { id }),
        Some("tree") if parts.len() <= 4 => Some(HubReference::Repo { id }),
        // Only `main`: the cache layout here keeps one revision per download.
        Some("blob" | "resolve") if parts.get(3).map(String::as_str) == Some("main") => {
            let path = parts[4..].join("/");
            (is_safe_repo_path(&path) && path.to_ascii_lowercase().ends_with(".safetensors"))
                .then_some(HubReference::RepoFile { id, path })
        }
        _ => None,
    }
}

fn is_repo_part(part: &str) -> bool {
    !part.is_empty()
        && part != "."
        && part != ".."
        && part.len() <= 96
        && part
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// Pickle files are never fetched: loading one can run any code it contains.
pub(super) fn refuse_pickle(file_name: &str) -> Result<(), DownloadError> {
    match crate::models::pickle_extension(std::path::Path::new(file_name)) {
        Some(extension) => Err(DownloadError::PickleRefused {
            file: file_name.to_string(),
            extension,
        }),
        None => Ok(()),
    }
}

/// The components of a diffusers repository a pipeline here is built from.
pub(super) const COMPONENTS: [&str; 7] = [
    "scheduler",
    "text_encoder",
    "text_encoder_2",
    "tokenizer",
    "tokenizer_2",
    "unet",
    "vae",
];

/// The files of a diffusers repository (`siblings`: every path in it) to fetch:
/// `model_index.json` and, in each component folder the pipelines here use, its configs and
/// tokenizer files and its `.safetensors` weights (the fp16 variant where there is one, else
/// the plain one; never other variants, pickles, ONNX or Flax files).
pub(super) fn diffusers_files(id: &str, siblings: &[String]) -> Result<Vec<String>, DownloadError> {
    if !siblings.iter().any(|s| s == "model_index.json") {
        let checkpoints: Vec<String> = siblings
            .iter()
            .filter(|s| s.to_ascii_lowercase().ends_with(".safetensors"))
            .take(8)
            .map(|s| format!("{id}/{s}"))
            .collect();
        return Err(DownloadError::NotDiffusers {
            repo: id.to_string(),
            checkpoints: if checkpoints.is_empty() {
                "it has no .safetensors files".into()
            } else {
                format!(
                    "name one of its checkpoint files instead: {}",
                    checkpoints.join(", ")
                )
            },
        });
    }
    let mut files = vec!["model_index.json".to_string()];
    for component in COMPONENTS {
        let in_folder: Vec<&str> = siblings
            .iter()
            .filter_map(|s| s.strip_prefix(component)?.strip_prefix('/'))
            .filter(|name| !name.contains('/'))
            .collect();
        if in_folder.is_empty() {
            continue;
        }
        let is_weights = |name: &&str| name.ends_with(".safetensors");
        let weights: Vec<&str> = in_folder.iter().copied().filter(is_weights).collect();
        let fp16: Vec<&str> = weights
            .iter()
            .copied()
            .filter(|n| n.ends_with(".fp16.safetensors") || n.contains(".fp16-0"))
            .collect();
        // `diffusion_pytorch_model.safetensors`, or a shard `…-00001-of-00002.safetensors`:
        // no variant between the base name and the extension.
        let plain: Vec<&str> = weights
            .iter()
            .copied()
            .filter(|n| n.split('.').count() == 2)
            .collect();
        let chosen = if fp16.is_empty() { plain } else { fp16 };
        let configs = in_folder.iter().copied().filter(|n| {
            let lower = n.to_ascii_lowercase();
            // Shard indexes belong to the chosen variant only.
            let index_fits = !lower.ends_with(".index.json")
                || (lower.contains(".fp16.") == chosen.iter().any(|c| c.contains(".fp16")));
            (lower.ends_with(".json") || lower.ends_with(".txt")) && index_fits
        });
        if has_weights(component) && chosen.is_empty() {
            return Err(DownloadError::NotDiffusers {
                repo: id.to_string(),
                checkpoints: format!(
                    "its {component}/ folder has no .safetensors weights (pickle files are never downloaded)"
                ),
            });
        }
        files.extend(configs.map(|n| format!("{component}/{n}")));
        files.extend(chosen.iter().map(|n| format!("{component}/{n}")));
    }
    Ok(files)
}

/// Whether a component is a network with weights (not a scheduler or a tokenizer).
pub(super) fn has_weights(component: &str) -> bool {
    !matches!(component, "scheduler" | "tokenizer" | "tokenizer_2")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(id: &str) -> HubReference {
        HubReference::Repo { id: id.into() }
    }

    #[test]
    fn references_are_read_as_repos_files_or_urls() {
        assert_eq!(HubReference::parse("org/name").unwrap(), repo("org/name"));
        assert_eq!(
            HubReference::parse(" org/name/sub/model.safetensors ").unwrap(),
            HubReference::RepoFile {
                id: "org/name".into(),
                path: "sub/model.safetensors".into()
            }
        );
        assert_eq!(
            HubReference::parse("https://huggingface.co/org/name").unwrap(),
            repo("org/name")
        );
        assert_eq!(
            HubReference::parse("https://huggingface.co/org/name/blob/main/a%20b.safetensors")
                .unwrap(),
            HubReference::RepoFile {
                id: "org/name".into(),
                path: "a b.safetensors".into()
            }
        );
        let civitai = "https://civitai.com/api/download/models/12345?type=Model";
        assert_eq!(
            HubReference::parse(civitai).unwrap(),
            HubReference::Url(civitai.into())
        );
        for pickle in [
            "org/name/model.ckpt",
            "org/name/unet/x.BIN",
            "https://example.com/files/model.pt?x=1",
        ] {
            let err = HubReference::parse(pickle).unwrap_err();
            assert!(
                matches!(err, DownloadError::PickleRefused { .. }),
                "{pickle}: {err}"
            );
        }
        for bad in [
            "name",
            "org/../x",
            "org/name/config.json",
            "https:///x",
            "a b/c",
        ] {
            assert!(
                matches!(
                    HubReference::parse(bad),
                    Err(DownloadError::BadReference { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_diffusers_repo_yields_its_configs_and_fp16_or_plain_weights() {
        let siblings: Vec<String> = [
            "model_index.json",
            "README.md",
            "v1-5-pruned.safetensors",
            "feature_extractor/preprocessor_config.json",
            "safety_checker/model.safetensors",
            "scheduler/scheduler_config.json",
            "text_encoder/config.json",
            "text_encoder/model.safetensors",
            "text_encoder/model.fp16.safetensors",
            "text_encoder/pytorch_model.bin",
            "tokenizer/merges.txt",
            "tokenizer/vocab.json",
            "unet/config.json",
            "unet/diffusion_pytorch_model.safetensors",
            "unet/diffusion_pytorch_model.non_ema.safetensors",
            "unet/diffusion_pytorch_model.bin",
            "vae/config.json",
            "vae/diffusion_pytorch_model.safetensors",
            "vae/flax/x.msgpack",
        ]
        .map(String::from)
        .to_vec();
        let files = diffusers_files("org/name", &siblings).unwrap();
        assert_eq!(
            files,
            [
                "model_index.json",
                "scheduler/scheduler_config.json",
                "text_encoder/config.json",
                "text_encoder/model.fp16.safetensors",
                "tokenizer/merges.txt",
                "tokenizer/vocab.json",
                "unet/config.json",
                "unet/diffusion_pytorch_model.safetensors",
                "vae/config.json",
                "vae/diffusion_pytorch_model.safetensors",
            ]
        );

        let pickles_only = ["model_index.json", "unet/config.json", "unet/x.bin"].map(String::from);
        let err = diffusers_files("org/name", &pickles_only).unwrap_err();
        assert!(err.to_string().contains("unet/"), "{err}");

        let single = ["README.md", "model.safetensors"].map(String::from);
        let err = diffusers_files("org/name", &single).unwrap_err();
        assert!(
            err.to_string().contains("org/name/model.safetensors"),
            "{err}"
        );
    }
}
