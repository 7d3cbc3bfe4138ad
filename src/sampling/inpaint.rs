//! Inpainting's inputs, as diffusers' `StableDiffusionInpaintPipeline` and
//! `StableDiffusionXLInpaintPipeline` prepare them — the mask binarised at 0.5, the masked
//! image (`image * (mask < 0.5)`), the mask at latent size (nearest) — and A1111's additions
//! around them: mask blur, "inpaint only masked" (diffusers' `padding_mask_crop`: work on a
//! crop around the mask at the model's size, paste the result back), masked content, and
//! pasting the result over the original through the blurred mask.

use candle_core::{Device, Tensor};

use super::noise::TorchRng;
use super::pipeline::{
    image_to_tensor, DiffusionPipeline, GenerateError, GenerationRequest, InitImage,
};
use super::schedulers::Scheduler;
use crate::imaging::mask::{
    blur_mask, crop_and_fit, crop_and_fit_mask, crop_region, fill_masked, overlay, Region,
};
use crate::imaging::{GrayImage, RgbImage};

/// Where the model works (A1111's "Inpaint area").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InpaintArea {
    /// The whole picture, at the requested size.
    Whole,
    /// Only a crop around the mask, `padding` pixels wider on each side, scaled to the
    /// requested size and pasted back (A1111's "Only masked", diffusers' `padding_mask_crop`).
    Masked { padding: usize },
}

/// What the masked area starts from before noise is added (A1111's "Masked content").
/// diffusers always uses the original.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MaskedContent {
    /// The picture as it is.
    #[default]
    Original,
    /// The colours around the mask, blurred in (A1111's `fill`).
    Fill,
    /// Random latents (drawn from the seed after the picture's encoding).
    LatentNoise,
    /// Zero latents.
    LatentNothing,
}

impl MaskedContent {
    pub const ALL: [MaskedContent; 4] = [
        Self::Original,
        Self::Fill,
        Self::LatentNoise,
        Self::LatentNothing,
    ];

    /// The CLI value.
    pub fn name(self) -> &'static str {
        match self {
            Self::Original => "original",
            Self::Fill => "fill",
            Self::LatentNoise => "noise",
            Self::LatentNothing => "nothing",
        }
    }

    /// A1111's label (its "Masked content" radio buttons).
    pub fn a1111_label(self) -> &'static str {
        match self {
            Self::Original => "original",
            Self::Fill => "fill",
            Self::LatentNoise => "latent noise",
            Self::LatentNothing => "latent nothing",
        }
    }

    /// From a CLI value or an A1111 label.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim().to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|c| c.name() == text || c.a1111_label() == text)
    }
}

/// A mask and how to use it.
#[derive(Debug, Clone)]
pub struct InpaintMask {
    /// 255 = repaint, 0 = keep; any size (resized as diffusers does).
    pub mask: GrayImage,
    /// Gaussian blur of the mask in pixels, before anything else (A1111's "Mask blur"; 0 in
    /// diffusers unless the caller blurred the mask). A blurred mask also pastes the result
    /// over the original through its soft edge.
    pub blur: usize,
    pub area: InpaintArea,
    pub content: MaskedContent,
}

/// The picture and mask the model works on, and how its result becomes the output.
pub(crate) struct PreparedInpaint {
    /// At the requested size.
    pub image: RgbImage,
    /// At the requested size, not yet binarised.
    pub mask: GrayImage,
    pub finish: Option<PasteBack>,
}

/// The result pasted over `original` through `mask`, fitted into `region` when the model
/// worked on a crop.
pub(crate) struct PasteBack {
    original: RgbImage,
    mask: GrayImage,
    region: Option<Region>,
}

impl PasteBack {
    pub fn apply(&self, result: &RgbImage) -> RgbImage {
        overlay(&self.original, &self.mask, result, self.region)
    }
}

/// Checks a mask before any work: not empty once blurred.
pub(crate) fn check_mask(mask: &InpaintMask) -> Result<(), GenerateError> {
    if mask.mask.pixels.len() != mask.mask.width * mask.mask.height
        || mask.mask.width == 0
        || mask.mask.height == 0
    {
        return Err(GenerateError::InvalidRequest(
            "the mask has no pixels".into(),
        ));
    }
    if mask.mask.is_empty() {
        return Err(GenerateError::InvalidRequest(
            "the mask is empty: paint the area to repaint (white, or opaque in a transparent mask)"
                .into(),
        ));
    }
    Ok(())
}

