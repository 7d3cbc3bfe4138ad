//! Upscalers named by a file inside a Hugging Face repository
//! (`org/name/file.safetensors`): one `.safetensors` file fetched into the cache on first
//! use, never a pickle.

use std::path::{Path, PathBuf};

use super::{DownloadError, DownloadProgress, HubCache, HubClient, HubReference};

/// A well-known upscaler file on the hub, offered in the window's pickers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatalogUpscaler {
    /// What it reads, for the picker.
    pub label: &'static str,
    pub repo: &'static str,
    /// The `.safetensors` file inside the repository.
    pub file: &'static str,
}

impl CatalogUpscaler {
    /// `org/name/file.safetensors`, the name jobs, the CLI and the PNG carry.
    pub fn reference(&self) -> String {
        format!("{}/{}", self.repo, self.file)
    }
}

/// Hub upscalers the window offers. Third-party conversions to `.safetensors` (checked to
/// exist as such files); the loader tells the architecture from the tensors.
pub const UPSCALER_CATALOG: [CatalogUpscaler; 5] = [
    CatalogUpscaler {
        label: "4x Remacri (ESRGAN)",
        repo: "martin-rizzo/ESRGAN-4x",
        file: "4x_foolhardy_Remacri.safetensors",
    },
    CatalogUpscaler {
        label: "4x Nickelback (ESRGAN)",
        repo: "martin-rizzo/ESRGAN-4x",
        file: "4x_Nickelback_70000G.safetensors",
    },
    CatalogUpscaler {
        label: "Real-ESRGAN x4",
        repo: "polypo/RealESRGAN_x4_safetensors",
        file: "model.safetensors",
    },
    CatalogUpscaler {
        label: "RealESRGAN x4plus",
        repo: "wkrettek/real-esrgan-models",
        file: "realesrgan_x4plus.safetensors",
    },
    CatalogUpscaler {
        label: "RealESRGAN x4plus anime 6B",
        repo: "wkrettek/real-esrgan-models",
        file: "realesrgan_x4plus_anime_6B.safetensors",
    },
];

/// The repository and file `model` names when it is no file on disk but reads as
/// `org/name/file.safetensors`; `None` for local paths.
pub fn upscaler_repo_file(model: &Path) -> Option<(String, String)> {
    if model.exists() || model.is_absolute() {
        return None;
    }
    match HubReference::parse(model.to_str()?) {
        Ok(HubReference::RepoFile { id, path }) => Some((id, path)),
        _ => None,
    }
}

/// What [`HubClient::fetch_upscaler`] could not do, in one line naming the file.
#[derive(Debug, thiserror::Error)]
pub enum UpscalerFetchError {
    #[error("upscaler {reference}: the Hugging Face hub at {endpoint} could not be reached and no copy is in the cache ({cache}); connect once to download it, or name a local .safetensors file")]
    Offline {
        reference: String,
        endpoint: String,
        cache: PathBuf,
    },
    #[error("upscaler {reference}: no such file on the Hugging Face hub (check the spelling, or name a local .safetensors file)")]
    NotFound { reference: String },
    #[error("upscaler {reference}: {source}")]
    Download {
        reference: String,
        #[source]
        source: DownloadError,
    },
}

impl HubClient {
    /// The path in `cache` of upscaler file `path` of repository `id`, downloaded on first
    /// use; a finished earlier download is used without network.
    pub fn fetch_upscaler<P>(
        &self,
        id: &str,
        path: &str,
        cache: &HubCache,
        progress: P,
    ) -> Result<PathBuf, UpscalerFetchError>
    where
        P: FnMut(&str, DownloadProgress) -> bool,
    {
        let reference = format!("{id}/{path}");
        self.fetch_repo_file(id, path, cache, progress)
            .map_err(|source| match source {
                DownloadError::Offline { endpoint, .. } => UpscalerFetchError::Offline {
                    reference,
                    endpoint,
                    cache: cache.repo_dir(id),
                },
                DownloadError::NotFound { .. } | DownloadError::Http { status: 404, .. } => {
                    UpscalerFetchError::NotFound { reference }
                }
                source => UpscalerFetchError::Download { reference, source },
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_catalog_entry_is_a_safetensors_file_in_a_repository() {
        for entry in UPSCALER_CATALOG {
            let reference = entry.reference();
            assert!(reference.ends_with(".safetensors"), "{reference}");
            assert_eq!(
                upscaler_repo_file(Path::new(&reference)),
                Some((entry.repo.to_string(), entry.file.to_string())),
                "{reference}"
            );
        }
    }

    #[test]
    fn local_paths_and_repositories_are_no_upscaler_file_reference() {
        for text in [
            "/models/x.safetensors",
            "x.safetensors",
            "org/name",
            "org/name/x.pth",
            "tests/fixtures/upscalers/compact_x2.safetensors",
        ] {
            assert_eq!(upscaler_repo_file(Path::new(text)), None, "{text}");
        }
    }
}
