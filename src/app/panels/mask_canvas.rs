//! The centre while a mask is painted: the start image with the mask as a red overlay, the
//! brush and its settings, undo and redo, zoom and pan.
//!
//! Pointer input becomes [`MaskEdit`]s in image pixels; the window applies them after the
//! frame, so nothing here changes the mask itself. Nothing repaints on its own: egui redraws
//! on input, which is all painting needs.

use egui::{
    Align, Color32, CursorIcon, Key, Layout, PointerButton, Pos2, Rect, RichText, Sense, Slider,
    Stroke, Ui, Vec2,
};

use crate::app::command::UiCommand;
use crate::app::inpaint::{EdgeDrag, MaskView};
use crate::app::mask::{Brush, MaskEdit, MaskLayer};
use crate::app::state::{State, MAX_BRUSH_SIZE, MIN_BRUSH_SIZE, SIZE_STEP};
use crate::app::InitImageSlot;

use super::canvas::{self, CanvasView};
use super::style;

const HINT: &str = "Left-drag paints · right-drag erases · drag just outside an edge to outpaint · wheel zooms · middle-drag or Space+drag pans · Ctrl+Z undoes, Ctrl+Shift+Z redoes · Ctrl+Enter generates";

/// How far outside an edge of the picture a press grabs that edge (to outpaint), in points.
const EDGE_GRAB: f32 = 14.0;

pub fn show(
    ui: &mut Ui,
    view: &mut MaskView,
    state: &mut State,
    slot: &InitImageSlot,
    canvas_view: &CanvasView<'_>,
) -> Vec<UiCommand> {
    let mut commands = Vec::new();
    commands.extend(canvas::notices(ui, canvas_view.notices));
    commands.extend(canvas::activity(ui, canvas_view));
    let (Some(layer), Some(textures)) = (&slot.mask, &slot.canvas) else {
        return commands;
    };
    commands.extend(toolbar(ui, view, state, layer));
    ui.add_space(2.0);
    let hint_height = 22.0;
    let height = (ui.available_height() - hint_height).max(80.0);
    let (rect, response) = ui.allocate_exact_size(
        Vec2::new(ui.available_width(), height),
        Sense::click_and_drag(),
    );
    response.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Canvas, true, "Mask canvas"));
    let response = response.on_hover_cursor(CursorIcon::Crosshair);

    let painter = ui.painter_at(rect);
    painter.rect_filled(rect, 6.0, style::canvas(ui.visuals()));
    let image_size = Vec2::new(slot.image.width as f32, slot.image.height as f32);
    let space_held = ui.input(|i| i.key_down(Key::Space)) && !ui.ctx().egui_wants_keyboard_input();
    let panning = response.dragged_by(PointerButton::Middle)
        || (space_held && response.dragged_by(PointerButton::Primary));
    let pan = panning.then(|| response.drag_delta());
    let image_rect = canvas::zoom_and_pan(ui, rect, &response, &mut view.zoom, image_size, pan);
    if space_held || panning {
        ui.ctx().set_cursor_icon(CursorIcon::Grabbing);
    }

    let whole = Rect::from_min_max(Pos2::ZERO, Pos2::new(1.0, 1.0));
    painter.image(textures.picture.id(), image_rect, whole, Color32::WHITE);
    painter.image(textures.overlay.id(), image_rect, whole, Color32::WHITE);
    painter.rect_stroke(
        image_rect,
        0.0,
        Stroke::new(1.0, Color32::from_white_alpha(40)),
        egui::StrokeKind::Outside,
    );

    let brush = Brush {
        diameter: state.brush_size,
        softness: state.brush_softness,
        erase: view.eraser,
    };
    let scale = image_rect.width() / image_size.x.max(1.0);
    let to_image = |pos: Pos2| {
        let at = (pos - image_rect.min) / scale;
        [at.x, at.y]
    };
    commands.extend(edge_drag(
        ui, &painter, view, rect, image_rect, scale, space_held,
    ));
    let edge_hovered = response
        .hover_pos()
        .and_then(|pos| edge_at(image_rect, pos));
    if let Some(side) = edge_hovered.or(view.edge_drag.map(|d| d.side)) {
        ui.ctx().set_cursor_icon(if side % 2 == 0 {
            CursorIcon::ResizeHorizontal
        } else {
            CursorIcon::ResizeVertical
        });
    }
    commands.extend(
        stroke_edits(ui, rect, image_rect, layer, brush, space_held)
            .into_iter()
            .map(|edit| {
                UiCommand::EditMask(match edit {
                    PointerEdit::Begin { at, brush } => MaskEdit::BeginStroke {
                        at: to_image(at),
                        brush,
                    },
                    PointerEdit::To(at) => MaskEdit::StrokeTo(to_image(at)),
                    PointerEdit::End => MaskEdit::EndStroke,
                })
            }),
    );

    // The brush's outline under the pointer, light and dark so it shows on any picture.
    let brush_shown =
        !(space_held || panning || edge_hovered.is_some() || view.edge_drag.is_some());
    if let (Some(pointer), true) = (response.hover_pos(), brush_shown) {
        let radius = (state.brush_size * scale / 2.0).max(1.0);
        painter.circle_stroke(pointer, radius + 1.0, Stroke::new(1.0, Color32::BLACK));
        painter.circle_stroke(pointer, radius, Stroke::new(1.0, Color32::WHITE));
    }
    // Double-clicking paints here, so only the button fits.
    canvas::zoom_overlay(ui, rect, &mut view.zoom, "Fit to the window");
    ui.add(egui::Label::new(RichText::new(HINT).small().weak()).truncate());
    commands
}

