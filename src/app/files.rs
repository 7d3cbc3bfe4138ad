//! Disk work the window must not wait for: listing the output folder, decoding thumbnails and
//! full images, reading `parameters` chunks, exporting PNGs, listing the LoRA folder. One small thread does it; the UI
//! sends [`FileRequest`]s and picks up [`FileResult`]s each frame.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use crossbeam_channel::{unbounded, Receiver, Sender, TryRecvError};

use crate::engine::{read_picture, read_png_parameters, write_png_with_parameters};
use crate::engine::{ModelLibrary, PromptStyle, RgbImage, StoredModel, StyleOutcome, StyleTask};

/// Longest side of a history thumbnail, in pixels (enough for a 2× display).
pub const THUMBNAIL_SIDE: u32 = 160;

/// The newest PNGs of the output folder that are listed at start; older ones stay on disk.
/// (Each thumbnail holds about 100 kB of texture memory.)
pub const MAX_LISTED: usize = 500;

pub enum FileRequest {
    /// List the PNGs of `folder`, newest first, each with its thumbnail and parameters.
    /// `generation` tags the answers so that a scan of a folder no longer shown is ignored.
    ScanFolder { folder: PathBuf, generation: u64 },
    /// Decode an image in full (and read its parameters when it is a PNG).
    Open { path: PathBuf, purpose: OpenPurpose },
    /// Write a PNG with a `parameters` chunk.
    Export {
        path: PathBuf,
        image: Arc<RgbImage>,
        parameters: String,
    },
    /// List the `.safetensors` files of the LoRA folder.
    ListLoras { folder: PathBuf },
    /// The model manager: delete `delete` (the model, and the one in use, which is refused)
    /// when given, then list what is downloaded.
    ManageModels {
        library: ModelLibrary,
        opened: Vec<PathBuf>,
        delete: Option<(StoredModel, Option<PathBuf>)>,
    },
    /// Do `task` to the styles file at `path`, then read it.
    Styles { path: PathBuf, task: StyleTask },
}

/// Why an image is being opened, which decides what happens with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenPurpose {
    /// Show history entry `entry` in full.
    View { entry: u64 },
    /// Use as the img2img start image.
    InitImage,
    /// Dropped on the window: restore its settings when it has any, else use it as init image.
    Dropped,
    /// The picture ControlNet unit N reads.
    ControlImage(usize),
    /// Dropped on ControlNet unit N: its picture (settings in a PNG are not restored), with a
    /// note saying where it went.
    DroppedOnControlUnit(usize),
}

pub struct ScannedImage {
    pub path: PathBuf,
    pub modified: SystemTime,
    pub thumbnail: RgbImage,
    pub width: usize,
    pub height: usize,
    pub parameters: Option<String>,
}

pub struct OpenedImage {
    pub image: RgbImage,
    pub parameters: Option<String>,
}

pub enum FileResult {
    Scanned {
        generation: u64,
        image: ScannedImage,
    },
    ScanFailed {
        generation: u64,
        folder: PathBuf,
        message: String,
    },
    Opened {
        path: PathBuf,
        purpose: OpenPurpose,
        outcome: Result<OpenedImage, String>,
    },
    Exported {
        path: PathBuf,
        outcome: Result<(), String>,
    },
    LorasListed {
        folder: PathBuf,
        outcome: Result<Vec<String>, String>,
    },
    ModelsListed {
        listing: Vec<StoredModel>,
        /// The delete's outcome, when one was asked for.
        deleted: Option<Result<(), String>>,
    },
    StylesRead {
        path: PathBuf,
        task: StyleTask,
        reading: Result<Vec<PromptStyle>, String>,
        outcome: Option<StyleOutcome>,
    },
}

/// The UI's handle on the file thread. Dropping it ends the thread after its current file.
pub struct FileService {
    requests: Sender<FileRequest>,
    results: Receiver<FileResult>,
}

impl FileService {
    /// `notify` runs after each result (the UI passes `request_repaint`).
    pub fn spawn(notify: impl Fn() + Send + 'static) -> FileService {
        let (requests, request_rx) = unbounded();
        let (result_tx, results) = unbounded();
        let spawned = std::thread::Builder::new()
            .name("latent-studio-files".into())
            .spawn(move || serve(&request_rx, &result_tx, &notify));
        if let Err(err) = spawned {
            // Without the thread nothing is listed or exported, but the window still works.
            eprintln!("latent-studio: cannot start the file thread: {err}");
        }
        FileService { requests, results }
    }

    pub fn send(&self, request: FileRequest) {
        // Fails only when the thread is gone, and then there is nobody left to do the work.
        let _ = self.requests.send(request);
    }

    pub fn try_recv(&self) -> Option<FileResult> {
        self.results.try_recv().ok()
    }
}

/// A scan in progress: the files still to read.
struct PendingScan {
    generation: u64,
    files: VecDeque<(PathBuf, SystemTime)>,
}

