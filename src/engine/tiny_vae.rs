//! The runner's tiny autoencoder (TAESD for SD 1/2, TAESDXL for SDXL): "Tiny VAE" live
//! previews and the fast final decode. A chosen file or folder, else the diffusers folder in
//! the Hugging Face cache, else a download of it (~5 MB). When none can be had the runner
//! says so once and goes on with fast previews and the full VAE.

use std::path::PathBuf;
use std::sync::Arc;

use super::runner::add_on_download;
use super::{ModelSource, RunObserver};
use crate::models::taesd::{load_tiny_vae, tiny_vae_entry};
use crate::models::{HubCache, HubClient, LoadOptions};
use crate::networks::taesd::TinyDecoder;
use crate::networks::Family;
use crate::sampling::pipeline::{decoded_to_image, RgbImage};

/// A tiny decoder ready for use, with the name recorded when it decodes a final image.
#[derive(Clone)]
pub(super) struct TinyDecoderInUse {
    pub name: String,
    pub decoder: Arc<TinyDecoder>,
}

impl TinyDecoderInUse {
    /// `(1, 4, h, w)` latents as the picture the tiny decoder makes of them (8× the size).
    pub fn preview(&self, latents: &candle_core::Tensor) -> candle_core::Result<RgbImage> {
        decoded_to_image(&self.decoder.forward(&latents.narrow(0, 0, 1)?)?)
    }
}

#[derive(Default)]
pub(super) struct TinyVaeSlot {
    /// A file or folder the user chose; `None`: the hub folder for the model's family.
    chosen: Option<PathBuf>,
    /// The decoder for a family, or why there is none (reported when it was found out).
    loaded: Option<(Family, Result<TinyDecoderInUse, String>)>,
}

impl TinyVaeSlot {
    pub fn choose(&mut self, path: Option<PathBuf>) {
        if path != self.chosen {
            self.chosen = path;
            self.loaded = None;
        }
    }

    /// The tiny decoder for `family`, loaded (or downloaded, reported to `observer`) the
    /// first time it is asked for. A failure is told to `observer` once, and remembered until
    /// the choice changes; a download the job's cancel stopped is neither (the next job
    /// resumes it).
    pub fn decoder(
        &mut self,
        family: Family,
        options: &LoadOptions,
        observer: &mut dyn RunObserver,
    ) -> Option<TinyDecoderInUse> {
        if let Some((loaded_family, result)) = &self.loaded {
            if *loaded_family == family {
                return result.as_ref().ok().cloned();
            }
        }
        let result = self.load(family, options, observer);
        if result.is_err() && observer.is_cancelled() {
            return None;
        }
        if let Err(message) = &result {
            observer.notice(format!(
                "tiny VAE not available ({message}): live previews use the fast method and images the full VAE"
            ));
        }
        self.loaded = Some((family, result.clone()));
        result.ok()
    }

    fn load(
        &self,
        family: Family,
        options: &LoadOptions,
        observer: &mut dyn RunObserver,
    ) -> Result<TinyDecoderInUse, String> {
        let path = match &self.chosen {
            Some(path) => path.clone(),
            None => {
                let entry = tiny_vae_entry(family);
                let source = ModelSource::Hub(entry.id.clone());
                // Returns at once, without network, when the HF cache holds the folder.
                HubClient::from_env()
                    .fetch_model(&entry, &HubCache::from_env(), |file, progress| {
                        add_on_download(observer, &source, file, progress)
                    })
                    .map_err(|err| format!("{}: {err}", entry.id))?
            }
        };
        let vae = load_tiny_vae(&path, options).map_err(|err| err.to_string())?;
        let decoder = vae.decoder.ok_or_else(|| {
            format!(
                "{} holds only an encoder; choose a taesd_decoder file or a diffusers folder",
                path.display()
            )
        })?;
        Ok(TinyDecoderInUse {
            name: vae.name,
            decoder,
        })
    }
}
