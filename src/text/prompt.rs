//! A1111 prompt syntax, without any tensors: LoRA tags, emphasis and 75-token chunks.
//!
//! Follows `notes/a1111-prompt-spec.md` points 1–3, which transcribe AUTOMATIC1111's
//! `extra_networks.parse_prompt`, `prompt_parser.parse_prompt_attention` and
//! `FrozenCLIPEmbedderWithCustomWordsBase.tokenize_line`. The pipeline is
//!
//! 1. [`extract_lora_tags`]: cut `<lora:…>` (and every other `<word:…>`) out of the text;
//! 2. [`parse_emphasis`]: split the rest into weighted pieces and `BREAK`s;
//! 3. [`chunk_prompt`]: tokenize the pieces and lay them out in chunks of [`CHUNK_LENGTH`]
//!    content tokens, each of which the text encoder later sees as
//!    `[BOS] + tokens + [EOS] + [PAD]…` (77 ids).
//!
//! Where Python and Rust differ on character classes or number parsing, the code below
//! reproduces Python's behaviour, because that is what decides which prompts A1111 accepts.

use crate::text::tokenizer::ClipTokenizer;
use std::collections::HashMap;
use std::sync::OnceLock;

use regex::Regex;

/// Content tokens per chunk: CLIP's 77 positions minus BOS and EOS.
pub const CHUNK_LENGTH: usize = 75;

/// A1111's `comma_padding_backtrack` default: a full chunk gives its tail back to the next
/// chunk only when the last comma is at most this many tokens from the end.
const COMMA_BACKTRACK_WINDOW: usize = 20;

const ROUND_BRACKET_MULTIPLIER: f64 = 1.1;
// Computed once, as A1111 does, so that `[x]` weights are bit-identical to its own.
const SQUARE_BRACKET_MULTIPLIER: f64 = 1.0 / 1.1;

const BREAK_KEYWORD: &str = "BREAK";
/// `parse_prompt_attention` marks a `BREAK` as the pair `("BREAK", -1)`; only a pair that is
/// still exactly that after bracket multiplication ends a chunk.
const BREAK_MARKER_WEIGHT: f64 = -1.0;

/// Extra-network names that A1111's Lora extension answers to.
const LORA_NETWORK_NAMES: [&str; 2] = ["lora", "lyco"];

/// How prompt text is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum PromptSyntax {
    /// A1111: `(word:1.2)`, `[word]`, `BREAK`, `<lora:…>` tags, no length limit.
    #[default]
    A1111,
    /// diffusers: the text as written, truncated to one 77-token sequence.
    Plain,
}

impl PromptSyntax {
    pub const ALL: [PromptSyntax; 2] = [PromptSyntax::A1111, PromptSyntax::Plain];

    pub fn name(self) -> &'static str {
        match self {
            PromptSyntax::A1111 => "a1111",
            PromptSyntax::Plain => "plain",
        }
    }
}

impl std::str::FromStr for PromptSyntax {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(text))
            .ok_or_else(|| format!("unknown prompt syntax \"{text}\" (use a1111 or plain)"))
    }
}

/// A prompt A1111 would refuse (it raises a Python `ValueError` on each of these).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PromptError {
    /// A1111 syntax is parsed as A1111 does, which takes time quadratic in the nesting of
    /// brackets: longer prompts are refused rather than stalling the window.
    #[error("the prompt is {chars} characters long; with A1111 syntax at most {MAX_PROMPT_CHARS} are read (plain syntax has no limit)")]
    TooLong {
        /// Its length in characters.
        chars: usize,
    },
    /// `<lora:NAME:MULT>` whose MULT is not a finite number.
    #[error("LoRA tag {tag}: the multiplier {value:?} is not a number")]
    LoraMultiplier {
        /// The whole tag as written in the prompt.
        tag: String,
        /// The text in the multiplier position.
        value: String,
    },
    /// A LoRA tag with an empty name or with more than `NAME:MULT` (A1111's separate
    /// text-encoder / UNet multipliers and named arguments are not supported).
    #[error("LoRA tag {tag}: expected <lora:NAME> or <lora:NAME:MULTIPLIER>")]
    LoraArguments {
        /// The whole tag as written in the prompt.
        tag: String,
    },
    /// `(text:W)` whose W is digits and dots but not a number, such as `1.2.3` or `.`.
    #[error("emphasis {text:?}: the weight is not a number")]
    EmphasisWeight {
        /// The weight part as written, from the `:` to the `)`.
        text: String,
    },
}

/// A `<lora:NAME:MULT>` (or `<lyco:…>`) tag found in a prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraTag {
    /// The LoRA's name, exactly as written (A1111 looks it up without trimming).
    pub name: String,
    /// Strength; 1.0 when the tag has no multiplier.
    pub multiplier: f64,
}

/// Removes every extra-network tag `<WORD:ARGS>` from `prompt`, as A1111 does before
/// parsing, and returns the remaining text with the LoRA tags among them, in prompt order.
///
/// Tags of other networks (`<hypernet:…>`, misspelt `<LORA:…>`) are removed too and
/// otherwise ignored, exactly as A1111 drops them with a warning.
pub fn extract_lora_tags(prompt: &str) -> Result<(String, Vec<LoraTag>), PromptError> {
    let mut text = String::with_capacity(prompt.len());
    let mut tags = Vec::new();
    let mut copied_up_to = 0;
    let mut search_from = 0;
    while let Some(found) = prompt[search_from..].find('<') {
        let start = search_from + found;
        let Some(tag) = extra_network_tag_at(prompt, start) else {
            search_from = start + 1;
            continue;
        };
        text.push_str(&prompt[copied_up_to..start]);
        copied_up_to = tag.end;
        search_from = tag.end;
        if LORA_NETWORK_NAMES.contains(&tag.network) {
            tags.push(lora_tag(&prompt[start..tag.end], tag.arguments)?);
        }
    }
    text.push_str(&prompt[copied_up_to..]);
    Ok((text, tags))
}

/// One match of A1111's `<(\w+):([^>]+)>`.
struct ExtraNetworkTag<'a> {
    network: &'a str,
    arguments: &'a str,
    /// Byte offset just past the closing `>`.
    end: usize,
}

/// Matches `<(\w+):([^>]+)>` at byte `start` (which holds a `<`), with Python's `\w`.
fn extra_network_tag_at(prompt: &str, start: usize) -> Option<ExtraNetworkTag<'_>> {
    let after_bracket = start + 1;
    let rest = &prompt[after_bracket..];
    let network_len = rest.len() - rest.trim_start_matches(is_python_word_char).len();
    if network_len == 0 {
        return None;
    }
    if !rest[network_len..].starts_with(':') {
        return None;
    }
    let arguments_start = after_bracket + network_len + 1;
    // `[^>]+` cannot backtrack into anything else, so the first `>` closes the tag.
    let arguments_len = prompt[arguments_start..].find('>')?;
    if arguments_len == 0 {
        return None;
    }
    Some(ExtraNetworkTag {
        network: &prompt[after_bracket..after_bracket + network_len],
        arguments: &prompt[arguments_start..arguments_start + arguments_len],
        end: arguments_start + arguments_len + 1,
    })
}

