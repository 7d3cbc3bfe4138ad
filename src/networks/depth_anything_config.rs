//! `config.json` of a Hugging Face `DepthAnythingForDepthEstimation` (as
//! `depth-anything/Depth-Anything-V2-Small-hf` has it), with every number bounded before it
//! sizes a layer, and the variants this implementation does not cover refused by name.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct DepthAnythingConfig {
    pub backbone_config: Dinov2Config,
    #[serde(default = "default_patch_size")]
    pub patch_size: usize,
    #[serde(default = "default_reassemble_hidden_size")]
    pub reassemble_hidden_size: usize,
    #[serde(default = "default_reassemble_factors")]
    pub reassemble_factors: Vec<f64>,
    #[serde(default = "default_neck_hidden_sizes")]
    pub neck_hidden_sizes: Vec<usize>,
    #[serde(default = "default_fusion_hidden_size")]
    pub fusion_hidden_size: usize,
    #[serde(default = "default_head_in_index")]
    pub head_in_index: i64,
    #[serde(default = "default_head_hidden_size")]
    pub head_hidden_size: usize,
    #[serde(default = "default_depth_estimation_type")]
    pub depth_estimation_type: String,
    #[serde(default)]
    pub max_depth: Option<f64>,
    #[serde(default)]
    pub backbone: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Dinov2Config {
    #[serde(default)]
    pub model_type: Option<String>,
    #[serde(default = "default_hidden_size")]
    pub hidden_size: usize,
    #[serde(default = "default_layers")]
    pub num_hidden_layers: usize,
    #[serde(default = "default_heads")]
    pub num_attention_heads: usize,
    #[serde(default = "default_mlp_ratio")]
    pub mlp_ratio: f64,
    #[serde(default = "default_gelu")]
    pub hidden_act: String,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_image_size")]
    pub image_size: usize,
    #[serde(default = "default_patch_size")]
    pub patch_size: usize,
    #[serde(default = "default_channels")]
    pub num_channels: usize,
    #[serde(default = "default_true")]
    pub qkv_bias: bool,
    #[serde(default)]
    pub use_swiglu_ffn: bool,
    #[serde(default = "default_true")]
    pub apply_layernorm: bool,
    /// Which hidden states feed the neck: 0 is the embeddings, `i` the output of layer `i`.
    #[serde(default)]
    pub out_indices: Option<Vec<usize>>,
    #[serde(default)]
    pub out_features: Option<Vec<String>>,
}

fn default_patch_size() -> usize {
    14
}
fn default_reassemble_hidden_size() -> usize {
    384
}
fn default_reassemble_factors() -> Vec<f64> {
    vec![4.0, 2.0, 1.0, 0.5]
}
fn default_neck_hidden_sizes() -> Vec<usize> {
    vec![48, 96, 192, 384]
}
fn default_fusion_hidden_size() -> usize {
    64
}
fn default_head_in_index() -> i64 {
    -1
}
fn default_head_hidden_size() -> usize {
    32
}
fn default_depth_estimation_type() -> String {
    "relative".into()
}
fn default_hidden_size() -> usize {
    768
}
fn default_layers() -> usize {
    12
}
fn default_heads() -> usize {
    12
}
fn default_mlp_ratio() -> f64 {
    4.0
}
fn default_gelu() -> String {
    "gelu".into()
}
fn default_eps() -> f64 {
    1e-6
}
fn default_image_size() -> usize {
    224
}
fn default_channels() -> usize {
    3
}
fn default_true() -> bool {
    true
}

/// Largest width, channel count or layer count accepted (ViT-giant has 1536 and 40 layers).
const MAX_WIDTH: usize = 4096;
const MAX_LAYERS: usize = 64;

