//! What the worker is doing right now, as the window shows it: the model's state and the
//! progress of the running job.

use crate::engine::{DownloadProgress, LoadedModel, ModelSource};

pub enum ModelStatus {
    /// Nothing chosen yet.
    NoModel,
    Loading {
        source: ModelSource,
        /// The file being fetched, while a hub model downloads.
        download: Option<(String, DownloadProgress)>,
    },
    Ready(LoadedModel),
    Failed {
        source: ModelSource,
        message: String,
    },
}

impl ModelStatus {
    pub fn loaded(&self) -> Option<&LoadedModel> {
        match self {
            ModelStatus::Ready(model) => Some(model),
            _ => None,
        }
    }

    pub fn is_loading(&self) -> bool {
        matches!(self, ModelStatus::Loading { .. })
    }
}

/// The job between "Generate" and its `JobDone`.
#[derive(Debug, Clone)]
pub struct Run {
    pub job: u64,
    /// Images of the whole job (batch count × batch size).
    pub batch_count: usize,
    /// Images denoised together (batch size); they share their steps.
    pub batch_size: usize,
    /// 0-based image being made (the first of those denoised together).
    pub image_index: usize,
    pub seed: u64,
    pub step: usize,
    pub total_steps: usize,
    /// Seconds since the current image started, as of the last step.
    pub elapsed_secs: f64,
    /// When the current image started (as the window saw its start), for the seconds shown
    /// before its first step.
    pub image_started: std::time::Instant,
    /// The size being generated, which the live preview is stretched to.
    pub width: usize,
    pub height: usize,
    pub cancelling: bool,
    /// A file the job waits for (a hub ControlNet, upscaler, tiny VAE or depth model) while
    /// it downloads; the bar then shows the download.
    pub download: Option<AddOnDownload>,
}

/// A file the engine fetches for something besides the model: for the running job, or for
/// a ControlNet unit's depth map preview.
#[derive(Debug, Clone)]
pub struct AddOnDownload {
    /// What is downloading, as named (a repository id, `org/name/file.safetensors`).
    pub name: String,
    pub file: String,
    pub progress: DownloadProgress,
}

impl AddOnDownload {
    /// The last file is complete: nothing more to wait for.
    pub fn is_finished(&self) -> bool {
        let progress = &self.progress;
        progress.file_index + 1 >= progress.file_count
            && progress.bytes_total == Some(progress.bytes_done)
    }

    pub fn label(&self) -> String {
        download_label(&self.name, &self.file, &self.progress)
    }
}

/// "Downloading NAME: file 2/3 (unet/x.safetensors) · 1.2 GB / 3.4 GB · 25 MB/s · 1:30 left",
/// for a model and for the files a job needs alike.
pub fn download_label(name: &str, file: &str, progress: &DownloadProgress) -> String {
    let total = progress
        .bytes_total
        .map_or_else(|| "?".to_string(), format_bytes);
    let mut text = format!(
        "Downloading {name}: file {}/{} ({file}) · {} / {total} · {}/s",
        progress.file_index + 1,
        progress.file_count,
        format_bytes(progress.bytes_done),
        format_bytes(progress.bytes_per_second.max(0.0) as u64),
    );
    if let Some(eta) = progress.eta() {
        text.push_str(&format!(" · {} left", format_duration(eta.as_secs_f64())));
    }
    text
}

/// Done fraction of the file downloading (0 while its size is unknown).
pub fn download_fraction(progress: &DownloadProgress) -> f32 {
    progress
        .bytes_total
        .filter(|&t| t > 0)
        .map_or(0.0, |t| progress.bytes_done as f32 / t as f32)
}

impl Run {
    /// Job `job` just sent to the worker: one `width`×`height` image, nothing made yet.
    pub fn new(job: u64, width: usize, height: usize) -> Run {
        Run {
            job,
            batch_count: 1,
            batch_size: 1,
            image_index: 0,
            seed: 0,
            step: 0,
            total_steps: 0,
            elapsed_secs: 0.0,
            image_started: std::time::Instant::now(),
            width,
            height,
            cancelling: false,
            download: None,
        }
    }

    pub fn iterations_per_second(&self) -> Option<f64> {
        (self.step > 0 && self.elapsed_secs > 0.0).then(|| self.step as f64 / self.elapsed_secs)
    }

    /// Seconds left for the whole batch, at the current image's pace.
    pub fn eta_secs(&self) -> Option<f64> {
        let rate = self.iterations_per_second()?;
        let size = self.batch_size.max(1);
        let runs_after = self
            .batch_count
            .saturating_sub(self.image_index + size)
            .div_ceil(size);
        let steps_left = self.total_steps.saturating_sub(self.step) + runs_after * self.total_steps;
        Some(steps_left as f64 / rate)
    }

    /// Done fraction of the whole batch (of the file, while one downloads).
    pub fn fraction(&self) -> f32 {
        if let Some(download) = &self.download {
            return download_fraction(&download.progress);
        }
        let per_image = self.total_steps.max(1) as f32;
        let done = (self.image_index as f32
            + self.step as f32 / per_image * self.batch_size.max(1) as f32)
            * per_image;
        (done / (self.batch_count.max(1) as f32 * per_image)).clamp(0.0, 1.0)
    }

