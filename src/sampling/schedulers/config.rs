//! `scheduler_config.json`, read the way diffusers' `from_config` reads it.
//!
//! The file is kept as written: every key is optional and string-valued options stay strings,
//! because which keys matter, their defaults and their allowed values depend on the class
//! that is built from it (`EulerDiscreteScheduler.from_config(pndm_config)` takes the betas and
//! the prediction type but its own `timestep_spacing` default). Each scheduler resolves the keys
//! it takes through [`SchedulerConfig::get`] and reports values it cannot honour as a
//! [`SchedulerConfigError`] naming the key.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};
use thiserror::Error;

/// Why a scheduler could not be built from a config.
#[derive(Debug, Error)]
pub enum SchedulerConfigError {
    #[error("could not read scheduler config {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid scheduler config JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{class}: unsupported {key} = {value} (supported: {supported})")]
    UnsupportedValue {
        class: &'static str,
        key: &'static str,
        value: String,
        supported: &'static str,
    },
    #[error("{class}: {reason}")]
    IncompatibleOptions { class: &'static str, reason: String },
    #[error("unsupported scheduler class `{name}` (supported: {})", SUPPORTED_CLASSES.join(", "))]
    UnsupportedClass { name: String },
    #[error(
        "scheduler config has no `_class_name`, so the default scheduler is unknown (supported: {})",
        SUPPORTED_CLASSES.join(", ")
    )]
    MissingClassName,
    #[error("{class}: cannot run {steps} inference steps: {reason}")]
    InvalidSteps {
        class: &'static str,
        steps: usize,
        reason: String,
    },
}

/// The diffusers scheduler classes this crate implements.
pub const SUPPORTED_CLASSES: [&str; 13] = [
    "DDIMScheduler",
    "PNDMScheduler",
    "EulerDiscreteScheduler",
    "EulerAncestralDiscreteScheduler",
    "DPMSolverMultistepScheduler",
    "DPMSolverSinglestepScheduler",
    "LCMScheduler",
    "HeunDiscreteScheduler",
    "LMSDiscreteScheduler",
    "KDPM2DiscreteScheduler",
    "KDPM2AncestralDiscreteScheduler",
    "UniPCMultistepScheduler",
    "DDPMScheduler",
];

/// `beta_schedule`: how the per-step noise variances are spaced over the training timesteps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BetaSchedule {
    /// `linear`: betas evenly spaced from `beta_start` to `beta_end`.
    Linear,
    /// `scaled_linear`: square roots evenly spaced, then squared (Stable Diffusion).
    ScaledLinear,
    /// `squaredcos_cap_v2`: the cosine schedule of Nichol & Dhariwal (2021).
    SquaredcosCapV2,
}

impl BetaSchedule {
    pub const SUPPORTED: &'static str = "linear, scaled_linear, squaredcos_cap_v2";

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Linear => "linear",
            Self::ScaledLinear => "scaled_linear",
            Self::SquaredcosCapV2 => "squaredcos_cap_v2",
        }
    }

    fn parse(value: &str) -> Option<Self> {
        match value {
            "linear" => Some(Self::Linear),
            "scaled_linear" => Some(Self::ScaledLinear),
            "squaredcos_cap_v2" => Some(Self::SquaredcosCapV2),
            _ => None,
        }
    }
}

/// `prediction_type`: what the UNet predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PredictionType {
    /// `epsilon`: the added noise.
    Epsilon,
    /// `v_prediction`: the velocity `alpha * noise - sigma * x0` (Salimans & Ho 2022).
    VPrediction,
    /// `sample`: the clean latents directly (`original_sample` is accepted by Euler).
    Sample,
}

impl PredictionType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Epsilon => "epsilon",
            Self::VPrediction => "v_prediction",
            Self::Sample => "sample",
        }
    }
}

