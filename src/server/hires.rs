//! A1111's hires-fix fields of txt2img (`enable_hr`, `hr_scale`, `hr_resize_x/y`,
//! `hr_upscaler`, `hr_second_pass_steps`, `denoising_strength`, and the second pass's own
//! `hr_prompt`, `hr_negative_prompt`, `hr_sampler_name`, `hr_scheduler`; empty or "Use same
//! …" keeps the first pass's, as in A1111), checked and turned into the
//! engine's [`HiresFix`]. Upscalers are A1111's pixel resizers ("Lanczos", "None": both
//! Lanczos here), its latent upscalers by name ("Latent", its default when the field is
//! missing, "Latent (bicubic)", …), or the name of a `.safetensors` file in the server's
//! `--upscaler-dir`, never a path from the request.

use std::path::{Path, PathBuf};

use super::http::ApiError;
use super::payload::Fields;
use crate::engine::{
    HiresFix, HiresOverrides, HiresUpscaler, SchedulerKind, MAX_HIRES_SCALE, MIN_HIRES_SCALE,
};

const MAX_HIRES_STEPS: usize = 1000;
/// A1111's txt2img `denoising_strength` default.
const DEFAULT_DENOISE: f64 = 0.75;
/// The hires fields of a request, checked; the size is settled once the first pass's is
/// known ([`Self::fix`]).
#[derive(Debug)]
pub struct PendingHires {
    scale: f64,
    /// `hr_resize_x`, `hr_resize_y` (0: not given).
    resize: (usize, usize),
    steps: Option<usize>,
    denoise: f64,
    upscaler: HiresUpscaler,
    own: HiresOverrides,
}

/// The hires fields when `enable_hr` is set; `None` when it is not.
pub fn parse_hires(
    fields: &Fields,
    upscaler_dir: Option<&Path>,
) -> Result<Option<PendingHires>, ApiError> {
    if !fields.flag("enable_hr")?.unwrap_or(false) {
        return Ok(None);
    }
    let scale = fields.get::<f64>("hr_scale")?.unwrap_or(2.0);
    if !(scale.is_finite() && (MIN_HIRES_SCALE..=MAX_HIRES_SCALE).contains(&scale)) {
        return Err(ApiError::invalid(format!(
            "hr_scale {scale}: must be between {MIN_HIRES_SCALE} and {MAX_HIRES_SCALE}"
        )));
    }
    let resize_side = |name: &str| -> Result<usize, ApiError> {
        match fields.get::<usize>(name)?.unwrap_or(0) {
            side if !side.is_multiple_of(8) || side > crate::engine::MAX_IMAGE_SIDE => {
                Err(ApiError::invalid(format!(
                    "{name} {side}: 0 (not given) or a multiple of 8 up to {}",
                    crate::engine::MAX_IMAGE_SIDE
                )))
            }
            side => Ok(side),
        }
    };
    let resize = (resize_side("hr_resize_x")?, resize_side("hr_resize_y")?);
    let steps = match fields.get::<usize>("hr_second_pass_steps")?.unwrap_or(0) {
        0 => None,
        steps if steps <= MAX_HIRES_STEPS => Some(steps),
        steps => {
            return Err(ApiError::invalid(format!(
                "hr_second_pass_steps {steps}: from 0 (the first pass's steps) to {MAX_HIRES_STEPS}"
            )))
        }
    };
    let denoise = fields
        .get::<f64>("denoising_strength")?
        .unwrap_or(DEFAULT_DENOISE);
    if !(denoise > 0.0 && denoise <= 1.0) {
        return Err(ApiError::invalid(format!(
            "denoising_strength {denoise}: must be greater than 0 and at most 1"
        )));
    }
    let name: Option<String> = fields.get("hr_upscaler")?;
    let upscaler = upscaler_named(name.as_deref(), upscaler_dir)?;
    Ok(Some(PendingHires {
        scale,
        resize,
        steps,
        denoise,
        upscaler,
        own: own_settings(fields)?,
    }))
}

