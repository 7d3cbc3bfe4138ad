//! The sampling loop: StableDiffusionPipeline / StableDiffusionXLPipeline and their img2img
//! variants, step for step as diffusers runs them, over networks that are already built.
//! Where the weights came from (files, LoRAs) is [`crate::models`]' business.

use std::sync::atomic::{AtomicUsize, Ordering};

use candle_core::{DType, Device, Tensor};

pub use crate::imaging::{GrayImage, RgbImage};
use crate::networks::controlnet::{ControlMode, ControlNetModel};
use crate::networks::t2i_adapter::T2IAdapter;
use crate::networks::taesd::TinyDecoder;
use crate::networks::unet::{AddedConditions, UNet2DConditionModel};
use crate::networks::vae::AutoencoderKL;
use crate::networks::Family;
use crate::sampling::inpaint;
use crate::sampling::inpaint::InpaintMask;
use crate::sampling::noise::TorchRng;
use crate::sampling::schedulers::{
    build_scheduler, img2img_start_index, Scheduler, SchedulerConfig, SchedulerConfigError,
    SchedulerKind,
};
use crate::text::conditioning::{pad_to_same_length, EncodedPrompt, PromptEncoder};
pub use crate::text::conditioning::{PromptSyntax, TextStage};
use crate::text::embeddings::TextualInversion;
use crate::text::prompt::{prompt_pieces, token_usage};
use crate::text::tokenizer::ClipTokenizer;

/// Sides larger than this are refused before any work (the latents alone at 2²⁰ px would be
/// 64 GB; the app's size fields stop at 4096).
pub const MAX_IMAGE_SIDE: usize = 8192;

/// img2img input: the image to start from and how much of it to repaint (0..=1); with a
/// mask, inpainting (only the masked part is repainted).
#[derive(Debug, Clone)]
pub struct InitImage {
    pub image: RgbImage,
    pub strength: f64,
    pub mask: Option<InpaintMask>,
}

/// Everything that decides the output image.
#[derive(Debug, Clone)]
pub struct GenerationRequest {
    pub prompt: String,
    /// `None` is diffusers' `negative_prompt=None`: SDXL then uses zeros when the model asks for it.
    pub negative_prompt: Option<String>,
    pub steps: usize,
    pub guidance: f64,
    pub seed: u64,
    pub width: usize,
    pub height: usize,
    pub scheduler: SchedulerKind,
    pub init_image: Option<InitImage>,
    pub prompt_syntax: PromptSyntax,
    /// A1111's "Clip skip": 1 uses the text encoder's last layer, 2 the one before … (SDXL
    /// counts from its usual penultimate layer).
    pub clip_skip: usize,
    /// ControlNet and T2I-Adapter units, summed as diffusers' `MultiControlNetModel` and
    /// `MultiAdapter` do.
    pub controls: Vec<ControlUnit>,
    /// A1111's variation seed: the initial noise moved toward another seed's.
    pub variation: Option<Variation>,
}

/// A1111's "Variation seed" and "Variation seed strength" (0 = the seed's own noise,
/// 1 = the variation seed's).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Variation {
    pub seed: u64,
    pub strength: f64,
}

/// The network of a control unit.
#[derive(Clone)]
pub enum ControlNetwork {
    ControlNet(std::sync::Arc<ControlNetModel>),
    /// A T2I-Adapter: its feature maps are made once from the image and added inside the
    /// UNet's down blocks at every step it acts on.
    Adapter(std::sync::Arc<T2IAdapter>),
}

impl std::fmt::Debug for ControlNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ControlNetwork::ControlNet(_) => "ControlNet",
            ControlNetwork::Adapter(_) => "T2I-Adapter",
        })
    }
}

/// One ControlNet or T2I-Adapter and what it reads.
#[derive(Debug, Clone)]
pub struct ControlUnit {
    pub net: ControlNetwork,
    /// The control map as the network reads it (already preprocessed: edges, depth …);
    /// resized to the generation's size as diffusers' control image processor does.
    pub image: RgbImage,
    /// `controlnet_conditioning_scale` (A1111's "Weight").
    pub scale: f64,
    /// `control_guidance_start` / `_end`: the fraction of the steps it acts on.
    pub start: f64,
    pub end: f64,
    pub mode: ControlMode,
    /// For the record: the model's name and the preprocessor that made `image`, with its
    /// settings as A1111's `Threshold A`, `Threshold B` (none for one without settings).
    pub model_name: String,
    pub preprocessor: String,
    pub preprocessor_thresholds: Vec<f64>,
}

