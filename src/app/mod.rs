//! The desktop window: a prompt, a live denoising preview, the session's images.
//!
//! The window never runs tensor code and never waits on the disk. The [`crate::engine`]
//! worker loads models and generates; a small file thread ([`files`]) lists, decodes and
//! exports images. Each frame drains both, draws the panels, and applies the
//! [`UiCommand`]s the panels returned.
//!
//! - [`state`]: the one serde [`State`] that persists between runs.
//! - [`panels`]: one module per area of the window (controls, canvas, history strip).
//! - [`desktop`]: native dialogs and the file manager, behind the [`Desktop`] trait.
//! - [`mask`] and [`inpaint`]: the inpainting mask painted over the start image.

mod arrivals;
pub mod command;
mod config;
mod controlnets;
pub mod desktop;
mod dispatch;
pub mod engine_choice;
mod events;
pub mod files;
pub mod hires;
pub mod history;
pub mod import;
pub mod inpaint;
pub mod loras;
pub mod mask;
pub mod model_lookup;
pub mod model_manager;
pub mod notices;
pub mod panels;
pub mod queue;
mod queue_store;
mod remote;
mod restore;
pub mod session;
mod shortcuts;
pub mod state;
pub mod styles;
mod upscale;
pub mod viewer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use egui::{Key, KeyboardShortcut, Modifiers, TextureHandle};

use crate::engine::{
    bf16_available, Catalog, Command, CpuArithmetic, Event, FinishedImage, GenerateJob,
    GenerationParameters, GenerationRequest, ImageOutput, InitImage, LoadedModel, ModelSource,
    RgbImage, Variation, WorkerHandle, MAX_PICTURE_SIDE,
};

pub use command::UiCommand;
pub use config::AppConfig;
pub use desktop::{Desktop, NativeDesktop};
pub use state::State;

use files::{FileRequest, FileResult, FileService, OpenPurpose};
use history::History;
use inpaint::{MaskTextures, MaskView};
use loras::{ListingStatus, LoraListing};
use mask::MaskLayer;
use model_lookup::{HashSearch, HashSearchResult, ModelLookup};
use notices::{Notices, Severity, Topic};
use panels::controls::TokenCounts;
use session::{ModelStatus, Run};
use viewer::{Showing, Viewer};

pub const WINDOW_TITLE: &str = "Latent Studio";

pub const GENERATE_SHORTCUT: KeyboardShortcut =
    KeyboardShortcut::new(Modifiers::COMMAND, Key::Enter);
pub const SAVE_SHORTCUT: KeyboardShortcut = KeyboardShortcut::new(Modifiers::COMMAND, Key::S);

/// Opens the window and runs until it is closed.
pub fn run_window(config: AppConfig) -> Result<(), String> {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title(WINDOW_TITLE)
            .with_app_id("latent-studio")
            .with_inner_size([1280.0, 820.0])
            .with_min_inner_size([820.0, 560.0])
            .with_drag_and_drop(true)
            .with_icon(window_icon()),
        // Window size and position are remembered with the settings.
        persist_window: true,
        ..Default::default()
    };
    eframe::run_native(
        WINDOW_TITLE,
        options,
        Box::new(|cc| Ok(Box::new(LatentStudioApp::new(cc, config)))),
    )
    .map_err(|err| err.to_string())
}

/// The app's icon (assets/latent-studio.png, also the .deb's and the macOS bundle's).
fn window_icon() -> Arc<egui::IconData> {
    let png = include_bytes!("../../assets/latent-studio.png");
    Arc::new(eframe::icon_data::from_png_bytes(png).unwrap_or_default())
}

/// The img2img start image.
pub struct InitImageSlot {
    pub name: String,
    pub image: Arc<RgbImage>,
    /// A thumbnail, for the panel.
    pub texture: TextureHandle,
    /// The inpainting mask at the image's size, once "Inpaint" was pressed.
    pub mask: Option<MaskLayer>,
    /// The mask canvas's textures, made when it is first drawn.
    pub canvas: Option<MaskTextures>,
}

