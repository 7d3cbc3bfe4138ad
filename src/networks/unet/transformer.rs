//! `Transformer2DModel` with `BasicTransformerBlock`s: the UNet's self- and cross-attention.

use candle_core::{Module, Result, Tensor};
use candle_nn::{layer_norm, LayerNorm, VarBuilder};

use crate::kernels::attention::scaled_dot_product;
use crate::kernels::conv::Conv2d;
use crate::kernels::geglu::geglu;
use crate::kernels::group_norm::{group_norm, GroupNorm};
use crate::kernels::linear::{linear, linear_no_bias, Linear};
use crate::networks::layers::conv1x1;

/// diffusers' `Attention` with the default processor, without bias on q/k/v.
pub struct Attention {
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
    heads: usize,
    head_dim: usize,
}

impl Attention {
    pub fn new(
        query_dim: usize,
        context_dim: usize,
        heads: usize,
        head_dim: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let inner = heads * head_dim;
        Ok(Self {
            to_q: linear_no_bias(query_dim, inner, vb.pp("to_q"))?,
            to_k: linear_no_bias(context_dim, inner, vb.pp("to_k"))?,
            to_v: linear_no_bias(context_dim, inner, vb.pp("to_v"))?,
            to_out: linear(inner, query_dim, vb.pp("to_out.0"))?,
            heads,
            head_dim,
        })
    }

    pub fn forward(&self, xs: &Tensor, context: Option<&Tensor>) -> Result<Tensor> {
        let context = context.unwrap_or(xs);
        let (batch, queries, _) = xs.dims3()?;
        let keys = context.dim(1)?;
        // A (B, H, N, D) view, no copy: the attention reads strided rows.
        let split = |t: Tensor, len: usize| {
            t.reshape((batch, len, self.heads, self.head_dim))?
                .transpose(1, 2)
        };
        let q = split(self.to_q.forward(xs)?, queries)?;
        let k = split(self.to_k.forward(context)?, keys)?;
        let v = split(self.to_v.forward(context)?, keys)?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let out = scaled_dot_product(&q, &k, &v, scale)?
            .transpose(1, 2)?
            .reshape((batch, queries, self.heads * self.head_dim))?;
        self.to_out.forward(&out)
    }
}

/// GEGLU feed-forward: `Linear(dim, 2·inner)` → `value · gelu(gate)` → `Linear(inner, dim)`.
struct FeedForward {
    proj_in: Linear,
    proj_out: Linear,
    inner: usize,
}

impl FeedForward {
    fn new(dim: usize, vb: VarBuilder) -> Result<Self> {
        let inner = 4 * dim;
        Ok(Self {
            proj_in: linear(dim, 2 * inner, vb.pp("net.0.proj"))?,
            proj_out: linear(inner, dim, vb.pp("net.2"))?,
            inner,
        })
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let projected = self.proj_in.forward(xs)?;
        self.proj_out.forward(&geglu(&projected, self.inner)?)
    }
}

struct BasicTransformerBlock {
    norm1: LayerNorm,
    attn1: Attention,
    norm2: LayerNorm,
    attn2: Attention,
    norm3: LayerNorm,
    ff: FeedForward,
}

impl BasicTransformerBlock {
    fn new(dim: usize, context_dim: usize, heads: usize, vb: VarBuilder) -> Result<Self> {
        let head_dim = dim / heads;
        Ok(Self {
            norm1: layer_norm(dim, 1e-5, vb.pp("norm1"))?,
            attn1: Attention::new(dim, dim, heads, head_dim, vb.pp("attn1"))?,
            norm2: layer_norm(dim, 1e-5, vb.pp("norm2"))?,
            attn2: Attention::new(dim, context_dim, heads, head_dim, vb.pp("attn2"))?,
            norm3: layer_norm(dim, 1e-5, vb.pp("norm3"))?,
            ff: FeedForward::new(dim, vb.pp("ff"))?,
        })
    }

    fn forward(&self, xs: &Tensor, context: &Tensor) -> Result<Tensor> {
        let xs = (self.attn1.forward(&normalise(&self.norm1, xs)?, None)? + xs)?;
        let xs = (self
            .attn2
            .forward(&normalise(&self.norm2, &xs)?, Some(context))?
            + xs)?;
        self.ff.forward(&normalise(&self.norm3, &xs)?)? + xs
    }
}

enum Projection {
    Linear(Linear),
    Conv(Conv2d),
}

pub struct Transformer2DConfig {
    pub channels: usize,
    pub heads: usize,
    pub layers: usize,
    pub context_dim: usize,
    pub groups: usize,
    pub use_linear_projection: bool,
}

pub struct Transformer2D {
    norm: GroupNorm,
    proj_in: Projection,
    blocks: Vec<BasicTransformerBlock>,
    proj_out: Projection,
}

impl Transformer2D {
    pub fn new(cfg: &Transformer2DConfig, vb: VarBuilder) -> Result<Self> {
        let channels = cfg.channels;
        if cfg.heads == 0 || !channels.is_multiple_of(cfg.heads) {
            candle_core::bail!(
                "{}: {channels} channels cannot be split into {} attention heads",
                vb.prefix(),
                cfg.heads
            );
        }
        let projection = |name: &str| -> Result<Projection> {
            Ok(if cfg.use_linear_projection {
                Projection::Linear(linear(channels, channels, vb.pp(name))?)
            } else {
                Projection::Conv(conv1x1(channels, channels, vb.pp(name))?)
            })
        };
        let blocks = (0..cfg.layers)
            .map(|i| {
                BasicTransformerBlock::new(
                    channels,
                    cfg.context_dim,
                    cfg.heads,
                    vb.pp(format!("transformer_blocks.{i}")),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            norm: group_norm(cfg.groups, channels, 1e-6, vb.pp("norm"))?,
            proj_in: projection("proj_in")?,
            blocks,
            proj_out: projection("proj_out")?,
        })
    }

    pub fn forward(&self, xs: &Tensor, context: &Tensor) -> Result<Tensor> {
        let (batch, channels, height, width) = xs.dims4()?;
        let to_tokens = |t: &Tensor| {
            t.permute((0, 2, 3, 1))?
                .reshape((batch, height * width, channels))
        };
        let to_image = |t: &Tensor| {
            t.reshape((batch, height, width, channels))?
                .permute((0, 3, 1, 2))?
                .contiguous()
        };
        let normed = self.norm.forward(xs)?;
        let mut hidden = match &self.proj_in {
            Projection::Linear(proj) => proj.forward(&to_tokens(&normed)?)?,
            Projection::Conv(conv) => to_tokens(&conv.forward(&normed)?)?,
        };
        for block in &self.blocks {
            hidden = block.forward(&hidden, context)?;
        }
        let out = match &self.proj_out {
            Projection::Linear(proj) => to_image(&proj.forward(&hidden)?)?,
            Projection::Conv(conv) => conv.forward(&to_image(&hidden)?)?,
        };
        out + xs
    }
}

/// A LayerNorm, measured under its own name when profiling.
fn normalise(norm: &LayerNorm, xs: &Tensor) -> Result<Tensor> {
    crate::kernels::profile::measure("layer norm", xs.device(), || norm.forward(xs))
}
