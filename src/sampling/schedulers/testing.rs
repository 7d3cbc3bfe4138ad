//! Unit-test support: runs a scheduler on the fake model the reference numbers were made with.
//!
//! The reference values in the scheduler modules' tests were computed with diffusers 0.42.1:
//!
//! ```python
//! s = Class(**config); s.set_timesteps(steps)
//! g = torch.Generator().manual_seed(0)
//! x = torch.randn((1, 2, 2, 4), generator=g) * s.init_noise_sigma
//! # img2img instead: begin = t_start; s.set_begin_index(begin);
//! #   x = s.add_noise(randn(seed 1), randn(seed 2), s.timesteps[begin:][:1])
//! for t in s.timesteps[begin:]:
//!     model_output = 0.5 * s.scale_model_input(x, t) + 0.001 * float(t)
//!     x = s.step(model_output, t, x, generator=g, [eta=0.0]).prev_sample
//! ```

use candle_core::{Device, Tensor};

use super::{build_scheduler, img2img_start_index, sigma_schedule, SchedulerConfig, SchedulerKind};
use crate::sampling::noise::TorchRng;

const SHAPE: [usize; 4] = [1, 2, 2, 4];

pub(crate) struct Img2Img {
    pub strength: f64,
    pub begin: usize,
    pub noised: &'static [f64],
}

pub(crate) struct Reference {
    pub steps: usize,
    pub timesteps: &'static [f64],
    pub sigmas: Option<&'static [f64]>,
    pub init_noise_sigma: f64,
    pub img2img: Option<Img2Img>,
    pub final_sample: &'static [f64],
}

fn assert_close_rel(what: &str, got: &[f64], want: &[f64], rtol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: {got:?} vs {want:?}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            g == w || (g - w).abs() <= rtol * w.abs(),
            "{what}[{i}]: {g} vs {w} (all: {got:?})"
        );
    }
}

fn assert_close_abs(what: &str, got: &Tensor, want: &[f64], atol: f64) {
    let got: Vec<f32> = got
        .flatten_all()
        .and_then(|t| t.to_vec1())
        .expect("tensor values");
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (*g as f64 - w).abs() <= atol,
            "{what}[{i}]: {g} vs {w} (all: {got:?})"
        );
    }
}

fn randn(seed: u64) -> Tensor {
    TorchRng::new(seed)
        .randn_tensor(&SHAPE, &Device::Cpu)
        .expect("randn")
}

/// Builds `config` as its own class and compares everything with the reference.
pub(crate) fn check_reference(config_json: &str, reference: &Reference) {
    let config = SchedulerConfig::from_json_str(config_json).expect("config parses");
    let kind = SchedulerKind::Default;
    let mut scheduler = build_scheduler(kind, &config, reference.steps).expect("builds");

    assert_close_rel(
        "timesteps",
        scheduler.timesteps(),
        reference.timesteps,
        1e-6,
    );
    let sigmas = sigma_schedule(kind, &config, reference.steps).expect("sigmas");
    match (sigmas, reference.sigmas) {
        (Some(got), Some(want)) => {
            let got: Vec<f64> = got.iter().map(|&s| s as f64).collect();
            assert_close_rel("sigmas", &got, want, 1e-6);
        }
        (None, None) => {}
        (got, want) => panic!("sigmas: {got:?} vs {want:?}"),
    }
    let ins = scheduler.init_noise_sigma();
    assert!(
        (ins - reference.init_noise_sigma).abs() <= 1e-6 * reference.init_noise_sigma,
        "init_noise_sigma {ins} vs {}",
        reference.init_noise_sigma
    );

    let mut rng = TorchRng::new(0);
    let (mut x, begin) = match &reference.img2img {
        None => (
            rng.randn_tensor(&SHAPE, &Device::Cpu)
                .and_then(|x| x.affine(ins, 0.0))
                .expect("initial noise"),
            0,
        ),
        Some(img2img) => {
            let begin = img2img_start_index(reference.steps, img2img.strength);
            assert_eq!(begin, img2img.begin, "img2img start index");
            let noised = scheduler
                .add_noise(&randn(1), &randn(2), begin)
                .expect("add_noise");
            assert_close_abs("noised", &noised, img2img.noised, 1e-5);
            (noised, begin)
        }
    };
    let timesteps = scheduler.timesteps().to_vec();
    for (i, &t) in timesteps.iter().enumerate().skip(begin) {
        let x_in = scheduler.scale_model_input(&x, i).expect("scale");
        let model_output = x_in.affine(0.5, 0.001 * t).expect("fake model");
        x = scheduler
            .step(&model_output, i, &x, &mut rng)
            .expect("step")
            .prev_sample;
    }
    assert_close_abs("final sample", &x, reference.final_sample, 1e-4);
}
