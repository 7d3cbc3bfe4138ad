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
//! Beside them: `kind.rs` (the samplers a user picks and the class and `from_config` overrides
//! each means), `sigmas.rs` (the sigma schedules the Karras-style samplers share), `ays.rs`
//! (Align Your Steps' published timesteps), `common.rs` (torch/numpy-exact schedule arithmetic),
//! `config.rs` (reading `scheduler_config.json`) and `a1111.rs` (A1111's sampler names, written to
//! and read from PNGs).
//!
//! Numerics follow diffusers operation by operation: schedules are built with torch's float32
//! and numpy's float64 rules (see `common.rs`), step coefficients are float32 scalars as the
//! 0-dim tensors diffusers computes them, and tensor arithmetic runs in float32 (a float16
//! model output or sample is upcast for the step and the result cast back; diffusers' DDIM,
//! PNDM and LCM would instead compute those in float16). The remaining difference on x86 is
//! torch's CPU `sqrt` (MKL VML), which is not correctly rounded: training sigmas and
//! `alpha ** 0.5` factors can be one float32 ulp apart from diffusers'.

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
mod kind;
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
pub(crate) use kind::{effective_config, resolve_class, SchedulerClass, SigmaSchedule};
pub use kind::{SchedulerKind, UnknownSchedulerKind};
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

    fn build_err(kind: SchedulerKind, text: &str) -> String {
        match build_scheduler(kind, &config(text), 20, SD) {
            Ok(_) => panic!("expected an error for {text}"),
            Err(e) => e.to_string(),
        }
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
