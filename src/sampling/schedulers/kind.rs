//! The samplers a user picks (`--scheduler`, the window's list) and how each maps onto a
//! diffusers class and the keyword overrides of its `from_config`.

use std::fmt;
use std::str::FromStr;

use super::config::{SchedulerConfig, SchedulerConfigError};

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
    pub(crate) fn name(self) -> &'static str {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
