//! AUTOMATIC1111's prompt styles: `styles.csv` (columns `name,prompt,negative_prompt`, as
//! Python's `csv` module writes them) and how a style merges into a prompt.
//!
//! A style's text either holds `{prompt}`, which the user's prompt replaces, or is appended to
//! the prompt after `", "` — A1111's `merge_prompts`. Styles apply in the order chosen, each to
//! the result of the one before (`apply_styles_to_prompt`).

use std::path::Path;

/// A styles file larger than this is refused: thousands of styles fit in far less.
pub const MAX_STYLES_FILE_BYTES: u64 = 8 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptStyle {
    pub name: String,
    pub prompt: String,
    pub negative_prompt: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StylesError {
    #[error("cannot read the styles file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("the styles file {path} is not A1111's styles.csv: {reason}")]
    Format { path: String, reason: String },
    #[error("cannot write the styles file {path}: {reason}")]
    Write { path: String, reason: String },
}

/// A1111's `merge_prompts`: `{prompt}` in the style is replaced by the prompt; otherwise the
/// two are joined with `", "`, leaving out an empty one.
pub fn merge_style(style_text: &str, prompt: &str) -> String {
    if style_text.contains("{prompt}") {
        style_text.replace("{prompt}", prompt)
    } else {
        [prompt.trim(), style_text.trim()]
            .into_iter()
            .filter(|part| !part.is_empty())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The prompt and negative prompt with every style merged in, in order.
pub fn apply_styles<'a>(
    prompt: &str,
    negative_prompt: &str,
    styles: impl IntoIterator<Item = &'a PromptStyle>,
) -> (String, String) {
    styles.into_iter().fold(
        (prompt.to_string(), negative_prompt.to_string()),
        |(prompt, negative), style| {
            (
                merge_style(&style.prompt, &prompt),
                merge_style(&style.negative_prompt, &negative),
            )
        },
    )
}

/// Reads a styles file; a missing file is an empty list (A1111 starts without one).
pub fn read_styles(path: &Path) -> Result<Vec<PromptStyle>, StylesError> {
    let shown = path.display().to_string();
    let bytes = match crate::files::open_regular(path, MAX_STYLES_FILE_BYTES) {
        Ok(file) => {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(
                &mut std::io::Read::take(file, MAX_STYLES_FILE_BYTES + 1),
                &mut bytes,
            )
            .map_err(|err| StylesError::Read {
                path: shown.clone(),
                reason: err.to_string(),
            })?;
            bytes
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => {
            return Err(StylesError::Read {
                path: shown,
                reason: err.to_string(),
            })
        }
    };
    if bytes.len() as u64 > MAX_STYLES_FILE_BYTES {
        return Err(StylesError::Read {
            path: shown,
            reason: format!("larger than {} MiB", MAX_STYLES_FILE_BYTES >> 20),
        });
    }
    // Excel and Notepad save with a byte-order mark; Python reads it as part of the first name.
    let text = String::from_utf8(bytes).map_err(|_| StylesError::Format {
        path: shown.clone(),
        reason: "it is not UTF-8 text".into(),
    })?;
    parse_styles(text.trim_start_matches('\u{feff}')).map_err(|reason| StylesError::Format {
        path: shown,
        reason,
    })
}

/// Writes the styles as A1111 does (header, `\r\n` rows, quotes only where needed), through a
/// temporary file so a failed write leaves the old file as it was.
pub fn write_styles(path: &Path, styles: &[PromptStyle]) -> Result<(), StylesError> {
    let failed = |err: std::io::Error| StylesError::Write {
        path: path.display().to_string(),
        reason: err.to_string(),
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(failed)?;
    }
    let temporary = path.with_extension("csv.partial");
    std::fs::write(&temporary, styles_csv(styles)).map_err(failed)?;
    std::fs::rename(&temporary, path).map_err(|err| {
        let _ = std::fs::remove_file(&temporary);
        failed(err)
    })
}

/// The file's text: `name,prompt,negative_prompt` and a row per style.
pub fn styles_csv(styles: &[PromptStyle]) -> String {
    let mut out = String::from("name,prompt,negative_prompt\r\n");
    for style in styles {
        let fields = [&style.name, &style.prompt, &style.negative_prompt].map(|f| csv_field(f));
        out.push_str(&fields.join(","));
        out.push_str("\r\n");
    }
    out
}

/// Python's `csv.QUOTE_MINIMAL`: quoted when it holds a comma, a quote or a line break.
fn csv_field(field: &str) -> String {
    if field.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

/// Parses the CSV text as A1111's `csv.DictReader(file, skipinitialspace=True)` does: the
/// header names the columns (in any order; `negative_prompt` may be missing), rows without a
/// name are skipped.
pub fn parse_styles(text: &str) -> Result<Vec<PromptStyle>, String> {
    let mut rows = csv_rows(text)?.into_iter();
    let header = rows.next().unwrap_or_default();
    let column = |name: &str| header.iter().position(|h| h.trim() == name);
    let name_at = column("name").ok_or("its first line has no `name` column")?;
    let prompt_at = column("prompt").ok_or("its first line has no `prompt` column")?;
    let negative_at = column("negative_prompt");
    let field = |row: &[String], at: Option<usize>| {
        at.and_then(|at| row.get(at)).cloned().unwrap_or_default()
    };
    Ok(rows
        .filter(|row| !field(row, Some(name_at)).is_empty())
        .map(|row| PromptStyle {
            name: field(&row, Some(name_at)),
            prompt: field(&row, Some(prompt_at)),
            negative_prompt: field(&row, negative_at),
        })
        .collect())
}

/// RFC 4180 rows with Python's `skipinitialspace`: quoted fields may hold commas, doubled
/// quotes and line breaks; blank lines are no rows.
fn csv_rows(text: &str) -> Result<Vec<Vec<String>>, String> {
    let mut rows = Vec::new();
    let mut row: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    // At the start of a field (only spaces read so far): a quote opens a quoted field.
    let mut field_start = true;
    let mut quoted = false;
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                c => {
                    if c == '\n' {
                        line += 1;
                    }
                    field.push(c);
                }
            }
            continue;
        }
        match c {
            ' ' if field_start => {}
            '"' if field_start => {
                quoted = true;
                field_start = false;
            }
            ',' => {
                row.push(std::mem::take(&mut field));
                field_start = true;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' | '\r' => {
                line += 1;
                if !(row.is_empty() && field.is_empty()) {
                    row.push(std::mem::take(&mut field));
                    rows.push(std::mem::take(&mut row));
                }
                field_start = true;
            }
            c => {
                field.push(c);
                field_start = false;
            }
        }
    }
    if quoted {
        return Err(format!(
            "a quoted field opened before line {line} never ends"
        ));
    }
    if !(row.is_empty() && field.is_empty()) {
        row.push(field);
        rows.push(row);
    }
    Ok(rows)
}

/// What the file thread does with a styles file before reading it again.
#[derive(Debug, Clone, PartialEq)]
pub enum StyleTask {
    /// Only read it (at start, on Reload).
    Read,
    /// Read a file just picked, and say how many styles it holds.
    Picked,
    /// Add this style, or replace the one of its name (as A1111 does).
    Save(PromptStyle),
    Delete(String),
}

/// What a task did, for a notice: a sentence, or a title and the reason it failed.
pub type StyleOutcome = Result<String, (String, String)>;

impl StyleTask {
    /// Runs off the UI thread (the window's file thread): the edit (re-reading the file first, so styles another program
    /// added meanwhile are kept, and never writing over a file that could not be read), then
    /// the file read again for the window.
    pub fn run(&self, path: &Path) -> (Result<Vec<PromptStyle>, String>, Option<StyleOutcome>) {
        let outcome = match self {
            StyleTask::Read | StyleTask::Picked => None,
            StyleTask::Save(style) => Some(edit_styles(path, "Style not saved", |styles| {
                match styles.iter_mut().find(|s| s.name == style.name) {
                    Some(existing) => *existing = style.clone(),
                    None => styles.push(style.clone()),
                }
                format!("Style \"{}\" saved", style.name)
            })),
            StyleTask::Delete(name) => Some(edit_styles(path, "Style not deleted", |styles| {
                styles.retain(|s| s.name != *name);
                format!("Style \"{name}\" deleted")
            })),
        };
        let reading = read_styles(path).map_err(|err| err.to_string());
        let outcome = match (self, &reading) {
            (StyleTask::Picked, Ok(styles)) => Some(Ok(format!(
                "{} styles from {}",
                styles.len(),
                path.display()
            ))),
            (StyleTask::Picked, Err(problem)) => {
                Some(Err(("Styles not loaded".to_string(), problem.clone())))
            }
            _ => outcome,
        };
        (reading, outcome)
    }
}

fn edit_styles(
    path: &Path,
    failed: &str,
    edit: impl FnOnce(&mut Vec<PromptStyle>) -> String,
) -> StyleOutcome {
    let fail = |reason: String| (failed.to_string(), reason);
    let mut styles = read_styles(path).map_err(|err| fail(err.to_string()))?;
    let done = edit(&mut styles);
    write_styles(path, &styles).map_err(|err| fail(err.to_string()))?;
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn style(name: &str, prompt: &str, negative: &str) -> PromptStyle {
        PromptStyle {
            name: name.into(),
            prompt: prompt.into(),
            negative_prompt: negative.into(),
        }
    }

    #[test]
    fn styles_merge_as_a1111_does() {
        assert_eq!(
            merge_style("photo of {prompt}, 35mm", "a cat"),
            "photo of a cat, 35mm"
        );
        assert_eq!(merge_style("masterpiece", " a cat "), "a cat, masterpiece");
        assert_eq!(merge_style("masterpiece", ""), "masterpiece");
        assert_eq!(merge_style("", "a cat"), "a cat");
        let styles = [
            style("cinematic", "cinematic still of {prompt}", "cartoon"),
            style("sharp", "sharp focus", ""),
        ];
        assert_eq!(
            apply_styles("a cat", "blurry", &styles),
            (
                "cinematic still of a cat, sharp focus".to_string(),
                "blurry, cartoon".to_string()
            )
        );
    }

    #[test]
    fn a1111_files_read_and_write_back_unchanged() {
        // As A1111 writes it: quotes only where needed, CRLF, an empty negative.
        let text = "name,prompt,negative_prompt\r\n\
                    Plain,\"a photo of {prompt}, 8k\",\"ugly, \"\"bad\"\" hands\"\r\n\
                    Two lines,\"first\nsecond\",\r\n";
        let styles = parse_styles(text).unwrap();
        assert_eq!(
            styles,
            vec![
                style("Plain", "a photo of {prompt}, 8k", "ugly, \"bad\" hands"),
                style("Two lines", "first\nsecond", ""),
            ]
        );
        assert_eq!(styles_csv(&styles), text);
    }

    #[test]
    fn loose_files_are_read_like_python_reads_them() {
        // Columns in another order, spaces after commas, no negative column, a nameless row,
        // blank lines, no final line break.
        let text = "prompt, name\n\nsunset {prompt}, Warm\n, \n\"x\", \"Quoted\"";
        assert_eq!(
            parse_styles(text).unwrap(),
            vec![
                style("Warm", "sunset {prompt}", ""),
                style("Quoted", "x", "")
            ]
        );
        assert!(parse_styles("title,text\nA,b\n")
            .unwrap_err()
            .contains("no `name` column"));
        assert!(parse_styles("name,prompt\nA,\"open\n")
            .unwrap_err()
            .contains("never ends"));
        assert_eq!(
            parse_styles("").unwrap_err(),
            "its first line has no `name` column"
        );
    }

    #[test]
    fn files_round_trip_and_a_missing_one_is_empty() {
        let dir = std::env::temp_dir().join(format!("latent-studio-styles-{}", std::process::id()));
        let path = dir.join("sub").join("styles.csv");
        assert_eq!(read_styles(&path).unwrap(), Vec::new());
        let styles = vec![style("A", "{prompt}, b", "c"), style("Ünïcode", "ß", "")];
        write_styles(&path, &styles).unwrap();
        assert_eq!(read_styles(&path).unwrap(), styles);
        std::fs::write(&path, b"name,prompt\n\xff\xfe").unwrap();
        let err = read_styles(&path).unwrap_err().to_string();
        assert!(
            err.contains("not UTF-8") && err.contains("styles.csv"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
