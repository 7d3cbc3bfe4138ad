//! Hub downloads against an in-process fake hub on 127.0.0.1 that serves a tiny diffusers
//! repository (the SD-Turbo test fixture) with the hub's URL layout and headers: `resolve`
//! URLs with `x-repo-commit`, `ETag`; weight files answer with a redirect to a storage URL
//! carrying `x-linked-etag`/`x-linked-size`, as LFS files do; storage URLs honour `Range`.

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use latent_studio::models::{
    load_model, Catalog, CatalogEntry, DownloadError, DownloadProgress, HubCache, HubClient,
    LoadOptions,
};

const REPO: &str = "test-org/tiny-turbo";
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
const FIXTURE: &str = "tests/fixtures/models/sd_turbo";
const UNET: &str = "unet/diffusion_pytorch_model.safetensors";
const FILES: [&str; 12] = [
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

struct RepoFile {
    data: Vec<u8>,
    etag: String,
    /// Served like an LFS file: the resolve URL redirects to `/storage/{etag}`.
    lfs: bool,
}

fn fnv(data: &[u8], seed: u64) -> u64 {
    data.iter().fold(0xcbf29ce484222325 ^ seed, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

fn repo_files() -> HashMap<String, RepoFile> {
    FILES
        .iter()
        .map(|&path| {
            let data = fs::read(Path::new(FIXTURE).join(path)).unwrap();
            let lfs = path.ends_with(".safetensors");
            // Git blob ids are 40 hex digits, LFS ids (sha256) 64.
            let words = if lfs { 4 } else { 3 };
            let etag: String = (0..words)
                .map(|i| format!("{:016x}", fnv(&data, i)))
                .collect::<String>()[..if lfs { 64 } else { 40 }]
                .to_string();
            (path.to_string(), RepoFile { data, etag, lfs })
        })
        .collect()
}

#[derive(Debug, Clone)]
struct Request {
    method: String,
    path: String,
    range: Option<String>,
}

#[derive(Default)]
struct Behavior {
    /// The next GET of this file (repository path) sends only the first N bytes, then closes.
    cut: Option<(String, usize)>,
    /// Pause after each 64 KiB of a body.
    chunk_delay: Option<Duration>,
}

struct FakeHub {
    addr: SocketAddr,
    files: Arc<HashMap<String, RepoFile>>,
    requests: Arc<Mutex<Vec<Request>>>,
    behavior: Arc<Mutex<Behavior>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeHub {
    fn start() -> FakeHub {
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

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn client(&self) -> HubClient {
        HubClient::new(&self.endpoint())
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    fn etag(&self, path: &str) -> String {
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
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.trim().eq_ignore_ascii_case("range") {
                range = Some(value.trim().to_string());
            }
        }
    }
    requests.lock().unwrap().push(Request {
        method: method.clone(),
        path: path.clone(),
        range: range.clone(),
    });
    let mut out = stream;
    let head = method == "HEAD";

    let resolve_prefix = format!("/{REPO}/resolve/");
    if let Some(rest) = path.strip_prefix(&resolve_prefix) {
        let (revision, file) = rest.split_once('/').unwrap_or((rest, ""));
        let Some(repo_file) = files
            .get(file)
            .filter(|_| revision == "main" || revision == COMMIT)
        else {
            return respond(&mut out, "404 Not Found", &[], b"", head, None, None);
        };
        if repo_file.lfs {
            let headers = [
                (
                    "Location",
                    format!("http://{addr}/storage/{}", repo_file.etag),
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
        return send_file(&mut out, file, repo_file, &headers, head, range, behavior);
    }
    if let Some(etag) = path.strip_prefix("/storage/") {
        if let Some((file, repo_file)) = files.iter().find(|(_, f)| f.etag == etag) {
            return send_file(&mut out, file, repo_file, &[], head, range, behavior);
        }
    }
    respond(&mut out, "404 Not Found", &[], b"", head, None, None)
}

fn send_file(
    out: &mut TcpStream,
    file: &str,
    repo_file: &RepoFile,
    headers: &[(&str, String)],
    head: bool,
    range: Option<String>,
    behavior: &Mutex<Behavior>,
) -> std::io::Result<()> {
    let (cut, delay) = {
        let mut b = behavior.lock().unwrap();
        let cut = match &b.cut {
            Some((cut_file, n)) if !head && cut_file == file => {
                let n = *n;
                b.cut = None;
                Some(n)
            }
            _ => None,
        };
        (cut, b.chunk_delay)
    };
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
    let body = &repo_file.data[start..];
    let stop_at = cut.map(|n| n.saturating_sub(start));
    respond(out, status, &headers, body, head, stop_at, delay)
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
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
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

fn test_entry(files: &[&str]) -> CatalogEntry {
    let files: Vec<String> = files.iter().map(|f| format!("\"{f}\"")).collect();
    let json = format!(
        r#"{{"default": "{REPO}", "models": [{{
            "id": "{REPO}", "name": "Tiny Turbo", "family": "sd", "approx_size_bytes": 9500000,
            "defaults": {{"steps": 1, "guidance": 0.0, "width": 64, "height": 64}},
            "files": [{}]
        }}]}}"#,
        files.join(", ")
    );
    Catalog::from_json(&json).unwrap().default_entry().clone()
}

fn repo_dir(cache: &HubCache) -> PathBuf {
    cache.root().join("models--test-org--tiny-turbo")
}

fn never_cancel(_: &str, _: DownloadProgress) -> bool {
    true
}

#[test]
fn full_download_creates_the_hugging_face_cache_layout() {
    let hub = FakeHub::start();
    let tmp = TempDir::new("full");
    let cache = HubCache::new(&tmp.0);
    let entry = test_entry(&FILES);
    assert_eq!(cache.snapshot_if_complete(&entry), None);

    let mut reports: Vec<(String, DownloadProgress)> = Vec::new();
    let snapshot = hub
        .client()
        .fetch_model(&entry, &cache, |file, p| {
            reports.push((file.to_string(), p));
            true
        })
        .unwrap();

    let repo = repo_dir(&cache);
    assert_eq!(snapshot, repo.join("snapshots").join(COMMIT));
    assert_eq!(fs::read_to_string(repo.join("refs/main")).unwrap(), COMMIT);
    for file in FILES {
        let link = snapshot.join(file);
        let meta = fs::symlink_metadata(&link).unwrap();
        assert!(meta.file_type().is_symlink(), "{file} is not a symlink");
        let depth = file.split('/').count();
        let expected = format!("{}blobs/{}", "../".repeat(depth + 1), hub.etag(file));
        assert_eq!(
            fs::read_link(&link).unwrap(),
            PathBuf::from(expected),
            "{file}"
        );
        let blob = repo.join("blobs").join(hub.etag(file));
        assert_eq!(fs::read(&blob).unwrap(), hub.files[file].data, "{file}");
        assert_eq!(fs::read(&link).unwrap(), hub.files[file].data, "{file}");
    }
    let mut blobs: Vec<String> = fs::read_dir(repo.join("blobs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    blobs.sort();
    let mut etags: Vec<String> = FILES.iter().map(|f| hub.etag(f)).collect();
    etags.sort();
    assert_eq!(
        blobs, etags,
        "blobs/ holds exactly the files, no .incomplete"
    );

    // Weights went through the storage redirect; metadata came from HEAD requests.
    let requests = hub.requests();
    let unet_etag = hub.etag(UNET);
    assert!(requests.iter().any(|r| r.method == "GET"
        && r.path == format!("/storage/{unet_etag}")
        && r.range.is_none()));
    assert!(requests
        .iter()
        .any(|r| r.method == "HEAD" && r.path == format!("/{REPO}/resolve/main/model_index.json")));
    // After the first file, everything is fetched at the pinned commit.
    assert!(requests
        .iter()
        .any(|r| r.method == "HEAD" && r.path == format!("/{REPO}/resolve/{COMMIT}/{UNET}")));

    // Progress: every file reported, the last report of each is complete.
    let unet_len = hub.files[UNET].data.len() as u64;
    let last_unet = reports.iter().rev().find(|(f, _)| f == UNET).unwrap().1;
    assert_eq!(last_unet.bytes_done, unet_len);
    assert_eq!(last_unet.bytes_total, Some(unet_len));
    assert_eq!(last_unet.file_index, 9);
    assert_eq!(last_unet.file_count, FILES.len());
    for (i, file) in FILES.iter().enumerate() {
        assert!(
            reports.iter().any(|(f, p)| f == file && p.file_index == i),
            "{file}"
        );
    }

    assert_eq!(cache.snapshot_if_complete(&entry), Some(snapshot.clone()));
    let model = load_model(&snapshot, &LoadOptions::default());
    assert!(model.is_ok(), "{:?}", model.err());
}

#[test]
fn a_complete_model_is_returned_without_network() {
    let hub = FakeHub::start();
    let tmp = TempDir::new("again");
    let cache = HubCache::new(&tmp.0);
    let entry = test_entry(&FILES);
    let first = hub
        .client()
        .fetch_model(&entry, &cache, never_cancel)
        .unwrap();
    let count = hub.requests().len();

    let second = hub
        .client()
        .fetch_model(&entry, &cache, never_cancel)
        .unwrap();
    assert_eq!(first, second);
    assert_eq!(
        hub.requests().len(),
        count,
        "the second fetch made requests"
    );

    // A catalog entry asking for fp16 variants is satisfied by the full-precision files a
    // diffusers download (without `variant="fp16"`) left in the snapshot.
    let fp16: Vec<String> = FILES
        .iter()
        .map(|f| f.replace(".safetensors", ".fp16.safetensors"))
        .collect();
    let fp16: Vec<&str> = fp16.iter().map(String::as_str).collect();
    let fp16_entry = test_entry(&fp16);
    assert_eq!(cache.snapshot_if_complete(&fp16_entry), Some(first.clone()));
    let again = hub
        .client()
        .fetch_model(&fp16_entry, &cache, never_cancel)
        .unwrap();
    assert_eq!(again, first);
    assert_eq!(hub.requests().len(), count);

    // Even with the hub gone.
    let endpoint = hub.endpoint();
    drop(hub);
    let third = HubClient::new(&endpoint)
        .fetch_model(&entry, &cache, never_cancel)
        .unwrap();
    assert_eq!(first, third);
}

#[test]
fn an_interrupted_transfer_resumes_with_a_range_request() {
    let hub = FakeHub::start();
    let tmp = TempDir::new("resume");
    let cache = HubCache::new(&tmp.0);
    let entry = test_entry(&FILES);
    const CUT: usize = 1_000_000;
    hub.behavior.lock().unwrap().cut = Some((UNET.to_string(), CUT));

    let err = hub
        .client()
        .fetch_model(&entry, &cache, never_cancel)
        .unwrap_err();
    assert!(matches!(err, DownloadError::Interrupted { .. }), "{err:?}");
    assert!(err.to_string().contains("resume"), "{err}");
    let repo = repo_dir(&cache);
    let blob = repo.join("blobs").join(hub.etag(UNET));
    let incomplete = repo
        .join("blobs")
        .join(format!("{}.incomplete", hub.etag(UNET)));
    assert_eq!(fs::metadata(&incomplete).unwrap().len(), CUT as u64);
    assert!(!blob.exists(), "a partial file must not become a blob");
    assert!(!repo.join("snapshots").join(COMMIT).join(UNET).exists());
    assert!(!repo.join("refs/main").exists());
    assert_eq!(cache.snapshot_if_complete(&entry), None);

    let snapshot = hub
        .client()
        .fetch_model(&entry, &cache, never_cancel)
        .unwrap();
    let requests = hub.requests();
    let storage = format!("/storage/{}", hub.etag(UNET));
    let range = format!("bytes={CUT}-");
    assert!(
        requests.iter().any(|r| r.method == "GET"
            && r.path == storage
            && r.range.as_deref() == Some(range.as_str())),
        "no resumed request in {requests:?}"
    );
    assert!(!incomplete.exists());
    assert_eq!(fs::read(snapshot.join(UNET)).unwrap(), hub.files[UNET].data);
    // Files completed before the cut were not fetched again.
    let te = format!("/storage/{}", hub.etag("text_encoder/model.safetensors"));
    assert_eq!(
        requests
            .iter()
            .filter(|r| r.method == "GET" && r.path == te)
            .count(),
        1
    );
    assert!(load_model(&snapshot, &LoadOptions::default()).is_ok());
}

#[test]
fn cancelling_keeps_the_partial_file_for_later() {
    let hub = FakeHub::start();
    let tmp = TempDir::new("cancel");
    let cache = HubCache::new(&tmp.0);
    let entry = test_entry(&FILES);
    hub.behavior.lock().unwrap().chunk_delay = Some(Duration::from_millis(10));

    let err = hub
        .client()
        .fetch_model(&entry, &cache, |file, p| {
            !(file == UNET && p.bytes_done > 0)
        })
        .unwrap_err();
    assert!(matches!(err, DownloadError::Cancelled), "{err:?}");
    let repo = repo_dir(&cache);
    let incomplete = repo
        .join("blobs")
        .join(format!("{}.incomplete", hub.etag(UNET)));
    let partial = fs::metadata(&incomplete).unwrap().len();
    assert!(
        partial > 0 && partial < hub.files[UNET].data.len() as u64,
        "{partial}"
    );
    assert!(!repo.join("blobs").join(hub.etag(UNET)).exists());
    assert!(!repo.join("refs/main").exists());

    hub.behavior.lock().unwrap().chunk_delay = None;
    let snapshot = hub
        .client()
        .fetch_model(&entry, &cache, never_cancel)
        .unwrap();
    let range = format!("bytes={partial}-");
    assert!(hub
        .requests()
        .iter()
        .any(|r| r.range.as_deref() == Some(range.as_str())));
    assert_eq!(fs::read(snapshot.join(UNET)).unwrap(), hub.files[UNET].data);
}

#[test]
fn an_unreachable_hub_gives_the_offline_error() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let tmp = TempDir::new("offline");
    let cache = HubCache::new(&tmp.0);
    let entry = test_entry(&FILES);
    let err = HubClient::new(&format!("http://127.0.0.1:{port}"))
        .fetch_model(&entry, &cache, never_cancel)
        .unwrap_err();
    assert!(err.is_offline(), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("could not reach the Hugging Face hub"),
        "{message}"
    );
    assert!(message.contains("Open model folder…"), "{message}");
    assert!(message.contains("--model PATH"), "{message}");

    let err = HubClient::new("http://127.0.0.1:1")
        .with_offline(true)
        .fetch_model(&entry, &cache, never_cancel)
        .unwrap_err();
    assert!(
        err.is_offline() && err.to_string().contains("HF_HUB_OFFLINE"),
        "{err}"
    );
}

#[test]
fn a_missing_file_names_the_file() {
    let hub = FakeHub::start();
    let tmp = TempDir::new("missing");
    let cache = HubCache::new(&tmp.0);
    let entry = test_entry(&["model_index.json", "unet/nope.safetensors"]);
    let err = hub
        .client()
        .fetch_model(&entry, &cache, never_cancel)
        .unwrap_err();
    assert!(matches!(err, DownloadError::NotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("unet/nope.safetensors"), "{err}");
}
