//! Settings from an A1111 `parameters` text (a PNG made by us, A1111, Forge or civitai)
//! back into the panels.

use std::path::{Path, PathBuf};

use crate::engine::Catalog;
use crate::engine::GenerationParameters;
use crate::engine::MaskedContent;
use crate::engine::ModelSource;
use crate::engine::PromptSyntax;
use crate::engine::SchedulerKind;
use crate::engine::{controlnet_repo_id, ControlMode, ControlPreprocessor};

use super::loras::{lora_name, tagged_lora_names, LoraListing};
use super::state::{
    snap_to_grid, ControlUnitSettings, State, MAX_BATCH, MAX_CLIP_SKIP, MAX_CONTROL_WEIGHT,
    MAX_GUIDANCE, MAX_INPAINT_PADDING, MAX_MASK_BLUR, MAX_STEPS,
};

/// The value of an extra `Key: value` pair (`Clip skip`, `VAE`, …), keys compared without
/// regard to case as tools differ in capitalisation.
pub fn extra_value<'a>(params: &'a GenerationParameters, key: &str) -> Option<&'a str> {
    params
        .extra
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v.trim())
}

/// Copies prompt, negative prompt, steps, CFG, seed (locked, since the point is to get the
/// same image again), size, sampler, denoising strength, clip skip, prompt syntax and the
/// VAE (when it is a file used here before) into `state`. Returns what could not be taken
/// over, one sentence each, for the user to see.
pub fn apply_parameters(state: &mut State, params: &GenerationParameters) -> Vec<String> {
    let mut skipped = Vec::new();
    state.prompt = params.prompt.clone();
    state.negative_prompt = params.negative_prompt.clone();
    // A recorded prompt already holds its styles: applying them again would double them.
    state.selected_styles.clear();
    state.steps = params.steps.clamp(1, MAX_STEPS);
    if params.cfg_scale.is_finite() {
        state.guidance = params.cfg_scale.clamp(0.0, MAX_GUIDANCE);
    }
    state.seed = params.seed;
    state.seed_locked = true;
    if params.width > 0 && params.height > 0 {
        state.width = snap_to_grid(params.width);
        state.height = snap_to_grid(params.height);
        if (state.width, state.height) != (params.width, params.height) {
            skipped.push(format!(
                "Size {}×{} is not a multiple of 8; using {}×{}.",
                params.width, params.height, state.width, state.height
            ));
        }
    }
    match SchedulerKind::from_a1111(&params.sampler, params.schedule_type.as_deref()) {
        Some(kind) => state.scheduler = kind,
        None => {
            let label = match &params.schedule_type {
                Some(schedule) => format!("{} ({schedule})", params.sampler),
                None => params.sampler.clone(),
            };
            skipped.push(format!(
                "Sampler \"{label}\" is not available here; kept {}.",
                state.scheduler.name()
            ));
        }
    }
    if let Some(strength) = params.denoising_strength {
        if strength > 0.0 && strength <= 1.0 {
            state.strength = strength;
        }
    }
    state.batch_count = state.batch_count.clamp(1, MAX_BATCH);

    // A1111 writes `Clip skip` only above 1, so its absence means 1.
    state.clip_skip = match extra_value(params, "Clip skip") {
        None => 1,
        Some(text) => match text.parse::<usize>() {
            Ok(skip) if (1..=MAX_CLIP_SKIP).contains(&skip) => skip,
            _ => {
                skipped.push(format!(
                    "Clip skip \"{text}\" is not 1 to {MAX_CLIP_SKIP}; using 1."
                ));
                1
            }
        },
    };
    // A1111 writes the variation seed only when its strength is above 0.
    let variation = extra_value(params, "Variation seed").and_then(|s| s.parse::<u64>().ok());
    let variation_strength =
        extra_value(params, "Variation seed strength").and_then(|s| s.parse::<f64>().ok());
    match (variation, variation_strength) {
        (Some(seed), Some(strength)) if (0.0..=1.0).contains(&strength) => {
            state.variation_seed = seed;
            state.variation_strength = strength;
        }
        _ => state.variation_strength = 0.0,
    }
    skipped.extend(restore_control_units(state, params));
    state.prompt_syntax = match extra_value(params, "Prompt syntax") {
        Some(name) if name.eq_ignore_ascii_case(PromptSyntax::Plain.name()) => PromptSyntax::Plain,
        _ => PromptSyntax::A1111,
    };
    // No `VAE` key means the model's own VAE or one the tool did not record, so the VAE in
    // use is kept (A1111 does the same when pasting parameters).
    if let Some(wanted) = extra_value(params, "VAE") {
        match known_vae(state, wanted) {
            Some(path) => state.vae = Some(path),
            None => skipped.push(format!(
                "VAE \"{wanted}\" is not among the VAE files chosen here; kept {}. Choose it under VAE to use it.",
                state.vae.as_deref().map_or_else(|| "the model's own".to_string(), file_label)
            )),
        }
    }
    skipped.extend(apply_inpaint_parameters(state, params));
    skipped.extend(super::hires::apply_hires_parameters(state, params));
    skipped
}

