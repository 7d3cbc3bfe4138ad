//! A1111's names for the samplers, in one place: what PNGs record (`Sampler`, `Schedule
//! type`), what the window's sampler list shows, and how a dropped PNG's names map back.

use super::{
    effective_config, resolve_class, SchedulerClass, SchedulerConfig, SchedulerConfigError,
    SchedulerKind, SigmaSchedule,
};

/// A1111's schedule type for NVIDIA's Align Your Steps schedules.
const ALIGN_YOUR_STEPS: &str = "Align Your Steps";

/// How A1111 names a sampler in its `parameters` text (`Sampler: ...`, `Schedule type: ...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SamplerLabel {
    pub sampler: &'static str,
    /// `Some("Karras")` / `Some("Exponential")` / `Some("Beta")` / `Some("Align Your Steps")` for
    /// non-default sigma schedules.
    pub schedule_type: Option<&'static str>,
}

/// The sampler each selectable kind is in A1111: `(kind, Sampler, Schedule type)`.
#[rustfmt::skip]
const NAMES: [(SchedulerKind, &str, Option<&str>); 25] = [
    (SchedulerKind::Ddim, "DDIM", None),
    (SchedulerKind::Pndm, "PLMS", None),
    (SchedulerKind::Euler, "Euler", None),
    (SchedulerKind::EulerExponential, "Euler", Some("Exponential")),
    (SchedulerKind::EulerBeta, "Euler", Some("Beta")),
    (SchedulerKind::EulerAys, "Euler", Some(ALIGN_YOUR_STEPS)),
    (SchedulerKind::EulerAncestral, "Euler a", None),
    (SchedulerKind::DpmPp2m, "DPM++ 2M", None),
    (SchedulerKind::DpmPp2mKarras, "DPM++ 2M", Some("Karras")),
    (SchedulerKind::DpmPp2mExponential, "DPM++ 2M", Some("Exponential")),
    (SchedulerKind::DpmPp2mBeta, "DPM++ 2M", Some("Beta")),
    (SchedulerKind::DpmPp2mAys, "DPM++ 2M", Some(ALIGN_YOUR_STEPS)),
    (SchedulerKind::DpmPp2mSde, "DPM++ 2M SDE", None),
    (SchedulerKind::DpmPp2mSdeKarras, "DPM++ 2M SDE", Some("Karras")),
    (SchedulerKind::DpmPp2mSdeBeta, "DPM++ 2M SDE", Some("Beta")),
    (SchedulerKind::DpmPp2mSdeAys, "DPM++ 2M SDE", Some(ALIGN_YOUR_STEPS)),
    // Not an A1111 sampler: A1111's "DPM++ 2S a" is ancestral (k-diffusion's
    // sample_dpmpp_2s_ancestral: noise at every step, the model evaluated at each step's midpoint);
    // diffusers' singlestep solver adds no noise and pairs grid timesteps. So PNGs say "DPM++ 2S"
    // and "DPM++ 2S a" is not read as this.
    (SchedulerKind::DpmPp2s, "DPM++ 2S", None),
    (SchedulerKind::Lcm, "LCM", None),
    (SchedulerKind::Heun, "Heun", None),
    (SchedulerKind::Lms, "LMS", None),
    (SchedulerKind::LmsKarras, "LMS", Some("Karras")),
    (SchedulerKind::Dpm2, "DPM2", None),
    (SchedulerKind::Dpm2Ancestral, "DPM2 a", None),
    (SchedulerKind::UniPc, "UniPC", None),
    // Not an A1111 sampler: the name this app writes and reads back.
    (SchedulerKind::Ddpm, "DDPM", None),
];

/// Other spellings of A1111 sampler names found in PNGs (its internal names, older labels).
const ALIASES: [(&str, &str); 7] = [
    ("euler_a", "Euler a"),
    ("euler ancestral", "Euler a"),
    ("pndm", "PLMS"),
    ("dpmpp_2m", "DPM++ 2M"),
    ("dpmpp_2m_sde", "DPM++ 2M SDE"),
    ("k_euler", "Euler"),
    ("dpm2_ancestral", "DPM2 a"),
];

