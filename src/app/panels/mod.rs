//! One module per area of the window. Each `show` function draws its area from read-only
//! views (editing plain settings fields in place) and returns the [`super::UiCommand`]s its
//! buttons asked for.

pub mod about;
pub mod busy;
pub mod canvas;
pub mod controls;
pub mod history_strip;
pub mod mask_canvas;
pub mod model_manager;
pub mod queue;
pub mod style;
