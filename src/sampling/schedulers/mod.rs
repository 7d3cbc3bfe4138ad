//! Noise schedulers, each numerically equal to the diffusers class of the same name.
//!
//! A scheduler is built from a model's `scheduler_config.json` (as diffusers'
//! `from_config` does, so picking another scheduler inherits the model's betas,
//! prediction type and spacing), then driven by the sampling loop:
//! `timesteps()` → `scale_model_input` → UNet → `step`, once per entry of `timesteps()`.
//! A scheduler that evaluates the UNet more than once per step lists a timestep per
//! evaluation (PNDM's repeated one, Heun's interleaved pairs) and keeps track of which
//! evaluation a `step` call is, so the loop stays the same for all of them.
//!
//! | kind | diffusers | file |
//! |---|---|---|
//! | `ddim` | `DDIMScheduler`, eta 0 | `ddim.rs` |
//! | `pndm` | `PNDMScheduler`, `skip_prk_steps=True` (PLMS) | `pndm.rs` |
//! | `euler` (`-exponential`, `-beta`) | `EulerDiscreteScheduler` | `euler.rs` |
//! | `euler-a` | `EulerAncestralDiscreteScheduler` | `euler_ancestral.rs` |
//! | `dpmpp-2m` (`-karras`, `-exponential`, `-beta`) | `DPMSolverMultistepScheduler` | `dpmpp_2m.rs` |
//! | `dpmpp-2m-sde` (`-karras`, `-beta`) | `DPMSolverMultistepScheduler`, SDE | `dpmpp_2m.rs` |
//! | `dpmpp-2s` | `DPMSolverSinglestepScheduler`, dpmsolver++ | `dpmpp_2s.rs` |
//! | `lcm` | `LCMScheduler` | `lcm.rs` |
//! | `heun` | `HeunDiscreteScheduler` (two UNet evaluations per step) | `heun.rs` |
//! | `lms`, `lms-karras` | `LMSDiscreteScheduler` | `lms.rs` |
//! | `dpm2` | `KDPM2DiscreteScheduler` (two UNet evaluations per step) | `kdpm2.rs` |
//! | `dpm2-a` | `KDPM2AncestralDiscreteScheduler` (two UNet evaluations per step) | `kdpm2_ancestral.rs` |
//! | `unipc` | `UniPCMultistepScheduler` | `unipc.rs` |
//! | `ddpm` | `DDPMScheduler` | `ddpm.rs` |
//!
//! Beside them: `sigmas.rs` (the sigma schedules the Karras-style samplers share), `common.rs`
//! (torch/numpy-exact schedule arithmetic), `config.rs` (reading `scheduler_config.json`) and
//! `a1111.rs` (A1111's sampler names, written to and read from PNGs).
//!
//! Numerics follow diffusers operation by operation: schedules are built with torch's float32
//! and numpy's float64 rules (see `common.rs`), step coefficients are float32 scalars as the
//! 0-dim tensors diffusers computes them, and tensor arithmetic runs in float32 (a float16
//! model output or sample is upcast for the step and the result cast back; diffusers' DDIM,
//! PNDM and LCM would instead compute those in float16). The remaining difference on x86 is
//! torch's CPU `sqrt` (MKL VML), which is not correctly rounded: training sigmas and
//! `alpha ** 0.5` factors can be one float32 ulp apart from diffusers'.

use std::fmt;
use std::str::FromStr;

use candle_core::Tensor;

use crate::networks::Family;
use crate::sampling::noise::TorchRng;

mod a1111;
mod ays;
mod common;
mod config;
mod ddim;
mod ddpm;
mod dpmpp_2m;
mod dpmpp_2s;
mod euler;
mod euler_ancestral;
mod heun;
mod kdpm2;
mod kdpm2_ancestral;
mod lcm;
mod lms;
mod pndm;
mod sigmas;
#[cfg(test)]
mod testing;
mod unipc;

pub use a1111::SamplerLabel;
pub use config::{
    BetaSchedule, PredictionType, SchedulerConfig, SchedulerConfigError, TimestepSpacing,
    SUPPORTED_CLASSES,
};
pub use ddim::DdimScheduler;
pub use ddpm::DdpmScheduler;
pub use dpmpp_2m::DpmSolverMultistepScheduler;
pub use dpmpp_2s::DpmSolverSinglestepScheduler;
pub use euler::EulerDiscreteScheduler;
pub use euler_ancestral::EulerAncestralDiscreteScheduler;
pub use heun::HeunDiscreteScheduler;
pub use kdpm2::Kdpm2DiscreteScheduler;
pub use kdpm2_ancestral::Kdpm2AncestralDiscreteScheduler;
pub use lcm::LcmScheduler;
pub use lms::LmsDiscreteScheduler;
pub use pndm::PndmScheduler;
pub use unipc::UniPcMultistepScheduler;

/// What one denoising step produced.
pub struct StepOutput {
    /// The latents for the next step.
    pub prev_sample: Tensor,
    /// The model's estimate of the clean latents at this step (used for the live preview).
    pub pred_original_sample: Option<Tensor>,
}

/// The interface the sampling loop drives. Step indices count from the first entry of
/// `timesteps()`, not from `begin_index`.
pub trait Scheduler: Send {
    /// The timesteps the UNet is evaluated at, in order (possibly fractional): one entry per
    /// UNet evaluation and `step` call.
    fn timesteps(&self) -> &[f64];
    /// diffusers' `scheduler.order`: the entries of `timesteps()` per inference step (2 for
    /// Heun and the DPM2 samplers, whose steps take two evaluations each). img2img starts at
    /// `timesteps()[img2img_start_index(..) * order]`, as diffusers' `get_timesteps`.
    fn order(&self) -> usize {
        1
    }
    /// Multiplier for the initial Gaussian noise in txt2img (1 for DDPM-style schedulers).
    fn init_noise_sigma(&self) -> f64 {
        1.0
    }
    /// The model input for step `step_index` (identity for DDPM-style schedulers; the
    /// sigma-based ones divide by `sqrt(sigma² + 1)`).
    fn scale_model_input(&self, sample: &Tensor, step_index: usize) -> candle_core::Result<Tensor> {
        let _ = step_index;
        Ok(sample.clone())
    }
    /// Advances `sample` by one step given the model output at `timesteps()[step_index]`.
    /// Ancestral and consistency schedulers draw their noise from `rng`.
    fn step(
        &mut self,
        model_output: &Tensor,
        step_index: usize,
        sample: &Tensor,
        rng: &mut TorchRng,
    ) -> candle_core::Result<StepOutput>;
    /// Noises clean latents to the level of `timesteps()[step_index]` (img2img start).
    fn add_noise(
        &self,
        original: &Tensor,
        noise: &Tensor,
        step_index: usize,
    ) -> candle_core::Result<Tensor>;
}

