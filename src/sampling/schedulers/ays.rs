//! Align Your Steps: Sabour, Fidler and Kreis, "Align Your Steps: Optimizing Sampling Schedules
//! in Diffusion Models" (NVIDIA, 2024). The schedule is not computed: it is a list of timesteps
//! optimised offline for each model, published for 10 steps. diffusers ships the lists as
//! `diffusers.schedulers.AysSchedules` and a pipeline runs one as `pipe(..., timesteps=list)`,
//! which calls `scheduler.set_timesteps(timesteps=list)`: the scheduler uses those timesteps in
//! place of its spacing (sigmas interpolated from the training ones, the usual final sigma) and
//! the run has as many steps as the list.
//!
//! NVIDIA published lists for SD 1.5 and SDXL only; SD 2.x models get the SD 1.5 list, as in
//! A1111. Other step counts are refused: diffusers has no way to stretch a list (A1111 instead
//! interpolates its sigma version log-linearly, so A1111's "Align Your Steps" at other step
//! counts, and even at 10, is a different schedule).

use crate::networks::Family;

/// The steps of the published schedules.
pub(crate) const STEPS: usize = 10;

/// `AysSchedules["StableDiffusionTimesteps"]`.
const SD15_TIMESTEPS: [i64; STEPS] = [999, 850, 736, 645, 545, 455, 343, 233, 124, 24];

/// `AysSchedules["StableDiffusionXLTimesteps"]`.
const SDXL_TIMESTEPS: [i64; STEPS] = [999, 845, 730, 587, 443, 310, 193, 116, 53, 13];

/// The published timesteps for a model of `family`.
pub(crate) fn timesteps(family: Family) -> &'static [i64; STEPS] {
    match family {
        Family::StableDiffusion => &SD15_TIMESTEPS,
        Family::StableDiffusionXl => &SDXL_TIMESTEPS,
    }
}
