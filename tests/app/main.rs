//! The desktop window, driven through its accessibility tree with egui_kittest: the real app
//! state, the real worker and tiny fixture models, a temporary output folder and scripted
//! dialogs. The worker runs in the background, so each test steps the UI until a condition
//! holds (or a deadline passes).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use egui::{Key, Modifiers};
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use latent_studio::app::session::ModelStatus;
use latent_studio::app::viewer::Showing;
use latent_studio::app::{AppConfig, Desktop, LatentStudioApp};
use latent_studio::engine::ModelSource;
use latent_studio::formats::png::{read_png_parameters, write_png_with_parameters};

mod downloads;
mod editing;
mod hires;
mod models;
mod platform;
mod queue;
mod remote;
mod workflow;

const DEADLINE: Duration = Duration::from_secs(60);

fn fixture_model(name: &str) -> ModelSource {
    ModelSource::Folder(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/models")
            .join(name),
    )
}

/// A fresh, empty folder under the system temp dir, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("latent-studio-app-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Dialog answers queued by the test; every dialog the app opens takes the next one.
#[derive(Clone, Default)]
struct ScriptedDesktop {
    answers: Arc<Mutex<VecDeque<PathBuf>>>,
    shown_in_folder: Arc<Mutex<Vec<PathBuf>>>,
}

impl ScriptedDesktop {
    fn answer(&self, path: impl Into<PathBuf>) {
        self.answers.lock().expect("lock").push_back(path.into());
    }

    fn next(&self) -> Option<PathBuf> {
        self.answers.lock().expect("lock").pop_front()
    }
}

impl Desktop for ScriptedDesktop {
    fn pick_model_folder(&mut self) -> Option<PathBuf> {
        self.next()
    }
    fn pick_model_file(&mut self) -> Option<PathBuf> {
        self.next()
    }
    fn pick_vae_file(&mut self) -> Option<PathBuf> {
        self.next()
    }
    fn pick_lora_folder(&mut self, _current: &Path) -> Option<PathBuf> {
        self.next()
    }
    fn pick_embeddings_folder(&mut self, _current: &Path) -> Option<PathBuf> {
        self.next()
    }
    fn pick_init_image(&mut self) -> Option<PathBuf> {
        self.next()
    }
    fn pick_output_folder(&mut self, _current: &Path) -> Option<PathBuf> {
        self.next()
    }
    fn pick_controlnet_folder(&mut self) -> Option<PathBuf> {
        self.next()
    }
    fn pick_controlnet_file(&mut self) -> Option<PathBuf> {
        self.next()
    }
    fn pick_control_image(&mut self) -> Option<PathBuf> {
        self.next()
    }
    fn pick_styles_file(&mut self) -> Option<PathBuf> {
        self.next()
    }
    fn pick_upscaler_file(&mut self) -> Option<PathBuf> {
        self.next()
    }
    fn save_png_as(&mut self, _folder: &Path, _file_name: &str) -> Option<PathBuf> {
        self.next()
    }
    fn show_in_folder(&mut self, path: &Path) -> Result<(), String> {
        self.shown_in_folder
            .lock()
            .expect("lock")
            .push(path.to_path_buf());
        Ok(())
    }
}

fn open_app(
    model: ModelSource,
    output_dir: &Path,
    desktop: &ScriptedDesktop,
) -> Harness<'static, LatentStudioApp> {
    let config = AppConfig {
        model: Some(model),
        output_dir: Some(output_dir.to_path_buf()),
        open_image: None,
        desktop: Box::new(desktop.clone()),
        restore_saved_state: false,
        queue_folder: None,
    };
    Harness::builder()
        .with_size([1280.0, 820.0])
        .build_eframe(move |cc| LatentStudioApp::new(cc, config))
}