impl SchedulerKind {
    /// The A1111 `Sampler` and `Schedule type` for PNG metadata. `Default` is resolved through
    /// the config's class (and its `use_karras_sigmas`).
    pub fn a1111_label(
        self,
        config: &SchedulerConfig,
    ) -> Result<SamplerLabel, SchedulerConfigError> {
        let class = resolve_class(self, config)?;
        let config = effective_config(self, config);
        let karras = config.get("use_karras_sigmas", &config.use_karras_sigmas) == Some(true);
        let exponential =
            config.get("use_exponential_sigmas", &config.use_exponential_sigmas) == Some(true);
        let beta = config.get("use_beta_sigmas", &config.use_beta_sigmas) == Some(true);
        let sigma_schedule = if self.sigma_schedule() == Some(SigmaSchedule::AlignYourSteps) {
            Some(ALIGN_YOUR_STEPS)
        } else if karras {
            Some("Karras")
        } else if exponential {
            Some("Exponential")
        } else if beta {
            Some("Beta")
        } else {
            None
        };
        let (sampler, schedule_type) = match class {
            SchedulerClass::Ddim => ("DDIM", None),
            SchedulerClass::Pndm => ("PLMS", None),
            SchedulerClass::Euler => ("Euler", sigma_schedule),
            SchedulerClass::EulerAncestral => ("Euler a", None),
            SchedulerClass::DpmSolverMultistep => {
                let order = config
                    .get("solver_order", &config.solver_order)
                    .unwrap_or(2);
                let sde = config
                    .get("algorithm_type", &config.algorithm_type)
                    .as_deref()
                    == Some("sde-dpmsolver++");
                let sampler = match (order, sde) {
                    (1, false) => "DPM++ 1M",
                    (3, false) => "DPM++ 3M",
                    (_, false) => "DPM++ 2M",
                    (1, true) => "DPM++ 1M SDE",
                    (3, true) => "DPM++ 3M SDE",
                    (_, true) => "DPM++ 2M SDE",
                };
                (sampler, sigma_schedule)
            }
            SchedulerClass::DpmSolverSinglestep => {
                let order = config
                    .get("solver_order", &config.solver_order)
                    .unwrap_or(2);
                let sde = config
                    .get("algorithm_type", &config.algorithm_type)
                    .as_deref()
                    == Some("sde-dpmsolver++");
                let sampler = match (order, sde) {
                    (1, false) => "DPM++ 1S",
                    (3, false) => "DPM++ 3S",
                    (_, false) => "DPM++ 2S",
                    (1, true) => "DPM++ 1S SDE",
                    (3, true) => "DPM++ 3S SDE",
                    (_, true) => "DPM++ 2S SDE",
                };
                (sampler, sigma_schedule)
            }
            SchedulerClass::Lcm => ("LCM", None),
            SchedulerClass::Heun => ("Heun", sigma_schedule),
            SchedulerClass::Lms => ("LMS", sigma_schedule),
            SchedulerClass::Kdpm2 => ("DPM2", sigma_schedule),
            SchedulerClass::Kdpm2Ancestral => ("DPM2 a", sigma_schedule),
            SchedulerClass::UniPc => ("UniPC", sigma_schedule),
            SchedulerClass::Ddpm => ("DDPM", None),
        };
        Ok(SamplerLabel {
            sampler,
            schedule_type,
        })
    }
    /// A1111's `sampler_name` and schedule type (`scheduler`) for this kind, as a client
    /// sends them to A1111's API; `None` for `Default` (the model's own scheduler).
    pub fn a1111_request_names(self) -> Option<(&'static str, Option<&'static str>)> {
        NAMES
            .iter()
            .find(|(kind, ..)| *kind == self)
            .map(|(_, sampler, schedule)| (*sampler, *schedule))
    }

    /// The name a user of A1111 knows this kind by, for the sampler list ("DPM++ 2M Karras").
    pub fn a1111_name(self) -> String {
        NAMES
            .iter()
            .find(|(kind, ..)| *kind == self)
            .map(|(_, sampler, schedule)| match schedule {
                Some(schedule) => format!("{sampler} {schedule}"),
                None => sampler.to_string(),
            })
            .unwrap_or_else(|| "Model default".to_string())
    }

