//! One job's images, once the [`super::Runner`] has loaded and checked everything: `batch_count`
//! runs of `batch_size` images (A1111's names), with seeds `seed`, `seed + 1`, … across them
//! all. A run's images are denoised together through the UNet when the request allows it
//! (text-to-image and img2img without a hires pass); otherwise, one after another, which makes
//! the same images. Each image is recorded (A1111 `parameters`), saved and reported.

use std::time::Instant;

use candle_core::Tensor;

use super::hires::{HiresFix, HiresUpscaler};
use super::runner::{batch_file_path, save_numbered, write_png};
use super::tiny_vae::TinyDecoderInUse;
use super::upscale;
use super::{
    a1111_parameters, latent_preview, FileRecord, FinishedImage, GenerateJob, GenerationFailure,
    ImageOutput, ImageStep, JobOutcome, PreviewMode, RunObserver,
};
use crate::kernels::resize::interpolate;
use crate::models::upscaler::LoadedUpscaler;
use crate::models::{LoadOptions, StableDiffusion};
use crate::sampling::batch::{batchable, MAX_BATCH_SIZE};
use crate::sampling::pipeline::{
    DiffusionPipeline, Flow, GenerateError, GeneratedImage, GenerationRequest, RgbImage,
    StepProgress,
};

pub(super) struct JobRun<'a> {
    pub job: &'a GenerateJob,
    /// The job's request with its ControlNet units loaded.
    pub request: &'a GenerationRequest,
    pub model: &'a StableDiffusion,
    pub files: FileRecord,
    /// The hires fix's upscaler model, loaded when the job names one.
    pub upscaler: Option<&'a LoadedUpscaler>,
    pub options: &'a LoadOptions,
    /// The tiny autoencoder for "Tiny VAE" previews (`None`: fast previews instead).
    pub tiny: Option<&'a TinyDecoderInUse>,
    /// The tiny autoencoder's name when it decodes the finished images (recorded).
    pub fast_decode: Option<&'a str>,
}

/// Whether the job goes on after an image (or a batch of them).
enum Next {
    Continue,
    Cancelled,
}

