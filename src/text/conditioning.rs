//! Prompt text to the UNet's text conditioning, per text encoder: literal (diffusers) or with
//! A1111's syntax — emphasis weights, `BREAK`, prompts of any length in 75-token chunks —
//! plus textual-inversion embeddings and clip skip.

use std::sync::Arc;

use candle_core::{DType, Result, Tensor};

use crate::networks::text_encoder::ClipTextEncoder;
use crate::networks::Family;
use crate::text::embeddings::TextualInversion;
pub use crate::text::prompt::PromptSyntax;
use crate::text::prompt::{chunk_text, ChunkedPrompt, EmbeddingName, PromptChunk, CHUNK_LENGTH};
use crate::text::tokenizer::ClipTokenizer;

/// One CLIP tokenizer with its encoder.
pub struct TextStage {
    pub tokenizer: Arc<ClipTokenizer>,
    pub encoder: ClipTextEncoder,
}

/// Encoded text: `(1, 77·chunks, features)` and, for SDXL, the pooled embedding `(1, dim)`.
pub(crate) struct EncodedPrompt {
    pub hidden: Tensor,
    pub pooled: Option<Tensor>,
}

/// How the text is tokenized for one encoder: content chunks of ≤ 75 tokens.
fn chunks_for(
    tokenizer: &ClipTokenizer,
    text: &str,
    syntax: PromptSyntax,
    names: &[EmbeddingName],
) -> Result<ChunkedPrompt> {
    chunk_text(tokenizer, text, syntax, names)
        .map_err(|err| candle_core::Error::Msg(err.to_string()))
}

/// Ids and weights of one chunk as the encoder sees it: BOS, content, EOS, pad to 77.
fn chunk_layout(stage: &TextStage, chunk: &PromptChunk) -> (Vec<u32>, Vec<f32>) {
    let tokenizer = &stage.tokenizer;
    let length = CHUNK_LENGTH + 2;
    let mut ids = Vec::with_capacity(length);
    let mut weights = Vec::with_capacity(length);
    ids.push(tokenizer.bos_id());
    weights.push(1.0);
    ids.extend(&chunk.tokens);
    weights.extend(&chunk.weights);
    ids.push(tokenizer.eos_id());
    weights.push(1.0);
    ids.resize(length.max(ids.len()), tokenizer.pad_id());
    weights.resize(ids.len(), 1.0);
    (ids, weights)
}

/// A1111's emphasis: scale each token's features by its weight, then restore the mean.
fn apply_weights(hidden: &Tensor, weights: &[f32]) -> Result<Tensor> {
    if weights.iter().all(|&w| w == 1.0) {
        return Ok(hidden.clone());
    }
    let dtype = hidden.dtype();
    let hidden = hidden.to_dtype(DType::F32)?;
    let original_mean = hidden.mean_all()?.to_scalar::<f32>()?;
    let scale = Tensor::from_slice(weights, (1, weights.len(), 1), hidden.device())?;
    let weighted = hidden.broadcast_mul(&scale)?;
    let new_mean = weighted.mean_all()?.to_scalar::<f32>()?;
    (weighted * f64::from(original_mean / new_mean))?.to_dtype(dtype)
}

/// A model's text encoders with what decides how they read prompts.
#[derive(Clone, Copy)]
pub(crate) struct PromptEncoder<'a> {
    pub stages: &'a [TextStage],
    pub family: Family,
    pub embeddings: &'a [Arc<TextualInversion>],
    pub syntax: PromptSyntax,
    /// A1111 numbering: 1 = the last layer.
    pub clip_skip: usize,
}