/// `NAME` or `NAME:MULT`, split on `:` like A1111's `ExtraNetworkParams`.
fn lora_tag(tag_text: &str, arguments: &str) -> Result<LoraTag, PromptError> {
    let mut fields = arguments.split(':');
    let name = fields.next().unwrap_or_default();
    let multiplier_text = fields.next();
    if name.is_empty() || fields.next().is_some() {
        return Err(PromptError::LoraArguments {
            tag: tag_text.to_string(),
        });
    }
    let multiplier = match multiplier_text {
        None => 1.0,
        // Python's float() would also take "nan" and "inf", which only produce a broken
        // image; refusing them is the one place we are stricter than A1111.
        Some(value) => python_float(value)
            .filter(|m| m.is_finite())
            .ok_or_else(|| PromptError::LoraMultiplier {
                tag: tag_text.to_string(),
                value: value.to_string(),
            })?,
    };
    Ok(LoraTag {
        name: name.to_string(),
        multiplier,
    })
}

/// One element of a parsed prompt: weighted text, or a `BREAK` that ends the current chunk.
#[derive(Debug, Clone, PartialEq)]
pub enum PromptPiece {
    /// Text whose tokens all get `weight` (1.0 = no emphasis; may be 0 or negative).
    Text {
        /// The text with the emphasis syntax removed.
        text: String,
        /// Product of the multipliers of the brackets around it.
        weight: f64,
    },
    /// A stand-alone uppercase `BREAK` outside any brackets.
    Break,
}

/// A1111's `parse_prompt_attention`, with its `BREAK` handling.
///
/// `(x)` multiplies by 1.1, `[x]` divides by 1.1, `(x:w)` multiplies by `w`, `\(`, `\)`,
/// `\[`, `\]`, `\\` are literal characters; brackets left open are closed at the end;
/// neighbouring pieces of equal weight are merged; an empty prompt gives one empty piece.
/// Quirks kept on purpose: a `BREAK` inside brackets becomes the text `BREAK` with a
/// negative weight (A1111 then tokenizes it as a word), `)`/`]`/`:w)` without an open
/// bracket stay in the text, and a lone `\` vanishes.
pub fn parse_emphasis(prompt: &str) -> Result<Vec<PromptPiece>, PromptError> {
    let mut pieces: Vec<(String, f64)> = Vec::new();
    let mut open_round: Vec<usize> = Vec::new();
    let mut open_square: Vec<usize> = Vec::new();

    let mut position = 0;
    while position < prompt.len() {
        let (token, len) = emphasis_token_at(prompt, position);
        let matched = &prompt[position..position + len];
        position += len;
        match token {
            EmphasisToken::Literal(text) => pieces.push((text.to_string(), 1.0)),
            EmphasisToken::OpenRound => open_round.push(pieces.len()),
            EmphasisToken::OpenSquare => open_square.push(pieces.len()),
            EmphasisToken::CloseWithWeight(number) => match open_round.pop() {
                Some(start) => {
                    let weight =
                        python_float(number).ok_or_else(|| PromptError::EmphasisWeight {
                            text: matched.to_string(),
                        })?;
                    multiply_from(&mut pieces, start, weight);
                }
                None => push_text_with_breaks(&mut pieces, matched),
            },
            EmphasisToken::CloseRound => match open_round.pop() {
                Some(start) => multiply_from(&mut pieces, start, ROUND_BRACKET_MULTIPLIER),
                None => push_text_with_breaks(&mut pieces, matched),
            },
            EmphasisToken::CloseSquare => match open_square.pop() {
                Some(start) => multiply_from(&mut pieces, start, SQUARE_BRACKET_MULTIPLIER),
                None => push_text_with_breaks(&mut pieces, matched),
            },
            EmphasisToken::Text => push_text_with_breaks(&mut pieces, matched),
        }
    }
    // Oldest bracket first, round before square: the order decides the last bit of the
    // products, and A1111's weights are the reference.
    for start in open_round {
        multiply_from(&mut pieces, start, ROUND_BRACKET_MULTIPLIER);
    }
    for start in open_square {
        multiply_from(&mut pieces, start, SQUARE_BRACKET_MULTIPLIER);
    }

    if pieces.is_empty() {
        pieces.push((String::new(), 1.0));
    }
    let mut merged: Vec<(String, f64)> = Vec::with_capacity(pieces.len());
    for (text, weight) in pieces {
        match merged.last_mut() {
            Some((last_text, last_weight)) if *last_weight == weight => last_text.push_str(&text),
            _ => merged.push((text, weight)),
        }
    }
    Ok(merged
        .into_iter()
        .map(|(text, weight)| {
            if text == BREAK_KEYWORD && weight == BREAK_MARKER_WEIGHT {
                PromptPiece::Break
            } else {
                PromptPiece::Text { text, weight }
            }
        })
        .collect())
}

