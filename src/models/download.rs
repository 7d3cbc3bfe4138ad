//! Fetching catalog models from the Hugging Face hub into the standard Hugging Face cache.
//!
//! The cache is the one `huggingface_hub` and diffusers use, so a model either of them fetched
//! is found here without a download, and diffusers finds ours:
//!
//! ```text
//! {cache}/models--{org}--{name}/blobs/{etag}                       file contents
//! {cache}/models--{org}--{name}/blobs/{etag}.incomplete            a transfer in progress
//! {cache}/models--{org}--{name}/snapshots/{commit}/{path}          relative symlink to the blob
//! {cache}/models--{org}--{name}/refs/main                          the commit `main` points at
//! {cache}/.locks/models--{org}--{name}/{etag}.lock                 held while a blob downloads
//! ```
//!
//! The cache is `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`,
//! else `~/.cache/huggingface/hub`. The hub is `$HF_ENDPOINT` (default `https://huggingface.co`);
//! files come from `{endpoint}/{repo}/resolve/{revision}/{path}`.
//!
//! Interrupted or cancelled transfers stay in `blobs/{etag}.incomplete` and resume with a
//! `Range` request. Only a complete, size-checked file is renamed into `blobs/` and linked into
//! the snapshot, so a partial file is never loaded.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::models::catalog::{is_safe_repo_path, CatalogEntry};

/// The public hub.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

const MAX_REDIRECTS: usize = 10;
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);
const SPEED_WINDOW: Duration = Duration::from_secs(5);
const LOCK_POLL: Duration = Duration::from_millis(200);
const READ_BUFFER: usize = 256 * 1024;

/// How far the download of one file has got. `file_index` is 0-based, of `file_count` files of
/// the model; bytes count this file only (including bytes resumed from an earlier attempt);
/// the speed is measured over the last few seconds of this transfer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DownloadProgress {
    pub file_index: usize,
    pub file_count: usize,
    pub bytes_done: u64,
    pub bytes_total: Option<u64>,
    pub bytes_per_second: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("could not reach the Hugging Face hub at {endpoint} ({reason}). Check the internet connection and try again, or use a model you already have on disk: \"Open model folder…\" in the app, or `--model PATH` on the command line, with PATH a diffusers folder (model_index.json, unet/, vae/, text_encoder/, tokenizer/)")]
    Offline { endpoint: String, reason: String },
    #[error("{repo}: {file} does not exist on the hub (HTTP 404 from {url})")]
    NotFound {
        repo: String,
        file: String,
        url: String,
    },
    #[error("{repo}: access denied by the hub (HTTP {status}); the repository may be gated or private: accept its terms on the model page and set HF_TOKEN")]
    AccessDenied { repo: String, status: u16 },
    #[error("{url}: the hub answered HTTP {status}")]
    Http { url: String, status: u16 },
    #[error("{url}: {message}")]
    Network { url: String, message: String },
    #[error("{url}: unexpected answer from the hub: {message}")]
    Protocol { url: String, message: String },
    #[error("download of {file} was interrupted after {bytes_done} bytes ({message}); start it again to resume")]
    Interrupted {
        file: String,
        bytes_done: u64,
        message: String,
    },
    #[error("{file}: the hub announced {expected} bytes but sent {actual}; the partial file was removed, start the download again")]
    SizeMismatch {
        file: String,
        expected: u64,
        actual: u64,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("download cancelled")]
    Cancelled,
}

impl DownloadError {
    /// The hub could not be reached at all (no network, DNS failure, refused connection,
    /// `HF_HUB_OFFLINE`).
    pub fn is_offline(&self) -> bool {
        matches!(self, DownloadError::Offline { .. })
    }
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> DownloadError + '_ {
    move |source| DownloadError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The Hugging Face hub cache folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubCache {
    root: PathBuf,
}

impl HubCache {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The cache `huggingface_hub` uses: `$HF_HUB_CACHE`, `$HF_HOME/hub`,
    /// `$XDG_CACHE_HOME/huggingface/hub` or `~/.cache/huggingface/hub`.
    pub fn from_env() -> Self {
        Self::from_vars(|name| std::env::var_os(name))
    }

