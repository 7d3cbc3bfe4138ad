//! Depth Anything (V1 and V2) as Hugging Face transformers' `DepthAnythingForDepthEstimation`
//! defines it, with its tensor names, so `depth-anything/Depth-Anything-V2-Small-hf`'s
//! `model.safetensors` loads as it is: a DINOv2 ViT backbone (14×14 patch embedding, CLS
//! token, position embeddings resized bicubically to the picture's patch grid, pre-norm layers
//! with LayerScale and a GELU MLP), the DPT-style neck (reassemble four hidden states into
//! feature maps at 4×, 2×, 1× and ½× the patch grid; fuse them coarse to fine with
//! pre-activation residual units and bilinear upsampling) and the head (conv, upsample to
//! the input's size, conv, ReLU, 1×1 conv, ReLU). The output is relative inverse depth:
//! larger is nearer.

use candle_core::{DType, Device, Module, Result, Tensor, D};
use candle_nn::{layer_norm, ConvTranspose2d, ConvTranspose2dConfig, LayerNorm, VarBuilder};

pub use super::depth_anything_config::{DepthAnythingConfig, Dinov2Config};
use crate::kernels::attention::scaled_dot_product;
use crate::kernels::conv::{conv2d, conv2d_no_bias, Conv2d};
use crate::kernels::linear::{linear, Linear};
use crate::kernels::resize::{interpolate, InterpolateMode};
use crate::networks::layers::conv3x3;
use candle_nn::Conv2dConfig;

struct Embeddings {
    patch: Conv2d,
    cls_token: Tensor,
    position_embeddings: Tensor,
    /// Side of the square grid of patch positions the weights hold.
    grid: usize,
    hidden: usize,
}

impl Embeddings {
    fn new(cfg: &Dinov2Config, vb: VarBuilder) -> Result<Self> {
        let hidden = cfg.hidden_size;
        let patch = conv2d(
            cfg.num_channels,
            hidden,
            cfg.patch_size,
            Conv2dConfig {
                stride: cfg.patch_size,
                ..Default::default()
            },
            vb.pp("patch_embeddings.projection"),
        )?;
        let grid = cfg.position_grid();
        Ok(Self {
            patch,
            cls_token: vb.get((1, 1, hidden), "cls_token")?,
            position_embeddings: vb.get((1, grid * grid + 1, hidden), "position_embeddings")?,
            grid,
            hidden,
        })
    }

    /// `(1, 1 + h·w, hidden)` for a `(1, 3, 14h, 14w)` picture.
    fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        let patches = self.patch.forward(pixels)?; // (1, hidden, h, w)
        let (_, _, h, w) = patches.dims4()?;
        let tokens = patches.flatten_from(2)?.transpose(1, 2)?;
        let tokens = Tensor::cat(&[&self.cls_token.to_dtype(tokens.dtype())?, &tokens], 1)?;
        tokens.broadcast_add(&self.positions(h, w)?.to_dtype(tokens.dtype())?)
    }

    /// transformers' `interpolate_pos_encoding`: the weights as they are for a square grid of
    /// their own size, else the patch part resized bicubically (in f32) to `h × w`.
    fn positions(&self, h: usize, w: usize) -> Result<Tensor> {
        if h == self.grid && w == self.grid {
            return Ok(self.position_embeddings.clone());
        }
        let all = self.position_embeddings.to_dtype(DType::F32)?;
        let class = all.narrow(1, 0, 1)?;
        // (1, grid·grid, hidden) → (1, hidden, grid, grid), resized, → (1, h·w, hidden)
        let (g, c) = (self.grid, self.hidden);
        let grid = all
            .narrow(1, 1, g * g)?
            .reshape((1, g, g, c))?
            .permute((0, 3, 1, 2))?;
        let patches = interpolate(&grid, h, w, InterpolateMode::Bicubic)?
            .reshape((1, c, h * w))?
            .transpose(1, 2)?;
        Tensor::cat(&[&class, &patches], 1)
    }
}

struct Layer {
    norm1: LayerNorm,
    query: Linear,
    key: Linear,
    value: Linear,
    output: Linear,
    scale1: Tensor,
    norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    scale2: Tensor,
    heads: usize,
}