/// Steps the UI until `done` holds; fails the test after [`DEADLINE`].
fn step_until(
    harness: &mut Harness<'_, LatentStudioApp>,
    what: &str,
    done: impl Fn(&LatentStudioApp) -> bool,
) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        harness.step();
        if done(harness.state()) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn wait_for_model(harness: &mut Harness<'_, LatentStudioApp>) {
    step_until(harness, "the model to load", |app| {
        matches!(
            app.model_status(),
            ModelStatus::Ready(_) | ModelStatus::Failed { .. }
        )
    });
    if let ModelStatus::Failed { message, .. } = harness.state().model_status() {
        panic!("fixture model failed to load: {message}");
    }
}

fn pngs_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "png"));
    files.sort();
    files
}

fn text_shown(harness: &Harness<'_, LatentStudioApp>, needle: &str) -> bool {
    harness
        .query_all_by(|node| {
            node.value().is_some_and(|v| v.contains(needle))
                || node.label().is_some_and(|l| l.contains(needle))
        })
        .next()
        .is_some()
}

#[test]
fn prompt_to_saved_image_with_live_previews() {
    let output = Scratch::new("generate");
    let desktop = ScriptedDesktop::default();
    let mut harness = open_app(fixture_model("sd1"), &output.0, &desktop);
    wait_for_model(&mut harness);
    // The fixture is 64×64; its defaults arrive with the model.
    assert_eq!(
        (
            harness.state().state().width,
            harness.state().state().height
        ),
        (64, 64)
    );
    harness.state_mut().state_mut().steps = 6;

    // The prompt has the keyboard from the start.
    assert!(harness.get_by_label("Prompt").is_focused());
    harness
        .get_by_label("Prompt")
        .type_text("a lighthouse at dusk");
    harness.run_steps(2);
    assert_eq!(harness.state().state().prompt, "a lighthouse at dusk");
    assert_eq!(
        harness.get_by_label("Prompt").value().as_deref(),
        Some("a lighthouse at dusk")
    );
    // The counter uses the model's tokenizer.
    assert!(text_shown(&harness, "/75"));

    harness.get_by_label("Generate").click();
    step_until(
        &mut harness,
        "a live preview",
        LatentStudioApp::live_preview_shown,
    );
    assert!(
        text_shown(&harness, "step "),
        "the progress bar names the step"
    );

    step_until(&mut harness, "the finished image", |app| {
        app.run().is_none()
    });
    let app = harness.state();
    assert_eq!(
        app.history().len(),
        1,
        "{:?}",
        app.notices().iter().map(|n| &n.title).collect::<Vec<_>>()
    );
    let entry = &app.history().entries()[0];
    assert!(matches!(app.showing(), Showing::Entry(id) if id == entry.id));
    let shown = app.shown_image().expect("the final image is on screen");
    assert_eq!((shown.width, shown.height), (64, 64));

    // The worker wrote the PNG with its settings.
    let files = pngs_in(&output.0);
    assert_eq!(files.len(), 1);
    assert_eq!(entry.path.as_ref(), Some(&files[0]));
    let parameters = read_png_parameters(&files[0])
        .expect("read")
        .expect("a parameters chunk");
    assert!(
        parameters.starts_with("a lighthouse at dusk\n"),
        "{parameters}"
    );
    assert!(parameters.contains("Steps: 6"), "{parameters}");
    assert!(
        parameters.contains(&format!("Seed: {}", app.state().seed)),
        "{parameters}"
    );

    // Ctrl+S exports the shown image where the dialog says.
    let export = output.0.join("exported").join("copy.png");
    std::fs::create_dir_all(export.parent().expect("parent")).expect("mkdir");
    desktop.answer(&export);
    harness.key_press_modifiers(Modifiers::COMMAND, Key::S);
    // The file appears before the app hears back; wait for the confirmation, whose notice
    // moves the toolbar down, so the next click lands where the buttons are drawn.
    step_until(&mut harness, "the export's confirmation", |app| {
        app.notices().iter().any(|n| n.title.starts_with("Saved "))
    });
    harness.run_steps(2);
    assert!(export.exists());
    assert_eq!(
        read_png_parameters(&export).expect("read").as_deref(),
        Some(parameters.as_str())
    );

    // "Reuse parameters" puts the shown image's settings back after they were changed.
    harness.state_mut().state_mut().prompt = "something else".into();
    harness.state_mut().state_mut().steps = 11;
    harness.get_by_label("Reuse parameters").click();
    harness.run_steps(2);
    assert_eq!(harness.state().state().prompt, "a lighthouse at dusk");
    assert_eq!(harness.state().state().steps, 6);
    assert!(harness.state().state().seed_locked);

    // "Show in folder" acts on the shown image.
    harness.get_by_label("Show in folder").click();
    harness.run_steps(2);
    assert_eq!(
        desktop.shown_in_folder.lock().expect("lock").as_slice(),
        &[files[0].clone()]
    );

    // The next start lists the folder's images again.
    drop(harness);
    let mut reopened = open_app(fixture_model("sd1"), &output.0, &desktop);
    step_until(&mut reopened, "the earlier image in the history", |app| {
        app.history().len() == 1
    });
    step_until(&mut reopened, "the earlier image on screen", |app| {
        app.shown_image().is_some()
    });
    assert_eq!(
        reopened.state().history().entries()[0].path.as_ref(),
        Some(&files[0])
    );
}

