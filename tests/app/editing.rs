//! Editing around a generation: ControlNet units and inpainting masks, through the window.

use super::*;

/// A ControlNet unit set up in the window (ControlNet folder and picture through the dialogs)
/// reaches the image, whose record names it; dropping that image brings the unit back.
#[test]
fn a_controlnet_unit_reaches_the_image_and_comes_back_from_its_png() {
    let output = Scratch::new("controlnet-out");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let desktop = ScriptedDesktop::default();
    let mut harness = open_app(fixture_model("sd1"), &output.0, &desktop);
    wait_for_model(&mut harness);
    add_controlnet_unit(&mut harness);
    // Generating without a picture says what is missing and starts nothing.
    desktop.answer(fixtures.join("models/sd1_controlnet"));
    harness.get_by_label("Folder…").click();
    harness.run_steps(2);
    harness.get_by_label("Generate").click();
    harness.run_steps(2);
    assert!(harness.state().run().is_none());
    assert!(text_shown(&harness, "has no picture"));

    desktop.answer(fixtures.join("control_lines_64.png"));
    harness.get_by_label("Choose…").click();
    step_until(&mut harness, "the control picture", |app| {
        app.control_picture_name(0).is_some()
    });
    {
        let state = harness.state_mut().state_mut();
        state.steps = 2;
        state.width = 64;
        state.height = 64;
        state.prompt = "a house".into();
        state.control_units[0].weight = 0.8;
    }
    harness.get_by_label("Generate").click();
    step_until(&mut harness, "the image with the ControlNet", |app| {
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
    let parameters = read_png_parameters(&files[0])
        .expect("read")
        .expect("parameters");
    assert!(
        parameters.contains("ControlNet 0: \"Module: none, Model: sd1_controlnet, Weight: 0.8,"),
        "{parameters}"
    );

    // A fresh unit list, then the PNG dropped: the unit comes back with its ControlNet.
    harness.state_mut().state_mut().control_units.clear();
    drop_file(&mut harness, &files[0]);
    step_until(&mut harness, "the restored unit", |app| {
        app.state().control_units.len() == 1
    });
    let unit = &harness.state().state().control_units[0];
    assert_eq!(
        unit.model.as_deref(),
        Some(fixtures.join("models/sd1_controlnet").as_path())
    );
    assert!((unit.weight - 0.8).abs() < 1e-9);
}

#[test]
fn a_mask_painted_on_the_canvas_inpaints_and_is_kept_for_the_result() {
    let output = Scratch::new("inpaint-out");
    let files = Scratch::new("inpaint-files");
    let desktop = ScriptedDesktop::default();
    let mut harness = open_app(fixture_model("sd1"), &output.0, &desktop);
    wait_for_model(&mut harness);
    harness.state_mut().state_mut().steps = 2;

    let photo = files.0.join("photo.jpg");
    image::RgbImage::from_pixel(64, 64, image::Rgb([40, 120, 200]))
        .save(&photo)
        .expect("write jpeg");
    drop_file(&mut harness, &photo);
    step_until(&mut harness, "the start image", |app| {
        app.init_image().is_some()
    });
    // Tall enough for the img2img section, low in the panel, to be on screen.
    harness.set_size(egui::Vec2::new(1280.0, 1400.0));
    harness.run_steps(2);
    harness.get_by_label("Inpaint").click();
    harness.run_steps(3);
    assert!(harness.state().mask_editing());
    assert_eq!(
        harness.state().state().strength,
        1.0,
        "inpainting starts at diffusers' strength"
    );
    let mask = |harness: &Harness<'_, LatentStudioApp>| {
        let slot = harness.state().init_image().expect("start image");
        slot.mask.as_ref().expect("a mask").mask().clone()
    };
    assert!(mask(&harness).is_empty());
    harness.state_mut().state_mut().brush_size = 6.0;
    harness.state_mut().state_mut().brush_softness = 0.0;

    // Removing the mask goes back to img2img at the strength used before.
    harness.get_by_label("Remove mask").click();
    harness.run_steps(2);
    assert!(!harness.state().mask_editing());
    assert_eq!(harness.state().state().strength, 0.6);
    harness.get_by_label("Inpaint").click();
    harness.run_steps(3);
    assert!(harness.state().mask_editing());
    assert_eq!(harness.state().state().strength, 1.0);

    // A left-to-right stroke across the middle of the canvas, in a few far-apart samples.
    let canvas = harness.get_by_label("Mask canvas").rect();
    let (left, right, y) = (
        canvas.center().x - canvas.width() * 0.2,
        canvas.center().x + canvas.width() * 0.2,
        canvas.center().y,
    );
    harness.hover_at(egui::pos2(left, y));
    harness.run_steps(1);
    harness.drag_at(egui::pos2(left, y));
    harness.run_steps(1);
    for x in [left + 30.0, canvas.center().x, right] {
        harness.hover_at(egui::pos2(x, y));
        harness.run_steps(1);
    }
    harness.drop_at(egui::pos2(right, y));
    harness.run_steps(2);
    let painted = mask(&harness);
    // The picture is fitted into the canvas, so the stroke crosses its middle row.
    let row = &painted.pixels[32 * 64..33 * 64];
    assert_eq!(row[32], 255, "the stroke's middle is masked: {row:?}");
    assert!(
        row[..4].iter().chain(&row[60..]).all(|&v| v == 0),
        "the ends of the row are not: {row:?}"
    );
    assert!(
        painted.pixels[..64].iter().all(|&v| v == 0),
        "nor the top row"
    );

    // Ctrl+Z takes the stroke back, Ctrl+Shift+Z brings it again.
    harness.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    harness.run_steps(2);
    assert!(mask(&harness).is_empty());
    harness.key_press_modifiers(Modifiers::COMMAND | Modifiers::SHIFT, Key::Z);
    harness.run_steps(2);
    assert_eq!(mask(&harness), painted);

    // A click pressed and released within one frame still leaves a dab (below the stroke).
    let dot = egui::pos2(canvas.center().x, canvas.center().y + canvas.width() * 0.3);
    harness.hover_at(dot);
    harness.drag_at(dot);
    harness.drop_at(dot);
    harness.run_steps(2);
    let painted = mask(&harness);
    assert_eq!(painted.pixels[51 * 64 + 32], 255, "the dab is masked");

    harness.key_press_modifiers(Modifiers::COMMAND, Key::Enter);
    step_until(&mut harness, "the inpainted image", |app| {
        app.run().is_none() && app.history().len() == 1
    });
    assert!(
        !harness.state().mask_editing(),
        "the result is shown, not the mask"
    );
    let saved = pngs_in(&output.0);
    assert_eq!(saved.len(), 1);
    let parameters = read_png_parameters(&saved[0])
        .expect("read")
        .expect("a parameters chunk");
    assert!(parameters.contains("Mask blur: 4"), "{parameters}");
    assert!(parameters.contains("Denoising strength: 1"), "{parameters}");

    // "Inpaint" on the result starts again from it with the same mask.
    step_until(&mut harness, "the result on screen", |app| {
        app.shown_image().is_some()
    });
    harness.run_steps(2);
    harness.get_by_label("Inpaint").click();
    harness.run_steps(3);
    assert!(harness.state().mask_editing());
    let slot = harness.state().init_image().expect("start image");
    assert_ne!(slot.name, "photo.jpg", "the result is the new start image");
    assert_eq!(mask(&harness), painted);

    // Outpainting on the right: a wider picture, the new strip masked, the stroke kept.
    harness.get_by_label("Outpaint right").click();
    harness.run_steps(2);
    let slot = harness.state().init_image().expect("start image");
    assert_eq!((slot.image.width, slot.image.height), (128, 64));
    let grown = mask(&harness);
    assert_eq!((grown.width, grown.height), (128, 64));
    for y in [0, 32, 63] {
        let row = &grown.pixels[y * 128..(y + 1) * 128];
        assert!(row[64..].iter().all(|&v| v == 255), "new area masked");
        assert_eq!(
            row[..64],
            painted.pixels[y * 64..(y + 1) * 64],
            "old mask kept"
        );
    }
    assert_eq!(
        (
            harness.state().state().width,
            harness.state().state().height
        ),
        (128, 64)
    );

    // Dragging the bottom edge down by 64 picture pixels grows the picture there.
    let canvas = harness.get_by_label("Mask canvas").rect();
    let scale = (canvas.width() / 128.0).min(canvas.height() / 64.0);
    let below = egui::pos2(canvas.center().x, canvas.center().y + 32.0 * scale + 5.0);
    harness.hover_at(below);
    harness.run_steps(1);
    harness.drag_at(below);
    harness.run_steps(1);
    for step in 1..=4 {
        harness.hover_at(below + egui::vec2(0.0, 16.0 * step as f32 * scale));
        harness.run_steps(1);
    }
    harness.drop_at(below + egui::vec2(0.0, 64.0 * scale));
    harness.run_steps(2);
    let slot = harness.state().init_image().expect("start image");
    assert_eq!((slot.image.width, slot.image.height), (128, 128));
    assert_eq!(
        mask(&harness).pixels[100 * 128 + 10],
        255,
        "the new area is masked"
    );
    assert_eq!(
        mask(&harness).pixels[..64 * 128],
        grown.pixels[..],
        "the mask above is unchanged: the press grabbed the edge instead of painting"
    );
}

/// With the depth preprocessor, the unit's preview is the map the engine makes (the tiny
/// depth model through `LATENT_STUDIO_DEPTH_MODEL`); the window waits for it, no notice.
#[test]
fn a_depth_unit_previews_the_map_the_engine_makes() {
    let output = Scratch::new("depth-preview");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    // Only depth units read this variable; no other test of this binary makes one.
    std::env::set_var(
        latent_studio::engine::DEPTH_MODEL_ENV,
        fixtures.join("models/depth_tiny"),
    );
    let desktop = ScriptedDesktop::default();
    let mut harness = open_app(fixture_model("sd1"), &output.0, &desktop);
    wait_for_model(&mut harness);
    add_controlnet_unit(&mut harness);
    harness.state_mut().state_mut().control_units[0].preprocessor =
        latent_studio::engine::ControlPreprocessor::Depth;
    desktop.answer(fixtures.join("depth/picture_64x48.png"));
    harness.get_by_label("Choose…").click();
    step_until(&mut harness, "the control picture", |app| {
        app.control_picture_name(0).is_some()
    });
    step_until(&mut harness, "the engine's depth map", |app| {
        app.control_map_pending(0) == Some(false)
    });
    assert!(harness.state().notices().is_empty());
}

/// An XDoG unit's preview is the full-size map the engine makes (its blurs are sized in the
/// picture's pixels), asked for again when its threshold changes; a threshold unit has its
/// slider under the picker, with A1111's label.
#[test]
fn an_xdog_unit_previews_the_engines_map_and_shows_its_threshold_slider() {
    use latent_studio::engine::ControlPreprocessor;
    let output = Scratch::new("xdog-preview");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let desktop = ScriptedDesktop::default();
    let mut harness = open_app(fixture_model("sd1"), &output.0, &desktop);
    wait_for_model(&mut harness);
    add_controlnet_unit(&mut harness);
    harness.state_mut().state_mut().control_units[0].preprocessor =
        ControlPreprocessor::ScribbleXdog { threshold: 32 };
    desktop.answer(fixtures.join("control_lines_64.png"));
    harness.get_by_label("Choose…").click();
    step_until(&mut harness, "the control picture", |app| {
        app.control_picture_name(0).is_some()
    });
    assert_eq!(harness.state().control_map_pending(0), Some(true));
    step_until(&mut harness, "the engine's XDoG map", |app| {
        app.control_map_pending(0) == Some(false)
    });
    assert!(text_shown(&harness, "XDoG Threshold"));
    harness.state_mut().state_mut().control_units[0].preprocessor =
        ControlPreprocessor::ScribbleXdog { threshold: 10 };
    harness.run_steps(1);
    assert_eq!(harness.state().control_map_pending(0), Some(true));
    step_until(&mut harness, "the map for the new threshold", |app| {
        app.control_map_pending(0) == Some(false)
    });
    harness.state_mut().state_mut().control_units[0].preprocessor =
        ControlPreprocessor::Threshold { level: 127 };
    harness.run_steps(2);
    assert_eq!(harness.state().control_map_pending(0), Some(false));
    assert!(text_shown(&harness, "Binarization Threshold"));
    assert!(harness.state().notices().is_empty());
}

/// A map preview asked of an engine that stopped is asked again of the one restarted in its
/// place, instead of waiting for an answer that never comes.
#[test]
fn a_map_preview_asked_of_a_stopped_engine_comes_from_the_restarted_one() {
    use latent_studio::engine::ControlPreprocessor;
    let output = Scratch::new("xdog-restart");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let desktop = ScriptedDesktop::default();
    let mut harness = open_app(fixture_model("sd1"), &output.0, &desktop);
    wait_for_model(&mut harness);
    add_controlnet_unit(&mut harness);
    harness.state_mut().state_mut().control_units[0].preprocessor =
        ControlPreprocessor::ScribbleXdog { threshold: 32 };
    harness.state_mut().stop_engine();
    step_until(&mut harness, "the window to see the engine stop", |app| {
        app.engine_stopped()
    });
    desktop.answer(fixtures.join("control_lines_64.png"));
    harness.get_by_label("Choose…").click();
    step_until(&mut harness, "the control picture", |app| {
        app.control_picture_name(0).is_some()
    });
    harness.run_steps(2);
    assert_eq!(harness.state().control_map_pending(0), Some(true));
    harness.get_by_label("Restart engine").click();
    step_until(&mut harness, "the restarted engine's XDoG map", |app| {
        app.control_map_pending(0) == Some(false)
    });
}

/// The ControlNet picker offers the well-known hub ControlNets of the loaded model's family
/// (SD 1.5 here, not SDXL's); choosing one makes the unit's model that repository id.
#[test]
fn the_controlnet_picker_offers_the_families_hub_controlnets() {
    let output = Scratch::new("controlnet-catalog");
    let desktop = ScriptedDesktop::default();
    let mut harness = open_app(fixture_model("sd1"), &output.0, &desktop);
    wait_for_model(&mut harness);
    add_controlnet_unit(&mut harness);
    harness.state_mut().state_mut().control_units[0].model = None;
    harness.run_steps(2);
    harness.get_by_value("Choose a ControlNet…").click();
    harness.run_steps(2);
    assert!(text_shown(&harness, "lllyasviel/control_v11f1p_sd15_depth"));
    assert!(!text_shown(&harness, "diffusers/controlnet-canny-sdxl-1.0"));
    harness
        .get_by_label("lllyasviel/control_v11p_sd15_canny")
        .click();
    harness.run_steps(2);
    assert_eq!(
        harness.state().state().control_units[0].model,
        Some(PathBuf::from("lllyasviel/control_v11p_sd15_canny"))
    );
}

/// Opens the window with one ControlNet unit (no picture yet) on screen.
fn app_with_a_control_unit<'a>(
    output: &Path,
    desktop: &ScriptedDesktop,
) -> Harness<'a, LatentStudioApp> {
    let mut harness = open_app(fixture_model("sd1"), output, desktop);
    add_controlnet_unit(&mut harness);
    harness
}

