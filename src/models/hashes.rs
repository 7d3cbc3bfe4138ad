//! A1111's file hashes for image metadata: `Model hash` is the first 10 hex digits of the
//! checkpoint's SHA-256, each `Lora hashes` entry the first 12. Hashing a 7 GB file takes
//! a while, so results are remembered by path, size and modification time.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

/// The full SHA-256 of a file, as lowercase hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = crate::files::open_regular(path, u64::MAX)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect())
}

#[derive(serde::Serialize, serde::Deserialize, Clone, PartialEq, Eq)]
struct Entry {
    size: u64,
    modified_ns: u128,
    sha256: String,
}

/// Remembered hashes, kept in a small JSON file.
pub struct HashCache {
    file: Option<PathBuf>,
    entries: Mutex<HashMap<String, Entry>>,
}

impl HashCache {
    /// The cache in `file`; a missing or unreadable file starts an empty cache, and entries
    /// that are not a SHA-256 are dropped (they are hashed again when needed).
    pub fn new(file: Option<PathBuf>) -> Self {
        let mut entries: HashMap<String, Entry> = file
            .as_deref()
            .and_then(|f| crate::files::read_text(f).ok())
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default();
        entries.retain(|_, entry| {
            entry.sha256.len() == 64
                && entry
                    .sha256
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        });
        Self {
            file,
            entries: Mutex::new(entries),
        }
    }

    /// `latent-studio/hashes.json` in the user's cache folder.
    pub fn user_default() -> Self {
        Self::new(dirs::cache_dir().map(|d| d.join("latent-studio").join("hashes.json")))
    }

    /// The file's SHA-256, from the cache when the file is unchanged.
    pub fn sha256(&self, path: &Path) -> std::io::Result<String> {
        let metadata = std::fs::metadata(path)?;
        let modified_ns = metadata
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let key = std::fs::canonicalize(path)
            .unwrap_or_else(|_| path.to_path_buf())
            .to_string_lossy()
            .into_owned();
        let known = self
            .entries
            .lock()
            .ok()
            .and_then(|entries| entries.get(&key).cloned());
        if let Some(entry) = known {
            if entry.size == metadata.len() && entry.modified_ns == modified_ns {
                return Ok(entry.sha256);
            }
        }
        let sha256 = sha256_file(path)?;
        if let Ok(mut entries) = self.entries.lock() {
            entries.insert(
                key,
                Entry {
                    size: metadata.len(),
                    modified_ns,
                    sha256: sha256.clone(),
                },
            );
            if let Some(file) = &self.file {
                // A cache that cannot be written only costs time next run.
                if let Some(parent) = file.parent() {
                    let _ = std::fs::create_dir_all(parent);
                }
                if let Ok(text) = serde_json::to_string(&*entries) {
                    let _ = std::fs::write(file, text);
                }
            }
        }
        Ok(sha256)
    }

    /// A1111's `Model hash` (10 hex digits).
    pub fn model_hash(&self, path: &Path) -> std::io::Result<String> {
        Ok(self.sha256(path)?[..10].to_string())
    }

    /// A1111's LoRA short hash (12 hex digits).
    pub fn lora_hash(&self, path: &Path) -> std::io::Result<String> {
        Ok(self.sha256(path)?[..12].to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_sha256_prefixes_and_cached() {
        let dir = std::env::temp_dir().join(format!("latent-studio-hash-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("model.safetensors");
        std::fs::write(&file, b"abc").unwrap();
        let cache = HashCache::new(Some(dir.join("hashes.json")));
        // SHA-256("abc"), the FIPS 180-2 test vector.
        assert_eq!(
            cache.sha256(&file).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(cache.model_hash(&file).unwrap(), "ba7816bf8f");
        assert_eq!(cache.lora_hash(&file).unwrap(), "ba7816bf8f01");
        let reloaded = HashCache::new(Some(dir.join("hashes.json")));
        assert_eq!(reloaded.entries.lock().unwrap().len(), 1);
        std::fs::write(&file, b"abcd").unwrap();
        assert_ne!(cache.model_hash(&file).unwrap(), "ba7816bf8f");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn corrupt_cache_entries_are_dropped_and_rebuilt() {
        let dir =
            std::env::temp_dir().join(format!("latent-studio-hash-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("model.safetensors");
        std::fs::write(&file, b"abc").unwrap();
        let metadata = std::fs::metadata(&file).unwrap();
        let modified_ns = metadata
            .modified()
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let key = std::fs::canonicalize(&file)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        // An entry for this very file whose hash is too short (it used to be sliced).
        let cache_file = dir.join("hashes.json");
        let corrupt =
            serde_json::json!({ key: { "size": 3, "modified_ns": modified_ns, "sha256": "ab" } });
        std::fs::write(&cache_file, corrupt.to_string()).unwrap();
        let cache = HashCache::new(Some(cache_file));
        assert_eq!(cache.model_hash(&file).unwrap(), "ba7816bf8f");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
