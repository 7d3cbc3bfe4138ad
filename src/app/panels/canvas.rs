//! The centre: messages, progress, the image (live preview or a history entry) with zoom, the
//! shown image's actions and settings.

use egui::{Align, Align2, Color32, FontId, Layout, Pos2, Rect, RichText, Sense, Stroke, Ui, Vec2};

use crate::app::command::UiCommand;
use crate::app::history::{shorten, History, HistoryEntry};
use crate::app::import;
use crate::app::notices::{Notices, Severity};
use crate::app::session::{download_fraction, download_label, AddOnDownload, ModelStatus, Run};
use crate::app::viewer::{self, Showing, Viewer, Zoom};
use crate::engine::Catalog;

use super::controls::model_display_name;
use super::{busy, style};

pub struct CanvasView<'a> {
    pub model: &'a ModelStatus,
    pub catalog: &'a Catalog,
    pub run: Option<&'a Run>,
    pub history: &'a History,
    pub notices: &'a Notices,
    pub engine_stopped: bool,
    /// Upscaler files chosen before, for the shown image's "Upscale" menu.
    pub upscalers: &'a [std::path::PathBuf],
    /// The depth model downloading for a ControlNet unit's map preview.
    pub map_download: Option<&'a AddOnDownload>,
}

pub fn show(ui: &mut Ui, viewer: &mut Viewer, view: &CanvasView<'_>) -> Vec<UiCommand> {
    let mut commands = Vec::new();
    commands.extend(notices(ui, view.notices));
    commands.extend(activity(ui, view));
    let entry = viewer.shown_entry().and_then(|id| view.history.get(id));
    commands.extend(toolbar(ui, viewer, view, entry));
    // The settings line sits under the image; reserve its height first.
    let info_height = if entry.is_some() { 44.0 } else { 0.0 };
    let image_height = (ui.available_height() - info_height).max(80.0);
    let (rect, response) = ui.allocate_exact_size(
        Vec2::new(ui.available_width(), image_height),
        Sense::click_and_drag(),
    );
    image_area(ui, rect, &response, viewer, view);
    if viewer.showing != Showing::Nothing {
        zoom_overlay(
            ui,
            rect,
            &mut viewer.zoom,
            "Fit to the window (double-click the image)",
        );
    }
    if let Some(entry) = entry {
        settings_line(ui, entry);
    }
    commands
}

// ---------------------------------------------------------------------------------------------

pub(super) fn notices(ui: &mut Ui, notices: &Notices) -> Option<UiCommand> {
    let mut command = None;
    for notice in notices.iter() {
        let color = match notice.severity {
            Severity::Error => style::error(ui.visuals()),
            Severity::Warning => style::warning(ui.visuals()),
            Severity::Info => style::ok(ui.visuals()),
        };
        egui::Frame::new()
            .fill(color.gamma_multiply(0.12))
            .stroke(Stroke::new(1.0, color.gamma_multiply(0.6)))
            .corner_radius(6.0)
            .inner_margin(egui::Margin::symmetric(10, 6))
            .show(ui, |ui| {
                ui.set_width(ui.available_width());
                ui.horizontal(|ui| {
                    ui.label(RichText::new(&notice.title).strong().color(color));
                    ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
                        if ui
                            .small_button("×")
                            .accessible_name(format!("Dismiss: {}", notice.title))
                            .on_hover_text("Dismiss")
                            .clicked()
                        {
                            command = Some(UiCommand::DismissNotice(notice.id));
                        }
                    });
                });
                if !notice.detail.is_empty() {
                    ui.add(egui::Label::new(RichText::new(&notice.detail).small()).wrap());
                }
                if let Some(hint) = &notice.hint {
                    ui.add(egui::Label::new(RichText::new(hint).weak()).wrap());
                }
            });
        ui.add_space(4.0);
    }
    command
}