impl Layer {
    fn new(cfg: &Dinov2Config, vb: VarBuilder) -> Result<Self> {
        let h = cfg.hidden_size;
        let attention = vb.pp("attention");
        let linear_maybe_bias = |vb: VarBuilder| -> Result<Linear> {
            if cfg.qkv_bias {
                linear(h, h, vb)
            } else {
                crate::kernels::linear::linear_no_bias(h, h, vb)
            }
        };
        Ok(Self {
            norm1: layer_norm(h, cfg.layer_norm_eps, vb.pp("norm1"))?,
            query: linear_maybe_bias(attention.pp("attention.query"))?,
            key: linear_maybe_bias(attention.pp("attention.key"))?,
            value: linear_maybe_bias(attention.pp("attention.value"))?,
            output: linear(h, h, attention.pp("output.dense"))?,
            scale1: vb.get(h, "layer_scale1.lambda1")?,
            norm2: layer_norm(h, cfg.layer_norm_eps, vb.pp("norm2"))?,
            fc1: linear(h, cfg.mlp_width(), vb.pp("mlp.fc1"))?,
            fc2: linear(cfg.mlp_width(), h, vb.pp("mlp.fc2"))?,
            scale2: vb.get(h, "layer_scale2.lambda1")?,
            heads: cfg.num_attention_heads,
        })
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let (b, n, c) = xs.dims3()?;
        let head_dim = c / self.heads;
        let normed = self.norm1.forward(xs)?;
        let split = |t: Tensor| t.reshape((b, n, self.heads, head_dim))?.transpose(1, 2);
        let q = split(self.query.forward(&normed)?)?;
        let k = split(self.key.forward(&normed)?)?;
        let v = split(self.value.forward(&normed)?)?;
        let attended = scaled_dot_product(&q, &k, &v, 1.0 / (head_dim as f64).sqrt())?
            .transpose(1, 2)?
            .reshape((b, n, c))?;
        let attended = self.output.forward(&attended)?;
        let xs = (xs + attended.broadcast_mul(&self.scale1.to_dtype(xs.dtype())?)?)?;
        let mlp = self
            .fc2
            .forward(&self.fc1.forward(&self.norm2.forward(&xs)?)?.gelu_erf()?)?;
        let scaled = mlp.broadcast_mul(&self.scale2.to_dtype(xs.dtype())?)?;
        xs + scaled
    }
}

enum Resize {
    Up(ConvTranspose2d),
    Identity,
    Down(Conv2d),
}

struct ReassembleLayer {
    projection: Conv2d,
    resize: Resize,
}

impl ReassembleLayer {
    fn new(in_channels: usize, channels: usize, factor: f64, vb: VarBuilder) -> Result<Self> {
        let projection = conv2d(
            in_channels,
            channels,
            1,
            Default::default(),
            vb.pp("projection"),
        )?;
        let resize = if factor > 1.0 {
            let factor = factor as usize;
            Resize::Up(candle_nn::conv_transpose2d(
                channels,
                channels,
                factor,
                ConvTranspose2dConfig {
                    stride: factor,
                    ..Default::default()
                },
                vb.pp("resize"),
            )?)
        } else if factor == 1.0 {
            Resize::Identity
        } else {
            Resize::Down(conv2d(
                channels,
                channels,
                3,
                Conv2dConfig {
                    stride: (1.0 / factor) as usize,
                    padding: 1,
                    ..Default::default()
                },
                vb.pp("resize"),
            )?)
        };
        Ok(Self { projection, resize })
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let xs = self.projection.forward(xs)?;
        match &self.resize {
            Resize::Up(conv) => conv.forward(&xs),
            Resize::Identity => Ok(xs),
            Resize::Down(conv) => conv.forward(&xs),
        }
    }
}

/// `DepthAnythingPreActResidualLayer`: x + conv(relu(conv(relu(x)))).
struct ResidualUnit {
    conv1: Conv2d,
    conv2: Conv2d,
}

impl ResidualUnit {
    fn new(channels: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            conv1: conv3x3(channels, channels, vb.pp("convolution1"))?,
            conv2: conv3x3(channels, channels, vb.pp("convolution2"))?,
        })
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let inner = self.conv1.forward(&xs.relu()?)?;
        let inner = self.conv2.forward(&inner.relu()?)?;
        inner + xs
    }
}