/// A stroke's pointer events in screen points, before they become image pixels.
enum PointerEdit {
    Begin { at: Pos2, brush: Brush },
    To(Pos2),
    End,
}

/// Strokes from this frame's pointer events, in the order they came: a press on the canvas
/// begins one (the right button always erases), moves while it is held extend it, the
/// release ends it. Events rather than the pointer's state at the end of the frame, so that a
/// quick dab pressed and released within one frame still paints.
fn stroke_edits(
    ui: &Ui,
    canvas: Rect,
    image_rect: Rect,
    layer: &MaskLayer,
    brush: Brush,
    space_held: bool,
) -> Vec<PointerEdit> {
    let (events, any_down) = ui.input(|i| (i.events.clone(), i.pointer.any_down()));
    let ctx = ui.ctx();
    // Not through a popup or the zoom buttons drawn over the canvas, nor where a press
    // grabs an edge to outpaint.
    let paints_at = |pos: Pos2| {
        canvas.contains(pos)
            && !canvas::zoom_bar(canvas).contains(pos)
            && edge_at(image_rect, pos).is_none()
            && ctx.layer_id_at(pos) == Some(ui.layer_id())
    };
    let mut stroking = layer.stroking();
    let mut edits = Vec::new();
    for event in events {
        match event {
            egui::Event::PointerButton {
                pos,
                button,
                pressed: true,
                ..
            } if !stroking && paints_at(pos) => {
                let erase = match button {
                    PointerButton::Primary if !space_held => brush.erase,
                    PointerButton::Secondary => true,
                    _ => continue,
                };
                edits.push(PointerEdit::Begin {
                    at: pos,
                    brush: Brush { erase, ..brush },
                });
                stroking = true;
            }
            egui::Event::PointerMoved(pos) if stroking => edits.push(PointerEdit::To(pos)),
            egui::Event::PointerButton {
                pos,
                pressed: false,
                ..
            } if stroking => {
                edits.push(PointerEdit::To(pos));
                edits.push(PointerEdit::End);
                stroking = false;
            }
            _ => {}
        }
    }
    // A release the window never saw (it lost the pointer) still ends the stroke.
    if stroking && !any_down {
        edits.push(PointerEdit::End);
    }
    edits
}