/// The alternatives of A1111's `re_attention`, in its order of precedence.
enum EmphasisToken<'a> {
    /// `\(`, `\)`, `\[`, `\]`, `\\` (the escaped character) or a lone `\` (empty text).
    Literal(&'a str),
    OpenRound,
    OpenSquare,
    /// `:\s*([+-]?[.\d]+)\s*\)`, holding the number part.
    CloseWithWeight(&'a str),
    CloseRound,
    CloseSquare,
    /// A run of characters other than `\()[]:`, or a `:` that starts no weight.
    Text,
}

/// The token `re_attention.finditer` finds at byte `start`, and its length in bytes. Every
/// character starts some alternative, so the tokens tile the prompt without gaps.
fn emphasis_token_at(prompt: &str, start: usize) -> (EmphasisToken<'_>, usize) {
    let rest = &prompt[start..];
    let mut chars = rest.chars();
    let Some(first) = chars.next() else {
        return (EmphasisToken::Text, 0);
    };
    match first {
        '\\' => match chars.next() {
            Some(escaped @ ('(' | ')' | '[' | ']' | '\\')) => {
                (EmphasisToken::Literal(&rest[1..2]), 1 + escaped.len_utf8())
            }
            _ => (EmphasisToken::Literal(""), 1),
        },
        '(' => (EmphasisToken::OpenRound, 1),
        '[' => (EmphasisToken::OpenSquare, 1),
        ')' => (EmphasisToken::CloseRound, 1),
        ']' => (EmphasisToken::CloseSquare, 1),
        ':' => match weight_close_at(rest) {
            Some((number, len)) => (EmphasisToken::CloseWithWeight(number), len),
            None => (EmphasisToken::Text, 1),
        },
        _ => {
            let text_len = rest.len()
                - rest
                    .trim_start_matches(|c| !matches!(c, '\\' | '(' | ')' | '[' | ']' | ':'))
                    .len();
            (EmphasisToken::Text, text_len)
        }
    }
}

/// Matches `:\s*([+-]?[.\d]+)\s*\)` at the start of `text` (Python's `\s` and `\d`):
/// (the number part, length of the whole match). The classes are disjoint, so taking each
/// run greedily is what the backtracking regex ends up with.
fn weight_close_at(text: &str) -> Option<(&str, usize)> {
    let after_colon = text.strip_prefix(':')?;
    let number = after_colon.trim_start_matches(is_python_space);
    let unsigned = number
        .strip_prefix(|c| c == '+' || c == '-')
        .unwrap_or(number);
    let after_digits = unsigned.trim_start_matches(|c| c == '.' || is_decimal_digit(c));
    if after_digits.len() == unsigned.len() {
        return None;
    }
    let after_space = after_digits
        .trim_start_matches(is_python_space)
        .strip_prefix(')')?;
    let number = &number[..number.len() - after_digits.len()];
    Some((number, text.len() - after_space.len()))
}

fn multiply_from(pieces: &mut [(String, f64)], start: usize, multiplier: f64) {
    for (_, weight) in pieces.iter_mut().skip(start) {
        *weight *= multiplier;
    }
}

/// Appends `text` with weight 1.0, with a `BREAK` marker wherever `re_break` splits it.
fn push_text_with_breaks(pieces: &mut Vec<(String, f64)>, text: &str) {
    for (index, part) in split_on_break(text).into_iter().enumerate() {
        if index > 0 {
            pieces.push((BREAK_KEYWORD.to_string(), BREAK_MARKER_WEIGHT));
        }
        pieces.push((part.to_string(), 1.0));
    }
}

/// `re.split(r"\s*\bBREAK\b\s*", text)` with Python's `\s` and `\b`.
fn split_on_break(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut part_start = 0;
    for (at, _) in text.match_indices(BREAK_KEYWORD) {
        let after = at + BREAK_KEYWORD.len();
        let word_before = text[..at]
            .chars()
            .next_back()
            .is_some_and(is_python_word_char);
        let word_after = text[after..]
            .chars()
            .next()
            .is_some_and(is_python_word_char);
        // `at < part_start` cannot happen (the whitespace eaten after a BREAK holds no
        // BREAK), but a skipped occurrence must never cut backwards.
        if word_before || word_after || at < part_start {
            continue;
        }
        // The leftmost match starts where the whitespace before the keyword starts, but
        // not before the end of the previous match.
        let cut_start = part_start + text[part_start..at].trim_end_matches(is_python_space).len();
        let cut_end = text.len() - text[after..].trim_start_matches(is_python_space).len();
        parts.push(&text[part_start..cut_start]);
        part_start = cut_end;
    }
    parts.push(&text[part_start..]);
    parts
}

/// Python's `\s` (`str.isspace`): Unicode White_Space plus the ASCII separators 0x1C–0x1F.
fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1C}'..='\u{1F}').contains(&c)
}

/// Python's `\w` (`str.isalnum()` or `_`): letters and numbers, but not the combining marks
/// and symbols that Rust's `char::is_alphanumeric` also counts.
fn is_python_word_char(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphanumeric() || c == '_';
    }
    static LETTER_OR_NUMBER: OnceLock<Option<Regex>> = OnceLock::new();
    match LETTER_OR_NUMBER.get_or_init(|| Regex::new(r"^[\p{L}\p{N}]$").ok()) {
        Some(class) => class.is_match(c.encode_utf8(&mut [0; 4])),
        None => c.is_alphanumeric(),
    }
}

/// Python's `\d` (Unicode category Nd), which `float()` also accepts in any script.
fn is_decimal_digit(c: char) -> bool {
    decimal_digit_value(c).is_some()
}

/// The value of a Unicode decimal digit. Unicode keeps every script's digits in runs of
/// ten, 0 to 9 in order, so the value is the distance from the start of the run, mod 10.
fn decimal_digit_value(c: char) -> Option<u32> {
    if c.is_ascii() {
        return c.to_digit(10);
    }
    static DECIMAL_DIGIT: OnceLock<Option<Regex>> = OnceLock::new();
    let class = DECIMAL_DIGIT
        .get_or_init(|| Regex::new(r"^\p{Nd}$").ok())
        .as_ref()?;
    let is_digit = |code: u32| {
        char::from_u32(code).is_some_and(|ch| class.is_match(ch.encode_utf8(&mut [0; 4])))
    };
    let code = u32::from(c);
    if !is_digit(code) {
        return None;
    }
    let mut run_start = code;
    while run_start > 0 && is_digit(run_start - 1) {
        run_start -= 1;
    }
    Some((code - run_start) % 10)
}

/// Python's `float(text)` for decimal notation: surrounding whitespace ignored, digits of
/// any script accepted. (Python's `_` digit separators are not supported.)
fn python_float(text: &str) -> Option<f64> {
    let ascii: String = text
        .trim_matches(is_python_space)
        .chars()
        .map(|c| match decimal_digit_value(c) {
            Some(value) if !c.is_ascii() => char::from_digit(value, 10).unwrap_or(c),
            _ => c,
        })
        .collect();
    ascii.parse().ok()
}

/// One chunk of at most [`CHUNK_LENGTH`] content tokens, before BOS/EOS/padding.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PromptChunk {
    /// Token ids; each textual-inversion vector is a placeholder id 0.
    pub tokens: Vec<u32>,
    /// The emphasis weight of each token (f32, as A1111's multiplier tensor).
    pub weights: Vec<f32>,
    /// Where textual-inversion vectors replace the placeholders, in chunk order.
    pub embeddings: Vec<EmbeddingSlot>,
}

/// A textual-inversion embedding placed in a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmbeddingSlot {
    /// Index of the first placeholder in [`PromptChunk::tokens`] (add 1 for the BOS in the
    /// 77-id layout); the embedding's vectors fill the following placeholders.
    pub offset: usize,
    /// Index into the `embeddings` slice given to [`chunk_prompt`].
    pub embedding: usize,
}

/// A textual-inversion embedding as the chunker sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddingName {
    /// The embedding's name tokenized like prompt text (no BOS/EOS).
    pub tokens: Vec<u32>,
    /// How many vectors (placeholder tokens) the embedding occupies.
    pub vectors: usize,
}

/// A prompt laid out in chunks, with the token count A1111 shows.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkedPrompt {
    /// Never empty: an empty prompt is one empty chunk.
    pub chunks: Vec<PromptChunk>,
    /// [`CHUNK_LENGTH`] for every chunk but the last, plus the last chunk's length.
    pub token_count: usize,
}

impl ChunkedPrompt {
    /// `(count, capacity)` for the prompt counter, shown as `count/capacity`.
    pub fn counter(&self) -> (usize, usize) {
        (self.token_count, self.chunks.len() * CHUNK_LENGTH)
    }
}