/// Progress of one denoising step, handed to the observer.
pub struct StepProgress<'a> {
    /// 1-based index of the step just finished.
    pub step: usize,
    pub total: usize,
    /// The scheduler's estimate of the clean latents (or the current latents when it has none).
    pub denoised: &'a Tensor,
}

/// What the observer wants after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Cancel,
}

/// A generation's final latents before the decode, with what the decoded image still needs.
struct Denoised {
    latents: Tensor,
    paste_back: Option<inpaint::PasteBack>,
}

pub struct GeneratedImage {
    pub image: RgbImage,
    /// Final latents as the UNet sees them (before the VAE's 1/scaling_factor).
    pub latents: Tensor,
}

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("scheduler: {0}")]
    Scheduler(#[from] SchedulerConfigError),
    #[error("cancelled")]
    Cancelled,
    #[error("computation failed: {0}")]
    Compute(String),
}

impl From<candle_core::Error> for GenerateError {
    fn from(err: candle_core::Error) -> Self {
        GenerateError::Compute(crate::describe_candle_error(&err))
    }
}

/// A Stable Diffusion pipeline built from its networks: tokenizers, encoders, UNet, VAE and
/// scheduler config.
pub struct DiffusionPipeline {
    pub(crate) family: Family,
    /// Pixels per latent along each axis.
    pub(crate) vae_scale_factor: usize,
    pub(crate) text_stages: Vec<TextStage>,
    pub(crate) unet: UNet2DConditionModel,
    pub(crate) vae: AutoencoderKL,
    pub(crate) scheduler_config: SchedulerConfig,
    pub(crate) force_zeros_for_empty_prompt: bool,
    pub(crate) device: Device,
    pub(crate) dtype: DType,
    pub(crate) embeddings: Vec<std::sync::Arc<TextualInversion>>,
    /// Decode in overlapping tiles (diffusers' `enable_vae_tiling()`).
    pub(crate) vae_tiling: bool,
    /// Decodes the finished latents instead of the VAE (a tiny autoencoder: fast, close but
    /// not equal to the VAE); previews and encodes keep the VAE.
    pub(crate) final_decoder: Option<std::sync::Arc<TinyDecoder>>,
    /// Finished images decoded so far, read by [`Self::finished_decodes`].
    pub(crate) finished_decodes: AtomicUsize,
}

pub(crate) struct Conditioning {
    /// `(batch, 77, dim)`: `[negative, positive]` with guidance, `[positive]` without.
    pub context: Tensor,
    pub added: Option<AddedConditions>,
}

impl DiffusionPipeline {
    pub fn family(&self) -> Family {
        self.family
    }

    /// Pixels per latent along each axis.
    pub fn vae_scale_factor(&self) -> usize {
        self.vae_scale_factor
    }

    pub fn scheduler_config(&self) -> &SchedulerConfig {
        &self.scheduler_config
    }

    /// Tokens used and room for them ("80/150"), as the first text encoder chunks `text`.
    pub fn token_usage(&self, text: &str, syntax: PromptSyntax) -> (usize, usize) {
        token_usage(&self.text_stages[0].tokenizer, text, syntax)
    }

    /// Textual-inversion embeddings usable by name in prompts from now on (replacing the
    /// previous set); returns the names of those that don't fit this model's text encoders.
    pub fn set_embeddings(
        &mut self,
        embeddings: Vec<std::sync::Arc<TextualInversion>>,
    ) -> Vec<String> {
        let encoders = self.text_stages.len();
        let fits = |e: &TextualInversion| {
            self.text_stages.iter().enumerate().all(|(i, stage)| {
                e.vectors_for(i, encoders, stage.encoder.hidden_size())
                    .is_some()
            })
        };
        let (usable, skipped): (Vec<_>, Vec<_>) = embeddings.into_iter().partition(|e| fits(e));
        self.embeddings = usable;
        skipped.into_iter().map(|e| e.name.clone()).collect()
    }

