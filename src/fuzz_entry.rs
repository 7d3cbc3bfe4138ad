//! The bodies of the fuzz targets in `fuzz/` (`cargo +nightly fuzz run <name>`), here in the
//! library so that `tests/fuzz_corpus.rs` replays the committed corpus through the same code
//! on the stable toolchain. Each takes arbitrary bytes, must never panic, and only parses:
//! no model is built. See `fuzz/README.md`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use candle_core::{DType, Device};

use crate::formats::parameters::GenerationParameters;
use crate::formats::png::png_parameters_from_bytes;
use crate::models::embeddings::load_embedding;
use crate::models::lora::fuzz_hooks::{map_name, KeyIndex};
use crate::models::lora::LoraFile;
use crate::models::single_file::{self, Checkpoint, Layout};
use crate::models::weights::WeightMap;
use crate::text::prompt::{
    chunk_prompt, chunk_text, extract_lora_tags, parse_emphasis, prompt_pieces, token_usage,
    ChunkedPrompt, EmbeddingName, PromptPiece, PromptSyntax, CHUNK_LENGTH,
};
use crate::text::tokenizer::ClipTokenizer;

fn fixture(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(relative)
}

/// The input as text, one name per line (the name-list targets).
fn lines(text: &str) -> Vec<&str> {
    text.split('\n').collect()
}

/// A PNG's `parameters` text, then A1111's parser and writer on it and on the input itself
/// read as text.
pub fn png_parameters(data: &[u8]) {
    if let Ok(Some(text)) = png_parameters_from_bytes(data) {
        parse_parameters(&text);
    }
    parse_parameters(&String::from_utf8_lossy(data));
}

fn parse_parameters(text: &str) {
    if let Ok(parameters) = GenerationParameters::parse_a1111(text) {
        let written = parameters.to_a1111_string();
        let _ = GenerationParameters::parse_a1111(&written);
    }
}

/// A unique temporary path for this process and thread (the replay test runs in threads).
fn temp_path() -> PathBuf {
    let thread = format!("{:?}", std::thread::current().id());
    let thread: String = thread.chars().filter(char::is_ascii_digit).collect();
    std::env::temp_dir().join(format!(
        "latent-studio-fuzz-{}-{thread}.safetensors",
        std::process::id()
    ))
}

/// The input as a `.safetensors` file: the header reader and every tensor read by the
/// weight loader, the single-file checkpoint's family detection, the LoRA loader (its own
/// header reader for `__metadata__`, its key names) and the textual-inversion loader.
pub fn safetensors_header(data: &[u8]) {
    let path = temp_path();
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let mut weights = WeightMap::default();
    let _ = weights.read_safetensors(&path, DType::F32, &Device::Cpu, true);
    if let Ok(checkpoint) = Checkpoint::open(&path) {
        let _ = checkpoint.unet_in_channels();
        let _ = checkpoint.kind();
    }
    let _ = LoraFile::load(&path);
    let _ = load_embedding(&path);
    let _ = std::fs::remove_file(&path);
}

/// The fake tokenizer of the prompt target: one token per character, a comma is id 1, so
/// that short inputs fill chunks and embedding names are easy to hit.
fn char_tokens(text: &str) -> Vec<u32> {
    const COMMA: u32 = 1;
    text.chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| if c == ',' { COMMA } else { u32::from(c) + 2 })
        .collect()
}

/// What `chunk_prompt` promises: never empty, at most 75 tokens a chunk, a weight per token,
/// embedding slots inside their chunk over placeholder ids, A1111's token count.
fn check_chunks(chunked: &ChunkedPrompt, embeddings: &[EmbeddingName]) {
    assert!(!chunked.chunks.is_empty(), "no chunk");
    for chunk in &chunked.chunks {
        assert!(chunk.tokens.len() <= CHUNK_LENGTH, "overfull chunk");
        assert_eq!(
            chunk.tokens.len(),
            chunk.weights.len(),
            "a weight per token"
        );
        for slot in &chunk.embeddings {
            let vectors = embeddings[slot.embedding].vectors;
            let placeholders = chunk.tokens.get(slot.offset..slot.offset + vectors);
            assert!(
                placeholders.is_some_and(|p| p.iter().all(|&id| id == 0)),
                "embedding slot outside its placeholders"
            );
        }
    }
    // Every chunk but the last counts as full; so does the last when a `BREAK` ended it.
    let before_last = CHUNK_LENGTH * (chunked.chunks.len() - 1);
    let last = chunked.chunks.last().map_or(0, |c| c.tokens.len());
    assert!(
        [before_last + last, before_last + CHUNK_LENGTH].contains(&chunked.token_count),
        "token count {} for {} chunks",
        chunked.token_count,
        chunked.chunks.len()
    );
}

