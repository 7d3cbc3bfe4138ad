//! `generate`'s ControlNet flags: `--controlnet` is repeatable, and the n-th of every other
//! control flag belongs to the n-th `--controlnet`.

use std::path::PathBuf;

use clap::Args;
use latent_studio::engine::{
    controlnet_repo_id, read_picture, ControlMode, ControlPreprocessor, ControlSpec, RgbImage,
    SettingError,
};

use super::CliError;

#[derive(Debug, Args)]
pub struct ControlArgs {
    /// A ControlNet: a diffusers folder (config.json + diffusion_pytorch_model.safetensors,
    /// e.g. lllyasviel/control_v11p_sd15_canny) or such a .safetensors file with its
    /// config.json beside it. Repeatable: the n-th of each --control-* flag belongs to the
    /// n-th --controlnet.
    #[arg(long = "controlnet", value_name = "PATH")]
    controlnets: Vec<PathBuf>,
    /// The picture each ControlNet reads (one per --controlnet).
    #[arg(long = "control-image", value_name = "IMG")]
    images: Vec<PathBuf>,
    /// How strongly each ControlNet steers (default 1).
    #[arg(long = "control-scale", value_name = "F")]
    scales: Vec<f64>,
    /// The fraction of the steps after which each ControlNet starts acting (default 0).
    #[arg(long = "control-start", value_name = "F")]
    starts: Vec<f64>,
    /// The fraction of the steps after which each ControlNet stops (default 1).
    #[arg(long = "control-end", value_name = "F")]
    ends: Vec<f64>,
    /// none (the picture is already a map), invert, canny (edges), scribble_xdog (dark
    /// strokes as lines), threshold (black and white), t2ia_color_grid (one colour per 64×64
    /// cell; also "color"), tile_resample (the picture shrunk), blur_gaussian, or depth (Depth Anything V2's depth map; A1111's
    /// depth_anything_v2). The maps are sd-webui-controlnet's, made at the picture's size.
    #[arg(long = "control-preprocess", value_parser = [
        "none", "invert", "canny", "scribble_xdog", "threshold", "t2ia_color_grid", "color",
        "tile_resample", "blur_gaussian", "depth", "depth_anything_v2",
    ])]
    preprocessors: Vec<String>,
    /// The preprocessor's first setting, as A1111's Threshold A: canny's low threshold
    /// (1–255, default 100), scribble_xdog's XDoG threshold (1–64, default 32),
    /// threshold's binarization threshold (0–255, default 127), tile_resample's down
    /// sampling rate (1–8 in hundredths, default 1: the picture as it is) or
    /// blur_gaussian's σ (0.01–64 in hundredths, default 9); -1 keeps the default.
    #[arg(
        long = "control-threshold-a",
        value_name = "N",
        allow_negative_numbers = true
    )]
    thresholds_a: Vec<f64>,
    /// The preprocessor's second setting, as A1111's Threshold B: canny's high threshold
    /// (1–255, default 200); -1 keeps the default.
    #[arg(
        long = "control-threshold-b",
        value_name = "N",
        allow_negative_numbers = true
    )]
    thresholds_b: Vec<f64>,
    /// The Depth Anything model for --control-preprocess depth: a Hugging Face folder (as
    /// depth-anything/Depth-Anything-V2-Small-hf) or its model.safetensors; default
    /// $LATENT_STUDIO_DEPTH_MODEL, else that repository in the Hugging Face cache.
    #[arg(long = "depth-model", value_name = "PATH")]
    pub depth_model: Option<PathBuf>,
    /// balanced, prompt (A1111's "My prompt is more important") or controlnet ("ControlNet is
    /// more important": diffusers' guess mode).
    #[arg(long = "control-mode", value_parser = ["balanced", "prompt", "controlnet"])]
    modes: Vec<String>,
}

/// The value of `values` for unit `n` of `units`: each list is empty (all defaults) or has
/// one value per unit.
fn nth<T: Clone>(
    flag: &str,
    values: &[T],
    n: usize,
    units: usize,
    default: T,
) -> Result<T, CliError> {
    match values.len() {
        0 => Ok(default),
        len if len == units => Ok(values[n].clone()),
        len => Err(CliError::input(format!(
            "{flag} is given {len} times for {units} --controlnet; give it once per --controlnet (or not at all)"
        ))),
    }
}