/// A1111's inpainting keys. It writes `Mask blur` for every masked run, `Inpaint area` and
/// `Masked area padding` only for "Only masked", and `Masked content` only when not the
/// original; so an image with `Mask blur` and without the others used the defaults. An image
/// without `Mask blur` was not inpainted and leaves the inpainting settings as they are.
fn apply_inpaint_parameters(state: &mut State, params: &GenerationParameters) -> Vec<String> {
    let mut skipped = Vec::new();
    let Some(blur) = extra_value(params, "Mask blur") else {
        return skipped;
    };
    match blur.parse::<usize>() {
        Ok(blur) if blur <= MAX_MASK_BLUR => state.mask_blur = blur,
        _ => skipped.push(format!(
            "Mask blur \"{blur}\" is not 0 to {MAX_MASK_BLUR}; kept {}.",
            state.mask_blur
        )),
    }
    state.inpaint_only_masked = match extra_value(params, "Inpaint area") {
        None => false,
        Some(area) if area.eq_ignore_ascii_case("Only masked") => true,
        Some(area) if area.eq_ignore_ascii_case("Whole picture") => false,
        Some(area) => {
            skipped.push(format!(
                "Inpaint area \"{area}\" is not known here; using the whole picture."
            ));
            false
        }
    };
    if let Some(padding) = extra_value(params, "Masked area padding") {
        match padding.parse::<usize>() {
            Ok(padding) if padding <= MAX_INPAINT_PADDING => state.inpaint_padding = padding,
            _ => skipped.push(format!(
                "Masked area padding \"{padding}\" is not 0 to {MAX_INPAINT_PADDING}; kept {}.",
                state.inpaint_padding
            )),
        }
    }
    state.masked_content = match extra_value(params, "Masked content") {
        None => MaskedContent::Original,
        Some(text) => MaskedContent::parse(text).unwrap_or_else(|| {
            skipped.push(format!(
                "Masked content \"{text}\" is not known here; using the original."
            ));
            MaskedContent::Original
        }),
    };
    skipped
}

/// The current or a recent VAE file named `wanted` (with or without its extension).
fn known_vae(state: &State, wanted: &str) -> Option<PathBuf> {
    let matches = |path: &&PathBuf| {
        let name = path.file_name().map(|n| n.to_string_lossy());
        let stem = path.file_stem().map(|n| n.to_string_lossy());
        name.is_some_and(|n| n.eq_ignore_ascii_case(wanted))
            || stem.is_some_and(|s| s.eq_ignore_ascii_case(wanted))
    };
    state
        .vae
        .iter()
        .chain(&state.recent_vaes)
        .find(matches)
        .cloned()
}

