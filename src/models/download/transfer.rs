//! Moving one file's bytes: a GET (following redirects) into `{dest}.incomplete`-style partial
//! file, resumed with `Range` after an interruption, tried again with backoff after failures
//! that may pass, checked against the announced size and SHA-256, and only then renamed to its
//! final name, so a partial or corrupt file is never loaded.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::http::{content_range_start, header, join_url};
use super::{io_error, DownloadError, DownloadProgress, HubClient, MAX_REDIRECTS};

const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);
const SPEED_WINDOW: Duration = Duration::from_secs(5);
const READ_BUFFER: usize = 256 * 1024;
/// While waiting to try again, the progress callback is asked this often whether to go on.
const WAIT_SLICE: Duration = Duration::from_millis(100);

/// One file to fetch.
pub(super) struct Transfer<'a> {
    /// The first URL to GET.
    pub url: String,
    /// The partial file, kept between attempts and runs.
    pub incomplete: &'a Path,
    /// Where the complete, checked file goes.
    pub dest: &'a Path,
    pub size: Option<u64>,
    /// Lower-case hex SHA-256 the contents must have, when the server tells it.
    pub sha256: Option<String>,
    /// The file as the user knows it, for messages.
    pub label: &'a str,
    /// The error for an HTTP status that is not a success.
    pub status_error: &'a dyn Fn(u16, &str) -> DownloadError,
}

impl HubClient {
    /// Fetches `transfer`, trying again after transient failures as [`Self::with_retry`] says.
    pub(super) fn transfer<P>(
        &self,
        transfer: &Transfer<'_>,
        reporter: &mut Reporter,
        progress: &mut P,
    ) -> Result<(), DownloadError>
    where
        P: FnMut(&str, DownloadProgress) -> bool,
    {
        let mut retry = 0;
        loop {
            match self.transfer_once(transfer, reporter, progress) {
                Err(err) if err.is_transient() && retry < self.retry.retries => {
                    retry += 1;
                    let done = fs::metadata(transfer.incomplete).map_or(0, |m| m.len());
                    let wait_until = Instant::now() + self.retry.delay(retry);
                    while Instant::now() < wait_until {
                        if !reporter.emit(done, transfer.size, true, progress) {
                            return Err(DownloadError::Cancelled);
                        }
                        std::thread::sleep(WAIT_SLICE.min(wait_until - Instant::now()));
                    }
                }
                other => return other,
            }
        }
    }

