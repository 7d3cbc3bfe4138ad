//! Linear layers: on the CPU in f32, `x · Wᵀ + b` written once through
//! [`crate::kernels::matmul`] (the bias in the product's destination, not a pass of its own);
//! with bf16 CPU arithmetic ([`crate::kernels::precision`]) through
//! [`crate::kernels::matmul_bf16`]; in f16/bf16 on CUDA devices through cuBLASLt with the bias
//! fused (`gpu::linear`); anything else through candle's.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;
#[cfg(target_arch = "x86_64")]
use std::sync::{Arc, OnceLock};

use crate::kernels::matmul::{self, Bias, MatrixRef};
#[cfg(target_arch = "x86_64")]
use crate::kernels::matmul_bf16::{self, ColumnTiles, PairedRows};
use crate::kernels::precision::{
    cpu_arithmetic, values_in_f32, weight_in_f32, with_stored_weight_precision, CpuArithmetic,
};
use crate::kernels::with_cpu_f32;

#[derive(Debug, Clone)]
pub struct Linear {
    inner: candle_nn::Linear,
    /// Whether bf16 CPU arithmetic applies (the text encoders stay f32 in bf16 mode).
    bf16_allowed: bool,
    /// `Wᵀ` rounded to bf16, made on first use in bf16 arithmetic.
    #[cfg(target_arch = "x86_64")]
    bf16_weight: Arc<OnceLock<ColumnTiles>>,
}

