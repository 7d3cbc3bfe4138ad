//! The About window: which build this is (version, commit, target, GPU support) and where the
//! app keeps things on this machine, for bug reports and for finding one's files.

use std::path::Path;

use egui::{Context, RichText, Ui};

use crate::app::state::State;
use crate::engine::HubCache;

/// Draws the About window while `state.about_open`; its close button clears the flag.
pub fn show(ctx: &Context, state: &mut State) {
    if !state.about_open {
        return;
    }
    let folders = [
        ("Images", Some(state.output_dir.clone())),
        ("Settings", eframe::storage_dir("latent-studio")),
        (
            "Downloaded models",
            Some(HubCache::from_env().root().to_path_buf()),
        ),
        ("LoRAs", state.lora_folder_in_use()),
        ("Embeddings", state.embeddings_folder_in_use()),
    ];
    egui::Window::new("About Latent Studio")
        .open(&mut state.about_open)
        .collapsible(false)
        .resizable(false)
        .anchor(egui::Align2::CENTER_CENTER, [0.0, 0.0])
        .show(ctx, |ui| {
            ui.label(RichText::new("Latent Studio").size(18.0).strong());
            ui.label(env!("CARGO_PKG_DESCRIPTION"));
            ui.add_space(6.0);
            egui::Grid::new("about-build")
                .num_columns(2)
                .spacing([12.0, 4.0])
                .min_col_width(120.0)
                .show(ui, |ui| {
                    row(ui, "Version", env!("CARGO_PKG_VERSION"));
                    row(ui, "Commit", crate::GIT_COMMIT);
                    row(ui, "Built for", &build_target());
                    row(ui, "GPU support", gpu_support());
                    row(ui, "License", env!("CARGO_PKG_LICENSE"));
                });
            ui.add_space(6.0);
            ui.label(RichText::new("Folders").strong());
            egui::Grid::new("about-folders")
                .num_columns(2)
                .spacing([12.0, 4.0])
                .min_col_width(120.0)
                .show(ui, |ui| {
                    for (name, folder) in &folders {
                        row(ui, name, &folder_text(folder.as_deref()));
                    }
                });
        });
}

fn row(ui: &mut Ui, name: &str, value: &str) {
    ui.label(RichText::new(name).weak());
    // Selectable, so a commit or a folder can be copied into a bug report or a file manager.
    ui.add(egui::Label::new(value).selectable(true));
    ui.end_row();
}

fn build_target() -> String {
    format!("{} {}", std::env::consts::OS, std::env::consts::ARCH)
}

fn gpu_support() -> &'static str {
    if cfg!(feature = "cuda") {
        "CUDA"
    } else if cfg!(feature = "metal") {
        "Metal"
    } else {
        "none (CPU only)"
    }
}

fn folder_text(folder: Option<&Path>) -> String {
    folder
        .map(|path| path.display().to_string())
        .unwrap_or_else(|| "(none on this system)".to_string())
}