    fn transfer_once<P>(
        &self,
        transfer: &Transfer<'_>,
        reporter: &mut Reporter,
        progress: &mut P,
    ) -> Result<(), DownloadError>
    where
        P: FnMut(&str, DownloadProgress) -> bool,
    {
        let incomplete = transfer.incomplete;
        let mut file_out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(incomplete)
            .map_err(io_error(incomplete))?;
        let mut done = file_out.metadata().map_err(io_error(incomplete))?.len();
        if transfer.size.is_some_and(|size| done > size) {
            truncate(&file_out, incomplete)?;
            done = 0;
        }
        // Fed from the start of the file once a transfer begins; `None` when nothing arrived.
        let mut hasher: Option<Sha256> = None;
        let mut restarted = false;
        'attempt: loop {
            if transfer.size == Some(done) && done > 0 {
                break 'attempt;
            }
            let range_from = (done > 0).then_some(done);
            let (url, response) = self.get_following_redirects(&transfer.url, range_from)?;
            match response.status().as_u16() {
                206 if range_from.is_some() => {
                    let start = header(&response, "content-range")
                        .as_deref()
                        .and_then(content_range_start);
                    if start != Some(done) {
                        truncate(&file_out, incomplete)?;
                        return Err(DownloadError::Protocol {
                            url,
                            message: format!(
                                "asked for bytes from {done}, got Content-Range starting at {start:?}; the partial file was removed, start the download again"
                            ),
                        });
                    }
                }
                200 => {
                    if done > 0 {
                        // The server ignored the Range header: start over.
                        truncate(&file_out, incomplete)?;
                        done = 0;
                    }
                }
                416 if !restarted => {
                    // The partial file does not fit the file on the server; start over.
                    truncate(&file_out, incomplete)?;
                    done = 0;
                    restarted = true;
                    continue 'attempt;
                }
                status => return Err((transfer.status_error)(status, &url)),
            }
            if transfer.sha256.is_some() {
                hasher = Some(hash_prefix(incomplete, done)?);
            }
            let mut reader = response.into_body().into_reader();
            let mut buffer = vec![0u8; READ_BUFFER];
            reporter.start(done);
            if !reporter.emit(done, transfer.size, true, progress) {
                return Err(DownloadError::Cancelled);
            }
            loop {
                let n = match reader.read(&mut buffer) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                    Err(err) => {
                        return Err(DownloadError::Interrupted {
                            file: transfer.label.to_string(),
                            bytes_done: done,
                            message: err.to_string(),
                        })
                    }
                };
                file_out
                    .write_all(&buffer[..n])
                    .map_err(io_error(incomplete))?;
                if let Some(hasher) = &mut hasher {
                    hasher.update(&buffer[..n]);
                }
                done += n as u64;
                if let Some(expected) = transfer.size.filter(|&size| done > size) {
                    drop(file_out);
                    let _ = fs::remove_file(incomplete);
                    return Err(DownloadError::SizeMismatch {
                        file: transfer.label.to_string(),
                        expected,
                        actual: done,
                    });
                }
                if !reporter.emit(done, transfer.size, false, progress) {
                    return Err(DownloadError::Cancelled);
                }
            }
            break 'attempt;
        }
        file_out.sync_all().map_err(io_error(incomplete))?;
        drop(file_out);
        let actual = fs::metadata(incomplete)
            .map_err(io_error(incomplete))?
            .len();
        if let Some(expected) = transfer.size {
            if actual < expected {
                return Err(DownloadError::Interrupted {
                    file: transfer.label.to_string(),
                    bytes_done: actual,
                    message: format!("the connection closed before the end ({expected} bytes)"),
                });
            }
        }
        if let Some(expected) = &transfer.sha256 {
            // A file that was complete before this call was not hashed while it arrived.
            let digest = match hasher {
                Some(hasher) => hasher,
                None => hash_prefix(incomplete, actual)?,
            };
            let digest = hex(&digest.finalize());
            if &digest != expected {
                let _ = fs::remove_file(incomplete);
                return Err(DownloadError::ChecksumMismatch {
                    file: transfer.label.to_string(),
                    expected: expected.clone(),
                    actual: digest,
                });
            }
        }
        fs::rename(incomplete, transfer.dest).map_err(io_error(transfer.dest))?;
        Ok(())
    }

    /// GETs `url`, following redirects; the final URL and its answer.
    pub(super) fn get_following_redirects(
        &self,
        url: &str,
        range_from: Option<u64>,
    ) -> Result<(String, ureq::http::Response<ureq::Body>), DownloadError> {
        let mut url = url.to_string();
        for _ in 0..MAX_REDIRECTS {
            let response = self.send(false, &url, range_from)?;
            let status = response.status().as_u16();
            if !(300..400).contains(&status) {
                return Ok((url, response));
            }
            let location =
                header(&response, "location").ok_or_else(|| DownloadError::Protocol {
                    url: url.clone(),
                    message: format!("HTTP {status} without a Location header"),
                })?;
            url = join_url(&url, &location);
        }
        Err(DownloadError::Protocol {
            url,
            message: "too many redirects".into(),
        })
    }
}

