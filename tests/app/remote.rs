//! The window driving a `latent-studio serve` on a loopback port: the engine switched in the
//! Engine section, the server's model loaded, an image generated there and saved here.

use super::*;
use latent_studio::engine::{AddOnFolders, LoadOptions};
use latent_studio::server::{Server, ServerConfig, ServerOptions};

fn serve_sd1() -> Server {
    let config = ServerConfig::new(ServerOptions {
        listen: "127.0.0.1:0".parse().expect("address"),
        api_auth: None,
        insecure: false,
        models: vec![fixture_model("sd1")],
        load_options: LoadOptions {
            device: candle_core::Device::Cpu,
            dtype: candle_core::DType::F32,
            vae: None,
            config: None,
            keep_f16_weights: true,
        },
        folders: AddOnFolders::default(),
        upscalers: None,
    })
    .expect("config");
    Server::start(config).expect("server")
}

#[test]
fn switching_to_a_server_generates_there_and_saves_here() {
    let server = serve_sd1();
    let output = Scratch::new("remote");
    let desktop = ScriptedDesktop::default();
    let mut harness = open_app(fixture_model("sd1"), &output.0, &desktop);
    wait_for_model(&mut harness);

    harness.get_by_label("Engine: this computer").click();
    harness.run_steps(2);
    // A port nobody listens on: one notice that names the address and what to do.
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address")
        .port();
    harness.state_mut().state_mut().engine.server_url = format!("127.0.0.1:{dead_port}");
    harness.get_by_label("Use this server").click();
    step_until(&mut harness, "the notice about the address", |app| {
        app.notices()
            .iter()
            .any(|n| n.detail.contains("connection refused"))
    });
    let notices: Vec<_> = harness
        .state()
        .notices()
        .iter()
        .map(|n| n.detail.clone())
        .collect();
    assert_eq!(
        notices,
        [format!("cannot reach http://127.0.0.1:{dead_port}: connection refused — is `latent-studio serve` running there?")]
    );

    // The right address, typed in.
    harness.state_mut().state_mut().engine.server_url.clear();
    harness.get_by_label("Address").click();
    harness.run_steps(2);
    harness
        .get_by_label("Address")
        .type_text(&server.address().to_string());
    harness.run_steps(2);
    harness.get_by_label("Reconnect").click();
    step_until(
        &mut harness,
        "the server's model",
        |app| matches!(app.model_status(), ModelStatus::Ready(m) if m.source == ModelSource::Server("sd1".into())),
    );
    assert!(harness.state().state().engine.use_server);
    assert!(
        harness.state().notices().iter().next().is_none(),
        "the old notice is gone"
    );
    // The local model is kept for switching back.
    assert_eq!(
        harness.state().state().engine.other_model,
        Some(fixture_model("sd1"))
    );

    harness.state_mut().state_mut().steps = 3;
    harness.get_by_label("Prompt").click();
    harness.run_steps(2);
    harness.get_by_label("Prompt").type_text("a red barn");
    harness.run_steps(2);
    harness.get_by_label("Generate").click();
    step_until(&mut harness, "the image from the server", |app| {
        app.run().is_none() && app.history().len() == 1
    });
    let app = harness.state();
    let files = pngs_in(&output.0);
    assert_eq!(
        files.len(),
        1,
        "{:?}",
        app.notices().iter().map(|n| &n.detail).collect::<Vec<_>>()
    );
    assert_eq!(app.history().entries()[0].path.as_ref(), Some(&files[0]));
    let parameters = read_png_parameters(&files[0]).expect("read").expect("text");
    assert!(parameters.starts_with("a red barn\n"), "{parameters}");
    assert!(parameters.contains("Steps: 3, "), "{parameters}");

    // Back to this computer: its model again.
    harness.get_by_label("This computer").click();
    wait_for_model(&mut harness);
    assert_eq!(harness.state().state().model, Some(fixture_model("sd1")));
    assert!(!harness.state().state().engine.use_server);
}

/// A saved server address that cannot be used (a settings file edited by hand) leaves the
/// window on this computer's engine and says which address and why, instead of nothing.
#[test]
fn an_unusable_saved_server_address_is_reported_when_the_engine_starts() {
    let output = Scratch::new("remote-bad-saved");
    let desktop = ScriptedDesktop::default();
    let mut harness = open_app(fixture_model("sd1"), &output.0, &desktop);
    wait_for_model(&mut harness);
    {
        let engine = &mut harness.state_mut().state_mut().engine;
        engine.use_server = true;
        engine.server_url = "ftp://[not an address".into();
    }
    harness.state_mut().stop_engine();
    step_until(&mut harness, "the window to see the engine stop", |app| {
        app.engine_stopped()
    });
    harness.run_steps(2);
    harness.get_by_label("Restart engine").click();
    harness.run_steps(2);
    assert!(!harness.state().state().engine.use_server);
    let notice = harness
        .state()
        .notices()
        .iter()
        .find(|n| n.title.contains("saved server address cannot be used"))
        .map(|n| n.detail.clone());
    let detail = notice.expect("a notice about the saved address");
    assert!(detail.starts_with("ftp://[not an address: "), "{detail}");
    wait_for_model(&mut harness);
}
