//! The LoRA list: the `.safetensors` files of the LoRA folder, the ones switched on in the
//! list, and the `<lora:NAME:MULT>` tags A1111 users type instead.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::engine::{extract_lora_tags, PromptSyntax};

use super::state::LoraChoice;

/// What the file thread last found in the LoRA folder.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoraListing {
    /// The folder listed (the one in use when the listing was asked for).
    pub folder: Option<PathBuf>,
    /// File names (`NAME.safetensors`), sorted by name without regard to case.
    pub files: Vec<String>,
    pub status: ListingStatus,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub enum ListingStatus {
    /// Asked for, not answered yet.
    #[default]
    Reading,
    Ready,
    Failed(String),
}

impl LoraListing {
    /// The listed file whose name (without `.safetensors`) is `name`, compared as A1111
    /// compares tag names: exactly, else without regard to case.
    pub fn file_named(&self, name: &str) -> Option<&str> {
        let exact = self.files.iter().find(|file| lora_name(file) == name);
        let loose = || {
            let lower = name.to_lowercase();
            self.files
                .iter()
                .find(|file| lora_name(file).to_lowercase() == lower)
        };
        exact.or_else(loose).map(String::as_str)
    }
}

/// The name a LoRA file is known by in tags and in `Lora hashes`: its file stem.
pub fn lora_name(file_name: &str) -> &str {
    Path::new(file_name)
        .file_stem()
        .and_then(|stem| stem.to_str())
        .unwrap_or(file_name)
}

/// The `.safetensors` files of `folder`, by name. A folder that does not exist yet lists
/// empty: it is only created when the user asks to open it.
pub fn list_lora_files(folder: &Path) -> Result<Vec<String>, String> {
    let entries = match std::fs::read_dir(folder) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(format!("cannot list {}: {err}", folder.display())),
    };
    let mut files: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_ok_and(|t| !t.is_dir()))
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| is_safetensors(Path::new(name)))
        .collect();
    files.sort_by_key(|name| name.to_lowercase());
    Ok(files)
}

pub fn is_safetensors(path: &Path) -> bool {
    path.extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("safetensors"))
}

/// Names of the LoRAs the prompt's own `<lora:…>` tags ask for (none with plain syntax,
/// which reads tags as text; none for a prompt whose tags do not parse).
pub fn tagged_lora_names(prompt: &str, syntax: PromptSyntax) -> Vec<String> {
    if syntax == PromptSyntax::Plain {
        return Vec::new();
    }
    extract_lora_tags(prompt)
        .map(|(_, tags)| tags.into_iter().map(|tag| tag.name).collect())
        .unwrap_or_default()
}

/// The LoRAs switched on in the list, as the worker takes them (`GenerateJob::loras`).
/// A LoRA the prompt also tags is left to the tag, so it is not merged twice.
pub fn job_loras(
    listing: &LoraListing,
    choices: &BTreeMap<String, LoraChoice>,
    prompt: &str,
    syntax: PromptSyntax,
) -> Vec<(PathBuf, f64)> {
    let Some(folder) = &listing.folder else {
        return Vec::new();
    };
    let tagged: Vec<String> = tagged_lora_names(prompt, syntax)
        .into_iter()
        .map(|name| name.to_lowercase())
        .collect();
    listing
        .files
        .iter()
        .filter_map(|file| {
            let choice = choices.get(file).filter(|c| c.enabled)?;
            let tagged_too = tagged.contains(&lora_name(file).to_lowercase());
            (!tagged_too).then(|| (folder.join(file), choice.multiplier))
        })
        .collect()
}

/// `<lora:NAME:MULT>` as A1111's extra-networks tab inserts it (`0.8`, not `0.80000001`).
pub fn lora_tag(name: &str, multiplier: f64) -> String {
    format!("<lora:{name}:{}>", short_number(multiplier))
}

fn short_number(value: f64) -> String {
    let text = format!("{value:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".to_string()
    } else {
        text.to_string()
    }
}