/// The sampler a user picks (`--scheduler`). Every choice is built from the model's
/// `scheduler_config.json`, like `Class.from_config(pipe.scheduler.config)` in diffusers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchedulerKind {
    /// Whatever class the model's config names (`_class_name`), configured as written.
    Default,
    /// `DDIMScheduler` (eta = 0).
    Ddim,
    /// PLMS: `PNDMScheduler.from_config(config, skip_prk_steps=True)`. (`Default` on a PNDM
    /// config keeps the config's `skip_prk_steps`, whose class default is `false`: PRK warm-up.)
    Pndm,
    /// `EulerDiscreteScheduler` with the plain (interpolated) sigmas.
    Euler,
    /// `EulerDiscreteScheduler` with `use_exponential_sigmas=True`.
    EulerExponential,
    /// `EulerDiscreteScheduler` with `use_beta_sigmas=True`.
    EulerBeta,
    /// `EulerDiscreteScheduler` with the Align Your Steps timesteps (10 steps; see `ays.rs`).
    EulerAys,
    /// `EulerAncestralDiscreteScheduler`.
    EulerAncestral,
    /// `DPMSolverMultistepScheduler` with `algorithm_type="dpmsolver++"`, `solver_order=2`,
    /// `use_karras_sigmas=False`.
    DpmPp2m,
    /// As [`SchedulerKind::DpmPp2m`] with `use_karras_sigmas=True`.
    DpmPp2mKarras,
    /// `DPMSolverMultistepScheduler` with `algorithm_type="sde-dpmsolver++"`, `solver_order=2`,
    /// `use_karras_sigmas=False`: draws noise at every step.
    DpmPp2mSde,
    /// As [`SchedulerKind::DpmPp2mSde`] with `use_karras_sigmas=True`.
    DpmPp2mSdeKarras,
    /// As [`SchedulerKind::DpmPp2mSde`] with `use_beta_sigmas=True`.
    DpmPp2mSdeBeta,
    /// As [`SchedulerKind::DpmPp2mSde`] with the Align Your Steps timesteps (diffusers' own
    /// example of `AysSchedules`).
    DpmPp2mSdeAys,
    /// As [`SchedulerKind::DpmPp2m`] with `use_exponential_sigmas=True`.
    DpmPp2mExponential,
    /// As [`SchedulerKind::DpmPp2m`] with `use_beta_sigmas=True`.
    DpmPp2mBeta,
    /// As [`SchedulerKind::DpmPp2m`] with the Align Your Steps timesteps.
    DpmPp2mAys,
    /// `DPMSolverSinglestepScheduler` with `algorithm_type="dpmsolver++"`, `solver_order=2`: not
    /// A1111's ancestral "DPM++ 2S a" (see `dpmpp_2s.rs`).
    DpmPp2s,
    /// `LCMScheduler`.
    Lcm,
    /// `HeunDiscreteScheduler`.
    Heun,
    /// `LMSDiscreteScheduler` with `use_karras_sigmas=False`.
    Lms,
    /// `LMSDiscreteScheduler` with `use_karras_sigmas=True`.
    LmsKarras,
    /// `KDPM2DiscreteScheduler`.
    Dpm2,
    /// `KDPM2AncestralDiscreteScheduler`.
    Dpm2Ancestral,
    /// `UniPCMultistepScheduler`.
    UniPc,
    /// `DDPMScheduler`.
    Ddpm,
}

impl SchedulerKind {
    /// Every kind, in CLI order.
    pub const ALL: [SchedulerKind; 26] = [
        Self::Default,
        Self::Ddim,
        Self::Pndm,
        Self::Euler,
        Self::EulerExponential,
        Self::EulerBeta,
        Self::EulerAys,
        Self::EulerAncestral,
        Self::DpmPp2m,
        Self::DpmPp2mKarras,
        Self::DpmPp2mExponential,
        Self::DpmPp2mBeta,
        Self::DpmPp2mAys,
        Self::DpmPp2mSde,
        Self::DpmPp2mSdeKarras,
        Self::DpmPp2mSdeBeta,
        Self::DpmPp2mSdeAys,
        Self::DpmPp2s,
        Self::Lcm,
        Self::Heun,
        Self::Lms,
        Self::LmsKarras,
        Self::Dpm2,
        Self::Dpm2Ancestral,
        Self::UniPc,
        Self::Ddpm,
    ];

    /// The CLI name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Default => "default",
            Self::Ddim => "ddim",
            Self::Pndm => "pndm",
            Self::Euler => "euler",
            Self::EulerExponential => "euler-exponential",
            Self::EulerBeta => "euler-beta",
            Self::EulerAys => "euler-ays",
            Self::EulerAncestral => "euler-a",
            Self::DpmPp2m => "dpmpp-2m",
            Self::DpmPp2mKarras => "dpmpp-2m-karras",
            Self::DpmPp2mExponential => "dpmpp-2m-exponential",
            Self::DpmPp2mBeta => "dpmpp-2m-beta",
            Self::DpmPp2mAys => "dpmpp-2m-ays",
            Self::DpmPp2mSde => "dpmpp-2m-sde",
            Self::DpmPp2mSdeKarras => "dpmpp-2m-sde-karras",
            Self::DpmPp2mSdeBeta => "dpmpp-2m-sde-beta",
            Self::DpmPp2mSdeAys => "dpmpp-2m-sde-ays",
            Self::DpmPp2s => "dpmpp-2s",
            Self::Lcm => "lcm",
            Self::Heun => "heun",
            Self::Lms => "lms",
            Self::LmsKarras => "lms-karras",
            Self::Dpm2 => "dpm2",
            Self::Dpm2Ancestral => "dpm2-a",
            Self::UniPc => "unipc",
            Self::Ddpm => "ddpm",
        }
    }
}

