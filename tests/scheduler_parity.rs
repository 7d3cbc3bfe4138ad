//! Scheduler parity with diffusers 0.42.1 on the fixtures of `tests/fixtures/schedulers.*` and,
//! for the samplers added after those were made, `tests/fixtures/schedulers_more.*` (generated
//! by `tests/fixtures/make_fixtures.py`, stages `schedulers` and `schedulers_more`): timesteps,
//! sigmas, `init_noise_sigma`, and full `step()` trajectories driven by the fake model
//! `model_output = 0.5 * scale_model_input(x, t) + 0.001 * t`, for txt2img and img2img.
//!
//! Every case is built twice: as the user would pick it (`SchedulerKind` from the case's
//! scheduler name, applied to the model's own scheduler config — this exercises the
//! `from_config` defaults), and as `SchedulerKind::Default` from the resolved config diffusers
//! wrote for the built scheduler.

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use latent_studio::sampling::noise::TorchRng;
use latent_studio::sampling::schedulers::{
    build_scheduler, img2img_start_index, sigma_schedule, Scheduler, SchedulerConfig, SchedulerKind,
};
use serde_json::Value;

const TIMESTEP_RTOL: f64 = 1e-6;
const SIGMA_RTOL: f64 = 1e-6;
const TRAJ_ATOL: f32 = 1e-4;

/// The model configs the fixture cases start from (public `scheduler_config.json` values).
fn base_config(name: &str) -> SchedulerConfig {
    let sd15 = r#"{"_class_name": "PNDMScheduler", "beta_start": 0.00085, "beta_end": 0.012,
        "beta_schedule": "scaled_linear", "num_train_timesteps": 1000, "set_alpha_to_one": false,
        "skip_prk_steps": true, "steps_offset": 1, "clip_sample": false, "trained_betas": null,
        "timestep_spacing": "leading", "prediction_type": "epsilon"}"#;
    let text = match name {
        "sd1" => sd15.to_string(),
        "sd2v" => r#"{"_class_name": "DDIMScheduler", "beta_start": 0.00085, "beta_end": 0.012,
            "beta_schedule": "scaled_linear", "num_train_timesteps": 1000, "clip_sample": false,
            "set_alpha_to_one": false, "skip_prk_steps": true, "steps_offset": 1,
            "trained_betas": null, "prediction_type": "v_prediction",
            "timestep_spacing": "leading"}"#
            .to_string(),
        "turbo" => r#"{"_class_name": "EulerDiscreteScheduler", "beta_start": 0.00085,
            "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000,
            "clip_sample": false, "interpolation_type": "linear", "prediction_type": "epsilon",
            "sample_max_value": 1.0, "set_alpha_to_one": false, "skip_prk_steps": true,
            "steps_offset": 1, "timestep_spacing": "trailing", "trained_betas": null,
            "use_karras_sigmas": false}"#
            .to_string(),
        "linspace" => sd15.replace("\"leading\"", "\"linspace\""),
        "ddim_alpha1" => sd15.replace("\"set_alpha_to_one\": false", "\"set_alpha_to_one\": true"),
        other => panic!("unknown fixture config {other}"),
    };
    SchedulerConfig::from_json_str(&text).expect("base config parses")
}

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn to_vec_f64(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1::<f64>())
        .expect("tensor to vec")
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    a.to_dtype(DType::F32)
        .and_then(|a| a.sub(&b.to_dtype(DType::F32)?))
        .and_then(|d| d.abs())
        .and_then(|d| d.flatten_all())
        .and_then(|d| d.max(0))
        .and_then(|d| d.to_scalar::<f32>())
        .expect("diff")
}

fn max_rel_diff(got: &[f64], want: &[f64]) -> f64 {
    got.iter()
        .zip(want)
        .map(|(g, w)| {
            if g == w {
                0.0
            } else {
                (g - w).abs() / w.abs().max(1e-12)
            }
        })
        .fold(0.0, f64::max)
}

/// `0.5 * x_in + 0.001 * float(t)` in float32, as torch evaluates it.
fn fake_model(x_in: &Tensor, t: f64) -> Tensor {
    x_in.affine(0.5, 0.001 * t).expect("fake model")
}

struct Worst {
    timesteps: f64,
    sigmas: f64,
    traj: f32,
    traj_case: String,
}

#[test]
fn schedulers_match_diffusers_fixtures() {
    check_fixture_file("schedulers");
}

#[test]
fn added_samplers_match_diffusers_fixtures() {
    check_fixture_file("schedulers_more");
}