#[test]
fn cancel_stops_the_run_and_keeps_the_window_working() {
    let output = Scratch::new("cancel");
    let desktop = ScriptedDesktop::default();
    let mut harness = open_app(fixture_model("sd1"), &output.0, &desktop);
    wait_for_model(&mut harness);
    {
        let state = harness.state_mut().state_mut();
        state.steps = 50;
        state.batch_count = 4;
        state.prompt = "a slow painting".into();
    }
    harness.key_press_modifiers(Modifiers::COMMAND, Key::Enter);
    step_until(&mut harness, "the first step", |app| {
        app.run().is_some_and(|r| r.step >= 1)
    });
    harness.get_by_label("Cancel").click();
    step_until(&mut harness, "the run to stop", |app| app.run().is_none());
    let made = harness.state().history().len();
    assert!(made < 4, "cancel stopped the batch ({made} images made)");
    assert!(
        harness
            .state()
            .notices()
            .iter()
            .any(|n| n.title.contains("cancelled")),
        "the window says the run was cancelled"
    );
    assert_eq!(
        pngs_in(&output.0).len(),
        made,
        "every finished image is on disk"
    );

    // The window still generates afterwards.
    harness.state_mut().state_mut().steps = 2;
    harness.state_mut().state_mut().batch_count = 1;
    harness.get_by_label("Generate").click();
    step_until(&mut harness, "a new image", |app| {
        app.run().is_none() && app.history().len() == made + 1
    });
}