/// `prompt` with `addition` appended after a comma, the way A1111 inserts network tags and
/// embedding names (nothing is added when `addition` is already the prompt's ending).
pub fn append_to_prompt(prompt: &mut String, addition: &str) {
    let trimmed = prompt.trim_end();
    if trimmed.ends_with(addition) {
        return;
    }
    prompt.truncate(trimmed.len());
    if !prompt.is_empty() && !prompt.ends_with(',') {
        prompt.push(',');
    }
    if !prompt.is_empty() {
        prompt.push(' ');
    }
    prompt.push_str(addition);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(files: &[&str]) -> LoraListing {
        LoraListing {
            folder: Some(PathBuf::from("/loras")),
            files: files.iter().map(|f| f.to_string()).collect(),
            status: ListingStatus::Ready,
        }
    }

    fn on(multiplier: f64) -> LoraChoice {
        LoraChoice {
            enabled: true,
            multiplier,
        }
    }

    #[test]
    fn enabled_listed_loras_go_to_the_job_unless_the_prompt_tags_them() {
        let listing = listing(&["Detail.safetensors", "style.safetensors", "off.safetensors"]);
        let mut choices = BTreeMap::new();
        choices.insert("Detail.safetensors".to_string(), on(0.5));
        choices.insert("style.safetensors".to_string(), on(-1.0));
        choices.insert("gone.safetensors".to_string(), on(1.0));
        choices.insert("off.safetensors".to_string(), LoraChoice::default());

        let loras = job_loras(&listing, &choices, "a cat", PromptSyntax::A1111);
        assert_eq!(
            loras,
            vec![
                (PathBuf::from("/loras/Detail.safetensors"), 0.5),
                (PathBuf::from("/loras/style.safetensors"), -1.0),
            ]
        );

        let tagged = job_loras(
            &listing,
            &choices,
            "a cat <lora:detail:0.7>",
            PromptSyntax::A1111,
        );
        assert_eq!(
            tagged,
            vec![(PathBuf::from("/loras/style.safetensors"), -1.0)]
        );
        // Plain syntax reads the tag as text, so the list entry still applies.
        let plain = job_loras(&listing, &choices, "<lora:detail:0.7>", PromptSyntax::Plain);
        assert_eq!(plain.len(), 2);
    }

    #[test]
    fn tags_and_insertions_read_like_a1111() {
        assert_eq!(lora_tag("detail", 1.0), "<lora:detail:1>");
        assert_eq!(lora_tag("detail", 0.8000001), "<lora:detail:0.8>");
        assert_eq!(lora_tag("detail", -0.25), "<lora:detail:-0.25>");
        assert_eq!(lora_tag("detail", -0.001), "<lora:detail:0>");

        let mut prompt = String::new();
        append_to_prompt(&mut prompt, "<lora:a:1>");
        assert_eq!(prompt, "<lora:a:1>");
        append_to_prompt(&mut prompt, "<lora:a:1>");
        assert_eq!(prompt, "<lora:a:1>", "a second click adds nothing");
        let mut prompt = "a cat, ".to_string();
        append_to_prompt(&mut prompt, "style");
        assert_eq!(prompt, "a cat, style");
        let mut prompt = "a cat\n".to_string();
        append_to_prompt(&mut prompt, "style");
        assert_eq!(prompt, "a cat, style");
    }

    #[test]
    fn the_folder_lists_safetensors_files_by_name() {
        let dir = std::env::temp_dir().join(format!("latent-studio-loras-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(
            list_lora_files(&dir),
            Ok(Vec::new()),
            "a missing folder is empty"
        );
        assert!(!dir.exists(), "listing creates nothing");
        std::fs::create_dir_all(dir.join("sub.safetensors")).expect("mkdir");
        for file in ["b.safetensors", "A.SAFETENSORS", "notes.txt", "old.ckpt"] {
            std::fs::write(dir.join(file), b"x").expect("write");
        }
        let files = list_lora_files(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(
            files,
            Ok(vec![
                "A.SAFETENSORS".to_string(),
                "b.safetensors".to_string()
            ])
        );
        let listing = listing(&["A.SAFETENSORS", "b.safetensors"]);
        assert_eq!(listing.file_named("a"), Some("A.SAFETENSORS"));
        assert_eq!(listing.file_named("b"), Some("b.safetensors"));
        assert_eq!(listing.file_named("c"), None);
    }
}