/// A file dropped with the pointer on a ControlNet unit is that unit's picture — even a PNG
/// with settings, which are then not restored — and the start image stays empty; dropped
/// anywhere else, a picture still becomes the start image.
#[test]
fn a_file_dropped_on_a_controlnet_unit_is_its_picture() {
    let output = Scratch::new("unit-drop-out");
    let files = Scratch::new("unit-drop-files");
    let desktop = ScriptedDesktop::default();
    let mut harness = app_with_a_control_unit(&output.0, &desktop);
    let seed_before = harness.state().state().seed;

    let with_settings = files.0.join("pose.png");
    let parameters =
        "a dancer\nSteps: 23, Sampler: Euler, CFG scale: 6.5, Seed: 1234567, Size: 64x96";
    write_png_with_parameters(&with_settings, &[90; 4 * 4 * 3], 4, 4, parameters)
        .expect("write png");
    let on_unit = harness.get_by_label("No picture").rect().center();
    harness.hover_at(on_unit);
    harness.run_steps(1);
    drop_file(&mut harness, &with_settings);
    step_until(&mut harness, "the unit's picture", |app| {
        app.control_picture_name(0).is_some()
    });
    harness.run_steps(2);
    assert_eq!(harness.state().control_picture_name(0), Some("pose.png"));
    assert!(harness.state().init_image().is_none());
    assert_eq!(
        harness.state().state().seed,
        seed_before,
        "settings not restored"
    );
    assert_ne!(harness.state().state().steps, 23);
    assert!(text_shown(
        &harness,
        "pose.png is ControlNet unit 1's picture"
    ));

    // Elsewhere in the same panel (the prompt): the start image, as before.
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    harness.hover_at(harness.get_by_label("Prompt").rect().center());
    harness.run_steps(1);
    drop_file(&mut harness, &fixtures.join("init_64.png"));
    step_until(&mut harness, "the start image", |app| {
        app.init_image().is_some()
    });
    assert_eq!(harness.state().init_image().unwrap().name, "init_64.png");
    assert_eq!(harness.state().control_picture_name(0), Some("pose.png"));
}

