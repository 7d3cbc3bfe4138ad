//! 8-bit images and the pixel work around a generation: Pillow-exact resizing (what
//! diffusers' image processor does), and the mask operations of inpainting — blur, the crop
//! around a mask, A1111's "fill", pasting a result back, extending a canvas to outpaint.
//! Stands beside the layers and imports none of them.

pub mod canny;
pub mod control;
pub mod control_maps;
pub mod depth;
pub mod mask;
pub mod resize;

/// An 8-bit RGB image, row-major, 3 bytes per pixel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}

impl From<image::RgbImage> for RgbImage {
    fn from(image: image::RgbImage) -> Self {
        Self {
            width: image.width() as usize,
            height: image.height() as usize,
            pixels: image.into_raw(),
        }
    }
}

impl RgbImage {
    /// A `width`×`height` image of one colour.
    pub fn filled(width: usize, height: usize, rgb: [u8; 3]) -> Self {
        Self {
            width,
            height,
            pixels: rgb.repeat(width * height),
        }
    }

    /// Pillow's `resize((width, height), LANCZOS)`; the same size is a copy.
    pub fn resized(&self, width: usize, height: usize) -> Self {
        Self {
            width,
            height,
            pixels: resize::resize_lanczos(&self.pixels, self.width, self.height, 3, width, height),
        }
    }

    /// The pixels of `(left, top, right, bottom)`, which must lie inside the image.
    pub fn cropped(&self, [left, top, right, bottom]: [usize; 4]) -> Self {
        let width = right - left;
        let mut pixels = Vec::with_capacity(width * (bottom - top) * 3);
        for y in top..bottom {
            pixels.extend_from_slice(&self.pixels[(y * self.width + left) * 3..][..width * 3]);
        }
        Self {
            width,
            height: bottom - top,
            pixels,
        }
    }
}

/// An 8-bit single-channel image (a mask: 255 = repaint, 0 = keep).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrayImage {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}

impl GrayImage {
    pub fn filled(width: usize, height: usize, value: u8) -> Self {
        Self {
            width,
            height,
            pixels: vec![value; width * height],
        }
    }

    /// Pillow's `convert("L")` of an RGB image (ITU-R 601-2 luma in 16-bit fixed point).
    pub fn luma_of(image: &RgbImage) -> Self {
        let pixels = image
            .pixels
            .chunks_exact(3)
            .map(|p| {
                ((p[0] as u32 * 19595 + p[1] as u32 * 38470 + p[2] as u32 * 7471 + 0x8000) >> 16)
                    as u8
            })
            .collect();
        Self {
            width: image.width,
            height: image.height,
            pixels,
        }
    }

    /// A mask from a picture file's pixels: its alpha where the picture has any transparency
    /// (painted = opaque = repaint), its luma otherwise (white = repaint).
    pub fn mask_from_picture(picture: &image::DynamicImage) -> Self {
        let (width, height) = (picture.width() as usize, picture.height() as usize);
        if picture.color().has_alpha() {
            let rgba = picture.to_rgba8();
            if rgba.pixels().any(|p| p[3] < 255) {
                return Self {
                    width,
                    height,
                    pixels: rgba.pixels().map(|p| p[3]).collect(),
                };
            }
        }
        Self::luma_of(&RgbImage::from(picture.to_rgb8()))
    }

    /// Pillow's `resize((width, height), LANCZOS)`; the same size is a copy.
    pub fn resized(&self, width: usize, height: usize) -> Self {
        Self {
            width,
            height,
            pixels: resize::resize_lanczos(&self.pixels, self.width, self.height, 1, width, height),
        }
    }

    pub fn cropped(&self, [left, top, right, bottom]: [usize; 4]) -> Self {
        let width = right - left;
        let mut pixels = Vec::with_capacity(width * (bottom - top));
        for y in top..bottom {
            pixels.extend_from_slice(&self.pixels[y * self.width + left..][..width]);
        }
        Self {
            width,
            height: bottom - top,
            pixels,
        }
    }

    /// 255 − every pixel.
    pub fn inverted(&self) -> Self {
        Self {
            width: self.width,
            height: self.height,
            pixels: self.pixels.iter().map(|&p| 255 - p).collect(),
        }
    }

    /// No pixel marks anything.
    pub fn is_empty(&self) -> bool {
        self.pixels.iter().all(|&p| p == 0)
    }

    /// The image as RGB (each pixel's value in all three channels).
    pub fn to_rgb(&self) -> RgbImage {
        RgbImage {
            width: self.width,
            height: self.height,
            pixels: self.pixels.iter().flat_map(|&p| [p, p, p]).collect(),
        }
    }
}