/// Every case of `<basename>.json` / `<basename>.safetensors`.
fn check_fixture_file(basename: &str) {
    let dir = fixtures_dir();
    let json_path = dir.join(format!("{basename}.json"));
    let st_path = dir.join(format!("{basename}.safetensors"));
    if !json_path.exists() || !st_path.exists() {
        panic!("missing scheduler fixtures in {}", dir.display());
    }
    // Python writes `-Infinity` for DPM-Solver's `lambda_min_clipped`; quote it so the file is
    // JSON (SchedulerConfig accepts the quoted form).
    let text = std::fs::read_to_string(&json_path)
        .expect("read json")
        .replace("-Infinity", "\"-Infinity\"");
    let meta: Value = serde_json::from_str(&text).expect("parse json");
    let tensors: HashMap<String, Tensor> =
        candle_core::safetensors::load(&st_path, &Device::Cpu).expect("load safetensors");
    let cases = meta["cases"].as_array().expect("cases");
    assert!(!cases.is_empty());

    let mut failures = Vec::new();
    // Overall and per scheduler name (in the order first met).
    let new_worst = || Worst {
        timesteps: 0.0,
        sigmas: 0.0,
        traj: 0.0,
        traj_case: String::new(),
    };
    let mut worst = new_worst();
    let mut per_scheduler: Vec<(String, Worst)> = Vec::new();
    for case in cases {
        let name = case["name"].as_str().expect("name");
        let kind: SchedulerKind = case["scheduler"]
            .as_str()
            .expect("scheduler")
            .parse()
            .expect("known kind");
        let steps = case["steps"].as_u64().expect("steps") as usize;
        let resolved =
            SchedulerConfig::from_json_str(&case["config"].to_string()).expect("config parses");
        let builds = [
            (
                kind,
                base_config(case["config_name"].as_str().expect("config_name")),
            ),
            (SchedulerKind::Default, resolved),
        ];
        let scheduler = case["scheduler"].as_str().expect("scheduler").to_string();
        if !per_scheduler.iter().any(|(s, _)| *s == scheduler) {
            per_scheduler.push((scheduler.clone(), new_worst()));
        }
        let own = per_scheduler
            .iter_mut()
            .find_map(|(s, w)| (*s == scheduler).then_some(w))
            .expect("just added");
        for (kind, config) in builds {
            let label = format!("{name} [{kind}]");
            if let Err(e) = check_case(case, name, kind, &config, steps, &tensors, own) {
                failures.push(format!("{label}: {e}"));
            }
        }
    }
    for (scheduler, w) in &per_scheduler {
        eprintln!(
            "  {scheduler}: timestep rel err {:.3e}, sigma rel err {:.3e}, trajectory abs err {:.3e} ({})",
            w.timesteps, w.sigmas, w.traj, w.traj_case
        );
        worst.timesteps = worst.timesteps.max(w.timesteps);
        worst.sigmas = worst.sigmas.max(w.sigmas);
        if w.traj > worst.traj {
            worst.traj = w.traj;
            worst.traj_case = w.traj_case.clone();
        }
    }
    eprintln!(
        "{basename}: {} cases; worst timestep rel err {:.3e}, sigma rel err {:.3e}, trajectory abs err {:.3e} ({})",
        cases.len(),
        worst.timesteps,
        worst.sigmas,
        worst.traj,
        worst.traj_case
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn check_case(
    case: &Value,
    name: &str,
    kind: SchedulerKind,
    config: &SchedulerConfig,
    steps: usize,
    tensors: &HashMap<String, Tensor>,
    worst: &mut Worst,
) -> Result<(), String> {
    let get = |key: &str| {
        tensors
            .get(&format!("{name}/{key}"))
            .ok_or_else(|| format!("fixture tensor {name}/{key} missing"))
    };
    let mut scheduler: Box<dyn Scheduler> =
        build_scheduler(kind, config, steps).map_err(|e| format!("build: {e}"))?;

    // Timesteps, exactly as the UNet sees them.
    let want_ts = to_vec_f64(get("timesteps")?);
    let got_ts = scheduler.timesteps().to_vec();
    if got_ts.len() != want_ts.len() {
        return Err(format!("timesteps {got_ts:?} vs {want_ts:?}"));
    }
    let ts_err = max_rel_diff(&got_ts, &want_ts);
    worst.timesteps = worst.timesteps.max(ts_err);
    if ts_err > TIMESTEP_RTOL {
        return Err(format!(
            "timesteps rel err {ts_err:e}: {got_ts:?} vs {want_ts:?}"
        ));
    }

    // Sigmas.
    let sigmas = sigma_schedule(kind, config, steps).map_err(|e| e.to_string())?;
    match (sigmas, case["has_sigmas"].as_bool().unwrap_or(false)) {
        (Some(got), true) => {
            let got: Vec<f64> = got.iter().map(|&s| s as f64).collect();
            let want = to_vec_f64(get("sigmas")?);
            if got.len() != want.len() {
                return Err(format!("sigmas {got:?} vs {want:?}"));
            }
            let err = max_rel_diff(&got, &want);
            worst.sigmas = worst.sigmas.max(err);
            if err > SIGMA_RTOL {
                return Err(format!("sigmas rel err {err:e}: {got:?} vs {want:?}"));
            }
        }
        (None, false) => {}
        (got, want) => {
            return Err(format!(
                "sigma schedule presence: ours {}, diffusers {want}",
                got.is_some()
            ))
        }
    }

    // init_noise_sigma.
    let want_ins = to_vec_f64(get("init_noise_sigma")?)[0];
    let got_ins = scheduler.init_noise_sigma();
    if (got_ins - want_ins).abs() > 1e-6 * want_ins.abs() {
        return Err(format!("init_noise_sigma {got_ins} vs {want_ins}"));
    }

    // The trajectory.
    let traj = get("traj")?;
    let x0s = if case["has_x0"].as_bool().unwrap_or(false) {
        Some(get("x0")?)
    } else {
        None
    };
    let mut rng = TorchRng::new(0);
    let device = Device::Cpu;
    let (mut x, begin) = match case.get("strength").and_then(Value::as_f64) {
        None => {
            let x = rng
                .randn_tensor(&[1, 4, 8, 8], &device)
                .and_then(|x| x.affine(got_ins, 0.0))
                .map_err(|e| e.to_string())?;
            (x, 0)
        }
        Some(strength) => {
            let begin = img2img_start_index(steps, strength) * scheduler.order();
            let want_begin = case["begin_index"].as_u64().unwrap_or(0) as usize;
            if begin != want_begin {
                return Err(format!("img2img begin index {begin} vs {want_begin}"));
            }
            let original = tensors.get("img2img/original").ok_or("img2img/original")?;
            let noise = tensors.get("img2img/noise").ok_or("img2img/noise")?;
            let noised = scheduler
                .add_noise(original, noise, begin)
                .map_err(|e| e.to_string())?;
            let err = max_abs_diff(&noised, get("noised")?);
            if err > TRAJ_ATOL {
                return Err(format!("add_noise max abs err {err:e}"));
            }
            (noised, begin)
        }
    };
    let first = traj.get(0).map_err(|e| e.to_string())?;
    let err0 = max_abs_diff(&x, &first);
    if err0 > TRAJ_ATOL {
        return Err(format!("initial sample max abs err {err0:e}"));
    }
    let n_steps = got_ts.len() - begin;
    let traj_len = traj.dim(0).map_err(|e| e.to_string())?;
    if traj_len != n_steps + 1 {
        return Err(format!(
            "trajectory has {traj_len} entries, we run {n_steps} steps"
        ));
    }
    for k in 0..n_steps {
        let i = begin + k;
        let t = got_ts[i];
        let x_in = scheduler
            .scale_model_input(&x, i)
            .map_err(|e| e.to_string())?;
        let model_output = fake_model(&x_in, t);
        let out = scheduler
            .step(&model_output, i, &x, &mut rng)
            .map_err(|e| format!("step {i}: {e}"))?;
        let want = traj.get(k + 1).map_err(|e| e.to_string())?;
        let err = max_abs_diff(&out.prev_sample, &want);
        if err > worst.traj {
            worst.traj = err;
            worst.traj_case = format!("{name} [{kind}] step {k}");
        }
        if err > TRAJ_ATOL {
            return Err(format!(
                "step {k} (t = {t}) prev_sample max abs err {err:e}"
            ));
        }
        if let Some(x0s) = x0s {
            let want_x0 = x0s.get(k).map_err(|e| e.to_string())?;
            let got_x0 = out
                .pred_original_sample
                .as_ref()
                .ok_or_else(|| format!("step {k}: no pred_original_sample"))?;
            let err = max_abs_diff(got_x0, &want_x0);
            if err > TRAJ_ATOL {
                return Err(format!("step {k} (t = {t}) x0 max abs err {err:e}"));
            }
        }
        x = out.prev_sample;
    }
    Ok(())
}
