//! The inpainting mask painted over the start image: round brush dabs (hard or soft), the
//! eraser, clear and invert, and an undo/redo history of whole masks.
//!
//! Plain pixels only; the canvas turns pointer positions into [`MaskEdit`]s and the window
//! applies them here, then uploads what [`MaskLayer::take_changed`] reports to the overlay.

use crate::engine::GrayImage;

/// At most this many undo steps are kept…
const MAX_UNDO_STEPS: usize = 64;
/// …and at most this many bytes of them (a 4096² mask is 16 MiB a step).
const MAX_UNDO_BYTES: usize = 256 << 20;

/// How the pointer paints.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Brush {
    /// In image pixels.
    pub diameter: f32,
    /// 0: a hard disc; 1: coverage falls off from the centre to the rim.
    pub softness: f32,
    /// Take coverage away instead of adding it.
    pub erase: bool,
}

impl Brush {
    /// Coverage (0–1) at `distance` pixels from the dab's centre: full inside the hard core,
    /// falling linearly to nothing at the rim.
    fn coverage(&self, distance: f32) -> f32 {
        let radius = self.radius();
        let core = radius * (1.0 - self.softness.clamp(0.0, 1.0));
        if distance <= core {
            1.0
        } else if distance >= radius {
            0.0
        } else {
            (radius - distance) / (radius - core)
        }
    }

    fn radius(&self) -> f32 {
        (self.diameter / 2.0).max(0.5)
    }

    /// Dabs this far apart overlap enough that a stroke reads as one smooth line.
    fn spacing(&self) -> f32 {
        (self.radius() * 0.25).max(0.5)
    }
}

/// One change to the mask, in image pixel coordinates (x, y; fractions allowed).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MaskEdit {
    /// The pointer went down: a new stroke (one undo step) and a dab where it is.
    BeginStroke {
        at: [f32; 2],
        brush: Brush,
    },
    /// The pointer moved while down: the line from the last point is painted.
    StrokeTo([f32; 2]),
    /// The pointer went up.
    EndStroke,
    Undo,
    Redo,
    /// Nothing masked.
    Clear,
    /// Masked and kept swap.
    Invert,
}

/// `[left, top, right, bottom)` in pixels.
pub type PixelRect = [usize; 4];

/// The mask of a start image (255 = repaint) and its edit history.
#[derive(Debug, Clone)]
pub struct MaskLayer {
    mask: GrayImage,
    undo: Vec<GrayImage>,
    redo: Vec<GrayImage>,
    /// The brush and last point of the stroke in progress.
    stroke: Option<(Brush, [f32; 2])>,
    /// What changed since the overlay was last uploaded.
    changed: Option<PixelRect>,
}

impl MaskLayer {
    /// An empty mask of `width`×`height`.
    pub fn new(width: usize, height: usize) -> Self {
        Self::from_mask(GrayImage::filled(width, height, 0))
    }

    /// A layer holding `mask`, with no history.
    pub fn from_mask(mask: GrayImage) -> Self {
        let changed = Some([0, 0, mask.width, mask.height]);
        Self {
            mask,
            undo: Vec::new(),
            redo: Vec::new(),
            stroke: None,
            changed,
        }
    }

    pub fn mask(&self) -> &GrayImage {
        &self.mask
    }

    pub fn can_undo(&self) -> bool {
        !self.undo.is_empty()
    }

    pub fn can_redo(&self) -> bool {
        !self.redo.is_empty()
    }

    /// Whether a stroke is being painted.
    pub fn stroking(&self) -> bool {
        self.stroke.is_some()
    }

    /// The region changed since the last call (the whole mask after undo, clear or invert),
    /// for uploading only that part of the overlay.
    pub fn take_changed(&mut self) -> Option<PixelRect> {
        self.changed.take()
    }

    pub fn apply(&mut self, edit: MaskEdit) {
        match edit {
            MaskEdit::BeginStroke { at, brush } => {
                self.remember();
                self.stroke = Some((brush, at));
                self.dab(at, brush);
            }
            MaskEdit::StrokeTo(to) => {
                let Some((brush, from)) = self.stroke else {
                    return;
                };
                self.segment(from, to, brush);
                self.stroke = Some((brush, to));
            }
            MaskEdit::EndStroke => self.stroke = None,
            MaskEdit::Undo => self.step_back(),
            MaskEdit::Redo => self.step_forward(),
            MaskEdit::Clear => {
                if !self.mask.is_empty() {
                    self.remember();
                    self.mask.pixels.fill(0);
                    self.changed_all();
                }
            }
            MaskEdit::Invert => {
                self.remember();
                self.mask = self.mask.inverted();
                self.changed_all();
            }
        }
    }