pub struct LatentStudioApp {
    state: State,
    worker: WorkerHandle,
    files: FileService,
    desktop: Box<dyn Desktop>,
    catalog: &'static Catalog,
    model: ModelStatus,
    run: Option<Run>,
    last_job: u64,
    /// Jobs waiting for the engine, and the one it runs.
    queue: queue::Queue,
    queue_store: Option<queue_store::QueueStore>,
    saved_queue_revision: u64,
    queue_thumbnails: panels::queue::Thumbnails,
    history: History,
    viewer: Viewer,
    init_image: Option<InitImageSlot>,
    /// The ControlNet units' pictures (their settings are in `state`).
    control_pictures: controlnets::ControlPictures,
    mask_view: MaskView,
    notices: Notices,
    tokens: TokenCounts,
    /// The LoRA folder's files, listed by the file thread.
    loras: LoraListing,
    styles: styles::StylesBook,
    /// Searches of recent model files for an imported image's `Model hash`.
    model_lookup: ModelLookup,
    model_manager: model_manager::ModelManager,
    /// The latest of those searches; answers to older ones are dropped.
    last_hash_search: u64,
    /// Tags folder scans, so results from a folder no longer shown are dropped.
    scan_generation: u64,
    /// Give the prompt keyboard focus on the first frame.
    focus_prompt: bool,
    /// For the worker's repaint requests (a restarted worker needs a fresh one).
    egui_ctx: egui::Context,
    /// The worker thread has ended (it never should); the window offers a restart.
    engine_stopped: bool,
    server_models: remote::ServerModelList,
    /// Files dropped before the window knew where the pointer was.
    held_drop: arrivals::HeldDrop,
}

impl LatentStudioApp {
    pub fn new(cc: &eframe::CreationContext<'_>, config: AppConfig) -> Self {
        let saved = if config.restore_saved_state {
            cc.storage
                .and_then(|storage| eframe::get_value::<State>(storage, eframe::APP_KEY))
        } else {
            None
        };
        let mut state = saved.unwrap_or_default().sanitized();
        let catalog = Catalog::builtin();
        if let Some(model) = config.model {
            state.model = Some(model);
        }
        if state.model.is_none() {
            state.model = Some(ModelSource::Hub(catalog.default_entry().id.clone()));
        }
        if let Some(dir) = config.output_dir {
            state.output_dir = dir;
        }
        panels::style::apply(&cc.egui_ctx, state.theme);

        let mut notices = Notices::default();
        let worker = remote::spawn_worker(&cc.egui_ctx, &mut state.engine, &mut notices);
        let repaint = cc.egui_ctx.clone();
        let files = FileService::spawn(move || repaint.request_repaint());
        let repaint = cc.egui_ctx.clone();
        let model_lookup = ModelLookup::new(move || repaint.request_repaint());
        let (queue, queue_store) = Self::open_queue(config.queue_folder, &mut notices);

        let mut app = Self {
            state,
            worker,
            files,
            desktop: config.desktop,
            catalog,
            model: ModelStatus::NoModel,
            run: None,
            last_job: 0,
            saved_queue_revision: queue.revision(),
            queue,
            queue_store,
            queue_thumbnails: Default::default(),
            history: History::default(),
            viewer: Viewer::default(),
            init_image: None,
            control_pictures: controlnets::ControlPictures::default(),
            mask_view: MaskView::default(),
            notices,
            tokens: TokenCounts::default(),
            loras: LoraListing::default(),
            styles: styles::StylesBook::default(),
            model_lookup,
            model_manager: Default::default(),
            last_hash_search: 0,
            scan_generation: 0,
            focus_prompt: true,
            egui_ctx: cc.egui_ctx.clone(),
            engine_stopped: false,
            server_models: Default::default(),
            held_drop: Default::default(),
        };
        // A setting saved on another machine must not ask this CPU for what it lacks.
        app.state.bf16_arithmetic &= bf16_available();
        app.configure_worker();
        app.list_loras();
        app.reload_styles();
        app.scan_output_folder();
        if let Some(path) = config.open_image {
            app.open_as_dropped(path);
        }
        app
    }

    /// Gives the worker the window's settings, then the model: VAE and folders first, so
    /// the model loads with them.
    fn configure_worker(&mut self) {
        self.control_pictures.worker_replaced();
        self.worker.send(Command::SetVae(self.state.vae.clone()));
        self.worker
            .send(Command::SetVaeTiling(self.state.vae_tiling));
        self.configure_decoding();
        if self.state.bf16_arithmetic {
            self.worker
                .send(Command::SetCpuArithmetic(CpuArithmetic::Bf16));
        }
        self.worker
            .send(Command::SetFolders(self.state.add_on_folders()));
        if let Some(model) = self.state.model.clone() {
            self.load_model(model);
        }
    }

