//! The queue, on the right while jobs wait: the running job (with Cancel), then each waiting
//! job with a summary of its settings and a thumbnail of its start image, to reorder or
//! remove; Pause/Resume for the whole queue; "Generate forever" can be stopped here too.

use std::collections::HashMap;

use egui::{Button, RichText, TextureHandle, Ui};

use crate::app::command::{QueueCommand, UiCommand};
use crate::app::history::fit_for_texture;
use crate::app::queue::{Queue, QueueEntry};
use crate::app::session::Run;

/// Thumbnails' longest side, in pixels.
const THUMBNAIL_SIDE: usize = 48;

/// Thumbnails of the start images of queued jobs, by entry id, made once per entry.
#[derive(Default)]
pub struct Thumbnails {
    textures: HashMap<u64, TextureHandle>,
}

impl Thumbnails {
    /// Makes the missing thumbnails and drops those of entries that left the queue.
    fn sync(&mut self, ctx: &egui::Context, queue: &Queue) {
        let entries: Vec<&QueueEntry> =
            queue.current().into_iter().chain(queue.waiting()).collect();
        self.textures
            .retain(|id, _| entries.iter().any(|e| e.id == *id));
        for entry in entries {
            if self.textures.contains_key(&entry.id) {
                continue;
            }
            if let Some(init) = &entry.job.job.request.init_image {
                let small = fit_for_texture(&init.image, THUMBNAIL_SIDE);
                let texture = ctx.load_texture(
                    format!("queue-{}", entry.id),
                    small,
                    egui::TextureOptions::LINEAR,
                );
                self.textures.insert(entry.id, texture);
            }
        }
    }
}

/// The panel, while there is anything queued (or "Generate forever" is on).
pub fn panel(
    ui: &mut Ui,
    queue: &Queue,
    thumbnails: &mut Thumbnails,
    run: Option<&Run>,
) -> Vec<UiCommand> {
    let mut commands = Vec::new();
    if queue.is_empty() && !queue.is_forever() {
        return commands;
    }
    thumbnails.sync(ui.ctx(), queue);
    egui::Panel::right("queue")
        .resizable(true)
        .default_size(270.0)
        .size_range(220.0..=420.0)
        .show(ui, |ui| commands = show(ui, queue, thumbnails, run));
    commands
}

fn show(ui: &mut Ui, queue: &Queue, thumbnails: &Thumbnails, run: Option<&Run>) -> Vec<UiCommand> {
    let mut commands = Vec::new();
    ui.add_space(6.0);
    ui.horizontal(|ui| {
        ui.label(RichText::new(format!("Queue · {} waiting", queue.len())).strong());
        let (label, command, hint) = if queue.is_paused() {
            ("Resume", QueueCommand::Resume, "Start the waiting jobs")
        } else {
            (
                "Pause",
                QueueCommand::Pause,
                "Start no more jobs; the running one finishes",
            )
        };
        if ui.button(label).on_hover_text(hint).clicked() {
            commands.push(UiCommand::Queue(command));
        }
    });
    if queue.was_restored() {
        ui.label(
            RichText::new(
                "These jobs are from the last session. The queue is paused so that nothing starts unasked: press Resume to run them.",
            )
            .small(),
        );
    } else if queue.is_paused() {
        ui.label(RichText::new("Paused: no new job starts until Resume.").small());
    }
    if queue.is_forever() {
        ui.horizontal(|ui| {
            ui.label(RichText::new("Generating forever").small());
            if ui.small_button("Stop forever").clicked() {
                commands.push(UiCommand::Queue(QueueCommand::StopForever));
            }
        });
    }
    ui.separator();
    if let (Some(current), Some(run)) = (queue.current(), run) {
        ui.label(RichText::new("Running").weak().small());
        ui.horizontal(|ui| {
            thumbnail(ui, thumbnails, current);
            ui.vertical(|ui| {
                ui.label(RichText::new(current.job.summary()).small());
                let cancel = Button::new("Cancel current").small();
                if ui
                    .add_enabled(!run.cancelling, cancel)
                    .on_hover_text("Stop this job; the queue goes on with the next one")
                    .clicked()
                {
                    commands.push(UiCommand::Cancel);
                }
            });
        });
        ui.separator();
    }
    egui::ScrollArea::vertical()
        .auto_shrink([false, false])
        .show(ui, |ui| {
            let last = queue.len().saturating_sub(1);
            for (at, entry) in queue.waiting().iter().enumerate() {
                ui.push_id(entry.id, |ui| {
                    ui.horizontal(|ui| {
                        thumbnail(ui, thumbnails, entry);
                        ui.vertical(|ui| {
                            let mut summary = format!("{}. {}", at + 1, entry.job.summary());
                            if entry.forever {
                                summary.push_str(" · forever");
                            }
                            ui.label(RichText::new(summary).small());
                            ui.horizontal(|ui| {
                                let up = ui
                                    .add_enabled(at > 0, Button::new("Up").small())
                                    .on_hover_text("Run earlier");
                                if up.clicked() {
                                    commands.push(UiCommand::Queue(QueueCommand::MoveUp(entry.id)));
                                }
                                let down = ui
                                    .add_enabled(at < last, Button::new("Down").small())
                                    .on_hover_text("Run later");
                                if down.clicked() {
                                    commands
                                        .push(UiCommand::Queue(QueueCommand::MoveDown(entry.id)));
                                }
                                if ui
                                    .small_button("Remove")
                                    .on_hover_text("Take this job out of the queue")
                                    .clicked()
                                {
                                    commands.push(UiCommand::Queue(QueueCommand::Remove(entry.id)));
                                }
                            });
                        });
                    });
                });
                ui.separator();
            }
        });
    commands
}

fn thumbnail(ui: &mut Ui, thumbnails: &Thumbnails, entry: &QueueEntry) {
    if let Some(texture) = thumbnails.textures.get(&entry.id) {
        let size = texture.size_vec2();
        let scale = THUMBNAIL_SIDE as f32 / size.x.max(size.y).max(1.0);
        ui.image((texture.id(), size * scale));
    }
}