    /// Decode images in overlapping tiles, as diffusers' `enable_vae_tiling()` does: memory
    /// then follows the tile size instead of the image size, at the price of a result that
    /// differs slightly from an untiled decode. Off by default, as in diffusers.
    pub fn set_vae_tiling(&mut self, enabled: bool) {
        self.vae_tiling = enabled;
    }

    pub fn vae_tiling(&self) -> bool {
        self.vae_tiling
    }

    /// Decode finished images with this tiny autoencoder instead of the VAE (`None`: the
    /// VAE, as diffusers). Not exact: a fast decode the caller records as such.
    pub fn set_final_decoder(&mut self, decoder: Option<std::sync::Arc<TinyDecoder>>) {
        self.final_decoder = decoder;
    }

    /// A finished image's latents as pixels: through the tiny decoder when one is set for
    /// final decodes, else the VAE.
    pub(crate) fn decode_final(&self, latents: &Tensor) -> Result<RgbImage, GenerateError> {
        self.finished_decodes.fetch_add(1, Ordering::Relaxed);
        Ok(match &self.final_decoder {
            Some(decoder) => decoded_to_image(&decoder.forward(latents)?)?,
            None => self.decode(latents)?,
        })
    }

    /// How many finished images (VAE or tiny final decoder) this pipeline has decoded: what
    /// tells which decodes a job did (a latent hires fix's first pass does none).
    pub fn finished_decodes(&self) -> usize {
        self.finished_decodes.load(Ordering::Relaxed)
    }

    /// Names of the embeddings usable in prompts.
    pub fn embedding_names(&self) -> Vec<String> {
        self.embeddings.iter().map(|e| e.name.clone()).collect()
    }

    /// The first (or only) tokenizer: what prompt-length counters should use.
    pub fn tokenizer(&self) -> &std::sync::Arc<ClipTokenizer> {
        &self.text_stages[0].tokenizer
    }

    /// The scheduler `request` names, set up for its steps with this model's configuration.
    pub(crate) fn scheduler_for(
        &self,
        request: &GenerationRequest,
    ) -> Result<Box<dyn Scheduler>, GenerateError> {
        Ok(build_scheduler(
            request.scheduler,
            &self.scheduler_config,
            request.steps,
            self.family,
        )?)
    }

