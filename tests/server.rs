//! `latent-studio serve` as A1111's clients drive it: every endpoint over HTTP on a loopback
//! port, images identical to `latent-studio generate`, progress and interrupt mid-run, two
//! clients at once, bad requests answered 4xx while the server keeps serving, and auth.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use candle_core::{DType, Device};
use latent_studio::engine::{AddOnFolders, LoadOptions, ModelSource};
use latent_studio::server::{Server, ServerConfig, ServerOptions};
use serde_json::{json, Value};

const PROMPT: &str = "A photo of an Astronaut riding a horse, on Mars!";
const NEGATIVE: &str = "blurry, low quality";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn model_path(name: &str) -> PathBuf {
    fixtures().join("models").join(name)
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "latent-studio-server-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn start_with(models: &[&str], api_auth: Option<&str>, folders: AddOnFolders) -> Server {
    let config = ServerConfig::new(ServerOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        api_auth: api_auth.map(str::to_string),
        insecure: false,
        models: models
            .iter()
            .map(|name| ModelSource::Folder(model_path(name)))
            .collect(),
        load_options: LoadOptions {
            device: Device::Cpu,
            dtype: DType::F32,
            vae: None,
            config: None,
            keep_f16_weights: true,
        },
        folders,
        upscalers: Some(fixtures().join("upscalers")),
    })
    .unwrap();
    Server::start(config).unwrap()
}

/// The fixtures' LoRAs and embeddings, for the server and `generate` alike.
fn fixture_folders() -> AddOnFolders {
    AddOnFolders {
        loras: Some(fixtures().join("formats/loras")),
        embeddings: Some(fixtures().join("formats/embeddings")),
    }
}

fn start(models: &[&str]) -> Server {
    start_with(models, None, fixture_folders())
}

struct Client {
    agent: ureq::Agent,
    base: String,
    authorization: Option<String>,
}

fn client(server: &Server) -> Client {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(300)))
        .build();
    Client {
        agent: ureq::Agent::new_with_config(config),
        base: format!("http://{}", server.address()),
        authorization: None,
    }
}

impl Client {
    fn with_password(mut self, user_and_password: &str) -> Self {
        let encoded = base64::engine::general_purpose::STANDARD.encode(user_and_password);
        self.authorization = Some(format!("Basic {encoded}"));
        self
    }

    fn answer(response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> (u16, Value) {
        let mut response = response.expect("an HTTP answer");
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(256 << 20)
            .read_to_string()
            .unwrap();
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|err| panic!("not JSON ({err}): {text:.200}"));
        (status, value)
    }

    fn get(&self, path: &str) -> (u16, Value) {
        let mut request = self.agent.get(format!("{}{path}", self.base));
        if let Some(value) = &self.authorization {
            request = request.header("Authorization", value);
        }
        Self::answer(request.call())
    }

    fn post_raw(&self, path: &str, body: impl ureq::AsSendBody) -> (u16, Value) {
        let mut request = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Content-Type", "application/json");
        if let Some(value) = &self.authorization {
            request = request.header("Authorization", value);
        }
        Self::answer(request.send(body))
    }

    fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_raw(path, body.to_string())
    }

    /// A request that must succeed.
    fn ok(&self, path: &str, body: &Value) -> Value {
        let (status, value) = self.post(path, body);
        assert_eq!(status, 200, "{path}: {value}");
        value
    }
}

fn base64_file(path: &Path) -> String {
    base64::engine::general_purpose::STANDARD.encode(std::fs::read(path).unwrap())
}

/// Pixels and `parameters` text of a base64 PNG.
fn decode_png(encoded: &Value) -> (image::RgbImage, String) {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.as_str().expect("a base64 string"))
        .unwrap();
    let image = image::load_from_memory(&bytes).unwrap().to_rgb8();
    let text = latent_studio::engine::png_parameters_from_bytes(&bytes)
        .unwrap()
        .unwrap_or_default();
    (image, text)
}

fn info(reply: &Value) -> Value {
    serde_json::from_str(reply["info"].as_str().expect("info is a JSON text")).unwrap()
}