fn serve(requests: &Receiver<FileRequest>, results: &Sender<FileResult>, notify: &dyn Fn()) {
    let mut scan: Option<PendingScan> = None;
    loop {
        // Requests go first so that a click is answered even while a long scan runs; the
        // scan advances one file between them.
        let request = if scan.is_some() {
            match requests.try_recv() {
                Ok(request) => Some(request),
                Err(TryRecvError::Empty) => None,
                Err(TryRecvError::Disconnected) => return,
            }
        } else {
            match requests.recv() {
                Ok(request) => Some(request),
                Err(_) => return,
            }
        };
        let result = match request {
            Some(FileRequest::ScanFolder { folder, generation }) => match list_pngs(&folder) {
                Ok(files) => {
                    scan = Some(PendingScan {
                        generation,
                        files: files.into(),
                    });
                    None
                }
                Err(message) => {
                    scan = None;
                    Some(FileResult::ScanFailed {
                        generation,
                        folder,
                        message,
                    })
                }
            },
            Some(FileRequest::Open { path, purpose }) => {
                let outcome = open_image(&path);
                Some(FileResult::Opened {
                    path,
                    purpose,
                    outcome,
                })
            }
            Some(FileRequest::Export {
                path,
                image,
                parameters,
            }) => {
                let outcome = write_png_with_parameters(
                    &path,
                    &image.pixels,
                    image.width as u32,
                    image.height as u32,
                    &parameters,
                )
                .map_err(|err| err.to_string());
                Some(FileResult::Exported { path, outcome })
            }
            Some(FileRequest::ListLoras { folder }) => {
                let outcome = super::loras::list_lora_files(&folder);
                Some(FileResult::LorasListed { folder, outcome })
            }
            Some(FileRequest::ManageModels {
                library,
                opened,
                delete,
            }) => {
                // Deleting a downloaded model can take seconds (gigabytes of blobs).
                let deleted = delete.map(|(model, in_use)| {
                    library
                        .delete(&model, in_use.as_deref())
                        .map_err(|err| err.to_string())
                });
                Some(FileResult::ModelsListed {
                    listing: library.list(&opened),
                    deleted,
                })
            }
            Some(FileRequest::Styles { path, task }) => {
                let (reading, outcome) = task.run(&path);
                Some(FileResult::StylesRead {
                    path,
                    task,
                    reading,
                    outcome,
                })
            }
            None => next_scanned(&mut scan),
        };
        if let Some(result) = result {
            if results.send(result).is_err() {
                return;
            }
            notify();
        }
    }
}

/// Reads the next file of the pending scan; unreadable files are skipped (a half-copied or
/// foreign file in the folder is no reason to stop listing the rest).
fn next_scanned(scan: &mut Option<PendingScan>) -> Option<FileResult> {
    let pending = scan.as_mut()?;
    let generation = pending.generation;
    let Some((path, modified)) = pending.files.pop_front() else {
        *scan = None;
        return None;
    };
    let image = decode(&path).ok()?;
    let parameters = read_png_parameters(&path).ok().flatten();
    Some(FileResult::Scanned {
        generation,
        image: ScannedImage {
            thumbnail: thumbnail(&image, THUMBNAIL_SIDE),
            width: image.width,
            height: image.height,
            path,
            modified,
            parameters,
        },
    })
}

/// The `.png` files of `folder`, newest first. A folder that does not exist yet is empty:
/// the worker creates it with the first image.
fn list_pngs(folder: &Path) -> Result<Vec<(PathBuf, SystemTime)>, String> {
    let entries = match std::fs::read_dir(folder) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(format!("cannot list {}: {err}", folder.display())),
    };
    let mut files: Vec<(PathBuf, SystemTime)> = entries
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_file()))
        .map(|entry| entry.path())
        .filter(|path| is_png(path))
        .map(|path| {
            let modified = std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            (path, modified)
        })
        .collect();
    // Newest first; equal times fall back to the name, which the worker numbers in order.
    files.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
    files.truncate(MAX_LISTED);
    Ok(files)
}

pub fn is_png(path: &Path) -> bool {
    path.extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("png"))
}

fn open_image(path: &Path) -> Result<OpenedImage, String> {
    let image = decode(path)?;
    let parameters = if is_png(path) {
        read_png_parameters(path).ok().flatten()
    } else {
        None
    };
    Ok(OpenedImage { image, parameters })
}

/// Any image the `image` crate reads (by content, not by extension), as 8-bit RGB.
fn decode(path: &Path) -> Result<RgbImage, String> {
    read_picture(path).map(RgbImage::from)
}

/// A copy no larger than `max_side` on either side, aspect kept.
pub fn thumbnail(image: &RgbImage, max_side: u32) -> RgbImage {
    let (width, height) = (image.width as u32, image.height as u32);
    if width <= max_side && height <= max_side {
        return image.clone();
    }
    let Some(buffer) = image::RgbImage::from_raw(width, height, image.pixels.clone()) else {
        return image.clone();
    };
    let scale = f64::from(max_side) / f64::from(width.max(height));
    let new_width = ((f64::from(width) * scale).round() as u32).max(1);
    let new_height = ((f64::from(height) * scale).round() as u32).max(1);
    let small = image::imageops::thumbnail(&buffer, new_width, new_height);
    RgbImage {
        width: small.width() as usize,
        height: small.height() as usize,
        pixels: small.into_raw(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbnails_keep_the_aspect_and_never_grow() {
        let wide = RgbImage {
            width: 400,
            height: 100,
            pixels: vec![7; 400 * 100 * 3],
        };
        let small = thumbnail(&wide, 100);
        assert_eq!((small.width, small.height), (100, 25));
        assert_eq!(small.pixels.len(), 100 * 25 * 3);
        let tiny = RgbImage {
            width: 4,
            height: 4,
            pixels: vec![1; 48],
        };
        assert_eq!(thumbnail(&tiny, 100), tiny);
    }
}
