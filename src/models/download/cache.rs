//! The Hugging Face hub cache on disk: where it is, what a snapshot holds, and the links and
//! locks a download makes there, as `huggingface_hub` does.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use super::{io_error, reference, DownloadError, LOCK_POLL};
use crate::models::catalog::{is_safe_repo_path, CatalogEntry};

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

    pub(crate) fn from_vars(var: impl Fn(&str) -> Option<OsString>) -> Self {
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

    /// The snapshot a finished download of `repo_id` at `revision` left (its `refs/` entry is
    /// written last), when it holds a diffusers model: `model_index.json` and, for each
    /// component it lists that a pipeline here uses, a folder (with `.safetensors` weights
    /// where the component has weights). No network.
    pub fn cached_diffusers_snapshot(&self, repo_id: &str, revision: &str) -> Option<PathBuf> {
        let snapshot = self.cached_snapshot(repo_id, revision)?;
        let index = crate::files::read_text(&snapshot.join("model_index.json")).ok()?;
        let index: serde_json::Value = serde_json::from_str(&index).ok()?;
        let components = index.as_object()?;
        let complete = components.iter().all(|(name, value)| {
            let used = value
                .as_array()
                .is_some_and(|v| v.first().is_some_and(|lib| !lib.is_null()));
            if !used || !reference::COMPONENTS.contains(&name.as_str()) {
                return true;
            }
            let dir = snapshot.join(name);
            let has_weights = fs::read_dir(&dir).is_ok_and(|entries| {
                entries
                    .filter_map(Result::ok)
                    .any(|e| e.file_name().to_string_lossy().ends_with(".safetensors"))
            });
            dir.is_dir() && (has_weights || !reference::has_weights(name))
        });
        complete.then_some(snapshot)
    }

    /// `snapshots/{commit}` of the commit `refs/{revision}` names, when that folder exists.
    pub fn cached_snapshot(&self, repo_id: &str, revision: &str) -> Option<PathBuf> {
        let repo = self.repo_dir(repo_id);
        let text = crate::files::read_text(&refs_path(&repo, revision)?).ok()?;
        let commit = text.trim();
        let snapshot = repo.join("snapshots").join(commit);
        (is_safe_name(commit) && snapshot.is_dir()).then_some(snapshot)
    }

    pub(super) fn lock_path(&self, repo_id: &str, etag: &str) -> PathBuf {
        self.root
            .join(".locks")
            .join(repo_folder_name(repo_id))
            .join(format!("{etag}.lock"))
    }
}

/// `$HF_HOME`, else `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`.
pub(super) fn hf_home(var: &impl Fn(&str) -> Option<OsString>) -> PathBuf {
    let set = |name: &str| var(name).filter(|v| !v.is_empty());
    if let Some(home) = set("HF_HOME") {
        expand_home(home, var)
    } else if let Some(xdg) = set("XDG_CACHE_HOME") {
        expand_home(xdg, var).join("huggingface")
    } else {
        user_home(var).join(".cache").join("huggingface")
    }
}

/// `~` as Python's `os.path.expanduser` reads it: `$HOME` on Unix; on Windows `%USERPROFILE%`
/// (Python ignores `HOME` there), so the cache is `%USERPROFILE%\.cache\huggingface\hub` as
/// huggingface_hub makes it.
fn user_home(var: &impl Fn(&str) -> Option<OsString>) -> PathBuf {
    let order = if cfg!(windows) {
        ["USERPROFILE", "HOME"]
    } else {
        ["HOME", "USERPROFILE"]
    };
    order
        .iter()
        .find_map(|name| var(name).filter(|v| !v.is_empty()))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// `~`, `~/x` (and `~\x` on Windows) as Python's `os.path.expanduser` reads them.
fn expand_home(value: OsString, var: &impl Fn(&str) -> Option<OsString>) -> PathBuf {
    let separators: &[char] = if cfg!(windows) { &['/', '\\'] } else { &['/'] };
    match value.to_str() {
        Some("~") => user_home(var),
        Some(s) if s.len() > 1 && s.starts_with('~') && s[1..].starts_with(separators) => {
            user_home(var).join(&s[2..])
        }
        _ => PathBuf::from(value),
    }
}

pub(crate) fn repo_folder_name(repo_id: &str) -> String {
    format!("models--{}", repo_id.replace('/', "--"))
}

pub(super) fn refs_path(repo: &Path, revision: &str) -> Option<PathBuf> {
    is_safe_repo_path(revision).then(|| join_repo_path(&repo.join("refs"), revision))
}

pub(super) fn join_repo_path(dir: &Path, path: &str) -> PathBuf {
    path.split('/')
        .fold(dir.to_path_buf(), |p, part| p.join(part))
}

pub(super) fn is_commit_hash(revision: &str) -> bool {
    revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A single path component made of characters a hub commit or etag uses.
pub(super) fn is_safe_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The file in the snapshot, or its full-precision sibling for an fp16 variant.
pub(super) fn present_in_snapshot(snapshot: &Path, file: &str) -> Option<PathBuf> {
    let path = join_repo_path(snapshot, file);
    if path.is_file() {
        return Some(path);
    }
    let full = file.strip_suffix(".fp16.safetensors")?;
    let path = join_repo_path(snapshot, &format!("{full}.safetensors"));
    path.is_file().then_some(path)
}

pub(super) fn blob_is_complete(blob: &Path, size: Option<u64>) -> bool {
    match fs::metadata(blob) {
        Ok(m) => m.is_file() && size.is_none_or(|size| m.len() == size),
        Err(_) => false,
    }
}

/// Takes the `huggingface_hub`-compatible lock on a blob, polling so that `still_wanted` (the
/// progress callback) can cancel while another process holds it.
pub(super) fn lock_blob(
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
pub(super) fn link_snapshot(
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

pub(super) fn write_ref(
    repo_dir: &Path,
    revision: &str,
    commit: &str,
) -> Result<(), DownloadError> {
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
        // Python's expanduser: USERPROFILE on Windows (even when HOME is set), HOME elsewhere.
        let both = [("HOME", "/home/u"), ("USERPROFILE", "/users/u")];
        let home = if cfg!(windows) { "/users/u" } else { "/home/u" };
        assert_eq!(
            cache_for(&both),
            Path::new(home).join(".cache/huggingface/hub")
        );
    }
}