/// A1111's `tokenize_line`: tokenizes each piece (without BOS/EOS, without truncation) and
/// lays the tokens out in chunks of [`CHUNK_LENGTH`].
///
/// A full chunk hands the tokens after its last comma to the next chunk when that comma is
/// within 20 tokens of the end; `BREAK` ends the current chunk even if it is empty; an
/// embedding whose name tokens appear in a piece (longest name first, ties to the earlier
/// entry) becomes `vectors` placeholders and starts a new chunk when it does not fit.
/// Nothing is ever dropped.
///
/// Two departures, both only where A1111 produces garbage: an embedding in a tail handed to
/// the next chunk moves with its tokens (A1111 leaves its slot behind, pointing at padding),
/// and embeddings with no name tokens or with 0 or more than [`CHUNK_LENGTH`] vectors are
/// never matched (A1111 crashes or overfills a chunk); reject those when loading them.
pub fn chunk_prompt(
    pieces: &[PromptPiece],
    tokenize: &dyn Fn(&str) -> Vec<u32>,
    comma_id: Option<u32>,
    embeddings: &[EmbeddingName],
) -> ChunkedPrompt {
    let lookup = EmbeddingLookup::new(embeddings);
    let mut chunker = Chunker::default();
    for piece in pieces {
        let (text, weight) = match piece {
            PromptPiece::Break => {
                chunker.finish_chunk(false);
                continue;
            }
            PromptPiece::Text { text, weight } => (text, *weight as f32),
        };
        let tokens = tokenize(text);
        let mut position = 0;
        while let Some(&token) = tokens.get(position) {
            let embedding = lookup.find_at(&tokens, position);
            if Some(token) == comma_id {
                // A comma that starts an embedding name is no place to cut the chunk.
                if embedding.is_none() {
                    chunker.last_comma = Some(chunker.current.tokens.len());
                }
            } else if chunker.current.tokens.len() == CHUNK_LENGTH {
                if let Some(comma) = chunker.last_comma {
                    if CHUNK_LENGTH - comma <= COMMA_BACKTRACK_WINDOW {
                        chunker.hand_tail_to_next_chunk(comma + 1);
                    }
                }
            }
            if chunker.current.tokens.len() == CHUNK_LENGTH {
                chunker.finish_chunk(false);
            }
            match embedding {
                None => {
                    chunker.current.tokens.push(token);
                    chunker.current.weights.push(weight);
                    position += 1;
                }
                Some(index) => {
                    let name = &embeddings[index];
                    if chunker.current.tokens.len() + name.vectors > CHUNK_LENGTH {
                        chunker.finish_chunk(false);
                    }
                    let current = &mut chunker.current;
                    current.embeddings.push(EmbeddingSlot {
                        offset: current.tokens.len(),
                        embedding: index,
                    });
                    current.tokens.extend(std::iter::repeat_n(0, name.vectors));
                    current
                        .weights
                        .extend(std::iter::repeat_n(weight, name.vectors));
                    position += name.tokens.len();
                }
            }
        }
    }
    if !chunker.current.tokens.is_empty() || chunker.chunks.is_empty() {
        chunker.finish_chunk(true);
    }
    ChunkedPrompt {
        chunks: chunker.chunks,
        token_count: chunker.token_count,
    }
}

/// The state of `tokenize_line` between tokens.
#[derive(Default)]
struct Chunker {
    chunks: Vec<PromptChunk>,
    current: PromptChunk,
    token_count: usize,
    /// Index in `current.tokens` of the last comma since the chunk started.
    last_comma: Option<usize>,
}

impl Chunker {
    /// A1111's `next_chunk`: only the last chunk counts its real length, so the counter
    /// shows how much room the earlier chunks used up, not how many tokens they hold.
    fn finish_chunk(&mut self, is_last: bool) {
        self.token_count += if is_last {
            self.current.tokens.len()
        } else {
            CHUNK_LENGTH
        };
        self.last_comma = None;
        self.chunks.push(std::mem::take(&mut self.current));
    }

    /// Ends the current chunk at `cut` and starts the next one with what followed it.
    fn hand_tail_to_next_chunk(&mut self, cut: usize) {
        let tail = PromptChunk {
            tokens: self.current.tokens.split_off(cut),
            weights: self.current.weights.split_off(cut),
            embeddings: Vec::new(),
        };
        let (kept, moved): (Vec<EmbeddingSlot>, Vec<EmbeddingSlot>) = self
            .current
            .embeddings
            .iter()
            .partition(|slot| slot.offset < cut);
        self.current.embeddings = kept;
        self.finish_chunk(false);
        self.current = tail;
        self.current.embeddings = moved
            .into_iter()
            .map(|slot| EmbeddingSlot {
                offset: slot.offset - cut,
                ..slot
            })
            .collect();
    }
}

/// A1111's `EmbeddingDatabase.ids_lookup`: candidates by first token id, longest first.
struct EmbeddingLookup<'a> {
    embeddings: &'a [EmbeddingName],
    by_first_token: HashMap<u32, Vec<usize>>,
}

impl<'a> EmbeddingLookup<'a> {
    fn new(embeddings: &'a [EmbeddingName]) -> Self {
        let mut by_first_token: HashMap<u32, Vec<usize>> = HashMap::new();
        for (index, name) in embeddings.iter().enumerate() {
            let placeable = (1..=CHUNK_LENGTH).contains(&name.vectors);
            if let (Some(&first), true) = (name.tokens.first(), placeable) {
                by_first_token.entry(first).or_default().push(index);
            }
        }
        for candidates in by_first_token.values_mut() {
            // Stable, so equally long names keep their order and the earlier one wins.
            candidates.sort_by_key(|&index| std::cmp::Reverse(embeddings[index].tokens.len()));
        }
        EmbeddingLookup {
            embeddings,
            by_first_token,
        }
    }

    /// The embedding whose name starts at `tokens[position]`, if any.
    fn find_at(&self, tokens: &[u32], position: usize) -> Option<usize> {
        let candidates = self.by_first_token.get(tokens.get(position)?)?;
        candidates.iter().copied().find(|&index| {
            let name = &self.embeddings[index].tokens;
            tokens.get(position..position + name.len()) == Some(name.as_slice())
        })
    }
}

/// The longest prompt read with A1111 syntax (real ones are a few hundred characters; at this
/// length the worst nesting still parses in milliseconds).
pub const MAX_PROMPT_CHARS: usize = 16 << 10;

/// Whether `text` can be used as a prompt with `syntax`, and if not, why.
pub fn check_prompt(text: &str, syntax: PromptSyntax) -> std::result::Result<(), PromptError> {
    prompt_pieces(text, syntax).map(drop)
}

