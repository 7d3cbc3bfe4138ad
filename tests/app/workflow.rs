//! Daily conveniences around the prompt: A1111 styles, the theme, a pasted picture, and "1:1"
//! on a HiDPI screen.

use super::*;

use egui::{Color32, ColorImage, Theme};
use latent_studio::app::state::ThemeChoice;
use latent_studio::app::UiCommand;

const STYLES_CSV: &str = "name,prompt,negative_prompt\r\n\
                          Cinematic,\"cinematic still of {prompt}, film grain\",cartoon\r\n\
                          Sharp,sharp focus,\r\n";

/// A1111's styles.csv picked through the dialog: a chosen style reaches the image's prompt
/// (the prompt field keeps the user's text), prompts save as a style without losing the
/// others, "Apply to the prompts" merges and unchooses, and restoring an image's settings
/// unchooses styles (its prompt already holds them).
#[test]
fn a1111_styles_reach_the_image_and_are_saved_in_its_format() {
    let output = Scratch::new("styles-out");
    let styles_file = output.0.join("my styles.csv");
    std::fs::write(&styles_file, STYLES_CSV).unwrap();
    let images = output.0.join("images");
    let desktop = ScriptedDesktop::default();
    let mut harness = open_app(fixture_model("sd1"), &images, &desktop);
    wait_for_model(&mut harness);
    harness.set_size(egui::Vec2::new(1280.0, 1400.0));
    harness.get_by_label("Styles").click();
    harness.run_steps(2);
    desktop.answer(&styles_file);
    harness.get_by_label("Use another styles.csv…").click();
    // Read on the file thread.
    wait_for_text(&mut harness, "Cinematic");
    harness.get_by_label("Cinematic").click();
    harness.get_by_label("Sharp").click();
    harness.run_steps(2);
    assert_eq!(
        harness.state().state().selected_styles,
        ["Cinematic", "Sharp"]
    );
    {
        let state = harness.state_mut().state_mut();
        state.prompt = "a cat".into();
        state.negative_prompt = "blurry".into();
        state.steps = 2;
        state.width = 64;
        state.height = 64;
    }
    harness.get_by_label("Generate").click();
    step_until(&mut harness, "the styled image", |app| {
        app.run().is_none() && app.history().len() == 1
    });
    let files = pngs_in(&images);
    assert_eq!(files.len(), 1);
    let parameters = read_png_parameters(&files[0]).unwrap().unwrap();
    assert!(
        parameters.starts_with(
            "cinematic still of a cat, film grain, sharp focus\nNegative prompt: blurry, cartoon\n"
        ),
        "{parameters}"
    );
    assert_eq!(harness.state().state().prompt, "a cat");

    // Saved as a style: a new row, the others kept, in A1111's CSV.
    harness.state_mut().state_mut().prompt = "{prompt}, at dusk".into();
    harness.state_mut().state_mut().new_style_name = "Dusk, warm".into();
    harness.run_steps(1);
    harness.get_by_label("Save prompts as style").click();
    wait_for_text(&mut harness, "Style \"Dusk, warm\" saved");
    assert_eq!(
        std::fs::read_to_string(&styles_file).unwrap(),
        format!("{STYLES_CSV}\"Dusk, warm\",\"{{prompt}}, at dusk\",blurry\r\n")
    );
    assert!(text_shown(&harness, "Dusk, warm"));

    // Merged into the fields and unchosen.
    harness.state_mut().state_mut().prompt = "a boat".into();
    harness.run_steps(1);
    harness.get_by_label("Apply to the prompts").click();
    harness.run_steps(2);
    let state = harness.state().state();
    assert_eq!(
        state.prompt,
        "cinematic still of a boat, film grain, sharp focus"
    );
    assert_eq!(state.negative_prompt, "blurry, cartoon");
    assert!(state.selected_styles.is_empty());

    // Deleting keeps the rest; restoring an image's settings unchooses styles.
    harness.state_mut().state_mut().selected_styles = vec!["Sharp".into()];
    let ctx = harness.ctx.clone();
    harness
        .state_mut()
        .apply(&ctx, UiCommand::DeleteStyle("Dusk, warm".into()));
    wait_for_text(&mut harness, "deleted");
    assert_eq!(std::fs::read_to_string(&styles_file).unwrap(), STYLES_CSV);
    drop_file(&mut harness, &files[0]);
    step_until(&mut harness, "the restored settings", |app| {
        app.state().selected_styles.is_empty()
    });
    assert_eq!(
        harness.state().state().prompt,
        "cinematic still of a cat, film grain, sharp focus"
    );

    // A file that is not a styles file is reported, and never overwritten by a save.
    let not_styles = output.0.join("notes.csv");
    std::fs::write(&not_styles, "title,text\nA,b\n").unwrap();
    desktop.answer(&not_styles);
    harness.get_by_label("Use another styles.csv…").click();
    wait_for_text(&mut harness, "no `name` column");
    assert!(text_shown(&harness, "no `name` column"));
    harness.state_mut().state_mut().new_style_name = "X".into();
    harness.run_steps(1);
    harness.get_by_label("Save prompts as style").click();
    wait_for_text(&mut harness, "Style not saved");
    assert_eq!(
        std::fs::read_to_string(&not_styles).unwrap(),
        "title,text\nA,b\n"
    );
}