/// A sigma schedule a kind names (A1111's "Schedule type").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SigmaSchedule {
    /// The class's own: the training sigmas at its spaced timesteps.
    Plain,
    /// `use_karras_sigmas`.
    Karras,
    /// `use_exponential_sigmas`.
    Exponential,
    /// `use_beta_sigmas`.
    Beta,
    /// Align Your Steps: published timesteps, with the plain (interpolated) sigmas.
    AlignYourSteps,
}

impl SchedulerKind {
    /// The sigma schedule the kind sets, replacing the model's: the plain kinds of the samplers
    /// offered with several schedules (`euler`, `dpmpp-2m`, `dpmpp-2m-sde`, `lms`) name the plain
    /// schedule; `None` for the kinds that keep whatever schedule the model's config asks for.
    pub(crate) fn sigma_schedule(self) -> Option<SigmaSchedule> {
        match self {
            Self::Euler | Self::DpmPp2m | Self::DpmPp2mSde | Self::Lms => {
                Some(SigmaSchedule::Plain)
            }
            Self::DpmPp2mKarras | Self::DpmPp2mSdeKarras | Self::LmsKarras => {
                Some(SigmaSchedule::Karras)
            }
            Self::EulerExponential | Self::DpmPp2mExponential => Some(SigmaSchedule::Exponential),
            Self::EulerBeta | Self::DpmPp2mBeta | Self::DpmPp2mSdeBeta => Some(SigmaSchedule::Beta),
            Self::EulerAys | Self::DpmPp2mAys | Self::DpmPp2mSdeAys => {
                Some(SigmaSchedule::AlignYourSteps)
            }
            Self::Default
            | Self::Ddim
            | Self::Pndm
            | Self::EulerAncestral
            | Self::DpmPp2s
            | Self::Lcm
            | Self::Heun
            | Self::Dpm2
            | Self::Dpm2Ancestral
            | Self::UniPc
            | Self::Ddpm => None,
        }
    }
}

