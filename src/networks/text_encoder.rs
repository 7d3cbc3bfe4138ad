//! CLIP text encoder (`CLIPTextModel` / `CLIPTextModelWithProjection` of transformers).

use candle_core::{DType, Device, IndexOp, Module, Result, Tensor};
use candle_nn::{embedding, layer_norm, Embedding, LayerNorm, VarBuilder};

use crate::kernels::linear::Linear;

/// The encoders' linear layers keep f32 arithmetic in bf16 mode (their output conditions every
/// step); their weights stay f16 when the file has them so, like the UNet's.
fn linear(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Linear> {
    Ok(crate::kernels::linear::linear(in_dim, out_dim, vb)?.always_f32())
}

fn linear_no_bias(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Linear> {
    Ok(crate::kernels::linear::linear_no_bias(in_dim, out_dim, vb)?.always_f32())
}
use serde::Deserialize;

/// The fields of a transformers `CLIPTextConfig` (`text_encoder/config.json`) that shape the network.
#[derive(Debug, Clone, Deserialize)]
pub struct ClipTextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "default_hidden_act")]
    pub hidden_act: String,
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
    /// Present on `CLIPTextModelWithProjection` (SDXL's second encoder).
    #[serde(default)]
    pub projection_dim: Option<usize>,
    #[serde(default)]
    pub architectures: Vec<String>,
}

fn default_hidden_act() -> String {
    "quick_gelu".to_string()
}

fn default_layer_norm_eps() -> f64 {
    1e-5
}

impl ClipTextConfig {
    pub fn has_projection(&self) -> bool {
        self.architectures
            .iter()
            .any(|a| a == "CLIPTextModelWithProjection")
    }
}

#[derive(Debug, Clone, Copy)]
enum Activation {
    QuickGelu,
    Gelu,
}

impl Activation {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "quick_gelu" => Some(Self::QuickGelu),
            "gelu" => Some(Self::Gelu),
            _ => None,
        }
    }

    fn apply(self, xs: &Tensor) -> Result<Tensor> {
        match self {
            Self::QuickGelu => xs * candle_nn::ops::sigmoid(&(xs * 1.702)?)?,
            Self::Gelu => xs.gelu_erf(),
        }
    }
}

struct SelfAttention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    heads: usize,
    head_dim: usize,
}

impl SelfAttention {
    fn new(cfg: &ClipTextConfig, vb: VarBuilder) -> Result<Self> {
        let dim = cfg.hidden_size;
        Ok(Self {
            q_proj: linear(dim, dim, vb.pp("q_proj"))?,
            k_proj: linear(dim, dim, vb.pp("k_proj"))?,
            v_proj: linear(dim, dim, vb.pp("v_proj"))?,
            out_proj: linear(dim, dim, vb.pp("out_proj"))?,
            heads: cfg.num_attention_heads,
            head_dim: dim / cfg.num_attention_heads,
        })
    }