impl PromptEncoder<'_> {
    /// Encodes `text` for every text encoder; returns the per-stage chunk hidden states and the
    /// pooled output of the first chunk of the projecting encoder.
    fn encode_stages(&self, text: &str) -> Result<(Vec<Vec<Tensor>>, Option<Tensor>)> {
        let PromptEncoder {
            stages,
            family,
            embeddings,
            syntax,
            clip_skip,
        } = *self;
        let mut per_stage = Vec::with_capacity(stages.len());
        let mut pooled = None;
        for (index, stage) in stages.iter().enumerate() {
            let width = stage.encoder.hidden_size();
            let usable: Vec<&Tensor> = embeddings
                .iter()
                .filter_map(|e| e.vectors_for(index, stages.len(), width))
                .collect();
            let names: Vec<EmbeddingName> = embeddings
                .iter()
                .filter(|e| e.vectors_for(index, stages.len(), width).is_some())
                .map(|e| EmbeddingName {
                    tokens: stage.tokenizer.encode(&e.name),
                    vectors: e.vector_count(),
                })
                .collect();
            let chunked = chunks_for(&stage.tokenizer, text, syntax, &names)?;
            let mut hidden_chunks = Vec::with_capacity(chunked.chunks.len());
            for (chunk_index, chunk) in chunked.chunks.iter().enumerate() {
                let (ids, weights) = chunk_layout(stage, chunk);
                let replacements: Vec<(usize, &Tensor)> = chunk
                    .embeddings
                    .iter()
                    .map(|slot| (slot.offset + 1, usable[slot.embedding]))
                    .collect();
                let out = stage.encoder.forward_with_embeddings(&ids, &replacements)?;
                let hidden = match family {
                    Family::StableDiffusion if clip_skip <= 1 => out.last_hidden_state.clone(),
                    Family::StableDiffusion => stage
                        .encoder
                        .final_layer_norm(out.hidden_state_from_end(clip_skip)?)?,
                    Family::StableDiffusionXl => {
                        out.hidden_state_from_end(clip_skip.max(1) + 1)?.clone()
                    }
                };
                hidden_chunks.push(apply_weights(&hidden, &weights)?);
                if chunk_index == 0 && stage.encoder.has_projection() {
                    pooled = Some(out.pooled);
                }
            }
            per_stage.push(hidden_chunks);
        }
        Ok((per_stage, pooled))
    }

    /// The conditioning for one prompt. SD: the encoder's chunks along the sequence axis. SDXL:
    /// per chunk, both encoders along the feature axis.
    pub(crate) fn encode(&self, text: &str) -> Result<EncodedPrompt> {
        let (mut per_stage, pooled) = self.encode_stages(text)?;
        // Tokenizers can disagree on length (SDXL's second turns every "!" into a pad token), so
        // a stage that came out shorter gets the empty prompt's chunk appended, as A1111 pads.
        let chunks = per_stage.iter().map(Vec::len).max().unwrap_or(1);
        if per_stage.iter().any(|s| s.len() != chunks) {
            let plain = PromptEncoder {
                embeddings: &[],
                syntax: PromptSyntax::Plain,
                ..*self
            };
            let (empty, _) = plain.encode_stages("")?;
            for (stage, empty) in per_stage.iter_mut().zip(empty) {
                while stage.len() < chunks {
                    stage.push(empty[0].clone());
                }
            }
        }
        let per_chunk: Vec<Tensor> = (0..chunks)
            .map(|i| {
                let features: Vec<&Tensor> = per_stage.iter().map(|s| &s[i]).collect();
                Tensor::cat(&features, 2)
            })
            .collect::<Result<_>>()?;
        Ok(EncodedPrompt {
            hidden: Tensor::cat(&per_chunk, 1)?,
            pooled,
        })
    }
}

/// Extends the shorter of two conditionings with `empty` (the empty prompt's one chunk) until
/// both have the same length, as A1111 does for prompts of different chunk counts.
pub(crate) fn pad_to_same_length(a: &mut Tensor, b: &mut Tensor, empty: &Tensor) -> Result<()> {
    let chunk = empty.dim(1)?;
    let (la, lb) = (a.dim(1)?, b.dim(1)?);
    let pad = |t: &Tensor, missing: usize| -> Result<Tensor> {
        let mut parts = vec![t.clone()];
        parts.extend(std::iter::repeat_n(empty.clone(), missing / chunk));
        Tensor::cat(&parts, 1)
    };
    if la < lb {
        *a = pad(a, lb - la)?;
    } else if lb < la {
        *b = pad(b, la - lb)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn weights_scale_tokens_and_keep_the_mean() {
        let hidden = Tensor::new(&[[[1.0f32, 2.0], [3.0, 4.0]]], &Device::Cpu).unwrap();
        let out = apply_weights(&hidden, &[1.0, 2.0]).unwrap();
        let mean = out.mean_all().unwrap().to_scalar::<f32>().unwrap();
        assert!((mean - 2.5).abs() < 1e-6);
        let rows: Vec<Vec<Vec<f32>>> = out.to_vec3().unwrap();
        // 2× on the second token, then everything × 10/17 to restore the mean (2.5 / 4.25).
        let factor = 10.0 / 17.0;
        assert!((rows[0][1][1] - 8.0 * factor).abs() < 1e-5, "{rows:?}");
        assert!((rows[0][0][0] - factor).abs() < 1e-5, "{rows:?}");
        let same = apply_weights(&hidden, &[1.0, 1.0]).unwrap();
        assert_eq!(
            same.to_vec3::<f32>().unwrap(),
            hidden.to_vec3::<f32>().unwrap()
        );
    }

    #[test]
    fn shorter_conditioning_is_padded_with_empty_chunks() {
        let device = Device::Cpu;
        let mut long = Tensor::zeros((1, 6, 2), DType::F32, &device).unwrap();
        let mut short = Tensor::zeros((1, 2, 2), DType::F32, &device).unwrap();
        let empty = Tensor::ones((1, 2, 2), DType::F32, &device).unwrap();
        pad_to_same_length(&mut short, &mut long, &empty).unwrap();
        assert_eq!(short.dims(), &[1, 6, 2]);
        let sum = short.sum_all().unwrap().to_scalar::<f32>().unwrap();
        assert_eq!(sum, 8.0);
        assert_eq!(
            "A1111".parse::<PromptSyntax>().unwrap(),
            PromptSyntax::A1111
        );
        assert!("fancy".parse::<PromptSyntax>().is_err());
    }
}