/// The theme menu switches egui's theme and is remembered in the settings.
#[test]
fn the_theme_can_be_light_dark_or_the_systems() {
    let output = Scratch::new("theme-out");
    let desktop = ScriptedDesktop::default();
    let mut harness = open_app(fixture_model("sd1"), &output.0, &desktop);
    harness.run_steps(2);
    assert_eq!(harness.ctx.theme(), Theme::Dark);
    harness.get_by_label("Theme").click();
    harness.run_steps(2);
    harness.get_by_label("Light").click();
    harness.run_steps(2);
    assert_eq!(harness.state().state().theme, ThemeChoice::Light);
    assert_eq!(harness.ctx.theme(), Theme::Light);
    assert!(!harness.ctx.global_style().visuals.dark_mode);
    let ctx = harness.ctx.clone();
    harness
        .state_mut()
        .apply(&ctx, UiCommand::ChangeTheme(ThemeChoice::System));
    assert_eq!(
        harness.ctx.options(|o| o.theme_preference),
        egui::ThemePreference::System
    );
}

/// A picture on the clipboard (no text) pasted with Ctrl+V becomes the start image, pixel for
/// pixel; an absurd one is refused with a reason.
#[test]
fn a_pasted_picture_becomes_the_start_image() {
    let output = Scratch::new("paste-image-out");
    let desktop = ScriptedDesktop::default();
    let mut harness = open_app(fixture_model("sd1"), &output.0, &desktop);
    harness.run_steps(2);
    let mut picture = ColorImage::filled([40, 24], Color32::from_rgb(10, 200, 30));
    picture.pixels[41] = Color32::from_rgb(250, 0, 5);
    // Half-transparent: the colour as stored in a PNG, alpha dropped (as a dropped file is read).
    picture.pixels[0] = Color32::from_rgba_unmultiplied(200, 100, 50, 128);
    harness.event(egui::Event::PasteImage(Arc::new(picture)));
    harness.run_steps(2);
    let start = harness.state().init_image().expect("a start image");
    assert_eq!((start.image.width, start.image.height), (40, 24));
    assert_eq!(&start.image.pixels[41 * 3..42 * 3], &[250, 0, 5]);
    assert_eq!(&start.image.pixels[3..6], &[10, 200, 30]);
    let first = &start.image.pixels[..3];
    assert!(
        first
            .iter()
            .zip([200u8, 100, 50])
            .all(|(a, b)| a.abs_diff(b) <= 2),
        "{first:?}"
    );

    harness.event(egui::Event::PasteImage(Arc::new(ColorImage::filled(
        [16385, 1],
        Color32::WHITE,
    ))));
    harness.run_steps(2);
    assert!(text_shown(&harness, "16385×1 pixels"));
    assert_eq!(harness.state().init_image().unwrap().image.width, 40);
}

/// On a screen with two pixels per point, "1:1" shows one image pixel per screen pixel.
#[test]
fn one_to_one_means_screen_pixels_on_hidpi() {
    let output = Scratch::new("hidpi-out");
    let desktop = ScriptedDesktop::default();
    let config = AppConfig {
        model: Some(fixture_model("sd1")),
        output_dir: Some(output.0.clone()),
        desktop: Box::new(desktop.clone()),
        restore_saved_state: false,
        open_image: None,
        queue_folder: None,
    };
    let mut harness = Harness::builder()
        .with_size([1280.0, 820.0])
        .with_pixels_per_point(2.0)
        .build_eframe(move |cc| LatentStudioApp::new(cc, config));
    wait_for_model(&mut harness);
    {
        let state = harness.state_mut().state_mut();
        state.steps = 1;
        state.width = 64;
        state.height = 64;
    }
    harness.get_by_label("Generate").click();
    step_until(&mut harness, "the image", |app| {
        app.run().is_none() && app.history().len() == 1
    });
    step_until(&mut harness, "the image in full", |app| {
        app.shown_image().is_some()
    });
    harness.get_by_label("1:1").click();
    harness.run_steps(2);
    let zoom = harness.state().viewer().zoom;
    assert!(!zoom.fit);
    assert_eq!(zoom.scale, 0.5);
    assert!(text_shown(&harness, "100%"));
}

/// Steps the UI until `needle` is on screen (file-thread answers arrive a few frames later).
fn wait_for_text(harness: &mut Harness<'_, LatentStudioApp>, needle: &str) {
    let deadline = Instant::now() + DEADLINE;
    while !text_shown(harness, needle) {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {needle:?}"
        );
        harness.run_steps(1);
        std::thread::sleep(Duration::from_millis(10));
    }
}