/// `timestep_spacing`: how inference timesteps are picked from the training timesteps
/// (Table 2 of Lin et al., "Common Diffusion Noise Schedules and Sample Steps are Flawed").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestepSpacing {
    /// Evenly spaced from 0, shifted by `steps_offset` (never reaches the last timestep).
    Leading,
    /// Evenly spaced over `[0, T - 1]`, rounded.
    Linspace,
    /// Evenly spaced down from `T`, minus one (always starts at the last timestep).
    Trailing,
}

impl TimestepSpacing {
    pub const SUPPORTED: &'static str = "leading, linspace, trailing";

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Leading => "leading",
            Self::Linspace => "linspace",
            Self::Trailing => "trailing",
        }
    }

    fn parse(value: &str) -> Option<Self> {
        match value {
            "leading" => Some(Self::Leading),
            "linspace" => Some(Self::Linspace),
            "trailing" => Some(Self::Trailing),
            _ => None,
        }
    }
}

/// The contents of a diffusers `scheduler_config.json`. Unknown keys are ignored.
///
/// A key listed in `_use_default_values` counts as absent (diffusers records there the keys
/// it filled in from the original class's defaults, and drops them in `from_config`). Absent
/// keys and `null` both mean "the class default".
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SchedulerConfig {
    #[serde(rename = "_class_name")]
    pub class_name: Option<String>,
    #[serde(rename = "_use_default_values")]
    pub use_default_values: Option<Vec<String>>,

    // The noise schedule (all classes).
    pub num_train_timesteps: Option<u64>,
    #[serde(deserialize_with = "flexible_f64")]
    pub beta_start: Option<f64>,
    #[serde(deserialize_with = "flexible_f64")]
    pub beta_end: Option<f64>,
    pub beta_schedule: Option<String>,
    pub trained_betas: Option<Vec<f64>>,
    pub rescale_betas_zero_snr: Option<bool>,
    pub prediction_type: Option<String>,

    // Inference timesteps.
    pub timestep_spacing: Option<String>,
    pub steps_offset: Option<i64>,

    // DDIM / PNDM / LCM.
    pub set_alpha_to_one: Option<bool>,
    pub clip_sample: Option<bool>,
    #[serde(deserialize_with = "flexible_f64")]
    pub clip_sample_range: Option<f64>,
    pub thresholding: Option<bool>,
    pub skip_prk_steps: Option<bool>,

    // Euler / DPM-Solver sigma schedules.
    pub interpolation_type: Option<String>,
    pub use_karras_sigmas: Option<bool>,
    pub use_exponential_sigmas: Option<bool>,
    pub use_beta_sigmas: Option<bool>,
    pub use_lu_lambdas: Option<bool>,
    pub use_flow_sigmas: Option<bool>,
    #[serde(deserialize_with = "flexible_f64")]
    pub sigma_min: Option<f64>,
    #[serde(deserialize_with = "flexible_f64")]
    pub sigma_max: Option<f64>,
    pub timestep_type: Option<String>,
    pub final_sigmas_type: Option<String>,

    // DPM-Solver.
    pub solver_order: Option<u64>,
    pub algorithm_type: Option<String>,
    pub solver_type: Option<String>,
    pub lower_order_final: Option<bool>,
    pub euler_at_final: Option<bool>,
    #[serde(deserialize_with = "flexible_f64")]
    pub lambda_min_clipped: Option<f64>,
    pub variance_type: Option<String>,

    // UniPC.
    pub predict_x0: Option<bool>,
    pub disable_corrector: Option<Vec<i64>>,
    pub use_dynamic_shifting: Option<bool>,

    // LCM.
    pub original_inference_steps: Option<u64>,
    #[serde(deserialize_with = "flexible_f64")]
    pub timestep_scaling: Option<f64>,
}

/// Accepts a JSON number, `null`, or the strings Python's `json` module writes for
/// non-finite floats (after [`SchedulerConfig::from_json_str`] quoted them).
fn flexible_f64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<f64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Flexible {
        Number(f64),
        Text(String),
    }
    match Option::<Flexible>::deserialize(deserializer)? {
        None => Ok(None),
        Some(Flexible::Number(v)) => Ok(Some(v)),
        Some(Flexible::Text(s)) => match s.as_str() {
            "Infinity" | "inf" => Ok(Some(f64::INFINITY)),
            "-Infinity" | "-inf" => Ok(Some(f64::NEG_INFINITY)),
            "NaN" | "nan" => Ok(Some(f64::NAN)),
            other => other
                .parse::<f64>()
                .map(Some)
                .map_err(|_| serde::de::Error::custom(format!("expected a number, got {other:?}"))),
        },
    }
}