impl DepthAnythingConfig {
    /// Refuses what this implementation does not build, and numbers that could not be real.
    pub fn check(&self) -> Result<(), String> {
        let b = &self.backbone_config;
        if self.backbone.is_some() {
            return Err("a timm or other named backbone (\"backbone\") is not supported; only the DINOv2 backbone_config".into());
        }
        if b.model_type.as_deref().is_some_and(|t| t != "dinov2") {
            return Err(format!(
                "backbone model_type {:?} is not supported; only \"dinov2\"",
                b.model_type.as_deref().unwrap_or("")
            ));
        }
        if b.use_swiglu_ffn {
            return Err("use_swiglu_ffn (DINOv2 giant's SwiGLU MLP) is not supported".into());
        }
        if b.hidden_act != "gelu" {
            return Err(format!(
                "hidden_act {:?} is not supported; only \"gelu\"",
                b.hidden_act
            ));
        }
        if self.depth_estimation_type != "relative" {
            return Err(format!(
                "depth_estimation_type {:?} is not supported; only \"relative\" (Depth Anything V2's relative depth)",
                self.depth_estimation_type
            ));
        }
        if !b.apply_layernorm {
            return Err("apply_layernorm false is not supported".into());
        }
        let width_ok = |n: usize| (1..=MAX_WIDTH).contains(&n);
        if !width_ok(b.hidden_size)
            || !width_ok(self.reassemble_hidden_size)
            || !width_ok(self.fusion_hidden_size)
            || !width_ok(self.head_hidden_size)
            || self.fusion_hidden_size < 2
            || !self.neck_hidden_sizes.iter().all(|&n| width_ok(n))
        {
            return Err("a width out of range (1..=4096)".into());
        }
        if b.num_attention_heads == 0 || !b.hidden_size.is_multiple_of(b.num_attention_heads) {
            return Err(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                b.hidden_size, b.num_attention_heads
            ));
        }
        if !(1..=MAX_LAYERS).contains(&b.num_hidden_layers) {
            return Err(format!(
                "num_hidden_layers {} out of range (1..=64)",
                b.num_hidden_layers
            ));
        }
        if !(1.0..=16.0).contains(&b.mlp_ratio) {
            return Err(format!("mlp_ratio {} out of range (1..=16)", b.mlp_ratio));
        }
        if b.num_channels != 3 {
            return Err(format!(
                "num_channels {} is not supported; only 3",
                b.num_channels
            ));
        }
        if !(1..=64).contains(&b.patch_size) || b.patch_size != self.patch_size {
            return Err(format!(
                "patch_size {} (backbone {}) out of range or inconsistent",
                self.patch_size, b.patch_size
            ));
        }
        if !(b.patch_size..=8192).contains(&b.image_size) {
            return Err(format!("image_size {} out of range", b.image_size));
        }
        if b.hidden_size != self.reassemble_hidden_size {
            return Err(format!(
                "reassemble_hidden_size {} differs from the backbone's hidden_size {}",
                self.reassemble_hidden_size, b.hidden_size
            ));
        }
        let stages = self.neck_hidden_sizes.len();
        if !(2..=8).contains(&stages) || self.reassemble_factors.len() != stages {
            return Err(
                "neck_hidden_sizes and reassemble_factors must list the same 2–8 stages".into(),
            );
        }
        for &factor in &self.reassemble_factors {
            let known = [4.0, 2.0, 1.0, 0.5];
            if !known.contains(&factor) {
                return Err(format!(
                    "reassemble factor {factor} is not supported (4, 2, 1 or 0.5)"
                ));
            }
        }
        let indices = self.out_indices()?;
        if indices.len() != stages {
            return Err(format!(
                "the backbone gives {} feature maps but the neck has {stages} stages",
                indices.len()
            ));
        }
        if self.head_in_index != -1 && !(0..stages as i64).contains(&self.head_in_index) {
            return Err(format!("head_in_index {} out of range", self.head_in_index));
        }
        if let Some(depth) = self.max_depth {
            if !(depth.is_finite() && depth > 0.0 && depth <= 1e6) {
                return Err(format!("max_depth {depth} out of range"));
            }
        }
        Ok(())
    }

    /// The backbone's hidden states that feed the neck, in order (0: embeddings, `i`: layer
    /// `i`'s output), from `out_indices` or else `out_features` (`stageN`).
    pub fn out_indices(&self) -> Result<Vec<usize>, String> {
        let b = &self.backbone_config;
        let indices = if let Some(indices) = &b.out_indices {
            indices.clone()
        } else if let Some(features) = &b.out_features {
            features
                .iter()
                .map(
                    |f| match f.strip_prefix("stage").and_then(|n| n.parse().ok()) {
                        Some(n) => Ok(n),
                        None if f == "stem" => Ok(0),
                        None => Err(format!("out_features entry {f:?} is not a stage name")),
                    },
                )
                .collect::<Result<_, _>>()?
        } else {
            vec![b.num_hidden_layers]
        };
        if let Some(&bad) = indices.iter().find(|&&i| i > b.num_hidden_layers) {
            return Err(format!(
                "out index {bad} beyond the backbone's {} layers",
                b.num_hidden_layers
            ));
        }
        Ok(indices)
    }

    pub fn max_depth(&self) -> f64 {
        self.max_depth.unwrap_or(1.0)
    }
}