/// `latent-studio generate --model MODEL … --output DIR/x.png`; the written files in order.
fn generate(model: &str, dir: &Path, args: &[&str], count: usize) -> Vec<PathBuf> {
    let output = dir.join("x.png");
    let run = Command::new(env!("CARGO_BIN_EXE_latent-studio"))
        .arg("generate")
        .args(["--model", model_path(model).to_str().unwrap()])
        .args(["--output", output.to_str().unwrap()])
        .arg("--lora-dir")
        .arg(fixture_folders().loras.unwrap())
        .arg("--embeddings-dir")
        .arg(fixture_folders().embeddings.unwrap())
        .args(args)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    if count == 1 {
        vec![output]
    } else {
        (1..=count)
            .map(|n| dir.join(format!("x-{n}.png")))
            .collect()
    }
}

/// The server's images are the CLI's files, pixel for pixel and text for text.
fn assert_same_images(reply: &Value, files: &[PathBuf]) {
    let images = reply["images"].as_array().unwrap();
    assert_eq!(images.len(), files.len());
    for (encoded, file) in images.iter().zip(files) {
        let (served, text) = decode_png(encoded);
        let written = image::open(file).unwrap().to_rgb8();
        assert_eq!(served.dimensions(), written.dimensions());
        assert!(served == written, "pixels differ from {}", file.display());
        let written_text = latent_studio::engine::read_png_parameters(file)
            .unwrap()
            .unwrap();
        assert_eq!(text, written_text);
    }
}

#[test]
fn txt2img_matches_generate() {
    let server = start(&["sd1"]);
    let client = client(&server);
    // A LoRA tag and an embedding, found in the server's folders by name.
    let prompt = format!("{PROMPT} <lora:sd1_kohya:0.8>, tiny-style");
    let request = json!({
        "prompt": prompt, "negative_prompt": NEGATIVE, "seed": 42, "steps": 3,
        "cfg_scale": 7.5, "width": 64, "height": 64, "sampler_name": "Euler a",
        "batch_size": 2, "n_iter": 1, "subseed": 1234, "subseed_strength": 0.3,
        "save_images": true, "send_images": true,
    });
    let reply = client.ok("/sdapi/v1/txt2img", &request);
    let dir = scratch("txt2img-cli");
    let mut args = vec!["--prompt", &prompt, "--negative-prompt", NEGATIVE];
    args.extend(
        "--seed 42 --steps 3 --guidance 7.5 --width 64 --height 64 --scheduler euler-a \
         --batch-size 2 --variation-seed 1234 --variation-strength 0.3"
            .split_whitespace(),
    );
    let files = generate("sd1", &dir, &args, 2);
    assert_same_images(&reply, &files);
    let info = info(&reply);
    assert_eq!(info["all_seeds"], json!([42, 43]));
    assert_eq!(info["seed"], 42);
    assert_eq!(info["all_subseeds"], json!([1234, 1235]));
    assert_eq!(info["sampler_name"], "Euler a");
    assert_eq!(info["sd_model_name"], "sd1");
    let infotexts = info["infotexts"].as_array().unwrap();
    assert!(infotexts[1].as_str().unwrap().contains("Seed: 43"));
    assert!(infotexts[0].as_str().unwrap().contains("sd1_kohya"));
    assert_eq!(reply["parameters"]["prompt"], prompt);
    assert_eq!(reply["parameters"]["batch_size"], 2);
}

#[test]
fn img2img_and_inpainting_match_generate() {
    let server = start(&["sd1"]);
    let client = client(&server);
    let init_path = fixtures().join("init_64.png");
    let mask_path = fixtures().join("mask_64.png");
    let (init, mask) = (base64_file(&init_path), base64_file(&mask_path));
    let common = "--steps 4 --guidance 7.5 --scheduler euler";
    let cases = [
        (
            "plain",
            json!({"denoising_strength": 0.5, "seed": 3}),
            "--seed 3 --strength 0.5",
        ),
        (
            "whole",
            json!({
                "mask": mask, "seed": 7, "denoising_strength": 0.6, "mask_blur": 2,
                "inpainting_fill": 1, "inpaint_full_res": false,
            }),
            "--seed 7 --strength 0.6 --mask-blur 2 --masked-content original --inpaint-area whole",
        ),
        // A1111's defaults: strength 0.75, blur 4, "fill", only the masked area, padding 0.
        (
            "defaults",
            json!({"mask": mask, "seed": 9}),
            "--seed 9 --strength 0.75 --mask-blur 4 --masked-content fill --inpaint-area masked \
             --inpaint-padding 0",
        ),
    ];
    for (name, fields, flags) in cases {
        let mut request = json!({
            "init_images": [init], "prompt": PROMPT, "steps": 4, "cfg_scale": 7.5,
            "sampler_name": "Euler",
        });
        for (key, value) in fields.as_object().unwrap() {
            request[key] = value.clone();
        }
        let reply = client.ok("/sdapi/v1/img2img", &request);
        let dir = scratch(&format!("img2img-{name}"));
        let mut args = vec![
            "--prompt",
            PROMPT,
            "--init-image",
            init_path.to_str().unwrap(),
        ];
        if request.get("mask").is_some() {
            args.extend(["--mask", mask_path.to_str().unwrap()]);
        }
        args.extend(common.split_whitespace().chain(flags.split_whitespace()));
        let files = generate("sd1", &dir, &args, 1);
        assert_same_images(&reply, &files);
        // The pictures are not sent back.
        assert_eq!(reply["parameters"]["init_images"], Value::Null, "{name}");
    }
}

