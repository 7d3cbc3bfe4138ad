//! Unit-test support: the scheduler modules' reference cases and the fake-model run they check.
//!
//! The reference values live in `tests/fixtures/scheduler_cases.json`, generated with diffusers
//! 0.42.1 by `tests/fixtures/make_fixtures.py --stages scheduler_cases` (which also holds each
//! case's config and step count, in `SCHEDULER_UNIT_CASES`), and, for the samplers added after
//! that file was made, in `tests/fixtures/scheduler_cases_more.json` (`--stages
//! scheduler_cases_more`, `SCHEDULER_UNIT_CASES_MORE`); both are read as one list. A case named
//! `<group>.<test>` is checked by the `#[test] fn <test>` of module `<group>`, declared with
//! [`reference_cases!`]:
//!
//! ```python
//! s = Class(**config); s.set_timesteps(steps)
//! g = torch.Generator().manual_seed(0)
//! x = torch.randn((1, 2, 2, 4), generator=g) * s.init_noise_sigma
//! # img2img instead: begin = t_start * s.order; s.set_begin_index(begin);
//! #   x = s.add_noise(randn(seed 1), randn(seed 2), s.timesteps[begin:][:1])
//! for t in s.timesteps[begin:]:
//!     model_output = 0.5 * s.scale_model_input(x, t) + 0.001 * float(t)
//!     x = s.step(model_output, t, x, generator=g, [eta=0.0]).prev_sample
//! ```

use std::sync::OnceLock;

use candle_core::{Device, Tensor};
use serde::Deserialize;
use serde_json::Value;

use super::{build_scheduler, img2img_start_index, sigma_schedule, SchedulerConfig, SchedulerKind};
use crate::networks::Family;
use crate::sampling::noise::TorchRng;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/scheduler_cases.json"
);
const FIXTURE_MORE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/scheduler_cases_more.json"
);
const FIXTURE_EXTRA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/scheduler_cases_extra.json"
);
/// Where the cases are, for messages.
const FIXTURES: &str =
    "scheduler_cases.json, scheduler_cases_more.json and scheduler_cases_extra.json";

const SHAPE: [usize; 4] = [1, 2, 2, 4];

#[derive(Deserialize)]
struct Fixture {
    cases: Vec<Case>,
    #[serde(default)]
    schedules: Vec<Schedule>,
    #[serde(default)]
    alphas_cumprod: AlphasCumprod,
    #[serde(default)]
    beta_ppf: Option<BetaPpf>,
}

/// `scipy.stats.beta.ppf(p, a, b)` at the probabilities `p` (`scheduler_cases_extra.json`).
#[derive(Deserialize)]
pub(crate) struct BetaPpf {
    pub a: f64,
    pub b: f64,
    pub p: Vec<f64>,
    pub x: Vec<f64>,
}

#[derive(Deserialize)]
struct Img2Img {
    strength: f64,
    begin: usize,
    noised: Vec<f64>,
}

/// One sampling run of a scheduler built from `config` as its own class.
#[derive(Deserialize)]
struct Case {
    name: String,
    config: Value,
    steps: usize,
    timesteps: Vec<f64>,
    sigmas: Option<Vec<f64>>,
    init_noise_sigma: f64,
    img2img: Option<Img2Img>,
    final_sample: Vec<f64>,
}

/// A schedule only (`set_timesteps`, no sampling run).
#[derive(Deserialize)]
pub(crate) struct Schedule {
    pub config: Value,
    pub steps: usize,
    pub timesteps: Vec<f64>,
    pub sigmas: Vec<f64>,
    name: String,
}

#[derive(Deserialize, Default)]
struct AlphasCumprod {
    cases: Vec<AlphasCumprodCase>,
}

/// `DDIMScheduler(**config).alphas_cumprod` at `indices` (float32 values), and the float64
/// sum of all entries.
#[derive(Deserialize)]
pub(crate) struct AlphasCumprodCase {
    pub config: BetaConfig,
    pub num_train_timesteps: usize,
    pub indices: Vec<usize>,
    pub entries: Vec<f64>,
    pub sum: f64,
}

#[derive(Deserialize)]
pub(crate) struct BetaConfig {
    pub beta_schedule: String,
    pub beta_start: f64,
    pub beta_end: f64,
    pub rescale_betas_zero_snr: bool,
}