    fn from_vars(var: impl Fn(&str) -> Option<OsString>) -> Self {
        let set = |name: &str| var(name).filter(|v| !v.is_empty());
        let root = match set("HF_HUB_CACHE").or_else(|| set("HUGGINGFACE_HUB_CACHE")) {
            Some(dir) => expand_home(dir, &var),
            None => hf_home(&var).join("hub"),
        };
        Self { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `{cache}/models--{org}--{name}`.
    pub fn repo_dir(&self, repo_id: &str) -> PathBuf {
        self.root.join(repo_folder_name(repo_id))
    }

    /// The snapshot folder of `entry` when every one of its files is already in the cache
    /// (downloaded by Latent Studio or by diffusers); no network. A `*.fp16.safetensors` file
    /// also counts as present when the snapshot has the full-precision file instead.
    pub fn snapshot_if_complete(&self, entry: &CatalogEntry) -> Option<PathBuf> {
        let repo = self.repo_dir(&entry.id);
        let commit = if is_commit_hash(&entry.revision) {
            entry.revision.clone()
        } else {
            let text = crate::files::read_text(&refs_path(&repo, &entry.revision)?).ok()?;
            text.trim().to_string()
        };
        if !is_safe_name(&commit) {
            return None;
        }
        let snapshot = repo.join("snapshots").join(&commit);
        entry
            .files
            .iter()
            .all(|file| present_in_snapshot(&snapshot, file).is_some())
            .then_some(snapshot)
    }

    fn lock_path(&self, repo_id: &str, etag: &str) -> PathBuf {
        self.root
            .join(".locks")
            .join(repo_folder_name(repo_id))
            .join(format!("{etag}.lock"))
    }
}

/// `$HF_HOME`, else `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`.
fn hf_home(var: &impl Fn(&str) -> Option<OsString>) -> PathBuf {
    let set = |name: &str| var(name).filter(|v| !v.is_empty());
    if let Some(home) = set("HF_HOME") {
        expand_home(home, var)
    } else if let Some(xdg) = set("XDG_CACHE_HOME") {
        expand_home(xdg, var).join("huggingface")
    } else {
        user_home(var).join(".cache").join("huggingface")
    }
}

fn user_home(var: &impl Fn(&str) -> Option<OsString>) -> PathBuf {
    var("HOME")
        .filter(|v| !v.is_empty())
        .or_else(|| var("USERPROFILE").filter(|v| !v.is_empty()))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// `~` and `~/x` as Python's `os.path.expanduser` reads them.
fn expand_home(value: OsString, var: &impl Fn(&str) -> Option<OsString>) -> PathBuf {
    match value.to_str() {
        Some("~") => user_home(var),
        Some(s) if s.starts_with("~/") => user_home(var).join(&s[2..]),
        _ => PathBuf::from(value),
    }
}

fn repo_folder_name(repo_id: &str) -> String {
    format!("models--{}", repo_id.replace('/', "--"))
}

fn refs_path(repo: &Path, revision: &str) -> Option<PathBuf> {
    is_safe_repo_path(revision).then(|| join_repo_path(&repo.join("refs"), revision))
}

fn join_repo_path(dir: &Path, path: &str) -> PathBuf {
    path.split('/')
        .fold(dir.to_path_buf(), |p, part| p.join(part))
}

fn is_commit_hash(revision: &str) -> bool {
    revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A single path component made of characters a hub commit or etag uses.
fn is_safe_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The file in the snapshot, or its full-precision sibling for an fp16 variant.
fn present_in_snapshot(snapshot: &Path, file: &str) -> Option<PathBuf> {
    let path = join_repo_path(snapshot, file);
    if path.is_file() {
        return Some(path);
    }
    let full = file.strip_suffix(".fp16.safetensors")?;
    let path = join_repo_path(snapshot, &format!("{full}.safetensors"));
    path.is_file().then_some(path)
}

/// What the hub says about one file.
#[derive(Debug, Clone)]
struct FileMetadata {
    commit: String,
    etag: String,
    size: Option<u64>,
    /// The resolve URL to GET (after same-repo redirects).
    url: String,
}

/// A connection to a hub (or mirror) endpoint.
#[derive(Clone)]
pub struct HubClient {
    endpoint: String,
    token: Option<String>,
    offline: bool,
    agent: ureq::Agent,
}

impl std::fmt::Debug for HubClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubClient")
            .field("endpoint", &self.endpoint)
            .field("token", &self.token.as_ref().map(|_| "…"))
            .field("offline", &self.offline)
            .finish()
    }
}

impl HubClient {
    /// A client for `endpoint` (e.g. `https://huggingface.co`), without a token.
    pub fn new(endpoint: &str) -> Self {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .accept_encoding("identity")
            .user_agent(format!("latent-studio/{}", env!("CARGO_PKG_VERSION")))
            .timeout_resolve(Some(Duration::from_secs(15)))
            .timeout_connect(Some(Duration::from_secs(15)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            .timeout_per_read(Some(Duration::from_secs(60)))
            .build();
        Self {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            token: None,
            offline: false,
            agent: ureq::Agent::new_with_config(config),
        }
    }

    /// `$HF_ENDPOINT` (default `https://huggingface.co`), the token from `$HF_TOKEN` or
    /// `$HF_HOME/token`, and `$HF_HUB_OFFLINE`.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let endpoint = var("HF_ENDPOINT").unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        let token = var("HF_TOKEN")
            .or_else(|| var("HUGGING_FACE_HUB_TOKEN"))
            .or_else(|| {
                let path = var("HF_TOKEN_PATH")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| hf_home(&|name: &str| std::env::var_os(name)).join("token"));
                crate::files::read_text(&path).ok()
            })
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty());
        let offline = var("HF_HUB_OFFLINE")
            .map(|v| {
                matches!(
                    v.trim().to_ascii_lowercase().as_str(),
                    "1" | "true" | "yes" | "on"
                )
            })
            .unwrap_or(false);
        Self {
            offline,
            ..Self::new(&endpoint)
        }
        .with_token(token)
    }

    /// Sends `Authorization: Bearer {token}` to the endpoint (never to redirected hosts).
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    /// Refuses network access, as `HF_HUB_OFFLINE=1` does.
    pub fn with_offline(mut self, offline: bool) -> Self {
        self.offline = offline;
        self
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Fetches `entry`'s files into `cache` and returns the snapshot folder, which
    /// [`crate::models::load_model`] opens. See [`fetch_model`].
    pub fn fetch_model<P>(
        &self,
        entry: &CatalogEntry,
        cache: &HubCache,
        mut progress: P,
    ) -> Result<PathBuf, DownloadError>
    where
        P: FnMut(&str, DownloadProgress) -> bool,
    {
        if let Some(snapshot) = cache.snapshot_if_complete(entry) {
            return Ok(snapshot);
        }
        if self.offline {
            return Err(DownloadError::Offline {
                endpoint: self.endpoint.clone(),
                reason: "HF_HUB_OFFLINE is set".into(),
            });
        }
        let repo_dir = cache.repo_dir(&entry.id);
        let file_count = entry.files.len();
        // The first answer fixes the commit; every later file is fetched at that commit, so a
        // push to the repository during the download cannot mix two versions.
        let mut commit: Option<String> = None;
        for (file_index, file) in entry.files.iter().enumerate() {
            if !is_safe_repo_path(file) {
                return Err(DownloadError::Protocol {
                    url: entry.id.clone(),
                    message: format!("bad file path {file:?} in the catalog"),
                });
            }
            let mut reporter = Reporter::new(file, file_index, file_count);
            if let Some(commit) = &commit {
                let snapshot = repo_dir.join("snapshots").join(commit);
                if let Some(path) = present_in_snapshot(&snapshot, file) {
                    let size = fs::metadata(&path).map(|m| m.len()).ok();
                    reporter.finish(size.unwrap_or(0), size, &mut progress)?;
                    continue;
                }
            }
            let revision = commit.as_deref().unwrap_or(&entry.revision);
            let meta = self.head(&entry.id, revision, file)?;
            let commit = commit.get_or_insert_with(|| meta.commit.clone()).clone();
            let blob = repo_dir.join("blobs").join(&meta.etag);
            if !blob_is_complete(&blob, meta.size) {
                self.download_blob(
                    cache,
                    &entry.id,
                    file,
                    &meta,
                    &blob,
                    &mut reporter,
                    &mut progress,
                )?;
            }
            let size = fs::metadata(&blob).map(|m| m.len()).ok();
            reporter.finish(size.unwrap_or(0), size, &mut progress)?;
            link_snapshot(&repo_dir, &commit, file, &meta.etag)?;
        }
        let commit = commit.ok_or_else(|| DownloadError::Protocol {
            url: entry.id.clone(),
            message: "the catalog entry lists no files".into(),
        })?;
        if !is_commit_hash(&entry.revision) {
            write_ref(&repo_dir, &entry.revision, &commit)?;
        }
        Ok(repo_dir.join("snapshots").join(commit))
    }

    fn resolve_url(&self, repo_id: &str, revision: &str, file: &str) -> String {
        let path: Vec<String> = file.split('/').map(percent_encode).collect();
        format!(
            "{}/{}/resolve/{}/{}",
            self.endpoint,
            repo_id,
            percent_encode(revision),
            path.join("/")
        )
    }

    fn send(
        &self,
        head: bool,
        url: &str,
        range_from: Option<u64>,
    ) -> Result<ureq::http::Response<ureq::Body>, DownloadError> {
        let mut request = if head {
            self.agent.head(url)
        } else {
            self.agent.get(url)
        };
        if let Some(from) = range_from {
            request = request.header("Range", format!("bytes={from}-"));
        }
        if let Some(token) = &self.token {
            if url.starts_with(&format!("{}/", self.endpoint)) {
                request = request.header("Authorization", format!("Bearer {token}"));
            }
        }
        request.call().map_err(|err| {
            if is_unreachable(&err) {
                DownloadError::Offline {
                    endpoint: self.endpoint.clone(),
                    reason: err.to_string(),
                }
            } else {
                DownloadError::Network {
                    url: url.to_string(),
                    message: err.to_string(),
                }
            }
        })
    }

    /// HEAD of the resolve URL: commit, etag and size, as `huggingface_hub` reads them. Same-repo
    /// redirects (a renamed repository) are followed; the redirect to the file storage is not,
    /// since it is the redirect response that carries `x-linked-etag` and `x-linked-size`.
    fn head(
        &self,
        repo_id: &str,
        revision: &str,
        file: &str,
    ) -> Result<FileMetadata, DownloadError> {
        let mut url = self.resolve_url(repo_id, revision, file);
        for _ in 0..MAX_REDIRECTS {
            let response = self.send(true, &url, None)?;
            let status = response.status().as_u16();
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            let is_redirect = (300..400).contains(&status);
            let has_metadata =
                header("x-repo-commit").is_some() || header("x-linked-etag").is_some();
            if is_redirect && !has_metadata {
                let location = header("location").ok_or_else(|| DownloadError::Protocol {
                    url: url.clone(),
                    message: format!("HTTP {status} without a Location header"),
                })?;
                url = join_url(&url, &location);
                continue;
            }
            if !is_redirect && !(200..300).contains(&status) {
                return Err(status_error(status, repo_id, file, &url));
            }
            let protocol = |message: String| DownloadError::Protocol {
                url: url.clone(),
                message,
            };
            let commit = header("x-repo-commit").ok_or_else(|| {
                protocol("no x-repo-commit header; is this a Hugging Face hub endpoint?".into())
            })?;
            let etag = header("x-linked-etag")
                .or_else(|| header("etag"))
                .map(|e| normalize_etag(&e))
                .ok_or_else(|| protocol("no ETag header".into()))?;
            if !is_safe_name(&commit) {
                return Err(protocol(format!("bad commit {commit:?}")));
            }
            if !is_safe_name(&etag) {
                return Err(protocol(format!("bad ETag {etag:?}")));
            }
            let size = header("x-linked-size")
                .or_else(|| header("content-length"))
                .and_then(|s| s.trim().parse::<u64>().ok());
            return Ok(FileMetadata {
                commit,
                etag,
                size,
                url,
            });
        }
        Err(DownloadError::Protocol {
            url,
            message: "too many redirects".into(),
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn download_blob<P>(
        &self,
        cache: &HubCache,
        repo_id: &str,
        file: &str,
        meta: &FileMetadata,
        blob: &Path,
        reporter: &mut Reporter,
        progress: &mut P,
    ) -> Result<(), DownloadError>
    where
        P: FnMut(&str, DownloadProgress) -> bool,
    {
        let blobs = blob.parent().unwrap_or(blob);
        fs::create_dir_all(blobs).map_err(io_error(blobs))?;
        let _lock = lock_blob(&cache.lock_path(repo_id, &meta.etag), || {
            reporter.emit(0, meta.size, true, progress)
        })?;
        // Someone else (another window, diffusers) may have finished it while we waited.
        if blob_is_complete(blob, meta.size) {
            return Ok(());
        }
        let incomplete = blobs.join(format!("{}.incomplete", meta.etag));
        let mut file_out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&incomplete)
            .map_err(io_error(&incomplete))?;
        let mut done = file_out.metadata().map_err(io_error(&incomplete))?.len();
        if meta.size.is_some_and(|size| done > size) {
            truncate(&file_out, &incomplete)?;
            done = 0;
        }
        let mut restarted = false;
        'attempt: loop {
            if meta.size == Some(done) && done > 0 {
                break 'attempt;
            }
            let range_from = (done > 0).then_some(done);
            let mut url = meta.url.clone();
            let mut response = None;
            for _ in 0..MAX_REDIRECTS {
                let r = self.send(false, &url, range_from)?;
                let status = r.status().as_u16();
                if (300..400).contains(&status) {
                    let location = r
                        .headers()
                        .get("location")
                        .and_then(|v| v.to_str().ok())
                        .ok_or_else(|| DownloadError::Protocol {
                            url: url.clone(),
                            message: format!("HTTP {status} without a Location header"),
                        })?;
                    url = join_url(&url, location);
                    continue;
                }
                response = Some(r);
                break;
            }
            let response = response.ok_or_else(|| DownloadError::Protocol {
                url: url.clone(),
                message: "too many redirects".into(),
            })?;
            match response.status().as_u16() {
                206 if range_from.is_some() => {
                    let start = response
                        .headers()
                        .get("content-range")
                        .and_then(|v| v.to_str().ok())
                        .and_then(content_range_start);
                    if start != Some(done) {
                        truncate(&file_out, &incomplete)?;
                        return Err(DownloadError::Protocol {
                            url,
                            message: format!(
                                "asked for bytes from {done}, got Content-Range starting at {start:?}; the partial file was removed, start the download again"
                            ),
                        });
                    }
                }
                200 => {
                    if done > 0 {
                        // The server ignored the Range header: start over.
                        truncate(&file_out, &incomplete)?;
                        done = 0;
                    }
                }
                416 if !restarted => {
                    // The partial file does not fit the file on the hub; start over.
                    truncate(&file_out, &incomplete)?;
                    done = 0;
                    restarted = true;
                    continue 'attempt;
                }
                status => return Err(status_error(status, repo_id, file, &url)),
            }
            let mut reader = response.into_body().into_reader();
            let mut buffer = vec![0u8; READ_BUFFER];
            reporter.start(done);
            if !reporter.emit(done, meta.size, true, progress) {
                return Err(DownloadError::Cancelled);
            }
            loop {
                let n = match reader.read(&mut buffer) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                    Err(err) => {
                        return Err(DownloadError::Interrupted {
                            file: file.to_string(),
                            bytes_done: done,
                            message: err.to_string(),
                        })
                    }
                };
                file_out
                    .write_all(&buffer[..n])
                    .map_err(io_error(&incomplete))?;
                done += n as u64;
                if let Some(expected) = meta.size.filter(|&size| done > size) {
                    drop(file_out);
                    let _ = fs::remove_file(&incomplete);
                    return Err(DownloadError::SizeMismatch {
                        file: file.to_string(),
                        expected,
                        actual: done,
                    });
                }
                if !reporter.emit(done, meta.size, false, progress) {
                    return Err(DownloadError::Cancelled);
                }
            }
            break 'attempt;
        }
        file_out.sync_all().map_err(io_error(&incomplete))?;
        drop(file_out);
        let actual = fs::metadata(&incomplete)
            .map_err(io_error(&incomplete))?
            .len();
        if let Some(expected) = meta.size {
            if actual < expected {
                return Err(DownloadError::Interrupted {
                    file: file.to_string(),
                    bytes_done: actual,
                    message: format!("the connection closed before the end ({expected} bytes)"),
                });
            }
            if actual > expected {
                let _ = fs::remove_file(&incomplete);
                return Err(DownloadError::SizeMismatch {
                    file: file.to_string(),
                    expected,
                    actual,
                });
            }
        }
        fs::rename(&incomplete, blob).map_err(io_error(blob))?;
        Ok(())
    }
}

/// Fetches `entry` from `$HF_ENDPOINT` into `cache` (see [`HubClient::from_env`]) and returns
/// the snapshot folder. When the cache already has every file (from an earlier download or
/// from diffusers) it returns at once without network. `progress` is called with each file's
/// repository path as bytes arrive (at most every 100 ms, plus at the start and end of each
/// file); returning `false` cancels, keeping the partial file for the next call to resume.
pub fn fetch_model<P>(
    entry: &CatalogEntry,
    cache: &HubCache,
    progress: P,
) -> Result<PathBuf, DownloadError>
where
    P: FnMut(&str, DownloadProgress) -> bool,
{
    HubClient::from_env().fetch_model(entry, cache, progress)
}

fn status_error(status: u16, repo_id: &str, file: &str, url: &str) -> DownloadError {
    match status {
        404 => DownloadError::NotFound {
            repo: repo_id.to_string(),
            file: file.to_string(),
            url: url.to_string(),
        },
        401 | 403 => DownloadError::AccessDenied {
            repo: repo_id.to_string(),
            status,
        },
        _ => DownloadError::Http {
            url: url.to_string(),
            status,
        },
    }
}

/// Errors that mean no connection to the host could be made at all.
fn is_unreachable(err: &ureq::Error) -> bool {
    match err {
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => true,
        ureq::Error::Timeout(t) => matches!(t, ureq::Timeout::Resolve | ureq::Timeout::Connect),
        ureq::Error::Io(e) => {
            matches!(
                e.kind(),
                io::ErrorKind::ConnectionRefused
                    | io::ErrorKind::NetworkUnreachable
                    | io::ErrorKind::HostUnreachable
                    | io::ErrorKind::NetworkDown
                    | io::ErrorKind::AddrNotAvailable
            )
            // A failed DNS lookup has no ErrorKind of its own in std; its text is stable.
            || e.to_string().contains("failed to lookup address")
        }
        _ => false,
    }
}

fn blob_is_complete(blob: &Path, size: Option<u64>) -> bool {
    match fs::metadata(blob) {
        Ok(m) => m.is_file() && size.is_none_or(|size| m.len() == size),
        Err(_) => false,
    }
}

fn truncate(file: &File, path: &Path) -> Result<(), DownloadError> {
    file.set_len(0).map_err(io_error(path))
}

/// Takes the `huggingface_hub`-compatible lock on a blob, polling so that `still_wanted` (the
/// progress callback) can cancel while another process holds it.
fn lock_blob(
    path: &Path,
    mut still_wanted: impl FnMut() -> bool,
) -> Result<Option<File>, DownloadError> {
    let dir = path.parent().unwrap_or(path);
    fs::create_dir_all(dir).map_err(io_error(dir))?;
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io_error(path))?;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(Some(file)),
            Err(fs::TryLockError::WouldBlock) => {
                if !still_wanted() {
                    return Err(DownloadError::Cancelled);
                }
                std::thread::sleep(LOCK_POLL);
            }
            // A file system without locks: go on unlocked, as huggingface_hub does.
            Err(fs::TryLockError::Error(_)) => return Ok(None),
        }
    }
}

