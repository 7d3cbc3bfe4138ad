//! A1111's options (`GET`/`POST /options`, a request's `override_settings`): which are
//! honoured, which change nothing here, which are refused.

use serde_json::{Map, Value};

use super::http::ApiError;
use super::models::ServedModels;
use super::payload::Fields;

/// What `override_settings` (or `POST /options`) asks for.
#[derive(Debug, Default)]
pub struct Settings {
    pub model: Option<usize>,
    pub clip_skip: Option<usize>,
}

/// Options that change nothing here (saving files, previews, UI): accepted and ignored.
const IGNORED_OPTIONS: [&str; 14] = [
    "samples_save",
    "samples_format",
    "save_images_add_number",
    "grid_save",
    "return_grid",
    "enable_pnginfo",
    "save_txt",
    "outdir_samples",
    "outdir_txt2img_samples",
    "outdir_img2img_samples",
    "save_to_dirs",
    "live_previews_enable",
    "show_progress_every_n_steps",
    "live_preview_content",
];

/// Options accepted at the value that is what this engine does.
fn neutral_option(name: &str, value: &Value) -> Option<bool> {
    let text = value.as_str().map(str::trim);
    let number = value.as_f64();
    Some(match name {
        "sd_vae" => text.is_some_and(|v| v.eq_ignore_ascii_case("automatic") || v == "None"),
        // Noise as torch's CPU generator draws it.
        "randn_source" => text == Some("CPU"),
        "eta_noise_seed_delta" => number == Some(0.0),
        // img2img runs steps × strength steps, as diffusers does.
        "img2img_fix_steps" => value.as_bool() == Some(false),
        _ => return None,
    })
}

/// Reads option settings; refuses names it does not know and values it cannot honour.
pub fn read_settings(
    settings: &Map<String, Value>,
    models: &ServedModels,
) -> Result<Settings, ApiError> {
    let fields = Fields(settings);
    let mut result = Settings::default();
    let mut unsupported = Vec::new();
    for (name, value) in settings {
        match name.as_str() {
            "sd_model_checkpoint" => {
                let title: String = fields.get(name)?.unwrap_or_default();
                let index = models.find(&title).ok_or_else(|| {
                    ApiError::invalid(format!(
                        "sd_model_checkpoint {title:?}: not one of this server's models ({})",
                        models.titles()
                    ))
                })?;
                result.model = Some(index);
            }
            "CLIP_stop_at_last_layers" => {
                let layers: usize = fields.get(name)?.unwrap_or(1);
                if layers == 0 {
                    return Err(ApiError::invalid(
                        "CLIP_stop_at_last_layers must be at least 1",
                    ));
                }
                result.clip_skip = Some(layers);
            }
            _ if IGNORED_OPTIONS.contains(&name.as_str()) => {}
            _ => match neutral_option(name, value) {
                Some(true) => {}
                Some(false) => unsupported.push((
                    name.clone(),
                    format!("only its default is supported, not {value}"),
                )),
                None => unsupported.push((name.clone(), "an unknown option".to_string())),
            },
        }
    }
    if unsupported.is_empty() {
        Ok(result)
    } else {
        Err(ApiError::unsupported(unsupported))
    }
}