/// Model loading or download progress (with its Cancel), a map preview's download (with its
/// Cancel), and the running job's progress bar (a download the job waits for shows there; the
/// job's Cancel and Esc stop it).
pub(super) fn activity(ui: &mut Ui, view: &CanvasView<'_>) -> Option<UiCommand> {
    let mut command = None;
    if view.engine_stopped {
        if ui
            .button("Restart engine")
            .on_hover_text("Start the engine again and reload the model; nothing you made is lost")
            .clicked()
        {
            command = Some(UiCommand::RestartEngine);
        }
        ui.add_space(4.0);
    }
    if let ModelStatus::Loading { source, download } = view.model {
        let name = model_display_name(view.catalog, source);
        match download {
            None => {
                ui.horizontal(|ui| {
                    busy::spinner(ui);
                    ui.label(format!("Loading {name}…"));
                });
            }
            Some((file, progress)) => {
                let fraction = download_fraction(progress);
                let text = download_label(&name, file, progress);
                ui.horizontal(|ui| {
                    if cancel_download_button(ui) {
                        command = Some(UiCommand::CancelDownload);
                    }
                    busy::progress_bar(ui, fraction, text, None);
                });
            }
        }
        ui.add_space(4.0);
    }
    if let Some(download) = view.map_download {
        ui.horizontal(|ui| {
            if cancel_download_button(ui) {
                command = Some(UiCommand::CancelDownload);
            }
            // The unit's spinner says what waits; the bar's text is long enough already.
            let fraction = download_fraction(&download.progress);
            busy::progress_bar(ui, fraction, download.label(), None);
        });
        ui.add_space(4.0);
    }
    if let Some(run) = view.run {
        busy::progress_bar(ui, run.fraction(), run.label(), Some(style::ACCENT));
        if run.step == 0 {
            // Until the first step lands, the seconds counting up show that work goes on.
            ui.ctx()
                .request_repaint_after(std::time::Duration::from_secs(1));
        }
        ui.add_space(4.0);
    }
    command
}

/// The Cancel beside a download's bar (the model's or a map preview's); true when clicked.
fn cancel_download_button(ui: &mut Ui) -> bool {
    ui.button("Cancel download")
        .on_hover_text("Stop now; what was fetched is kept and the download resumes next time")
        .clicked()
}

/// One button of the shown image's actions.
#[derive(Clone)]
struct Action {
    label: &'static str,
    enabled: bool,
    hover: &'static str,
    command: UiCommand,
}

/// What can be done with the shown history entry, in reading order.
fn entry_actions(entry: &HistoryEntry, loaded: bool) -> Vec<Action> {
    let mut actions = vec![
        Action {
            label: "Reuse parameters",
            enabled: entry.parsed.is_some(),
            hover: "Copy this image's prompt and settings into the panel",
            command: UiCommand::ReuseParameters,
        },
        Action {
            label: "Use as init image",
            enabled: loaded,
            hover: "Start the next image from this one (img2img)",
            command: UiCommand::UseShownAsInitImage,
        },
        Action {
            label: "Inpaint",
            enabled: loaded,
            hover: "Repaint part of this image: it becomes the start image, with the last mask kept, and the mask opens for painting",
            command: UiCommand::InpaintShown,
        },
        Action {
            label: "Copy seed",
            enabled: entry.seed().is_some(),
            hover: "Copy the seed to the clipboard",
            command: UiCommand::CopySeed,
        },
        Action {
            label: "Copy image",
            enabled: loaded,
            hover: "Copy the image to the clipboard",
            command: UiCommand::CopyImage,
        },
        Action {
            label: "Save as…",
            enabled: loaded,
            hover: "Export a copy anywhere (Ctrl+S)",
            command: UiCommand::SaveAs,
        },
    ];
    if let Some(path) = &entry.path {
        actions.push(Action {
            label: "Show in folder",
            enabled: true,
            hover: "Open the folder that holds this file",
            command: UiCommand::ShowInFolder(path.clone()),
        });
    }
    actions
}