/// Points `snapshots/{commit}/{file}` at `blobs/{etag}` with a relative symlink, like
/// `huggingface_hub`; where symlinks are not allowed, a hard link or a copy.
fn link_snapshot(
    repo_dir: &Path,
    commit: &str,
    file: &str,
    etag: &str,
) -> Result<PathBuf, DownloadError> {
    let pointer = join_repo_path(&repo_dir.join("snapshots").join(commit), file);
    let blob = repo_dir.join("blobs").join(etag);
    let parent = pointer.parent().unwrap_or(repo_dir);
    fs::create_dir_all(parent).map_err(io_error(parent))?;
    let depth = file.split('/').count() + 1;
    let mut target = PathBuf::new();
    for _ in 0..depth {
        target.push("..");
    }
    target.push("blobs");
    target.push(etag);
    if let Ok(meta) = fs::symlink_metadata(&pointer) {
        if meta.file_type().is_symlink()
            && fs::read_link(&pointer).ok().as_deref() == Some(target.as_path())
        {
            return Ok(pointer);
        }
        fs::remove_file(&pointer).map_err(io_error(&pointer))?;
    }
    if symlink_file(&target, &pointer).is_err() && fs::hard_link(&blob, &pointer).is_err() {
        fs::copy(&blob, &pointer).map_err(io_error(&pointer))?;
    }
    Ok(pointer)
}