/// The picture and mask at `width`×`height`, as the pipeline's preprocessing makes them.
pub(crate) fn prepare(
    image: &RgbImage,
    mask: &InpaintMask,
    width: usize,
    height: usize,
) -> Result<PreparedInpaint, GenerateError> {
    check_mask(mask)?;
    let blurred = if mask.blur > 0 {
        blur_mask(&mask.mask, mask.blur)
    } else {
        mask.mask.clone()
    };
    let (work_image, work_mask, finish) = match mask.area {
        InpaintArea::Whole => {
            let work_image = image.resized(width, height);
            let work_mask = blurred.resized(width, height);
            let finish = (mask.blur > 0).then(|| PasteBack {
                original: work_image.clone(),
                mask: work_mask.clone(),
                region: None,
            });
            (work_image, work_mask, finish)
        }
        InpaintArea::Masked { padding } => {
            let at_image_size = blurred.resized(image.width, image.height);
            let region = crop_region(&at_image_size, width, height, padding).ok_or_else(|| {
                GenerateError::InvalidRequest("the mask is empty at the picture's size".into())
            })?;
            let work_image = crop_and_fit(image, region, width, height);
            let work_mask = crop_and_fit_mask(&at_image_size, region, width, height);
            let finish = Some(PasteBack {
                original: image.clone(),
                mask: at_image_size,
                region: Some(region),
            });
            (work_image, work_mask, finish)
        }
    };
    let work_image = match mask.content {
        MaskedContent::Fill => fill_masked(&work_image, &work_mask),
        _ => work_image,
    };
    Ok(PreparedInpaint {
        image: work_image,
        mask: work_mask,
        finish,
    })
}

/// `(1, 1, H, W)`: 1 where the mask is at least half on (diffusers' `binarize`: `v < 0.5`
/// → 0, with `v = pixel / 255`), 0 elsewhere.
pub(crate) fn binary_mask(mask: &GrayImage, device: &Device) -> candle_core::Result<Tensor> {
    let values: Vec<f32> = mask
        .pixels
        .iter()
        .map(|&p| if (p as f32 / 255.0) < 0.5 { 0.0 } else { 1.0 })
        .collect();
    Tensor::from_vec(values, (1, 1, mask.height, mask.width), device)
}

/// `F.interpolate(mask, size=(h / scale, w / scale))` (mode "nearest"): every `scale`-th pixel.
pub(crate) fn latent_mask(mask: &Tensor, scale: usize) -> candle_core::Result<Tensor> {
    let (_, _, height, width) = mask.dims4()?;
    let (out_h, out_w) = (height / scale, width / scale);
    let rows: Vec<u32> = (0..out_h)
        .map(|i| nearest_source(i, height, out_h))
        .collect();
    let cols: Vec<u32> = (0..out_w)
        .map(|i| nearest_source(i, width, out_w))
        .collect();
    let device = mask.device();
    mask.index_select(&Tensor::new(rows, device)?, 2)?
        .index_select(&Tensor::new(cols, device)?, 3)
}

/// PyTorch's nearest source index: `min(floor(dst * (in / out)), in - 1)` in f32.
fn nearest_source(dst: usize, input: usize, output: usize) -> u32 {
    let scale = input as f32 / output as f32;
    ((dst as f32 * scale).floor() as usize).min(input - 1) as u32
}