/// "Upscale": the upscaler files chosen before, and a file dialog for another.
fn upscale_menu(ui: &mut Ui, upscalers: &[std::path::PathBuf], enabled: bool) -> Option<UiCommand> {
    let mut command = None;
    ui.add_enabled_ui(enabled, |ui| {
        ui.menu_button("Upscale", |ui| {
            for path in upscalers {
                if ui
                    .button(crate::app::hires::upscaler_label(path))
                    .on_hover_text(path.display().to_string())
                    .clicked()
                {
                    command = Some(UiCommand::UpscaleShown(Some(path.clone())));
                    ui.close();
                }
            }
            if !upscalers.is_empty() {
                ui.separator();
            }
            ui.weak(crate::app::hires::CATALOG_UPSCALERS_HEADING);
            for (label, reference) in crate::app::hires::catalog_upscalers() {
                if ui
                    .button(label)
                    .on_hover_text(reference.display().to_string())
                    .clicked()
                {
                    command = Some(UiCommand::UpscaleShown(Some(reference)));
                    ui.close();
                }
            }
            ui.separator();
            if ui
                .button("Choose file…")
                .on_hover_text("An upscaler .safetensors file (ESRGAN, Real-ESRGAN, …)")
                .clicked()
            {
                command = Some(UiCommand::UpscaleShown(None));
                ui.close();
            }
        })
        .response
        .on_hover_text(
            "Enlarge this image with an upscaler model; the result is saved as a new image",
        );
    });
    command
}

fn action_buttons(ui: &mut Ui, actions: impl Iterator<Item = Action>) -> Option<UiCommand> {
    let mut command = None;
    for action in actions {
        if ui
            .add_enabled(action.enabled, egui::Button::new(action.label))
            .on_hover_text(action.hover)
            .clicked()
        {
            command = Some(action.command);
        }
    }
    command
}

/// Title and zoom of what is shown, and the actions for a history entry: on one row when the
/// panel is wide enough, else the actions wrap onto their own row.
fn toolbar(
    ui: &mut Ui,
    viewer: &mut Viewer,
    view: &CanvasView<'_>,
    entry: Option<&HistoryEntry>,
) -> Vec<UiCommand> {
    let mut commands = Vec::new();
    let actions = entry.map(|e| entry_actions(e, viewer.shown_full().is_some()));
    let can_upscale = viewer.shown_full().is_some() && view.run.is_none();
    // The name, eight buttons and the Upscale menu need about this much on one line.
    let one_row = ui.available_width() >= 1040.0;
    ui.horizontal(|ui| {
        match (viewer.showing, entry) {
            (Showing::Live, _) => {
                ui.label(RichText::new("Live preview").strong());
                if let Some(run) = view.run {
                    ui.weak(format!("seed {}", run.seed));
                }
            }
            (Showing::Entry(_), Some(entry)) => {
                let name = entry
                    .path
                    .as_deref()
                    .and_then(|p| p.file_name())
                    .map_or_else(
                        || "Not saved".to_string(),
                        |n| n.to_string_lossy().into_owned(),
                    );
                ui.label(RichText::new(name).strong());
                ui.weak(format!("{}×{}", entry.width, entry.height));
            }
            _ => {}
        }
        if viewer.showing != Showing::Live
            && view.run.is_some()
            && ui.button("Back to live").clicked()
        {
            commands.push(UiCommand::ShowLive);
        }
        ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
            if let (true, Some(actions)) = (one_row, &actions) {
                // Right-to-left: added last first.
                let reversed = actions.iter().rev().cloned();
                commands.extend(upscale_menu(ui, view.upscalers, can_upscale));
                commands.extend(action_buttons(ui, reversed));
            }
        });
    });
    if let (false, Some(actions)) = (one_row, actions) {
        ui.horizontal_wrapped(|ui| {
            commands.extend(action_buttons(ui, actions.into_iter()));
            commands.extend(upscale_menu(ui, view.upscalers, can_upscale));
        });
    }
    ui.add_space(2.0);
    commands
}

/// Zoom controls floating in the image's bottom-right corner.
/// `fit_hover` explains the Fit button (and any other way to get there).
pub(super) fn zoom_overlay(ui: &mut Ui, image_rect: Rect, zoom: &mut Zoom, fit_hover: &str) {
    let bar = zoom_bar(image_rect);
    let mut overlay = ui.new_child(
        egui::UiBuilder::new()
            .max_rect(bar)
            .layout(Layout::right_to_left(Align::Center)),
    );
    egui::Frame::new()
        .fill(Color32::from_black_alpha(150))
        .corner_radius(6.0)
        .inner_margin(egui::Margin::symmetric(4, 2))
        .show(&mut overlay, |ui| {
            zoom_buttons(ui, zoom, fit_hover);
        });
}