fn read_fixture(path: &str) -> Fixture {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The fixture files as one: the cases and schedules of `scheduler_cases_more.json` and then
/// `scheduler_cases_extra.json` follow those of `scheduler_cases.json`.
fn fixture() -> &'static Fixture {
    static PARSED: OnceLock<Fixture> = OnceLock::new();
    PARSED.get_or_init(|| {
        let mut fixture = read_fixture(FIXTURE);
        for path in [FIXTURE_MORE, FIXTURE_EXTRA] {
            let more = read_fixture(path);
            fixture.cases.extend(more.cases);
            fixture.schedules.extend(more.schedules);
            fixture.beta_ppf = fixture.beta_ppf.or(more.beta_ppf);
        }
        fixture
    })
}

/// The fixture's schedule-only case `name`.
pub(crate) fn schedule(name: &str) -> &'static Schedule {
    fixture()
        .schedules
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("{FIXTURES} have no schedule {name}"))
}

/// The fixture's `scipy.stats.beta.ppf` values.
pub(crate) fn beta_ppf_reference() -> &'static BetaPpf {
    fixture()
        .beta_ppf
        .as_ref()
        .unwrap_or_else(|| panic!("{FIXTURES} have no beta_ppf"))
}

/// The fixture's schedule-only cases whose names start with `prefix`.
pub(crate) fn schedules_named(prefix: &str) -> Vec<&'static Schedule> {
    fixture()
        .schedules
        .iter()
        .filter(|s| s.name.starts_with(prefix))
        .collect()
}

/// The fixture's `alphas_cumprod` cases.
pub(crate) fn alphas_cumprod_cases() -> &'static [AlphasCumprodCase] {
    &fixture().alphas_cumprod.cases
}

/// A float32 value the fixture stores as a JSON number: serde_json's float parsing is not
/// always correctly rounded (one float64 ulp), which cannot move the nearest float32.
pub(crate) fn fixture_f32(value: f64) -> f32 {
    let single = value as f32;
    assert!(
        (single as f64 - value).abs() <= 1e-15 * value.abs(),
        "fixture value {value} is not a float32"
    );
    single
}

/// One `#[test]` per named reference case of `group` (the module's name), each checked by
/// [`check_case`], plus `fixture_has_exactly_these_cases`, which fails when the fixture has a
/// case of the group that no test names.
macro_rules! reference_cases {
    ($group:literal: $($name:ident),+ $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::sampling::schedulers::testing::check_case(concat!(
                    $group,
                    ".",
                    stringify!($name)
                ));
            }
        )+

        #[test]
        fn fixture_has_exactly_these_cases() {
            $crate::sampling::schedulers::testing::check_group(
                $group,
                &[$(stringify!($name)),+],
            );
        }
    };
}
pub(crate) use reference_cases;

/// The names of the fixture's cases in `group` are exactly `names`.
pub(crate) fn check_group(group: &str, names: &[&str]) {
    let prefix = format!("{group}.");
    let mut in_fixture: Vec<&str> = fixture()
        .cases
        .iter()
        .filter_map(|c| c.name.strip_prefix(&prefix))
        .collect();
    let mut names = names.to_vec();
    in_fixture.sort_unstable();
    names.sort_unstable();
    assert_eq!(
        in_fixture, names,
        "{group} cases in {FIXTURES} vs the tests"
    );
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

/// Builds the fixture case `name`'s config as its own class and compares everything with the
/// reference.
pub(crate) fn check_case(name: &str) {
    let reference = fixture()
        .cases
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("{FIXTURES} have no case {name}"));
    let config =
        SchedulerConfig::from_json_str(&reference.config.to_string()).expect("config parses");
    let kind = SchedulerKind::Default;
    let mut scheduler =
        build_scheduler(kind, &config, reference.steps, Family::StableDiffusion).expect("builds");

    assert_close_rel(
        "timesteps",
        scheduler.timesteps(),
        &reference.timesteps,
        1e-6,
    );
    let sigmas =
        sigma_schedule(kind, &config, reference.steps, Family::StableDiffusion).expect("sigmas");
    match (sigmas, &reference.sigmas) {
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
            let begin = img2img_start_index(reference.steps, img2img.strength) * scheduler.order();
            assert_eq!(begin, img2img.begin, "img2img start index");
            let noised = scheduler
                .add_noise(&randn(1), &randn(2), begin)
                .expect("add_noise");
            assert_close_abs("noised", &noised, &img2img.noised, 1e-5);
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
    assert_close_abs("final sample", &x, &reference.final_sample, 1e-4);
}
