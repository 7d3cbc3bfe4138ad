//! The A1111 `parameters` record of a generation.

use crate::formats::parameters::GenerationParameters;
use crate::pipeline::generate::{GenerationRequest, StableDiffusion};
use crate::pipeline::schedulers::SchedulerConfigError;

/// What A1111, civitai and Latent Studio read back from a PNG made with `request`.
pub fn a1111_parameters(
    model: &StableDiffusion,
    request: &GenerationRequest,
) -> Result<GenerationParameters, SchedulerConfigError> {
    let label = request.scheduler.a1111_label(model.scheduler_config())?;
    Ok(GenerationParameters {
        prompt: request.prompt.clone(),
        negative_prompt: request.negative_prompt.clone().unwrap_or_default(),
        steps: request.steps,
        sampler: label.sampler.to_string(),
        schedule_type: label.schedule_type.map(str::to_string),
        cfg_scale: request.guidance,
        seed: request.seed,
        width: request.width,
        height: request.height,
        model: Some(model.info().name.clone()),
        model_hash: None,
        denoising_strength: request.init_image.as_ref().map(|init| init.strength),
        version: Some(format!("latent-studio {}", crate::VERSION)),
        extra: Vec::new(),
    })
}