#[test]
fn progress_shows_a_live_preview_and_interrupt_stops_the_run() {
    let server = start(&["sd_turbo"]);
    let client = client(&server);
    let (status, idle) = client.get("/sdapi/v1/progress");
    assert_eq!(status, 200);
    assert_eq!(idle["state"]["job_count"], 0);
    assert_eq!(idle["current_image"], Value::Null);
    let started = Instant::now();
    let long_run = {
        let base = client.base.clone();
        let agent = client.agent.clone();
        std::thread::spawn(move || {
            let body = json!({
                "prompt": PROMPT, "seed": 1, "steps": 1000, "width": 64, "height": 64,
                "batch_size": 3, "sampler_name": "Euler",
            });
            Client {
                agent,
                base,
                authorization: None,
            }
            .ok("/sdapi/v1/txt2img", &body)
        })
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    let progress = loop {
        let (_, progress) = client.get("/sdapi/v1/progress");
        if progress["state"]["sampling_step"].as_u64().unwrap_or(0) >= 2
            && !progress["current_image"].is_null()
        {
            break progress;
        }
        assert!(Instant::now() < deadline, "no progress: {progress}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(progress["state"]["job_count"], 3);
    assert_eq!(progress["state"]["sampling_steps"], 1000);
    let fraction = progress["progress"].as_f64().unwrap();
    assert!(fraction > 0.0 && fraction < 1.0, "{progress}");
    let (preview, _) = decode_png(&progress["current_image"]);
    // The fast preview is the latents' size.
    assert_eq!(preview.dimensions(), (8, 8));

    let (status, _) = client.post("/sdapi/v1/interrupt", &json!({}));
    assert_eq!(status, 200);
    let reply = long_run.join().unwrap();
    // Stopped within the first image: nothing finished.
    assert_eq!(reply["images"], json!([]));
    assert!(started.elapsed() < Duration::from_secs(120));
    let (_, after) = client.get("/sdapi/v1/progress");
    assert_eq!(after["state"]["job_count"], 0, "{after}");

    // The interrupt was for that run only.
    let reply = client.ok(
        "/sdapi/v1/txt2img",
        &json!({"prompt": PROMPT, "seed": 1, "steps": 1, "width": 64, "height": 64}),
    );
    assert_eq!(reply["images"].as_array().unwrap().len(), 1);
}

#[test]
fn two_clients_at_once_both_get_their_images() {
    let server = start(&["sd_turbo"]);
    let client = client(&server);
    let request =
        |seed: u64| json!({"prompt": PROMPT, "seed": seed, "steps": 2, "width": 64, "height": 64});
    let together: Vec<Value> = std::thread::scope(|scope| {
        let runs: Vec<_> = [11, 12]
            .into_iter()
            .map(|seed| {
                let client = &client;
                let body = request(seed);
                scope.spawn(move || client.ok("/sdapi/v1/txt2img", &body))
            })
            .collect();
        runs.into_iter().map(|run| run.join().unwrap()).collect()
    });
    for (reply, seed) in together.iter().zip([11, 12]) {
        assert_eq!(info(reply)["seed"], seed);
        // The same image as when the request comes alone.
        let alone = client.ok("/sdapi/v1/txt2img", &request(seed));
        assert_eq!(reply["images"], alone["images"]);
    }
    assert_ne!(together[0]["images"], together[1]["images"]);
}

fn assert_refused(answer: (u16, Value), status: u16, fragment: &str) {
    let (got, body) = answer;
    assert_eq!(got, status, "{body}");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains(fragment), "{fragment:?} not in {detail:?}");
}

#[test]
fn bad_requests_get_4xx_and_the_server_keeps_serving() {
    let server = start(&["sd_turbo"]);
    let client = client(&server);
    let txt2img = "/sdapi/v1/txt2img";
    assert_refused(
        client.post_raw(txt2img, "{\"prompt\": "),
        400,
        "invalid JSON",
    );
    assert_refused(client.post_raw(txt2img, "[1, 2]"), 400, "JSON object");
    let not_base64 = json!({"init_images": ["%%% not base64"]});
    assert_refused(
        client.post("/sdapi/v1/img2img", &not_base64),
        422,
        "init_images[0]: not base64",
    );
    let not_a_picture = json!({
        "init_images": [base64::engine::general_purpose::STANDARD.encode("hello")]
    });
    assert_refused(
        client.post("/sdapi/v1/img2img", &not_a_picture),
        422,
        "not an image",
    );
    let (status, body) = client.post(
        txt2img,
        &json!({"prompt": "x", "enable_hr": true, "restore_faces": true, "save_images": true}),
    );
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["fields"], json!(["restore_faces"]));
    assert_refused(
        client.post(txt2img, &json!({"sampler_name": "DPM++ SDE"})),
        422,
        "sampler_name",
    );
    assert_refused(client.post(txt2img, &json!({"width": 65})), 422, "width 65");
    assert_refused(client.post(txt2img, &json!({"steps": -3})), 422, "steps");
    assert_refused(
        client.post(
            txt2img,
            &json!({"override_settings": {"sd_model_checkpoint": "/etc/passwd"}}),
        ),
        422,
        "not one of this server's models",
    );
    // Names in prompts never reach outside the configured folders.
    assert_refused(
        client.post(txt2img, &json!({"prompt": "<lora:../../etc/passwd:1>"})),
        422,
        "../../etc/passwd",
    );
    assert_refused(
        client.post(txt2img, &json!({"batch_size": 9})),
        422,
        "batch_size 9: at most 8",
    );
    let oversize = vec![b' '; (64 << 20) + 1];
    assert_refused(client.post_raw(txt2img, oversize), 413, "at most");
    assert_refused(client.get("/nowhere"), 404, "no such endpoint");
    assert_refused(client.get(txt2img), 405, "does not answer");

    // A body announced as a terabyte is refused without waiting for it or making room.
    let mut stream = std::net::TcpStream::connect(server.address()).unwrap();
    stream
        .write_all(b"POST /sdapi/v1/txt2img HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000\r\n\r\n{}")
        .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut head = String::new();
    BufReader::new(&stream).read_line(&mut head).unwrap();
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    drop(stream);
    // Garbage instead of HTTP.
    let mut stream = std::net::TcpStream::connect(server.address()).unwrap();
    stream.write_all(b"\x16\x03\x01 hello\r\n\r\n").unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(
        answer.starts_with("HTTP/1.1 4") || answer.starts_with("HTTP/1.1 5"),
        "{answer}"
    );

    let reply = client.ok(
        txt2img,
        &json!({"prompt": PROMPT, "seed": 5, "steps": 1, "width": 64, "height": 64}),
    );
    assert_eq!(reply["images"].as_array().unwrap().len(), 1);
}

#[test]
fn models_options_samplers_loras_and_png_info() {
    let loras = scratch("listing");
    std::fs::write(loras.join("style.safetensors"), b"not read").unwrap();
    std::fs::write(loras.join("notes.txt"), b"not a lora").unwrap();
    let server = start_with(
        &["sd1", "sd_turbo"],
        None,
        AddOnFolders {
            loras: Some(loras.clone()),
            embeddings: fixture_folders().embeddings,
        },
    );
    let client = client(&server);
    let (status, models) = client.get("/sdapi/v1/sd-models");
    assert_eq!(status, 200);
    let titles: Vec<&str> = models
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["sd1", "sd_turbo"]);
    assert_eq!(
        client.get("/sdapi/v1/options").1["sd_model_checkpoint"],
        "sd1"
    );

    let model_of = |extra: Value| {
        let mut body = json!({"prompt": "x", "seed": 1, "steps": 1, "width": 64, "height": 64});
        for (key, value) in extra.as_object().unwrap() {
            body[key] = value.clone();
        }
        info(&client.ok("/sdapi/v1/txt2img", &body))["sd_model_name"].clone()
    };
    assert_eq!(model_of(json!({})), "sd1");
    let turbo = json!({"override_settings": {"sd_model_checkpoint": "sd_turbo"}});
    assert_eq!(model_of(turbo), "sd_turbo");
    // A request's own model is for that request only.
    assert_eq!(model_of(json!({})), "sd1");
    let switch = json!({"sd_model_checkpoint": "sd_turbo", "samples_format": "png"});
    assert_eq!(client.post("/sdapi/v1/options", &switch).0, 200);
    assert_eq!(
        client.get("/sdapi/v1/options").1["sd_model_checkpoint"],
        "sd_turbo"
    );
    assert_eq!(model_of(json!({})), "sd_turbo");
    assert_refused(
        client.post(
            "/sdapi/v1/options",
            &json!({"sd_model_checkpoint": "../sd1"}),
        ),
        422,
        "not one of this server's models",
    );
    assert_refused(
        client.post("/sdapi/v1/options", &json!({"CLIP_stop_at_last_layers": 2})),
        422,
        "override_settings",
    );
    assert_refused(
        client.post("/sdapi/v1/options", &json!({"sd_hypernetwork": "x"})),
        422,
        "sd_hypernetwork",
    );

    let (_, samplers) = client.get("/sdapi/v1/samplers");
    let names: Vec<&str> = samplers
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    for expected in ["Euler a", "Euler", "DDIM", "DPM++ 2M Karras", "UniPC"] {
        assert!(names.contains(&expected), "{expected} not in {names:?}");
    }
    let (_, schedulers) = client.get("/sdapi/v1/schedulers");
    assert!(schedulers.to_string().contains("\"karras\""));
    let (_, listed) = client.get("/sdapi/v1/loras");
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["name"], "style");
    // The embeddings that fit the model loaded now (not the SDXL one).
    let (_, embeddings) = client.get("/sdapi/v1/embeddings");
    assert_eq!(
        embeddings["loaded"],
        json!({"tiny-style": {}}),
        "{embeddings}"
    );

    // png-info reads back what txt2img wrote.
    let reply = client.ok(
        "/sdapi/v1/txt2img",
        &json!({"prompt": PROMPT, "seed": 77, "steps": 1, "width": 64, "height": 64}),
    );
    let png = &reply["images"][0];
    let read = client.ok("/sdapi/v1/png-info", &json!({ "image": png }));
    assert_eq!(read["info"], info(&reply)["infotexts"][0]);
    assert_eq!(read["parameters"]["Seed"], "77");
    assert_eq!(read["parameters"]["Prompt"], PROMPT);
    let plain = base64_file(&fixtures().join("init_64.png"));
    assert_eq!(
        client.ok("/sdapi/v1/png-info", &json!({ "image": plain }))["info"],
        ""
    );
    assert_refused(
        client.post("/sdapi/v1/png-info", &json!({"image": "aGVsbG8="})),
        422,
        "not an image",
    );
}

