//! A checkpoint file from any `http(s)://` URL (civitai and the like), saved into the models
//! folder under the name the server gives it (`Content-Disposition`) or the URL's last path
//! segment, made safe; an existing different file is never overwritten.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::http::{header, percent_decode};
use super::reference::refuse_pickle;
use super::transfer::{Reporter, Transfer};
use super::{io_error, DownloadError, DownloadProgress, HubClient};

/// The longest file name (in characters) kept from a server.
const MAX_NAME_CHARS: usize = 150;
/// In the models folder: which URL each downloaded file came from, so a model loaded by its
/// URL again is found without network.
const SOURCES_FILE: &str = ".downloads.json";

/// The folder direct-URL downloads go to: `$LATENT_STUDIO_MODELS_DIR`, else `models/` in the
/// app's data folder (beside `loras/` and `embeddings/`).
pub fn default_models_dir() -> Option<PathBuf> {
    std::env::var_os("LATENT_STUDIO_MODELS_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| dirs::data_dir().map(|d| d.join("latent-studio").join("models")))
}

impl HubClient {
    /// Downloads the file at `url` into `models_dir` (created if missing) and returns its path.
    /// A URL downloaded before (recorded in the folder's `.downloads.json`) whose file is still
    /// there is returned without network; a file of the same name and size already there is
    /// taken as this download; a partial `NAME.incomplete` from an interrupted run is resumed.
    pub fn fetch_url<P>(
        &self,
        url: &str,
        models_dir: &Path,
        mut progress: P,
    ) -> Result<PathBuf, DownloadError>
    where
        P: FnMut(&str, DownloadProgress) -> bool,
    {
        let url_name = url_file_name(url);
        refuse_pickle(&url_name)?;
        if let Some(path) = recorded_download(models_dir, url) {
            return Ok(path);
        }
        if self.offline {
            return Err(DownloadError::Offline {
                endpoint: url.to_string(),
                reason: "HF_HUB_OFFLINE is set".into(),
            });
        }
        let status_error = |status: u16, at: &str| url_status_error(status, url, at);
        // The name and size come with the answer to a GET: servers that sign their storage
        // URLs for GET (S3, civitai) refuse HEAD. The body is not read here.
        let (name, size) = self.retrying(|| {
            let (final_url, response) = self.get_following_redirects(url, None)?;
            let status = response.status().as_u16();
            if !(200..300).contains(&status) {
                return Err(status_error(status, &final_url));
            }
            let name = header(&response, "content-disposition")
                .and_then(|v| content_disposition_name(&v))
                .unwrap_or_else(|| url_file_name(&final_url));
            let size = header(&response, "content-length").and_then(|s| s.trim().parse().ok());
            Ok((name, size))
        })?;
        let name = sanitize_file_name(&name).unwrap_or_else(|| {
            sanitize_file_name(&url_name).unwrap_or_else(|| "model.safetensors".into())
        });
        refuse_pickle(&name)?;
        if !name.to_ascii_lowercase().ends_with(".safetensors") {
            return Err(DownloadError::NotSafetensors {
                url: url.to_string(),
                name,
            });
        }
        fs::create_dir_all(models_dir).map_err(io_error(models_dir))?;
        let dest = match free_destination(models_dir, &name, size) {
            Destination::AlreadyThere(path) => {
                let mut reporter = Reporter::new(&name, 0, 1);
                reporter.finish(size.unwrap_or(0), size, &mut progress)?;
                record_download(models_dir, url, &path);
                return Ok(path);
            }
            Destination::New(path) => path,
        };
        let file_name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or(name);
        let incomplete = models_dir.join(format!("{file_name}.incomplete"));
        let partial = fs::metadata(&incomplete).map_or(0, |m| m.len());
        if let Some(size) = size {
            self.check_disk_space(models_dir, size.saturating_sub(partial))?;
        }
        let mut reporter = Reporter::new(&file_name, 0, 1);
        let transfer = Transfer {
            url: url.to_string(),
            incomplete: &incomplete,
            dest: &dest,
            size,
            sha256: None,
            label: &file_name,
            status_error: &status_error,
        };
        self.transfer(&transfer, &mut reporter, &mut progress)?;
        let size = fs::metadata(&dest).map(|m| m.len()).ok();
        reporter.finish(size.unwrap_or(0), size, &mut progress)?;
        record_download(models_dir, url, &dest);
        Ok(dest)
    }
}

/// The file an earlier download of `url` left in `models_dir`, when it is still there.
fn recorded_download(models_dir: &Path, url: &str) -> Option<PathBuf> {
    let text = crate::files::read_text(&models_dir.join(SOURCES_FILE)).ok()?;
    let sources: BTreeMap<String, String> = serde_json::from_str(&text).ok()?;
    let name = sources.get(url)?;
    // Only a plain file name of the folder, whatever the record says.
    if sanitize_file_name(name).as_deref() != Some(name.as_str()) {
        return None;
    }
    let path = models_dir.join(name);
    path.is_file().then_some(path)
}

/// Remembers that `url` is `path` (best effort: without the record the next load asks the
/// server again and finds the same file by name and size).
fn record_download(models_dir: &Path, url: &str, path: &Path) {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return;
    };
    let record = models_dir.join(SOURCES_FILE);
    let mut sources: BTreeMap<String, String> = crate::files::read_text(&record)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default();
    sources.insert(url.to_string(), name.to_string());
    if let Ok(text) = serde_json::to_string_pretty(&sources) {
        let partial = models_dir.join(format!("{SOURCES_FILE}.tmp"));
        if fs::write(&partial, text).is_ok() {
            let _ = fs::rename(&partial, &record);
        }
    }
}