impl JobRun<'_> {
    pub fn run(&self, observer: &mut dyn RunObserver) -> Result<JobOutcome, GenerationFailure> {
        let job = self.job;
        let batch_size = job.batch_size.max(1);
        if batch_size > MAX_BATCH_SIZE {
            return Err(GenerationFailure::InvalidRequest(format!(
                "batch size {batch_size}: at most {MAX_BATCH_SIZE} images are denoised together; use the batch count for more"
            )));
        }
        let batched = batch_size > 1 && batchable(self.request) && job.hires.is_none();
        for run in 0..job.batch_count.max(1) {
            let indices = run * batch_size..(run + 1) * batch_size;
            if batched {
                if observer.is_cancelled() {
                    return Ok(JobOutcome::Cancelled);
                }
                let requests: Vec<GenerationRequest> =
                    indices.clone().map(|i| self.image_request(i)).collect();
                if let Next::Cancelled = self.batch(indices.start, &requests, observer)? {
                    return Ok(JobOutcome::Cancelled);
                }
                continue;
            }
            for index in indices {
                if observer.is_cancelled() {
                    return Ok(JobOutcome::Cancelled);
                }
                let request = self.image_request(index);
                if let Next::Cancelled = self.one(index, &request, observer)? {
                    return Ok(JobOutcome::Cancelled);
                }
            }
        }
        Ok(JobOutcome::Completed)
    }

    fn image_count(&self) -> usize {
        self.job.image_count()
    }

    /// Image `index`'s request: the job's seed plus `index` (A1111 counts variation seeds up
    /// with the seeds).
    fn image_request(&self, index: usize) -> GenerationRequest {
        let base = &self.job.request;
        let mut request = self.request.clone();
        request.seed = base.seed.wrapping_add(index as u64);
        if let (Some(variation), Some(first)) = (&mut request.variation, base.variation) {
            variation.seed = first.seed.wrapping_add(index as u64);
        }
        request
    }

    /// The images of one run, denoised together; progress is the first image's.
    fn batch(
        &self,
        first: usize,
        requests: &[GenerationRequest],
        observer: &mut dyn RunObserver,
    ) -> Result<Next, GenerationFailure> {
        let pipeline = self.model.pipeline();
        let request = &requests[0];
        let total = pipeline.planned_steps(request).unwrap_or(request.steps);
        observer.image_started(first, request.seed, total);
        let pass = Pass {
            index: first,
            job: self.job,
            family: self.model.info().family,
            tiny: self.tiny,
            started: Instant::now(),
            total,
        };
        let outputs = match pipeline.generate_batch(requests, &mut |progress| {
            pass.observe(pipeline, progress, 0, observer)
        }) {
            Ok(outputs) => outputs,
            Err(GenerateError::Cancelled) => return Ok(Next::Cancelled),
            Err(err) => return Err(GenerationFailure::from(err)),
        };
        for (offset, (output, request)) in outputs.into_iter().zip(requests).enumerate() {
            self.finish(first + offset, request, output.image, observer)?;
        }
        Ok(Next::Continue)
    }

    /// One image, with its hires pass when the job has one.
    fn one(
        &self,
        index: usize,
        request: &GenerationRequest,
        observer: &mut dyn RunObserver,
    ) -> Result<Next, GenerationFailure> {
        let job = self.job;
        let pipeline = self.model.pipeline();
        let base_steps = pipeline.planned_steps(request).unwrap_or(request.steps);
        let hires_steps = match &job.hires {
            Some(hires) => {
                let (width, height) = hires.target_size(request.width, request.height);
                let second = hires.second_pass(request, RgbImage::filled(width, height, [0; 3]));
                pipeline.planned_steps(&second).unwrap_or(second.steps)
            }
            None => 0,
        };
        let total_steps = base_steps + hires_steps;
        observer.image_started(index, request.seed, total_steps);
        let pass = Pass {
            index,
            job,
            family: self.model.info().family,
            tiny: self.tiny,
            started: Instant::now(),
            total: total_steps,
        };
        let output = match &job.hires {
            None => pass.run(pipeline, request, None, 0, observer)?,
            Some(hires) => match self.first_pass(hires, request, &pass, observer)? {
                Some((second, start)) => {
                    pass.run(pipeline, &second, start.as_ref(), base_steps, observer)?
                }
                None => None,
            },
        };
        match output {
            Some(output) => {
                self.finish(index, request, output.image, observer)?;
                Ok(Next::Continue)
            }
            None => Ok(Next::Cancelled),
        }
    }

    /// A hires fix's first pass, made into the second pass's request and, for a latent
    /// upscaler, its starting latents; `None` when the observer cancelled.
    fn first_pass(
        &self,
        hires: &HiresFix,
        request: &GenerationRequest,
        pass: &Pass<'_>,
        observer: &mut dyn RunObserver,
    ) -> Result<Option<(GenerationRequest, Option<Tensor>)>, GenerationFailure> {
        let pipeline = self.model.pipeline();
        let (width, height) = hires.target_size(request.width, request.height);
        if let HiresUpscaler::Latent(mode) = &hires.upscaler {
            // The second pass starts from the first pass's latents, resized; its init image
            // only stands in for the size. Nothing uses the first pass's picture (its steps
            // were previewed as they ran), so it is never decoded.
            let Some(latents) = pass.latents(pipeline, request, observer)? else {
                return Ok(None);
            };
            let scale = pipeline.vae_scale_factor();
            let start =
                interpolate(&latents, height / scale, width / scale, *mode).map_err(|err| {
                    GenerationFailure::InvalidRequest(format!("latent upscale: {err}"))
                })?;
            let stand_in = RgbImage::filled(width, height, [0; 3]);
            return Ok(Some((hires.second_pass(request, stand_in), Some(start))));
        }
        let Some(first) = pass.run(pipeline, request, None, 0, observer)? else {
            return Ok(None);
        };
        let picture = match (&hires.upscaler, self.upscaler) {
            (HiresUpscaler::Model(_), Some(upscaler)) => {
                let tile = Some(upscale::DEFAULT_UPSCALE_TILE);
                match upscale::run_upscale(upscaler, &first.image, tile, self.options, observer)
                    .map_err(|err| {
                        GenerationFailure::InvalidRequest(format!("hires upscaler: {err}"))
                    })? {
                    Some(upscaled) => upscaled.image.resized(width, height),
                    None => return Ok(None),
                }
            }
            _ => first.image.resized(width, height),
        };
        Ok(Some((hires.second_pass(request, picture), None)))
    }

    /// Records, saves and reports image `index`.
    fn finish(
        &self,
        index: usize,
        request: &GenerationRequest,
        image: RgbImage,
        observer: &mut dyn RunObserver,
    ) -> Result<(), GenerationFailure> {
        let job = self.job;
        let parameters = a1111_parameters(self.model, request, &self.files)
            .map(|mut p| {
                if let Some(hires) = &job.hires {
                    p.denoising_strength = Some(hires.denoise);
                    let name = match (&hires.upscaler, self.upscaler) {
                        (HiresUpscaler::Model(_), Some(upscaler)) => upscaler.name.clone(),
                        (upscaler, _) => upscaler.a1111_name().to_string(),
                    };
                    p.extra.extend(hires.record(&name, request));
                }
                if let Some(name) = self.fast_decode {
                    p.extra.push(("Fast decode".to_string(), name.to_string()));
                }
                p.to_a1111_string()
            })
            .map_err(|err| GenerationFailure::InvalidRequest(format!("scheduler: {err}")))?;
        let saved = match &job.output {
            ImageOutput::None => Ok(None),
            ImageOutput::Folder(dir) => {
                save_numbered(dir, &image, request.seed, &parameters).map(Some)
            }
            ImageOutput::File(base) => {
                let path = batch_file_path(base, index, self.image_count());
                write_png(&path, &image, &parameters).map(|()| Some(path))
            }
        };
        let (path, save_error) = match saved {
            Ok(path) => (path, None),
            Err(message) => (None, Some(message)),
        };
        observer.image_finished(
            index,
            FinishedImage {
                image,
                seed: request.seed,
                parameters,
                path,
                save_error,
            },
        );
        Ok(())
    }
}

