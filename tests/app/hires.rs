//! The hires fix through the window: enabled under the size, an upscaler file through its
//! picker, both passes counted in the progress, the PNG at the larger size with A1111's keys,
//! and those keys restored from the image.

use super::*;
use latent_studio::engine::SchedulerKind;

#[test]
fn hires_fix_from_the_window_records_and_restores_its_keys() {
    let output = Scratch::new("hires-out");
    let upscaler = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/upscalers/compact_x2.safetensors");
    let desktop = ScriptedDesktop::default();
    let mut harness = open_app(fixture_model("sd1"), &output.0, &desktop);
    wait_for_model(&mut harness);
    harness.set_size(egui::Vec2::new(1280.0, 1400.0));
    harness.get_by_label("Hires. fix").click();
    harness.run_steps(2);
    assert!(harness.state().state().hires.enabled);
    desktop.answer(&upscaler);
    harness.get_by_label("File…").click();
    harness.run_steps(2);
    {
        let state = harness.state_mut().state_mut();
        assert_eq!(state.hires.upscaler.as_ref(), Some(&upscaler));
        state.steps = 2;
        state.scheduler = SchedulerKind::Euler;
        state.prompt = "a castle".into();
        state.hires.scale = 1.5;
        state.hires.steps = 4;
        state.hires.denoise = 0.5;
    }
    // The target size is shown beside the scale.
    harness.run_steps(2);
    assert!(text_shown(&harness, "96×96"));
    harness.get_by_label("Generate").click();
    // One count for both passes: 2 Euler steps, then 2 of the 4 at strength 0.5.
    step_until(&mut harness, "the progress of both passes", |app| {
        app.run().is_some_and(|run| run.total_steps == 4)
    });
    step_until(&mut harness, "the hires image", |app| {
        app.run().is_none() && app.history().len() == 1
    });
    let files = pngs_in(&output.0);
    assert_eq!(
        files.len(),
        1,
        "{:?}",
        harness
            .state()
            .notices()
            .iter()
            .map(|n| (&n.title, &n.detail))
            .collect::<Vec<_>>()
    );
    let picture = image::open(&files[0]).expect("png").to_rgb8();
    assert_eq!(picture.dimensions(), (96, 96));
    let parameters = read_png_parameters(&files[0])
        .expect("read")
        .expect("parameters");
    assert!(
        parameters.contains("Size: 64x64")
            && parameters.contains("Denoising strength: 0.5")
            && parameters
                .contains("Hires upscale: 1.5, Hires steps: 4, Hires upscaler: compact_x2"),
        "{parameters}"
    );

    // Reusing the image's parameters brings the pass back as it was.
    {
        let hires = &mut harness.state_mut().state_mut().hires;
        hires.enabled = false;
        hires.scale = 2.0;
        hires.steps = 0;
        hires.upscaler = None;
    }
    harness.get_by_label("Reuse parameters").click();
    harness.run_steps(2);
    let hires = &harness.state().state().hires;
    assert!(hires.enabled);
    assert_eq!((hires.scale, hires.steps, hires.denoise), (1.5, 4, 0.5));
    assert_eq!(hires.upscaler.as_ref(), Some(&upscaler));
}

/// "Upscale" on the shown image runs the upscaler through the engine and saves a new PNG
/// beside the outputs: the source's parameters plus A1111's postprocessing keys.
#[test]
fn upscaling_the_shown_image_saves_a_new_image() {
    let output = Scratch::new("upscale-out");
    let upscaler = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/upscalers/compact_x2.safetensors");
    let desktop = ScriptedDesktop::default();
    let mut harness = open_app(fixture_model("sd1"), &output.0, &desktop);
    wait_for_model(&mut harness);
    {
        let state = harness.state_mut().state_mut();
        state.steps = 2;
        state.prompt = "a harbour".into();
    }
    harness.get_by_label("Generate").click();
    step_until(&mut harness, "the image", |app| {
        app.run().is_none() && app.shown_image().is_some()
    });
    let source = pngs_in(&output.0);
    assert_eq!(source.len(), 1);
    let source_parameters = read_png_parameters(&source[0])
        .expect("read")
        .expect("parameters");

    desktop.answer(&upscaler);
    harness.get_by_label("Upscale").click();
    harness.run_steps(2);
    // After the files, the hub catalog (fetched on first use, so only shown here).
    assert!(text_shown(
        &harness,
        "Hugging Face (downloaded on first use)"
    ));
    for label in ["4x Remacri (ESRGAN)", "RealESRGAN x4plus anime 6B"] {
        assert!(text_shown(&harness, label), "{label}");
    }
    harness.get_by_label("Choose file…").click();
    step_until(&mut harness, "the upscaled image", |app| {
        app.run().is_none() && app.history().len() == 2
    });
    let files = pngs_in(&output.0);
    assert_eq!(
        files.len(),
        2,
        "{:?}",
        harness
            .state()
            .notices()
            .iter()
            .map(|n| (&n.title, &n.detail))
            .collect::<Vec<_>>()
    );
    let upscaled = files.iter().find(|f| **f != source[0]).expect("a new file");
    assert_eq!(
        image::open(upscaled).expect("png").to_rgb8().dimensions(),
        (128, 128)
    );
    assert_eq!(
        read_png_parameters(upscaled)
            .expect("read")
            .expect("parameters"),
        format!("{source_parameters}, Postprocess upscale by: 2, Postprocess upscaler: compact_x2")
    );
    // The result is shown, and the upscaler is offered in the menu from now on.
    let shown = harness.state().shown_image().expect("shown");
    assert_eq!((shown.width, shown.height), (128, 128));
    assert_eq!(
        harness.state().state().hires.recent_upscalers,
        vec![upscaler]
    );
}
