//! CLIP byte-level BPE tokenizer, id-for-id equal to transformers' `CLIPTokenizer`.
//!
//! In transformers 5 `CLIPTokenizer` is a `tokenizers` backend (no Python BPE, no ftfy), so
//! this module builds the same `tokenizers::Tokenizer` from the folder's files and lets the
//! crate tokenize, with the pieces `CLIPTokenizer.__init__` puts together:
//!
//! - **model**: BPE over the vocabulary and merges, `end_of_word_suffix = "</w>"`,
//!   `continuing_subword_prefix = ""`, no dropout, `fuse_unk = false`, unknown token the
//!   folder's `unk_token` (`<|endoftext|>`);
//! - **normalizer**: NFC, `\s+` -> `" "`, lowercase;
//! - **pre-tokenizer**: keep the matches of
//!   `<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`
//!   (the rest is removed), then byte-level without prefix space;
//! - **added tokens**: registered in the order and with the flags transformers gives them
//!   (see [`ClipTokenizer::from_dir`]); the crate cuts them out before normalization
//!   (`normalized = false`) or after it (`normalized = true`). Consequence: with an SD1
//!   folder `<|endoftext|>` typed in a prompt becomes the EOS id, and with an SD2/SDXL-2
//!   folder (pad token `"!"`) every `!` in a prompt becomes the pad id 0 instead of `!</w>`.
//!
//! The regexes run on Oniguruma (the crate's `onig` feature), as in the `tokenizers` wheel
//! transformers uses, so character classes agree on every code point, and NFC is the crate's
//! own. The post-processor (BOS/EOS) and decoder are not needed: [`ClipTokenizer::encode`] is
//! `encode(text, add_special_tokens=False)`, and [`ClipTokenizer::encode_padded`] adds BOS, EOS
//! and padding the way diffusers asks for them.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::replace::ReplacePattern;
use tokenizers::normalizers::{Lowercase, Replace, Sequence as NormalizerSequence, NFC};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

/// Errors while loading a tokenizer folder; each names the file concerned.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// The folder holds neither `tokenizer.json` nor `vocab.json` + `merges.txt`.
    #[error("{}: no tokenizer found (expected vocab.json + merges.txt, or tokenizer.json)", dir.display())]
    Missing {
        /// The folder that was searched.
        dir: PathBuf,
    },
    /// A file exists but cannot be read.
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A JSON file does not parse.
    #[error("{}: invalid JSON: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: serde_json::Error,
    },
    /// A JSON file parses but does not have the expected shape.
    #[error("{}: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A merge rule is malformed or names a token that is not in the vocabulary.
    #[error("{}: line {line}: {message}", path.display())]
    BadMerge {
        /// The merges file (or `tokenizer.json`, where `line` is the 1-based merge index).
        path: PathBuf,
        /// 1-based line number in `merges.txt` (or index in `model.merges`).
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// `AddedToken(**fields)`: `special` is `force_special`, else the field, else false;
/// `normalized` defaults to `!special`.
fn added_token(obj: &Map<String, Value>, force_special: Option<bool>) -> Option<AddedToken> {
    let content = obj.get("content")?.as_str()?;
    let flag = |k: &str| obj.get(k).and_then(Value::as_bool);
    let special = force_special.unwrap_or_else(|| flag("special").unwrap_or(false));
    Some(
        AddedToken::from(content, special)
            .single_word(flag("single_word").unwrap_or(false))
            .lstrip(flag("lstrip").unwrap_or(false))
            .rstrip(flag("rstrip").unwrap_or(false))
            .normalized(flag("normalized").unwrap_or(!special)),
    )
}

/// A special-token value as transformers holds it before registering: a bare string or an
/// `AddedToken`.
#[derive(Debug, Clone, PartialEq)]
enum TokenValue {
    Str(String),
    Token(AddedToken),
}

impl TokenValue {
    fn content(&self) -> &str {
        match self {
            TokenValue::Str(s) => s,
            TokenValue::Token(t) => &t.content,
        }
    }
}

/// A merge rule: (1-based line in merges.txt or index in `model.merges`, left, right).
type MergeRule = (usize, String, String);

/// CLIP BPE tokenizer (SD1 `tokenizer/`, SD2 `tokenizer/`, SDXL `tokenizer/` and `tokenizer_2/`).
pub struct ClipTokenizer {
    /// The `tokenizers` pipeline transformers builds for the same folder.
    inner: Tokenizer,
    bos_id: u32,
    eos_id: u32,
    pad_id: u32,
    max_length: usize,
}

impl std::fmt::Debug for ClipTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClipTokenizer")
            .field("vocab_size", &self.inner.get_vocab_size(true))
            .field("bos_id", &self.bos_id)
            .field("eos_id", &self.eos_id)
            .field("pad_id", &self.pad_id)
            .field("max_length", &self.max_length)
            .finish_non_exhaustive()
    }
}

const DEFAULT_MAX_LENGTH: usize = 77;
const NAMED_SPECIAL: [&str; 7] = [
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
];

