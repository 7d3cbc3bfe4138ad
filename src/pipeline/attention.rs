//! Scaled dot-product attention shared by the UNet's transformers and the VAE's mid block.

use candle_core::{Result, Tensor};

/// Largest attention-score block materialised at once, in elements (64 MiB of f32).
const SCORE_BLOCK_ELEMENTS: usize = 16 * 1024 * 1024;

/// `softmax(q·kᵀ·scale)·v` for `q: (B, H, N, D)`, `k, v: (B, H, M, D)`.
///
/// Queries are processed in slices so that the `N×M` score matrix of a large image never
/// exists whole; each slice is exact, so the result equals the unsliced computation.
pub fn scaled_dot_product(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64) -> Result<Tensor> {
    sliced(q, k, v, scale, SCORE_BLOCK_ELEMENTS)
}

fn sliced(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64, block_elements: usize) -> Result<Tensor> {
    let (batch, heads, queries, _) = q.dims4()?;
    let keys = k.dim(2)?;
    let k_t = k.t()?.contiguous()?;
    let per_query = (batch * heads * keys).max(1);
    let slice = (block_elements / per_query).clamp(1, queries.max(1));
    let q = (q * scale)?;
    if slice >= queries {
        let probs = candle_nn::ops::softmax_last_dim(&q.matmul(&k_t)?)?;
        return probs.matmul(v);
    }
    let mut outputs = Vec::with_capacity(queries.div_ceil(slice));
    let mut start = 0;
    while start < queries {
        let len = slice.min(queries - start);
        let q_slice = q.narrow(2, start, len)?.contiguous()?;
        let probs = candle_nn::ops::softmax_last_dim(&q_slice.matmul(&k_t)?)?;
        outputs.push(probs.matmul(v)?);
        start += len;
    }
    Tensor::cat(&outputs, 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn sliced_equals_whole() {
        let device = Device::Cpu;
        let q = Tensor::randn(0f32, 1.0, (1, 1, 7, 4), &device).unwrap();
        let k = Tensor::randn(0f32, 1.0, (1, 1, 6, 4), &device).unwrap();
        let v = Tensor::randn(0f32, 1.0, (1, 1, 6, 4), &device).unwrap();
        // A block of 12 scores forces slices of 2 queries (and a short last one for 7 queries).
        let in_slices = sliced(&q, &k, &v, 0.5, 12).unwrap();
        let manual = {
            let scores = (q.matmul(&k.t().unwrap()).unwrap() * 0.5).unwrap();
            candle_nn::ops::softmax_last_dim(&scores)
                .unwrap()
                .matmul(&v)
                .unwrap()
        };
        let diff = crate::pipeline::max_abs_diff(&in_slices, &manual);
        assert!(diff < 1e-5);
    }
}
