//! What the desktop hands the app: a picture to open at start ("Open with Latent Studio"), and
//! the About window's account of the build.

use super::*;

/// `latent-studio PICTURE` (the desktop entry's `%f`) restores the settings of a PNG that has
/// them, as dropping it on the window does.
#[test]
fn a_picture_given_at_start_restores_its_settings() {
    let output = Scratch::new("open-with-out");
    let files = Scratch::new("open-with-files");
    let png = files.0.join("a castle.png");
    let parameters = "a castle on a hill\nNegative prompt: fog\nSteps: 17, Sampler: Euler a, CFG scale: 5, Seed: 987654, Size: 64x80, Version: v1.10.1";
    write_png_with_parameters(&png, &[90; 4 * 4 * 3], 4, 4, parameters).expect("write png");
    let config = AppConfig {
        model: Some(fixture_model("sd_turbo")),
        output_dir: Some(output.0.clone()),
        open_image: Some(png),
        desktop: Box::new(ScriptedDesktop::default()),
        restore_saved_state: false,
        queue_folder: None,
    };
    let mut harness = Harness::builder()
        .with_size([1280.0, 820.0])
        .build_eframe(move |cc| LatentStudioApp::new(cc, config));
    step_until(&mut harness, "the settings to be restored", |app| {
        app.state().seed == 987_654
    });
    let state = harness.state().state();
    assert_eq!(state.prompt, "a castle on a hill");
    assert_eq!(state.negative_prompt, "fog");
    assert_eq!((state.steps, state.guidance), (17, 5.0));
    assert_eq!((state.width, state.height), (64, 80));
}

#[test]
fn the_about_window_names_the_version_and_the_commit() {
    let output = Scratch::new("about");
    let desktop = ScriptedDesktop::default();
    let mut harness = open_app(fixture_model("sd_turbo"), &output.0, &desktop);
    harness.run_steps(2);
    assert!(!text_shown(&harness, latent_studio::GIT_COMMIT));
    harness.get_by_label("About").click();
    harness.run_steps(3);
    assert!(text_shown(&harness, env!("CARGO_PKG_VERSION")));
    assert!(text_shown(&harness, latent_studio::GIT_COMMIT));
    assert!(text_shown(&harness, &output.0.display().to_string()));
}
