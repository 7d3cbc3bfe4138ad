//! The queue through the window: Generate while a job runs queues the settings; the queue
//! panel reorders, removes, pauses and cancels; the queue survives a restart (paused); and
//! "Generate forever" repeats with new seeds until stopped.

use super::*;

fn open_app_with_queue(
    output_dir: &Path,
    queue_folder: &Path,
    desktop: &ScriptedDesktop,
) -> Harness<'static, LatentStudioApp> {
    let config = AppConfig {
        model: Some(fixture_model("sd1")),
        output_dir: Some(output_dir.to_path_buf()),
        desktop: Box::new(desktop.clone()),
        restore_saved_state: false,
        open_image: None,
        queue_folder: Some(queue_folder.to_path_buf()),
    };
    Harness::builder()
        .with_size([1280.0, 820.0])
        .build_eframe(move |cc| LatentStudioApp::new(cc, config))
}

fn waiting_prompts(app: &LatentStudioApp) -> Vec<String> {
    app.queue()
        .waiting()
        .iter()
        .map(|entry| entry.job.job.request.prompt.clone())
        .collect()
}

fn set_prompt(harness: &mut Harness<'_, LatentStudioApp>, prompt: &str, steps: usize) {
    let state = harness.state_mut().state_mut();
    state.prompt = prompt.into();
    state.steps = steps;
    state.batch_count = 1;
}

#[test]
fn generate_while_running_queues_and_the_queue_is_reordered_paused_and_kept() {
    let output = Scratch::new("queue-out");
    let queue_folder = Scratch::new("queue-folder");
    let desktop = ScriptedDesktop::default();
    let mut harness = open_app_with_queue(&output.0, &queue_folder.0, &desktop);
    wait_for_model(&mut harness);

    // A long first job, so the others must wait.
    set_prompt(&mut harness, "a long job", 150);
    harness.state_mut().state_mut().batch_count = 4;
    harness.get_by_label("Generate").click();
    step_until(&mut harness, "the first step", |app| {
        app.run().is_some_and(|r| r.step >= 1)
    });

    // Generate stays enabled while the job runs: it adds to the queue (so does Ctrl+Enter).
    set_prompt(&mut harness, "second", 2);
    harness.get_by_label("Add to queue").click();
    harness.run_steps(2);
    set_prompt(&mut harness, "third", 3);
    harness.key_press_modifiers(Modifiers::COMMAND, Key::Enter);
    harness.run_steps(2);
    assert_eq!(waiting_prompts(harness.state()), ["second", "third"]);
    assert!(text_shown(&harness, "Queue · 2 waiting"));
    assert!(
        text_shown(&harness, "2 steps"),
        "each entry summarises its settings"
    );
    let third = &harness.state().queue().waiting()[1].job.job;
    assert_eq!(
        third.request.steps, 3,
        "the settings were frozen when queued"
    );

    // Reorder: the first waiting job moves down.
    harness
        .get_all_by_label("Down")
        .next()
        .expect("a Down button")
        .click();
    harness.run_steps(2);
    assert_eq!(waiting_prompts(harness.state()), ["third", "second"]);

    // Pause, then cancel the running job: nothing else starts.
    harness.get_by_label("Pause").click();
    harness.run_steps(2);
    assert!(harness.state().queue().is_paused());
    harness.get_by_label("Cancel current").click();
    step_until(&mut harness, "the long job to stop", |app| {
        app.run().is_none()
    });
    harness.run_steps(5);
    assert!(
        harness.state().run().is_none(),
        "a paused queue starts nothing"
    );
    assert_eq!(waiting_prompts(harness.state()), ["third", "second"]);
    let made = harness.state().history().len();
    assert!(made < 4, "the long job was cancelled ({made} images)");

    // Remove the first waiting job.
    harness
        .get_all_by_label("Remove")
        .next()
        .expect("a Remove button")
        .click();
    harness.run_steps(2);
    assert_eq!(waiting_prompts(harness.state()), ["second"]);

    // A restart finds the queue, paused, and says so.
    drop(harness);
    let mut reopened = open_app_with_queue(&output.0, &queue_folder.0, &desktop);
    wait_for_model(&mut reopened);
    reopened.run_steps(2);
    assert_eq!(waiting_prompts(reopened.state()), ["second"]);
    assert!(reopened.state().queue().is_paused());
    assert!(reopened.state().run().is_none(), "nothing starts unasked");
    assert!(text_shown(&reopened, "from the last session"));
    let before = reopened.state().history().len();
    reopened.get_by_label("Resume").click();
    step_until(&mut reopened, "the restored job's image", |app| {
        app.run().is_none() && app.queue().is_empty() && app.history().len() > before
    });
    let entry = &reopened.state().history().entries()[0];
    let parameters = read_png_parameters(entry.path.as_ref().expect("saved"))
        .expect("read")
        .expect("parameters");
    assert!(parameters.starts_with("second\n"), "{parameters}");
    assert!(parameters.contains("Steps: 2"), "{parameters}");
}

