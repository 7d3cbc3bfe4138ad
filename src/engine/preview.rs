//! Live previews: the denoised-latent estimate mapped straight to RGB.
//!
//! A full VAE decode costs more than a UNet step on a CPU, so the default preview is a
//! linear map from the 4 latent channels to RGB, fitted per family (the widely used public
//! factors), at latent resolution. The UI scales it up. The tiny autoencoder (the runner's)
//! gives full-size previews close to the VAE's for a little more.

use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

use crate::networks::Family;
use crate::sampling::pipeline::RgbImage;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum PreviewMode {
    Off,
    /// Linear latent→RGB at latent resolution, every step.
    #[default]
    Fast,
    /// The real VAE decode every `every` steps (fast previews in between).
    Vae {
        every: usize,
    },
    /// The tiny autoencoder (TAESD / TAESDXL) every step: full-size pictures close to the
    /// VAE's at a small cost (fast previews when it cannot be had).
    TinyVae,
}

/// Rows are latent channels L1..L4, columns R, G, B.
const SD_FACTORS: [[f32; 3]; 4] = [
    [0.3512, 0.2297, 0.3227],
    [0.3250, 0.4974, 0.2350],
    [-0.2829, 0.1762, 0.2721],
    [-0.2120, -0.2616, -0.7177],
];
const SD_BIAS: [f32; 3] = [0.0, 0.0, 0.0];

const SDXL_FACTORS: [[f32; 3]; 4] = [
    [0.3651, 0.4232, 0.4341],
    [-0.2533, -0.0042, 0.1068],
    [0.1076, 0.1111, -0.0362],
    [-0.3165, -0.2492, -0.2188],
];
const SDXL_BIAS: [f32; 3] = [0.1084, -0.0175, -0.0011];

/// Maps `(1, 4, h, w)` latents to an `h×w` RGB image (values ≈ [-1, 1] → 0..255).
pub fn latent_preview(latents: &Tensor, family: Family) -> candle_core::Result<RgbImage> {
    let (_, channels, height, width) = latents.dims4()?;
    if channels != 4 {
        candle_core::bail!("latent preview expects 4 channels, got {channels}");
    }
    let (factors, bias) = match family {
        Family::StableDiffusion => (&SD_FACTORS, &SD_BIAS),
        Family::StableDiffusionXl => (&SDXL_FACTORS, &SDXL_BIAS),
    };
    let values: Vec<f32> = latents
        .narrow(0, 0, 1)?
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1()?;
    let plane = height * width;
    let mut pixels = Vec::with_capacity(plane * 3);
    for i in 0..plane {
        for c in 0..3 {
            let mut v = bias[c];
            for (l, row) in factors.iter().enumerate() {
                v += values[l * plane + i] * row[c];
            }
            pixels.push((((v + 1.0) * 0.5).clamp(0.0, 1.0) * 255.0).round() as u8);
        }
    }
    Ok(RgbImage {
        width,
        height,
        pixels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn zero_latents_are_mid_grey_for_sd() {
        let latents = Tensor::zeros((1, 4, 2, 3), DType::F32, &Device::Cpu).unwrap();
        let image = latent_preview(&latents, Family::StableDiffusion).unwrap();
        assert_eq!((image.width, image.height), (3, 2));
        assert!(image.pixels.iter().all(|&p| p == 128));
    }

    #[test]
    fn first_channel_maps_through_its_row() {
        let mut values = vec![0f32; 4];
        values[0] = 1.0;
        let latents = Tensor::from_vec(values, (1, 4, 1, 1), &Device::Cpu).unwrap();
        let image = latent_preview(&latents, Family::StableDiffusionXl).unwrap();
        let expected: Vec<u8> = (0..3)
            .map(|c| ((((SDXL_FACTORS[0][c] + SDXL_BIAS[c]) + 1.0) * 0.5 * 255.0).round()) as u8)
            .collect();
        assert_eq!(image.pixels, expected);
    }
}