#[test]
fn a_broken_model_shows_an_error_and_another_model_still_works() {
    let output = Scratch::new("broken-out");
    let broken = Scratch::new("broken-model");
    // The configs of a real model, but no weights.
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models/sd_turbo");
    std::fs::copy(
        source.join("model_index.json"),
        broken.0.join("model_index.json"),
    )
    .expect("copy");
    for part in ["unet", "vae", "text_encoder", "tokenizer", "scheduler"] {
        std::fs::create_dir_all(broken.0.join(part)).expect("mkdir");
        for file in std::fs::read_dir(source.join(part)).expect("list") {
            let path = file.expect("entry").path();
            if path.extension().is_some_and(|e| e != "safetensors") {
                std::fs::copy(
                    &path,
                    broken.0.join(part).join(path.file_name().expect("name")),
                )
                .expect("copy");
            }
        }
    }

    let desktop = ScriptedDesktop::default();
    let mut harness = open_app(ModelSource::Folder(broken.0.clone()), &output.0, &desktop);
    step_until(&mut harness, "the load to fail", |app| {
        matches!(app.model_status(), ModelStatus::Failed { .. })
    });
    harness.run_steps(2);
    assert!(
        text_shown(&harness, "Could not load"),
        "the error is in the window"
    );
    assert!(
        text_shown(&harness, "safetensors"),
        "the error says what is missing"
    );

    // Pick a working model through the picker's "Open model folder…".
    let ModelSource::Folder(good) = fixture_model("sd_turbo") else {
        unreachable!()
    };
    desktop.answer(&good);
    harness.get_by_label("Open model folder…").click();
    wait_for_model(&mut harness);
    harness.run_steps(2);
    assert!(
        !text_shown(&harness, "Could not load"),
        "the error goes once a model loads"
    );
    assert_eq!(harness.state().state().recent_models.first(), Some(&good));

    harness.get_by_label("Prompt").focus();
    harness.run_steps(1);
    harness.get_by_label("Prompt").type_text("a cat");
    harness.key_press_modifiers(Modifiers::COMMAND, Key::Enter);
    step_until(&mut harness, "an image from the working model", |app| {
        app.run().is_none() && app.history().len() == 1
    });
    assert_eq!(pngs_in(&output.0).len(), 1);
}

/// A file handed to the window the way the windowing system hands dropped files.
#[derive(Debug)]
struct Dropped(PathBuf);

impl egui::DroppedFile for Dropped {
    fn path(&self) -> &Path {
        &self.0
    }
    fn bytes(&self) -> Result<Vec<u8>, String> {
        std::fs::read(&self.0).map_err(|e| e.to_string())
    }
}

fn drop_file(harness: &mut Harness<'_, LatentStudioApp>, path: &Path) {
    harness
        .input_mut()
        .dropped_files
        .push(Arc::new(Dropped(path.to_path_buf())));
}

#[test]
fn dropping_a_png_restores_its_settings_and_other_images_become_the_init_image() {
    let output = Scratch::new("drop-out");
    let files = Scratch::new("drop-files");
    let desktop = ScriptedDesktop::default();
    let mut harness = open_app(fixture_model("sd_turbo"), &output.0, &desktop);
    wait_for_model(&mut harness);

    let a1111 = files.0.join("from-a1111.png");
    let parameters = "a castle on a hill, (masterpiece:1.2)\nNegative prompt: blurry\nSteps: 23, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 1234567, Size: 64x96, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Version: v1.10.1";
    write_png_with_parameters(&a1111, &[90; 4 * 4 * 3], 4, 4, parameters).expect("write png");
    drop_file(&mut harness, &a1111);
    step_until(&mut harness, "the settings to be restored", |app| {
        app.state().seed == 1_234_567
    });
    harness.run_steps(2);
    let state = harness.state().state();
    assert_eq!(state.prompt, "a castle on a hill, (masterpiece:1.2)");
    assert_eq!(state.negative_prompt, "blurry");
    assert_eq!(state.steps, 23);
    assert_eq!(state.guidance, 6.5);
    assert_eq!((state.width, state.height), (64, 96));
    assert_eq!(
        state.scheduler,
        latent_studio::sampling::schedulers::SchedulerKind::DpmPp2mKarras
    );
    assert!(
        state.seed_locked,
        "a restored seed is kept for the next run"
    );
    assert_eq!(
        harness.get_by_label("Prompt").value().as_deref(),
        Some("a castle on a hill, (masterpiece:1.2)")
    );

    // An image without settings becomes the img2img start image.
    let photo = files.0.join("photo.jpg");
    image::RgbImage::from_pixel(40, 24, image::Rgb([200, 30, 30]))
        .save(&photo)
        .expect("write jpeg");
    drop_file(&mut harness, &photo);
    step_until(&mut harness, "the init image", |app| {
        app.init_image().is_some()
    });
    let slot = harness.state().init_image().expect("init image");
    assert_eq!(
        (slot.image.width, slot.image.height, slot.name.as_str()),
        (40, 24, "photo.jpg")
    );
}

