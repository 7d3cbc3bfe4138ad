//! `x·Wᵀ + b` on CUDA devices through cuBLASLt, as PyTorch's `Linear` does: one matrix
//! product over all tokens with the bias added in the product's epilogue (in f32, before the
//! result is rounded) and a 32 MiB workspace on Hopper. candle calls cuBLAS's strided-batched
//! product and adds the bias in a separate pass over the output.

use std::sync::{Arc, Mutex};

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::cublaslt::{CudaBlasLT, Matmul, MatmulConfig};
use candle_core::cuda_backend::cudarc::driver::{CudaStream, DeviceRepr};
use candle_core::cuda_backend::CudaDType;
use candle_core::{
    CpuStorage, CudaDevice, CudaStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor,
};

/// `xs·weightᵀ (+ bias)` for `xs: (…, K)`, `weight: (N, K)`, `bias: (N,)`; check [`applies`].
pub fn forward(xs: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let xs = xs.contiguous()?;
    let weight = weight.contiguous()?;
    match bias {
        Some(bias) => xs.apply_op3_no_bwd(&weight, &bias.contiguous()?, &LtLinear),
        None => xs.apply_op2_no_bwd(&weight, &LtLinear),
    }
}

/// Whether [`forward`] takes these: f16/bf16 on a CUDA device (f32 stays on candle's path,
/// whose arithmetic the f32 parity checks were made with), weight and bias of the same dtype.
/// `LATENT_STUDIO_CANDLE_LINEAR=1` keeps candle's product, for A/B runs.
pub fn applies(xs: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> bool {
    let candle_only = crate::kernels::ab_switch!("LATENT_STUDIO_CANDLE_LINEAR");
    let dims = weight.dims();
    !candle_only
        && xs.device().is_cuda()
        && matches!(xs.dtype(), DType::F16 | DType::BF16)
        && weight.dtype() == xs.dtype()
        && dims.len() == 2
        && bias.is_none_or(|b| b.dtype() == xs.dtype() && b.dims() == [dims[0]])
        && xs.dims().last() == Some(&dims[1])
        && xs.elem_count() > 0
}

/// One cuBLASLt handle (and workspace) per CUDA stream, made on first use.
fn handle(device: &CudaDevice) -> Result<Arc<CudaBlasLT>> {
    type Handles = Mutex<Vec<(Arc<CudaStream>, Arc<CudaBlasLT>)>>;
    static HANDLES: std::sync::OnceLock<Handles> = std::sync::OnceLock::new();
    let stream = device.cuda_stream();
    let mut handles = HANDLES
        .get_or_init(Handles::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((_, handle)) = handles.iter().find(|(s, _)| Arc::ptr_eq(s, &stream)) {
        return Ok(handle.clone());
    }
    let handle = Arc::new(CudaBlasLT::new(stream.clone()).map_err(candle_core::Error::wrap)?);
    handles.push((stream, handle.clone()));
    Ok(handle)
}

struct LtLinear;

impl LtLinear {
    fn run<T: CudaDType + DeviceRepr>(
        (xs, xs_layout): (&CudaStorage, &Layout),
        (weight, weight_layout): (&CudaStorage, &Layout),
        bias: Option<(&CudaStorage, &Layout)>,
    ) -> Result<(CudaStorage, Shape)>
    where
        CudaBlasLT: Matmul<T>,
    {
        let (out_features, in_features) = weight_layout.shape().dims2()?;
        let tokens = xs_layout.shape().elem_count() / in_features;
        let mut dims = xs_layout.dims().to_vec();
        if let Some(last) = dims.last_mut() {
            *last = out_features;
        }
        let device = xs.device().clone();
        let xs = xs.as_cuda_slice::<T>()?.slice(xs_layout.start_offset()..);
        let weight = weight
            .as_cuda_slice::<T>()?
            .slice(weight_layout.start_offset()..);
        let bias = match bias {
            Some((bias, layout)) => Some(bias.as_cuda_slice::<T>()?.slice(layout.start_offset()..)),
            None => None,
        };
        // SAFETY: the product writes all of the `tokens · out_features` outputs (beta = 0).
        let mut out = unsafe { device.alloc::<T>(tokens * out_features)? };
        // Column-major view of the row-major product: outᵀ (N×M) = W (stored K×N, transposed)
        // · xsᵀ (stored K×M); the epilogue adds the bias to each of the N rows.
        let config = MatmulConfig {
            transa: true,
            transb: false,
            transc: false,
            m: out_features as u64,
            n: tokens as u64,
            k: in_features as u64,
            alpha: 1.0,
            lda: in_features as i64,
            ldb: in_features as i64,
            beta: 0.0,
            ldc: out_features as i64,
            stride_a: None,
            stride_b: None,
            stride_c: None,
            stride_bias: None,
            batch_size: None,
        };
        let blas = handle(&device)?;
        // SAFETY: the three matrices have the sizes `config` describes (checked by the caller's
        // shapes and `applies`), the bias has `out_features` values, all on blas's stream.
        unsafe { blas.matmul(config, &weight, &xs, &mut out, bias.as_ref(), None) }
            .map_err(candle_core::Error::wrap)?;
        Ok((CudaStorage::wrap_cuda_slice(out, device), Shape::from(dims)))
    }

    fn check(xs: &Layout, weight: &Layout, bias: Option<&Layout>) -> Result<()> {
        let (out_features, in_features) = weight.shape().dims2()?;
        if !xs.is_contiguous()
            || !weight.is_contiguous()
            || bias.is_some_and(|b| !b.is_contiguous())
        {
            candle_core::bail!("linear (cuBLASLt): contiguous inputs expected");
        }
        if xs.dims().last() != Some(&in_features) || in_features == 0 {
            candle_core::bail!(
                "linear: input {:?} does not fit the weight {:?}",
                xs.dims(),
                weight.dims()
            );
        }
        if bias.is_some_and(|b| b.shape().elem_count() != out_features) {
            candle_core::bail!("linear: the bias does not have {out_features} values");
        }
        Ok(())
    }

    fn dispatch(
        xs: (&CudaStorage, &Layout),
        weight: (&CudaStorage, &Layout),
        bias: Option<(&CudaStorage, &Layout)>,
    ) -> Result<(CudaStorage, Shape)> {
        Self::check(xs.1, weight.1, bias.map(|b| b.1))?;
        let dtype = xs.0.dtype();
        if weight.0.dtype() != dtype || bias.is_some_and(|b| b.0.dtype() != dtype) {
            candle_core::bail!("linear: input, weight and bias differ in dtype");
        }
        match dtype {
            DType::F16 => Self::run::<half::f16>(xs, weight, bias),
            DType::BF16 => Self::run::<half::bf16>(xs, weight, bias),
            other => candle_core::bail!("linear (cuBLASLt): no {other:?} product"),
        }
    }
}

impl CustomOp2 for LtLinear {
    fn name(&self) -> &'static str {
        "linear-cublaslt"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        candle_core::bail!("the cuBLASLt linear runs on CUDA devices only")
    }

    fn cuda_fwd(
        &self,
        xs: &CudaStorage,
        xs_layout: &Layout,
        weight: &CudaStorage,
        weight_layout: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        Self::dispatch((xs, xs_layout), (weight, weight_layout), None)
    }
}

impl CustomOp3 for LtLinear {
    fn name(&self) -> &'static str {
        "linear-bias-cublaslt"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        candle_core::bail!("the cuBLASLt linear runs on CUDA devices only")
    }

    fn cuda_fwd(
        &self,
        xs: &CudaStorage,
        xs_layout: &Layout,
        weight: &CudaStorage,
        weight_layout: &Layout,
        bias: &CudaStorage,
        bias_layout: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        Self::dispatch(
            (xs, xs_layout),
            (weight, weight_layout),
            Some((bias, bias_layout)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Needs a CUDA GPU (`scripts/gpu-check.sh` runs it there); elsewhere it returns at once.
    #[test]
    fn gpu_cublaslt_linear_matches_f32_product() {
        let Ok(device) = crate::kernels::new_cuda_device() else {
            eprintln!("no CUDA device: cuBLASLt linear not tested");
            return;
        };
        let half = |t: Tensor| t.to_dtype(DType::F16).unwrap();
        // SDXL's feed-forward shape at 32×32 latents, and an odd one with a 3-D batch.
        for (dims, in_features, out_features) in
            [(vec![2, 1024], 1280, 10240), (vec![2, 3, 77], 40, 24)]
        {
            let mut x_dims = dims.clone();
            x_dims.push(in_features);
            let xs = half(Tensor::randn(0f32, 1.0, x_dims, &device).unwrap());
            let weight =
                half(Tensor::randn(0f32, 0.05, (out_features, in_features), &device).unwrap());
            let bias = half(Tensor::randn(0f32, 1.0, out_features, &device).unwrap());
            for bias in [Some(&bias), None] {
                assert!(applies(&xs, &weight, bias));
                let ours = forward(&xs, &weight, bias)
                    .unwrap()
                    .to_dtype(DType::F32)
                    .unwrap();
                let f32 = |t: &Tensor| t.to_dtype(DType::F32).unwrap();
                let mut reference = f32(&xs)
                    .broadcast_matmul(&f32(&weight).t().unwrap())
                    .unwrap();
                if let Some(bias) = bias {
                    reference = reference.broadcast_add(&f32(bias)).unwrap();
                }
                assert_eq!(ours.dims(), reference.dims());
                let diff = crate::kernels::max_abs_diff(&ours, &reference);
                // Outputs of size ~2 rounded to f16 (half an ulp ≈ 1e-3), f32 sums.
                assert!(
                    diff < 1e-2,
                    "max diff {diff} for {dims:?}×{in_features}→{out_features}"
                );
            }
        }
    }
}