    /// Notices once that the worker thread has ended; nothing the user made is lost, and
    /// [`UiCommand::RestartEngine`] starts a new one.
    fn watch_engine(&mut self) {
        if self.engine_stopped || self.worker.is_running() {
            return;
        }
        self.engine_stopped = true;
        self.run = None;
        self.control_pictures.download = None;
        self.model = ModelStatus::NoModel;
        self.notices.push_about(
            Topic::Engine,
            Severity::Error,
            "The engine stopped",
            "The background thread that loads models and generates has ended.",
            Some("Press \"Restart engine\" above the image: your prompt, settings and images are kept.".into()),
        );
    }

    fn restart_engine(&mut self) {
        self.notices.dismiss_topic(Topic::Engine);
        self.worker =
            remote::spawn_worker(&self.egui_ctx, &mut self.state.engine, &mut self.notices);
        self.engine_stopped = false;
        self.configure_worker();
    }

    /// Ends the worker thread as a crash would, to exercise the recovery (tests).
    #[doc(hidden)]
    pub fn stop_engine(&mut self) {
        self.worker.send(Command::Shutdown);
    }

    /// Whether the window knows its engine has stopped.
    pub fn engine_stopped(&self) -> bool {
        self.engine_stopped
    }

    // Read access for tests and embedding.

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn state_mut(&mut self) -> &mut State {
        &mut self.state
    }

    pub fn model_status(&self) -> &ModelStatus {
        &self.model
    }

    pub fn loaded_model(&self) -> Option<&LoadedModel> {
        self.model.loaded()
    }

    pub fn run(&self) -> Option<&Run> {
        self.run.as_ref()
    }

    pub fn history(&self) -> &History {
        &self.history
    }

    pub fn viewer(&self) -> &Viewer {
        &self.viewer
    }

    pub fn showing(&self) -> Showing {
        self.viewer.showing
    }

    /// Whether a step preview of the running job is on screen.
    pub fn live_preview_shown(&self) -> bool {
        self.viewer.showing == Showing::Live
            && self.viewer.live.as_ref().is_some_and(|l| l.has_preview)
    }

    /// The full image on screen, once loaded.
    pub fn shown_image(&self) -> Option<&RgbImage> {
        self.viewer.shown_full().map(|full| full.image.as_ref())
    }

    pub fn init_image(&self) -> Option<&InitImageSlot> {
        self.init_image.as_ref()
    }

    pub fn notices(&self) -> &Notices {
        &self.notices
    }

    /// The name of the picture ControlNet unit `unit` reads, if it has one.
    pub fn control_picture_name(&self, unit: usize) -> Option<&str> {
        self.control_pictures.get(unit).map(|p| p.name.as_str())
    }

    /// The LoRA folder's files as last listed.
    pub fn lora_listing(&self) -> &LoraListing {
        &self.loras
    }

    /// The LoRA files and strengths the next Generate merges from the LoRA list.
    pub fn listed_loras_for_job(&self) -> Vec<(PathBuf, f64)> {
        loras::job_loras(
            &self.loras,
            &self.state.loras,
            &self.state.prompt,
            self.state.prompt_syntax,
        )
    }