    /// Saves the mask as it is before an edit; a new edit forgets what was undone.
    fn remember(&mut self) {
        self.stroke = None;
        self.redo.clear();
        self.undo.push(self.mask.clone());
        let step_bytes = self.mask.pixels.len().max(1);
        let kept = MAX_UNDO_STEPS.min((MAX_UNDO_BYTES / step_bytes).max(1));
        if self.undo.len() > kept {
            self.undo.drain(..self.undo.len() - kept);
        }
    }

    fn step_back(&mut self) {
        self.stroke = None;
        if let Some(previous) = self.undo.pop() {
            self.redo.push(std::mem::replace(&mut self.mask, previous));
            self.changed_all();
        }
    }

    fn step_forward(&mut self) {
        self.stroke = None;
        if let Some(next) = self.redo.pop() {
            self.undo.push(std::mem::replace(&mut self.mask, next));
            self.changed_all();
        }
    }

    /// Dabs from `from` (already painted) to `to`, close enough together that a fast drag,
    /// whose pointer samples lie far apart, leaves an unbroken line.
    fn segment(&mut self, from: [f32; 2], to: [f32; 2], brush: Brush) {
        let (dx, dy) = (to[0] - from[0], to[1] - from[1]);
        let length = dx.hypot(dy);
        if length == 0.0 {
            return;
        }
        let dabs = (length / brush.spacing()).ceil() as usize;
        for i in 1..=dabs {
            let t = i as f32 / dabs as f32;
            self.dab([from[0] + dx * t, from[1] + dy * t], brush);
        }
    }

    /// One round dab. Painting keeps the larger of the old and new coverage, so overlapping
    /// dabs of a soft brush do not build up into a hard edge; erasing keeps the smaller.
    fn dab(&mut self, [cx, cy]: [f32; 2], brush: Brush) {
        let radius = brush.radius();
        let (width, height) = (self.mask.width as f32, self.mask.height as f32);
        let left = (cx - radius).floor().clamp(0.0, width) as usize;
        let right = (cx + radius).ceil().clamp(0.0, width) as usize;
        let top = (cy - radius).floor().clamp(0.0, height) as usize;
        let bottom = (cy + radius).ceil().clamp(0.0, height) as usize;
        if left >= right || top >= bottom {
            return;
        }
        let stride = self.mask.width;
        for y in top..bottom {
            for x in left..right {
                // Distance from the pixel's centre.
                let distance = (x as f32 + 0.5 - cx).hypot(y as f32 + 0.5 - cy);
                let amount = (brush.coverage(distance) * 255.0).round() as u8;
                if amount == 0 {
                    continue;
                }
                let pixel = &mut self.mask.pixels[y * stride + x];
                *pixel = if brush.erase {
                    (*pixel).min(255 - amount)
                } else {
                    (*pixel).max(amount)
                };
            }
        }
        self.changed_within([left, top, right, bottom]);
    }

    fn changed_within(&mut self, rect: PixelRect) {
        self.changed = Some(match self.changed {
            None => rect,
            Some(old) => [
                old[0].min(rect[0]),
                old[1].min(rect[1]),
                old[2].max(rect[2]),
                old[3].max(rect[3]),
            ],
        });
    }

