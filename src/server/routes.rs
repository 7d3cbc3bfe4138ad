//! Which endpoint answers which path, and the small endpoints themselves.

use std::path::Path;
use std::sync::Arc;

use serde_json::{json, Value};

use super::http::{ApiError, Handler, Method, Request};
use super::models::ServedModels;
use super::options;
use super::payload::{self, Fields, Mode};
use super::queue::GenerationQueue;
use super::reply;
use crate::engine::{
    png_parameters_from_bytes, read_picture_from_bytes, AddOnFolders, SchedulerKind,
};

pub struct Routes {
    queue: Arc<GenerationQueue>,
    models: ServedModels,
    folders: AddOnFolders,
    /// Where `hr_upscaler` names are looked up.
    upscalers: Option<std::path::PathBuf>,
}

const PATHS: [&str; 11] = [
    "/sdapi/v1/txt2img",
    "/sdapi/v1/img2img",
    "/sdapi/v1/progress",
    "/sdapi/v1/interrupt",
    "/sdapi/v1/sd-models",
    "/sdapi/v1/options",
    "/sdapi/v1/samplers",
    "/sdapi/v1/schedulers",
    "/sdapi/v1/png-info",
    "/sdapi/v1/loras",
    "/sdapi/v1/embeddings",
];

impl Handler for Routes {
    fn handle(&self, request: &Request) -> Result<Value, ApiError> {
        use Method::{Get, Post};
        match (request.method, request.path.as_str()) {
            (Post, "/sdapi/v1/txt2img") => self.generate(request, Mode::Txt2Img),
            (Post, "/sdapi/v1/img2img") => self.generate(request, Mode::Img2Img),
            (Get, "/sdapi/v1/progress") => self.progress(&request.query),
            (Post, "/sdapi/v1/interrupt") => {
                self.queue.interrupt();
                Ok(json!({}))
            }
            (Get, "/sdapi/v1/sd-models") => {
                Ok(self.models.a1111_list(&self.queue.described_models()))
            }
            (Get, "/sdapi/v1/options") => Ok(self.options()),
            (Post, "/sdapi/v1/options") => self.set_options(request),
            (Get, "/sdapi/v1/samplers") => Ok(samplers()),
            (Get, "/sdapi/v1/schedulers") => Ok(schedulers()),
            (Post, "/sdapi/v1/png-info") => png_info(request),
            (Get, "/sdapi/v1/loras") => self.loras(),
            (Get, "/sdapi/v1/embeddings") => Ok(self.embeddings()),
            (_, path) if PATHS.contains(&path) => Err(ApiError {
                status: 405,
                kind: "MethodNotAllowed",
                detail: format!("{path} does not answer this method"),
                fields: Vec::new(),
            }),
            (_, path) => Err(ApiError {
                status: 404,
                kind: "NotFound",
                detail: format!("{path}: no such endpoint (this server speaks A1111's /sdapi/v1)"),
                fields: Vec::new(),
            }),
        }
    }
}

impl Routes {
    pub fn new(
        queue: Arc<GenerationQueue>,
        models: ServedModels,
        folders: AddOnFolders,
        upscalers: Option<std::path::PathBuf>,
    ) -> Self {
        Self {
            queue,
            models,
            folders,
            upscalers,
        }
    }

    fn generate(&self, request: &Request, mode: Mode) -> Result<Value, ApiError> {
        let body = payload::parse_object(&request.body)?;
        let job = payload::parse_generation(&body, mode, &self.models, self.upscalers.as_deref())?;
        let batch_size = job.batch_size;
        let generated = self.queue.generate(job)?;
        reply::generation_reply(&body, &generated, batch_size)
    }

    /// A1111's progress: the share of the request's images done, the time left at this
    /// pace, and the live preview. `job_count` counts images (A1111 counts batches); the
    /// images of a batch share their steps.
    fn progress(&self, query: &str) -> Result<Value, ApiError> {
        let skip_image = query
            .split('&')
            .any(|pair| pair.eq_ignore_ascii_case("skip_current_image=true"));
        let Some(job) = self.queue.running() else {
            return Ok(json!({
                "progress": 0.0,
                "eta_relative": 0.0,
                "state": state(false, "", 0, 0, "", 0, 0),
                "current_image": null,
                "textinfo": null,
                "current_task": null,
            }));
        };
        let within_image = if job.steps > 0 {
            job.step as f64 / job.steps as f64
        } else {
            0.0
        };
        let done = job.index as f64 + within_image * job.batch_size as f64;
        let progress = (done / job.images.max(1) as f64).min(1.0);
        let elapsed = job.started.elapsed().as_secs_f64();
        let eta = if progress > 0.0 {
            elapsed / progress - elapsed
        } else {
            0.0
        };
        let current_image = match (&job.preview, skip_image) {
            (Some(preview), false) => Some(reply::png_base64(preview, None)?),
            _ => None,
        };
        let label = format!("Image {} out of {}", job.index + 1, job.images);
        Ok(json!({
            "progress": progress,
            "eta_relative": eta,
            "state": state(
                job.interrupted,
                &label,
                job.images,
                job.index,
                &job.timestamp,
                job.step,
                job.steps,
            ),
            "current_image": current_image,
            "textinfo": format!("{label}, step {}/{}", job.step, job.steps),
            "current_task": null,
        }))
    }

