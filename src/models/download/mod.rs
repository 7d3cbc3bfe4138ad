//! Fetching models from the Hugging Face hub into the standard Hugging Face cache, and single
//! checkpoint files from any URL into the models folder.
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
//! `Range` request; failures that may pass are tried again with backoff ([`RetryPolicy`]).
//! Only a complete, size-checked file (SHA-256-checked where the hub names it, as for LFS
//! files) is renamed into `blobs/` and linked into the snapshot, so a partial file is never
//! loaded. Before the first byte, the sizes of what is missing are checked against the free
//! space of the disk ([`DISK_MARGIN_BYTES`] kept free).

mod cache;
mod controlnet;
mod direct;
mod disk;
mod http;
mod reference;
mod transfer;
mod upscaler;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use self::cache::{
    blob_is_complete, hf_home, is_commit_hash, is_safe_name, join_repo_path, link_snapshot,
    lock_blob, present_in_snapshot, write_ref,
};
use self::http::{header, is_transient_status, is_unreachable, join_url, normalize_etag};
use self::http::{percent_encode, sha256_etag};
use self::reference::{diffusers_files, refuse_pickle};
use self::transfer::{Reporter, Transfer};
use crate::models::catalog::{is_safe_repo_path, Catalog, CatalogEntry};

pub use self::cache::HubCache;
pub use self::controlnet::{
    controlnet_repo_id, CatalogControlNet, ControlNetFetchError, CONTROLNET_CATALOG,
};
pub use self::direct::default_models_dir;
pub use self::disk::{format_size, FreeSpace, DISK_MARGIN_BYTES};
pub use self::http::RetryPolicy;
pub use self::reference::HubReference;
pub use self::upscaler::{
    upscaler_repo_file, CatalogUpscaler, UpscalerFetchError, UPSCALER_CATALOG,
};

/// The public hub.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

const MAX_REDIRECTS: usize = 10;
const LOCK_POLL: Duration = Duration::from_millis(200);
/// The largest repository listing read from the hub's API.
const MAX_LISTING_BYTES: u64 = 16 << 20;

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

impl DownloadProgress {
    /// The time this file still needs at the current speed; `None` while that is unknown.
    pub fn eta(&self) -> Option<Duration> {
        let total = self.bytes_total?;
        if self.bytes_per_second < 1.0 {
            return None;
        }
        let left = total.saturating_sub(self.bytes_done) as f64;
        Some(Duration::from_secs_f64(left / self.bytes_per_second))
    }
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
    #[error("{repo}: the hub refused access (HTTP {status}): {hint}")]
    AccessDenied {
        repo: String,
        status: u16,
        hint: String,
    },
    #[error("{url}: access denied (HTTP {status}); the file may need an account: for civitai, add your API key to the URL as ?token=KEY")]
    UrlAccessDenied { url: String, status: u16 },
    #[error("{url}: no file there (HTTP 404)")]
    UrlNotFound { url: String },
    #[error("{url}: the server answered HTTP {status}")]
    Http { url: String, status: u16 },
    #[error("{url}: {message}")]
    Network {
        url: String,
        message: String,
        /// A reset, timeout or garbled answer: worth another try.
        transient: bool,
    },
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
    #[error("{file}: the downloaded bytes have SHA-256 {actual}, the hub announced {expected}; the file was removed, start the download again")]
    ChecksumMismatch {
        file: String,
        expected: String,
        actual: String,
    },
    #[error("{file}: .{extension} files are Python pickles, which can run any code when opened; Latent Studio downloads only .safetensors files (look for a .safetensors version of the model)")]
    PickleRefused { file: String, extension: String },
    #[error("{url}: the server names the file {name:?}, which is not a .safetensors checkpoint")]
    NotSafetensors { url: String, name: String },
    #[error("{text:?} is not a model to download: {why}")]
    BadReference { text: String, why: String },
    #[error(
        "{repo} is not a diffusers repository (model_index.json, unet/, vae/ …): {checkpoints}"
    )]
    NotDiffusers { repo: String, checkpoints: String },
    #[error("not enough disk space in {}: the download needs {} ({} more kept free), {} is free", dir.display(), format_size(*needed), format_size(DISK_MARGIN_BYTES), format_size(*available))]
    NotEnoughSpace {
        dir: PathBuf,
        needed: u64,
        available: u64,
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

    /// A failure that may pass: a reset or cut connection, a timeout, HTTP 5xx or 429.
    pub fn is_transient(&self) -> bool {
        match self {
            DownloadError::Network { transient, .. } => *transient,
            DownloadError::Interrupted { .. } => true,
            DownloadError::Http { status, .. } => is_transient_status(*status),
            _ => false,
        }
    }
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> DownloadError + '_ {
    move |source| DownloadError::Io {
        path: path.to_path_buf(),
        source,
    }
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

/// A connection to a hub (or mirror) endpoint; also fetches direct URLs.
#[derive(Clone)]
pub struct HubClient {
    endpoint: String,
    token: Option<String>,
    offline: bool,
    retry: RetryPolicy,
    free_space: FreeSpace,
    agent: ureq::Agent,
}

impl std::fmt::Debug for HubClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubClient")
            .field("endpoint", &self.endpoint)
            .field("token", &self.token.as_ref().map(|_| "…"))
            .field("offline", &self.offline)
            .field("retry", &self.retry)
            .field("free_space", &self.free_space)
            .finish()
    }
}