/// A hasher fed with the first `len` bytes of `path` (the part an earlier attempt wrote).
fn hash_prefix(path: &Path, len: u64) -> Result<Sha256, DownloadError> {
    let mut hasher = Sha256::new();
    if len == 0 {
        return Ok(hasher);
    }
    let file = File::open(path).map_err(io_error(path))?;
    let mut reader = file.take(len);
    let mut buffer = vec![0u8; READ_BUFFER];
    loop {
        let n = reader.read(&mut buffer).map_err(io_error(path))?;
        if n == 0 {
            return Ok(hasher);
        }
        hasher.update(&buffer[..n]);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn truncate(file: &File, path: &Path) -> Result<(), DownloadError> {
    file.set_len(0).map_err(io_error(path))
}

/// Rate-limited progress reports for one file.
pub(super) struct Reporter {
    file: String,
    file_index: usize,
    file_count: usize,
    last_emit: Option<Instant>,
    /// (time, bytes done) of the current transfer, over the last few seconds.
    samples: VecDeque<(Instant, u64)>,
}

impl Reporter {
    pub(super) fn new(file: &str, file_index: usize, file_count: usize) -> Self {
        Self {
            file: file.to_string(),
            file_index,
            file_count,
            last_emit: None,
            samples: VecDeque::new(),
        }
    }

    /// A transfer starts at `done` bytes (resumed bytes do not count towards the speed).
    fn start(&mut self, done: u64) {
        self.samples.clear();
        self.samples.push_back((Instant::now(), done));
    }

    fn speed(&mut self, now: Instant, done: u64) -> f64 {
        self.samples.push_back((now, done));
        while self.samples.len() > 2
            && self
                .samples
                .get(1)
                .is_some_and(|(t, _)| now.duration_since(*t) >= SPEED_WINDOW)
        {
            self.samples.pop_front();
        }
        match (self.samples.front(), self.samples.back()) {
            (Some(&(t0, b0)), Some(&(t1, b1))) if t1 > t0 => {
                b1.saturating_sub(b0) as f64 / t1.duration_since(t0).as_secs_f64()
            }
            _ => 0.0,
        }
    }

    /// Reports unless one was sent less than [`PROGRESS_INTERVAL`] ago (`force` always
    /// reports). Returns `false` when the callback asks to cancel.
    pub(super) fn emit<P>(
        &mut self,
        done: u64,
        total: Option<u64>,
        force: bool,
        progress: &mut P,
    ) -> bool
    where
        P: FnMut(&str, DownloadProgress) -> bool,
    {
        let now = Instant::now();
        if !force
            && self
                .last_emit
                .is_some_and(|t| now.duration_since(t) < PROGRESS_INTERVAL)
        {
            return true;
        }
        self.last_emit = Some(now);
        let bytes_per_second = self.speed(now, done);
        progress(
            &self.file,
            DownloadProgress {
                file_index: self.file_index,
                file_count: self.file_count,
                bytes_done: done,
                bytes_total: total,
                bytes_per_second,
            },
        )
    }

    /// The file is in place.
    pub(super) fn finish<P>(
        &mut self,
        done: u64,
        total: Option<u64>,
        progress: &mut P,
    ) -> Result<(), DownloadError>
    where
        P: FnMut(&str, DownloadProgress) -> bool,
    {
        if self.emit(done, total, true, progress) {
            Ok(())
        } else {
            Err(DownloadError::Cancelled)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speed_is_measured_over_the_transfer() {
        let mut reporter = Reporter::new("f", 0, 1);
        let t0 = Instant::now();
        reporter.samples.push_back((t0, 1000));
        let speed = reporter.speed(t0 + Duration::from_secs(2), 3000);
        assert!((speed - 1000.0).abs() < 1e-6, "{speed}");
    }

    #[test]
    fn a_prefix_is_hashed_like_the_whole_file_cut_there() {
        let path =
            std::env::temp_dir().join(format!("latent-studio-prefix-{}", std::process::id()));
        fs::write(&path, b"hello world").unwrap();
        let prefix = hex(&hash_prefix(&path, 5).unwrap().finalize());
        assert_eq!(prefix, hex(&Sha256::digest(b"hello")));
        let _ = fs::remove_file(&path);
    }
}