/// The weighted pieces of a prompt, or why A1111 would refuse it.
pub fn prompt_pieces(
    text: &str,
    syntax: PromptSyntax,
) -> std::result::Result<Vec<PromptPiece>, PromptError> {
    match syntax {
        PromptSyntax::A1111 if text.len() > MAX_PROMPT_CHARS => Err(PromptError::TooLong {
            chars: text.chars().count(),
        }),
        PromptSyntax::A1111 => {
            let (text, _) = extract_lora_tags(text)?;
            parse_emphasis(&text)
        }
        PromptSyntax::Plain => Ok(vec![PromptPiece::Text {
            text: text.to_string(),
            weight: 1.0,
        }]),
    }
}

/// A prompt's chunks for one tokenizer: A1111's layout, or diffusers' single truncated chunk.
pub fn chunk_text(
    tokenizer: &ClipTokenizer,
    text: &str,
    syntax: PromptSyntax,
    names: &[EmbeddingName],
) -> Result<ChunkedPrompt, PromptError> {
    let tokenize = |piece: &str| tokenizer.encode(piece);
    let pieces = prompt_pieces(text, syntax)?;
    Ok(match syntax {
        PromptSyntax::A1111 => chunk_prompt(&pieces, &tokenize, tokenizer.comma_id(), names),
        PromptSyntax::Plain => {
            // Without a comma id chunks break at exactly 75 tokens; diffusers keeps the first.
            let mut chunked = chunk_prompt(&pieces, &tokenize, None, names);
            chunked.chunks.truncate(1);
            chunked
        }
    })
}

