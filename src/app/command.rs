//! What the panels ask for. Drawing code only reads state (and edits plain settings fields
//! in place); anything with consequences — talking to the worker, opening a dialog, touching
//! the disk — comes back as a [`UiCommand`] and is applied once, after the frame is drawn.

use std::path::PathBuf;

use crate::engine::ModelSource;

use super::mask::MaskEdit;
use super::model_manager::ManagerAction;
use super::state::ThemeChoice;

#[derive(Debug, Clone, PartialEq)]
pub enum UiCommand {
    /// Load this model (and use it from now on).
    SelectModel(ModelSource),
    /// Ask for a diffusers folder with the native dialog, then load it.
    OpenModelFolder,
    /// Ask for a single-file checkpoint with the native dialog, then load it.
    OpenModelFile,
    /// Use this VAE file (`None`: the model's own) from now on.
    ChooseVae(Option<PathBuf>),
    /// Ask for a VAE file with the native dialog, then use it.
    PickVaeFile,
    /// Decode in overlapping tiles (or not) from now on.
    SetVaeTiling(bool),
    /// Decode finished images with the tiny autoencoder (or the VAE) from now on.
    SetFastDecode(bool),
    /// Ask for an upscaler `.safetensors` file for the hires pass.
    PickHiresUpscaler,
    /// Upscale the shown image with this upscaler file (`None`: ask for one first).
    UpscaleShown(Option<PathBuf>),
    /// bf16 (or f32) matrix products on the CPU from now on.
    SetBf16Arithmetic(bool),
    /// Ask for the LoRA folder; `UseDefaultLoraFolder` goes back to the default one.
    PickLoraFolder,
    UseDefaultLoraFolder,
    /// List the LoRA folder again (after files were added or removed).
    RefreshLoras,
    /// Ask for the embeddings folder; `UseDefaultEmbeddingsFolder` goes back to the default.
    PickEmbeddingsFolder,
    UseDefaultEmbeddingsFolder,
    /// Open an add-on folder in the file manager, creating it first so there is somewhere
    /// to put files.
    OpenFolder(PathBuf),
    /// Load the current model again after a failure.
    RetryModel,
    /// Stop the model download in progress (it resumes on the next load).
    CancelDownload,
    /// Start a new engine thread after the old one ended.
    RestartEngine,
    /// Generate on the server in the Engine settings (reconnect when already on it).
    ConnectServer,
    /// Generate on this computer again.
    UseThisComputer,
    /// Queue the current settings (they start at once when the engine is free).
    Generate,
    /// Turn A1111's "Generate forever" on with the current settings, or off.
    GenerateForever,
    /// Reorder, remove, pause or resume the queue.
    Queue(QueueCommand),
    Cancel,
    RandomizeSeed,
    /// Take size, steps and CFG from the loaded model.
    UseModelDefaults,
    PickInitImage,
    ClearInitImage,
    /// Make the shown image the img2img start image.
    UseShownAsInitImage,
    /// Add a ControlNet unit (with default settings) / remove unit N.
    AddControlUnit,
    RemoveControlUnit(usize),
    /// Ask for unit N's ControlNet (a diffusers folder, or a `.safetensors` file).
    PickControlNetFolder(usize),
    PickControlNetFile(usize),
    /// Ask for unit N's picture with the native dialog.
    PickControlImage(usize),
    /// Unit N reads the img2img start image / the shown image.
    UseStartAsControlImage(usize),
    UseShownAsControlImage(usize),
    ClearControlImage(usize),
    /// Paint a mask over the start image (made empty the first time) in the centre.
    Inpaint,
    /// Make the shown image the start image, keeping the mask, and paint on it.
    InpaintShown,
    /// Close the mask canvas (the mask is kept and used).
    FinishMask,
    /// Drop the mask: plain img2img again.
    RemoveMask,
    /// Change the mask (brush strokes, undo, clear, …).
    EditMask(MaskEdit),
    /// Grow the start image by `[left, top, right, bottom]` pixels and mask the new area.
    Outpaint([usize; 4]),
    /// Restore settings from pasted A1111 `parameters` text.
    PasteParameters(String),
    /// Files dropped on the window: to a ControlNet unit when it claimed them (the first
    /// picture), else a PNG with settings restores them and other pictures become the start
    /// image.
    DropFiles {
        paths: Vec<PathBuf>,
        target: ArrivalTarget,
    },
    /// A picture pasted from the clipboard: the picture of the ControlNet unit that claimed it,
    /// else the start image.
    PasteImage {
        image: std::sync::Arc<egui::ColorImage>,
        target: ArrivalTarget,
    },
    /// Use another `styles.csv`.
    PickStylesFile,
    ReloadStyles,
    /// Save the prompt fields as a style of this name.
    SaveStyle(String),
    DeleteStyle(String),
    /// Merge the chosen styles into the prompt fields.
    ApplyStylesToPrompts,
    ChangeTheme(ThemeChoice),
    /// Show a history entry in full.
    ShowEntry(u64),
    /// Go back to the running job's live preview.
    ShowLive,
    /// Copy the shown image's settings into the panels.
    ReuseParameters,
    CopySeed,
    CopyImage,
    /// Export the shown image with the native save dialog.
    SaveAs,
    ShowInFolder(PathBuf),
    PickOutputFolder,
    OpenOutputFolder,
    DismissNotice(u64),
    /// Open or close the model manager, or delete a model in it.
    ModelManager(ManagerAction),
}

/// Where a dropped file or pasted picture goes: the panel under the pointer claims it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArrivalTarget {
    /// No panel claimed it: the window's own handling.
    Window,
    /// ControlNet unit N's picture.
    ControlUnit(usize),
}

/// What the queue panel asks for; entries are named by their queue id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueCommand {
    MoveUp(u64),
    MoveDown(u64),
    Remove(u64),
    Pause,
    Resume,
    StopForever,
}