/// The second pass's own prompt, negative prompt and sampler; A1111 keeps the first pass's
/// for an empty text and for "Use same sampler" / "Use same scheduler".
fn own_settings(fields: &Fields) -> Result<HiresOverrides, ApiError> {
    let text = |name: &str, same: &str| -> Result<Option<String>, ApiError> {
        Ok(fields
            .get::<String>(name)?
            .filter(|value| !value.is_empty() && value != same))
    };
    let sampler = text("hr_sampler_name", "Use same sampler")?;
    let schedule = text("hr_scheduler", "Use same scheduler")?;
    let scheduler = match (&sampler, &schedule) {
        (Some(sampler), schedule) => Some(
            SchedulerKind::from_a1111(sampler, schedule.as_deref()).ok_or_else(|| {
                ApiError::invalid(format!(
                    "hr_sampler_name {sampler:?}: not a sampler this server has (GET /sdapi/v1/samplers)"
                ))
            })?,
        ),
        (None, Some(_)) => {
            return Err(ApiError::invalid(
                "hr_scheduler: give hr_sampler_name too".to_string(),
            ))
        }
        (None, None) => None,
    };
    Ok(HiresOverrides {
        prompt: text("hr_prompt", "")?,
        negative_prompt: text("hr_negative_prompt", "")?,
        scheduler,
    })
}

fn upscaler_named(name: Option<&str>, dir: Option<&Path>) -> Result<HiresUpscaler, ApiError> {
    // A1111's default when the field is missing is "Latent".
    let name = name.map_or("Latent", str::trim);
    if name.eq_ignore_ascii_case("None") {
        return Ok(HiresUpscaler::Lanczos);
    }
    if let Some(built_in) = HiresUpscaler::built_in(name) {
        return Ok(built_in);
    }
    let found = dir.and_then(|dir| upscaler_file(dir, name));
    match found {
        Some(path) => Ok(HiresUpscaler::Model(path)),
        None => Err(ApiError::invalid(format!(
            "hr_upscaler {name:?}: neither Lanczos nor an upscaler in {}",
            dir.map_or_else(
                || "the server's upscaler folder (none given: serve --upscaler-dir DIR)".into(),
                |dir| format!(
                    "{} (give its file name without .safetensors)",
                    dir.display()
                )
            )
        ))),
    }
}

/// The `.safetensors` file in `dir` whose name (with or without the extension) is `name`:
/// looked up among the folder's files, so the request's text never becomes a path.
fn upscaler_file(dir: &Path, name: &str) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.is_file()
                && path
                    .extension()
                    .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"))
        })
        .find(|path| {
            let stem = path.file_stem().map(|s| s.to_string_lossy());
            let file = path.file_name().map(|s| s.to_string_lossy());
            stem.is_some_and(|s| s == name) || file.is_some_and(|f| f == name)
        })
}