pub fn linear(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Linear> {
    let inner = with_stored_weight_precision(|| candle_nn::linear(in_dim, out_dim, vb))?;
    Ok(Linear::new(inner))
}

pub fn linear_no_bias(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Linear> {
    let inner = with_stored_weight_precision(|| candle_nn::linear_no_bias(in_dim, out_dim, vb))?;
    Ok(Linear::new(inner))
}

impl Linear {
    fn new(inner: candle_nn::Linear) -> Self {
        Self {
            inner,
            bf16_allowed: true,
            #[cfg(target_arch = "x86_64")]
            bf16_weight: Arc::default(),
        }
    }

    /// This layer in f32 arithmetic even when the CPU's is bf16.
    pub fn always_f32(self) -> Self {
        Self {
            bf16_allowed: false,
            ..self
        }
    }

    /// `Wᵀ` rounded to bf16 in column tiles, made on first use.
    #[cfg(target_arch = "x86_64")]
    fn bf16_weight(&self, weight: &Tensor, in_dim: usize, out_dim: usize) -> Result<&ColumnTiles> {
        if let Some(tiles) = self.bf16_weight.get() {
            return Ok(tiles);
        }
        let transposed = weight_in_f32(weight)?
            .t()?
            .contiguous()?
            .flatten_all()?
            .to_vec1::<f32>()?;
        Ok(self
            .bf16_weight
            .get_or_init(|| ColumnTiles::new(&transposed, in_dim, out_dim)))
    }

    /// The bias in f32, if there is one.
    fn bias_values(&self) -> Result<Option<Vec<f32>>> {
        self.inner.bias().map(values_in_f32).transpose()
    }

    /// `xs · Wᵀ + b` with bf16 inputs and f32 sums, for f32 tensors on the CPU.
    #[cfg(target_arch = "x86_64")]
    fn bf16_forward(&self, xs: &Tensor) -> Result<Tensor> {
        let weight = self.inner.weight();
        let (out_dim, in_dim) = weight.dims2()?;
        let tiles = self.bf16_weight(weight, in_dim, out_dim)?;
        let (dims, tokens) = output_shape(xs, in_dim, out_dim)?;
        let xs = xs.contiguous()?;
        let rows = crate::kernels::with_cpu_f32(&xs, |values| {
            PairedRows::new(&values[..tokens * in_dim], tokens, in_dim)
        })?;
        let bias = self.bias_values()?;
        let bias = bias.as_deref().map_or(Bias::None, Bias::PerColumn);
        let mut out = vec![0f32; tokens * out_dim];
        matmul_bf16::multiply(&rows, tiles, &mut out, out_dim, bias);
        Tensor::from_vec(out, dims, xs.device())
    }

    /// `xs · Wᵀ + b` in f32 on the CPU, the bias added as the product is written (a weight
    /// kept in f16 is widened for this call only).
    fn f32_forward(&self, xs: &Tensor) -> Result<Tensor> {
        let weight = weight_in_f32(self.inner.weight())?.contiguous()?;
        let (out_dim, in_dim) = weight.dims2()?;
        let (dims, tokens) = output_shape(xs, in_dim, out_dim)?;
        let xs = xs.contiguous()?;
        let bias = self.bias_values()?;
        let bias = bias.as_deref().map_or(Bias::None, Bias::PerColumn);
        let mut out = vec![0f32; tokens * out_dim];
        with_cpu_f32(&weight, |weight| {
            with_cpu_f32(&xs, |values| {
                let weight = MatrixRef::row_major(weight, out_dim, in_dim).transposed();
                let values = MatrixRef::row_major(values, tokens, in_dim);
                matmul::multiply(values, weight, &mut out, out_dim, bias);
            })
        })??;
        Tensor::from_vec(out, dims, xs.device())
    }
}

/// The output's dimensions (the input's, with `out_dim` features last) and how many tokens
/// (rows of `in_dim` features) the input holds.
fn output_shape(xs: &Tensor, in_dim: usize, out_dim: usize) -> Result<(Vec<usize>, usize)> {
    let mut dims = xs.dims().to_vec();
    let Some(last) = dims.last_mut() else {
        candle_core::bail!("linear: a scalar input");
    };
    if *last != in_dim {
        candle_core::bail!("linear: input has {last} features, the weight expects {in_dim}");
    }
    *last = out_dim;
    Ok((dims, xs.elem_count() / in_dim))
}

impl Module for Linear {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        crate::kernels::profile::measure("linear", xs.device(), || self.dispatch(xs))
    }
}

impl Linear {
    fn dispatch(&self, xs: &Tensor) -> Result<Tensor> {
        use candle_core::DType;
        let weight_dtype = self.inner.weight().dtype();
        let on_cpu_in_f32 = xs.device().is_cpu()
            && xs.dtype() == DType::F32
            && matches!(weight_dtype, DType::F32 | DType::F16 | DType::BF16);
        if on_cpu_in_f32
            && self.bf16_allowed
            && cpu_arithmetic() == CpuArithmetic::Bf16
            && xs.elem_count() > 0
        {
            #[cfg(target_arch = "x86_64")]
            return self.bf16_forward(xs);
        }
        if on_cpu_in_f32 {
            return self.f32_forward(xs);
        }
        #[cfg(feature = "cuda")]
        if crate::kernels::gpu::linear::applies(xs, self.inner.weight(), self.inner.bias()) {
            return crate::kernels::gpu::linear::forward(
                xs,
                self.inner.weight(),
                self.inner.bias(),
            );
        }
        self.inner.forward(xs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn f32_product_equals_candles() {
        let device = Device::Cpu;
        let weights = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&weights, DType::F32, &device);
        let with_bias = linear(40, 70, vb.pp("with")).unwrap();
        let without_bias = linear_no_bias(40, 70, vb.pp("without")).unwrap();
        // Batched tokens, and a transposed view (read through a contiguous copy).
        let batched = Tensor::randn(0f32, 1.0, (2, 67, 40), &device).unwrap();
        let transposed = Tensor::randn(0f32, 1.0, (40, 5), &device)
            .unwrap()
            .t()
            .unwrap();
        for layer in [&with_bias, &without_bias] {
            for xs in [&batched, &transposed] {
                let reference = layer.inner.forward(xs).unwrap();
                let ours = layer.f32_forward(xs).unwrap();
                assert_eq!(ours.dims(), reference.dims());
                let diff = crate::kernels::max_abs_diff(&ours, &reference);
                assert!(diff < 1e-5, "max diff {diff}");
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn bf16_product_is_close_to_candles() {
        if !crate::kernels::precision::bf16_available() {
            return;
        }
        let device = Device::Cpu;
        let weights = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&weights, DType::F32, &device);
        let layer = linear(40, 70, vb.pp("layer")).unwrap();
        let xs = Tensor::randn(0f32, 1.0, (2, 67, 40), &device).unwrap();
        let reference = layer.inner.forward(&xs).unwrap();
        let ours = layer.bf16_forward(&xs).unwrap();
        assert_eq!(ours.dims(), reference.dims());
        let scale = reference
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let diff = crate::kernels::max_abs_diff(&ours, &reference);
        // Rounding the inputs to 8 bits of mantissa moves each sum by well under 2 %.
        assert!(
            diff > 0.0 && diff < 0.02 * scale,
            "max diff {diff} of {scale}"
        );
    }
}
