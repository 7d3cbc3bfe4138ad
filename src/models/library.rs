//! What is downloaded, and deleting it: the repositories in the Hugging Face hub cache
//! (`models--org--name` folders), the checkpoint files in the models folder, and the models
//! the user opened from elsewhere (listed, never deleted here). Deleting only ever removes a
//! `models--*` folder directly inside the hub cache, or a file directly inside the models
//! folder.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Where a listed model lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredKind {
    /// A repository folder in the hub cache (`models--org--name`).
    HubRepo,
    /// A file in the models folder (direct-URL downloads, or put there by the user).
    ModelsFolder,
    /// A model file or folder the user opened from elsewhere.
    Opened,
}

/// One model on disk.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredModel {
    pub kind: StoredKind,
    /// `org/name` for a hub repository, else the file or folder name.
    pub name: String,
    /// The repository folder, file or folder.
    pub path: PathBuf,
    /// Bytes on disk (a hub repository's blobs; links are not counted twice).
    pub size_bytes: u64,
    /// When it was last loaded (a hub snapshot's time, which loading refreshes) or changed.
    pub last_used: Option<SystemTime>,
}

impl StoredModel {
    /// Whether the delete button may remove it.
    pub fn deletable(&self) -> bool {
        self.kind != StoredKind::Opened
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LibraryError {
    #[error("{}: only hub cache repositories and files in the models folder are deleted here", path.display())]
    OutsideRoots { path: PathBuf },
    #[error("{name} is the model in use; load another model first")]
    InUse { name: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The two folders downloads go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelLibrary {
    pub hub_cache: PathBuf,
    pub models_dir: Option<PathBuf>,
}

impl ModelLibrary {
    /// The hub cache `huggingface_hub` uses and the models folder (see
    /// [`super::default_models_dir`]).
    pub fn from_env() -> Self {
        Self {
            hub_cache: super::HubCache::from_env().root().to_path_buf(),
            models_dir: super::default_models_dir(),
        }
    }

    /// Everything downloaded, then `opened` (files and folders that still exist and are not
    /// inside the two roots), each group by name.
    pub fn list(&self, opened: &[PathBuf]) -> Vec<StoredModel> {
        let mut hub: Vec<StoredModel> = read_dir_paths(&self.hub_cache)
            .into_iter()
            .filter_map(|path| {
                let folder = path.file_name()?.to_str()?.to_string();
                let id = folder.strip_prefix("models--")?.replacen("--", "/", 1);
                path.is_dir().then(|| StoredModel {
                    kind: StoredKind::HubRepo,
                    name: id,
                    size_bytes: size_on_disk(&path),
                    last_used: newest_snapshot_time(&path),
                    path,
                })
            })
            .collect();
        let mut files: Vec<StoredModel> = self
            .models_dir
            .iter()
            .flat_map(|dir| read_dir_paths(dir))
            .filter(|path| path.is_file())
            .filter(|path| {
                path.extension()
                    .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"))
            })
            .map(|path| file_entry(StoredKind::ModelsFolder, path))
            .collect();
        let mut others: Vec<StoredModel> = opened
            .iter()
            .filter(|path| path.exists() && !self.is_inside_roots(path))
            .map(|path| file_entry(StoredKind::Opened, path.clone()))
            .collect();
        for group in [&mut hub, &mut files, &mut others] {
            group.sort_by_key(|m| m.name.to_lowercase());
        }
        hub.into_iter().chain(files).chain(others).collect()
    }

    /// Removes `model` from disk: a hub repository folder with everything in it, or a models
    /// folder file (with its partial download, if any). Refused for anything else, and for
    /// the model `in_use` names (a path inside it, or itself).
    pub fn delete(&self, model: &StoredModel, in_use: Option<&Path>) -> Result<(), LibraryError> {
        if !self.may_delete(model) {
            return Err(LibraryError::OutsideRoots {
                path: model.path.clone(),
            });
        }
        if in_use.is_some_and(|used| used.starts_with(&model.path)) {
            return Err(LibraryError::InUse {
                name: model.name.clone(),
            });
        }
        let io = |source| LibraryError::Io {
            path: model.path.clone(),
            source,
        };
        match model.kind {
            StoredKind::HubRepo => {
                fs::remove_dir_all(&model.path).map_err(io)?;
                // The lock files of its blobs, as huggingface_hub keeps them.
                if let Some(folder) = model.path.file_name() {
                    let _ = fs::remove_dir_all(self.hub_cache.join(".locks").join(folder));
                }
            }
            _ => {
                fs::remove_file(&model.path).map_err(io)?;
                let mut partial = model.path.clone().into_os_string();
                partial.push(".incomplete");
                let _ = fs::remove_file(partial);
            }
        }
        Ok(())
    }

    /// The path is a `models--*` folder directly in the hub cache, or a file directly in the
    /// models folder, and no link leads out of them.
    fn may_delete(&self, model: &StoredModel) -> bool {
        let Ok(meta) = fs::symlink_metadata(&model.path) else {
            return false;
        };
        let parent = model.path.parent();
        let same_dir = |root: &Path| {
            parent.is_some_and(|p| {
                p == root || fs::canonicalize(p).ok() == fs::canonicalize(root).ok()
            })
        };
        let name = model
            .path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("");
        match model.kind {
            StoredKind::HubRepo => {
                meta.is_dir()
                    && name.starts_with("models--")
                    && name.len() > "models--".len()
                    && same_dir(&self.hub_cache)
            }
            StoredKind::ModelsFolder => {
                meta.is_file() && self.models_dir.as_deref().is_some_and(same_dir)
            }
            StoredKind::Opened => false,
        }
    }

    fn is_inside_roots(&self, path: &Path) -> bool {
        path.starts_with(&self.hub_cache)
            || self
                .models_dir
                .as_deref()
                .is_some_and(|dir| path.starts_with(dir))
    }
}

/// Records that `path` (a hub snapshot folder, or a file inside one) was just loaded, for the
/// "last used" column: the snapshot folder's time is set to now. Files keep their times
/// (hash caches key on them).
pub fn mark_used(path: &Path) {
    let snapshot = path.ancestors().find(|p| {
        p.parent()
            .and_then(Path::file_name)
            .is_some_and(|n| n == "snapshots")
    });
    if let Some(snapshot) = snapshot {
        // Best effort: some systems cannot open a folder to set its time.
        if let Ok(dir) = fs::File::open(snapshot) {
            let _ = dir.set_modified(SystemTime::now());
        }
    }
}

fn file_entry(kind: StoredKind, path: PathBuf) -> StoredModel {
    let meta = fs::metadata(&path).ok();
    let last_used = meta
        .as_ref()
        .and_then(|m| m.accessed().ok().max(m.modified().ok()));
    StoredModel {
        kind,
        name: path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        ),
        size_bytes: size_on_disk(&path),
        last_used,
        path,
    }
}

fn read_dir_paths(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// Bytes of the regular files under `path`, links not followed (a hub snapshot's links point
/// at blobs already counted).
fn size_on_disk(path: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return 0;
    };
    if meta.is_file() {
        return meta.len();
    }
    if !meta.is_dir() {
        return 0;
    }
    read_dir_paths(path).iter().map(|p| size_on_disk(p)).sum()
}

/// The newest time among a repository's snapshot folders.
fn newest_snapshot_time(repo: &Path) -> Option<SystemTime> {
    read_dir_paths(&repo.join("snapshots"))
        .iter()
        .filter_map(|p| fs::metadata(p).and_then(|m| m.modified()).ok())
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Scratch(PathBuf);
    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn scratch(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "latent-studio-library-{}-{name}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    /// A hub repository as a download leaves it: a blob and a snapshot link to it.
    fn hub_repo(cache: &Path, folder: &str, bytes: usize) -> PathBuf {
        let repo = cache.join(folder);
        fs::create_dir_all(repo.join("blobs")).unwrap();
        fs::create_dir_all(repo.join("snapshots/abc/unet")).unwrap();
        fs::write(repo.join("blobs/e1"), vec![0u8; bytes]).unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(
            "../../../blobs/e1",
            repo.join("snapshots/abc/unet/w.safetensors"),
        )
        .unwrap();
        repo
    }

    #[test]
    fn downloads_and_opened_models_are_listed_with_their_sizes() {
        let tmp = scratch("list");
        let cache = tmp.0.join("hub");
        let models = tmp.0.join("models");
        fs::create_dir_all(&models).unwrap();
        hub_repo(&cache, "models--b-org--tiny", 1000);
        hub_repo(&cache, "models--a-org--other", 10);
        fs::create_dir_all(cache.join(".locks")).unwrap();
        fs::write(models.join("civitai.safetensors"), [1u8; 300]).unwrap();
        fs::write(models.join("notes.txt"), "x").unwrap();
        let opened = tmp.0.join("elsewhere.safetensors");
        fs::write(&opened, [0u8; 5]).unwrap();
        let library = ModelLibrary {
            hub_cache: cache.clone(),
            models_dir: Some(models.clone()),
        };
        let listed = library.list(&[opened.clone(), tmp.0.join("gone.safetensors")]);
        let summary: Vec<(StoredKind, &str, u64)> = listed
            .iter()
            .map(|m| (m.kind, m.name.as_str(), m.size_bytes))
            .collect();
        assert_eq!(
            summary,
            [
                (StoredKind::HubRepo, "a-org/other", 10),
                (StoredKind::HubRepo, "b-org/tiny", 1000),
                (StoredKind::ModelsFolder, "civitai.safetensors", 300),
                (StoredKind::Opened, "elsewhere.safetensors", 5),
            ]
        );
        assert!(listed.iter().all(|m| m.last_used.is_some()));
        assert!(!listed[3].deletable());
    }

    #[test]
    fn deleting_removes_only_what_was_downloaded_and_never_the_model_in_use() {
        let tmp = scratch("delete");
        let cache = tmp.0.join("hub");
        let models = tmp.0.join("models");
        fs::create_dir_all(&models).unwrap();
        let repo = hub_repo(&cache, "models--org--tiny", 100);
        fs::create_dir_all(cache.join(".locks/models--org--tiny")).unwrap();
        let file = models.join("m.safetensors");
        fs::write(&file, [0u8; 4]).unwrap();
        let library = ModelLibrary {
            hub_cache: cache.clone(),
            models_dir: Some(models.clone()),
        };
        let listed = library.list(&[]);
        let (hub, downloaded) = (&listed[0], &listed[1]);

        let in_use = repo.join("snapshots/abc");
        let err = library.delete(hub, Some(&in_use)).unwrap_err();
        assert!(matches!(err, LibraryError::InUse { .. }), "{err}");
        assert!(repo.exists());

        library
            .delete(hub, Some(&file.with_file_name("other")))
            .unwrap();
        assert!(!repo.exists() && !cache.join(".locks/models--org--tiny").exists());
        assert!(cache.exists(), "the cache folder itself stays");
        library.delete(downloaded, None).unwrap();
        assert!(!file.exists() && models.exists());

        // Anything not directly in the roots is refused, whatever the entry claims.
        let outside = tmp.0.join("mine.safetensors");
        fs::write(&outside, b"keep").unwrap();
        for (kind, path) in [
            (StoredKind::ModelsFolder, outside.clone()),
            (StoredKind::HubRepo, tmp.0.clone()),
            (StoredKind::HubRepo, cache.clone()),
            (StoredKind::Opened, outside.clone()),
        ] {
            let fake = StoredModel {
                kind,
                name: "x".into(),
                path,
                size_bytes: 0,
                last_used: None,
            };
            let err = library.delete(&fake, None).unwrap_err();
            assert!(matches!(err, LibraryError::OutsideRoots { .. }), "{err}");
        }
        assert_eq!(fs::read(&outside).unwrap(), b"keep");
    }

    #[test]
    fn loading_a_snapshot_marks_it_used() {
        let tmp = scratch("mark");
        let repo = hub_repo(&tmp.0, "models--org--tiny", 1);
        let snapshot = repo.join("snapshots/abc");
        let old = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        fs::File::open(&snapshot)
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert_eq!(newest_snapshot_time(&repo), Some(old));
        mark_used(&snapshot.join("unet/w.safetensors"));
        assert!(newest_snapshot_time(&repo).is_some_and(|t| t > old));
    }
}