    /// How many UNet evaluations `request` will take (PLMS takes one more than its steps, Heun
    /// two per step but the last; img2img skips the first `1 - strength` of the schedule).
    pub fn planned_steps(&self, request: &GenerationRequest) -> Result<usize, GenerateError> {
        let scheduler = self.scheduler_for(request)?;
        let total = scheduler.timesteps().len();
        let start = match &request.init_image {
            Some(init) => img2img_start_index(request.steps, init.strength) * scheduler.order(),
            None => 0,
        };
        Ok(total.saturating_sub(start))
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The components, for benchmarks and tools that time them one by one.
    pub fn text_stages(&self) -> &[TextStage] {
        &self.text_stages
    }

    pub fn unet(&self) -> &UNet2DConditionModel {
        &self.unet
    }

    pub fn vae(&self) -> &AutoencoderKL {
        &self.vae
    }

    /// Everything about `request` that can be known without running it: sizes, prompt
    /// syntax, guidance, strength, a clip skip within the text encoders' layers, and a
    /// scheduler that can take this many steps. `generate` checks the same first.
    pub fn check(&self, request: &GenerationRequest) -> Result<(), GenerateError> {
        self.validate(request)?;
        self.scheduler_for(request)?;
        // SDXL counts clip skip from its usual penultimate layer: one layer fewer to go back.
        let skip_layers = match self.family {
            Family::StableDiffusion => request.clip_skip,
            Family::StableDiffusionXl => request.clip_skip + 1,
        };
        self.check_memory(request)?;
        let layers = self
            .text_stages
            .iter()
            .map(|stage| stage.encoder.layer_count())
            .min()
            .unwrap_or(0);
        if skip_layers > layers {
            return Err(GenerateError::InvalidRequest(format!(
                "clip skip {} is more than this model's text encoder allows ({} layers)",
                request.clip_skip,
                layers.saturating_sub(skip_layers - request.clip_skip)
            )));
        }
        Ok(())
    }

    /// On the CPU, an untiled VAE decode is the largest allocation of a run; refuse a size
    /// whose decode would not fit in the memory the system has free (the allocation would
    /// abort the process), and say how to get there.
    fn check_memory(&self, request: &GenerationRequest) -> Result<(), GenerateError> {
        if !self.device.is_cpu() || self.vae_tiling {
            return Ok(());
        }
        let Some(available) = crate::system::available_memory_bytes() else {
            return Ok(());
        };
        let pixels = (request.width as u64).saturating_mul(request.height as u64);
        let needed = pixels.saturating_mul(self.vae.decode_bytes_per_pixel());
        if needed > available {
            let gb = |bytes: u64| bytes as f64 / 1e9;
            return Err(GenerateError::InvalidRequest(format!(
                "a {}×{} image needs about {:.1} GB to decode, and {:.1} GB are free: decode in tiles (--vae-tiling, or \"Tiled VAE decode\" under \"Output and preview\") or choose a smaller size",
                request.width,
                request.height,
                gb(needed),
                gb(available)
            )));
        }
        Ok(())
    }

    fn validate(&self, request: &GenerationRequest) -> Result<(), GenerateError> {
        let scale = self.vae_scale_factor;
        for (name, value) in [("width", request.width), ("height", request.height)] {
            if value == 0 || value % scale != 0 {
                return Err(GenerateError::InvalidRequest(format!(
                    "{name} {value} is not a positive multiple of {scale}"
                )));
            }
            if value > MAX_IMAGE_SIDE {
                return Err(GenerateError::InvalidRequest(format!(
                    "{name} {value} is more than {MAX_IMAGE_SIDE} pixels; generate smaller and upscale"
                )));
            }
        }
        for (name, text) in [
            ("prompt", Some(request.prompt.as_str())),
            ("negative prompt", request.negative_prompt.as_deref()),
        ] {
            if let Some(text) = text {
                prompt_pieces(text, request.prompt_syntax)
                    .map_err(|err| GenerateError::InvalidRequest(format!("{name}: {err}")))?;
            }
        }
        if request.clip_skip == 0 {
            return Err(GenerateError::InvalidRequest(
                "clip skip must be at least 1 (1 = use the last layer)".into(),
            ));
        }
        if request.steps == 0 {
            return Err(GenerateError::InvalidRequest(
                "steps must be at least 1".into(),
            ));
        }
        if !request.guidance.is_finite() || request.guidance < 0.0 {
            return Err(GenerateError::InvalidRequest(format!(
                "guidance {} must be a number ≥ 0",
                request.guidance
            )));
        }
        let has_mask = request
            .init_image
            .as_ref()
            .is_some_and(|init| init.mask.is_some());
        if self.unet.in_channels() == 9 && !has_mask {
            return Err(GenerateError::InvalidRequest(
                "this is an inpainting model: give it a picture and a mask (--init-image and --mask, or paint a mask in the window), or load a text-to-image model".into(),
            ));
        }
        for (n, unit) in request.controls.iter().enumerate() {
            self.check_control(n, unit, request)?;
        }
        if let Some(variation) = request.variation {
            if !(0.0..=1.0).contains(&variation.strength) {
                return Err(GenerateError::InvalidRequest(format!(
                    "variation strength {} must be between 0 and 1",
                    variation.strength
                )));
            }
        }
        if let Some(init) = &request.init_image {
            if let Some(mask) = &init.mask {
                inpaint::check_mask(mask)?;
            }
            if !(init.strength > 0.0 && init.strength <= 1.0) {
                return Err(GenerateError::InvalidRequest(format!(
                    "strength {} must be in (0, 1]",
                    init.strength
                )));
            }
            // diffusers refuses a strength that leaves no step (`int(steps · strength) == 0`).
            if (request.steps as f64 * init.strength) as usize == 0 {
                return Err(GenerateError::InvalidRequest(format!(
                    "strength {} at {} steps leaves no denoising step; raise the strength or the steps",
                    init.strength, request.steps
                )));
            }
            let expected = init.image.width * init.image.height * 3;
            if init.image.pixels.len() != expected {
                return Err(GenerateError::InvalidRequest(
                    "init image buffer does not match its size".into(),
                ));
            }
        }
        Ok(())
    }

    /// The conditional (and, with guidance, unconditional) text embeddings for a request.
    pub(crate) fn encode_prompts(
        &self,
        request: &GenerationRequest,
        guided: bool,
    ) -> Result<Conditioning, GenerateError> {
        let encoder = PromptEncoder {
            stages: &self.text_stages,
            family: self.family,
            embeddings: &self.embeddings,
            syntax: request.prompt_syntax,
            clip_skip: request.clip_skip,
        };
        let encode = |text: &str| encoder.encode(text);
        let positive = encode(&request.prompt)?;
        if self.family == Family::StableDiffusionXl && positive.pooled.is_none() {
            return Err(GenerateError::InvalidRequest(
                "SDXL model has no projected text encoder (text_encoder_2)".into(),
            ));
        }
        let (width, height) = (request.width as f32, request.height as f32);
        let time_ids = |batch: usize| -> candle_core::Result<Tensor> {
            let row = [height, width, 0.0, 0.0, height, width];
            let values: Vec<f32> = (0..batch).flat_map(|_| row).collect();
            Tensor::from_vec(values, (batch, 6), &self.device)?.to_dtype(self.dtype)
        };
        if !guided {
            let added = match positive.pooled {
                Some(pooled) => Some(AddedConditions {
                    text_embeds: pooled,
                    time_ids: time_ids(1)?,
                }),
                None => None,
            };
            return Ok(Conditioning {
                context: positive.hidden,
                added,
            });
        }
        let zero_negative = self.family == Family::StableDiffusionXl
            && request.negative_prompt.is_none()
            && self.force_zeros_for_empty_prompt;
        let mut positive = positive;
        let mut negative = if zero_negative {
            EncodedPrompt {
                hidden: positive.hidden.zeros_like()?,
                pooled: positive
                    .pooled
                    .as_ref()
                    .map(Tensor::zeros_like)
                    .transpose()?,
            }
        } else {
            encode(request.negative_prompt.as_deref().unwrap_or(""))?
        };
        if negative.hidden.dim(1)? != positive.hidden.dim(1)? {
            let empty = encode("")?;
            pad_to_same_length(&mut negative.hidden, &mut positive.hidden, &empty.hidden)?;
        }
        let context = Tensor::cat(&[&negative.hidden, &positive.hidden], 0)?;
        let added = match (negative.pooled, positive.pooled) {
            (Some(neg), Some(pos)) => Some(AddedConditions {
                text_embeds: Tensor::cat(&[&neg, &pos], 0)?,
                time_ids: time_ids(2)?,
            }),
            _ => None,
        };
        Ok(Conditioning { context, added })
    }

    /// Runs one generation. `observer` sees every step and may cancel.
    pub fn generate(
        &self,
        request: &GenerationRequest,
        observer: &mut dyn FnMut(&StepProgress) -> Flow,
    ) -> Result<GeneratedImage, GenerateError> {
        let denoised = self.denoise(request, None, observer)?;
        self.finish(denoised)
    }

    /// [`Self::generate`]'s final latents (UNet space, [`GeneratedImage::latents`]) without
    /// decoding them, for a caller that goes on from the latents alone (the first pass of a
    /// hires fix with a latent upscaler): the decode is as long as several steps.
    pub fn generate_latents(
        &self,
        request: &GenerationRequest,
        observer: &mut dyn FnMut(&StepProgress) -> Flow,
    ) -> Result<Tensor, GenerateError> {
        Ok(self.denoise(request, None, observer)?.latents)
    }

    /// img2img that starts from `start` latents (UNet space, 1×4×h/8×w/8) instead of the VAE
    /// encode of the init image, as diffusers' img2img does when `image` has 4 channels
    /// (`init_latents = image`, then `add_noise` at the strength's timestep); the request's
    /// init image only carries the strength. No VAE sample is drawn, so the noise is the
    /// generator's first draw.
    pub fn generate_from_latents(
        &self,
        request: &GenerationRequest,
        start: &Tensor,
        observer: &mut dyn FnMut(&StepProgress) -> Flow,
    ) -> Result<GeneratedImage, GenerateError> {
        let scale = self.vae_scale_factor;
        let expected = [1, 4, request.height / scale, request.width / scale];
        if start.dims() != expected {
            return Err(GenerateError::InvalidRequest(format!(
                "starting latents are {:?}; a {}×{} picture needs {expected:?}",
                start.dims(),
                request.width,
                request.height
            )));
        }
        match &request.init_image {
            Some(init) if init.mask.is_none() => {}
            _ => {
                return Err(GenerateError::InvalidRequest(
                    "starting latents need an unmasked img2img request (its strength)".into(),
                ))
            }
        }
        let denoised = self.denoise(request, Some(start), observer)?;
        self.finish(denoised)
    }

    /// The denoising loop of a generation, up to (not including) the decode.
    fn denoise(
        &self,
        request: &GenerationRequest,
        start_latents: Option<&Tensor>,
        observer: &mut dyn FnMut(&StepProgress) -> Flow,
    ) -> Result<Denoised, GenerateError> {
        self.check(request)?;
        let guided = request.guidance > 1.0;
        let conditioning = self.encode_prompts(request, guided)?;
        let mut scheduler = self.scheduler_for(request)?;
        let mut rng = TorchRng::new(request.seed);
        let scale = self.vae_scale_factor;
        let latent_shape = [1, 4, request.height / scale, request.width / scale];

        let mut inpainting = None;
        let (mut latents, first_step) = match &request.init_image {
            None => {
                let noise = self.initial_noise(&mut rng, &latent_shape, request)?;
                ((noise * scheduler.init_noise_sigma())?, 0)
            }
            Some(init) => {
                let start = img2img_start_index(request.steps, init.strength) * scheduler.order();
                if start >= scheduler.timesteps().len() {
                    return Err(GenerateError::InvalidRequest(format!(
                        "strength {} leaves no denoising steps at {} steps",
                        init.strength, request.steps
                    )));
                }
                match (&init.mask, start_latents) {
                    (None, Some(latents)) => {
                        let clean = latents.to_device(&self.device)?.to_dtype(self.dtype)?;
                        let noise = self.initial_noise(&mut rng, clean.dims(), request)?;
                        (scheduler.add_noise(&clean, &noise, start)?, start)
                    }
                    (None, None) => {
                        let pixels = image_to_tensor(
                            &init.image,
                            request.width,
                            request.height,
                            &self.device,
                        )?
                        .to_dtype(self.dtype)?;
                        let clean = self.encode(&pixels, &mut rng)?;
                        let noise = self.initial_noise(&mut rng, clean.dims(), request)?;
                        (scheduler.add_noise(&clean, &noise, start)?, start)
                    }
                    (Some(mask), _) => {
                        let state = self.prepare_inpainting(
                            request,
                            init,
                            mask,
                            start,
                            scheduler.as_ref(),
                            &mut rng,
                        )?;
                        let latents = state.initial.clone();
                        inpainting = Some(state);
                        (latents, start)
                    }
                }
            }
        };

        let timesteps = scheduler.timesteps().to_vec();
        let total = timesteps.len() - first_step;
        let controls = self.prepare_controls(request, guided)?;
        for (index, &timestep) in timesteps.iter().enumerate().skip(first_step) {
            let model_input = if guided {
                Tensor::cat(&[&latents, &latents], 0)?
            } else {
                latents.clone()
            };
            let model_input = scheduler.scale_model_input(&model_input, index)?;
            // ControlNets read the latents before an inpainting UNet's extra channels.
            let scaled_for_control = model_input.clone();
            let model_input = match &inpainting {
                Some(state) => state.unet_input(model_input, guided)?,
                None => model_input,
            };
            let control = self.control_residuals(
                request,
                &controls,
                (index - first_step, total),
                &scaled_for_control,
                timestep,
                &conditioning,
                guided,
            )?;
            let prediction = self.unet.forward_with_control(
                &model_input,
                timestep,
                &conditioning.context,
                conditioning.added.as_ref(),
                control.as_ref(),
            )?;
            let prediction = if guided {
                let uncond = prediction.narrow(0, 0, 1)?;
                let cond = prediction.narrow(0, 1, 1)?;
                (&uncond + ((cond - &uncond)? * request.guidance)?)?
            } else {
                prediction
            };
            let output = scheduler.step(&prediction, index, &latents, &mut rng)?;
            latents = output.prev_sample;
            if let Some(state) = &inpainting {
                // A text-to-image UNet repaints everything; outside the mask, put back the
                // original noised to the next step's level (diffusers' 4-channel path).
                if let Some(blend) = &state.blend {
                    let original = if index + 1 < timesteps.len() {
                        scheduler.add_noise(&blend.image_latents, &blend.noise, index + 1)?
                    } else {
                        blend.image_latents.clone()
                    };
                    let keep = (1.0 - &state.latent_mask)?;
                    latents = ((keep * original)? + state.latent_mask.mul(&latents)?)?;
                }
            }
            let denoised = output.pred_original_sample.as_ref().unwrap_or(&latents);
            let progress = StepProgress {
                step: index - first_step + 1,
                total,
                denoised,
            };
            if observer(&progress) == Flow::Cancel {
                return Err(GenerateError::Cancelled);
            }
        }

        Ok(Denoised {
            latents,
            paste_back: inpainting.and_then(|state| state.paste_back),
        })
    }

    /// Decodes denoised latents into the finished image (pasted back into the original
    /// picture when the inpainting asks for it).
    fn finish(&self, denoised: Denoised) -> Result<GeneratedImage, GenerateError> {
        let Denoised {
            latents,
            paste_back,
        } = denoised;
        let image = self.decode_final(&latents)?;
        let image = match &paste_back {
            Some(paste_back) => paste_back.apply(&image),
            None => image,
        };
        Ok(GeneratedImage { image, latents })
    }

    /// The generation's starting noise: drawn from `rng`, then moved toward the variation
    /// seed's noise when the request has one (which leaves `rng` where it would be without).
    pub(crate) fn initial_noise(
        &self,
        rng: &mut TorchRng,
        shape: &[usize],
        request: &GenerationRequest,
    ) -> Result<Tensor, GenerateError> {
        let noise = rng.randn_tensor(shape, &self.device)?;
        let noise = match request.variation {
            Some(variation) if variation.strength != 0.0 => {
                crate::sampling::noise::a1111_variation(&noise, variation.seed, variation.strength)?
            }
            _ => noise,
        };
        Ok(noise.to_dtype(self.dtype)?)
    }

    /// A sample of the VAE's latent distribution for `pixels` (one draw from `rng`).
    pub(crate) fn encode(
        &self,
        pixels: &Tensor,
        rng: &mut TorchRng,
    ) -> Result<Tensor, GenerateError> {
        Ok(self
            .vae
            .encode_sample(pixels, |dims| rng.randn_tensor(dims, &self.device))?)
    }

    /// Decodes latents with the VAE to 8-bit RGB, as diffusers' `postprocess` does
    /// (`(x / 2 + 0.5).clamp(0, 1) * 255`, rounded).
    pub fn decode(&self, latents: &Tensor) -> Result<RgbImage, GenerateError> {
        let decoded = if self.vae_tiling {
            self.vae.decode_tiled(latents)?
        } else {
            self.vae.decode(latents)?
        };
        Ok(decoded_to_image(&decoded)?)
    }
}

/// A decoder's `(1, 3, H, W)` output in [-1, 1] as 8-bit RGB, as diffusers' `postprocess`
/// does (`(x / 2 + 0.5).clamp(0, 1) * 255`, rounded).
pub fn decoded_to_image(decoded: &Tensor) -> candle_core::Result<RgbImage> {
    let (_, _, height, width) = decoded.dims4()?;
    let pixels: Vec<u8> = ((decoded.narrow(0, 0, 1)?.to_dtype(DType::F32)? / 2.0)? + 0.5)?
        .clamp(0f32, 1f32)?
        .squeeze(0)?
        .permute((1, 2, 0))?
        .flatten_all()?
        .to_vec1::<f32>()?
        .into_iter()
        .map(|v| (v * 255.0).round() as u8)
        .collect();
    Ok(RgbImage {
        width,
        height,
        pixels,
    })
}

/// An RGB image as a `(1, 3, H, W)` tensor in [-1, 1], resized as Pillow's `LANCZOS` when
/// the requested size differs, as diffusers' `VaeImageProcessor.preprocess` does.
pub(crate) fn image_to_tensor(
    image: &RgbImage,
    width: usize,
    height: usize,
    device: &Device,
) -> candle_core::Result<Tensor> {
    if image.pixels.len() != image.width * image.height * 3 {
        candle_core::bail!("init image buffer does not match its size");
    }
    let resized = image.resized(width, height);
    let values: Vec<f32> = resized
        .pixels
        .iter()
        .map(|&p| p as f32 / 255.0 * 2.0 - 1.0)
        .collect();
    Tensor::from_vec(values, (height, width, 3), device)?
        .permute((2, 0, 1))?
        .unsqueeze(0)?
        .contiguous()
}
