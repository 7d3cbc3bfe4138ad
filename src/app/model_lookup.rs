//! Finding the checkpoint an image's `Model hash` names among the recently opened model
//! files. Hashing a multi-gigabyte file the first time takes seconds, so each search runs
//! on its own short-lived thread and the window picks up the answer in a later frame.

use std::path::PathBuf;
use std::sync::Arc;

use crossbeam_channel::{unbounded, Receiver, Sender};

use crate::engine::HashCache;

use super::import::hash_matches;

/// A search for the file whose SHA-256 starts with `hash`.
#[derive(Debug, Clone, PartialEq)]
pub struct HashSearch {
    /// Numbers searches, so that only the answer to the latest import is acted on.
    pub id: u64,
    /// The image's `Model` name (or the hash when it has none), for the notice.
    pub model_name: String,
    pub hash: String,
    /// Model files already in the recent list; nothing else is hashed.
    pub candidates: Vec<PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HashSearchResult {
    pub search: HashSearch,
    pub found: Option<PathBuf>,
}

/// The window's end of the searches.
pub struct ModelLookup {
    results_tx: Sender<HashSearchResult>,
    results: Receiver<HashSearchResult>,
    notify: Arc<dyn Fn() + Send + Sync>,
}

impl ModelLookup {
    /// `notify` runs after each answer (the UI passes `request_repaint`).
    pub fn new(notify: impl Fn() + Send + Sync + 'static) -> Self {
        let (results_tx, results) = unbounded();
        Self {
            results_tx,
            results,
            notify: Arc::new(notify),
        }
    }

    /// Starts hashing `search.candidates` in the background. When no thread can be started
    /// the answer is "not found", so the user still hears about the missing model.
    pub fn start(&self, search: HashSearch) {
        let results = self.results_tx.clone();
        let notify = Arc::clone(&self.notify);
        let fallback = search.clone();
        let spawned = std::thread::Builder::new()
            .name("latent-studio-model-hash".into())
            .spawn(move || {
                // The cache file is shared with the worker, which fills it when it loads a
                // checkpoint, so a recently used model is usually answered without hashing.
                let cache = HashCache::user_default();
                let found = find_by_hash(&cache, &search.hash, &search.candidates);
                let _ = results.send(HashSearchResult { search, found });
                notify();
            });
        if spawned.is_err() {
            let _ = self.results_tx.send(HashSearchResult {
                search: fallback,
                found: None,
            });
        }
    }

    pub fn try_recv(&self) -> Option<HashSearchResult> {
        self.results.try_recv().ok()
    }
}

/// The first candidate whose SHA-256 starts with `hash`; unreadable files are skipped.
pub fn find_by_hash(cache: &HashCache, hash: &str, candidates: &[PathBuf]) -> Option<PathBuf> {
    candidates
        .iter()
        .find(|path| {
            cache
                .sha256(path)
                .is_ok_and(|sha256| hash_matches(hash, &sha256))
        })
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_with_the_hash_is_found_and_missing_files_are_skipped() {
        let dir = std::env::temp_dir().join(format!("latent-studio-lookup-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let (a, b) = (dir.join("a.safetensors"), dir.join("b.safetensors"));
        std::fs::write(&a, b"first").expect("write");
        std::fs::write(&b, b"second").expect("write");
        let cache = HashCache::new(None);
        let sha_b = cache.sha256(&b).expect("hash");
        let candidates = vec![dir.join("missing.safetensors"), a.clone(), b.clone()];
        assert_eq!(find_by_hash(&cache, &sha_b[..10], &candidates), Some(b));
        assert_eq!(find_by_hash(&cache, "0123456789", &candidates), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
