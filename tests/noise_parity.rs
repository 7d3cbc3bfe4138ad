//! Our noise against `torch.randn` with a seeded CPU generator (values recorded by make_fixtures.py).

use std::path::Path;

use candle_core::Device;
use latent_studio::sampling::noise::TorchRng;
use serde::Deserialize;

#[derive(Deserialize)]
struct Entry {
    key: String,
    seed: u64,
    shapes: Vec<Vec<usize>>,
}

#[derive(Deserialize)]
struct NoiseFixtures {
    entries: Vec<Entry>,
}

#[test]
fn every_recorded_draw_matches_torch() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let fixtures: NoiseFixtures =
        serde_json::from_str(&std::fs::read_to_string(dir.join("noise.json")).unwrap()).unwrap();
    let tensors =
        candle_core::safetensors::load(dir.join("noise.safetensors"), &Device::Cpu).unwrap();
    let mut checked = 0;
    let mut failures = Vec::new();
    for entry in &fixtures.entries {
        let mut rng = TorchRng::new(entry.seed);
        for (i, shape) in entry.shapes.iter().enumerate() {
            let name = if entry.shapes.len() == 1 {
                entry.key.clone()
            } else {
                format!("{}/{i}", entry.key)
            };
            let expected: Vec<f32> = tensors[&name].flatten_all().unwrap().to_vec1().unwrap();
            let ours = rng.randn(shape.iter().product());
            let max = ours
                .iter()
                .zip(&expected)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            if ours.len() != expected.len() || max > 1e-5 {
                failures.push(format!("{name}: max |Δ| {max}"));
            }
            checked += 1;
        }
    }
    assert!(checked >= 40, "only {checked} draws checked");
    assert!(
        failures.is_empty(),
        "noise differs from torch: {failures:?}"
    );
}

/// A1111's variation seeds: our mix of two seeds' noises against A1111's `slerp` formula
/// (`make_variation_fixtures.py`), including the nearly-parallel fallback (same seed twice).
#[test]
fn variation_seeds_mix_noise_as_a1111() {
    #[derive(serde::Deserialize)]
    struct VariationCase {
        seed: u64,
        variation_seed: u64,
        strength: f64,
        shape: Vec<usize>,
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let cases: Vec<VariationCase> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("variation.json")).unwrap())
            .unwrap();
    let expected =
        candle_core::safetensors::load(dir.join("variation.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(cases.len(), 4);
    for (i, case) in cases.iter().enumerate() {
        let noise = latent_studio::sampling::noise::TorchRng::new(case.seed)
            .randn_tensor(&case.shape, &Device::Cpu)
            .unwrap();
        let mixed = latent_studio::sampling::noise::a1111_variation(
            &noise,
            case.variation_seed,
            case.strength,
        )
        .unwrap();
        let reference = expected[&format!("case{i}")]
            .reshape(case.shape.as_slice())
            .unwrap();
        let diff: f32 = (mixed - reference)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!(diff < 1e-5, "case {i}: max difference {diff}");
    }
}