#[test]
fn a_password_is_required_when_set() {
    let dir = scratch("auth");
    let server = start_with(
        &["sd_turbo"],
        Some("ann:secret"),
        AddOnFolders {
            loras: Some(dir.clone()),
            embeddings: Some(dir),
        },
    );
    let anonymous = client(&server);
    assert_eq!(anonymous.get("/sdapi/v1/sd-models").0, 401);
    assert_eq!(
        anonymous
            .post("/sdapi/v1/txt2img", &json!({"prompt": "x"}))
            .0,
        401
    );
    assert_eq!(
        client(&server)
            .with_password("ann:wrong")
            .get("/sdapi/v1/sd-models")
            .0,
        401
    );
    let (status, models) = client(&server)
        .with_password("ann:secret")
        .get("/sdapi/v1/sd-models");
    assert_eq!(status, 200, "{models}");
}

fn serve_command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_latent-studio"));
    command
        .arg("serve")
        .args(["--model", model_path("sd_turbo").to_str().unwrap()])
        .args(args);
    command
}

#[test]
fn serve_refuses_an_open_address_without_a_password_and_prints_its_address() {
    for (args, fragment) in [
        (&["--listen", "0.0.0.0:0"][..], "--api-auth"),
        (
            &["--listen", "127.0.0.1:0", "--api-auth", "ann"][..],
            "user:password",
        ),
        (&["--listen", "nowhere"][..], "ADDRESS:PORT"),
    ] {
        let output = serve_command(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{stderr}");
        assert!(lines[0].contains(fragment), "{fragment} not in {stderr}");
    }

    let mut child = serve_command(&["--listen", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let address = stderr.lines().map_while(Result::ok).find_map(|line| {
        let rest = line.strip_prefix("listening on http://")?;
        Some(rest.split_whitespace().next()?.to_string())
    });
    let answer = address.as_ref().map(|address| {
        let config = ureq::Agent::config_builder()
            .proxy(None)
            .http_status_as_error(false)
            .build();
        ureq::Agent::new_with_config(config)
            .get(format!("http://{address}/sdapi/v1/sd-models"))
            .call()
            .map(|response| response.status().as_u16())
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(address.is_some_and(|a| !a.ends_with(":0")));
    assert_eq!(answer.unwrap().unwrap(), 200);
}

/// `enable_hr` is the CLI's hires fix: an upscaler named by its file in the server's
/// upscaler folder or a latent upscaler by A1111's name, `hr_resize_x` as A1111 reads it;
/// paths are refused.
#[test]
fn enable_hr_matches_the_clis_hires_fix() {
    let server = start(&["sd1"]);
    let client = client(&server);
    let request = json!({
        "prompt": PROMPT, "seed": 5, "steps": 2, "width": 64, "height": 48,
        "sampler_name": "Euler", "enable_hr": true, "hr_scale": 1.5,
        "hr_upscaler": "compact_x2", "hr_second_pass_steps": 3, "denoising_strength": 0.6,
    });
    let reply = client.ok("/sdapi/v1/txt2img", &request);
    let dir = scratch("hires-cli");
    let upscaler = fixtures().join("upscalers/compact_x2.safetensors");
    let mut args = vec![
        "--prompt",
        PROMPT,
        "--hires-upscaler",
        upscaler.to_str().unwrap(),
    ];
    args.extend(
        "--seed 5 --steps 2 --width 64 --height 48 --scheduler euler --hires-scale 1.5 \
         --hires-steps 3 --hires-denoise 0.6"
            .split_whitespace(),
    );
    let files = generate("sd1", &dir, &args, 1);
    assert_same_images(&reply, &files);
    let (picture, text) = decode_png(&reply["images"][0]);
    assert_eq!(picture.dimensions(), (96, 72));
    assert!(text.contains("Hires upscaler: compact_x2"), "{text}");

    // hr_resize_x alone keeps the shape: the same image as hr_scale 1.5.
    let mut by_size = request.clone();
    by_size["hr_scale"] = json!(2);
    by_size["hr_resize_x"] = json!(96);
    let again = client.ok("/sdapi/v1/txt2img", &by_size);
    assert_eq!(
        decode_png(&again["images"][0]).0,
        picture,
        "hr_resize_x 96 is ×1.5"
    );

    // Latent upscalers by A1111's names; a missing hr_upscaler is A1111's default, "Latent".
    let mut latent = request.clone();
    latent["hr_upscaler"] = json!("Latent (bicubic)");
    let reply = client.ok("/sdapi/v1/txt2img", &latent);
    let mut args = vec!["--prompt", PROMPT, "--hires-upscaler", "latent-bicubic"];
    args.extend(
        "--seed 5 --steps 2 --width 64 --height 48 --scheduler euler --hires-scale 1.5 \
         --hires-steps 3 --hires-denoise 0.6"
            .split_whitespace(),
    );
    let files = generate("sd1", &scratch("hires-latent-cli"), &args, 1);
    assert_same_images(&reply, &files);
    let (picture, text) = decode_png(&reply["images"][0]);
    assert_eq!(picture.dimensions(), (96, 72));
    assert!(text.contains("Hires upscaler: Latent (bicubic)"), "{text}");
    let mut default = request.clone();
    default.as_object_mut().unwrap().remove("hr_upscaler");
    let (_, text) = decode_png(&client.ok("/sdapi/v1/txt2img", &default)["images"][0]);
    assert!(text.contains("Hires upscaler: Latent,"), "{text}");

    let txt2img = "/sdapi/v1/txt2img";
    for (upscaler, fragment) in [
        (
            json!("../upscalers/compact_x2"),
            "neither Lanczos nor an upscaler",
        ),
        (json!("/etc/passwd"), "neither Lanczos nor an upscaler"),
    ] {
        let mut bad = request.clone();
        bad["hr_upscaler"] = upscaler;
        assert_refused(client.post(txt2img, &bad), 422, fragment);
    }
    let mut cropped = request.clone();
    cropped["hr_resize_x"] = json!(96);
    cropped["hr_resize_y"] = json!(96);
    assert_refused(client.post(txt2img, &cropped), 422, "cropping");
}