    /// Applies one command as if a panel had returned it.
    pub fn apply(&mut self, ctx: &egui::Context, command: UiCommand) {
        match command {
            UiCommand::SelectModel(source) => self.load_model(source),
            UiCommand::OpenModelFolder => {
                if let Some(folder) = self.desktop.pick_model_folder() {
                    self.load_model(ModelSource::Folder(folder));
                }
            }
            UiCommand::OpenModelFile => {
                if let Some(file) = self.desktop.pick_model_file() {
                    self.load_model(ModelSource::Folder(file));
                }
            }
            UiCommand::ChooseVae(vae) => self.set_vae(vae),
            UiCommand::SetVaeTiling(enabled) => self.worker.send(Command::SetVaeTiling(enabled)),
            UiCommand::SetFastDecode(enabled) => self.worker.send(Command::SetFastDecode(enabled)),
            UiCommand::PickHiresUpscaler => self.pick_hires_upscaler(),
            UiCommand::UpscaleShown(upscaler) => self.upscale_shown(upscaler),
            UiCommand::SetBf16Arithmetic(enabled) => {
                let arithmetic = if enabled {
                    CpuArithmetic::Bf16
                } else {
                    CpuArithmetic::F32
                };
                self.worker.send(Command::SetCpuArithmetic(arithmetic));
            }
            UiCommand::PickVaeFile => {
                if let Some(file) = self.desktop.pick_vae_file() {
                    self.set_vae(Some(file));
                }
            }
            UiCommand::PickLoraFolder => {
                let current = self.state.lora_folder_in_use().unwrap_or_default();
                if let Some(folder) = self.desktop.pick_lora_folder(&current) {
                    self.state.lora_folder = Some(folder);
                    self.folders_changed();
                }
            }
            UiCommand::UseDefaultLoraFolder => {
                self.state.lora_folder = None;
                self.folders_changed();
            }
            UiCommand::RefreshLoras => self.list_loras(),
            UiCommand::PickEmbeddingsFolder => {
                let current = self.state.embeddings_folder_in_use().unwrap_or_default();
                if let Some(folder) = self.desktop.pick_embeddings_folder(&current) {
                    self.state.embeddings_folder = Some(folder);
                    self.folders_changed();
                }
            }
            UiCommand::UseDefaultEmbeddingsFolder => {
                self.state.embeddings_folder = None;
                self.folders_changed();
            }
            UiCommand::OpenFolder(folder) => self.open_folder(&folder, "folder"),
            UiCommand::RetryModel => {
                if let Some(model) = self.state.model.clone() {
                    self.load_model(model);
                }
            }
            UiCommand::CancelDownload => self.worker.cancel_download(),
            UiCommand::RestartEngine => self.restart_engine(),
            UiCommand::ConnectServer => self.connect_server(),
            UiCommand::UseThisComputer => self.use_this_computer(),
            UiCommand::Generate => self.enqueue(false),
            UiCommand::GenerateForever => self.enqueue(true),
            UiCommand::Queue(command) => self.apply_queue(command),
            UiCommand::Cancel => {
                if let Some(run) = &mut self.run {
                    self.worker.cancel(run.job);
                    run.cancelling = true;
                    // The job may wait behind a map preview's download: stop that too.
                    if self.control_pictures.download.is_some() {
                        self.worker.cancel_download();
                    }
                }
            }
            UiCommand::RandomizeSeed => self.state.seed = state::random_seed(),
            UiCommand::UseModelDefaults => {
                if let Some(model) = self.model.loaded() {
                    let (source, defaults) = (model.source.clone(), model.info.defaults);
                    self.state.apply_model_defaults(&source, &defaults);
                }
            }
            UiCommand::PickInitImage => {
                if let Some(path) = self.desktop.pick_init_image() {
                    self.files.send(FileRequest::Open {
                        path,
                        purpose: OpenPurpose::InitImage,
                    });
                }
            }
            UiCommand::ClearInitImage => {
                self.remove_mask();
                self.init_image = None;
            }
            UiCommand::AddControlUnit
            | UiCommand::RemoveControlUnit(_)
            | UiCommand::PickControlNetFolder(_)
            | UiCommand::PickControlNetFile(_)
            | UiCommand::PickControlImage(_)
            | UiCommand::UseStartAsControlImage(_)
            | UiCommand::UseShownAsControlImage(_)
            | UiCommand::ClearControlImage(_) => self.apply_control_command(ctx, command),
            UiCommand::UseShownAsInitImage => self.use_shown_as_init_image(ctx),
            UiCommand::Inpaint => self.start_inpainting(ctx),
            UiCommand::InpaintShown => {
                self.use_shown_as_init_image(ctx);
                self.start_inpainting(ctx);
            }
            UiCommand::FinishMask => self.mask_view.open = false,
            UiCommand::RemoveMask => self.remove_mask(),
            UiCommand::EditMask(edit) => self.edit_mask(edit),
            UiCommand::Outpaint(sides) => self.outpaint(ctx, sides),
            UiCommand::PasteParameters(text) => self.paste_parameters(&text),
            UiCommand::DropFiles { paths, target } => self.drop_files(paths, target),
            UiCommand::PasteImage { image, target } => self.paste_image(ctx, &image, target),
            UiCommand::PickStylesFile => self.pick_styles_file(),
            UiCommand::ReloadStyles => self.reload_styles(),
            UiCommand::SaveStyle(name) => self.save_style(name),
            UiCommand::DeleteStyle(name) => self.delete_style(&name),
            UiCommand::ApplyStylesToPrompts => self.apply_styles_to_prompts(),
            UiCommand::ChangeTheme(theme) => {
                self.state.theme = theme;
                panels::style::apply(ctx, theme);
            }
            UiCommand::ShowEntry(id) => self.show_entry(ctx, id),
            UiCommand::ShowLive => {
                self.viewer.follow_run = true;
                self.viewer.show_live();
            }
            UiCommand::ReuseParameters => self.reuse_shown_parameters(),
            UiCommand::CopySeed => {
                if let Some(seed) = self.shown_entry().and_then(|e| e.seed()) {
                    ctx.copy_text(seed.to_string());
                    self.notices.info(format!("Seed {seed} copied"));
                }
            }
            UiCommand::CopyImage => {
                if let Some(full) = self.viewer.shown_full() {
                    ctx.copy_image(history::fit_for_texture(&full.image, usize::MAX));
                    self.notices.info("Image copied");
                }
            }
            UiCommand::SaveAs => self.save_shown_as(),
            UiCommand::ShowInFolder(path) => {
                if let Err(message) = self.desktop.show_in_folder(&path) {
                    self.notices.error("Cannot show the file", message, None);
                }
            }
            UiCommand::PickOutputFolder => {
                if let Some(folder) = self.desktop.pick_output_folder(&self.state.output_dir) {
                    self.state.output_dir = folder;
                    self.scan_output_folder();
                }
            }
            UiCommand::OpenOutputFolder => {
                // The worker creates the folder with the first image; make it now so the
                // file manager has something to open.
                let folder = self.state.output_dir.clone();
                self.open_folder(&folder, "output folder");
            }
            UiCommand::DismissNotice(id) => self.notices.dismiss(id),
            UiCommand::ModelManager(action) => self.apply_manager_action(action),
        }
    }

