//! The queue on disk, so that it survives a restart: `queue.json` (the settings of every
//! waiting job) and one PNG per picture a job reads (start image, mask, ControlNet pictures),
//! in the app's data folder. A thread of its own writes it, atomically (a temporary file
//! renamed over the old one), so the window never waits on the disk; it is read once, at
//! start, and every value read is bounded as the settings panels bound it.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{unbounded, Sender};
use serde::{Deserialize, Serialize};

use crate::engine::{
    read_picture, write_png_with_parameters, ControlMode, ControlPreprocessor, ControlSpec,
    GenerateJob, GenerationRequest, GrayImage, HiresFix, HiresOverrides, HiresUpscaler,
    ImageOutput, InitImage, InpaintArea, InpaintMask, MaskedContent, ModelSource, PreviewMode,
    PromptSyntax, RgbImage, SchedulerKind, Variation, MAX_BATCH_SIZE,
};

use super::queue::{QueueEntry, QueuedJob, MAX_QUEUED};
use super::state::{snap_to_grid, MAX_BATCH, MAX_CLIP_SKIP, MAX_GUIDANCE, MAX_STEPS};

const QUEUE_FILE: &str = "queue.json";
/// A queue file larger than this is not ours (500 jobs of settings are well under 1 MB).
const MAX_QUEUE_FILE_BYTES: u64 = 16 << 20;
const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
struct SavedQueue {
    version: u32,
    forever: bool,
    entries: Vec<SavedEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SavedEntry {
    id: u64,
    forever: bool,
    model: Option<ModelSource>,
    prompt: String,
    negative_prompt: Option<String>,
    steps: usize,
    guidance: f64,
    seed: u64,
    width: usize,
    height: usize,
    /// By CLI name, as the settings store it.
    scheduler: String,
    prompt_syntax: PromptSyntax,
    clip_skip: usize,
    variation: Option<(u64, f64)>,
    init_image: Option<SavedInit>,
    batch_count: usize,
    #[serde(default = "one")]
    batch_size: usize,
    /// `None`: kept in memory only.
    output_folder: Option<PathBuf>,
    preview: PreviewMode,
    loras: Vec<(PathBuf, f64)>,
    controls: Vec<SavedControl>,
    hires: Option<SavedHires>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SavedInit {
    strength: f64,
    mask: Option<SavedMask>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SavedMask {
    blur: usize,
    /// `Some(padding)`: A1111's "Only masked".
    only_masked_padding: Option<usize>,
    content: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct SavedControl {
    model: PathBuf,
    preprocessor: ControlPreprocessor,
    scale: f64,
    start: f64,
    end: f64,
    mode: ControlMode,
}

#[derive(Debug, Serialize, Deserialize)]
struct SavedHires {
    scale: f64,
    steps: Option<usize>,
    denoise: f64,
    /// `None`: Lanczos (or the latent mode).
    upscaler: Option<PathBuf>,
    /// A latent upscaler by A1111's name; absent in queues saved before it existed.
    #[serde(default)]
    latent: Option<String>,
    /// The second pass's own prompt, negative prompt and sampler (by its CLI name).
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    negative_prompt: Option<String>,
    #[serde(default)]
    sampler: Option<String>,
}

/// The pictures of entry `id`, by role.
fn picture_path(folder: &Path, id: u64, role: &str) -> PathBuf {
    folder.join(format!("entry-{id}-{role}.png"))
}

fn entry_id_of_file(name: &str) -> Option<u64> {
    name.strip_prefix("entry-")?.split('-').next()?.parse().ok()
}

/// What was read back: the entries, whether "Generate forever" was on, and a sentence for
/// each thing that could not be restored.
#[derive(Default)]
pub struct Restored {
    pub entries: Vec<QueueEntry>,
    pub forever: bool,
    pub problems: Vec<String>,
}

/// Reads the queue saved in `folder`. A file that cannot be read is renamed aside (never
/// overwritten) and reported; an entry whose pictures are gone is left out and reported.
pub fn load(folder: &Path) -> Restored {
    let path = folder.join(QUEUE_FILE);
    let text = match read_bounded(&path) {
        Ok(Some(text)) => text,
        Ok(None) => return Restored::default(),
        Err(problem) => return set_aside(&path, problem),
    };
    let saved: SavedQueue = match serde_json::from_str(&text) {
        Ok(saved) => saved,
        Err(err) => return set_aside(&path, format!("{}: {err}", path.display())),
    };
    let mut restored = Restored {
        forever: saved.forever,
        ..Restored::default()
    };
    let mut seen = HashSet::new();
    for entry in saved.entries.into_iter().take(MAX_QUEUED) {
        if !seen.insert(entry.id) {
            continue;
        }
        let (id, forever) = (entry.id, entry.forever);
        match entry.into_job(folder) {
            Ok(job) => restored.entries.push(QueueEntry {
                id,
                job: Arc::new(job),
                forever,
            }),
            Err(problem) => restored.problems.push(problem),
        }
    }
    restored
}

fn read_bounded(path: &Path) -> Result<Option<String>, String> {
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(format!("{}: {err}", path.display())),
    };
    if metadata.len() > MAX_QUEUE_FILE_BYTES {
        return Err(format!(
            "{} is {} bytes, more than a queue file can be",
            path.display(),
            metadata.len()
        ));
    }
    std::fs::read_to_string(path)
        .map(Some)
        .map_err(|err| format!("{}: {err}", path.display()))
}

/// Renames an unreadable queue file to `queue.json.unreadable` so that the next save does
/// not destroy it.
fn set_aside(path: &Path, problem: String) -> Restored {
    let aside = path.with_extension("json.unreadable");
    let kept = match std::fs::rename(path, &aside) {
        Ok(()) => format!("; it was kept as {}", aside.display()),
        Err(_) => String::new(),
    };
    Restored {
        problems: vec![format!(
            "the saved queue could not be read: {problem}{kept}"
        )],
        ..Restored::default()
    }
}

impl SavedEntry {
    fn from_job(id: u64, forever: bool, queued: &QueuedJob) -> SavedEntry {
        let job = &queued.job;
        let request = &job.request;
        SavedEntry {
            id,
            forever,
            model: queued.model.clone(),
            prompt: request.prompt.clone(),
            negative_prompt: request.negative_prompt.clone(),
            steps: request.steps,
            guidance: request.guidance,
            seed: request.seed,
            width: request.width,
            height: request.height,
            scheduler: request.scheduler.name().to_string(),
            prompt_syntax: request.prompt_syntax,
            clip_skip: request.clip_skip,
            variation: request.variation.map(|v| (v.seed, v.strength)),
            init_image: request.init_image.as_ref().map(|init| SavedInit {
                strength: init.strength,
                mask: init.mask.as_ref().map(|mask| SavedMask {
                    blur: mask.blur,
                    only_masked_padding: match mask.area {
                        InpaintArea::Whole => None,
                        InpaintArea::Masked { padding } => Some(padding),
                    },
                    content: mask.content.name().to_string(),
                }),
            }),
            batch_count: job.batch_count,
            batch_size: job.batch_size,
            output_folder: match &job.output {
                ImageOutput::Folder(folder) => Some(folder.clone()),
                // The window only writes to folders.
                ImageOutput::None | ImageOutput::File(_) => None,
            },
            preview: job.preview,
            loras: job.loras.clone(),
            controls: job
                .controls
                .iter()
                .map(|spec| SavedControl {
                    model: spec.model.clone(),
                    preprocessor: spec.preprocessor,
                    scale: spec.scale,
                    start: spec.start,
                    end: spec.end,
                    mode: spec.mode,
                })
                .collect(),
            hires: job.hires.as_ref().map(|hires| SavedHires {
                scale: hires.scale,
                steps: hires.steps,
                denoise: hires.denoise,
                upscaler: match &hires.upscaler {
                    HiresUpscaler::Lanczos | HiresUpscaler::Latent(_) => None,
                    HiresUpscaler::Model(path) => Some(path.clone()),
                },
                latent: match &hires.upscaler {
                    HiresUpscaler::Latent(_) => Some(hires.upscaler.a1111_name()),
                    _ => None,
                },
                prompt: hires.own.prompt.clone(),
                negative_prompt: hires.own.negative_prompt.clone(),
                sampler: hires.own.scheduler.map(|s| s.name().to_string()),
            }),
        }
    }

    /// The job again, its numbers bounded as the panels bound them and its pictures read.
    fn into_job(self, folder: &Path) -> Result<QueuedJob, String> {
        let id = self.id;
        let picture = |role: &str| -> Result<RgbImage, String> {
            read_picture(&picture_path(folder, id, role))
                .map(RgbImage::from)
                .map_err(|err| format!("a queued job lost its picture ({err})"))
        };
        let init_image = match self.init_image {
            None => None,
            Some(init) => Some(InitImage {
                image: picture("init")?,
                strength: if init.strength > 0.0 && init.strength <= 1.0 {
                    init.strength
                } else {
                    0.6
                },
                mask: match init.mask {
                    None => None,
                    Some(mask) => {
                        let rgb = picture("mask")?;
                        Some(InpaintMask {
                            mask: GrayImage {
                                width: rgb.width,
                                height: rgb.height,
                                pixels: rgb.pixels.chunks_exact(3).map(|p| p[0]).collect(),
                            },
                            blur: mask.blur.min(super::state::MAX_MASK_BLUR),
                            area: match mask.only_masked_padding {
                                None => InpaintArea::Whole,
                                Some(padding) => InpaintArea::Masked {
                                    padding: padding.min(super::state::MAX_INPAINT_PADDING),
                                },
                            },
                            content: MaskedContent::parse(&mask.content).unwrap_or_default(),
                        })
                    }
                },
            }),
        };
        let mut controls = Vec::with_capacity(self.controls.len());
        for (n, control) in self.controls.into_iter().enumerate() {
            controls.push(ControlSpec {
                model: control.model,
                image: picture(&format!("control{n}"))?,
                preprocessor: control.preprocessor,
                scale: finite_or(control.scale, 1.0),
                start: finite_or(control.start, 0.0),
                end: finite_or(control.end, 1.0),
                mode: control.mode,
            });
        }
        let guidance = finite_or(self.guidance, 7.5).clamp(0.0, MAX_GUIDANCE);
        let request = GenerationRequest {
            prompt: self.prompt,
            negative_prompt: self.negative_prompt,
            steps: self.steps.clamp(1, MAX_STEPS),
            guidance,
            seed: self.seed,
            width: snap_to_grid(self.width),
            height: snap_to_grid(self.height),
            scheduler: self.scheduler.parse().unwrap_or(SchedulerKind::Default),
            init_image,
            prompt_syntax: self.prompt_syntax,
            clip_skip: self.clip_skip.clamp(1, MAX_CLIP_SKIP),
            controls: Vec::new(),
            variation: self.variation.map(|(seed, strength)| Variation {
                seed,
                strength: finite_or(strength, 0.0).clamp(0.0, 1.0),
            }),
        };
        Ok(QueuedJob {
            model: self.model,
            job: GenerateJob {
                id: 0,
                request,
                batch_count: self.batch_count.clamp(1, MAX_BATCH),
                batch_size: self.batch_size.clamp(1, MAX_BATCH_SIZE),
                output: match self.output_folder {
                    Some(folder) => ImageOutput::Folder(folder),
                    None => ImageOutput::None,
                },
                preview: match self.preview {
                    PreviewMode::Vae { every } => PreviewMode::Vae {
                        every: every.max(1),
                    },
                    other => other,
                },
                loras: self
                    .loras
                    .into_iter()
                    .map(|(path, multiplier)| (path, finite_or(multiplier, 1.0)))
                    .collect(),
                controls,
                hires: self.hires.map(|hires| HiresFix {
                    scale: finite_or(hires.scale, 2.0).clamp(1.0, 8.0),
                    steps: hires.steps.map(|s| s.clamp(1, MAX_STEPS)),
                    denoise: finite_or(hires.denoise, 0.5).clamp(0.0, 1.0),
                    upscaler: match (
                        hires.latent.as_deref().and_then(HiresUpscaler::built_in),
                        hires.upscaler,
                    ) {
                        (Some(latent @ HiresUpscaler::Latent(_)), _) => latent,
                        (_, None) => HiresUpscaler::Lanczos,
                        (_, Some(path)) => HiresUpscaler::Model(path),
                    },
                    own: HiresOverrides {
                        prompt: hires.prompt,
                        negative_prompt: hires.negative_prompt,
                        scheduler: hires.sampler.and_then(|name| name.parse().ok()),
                    },
                }),
            },
        })
    }
}

fn one() -> usize {
    1
}

fn finite_or(value: f64, fallback: f64) -> f64 {
    if value.is_finite() {
        value
    } else {
        fallback
    }
}

/// What the writer thread is asked to save: the waiting entries, in order.
struct Snapshot {
    forever: bool,
    entries: Vec<QueueEntry>,
}

/// The writer thread's handle. Dropping it writes what is pending and waits for the thread.
pub struct QueueStore {
    sender: Option<Sender<Snapshot>>,
    errors: crossbeam_channel::Receiver<String>,
    thread: Option<JoinHandle<()>>,
}

impl QueueStore {
    /// Starts the writer for `folder`; `restored` are the entries whose pictures are on disk
    /// already.
    pub fn spawn(folder: PathBuf, restored: &[QueueEntry]) -> QueueStore {
        let (sender, receiver) = unbounded::<Snapshot>();
        let (error_tx, errors) = unbounded();
        let mut written: HashSet<u64> = restored.iter().map(|e| e.id).collect();
        let thread = std::thread::Builder::new()
            .name("latent-studio-queue".into())
            .spawn(move || {
                while let Ok(mut snapshot) = receiver.recv() {
                    // Only the newest of the snapshots waiting matters.
                    while let Ok(newer) = receiver.try_recv() {
                        snapshot = newer;
                    }
                    if let Err(problem) = write(&folder, &snapshot, &mut written) {
                        let _ = error_tx.send(problem);
                    }
                }
            })
            .ok();
        QueueStore {
            sender: Some(sender),
            errors,
            thread,
        }
    }

    /// Saves the waiting entries (in the background).
    pub fn save(&self, forever: bool, entries: &[QueueEntry]) {
        if let Some(sender) = &self.sender {
            let _ = sender.send(Snapshot {
                forever,
                entries: entries.to_vec(),
            });
        }
    }

    /// A save that failed, if any since the last call.
    pub fn try_error(&self) -> Option<String> {
        self.errors.try_recv().ok()
    }
}

impl Drop for QueueStore {
    fn drop(&mut self) {
        self.sender = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Writes the pictures of entries new to this session, then the queue file (atomically),
/// then removes the pictures of entries no longer queued.
fn write(folder: &Path, snapshot: &Snapshot, written: &mut HashSet<u64>) -> Result<(), String> {
    std::fs::create_dir_all(folder)
        .map_err(|err| format!("cannot create {}: {err}", folder.display()))?;
    for entry in &snapshot.entries {
        if written.contains(&entry.id) {
            continue;
        }
        for (role, picture) in pictures(&entry.job.job) {
            let path = picture_path(folder, entry.id, &role);
            write_png_with_parameters(
                &path,
                &picture.pixels,
                picture.width as u32,
                picture.height as u32,
                "",
            )
            .map_err(|err| err.to_string())?;
        }
        written.insert(entry.id);
    }
    let saved = SavedQueue {
        version: FORMAT_VERSION,
        forever: snapshot.forever,
        entries: snapshot
            .entries
            .iter()
            .map(|e| SavedEntry::from_job(e.id, e.forever, &e.job))
            .collect(),
    };
    let text = serde_json::to_string_pretty(&saved).map_err(|err| err.to_string())?;
    let path = folder.join(QUEUE_FILE);
    let temporary = folder.join(format!("{QUEUE_FILE}.partial"));
    std::fs::write(&temporary, text)
        .and_then(|()| std::fs::rename(&temporary, &path))
        .map_err(|err| format!("cannot write {}: {err}", path.display()))?;

    let kept: HashSet<u64> = snapshot.entries.iter().map(|e| e.id).collect();
    written.retain(|id| kept.contains(id));
    if let Ok(files) = std::fs::read_dir(folder) {
        for file in files.filter_map(Result::ok) {
            let name = file.file_name().to_string_lossy().into_owned();
            if let Some(id) = entry_id_of_file(&name) {
                if !kept.contains(&id) && name.ends_with(".png") {
                    let _ = std::fs::remove_file(file.path());
                }
            }
        }
    }
    Ok(())
}

/// A job's pictures by role (`init`, `mask`, `control0` …), as RGB.
fn pictures(job: &GenerateJob) -> Vec<(String, RgbImage)> {
    let mut out = Vec::new();
    if let Some(init) = &job.request.init_image {
        out.push(("init".to_string(), init.image.clone()));
        if let Some(mask) = &init.mask {
            let gray = &mask.mask;
            out.push((
                "mask".to_string(),
                RgbImage {
                    width: gray.width,
                    height: gray.height,
                    pixels: gray.pixels.iter().flat_map(|&v| [v, v, v]).collect(),
                },
            ));
        }
    }
    for (n, spec) in job.controls.iter().enumerate() {
        out.push((format!("control{n}"), spec.image.clone()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::queue::tests::job;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "latent-studio-queue-store-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_saved_queue_reads_back_with_its_pictures_and_order() {
        let folder = scratch("round-trip");
        let mut with_picture = job("start from this", 5).as_ref().clone();
        with_picture.job.request.init_image = Some(InitImage {
            image: RgbImage {
                width: 2,
                height: 1,
                pixels: vec![1, 2, 3, 250, 251, 252],
            },
            strength: 0.4,
            mask: Some(InpaintMask {
                mask: GrayImage {
                    width: 2,
                    height: 1,
                    pixels: vec![0, 255],
                },
                blur: 4,
                area: InpaintArea::Masked { padding: 32 },
                content: MaskedContent::LatentNoise,
            }),
        });
        with_picture.job.output = ImageOutput::Folder("/out".into());
        with_picture.job.loras = vec![("/loras/a.safetensors".into(), 0.8)];
        with_picture.job.hires = Some(HiresFix {
            scale: 1.5,
            steps: Some(6),
            denoise: 0.55,
            upscaler: HiresUpscaler::Latent(crate::engine::LatentUpscale::BicubicAntialiased),
            own: HiresOverrides {
                prompt: Some("detailed, sharp".into()),
                negative_prompt: None,
                scheduler: Some(SchedulerKind::DpmPp2mKarras),
            },
        });
        let entries = vec![
            QueueEntry {
                id: 4,
                job: Arc::new(with_picture),
                forever: false,
            },
            QueueEntry {
                id: 9,
                job: job("plain", 6),
                forever: true,
            },
        ];
        let mut written = HashSet::new();
        write(
            &folder,
            &Snapshot {
                forever: true,
                entries: entries.clone(),
            },
            &mut written,
        )
        .unwrap();
        let back = load(&folder);
        assert!(back.problems.is_empty(), "{:?}", back.problems);
        assert!(back.forever);
        assert_eq!(back.entries.len(), 2);
        assert_eq!((back.entries[0].id, back.entries[1].id), (4, 9));
        assert!(back.entries[1].forever);
        let first = &back.entries[0].job.job;
        let original = &entries[0].job.job;
        let init = first.request.init_image.as_ref().unwrap();
        let original_init = original.request.init_image.as_ref().unwrap();
        assert_eq!(init.image, original_init.image);
        assert_eq!(init.strength, 0.4);
        let mask = init.mask.as_ref().unwrap();
        assert_eq!(mask.mask, original_init.mask.as_ref().unwrap().mask);
        assert_eq!(mask.area, InpaintArea::Masked { padding: 32 });
        assert_eq!(mask.content, MaskedContent::LatentNoise);
        assert_eq!(first.output, ImageOutput::Folder("/out".into()));
        assert_eq!(first.loras, original.loras);
        assert_eq!(first.hires, original.hires);
        assert_eq!(back.entries[0].job.summary(), entries[0].job.summary());

        // Removing an entry removes its pictures.
        write(
            &folder,
            &Snapshot {
                forever: false,
                entries: entries[1..].to_vec(),
            },
            &mut written,
        )
        .unwrap();
        assert!(!picture_path(&folder, 4, "init").exists());
        assert_eq!(load(&folder).entries.len(), 1);
        let _ = std::fs::remove_dir_all(&folder);
    }

    #[test]
    fn a_damaged_queue_file_is_kept_aside_and_odd_values_are_bounded() {
        let folder = scratch("damaged");
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join(QUEUE_FILE), "{ not json").unwrap();
        let back = load(&folder);
        assert!(back.entries.is_empty());
        assert_eq!(back.problems.len(), 1);
        assert!(folder.join("queue.json.unreadable").exists());

        let mut written = HashSet::new();
        write(
            &folder,
            &Snapshot {
                forever: false,
                entries: vec![QueueEntry {
                    id: 1,
                    job: job("x", 1),
                    forever: false,
                }],
            },
            &mut written,
        )
        .unwrap();
        let text = std::fs::read_to_string(folder.join(QUEUE_FILE)).unwrap();
        let odd = text
            .replace("\"steps\": 20", "\"steps\": 100000")
            .replace("\"width\": 512", "\"width\": 18446744073709551615")
            .replace("\"batch_count\": 3", "\"batch_count\": 1000000");
        std::fs::write(folder.join(QUEUE_FILE), odd).unwrap();
        let back = load(&folder);
        let request = &back.entries[0].job.job.request;
        assert_eq!(request.steps, MAX_STEPS);
        assert_eq!(request.width, super::super::state::MAX_SIDE);
        assert_eq!(back.entries[0].job.job.batch_count, MAX_BATCH);
        let _ = std::fs::remove_dir_all(&folder);
    }
}