#[cfg(unix)]
fn symlink_file(target: &Path, link: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(windows)]
fn symlink_file(target: &Path, link: &Path) -> io::Result<()> {
    std::os::windows::fs::symlink_file(target, link)
}

#[cfg(not(any(unix, windows)))]
fn symlink_file(_target: &Path, _link: &Path) -> io::Result<()> {
    Err(io::Error::new(io::ErrorKind::Unsupported, "no symlinks"))
}

fn write_ref(repo_dir: &Path, revision: &str, commit: &str) -> Result<(), DownloadError> {
    let path = refs_path(repo_dir, revision).ok_or_else(|| DownloadError::Protocol {
        url: revision.to_string(),
        message: "bad revision name".into(),
    })?;
    if crate::files::read_text(&path).is_ok_and(|old| old.trim() == commit) {
        return Ok(());
    }
    let parent = path.parent().unwrap_or(repo_dir);
    fs::create_dir_all(parent).map_err(io_error(parent))?;
    fs::write(&path, commit).map_err(io_error(&path))
}

/// `W/"abc"` → `abc`, as `huggingface_hub` stores etags.
fn normalize_etag(etag: &str) -> String {
    let etag = etag.trim();
    let etag = etag.strip_prefix("W/").unwrap_or(etag);
    etag.trim_matches('"').to_string()
}