impl DiffusionPipeline {
    /// diffusers' inpainting preparation, draw for draw: the picture's latents (when the
    /// UNet blends them back or the strength keeps some of them), the noise, then the masked
    /// picture's latents (always encoded, so the generator advances as there).
    pub(crate) fn prepare_inpainting(
        &self,
        request: &GenerationRequest,
        init: &InitImage,
        mask: &InpaintMask,
        start: usize,
        scheduler: &dyn Scheduler,
        rng: &mut TorchRng,
    ) -> Result<InpaintState, GenerateError> {
        let prepared = prepare(&init.image, mask, request.width, request.height)?;
        let pixels = image_to_tensor(&prepared.image, request.width, request.height, &self.device)?
            .to_dtype(self.dtype)?;
        let mask_pixels = binary_mask(&prepared.mask, &self.device)?.to_dtype(self.dtype)?;
        let latent_mask = latent_mask(&mask_pixels, self.vae_scale_factor)?;
        let blends = self.unet.in_channels() == 4;
        // diffusers compares the strength with exactly 1.0.
        let full_strength = init.strength == 1.0;
        let image_latents = if blends || !full_strength {
            let clean = self.encode(&pixels, rng)?;
            Some(match mask.content {
                MaskedContent::LatentNoise => {
                    let fresh = rng
                        .randn_tensor(clean.dims(), &self.device)?
                        .to_dtype(self.dtype)?;
                    (clean.broadcast_mul(&(1.0 - &latent_mask)?)?
                        + fresh.broadcast_mul(&latent_mask)?)?
                }
                MaskedContent::LatentNothing => clean.broadcast_mul(&(1.0 - &latent_mask)?)?,
                MaskedContent::Original | MaskedContent::Fill => clean,
            })
        } else {
            None
        };
        let latent_shape = [
            1,
            4,
            request.height / self.vae_scale_factor,
            request.width / self.vae_scale_factor,
        ];
        let noise = self.initial_noise(rng, &latent_shape, request)?;
        let initial = match (&image_latents, full_strength) {
            (Some(clean), false) => scheduler.add_noise(clean, &noise, start)?,
            _ => (&noise * scheduler.init_noise_sigma())?,
        };
        // `init_image * (mask < 0.5)`: the masked area becomes mid-grey (0 in [-1, 1]).
        let kept = mask_pixels.lt(0.5)?.to_dtype(self.dtype)?;
        let masked_image = pixels.broadcast_mul(&kept)?;
        let masked_latents = self.encode(&masked_image, rng)?;
        let blend = match (blends, image_latents) {
            (true, Some(image_latents)) => Some(Blend {
                image_latents,
                noise,
            }),
            _ => None,
        };
        Ok(InpaintState {
            initial,
            latent_mask: latent_mask
                .broadcast_as(latent_shape.as_slice())?
                .contiguous()?,
            masked_latents,
            unet_takes_mask: !blends,
            blend,
            paste_back: prepared.finish,
        })
    }
}

/// What inpainting adds to the loop.
pub(crate) struct InpaintState {
    /// The latents the loop starts from.
    pub initial: Tensor,
    /// `(1, 4, h, w)`: 1 where the mask repaints.
    pub latent_mask: Tensor,
    /// The masked picture's latents (the 9-channel UNet's extra input).
    masked_latents: Tensor,
    /// The UNet has 9 input channels.
    unet_takes_mask: bool,
    /// For a 4-channel UNet: what is put back outside the mask after each step.
    pub blend: Option<Blend>,
    pub paste_back: Option<PasteBack>,
}

pub(crate) struct Blend {
    pub image_latents: Tensor,
    pub noise: Tensor,
}

impl InpaintState {
    /// A 9-channel UNet's input: the scaled latents, the mask, the masked picture's latents.
    pub(crate) fn unet_input(&self, scaled: Tensor, guided: bool) -> candle_core::Result<Tensor> {
        if !self.unet_takes_mask {
            return Ok(scaled);
        }
        let mask = self.latent_mask.narrow(1, 0, 1)?;
        let batch = if guided { 2 } else { 1 };
        let repeat = |t: &Tensor| Tensor::cat(&vec![t; batch], 0);
        Tensor::cat(
            &[&scaled, &repeat(&mask)?, &repeat(&self.masked_latents)?],
            1,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binarising_splits_at_half() {
        let mask = GrayImage {
            width: 4,
            height: 1,
            pixels: vec![0, 127, 128, 255],
        };
        let values: Vec<f32> = binary_mask(&mask, &Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(values, [0.0, 0.0, 1.0, 1.0]);
    }

    #[test]
    fn the_latent_mask_takes_every_eighth_pixel() {
        let values: Vec<f32> = (0..16 * 16)
            .map(|i| ((i % 16) % 8 == 0 && (i / 16) == 8) as u8 as f32)
            .collect();
        let mask = Tensor::from_vec(values, (1, 1, 16, 16), &Device::Cpu).unwrap();
        let small: Vec<f32> = latent_mask(&mask, 8)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(small, [0.0, 0.0, 1.0, 1.0]);
    }

    #[test]
    fn masked_content_reads_cli_and_a1111_names() {
        for content in MaskedContent::ALL {
            assert_eq!(MaskedContent::parse(content.name()), Some(content));
            assert_eq!(MaskedContent::parse(content.a1111_label()), Some(content));
        }
        assert_eq!(MaskedContent::parse("bogus"), None);
    }

    #[test]
    fn an_empty_mask_is_refused() {
        let mask = InpaintMask {
            mask: GrayImage::filled(8, 8, 0),
            blur: 4,
            area: InpaintArea::Whole,
            content: MaskedContent::Original,
        };
        let err = prepare(&RgbImage::filled(8, 8, [1, 2, 3]), &mask, 8, 8)
            .err()
            .unwrap();
        assert!(err.to_string().contains("mask is empty"), "{err}");
    }
}
