//! Depth Anything against Hugging Face transformers (tests/fixtures/make_depth_fixtures.py):
//! a tiny random-weight `DepthAnythingForDepthEstimation` saved with `save_pretrained`, the
//! PIL `DPTImageProcessor`'s `pixel_values` for a 64×48 picture, the predicted depth, and
//! the 8-bit map as sd-webui-controlnet's `depth_anything_v2` makes it.

use std::path::PathBuf;

use candle_core::{Device, Tensor};
use latent_studio::imaging::RgbImage;
use latent_studio::models::depth::load_depth_model;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn reference() -> std::collections::HashMap<String, Tensor> {
    candle_core::safetensors::load(fixtures().join("depth/depth_tiny.safetensors"), &Device::Cpu)
        .unwrap()
}

fn picture() -> RgbImage {
    image::open(fixtures().join("depth/picture_64x48.png"))
        .unwrap()
        .to_rgb8()
        .into()
}

fn values(t: &Tensor) -> Vec<f32> {
    t.to_dtype(candle_core::DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

#[test]
fn the_processor_input_matches_transformers() {
    let reference = reference();
    let expected = &reference["pixel_values"];
    let (_, _, h, w) = expected.dims4().unwrap();
    let input = latent_studio::imaging::depth::DepthInput {
        height: 56,
        width: 56,
        ..Default::default()
    };
    let (ours, width, height) = input.pixel_values(&picture());
    assert_eq!((width, height), (w, h));
    let worst = ours
        .iter()
        .zip(values(expected))
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    eprintln!("pixel_values: worst {worst}");
    assert!(worst <= 1e-5, "pixel_values differ by up to {worst}");
}

#[test]
fn depth_and_map_match_transformers() {
    let reference = reference();
    let model = load_depth_model(&fixtures().join("models/depth_tiny"), &Device::Cpu).unwrap();
    let (depth, w, h) = model.predict(&picture()).unwrap();
    let expected_depth = &reference["predicted_depth"];
    assert_eq!(expected_depth.dims(), &[1, h, w]);
    let expected = values(expected_depth);
    let range = expected.iter().copied().fold(f32::MIN, f32::max)
        - expected.iter().copied().fold(f32::MAX, f32::min);
    assert!(range > 0.0);
    let worst = depth
        .iter()
        .zip(&expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        worst <= 1e-4 * range,
        "depth differs by up to {worst} (range {range})"
    );

    eprintln!("depth: worst {worst}, range {range}");
    let map = model.depth_map(&picture()).unwrap();
    let expected_map = values(&reference["map"]);
    assert_eq!((map.width, map.height), (64, 48));
    let mut worst_map = 0;
    for (i, &e) in expected_map.iter().enumerate() {
        let ours = map.pixels[i * 3];
        assert_eq!(map.pixels[i * 3 + 1], ours);
        worst_map = worst_map.max((ours as i32 - e as i32).abs());
    }
    eprintln!("map: worst {worst_map}/255");
    assert!(worst_map <= 1, "map differs by up to {worst_map}/255");
}