fn file_label(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// `Lora hashes: "detail: 0123456789ab, style: …"` as `(name, hash)` pairs.
pub fn lora_hashes(params: &GenerationParameters) -> Vec<(String, String)> {
    let Some(list) = extra_value(params, "Lora hashes") else {
        return Vec::new();
    };
    list.split(',')
        .filter_map(|pair| {
            // The hash has no colon; a name may (A1111 does not forbid it).
            let (name, hash) = pair.rsplit_once(':')?;
            let name = name.trim();
            (!name.is_empty()).then(|| (name.to_string(), hash.trim().to_string()))
        })
        .collect()
}

/// Sets the LoRA list to what made the image: the prompt's own tags bring their LoRAs, so
/// the list switches off every entry except the LoRAs `Lora hashes` names without a tag
/// (merged from another tool's list). Returns a sentence per LoRA that is not in the folder
/// and per list entry switched off.
pub fn restore_lora_choices(
    state: &mut State,
    params: &GenerationParameters,
    listing: &LoraListing,
) -> Vec<String> {
    let mut notes = Vec::new();
    let tagged: Vec<String> = tagged_lora_names(&params.prompt, state.prompt_syntax)
        .into_iter()
        .map(|name| name.to_lowercase())
        .collect();
    let wanted: Vec<String> = lora_hashes(params)
        .into_iter()
        .map(|(name, _)| name)
        .filter(|name| !tagged.contains(&name.to_lowercase()))
        .collect();
    let mut wanted_files = Vec::new();
    for name in &wanted {
        match listing.file_named(name) {
            Some(file) => wanted_files.push(file.to_string()),
            None => notes.push(format!(
                "LoRA {name} not found in {}.",
                listing.folder.as_deref().map_or_else(
                    || "the LoRA folder".to_string(),
                    |f| f.display().to_string()
                )
            )),
        }
    }
    let mut switched_off = Vec::new();
    for (file, choice) in &mut state.loras {
        if choice.enabled && !wanted_files.contains(file) {
            choice.enabled = false;
            switched_off.push(lora_name(file).to_string());
        }
    }
    for file in wanted_files {
        state.loras.entry(file).or_default().enabled = true;
    }
    if !switched_off.is_empty() {
        notes.push(format!(
            "Switched off in the LoRA list (the image did not use them): {}.",
            switched_off.join(", ")
        ));
    }
    notes
}

/// The model a `Model` name stands for: the current model, a recent model folder or file
/// (by folder name or file stem, which is how the worker names them), or a catalog hub id.
pub fn model_by_name(
    name: &str,
    current: Option<&ModelSource>,
    recent: &[PathBuf],
    catalog: &Catalog,
) -> Option<ModelSource> {
    let name = name.trim();
    let local_name = |path: &Path| {
        let stem = if super::loras::is_safetensors(path) {
            path.file_stem()
        } else {
            path.file_name()
        };
        stem.map(|s| s.to_string_lossy().into_owned())
    };
    let named = |source: &ModelSource| match source {
        ModelSource::Hub(id) => id.eq_ignore_ascii_case(name),
        ModelSource::Folder(path) => local_name(path).is_some_and(|n| n.eq_ignore_ascii_case(name)),
        ModelSource::Server(title) => {
            local_name(Path::new(title)).is_some_and(|n| n.eq_ignore_ascii_case(name))
        }
    };
    if let Some(current) = current.filter(|c| named(c)) {
        return Some(current.clone());
    }
    if let Some(path) = recent
        .iter()
        .find(|path| named(&ModelSource::Folder(path.to_path_buf())))
    {
        return Some(ModelSource::Folder(path.clone()));
    }
    catalog
        .entries()
        .iter()
        .find(|entry| entry.id.eq_ignore_ascii_case(name))
        .map(|entry| ModelSource::Hub(entry.id.clone()))
}

/// Whether A1111's short `Model hash` (the first 10 hex digits of the file's SHA-256) is
/// that of `sha256`. Older 8-digit hashes used another algorithm and never match.
pub fn hash_matches(short: &str, sha256: &str) -> bool {
    let short = short.trim();
    short.len() >= 10
        && sha256
            .get(..short.len())
            .is_some_and(|prefix| prefix.eq_ignore_ascii_case(short))
}

/// `preprocessor` with the `Threshold A` / `Threshold B` of its record (A1111 writes
/// `100.0`); as A1111 does, a value out of the setting's range leaves its default, and
/// preprocessors without settings ignore them (A1111 records -1 or a value for every unit).
fn with_recorded_thresholds<'a>(
    preprocessor: ControlPreprocessor,
    field: &dyn Fn(&str) -> Option<&'a str>,
) -> ControlPreprocessor {
    let settings = preprocessor.settings();
    let values: Vec<Option<f64>> = ["Threshold A", "Threshold B"]
        .iter()
        .zip(&settings)
        .map(|(key, _)| field(key).and_then(|v| v.parse::<f64>().ok()))
        .collect();
    // One value at a time, so that a bad one leaves only its own setting at the default.
    values
        .iter()
        .enumerate()
        .fold(preprocessor, |current, (index, value)| {
            let mut one = vec![None; index + 1];
            one[index] = *value;
            current.with_settings(&one).unwrap_or(current)
        })
}

