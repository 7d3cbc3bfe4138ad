//! The fake hub the download tests talk to: an in-process HTTP server on 127.0.0.1 with the
//! hub's URL layout and headers, the API's file listing, direct-download URLs, a repository
//! whose weights arrive slowly, and failures on demand.

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use latent_studio::models::{HubClient, RetryPolicy};
use sha2::{Digest, Sha256};

pub const REPO: &str = "test-org/tiny-turbo";
pub const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
pub const FIXTURE: &str = "tests/fixtures/models/sd_turbo";
pub const UNET: &str = "unet/diffusion_pytorch_model.safetensors";
pub const FILES: [&str; 12] = [
    "model_index.json",
    "scheduler/scheduler_config.json",
    "text_encoder/config.json",
    "text_encoder/model.safetensors",
    "tokenizer/merges.txt",
    "tokenizer/special_tokens_map.json",
    "tokenizer/tokenizer_config.json",
    "tokenizer/vocab.json",
    "unet/config.json",
    UNET,
    "vae/config.json",
    "vae/diffusion_pytorch_model.safetensors",
];

/// A ControlNet repository as `lllyasviel/control_v11p_sd15_canny` is laid out: config,
/// fp16 and full weights (here both the SD 1 ControlNet fixture's bytes) and a pickle.
pub const CONTROLNET_REPO: &str = "test-org/tiny-controlnet";
/// A ControlNet repository with pickle weights only.
pub const PICKLE_CONTROLNET_REPO: &str = "test-org/pickle-controlnet";
pub const CONTROLNET_FIXTURE: &str = "tests/fixtures/models/sd1_controlnet";
/// The ControlNet fixture again, its weights sent at 64 KiB per [`SLOW_CHUNK_DELAY`] (about
/// three seconds in all), so a test can act while they arrive.
pub const SLOW_CONTROLNET_REPO: &str = "test-org/slow-controlnet";
pub const SLOW_CHUNK_DELAY: Duration = Duration::from_millis(100);

/// The files of the ControlNet repositories (`repo/path`), with the fixture file each serves.
const CONTROLNET_FILES: [(&str, &str, &str); 7] = [
    (CONTROLNET_REPO, "config.json", "config.json"),
    (
        CONTROLNET_REPO,
        "diffusion_pytorch_model.fp16.safetensors",
        "diffusion_pytorch_model.safetensors",
    ),
    (
        CONTROLNET_REPO,
        "diffusion_pytorch_model.safetensors",
        "diffusion_pytorch_model.safetensors",
    ),
    (
        CONTROLNET_REPO,
        "diffusion_pytorch_model.bin",
        "config.json",
    ),
    (PICKLE_CONTROLNET_REPO, "config.json", "config.json"),
    (SLOW_CONTROLNET_REPO, "config.json", "config.json"),
    (
        SLOW_CONTROLNET_REPO,
        "diffusion_pytorch_model.fp16.safetensors",
        "diffusion_pytorch_model.safetensors",
    ),
];

/// A repository holding one upscaler file (the Compact ×2 fixture's bytes), as the hub
/// upscaler catalog's repositories hold theirs.
pub const UPSCALER_REPO: &str = "test-org/tiny-upscaler";
pub const UPSCALER_FILE: &str = "compact_x2.safetensors";
pub const UPSCALER_FIXTURE: &str = "tests/fixtures/upscalers/compact_x2.safetensors";

/// The repositories the engine fetches besides models and add-ons the user names: the tiny
/// autoencoder and the depth model, served from their tiny fixtures.
pub const TAESD_REPO: &str = "madebyollin/taesd";
pub const DEPTH_REPO: &str = "depth-anything/Depth-Anything-V2-Small-hf";
const ENGINE_FILES: [(&str, &str, &str); 5] = [
    (
        TAESD_REPO,
        "config.json",
        "tests/fixtures/models/taesd_tiny",
    ),
    (
        TAESD_REPO,
        "diffusion_pytorch_model.safetensors",
        "tests/fixtures/models/taesd_tiny",
    ),
    (
        DEPTH_REPO,
        "config.json",
        "tests/fixtures/models/depth_tiny",
    ),
    (
        DEPTH_REPO,
        "model.safetensors",
        "tests/fixtures/models/depth_tiny",
    ),
    (
        DEPTH_REPO,
        "preprocessor_config.json",
        "tests/fixtures/models/depth_tiny",
    ),
];