    /// Creates `folder` if needed and shows it in the file manager; `what` names it in errors.
    fn open_folder(&mut self, folder: &Path, what: &str) {
        if let Err(err) = std::fs::create_dir_all(folder) {
            self.notices.error(
                format!("Cannot create the {what}"),
                format!("{}: {err}", folder.display()),
                Some("Choose another folder.".into()),
            );
        } else if let Err(message) = self.desktop.show_in_folder(folder) {
            self.notices
                .error(format!("Cannot open the {what}"), message, None);
        }
    }

    fn set_vae(&mut self, vae: Option<PathBuf>) {
        if let Some(file) = &vae {
            self.state.remember_vae(file);
        }
        self.state.vae = vae.clone();
        self.worker.send(Command::SetVae(vae));
    }

    /// Tells the worker about the LoRA and embeddings folders and lists the LoRA folder.
    fn folders_changed(&mut self) {
        self.worker
            .send(Command::SetFolders(self.state.add_on_folders()));
        self.list_loras();
    }

    fn list_loras(&mut self) {
        let folder = self.state.lora_folder_in_use();
        self.loras = LoraListing {
            folder: folder.clone(),
            files: Vec::new(),
            status: ListingStatus::Reading,
        };
        match folder {
            Some(folder) => self.files.send(FileRequest::ListLoras { folder }),
            None => self.loras.status = ListingStatus::Ready,
        }
    }

    fn load_model(&mut self, source: ModelSource) {
        if let ModelSource::Folder(path) = &source {
            self.state.remember_model(path);
        }
        self.state.model = Some(source.clone());
        self.model = ModelStatus::Loading {
            source: source.clone(),
            download: None,
        };
        self.worker.send(Command::LoadModel(source));
    }

    fn shown_entry(&self) -> Option<&history::HistoryEntry> {
        self.viewer
            .shown_entry()
            .and_then(|id| self.history.get(id))
    }

    fn show_entry(&mut self, ctx: &egui::Context, id: u64) {
        let Some(entry) = self.history.get(id) else {
            return;
        };
        self.viewer.follow_run = false;
        self.viewer.show_entry(id);
        if self.viewer.shown_full().is_some() {
            return;
        }
        match (&entry.unsaved, &entry.path) {
            (Some(image), _) => {
                let image = image.clone();
                self.viewer.set_full(ctx, id, image);
            }
            (None, Some(path)) => self.files.send(FileRequest::Open {
                path: path.clone(),
                purpose: OpenPurpose::View { entry: id },
            }),
            (None, None) => {}
        }
    }

