//! The denoising loop and what drives it: schedulers (one file each, as diffusers has them),
//! torch-CPU-exact noise, and [`pipeline::DiffusionPipeline`], which runs txt2img and img2img
//! step for step as diffusers' pipelines do.

pub mod batch;
pub mod control;
pub mod inpaint;
pub mod noise;
pub mod pipeline;
pub mod schedulers;