/// A1111 prompt syntax: extra-network tags, emphasis, `BREAK`, and the 75-token chunking with
/// textual-inversion names (including the degenerate ones the chunker must ignore).
pub fn a1111_prompt(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = extract_lora_tags(&text);
    let _ = parse_emphasis(&text);
    let embeddings = [
        EmbeddingName {
            tokens: char_tokens("em"),
            vectors: 3,
        },
        EmbeddingName {
            tokens: char_tokens("e"),
            vectors: 75,
        },
        EmbeddingName {
            tokens: char_tokens("emb"),
            vectors: 76,
        },
        EmbeddingName {
            tokens: char_tokens("x"),
            vectors: 0,
        },
        EmbeddingName {
            tokens: Vec::new(),
            vectors: 2,
        },
    ];
    for syntax in PromptSyntax::ALL {
        let Ok(pieces) = prompt_pieces(&text, syntax) else {
            continue;
        };
        let comma = (syntax == PromptSyntax::A1111).then_some(1);
        let plain = chunk_prompt(&pieces, &char_tokens, comma, &[]);
        check_chunks(&plain, &[]);
        // Without embeddings nothing is dropped and nothing is added.
        let tokens: usize = pieces
            .iter()
            .map(|piece| match piece {
                PromptPiece::Text { text, .. } => char_tokens(text).len(),
                PromptPiece::Break => 0,
            })
            .sum();
        let chunked: usize = plain.chunks.iter().map(|c| c.tokens.len()).sum();
        assert_eq!(tokens, chunked, "tokens dropped or added");
        check_chunks(
            &chunk_prompt(&pieces, &char_tokens, comma, &embeddings),
            &embeddings,
        );
    }
}

/// Names of a real diffusers UNet and text encoder (the tiny SD 1.x fixture).
fn reference_index() -> &'static KeyIndex {
    static INDEX: OnceLock<KeyIndex> = OnceLock::new();
    INDEX.get_or_init(|| {
        let files = [
            "models/sd1/unet/diffusion_pytorch_model.safetensors",
            "models/sd1/text_encoder/model.safetensors",
        ];
        let checkpoints: Vec<Checkpoint> = files
            .iter()
            .map(|f| Checkpoint::open(&fixture(f)).expect("the sd1 fixture model"))
            .collect();
        KeyIndex::new(checkpoints.iter().flat_map(Checkpoint::names))
    })
}

/// LoRA key names (one a line; the first byte picks the UNet's layers per block) mapped onto
/// model weights the way the LoRA merge finds them, against the fixture model's names and
/// against the names themselves, and through the ldm → diffusers UNet renaming.
pub fn lora_keys(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let layers_per_block = usize::from(first % 8);
    let text = String::from_utf8_lossy(rest);
    let names = lines(&text);
    let own = KeyIndex::new(names.iter().copied());
    for name in &names {
        let _ = single_file::unet_name(name, layers_per_block);
        map_name(reference_index(), name, layers_per_block);
        map_name(&own, name, layers_per_block);
    }
}

fn sd1_tokenizer() -> &'static ClipTokenizer {
    static TOKENIZER: OnceLock<ClipTokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| {
        ClipTokenizer::from_dir(&fixture("models/sd1/tokenizer")).expect("the sd1 tokenizer")
    })
}

/// The CLIP tokenizer (SD 1.x vocabulary) on arbitrary text, plain and padded, and the
/// prompt chunking and counter that use it, in both syntaxes.
pub fn tokenizer(data: &[u8]) {
    let tokenizer = sd1_tokenizer();
    let text = String::from_utf8_lossy(data);
    let _ = tokenizer.encode(&text);
    let padded = tokenizer.encode_padded(&text);
    assert_eq!(padded.len(), tokenizer.max_length(), "padded length");
    for syntax in PromptSyntax::ALL {
        if let Ok(chunked) = chunk_text(tokenizer, &text, syntax, &[]) {
            match syntax {
                PromptSyntax::A1111 => check_chunks(&chunked, &[]),
                // diffusers keeps the first chunk and drops the rest; the count still says how
                // many tokens were typed, for the counter's "76/75".
                PromptSyntax::Plain => assert_eq!(chunked.chunks.len(), 1, "plain: one chunk"),
            }
        }
        let _ = token_usage(tokenizer, &text, syntax);
    }
}

/// Single-file checkpoint detection on tensor names (one a line; the first byte gives the
/// UNet's input channels, 0 meaning unknown), then every renaming onto diffusers names.
pub fn single_file_detector(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let channels = (first != 0).then_some(usize::from(first % 16));
    let text = String::from_utf8_lossy(rest);
    let names = lines(&text);
    let _ = single_file::detect_kind(&names, channels);
    let layout = Layout {
        unet_layers_per_block: usize::from(first >> 4) % 4,
        vae_blocks: usize::from(first >> 5) % 6,
    };
    single_file::convert_names_for_fuzzing(&names, layout);
}