impl ControlArgs {
    /// Unit `n`'s preprocessor with its `--control-threshold-a/b` (-1: the default).
    fn with_thresholds(
        &self,
        preprocessor: ControlPreprocessor,
        n: usize,
        units: usize,
    ) -> Result<ControlPreprocessor, CliError> {
        let flags = [
            ("--control-threshold-a", &self.thresholds_a),
            ("--control-threshold-b", &self.thresholds_b),
        ];
        let mut values = Vec::new();
        for (flag, given) in flags {
            let value = nth(flag, given, n, units, -1.0)?;
            values.push((value != -1.0).then_some(value));
        }
        preprocessor.with_settings(&values).map_err(|err| {
            let flag = match err {
                SettingError::Unused { index, .. } | SettingError::OutOfRange { index, .. } => {
                    flags[index.min(1)].0
                }
            };
            CliError::input(format!("{flag}: {err}"))
        })
    }

    pub fn resolve(&self) -> Result<Vec<ControlSpec>, CliError> {
        let units = self.controlnets.len();
        if units == 0 {
            let stray = [
                ("--control-image", self.images.len()),
                ("--control-scale", self.scales.len()),
                ("--control-start", self.starts.len()),
                ("--control-end", self.ends.len()),
                ("--control-preprocess", self.preprocessors.len()),
                ("--control-threshold-a", self.thresholds_a.len()),
                ("--control-threshold-b", self.thresholds_b.len()),
                ("--control-mode", self.modes.len()),
            ]
            .into_iter()
            .find(|(_, count)| *count > 0);
            return match stray {
                Some((flag, _)) => Err(CliError::input(format!("{flag} needs --controlnet"))),
                None => Ok(Vec::new()),
            };
        }
        if self.images.len() != units {
            return Err(CliError::input(format!(
                "--control-image is given {} times for {units} --controlnet; each ControlNet needs its picture",
                self.images.len()
            )));
        }
        (0..units)
            .map(|n| {
                let model = self.controlnets[n].clone();
                if !model.exists() && controlnet_repo_id(&model).is_none() {
                    return Err(CliError::input(format!(
                        "--controlnet {}: no such file or folder (nor a Hugging Face repository id, org/name)",
                        model.display()
                    )));
                }
                let image: RgbImage = read_picture(&self.images[n])
                    .map(RgbImage::from)
                    .map_err(|err| CliError::input(format!("--control-image {err}")))?;
                let scale = nth("--control-scale", &self.scales, n, units, 1.0)?;
                let start = nth("--control-start", &self.starts, n, units, 0.0)?;
                let end = nth("--control-end", &self.ends, n, units, 1.0)?;
                if !(scale.is_finite() && (0.0..=10.0).contains(&scale)) {
                    return Err(CliError::input(format!(
                        "--control-scale {scale}: must be between 0 and 10"
                    )));
                }
                if !((0.0..=1.0).contains(&start) && (0.0..=1.0).contains(&end) && start < end) {
                    return Err(CliError::input(format!(
                        "--control-start {start} / --control-end {end}: need 0 ≤ start < end ≤ 1"
                    )));
                }
                let preprocess = nth(
                    "--control-preprocess",
                    &self.preprocessors,
                    n,
                    units,
                    "none".into(),
                )?;
                let preprocessor = ControlPreprocessor::parse(&preprocess).ok_or_else(|| {
                    CliError::input(format!(
                        "--control-preprocess {preprocess}: use none, invert, canny, scribble_xdog, threshold, t2ia_color_grid, tile_resample, blur_gaussian or depth"
                    ))
                })?;
                let preprocessor = self.with_thresholds(preprocessor, n, units)?;
                let mode = nth("--control-mode", &self.modes, n, units, "balanced".into())?;
                let mode = match mode.as_str() {
                    "balanced" => ControlMode::Balanced,
                    "prompt" => ControlMode::PromptMoreImportant,
                    "controlnet" => ControlMode::ControlNetMoreImportant,
                    other => {
                        return Err(CliError::input(format!(
                            "--control-mode {other}: use balanced, prompt or controlnet"
                        )))
                    }
                };
                Ok(ControlSpec {
                    model,
                    image,
                    preprocessor,
                    scale,
                    start,
                    end,
                    mode,
                })
            })
            .collect()
    }
}