/// The side whose grab band holds `pos`: just outside that edge of the picture, along it.
fn edge_at(image: Rect, pos: Pos2) -> Option<usize> {
    let along_x = (image.left()..=image.right()).contains(&pos.x);
    let along_y = (image.top()..=image.bottom()).contains(&pos.y);
    let grabbed = |outside: f32| outside > 0.0 && outside <= EDGE_GRAB;
    if along_y && grabbed(image.left() - pos.x) {
        Some(0)
    } else if along_x && grabbed(image.top() - pos.y) {
        Some(1)
    } else if along_y && grabbed(pos.x - image.right()) {
        Some(2)
    } else if along_x && grabbed(pos.y - image.bottom()) {
        Some(3)
    } else {
        None
    }
}

/// Picture pixels to add on `side` for a drag from `origin` to `pos` at `scale` points per
/// pixel: outwards only, to the nearest step of the 8-pixel grid.
fn outpaint_amount(side: usize, origin: Pos2, pos: Pos2, scale: f32) -> usize {
    let moved = pos - origin;
    let outwards = match side {
        0 => -moved.x,
        1 => -moved.y,
        2 => moved.x,
        _ => moved.y,
    };
    let pixels = (outwards / scale.max(1e-3)).max(0.0);
    (pixels / SIZE_STEP as f32).round() as usize * SIZE_STEP
}

/// Dragging just outside an edge grows the picture on that side: the new outline while the
/// button is held, [`UiCommand::Outpaint`] when it is released.
fn edge_drag(
    ui: &Ui,
    painter: &egui::Painter,
    view: &mut MaskView,
    canvas: Rect,
    image_rect: Rect,
    scale: f32,
    space_held: bool,
) -> Option<UiCommand> {
    let (pressed_at, pointer, held) = ui.input(|i| {
        (
            i.pointer
                .primary_pressed()
                .then(|| i.pointer.press_origin())
                .flatten(),
            i.pointer.interact_pos(),
            i.pointer.primary_down(),
        )
    });
    if let (Some(origin), None, false) = (pressed_at, view.edge_drag, space_held) {
        let on_canvas =
            canvas.contains(origin) && ui.ctx().layer_id_at(origin) == Some(ui.layer_id());
        if let Some(side) = edge_at(image_rect, origin).filter(|_| on_canvas) {
            view.edge_drag = Some(EdgeDrag { side, origin });
        }
    }
    let drag = view.edge_drag?;
    let amount = pointer.map_or(0, |pos| outpaint_amount(drag.side, drag.origin, pos, scale));
    let mut sides = [0; 4];
    sides[drag.side] = amount;
    if held {
        let grown = Rect::from_min_max(
            image_rect.min - Vec2::new(sides[0] as f32, sides[1] as f32) * scale,
            image_rect.max + Vec2::new(sides[2] as f32, sides[3] as f32) * scale,
        );
        painter.rect_stroke(
            grown,
            0.0,
            Stroke::new(1.5, style::ACCENT),
            egui::StrokeKind::Outside,
        );
        if let Some(pos) = pointer {
            // Beside the pointer on the side that stays on screen (the edge is near the
            // canvas's border when the picture fits).
            let (offset, anchor) = if drag.side == 1 {
                (Vec2::new(0.0, 18.0), egui::Align2::CENTER_TOP)
            } else {
                (Vec2::new(0.0, -14.0), egui::Align2::CENTER_BOTTOM)
            };
            let label_at = pos + offset;
            let label_at = Pos2::new(
                label_at
                    .x
                    .clamp(canvas.left() + 40.0, canvas.right() - 40.0),
                label_at.y,
            );
            painter.text(
                label_at,
                anchor,
                format!("+{amount} px"),
                egui::FontId::proportional(13.0),
                Color32::WHITE,
            );
        }
        return None;
    }
    view.edge_drag = None;
    (amount > 0).then_some(UiCommand::Outpaint(sides))
}