struct FusionLayer {
    projection: Conv2d,
    residual1: ResidualUnit,
    residual2: ResidualUnit,
}

impl FusionLayer {
    fn new(channels: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            projection: conv2d(
                channels,
                channels,
                1,
                Default::default(),
                vb.pp("projection"),
            )?,
            residual1: ResidualUnit::new(channels, vb.pp("residual_layer1"))?,
            residual2: ResidualUnit::new(channels, vb.pp("residual_layer2"))?,
        })
    }

    /// `DepthAnythingFeatureFusionLayer.forward`: add the (resized) skip through a residual
    /// unit, another unit, upsample to `size` (or twice) with align_corners, project.
    fn forward(
        &self,
        xs: &Tensor,
        skip: Option<&Tensor>,
        size: Option<(usize, usize)>,
    ) -> Result<Tensor> {
        let mut xs = xs.clone();
        if let Some(skip) = skip {
            let (_, _, h, w) = xs.dims4()?;
            let skip = if skip.dims() != xs.dims() {
                skip.upsample_bilinear2d(h, w, false)?
            } else {
                skip.clone()
            };
            xs = (xs + self.residual1.forward(&skip)?)?;
        }
        let xs = self.residual2.forward(&xs)?;
        let (_, _, h, w) = xs.dims4()?;
        let (out_h, out_w) = size.unwrap_or((2 * h, 2 * w));
        let xs = xs.upsample_bilinear2d(out_h, out_w, true)?;
        self.projection.forward(&xs)
    }
}

pub struct DepthAnything {
    embeddings: Embeddings,
    layers: Vec<Layer>,
    layernorm: LayerNorm,
    out_indices: Vec<usize>,
    reassemble: Vec<ReassembleLayer>,
    neck_convs: Vec<Conv2d>,
    fusion: Vec<FusionLayer>,
    head_conv1: Conv2d,
    head_conv2: Conv2d,
    head_conv3: Conv2d,
    head_in_index: usize,
    max_depth: f64,
    patch_size: usize,
}

impl DepthAnything {
    /// Builds the network from `vb` (transformers' names); `config` must pass
    /// [`DepthAnythingConfig::check`].
    pub fn new(config: &DepthAnythingConfig, vb: VarBuilder) -> Result<Self> {
        config.check().map_err(candle_core::Error::msg)?;
        let b = &config.backbone_config;
        let backbone = vb.pp("backbone");
        let layers = (0..b.num_hidden_layers)
            .map(|i| Layer::new(b, backbone.pp(format!("encoder.layer.{i}"))))
            .collect::<Result<_>>()?;
        let neck = vb.pp("neck");
        let reassemble = config
            .neck_hidden_sizes
            .iter()
            .zip(&config.reassemble_factors)
            .enumerate()
            .map(|(i, (&channels, &factor))| {
                ReassembleLayer::new(
                    config.reassemble_hidden_size,
                    channels,
                    factor,
                    neck.pp(format!("reassemble_stage.layers.{i}")),
                )
            })
            .collect::<Result<_>>()?;
        let fusion_width = config.fusion_hidden_size;
        let neck_convs = config
            .neck_hidden_sizes
            .iter()
            .enumerate()
            .map(|(i, &channels)| {
                conv2d_no_bias(
                    channels,
                    fusion_width,
                    3,
                    Conv2dConfig {
                        padding: 1,
                        ..Default::default()
                    },
                    neck.pp(format!("convs.{i}")),
                )
            })
            .collect::<Result<_>>()?;
        let fusion = (0..config.neck_hidden_sizes.len())
            .map(|i| FusionLayer::new(fusion_width, neck.pp(format!("fusion_stage.layers.{i}"))))
            .collect::<Result<_>>()?;
        let head = vb.pp("head");
        let stages = config.neck_hidden_sizes.len();
        Ok(Self {
            embeddings: Embeddings::new(b, backbone.pp("embeddings"))?,
            layers,
            layernorm: layer_norm(b.hidden_size, b.layer_norm_eps, backbone.pp("layernorm"))?,
            out_indices: config.out_indices().map_err(candle_core::Error::msg)?,
            reassemble,
            neck_convs,
            fusion,
            head_conv1: conv3x3(fusion_width, fusion_width / 2, head.pp("conv1"))?,
            head_conv2: conv3x3(fusion_width / 2, config.head_hidden_size, head.pp("conv2"))?,
            head_conv3: conv2d(
                config.head_hidden_size,
                1,
                1,
                Default::default(),
                head.pp("conv3"),
            )?,
            head_in_index: if config.head_in_index < 0 {
                stages - 1
            } else {
                config.head_in_index as usize
            },
            max_depth: config.max_depth(),
            patch_size: config.patch_size,
        })
    }