impl HubClient {
    /// A client for `endpoint` (e.g. `https://huggingface.co`), without a token, trusting the
    /// operating system's certificates, through the proxy the environment names.
    pub fn new(endpoint: &str) -> Self {
        Self {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            token: None,
            offline: false,
            retry: RetryPolicy::default(),
            free_space: FreeSpace::System,
            agent: http::agent(),
        }
    }

    /// `$HF_ENDPOINT` (default `https://huggingface.co`), the token from `$HF_TOKEN` or
    /// `$HF_HOME/token` (`~/.cache/huggingface/token`), and `$HF_HUB_OFFLINE`.
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

    /// How failures that may pass are tried again (default: [`RetryPolicy::default`]).
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// How the free disk space is found before a download (default: asked of the system).
    pub fn with_free_space(mut self, free_space: FreeSpace) -> Self {
        self.free_space = free_space;
        self
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Fetches what `reference` names and returns the local path to load: a hub repository's
    /// snapshot folder or a single file in it (in `cache`), or a direct URL's file (in
    /// `models_dir`). Catalog repositories fetch the catalog's files; other repositories their
    /// diffusers files (see [`Self::fetch_repo`]).
    pub fn fetch<P>(
        &self,
        reference: &HubReference,
        cache: &HubCache,
        models_dir: &Path,
        progress: P,
    ) -> Result<PathBuf, DownloadError>
    where
        P: FnMut(&str, DownloadProgress) -> bool,
    {
        match reference {
            HubReference::Repo { id } => match Catalog::builtin().find(id) {
                Some(entry) => self.fetch_model(entry, cache, progress),
                None => self.fetch_repo(id, cache, progress),
            },
            HubReference::RepoFile { id, path } => self.fetch_repo_file(id, path, cache, progress),
            HubReference::Url(url) => self.fetch_url(url, models_dir, progress),
        }
    }

    /// Fetches `entry`'s files into `cache` and returns the snapshot folder, which
    /// [`crate::models::load_model`] opens. See [`fetch_model`].
    pub fn fetch_model<P>(
        &self,
        entry: &CatalogEntry,
        cache: &HubCache,
        progress: P,
    ) -> Result<PathBuf, DownloadError>
    where
        P: FnMut(&str, DownloadProgress) -> bool,
    {
        if let Some(snapshot) = cache.snapshot_if_complete(entry) {
            return Ok(snapshot);
        }
        if entry.files.is_empty() {
            return Err(DownloadError::Protocol {
                url: entry.id.clone(),
                message: "the catalog entry lists no files".into(),
            });
        }
        self.fetch_files(&entry.id, &entry.revision, &entry.files, cache, progress)
    }

    /// Fetches a diffusers repository that is not in the catalog: the hub's file list of it
    /// at `main` decides which files (see the rules in `reference.rs`: configs, tokenizer
    /// files, fp16 or plain `.safetensors` weights of the components used here). A snapshot a
    /// finished download left is used without network.
    pub fn fetch_repo<P>(
        &self,
        repo_id: &str,
        cache: &HubCache,
        progress: P,
    ) -> Result<PathBuf, DownloadError>
    where
        P: FnMut(&str, DownloadProgress) -> bool,
    {
        if let Some(snapshot) = cache.cached_diffusers_snapshot(repo_id, "main") {
            return Ok(snapshot);
        }
        self.refuse_offline()?;
        let listing = self.retrying(|| self.list_repo(repo_id, "main"))?;
        let siblings: Vec<String> = listing.siblings.into_iter().map(|s| s.rfilename).collect();
        let files = diffusers_files(repo_id, &siblings)?;
        // Every file at the commit the listing saw, so a push meanwhile cannot mix versions.
        let revision = listing
            .sha
            .filter(|sha| is_commit_hash(sha))
            .unwrap_or_else(|| "main".to_string());
        let snapshot = self.fetch_files(repo_id, &revision, &files, cache, progress)?;
        if revision != "main" {
            let commit = snapshot
                .file_name()
                .map(|c| c.to_string_lossy().into_owned());
            write_ref(
                &cache.repo_dir(repo_id),
                "main",
                &commit.unwrap_or(revision),
            )?;
        }
        Ok(snapshot)
    }

    /// Fetches one file of a repository (a single-file checkpoint) into the cache layout and
    /// returns its path in the snapshot. Already there: no network.
    pub fn fetch_repo_file<P>(
        &self,
        repo_id: &str,
        path: &str,
        cache: &HubCache,
        progress: P,
    ) -> Result<PathBuf, DownloadError>
    where
        P: FnMut(&str, DownloadProgress) -> bool,
    {
        refuse_pickle(path.rsplit('/').next().unwrap_or(path))?;
        if let Some(snapshot) = cache.cached_snapshot(repo_id, "main") {
            let file = join_repo_path(&snapshot, path);
            if file.is_file() {
                return Ok(file);
            }
        }
        let snapshot = self.fetch_files(repo_id, "main", &[path.to_string()], cache, progress)?;
        Ok(join_repo_path(&snapshot, path))
    }

    /// Fetches `files` of `repo_id` at `revision` into `cache`; returns the snapshot folder.
    /// First every file's metadata (one HEAD each), then the disk-space check over what is
    /// missing, then the transfers. Also for repositories that are not models to generate
    /// with (the depth model).
    pub fn fetch_files<P>(
        &self,
        repo_id: &str,
        revision: &str,
        files: &[String],
        cache: &HubCache,
        mut progress: P,
    ) -> Result<PathBuf, DownloadError>
    where
        P: FnMut(&str, DownloadProgress) -> bool,
    {
        self.refuse_offline()?;
        let repo_dir = cache.repo_dir(repo_id);
        // The first answer fixes the commit; every later file is fetched at that commit, so a
        // push to the repository during the download cannot mix two versions.
        let mut commit: Option<String> = None;
        let mut plan: Vec<(&str, Option<FileMetadata>)> = Vec::with_capacity(files.len());
        for file in files {
            if !is_safe_repo_path(file) {
                return Err(DownloadError::Protocol {
                    url: repo_id.to_string(),
                    message: format!("bad file path {file:?}"),
                });
            }
            refuse_pickle(file.rsplit('/').next().unwrap_or(file))?;
            if let Some(commit) = &commit {
                let snapshot = repo_dir.join("snapshots").join(commit);
                if present_in_snapshot(&snapshot, file).is_some() {
                    plan.push((file, None));
                    continue;
                }
            }
            let at = commit.as_deref().unwrap_or(revision);
            let meta = self.retrying(|| self.head(repo_id, at, file))?;
            commit.get_or_insert_with(|| meta.commit.clone());
            plan.push((file, Some(meta)));
        }
        let commit = commit.ok_or_else(|| DownloadError::Protocol {
            url: repo_id.to_string(),
            message: "no files to fetch".into(),
        })?;
        let blobs = repo_dir.join("blobs");
        let missing: u64 = plan
            .iter()
            .filter_map(|(_, meta)| meta.as_ref())
            .filter(|meta| !blob_is_complete(&blobs.join(&meta.etag), meta.size))
            .map(|meta| {
                let partial = blobs.join(format!("{}.incomplete", meta.etag));
                let done = fs::metadata(partial).map_or(0, |m| m.len());
                meta.size.unwrap_or(0).saturating_sub(done)
            })
            .sum();
        self.check_disk_space(cache.root(), missing)?;

        let file_count = plan.len();
        for (file_index, (file, meta)) in plan.into_iter().enumerate() {
            let mut reporter = Reporter::new(file, file_index, file_count);
            let Some(meta) = meta else {
                let snapshot = repo_dir.join("snapshots").join(&commit);
                let size = present_in_snapshot(&snapshot, file)
                    .and_then(|path| fs::metadata(path).ok())
                    .map(|m| m.len());
                reporter.finish(size.unwrap_or(0), size, &mut progress)?;
                continue;
            };
            let blob = blobs.join(&meta.etag);
            if !blob_is_complete(&blob, meta.size) {
                self.download_blob(
                    cache,
                    repo_id,
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
        if !is_commit_hash(revision) {
            write_ref(&repo_dir, revision, &commit)?;
        }
        Ok(repo_dir.join("snapshots").join(commit))
    }

    fn refuse_offline(&self) -> Result<(), DownloadError> {
        if self.offline {
            return Err(DownloadError::Offline {
                endpoint: self.endpoint.clone(),
                reason: "HF_HUB_OFFLINE is set".into(),
            });
        }
        Ok(())
    }

    /// `needed` more bytes must fit on the file system of `dir` with [`DISK_MARGIN_BYTES`] to
    /// spare.
    fn check_disk_space(&self, dir: &Path, needed: u64) -> Result<(), DownloadError> {
        if needed == 0 {
            return Ok(());
        }
        match self.free_space.available(dir) {
            Some(available) if available < needed.saturating_add(DISK_MARGIN_BYTES) => {
                Err(DownloadError::NotEnoughSpace {
                    dir: dir.to_path_buf(),
                    needed,
                    available,
                })
            }
            _ => Ok(()),
        }
    }

    /// Runs `request` again after failures that may pass, as the retry policy says (used for
    /// the small metadata requests; transfers retry in [`Self::transfer`], resuming).
    fn retrying<T>(
        &self,
        mut request: impl FnMut() -> Result<T, DownloadError>,
    ) -> Result<T, DownloadError> {
        let mut retry = 0;
        loop {
            match request() {
                Err(err) if err.is_transient() && retry < self.retry.retries => {
                    retry += 1;
                    std::thread::sleep(self.retry.delay(retry));
                }
                other => return other,
            }
        }
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
                    transient: http::is_transient_error(&err),
                }
            }
        })
    }