/// The first byte of `bytes START-END/TOTAL`.
fn content_range_start(value: &str) -> Option<u64> {
    let range = value.trim().strip_prefix("bytes")?.trim_start();
    range.split('-').next()?.trim().parse().ok()
}

/// Percent-encodes one URL path segment (everything but RFC 3986 unreserved characters).
fn percent_encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Resolves a `Location` header against the URL that answered it.
fn join_url(base: &str, location: &str) -> String {
    let location = location.trim();
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_string();
    }
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let origin_end = base[scheme_end..]
        .find('/')
        .map(|i| scheme_end + i)
        .unwrap_or(base.len());
    if let Some(rest) = location.strip_prefix("//") {
        let scheme = &base[..scheme_end.saturating_sub(3)];
        return format!("{scheme}://{rest}");
    }
    if location.starts_with('/') {
        return format!("{}{location}", &base[..origin_end]);
    }
    let path_end = base.find(['?', '#']).unwrap_or(base.len());
    let dir_end = base[..path_end]
        .rfind('/')
        .filter(|&i| i >= origin_end)
        .unwrap_or(path_end);
    format!("{}/{location}", &base[..dir_end])
}

/// Rate-limited progress reports for one file.
struct Reporter {
    file: String,
    file_index: usize,
    file_count: usize,
    last_emit: Option<Instant>,
    /// (time, bytes done) of the current transfer, over the last few seconds.
    samples: VecDeque<(Instant, u64)>,
}