    /// The kind a PNG's `Sampler` and `Schedule type` name, when we have it ("Automatic" is
    /// the sampler's own schedule, "Uniform" the plain one).
    pub fn from_a1111(sampler: &str, schedule_type: Option<&str>) -> Option<SchedulerKind> {
        let sampler = sampler.trim();
        let sampler = ALIASES
            .iter()
            .find(|(alias, _)| alias.eq_ignore_ascii_case(sampler))
            .map_or(sampler, |(_, name)| name);
        let schedule = schedule_type
            .map(str::trim)
            .filter(|s| !s.eq_ignore_ascii_case("automatic") && !s.eq_ignore_ascii_case("uniform"));
        NAMES
            .iter()
            .find(|(_, name, named_schedule)| {
                name.eq_ignore_ascii_case(sampler)
                    && match (schedule, named_schedule) {
                        (None, None) => true,
                        (Some(given), Some(named)) => given.eq_ignore_ascii_case(named),
                        _ => false,
                    }
            })
            .map(|(kind, ..)| *kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn a1111_sampler_labels_map_to_schedulers() {
        let cases = [
            ("Euler a", None, Some(SchedulerKind::EulerAncestral)),
            ("Euler", None, Some(SchedulerKind::Euler)),
            ("Euler", Some("Automatic"), Some(SchedulerKind::Euler)),
            ("DDIM", None, Some(SchedulerKind::Ddim)),
            ("PLMS", None, Some(SchedulerKind::Pndm)),
            ("LCM", None, Some(SchedulerKind::Lcm)),
            ("DPM++ 2M", None, Some(SchedulerKind::DpmPp2m)),
            (
                "DPM++ 2M",
                Some("Karras"),
                Some(SchedulerKind::DpmPp2mKarras),
            ),
            (
                "DPM++ 2M",
                Some("Exponential"),
                Some(SchedulerKind::DpmPp2mExponential),
            ),
            (
                "Euler",
                Some("Exponential"),
                Some(SchedulerKind::EulerExponential),
            ),
            ("Euler", Some("Karras"), None),
            ("Euler", Some("Beta"), Some(SchedulerKind::EulerBeta)),
            ("DPM++ 2M", Some("beta"), Some(SchedulerKind::DpmPp2mBeta)),
            (
                "DPM++ 2M SDE",
                Some("Beta"),
                Some(SchedulerKind::DpmPp2mSdeBeta),
            ),
            ("Heun", Some("Beta"), None),
            (
                "DPM++ 2M SDE",
                Some("Align Your Steps"),
                Some(SchedulerKind::DpmPp2mSdeAys),
            ),
            (
                "Euler",
                Some("align your steps"),
                Some(SchedulerKind::EulerAys),
            ),
            ("Euler a", Some("Align Your Steps"), None),
            ("DPM++ 2M SDE", Some("Exponential"), None),
            ("DPM++ SDE", Some("Karras"), None),
            ("DPM++ SDE", None, None),
            ("DPM++ 2M SDE", None, Some(SchedulerKind::DpmPp2mSde)),
            ("dpmpp_2m_sde", None, Some(SchedulerKind::DpmPp2mSde)),
            (
                "DPM++ 2M SDE",
                Some("Karras"),
                Some(SchedulerKind::DpmPp2mSdeKarras),
            ),
            ("DPM++ 2M SDE Heun", None, None),
            ("DPM++ 3M SDE", None, None),
            ("DPM++ 2S", None, Some(SchedulerKind::DpmPp2s)),
            ("DPM++ 2S a", None, None),
            ("DPM++ 2S a", Some("Karras"), None),
            ("Heun", None, Some(SchedulerKind::Heun)),
            ("heun", Some("Automatic"), Some(SchedulerKind::Heun)),
            ("Heun", Some("Karras"), None),
            ("LMS", None, Some(SchedulerKind::Lms)),
            ("LMS", Some("Karras"), Some(SchedulerKind::LmsKarras)),
            ("lms", Some("Automatic"), Some(SchedulerKind::Lms)),
            ("LMS", Some("Exponential"), None),
            ("DPM2", None, Some(SchedulerKind::Dpm2)),
            ("DPM2 a", None, Some(SchedulerKind::Dpm2Ancestral)),
            ("dpm2_ancestral", None, Some(SchedulerKind::Dpm2Ancestral)),
            ("DPM2 a", Some("Karras"), None),
            ("UniPC", None, Some(SchedulerKind::UniPc)),
            ("unipc", Some("Uniform"), Some(SchedulerKind::UniPc)),
            ("DDPM", None, Some(SchedulerKind::Ddpm)),
            ("euler_a", None, Some(SchedulerKind::EulerAncestral)),
            ("DPM++ 2M", Some("Uniform"), Some(SchedulerKind::DpmPp2m)),
        ];
        for (sampler, schedule, expected) in cases {
            assert_eq!(
                SchedulerKind::from_a1111(sampler, schedule),
                expected,
                "{sampler} {schedule:?}"
            );
        }
    }

    #[test]
    fn request_names_read_back_as_the_kind() {
        for kind in SchedulerKind::ALL {
            match kind.a1111_request_names() {
                // A client sends "Uniform" for a sampler's plain schedule.
                Some((sampler, schedule)) => assert_eq!(
                    SchedulerKind::from_a1111(sampler, Some(schedule.unwrap_or("Uniform"))),
                    Some(kind)
                ),
                None => assert_eq!(kind, SchedulerKind::Default),
            }
        }
    }

    #[test]
    fn every_selectable_kind_reads_back_from_its_own_name() {
        for kind in SchedulerKind::ALL {
            let name = kind.a1111_name();
            // The sampler list shows "Sampler Schedule"; PNGs carry the two apart.
            let (sampler, schedule) = match NAMES.iter().find(|(k, ..)| *k == kind) {
                Some((_, sampler, schedule)) => (*sampler, *schedule),
                None => (name.as_str(), None),
            };
            let expected = (kind != SchedulerKind::Default).then_some(kind);
            assert_eq!(
                SchedulerKind::from_a1111(sampler, schedule),
                expected,
                "{name}"
            );
            // What a PNG records for the kind names the kind again (on a config that sets no
            // sigma schedule of its own).
            if kind != SchedulerKind::Default {
                let config = SchedulerConfig::default();
                let label = kind.a1111_label(&config).expect("label");
                assert_eq!(
                    SchedulerKind::from_a1111(label.sampler, label.schedule_type),
                    Some(kind),
                    "{name}: {label:?}"
                );
                let shown = match label.schedule_type {
                    Some(schedule) => format!("{} {schedule}", label.sampler),
                    None => label.sampler.to_string(),
                };
                assert_eq!(shown, name);
            }
        }
    }
}