/// Brush or eraser, size, softness, undo and redo, clear, invert, done.
fn toolbar(
    ui: &mut Ui,
    view: &mut MaskView,
    state: &mut State,
    layer: &MaskLayer,
) -> Vec<UiCommand> {
    let mut commands = Vec::new();
    ui.horizontal_wrapped(|ui| {
        ui.label(RichText::new("Inpaint mask").strong());
        ui.separator();
        if ui
            .selectable_label(!view.eraser, "Brush")
            .on_hover_text("Left-drag paints what to repaint")
            .clicked()
        {
            view.eraser = false;
        }
        if ui
            .selectable_label(view.eraser, "Eraser")
            .on_hover_text("Left-drag takes the mask away (right-drag always does)")
            .clicked()
        {
            view.eraser = true;
        }
        let label = ui.label("Size");
        ui.add(
            Slider::new(&mut state.brush_size, MIN_BRUSH_SIZE..=MAX_BRUSH_SIZE)
                .logarithmic(true)
                .integer()
                .suffix(" px"),
        )
        .labelled_by(label.id)
        .on_hover_text("The brush's diameter in the picture's pixels");
        let label = ui.label("Softness");
        ui.add(Slider::new(&mut state.brush_softness, 0.0..=1.0).fixed_decimals(2))
            .labelled_by(label.id)
            .on_hover_text("0: a hard edge; 1: the brush fades out from its centre");
        ui.separator();
        if ui
            .add_enabled(layer.can_undo(), egui::Button::new("Undo"))
            .on_hover_text("Ctrl+Z")
            .clicked()
        {
            commands.push(UiCommand::EditMask(MaskEdit::Undo));
        }
        if ui
            .add_enabled(layer.can_redo(), egui::Button::new("Redo"))
            .on_hover_text("Ctrl+Shift+Z or Ctrl+Y")
            .clicked()
        {
            commands.push(UiCommand::EditMask(MaskEdit::Redo));
        }
        if ui.button("Clear").on_hover_text("Nothing masked").clicked() {
            commands.push(UiCommand::EditMask(MaskEdit::Clear));
        }
        if ui
            .button("Invert")
            .on_hover_text("Repaint what is kept and keep what is masked")
            .clicked()
        {
            commands.push(UiCommand::EditMask(MaskEdit::Invert));
        }
        ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
            if ui
                .button(RichText::new("Done").strong())
                .on_hover_text("Back to the images; the mask is kept for the next Generate (Esc)")
                .clicked()
            {
                commands.push(UiCommand::FinishMask);
            }
        });
    });
    commands
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edges_are_grabbed_just_outside_the_picture() {
        let image = Rect::from_min_max(Pos2::new(100.0, 50.0), Pos2::new(300.0, 150.0));
        assert_eq!(edge_at(image, Pos2::new(95.0, 100.0)), Some(0));
        assert_eq!(edge_at(image, Pos2::new(200.0, 40.0)), Some(1));
        assert_eq!(edge_at(image, Pos2::new(310.0, 100.0)), Some(2));
        assert_eq!(edge_at(image, Pos2::new(200.0, 160.0)), Some(3));
        // Inside paints; far outside and beyond the corners grab nothing.
        assert_eq!(edge_at(image, Pos2::new(105.0, 100.0)), None);
        assert_eq!(edge_at(image, Pos2::new(60.0, 100.0)), None);
        assert_eq!(edge_at(image, Pos2::new(95.0, 45.0)), None);
    }

    #[test]
    fn edge_drags_grow_outwards_on_the_grid() {
        let origin = Pos2::new(0.0, 0.0);
        // 2 points per pixel: 70 points right is 35 pixels, nearest grid step 32.
        assert_eq!(outpaint_amount(2, origin, Pos2::new(70.0, 9.0), 2.0), 32);
        assert_eq!(outpaint_amount(0, origin, Pos2::new(-130.0, 0.0), 2.0), 64);
        assert_eq!(outpaint_amount(1, origin, Pos2::new(0.0, -16.0), 0.5), 32);
        assert_eq!(
            outpaint_amount(3, origin, Pos2::new(0.0, -50.0), 1.0),
            0,
            "inwards"
        );
        assert_eq!(
            outpaint_amount(2, origin, Pos2::new(3.0, 0.0), 1.0),
            0,
            "too little"
        );
    }
}
