//! ControlNets and T2I-Adapters named by their Hugging Face repository
//! (`lllyasviel/control_v11p_sd15_canny`): `config.json` and one weights file, the fp16
//! `.safetensors` when the repository has it, else the full-precision one; never a pickle.

use std::path::{Path, PathBuf};

use super::{DownloadError, DownloadProgress, HubCache, HubClient, HubReference};
use crate::networks::Family;

/// A well-known ControlNet or T2I-Adapter on the hub, offered in the window's picker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatalogControlNet {
    pub id: &'static str,
    pub family: Family,
    /// What it reads, for the picker.
    pub label: &'static str,
}

/// The hub ControlNets the window offers, by family. Each repository holds `config.json`
/// and `diffusion_pytorch_model[.fp16].safetensors` (checked against the hub's file lists;
/// repositories with pickle weights only, as the SD 1.5 T2I-Adapters, are left out).
pub const CONTROLNET_CATALOG: [CatalogControlNet; 8] = [
    CatalogControlNet {
        id: "lllyasviel/control_v11p_sd15_canny",
        family: Family::StableDiffusion,
        label: "Canny edges",
    },
    CatalogControlNet {
        id: "lllyasviel/control_v11f1p_sd15_depth",
        family: Family::StableDiffusion,
        label: "Depth",
    },
    CatalogControlNet {
        id: "lllyasviel/control_v11p_sd15_openpose",
        family: Family::StableDiffusion,
        label: "OpenPose",
    },
    CatalogControlNet {
        id: "lllyasviel/control_v11p_sd15_lineart",
        family: Family::StableDiffusion,
        label: "Line art",
    },
    CatalogControlNet {
        id: "diffusers/controlnet-canny-sdxl-1.0",
        family: Family::StableDiffusionXl,
        label: "Canny edges",
    },
    CatalogControlNet {
        id: "diffusers/controlnet-depth-sdxl-1.0",
        family: Family::StableDiffusionXl,
        label: "Depth",
    },
    CatalogControlNet {
        id: "TencentARC/t2i-adapter-canny-sdxl-1.0",
        family: Family::StableDiffusionXl,
        label: "Canny edges, T2I-Adapter",
    },
    CatalogControlNet {
        id: "TencentARC/t2i-adapter-depth-midas-sdxl-1.0",
        family: Family::StableDiffusionXl,
        label: "Depth (MiDaS), T2I-Adapter",
    },
];

/// Weights files of a diffusers ControlNet / T2I-Adapter repository, preferred first.
const WEIGHT_FILES: [&str; 2] = [
    "diffusion_pytorch_model.fp16.safetensors",
    "diffusion_pytorch_model.safetensors",
];

/// The repository id `model` names when it is no file or folder on disk but reads as
/// `org/name` (two parts, neither `.` nor `..`); `None` for local paths.
pub fn controlnet_repo_id(model: &Path) -> Option<&str> {
    if model.exists() || model.is_absolute() {
        return None;
    }
    let text = model.to_str()?;
    // The hub reference rules, as for models: a repository, not a file in one or a URL.
    match HubReference::parse(text) {
        Ok(HubReference::Repo { id }) if id == text => Some(text),
        _ => None,
    }
}

/// What [`HubClient::fetch_controlnet`] could not do, in one line naming the repository.
#[derive(Debug, thiserror::Error)]
pub enum ControlNetFetchError {
    #[error("ControlNet {id}: the Hugging Face hub at {endpoint} could not be reached and no copy is in the cache ({cache}); connect once to download it, or name a local ControlNet folder or .safetensors file")]
    Offline {
        id: String,
        endpoint: String,
        cache: PathBuf,
    },
    #[error("ControlNet {id}: no such repository on the Hugging Face hub (check the spelling, or name a local ControlNet folder or .safetensors file)")]
    UnknownRepo { id: String },
    #[error("ControlNet {id}: the repository has no config.json and {} (only pickle or other weights); pick a repository with .safetensors weights or convert the file", WEIGHT_FILES[1])]
    NoSafetensors { id: String },
    #[error("ControlNet {id}: {source}")]
    Download {
        id: String,
        #[source]
        source: DownloadError,
    },
}

impl HubClient {
    /// The snapshot folder of ControlNet (or T2I-Adapter) repository `id` in `cache`,
    /// downloaded on first use; a finished earlier download is used without network.
    pub fn fetch_controlnet<P>(
        &self,
        id: &str,
        cache: &HubCache,
        progress: P,
    ) -> Result<PathBuf, ControlNetFetchError>
    where
        P: FnMut(&str, DownloadProgress) -> bool,
    {
        if let Some(snapshot) = cached_controlnet(cache, id) {
            return Ok(snapshot);
        }
        let failure = |source: DownloadError| match source {
            DownloadError::Offline { endpoint, .. } => ControlNetFetchError::Offline {
                id: id.to_string(),
                endpoint,
                cache: cache.repo_dir(id),
            },
            DownloadError::NotFound { .. } | DownloadError::Http { status: 404, .. } => {
                ControlNetFetchError::UnknownRepo { id: id.to_string() }
            }
            source => ControlNetFetchError::Download {
                id: id.to_string(),
                source,
            },
        };
        self.refuse_offline().map_err(failure)?;
        let listing = self
            .retrying(|| self.list_repo(id, "main"))
            .map_err(failure)?;
        let siblings: Vec<String> = listing.siblings.into_iter().map(|s| s.rfilename).collect();
        let weights = WEIGHT_FILES
            .iter()
            .find(|file| siblings.iter().any(|s| s == *file));
        let (true, Some(weights)) = (siblings.iter().any(|s| s == "config.json"), weights) else {
            return Err(ControlNetFetchError::NoSafetensors { id: id.to_string() });
        };
        let files = ["config.json".to_string(), weights.to_string()];
        self.fetch_files(id, "main", &files, cache, progress)
            .map_err(failure)
    }
}

/// The cached snapshot of `id`'s `main` when it holds `config.json` and a weights file.
fn cached_controlnet(cache: &HubCache, id: &str) -> Option<PathBuf> {
    let snapshot = cache.cached_snapshot(id, "main")?;
    let complete = snapshot.join("config.json").is_file()
        && WEIGHT_FILES.iter().any(|f| snapshot.join(f).is_file());
    complete.then_some(snapshot)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_org_slash_name_that_is_no_local_path_is_a_repository_id() {
        let id = |text: &str| controlnet_repo_id(Path::new(text)).map(str::to_string);
        assert_eq!(
            id("lllyasviel/control_v11p_sd15_canny"),
            Some("lllyasviel/control_v11p_sd15_canny".to_string())
        );
        assert_eq!(
            id("TencentARC/t2i-adapter-canny-sdxl-1.0"),
            Some("TencentARC/t2i-adapter-canny-sdxl-1.0".to_string())
        );
        for local in [
            "/models/canny",
            "canny",
            "a/b/c",
            "../canny",
            "./canny",
            "a//b",
            "org/na me",
            "src/models",
        ] {
            assert_eq!(id(local), None, "{local}");
        }
    }

    #[test]
    fn the_catalog_names_repository_ids_of_both_families() {
        for entry in CONTROLNET_CATALOG {
            assert_eq!(controlnet_repo_id(Path::new(entry.id)), Some(entry.id));
        }
        for family in [Family::StableDiffusion, Family::StableDiffusionXl] {
            assert!(CONTROLNET_CATALOG.iter().any(|e| e.family == family));
        }
    }
}