fn url_status_error(status: u16, url: &str, at: &str) -> DownloadError {
    match status {
        401 | 403 => DownloadError::UrlAccessDenied {
            url: url.to_string(),
            status,
        },
        404 => DownloadError::UrlNotFound {
            url: url.to_string(),
        },
        _ => DownloadError::Http {
            url: at.to_string(),
            status,
        },
    }
}

enum Destination {
    /// The same file (same name and size) is there from an earlier download.
    AlreadyThere(PathBuf),
    New(PathBuf),
}

/// `NAME`, else `NAME (2)`, `NAME (3)` … : the first name not taken by a different file.
fn free_destination(dir: &Path, name: &str, size: Option<u64>) -> Destination {
    let (stem, extension) = name.rsplit_once('.').unwrap_or((name, ""));
    for n in 1.. {
        let candidate = if n == 1 {
            name.to_string()
        } else {
            format!("{stem} ({n}).{extension}")
        };
        let path = dir.join(&candidate);
        match fs::metadata(&path) {
            Err(_) => return Destination::New(path),
            Ok(meta) if meta.is_file() && size == Some(meta.len()) => {
                return Destination::AlreadyThere(path)
            }
            Ok(_) => continue,
        }
    }
    unreachable!("the loop returns")
}

/// The last path segment of a URL, percent-decoded.
fn url_file_name(url: &str) -> String {
    let path_end = url.find(['?', '#']).unwrap_or(url.len());
    let path = &url[..path_end];
    percent_decode(path.rsplit('/').next().unwrap_or(""))
}

/// `attachment; filename="x.safetensors"` or `filename*=UTF-8''x%20y.safetensors` (preferred).
pub(super) fn content_disposition_name(value: &str) -> Option<String> {
    let mut plain = None;
    for part in value.split(';') {
        let Some((key, val)) = part.split_once('=') else {
            continue;
        };
        let key = key.trim().to_ascii_lowercase();
        let val = val.trim();
        if key == "filename*" {
            let encoded = val.rsplit_once("''").map_or(val, |(_, v)| v);
            return Some(percent_decode(encoded.trim_matches('"')));
        }
        if key == "filename" {
            plain = Some(val.trim_matches('"').to_string());
        }
    }
    plain
}

/// A name from a server made safe as one file name: no folders, no control or reserved
/// characters, no leading dots, at most [`MAX_NAME_CHARS`] characters (the extension kept).
pub(super) fn sanitize_file_name(name: &str) -> Option<String> {
    let last = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let cleaned: String = last
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || " ._-()+,[]".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let cleaned = cleaned.trim().trim_start_matches('.').trim().to_string();
    if cleaned.is_empty() || cleaned.chars().all(|c| c == '_' || c == '.') {
        return None;
    }
    if cleaned.chars().count() <= MAX_NAME_CHARS {
        return Some(cleaned);
    }
    let (stem, extension) = cleaned.rsplit_once('.').unwrap_or((&cleaned, ""));
    let keep = MAX_NAME_CHARS.saturating_sub(extension.chars().count() + 1);
    let stem: String = stem.chars().take(keep).collect();
    Some(format!("{stem}.{extension}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_are_read_and_made_safe() {
        assert_eq!(
            content_disposition_name("attachment; filename=\"dream shaper.safetensors\""),
            Some("dream shaper.safetensors".into())
        );
        assert_eq!(
            content_disposition_name(
                "attachment; filename=\"x.safetensors\"; filename*=UTF-8''a%C3%A9b.safetensors"
            ),
            Some("aéb.safetensors".into())
        );
        assert_eq!(
            sanitize_file_name("../../etc/passwd"),
            Some("passwd".into())
        );
        assert_eq!(
            sanitize_file_name("..\\evil:name?.safetensors"),
            Some("evil_name_.safetensors".into())
        );
        assert_eq!(sanitize_file_name("..."), None);
        let long = format!("{}.safetensors", "a".repeat(400));
        let short = sanitize_file_name(&long).unwrap();
        assert!(short.ends_with(".safetensors") && short.chars().count() == MAX_NAME_CHARS);
        assert_eq!(
            url_file_name("https://h/a/b%20c.safetensors?download=true"),
            "b c.safetensors"
        );
    }

    #[test]
    fn a_different_file_of_the_same_name_is_never_overwritten() {
        let dir = std::env::temp_dir().join(format!("latent-studio-dest-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("m.safetensors"), b"12345").unwrap();
        match free_destination(&dir, "m.safetensors", Some(5)) {
            Destination::AlreadyThere(p) => assert_eq!(p, dir.join("m.safetensors")),
            Destination::New(p) => panic!("{p:?}"),
        }
        match free_destination(&dir, "m.safetensors", Some(9)) {
            Destination::New(p) => assert_eq!(p, dir.join("m (2).safetensors")),
            Destination::AlreadyThere(p) => panic!("{p:?}"),
        }
        let _ = fs::remove_dir_all(&dir);
    }
}