impl fmt::Display for SchedulerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A scheduler name that is not one of [`SchedulerKind::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scheduler `{0}` (valid: {valid})", valid = SchedulerKind::ALL.map(SchedulerKind::name).join(", "))]
pub struct UnknownSchedulerKind(pub String);

impl FromStr for SchedulerKind {
    type Err = UnknownSchedulerKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| UnknownSchedulerKind(s.to_string()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SchedulerClass {
    Ddim,
    Pndm,
    Euler,
    EulerAncestral,
    DpmSolverMultistep,
    DpmSolverSinglestep,
    Lcm,
    Heun,
    Lms,
    Kdpm2,
    Kdpm2Ancestral,
    UniPc,
    Ddpm,
}

impl SchedulerClass {
    /// The diffusers class name.
    fn name(self) -> &'static str {
        match self {
            Self::Ddim => "DDIMScheduler",
            Self::Pndm => "PNDMScheduler",
            Self::Euler => "EulerDiscreteScheduler",
            Self::EulerAncestral => "EulerAncestralDiscreteScheduler",
            Self::DpmSolverMultistep => "DPMSolverMultistepScheduler",
            Self::DpmSolverSinglestep => "DPMSolverSinglestepScheduler",
            Self::Lcm => "LCMScheduler",
            Self::Heun => "HeunDiscreteScheduler",
            Self::Lms => "LMSDiscreteScheduler",
            Self::Kdpm2 => "KDPM2DiscreteScheduler",
            Self::Kdpm2Ancestral => "KDPM2AncestralDiscreteScheduler",
            Self::UniPc => "UniPCMultistepScheduler",
            Self::Ddpm => "DDPMScheduler",
        }
    }
}

pub(crate) fn resolve_class(
    kind: SchedulerKind,
    config: &SchedulerConfig,
) -> Result<SchedulerClass, SchedulerConfigError> {
    Ok(match kind {
        SchedulerKind::Default => {
            let name = config
                .class_name
                .as_deref()
                .ok_or(SchedulerConfigError::MissingClassName)?;
            match name {
                "DDIMScheduler" => SchedulerClass::Ddim,
                "PNDMScheduler" => SchedulerClass::Pndm,
                "EulerDiscreteScheduler" => SchedulerClass::Euler,
                "EulerAncestralDiscreteScheduler" => SchedulerClass::EulerAncestral,
                "DPMSolverMultistepScheduler" => SchedulerClass::DpmSolverMultistep,
                "DPMSolverSinglestepScheduler" => SchedulerClass::DpmSolverSinglestep,
                "LCMScheduler" => SchedulerClass::Lcm,
                "HeunDiscreteScheduler" => SchedulerClass::Heun,
                "LMSDiscreteScheduler" => SchedulerClass::Lms,
                "KDPM2DiscreteScheduler" => SchedulerClass::Kdpm2,
                "KDPM2AncestralDiscreteScheduler" => SchedulerClass::Kdpm2Ancestral,
                "UniPCMultistepScheduler" => SchedulerClass::UniPc,
                "DDPMScheduler" => SchedulerClass::Ddpm,
                other => {
                    return Err(SchedulerConfigError::UnsupportedClass {
                        name: other.to_string(),
                    })
                }
            }
        }
        SchedulerKind::Ddim => SchedulerClass::Ddim,
        SchedulerKind::Pndm => SchedulerClass::Pndm,
        SchedulerKind::Euler
        | SchedulerKind::EulerExponential
        | SchedulerKind::EulerBeta
        | SchedulerKind::EulerAys => SchedulerClass::Euler,
        SchedulerKind::EulerAncestral => SchedulerClass::EulerAncestral,
        SchedulerKind::DpmPp2m
        | SchedulerKind::DpmPp2mKarras
        | SchedulerKind::DpmPp2mExponential
        | SchedulerKind::DpmPp2mBeta
        | SchedulerKind::DpmPp2mAys
        | SchedulerKind::DpmPp2mSde
        | SchedulerKind::DpmPp2mSdeKarras
        | SchedulerKind::DpmPp2mSdeBeta
        | SchedulerKind::DpmPp2mSdeAys => SchedulerClass::DpmSolverMultistep,
        SchedulerKind::DpmPp2s => SchedulerClass::DpmSolverSinglestep,
        SchedulerKind::Lcm => SchedulerClass::Lcm,
        SchedulerKind::Heun => SchedulerClass::Heun,
        SchedulerKind::Lms | SchedulerKind::LmsKarras => SchedulerClass::Lms,
        SchedulerKind::Dpm2 => SchedulerClass::Kdpm2,
        SchedulerKind::Dpm2Ancestral => SchedulerClass::Kdpm2Ancestral,
        SchedulerKind::UniPc => SchedulerClass::UniPc,
        SchedulerKind::Ddpm => SchedulerClass::Ddpm,
    })
}

/// The config with the keyword overrides a kind implies, as in
/// `DPMSolverMultistepScheduler.from_config(config, use_karras_sigmas=True, ...)`.
pub(crate) fn effective_config(kind: SchedulerKind, config: &SchedulerConfig) -> SchedulerConfig {
    let mut config = config.clone();
    if kind == SchedulerKind::Pndm {
        // `pndm` means PLMS: `PNDMScheduler.from_config(config, skip_prk_steps=True)`.
        config.skip_prk_steps = Some(true);
        config.mark_given("skip_prk_steps");
    }
    let algorithm = match kind {
        SchedulerKind::DpmPp2m
        | SchedulerKind::DpmPp2mKarras
        | SchedulerKind::DpmPp2mExponential
        | SchedulerKind::DpmPp2mBeta
        | SchedulerKind::DpmPp2mAys
        | SchedulerKind::DpmPp2s => Some("dpmsolver++"),
        SchedulerKind::DpmPp2mSde
        | SchedulerKind::DpmPp2mSdeKarras
        | SchedulerKind::DpmPp2mSdeBeta
        | SchedulerKind::DpmPp2mSdeAys => Some("sde-dpmsolver++"),
        _ => None,
    };
    if let Some(algorithm) = algorithm {
        config.algorithm_type = Some(algorithm.into());
        config.solver_order = Some(2);
        for key in ["algorithm_type", "solver_order"] {
            config.mark_given(key);
        }
    }
    if let Some(schedule) = kind.sigma_schedule() {
        // The kind names its sigma schedule (`dpmpp-2m` the plain one, `dpmpp-2m-karras` Karras'),
        // which replaces whatever schedule the model's config asks for.
        // (Align Your Steps runs its timesteps on the plain sigmas; diffusers refuses custom
        // timesteps with the other schedules.)
        config.use_karras_sigmas = Some(schedule == SigmaSchedule::Karras);
        config.use_exponential_sigmas = Some(schedule == SigmaSchedule::Exponential);
        config.use_beta_sigmas = Some(schedule == SigmaSchedule::Beta);
        config.use_lu_lambdas = Some(false);
        for key in [
            "use_karras_sigmas",
            "use_exponential_sigmas",
            "use_beta_sigmas",
            "use_lu_lambdas",
        ] {
            config.mark_given(key);
        }
    }
    config
}

/// The published timesteps `kind` runs in place of the config's spacing (Align Your Steps, for
/// `family`), checked against the requested step count.
fn custom_timesteps(
    kind: SchedulerKind,
    class: SchedulerClass,
    num_inference_steps: usize,
    family: Family,
) -> Result<Option<&'static [i64]>, SchedulerConfigError> {
    if kind.sigma_schedule() != Some(SigmaSchedule::AlignYourSteps) {
        return Ok(None);
    }
    if num_inference_steps != ays::STEPS {
        return Err(SchedulerConfigError::InvalidSteps {
            class: class.name(),
            steps: num_inference_steps,
            reason: format!(
                "Align Your Steps is published for {} steps only (diffusers' AysSchedules)",
                ays::STEPS
            ),
        });
    }
    Ok(Some(ays::timesteps(family)))
}

/// Builds the scheduler `kind` from the model's config and sets `num_inference_steps`
/// (`Class.from_config(config)` + `set_timesteps(num_inference_steps)`; the Align Your Steps
/// kinds `set_timesteps(timesteps=AysSchedules[...])` with the list for `family`).
///
/// Keys the class does not take are ignored; absent ones get the class's own defaults. Values
/// this crate does not implement are reported with the key and value.
pub fn build_scheduler(
    kind: SchedulerKind,
    config: &SchedulerConfig,
    num_inference_steps: usize,
    family: Family,
) -> Result<Box<dyn Scheduler>, SchedulerConfigError> {
    let class = resolve_class(kind, config)?;
    let custom = custom_timesteps(kind, class, num_inference_steps, family)?;
    let config = effective_config(kind, config);
    let n = num_inference_steps;
    Ok(match class {
        SchedulerClass::Ddim => Box::new(DdimScheduler::new(&config, n)?),
        SchedulerClass::Pndm => Box::new(PndmScheduler::new(&config, n)?),
        SchedulerClass::Euler => Box::new(EulerDiscreteScheduler::build(&config, n, custom)?),
        SchedulerClass::EulerAncestral => {
            Box::new(EulerAncestralDiscreteScheduler::new(&config, n)?)
        }
        SchedulerClass::DpmSolverMultistep => {
            Box::new(DpmSolverMultistepScheduler::build(&config, n, custom)?)
        }
        SchedulerClass::DpmSolverSinglestep => {
            Box::new(DpmSolverSinglestepScheduler::new(&config, n)?)
        }
        SchedulerClass::Lcm => Box::new(LcmScheduler::new(&config, n)?),
        SchedulerClass::Heun => Box::new(HeunDiscreteScheduler::new(&config, n)?),
        SchedulerClass::Lms => Box::new(LmsDiscreteScheduler::new(&config, n)?),
        SchedulerClass::Kdpm2 => Box::new(Kdpm2DiscreteScheduler::new(&config, n)?),
        SchedulerClass::Kdpm2Ancestral => {
            Box::new(Kdpm2AncestralDiscreteScheduler::new(&config, n)?)
        }
        SchedulerClass::UniPc => Box::new(UniPcMultistepScheduler::new(&config, n)?),
        SchedulerClass::Ddpm => Box::new(DdpmScheduler::new(&config, n)?),
    })
}

/// The sigma schedule (`scheduler.sigmas`: one entry per timestep plus the final one) of the
/// sigma-based classes (Euler, Euler a, DPM-Solver, Heun, LMS, DPM2, DPM2 a, UniPC); `None` for DDIM,
/// PNDM, LCM and DDPM. Heun's and DPM2's are interleaved like their timesteps, as in diffusers.
pub fn sigma_schedule(
    kind: SchedulerKind,
    config: &SchedulerConfig,
    num_inference_steps: usize,
    family: Family,
) -> Result<Option<Vec<f32>>, SchedulerConfigError> {
    let class = resolve_class(kind, config)?;
    let custom = custom_timesteps(kind, class, num_inference_steps, family)?;
    let config = effective_config(kind, config);
    let n = num_inference_steps;
    Ok(match class {
        SchedulerClass::Euler => Some(
            EulerDiscreteScheduler::build(&config, n, custom)?
                .sigmas()
                .to_vec(),
        ),
        SchedulerClass::EulerAncestral => Some(
            EulerAncestralDiscreteScheduler::new(&config, n)?
                .sigmas()
                .to_vec(),
        ),
        SchedulerClass::DpmSolverMultistep => Some(
            DpmSolverMultistepScheduler::build(&config, n, custom)?
                .sigmas()
                .to_vec(),
        ),
        SchedulerClass::DpmSolverSinglestep => Some(
            DpmSolverSinglestepScheduler::new(&config, n)?
                .sigmas()
                .to_vec(),
        ),
        SchedulerClass::Heun => Some(HeunDiscreteScheduler::new(&config, n)?.sigmas().to_vec()),
        SchedulerClass::Lms => Some(LmsDiscreteScheduler::new(&config, n)?.sigmas().to_vec()),
        SchedulerClass::Kdpm2 => Some(Kdpm2DiscreteScheduler::new(&config, n)?.sigmas().to_vec()),
        SchedulerClass::UniPc => Some(UniPcMultistepScheduler::new(&config, n)?.sigmas().to_vec()),
        SchedulerClass::Kdpm2Ancestral => Some(
            Kdpm2AncestralDiscreteScheduler::new(&config, n)?
                .sigmas()
                .to_vec(),
        ),
        SchedulerClass::Ddim
        | SchedulerClass::Pndm
        | SchedulerClass::Lcm
        | SchedulerClass::Ddpm => None,
    })
}

/// The step index img2img starts from, as diffusers' `StableDiffusionImg2ImgPipeline.get_timesteps`:
/// `init_timestep = min(int(N * strength), N)`, `t_start = max(N - init_timestep, 0)`.
///
/// The sampling loop then runs `timesteps()[t_start * order..]`, noising the init latents with
/// `add_noise(.., t_start * order)`, as diffusers' `timesteps[t_start * order:]` and
/// `set_begin_index(t_start * order)` ([`Scheduler::order`]: 2 for Heun and DPM2 (a), whose
/// steps take two entries each, 1 for the others).
///
/// `t_start` is computed from `N`, not from the length of `timesteps()`. PNDM in PLMS mode
/// has `N + 1` timesteps (the second one repeated), so its img2img run makes `N + 1 - t_start`
/// UNet evaluations and starts one grid step higher than a scheduler without the duplicate:
/// with 50 `leading` steps (steps_offset 0) and strength 0.5, PNDM starts at
/// `timesteps()[25]` = 500 and runs 26 steps where DDIM starts at 480 and runs 25. PNDM's
/// multistep warm-up follows its call counter, so the first step of an img2img run is the
/// warm-up step whatever index it starts at (in PRK mode, with `N + 9` timesteps, the first 12
/// calls are PRK steps even when they land on PLMS timesteps). With a strength so small that
/// `int(N * strength) == 0`, `t_start == N`: nothing is left to denoise except PNDM's extra
/// entry.
pub fn img2img_start_index(num_inference_steps: usize, strength: f64) -> usize {
    let n = num_inference_steps;
    // Python's int() truncates towards zero; negative strengths give 0.
    let init_timestep = ((n as f64 * strength) as usize).min(n);
    n.saturating_sub(init_timestep)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The family only matters to the Align Your Steps kinds.
    const SD: Family = Family::StableDiffusion;

    const SD15: &str = r#"{"_class_name": "PNDMScheduler", "beta_start": 0.00085,
        "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000,
        "set_alpha_to_one": false, "skip_prk_steps": true, "steps_offset": 1,
        "clip_sample": false, "trained_betas": null}"#;

    fn config(text: &str) -> SchedulerConfig {
        SchedulerConfig::from_json_str(text).expect("config parses")
    }

    fn euler_karras_config() -> SchedulerConfig {
        config(r#"{"_class_name": "EulerDiscreteScheduler", "use_karras_sigmas": true}"#)
    }

    fn build_err(kind: SchedulerKind, text: &str) -> String {
        match build_scheduler(kind, &config(text), 20, SD) {
            Ok(_) => panic!("expected an error for {text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn kind_names_round_trip() {
        for kind in SchedulerKind::ALL {
            assert_eq!(kind.name().parse::<SchedulerKind>(), Ok(kind));
            assert_eq!(kind.to_string(), kind.name());
        }
        let err = "dpm++".parse::<SchedulerKind>().expect_err("unknown");
        let msg = err.to_string();
        for kind in SchedulerKind::ALL {
            assert!(msg.contains(kind.name()), "{msg}");
        }
    }

    #[test]
    fn a1111_labels() {
        let sd15 = config(SD15);
        let label = |kind: SchedulerKind, cfg: &SchedulerConfig| {
            let l = kind.a1111_label(cfg).expect("label");
            (l.sampler, l.schedule_type)
        };
        assert_eq!(label(SchedulerKind::Default, &sd15), ("PLMS", None));
        assert_eq!(label(SchedulerKind::Ddim, &sd15), ("DDIM", None));
        assert_eq!(label(SchedulerKind::Pndm, &sd15), ("PLMS", None));
        assert_eq!(label(SchedulerKind::Euler, &sd15), ("Euler", None));
        assert_eq!(
            label(SchedulerKind::EulerAncestral, &sd15),
            ("Euler a", None)
        );
        assert_eq!(label(SchedulerKind::DpmPp2m, &sd15), ("DPM++ 2M", None));
        assert_eq!(
            label(SchedulerKind::DpmPp2mKarras, &sd15),
            ("DPM++ 2M", Some("Karras"))
        );
        assert_eq!(
            label(SchedulerKind::DpmPp2mSde, &sd15),
            ("DPM++ 2M SDE", None)
        );
        assert_eq!(
            label(SchedulerKind::DpmPp2mSdeKarras, &sd15),
            ("DPM++ 2M SDE", Some("Karras"))
        );
        assert_eq!(label(SchedulerKind::DpmPp2s, &sd15), ("DPM++ 2S", None));
        let singlestep_karras = config(
            r#"{"_class_name": "DPMSolverSinglestepScheduler", "use_karras_sigmas": true,
                "algorithm_type": "sde-dpmsolver++", "solver_order": 3}"#,
        );
        assert_eq!(
            label(SchedulerKind::Default, &singlestep_karras),
            ("DPM++ 3S SDE", Some("Karras"))
        );
        // dpmpp-2s names the ODE solver of order 2 and keeps the model's schedule.
        assert_eq!(
            label(SchedulerKind::DpmPp2s, &singlestep_karras),
            ("DPM++ 2S", Some("Karras"))
        );
        assert_eq!(
            label(SchedulerKind::EulerBeta, &sd15),
            ("Euler", Some("Beta"))
        );
        assert_eq!(
            label(SchedulerKind::DpmPp2mSdeBeta, &sd15),
            ("DPM++ 2M SDE", Some("Beta"))
        );
        let unipc_beta =
            config(r#"{"_class_name": "UniPCMultistepScheduler", "use_beta_sigmas": true}"#);
        assert_eq!(
            label(SchedulerKind::Default, &unipc_beta),
            ("UniPC", Some("Beta"))
        );
        assert_eq!(
            label(SchedulerKind::DpmPp2mSdeAys, &sd15),
            ("DPM++ 2M SDE", Some("Align Your Steps"))
        );
        assert_eq!(
            label(SchedulerKind::EulerAys, &euler_karras_config()),
            ("Euler", Some("Align Your Steps"))
        );
        assert_eq!(label(SchedulerKind::Lcm, &sd15), ("LCM", None));
        assert_eq!(label(SchedulerKind::Heun, &sd15), ("Heun", None));
        assert_eq!(label(SchedulerKind::Lms, &sd15), ("LMS", None));
        assert_eq!(
            label(SchedulerKind::LmsKarras, &sd15),
            ("LMS", Some("Karras"))
        );
        let lms_karras =
            config(r#"{"_class_name": "LMSDiscreteScheduler", "use_karras_sigmas": true}"#);
        assert_eq!(label(SchedulerKind::Lms, &lms_karras), ("LMS", None));
        assert_eq!(label(SchedulerKind::Dpm2, &sd15), ("DPM2", None));
        assert_eq!(label(SchedulerKind::UniPc, &sd15), ("UniPC", None));
        assert_eq!(label(SchedulerKind::Ddpm, &sd15), ("DDPM", None));
        assert_eq!(label(SchedulerKind::Dpm2Ancestral, &sd15), ("DPM2 a", None));
        let dpm2_karras =
            config(r#"{"_class_name": "KDPM2DiscreteScheduler", "use_karras_sigmas": true}"#);
        assert_eq!(
            label(SchedulerKind::Default, &dpm2_karras),
            ("DPM2", Some("Karras"))
        );
        let heun_karras =
            config(r#"{"_class_name": "HeunDiscreteScheduler", "use_karras_sigmas": true}"#);
        assert_eq!(
            label(SchedulerKind::Default, &heun_karras),
            ("Heun", Some("Karras"))
        );

        let dpm_karras =
            config(r#"{"_class_name": "DPMSolverMultistepScheduler", "use_karras_sigmas": true}"#);
        assert_eq!(
            label(SchedulerKind::Default, &dpm_karras),
            ("DPM++ 2M", Some("Karras"))
        );
        // Picking plain dpmpp-2m turns the model's Karras sigmas off.
        assert_eq!(
            label(SchedulerKind::DpmPp2m, &dpm_karras),
            ("DPM++ 2M", None)
        );
        let sde = config(
            r#"{"_class_name": "DPMSolverMultistepScheduler", "algorithm_type": "sde-dpmsolver++",
                "use_karras_sigmas": true}"#,
        );
        assert_eq!(
            label(SchedulerKind::Default, &sde),
            ("DPM++ 2M SDE", Some("Karras"))
        );
        // dpmpp-2m names the ODE solver whatever the model's algorithm_type.
        assert_eq!(label(SchedulerKind::DpmPp2m, &sde), ("DPM++ 2M", None));
        let euler_karras =
            config(r#"{"_class_name": "EulerDiscreteScheduler", "use_karras_sigmas": true}"#);
        assert_eq!(
            label(SchedulerKind::Default, &euler_karras),
            ("Euler", Some("Karras"))
        );
        // `euler` names the plain schedule, `euler-exponential` the exponential one.
        assert_eq!(label(SchedulerKind::Euler, &euler_karras), ("Euler", None));
        assert_eq!(
            label(SchedulerKind::EulerExponential, &euler_karras),
            ("Euler", Some("Exponential"))
        );
        assert_eq!(
            label(SchedulerKind::DpmPp2mExponential, &sd15),
            ("DPM++ 2M", Some("Exponential"))
        );
        let dpm_exponential = config(
            r#"{"_class_name": "DPMSolverMultistepScheduler", "use_exponential_sigmas": true}"#,
        );
        assert_eq!(
            label(SchedulerKind::Default, &dpm_exponential),
            ("DPM++ 2M", Some("Exponential"))
        );
        assert_eq!(
            label(SchedulerKind::DpmPp2mKarras, &dpm_exponential),
            ("DPM++ 2M", Some("Karras"))
        );
        // The kinds with an sde sibling do not keep the model's algorithm; the others keep its
        // schedule.
        assert_eq!(
            label(SchedulerKind::Heun, &euler_karras),
            ("Heun", Some("Karras"))
        );
        // A key diffusers filled in from defaults does not count.
        let defaulted = config(
            r#"{"_class_name": "EulerDiscreteScheduler", "use_karras_sigmas": true,
                "_use_default_values": ["use_karras_sigmas"]}"#,
        );
        assert_eq!(label(SchedulerKind::Default, &defaulted), ("Euler", None));
    }

    #[test]
    fn default_kind_needs_a_supported_class() {
        let msg = build_err(
            SchedulerKind::Default,
            r#"{"_class_name": "FlowMatchEulerDiscreteScheduler"}"#,
        );
        assert!(msg.contains("FlowMatchEulerDiscreteScheduler"), "{msg}");
        for class in SUPPORTED_CLASSES {
            assert!(msg.contains(class), "{msg}");
        }
        let msg = build_err(SchedulerKind::Default, "{}");
        assert!(msg.contains("_class_name"), "{msg}");
        // An explicit kind does not need the class name.
        assert!(build_scheduler(SchedulerKind::Euler, &config("{}"), 20, SD).is_ok());
    }

    #[test]
    fn unsupported_values_are_reported_with_key_and_value() {
        let cases = [
            (
                SchedulerKind::Ddim,
                r#"{"thresholding": true}"#,
                "thresholding",
            ),
            (
                SchedulerKind::Euler,
                r#"{"beta_schedule": "sigmoid"}"#,
                "sigmoid",
            ),
            (
                SchedulerKind::Euler,
                r#"{"interpolation_type": "log_linear"}"#,
                "log_linear",
            ),
            (
                SchedulerKind::Pndm,
                r#"{"prediction_type": "sample"}"#,
                "prediction_type",
            ),
            (
                SchedulerKind::EulerAncestral,
                r#"{"prediction_type": "sample"}"#,
                "sample",
            ),
            (
                SchedulerKind::Ddim,
                r#"{"timestep_spacing": "middle"}"#,
                "middle",
            ),
            (
                SchedulerKind::Default,
                r#"{"_class_name": "DPMSolverMultistepScheduler", "algorithm_type": "sde-dpmsolver"}"#,
                "algorithm_type = sde-dpmsolver ",
            ),
            (
                SchedulerKind::Default,
                r#"{"_class_name": "DPMSolverMultistepScheduler", "final_sigmas_type": "denoise_to_zero"}"#,
                "final_sigmas_type",
            ),
            (
                SchedulerKind::Heun,
                r#"{"use_karras_sigmas": true, "use_exponential_sigmas": true}"#,
                "only one of",
            ),
        ];
        for (kind, text, needle) in cases {
            let msg = build_err(kind, text);
            assert!(msg.contains(needle), "{text}: {msg}");
        }
        // Every class with a sigma schedule takes the beta one.
        let beta = config(r#"{"use_beta_sigmas": true}"#);
        for kind in SchedulerKind::ALL {
            if kind != SchedulerKind::Default
                && sigma_schedule(kind, &beta, 10, SD).unwrap().is_some()
            {
                assert!(build_scheduler(kind, &beta, 10, SD).is_ok(), "{kind}");
            }
        }
        // Values a class does not take are ignored, as diffusers' from_config drops them.
        let cfg = config(r#"{"thresholding": true, "algorithm_type": "sde-dpmsolver++"}"#);
        assert!(build_scheduler(SchedulerKind::Euler, &cfg, 20, SD).is_ok());
        // dpmpp-2m names the algorithm, so it overrides the model's.
        assert!(build_scheduler(SchedulerKind::DpmPp2m, &cfg, 20, SD).is_err()); // thresholding
        let cfg = config(r#"{"algorithm_type": "sde-dpmsolver", "solver_order": 3}"#);
        assert!(build_scheduler(SchedulerKind::DpmPp2m, &cfg, 20, SD).is_ok());
        assert!(build_scheduler(SchedulerKind::DpmPp2mSde, &cfg, 20, SD).is_ok());
        // UniPC from a DPM-Solver config: its solver names map to bh2, as in diffusers.
        let dpm = config(
            r#"{"_class_name": "DPMSolverMultistepScheduler", "solver_type": "midpoint",
                "algorithm_type": "dpmsolver++", "solver_order": 2}"#,
        );
        assert!(build_scheduler(SchedulerKind::UniPc, &dpm, 20, SD).is_ok());
        for (text, needle) in [
            (r#"{"use_flow_sigmas": true}"#, "use_flow_sigmas"),
            (r#"{"solver_type": "bh3"}"#, "bh3"),
            (r#"{"solver_order": 4}"#, "solver_order"),
            (
                r#"{"prediction_type": "flow_prediction"}"#,
                "flow_prediction",
            ),
        ] {
            let msg = build_err(SchedulerKind::UniPc, text);
            assert!(msg.contains(needle), "{text}: {msg}");
        }
        for (text, needle) in [
            (r#"{"variance_type": "learned_range"}"#, "learned_range"),
            (r#"{"variance_type": "fixed_large_log"}"#, "fixed_large_log"),
            (r#"{"thresholding": true}"#, "thresholding"),
            (r#"{"beta_schedule": "sigmoid"}"#, "sigmoid"),
        ] {
            let msg = build_err(SchedulerKind::Ddpm, text);
            assert!(msg.contains(needle), "{text}: {msg}");
        }
    }

    #[test]
    fn invalid_step_counts_are_errors() {
        let sd15 = config(SD15);
        for kind in SchedulerKind::ALL {
            assert!(build_scheduler(kind, &sd15, 0, SD).is_err(), "{kind}");
            assert!(build_scheduler(kind, &sd15, 1001, SD).is_err(), "{kind}");
        }
        // LCM's timesteps are a subset of its 50-step distillation schedule.
        assert!(build_scheduler(SchedulerKind::Lcm, &sd15, 51, SD).is_err());
        assert!(build_scheduler(SchedulerKind::Lcm, &sd15, 50, SD).is_ok());
        // Align Your Steps is published for 10 steps.
        for kind in [
            SchedulerKind::EulerAys,
            SchedulerKind::DpmPp2mAys,
            SchedulerKind::DpmPp2mSdeAys,
        ] {
            for steps in [9, 11, 25] {
                let Err(err) = build_scheduler(kind, &sd15, steps, SD) else {
                    panic!("{kind} built with {steps} steps");
                };
                assert!(err.to_string().contains("Align Your Steps"), "{err}");
            }
            assert!(build_scheduler(kind, &sd15, 10, SD).is_ok(), "{kind}");
        }
    }

    #[test]
    fn align_your_steps_runs_the_list_for_the_family() {
        let sd15 = config(SD15);
        let timesteps = |kind: SchedulerKind, family: Family| {
            build_scheduler(kind, &sd15, 10, family)
                .expect("builds")
                .timesteps()
                .to_vec()
        };
        let sd = [
            999.0, 850.0, 736.0, 645.0, 545.0, 455.0, 343.0, 233.0, 124.0, 24.0,
        ];
        let xl = [
            999.0, 845.0, 730.0, 587.0, 443.0, 310.0, 193.0, 116.0, 53.0, 13.0,
        ];
        for kind in [
            SchedulerKind::EulerAys,
            SchedulerKind::DpmPp2mAys,
            SchedulerKind::DpmPp2mSdeAys,
        ] {
            assert_eq!(timesteps(kind, Family::StableDiffusion), sd, "{kind}");
            assert_eq!(timesteps(kind, Family::StableDiffusionXl), xl, "{kind}");
        }
        // The family changes nothing else.
        assert_eq!(
            timesteps(SchedulerKind::DpmPp2m, Family::StableDiffusionXl),
            timesteps(SchedulerKind::DpmPp2m, Family::StableDiffusion)
        );
        // A model config asking for Karras sigmas runs the list on the plain sigmas (diffusers
        // refuses custom timesteps with Karras sigmas).
        let karras = config(r#"{"use_karras_sigmas": true}"#);
        let sigmas = sigma_schedule(SchedulerKind::DpmPp2mAys, &karras, 10, SD)
            .expect("builds")
            .expect("sigmas");
        let plain = sigma_schedule(SchedulerKind::DpmPp2mAys, &config("{}"), 10, SD)
            .expect("builds")
            .expect("sigmas");
        assert_eq!(sigmas, plain);
    }

    #[test]
    fn each_kind_applies_its_own_class_defaults() {
        let sd15 = config(SD15);
        let timesteps = |kind: SchedulerKind, n: usize| {
            build_scheduler(kind, &sd15, n, SD)
                .expect("builds")
                .timesteps()
                .to_vec()
        };
        // PNDM (PLMS): leading + steps_offset, second timestep repeated.
        assert_eq!(
            timesteps(SchedulerKind::Default, 4),
            [751.0, 501.0, 501.0, 251.0, 1.0]
        );
        assert_eq!(
            timesteps(SchedulerKind::Pndm, 4),
            [751.0, 501.0, 501.0, 251.0, 1.0]
        );
        // DDIM keeps the config's leading spacing and offset.
        assert_eq!(
            timesteps(SchedulerKind::Ddim, 4),
            [751.0, 501.0, 251.0, 1.0]
        );
        // Euler and DPM-Solver default to linspace when the config has no timestep_spacing.
        assert_eq!(
            timesteps(SchedulerKind::Euler, 4),
            [999.0, 666.0, 333.0, 0.0]
        );
        assert_eq!(
            timesteps(SchedulerKind::DpmPp2m, 4),
            [999.0, 749.0, 500.0, 250.0]
        );
        // DPM-Solver singlestep takes no spacing or offset: always linspace.
        assert_eq!(
            timesteps(SchedulerKind::DpmPp2s, 4),
            [999.0, 749.0, 500.0, 250.0]
        );
        // LCM ignores spacing and offset.
        assert_eq!(
            timesteps(SchedulerKind::Lcm, 4),
            [999.0, 759.0, 499.0, 259.0]
        );
        // LMS: Euler's timesteps (Karras: from the respaced sigmas).
        assert_eq!(timesteps(SchedulerKind::Lms, 4), [999.0, 666.0, 333.0, 0.0]);
        // DDPM keeps the config's leading spacing and offset, like DDIM.
        assert_eq!(
            timesteps(SchedulerKind::Ddpm, 4),
            [751.0, 501.0, 251.0, 1.0]
        );
        // UniPC: DPM-Solver's spacing.
        assert_eq!(
            timesteps(SchedulerKind::UniPc, 4),
            [999.0, 749.0, 500.0, 250.0]
        );
        // DPM2: each later timestep preceded by its midpoint's (DPM2 a: each step's midpoint
        // right after it).
        assert_eq!(timesteps(SchedulerKind::Dpm2, 4).len(), 7);
        assert_eq!(timesteps(SchedulerKind::Dpm2Ancestral, 4).len(), 7);
        // Heun: Euler's linspace timesteps, all but the first evaluated twice.
        assert_eq!(
            timesteps(SchedulerKind::Heun, 4),
            [999.0, 666.0, 666.0, 333.0, 333.0, 0.0, 0.0]
        );
    }

    #[test]
    fn img2img_start_index_follows_python_truncation() {
        assert_eq!(img2img_start_index(50, 1.0), 0);
        assert_eq!(img2img_start_index(50, 0.75), 13); // int(37.5) = 37
        assert_eq!(img2img_start_index(50, 0.3), 35); // 50 * 0.3 = 15.000000000000002
        assert_eq!(img2img_start_index(100, 0.29), 72); // 100 * 0.29 = 28.999999999999996
        assert_eq!(img2img_start_index(10, 0.7), 3); // 7.000000000000001
        assert_eq!(img2img_start_index(25, 0.6), 10);
        assert_eq!(img2img_start_index(4, 0.1), 4); // nothing to denoise
        assert_eq!(img2img_start_index(20, 1.5), 0);
        assert_eq!(img2img_start_index(20, -0.5), 20);
    }
}