/// Tokens used and room in the chunks so far, for a prompt-length counter ("80/150").
/// With plain syntax the count can exceed the capacity: diffusers drops the excess.
pub fn token_usage(tokenizer: &ClipTokenizer, text: &str, syntax: PromptSyntax) -> (usize, usize) {
    match syntax {
        PromptSyntax::A1111 => match chunk_text(tokenizer, text, syntax, &[]) {
            Ok(chunked) => chunked.counter(),
            // An unparsable tag: count the raw text so the counter still moves.
            Err(_) => (tokenizer.encode(text).len(), CHUNK_LENGTH),
        },
        PromptSyntax::Plain => (tokenizer.encode(text).len(), CHUNK_LENGTH),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlong_a1111_prompts_are_refused_and_malformed_weights_named() {
        let nested = "(a".repeat(MAX_PROMPT_CHARS) + &")".repeat(MAX_PROMPT_CHARS);
        assert!(matches!(
            check_prompt(&nested, PromptSyntax::A1111),
            Err(PromptError::TooLong { .. })
        ));
        assert!(check_prompt(&nested, PromptSyntax::Plain).is_ok());
        // The worst nesting that is accepted still parses.
        let half = MAX_PROMPT_CHARS / 3;
        let deep = "(a".repeat(half) + &")".repeat(half);
        assert!(check_prompt(&deep, PromptSyntax::A1111).is_ok());
        let err = check_prompt("a (cat:1.2.3)", PromptSyntax::A1111).unwrap_err();
        assert!(matches!(err, PromptError::EmphasisWeight { .. }), "{err}");
    }

    const TOLERANCE: f64 = 1e-12;

    fn text(text: &str, weight: f64) -> PromptPiece {
        PromptPiece::Text {
            text: text.to_string(),
            weight,
        }
    }

    fn parse(prompt: &str) -> Vec<PromptPiece> {
        parse_emphasis(prompt).unwrap_or_else(|e| panic!("{prompt:?}: {e}"))
    }

    fn assert_pieces(prompt: &str, want: &[PromptPiece]) {
        let got = parse(prompt);
        let same = got.len() == want.len()
            && got.iter().zip(want).all(|pair| match pair {
                (
                    PromptPiece::Text { text: a, weight: x },
                    PromptPiece::Text { text: b, weight: y },
                ) => a == b && (x - y).abs() <= TOLERANCE,
                (PromptPiece::Break, PromptPiece::Break) => true,
                _ => false,
            });
        assert!(same, "{prompt:?}\n got {got:?}\nwant {want:?}");
    }

    #[test]
    fn emphasis_doc_examples() {
        assert_pieces("normal text", &[text("normal text", 1.0)]);
        assert_pieces(
            "an (important) word",
            &[text("an ", 1.0), text("important", 1.1), text(" word", 1.0)],
        );
        assert_pieces("(unbalanced", &[text("unbalanced", 1.1)]);
        assert_pieces(r"\(literal\]", &[text("(literal]", 1.0)]);
        assert_pieces("(unnecessary)(parens)", &[text("unnecessaryparens", 1.1)]);
        assert_pieces(
            "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
            &[
                text("a ", 1.0),
                text("house", 1.5730000000000004),
                text(" ", 1.1),
                text("on", 1.0),
                text(" a ", 1.1),
                text("hill", 0.55),
                text(", sun, ", 1.1),
                text("sky", 1.4641000000000006),
                text(".", 1.1),
            ],
        );
    }

    #[test]
    fn doc_example_weights_are_bit_exact() {
        // A1111's own doctest output, so the multiplication order must match to the bit.
        let got = parse("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).");
        let weights: Vec<f64> = got
            .iter()
            .filter_map(|piece| match piece {
                PromptPiece::Text { weight, .. } => Some(*weight),
                PromptPiece::Break => None,
            })
            .collect();
        assert_eq!(
            weights,
            [
                1.0,
                1.5730000000000004,
                1.1,
                1.0,
                1.1,
                0.55,
                1.1,
                1.4641000000000006,
                1.1
            ]
        );
    }

    #[test]
    fn empty_prompt_is_one_empty_piece() {
        assert_pieces("", &[text("", 1.0)]);
        // A lone backslash vanishes but still leaves its (empty) piece behind.
        assert_pieces("\\", &[text("", 1.0)]);
    }

    #[test]
    fn explicit_weights_allow_spaces_signs_and_any_digits() {
        assert_pieces("( x : 1.3 )", &[text(" x ", 1.3)]);
        assert_pieces("(x:\t2\n)", &[text("x", 2.0)]);
        assert_pieces("(x:.5)", &[text("x", 0.5)]);
        assert_pieces("(x:+2)", &[text("x", 2.0)]);
        assert_pieces(
            "a (x:-1) b",
            &[text("a ", 1.0), text("x", -1.0), text(" b", 1.0)],
        );
        assert_pieces("(x:0)", &[text("x", 0.0)]);
        // Python's \d and float() take digits of any script.
        assert_pieces("(x:\u{FF11}.\u{FF15})", &[text("x", 1.5)]);
        assert_pieces("(x:\u{0662})", &[text("x", 2.0)]);
        assert_pieces("(x:\u{1D7D3})", &[text("x", 5.0)]);
    }

    #[test]
    fn weight_syntax_that_is_not_a_weight_stays_text() {
        // No open round bracket: the whole `:w)` is text.
        assert_pieces("x:1.2)", &[text("x:1.2)", 1.0)]);
        // A weight needs `)`; in square brackets it is plain text.
        assert_pieces("[x:1.5]", &[text("x:1.5", 1.0 / 1.1)]);
        // Unclosed: the colon and number are text inside the implicit bracket.
        assert_pieces("(x:1.3", &[text("x:1.3", 1.1)]);
        assert_pieces("a:b", &[text("a:b", 1.0)]);
        assert_pieces("(x: )", &[text("x: ", 1.1)]);
        assert_pieces("(x:1e2)", &[text("x:1e2", 1.1)]);
    }

    #[test]
    fn malformed_weight_is_an_error() {
        for prompt in ["(x:1.2.3)", "(x:.)", "(x: -. )", "a ((b:..5))"] {
            match parse_emphasis(prompt) {
                Err(PromptError::EmphasisWeight { text }) => {
                    assert!(text.starts_with(':') && text.ends_with(')'), "{text:?}")
                }
                other => panic!("{prompt:?}: expected EmphasisWeight, got {other:?}"),
            }
        }
        // Without an open bracket the same text is harmless.
        assert_pieces("x:1.2.3)", &[text("x:1.2.3)", 1.0)]);
    }

    #[test]
    fn escapes_and_stray_brackets() {
        assert_pieces(r"\(a\) \[b\]", &[text("(a) [b]", 1.0)]);
        assert_pieces(r"back\\slash", &[text(r"back\slash", 1.0)]);
        // An unknown escape loses its backslash (A1111 matches the `\` alone).
        assert_pieces(r"a\nb", &[text("anb", 1.0)]);
        assert_pieces(r"(a\))", &[text("a)", 1.1)]);
        assert_pieces("a) b] c", &[text("a) b] c", 1.0)]);
        assert_pieces(r"\((x)", &[text("(", 1.0), text("x", 1.1)]);
    }

    #[test]
    fn nested_brackets_multiply() {
        assert_pieces("((a))", &[text("a", 1.1 * 1.1)]);
        assert_pieces("[[a]]", &[text("a", 1.0 / 1.1 / 1.1)]);
        assert_pieces("([a])", &[text("a", 1.0)]);
        assert_pieces("((a:2) b)", &[text("a", 2.0 * 1.1), text(" b", 1.1)]);
        assert_pieces(
            "(a [b (c:0.5)])",
            &[text("a ", 1.1), text("b ", 1.0), text("c", 0.5)],
        );
        // Unclosed brackets close at the end: round ones first, oldest first.
        assert_pieces("((a [b", &[text("a ", 1.21), text("b", 1.1)]);
        // Mixed closers pop their own kind.
        assert_pieces(
            "(a [b) c]",
            &[text("a ", 1.1), text("b", 1.0), text(" c", 1.0 / 1.1)],
        );
    }

    #[test]
    fn break_splits_pieces() {
        assert_pieces(
            "a BREAK b",
            &[text("a", 1.0), PromptPiece::Break, text("b", 1.0)],
        );
        assert_pieces(
            "a \n BREAK\t\tb",
            &[text("a", 1.0), PromptPiece::Break, text("b", 1.0)],
        );
        assert_pieces("BREAK", &[text("", 1.0), PromptPiece::Break, text("", 1.0)]);
        assert_pieces(
            "a BREAK BREAK b",
            &[
                text("a", 1.0),
                PromptPiece::Break,
                text("", 1.0),
                PromptPiece::Break,
                text("b", 1.0),
            ],
        );
        // Word boundaries, not spaces, delimit the keyword.
        assert_pieces(
            "a,BREAK,b",
            &[text("a,", 1.0), PromptPiece::Break, text(",b", 1.0)],
        );
        assert_pieces(
            "(a) BREAK (b)",
            &[
                text("a", 1.1),
                text("", 1.0),
                PromptPiece::Break,
                text("", 1.0),
                text("b", 1.1),
            ],
        );
    }

    #[test]
    fn break_lookalikes_are_text() {
        assert_pieces("a break b", &[text("a break b", 1.0)]);
        assert_pieces("aBREAK b", &[text("aBREAK b", 1.0)]);
        assert_pieces("a BREAKS b", &[text("a BREAKS b", 1.0)]);
        assert_pieces("a BREAK_b", &[text("a BREAK_b", 1.0)]);
        assert_pieces("\u{E9}BREAK", &[text("\u{E9}BREAK", 1.0)]);
        // Inside brackets the marker gets multiplied and is no longer a break: A1111 then
        // feeds the word BREAK to the tokenizer.
        assert_pieces(
            "(a BREAK b)",
            &[text("a", 1.1), text("BREAK", -1.1), text("b", 1.1)],
        );
    }

    #[test]
    fn lora_tags_are_extracted_and_removed() {
        let (rest, tags) = extract_lora_tags("a <lora:foo:0.8> cat, <lyco:bar> <lora:baz:-1.5>")
            .expect("valid tags");
        assert_eq!(rest, "a  cat,  ");
        assert_eq!(
            tags,
            [
                LoraTag {
                    name: "foo".into(),
                    multiplier: 0.8
                },
                LoraTag {
                    name: "bar".into(),
                    multiplier: 1.0
                },
                LoraTag {
                    name: "baz".into(),
                    multiplier: -1.5
                },
            ]
        );
        let (_, tags) = extract_lora_tags("<lora:foo: 0.5 >").expect("valid tag");
        assert_eq!(tags[0].multiplier, 0.5);
        let (_, tags) = extract_lora_tags("<lora:my lora v2.1:.5>").expect("valid tag");
        assert_eq!(tags[0].name, "my lora v2.1");
    }

    #[test]
    fn other_extra_networks_are_removed_silently() {
        let (rest, tags) =
            extract_lora_tags("a <hypernet:x:1><LORA:y:1> b <\u{E9}t\u{E9}:z>").expect("ok");
        assert_eq!(rest, "a  b ");
        assert!(tags.is_empty());
    }

    #[test]
    fn text_that_is_not_a_tag_is_kept() {
        for prompt in [
            "a < b > c",
            "<lora:foo",
            "<:x>",
            "<lora:>",
            "<lo-ra:x>",
            "< lora:x>",
        ] {
            let (rest, tags) = extract_lora_tags(prompt).expect("no tag");
            assert_eq!(rest, prompt);
            assert!(tags.is_empty(), "{prompt:?}");
        }
        // `[^>]+` runs to the first `>`, swallowing a nested tag (as in A1111).
        let (rest, tags) = extract_lora_tags("x <a:<lora:y:1> z").expect("ok");
        assert_eq!(rest, "x  z");
        assert!(tags.is_empty());
        // A failed match at one `<` does not hide a tag at the next.
        let (rest, tags) = extract_lora_tags("<<lora:y:2>").expect("ok");
        assert_eq!(rest, "<");
        assert_eq!(tags[0].multiplier, 2.0);
    }

    #[test]
    fn bad_lora_tags_are_errors_naming_the_tag() {
        match extract_lora_tags("a <lora:foo:abc> b") {
            Err(e @ PromptError::LoraMultiplier { .. }) => {
                assert!(e.to_string().contains("<lora:foo:abc>"), "{e}");
                assert!(e.to_string().contains("\"abc\""), "{e}");
            }
            other => panic!("expected LoraMultiplier, got {other:?}"),
        }
        for tag in ["<lora:foo:nan>", "<lora:foo:inf>", "<lora:foo:>"] {
            assert!(
                matches!(
                    extract_lora_tags(tag),
                    Err(PromptError::LoraMultiplier { .. })
                ),
                "{tag}"
            );
        }
        for tag in ["<lora:foo:1:0.5>", "<lora::1>", "<lyco:a:b:c>"] {
            match extract_lora_tags(tag) {
                Err(e @ PromptError::LoraArguments { .. }) => {
                    assert!(e.to_string().contains(tag), "{e}")
                }
                other => panic!("{tag}: expected LoraArguments, got {other:?}"),
            }
        }
    }

    // ---- chunking, with a fake tokenizer: one token per whitespace-separated word ----

    const COMMA: u32 = 267;
    const MY: u32 = 20;
    const STYLE: u32 = 21;

    /// `tN` -> 1000 + N, `,` -> COMMA, `my`/`style` -> MY/STYLE, anything else -> 99.
    fn fake_tokenize(text: &str) -> Vec<u32> {
        text.split_whitespace()
            .map(|word| match word {
                "," => COMMA,
                "my" => MY,
                "style" => STYLE,
                _ => word
                    .strip_prefix('t')
                    .and_then(|n| n.parse::<u32>().ok())
                    .map_or(99, |n| 1000 + n),
            })
            .collect()
    }

    /// `t{from} t{from+1} … t{to-1}`.
    fn words(range: std::ops::Range<u32>) -> String {
        range.map(|n| format!("t{n}")).collect::<Vec<_>>().join(" ")
    }

    fn ids(range: std::ops::Range<u32>) -> Vec<u32> {
        range.map(|n| 1000 + n).collect()
    }

    fn chunk_text(prompt: &str, embeddings: &[EmbeddingName]) -> ChunkedPrompt {
        chunk_prompt(&parse(prompt), &fake_tokenize, Some(COMMA), embeddings)
    }

    fn lengths(chunked: &ChunkedPrompt) -> Vec<usize> {
        chunked.chunks.iter().map(|c| c.tokens.len()).collect()
    }

    fn all_tokens(chunked: &ChunkedPrompt) -> Vec<u32> {
        chunked
            .chunks
            .iter()
            .flat_map(|c| c.tokens.iter().copied())
            .collect()
    }

    #[test]
    fn short_prompt_is_one_chunk() {
        let chunked = chunk_text(&words(0..5), &[]);
        assert_eq!(chunked.chunks.len(), 1);
        assert_eq!(chunked.chunks[0].tokens, ids(0..5));
        assert_eq!(chunked.chunks[0].weights, [1.0; 5]);
        assert_eq!(chunked.counter(), (5, 75));
    }

    #[test]
    fn empty_prompt_is_one_empty_chunk() {
        let chunked = chunk_text("", &[]);
        assert_eq!(chunked.chunks, [PromptChunk::default()]);
        assert_eq!(chunked.counter(), (0, 75));
        let no_pieces = chunk_prompt(&[], &fake_tokenize, Some(COMMA), &[]);
        assert_eq!(no_pieces.counter(), (0, 75));
    }

    #[test]
    fn eighty_tokens_make_two_chunks() {
        let chunked = chunk_text(&words(0..80), &[]);
        assert_eq!(lengths(&chunked), [75, 5]);
        assert_eq!(all_tokens(&chunked), ids(0..80));
        assert_eq!(chunked.counter(), (80, 150));
    }

    #[test]
    fn exactly_full_chunk_stays_one_chunk() {
        let chunked = chunk_text(&words(0..75), &[]);
        assert_eq!(lengths(&chunked), [75]);
        assert_eq!(chunked.counter(), (75, 75));
    }

    #[test]
    fn long_prompts_are_never_truncated() {
        let chunked = chunk_text(&words(0..300), &[]);
        assert_eq!(lengths(&chunked), [75, 75, 75, 75]);
        assert_eq!(all_tokens(&chunked), ids(0..300));
        assert_eq!(chunked.counter(), (300, 300));

        let chunked = chunk_text(&words(0..301), &[]);
        assert_eq!(lengths(&chunked), [75, 75, 75, 75, 1]);
        assert_eq!(chunked.counter(), (301, 375));
    }

    /// 75 tokens with a comma at index `comma`, then one more token `t75`.
    fn full_chunk_with_comma_at(comma: u32) -> String {
        format!("{} , {} t75", words(0..comma), words(comma + 1..75))
    }

    #[test]
    fn tail_after_a_near_comma_moves_to_the_next_chunk() {
        let chunked = chunk_text(&full_chunk_with_comma_at(60), &[]);
        let mut first = ids(0..60);
        first.push(COMMA);
        assert_eq!(chunked.chunks[0].tokens, first);
        assert_eq!(chunked.chunks[1].tokens, ids(61..76));
        // The first chunk still counts as full.
        assert_eq!(chunked.counter(), (75 + 15, 150));

        // The window is inclusive: 75 - 55 = 20 still backtracks.
        let chunked = chunk_text(&full_chunk_with_comma_at(55), &[]);
        assert_eq!(lengths(&chunked), [56, 20]);
    }

    #[test]
    fn far_comma_does_not_backtrack() {
        for comma in [40, 54] {
            let chunked = chunk_text(&full_chunk_with_comma_at(comma), &[]);
            assert_eq!(lengths(&chunked), [75, 1], "comma at {comma}");
            assert_eq!(chunked.chunks[1].tokens, ids(75..76));
        }
    }

    #[test]
    fn comma_at_the_very_end_moves_nothing() {
        let chunked = chunk_text(&format!("{} , t75", words(0..74)), &[]);
        assert_eq!(lengths(&chunked), [75, 1]);
        assert_eq!(chunked.chunks[0].tokens[74], COMMA);
    }

    #[test]
    fn comma_arriving_at_a_full_chunk_starts_the_next() {
        let chunked = chunk_text(&format!("{} , t76", words(0..75)), &[]);
        assert_eq!(lengths(&chunked), [75, 2]);
        assert_eq!(chunked.chunks[1].tokens, [COMMA, 1076]);
    }

    #[test]
    fn backtracking_keeps_weights_with_their_tokens() {
        let prompt = format!("{} , {} (t74) t75", words(0..60), words(61..74));
        let chunked = chunk_text(&prompt, &[]);
        assert_eq!(lengths(&chunked), [61, 15]);
        let tail = &chunked.chunks[1];
        assert_eq!(tail.tokens[13], 1074);
        assert_eq!(tail.weights[13], 1.1f32);
        assert_eq!(tail.weights[12], 1.0);
        assert_eq!(tail.weights[14], 1.0);
    }

    #[test]
    fn comma_backtracking_can_be_disabled_by_having_no_comma_id() {
        let pieces = parse(&full_chunk_with_comma_at(60));
        let chunked = chunk_prompt(&pieces, &fake_tokenize, None, &[]);
        assert_eq!(lengths(&chunked), [75, 1]);
    }

    #[test]
    fn break_ends_the_chunk() {
        let chunked = chunk_text("t0 t1 BREAK t2", &[]);
        assert_eq!(lengths(&chunked), [2, 1]);
        assert_eq!(chunked.chunks[1].tokens, ids(2..3));
        assert_eq!(chunked.counter(), (76, 150));

        // Even an empty chunk, and a trailing BREAK leaves no empty chunk behind.
        let chunked = chunk_text("BREAK t0 BREAK BREAK t1 BREAK", &[]);
        assert_eq!(lengths(&chunked), [0, 1, 0, 1]);
        assert_eq!(chunked.counter(), (300, 300));

        // A BREAK in brackets is the word "BREAK" (id 99 here), weighted -1.1.
        let chunked = chunk_text("(t0 BREAK t1)", &[]);
        assert_eq!(chunked.chunks[0].tokens, [1000, 99, 1001]);
        assert_eq!(chunked.chunks[0].weights, [1.1f32, -1.1, 1.1]);
    }

    #[test]
    fn weights_follow_the_pieces() {
        let chunked = chunk_text("t0 (t1 t2:1.5) [t3]", &[]);
        let chunk = &chunked.chunks[0];
        assert_eq!(chunk.tokens, ids(0..4));
        assert_eq!(chunk.weights, [1.0, 1.5, 1.5, (1.0 / 1.1) as f32]);
    }

    fn my_style(vectors: usize) -> EmbeddingName {
        EmbeddingName {
            tokens: vec![MY, STYLE],
            vectors,
        }
    }

    #[test]
    fn embeddings_become_placeholders() {
        let embeddings = [my_style(3)];
        let chunked = chunk_text("t0 (my style) t1 my t2", &embeddings);
        let chunk = &chunked.chunks[0];
        assert_eq!(chunk.tokens, [1000, 0, 0, 0, 1001, MY, 1002]);
        assert_eq!(chunk.weights, [1.0, 1.1, 1.1, 1.1, 1.0, 1.0, 1.0]);
        assert_eq!(
            chunk.embeddings,
            [EmbeddingSlot {
                offset: 1,
                embedding: 0
            }]
        );
        assert_eq!(chunked.counter(), (7, 75));
    }

    #[test]
    fn longest_embedding_name_wins_then_the_first_listed() {
        let just_my = EmbeddingName {
            tokens: vec![MY],
            vectors: 1,
        };
        let embeddings = [just_my.clone(), my_style(2), my_style(4)];
        let chunked = chunk_text("my style my", &embeddings);
        let chunk = &chunked.chunks[0];
        assert_eq!(chunk.tokens, [0, 0, 0]);
        let used: Vec<usize> = chunk.embeddings.iter().map(|s| s.embedding).collect();
        assert_eq!(used, [1, 0]);
        assert_eq!(chunk.embeddings[1].offset, 2);
    }

    #[test]
    fn embedding_names_do_not_span_pieces() {
        let chunked = chunk_text("my (style)", &[my_style(2)]);
        assert_eq!(chunked.chunks[0].tokens, [MY, STYLE]);
        assert!(chunked.chunks[0].embeddings.is_empty());
    }

    #[test]
    fn embedding_that_does_not_fit_starts_a_new_chunk() {
        let prompt = format!("{} my style t73", words(0..73));
        let chunked = chunk_text(&prompt, &[my_style(3)]);
        assert_eq!(lengths(&chunked), [73, 4]);
        assert!(chunked.chunks[0].embeddings.is_empty());
        assert_eq!(chunked.chunks[1].tokens, [0, 0, 0, 1073]);
        assert_eq!(
            chunked.chunks[1].embeddings,
            [EmbeddingSlot {
                offset: 0,
                embedding: 0
            }]
        );
        assert_eq!(chunked.counter(), (79, 150));

        // One that exactly fills the chunk stays.
        let prompt = format!("{} my style t72", words(0..72));
        let chunked = chunk_text(&prompt, &[my_style(3)]);
        assert_eq!(lengths(&chunked), [75, 1]);
        assert_eq!(chunked.chunks[0].embeddings[0].offset, 72);
    }

    #[test]
    fn embedding_in_a_backtracked_tail_moves_with_it() {
        // Comma at 60, embedding at 65..68, chunk full at 75, then t75.
        let prompt = format!(
            "{} , {} my style {} t75",
            words(0..60),
            words(61..65),
            words(68..75)
        );
        let chunked = chunk_text(&prompt, &[my_style(3)]);
        assert_eq!(lengths(&chunked), [61, 15]);
        assert!(chunked.chunks[0].embeddings.is_empty());
        assert_eq!(
            chunked.chunks[1].embeddings,
            [EmbeddingSlot {
                offset: 4,
                embedding: 0
            }]
        );
        assert_eq!(&chunked.chunks[1].tokens[4..7], [0, 0, 0]);
    }

    #[test]
    fn unplaceable_embeddings_are_ignored() {
        let embeddings = [
            my_style(0),
            my_style(CHUNK_LENGTH + 1),
            EmbeddingName {
                tokens: Vec::new(),
                vectors: 1,
            },
        ];
        let chunked = chunk_text("my style", &embeddings);
        assert_eq!(chunked.chunks[0].tokens, [MY, STYLE]);
        assert!(chunked.chunks[0].embeddings.is_empty());
    }

    #[test]
    fn with_the_clip_tokenizer() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/clip-tokenizer");
        let tokenizer =
            crate::text::tokenizer::ClipTokenizer::from_dir(&dir).expect("load tokenizer");
        let tokenize = |text: &str| tokenizer.encode(text);
        let (rest, loras) =
            extract_lora_tags("a photo, (cat:1.2) <lora:x:0.5>").expect("valid prompt");
        assert_eq!(loras.len(), 1);
        let pieces = parse_emphasis(&rest).expect("valid emphasis");
        let chunked = chunk_prompt(&pieces, &tokenize, tokenizer.comma_id(), &[]);
        // "a photo , cat"
        assert_eq!(chunked.chunks[0].tokens, [320, 1125, 267, 2368]);
        assert_eq!(chunked.chunks[0].weights, [1.0, 1.0, 1.0, 1.2]);
        assert_eq!(chunked.counter(), (4, 75));

        // 60 words, then a comma and 20 more: the tail after the comma moves.
        let prompt = format!("{} , {}", ["cat"; 60].join(" "), ["dog"; 20].join(" "));
        let pieces = parse_emphasis(&prompt).expect("valid emphasis");
        let chunked = chunk_prompt(&pieces, &tokenize, tokenizer.comma_id(), &[]);
        assert_eq!(lengths(&chunked), [61, 20]);
        assert_eq!(chunked.counter(), (95, 150));
    }
}