/// Where [`zoom_overlay`] draws its buttons in an image area.
pub(super) fn zoom_bar(image_rect: Rect) -> Rect {
    let size = Vec2::new(170.0, 30.0);
    let corner = image_rect.right_bottom() - Vec2::new(8.0, 8.0);
    Rect::from_min_max(corner - size, corner)
}

fn zoom_buttons(ui: &mut Ui, zoom: &mut Zoom, fit_hover: &str) {
    // Zoom is kept in points; on a HiDPI screen a point is several pixels, and "1:1" means one
    // image pixel per screen pixel, as in any image viewer.
    let pixel_scale = 1.0 / ui.ctx().pixels_per_point();
    // Right-to-left layout: added in reverse reading order.
    if ui
        .selectable_label(!zoom.fit && (zoom.scale - pixel_scale).abs() < 1e-3, "1:1")
        .on_hover_text("Actual pixels: one image pixel per screen pixel")
        .clicked()
    {
        *zoom = Zoom {
            fit: false,
            scale: pixel_scale,
            pan: Vec2::ZERO,
        };
    }
    if ui
        .selectable_label(zoom.fit, "Fit")
        .on_hover_text(fit_hover)
        .clicked()
    {
        *zoom = Zoom::default();
    }
    if !zoom.fit {
        ui.weak(format!("{:.0}%", zoom.scale / pixel_scale * 100.0));
    }
}

/// What to draw: a texture and the pixel size it stands for (a latent-sized preview is
/// stretched to the size being generated).
fn shown_texture(viewer: &Viewer, view: &CanvasView<'_>) -> Option<(egui::TextureId, Vec2)> {
    match viewer.showing {
        Showing::Live => {
            let live = viewer.live.as_ref().filter(|l| l.has_preview)?;
            let run = view.run?;
            Some((
                live.texture.id(),
                Vec2::new(run.width as f32, run.height as f32),
            ))
        }
        Showing::Entry(_) => {
            let full = viewer.shown_full()?;
            Some((
                full.texture.id(),
                Vec2::new(full.image.width as f32, full.image.height as f32),
            ))
        }
        Showing::Nothing => None,
    }
}

fn image_area(
    ui: &mut Ui,
    rect: Rect,
    response: &egui::Response,
    viewer: &mut Viewer,
    view: &CanvasView<'_>,
) {
    let painter = ui.painter_at(rect);
    painter.rect_filled(rect, 6.0, style::canvas(ui.visuals()));

    let Some((texture, image_size)) = shown_texture(viewer, view) else {
        placeholder(ui, rect, viewer, view);
        return;
    };
    // Wheel zooms around the pointer, drag pans, double-click returns to fit.
    if response.double_clicked() {
        viewer.zoom = Zoom::default();
    }
    let pan = response.dragged().then(|| response.drag_delta());
    let image_rect = zoom_and_pan(ui, rect, response, &mut viewer.zoom, image_size, pan);
    painter.image(
        texture,
        image_rect,
        Rect::from_min_max(Pos2::ZERO, Pos2::new(1.0, 1.0)),
        Color32::WHITE,
    );
    if viewer.showing == Showing::Live {
        painter.text(
            image_rect.left_top() + Vec2::new(8.0, 8.0),
            Align2::LEFT_TOP,
            "preview",
            FontId::proportional(12.0),
            Color32::from_white_alpha(160),
        );
    }
}

/// Applies the wheel (zoom around the pointer) and `pan` (a drag, in points) to `zoom`;
/// returns where the image lies on screen.
pub(super) fn zoom_and_pan(
    ui: &Ui,
    rect: Rect,
    response: &egui::Response,
    zoom: &mut Zoom,
    image_size: Vec2,
    pan: Option<Vec2>,
) -> Rect {
    let fit_scale = viewer::fit_scale(rect, image_size);
    let scroll = if response.hovered() {
        ui.input(|i| i.smooth_scroll_delta.y + (i.zoom_delta() - 1.0) * 200.0)
    } else {
        0.0
    };
    if scroll.abs() > 0.0 {
        let pointer = response.hover_pos().unwrap_or(rect.center());
        zoom.zoom_around(rect, pointer, (scroll * 0.002).exp(), fit_scale);
    }
    if let Some(delta) = pan {
        zoom.pan_by(delta, fit_scale);
    }
    zoom.image_rect(rect, image_size)
}