impl PendingHires {
    /// The pass for a `width`×`height` first pass: `hr_resize_x/y` as A1111 reads them
    /// (one side given: the other keeps the aspect ratio), else `hr_scale`.
    pub fn fix(self, width: usize, height: usize) -> Result<HiresFix, ApiError> {
        let scale = match self.resize {
            (0, 0) => self.scale,
            (x, y) => {
                let (x, y) = match (x, y) {
                    (x, 0) => (x, x * height / width),
                    (0, y) => (y * width / height, y),
                    both => both,
                };
                if x * height != y * width {
                    return Err(ApiError::invalid(format!(
                        "hr_resize_x/hr_resize_y {x}×{y}: not the {width}×{height} first pass's shape; cropping is not supported (give one side, or hr_scale)"
                    )));
                }
                let scale = x as f64 / width as f64;
                let fix = HiresFix {
                    scale,
                    steps: None,
                    denoise: self.denoise,
                    upscaler: HiresUpscaler::Lanczos,
                    own: HiresOverrides::default(),
                };
                if !(MIN_HIRES_SCALE..=MAX_HIRES_SCALE).contains(&scale)
                    || fix.target_size(width, height) != (x, y)
                {
                    return Err(ApiError::invalid(format!(
                        "hr_resize_x/hr_resize_y {x}×{y}: must be 1 to {MAX_HIRES_SCALE} times {width}×{height}, on the 8-pixel grid"
                    )));
                }
                scale
            }
        };
        Ok(HiresFix {
            scale,
            steps: self.steps,
            denoise: self.denoise,
            upscaler: self.upscaler,
            own: self.own,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::LatentUpscale;

    fn pending(resize: (usize, usize)) -> PendingHires {
        PendingHires {
            scale: 2.0,
            resize,
            steps: None,
            denoise: 0.5,
            upscaler: HiresUpscaler::Lanczos,
            own: HiresOverrides::default(),
        }
    }

    #[test]
    fn the_second_pass_takes_its_own_prompt_and_sampler_as_a1111_names_them() {
        let own = |json: serde_json::Value| {
            let map = json.as_object().unwrap().clone();
            own_settings(&Fields(&map))
        };
        let same = own(serde_json::json!({
            "hr_prompt": "", "hr_sampler_name": "Use same sampler", "hr_scheduler": "Use same scheduler"
        }))
        .unwrap();
        assert_eq!(same, HiresOverrides::default());
        let set = own(serde_json::json!({
            "hr_prompt": "detailed", "hr_negative_prompt": "blur",
            "hr_sampler_name": "DPM++ 2M", "hr_scheduler": "Karras"
        }))
        .unwrap();
        assert_eq!(set.prompt.as_deref(), Some("detailed"));
        assert_eq!(set.negative_prompt.as_deref(), Some("blur"));
        assert_eq!(set.scheduler, Some(SchedulerKind::DpmPp2mKarras));
        let err = own(serde_json::json!({"hr_sampler_name": "Nonsense"})).unwrap_err();
        assert!(format!("{err:?}").contains("hr_sampler_name"), "{err:?}");
        assert!(own(serde_json::json!({"hr_scheduler": "Karras"})).is_err());
    }

    #[test]
    fn resize_fields_read_as_a1111_reads_them() {
        assert_eq!(pending((0, 0)).fix(64, 48).unwrap().scale, 2.0);
        // One side given: the other keeps the shape.
        let fix = pending((96, 0)).fix(64, 48).unwrap();
        assert_eq!(fix.target_size(64, 48), (96, 72));
        let fix = pending((0, 96)).fix(64, 48).unwrap();
        assert_eq!(fix.target_size(64, 48), (128, 96));
        assert!(pending((96, 96)).fix(64, 48).is_err());
        assert!(pending((32, 0)).fix(64, 48).is_err());
    }

    #[test]
    fn upscaler_names_never_become_paths() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/upscalers");
        let named = |name: &str| upscaler_named(Some(name), Some(&dir));
        assert!(
            matches!(named("compact_x2"), Ok(HiresUpscaler::Model(path)) if path.ends_with("compact_x2.safetensors"))
        );
        assert!(matches!(
            named("compact_x2.safetensors"),
            Ok(HiresUpscaler::Model(_))
        ));
        assert!(matches!(named("lanczos"), Ok(HiresUpscaler::Lanczos)));
        assert!(matches!(
            named("Latent (bicubic)"),
            Ok(HiresUpscaler::Latent(LatentUpscale::Bicubic))
        ));
        assert!(matches!(
            upscaler_named(None, Some(&dir)),
            Ok(HiresUpscaler::Latent(LatentUpscale::Bilinear))
        ));
        for refused in ["../upscalers/compact_x2", "no_such_upscaler"] {
            assert!(named(refused).is_err(), "{refused}");
        }
        assert!(upscaler_named(Some("compact_x2"), None).is_err());
    }
}
