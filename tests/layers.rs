//! The library's folders import only downward, so each layer can be read and changed without
//! the ones above it:
//!
//! app | server → engine → models → sampling → text → networks → kernels, and `formats` and `imaging`
//! import none; the window (`app`) and the HTTP server (`server`) stand side by side on top, import
//! from the engine only, their one front door, and neither imports the other.
//!
//! Comments are skipped (a doc link may point anywhere); `use` lines and paths in code count.

use std::path::{Path, PathBuf};

/// Folders that stand beside the layers, usable by all of them, importing none.
const BESIDE: [&str; 2] = ["formats", "imaging"];

const LAYERS: [&str; 7] = [
    "kernels", "networks", "text", "sampling", "models", "engine", "app",
];

/// The top layers: beside each other (same rank), each entering through the engine only.
const TOP: [&str; 2] = ["app", "server"];

fn rank(folder: &str) -> Option<usize> {
    let folder = if TOP.contains(&folder) { "app" } else { folder };
    LAYERS.iter().position(|layer| *layer == folder)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The `crate::FOLDER` paths a line of code names.
fn imported_folders(line: &str) -> Vec<&str> {
    let code = line.split("//").next().unwrap_or("");
    code.match_indices("crate::")
        .map(|(at, _)| {
            let rest = &code[at + "crate::".len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .collect()
}

#[test]
fn folders_import_only_downward() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut upward = Vec::new();
    for folder in LAYERS.iter().chain(&TOP[1..]).chain(BESIDE.iter()) {
        let mut files = Vec::new();
        rust_files(&src.join(folder), &mut files);
        assert!(!files.is_empty(), "src/{folder} has no Rust files");
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for (number, line) in text.lines().enumerate() {
                for target in imported_folders(line) {
                    if target == *folder {
                        continue;
                    }
                    // The one front door of the window and the server is the engine, which
                    // re-exports what they need.
                    let front_door = !TOP.contains(folder)
                        || target == "engine"
                        || (rank(target).is_none() && !BESIDE.contains(&target));
                    let allowed = front_door
                        && match (rank(folder), rank(target)) {
                            // formats stands beside the layers and knows none of them.
                            (None, Some(_)) => false,
                            (Some(from), Some(to)) => to < from,
                            // formats itself, or crate-root items (VERSION, describe_candle_error).
                            (_, None) => target != "formats" || *folder != "formats",
                        };
                    if !allowed {
                        upward.push(format!(
                            "{}:{}: src/{folder} imports crate::{target}",
                            file.strip_prefix(&src).unwrap().display(),
                            number + 1
                        ));
                    }
                }
            }
        }
    }
    assert!(upward.is_empty(), "upward imports:\n{}", upward.join("\n"));
}

#[test]
fn the_checker_sees_imports_and_skips_comments() {
    assert_eq!(
        imported_folders("use crate::models::{Family, X}; // crate::app"),
        ["models"]
    );
    assert_eq!(
        imported_folders("    //! see [`crate::models`]"),
        Vec::<&str>::new()
    );
    assert_eq!(
        imported_folders("let x = crate::kernels::conv::f(crate::text::y);"),
        ["kernels", "text"]
    );
}