fn read_text(path: &Path) -> Result<String, TokenizerError> {
    crate::files::read_text(path).map_err(|source| TokenizerError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn read_json(path: &Path) -> Result<Value, TokenizerError> {
    let text = read_text(path)?;
    serde_json::from_str(&text).map_err(|source| TokenizerError::Json {
        path: path.to_path_buf(),
        source,
    })
}

fn read_json_if_exists(path: &Path) -> Result<Option<Value>, TokenizerError> {
    if path.is_file() {
        read_json(path).map(Some)
    } else {
        Ok(None)
    }
}

fn invalid(path: &Path, message: impl Into<String>) -> TokenizerError {
    TokenizerError::Invalid {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// `vocab.json` / `model.vocab`: an object token -> id (entries whose id is not a number are
/// skipped, as `tokenizers` does), or a list of tokens / `[token, score]` pairs.
fn parse_vocab(value: &Value, path: &Path) -> Result<Vocab, TokenizerError> {
    let mut vocab = Vocab::new();
    match value {
        Value::Object(map) => {
            for (token, id) in map {
                if let Value::Number(n) = id {
                    let id = n
                        .as_u64()
                        .and_then(|v| u32::try_from(v).ok())
                        .ok_or_else(|| invalid(path, format!("bad id {n} for token {token:?}")))?;
                    vocab.insert(token.clone(), id);
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let token = match item {
                    Value::String(s) => s.as_str(),
                    Value::Array(pair) => {
                        pair.first().and_then(Value::as_str).ok_or_else(|| {
                            invalid(path, format!("vocabulary entry {i} is not a token"))
                        })?
                    }
                    _ => {
                        return Err(invalid(
                            path,
                            format!("vocabulary entry {i} is not a token"),
                        ))
                    }
                };
                let id = u32::try_from(i).map_err(|_| invalid(path, "vocabulary too large"))?;
                vocab.insert(token.to_string(), id);
            }
        }
        _ => return Err(invalid(path, "the vocabulary is not a JSON object")),
    }
    if vocab.is_empty() {
        return Err(invalid(path, "the vocabulary is empty"));
    }
    Ok(vocab)
}

/// `merges.txt`: lines `left right`, `#version` lines skipped.
fn parse_merges_txt(text: &str, path: &Path) -> Result<Vec<MergeRule>, TokenizerError> {
    let mut merges = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.starts_with("#version") {
            continue;
        }
        let mut parts = line.split(' ');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(a), Some(b), None) => merges.push((i + 1, a.to_string(), b.to_string())),
            _ => {
                return Err(TokenizerError::BadMerge {
                    path: path.to_path_buf(),
                    line: i + 1,
                    message: format!("expected two tokens separated by one space, got {line:?}"),
                })
            }
        }
    }
    Ok(merges)
}

/// `model.merges` of `tokenizer.json`: strings `"left right"` or pairs `["left", "right"]`.
fn parse_merges_json(value: &Value, path: &Path) -> Result<Vec<MergeRule>, TokenizerError> {
    let items = value
        .as_array()
        .ok_or_else(|| invalid(path, "model.merges is not a list"))?;
    let mut merges = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let pair = match item {
            Value::String(s) => {
                let mut parts = s.split(' ');
                match (parts.next(), parts.next(), parts.next()) {
                    (Some(a), Some(b), None) => Some((a.to_string(), b.to_string())),
                    _ => None,
                }
            }
            Value::Array(p) if p.len() == 2 => match (p[0].as_str(), p[1].as_str()) {
                (Some(a), Some(b)) => Some((a.to_string(), b.to_string())),
                _ => None,
            },
            _ => None,
        };
        let (a, b) = pair.ok_or_else(|| TokenizerError::BadMerge {
            path: path.to_path_buf(),
            line: i + 1,
            message: format!("merge {item} is not a pair of tokens"),
        })?;
        merges.push((i + 1, a, b));
    }
    Ok(merges)
}

/// The split pattern of `CLIPTokenizer`'s pre-tokenizer (its matches are the words).
const CLIP_PATTERN: &str =
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

/// `CLIPTokenizer.__init__`'s BPE model, normalizer and pre-tokenizer, without added tokens.
/// An unknown token missing from the vocabulary is left unset: characters outside the
/// vocabulary are then dropped instead of failing the whole encoding (Python would raise).
/// CLIP vocabularies hold all 512 byte symbols (with and without `</w>`), so no text reaches
/// either case.
fn clip_pipeline(
    vocab: Vocab,
    merges: Vec<(String, String)>,
    unk_token: &str,
) -> tokenizers::Result<Tokenizer> {
    let mut bpe = BPE::builder()
        .continuing_subword_prefix(String::new())
        .end_of_word_suffix("</w>".into())
        .fuse_unk(false);
    if vocab.contains_key(unk_token) {
        bpe = bpe.unk_token(unk_token.into());
    }
    let mut tokenizer = Tokenizer::new(bpe.vocab_and_merges(vocab, merges).build()?);
    tokenizer.with_normalizer(Some(NormalizerSequence::new(vec![
        NFC.into(),
        Replace::new(ReplacePattern::Regex(r"\s+".into()), " ")?.into(),
        Lowercase.into(),
    ])))?;
    tokenizer.with_pre_tokenizer(Some(PreTokenizerSequence::new(vec![
        Split::new(
            SplitPattern::Regex(CLIP_PATTERN.into()),
            SplitDelimiterBehavior::Removed,
            true,
        )?
        .into(),
        ByteLevel::new(false, true, true).into(),
    ])));
    Ok(tokenizer)
}

/// Checks that every merge names vocabulary tokens (left, right and their concatenation), so
/// a broken file is reported with its line (the crate would only name the token, or panic
/// on a concatenation longer than every token).
fn check_merges(vocab: &Vocab, rules: &[MergeRule], source: &Path) -> Result<(), TokenizerError> {
    for (line, a, b) in rules {
        let merged = format!("{a}{b}");
        for token in [a, b, &merged] {
            if !vocab.contains_key(token.as_str()) {
                return Err(TokenizerError::BadMerge {
                    path: source.to_path_buf(),
                    line: *line,
                    message: format!("{token:?} is not in the vocabulary (merge {a:?} {b:?})"),
                });
            }
        }
    }
    Ok(())
}

impl ClipTokenizer {
    /// Loads a diffusers `tokenizer/` (or `tokenizer_2/`) folder.
    ///
    /// Vocabulary and merges come from `tokenizer.json` (`model.vocab`, `model.merges` in
    /// either format) when present, else from `vocab.json` + `merges.txt`. The special tokens
    /// are resolved the way transformers 5 does it: `tokenizer_config.json`, overridden by
    /// `special_tokens_map.json` (only when the config has no `added_tokens_decoder`), with the
    /// `added_tokens` of `tokenizer.json` / `added_tokens.json` / `added_tokens_decoder`;
    /// missing ones default to `<|startoftext|>` (BOS) and `<|endoftext|>` (EOS, UNK, PAD).
    /// `model_max_length` comes from `tokenizer_config.json` (77 when absent or unusable).
    pub fn from_dir(dir: &Path) -> Result<Self, TokenizerError> {
        let tokenizer_json_path = dir.join("tokenizer.json");
        let vocab_path = dir.join("vocab.json");
        let merges_path = dir.join("merges.txt");
        let tokenizer_json = read_json_if_exists(&tokenizer_json_path)?;

        let (vocab, merge_rules, merges_source) = if let Some(tj) = &tokenizer_json {
            let model = tj
                .get("model")
                .and_then(Value::as_object)
                .ok_or_else(|| invalid(&tokenizer_json_path, "no \"model\" object"))?;
            if let Some(kind) = model.get("type").and_then(Value::as_str) {
                if kind != "BPE" {
                    return Err(invalid(
                        &tokenizer_json_path,
                        format!("model type is {kind:?}, expected \"BPE\""),
                    ));
                }
            }
            let vocab = parse_vocab(
                model
                    .get("vocab")
                    .ok_or_else(|| invalid(&tokenizer_json_path, "no model.vocab"))?,
                &tokenizer_json_path,
            )?;
            let merges = match model.get("merges") {
                Some(m) => parse_merges_json(m, &tokenizer_json_path)?,
                None => Vec::new(),
            };
            (vocab, merges, tokenizer_json_path.clone())
        } else if vocab_path.is_file() || merges_path.is_file() {
            for p in [&vocab_path, &merges_path] {
                if !p.is_file() {
                    return Err(TokenizerError::Io {
                        path: p.clone(),
                        source: std::io::Error::new(
                            std::io::ErrorKind::NotFound,
                            "file is missing",
                        ),
                    });
                }
            }
            let vocab = parse_vocab(&read_json(&vocab_path)?, &vocab_path)?;
            let merges = parse_merges_txt(&read_text(&merges_path)?, &merges_path)?;
            (vocab, merges, merges_path.clone())
        } else {
            return Err(TokenizerError::Missing {
                dir: dir.to_path_buf(),
            });
        };

        let config_path = dir.join("tokenizer_config.json");
        let config = match read_json_if_exists(&config_path)? {
            Some(Value::Object(m)) => m,
            Some(_) => return Err(invalid(&config_path, "not a JSON object")),
            None => Map::new(),
        };
        let special_map_path = dir.join("special_tokens_map.json");
        let special_map = match read_json_if_exists(&special_map_path)? {
            Some(Value::Object(m)) => Some(m),
            Some(_) => return Err(invalid(&special_map_path, "not a JSON object")),
            None => None,
        };
        let added_tokens_path = dir.join("added_tokens.json");
        let added_tokens_file = read_json_if_exists(&added_tokens_path)?;

        Self::build(
            vocab,
            merge_rules,
            &merges_source,
            config,
            special_map,
            added_tokens_file.as_ref(),
            tokenizer_json.as_ref(),
        )
    }

    /// The CLIP vocabulary shipped in `assets/clip-tokenizer/`, for single-file checkpoints
    /// that carry no tokenizer. `pad` is `<|endoftext|>` (SD 1.x, SDXL's first encoder) or
    /// `!` (SD 2.x, SDXL's second encoder).
    pub fn embedded(pad: &str) -> Result<Self, TokenizerError> {
        const VOCAB: &str = include_str!("../../assets/clip-tokenizer/vocab.json");
        const MERGES: &str = include_str!("../../assets/clip-tokenizer/merges.txt");
        const CONFIG: &str = include_str!("../../assets/clip-tokenizer/tokenizer_config.json");
        let source = Path::new("assets/clip-tokenizer");
        let parse = |text: &str, name: &str| -> Result<Value, TokenizerError> {
            serde_json::from_str(text).map_err(|err| invalid(&source.join(name), err.to_string()))
        };
        let vocab = parse_vocab(&parse(VOCAB, "vocab.json")?, &source.join("vocab.json"))?;
        let merge_rules = parse_merges_txt(MERGES, &source.join("merges.txt"))?;
        let mut config = match parse(CONFIG, "tokenizer_config.json")? {
            Value::Object(m) => m,
            _ => {
                return Err(invalid(
                    &source.join("tokenizer_config.json"),
                    "not a JSON object",
                ))
            }
        };
        config.insert("pad_token".into(), Value::String(pad.to_string()));
        Self::build(
            vocab,
            merge_rules,
            &source.join("merges.txt"),
            config,
            None,
            None,
            None,
        )
    }

    fn build(
        vocab: Vocab,
        merge_rules: Vec<MergeRule>,
        merges_source: &Path,
        config: Map<String, Value>,
        special_map: Option<Map<String, Value>>,
        added_tokens_file: Option<&Value>,
        tokenizer_json: Option<&Value>,
    ) -> Result<Self, TokenizerError> {
        check_merges(&vocab, &merge_rules, merges_source)?;
        let split_special = config
            .get("split_special_tokens")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let max_length = config
            .get("model_max_length")
            .and_then(Value::as_u64)
            .and_then(|v| usize::try_from(v).ok())
            .filter(|v| (2..=65_536).contains(v))
            .unwrap_or(DEFAULT_MAX_LENGTH);
        let (added, named) =
            resolve_added_tokens(config, special_map, added_tokens_file, tokenizer_json);

        let failed = |err: tokenizers::Error| invalid(merges_source, err.to_string());
        let unk = named
            .get("unk_token")
            .map_or("<|endoftext|>", String::as_str);
        let merges = merge_rules.into_iter().map(|(_, a, b)| (a, b)).collect();
        let mut inner = clip_pipeline(vocab, merges, unk).map_err(failed)?;
        inner.set_encode_special_tokens(split_special);
        inner.add_tokens(added).map_err(failed)?;

        let id_of = |key: &str, default: &str| -> u32 {
            let content = named.get(key).map_or(default, String::as_str);
            inner
                .token_to_id(content)
                .or_else(|| inner.token_to_id(default))
                .unwrap_or(0)
        };
        Ok(ClipTokenizer {
            bos_id: id_of("bos_token", "<|startoftext|>"),
            eos_id: id_of("eos_token", "<|endoftext|>"),
            pad_id: id_of("pad_token", "<|endoftext|>"),
            max_length,
            inner,
        })
    }
}

/// Resolves the added tokens as transformers 5 does (`_from_pretrained` then
/// `TokenizersBackend.__init__`): the tokens to register, in order, and the named special
/// tokens' contents.
fn resolve_added_tokens(
    mut config: Map<String, Value>,
    special_map: Option<Map<String, Value>>,
    added_tokens_file: Option<&Value>,
    tokenizer_json: Option<&Value>,
) -> (Vec<AddedToken>, HashMap<String, String>) {
    // A value of tokenizer_config.json: a string, or an `{"__type": "AddedToken", ..}` dict.
    let config_value = |v: &Value| -> Option<TokenValue> {
        match v {
            Value::String(s) => Some(TokenValue::Str(s.clone())),
            Value::Object(o) => added_token(o, None).map(TokenValue::Token),
            _ => None,
        }
    };
    let mut values: Vec<(String, TokenValue)> = Vec::new();
    let mut extra: Vec<TokenValue> = Vec::new();
    let set_value = |values: &mut Vec<(String, TokenValue)>, key: &str, v: TokenValue| {
        if let Some(slot) = values.iter_mut().find(|(k, _)| k == key) {
            slot.1 = v;
        } else {
            values.push((key.to_string(), v));
        }
    };
    for (key, v) in &config {
        if key.ends_with("_token") {
            if let Some(tv) = config_value(v) {
                set_value(&mut values, key, tv);
            }
        }
    }
    for key in ["additional_special_tokens", "extra_special_tokens"] {
        if let Some(Value::Array(items)) = config.get(key) {
            extra.extend(items.iter().filter_map(config_value));
        }
    }

    // Added tokens with their (ignored) ids: a dict keyed by id in Python.
    let mut decoder: BTreeMap<u64, AddedToken> = BTreeMap::new();
    let mut by_content: HashMap<String, AddedToken> = HashMap::new();
    if let Some(Value::Object(entries)) = config.remove("added_tokens_decoder") {
        for (idx, v) in entries {
            if let (Ok(idx), Value::Object(o)) = (idx.parse::<u64>(), v) {
                if let Some(t) = added_token(&o, None) {
                    by_content.insert(t.content.clone(), t.clone());
                    decoder.insert(idx, t);
                }
            }
        }
    } else {
        if let Some(map) = special_map {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("extra_special_tokens", Value::Array(items)) => {
                        for item in items {
                            let tv = match item {
                                Value::Object(o) => {
                                    added_token(&o, Some(true)).map(TokenValue::Token)
                                }
                                Value::String(s) => Some(TokenValue::Str(s)),
                                _ => None,
                            };
                            if let Some(tv) = tv {
                                if !extra.contains(&tv) {
                                    extra.push(tv);
                                }
                            }
                        }
                    }
                    // Only used when the config has no list of its own; transformers
                    // rejects dicts in it, strings become special tokens.
                    ("additional_special_tokens", Value::Array(items)) if extra.is_empty() => {
                        extra.extend(items.into_iter().filter_map(|item| match item {
                            Value::String(s) => Some(TokenValue::Str(s)),
                            _ => None,
                        }));
                    }
                    (_, Value::Object(o)) => {
                        if let Some(t) = added_token(&o, Some(true)) {
                            set_value(&mut values, &key, TokenValue::Token(t));
                        }
                    }
                    (_, Value::String(s)) => set_value(&mut values, &key, TokenValue::Str(s)),
                    _ => {}
                }
            }
        }
        if let Some(Value::Object(entries)) = added_tokens_file {
            let specials: Vec<String> = values
                .iter()
                .map(|(_, v)| v.content().to_string())
                .chain(extra.iter().map(|v| v.content().to_string()))
                .collect();
            for (content, idx) in entries {
                if let Some(idx) = idx.as_u64() {
                    let special = specials.contains(content);
                    let t = AddedToken::from(content.as_str(), special);
                    by_content.insert(content.clone(), t.clone());
                    decoder.insert(idx, t);
                }
            }
        }
        if let Some(Value::Array(items)) = tokenizer_json.and_then(|tj| tj.get("added_tokens")) {
            for item in items {
                if let Value::Object(o) = item {
                    let idx = o.get("id").and_then(Value::as_u64);
                    if let (Some(idx), Some(t)) = (idx, added_token(o, None)) {
                        by_content.insert(t.content.clone(), t.clone());
                        decoder.insert(idx, t);
                    }
                }
            }
        }
    }
    // Missing named tokens take `CLIPTokenizer.__init__`'s defaults (plain strings).
    for (key, default) in [
        ("bos_token", "<|startoftext|>"),
        ("eos_token", "<|endoftext|>"),
        ("unk_token", "<|endoftext|>"),
        ("pad_token", "<|endoftext|>"),
    ] {
        if !values.iter().any(|(k, _)| k == key) {
            values.push((key.to_string(), TokenValue::Str(default.to_string())));
        }
    }
    // Named special tokens are replaced by the added token of the same content.
    if !by_content.is_empty() {
        for (key, v) in values.iter_mut() {
            if NAMED_SPECIAL.contains(&key.as_str()) {
                if let Some(t) = by_content.get(v.content()) {
                    *v = TokenValue::Token(t.clone());
                }
            }
        }
    }

    // TokenizersBackend.__init__: the decoder's tokens in id order, then the special
    // tokens not already there (named ones first, in attribute order).
    let mut to_add: Vec<TokenValue> = decoder.into_values().map(TokenValue::Token).collect();
    let encoder: Vec<String> = to_add.iter().map(|v| v.content().to_string()).collect();
    let ordered = NAMED_SPECIAL
        .iter()
        .filter_map(|k| values.iter().find(|(key, _)| key == k))
        .chain(
            values
                .iter()
                .filter(|(key, _)| !NAMED_SPECIAL.contains(&key.as_str())),
        )
        .map(|(_, v)| v.clone())
        .chain(extra)
        .collect::<Vec<_>>();
    for v in ordered {
        if !encoder.iter().any(|e| e == v.content()) && !to_add.contains(&v) {
            to_add.push(v);
        }
    }
    let named_contents: Vec<String> = values
        .iter()
        .filter(|(k, _)| NAMED_SPECIAL.contains(&k.as_str()))
        .map(|(_, v)| v.content().to_string())
        .collect();
    let tokens: Vec<AddedToken> = to_add
        .into_iter()
        .map(|v| match v {
            TokenValue::Str(s) => AddedToken::from(s, true),
            TokenValue::Token(mut t) => {
                if !t.special && named_contents.contains(&t.content) {
                    t.special = true;
                }
                t
            }
        })
        .collect();

    let mut named = HashMap::new();
    for key in NAMED_SPECIAL {
        if let Some((_, v)) = values.iter().find(|(k, _)| k == key) {
            named.insert(key.to_string(), v.content().to_string());
        }
    }
    (tokens, named)
}

