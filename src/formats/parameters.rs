//! The AUTOMATIC1111 `parameters` text ("infotext") that A1111, Forge, civitai and most
//! Stable Diffusion tools store in a PNG `tEXt` chunk and paste into their prompt boxes.
//!
//! Layout, as A1111 writes it:
//!
//! ```text
//! a castle on a hill, (masterpiece:1.2)
//! second prompt line
//! Negative prompt: blurry, lowres
//! Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 42, Size: 512x768, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Denoising strength: 0.6, Version: v1.10.1
//! ```
//!
//! The `Negative prompt:` line is left out when it is empty. The last line is a list of
//! `Key: value` pairs; a value containing `,`, `:` or a newline is written as a JSON string
//! (A1111's `quote()`). When reading, the last line counts as the parameter line only if it
//! holds at least three such pairs (A1111's rule); otherwise the whole text is prompt.

use std::fmt::Write as _;

/// Generation settings in A1111's vocabulary (sampler and schedule labels are kept as
/// strings, e.g. `"DPM++ 2M"` + `"Karras"`, `"Euler a"`).
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationParameters {
    /// Positive prompt (may span several lines).
    pub prompt: String,
    /// Negative prompt; empty when there is none.
    pub negative_prompt: String,
    /// `Steps`.
    pub steps: usize,
    /// `Sampler`, an A1111 label such as `"DPM++ 2M"` or `"Euler a"`.
    pub sampler: String,
    /// `Schedule type`, e.g. `"Karras"`; old files carry it in the sampler name instead
    /// (`"DPM++ 2M Karras"`), which [`parse_a1111`](Self::parse_a1111) splits off.
    pub schedule_type: Option<String>,
    /// `CFG scale`.
    pub cfg_scale: f64,
    /// `Seed`.
    pub seed: u64,
    /// Width of `Size: WxH`.
    pub width: usize,
    /// Height of `Size: WxH`.
    pub height: usize,
    /// `Model` (checkpoint name).
    pub model: Option<String>,
    /// `Model hash` (A1111's short hash).
    pub model_hash: Option<String>,
    /// `Denoising strength` (img2img).
    pub denoising_strength: Option<f64>,
    /// `Version`, e.g. `"latent-studio 0.1.0"`.
    pub version: Option<String>,
    /// Every other `Key: value` pair of the parameter line, in order, values unquoted
    /// (`Hires upscale`, `Lora hashes`, `TI hashes`, `ADetailer model`, …).
    pub extra: Vec<(String, String)>,
}

/// Why a `parameters` text could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParametersError {
    /// The last line is not a parameter line (fewer than three `Key: value` pairs).
    #[error("no A1111 parameter line (\"Steps: …, Sampler: …, …\") at the end of the text")]
    NoParameterLine,
    /// A key every A1111 parameter line has is absent.
    #[error("the parameter line has no \"{0}\"")]
    MissingKey(&'static str),
    /// A key's value does not have the expected form.
    #[error("\"{key}: {value}\": {expected}")]
    InvalidValue {
        /// The key.
        key: String,
        /// The value as found.
        value: String,
        /// What was expected.
        expected: &'static str,
    },
}

/// Schedule names that old A1111 versions folded into the sampler name ("DPM++ 2M Karras"),
/// with the `Schedule type` label they correspond to.
const SCHEDULE_SUFFIXES: [(&str, &str); 9] = [
    (" Karras", "Karras"),
    (" Exponential", "Exponential"),
    (" Polyexponential", "Polyexponential"),
    (" SGMUniform", "SGM Uniform"),
    (" SGM Uniform", "SGM Uniform"),
    (" KL Optimal", "KL Optimal"),
    (" Align Your Steps", "Align Your Steps"),
    (" Uniform", "Uniform"),
    (" Beta", "Beta"),
];