/// sd-webui-controlnet's `ControlNet N: "Module: canny, Model: name, Weight: 1, …"` records,
/// as units: the ControlNet by name among the recent ones, the picture left to the user
/// (images don't carry their control pictures). Returns sentences for what was not found.
pub fn restore_control_units(state: &mut State, params: &GenerationParameters) -> Vec<String> {
    let mut skipped = Vec::new();
    let mut units = Vec::new();
    for n in 0..crate::app::state::MAX_CONTROL_UNITS {
        let Some(record) = extra_value(params, &format!("ControlNet {n}")) else {
            continue;
        };
        let fields: Vec<(&str, &str)> = record
            .split(", ")
            .filter_map(|field| field.split_once(": "))
            .map(|(k, v)| (k.trim(), v.trim()))
            .collect();
        let field = |key: &str| fields.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
        let number = |key: &str, default: f64| {
            field(key)
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|v| v.is_finite())
                .unwrap_or(default)
        };
        let mut unit = ControlUnitSettings {
            weight: number("Weight", 1.0).clamp(0.0, MAX_CONTROL_WEIGHT),
            start: number("Guidance Start", 0.0).clamp(0.0, 1.0),
            end: number("Guidance End", 1.0).clamp(0.0, 1.0),
            mode: field("Control Mode")
                .and_then(ControlMode::from_a1111_label)
                .unwrap_or_default(),
            preprocessor: field("Module")
                .and_then(ControlPreprocessor::parse)
                .map(|p| with_recorded_thresholds(p, &field))
                .unwrap_or(ControlPreprocessor::None),
            ..Default::default()
        };
        if let Some(module) = field("Module").filter(|m| ControlPreprocessor::parse(m).is_none()) {
            skipped.push(format!(
                "ControlNet {n}: preprocessor \"{module}\" is not available here; make its map elsewhere and use None."
            ));
        }
        if let Some(model) = field("Model") {
            // A1111 writes `name [hash]`.
            let name = model.split(" [").next().unwrap_or(model);
            unit.model = state
                .recent_controlnets
                .iter()
                .find(|path| {
                    path.file_stem()
                        .is_some_and(|s| s.to_string_lossy() == name)
                        || path
                            .file_name()
                            .is_some_and(|s| s.to_string_lossy() == name)
                })
                .cloned()
                // A hub ControlNet is recorded by its repository id, which names it anywhere.
                .or_else(|| controlnet_repo_id(Path::new(name)).map(PathBuf::from));
            if unit.model.is_none() {
                skipped.push(format!(
                    "ControlNet {n}: {name} is not among the ControlNets opened before; choose it."
                ));
            }
        }
        units.push(unit);
    }
    if !units.is_empty() {
        state.control_units = units;
        skipped.push("Choose each ControlNet unit's picture again.".into());
    }
    skipped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_restore_settings_and_report_what_was_skipped() {
        let text = "a lighthouse at dusk\nNegative prompt: fog\nSteps: 31, Sampler: DPM++ SDE, Schedule type: Karras, CFG scale: 6.5, Seed: 987654, Size: 516x640, Model: x";
        let params = GenerationParameters::parse_a1111(text).expect("parse");
        let mut state = State::default();
        let skipped = apply_parameters(&mut state, &params);
        assert_eq!(state.prompt, "a lighthouse at dusk");
        assert_eq!(state.negative_prompt, "fog");
        assert_eq!(state.steps, 31);
        assert_eq!(state.guidance, 6.5);
        assert_eq!(state.seed, 987_654);
        assert!(state.seed_locked);
        assert_eq!((state.width, state.height), (520, 640));
        assert_eq!(state.scheduler, SchedulerKind::Default);
        assert_eq!(skipped.len(), 2, "{skipped:?}");
        assert_eq!(state.clip_skip, 1);
        assert_eq!(state.prompt_syntax, PromptSyntax::A1111);
    }

    #[test]
    fn clip_skip_syntax_and_known_vaes_are_restored() {
        let text = "a cat\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 512x512, VAE: kl-f8.safetensors, Clip skip: 2, Prompt syntax: plain";
        let params = GenerationParameters::parse_a1111(text).expect("parse");
        let mut state = State {
            recent_vaes: vec![
                "/vaes/other.safetensors".into(),
                "/vaes/kl-f8.safetensors".into(),
            ],
            ..State::default()
        };
        let skipped = apply_parameters(&mut state, &params);
        assert!(skipped.is_empty(), "{skipped:?}");
        assert_eq!(state.clip_skip, 2);
        assert_eq!(state.prompt_syntax, PromptSyntax::Plain);
        assert_eq!(state.vae, Some(PathBuf::from("/vaes/kl-f8.safetensors")));

        let unknown = text
            .replace("kl-f8", "mystery")
            .replace("Clip skip: 2", "Clip skip: 99");
        let params = GenerationParameters::parse_a1111(&unknown).expect("parse");
        let skipped = apply_parameters(&mut state, &params);
        assert_eq!(skipped.len(), 2, "{skipped:?}");
        assert!(skipped[1].contains("mystery"), "{skipped:?}");
        assert_eq!(
            state.vae,
            Some(PathBuf::from("/vaes/kl-f8.safetensors")),
            "kept"
        );
        assert_eq!(state.clip_skip, 1);
    }

    #[test]
    fn inpainting_keys_restore_the_mask_settings() {
        let base = "a cat\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 512x512, Denoising strength: 0.9";
        let inpainted = format!(
            "{base}, Mask blur: 8, Inpaint area: Only masked, Masked area padding: 48, Masked content: latent noise"
        );
        let params = GenerationParameters::parse_a1111(&inpainted).expect("parse");
        let mut state = State::default();
        let skipped = apply_parameters(&mut state, &params);
        assert!(skipped.is_empty(), "{skipped:?}");
        assert_eq!(state.mask_blur, 8);
        assert!(state.inpaint_only_masked);
        assert_eq!(state.inpaint_padding, 48);
        assert_eq!(state.masked_content, MaskedContent::LatentNoise);
        assert_eq!(state.strength, 0.9);

        // `Mask blur` alone: the other settings were A1111's defaults.
        let params =
            GenerationParameters::parse_a1111(&format!("{base}, Mask blur: 0")).expect("parse");
        apply_parameters(&mut state, &params);
        assert_eq!(state.mask_blur, 0);
        assert!(!state.inpaint_only_masked);
        assert_eq!(
            state.inpaint_padding, 48,
            "padding is kept for the next Only masked"
        );
        assert_eq!(state.masked_content, MaskedContent::Original);

        // Not inpainted: the settings stay as they are.
        state.mask_blur = 12;
        let params = GenerationParameters::parse_a1111(base).expect("parse");
        apply_parameters(&mut state, &params);
        assert_eq!(state.mask_blur, 12);

        let odd =
            format!("{base}, Mask blur: 999, Inpaint area: Sideways, Masked content: glitter");
        let params = GenerationParameters::parse_a1111(&odd).expect("parse");
        let skipped = apply_parameters(&mut state, &params);
        assert_eq!(skipped.len(), 3, "{skipped:?}");
        assert_eq!(state.mask_blur, 12);
    }

    #[test]
    fn lora_hashes_enable_untagged_list_entries_and_name_missing_ones() {
        use super::super::loras::ListingStatus;
        use super::super::state::LoraChoice;

        let text = "a cat <lora:tagged:0.5>\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 512x512, Lora hashes: \"tagged: 111111111111, Listed: 222222222222, missing: 333333333333\"";
        let params = GenerationParameters::parse_a1111(text).expect("parse");
        assert_eq!(
            lora_hashes(&params),
            vec![
                ("tagged".to_string(), "111111111111".to_string()),
                ("Listed".to_string(), "222222222222".to_string()),
                ("missing".to_string(), "333333333333".to_string()),
            ]
        );
        let listing = LoraListing {
            folder: Some("/loras".into()),
            files: vec![
                "listed.safetensors".into(),
                "tagged.safetensors".into(),
                "unrelated.safetensors".into(),
            ],
            status: ListingStatus::Ready,
        };
        let mut state = State::default();
        state.loras.insert(
            "unrelated.safetensors".into(),
            LoraChoice {
                enabled: true,
                multiplier: 0.3,
            },
        );
        let notes = restore_lora_choices(&mut state, &params, &listing);
        assert!(state.lora_choice("listed.safetensors").enabled);
        assert!(
            !state.lora_choice("tagged.safetensors").enabled,
            "the tag applies it"
        );
        assert_eq!(
            state.lora_choice("unrelated.safetensors"),
            LoraChoice {
                enabled: false,
                multiplier: 0.3
            }
        );
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert_eq!(notes[0], "LoRA missing not found in /loras.");
        assert!(notes[1].contains("unrelated"), "{notes:?}");
    }

    #[test]
    fn models_are_found_by_name_and_hash() {
        let catalog = Catalog::builtin();
        let recent = vec![
            PathBuf::from("/models/dreamshaper_8.safetensors"),
            PathBuf::from("/models/my-diffusers-folder"),
        ];
        let hub = ModelSource::Hub(catalog.default_entry().id.clone());
        assert_eq!(
            model_by_name("dreamshaper_8", Some(&hub), &recent, catalog),
            Some(ModelSource::Folder(recent[0].clone()))
        );
        assert_eq!(
            model_by_name("my-diffusers-folder", None, &recent, catalog),
            Some(ModelSource::Folder(recent[1].clone()))
        );
        assert_eq!(
            model_by_name(&catalog.default_entry().id, None, &recent, catalog),
            Some(hub.clone())
        );
        assert_eq!(
            model_by_name("v1-5-pruned-emaonly", Some(&hub), &recent, catalog),
            None
        );

        let sha = "6ce0161689b3853acaa03779ec93eafe75a02f4ced659bee03f50797806fa2fa";
        assert!(hash_matches("6ce0161689", sha));
        assert!(hash_matches("6CE0161689", sha));
        assert!(
            !hash_matches("6ce01616", sha),
            "8-digit legacy hashes are another algorithm"
        );
        assert!(!hash_matches("0000000000", sha));
    }

    #[test]
    fn a_hub_controlnet_is_restored_by_its_repository_id() {
        let text = "a house\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 512x512, ControlNet 0: \"Module: canny, Model: lllyasviel/control_v11p_sd15_canny, Weight: 0.8, Guidance Start: 0, Guidance End: 1\"";
        let params = GenerationParameters::parse_a1111(text).expect("parse");
        let mut state = State::default();
        let skipped = restore_control_units(&mut state, &params);
        assert_eq!(
            state.control_units[0].model,
            Some(PathBuf::from("lllyasviel/control_v11p_sd15_canny")),
            "{skipped:?}"
        );
        assert!(
            !skipped.iter().any(|s| s.contains("not among")),
            "{skipped:?}"
        );
    }

    /// sd-webui-controlnet's own record (every field, floats as `32.0`) brings the
    /// preprocessor back with its setting; out-of-range values leave the default, as there.
    #[test]
    fn a1111_preprocessor_records_restore_their_thresholds() {
        let record = |module: &str, a: &str, b: &str| {
            format!("a house\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 512x512, ControlNet 0: \"Module: {module}, Model: None, Weight: 1.0, Resize Mode: Crop and Resize, Processor Res: 512, Threshold A: {a}, Threshold B: {b}, Guidance Start: 0.0, Guidance End: 1.0, Pixel Perfect: False, Control Mode: Balanced\"")
        };
        let restored = |text: String| {
            let params = GenerationParameters::parse_a1111(&text).expect("parse");
            let mut state = State::default();
            let skipped = restore_control_units(&mut state, &params);
            assert!(
                !skipped.iter().any(|s| s.contains("preprocessor")),
                "{skipped:?}"
            );
            state.control_units[0].preprocessor
        };
        assert_eq!(
            restored(record("scribble_xdog", "20.0", "-1.0")),
            ControlPreprocessor::ScribbleXdog { threshold: 20 }
        );
        assert_eq!(
            restored(record("scribble_xdog", "90.0", "-1.0")),
            ControlPreprocessor::ScribbleXdog { threshold: 32 }
        );
        assert_eq!(
            restored(record("threshold", "0.0", "-1.0")),
            ControlPreprocessor::Threshold { level: 0 }
        );
        assert_eq!(
            restored(record("canny", "50.0", "150.0")),
            ControlPreprocessor::Canny { low: 50, high: 150 }
        );
        assert_eq!(
            restored(record("t2ia_color_grid", "-1.0", "-1.0")),
            ControlPreprocessor::ColorGrid
        );
        assert_eq!(
            restored(record("blur_gaussian", "4.25", "-1.0")),
            ControlPreprocessor::BlurGaussian {
                sigma_hundredths: 425
            }
        );
        assert_eq!(
            restored(record("tile_resample", "2.5", "-1.0")),
            ControlPreprocessor::TileResample {
                rate_hundredths: 250
            }
        );
    }
}