/// One denoising pass of an image, reporting its steps after `offset` earlier ones (the
/// hires fix's second pass continues the first one's count).
struct Pass<'a> {
    index: usize,
    job: &'a GenerateJob,
    family: crate::networks::Family,
    /// The tiny decoder for "Tiny VAE" previews (`None`: fast previews instead).
    tiny: Option<&'a TinyDecoderInUse>,
    started: Instant,
    total: usize,
}

impl Pass<'_> {
    /// The generated image, or `None` when the observer cancelled.
    fn run(
        &self,
        pipeline: &DiffusionPipeline,
        request: &GenerationRequest,
        start_latents: Option<&Tensor>,
        offset: usize,
        observer: &mut dyn RunObserver,
    ) -> Result<Option<GeneratedImage>, GenerationFailure> {
        let mut observe =
            |progress: &StepProgress| self.observe(pipeline, progress, offset, observer);
        let result = match start_latents {
            Some(start) => pipeline.generate_from_latents(request, start, &mut observe),
            None => pipeline.generate(request, &mut observe),
        };
        match result {
            Ok(output) => Ok(Some(output)),
            Err(GenerateError::Cancelled) => Ok(None),
            Err(err) => Err(GenerationFailure::from(err)),
        }
    }

    /// The pass's final latents, not decoded (`None` when the observer cancelled).
    fn latents(
        &self,
        pipeline: &DiffusionPipeline,
        request: &GenerationRequest,
        observer: &mut dyn RunObserver,
    ) -> Result<Option<Tensor>, GenerationFailure> {
        let mut observe = |progress: &StepProgress| self.observe(pipeline, progress, 0, observer);
        match pipeline.generate_latents(request, &mut observe) {
            Ok(latents) => Ok(Some(latents)),
            Err(GenerateError::Cancelled) => Ok(None),
            Err(err) => Err(GenerationFailure::from(err)),
        }
    }

    /// Reports a step (with its preview) and asks whether to go on.
    fn observe(
        &self,
        pipeline: &DiffusionPipeline,
        progress: &StepProgress,
        offset: usize,
        observer: &mut dyn RunObserver,
    ) -> Flow {
        let preview = match self.job.preview {
            PreviewMode::Off => None,
            PreviewMode::Vae { every } if every > 0 && progress.step.is_multiple_of(every) => {
                pipeline.decode(progress.denoised).ok()
            }
            PreviewMode::TinyVae if self.tiny.is_some() => self
                .tiny
                .and_then(|tiny| tiny.preview(progress.denoised).ok()),
            PreviewMode::Fast | PreviewMode::Vae { .. } | PreviewMode::TinyVae => {
                latent_preview(progress.denoised, self.family).ok()
            }
        };
        observer.step(ImageStep {
            index: self.index,
            step: offset + progress.step,
            total: self.total.max(offset + progress.total),
            elapsed_secs: self.started.elapsed().as_secs_f64(),
            preview,
        });
        if observer.is_cancelled() {
            Flow::Cancel
        } else {
            Flow::Continue
        }
    }
}
