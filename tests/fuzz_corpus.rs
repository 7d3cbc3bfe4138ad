//! Replays the fuzz corpus (`fuzz/corpus/<target>/`) and the crash reproducers
//! (`fuzz/regressions/<target>/`) through the fuzz targets' bodies in
//! `latent_studio::fuzz_entry`, on the stable toolchain: a smoke run of the fuzzers, and a
//! regression test for every crash they found. See `fuzz/README.md`.

use std::path::{Path, PathBuf};

use latent_studio::fuzz_entry;

/// Every file of `fuzz/<folder>/<target>/`, sorted (an absent folder has none).
fn inputs(folder: &str, target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(folder)
        .join(target);
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .map(|e| e.expect("a directory entry").path())
            .filter(|p| p.is_file())
            .collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    files
}

/// Runs `body` on each input, naming the file that panics.
fn replay(target: &str, body: fn(&[u8])) {
    let corpus = inputs("corpus", target);
    assert!(!corpus.is_empty(), "fuzz/corpus/{target}/ is empty");
    for file in corpus.iter().chain(&inputs("regressions", target)) {
        let data = std::fs::read(file).expect("read a fuzz input");
        if std::panic::catch_unwind(|| body(&data)).is_err() {
            panic!("fuzz target {target} panics on {}", file.display());
        }
    }
}

#[test]
fn png_parameters() {
    replay("png_parameters", fuzz_entry::png_parameters);
}

#[test]
fn safetensors_header() {
    replay("safetensors_header", fuzz_entry::safetensors_header);
}

#[test]
fn a1111_prompt() {
    replay("a1111_prompt", fuzz_entry::a1111_prompt);
}

#[test]
fn lora_keys() {
    replay("lora_keys", fuzz_entry::lora_keys);
}

#[test]
fn tokenizer() {
    replay("tokenizer", fuzz_entry::tokenizer);
}

#[test]
fn single_file_detector() {
    replay("single_file_detector", fuzz_entry::single_file_detector);
}