pub struct RepoFile {
    pub data: Vec<u8>,
    pub etag: String,
    /// Served like an LFS file: the resolve URL redirects to `/storage/{etag}`.
    pub lfs: bool,
}

fn fnv(data: &[u8], seed: u64) -> u64 {
    data.iter().fold(0xcbf29ce484222325 ^ seed, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

/// The main repository's files by path; the other repositories' by `repo/path`.
fn repo_files() -> HashMap<String, RepoFile> {
    let main = FILES
        .iter()
        .map(|&path| (path.to_string(), Path::new(FIXTURE).join(path)));
    let controlnets = CONTROLNET_FILES.iter().map(|(repo, path, fixture)| {
        (
            format!("{repo}/{path}"),
            Path::new(CONTROLNET_FIXTURE).join(fixture),
        )
    });
    let upscaler = (
        format!("{UPSCALER_REPO}/{UPSCALER_FILE}"),
        Path::new(UPSCALER_FIXTURE).to_path_buf(),
    );
    let engine = ENGINE_FILES
        .iter()
        .map(|(repo, path, dir)| (format!("{repo}/{path}"), Path::new(dir).join(path)));
    main.chain(controlnets)
        .chain([upscaler])
        .chain(engine)
        .map(|(path, fixture)| {
            let data = fs::read(fixture).unwrap();
            let lfs = path.ends_with(".safetensors");
            // Git blob ids are 40 hex digits; an LFS id is the file's SHA-256.
            let etag: String = if lfs {
                Sha256::digest(&data)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect()
            } else {
                (0..3)
                    .map(|i| format!("{:016x}", fnv(&data, i)))
                    .collect::<String>()[..40]
                    .to_string()
            };
            (path, RepoFile { data, etag, lfs })
        })
        .collect()
}

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub range: Option<String>,
    pub authorization: Option<String>,
}

#[derive(Default)]
pub struct Behavior {
    /// The next GET of this file (repository path) sends only the first N bytes, then closes.
    pub cut: Option<(String, usize)>,
    /// Pause after each 64 KiB of a body.
    pub chunk_delay: Option<Duration>,
    /// The next N GETs of file bodies answer HTTP 500.
    pub fail_next: usize,
    /// Resolve and API requests answer HTTP 401, as for a gated repository.
    pub deny: bool,
    /// The next GET of this file sends its bytes with the first one changed.
    pub corrupt: Option<String>,
}

pub struct FakeHub {
    pub addr: SocketAddr,
    pub files: Arc<HashMap<String, RepoFile>>,
    pub requests: Arc<Mutex<Vec<Request>>>,
    pub behavior: Arc<Mutex<Behavior>>,
    pub stop: Arc<AtomicBool>,
    pub thread: Option<JoinHandle<()>>,
}

impl FakeHub {
    pub fn start() -> FakeHub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let files = Arc::new(repo_files());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let behavior = Arc::new(Mutex::new(Behavior::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (files, requests, behavior, stop) = (
                files.clone(),
                requests.clone(),
                behavior.clone(),
                stop.clone(),
            );
            std::thread::spawn(move || {
                // Bounded: the server ends when the test drops it, or after two minutes.
                let deadline = Instant::now() + Duration::from_secs(120);
                while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let _ = serve(stream, addr, &files, &requests, &behavior);
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(2))
                        }
                        Err(_) => break,
                    }
                }
            })
        };
        FakeHub {
            addr,
            files,
            requests,
            behavior,
            stop,
            thread: Some(thread),
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A client that reports the first failure, so each test sees exactly what happened.
    pub fn client(&self) -> HubClient {
        HubClient::new(&self.endpoint()).with_retry_policy(RetryPolicy::none())
    }

    /// A client that tries again three times, quickly.
    pub fn retrying_client(&self) -> HubClient {
        HubClient::new(&self.endpoint()).with_retry_policy(RetryPolicy {
            retries: 3,
            first_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
        })
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    pub fn etag(&self, path: &str) -> String {
        self.files[path].etag.clone()
    }
}

impl Drop for FakeHub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(
    stream: TcpStream,
    addr: SocketAddr,
    files: &HashMap<String, RepoFile>,
    requests: &Mutex<Vec<Request>>,
    behavior: &Mutex<Behavior>,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut range = None;
    let mut authorization = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.trim().eq_ignore_ascii_case("range") {
                range = Some(value.trim().to_string());
            }
            if name.trim().eq_ignore_ascii_case("authorization") {
                authorization = Some(value.trim().to_string());
            }
        }
    }
    requests.lock().unwrap().push(Request {
        method: method.clone(),
        path: path.clone(),
        range: range.clone(),
        authorization,
    });
    let mut out = stream;
    let head = method == "HEAD";

    let denied = behavior.lock().unwrap().deny;
    if denied && (path.starts_with(&format!("/{REPO}/")) || path.starts_with("/api/models/")) {
        return respond(&mut out, "401 Unauthorized", &[], b"", head, None, None);
    }
    if path == format!("/api/models/{REPO}/revision/main") {
        // The repository as the hub lists it: besides the fixture's files, a pickle, a safety
        // checker and a README, none of which may be fetched.
        let mut names: Vec<&str> = FILES.to_vec();
        names.extend([
            "README.md",
            "unet/diffusion_pytorch_model.bin",
            "safety_checker/model.safetensors",
        ]);
        let siblings: Vec<String> = names
            .iter()
            .map(|n| format!("{{\"rfilename\": \"{n}\"}}"))
            .collect();
        let body = format!(
            "{{\"id\": \"{REPO}\", \"sha\": \"{COMMIT}\", \"siblings\": [{}]}}",
            siblings.join(", ")
        );
        return respond(&mut out, "200 OK", &[], body.as_bytes(), head, None, None);
    }
    for listed in [
        CONTROLNET_REPO,
        PICKLE_CONTROLNET_REPO,
        SLOW_CONTROLNET_REPO,
    ] {
        if path == format!("/api/models/{listed}/revision/main") {
            let mut names: Vec<&str> = CONTROLNET_FILES
                .iter()
                .filter(|(repo, _, _)| *repo == listed)
                .map(|(_, name, _)| *name)
                .collect();
            if listed == PICKLE_CONTROLNET_REPO {
                names.push("diffusion_pytorch_model.bin");
            }
            let siblings: Vec<String> = names
                .iter()
                .map(|n| format!("{{\"rfilename\": \"{n}\"}}"))
                .collect();
            let body = format!(
                "{{\"id\": \"{listed}\", \"sha\": \"{COMMIT}\", \"siblings\": [{}]}}",
                siblings.join(", ")
            );
            return respond(&mut out, "200 OK", &[], body.as_bytes(), head, None, None);
        }
    }
    // Direct downloads: a plain file, and a civitai-style API URL that names its file in
    // Content-Disposition.
    let direct = |name: &str| -> (String, Vec<(&'static str, String)>) {
        let headers = vec![(
            "Content-Disposition",
            format!("attachment; filename=\"{name}\""),
        )];
        (name.to_string(), headers)
    };
    let served = match path.as_str() {
        "/files/tiny.safetensors" => Some(("tiny.safetensors".to_string(), Vec::new())),
        "/api/download/models/7" => Some(direct("Tiny Model v1.safetensors")),
        "/api/download/models/8" => Some(direct("tiny.ckpt")),
        _ => None,
    };
    if let Some((name, headers)) = served {
        let unet = &files[UNET];
        return send_file(
            &mut out, &name, unet, &headers, head, range, behavior, false,
        );
    }

    let resolved = [
        REPO,
        CONTROLNET_REPO,
        PICKLE_CONTROLNET_REPO,
        SLOW_CONTROLNET_REPO,
        UPSCALER_REPO,
        TAESD_REPO,
        DEPTH_REPO,
    ]
    .iter()
    .find_map(|repo| {
        let rest = path.strip_prefix(&format!("/{repo}/resolve/"))?;
        Some((*repo, rest))
    });
    if let Some((repo, rest)) = resolved {
        let (revision, file) = rest.split_once('/').unwrap_or((rest, ""));
        let key = if repo == REPO {
            file.to_string()
        } else {
            format!("{repo}/{file}")
        };
        let Some(repo_file) = files
            .get(&key)
            .filter(|_| revision == "main" || revision == COMMIT)
        else {
            return respond(&mut out, "404 Not Found", &[], b"", head, None, None);
        };
        if repo_file.lfs {
            let storage = if repo == SLOW_CONTROLNET_REPO {
                "slow-storage"
            } else {
                "storage"
            };
            let headers = [
                (
                    "Location",
                    format!("http://{addr}/{storage}/{}", repo_file.etag),
                ),
                ("X-Repo-Commit", COMMIT.to_string()),
                ("X-Linked-Etag", format!("\"{}\"", repo_file.etag)),
                ("X-Linked-Size", repo_file.data.len().to_string()),
            ];
            return respond(&mut out, "302 Found", &headers, b"", head, None, None);
        }
        let headers = [
            ("X-Repo-Commit", COMMIT.to_string()),
            ("ETag", format!("\"{}\"", repo_file.etag)),
        ];
        return send_file(
            &mut out, file, repo_file, &headers, head, range, behavior, false,
        );
    }
    for (storage, slow) in [("/storage/", false), ("/slow-storage/", true)] {
        if let Some(etag) = path.strip_prefix(storage) {
            if let Some((file, repo_file)) = files.iter().find(|(_, f)| f.etag == etag) {
                return send_file(&mut out, file, repo_file, &[], head, range, behavior, slow);
            }
        }
    }
    respond(&mut out, "404 Not Found", &[], b"", head, None, None)
}

