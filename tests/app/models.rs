//! The model manager window and the "Hugging Face id or URL" box, on a temporary hub cache
//! and models folder.

use super::*;
use latent_studio::app::session::format_bytes;

/// A hub repository as a download leaves it: one blob and a snapshot link to it.
fn fake_hub_repo(cache: &Path, folder: &str, bytes: usize) -> PathBuf {
    let repo = cache.join(folder);
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    std::fs::create_dir_all(repo.join("snapshots/0123/unet")).unwrap();
    std::fs::write(repo.join("blobs/e1"), vec![0u8; bytes]).unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(
        "../../../blobs/e1",
        repo.join("snapshots/0123/unet/diffusion_pytorch_model.safetensors"),
    )
    .unwrap();
    repo
}

#[test]
fn the_model_manager_lists_downloads_and_deletes_only_after_confirmation() {
    let scratch = Scratch::new("model-manager");
    let cache = scratch.0.join("hub");
    let models = scratch.0.join("models");
    std::fs::create_dir_all(&models).unwrap();
    let repo = fake_hub_repo(&cache, "models--some-org--tiny-repo", 2_000_000);
    let civitai = models.join("civitai-model.safetensors");
    std::fs::write(&civitai, vec![1u8; 1234]).unwrap();
    // Only this test and the hub download's set these variables; they take turns.
    let _turn = super::downloads::HUB_ENVIRONMENT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    std::env::set_var("HF_HUB_CACHE", &cache);
    std::env::set_var("LATENT_STUDIO_MODELS_DIR", &models);

    let desktop = ScriptedDesktop::default();
    let mut harness = open_app(fixture_model("sd_turbo"), &scratch.0, &desktop);
    wait_for_model(&mut harness);
    harness.get_by_label("Models…").click();
    // Listed on the file thread.
    step_until(&mut harness, "the listing", |app| {
        !app.model_manager().listing.is_empty()
    });
    harness.run_steps(2);
    let listing = &harness.state().model_manager().listing;
    assert!(
        listing.iter().any(|m| m.name == "some-org/tiny-repo"),
        "{listing:?}"
    );
    assert!(text_shown(&harness, "some-org/tiny-repo"));
    assert!(text_shown(&harness, &format_bytes(2_000_000)));
    assert!(text_shown(&harness, "civitai-model.safetensors"));
    assert!(text_shown(&harness, &format_bytes(1234)));

    // Delete asks first; "Keep it" keeps it.
    harness.get_by_label("Delete some-org/tiny-repo…").click();
    harness.run_steps(2);
    assert!(text_shown(&harness, "Delete some-org/tiny-repo ("));
    assert!(repo.exists(), "deleted before the confirmation");
    harness.get_by_label("Keep it").click();
    harness.run_steps(2);
    assert!(repo.exists());
    assert!(!text_shown(&harness, "from disk?"));

    // Confirmed: the repository folder is gone, the rest stays.
    harness.get_by_label("Delete some-org/tiny-repo…").click();
    harness.run_steps(2);
    harness.get_by_label("Delete").click();
    step_until(&mut harness, "the listing after the delete", |app| {
        app.model_manager()
            .listing
            .iter()
            .all(|m| m.name != "some-org/tiny-repo")
            || app.model_manager().error.is_some()
    });
    harness.run_steps(2);
    assert!(!repo.exists(), "the repository was not deleted");
    assert!(cache.exists() && civitai.exists());
    assert!(!text_shown(&harness, "some-org/tiny-repo"));
    assert!(harness.state().model_manager().error.is_none());

    // The model in use (opened from elsewhere) has no delete button at all.
    let ModelSource::Folder(in_use) = fixture_model("sd_turbo") else {
        unreachable!()
    };
    assert!(
        harness.query_by_label("Delete sd_turbo…").is_none(),
        "a model opened from elsewhere can be deleted"
    );
    assert!(in_use.exists());

    // The first row with the button is the models folder's file (hub repositories first).
    harness
        .query_all_by_label("Show in folder")
        .next()
        .expect("a Show in folder button")
        .click();
    harness.run_steps(1);
    assert_eq!(
        desktop.shown_in_folder.lock().unwrap().last(),
        Some(&civitai)
    );
}

#[test]
fn a_pickle_typed_in_the_hub_box_is_refused_with_a_clear_error() {
    let scratch = Scratch::new("hub-box");
    let desktop = ScriptedDesktop::default();
    let mut harness = open_app(fixture_model("sd_turbo"), &scratch.0, &desktop);
    wait_for_model(&mut harness);
    harness.get_by_label("Hugging Face id or URL").focus();
    harness.run_steps(1);
    harness
        .get_by_label("Hugging Face id or URL")
        .type_text("some-org/some-model/model.ckpt");
    harness.run_steps(1);
    harness.get_by_label("Load").click();
    step_until(&mut harness, "the load to fail", |app| {
        matches!(app.model_status(), ModelStatus::Failed { .. })
    });
    harness.run_steps(2);
    if let ModelStatus::Failed { message, .. } = harness.state().model_status() {
        assert!(message.contains("pickle"), "{message}");
    }
    assert!(text_shown(&harness, "pickle"), "the error names the reason");
    assert_eq!(
        harness.state().state().model,
        Some(ModelSource::Hub("some-org/some-model/model.ckpt".into()))
    );
}
