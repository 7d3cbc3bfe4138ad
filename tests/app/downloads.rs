//! A file a job fetches from the hub on first use (a ControlNet) shows its download in the
//! job's progress bar, and the job's Cancel stops it. The fake hub of `tests/download.rs`
//! serves it; the engine finds hub and cache in `HF_ENDPOINT` / `HF_HUB_CACHE`, which this
//! test and the model manager's take turns with ([`HUB_ENVIRONMENT`]).

use std::sync::Mutex;

use super::*;

#[allow(dead_code)]
#[path = "../download/fake_hub.rs"]
mod fake_hub;

/// Held by the tests that set the hub's environment variables.
pub static HUB_ENVIRONMENT: Mutex<()> = Mutex::new(());

#[test]
fn a_hub_controlnets_download_shows_in_the_jobs_bar_and_cancel_stops_it() {
    let _turn = HUB_ENVIRONMENT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let hub = fake_hub::FakeHub::start();
    let output = Scratch::new("hub-controlnet-progress");
    let cache = output.0.join("hub");
    std::env::set_var("HF_ENDPOINT", hub.endpoint());
    std::env::set_var("HF_HUB_CACHE", &cache);
    std::env::remove_var("HF_HUB_OFFLINE");

    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let desktop = ScriptedDesktop::default();
    let mut harness = open_app(fixture_model("sd1"), &output.0, &desktop);
    wait_for_model(&mut harness);
    add_controlnet_unit(&mut harness);
    desktop.answer(fixtures.join("control_lines_64.png"));
    harness.get_by_label("Choose…").click();
    step_until(&mut harness, "the control picture", |app| {
        app.control_picture_name(0).is_some()
    });
    {
        let state = harness.state_mut().state_mut();
        // Its weights arrive at 64 KiB per 100 ms.
        state.control_units[0].model = Some(PathBuf::from(fake_hub::SLOW_CONTROLNET_REPO));
        state.steps = 2;
        state.prompt = "a house".into();
    }
    harness.get_by_label("Generate").click();
    step_until(
        &mut harness,
        "the weights' download in the job's bar",
        |app| {
            app.run()
                .and_then(|run| run.download.as_ref())
                .is_some_and(|d| d.progress.bytes_done > 0 && d.progress.file_index == 1)
        },
    );
    harness.run_steps(2);
    let weights = "diffusion_pytorch_model.fp16.safetensors";
    let shown = format!(
        "Downloading {}: file 2/2 ({weights}) · ",
        fake_hub::SLOW_CONTROLNET_REPO
    );
    assert!(
        text_shown(&harness, &shown),
        "the bar does not show {shown:?}"
    );
    // The model is not reloading: only the job waits.
    assert!(matches!(
        harness.state().model_status(),
        ModelStatus::Ready(_)
    ));

    harness.get_by_label("Cancel").click();
    step_until(&mut harness, "the job to stop", |app| app.run().is_none());
    let app = harness.state();
    assert_eq!(app.history().len(), 0);
    assert!(
        app.notices()
            .iter()
            .any(|n| n.title.starts_with("Generation cancelled")),
        "{:?}",
        app.notices().iter().map(|n| &n.title).collect::<Vec<_>>()
    );
    // Stopped part-way: only the partial file, which no later run loads.
    let key = format!("{}/{weights}", fake_hub::SLOW_CONTROLNET_REPO);
    let (etag, size) = (hub.etag(&key), hub.files[&key].data.len() as u64);
    let blobs = cache
        .join("models--test-org--slow-controlnet")
        .join("blobs");
    let partial =
        std::fs::metadata(blobs.join(format!("{etag}.incomplete"))).map_or(0, |m| m.len());
    assert!(partial > 0 && partial < size, "{partial} of {size} bytes");
    assert!(!blobs.join(&etag).exists());
}