    fn status_error(&self, status: u16, repo_id: &str, file: &str, url: &str) -> DownloadError {
        match status {
            404 => DownloadError::NotFound {
                repo: repo_id.to_string(),
                file: file.to_string(),
                url: url.to_string(),
            },
            401 | 403 => DownloadError::AccessDenied {
                repo: repo_id.to_string(),
                status,
                hint: access_hint(repo_id, self.token.is_some(), &self.endpoint),
            },
            _ => DownloadError::Http {
                url: url.to_string(),
                status,
            },
        }
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
            let header = |name: &str| header(&response, name);
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
                return Err(self.status_error(status, repo_id, file, &url));
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
        let status_error = |status: u16, url: &str| self.status_error(status, repo_id, file, url);
        let transfer = Transfer {
            url: meta.url.clone(),
            incomplete: &incomplete,
            dest: blob,
            size: meta.size,
            // An LFS file's etag is its SHA-256; a small git file's is a git hash.
            sha256: sha256_etag(&meta.etag),
            label: file,
            status_error: &status_error,
        };
        self.transfer(&transfer, reporter, progress)
    }
}

/// What to do about a refused repository, said for the token situation at hand.
fn access_hint(repo_id: &str, token_sent: bool, endpoint: &str) -> String {
    let token_file = hf_home(&|name: &str| std::env::var_os(name)).join("token");
    if token_sent {
        format!(
            "the token (from HF_TOKEN or {}) has no access to it; accept the model's terms on {endpoint}/{repo_id} with the account the token belongs to, or use another token",
            token_file.display()
        )
    } else {
        format!(
            "the repository is gated or private, or does not exist. For a gated model, accept its terms on {endpoint}/{repo_id}, create a read token in your Hugging Face settings, and set HF_TOKEN to it (or save it in {})",
            token_file.display()
        )
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

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(!is_commit_hash("main") && is_commit_hash(&"a".repeat(40)));
        assert!(!is_safe_name("../x") && !is_safe_name(""));
    }
}