    /// "image 2/4 · step 7/20 · 1.9 it/s · ETA 0:07"
    pub fn label(&self) -> String {
        let mut parts = Vec::new();
        if self.cancelling {
            parts.push("cancelling…".to_string());
        }
        if let Some(download) = &self.download {
            parts.push(download.label());
            return parts.join(" · ");
        }
        let last = (self.image_index + self.batch_size.max(1)).min(self.batch_count);
        if last > self.image_index + 1 {
            parts.push(format!(
                "images {}–{last}/{}",
                self.image_index + 1,
                self.batch_count
            ));
        } else if self.batch_count > 1 {
            parts.push(format!(
                "image {}/{}",
                self.image_index + 1,
                self.batch_count
            ));
        }
        if self.total_steps == 0 {
            parts.push("preparing…".to_string());
        } else {
            parts.push(format!("step {}/{}", self.step, self.total_steps));
        }
        if self.step == 0 {
            let waited = self.image_started.elapsed().as_secs();
            if waited > 0 {
                parts.push(format!("{waited} s"));
            }
        }
        if let Some(rate) = self.iterations_per_second() {
            // Slow machines do seconds per step; show that instead of "0.1 it/s".
            if rate >= 1.0 {
                parts.push(format!("{rate:.1} it/s"));
            } else {
                parts.push(format!("{:.1} s/it", 1.0 / rate));
            }
        }
        if let Some(eta) = self.eta_secs() {
            parts.push(format!("ETA {}", format_duration(eta)));
        }
        parts.join(" · ")
    }
}

/// `0:07`, `12:30`, `1:02:03`.
pub fn format_duration(secs: f64) -> String {
    let total = if secs.is_finite() {
        secs.max(0.0).round() as u64
    } else {
        0
    };
    let (hours, minutes, seconds) = (total / 3600, total / 60 % 60, total % 60);
    if hours > 0 {
        format!("{hours}:{minutes:02}:{seconds:02}")
    } else {
        format!("{minutes}:{seconds:02}")
    }
}

/// `1.7 GB`, `340 MB`, `12 kB`.
pub fn format_bytes(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1e9 {
        format!("{:.1} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.0} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.0} kB", b / 1e3)
    } else {
        format!("{bytes} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run() -> Run {
        Run {
            seed: 1,
            step: 7,
            total_steps: 20,
            elapsed_secs: 3.5,
            ..Run::new(1, 512, 512)
        }
    }

    #[test]
    fn progress_label_reads_like_the_issue_asks() {
        assert_eq!(run().label(), "step 7/20 · 2.0 it/s · ETA 0:07");
        let batch = Run {
            batch_count: 3,
            image_index: 1,
            ..run()
        };
        assert_eq!(batch.label(), "image 2/3 · step 7/20 · 2.0 it/s · ETA 0:17");
        assert!((batch.fraction() - 27.0 / 60.0).abs() < 1e-6);
        let slow = Run {
            step: 1,
            elapsed_secs: 4.0,
            ..run()
        };
        assert_eq!(slow.label(), "step 1/20 · 4.0 s/it · ETA 1:16");
        // Two runs of two images: the second run's images share its steps.
        let batched = Run {
            batch_count: 4,
            batch_size: 2,
            image_index: 2,
            ..run()
        };
        assert_eq!(
            batched.label(),
            "images 3–4/4 · step 7/20 · 2.0 it/s · ETA 0:07"
        );
        assert!((batched.fraction() - (2.0 + 7.0 / 20.0 * 2.0) / 4.0).abs() < 1e-6);
    }

    #[test]
    fn a_download_the_job_waits_for_takes_the_bar() {
        let progress = DownloadProgress {
            file_index: 1,
            file_count: 2,
            bytes_done: 250_000_000,
            bytes_total: Some(1_000_000_000),
            bytes_per_second: 25_000_000.0,
        };
        let download = AddOnDownload {
            name: "lllyasviel/control_v11p_sd15_canny".into(),
            file: "diffusion_pytorch_model.fp16.safetensors".into(),
            progress,
        };
        let waiting = Run {
            step: 0,
            total_steps: 0,
            download: Some(download.clone()),
            cancelling: true,
            ..run()
        };
        assert_eq!(
            waiting.label(),
            "cancelling… · Downloading lllyasviel/control_v11p_sd15_canny: file 2/2 (diffusion_pytorch_model.fp16.safetensors) · 250 MB / 1.0 GB · 25 MB/s · 0:30 left"
        );
        assert!((waiting.fraction() - 0.25).abs() < 1e-6);
        assert!(!download.is_finished());
        let done = AddOnDownload {
            progress: DownloadProgress {
                bytes_done: 1_000_000_000,
                ..progress
            },
            ..download
        };
        assert!(done.is_finished());
    }

    #[test]
    fn durations_and_sizes_format() {
        assert_eq!(format_duration(7.4), "0:07");
        assert_eq!(format_duration(3723.0), "1:02:03");
        assert_eq!(format_duration(f64::NAN), "0:00");
        assert_eq!(format_bytes(2_580_000_000), "2.6 GB");
        assert_eq!(format_bytes(340_000_000), "340 MB");
    }
}
