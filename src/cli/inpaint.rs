//! `generate`'s inpainting and outpainting flags, resolved once into the picture and mask
//! the engine works on.

use std::path::PathBuf;

use clap::Args;
use latent_studio::engine::{
    extend_canvas, read_picture_as_stored, GrayImage, InpaintArea, InpaintMask, MaskedContent,
    RgbImage,
};

use super::CliError;

#[derive(Debug, Args)]
pub struct InpaintArgs {
    /// Inpaint: repaint where this image is white (or opaque, in a mask with transparency);
    /// needs --init-image. A mask of another size is resized as diffusers does.
    #[arg(long, value_name = "MASK.png")]
    mask: Option<PathBuf>,
    /// Blur the mask by PX pixels first (A1111's "Mask blur"); the result is then pasted over
    /// the original through the soft edge. 0 (the default) is diffusers' behaviour.
    #[arg(long, value_name = "PX")]
    mask_blur: Option<usize>,
    /// whole (the picture at --width × --height) or masked (a crop around the mask, scaled to
    /// that size and pasted back: A1111's "Only masked", diffusers' padding_mask_crop).
    #[arg(long, value_parser = ["whole", "masked"])]
    inpaint_area: Option<String>,
    /// With --inpaint-area masked: pixels around the mask that the crop includes.
    #[arg(long, value_name = "PX")]
    inpaint_padding: Option<usize>,
    /// What the masked area starts from: original, fill (colours from around it), noise or
    /// nothing (latent noise / zeros). Matters when --strength is below 1 or the model is not
    /// an inpainting model.
    #[arg(long, value_parser = ["original", "fill", "noise", "nothing"])]
    masked_content: Option<String>,
    /// Outpaint: grow the canvas by LEFT,TOP,RIGHT,BOTTOM pixels (multiples of 8), fill the
    /// new area from the picture's edges and repaint it.
    #[arg(long, value_name = "LEFT,TOP,RIGHT,BOTTOM")]
    outpaint: Option<String>,
}

/// A1111's default padding for "Only masked".
const DEFAULT_PADDING: usize = 32;
/// Outpainting is bounded like any other side (the canvas still has to fit the model).
const MAX_OUTPAINT: usize = 4096;

impl InpaintArgs {
    /// Whether any flag asks for inpainting or outpainting.
    pub fn requested(&self) -> bool {
        self.mask.is_some() || self.outpaint.is_some()
    }

    /// The first inpainting flag given, for "needs --init-image" messages.
    fn first_flag(&self) -> Option<&'static str> {
        [
            ("--mask", self.mask.is_some()),
            ("--outpaint", self.outpaint.is_some()),
            ("--mask-blur", self.mask_blur.is_some()),
            ("--inpaint-area", self.inpaint_area.is_some()),
            ("--inpaint-padding", self.inpaint_padding.is_some()),
            ("--masked-content", self.masked_content.is_some()),
        ]
        .into_iter()
        .find_map(|(flag, given)| given.then_some(flag))
    }

    /// The picture to work on (grown when outpainting) and the mask, or `None` when no
    /// inpainting flag was given. `image` is the --init-image, if any.
    pub fn resolve(
        &self,
        image: Option<RgbImage>,
    ) -> Result<(Option<RgbImage>, Option<InpaintMask>), CliError> {
        let Some(image) = image else {
            return match self.first_flag() {
                Some(flag) => Err(CliError::input(format!(
                    "{flag} needs --init-image (the picture to repaint)"
                ))),
                None => Ok((None, None)),
            };
        };
        if !self.requested() {
            if let Some(flag) = self.first_flag() {
                return Err(CliError::input(format!(
                    "{flag} needs --mask (what to repaint) or --outpaint"
                )));
            }
            return Ok((Some(image), None));
        }
        let content = match &self.masked_content {
            Some(text) => MaskedContent::parse(text).ok_or_else(|| {
                CliError::input(format!(
                    "--masked-content {text}: use original, fill, noise or nothing"
                ))
            })?,
            None => MaskedContent::Original,
        };
        let area = match self.inpaint_area.as_deref() {
            None | Some("whole") => {
                if self.inpaint_padding.is_some() {
                    return Err(CliError::input(
                        "--inpaint-padding needs --inpaint-area masked",
                    ));
                }
                InpaintArea::Whole
            }
            Some("masked") => InpaintArea::Masked {
                padding: self.inpaint_padding.unwrap_or(DEFAULT_PADDING),
            },
            Some(other) => {
                return Err(CliError::input(format!(
                    "--inpaint-area {other}: use whole or masked"
                )))
            }
        };
        let mask = match &self.mask {
            Some(path) => {
                let picture = read_picture_as_stored(path)
                    .map_err(|err| CliError::input(format!("--mask {err}")))?;
                let mask = GrayImage::mask_from_picture(&picture);
                if mask.is_empty() && self.outpaint.is_none() {
                    return Err(CliError::input(format!(
                        "--mask {}: the mask is empty (all black or transparent); paint the area to repaint in white",
                        path.display()
                    )));
                }
                Some(mask)
            }
            None => None,
        };
        let (image, mask) = match &self.outpaint {
            Some(text) => {
                let sides = parse_outpaint(text)?;
                // A mask of another size is first brought to the picture's, then grown with it.
                let mask = mask.map(|m| m.resized(image.width, image.height));
                extend_canvas(&image, mask.as_ref(), sides)
            }
            None => {
                let mask = mask.expect("requested() without --outpaint means --mask");
                (image, mask)
            }
        };
        Ok((
            Some(image),
            Some(InpaintMask {
                mask,
                blur: self.mask_blur.unwrap_or(0),
                area,
                content,
            }),
        ))
    }
}

fn parse_outpaint(text: &str) -> Result<[usize; 4], CliError> {
    let bad = |why: &str| CliError::input(format!("--outpaint {text}: {why}"));
    let values: Vec<usize> = text
        .split(',')
        .map(|part| part.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|_| bad("give four whole numbers of pixels: LEFT,TOP,RIGHT,BOTTOM"))?;
    let sides: [usize; 4] = values
        .try_into()
        .map_err(|_| bad("give four numbers: LEFT,TOP,RIGHT,BOTTOM"))?;
    if sides
        .iter()
        .any(|&side| side % 8 != 0 || side > MAX_OUTPAINT)
    {
        return Err(bad(&format!(
            "each side must be a multiple of 8 pixels, at most {MAX_OUTPAINT}"
        )));
    }
    if sides.iter().all(|&side| side == 0) {
        return Err(bad("at least one side must grow"));
    }
    Ok(sides)
}