/// Sends `repo_file` (from `range` on), as [`Behavior`] asks; `slow`: at 64 KiB per
/// [`SLOW_CHUNK_DELAY`] at most.
#[allow(clippy::too_many_arguments)]
fn send_file(
    out: &mut TcpStream,
    file: &str,
    repo_file: &RepoFile,
    headers: &[(&str, String)],
    head: bool,
    range: Option<String>,
    behavior: &Mutex<Behavior>,
    slow: bool,
) -> std::io::Result<()> {
    let (cut, delay, fail, corrupt) = {
        let mut b = behavior.lock().unwrap();
        let cut = match &b.cut {
            Some((cut_file, n)) if !head && cut_file == file => {
                let n = *n;
                b.cut = None;
                Some(n)
            }
            _ => None,
        };
        let fail = !head && b.fail_next > 0;
        if fail {
            b.fail_next -= 1;
        }
        let corrupt = !head && b.corrupt.as_deref() == Some(file);
        if corrupt {
            b.corrupt = None;
        }
        let delay = match (b.chunk_delay, slow) {
            (Some(delay), true) => Some(delay.max(SLOW_CHUNK_DELAY)),
            (None, true) => Some(SLOW_CHUNK_DELAY),
            (delay, false) => delay,
        };
        (cut, delay, fail, corrupt)
    };
    if fail {
        return respond(out, "500 Internal Server Error", &[], b"", head, None, None);
    }
    let len = repo_file.data.len();
    let mut headers = headers.to_vec();
    let from = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<usize>().ok());
    let (status, start) = match from {
        Some(from) if from >= len => {
            headers.push(("Content-Range", format!("bytes */{len}")));
            return respond(
                out,
                "416 Range Not Satisfiable",
                &headers,
                b"",
                head,
                None,
                None,
            );
        }
        Some(from) => {
            headers.push(("Content-Range", format!("bytes {from}-{}/{len}", len - 1)));
            ("206 Partial Content", from)
        }
        None => ("200 OK", 0),
    };
    let mut body = repo_file.data[start..].to_vec();
    if corrupt {
        body[0] ^= 0xff;
    }
    let stop_at = cut.map(|n| n.saturating_sub(start));
    respond(out, status, &headers, &body, head, stop_at, delay)
}

fn respond(
    out: &mut TcpStream,
    status: &str,
    headers: &[(&str, String)],
    body: &[u8],
    head: bool,
    stop_at: Option<usize>,
    delay: Option<Duration>,
) -> std::io::Result<()> {
    let mut text = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("\r\n");
    out.write_all(text.as_bytes())?;
    if !head {
        let body = &body[..stop_at.unwrap_or(body.len()).min(body.len())];
        for chunk in body.chunks(64 * 1024) {
            out.write_all(chunk)?;
            if let Some(delay) = delay {
                out.flush()?;
                std::thread::sleep(delay);
            }
        }
    }
    out.flush()?;
    out.shutdown(std::net::Shutdown::Both)
}

/// A temporary cache folder, removed at the end of the test.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "latent-studio-download-{}-{name}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