    fn save_shown_as(&mut self) {
        let Some(full) = self.viewer.shown_full() else {
            return;
        };
        let image = full.image.clone();
        let (name, parameters) = match self.history.get(full.entry) {
            Some(entry) => (entry.suggested_file_name(), entry.parameters.clone()),
            None => ("latent-studio.png".to_string(), String::new()),
        };
        if let Some(path) = self.desktop.save_png_as(&self.state.output_dir, &name) {
            self.files.send(FileRequest::Export {
                path,
                image,
                parameters,
            });
        }
    }

    fn scan_output_folder(&mut self) {
        self.scan_generation += 1;
        self.history.forget_listed();
        self.files.send(FileRequest::ScanFolder {
            folder: self.state.output_dir.clone(),
            generation: self.scan_generation,
        });
    }
}

impl eframe::App for LatentStudioApp {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        self.poll_worker(ctx);
        self.watch_engine();
        self.poll_files(ctx);
        self.poll_model_lookup();
        self.pump_queue();
        if let Some(at) = self.notices.expire(Instant::now()) {
            ctx.request_repaint_after(at.saturating_duration_since(Instant::now()));
        }
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let ctx = ui.ctx().clone();
        let mut commands = Vec::new();
        self.held_drop.hold_until_pointer_known(&ctx);
        self.shortcuts(&ctx, &mut commands);

        let controls = panels::controls::ControlsView {
            model: &self.model,
            catalog: self.catalog,
            run: self.run.as_ref(),
            init_image: self.init_image.as_ref(),
            mask_editing: self.mask_editing(),
            loras: &self.loras,
            styles: &self.styles,
            control_pictures: &self.control_pictures,
            has_shown_image: self.viewer.shown_full().is_some(),
            focus_prompt: std::mem::take(&mut self.focus_prompt),
            server_models: &self.server_models,
            queue: &self.queue,
        };
        egui::Panel::left("controls")
            .resizable(true)
            .default_size(340.0)
            .size_range(280.0..=520.0)
            .show(ui, |ui| {
                commands.extend(panels::controls::show(
                    ui,
                    &mut self.state,
                    &mut self.tokens,
                    &controls,
                ));
            });

        egui::Panel::bottom("history")
            .resizable(false)
            .show(ui, |ui| {
                commands.extend(panels::history_strip::show(
                    ui,
                    &self.history,
                    self.viewer.shown_entry(),
                ));
            });

        let canvas = panels::canvas::CanvasView {
            model: &self.model,
            catalog: self.catalog,
            run: self.run.as_ref(),
            history: &self.history,
            notices: &self.notices,
            engine_stopped: self.engine_stopped,
            upscalers: &self.state.hires.recent_upscalers.clone(), // the mask canvas edits state
            map_download: self.control_pictures.download.as_ref(),
        };
        commands.extend(panels::queue::panel(
            ui,
            &self.queue,
            &mut self.queue_thumbnails,
            self.run.as_ref(),
        ));
        let mask_slot = self.init_image.as_mut().filter(|_| self.mask_view.open);
        egui::CentralPanel::default().show(ui, |ui| match mask_slot {
            Some(slot) if slot.mask.is_some() => {
                inpaint::sync_mask_textures(&ctx, slot);
                commands.extend(panels::mask_canvas::show(
                    ui,
                    &mut self.mask_view,
                    &mut self.state,
                    slot,
                    &canvas,
                ));
            }
            _ => commands.extend(panels::canvas::show(ui, &mut self.viewer, &canvas)),
        });

        panels::canvas::drop_overlay(&ctx);
        commands.extend(panels::model_manager::show(&ctx, &self.model_manager));
        // Here rather than in `logic`: while the window is hidden `logic` still runs, but
        // sees the last shown frame's input, drops included.
        let unclaimed = arrivals::unclaimed(&ctx, &commands);
        commands.extend(unclaimed);

        for command in commands {
            self.apply(&ctx, command);
        }
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, eframe::APP_KEY, &self.state);
    }

    fn on_exit(&mut self, _gl: Option<&eframe::glow::Context>) {
        // Stop the running image at its next step instead of finishing the batch; every image
        // finished so far is already on disk. Dropping the worker handle then joins it.
        if let Some(run) = &self.run {
            self.worker.cancel(run.job);
        }
    }
}
