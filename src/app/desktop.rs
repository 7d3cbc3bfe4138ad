//! The app's only contact with the desktop outside its window: native file dialogs and the
//! file manager. Behind a trait so tests script the answers and never open a real dialog.

use std::path::{Path, PathBuf};

/// Image extensions the init-image picker offers (what the `image` crate decodes here).
pub const IMAGE_EXTENSIONS: [&str; 4] = ["png", "jpg", "jpeg", "webp"];

pub trait Desktop {
    /// A diffusers model folder (with `model_index.json`), or `None` when the user cancels.
    fn pick_model_folder(&mut self) -> Option<PathBuf>;
    /// A single-file checkpoint (`.safetensors`; `.ckpt` can be picked too, so the loader
    /// can say why it is refused).
    fn pick_model_file(&mut self) -> Option<PathBuf>;
    /// A VAE file to use instead of the model's own.
    fn pick_vae_file(&mut self) -> Option<PathBuf>;
    /// The folder LoRA files are kept in, starting in `current`.
    fn pick_lora_folder(&mut self, current: &Path) -> Option<PathBuf>;
    /// The folder textual-inversion embeddings are kept in, starting in `current`.
    fn pick_embeddings_folder(&mut self, current: &Path) -> Option<PathBuf>;
    /// An image to start img2img from.
    fn pick_init_image(&mut self) -> Option<PathBuf>;
    /// A folder for finished images, starting in `current`.
    fn pick_output_folder(&mut self, current: &Path) -> Option<PathBuf>;
    /// A diffusers ControlNet folder (`config.json` + weights).
    fn pick_controlnet_folder(&mut self) -> Option<PathBuf> {
        None
    }
    /// A ControlNet `.safetensors` file.
    fn pick_controlnet_file(&mut self) -> Option<PathBuf> {
        None
    }
    /// An upscaler `.safetensors` file (ESRGAN family).
    fn pick_upscaler_file(&mut self) -> Option<PathBuf> {
        None
    }
    /// The picture a ControlNet unit reads.
    fn pick_control_image(&mut self) -> Option<PathBuf> {
        self.pick_init_image()
    }
    /// A1111's `styles.csv` (or a file to start one in).
    fn pick_styles_file(&mut self) -> Option<PathBuf> {
        None
    }
    /// Where to export a PNG: `folder`/`file_name` is the suggestion.
    fn save_png_as(&mut self, folder: &Path, file_name: &str) -> Option<PathBuf>;
    /// Opens the system file manager at `path` (selecting it where the platform can).
    fn show_in_folder(&mut self, path: &Path) -> Result<(), String>;
}

/// Native dialogs through `rfd` (XDG portal on Linux, the system panels on macOS and Windows).
#[derive(Debug, Default)]
pub struct NativeDesktop;

impl Desktop for NativeDesktop {
    fn pick_model_folder(&mut self) -> Option<PathBuf> {
        rfd::FileDialog::new()
            .set_title("Open a diffusers model folder")
            .pick_folder()
    }

    fn pick_model_file(&mut self) -> Option<PathBuf> {
        rfd::FileDialog::new()
            .set_title("Open a checkpoint file")
            .add_filter("Checkpoints", &["safetensors", "ckpt", "pt"])
            .add_filter("Safetensors", &["safetensors"])
            .pick_file()
    }

    fn pick_vae_file(&mut self) -> Option<PathBuf> {
        rfd::FileDialog::new()
            .set_title("Use a VAE file")
            .add_filter("VAE", &["safetensors", "ckpt", "pt"])
            .pick_file()
    }

    fn pick_upscaler_file(&mut self) -> Option<PathBuf> {
        rfd::FileDialog::new()
            .set_title("Use an upscaler file")
            .add_filter("Upscaler", &["safetensors"])
            .pick_file()
    }