/// A picture pasted with the pointer on a ControlNet unit is its picture;
/// pasted elsewhere, it is the start image.
#[test]
fn a_picture_pasted_on_a_controlnet_unit_is_its_picture() {
    let output = Scratch::new("unit-paste-out");
    let desktop = ScriptedDesktop::default();
    let mut harness = app_with_a_control_unit(&output.0, &desktop);

    let on_unit = harness.get_by_label("No picture").rect().center();
    harness.hover_at(on_unit);
    harness.run_steps(1);
    let picture = egui::ColorImage::filled([24, 16], egui::Color32::from_rgb(10, 200, 30));
    harness.event(egui::Event::PasteImage(Arc::new(picture)));
    harness.run_steps(2);
    assert_eq!(
        harness.state().control_picture_name(0),
        Some("pasted picture")
    );
    assert!(harness.state().init_image().is_none());
    assert!(text_shown(&harness, "is ControlNet unit 1's picture"));

    harness.hover_at(harness.get_by_label("Prompt").rect().center());
    harness.run_steps(1);
    let picture = egui::ColorImage::filled([8, 8], egui::Color32::WHITE);
    harness.event(egui::Event::PasteImage(Arc::new(picture)));
    harness.run_steps(2);
    let start = harness.state().init_image().expect("a start image");
    assert_eq!((start.image.width, start.image.height), (8, 8));
}

/// Winit reports no pointer position while a file is dragged: a drop made while the window
/// does not know where the pointer is waits for it, and lands on the unit the pointer turns
/// out to be on.
#[test]
fn a_drop_before_the_pointer_is_known_waits_for_it() {
    let output = Scratch::new("unit-drop-wait-out");
    let desktop = ScriptedDesktop::default();
    let mut harness = app_with_a_control_unit(&output.0, &desktop);
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let on_unit = harness.get_by_label("No picture").rect().center();

    harness.event(egui::Event::PointerGone);
    harness.run_steps(1);
    drop_file(&mut harness, &fixtures.join("control_lines_64.png"));
    harness.run_steps(2);
    harness.hover_at(on_unit);
    step_until(&mut harness, "the unit's picture", |app| {
        app.control_picture_name(0).is_some()
    });
    assert_eq!(
        harness.state().control_picture_name(0),
        Some("control_lines_64.png")
    );
    assert!(harness.state().init_image().is_none());
}