#[test]
fn generate_forever_repeats_with_new_seeds_until_stopped() {
    let output = Scratch::new("forever-out");
    let queue_folder = Scratch::new("forever-queue");
    let desktop = ScriptedDesktop::default();
    let mut harness = open_app_with_queue(&output.0, &queue_folder.0, &desktop);
    wait_for_model(&mut harness);
    set_prompt(&mut harness, "again and again", 2);
    harness.get_by_label("Generate forever").click();
    step_until(&mut harness, "three images", |app| app.history().len() >= 3);
    harness.get_by_label("Stop generating forever").click();
    step_until(&mut harness, "the last run to end", |app| {
        app.run().is_none() && app.queue().current().is_none()
    });
    harness.run_steps(5);
    assert!(harness.state().run().is_none(), "nothing runs after Stop");
    assert!(harness.state().queue().is_empty());
    assert!(!harness.state().queue().is_forever());
    let made = harness.state().history().len();
    std::thread::sleep(Duration::from_millis(300));
    harness.run_steps(5);
    assert_eq!(harness.state().history().len(), made);

    let mut seeds: Vec<u64> = pngs_in(&output.0)
        .iter()
        .map(|path| {
            let parameters = read_png_parameters(path).expect("read").expect("params");
            let seed = parameters
                .split("Seed: ")
                .nth(1)
                .and_then(|rest| rest.split(',').next())
                .expect("a seed");
            assert!(parameters.starts_with("again and again\n"));
            seed.trim().parse().expect("a number")
        })
        .collect();
    assert_eq!(seeds.len(), made);
    seeds.sort_unstable();
    seeds.dedup();
    assert_eq!(seeds.len(), made, "every repeat has a new seed");
}

#[test]
fn batch_size_in_the_window_makes_that_many_images_per_run() {
    let output = Scratch::new("batch-size-out");
    let queue_folder = Scratch::new("batch-size-queue");
    let desktop = ScriptedDesktop::default();
    let mut harness = open_app_with_queue(&output.0, &queue_folder.0, &desktop);
    wait_for_model(&mut harness);
    set_prompt(&mut harness, "two at once", 2);
    {
        let state = harness.state_mut().state_mut();
        state.batch_count = 2;
        state.batch_size = 2;
        state.seed = 500;
        state.seed_locked = true;
    }
    harness.get_by_label("Generate").click();
    step_until(&mut harness, "four images", |app| {
        app.run().is_none() && app.history().len() == 4
    });
    let mut seeds: Vec<u64> = harness
        .state()
        .history()
        .entries()
        .iter()
        .filter_map(|entry| entry.seed())
        .collect();
    seeds.sort_unstable();
    assert_eq!(seeds, [500, 501, 502, 503]);
}
