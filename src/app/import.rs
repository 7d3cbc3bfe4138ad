//! Settings from an A1111 `parameters` text (a PNG made by us, A1111, Forge or civitai)
//! back into the panels.

use crate::formats::parameters::GenerationParameters;
use crate::pipeline::schedulers::SchedulerKind;

use super::state::{snap_to_grid, State, MAX_BATCH, MAX_GUIDANCE, MAX_STEPS};

/// The scheduler A1111's `Sampler` (+ `Schedule type`) label stands for, when we have it.
///
/// A1111 writes e.g. `Sampler: DPM++ 2M, Schedule type: Karras`; older versions fold the
/// schedule into the name (`DPM++ 2M Karras`), which the parser already splits off.
/// "Automatic" is A1111's own default schedule, which for these samplers means the plain one.
pub fn scheduler_from_a1111(sampler: &str, schedule_type: Option<&str>) -> Option<SchedulerKind> {
    let sampler = sampler.trim();
    let schedule = schedule_type
        .map(str::trim)
        .filter(|s| !s.eq_ignore_ascii_case("automatic"));
    let karras = schedule.is_some_and(|s| s.eq_ignore_ascii_case("karras"));
    let plain = schedule.is_none() || schedule.is_some_and(|s| s.eq_ignore_ascii_case("uniform"));
    match sampler.to_ascii_lowercase().as_str() {
        "euler a" | "euler_a" | "euler ancestral" if plain => Some(SchedulerKind::EulerAncestral),
        "euler" if plain => Some(SchedulerKind::Euler),
        "ddim" if plain => Some(SchedulerKind::Ddim),
        "plms" | "pndm" if plain => Some(SchedulerKind::Pndm),
        "lcm" if plain => Some(SchedulerKind::Lcm),
        "dpm++ 2m" | "dpmpp_2m" if karras => Some(SchedulerKind::DpmPp2mKarras),
        "dpm++ 2m" | "dpmpp_2m" if plain => Some(SchedulerKind::DpmPp2m),
        _ => None,
    }
}

/// Copies prompt, negative prompt, steps, CFG, seed (locked, since the point is to get the
/// same image again), size, sampler and denoising strength into `state`. Returns what could
/// not be taken over, one sentence each, for the user to see.
pub fn apply_parameters(state: &mut State, params: &GenerationParameters) -> Vec<String> {
    let mut skipped = Vec::new();
    state.prompt = params.prompt.clone();
    state.negative_prompt = params.negative_prompt.clone();
    state.steps = params.steps.clamp(1, MAX_STEPS);
    if params.cfg_scale.is_finite() {
        state.guidance = params.cfg_scale.clamp(0.0, MAX_GUIDANCE);
    }
    state.seed = params.seed;
    state.seed_locked = true;
    if params.width > 0 && params.height > 0 {
        state.width = snap_to_grid(params.width);
        state.height = snap_to_grid(params.height);
        if (state.width, state.height) != (params.width, params.height) {
            skipped.push(format!(
                "Size {}×{} is not a multiple of 8; using {}×{}.",
                params.width, params.height, state.width, state.height
            ));
        }
    }
    match scheduler_from_a1111(&params.sampler, params.schedule_type.as_deref()) {
        Some(kind) => state.scheduler = kind,
        None => {
            let label = match &params.schedule_type {
                Some(schedule) => format!("{} ({schedule})", params.sampler),
                None => params.sampler.clone(),
            };
            skipped.push(format!(
                "Sampler \"{label}\" is not available here; kept {}.",
                state.scheduler.name()
            ));
        }
    }
    if let Some(strength) = params.denoising_strength {
        if strength > 0.0 && strength <= 1.0 {
            state.strength = strength;
        }
    }
    state.batch_count = state.batch_count.clamp(1, MAX_BATCH);
    skipped
}

#[cfg(test)]
mod tests {
    use super::*;

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
            ("DPM++ 2M", Some("Exponential"), None),
            ("DPM++ SDE", Some("Karras"), None),
            ("Heun", None, None),
        ];
        for (sampler, schedule, expected) in cases {
            assert_eq!(
                scheduler_from_a1111(sampler, schedule),
                expected,
                "{sampler} {schedule:?}"
            );
        }
    }

    #[test]
    fn parameters_restore_settings_and_report_what_was_skipped() {
        let text = "a lighthouse at dusk\nNegative prompt: fog\nSteps: 31, Sampler: DPM++ SDE, Schedule type: Karras, CFG scale: 6.5, Seed: 987654, Size: 516x640, Model: x";
        let params = GenerationParameters::parse_a1111(text).expect("parse");
        let mut state = State::default();
        let skipped = apply_parameters(&mut state, &params);
        assert_eq!(state.prompt, "a lighthouse at dusk");
        assert_eq!(state.negative_prompt, "fog");
        assert_eq!(state.steps, 31);
        assert_eq!(state.guidance, 6.5);
        assert_eq!(state.seed, 987_654);
        assert!(state.seed_locked);
        assert_eq!((state.width, state.height), (520, 640));
        assert_eq!(state.scheduler, SchedulerKind::Default);
        assert_eq!(skipped.len(), 2, "{skipped:?}");
    }
}