    fn pick_lora_folder(&mut self, current: &Path) -> Option<PathBuf> {
        folder_dialog("LoRA folder", current)
    }

    fn pick_embeddings_folder(&mut self, current: &Path) -> Option<PathBuf> {
        folder_dialog("Embeddings folder", current)
    }

    fn pick_init_image(&mut self) -> Option<PathBuf> {
        rfd::FileDialog::new()
            .set_title("Start from an image")
            .add_filter("Images", &IMAGE_EXTENSIONS)
            .pick_file()
    }

    fn pick_output_folder(&mut self, current: &Path) -> Option<PathBuf> {
        folder_dialog("Save finished images in", current)
    }

    fn pick_styles_file(&mut self) -> Option<PathBuf> {
        rfd::FileDialog::new()
            .set_title("Use a styles.csv (AUTOMATIC1111's, for one)")
            .add_filter("Styles", &["csv"])
            .pick_file()
    }

    fn pick_controlnet_folder(&mut self) -> Option<PathBuf> {
        rfd::FileDialog::new()
            .set_title("Open a diffusers ControlNet folder")
            .pick_folder()
    }

    fn pick_controlnet_file(&mut self) -> Option<PathBuf> {
        rfd::FileDialog::new()
            .set_title("Open a ControlNet file")
            .add_filter("ControlNet", &["safetensors", "pth", "ckpt"])
            .pick_file()
    }

    fn pick_control_image(&mut self) -> Option<PathBuf> {
        rfd::FileDialog::new()
            .set_title("The picture the ControlNet reads")
            .add_filter("Images", &IMAGE_EXTENSIONS)
            .pick_file()
    }

    fn save_png_as(&mut self, folder: &Path, file_name: &str) -> Option<PathBuf> {
        let mut dialog = rfd::FileDialog::new()
            .set_title("Save image as")
            .add_filter("PNG image", &["png"])
            .set_file_name(file_name);
        if folder.is_dir() {
            dialog = dialog.set_directory(folder);
        }
        dialog.save_file().map(|path| {
            // Some dialogs drop the extension when the user types a bare name.
            if path
                .extension()
                .is_some_and(|ext| ext.eq_ignore_ascii_case("png"))
            {
                path
            } else {
                path.with_extension("png")
            }
        })
    }

    fn show_in_folder(&mut self, path: &Path) -> Result<(), String> {
        reveal_in_file_manager(path)
    }
}

/// A folder dialog that starts in `current` when it exists.
fn folder_dialog(title: &str, current: &Path) -> Option<PathBuf> {
    let mut dialog = rfd::FileDialog::new().set_title(title);
    if current.is_dir() {
        dialog = dialog.set_directory(current);
    }
    dialog.pick_folder()
}

/// Starts the platform's file manager without waiting for it.
fn reveal_in_file_manager(path: &Path) -> Result<(), String> {
    use std::process::Command;
    #[cfg(windows)]
    let spawned = {
        // Explorer reads `/select,"C:\a b\c.png"` but not the whole argument in quotes, which
        // is how `arg` would quote a path with spaces.
        use std::os::windows::process::CommandExt;
        let mut select = std::ffi::OsString::from("/select,\"");
        select.push(path);
        select.push("\"");
        Command::new("explorer").raw_arg(select).spawn()
    };
    #[cfg(not(windows))]
    let spawned = if cfg!(target_os = "macos") {
        Command::new("open").arg("-R").arg(path).spawn()
    } else {
        // The freedesktop "select this file" call needs D-Bus plumbing; opening the folder
        // works with every file manager.
        let folder = if path.is_dir() {
            path
        } else {
            path.parent().unwrap_or(path)
        };
        Command::new("xdg-open").arg(folder).spawn()
    };
    let mut child = spawned.map_err(|err| format!("cannot open the file manager: {err}"))?;
    // Reap it when it exits so no zombie is left behind.
    std::thread::spawn(move || child.wait());
    Ok(())
}
