//! Busy indicators that leave the CPU to the engine. egui's `Spinner` and animated
//! `ProgressBar` ask for a new frame every frame; under software rendering (a CPU-only remote
//! desktop, Xvfb) that is most of a core, taken from the engine's threads while it generates
//! (measured: a one-step Turbo run took twice as long with the window open). These move a few
//! times a second and ask for nothing more.

use std::time::Duration;

use egui::{vec2, Color32, Response, Sense, Ui};

/// How often a busy indicator moves.
pub const FRAME: Duration = Duration::from_millis(250);

/// Dots around a circle, one of them lit, stepping once per [`FRAME`].
pub fn spinner(ui: &mut Ui) -> Response {
    const DOTS: usize = 8;
    let size = ui.style().spacing.interact_size.y;
    let (rect, response) = ui.allocate_exact_size(vec2(size, size), Sense::hover());
    if ui.is_rect_visible(rect) {
        let tick = (ui.input(|i| i.time) / FRAME.as_secs_f64()) as usize % DOTS;
        let color = ui.visuals().strong_text_color();
        let radius = rect.height() * 0.35;
        for dot in 0..DOTS {
            let angle = dot as f32 / DOTS as f32 * std::f32::consts::TAU;
            let at = rect.center() + radius * vec2(angle.cos(), angle.sin());
            let alpha = if dot == tick { 1.0 } else { 0.25 };
            ui.painter()
                .circle_filled(at, rect.height() * 0.07, color.gamma_multiply(alpha));
        }
        ui.ctx().request_repaint_after(FRAME);
    }
    response
}

/// A progress bar that does not animate; `fill` colours its done part.
pub fn progress_bar(ui: &mut Ui, fraction: f32, text: String, fill: Option<Color32>) -> Response {
    let mut bar = egui::ProgressBar::new(fraction).text(text);
    if let Some(fill) = fill {
        bar = bar.fill(fill);
    }
    ui.add(bar)
}