    /// Relative depth `(1, H, W)` for `pixel_values` `(1, 3, H, W)`, `H` and `W` multiples of
    /// the patch size (as the image processor makes them).
    pub fn forward(&self, pixel_values: &Tensor) -> Result<Tensor> {
        let (_, _, height, width) = pixel_values.dims4()?;
        let (ph, pw) = (height / self.patch_size, width / self.patch_size);
        if ph == 0 || pw == 0 {
            candle_core::bail!(
                "a {width}×{height} input is smaller than one {0}×{0} patch",
                self.patch_size
            );
        }
        // Backbone: every hidden state from the embeddings on; those named feed the neck
        // after the final LayerNorm, without the CLS token (readout "ignore").
        let mut hidden = self.embeddings.forward(pixel_values)?;
        let mut features = Vec::with_capacity(self.out_indices.len());
        let mut take = |index: usize, hidden: &Tensor| -> Result<()> {
            for (slot, &wanted) in self.out_indices.iter().enumerate() {
                if wanted == index {
                    features.push((slot, self.layernorm.forward(hidden)?));
                }
            }
            Ok(())
        };
        take(0, &hidden)?;
        for (i, layer) in self.layers.iter().enumerate() {
            hidden = layer.forward(&hidden)?;
            take(i + 1, &hidden)?;
        }
        features.sort_by_key(|(slot, _)| *slot);
        // Neck: reassemble each into a feature map, convolve to the fusion width.
        let maps = features
            .iter()
            .zip(self.reassemble.iter().zip(&self.neck_convs))
            .map(|((_, tokens), (reassemble, conv))| {
                let c = tokens.dim(D::Minus1)?;
                let grid = tokens
                    .narrow(1, 1, ph * pw)?
                    .reshape((1, ph, pw, c))?
                    .permute((0, 3, 1, 2))?
                    .contiguous()?;
                conv.forward(&reassemble.forward(&grid)?)
            })
            .collect::<Result<Vec<_>>>()?;
        // Fusion, coarsest first: each stage upsampled to the next one's size, the last twice.
        let reversed: Vec<&Tensor> = maps.iter().rev().collect();
        let mut fused: Vec<Tensor> = Vec::with_capacity(reversed.len());
        for (i, (map, layer)) in reversed.iter().zip(&self.fusion).enumerate() {
            let size = match reversed.get(i + 1) {
                Some(next) => {
                    let (_, _, h, w) = next.dims4()?;
                    Some((h, w))
                }
                None => None,
            };
            let out = match fused.last() {
                None => layer.forward(map, None, size)?,
                Some(previous) => layer.forward(previous, Some(map), size)?,
            };
            fused.push(out);
        }
        // Head.
        let xs = self.head_conv1.forward(&fused[self.head_in_index])?;
        let xs = xs.upsample_bilinear2d(ph * self.patch_size, pw * self.patch_size, true)?;
        let xs = self.head_conv2.forward(&xs)?.relu()?;
        let xs = self.head_conv3.forward(&xs)?.relu()?;
        let xs = (xs * self.max_depth)?;
        xs.squeeze(1)
    }

    /// The device-independent entry: runs on `device` in f32 and returns the depth values
    /// row by row with their `(height, width)`.
    pub fn predict(
        &self,
        pixel_values: &[f32],
        height: usize,
        width: usize,
        device: &Device,
    ) -> Result<(Vec<f32>, usize, usize)> {
        let input = Tensor::from_slice(pixel_values, (1, 3, height, width), device)?;
        let depth = self.forward(&input)?;
        let (_, h, w) = depth.dims3()?;
        Ok((depth.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?, h, w))
    }
}