impl Reporter {
    fn new(file: &str, file_index: usize, file_count: usize) -> Self {
        Self {
            file: file.to_string(),
            file_index,
            file_count,
            last_emit: None,
            samples: VecDeque::new(),
        }
    }

    /// A transfer starts at `done` bytes (resumed bytes do not count towards the speed).
    fn start(&mut self, done: u64) {
        self.samples.clear();
        self.samples.push_back((Instant::now(), done));
    }

    fn speed(&mut self, now: Instant, done: u64) -> f64 {
        self.samples.push_back((now, done));
        while self.samples.len() > 2
            && self
                .samples
                .get(1)
                .is_some_and(|(t, _)| now.duration_since(*t) >= SPEED_WINDOW)
        {
            self.samples.pop_front();
        }
        match (self.samples.front(), self.samples.back()) {
            (Some(&(t0, b0)), Some(&(t1, b1))) if t1 > t0 => {
                b1.saturating_sub(b0) as f64 / t1.duration_since(t0).as_secs_f64()
            }
            _ => 0.0,
        }
    }

    /// Reports unless one was sent less than [`PROGRESS_INTERVAL`] ago (`force` always
    /// reports). Returns `false` when the callback asks to cancel.
    fn emit<P>(&mut self, done: u64, total: Option<u64>, force: bool, progress: &mut P) -> bool
    where
        P: FnMut(&str, DownloadProgress) -> bool,
    {
        let now = Instant::now();
        if !force
            && self
                .last_emit
                .is_some_and(|t| now.duration_since(t) < PROGRESS_INTERVAL)
        {
            return true;
        }
        self.last_emit = Some(now);
        let bytes_per_second = self.speed(now, done);
        progress(
            &self.file,
            DownloadProgress {
                file_index: self.file_index,
                file_count: self.file_count,
                bytes_done: done,
                bytes_total: total,
                bytes_per_second,
            },
        )
    }