fn placeholder(ui: &mut Ui, rect: Rect, viewer: &Viewer, view: &CanvasView<'_>) {
    let painter = ui.painter_at(rect);
    let weak = ui.visuals().weak_text_color();
    let (title, subtitle) = match (viewer.showing, view.run, view.model) {
        (Showing::Live, Some(run), _) if run.download.is_some() => (
            "Downloading…",
            "The job starts once the file above is in; Cancel (Esc) stops the download".to_string(),
        ),
        (Showing::Live, Some(run), _) if run.total_steps == 0 => ("Starting…", String::new()),
        (Showing::Live, Some(_), _) => ("Denoising…", "The preview appears after the first step".to_string()),
        (Showing::Entry(_), _, _) => ("Loading image…", String::new()),
        (_, _, ModelStatus::Failed { .. }) => (
            "The model did not load",
            "Choose another model in the panel on the left".to_string(),
        ),
        _ => (
            "Type a prompt and press Generate",
            "Ctrl+Enter generates from anywhere · drop a PNG to reuse its settings, or any image to start from it"
                .to_string(),
        ),
    };
    painter.text(
        rect.center() - Vec2::new(0.0, 12.0),
        Align2::CENTER_CENTER,
        title,
        FontId::proportional(20.0),
        weak,
    );
    painter.text(
        rect.center() + Vec2::new(0.0, 16.0),
        Align2::CENTER_CENTER,
        subtitle,
        FontId::proportional(13.0),
        weak.gamma_multiply(0.8),
    );
}

/// Prompt, negative prompt and the key settings of the shown image, selectable for copying.
fn settings_line(ui: &mut Ui, entry: &HistoryEntry) {
    ui.add_space(4.0);
    match &entry.parsed {
        Some(p) => {
            let mut facts = vec![
                format!("seed {}", p.seed),
                format!("{} steps", p.steps),
                format!("CFG {}", p.cfg_scale),
                match &p.schedule_type {
                    Some(schedule) => format!("{} {schedule}", p.sampler),
                    None => p.sampler.clone(),
                },
            ];
            if let Some(strength) = p.denoising_strength {
                facts.push(format!("strength {strength}"));
            }
            if let Some(blur) = import::extra_value(p, "Mask blur") {
                facts.push(format!("inpainted, mask blur {blur}"));
            }
            if let Some(model) = &p.model {
                facts.push(model.clone());
            }
            let prompt = if p.prompt.trim().is_empty() {
                RichText::new("(empty prompt)").weak()
            } else {
                RichText::new(shorten(&p.prompt, 220))
            };
            ui.add(egui::Label::new(prompt).truncate())
                .on_hover_text(&entry.parameters);
            let mut line = facts.join(" · ");
            if !p.negative_prompt.is_empty() {
                line.push_str(&format!(" · not: {}", shorten(&p.negative_prompt, 80)));
            }
            ui.add(egui::Label::new(RichText::new(line).small().weak()).truncate());
        }
        None => {
            ui.weak("No generation settings in this file");
        }
    }
}

/// While files are dragged over the window, say what dropping them does.
pub fn drop_overlay(ctx: &egui::Context) {
    let hovering = ctx.input(|i| !i.raw.hovered_files.is_empty());
    if !hovering {
        return;
    }
    let screen = ctx.content_rect();
    let painter = ctx.layer_painter(egui::LayerId::new(
        egui::Order::Foreground,
        egui::Id::unique("drop-overlay"),
    ));
    painter.rect_filled(screen, 0.0, Color32::from_black_alpha(180));
    painter.text(
        screen.center(),
        Align2::CENTER_CENTER,
        "Drop a PNG to reuse its settings, or any image to start from it\n(on a ControlNet unit: its picture)",
        FontId::proportional(22.0),
        Color32::WHITE,
    );
}