/// Quotes the bare `Infinity`, `-Infinity` and `NaN` tokens Python's `json.dumps` emits
/// (diffusers saves `"lambda_min_clipped": -Infinity`), leaving string contents alone.
fn quote_non_finite_numbers(text: &str) -> String {
    const TOKENS: [&str; 3] = ["-Infinity", "Infinity", "NaN"];
    let mut out = String::with_capacity(text.len() + 16);
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            rest = &rest[c.len_utf8()..];
            continue;
        }
        if c == '"' {
            in_string = true;
            out.push(c);
            rest = &rest[1..];
            continue;
        }
        if let Some(token) = TOKENS.iter().find(|t| rest.starts_with(**t)) {
            out.push('"');
            out.push_str(token);
            out.push('"');
            rest = &rest[token.len()..];
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

impl SchedulerConfig {
    /// Parses `scheduler_config.json` text, including the non-standard `-Infinity` / `NaN`
    /// literals Python writes.
    pub fn from_json_str(text: &str) -> Result<Self, SchedulerConfigError> {
        let config: Self = serde_json::from_str(&quote_non_finite_numbers(text))?;
        config.check_bounds()?;
        Ok(config)
    }

    /// Numbers that size tables or offset timesteps stay where real schedules have them
    /// (1000 training timesteps, an offset of 0 or 1): a config from a stranger must not make
    /// us allocate a table of 2⁶⁰ betas or overflow an index.
    fn check_bounds(&self) -> Result<(), SchedulerConfigError> {
        let class = "scheduler_config.json";
        let timesteps = self.get("num_train_timesteps", &self.num_train_timesteps);
        if let Some(t) = timesteps {
            if !(2..=MAX_TRAIN_TIMESTEPS).contains(&t) {
                return Err(unsupported(
                    class,
                    "num_train_timesteps",
                    t,
                    "an integer from 2 to 100000",
                ));
            }
        }
        let limit = timesteps.unwrap_or(1000) as i64;
        if let Some(offset) = self.get("steps_offset", &self.steps_offset) {
            if !(0..limit).contains(&offset) {
                return Err(unsupported(
                    class,
                    "steps_offset",
                    offset,
                    "an integer from 0 to below num_train_timesteps",
                ));
            }
        }
        Ok(())
    }

    /// Reads and parses a `scheduler_config.json` file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, SchedulerConfigError> {
        let path = path.as_ref();
        let text = crate::files::read_text(path).map_err(|source| SchedulerConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json_str(&text)
    }

    /// The value of `key` as `from_config` passes it to `__init__`: `None` when the key is
    /// absent, `null`, or listed in `_use_default_values`.
    pub fn get<T: Clone>(&self, key: &str, value: &Option<T>) -> Option<T> {
        let defaulted = self
            .use_default_values
            .as_ref()
            .is_some_and(|keys| keys.iter().any(|k| k == key));
        if defaulted {
            None
        } else {
            value.clone()
        }
    }

    /// Marks `key` as explicitly given (the effect of a `from_config(config, key=value)`
    /// keyword override); the caller sets the field itself.
    pub(crate) fn mark_given(&mut self, key: &str) {
        if let Some(keys) = self.use_default_values.as_mut() {
            keys.retain(|k| k != key);
        }
    }

    /// The prediction type every supported class derives from this config (all of them
    /// default to `epsilon`; Euler's `original_sample` is reported as [`PredictionType::Sample`]).
    pub fn prediction_type(&self) -> Result<PredictionType, SchedulerConfigError> {
        let class = "scheduler config";
        parse_prediction_type(
            class,
            self.get("prediction_type", &self.prediction_type),
            &[
                PredictionType::Epsilon,
                PredictionType::VPrediction,
                PredictionType::Sample,
            ],
            true,
        )
    }
}

/// Shorthand: `cfg!(config, key)` is `config.get("key", &config.key)`.
macro_rules! cfg_value {
    ($config:expr, $key:ident) => {
        $config.get(stringify!($key), &$config.$key)
    };
}
pub(crate) use cfg_value;

/// diffusers' schedules are trained on 1000 timesteps; no published model uses more than a few
/// thousand.
const MAX_TRAIN_TIMESTEPS: u64 = 100_000;

fn unsupported(
    class: &'static str,
    key: &'static str,
    value: impl fmt::Display,
    supported: &'static str,
) -> SchedulerConfigError {
    SchedulerConfigError::UnsupportedValue {
        class,
        key,
        value: value.to_string(),
        supported,
    }
}

/// `beta_schedule` with the class default applied.
pub(crate) fn parse_beta_schedule(
    class: &'static str,
    value: Option<String>,
    default: BetaSchedule,
) -> Result<BetaSchedule, SchedulerConfigError> {
    match value {
        None => Ok(default),
        Some(v) => BetaSchedule::parse(&v)
            .ok_or_else(|| unsupported(class, "beta_schedule", v, BetaSchedule::SUPPORTED)),
    }
}

/// `timestep_spacing` with the class default applied.
pub(crate) fn parse_spacing(
    class: &'static str,
    value: Option<String>,
    default: TimestepSpacing,
) -> Result<TimestepSpacing, SchedulerConfigError> {
    match value {
        None => Ok(default),
        Some(v) => TimestepSpacing::parse(&v)
            .ok_or_else(|| unsupported(class, "timestep_spacing", v, TimestepSpacing::SUPPORTED)),
    }
}

/// `prediction_type` (default `epsilon`), restricted to what the class implements.
pub(crate) fn parse_prediction_type(
    class: &'static str,
    value: Option<String>,
    allowed: &[PredictionType],
    accept_original_sample: bool,
) -> Result<PredictionType, SchedulerConfigError> {
    let parsed = match value.as_deref() {
        None => Some(PredictionType::Epsilon),
        Some("epsilon") => Some(PredictionType::Epsilon),
        Some("v_prediction") => Some(PredictionType::VPrediction),
        Some("sample") => Some(PredictionType::Sample),
        Some("original_sample") if accept_original_sample => Some(PredictionType::Sample),
        Some(_) => None,
    };
    match parsed {
        Some(p) if allowed.contains(&p) => Ok(p),
        _ => Err(unsupported(
            class,
            "prediction_type",
            value.unwrap_or_default(),
            if allowed.contains(&PredictionType::Sample) {
                "epsilon, v_prediction, sample"
            } else {
                "epsilon, v_prediction"
            },
        )),
    }
}

/// Rejects `key = true` for features this crate does not implement.
pub(crate) fn require_false(
    class: &'static str,
    key: &'static str,
    value: Option<bool>,
) -> Result<(), SchedulerConfigError> {
    if value == Some(true) {
        Err(unsupported(class, key, true, "false"))
    } else {
        Ok(())
    }
}

/// Rejects a string option whose value is not one of `allowed` (absent is fine).
pub(crate) fn require_one_of(
    class: &'static str,
    key: &'static str,
    value: Option<&str>,
    allowed: &[&str],
    supported: &'static str,
) -> Result<(), SchedulerConfigError> {
    match value {
        Some(v) if !allowed.contains(&v) => Err(unsupported(class, key, v, supported)),
        _ => Ok(()),
    }
}

/// The beta-related keys with the class defaults (`beta_start`, `beta_end`, `beta_schedule`).
pub(crate) fn beta_params(
    class: &'static str,
    config: &SchedulerConfig,
    defaults: (f64, f64, BetaSchedule),
    takes_rescale: bool,
) -> Result<super::common::BetaParams, SchedulerConfigError> {
    let num_train_timesteps = cfg_value!(config, num_train_timesteps).unwrap_or(1000);
    if num_train_timesteps < 2 {
        return Err(unsupported(
            class,
            "num_train_timesteps",
            num_train_timesteps,
            "an integer >= 2",
        ));
    }
    let num_train_timesteps = num_train_timesteps as usize;
    let trained_betas = cfg_value!(config, trained_betas);
    if let Some(trained) = &trained_betas {
        if trained.len() != num_train_timesteps {
            return Err(unsupported(
                class,
                "trained_betas",
                format!("{} values", trained.len()),
                "one beta per training timestep",
            ));
        }
    }
    // diffusers only consults beta_schedule when no trained betas are given.
    let schedule = if trained_betas.is_some() {
        None
    } else {
        Some(parse_beta_schedule(
            class,
            cfg_value!(config, beta_schedule),
            defaults.2,
        )?)
    };
    Ok(super::common::BetaParams {
        num_train_timesteps,
        beta_start: cfg_value!(config, beta_start).unwrap_or(defaults.0),
        beta_end: cfg_value!(config, beta_end).unwrap_or(defaults.1),
        schedule,
        trained_betas,
        rescale_betas_zero_snr: takes_rescale
            && cfg_value!(config, rescale_betas_zero_snr).unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_that_size_tables_are_bounded() {
        for (text, key) in [
            (
                r#"{"num_train_timesteps": 1152921504606846976}"#,
                "num_train_timesteps",
            ),
            (r#"{"num_train_timesteps": 1}"#, "num_train_timesteps"),
            (r#"{"steps_offset": 9223372036854775807}"#, "steps_offset"),
            (r#"{"steps_offset": -1}"#, "steps_offset"),
            (
                r#"{"num_train_timesteps": 10, "steps_offset": 10}"#,
                "steps_offset",
            ),
        ] {
            let err = SchedulerConfig::from_json_str(text)
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{text}: {err}");
        }
        assert!(SchedulerConfig::from_json_str(
            r#"{"num_train_timesteps": 1000, "steps_offset": 1}"#
        )
        .is_ok());
    }

    #[test]
    fn parses_python_style_infinity_and_ignores_unknown_keys() {
        let text = r#"{
            "_class_name": "DPMSolverMultistepScheduler",
            "_diffusers_version": "0.21.0",
            "lambda_min_clipped": -Infinity,
            "some_future_key": {"nested": [1, 2, "NaN inside a string"]},
            "variance_type": null,
            "beta_start": 0.00085
        }"#;
        let config = SchedulerConfig::from_json_str(text).expect("parses");
        assert_eq!(config.lambda_min_clipped, Some(f64::NEG_INFINITY));
        assert_eq!(config.beta_start, Some(0.00085));
        assert_eq!(config.variance_type, None);
        assert_eq!(
            config.class_name.as_deref(),
            Some("DPMSolverMultistepScheduler")
        );
    }

    #[test]
    fn use_default_values_hides_keys() {
        let text = r#"{"timestep_spacing": "leading", "steps_offset": 1,
                       "_use_default_values": ["timestep_spacing"]}"#;
        let config = SchedulerConfig::from_json_str(text).expect("parses");
        assert_eq!(cfg_value!(config, timestep_spacing), None);
        assert_eq!(cfg_value!(config, steps_offset), Some(1));
    }

    #[test]
    fn unsupported_values_name_key_and_value() {
        let err = parse_beta_schedule(
            "DDIMScheduler",
            Some("sigmoid".into()),
            BetaSchedule::Linear,
        )
        .expect_err("rejected");
        let msg = err.to_string();
        assert!(
            msg.contains("beta_schedule") && msg.contains("sigmoid"),
            "{msg}"
        );
        let err = parse_prediction_type(
            "PNDMScheduler",
            Some("sample".into()),
            &[PredictionType::Epsilon, PredictionType::VPrediction],
            false,
        )
        .expect_err("rejected");
        assert!(err.to_string().contains("prediction_type = sample"));
    }
}