    /// The file is in the cache.
    fn finish<P>(
        &mut self,
        done: u64,
        total: Option<u64>,
        progress: &mut P,
    ) -> Result<(), DownloadError>
    where
        P: FnMut(&str, DownloadProgress) -> bool,
    {
        if self.emit(done, total, true, progress) {
            Ok(())
        } else {
            Err(DownloadError::Cancelled)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache_for(vars: &[(&str, &str)]) -> PathBuf {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        HubCache::from_vars(|name| {
            vars.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| OsString::from(v))
        })
        .root()
        .to_path_buf()
    }

    #[test]
    fn cache_location_follows_huggingface_hub() {
        let all = [
            ("HF_HUB_CACHE", "/a/hub"),
            ("HF_HOME", "/b"),
            ("XDG_CACHE_HOME", "/c"),
            ("HOME", "/home/u"),
        ];
        assert_eq!(cache_for(&all), PathBuf::from("/a/hub"));
        assert_eq!(cache_for(&all[1..]), PathBuf::from("/b/hub"));
        assert_eq!(cache_for(&all[2..]), PathBuf::from("/c/huggingface/hub"));
        assert_eq!(
            cache_for(&all[3..]),
            PathBuf::from("/home/u/.cache/huggingface/hub")
        );
        assert_eq!(
            cache_for(&[("HF_HOME", "~/hf"), ("HOME", "/home/u")]),
            PathBuf::from("/home/u/hf/hub")
        );
        assert_eq!(
            cache_for(&[("HF_HUB_CACHE", ""), ("HF_HOME", "/b")]),
            PathBuf::from("/b/hub")
        );
    }

    #[test]
    fn repo_folders_and_urls_use_the_hub_layout() {
        let cache = HubCache::new("/c");
        assert_eq!(
            cache.repo_dir("stabilityai/sd-turbo"),
            PathBuf::from("/c/models--stabilityai--sd-turbo")
        );
        let hub = HubClient::new("http://127.0.0.1:9/");
        assert_eq!(
            hub.resolve_url("stabilityai/sd-turbo", "main", "unet/diffusion_pytorch_model.fp16.safetensors"),
            "http://127.0.0.1:9/stabilityai/sd-turbo/resolve/main/unet/diffusion_pytorch_model.fp16.safetensors"
        );
        assert_eq!(
            hub.resolve_url("a/b", "refs/pr/1", "x y.json"),
            "http://127.0.0.1:9/a/b/resolve/refs%2Fpr%2F1/x%20y.json"
        );
    }

    #[test]
    fn etags_and_ranges_are_parsed() {
        assert_eq!(normalize_etag("\"abc123\""), "abc123");
        assert_eq!(normalize_etag("W/\"abc123\""), "abc123");
        assert_eq!(normalize_etag("abc"), "abc");
        assert_eq!(content_range_start("bytes 100-199/200"), Some(100));
        assert_eq!(content_range_start("bytes */200"), None);
        assert!(is_commit_hash(&"a".repeat(40)));
        assert!(!is_commit_hash("main"));
        assert!(!is_safe_name("../x"));
        assert!(!is_safe_name(""));
    }

    #[test]
    fn redirect_locations_are_resolved() {
        let base = "https://huggingface.co/org/name/resolve/main/unet/x.safetensors";
        assert_eq!(
            join_url(base, "https://cdn.example/abc?x=1"),
            "https://cdn.example/abc?x=1"
        );
        assert_eq!(
            join_url(base, "/new/name/resolve/main/unet/x.safetensors"),
            "https://huggingface.co/new/name/resolve/main/unet/x.safetensors"
        );
        assert_eq!(join_url(base, "//cdn.example/a"), "https://cdn.example/a");
        assert_eq!(
            join_url(base, "y.safetensors"),
            "https://huggingface.co/org/name/resolve/main/unet/y.safetensors"
        );
    }

    #[test]
    fn speed_is_measured_over_the_transfer() {
        let mut reporter = Reporter::new("f", 0, 1);
        let t0 = Instant::now();
        reporter.samples.push_back((t0, 1000));
        let speed = reporter.speed(t0 + Duration::from_secs(2), 3000);
        assert!((speed - 1000.0).abs() < 1e-6, "{speed}");
    }
}