    fn forward(&self, xs: &Tensor, causal_mask: &Tensor) -> Result<Tensor> {
        let (batch, seq, dim) = xs.dims3()?;
        let split = |t: Tensor| {
            t.reshape((batch, seq, self.heads, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let scale = (self.head_dim as f64).powf(-0.5);
        let q = split((self.q_proj.forward(xs)? * scale)?)?;
        let k = split(self.k_proj.forward(xs)?)?;
        let v = split(self.v_proj.forward(xs)?)?;
        let scores = q.matmul(&k.t()?)?.broadcast_add(causal_mask)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let out = probs
            .matmul(&v)?
            .transpose(1, 2)?
            .reshape((batch, seq, dim))?;
        self.out_proj.forward(&out)
    }
}

struct EncoderLayer {
    layer_norm1: LayerNorm,
    self_attn: SelfAttention,
    layer_norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    activation: Activation,
}

impl EncoderLayer {
    fn new(cfg: &ClipTextConfig, activation: Activation, vb: VarBuilder) -> Result<Self> {
        let dim = cfg.hidden_size;
        Ok(Self {
            layer_norm1: layer_norm(dim, cfg.layer_norm_eps, vb.pp("layer_norm1"))?,
            self_attn: SelfAttention::new(cfg, vb.pp("self_attn"))?,
            layer_norm2: layer_norm(dim, cfg.layer_norm_eps, vb.pp("layer_norm2"))?,
            fc1: linear(dim, cfg.intermediate_size, vb.pp("mlp.fc1"))?,
            fc2: linear(cfg.intermediate_size, dim, vb.pp("mlp.fc2"))?,
            activation,
        })
    }

    fn forward(&self, xs: &Tensor, causal_mask: &Tensor) -> Result<Tensor> {
        let attn = self
            .self_attn
            .forward(&self.layer_norm1.forward(xs)?, causal_mask)?;
        let xs = (xs + attn)?;
        let hidden = self.fc1.forward(&self.layer_norm2.forward(&xs)?)?;
        let hidden = self.fc2.forward(&self.activation.apply(&hidden)?)?;
        xs + hidden
    }
}

/// What the pipelines take from a text encoder.
pub struct TextEncoderOutput {
    /// Final hidden state after the final layer norm: SD 1.x/2.x conditioning.
    pub last_hidden_state: Tensor,
    /// Output of the second-to-last layer, without the final norm: SDXL conditioning.
    pub penultimate_hidden_state: Tensor,
    /// Final-norm state at the end-of-text token, through `text_projection` when present.
    pub pooled: Tensor,
    /// transformers' `hidden_states`: the embeddings, then each layer's output (no final norm).
    pub hidden_states: Vec<Tensor>,
}

impl TextEncoderOutput {
    /// `hidden_states[-from_end]` (1 = the last layer's output, 2 = the penultimate …).
    pub fn hidden_state_from_end(&self, from_end: usize) -> Result<&Tensor> {
        self.hidden_states
            .len()
            .checked_sub(from_end)
            .and_then(|i| self.hidden_states.get(i))
            .ok_or_else(|| {
                candle_core::Error::Msg(format!(
                    "clip skip {from_end} is more than the text encoder's {} layers",
                    self.hidden_states.len().saturating_sub(1)
                ))
            })
    }
}

pub struct ClipTextEncoder {
    token_embedding: Embedding,
    position_embedding: Tensor,
    layers: Vec<EncoderLayer>,
    final_layer_norm: LayerNorm,
    text_projection: Option<Linear>,
    eos_token_id: u32,
}

impl ClipTextEncoder {
    /// Builds the encoder from its config; `vb` points at the root of `model.safetensors`.
    /// `eos_token_id` locates the pooled token (its first occurrence, as transformers does).
    pub fn new(cfg: &ClipTextConfig, eos_token_id: u32, vb: VarBuilder) -> Result<Self> {
        let activation = Activation::parse(&cfg.hidden_act).ok_or_else(|| {
            candle_core::Error::Msg(format!(
                "unsupported hidden_act \"{}\" (supported: quick_gelu, gelu)",
                cfg.hidden_act
            ))
        })?;
        if cfg.num_attention_heads == 0 || !cfg.hidden_size.is_multiple_of(cfg.num_attention_heads)
        {
            candle_core::bail!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                cfg.hidden_size,
                cfg.num_attention_heads
            );
        }
        // transformers ≤ 4 saves the encoder under `text_model.`, transformers 5 at the root.
        let text = if vb.contains_tensor("text_model.embeddings.token_embedding.weight") {
            vb.pp("text_model")
        } else {
            vb.clone()
        };
        let embeddings = text.pp("embeddings");
        let token_embedding = embedding(
            cfg.vocab_size,
            cfg.hidden_size,
            embeddings.pp("token_embedding"),
        )?;
        let position_embedding = embeddings.get(
            (cfg.max_position_embeddings, cfg.hidden_size),
            "position_embedding.weight",
        )?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| EncoderLayer::new(cfg, activation, text.pp(format!("encoder.layers.{i}"))))
            .collect::<Result<Vec<_>>>()?;
        let final_layer_norm = layer_norm(
            cfg.hidden_size,
            cfg.layer_norm_eps,
            text.pp("final_layer_norm"),
        )?;
        let text_projection = match (cfg.has_projection(), cfg.projection_dim) {
            (true, Some(dim)) => Some(linear_no_bias(
                cfg.hidden_size,
                dim,
                vb.pp("text_projection"),
            )?),
            (true, None) => {
                candle_core::bail!("CLIPTextModelWithProjection config has no projection_dim")
            }
            _ => None,
        };
        Ok(Self {
            token_embedding,
            position_embedding,
            layers,
            final_layer_norm,
            text_projection,
            eos_token_id,
        })
    }

    pub fn has_projection(&self) -> bool {
        self.text_projection.is_some()
    }

    /// How many transformer layers the encoder has (what clip skip counts back through).
    pub fn layer_count(&self) -> usize {
        self.layers.len()
    }

    /// Width of the token embeddings.
    pub fn hidden_size(&self) -> usize {
        self.position_embedding.dims().get(1).copied().unwrap_or(0)
    }

    /// The final layer norm, for conditioning taken from an earlier layer (clip skip).
    pub fn final_layer_norm(&self, xs: &Tensor) -> Result<Tensor> {
        self.final_layer_norm.forward(xs)
    }

    /// Encodes one padded token sequence (batch 1).
    pub fn forward(&self, token_ids: &[u32]) -> Result<TextEncoderOutput> {
        self.forward_with_embeddings(token_ids, &[])
    }

    /// Like [`Self::forward`], with the token embeddings at some positions replaced:
    /// `(position, vectors)` puts the `(n, hidden)` rows of `vectors` at `position..position + n`
    /// (textual inversion).
    pub fn forward_with_embeddings(
        &self,
        token_ids: &[u32],
        replacements: &[(usize, &Tensor)],
    ) -> Result<TextEncoderOutput> {
        let device = self.position_embedding.device();
        let seq = token_ids.len();
        if seq == 0 || seq > self.position_embedding.dim(0)? {
            candle_core::bail!(
                "token sequence of length {seq} does not fit the encoder's {} positions",
                self.position_embedding.dim(0)?
            );
        }
        let ids = Tensor::new(token_ids, device)?.unsqueeze(0)?;
        let positions = self.position_embedding.narrow(0, 0, seq)?;
        let mut tokens = self.token_embedding.forward(&ids)?;
        for (position, vectors) in replacements {
            let vectors = vectors.to_dtype(tokens.dtype())?.to_device(device)?;
            let count = vectors.dim(0)?;
            if position + count > seq {
                candle_core::bail!(
                    "embedding at {position} ({count} vectors) overruns {seq} tokens"
                );
            }
            let mut parts = Vec::with_capacity(3);
            if *position > 0 {
                parts.push(tokens.narrow(1, 0, *position)?);
            }
            parts.push(vectors.unsqueeze(0)?);
            if position + count < seq {
                parts.push(tokens.narrow(1, position + count, seq - position - count)?);
            }
            tokens = Tensor::cat(&parts, 1)?;
        }
        let mut xs = tokens.broadcast_add(&positions)?;
        let mask = causal_mask(seq, xs.dtype(), device)?;
        let mut hidden_states = Vec::with_capacity(self.layers.len() + 1);
        for layer in &self.layers {
            hidden_states.push(xs.clone());
            xs = layer.forward(&xs, &mask)?;
        }
        hidden_states.push(xs.clone());
        let penultimate = hidden_states[hidden_states.len().saturating_sub(2)].clone();
        let last_hidden_state = self.final_layer_norm.forward(&xs)?;
        let eos_position = token_ids
            .iter()
            .position(|&id| id == self.eos_token_id)
            .unwrap_or(seq - 1);
        let mut pooled = last_hidden_state.i((.., eos_position, ..))?;
        if let Some(projection) = &self.text_projection {
            pooled = projection.forward(&pooled)?;
        }
        Ok(TextEncoderOutput {
            last_hidden_state,
            penultimate_hidden_state: penultimate,
            pooled,
            hidden_states,
        })
    }
}

fn causal_mask(seq: usize, dtype: DType, device: &Device) -> Result<Tensor> {
    let values: Vec<f32> = (0..seq)
        .flat_map(|i| (0..seq).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Tensor::from_vec(values, (1, 1, seq, seq), device)?.to_dtype(dtype)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causal_mask_hides_future_tokens() {
        let mask = causal_mask(3, DType::F32, &Device::Cpu).unwrap();
        let rows: Vec<Vec<f32>> = mask
            .squeeze(0)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_vec2()
            .unwrap();
        assert_eq!(rows[0][0], 0.0);
        assert!(rows[0][1].is_infinite());
        assert_eq!(rows[2], vec![0.0, 0.0, 0.0]);
    }

    #[test]
    fn quick_gelu_matches_formula() {
        let x = Tensor::new(&[1.0f32, -2.0], &Device::Cpu).unwrap();
        let y: Vec<f32> = Activation::QuickGelu.apply(&x).unwrap().to_vec1().unwrap();
        let expected = |v: f32| v / (1.0 + (-1.702 * v).exp());
        assert!((y[0] - expected(1.0)).abs() < 1e-6);
        assert!((y[1] - expected(-2.0)).abs() < 1e-6);
    }
}