#[test]
fn every_control_has_an_accessible_name() {
    let output = Scratch::new("a11y");
    let desktop = ScriptedDesktop::default();
    let mut harness = open_app(fixture_model("sd_turbo"), &output.0, &desktop);
    wait_for_model(&mut harness);
    // Tall enough for every section of the left panel to be open at once (and clicked through
    // accessibility, which does not depend on where a section lands).
    harness.set_size(egui::Vec2::new(1280.0, 2400.0));
    harness.run_steps(2);
    harness
        .get_by_label("Start from an image")
        .click_accesskit();
    harness.run_steps(2);
    harness.get_by_label("Output and preview").click_accesskit();
    harness.run_steps(3);
    harness.get_by_label("LoRA").click_accesskit();
    harness.run_steps(2);
    harness.get_by_label("Advanced").click_accesskit();
    harness.run_steps(3);
    harness.get_by_label("Styles").click_accesskit();
    harness.run_steps(2);
    harness.get_by_label("Full (VAE)").click_accesskit();
    harness.run_steps(3);
    assert!(matches!(
        harness.state().state().preview,
        latent_studio::engine::PreviewMode::Vae { .. }
    ));
    harness.check_accessibility();
    for name in [
        "Prompt",
        "Negative prompt",
        "Sampler",
        "Steps",
        "CFG scale",
        "Seed",
        "Width",
        "Height",
        "Strength",
        "Decode every",
        "VAE",
        "Clip skip",
        "Prompt syntax",
        "Theme",
    ] {
        assert!(
            harness.query_all_by_label(name).next().is_some(),
            "{name} is reachable by name"
        );
    }
}

/// eframe's key-value store, in memory.
#[derive(Default)]
struct MemoryStorage(std::collections::HashMap<String, String>);

impl eframe::Storage for MemoryStorage {
    fn get_string(&self, key: &str) -> Option<String> {
        self.0.get(key).cloned()
    }
    fn set_string(&mut self, key: &str, value: String) {
        self.0.insert(key.to_string(), value);
    }
    fn remove_string(&mut self, key: &str) {
        self.0.remove(key);
    }
    fn flush(&mut self) {}
}

#[test]
fn settings_survive_a_restart() {
    use latent_studio::engine::PreviewMode;
    use latent_studio::sampling::schedulers::SchedulerKind;

    let output = Scratch::new("persist");
    let desktop = ScriptedDesktop::default();
    let mut harness = open_app(fixture_model("sd_turbo"), &output.0, &desktop);
    wait_for_model(&mut harness);
    {
        let state = harness.state_mut().state_mut();
        state.prompt = "a quiet harbour".into();
        state.negative_prompt = "people".into();
        state.scheduler = SchedulerKind::EulerAncestral;
        state.steps = 3;
        state.preview = PreviewMode::Vae { every: 2 };
        state.seed = 77;
        state.seed_locked = true;
    }
    let mut storage = MemoryStorage::default();
    eframe::App::save(harness.state_mut(), &mut storage);
    let saved = harness.state().state().clone();
    drop(harness);

    // The next start, without command-line overrides, reads it all back.
    let storage: &'static MemoryStorage = Box::leak(Box::new(storage));
    let config = AppConfig {
        model: None,
        output_dir: None,
        open_image: None,
        desktop: Box::new(desktop.clone()),
        restore_saved_state: true,
        queue_folder: None,
    };
    let mut reopened = Harness::builder()
        .with_size([1280.0, 820.0])
        .build_eframe(move |cc| {
            cc.storage = Some(storage);
            LatentStudioApp::new(cc, config)
        });
    wait_for_model(&mut reopened);
    let state = reopened.state().state();
    assert_eq!(state, &saved);
    assert_eq!(state.output_dir, output.0);
    assert_eq!(state.model, Some(fixture_model("sd_turbo")));
    assert_eq!(
        reopened.get_by_label("Prompt").value().as_deref(),
        Some("a quiet harbour")
    );
}