    fn options(&self) -> Value {
        json!({
            "sd_model_checkpoint": self.queue.default_model_title(),
            "CLIP_stop_at_last_layers": 1,
            "sd_vae": "Automatic",
            "samples_format": "png",
            "enable_pnginfo": true,
            "randn_source": "CPU",
            "eta_noise_seed_delta": 0,
            "img2img_fix_steps": false,
        })
    }

    /// Only the model is a setting a server keeps: anything else that changes images is
    /// sent with each request (`override_settings`), so that every server behind a load
    /// balancer makes the same image for the same request.
    fn set_options(&self, request: &Request) -> Result<Value, ApiError> {
        let body = payload::parse_object(&request.body)?;
        let settings = options::read_settings(&body, &self.models)?;
        if settings.clip_skip.is_some_and(|layers| layers != 1) {
            return Err(ApiError::invalid(
                "CLIP_stop_at_last_layers: send it with each request in override_settings; this server keeps no setting but the model",
            ));
        }
        if let Some(model) = settings.model {
            self.queue.switch_model(model)?;
        }
        Ok(Value::Null)
    }

    /// The `.safetensors` files in the LoRA folder, by the names `<lora:NAME:…>` uses.
    fn loras(&self) -> Result<Value, ApiError> {
        let files = list_safetensors(self.folders.loras.as_deref())?;
        Ok(Value::Array(
            files
                .into_iter()
                .map(|(name, path)| {
                    json!({ "name": name, "alias": name, "path": path, "metadata": {} })
                })
                .collect(),
        ))
    }

    /// A1111's `{loaded, skipped}`: the embeddings in the embeddings folder that fit the
    /// model loaded now (those made for another family are left out, as A1111 skips them).
    fn embeddings(&self) -> Value {
        let loaded: serde_json::Map<String, Value> = self
            .queue
            .embeddings()
            .into_iter()
            .map(|name| (name, json!({})))
            .collect();
        json!({ "loaded": loaded, "skipped": {} })
    }
}

#[allow(clippy::too_many_arguments)]
fn state(
    interrupted: bool,
    job: &str,
    job_count: usize,
    job_no: usize,
    timestamp: &str,
    step: usize,
    steps: usize,
) -> Value {
    json!({
        "skipped": false,
        "interrupted": interrupted,
        "stopping_generation": false,
        "job": job,
        "job_count": job_count,
        "job_timestamp": timestamp,
        "job_no": job_no,
        "sampling_step": step,
        "sampling_steps": steps,
    })
}

/// The `.safetensors` files in `folder`, as (name without extension, path), sorted by name;
/// none when the folder is not set or does not exist yet.
fn list_safetensors(folder: Option<&Path>) -> Result<Vec<(String, String)>, ApiError> {
    let Some(folder) = folder else {
        return Ok(Vec::new());
    };
    let entries = match std::fs::read_dir(folder) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => {
            return Err(ApiError::internal(format!(
                "cannot list {}: {err}",
                folder.display()
            )))
        }
    };
    let mut files: Vec<(String, String)> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.is_file())
        .filter(|path| {
            path.extension()
                .is_some_and(|ext| ext.eq_ignore_ascii_case("safetensors"))
        })
        .filter_map(|path| {
            let name = path.file_stem()?.to_str()?.to_string();
            Some((name, path.display().to_string()))
        })
        .collect();
    files.sort_by_key(|(name, _)| name.to_lowercase());
    Ok(files)
}

/// Every sampler this server has, by its A1111 name.
fn samplers() -> Value {
    Value::Array(
        SchedulerKind::ALL
            .into_iter()
            .filter(|kind| *kind != SchedulerKind::Default)
            .map(|kind| json!({ "name": kind.a1111_name(), "aliases": [kind.name()], "options": {} }))
            .collect(),
    )
}

/// The schedule types `scheduler` may name (A1111 ≥ 1.9), for the samplers that have them.
fn schedulers() -> Value {
    let entry = |name: &str, label: &str| json!({ "name": name, "label": label, "aliases": null, "default_rho": -1, "need_inner_model": false });
    json!([
        entry("automatic", "Automatic"),
        entry("uniform", "Uniform"),
        entry("karras", "Karras"),
        entry("exponential", "Exponential"),
        entry("beta", "Beta"),
        entry("align_your_steps", "Align Your Steps"),
    ])
}

/// `{info, items, parameters}` of a picture: its `parameters` text (empty when it has
/// none), other text items (none are read), and the text as A1111's dictionary.
fn png_info(request: &Request) -> Result<Value, ApiError> {
    let body = payload::parse_object(&request.body)?;
    let encoded: String = Fields(&body)
        .get("image")?
        .ok_or_else(|| ApiError::invalid("image: give a base64 picture"))?;
    let bytes = payload::decode_base64("image", &encoded)?;
    let text = match png_parameters_from_bytes(&bytes) {
        Ok(text) => text.unwrap_or_default(),
        // Not a readable PNG: a picture of another kind has no parameters; anything else
        // is an error.
        Err(_) => {
            read_picture_from_bytes(&bytes, "image").map_err(ApiError::invalid)?;
            String::new()
        }
    };
    Ok(json!({
        "info": text,
        "items": {},
        "parameters": reply::parameters_dictionary(&text),
    }))
}
