//! Batch size (A1111's, diffusers' `num_images_per_prompt`): several images denoised together,
//! one UNet evaluation per step for all of them. Each image starts from its own seed's noise
//! and keeps its own scheduler and random stream, exactly as a separate run with that seed
//! would, so image `i` of a batch equals the single run with seed `seed + i` (up to the
//! rounding of batched matrix products).
//!
//! Text-to-image and img2img are batched; inpainting and ControlNet requests are not (see
//! [`batchable`]) and are run one by one by the caller.

use candle_core::Tensor;

use crate::networks::unet::AddedConditions;
use crate::sampling::noise::TorchRng;
use crate::sampling::pipeline::{
    image_to_tensor, DiffusionPipeline, Flow, GenerateError, GeneratedImage, GenerationRequest,
    StepProgress,
};
use crate::sampling::schedulers::{img2img_start_index, Scheduler};

/// Images one UNet batch may hold (A1111's slider stops at 8); more would mostly cost memory.
pub const MAX_BATCH_SIZE: usize = 8;

/// Whether `request` can be denoised in a batch (no mask, no ControlNet).
pub fn batchable(request: &GenerationRequest) -> bool {
    request.controls.is_empty()
        && request
            .init_image
            .as_ref()
            .is_none_or(|init| init.mask.is_none())
}

impl DiffusionPipeline {
    /// Denoises `requests` together. They must differ only in their seeds (and variation
    /// seeds); each must be [`batchable`]. The observer sees the first image's progress.
    pub fn generate_batch(
        &self,
        requests: &[GenerationRequest],
        observer: &mut dyn FnMut(&StepProgress) -> Flow,
    ) -> Result<Vec<GeneratedImage>, GenerateError> {
        let Some(first) = requests.first() else {
            return Ok(Vec::new());
        };
        if requests.len() > MAX_BATCH_SIZE {
            return Err(GenerateError::InvalidRequest(format!(
                "batch size {}: at most {MAX_BATCH_SIZE} images are denoised together; use the batch count for more",
                requests.len()
            )));
        }
        if !requests.iter().all(batchable) {
            return Err(GenerateError::InvalidRequest(
                "inpainting and ControlNet images are made one at a time (batch size 1)".into(),
            ));
        }
        if requests.len() == 1 {
            return Ok(vec![self.generate(first, observer)?]);
        }
        self.check(first)?;
        let batch = requests.len();
        let guided = first.guidance > 1.0;
        let conditioning = self.encode_prompts(first, guided)?;
        // `[negative × batch, positive × batch]`, as diffusers repeats them.
        let repeat = |tensor: &Tensor| -> candle_core::Result<Tensor> {
            let rows = tensor.dim(0)?;
            let parts = (0..rows)
                .map(|row| tensor.narrow(0, row, 1)?.repeat(batch_dims(tensor, batch)))
                .collect::<candle_core::Result<Vec<_>>>()?;
            Tensor::cat(&parts, 0)
        };
        let context = repeat(&conditioning.context)?;
        let added = match &conditioning.added {
            Some(added) => Some(AddedConditions {
                text_embeds: repeat(&added.text_embeds)?,
                time_ids: repeat(&added.time_ids)?,
            }),
            None => None,
        };

        let mut schedulers: Vec<Box<dyn Scheduler>> = Vec::with_capacity(batch);
        let mut rngs = Vec::with_capacity(batch);
        let mut starts = Vec::with_capacity(batch);
        let mut first_step = 0;
        let scale = self.vae_scale_factor;
        let latent_shape = [1, 4, first.height / scale, first.width / scale];
        for request in requests {
            let scheduler = self.scheduler_for(request)?;
            let mut rng = TorchRng::new(request.seed);
            let latents = match &request.init_image {
                None => {
                    let noise = self.initial_noise(&mut rng, &latent_shape, request)?;
                    (noise * scheduler.init_noise_sigma())?
                }
                Some(init) => {
                    first_step =
                        img2img_start_index(request.steps, init.strength) * scheduler.order();
                    if first_step >= scheduler.timesteps().len() {
                        return Err(GenerateError::InvalidRequest(format!(
                            "strength {} leaves no denoising steps at {} steps",
                            init.strength, request.steps
                        )));
                    }
                    let pixels =
                        image_to_tensor(&init.image, request.width, request.height, &self.device)?
                            .to_dtype(self.dtype)?;
                    let clean = self.encode(&pixels, &mut rng)?;
                    let noise = self.initial_noise(&mut rng, clean.dims(), request)?;
                    scheduler.add_noise(&clean, &noise, first_step)?
                }
            };
            schedulers.push(scheduler);
            rngs.push(rng);
            starts.push(latents);
        }
        let mut latents = Tensor::cat(&starts, 0)?;
        drop(starts);

        let timesteps = schedulers[0].timesteps().to_vec();
        let total = timesteps.len() - first_step;
        for (index, &timestep) in timesteps.iter().enumerate().skip(first_step) {
            let model_input = if guided {
                Tensor::cat(&[&latents, &latents], 0)?
            } else {
                latents.clone()
            };
            // The input scaling depends on the step only, the same for every scheduler.
            let model_input = schedulers[0].scale_model_input(&model_input, index)?;
            let prediction = self.unet.forward_with_control(
                &model_input,
                timestep,
                &context,
                added.as_ref(),
                None,
            )?;
            let prediction = if guided {
                let uncond = prediction.narrow(0, 0, batch)?;
                let cond = prediction.narrow(0, batch, batch)?;
                (&uncond + ((cond - &uncond)? * first.guidance)?)?
            } else {
                prediction
            };
            let mut next = Vec::with_capacity(batch);
            let mut first_denoised = None;
            for (image, (scheduler, rng)) in schedulers.iter_mut().zip(&mut rngs).enumerate() {
                let output = scheduler.step(
                    &prediction.narrow(0, image, 1)?,
                    index,
                    &latents.narrow(0, image, 1)?,
                    rng,
                )?;
                if image == 0 {
                    first_denoised = output.pred_original_sample;
                }
                next.push(output.prev_sample);
            }
            latents = Tensor::cat(&next, 0)?;
            let first_latents = latents.narrow(0, 0, 1)?;
            let progress = StepProgress {
                step: index - first_step + 1,
                total,
                denoised: first_denoised.as_ref().unwrap_or(&first_latents),
            };
            if observer(&progress) == Flow::Cancel {
                return Err(GenerateError::Cancelled);
            }
        }
        // One image at a time through the VAE, which needs the most memory per image.
        (0..batch)
            .map(|image| {
                let latents = latents.narrow(0, image, 1)?.contiguous()?;
                Ok(GeneratedImage {
                    image: self.decode_final(&latents)?,
                    latents,
                })
            })
            .collect()
    }
}

/// `tensor.repeat` dims that repeat its first axis `batch` times.
fn batch_dims(tensor: &Tensor, batch: usize) -> Vec<usize> {
    let mut dims = vec![1; tensor.rank()];
    dims[0] = batch;
    dims
}