impl Dinov2Config {
    pub fn mlp_width(&self) -> usize {
        (self.hidden_size as f64 * self.mlp_ratio) as usize
    }

    /// Position embeddings the weights hold for the patches (a square grid of this side).
    pub fn position_grid(&self) -> usize {
        self.image_size / self.patch_size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `depth-anything/Depth-Anything-V2-Small-hf`'s config.json.
    const SMALL_V2: &str = r#"{
      "architectures": ["DepthAnythingForDepthEstimation"],
      "backbone": null,
      "backbone_config": {
        "architectures": ["Dinov2Model"], "hidden_size": 384, "image_size": 518,
        "model_type": "dinov2", "num_attention_heads": 6,
        "out_features": ["stage3", "stage6", "stage9", "stage12"], "out_indices": [3, 6, 9, 12],
        "patch_size": 14, "reshape_hidden_states": false, "torch_dtype": "float32"
      },
      "fusion_hidden_size": 64, "head_hidden_size": 32, "head_in_index": -1,
      "initializer_range": 0.02, "model_type": "depth_anything",
      "neck_hidden_sizes": [48, 96, 192, 384], "patch_size": 14,
      "reassemble_factors": [4, 2, 1, 0.5], "reassemble_hidden_size": 384,
      "torch_dtype": "float32", "transformers_version": null, "use_pretrained_backbone": false
    }"#;

    #[test]
    fn the_small_v2_config_is_accepted_and_builds() {
        let config: DepthAnythingConfig = serde_json::from_str(SMALL_V2).unwrap();
        config.check().unwrap();
        assert_eq!(config.out_indices().unwrap(), [3, 6, 9, 12]);
        assert_eq!(config.backbone_config.num_hidden_layers, 12);
        assert_eq!(config.backbone_config.mlp_width(), 1536);
        assert_eq!(config.backbone_config.position_grid(), 37);
        assert_eq!(config.max_depth(), 1.0);
        // A non-square input exercises the position embeddings' resizing from 37×37.
        let vb = candle_nn::VarBuilder::zeros(candle_core::DType::F32, &candle_core::Device::Cpu);
        let net = super::super::depth_anything::DepthAnything::new(&config, vb).unwrap();
        let (depth, h, w) = net
            .predict(&vec![0.0; 3 * 28 * 42], 28, 42, &candle_core::Device::Cpu)
            .unwrap();
        assert_eq!((h, w, depth.len()), (28, 42, 28 * 42));
    }

    #[test]
    fn other_variants_are_refused_by_name() {
        let mut config: DepthAnythingConfig = serde_json::from_str(SMALL_V2).unwrap();
        config.depth_estimation_type = "metric".into();
        assert!(config
            .check()
            .unwrap_err()
            .contains("depth_estimation_type"));
        let mut config: DepthAnythingConfig = serde_json::from_str(SMALL_V2).unwrap();
        config.backbone_config.use_swiglu_ffn = true;
        assert!(config.check().unwrap_err().contains("use_swiglu_ffn"));
        let mut config: DepthAnythingConfig = serde_json::from_str(SMALL_V2).unwrap();
        config.backbone_config.hidden_size = 1 << 40;
        assert!(config.check().is_err());
        let mut config: DepthAnythingConfig = serde_json::from_str(SMALL_V2).unwrap();
        config.backbone_config.out_indices = Some(vec![3, 6, 9, 13]);
        assert!(config.check().unwrap_err().contains("beyond"));
    }
}