impl ClipTokenizer {
    /// Token ids of `text`, without BOS/EOS and without truncation.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        // Encoding fails only on an unknown token missing from the vocabulary, which
        // `clip_pipeline` rules out.
        self.inner
            .encode_fast(text, false)
            .map(|encoding| encoding.get_ids().to_vec())
            .unwrap_or_default()
    }

    /// What diffusers feeds the text encoder: BOS, the first `max_length - 2` tokens, EOS,
    /// then the pad id up to `max_length`.
    pub fn encode_padded(&self, text: &str) -> Vec<u32> {
        let max = self.max_length;
        let mut ids = Vec::with_capacity(max);
        ids.push(self.bos_id);
        let mut body = self.encode(text);
        body.truncate(max.saturating_sub(2));
        ids.extend(body);
        ids.push(self.eos_id);
        ids.resize(max.max(ids.len()), self.pad_id);
        ids
    }

    /// `model_max_length` (77 for every SD CLIP).
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// Id of the BOS token (`<|startoftext|>`, 49406 for CLIP).
    pub fn bos_id(&self) -> u32 {
        self.bos_id
    }

    /// Id of the EOS token (`<|endoftext|>`, 49407 for CLIP).
    pub fn eos_id(&self) -> u32 {
        self.eos_id
    }

    /// Id of the pad token (49407 for SD1, 0 (`!`) for SD2 and SDXL's second encoder).
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// Id of a stand-alone comma (`,</w>`, 267 for CLIP), the token A1111's prompt chunking
    /// backtracks to; looked up the way A1111 does (`get_vocab()[",</w>"]`), so `None` for a
    /// vocabulary without it.
    pub fn comma_id(&self) -> Option<u32> {
        self.inner.token_to_id(",</w>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// The shipped SD1-flavoured folder (OpenAI CLIP vocabulary).
    fn assets() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/clip-tokenizer")
    }

    /// A fresh empty directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let dir = std::env::temp_dir().join(format!(
                "latent-studio-tok-{tag}-{}-{}-{nanos}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::SeqCst)
            ));
            std::fs::create_dir_all(&dir).expect("create temp dir");
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// SD2 / SDXL `tokenizer_2` flavour: same vocabulary, pad token "!" (hub-style files).
    fn sd2_dir() -> TempDir {
        let dir = TempDir::new("sd2");
        for f in ["vocab.json", "merges.txt"] {
            std::fs::copy(assets().join(f), dir.0.join(f)).expect("copy vocabulary");
        }
        let special = |c: &str| {
            format!(
                r#"{{"content": "{c}", "lstrip": false, "normalized": true, "rstrip": false, "single_word": false}}"#
            )
        };
        let map = format!(
            r#"{{"bos_token": {}, "eos_token": {}, "pad_token": "!", "unk_token": {}}}"#,
            special("<|startoftext|>"),
            special("<|endoftext|>"),
            special("<|endoftext|>")
        );
        std::fs::write(dir.0.join("special_tokens_map.json"), map).expect("write");
        std::fs::write(
            dir.0.join("tokenizer_config.json"),
            r#"{"model_max_length": 77, "pad_token": "!", "tokenizer_class": "CLIPTokenizer"}"#,
        )
        .expect("write");
        dir
    }

    fn sd1() -> ClipTokenizer {
        ClipTokenizer::from_dir(&assets()).expect("load assets/clip-tokenizer")
    }

    /// (text, SD1 ids, SD2 ids) from transformers 5.23 `CLIPTokenizer(text,
    /// add_special_tokens=False)` on the same folders.
    #[rustfmt::skip]
    const CASES: &[(&str, &[u32], &[u32])] = &[
        ("a,b;c!!", &[320, 267, 321, 282, 322, 748], &[320, 267, 321, 282, 322, 0, 0]),
        ("a  b", &[320, 321], &[320, 321]),
        ("Hello World HELLO", &[3306, 1002, 3306], &[3306, 1002, 3306]),
        ("it's don't I'M", &[585, 568, 847, 713, 328, 880], &[585, 568, 847, 713, 328, 880]),
        ("3.14", &[274, 269, 272, 275], &[274, 269, 272, 275]),
        ("caf\u{E9} na\u{EF}ve", &[15304, 1097, 35689, 563], &[15304, 1097, 35689, 563]),
        ("cafe\u{301} nai\u{308}ve", &[15304, 1097, 35689, 563], &[15304, 1097, 35689, 563]),
        ("\u{1F431}\u{1F44D}\u{1F3FD} emoji", &[35710, 43722, 16327], &[35710, 43722, 16327]),
        ("\u{732B}\u{3068}\u{72AC}", &[163, 234, 104, 34671, 163, 232, 361], &[163, 234, 104, 34671, 163, 232, 361]),
        ("\u{41F}\u{440}\u{438}\u{432}\u{435}\u{442} \u{43C}\u{438}\u{440}", &[26302, 16370, 29503, 110, 22176, 141, 480, 38018, 16701, 141, 478], &[26302, 16370, 29503, 110, 22176, 141, 480, 38018, 16701, 141, 478]),
        ("tabs\tand\nnew\r\nlines", &[29163, 537, 686, 3418], &[29163, 537, 686, 3418]),
        ("<|endoftext|>", &[49407], &[49407]),
        ("a <|endoftext|>b", &[320, 49407, 321], &[320, 49407, 321]),
        ("x<|ENDOFTEXT|>y", &[343, 27, 347, 40786, 4160, 91, 285, 344], &[343, 49407, 344]),
        ("<|STARTOFTEXT|>", &[49406], &[49406]),
        ("(masterpiece:1.2), [blurry]", &[263, 12066, 281, 272, 269, 273, 2361, 314, 21977, 316], &[263, 12066, 281, 272, 269, 273, 2361, 314, 21977, 316]),
        ("", &[], &[]),
        ("hello!", &[3306, 256], &[3306, 0]),
        ("\u{39F}\u{394}\u{39F}\u{3A3}", &[138, 123, 138, 112, 138, 123, 139, 481], &[138, 123, 138, 112, 138, 123, 139, 481]),
        ("\u{130}stanbul", &[328, 16384, 11231], &[328, 16384, 11231]),
        ("\u{DF} \u{FB01}", &[127, 509, 171, 105, 479], &[127, 509, 171, 105, 479]),
        ("\u{105D2}\u{307}", &[172, 238, 245, 496, 16384], &[172, 238, 245, 496, 16384]),
        ("score_9, 1girl", &[4431, 318, 280, 267, 272, 1611], &[4431, 318, 280, 267, 272, 1611]),
    ];

    #[test]
    fn sd1_ids_match_transformers() {
        let tok = sd1();
        for (text, want, _) in CASES {
            assert_eq!(tok.encode(text), *want, "SD1 {text:?}");
        }
        // Cached words give the same answer the second time.
        for (text, want, _) in CASES {
            assert_eq!(tok.encode(text), *want, "SD1 (cached) {text:?}");
        }
    }

    #[test]
    fn embedded_vocabulary_matches_the_shipped_folders() {
        let sd1_embedded = ClipTokenizer::embedded("<|endoftext|>").expect("embedded SD1");
        let sd2_embedded = ClipTokenizer::embedded("!").expect("embedded SD2");
        for (text, sd1_ids, sd2_ids) in CASES {
            assert_eq!(sd1_embedded.encode(text), *sd1_ids, "SD1 {text:?}");
            assert_eq!(sd2_embedded.encode(text), *sd2_ids, "SD2 {text:?}");
        }
        assert_eq!(sd1_embedded.pad_id(), 49407);
        assert_eq!(sd2_embedded.pad_id(), 0);
        assert_eq!(
            (sd2_embedded.bos_id(), sd2_embedded.eos_id()),
            (49406, 49407)
        );
    }

    #[test]
    fn sd2_ids_match_transformers() {
        let dir = sd2_dir();
        let tok = ClipTokenizer::from_dir(&dir.0).expect("load SD2 flavour");
        for (text, _, want) in CASES {
            assert_eq!(tok.encode(text), *want, "SD2 {text:?}");
        }
        assert_eq!(tok.pad_id(), 0);
    }

    #[test]
    fn comma_id_is_the_id_of_a_lone_comma() {
        let tok = sd1();
        assert_eq!(tok.comma_id(), Some(267));
        assert_eq!(tok.encode("a, b")[1], 267);
        let dir = sd2_dir();
        let sd2 = ClipTokenizer::from_dir(&dir.0).expect("load SD2 flavour");
        assert_eq!(sd2.comma_id(), Some(267));
    }

    #[test]
    fn special_ids_and_length() {
        let tok = sd1();
        assert_eq!(tok.bos_id(), 49406);
        assert_eq!(tok.eos_id(), 49407);
        assert_eq!(tok.pad_id(), 49407);
        assert_eq!(tok.max_length(), 77);
    }

    #[test]
    fn padded_like_diffusers() {
        let tok = sd1();
        let empty = tok.encode_padded("");
        assert_eq!(empty.len(), 77);
        assert_eq!(empty[0], 49406);
        assert!(empty[1..].iter().all(|&id| id == 49407));

        let short = tok.encode_padded("a photo");
        assert_eq!(&short[..4], &[49406, 320, 1125, 49407]);
        assert!(short[4..].iter().all(|&id| id == 49407));

        // 100 words: BOS + first 75 + EOS, no padding.
        let long_text = vec!["cat"; 100].join(" ");
        let long = tok.encode_padded(&long_text);
        assert_eq!(long.len(), 77);
        assert_eq!(long[0], 49406);
        assert!(long[1..76].iter().all(|&id| id == 2368));
        assert_eq!(long[76], 49407);

        let dir = sd2_dir();
        let sd2 = ClipTokenizer::from_dir(&dir.0).expect("load SD2 flavour");
        let padded = sd2.encode_padded("a photo");
        assert_eq!(&padded[..4], &[49406, 320, 1125, 49407]);
        assert!(padded[4..].iter().all(|&id| id == 0));
    }

    #[test]
    fn tokenizer_json_gives_the_same_ids() {
        let dir = TempDir::new("json");
        let vocab: Value = serde_json::from_str(
            &std::fs::read_to_string(assets().join("vocab.json")).expect("read vocab"),
        )
        .expect("parse vocab");
        let merges_txt = std::fs::read_to_string(assets().join("merges.txt")).expect("read");
        // New-style merges (pairs) in one file, old style ("a b" strings) in the other.
        let pairs: Vec<Value> = merges_txt
            .lines()
            .skip(1)
            .map(|l| {
                let (a, b) = l.split_once(' ').expect("merge line");
                serde_json::json!([a, b])
            })
            .collect();
        let strings: Vec<Value> = merges_txt.lines().skip(1).map(Value::from).collect();
        for merges in [pairs, strings] {
            let json = serde_json::json!({
                "version": "1.0",
                "added_tokens": [],
                "model": {"type": "BPE", "vocab": vocab, "merges": merges, "end_of_word_suffix": "</w>"}
            });
            std::fs::write(dir.0.join("tokenizer.json"), json.to_string()).expect("write");
            let tok = ClipTokenizer::from_dir(&dir.0).expect("load tokenizer.json");
            for (text, want, _) in CASES {
                // Without config files the specials are plain strings (normalized = false),
                // so an upper-case <|STARTOFTEXT|> is not recognised.
                if text.contains("STARTOFTEXT") {
                    continue;
                }
                assert_eq!(tok.encode(text), *want, "tokenizer.json {text:?}");
            }
            assert_eq!(
                tok.encode("<|STARTOFTEXT|>"),
                [27, 347, 993, 6659, 4160, 91, 285]
            );
            assert_eq!(tok.pad_id(), 49407);
            assert_eq!(tok.max_length(), 77);
        }
    }

    #[test]
    fn errors_name_the_file() {
        let dir = TempDir::new("err");
        match ClipTokenizer::from_dir(&dir.0) {
            Err(e @ TokenizerError::Missing { .. }) => {
                assert!(e.to_string().contains("latent-studio-tok-err"), "{e}")
            }
            other => panic!("expected Missing, got {other:?}"),
        }

        std::fs::write(dir.0.join("vocab.json"), "{not json").expect("write");
        std::fs::write(dir.0.join("merges.txt"), "#version: 0.2\n").expect("write");
        match ClipTokenizer::from_dir(&dir.0) {
            Err(e @ TokenizerError::Json { .. }) => assert!(e.to_string().contains("vocab.json")),
            other => panic!("expected Json, got {other:?}"),
        }

        std::fs::write(dir.0.join("vocab.json"), r#"{"a": 0, "b": 1, "ab": 2}"#).expect("write");
        std::fs::write(dir.0.join("merges.txt"), "#version: 0.2\na b\nab\n").expect("write");
        match ClipTokenizer::from_dir(&dir.0) {
            Err(e @ TokenizerError::BadMerge { line: 3, .. }) => {
                assert!(e.to_string().contains("merges.txt: line 3"), "{e}")
            }
            other => panic!("expected BadMerge at line 3, got {other:?}"),
        }

        std::fs::write(dir.0.join("merges.txt"), "a b\nb c\n").expect("write");
        match ClipTokenizer::from_dir(&dir.0) {
            Err(TokenizerError::BadMerge { line: 2, .. }) => {}
            other => panic!("expected BadMerge at line 2, got {other:?}"),
        }

        std::fs::write(dir.0.join("merges.txt"), "a b\n").expect("write");
        std::fs::write(dir.0.join("tokenizer_config.json"), "[1]").expect("write");
        match ClipTokenizer::from_dir(&dir.0) {
            Err(e @ TokenizerError::Invalid { .. }) => {
                assert!(e.to_string().contains("tokenizer_config.json"))
            }
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<ClipTokenizer>();
    }

    #[test]
    fn bytes_map_to_the_gpt2_alphabet() {
        // Bytes 0..=0x20 stand as U+0100..=U+0120 in the vocabulary; printable ones as
        // themselves. Control characters are words of their own (`[^\s\p{L}\p{N}]+`).
        let vocab: Value = serde_json::from_str(
            &std::fs::read_to_string(assets().join("vocab.json")).expect("read vocab"),
        )
        .expect("parse vocab");
        let id = |token: &str| vocab[token].as_u64().and_then(|v| u32::try_from(v).ok());
        let tok = sd1();
        for b in 1..=8u32 {
            let text = char::from_u32(b).expect("char").to_string();
            let symbol = char::from_u32(0x100 + b).expect("char");
            let want = id(&format!("{symbol}</w>")).expect("byte symbol in vocabulary");
            assert_eq!(tok.encode(&text), [want], "byte {b:#04x}");
        }
        assert_eq!(tok.encode("!"), [id("!</w>").expect("!</w>")]);
    }
}
