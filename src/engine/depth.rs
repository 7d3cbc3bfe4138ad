//! Depth maps for ControlNet units (`depth_anything_v2`): the depth model is found — the
//! folder or file the user named (`--depth-model`, `LATENT_STUDIO_DEPTH_MODEL`), else
//! `depth-anything/Depth-Anything-V2-Small-hf` in the Hugging Face cache — loaded once and
//! kept for the next map.

use std::path::PathBuf;

use candle_core::Device;

use super::runner::{add_on_download, RunObserver};
use super::ModelSource;
use crate::imaging::RgbImage;
use crate::models::depth::{load_depth_model, DepthEstimator, DEPTH_ANYTHING_V2_SMALL};
use crate::models::{DownloadError, HubCache, HubClient};

/// The environment variable naming a local depth model (folder or `.safetensors` file).
pub const DEPTH_MODEL_ENV: &str = "LATENT_STUDIO_DEPTH_MODEL";

/// The files of the depth model a folder needs.
const DEPTH_FILES: [&str; 3] = [
    "config.json",
    "model.safetensors",
    "preprocessor_config.json",
];

/// Largest picture side a depth map is made for (the network sees it at ~518² whatever
/// its size; this bounds the map's own allocation).
const MAX_PICTURE_SIDE: usize = 16384;

#[derive(Default)]
pub(super) struct DepthMaps {
    /// The depth model the user named; else the environment's, else the hub cache's.
    pub(super) model: Option<PathBuf>,
    loaded: Option<(PathBuf, DepthEstimator)>,
    /// The last picture and its map: a job's check and its run ask for the same one.
    last: Option<(RgbImage, RgbImage)>,
}

impl DepthMaps {
    /// The depth map of `picture` at its size, as grey RGB. The model's first use downloads
    /// it, reported to `observer` (which may stop it).
    pub(super) fn map(
        &mut self,
        picture: &RgbImage,
        device: &Device,
        observer: &mut dyn RunObserver,
    ) -> Result<RgbImage, String> {
        if picture.width > MAX_PICTURE_SIDE || picture.height > MAX_PICTURE_SIDE {
            return Err(format!(
                "a {}×{} picture is too large for a depth map (at most {MAX_PICTURE_SIDE} a side)",
                picture.width, picture.height
            ));
        }
        let path = self.model_path(observer)?;
        if self.loaded.as_ref().is_none_or(|(p, _)| *p != path) {
            self.loaded = None;
            self.last = None;
            let estimator =
                load_depth_model(&path, device).map_err(|err| format!("depth model: {err}"))?;
            self.loaded = Some((path, estimator));
        }
        if let Some((seen, map)) = &self.last {
            if seen == picture {
                return Ok(map.clone());
            }
        }
        let (_, estimator) = self.loaded.as_ref().expect("loaded above");
        let map = estimator
            .depth_map(picture)
            .map_err(|err| format!("depth map: {}", crate::describe_candle_error(&err)))?;
        self.last = Some((picture.clone(), map.clone()));
        Ok(map)
    }

    fn model_path(&self, observer: &mut dyn RunObserver) -> Result<PathBuf, String> {
        if let Some(path) = &self.model {
            return Ok(path.clone());
        }
        if let Some(path) = std::env::var_os(DEPTH_MODEL_ENV).filter(|v| !v.is_empty()) {
            return Ok(PathBuf::from(path));
        }
        let cache = HubCache::from_env();
        if let Some(snapshot) = cached_snapshot(&cache) {
            return Ok(snapshot);
        }
        let files: Vec<String> = DEPTH_FILES.iter().map(|f| f.to_string()).collect();
        let source = ModelSource::Hub(DEPTH_ANYTHING_V2_SMALL.to_string());
        HubClient::from_env()
            .fetch_files(DEPTH_ANYTHING_V2_SMALL, "main", &files, &cache, |file, progress| {
                add_on_download(observer, &source, file, progress)
            })
            .map_err(|err| {
                if matches!(err, DownloadError::Cancelled) {
                    return format!("the download of {DEPTH_ANYTHING_V2_SMALL} was stopped; it resumes next time the depth model is needed");
                }
                // The offline error's own advice is about generation models; say it plainly.
                let err = if err.is_offline() {
                    format!("the Hugging Face hub at {} could not be reached", HubClient::from_env().endpoint())
                } else {
                    err.to_string()
                };
                format!(
                    "the depth_anything_v2 preprocessor needs the Depth Anything V2 model, which could not be downloaded ({err}): download {} of https://huggingface.co/{DEPTH_ANYTHING_V2_SMALL} (`hf download {DEPTH_ANYTHING_V2_SMALL}` puts them in the Hugging Face cache, {}), or into a folder named with --depth-model or {DEPTH_MODEL_ENV}",
                    DEPTH_FILES.join(", "),
                    cache.repo_dir(DEPTH_ANYTHING_V2_SMALL).display()
                )
            })
    }
}

/// The snapshot of Depth-Anything-V2-Small-hf's `main` in the hub cache, when it holds the
/// config and the weights.
fn cached_snapshot(cache: &HubCache) -> Option<PathBuf> {
    let snapshot = cache.cached_snapshot(DEPTH_ANYTHING_V2_SMALL, "main")?;
    let complete = ["config.json", "model.safetensors"]
        .iter()
        .all(|file| snapshot.join(file).is_file());
    complete.then_some(snapshot)
}