fn format_fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/formats")
        .join(path)
}

#[test]
fn the_lora_list_reads_its_folder_and_enabled_loras_reach_the_image() {
    let output = Scratch::new("lora-out");
    let lora_folder = Scratch::new("lora-folder");
    std::fs::copy(
        format_fixture("loras/sd1_kohya.safetensors"),
        lora_folder.0.join("sd1_kohya.safetensors"),
    )
    .expect("copy lora");
    std::fs::write(lora_folder.0.join("another.safetensors"), b"not used").expect("write");
    std::fs::write(lora_folder.0.join("readme.txt"), b"not listed").expect("write");

    let desktop = ScriptedDesktop::default();
    let mut harness = open_app(fixture_model("sd1"), &output.0, &desktop);
    wait_for_model(&mut harness);
    harness.set_size(egui::Vec2::new(1280.0, 1400.0));
    harness.get_by_label("LoRA").click();
    harness.run_steps(2);
    desktop.answer(&lora_folder.0);
    harness.get_by_label("Change…").click();
    step_until(&mut harness, "the LoRA folder listing", |app| {
        app.lora_listing().files.len() == 2
    });
    harness.run_steps(2);
    assert_eq!(
        harness.state().lora_listing().files,
        ["another.safetensors", "sd1_kohya.safetensors"]
    );
    assert_eq!(
        harness.state().state().lora_folder.as_ref(),
        Some(&lora_folder.0)
    );

    // Switch one on in the list and lower its strength.
    harness.get_by_label("sd1_kohya").click();
    harness.run_steps(2);
    assert!(
        harness
            .state()
            .state()
            .lora_choice("sd1_kohya.safetensors")
            .enabled
    );
    harness
        .state_mut()
        .state_mut()
        .loras
        .entry("sd1_kohya.safetensors".into())
        .or_default()
        .multiplier = 0.5;
    assert_eq!(
        harness.state().listed_loras_for_job(),
        vec![(lora_folder.0.join("sd1_kohya.safetensors"), 0.5)]
    );

    {
        let state = harness.state_mut().state_mut();
        state.steps = 2;
        state.prompt = "a lighthouse".into();
    }
    harness.get_by_label("Generate").click();
    step_until(&mut harness, "the image with the LoRA", |app| {
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
        .expect("a parameters chunk");
    // The worker records a list LoRA as a prompt tag plus its hash, as A1111 does.
    assert!(
        parameters.starts_with("a lighthouse <lora:sd1_kohya:0.5>\n"),
        "{parameters}"
    );
    assert!(
        parameters.contains("Lora hashes: \"sd1_kohya: "),
        "{parameters}"
    );

    // "Tag" puts the first entry's tag in the prompt instead.
    harness.state_mut().state_mut().prompt = "a cat".into();
    harness.run_steps(1);
    // Through accessibility: the left panel may be taller than the window, and a pointer click
    // lands only on what is in view.
    harness
        .query_all_by_label("Tag")
        .next()
        .expect("a Tag button per LoRA")
        .click_accesskit();
    harness.run_steps(2);
    assert_eq!(harness.state().state().prompt, "a cat, <lora:another:1>");
}

#[test]
fn the_token_counter_counts_a1111_chunks() {
    use latent_studio::text::prompt::PromptSyntax;

    let output = Scratch::new("tokens");
    let desktop = ScriptedDesktop::default();
    let mut harness = open_app(fixture_model("sd_turbo"), &output.0, &desktop);
    wait_for_model(&mut harness);
    harness.state_mut().state_mut().prompt = "a small red boat on a calm lake, ".repeat(12);
    harness.run_steps(2);
    assert!(
        text_shown(&harness, "/150"),
        "a prompt past 75 tokens takes a second chunk"
    );
    harness.state_mut().state_mut().prompt_syntax = PromptSyntax::Plain;
    harness.run_steps(2);
    assert!(
        !text_shown(&harness, "/150"),
        "plain syntax reads one sequence"
    );
}

#[test]
fn importing_a_png_restores_clip_skip_syntax_model_and_loras() {
    use latent_studio::text::prompt::PromptSyntax;

    let output = Scratch::new("import-out");
    let files = Scratch::new("import-files");
    let desktop = ScriptedDesktop::default();
    let mut harness = open_app(fixture_model("sd_turbo"), &output.0, &desktop);
    wait_for_model(&mut harness);
    let ModelSource::Folder(sd1) = fixture_model("sd1") else {
        unreachable!()
    };
    // sd1 was opened before; the PNG names it by its folder name.
    harness.state_mut().state_mut().remember_model(&sd1);

    let png = files.0.join("clip-skip.png");
    let parameters = "a fox in snow\nSteps: 12, Sampler: Euler a, CFG scale: 5, Seed: 4242, Size: 64x64, Model: sd1, Clip skip: 2, Lora hashes: \"faraway: 0123456789ab\", Prompt syntax: plain, Version: latent-studio 0.1.0";
    write_png_with_parameters(&png, &[10; 4 * 4 * 3], 4, 4, parameters).expect("write png");
    drop_file(&mut harness, &png);
    step_until(&mut harness, "the settings to be restored", |app| {
        app.state().seed == 4242
    });
    let state = harness.state().state();
    assert_eq!(state.clip_skip, 2);
    assert_eq!(state.prompt_syntax, PromptSyntax::Plain);
    assert_eq!(state.model, Some(ModelSource::Folder(sd1.clone())));
    let notes: Vec<String> = harness
        .state()
        .notices()
        .iter()
        .map(|n| format!("{}: {}", n.title, n.detail))
        .collect();
    assert!(
        notes
            .iter()
            .any(|n| n.contains("LoRA faraway not found in")),
        "{notes:?}"
    );
    wait_for_model(&mut harness);

    // An image without those keys goes back to A1111 syntax and no clip skip.
    let plain = files.0.join("plain.png");
    let parameters =
        "a fox\nSteps: 12, Sampler: Euler a, CFG scale: 5, Seed: 777, Size: 64x64, Model: sd1";
    write_png_with_parameters(&plain, &[10; 4 * 4 * 3], 4, 4, parameters).expect("write png");
    drop_file(&mut harness, &plain);
    step_until(&mut harness, "the second restore", |app| {
        app.state().seed == 777
    });
    assert_eq!(harness.state().state().clip_skip, 1);
    assert_eq!(harness.state().state().prompt_syntax, PromptSyntax::A1111);

    // A renamed checkpoint is found by its hash among the recent model files.
    let checkpoint = format_fixture("single/sd1.safetensors");
    let hash = latent_studio::models::hashes::sha256_file(&checkpoint).expect("hash");
    harness.state_mut().state_mut().remember_model(&checkpoint);
    let by_hash = files.0.join("by-hash.png");
    let parameters = format!(
        "a fox\nSteps: 12, Sampler: Euler a, CFG scale: 5, Seed: 778, Size: 64x64, Model hash: {}, Model: renamed-checkpoint",
        &hash[..10]
    );
    write_png_with_parameters(&by_hash, &[10; 4 * 4 * 3], 4, 4, &parameters).expect("write png");
    drop_file(&mut harness, &by_hash);
    step_until(&mut harness, "the model found by its hash", |app| {
        app.state().model == Some(ModelSource::Folder(checkpoint.clone()))
    });

    // A model that is nowhere here is named in a notice and the current one is kept.
    let missing = files.0.join("missing.png");
    let parameters = "a fox\nSteps: 12, Sampler: Euler a, CFG scale: 5, Seed: 779, Size: 64x64, Model hash: 0123456789, Model: some-model-we-lack";
    write_png_with_parameters(&missing, &[10; 4 * 4 * 3], 4, 4, parameters).expect("write png");
    drop_file(&mut harness, &missing);
    step_until(&mut harness, "the missing-model notice", |app| {
        app.notices()
            .iter()
            .any(|n| n.title.contains("some-model-we-lack"))
    });
    assert_eq!(
        harness.state().state().model,
        Some(ModelSource::Folder(checkpoint.clone()))
    );
}

#[test]
fn a_stopped_engine_is_reported_and_can_be_restarted() {
    let output = Scratch::new("engine-stop");
    let desktop = ScriptedDesktop::default();
    let mut harness = open_app(fixture_model("sd_turbo"), &output.0, &desktop);
    wait_for_model(&mut harness);
    harness.state_mut().state_mut().prompt = "kept across the restart".into();
    harness.state_mut().stop_engine();
    step_until(&mut harness, "the window to see the engine stop", |app| {
        app.engine_stopped()
    });
    harness.run_steps(2);
    assert!(text_shown(&harness, "The engine stopped"));
    harness.get_by_label("Restart engine").click();
    harness.run_steps(1);
    assert!(!harness.state().engine_stopped());
    wait_for_model(&mut harness);
    assert!(!text_shown(&harness, "The engine stopped"));
    assert_eq!(harness.state().state().prompt, "kept across the restart");
}

/// Ctrl+V outside the text fields restores pasted A1111 parameters (other text is refused
/// with a notice), and Esc stops a run.
#[test]
fn pasting_parameters_restores_them_and_escape_cancels() {
    let output = Scratch::new("paste-out");
    let desktop = ScriptedDesktop::default();
    let mut harness = open_app(fixture_model("sd1"), &output.0, &desktop);
    wait_for_model(&mut harness);
    // The prompt field has the keyboard at start (a paste there is text); Esc leaves it.
    harness.key_press(Key::Escape);
    harness.run_steps(2);
    harness.event(egui::Event::Paste("just some words".into()));
    harness.run_steps(2);
    assert!(text_shown(&harness, "holds no generation settings"));
    assert_eq!(harness.state().state().prompt, "");
    harness.event(egui::Event::Paste(
        "a red boat\nNegative prompt: fog\nSteps: 3, Sampler: Euler, CFG scale: 4, Seed: 77, Size: 64x64".into(),
    ));
    harness.run_steps(2);
    let state = harness.state().state();
    assert_eq!(state.prompt, "a red boat");
    assert_eq!(state.negative_prompt, "fog");
    assert_eq!((state.steps, state.seed, state.width), (3, 77, 64));

    harness.state_mut().state_mut().steps = 50;
    harness.get_by_label("Generate").click();
    step_until(&mut harness, "the run to start", |app| app.run().is_some());
    harness.key_press(Key::Escape);
    step_until(&mut harness, "the run to stop", |app| app.run().is_none());
    assert!(pngs_in(&output.0).is_empty());

    // The prompt generated with is in the prompt history; a click brings it back.
    harness.state_mut().state_mut().prompt = "something else".into();
    harness.state_mut().state_mut().negative_prompt.clear();
    harness.run_steps(1);
    harness.get_by_label("Prompt history (1)").click();
    harness.run_steps(2);
    harness.get_by_label("a red boat").click();
    harness.run_steps(2);
    let state = harness.state().state();
    assert_eq!(
        (state.prompt.as_str(), state.negative_prompt.as_str()),
        ("a red boat", "fog")
    );
}

/// Opens the ControlNet section in a window tall enough for a unit, and adds one.
fn add_controlnet_unit(harness: &mut Harness<'_, LatentStudioApp>) {
    harness.set_size(egui::Vec2::new(1280.0, 1600.0));
    harness.get_by_label("ControlNet").click();
    harness.run_steps(2);
    harness.get_by_label("Add ControlNet unit").click();
    harness.run_steps(2);
}