/// A1111's `quote()`: values with `,`, `:` or a newline become JSON strings.
fn quote(value: &str) -> String {
    if value.contains([',', ':', '\n']) {
        serde_json::to_string(value).unwrap_or_else(|_| value.to_string())
    } else {
        value.to_string()
    }
}

/// Numbers as A1111 prints them: integral values without a fractional part (`7`), others in
/// their shortest form (`7.5`, `0.75`).
fn number(value: f64) -> String {
    format!("{value}")
}

/// Python's `\w` (close enough: letters, digits, underscore).
fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn is_key_char(c: char) -> bool {
    is_word(c) || matches!(c, ' ' | '-' | '/')
}

/// Length in bytes of a JSON-style string starting at `s[0] == '"'` (A1111's
/// `"(?:\\.|[^\\"])+"`), or `None` when it does not close.
fn quoted_len(s: &str) -> Option<usize> {
    let mut chars = s.char_indices().skip(1);
    let mut empty = true;
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                chars.next()?;
            }
            '"' if !empty => return Some(i + 1),
            '"' => return None,
            _ => {}
        }
        empty = false;
    }
    None
}

/// Length in bytes of a balanced `[...]` / `{...}` value starting at `s[0]` (JSON strings
/// inside respected), or `None`. Civitai writes its `Civitai resources` JSON unquoted; such a
/// value is kept whole when it is valid JSON (A1111 would cut it at its first comma).
fn bracketed_len(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '[' | '{' => depth += 1,
            ']' | '}' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// Tries A1111's `\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)` at byte `start`;
/// returns (key, raw value, end of the match), or where the next match can start at the
/// earliest: a run of key characters not followed by `:` cannot hold a key at any of its
/// positions, so it is skipped whole (trying each would take time quadratic in its length).
fn pair_at(line: &str, start: usize) -> Result<(&str, &str, usize), usize> {
    let rest = &line[start..];
    let key_start = start + (rest.len() - rest.trim_start().len());
    let after_space = &line[key_start..];
    let Some(first) = after_space.chars().next() else {
        return Err(line.len());
    };
    if !is_word(first) {
        return Err(key_start + first.len_utf8());
    }
    let key_len = after_space
        .char_indices()
        .find(|&(_, c)| !is_key_char(c))
        .map_or(after_space.len(), |(i, _)| i);
    let key = &after_space[..key_len];
    if key.chars().count() < 2 || !after_space[key_len..].starts_with(':') {
        return Err(key_start + key_len);
    }
    let value_area = &after_space[key_len + 1..];
    let value_start = key_start + key_len + 1 + (value_area.len() - value_area.trim_start().len());
    let value_text = &line[value_start..];
    let ends_pair = |len: usize| {
        let after = &value_text[len..];
        after.is_empty() || after.starts_with(',')
    };
    let consume = |len: usize| value_start + len + usize::from(value_text[len..].starts_with(','));
    // JSON-quoted value, then (our extension) an unquoted JSON array / object, then A1111's
    // plain `[^,]*`.
    if value_text.starts_with('"') {
        if let Some(len) = quoted_len(value_text).filter(|&l| ends_pair(l)) {
            return Ok((key, &value_text[..len], consume(len)));
        }
    }
    if value_text.starts_with(['[', '{']) {
        if let Some(len) = bracketed_len(value_text) {
            let trailing = value_text[len..].len() - value_text[len..].trim_start().len();
            let is_json = serde_json::from_str::<serde_json::Value>(&value_text[..len]).is_ok();
            if is_json && ends_pair(len + trailing) {
                return Ok((key, &value_text[..len], consume(len + trailing)));
            }
        }
    }
    let len = value_text.find(',').unwrap_or(value_text.len());
    Ok((key, &value_text[..len], consume(len)))
}

/// All `Key: value` pairs of a line, like A1111's `re_param.findall` (values still raw).
fn find_pairs(line: &str) -> Vec<(&str, &str)> {
    let mut pairs = Vec::new();
    let mut pos = 0;
    while pos < line.len() {
        match pair_at(line, pos) {
            Ok((key, value, end)) => {
                pairs.push((key, value));
                // An empty match at the end cannot loop: `end` is past the key.
                pos = end;
            }
            Err(next) => pos = next.max(pos + 1),
        }
    }
    pairs
}

/// A1111's `unquote()`: a value in double quotes is decoded as JSON when it can be.
fn unquote(raw: &str) -> String {
    if raw.len() >= 2 && raw.starts_with('"') && raw.ends_with('"') {
        if let Ok(s) = serde_json::from_str::<String>(raw) {
            return s;
        }
    }
    raw.trim_end().to_string()
}

fn invalid(key: &str, value: &str, expected: &'static str) -> ParametersError {
    ParametersError::InvalidValue {
        key: key.to_string(),
        value: value.to_string(),
        expected,
    }
}

impl GenerationParameters {
    /// The text A1111 would write for these settings.
    pub fn to_a1111_string(&self) -> String {
        let mut pairs: Vec<(&str, String)> = vec![
            ("Steps", self.steps.to_string()),
            ("Sampler", self.sampler.clone()),
        ];
        if let Some(schedule) = &self.schedule_type {
            pairs.push(("Schedule type", schedule.clone()));
        }
        pairs.push(("CFG scale", number(self.cfg_scale)));
        pairs.push(("Seed", self.seed.to_string()));
        pairs.push(("Size", format!("{}x{}", self.width, self.height)));
        if let Some(hash) = &self.model_hash {
            pairs.push(("Model hash", hash.clone()));
        }
        if let Some(model) = &self.model {
            pairs.push(("Model", model.clone()));
        }
        if let Some(strength) = self.denoising_strength {
            pairs.push(("Denoising strength", number(strength)));
        }
        for (key, value) in &self.extra {
            pairs.push((key.as_str(), value.clone()));
        }
        if let Some(version) = &self.version {
            pairs.push(("Version", version.clone()));
        }

        let mut text = self.prompt.clone();
        if !self.negative_prompt.is_empty() {
            text.push_str("\nNegative prompt: ");
            text.push_str(&self.negative_prompt);
        }
        text.push('\n');
        for (i, (key, value)) in pairs.iter().enumerate() {
            if i > 0 {
                text.push_str(", ");
            }
            let _ = write!(text, "{key}: {}", quote(value));
        }
        text.trim().to_string()
    }

    /// Reads an A1111 / Forge / civitai `parameters` text.
    pub fn parse_a1111(text: &str) -> Result<GenerationParameters, ParametersError> {
        let text = text.trim();
        let mut lines: Vec<&str> = text.split('\n').map(|l| l.trim_end_matches('\r')).collect();
        let last = lines.pop().unwrap_or("");
        let pairs = find_pairs(last);
        if pairs.len() < 3 {
            return Err(ParametersError::NoParameterLine);
        }

        let mut prompt = String::new();
        let mut negative = String::new();
        let mut in_negative = false;
        for line in lines {
            let mut line = line.trim();
            if let Some(rest) = line.strip_prefix("Negative prompt:") {
                in_negative = true;
                line = rest.trim();
            }
            let target = if in_negative {
                &mut negative
            } else {
                &mut prompt
            };
            if !target.is_empty() {
                target.push('\n');
            }
            target.push_str(line);
        }

        let mut steps = None;
        let mut sampler: Option<String> = None;
        let mut schedule_type = None;
        let mut cfg_scale = None;
        let mut seed = None;
        let mut size = None;
        let mut model = None;
        let mut model_hash = None;
        let mut denoising_strength = None;
        let mut version = None;
        let mut extra = Vec::new();
        for (key, raw) in pairs {
            let value = unquote(raw);
            match key {
                "Steps" => {
                    steps = Some(
                        value
                            .parse::<usize>()
                            .map_err(|_| invalid(key, &value, "a whole number"))?,
                    )
                }
                "Sampler" => sampler = Some(value),
                "Schedule type" => schedule_type = Some(value),
                "CFG scale" => {
                    cfg_scale = Some(
                        value
                            .parse::<f64>()
                            .map_err(|_| invalid(key, &value, "a number"))?,
                    )
                }
                "Seed" => {
                    seed = Some(
                        value
                            .parse::<u64>()
                            .map_err(|_| invalid(key, &value, "a whole number ≥ 0"))?,
                    )
                }
                "Size" => {
                    let parsed = value
                        .split_once('x')
                        .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)));
                    size = Some(parsed.ok_or_else(|| invalid(key, &value, "WIDTHxHEIGHT"))?);
                }
                "Model" => model = Some(value),
                "Model hash" => model_hash = Some(value),
                "Denoising strength" => {
                    denoising_strength = Some(
                        value
                            .parse::<f64>()
                            .map_err(|_| invalid(key, &value, "a number"))?,
                    )
                }
                "Version" => version = Some(value),
                _ => extra.push((key.to_string(), value)),
            }
        }

        let steps = steps.ok_or(ParametersError::MissingKey("Steps"))?;
        let mut sampler = sampler.ok_or(ParametersError::MissingKey("Sampler"))?;
        let cfg_scale = cfg_scale.ok_or(ParametersError::MissingKey("CFG scale"))?;
        let seed = seed.ok_or(ParametersError::MissingKey("Seed"))?;
        let (width, height) = size.ok_or(ParametersError::MissingKey("Size"))?;
        if schedule_type.is_none() {
            if let Some((suffix, label)) = SCHEDULE_SUFFIXES
                .iter()
                .find(|(suffix, _)| sampler.len() > suffix.len() && sampler.ends_with(suffix))
            {
                sampler.truncate(sampler.len() - suffix.len());
                schedule_type = Some(label.to_string());
            }
        }
        Ok(GenerationParameters {
            prompt,
            negative_prompt: negative,
            steps,
            sampler,
            schedule_type,
            cfg_scale,
            seed,
            width,
            height,
            model,
            model_hash,
            denoising_strength,
            version,
            extra,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_line_without_pairs_is_read_once() {
        // Trying the key pattern at every position of a 256 kB word took 30 s (each try ran
        // to the end of the word); the run is now skipped whole.
        let word = "a".repeat(crate::formats::png::MAX_PARAMETERS_BYTES);
        assert!(matches!(
            GenerationParameters::parse_a1111(&word),
            Err(ParametersError::NoParameterLine)
        ));
        let line = format!("{word} Steps: 3, Seed: 1, Size: 8x8");
        let pairs = find_pairs(&line);
        assert_eq!(pairs.len(), 3);
        assert_eq!(pairs[0].0.len(), word.len() + " Steps".len());
    }

    fn base() -> GenerationParameters {
        GenerationParameters {
            prompt: "a castle on a hill, (masterpiece:1.2), [blurry]".to_string(),
            negative_prompt: "lowres, bad anatomy".to_string(),
            steps: 20,
            sampler: "DPM++ 2M".to_string(),
            schedule_type: Some("Karras".to_string()),
            cfg_scale: 7.0,
            seed: 42,
            width: 512,
            height: 768,
            model: Some("v1-5-pruned-emaonly".to_string()),
            model_hash: Some("6ce0161689".to_string()),
            denoising_strength: Some(0.6),
            version: Some("latent-studio 0.1.0".to_string()),
            extra: Vec::new(),
        }
    }

    #[test]
    fn writes_like_a1111() {
        assert_eq!(
            base().to_a1111_string(),
            "a castle on a hill, (masterpiece:1.2), [blurry]\n\
             Negative prompt: lowres, bad anatomy\n\
             Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 42, \
             Size: 512x768, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, \
             Denoising strength: 0.6, Version: latent-studio 0.1.0"
        );
    }

    #[test]
    fn omits_empty_negative_and_absent_fields_and_quotes() {
        let p = GenerationParameters {
            prompt: "cat".to_string(),
            negative_prompt: String::new(),
            sampler: "Euler a".to_string(),
            schedule_type: None,
            cfg_scale: 7.5,
            model: Some("my: model, v2".to_string()),
            model_hash: None,
            denoising_strength: None,
            version: None,
            extra: vec![
                (
                    "Lora hashes".to_string(),
                    "add_detail: 7c6bad76eb54".to_string(),
                ),
                ("Clip skip".to_string(), "2".to_string()),
                ("Note".to_string(), "two\nlines \"quoted\"".to_string()),
            ],
            ..base()
        };
        assert_eq!(
            p.to_a1111_string(),
            "cat\nSteps: 20, Sampler: Euler a, CFG scale: 7.5, Seed: 42, Size: 512x768, \
             Model: \"my: model, v2\", Lora hashes: \"add_detail: 7c6bad76eb54\", Clip skip: 2, \
             Note: \"two\\nlines \\\"quoted\\\"\""
        );
    }

    #[test]
    fn round_trips() {
        let cases = vec![
            base(),
            GenerationParameters {
                prompt: "line one\nline two, with: colon".to_string(),
                negative_prompt: "neg one\nneg two".to_string(),
                cfg_scale: 4.25,
                seed: 18_446_744_073_709_551_615,
                extra: vec![
                    ("Hires upscale".to_string(), "2".to_string()),
                    ("Hires upscaler".to_string(), "Latent".to_string()),
                    ("Lora hashes".to_string(), "a: 1, b: 2".to_string()),
                    ("Emoji".to_string(), "猫 🐱 \"q\" \\ back".to_string()),
                ],
                ..base()
            },
            GenerationParameters {
                prompt: String::new(),
                negative_prompt: String::new(),
                schedule_type: None,
                model: None,
                model_hash: None,
                denoising_strength: None,
                version: None,
                ..base()
            },
            GenerationParameters {
                prompt: String::new(),
                negative_prompt: "only negative".to_string(),
                denoising_strength: Some(1.0),
                cfg_scale: 1.0,
                ..base()
            },
        ];
        for p in cases {
            let text = p.to_a1111_string();
            let back = GenerationParameters::parse_a1111(&text)
                .unwrap_or_else(|e| panic!("{e} in {text:?}"));
            assert_eq!(back, p, "{text}");
        }
    }

    #[test]
    fn reads_a1111_txt2img() {
        let text = "masterpiece, best quality, 1girl, (detailed eyes:1.2),\n\
                    <lora:add_detail:0.5>, sunset\n\
                    Negative prompt: (worst quality, low quality:1.4), EasyNegative\n\
                    Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, \
                    Seed: 3367813911, Size: 512x768, Model hash: 7f96a1a9ca, \
                    Model: anything-v5, Denoising strength: 0.5, Clip skip: 2, \
                    Hires upscale: 2, Hires steps: 15, Hires upscaler: R-ESRGAN 4x+ Anime6B, \
                    Lora hashes: \"add_detail: 7c6bad76eb54\", \
                    TI hashes: \"EasyNegative: c74b4e810b03\", Version: v1.9.4";
        let p = GenerationParameters::parse_a1111(text).expect("parse");
        assert_eq!(
            p.prompt,
            "masterpiece, best quality, 1girl, (detailed eyes:1.2),\n<lora:add_detail:0.5>, sunset"
        );
        assert_eq!(
            p.negative_prompt,
            "(worst quality, low quality:1.4), EasyNegative"
        );
        assert_eq!(p.steps, 28);
        assert_eq!(p.sampler, "DPM++ 2M");
        assert_eq!(p.schedule_type.as_deref(), Some("Karras"));
        assert_eq!(p.cfg_scale, 7.0);
        assert_eq!(p.seed, 3_367_813_911);
        assert_eq!((p.width, p.height), (512, 768));
        assert_eq!(p.model_hash.as_deref(), Some("7f96a1a9ca"));
        assert_eq!(p.model.as_deref(), Some("anything-v5"));
        assert_eq!(p.denoising_strength, Some(0.5));
        assert_eq!(p.version.as_deref(), Some("v1.9.4"));
        let extra: Vec<(&str, &str)> = p
            .extra
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            extra,
            [
                ("Clip skip", "2"),
                ("Hires upscale", "2"),
                ("Hires steps", "15"),
                ("Hires upscaler", "R-ESRGAN 4x+ Anime6B"),
                ("Lora hashes", "add_detail: 7c6bad76eb54"),
                ("TI hashes", "EasyNegative: c74b4e810b03"),
            ]
        );
    }

    #[test]
    fn reads_old_sampler_names_and_missing_negative() {
        let text = "a photo of an astronaut riding a horse on mars\n\
                    Steps: 50, Sampler: DPM++ 2M Karras, CFG scale: 7.5, Seed: 1, \
                    Size: 768x512, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly";
        let p = GenerationParameters::parse_a1111(text).expect("parse");
        assert_eq!(p.prompt, "a photo of an astronaut riding a horse on mars");
        assert_eq!(p.negative_prompt, "");
        assert_eq!(p.sampler, "DPM++ 2M");
        assert_eq!(p.schedule_type.as_deref(), Some("Karras"));
        assert_eq!(p.cfg_scale, 7.5);
        assert_eq!((p.width, p.height), (768, 512));
        assert_eq!(p.version, None);
        assert_eq!(p.denoising_strength, None);

        for (name, sampler, schedule) in [
            ("Euler a", "Euler a", None),
            ("DPM++ SDE Karras", "DPM++ SDE", Some("Karras")),
            (
                "DPM++ 2M SDE Exponential",
                "DPM++ 2M SDE",
                Some("Exponential"),
            ),
            ("DDIM", "DDIM", None),
            ("UniPC", "UniPC", None),
        ] {
            let text = format!("x\nSteps: 20, Sampler: {name}, CFG scale: 7, Seed: 5, Size: 64x64");
            let p = GenerationParameters::parse_a1111(&text).expect("parse");
            assert_eq!(p.sampler, sampler);
            assert_eq!(p.schedule_type.as_deref(), schedule);
        }
        // An explicit schedule type wins: the sampler name is left alone.
        let text = "x\nSteps: 20, Sampler: DPM++ 2M Karras, Schedule type: Uniform, CFG scale: 7, \
                    Seed: 5, Size: 64x64";
        let p = GenerationParameters::parse_a1111(text).expect("parse");
        assert_eq!(p.sampler, "DPM++ 2M Karras");
        assert_eq!(p.schedule_type.as_deref(), Some("Uniform"));
    }

    #[test]
    fn reads_forge_and_civitai_strings() {
        // Forge, Windows line endings, ADetailer keys, a quoted prompt inside the params.
        let text = "cinematic photo of a fox\r\n\
                    Negative prompt: cartoon\r\n\
                    Steps: 25, Sampler: Euler, Schedule type: Simple, CFG scale: 1, \
                    Distilled CFG Scale: 3.5, Seed: 123456789, Size: 896x1152, \
                    Model hash: 2f3c5caac0, Model: flux1-dev-bnb-nf4-v2, \
                    ADetailer model: face_yolov8n.pt, ADetailer prompt: \"detailed face, smile\", \
                    ADetailer confidence: 0.3, Version: f2.0.1v1.10.1-previous-313-g8a042934, \
                    Module 1: ae\r\n";
        let p = GenerationParameters::parse_a1111(text).expect("parse");
        assert_eq!(p.prompt, "cinematic photo of a fox");
        assert_eq!(p.negative_prompt, "cartoon");
        assert_eq!(p.sampler, "Euler");
        assert_eq!(p.schedule_type.as_deref(), Some("Simple"));
        assert_eq!(p.cfg_scale, 1.0);
        assert_eq!(
            p.version.as_deref(),
            Some("f2.0.1v1.10.1-previous-313-g8a042934")
        );
        assert!(p.extra.contains(&(
            "ADetailer prompt".to_string(),
            "detailed face, smile".to_string()
        )));
        assert_eq!(
            p.extra.last(),
            Some(&("Module 1".to_string(), "ae".to_string()))
        );

        // civitai: unquoted JSON values kept whole.
        let text = "portrait of a knight\n\
                    Negative prompt: blurry\n\
                    Steps: 30, CFG scale: 5, Sampler: DPM++ 2M SDE Karras, Seed: 987, \
                    Size: 832x1216, Clip skip: 2, Created Date: 2024-05-01T10:00:00.0000000Z, \
                    Civitai resources: [{\"type\":\"checkpoint\",\"modelVersionId\":290640}], \
                    Civitai metadata: {}";
        let p = GenerationParameters::parse_a1111(text).expect("parse");
        assert_eq!(p.sampler, "DPM++ 2M SDE");
        assert_eq!(p.schedule_type.as_deref(), Some("Karras"));
        assert_eq!((p.width, p.height), (832, 1216));
        let get = |k: &str| {
            p.extra
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("Created Date"), Some("2024-05-01T10:00:00.0000000Z"));
        assert_eq!(
            get("Civitai resources"),
            Some("[{\"type\":\"checkpoint\",\"modelVersionId\":290640}]")
        );
        assert_eq!(get("Civitai metadata"), Some("{}"));
        // Written back, such values are quoted and read back the same.
        let again = GenerationParameters::parse_a1111(&p.to_a1111_string()).expect("reparse");
        assert_eq!(again, p);
    }

    #[test]
    fn last_line_rule() {
        // Fewer than three pairs on the last line: it is prompt, not parameters.
        assert_eq!(
            GenerationParameters::parse_a1111("just a prompt\nstyle: anime, mood: calm"),
            Err(ParametersError::NoParameterLine)
        );
        assert_eq!(
            GenerationParameters::parse_a1111(""),
            Err(ParametersError::NoParameterLine)
        );
        // A prompt line with pairs is fine when the parameter line follows it.
        let text = "style: anime, mood: calm, light: soft\nSteps: 20, Sampler: Euler, \
                    CFG scale: 7, Seed: 1, Size: 512x512";
        let p = GenerationParameters::parse_a1111(text).expect("parse");
        assert_eq!(p.prompt, "style: anime, mood: calm, light: soft");
        // Required keys.
        assert_eq!(
            GenerationParameters::parse_a1111("x\nSteps: 20, Sampler: Euler, CFG scale: 7"),
            Err(ParametersError::MissingKey("Seed"))
        );
        assert!(matches!(
            GenerationParameters::parse_a1111(
                "x\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 1, Size: big"
            ),
            Err(ParametersError::InvalidValue { .. })
        ));
    }

    #[test]
    fn pair_scanner_matches_a1111_regex() {
        // Values stop at the first comma unless quoted; key needs two characters.
        assert_eq!(
            find_pairs("Steps: 20, A: 1, Sampler: Euler a,Size: 1x2, Bad \"x\": 3"),
            vec![("Steps", "20"), ("Sampler", "Euler a"), ("Size", "1x2")]
        );
        // A quoted value must be followed by a comma or the end, else it is plain text.
        assert_eq!(
            find_pairs("K1: \"a, b\", K2: \"c\" d, K3: x"),
            vec![("K1", "\"a, b\""), ("K2", "\"c\" d"), ("K3", "x")]
        );
    }
}