    fn changed_all(&mut self) {
        self.changed = Some([0, 0, self.mask.width, self.mask.height]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HARD: Brush = Brush {
        diameter: 4.0,
        softness: 0.0,
        erase: false,
    };

    fn at(layer: &MaskLayer, x: usize, y: usize) -> u8 {
        layer.mask().pixels[y * layer.mask().width + x]
    }

    fn stroke(layer: &mut MaskLayer, brush: Brush, points: &[[f32; 2]]) {
        layer.apply(MaskEdit::BeginStroke {
            at: points[0],
            brush,
        });
        for &point in &points[1..] {
            layer.apply(MaskEdit::StrokeTo(point));
        }
        layer.apply(MaskEdit::EndStroke);
    }

    #[test]
    fn a_fast_stroke_is_unbroken_between_far_apart_samples() {
        let mut layer = MaskLayer::new(100, 20);
        assert_eq!(
            layer.take_changed(),
            Some([0, 0, 100, 20]),
            "new: upload it all"
        );
        // Two samples 80 px apart, as a quick flick gives.
        stroke(&mut layer, HARD, &[[10.0, 10.0], [90.0, 10.0]]);
        for x in 10..90 {
            assert_eq!(at(&layer, x, 10), 255, "gap at x = {x}");
            assert_eq!(at(&layer, x, 9), 255, "the line is the brush's width");
        }
        assert_eq!(at(&layer, 50, 14), 0, "nothing beyond the radius");
        assert_eq!(at(&layer, 95, 10), 0, "nothing past the end");
        // Dabs touched only the band around the line.
        let changed = layer.take_changed().expect("changed");
        assert_eq!(changed, [8, 8, 92, 12]);
        assert_eq!(layer.take_changed(), None);
    }

    #[test]
    fn a_soft_brush_fades_out_and_overlapping_dabs_do_not_build_up() {
        let soft = Brush {
            diameter: 20.0,
            softness: 1.0,
            erase: false,
        };
        let mut layer = MaskLayer::new(40, 40);
        stroke(&mut layer, soft, &[[20.0, 20.0]]);
        let centre = at(&layer, 20, 20);
        let middle = at(&layer, 25, 20);
        let rim = at(&layer, 29, 20);
        assert!(centre > 230, "{centre}");
        assert!((100..160).contains(&middle), "{middle}");
        assert!(rim < 30, "{rim}");
        assert_eq!(at(&layer, 31, 20), 0);

        // Dabbing the same spot again changes nothing (max blending, not accumulation).
        let before = layer.mask().clone();
        stroke(&mut layer, soft, &[[20.0, 20.0]]);
        stroke(&mut layer, soft, &[[20.0, 20.0]]);
        assert_eq!(layer.mask(), &before);
    }

    #[test]
    fn the_eraser_takes_coverage_away_softly() {
        let mut layer = MaskLayer::from_mask(GrayImage::filled(30, 30, 255));
        let eraser = Brush {
            diameter: 10.0,
            softness: 0.5,
            erase: true,
        };
        stroke(&mut layer, eraser, &[[15.0, 15.0]]);
        assert_eq!(at(&layer, 15, 15), 0, "the hard core erases fully");
        let edge = at(&layer, 19, 15);
        assert!(edge > 0 && edge < 255, "the soft rim erases partly: {edge}");
        assert_eq!(at(&layer, 25, 15), 255, "outside the dab is kept");
    }

    #[test]
    fn strokes_near_the_edge_are_clipped() {
        let mut layer = MaskLayer::new(10, 10);
        stroke(&mut layer, HARD, &[[-5.0, 5.0], [1.0, 5.0], [20.0, 30.0]]);
        assert_eq!(at(&layer, 0, 5), 255);
        assert_eq!(at(&layer, 9, 9), 0);
        // Entirely outside: nothing happens, nothing is reported changed.
        let mut outside = MaskLayer::new(10, 10);
        outside.take_changed();
        stroke(&mut outside, HARD, &[[-50.0, -50.0]]);
        assert!(outside.mask().is_empty());
        assert_eq!(outside.take_changed(), None);
    }

    #[test]
    fn undo_and_redo_step_through_strokes_clear_and_invert() {
        let mut layer = MaskLayer::new(20, 20);
        assert!(!layer.can_undo() && !layer.can_redo());
        stroke(&mut layer, HARD, &[[5.0, 5.0]]);
        let one_stroke = layer.mask().clone();
        stroke(&mut layer, HARD, &[[15.0, 15.0]]);
        let two_strokes = layer.mask().clone();

        layer.apply(MaskEdit::Undo);
        assert_eq!(layer.mask(), &one_stroke, "a whole stroke is one step");
        assert!(layer.can_redo());
        layer.apply(MaskEdit::Redo);
        assert_eq!(layer.mask(), &two_strokes);

        layer.apply(MaskEdit::Invert);
        assert_eq!(at(&layer, 5, 5), 0);
        assert_eq!(at(&layer, 10, 0), 255);
        layer.apply(MaskEdit::Clear);
        assert!(layer.mask().is_empty());
        // Clearing an empty mask is not another step.
        layer.apply(MaskEdit::Clear);
        layer.apply(MaskEdit::Undo);
        assert_eq!(layer.mask(), &two_strokes.inverted());
        layer.apply(MaskEdit::Undo);
        assert_eq!(layer.mask(), &two_strokes);

        // A new edit after undoing forgets the undone steps.
        layer.apply(MaskEdit::Undo);
        stroke(&mut layer, HARD, &[[10.0, 2.0]]);
        assert!(!layer.can_redo());
        for _ in 0..10 {
            layer.apply(MaskEdit::Undo);
        }
        assert!(layer.mask().is_empty(), "back to the start");
        assert!(!layer.can_undo());
        assert_eq!(layer.take_changed(), Some([0, 0, 20, 20]));
    }

    #[test]
    fn the_undo_history_is_bounded() {
        let mut layer = MaskLayer::new(8, 8);
        for i in 0..(MAX_UNDO_STEPS + 10) {
            stroke(&mut layer, HARD, &[[(i % 8) as f32, 4.0]]);
        }
        let mut steps = 0;
        while layer.can_undo() {
            layer.apply(MaskEdit::Undo);
            steps += 1;
        }
        assert_eq!(steps, MAX_UNDO_STEPS);
    }

    #[test]
    fn moves_without_a_stroke_paint_nothing() {
        let mut layer = MaskLayer::new(10, 10);
        layer.apply(MaskEdit::StrokeTo([5.0, 5.0]));
        assert!(layer.mask().is_empty());
        assert!(!layer.can_undo());
    }
}
