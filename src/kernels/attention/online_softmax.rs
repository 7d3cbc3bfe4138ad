//! Fused attention for x86-64 CPUs with AVX2 and FMA: `softmax(q·kᵀ·scale)·v` one block of
//! queries against one block of keys at a time, with the softmax carried across key blocks
//! by a running maximum and sum (the "online softmax" of Milakov & Gimelshein, 2018, as used by
//! FlashAttention). No score matrix larger than one block ever exists, and the two products
//! run from registers: with a head size of 40 (SD 1.x) a plain matrix product spends most of
//! its time packing and writing the 4096×4096 score matrix instead of multiplying.
//!
//! Inputs are read through strides, so the `(batch, tokens, heads, head_dim)` layout the
//! projections produce needs no transposed copy.

use rayon::prelude::*;
use std::arch::x86_64::*;

use crate::kernels::simd::exp_non_positive as exp;

/// Queries handled by one task.
const QUERY_BLOCK: usize = 64;
/// Lanes of one AVX register.
const LANES: usize = 8;
/// Key-block columns are computed 16 at a time (two registers).
const KEY_TILE: usize = 2 * LANES;

/// A `(batch, heads, tokens, head_dim)` view of an f32 buffer that starts at its first
/// element; the last dimension is contiguous.
#[derive(Debug, Clone, Copy)]
pub struct HeadsView {
    pub batch_stride: usize,
    pub head_stride: usize,
    pub token_stride: usize,
}

impl HeadsView {
    pub(super) fn row(&self, batch: usize, head: usize, token: usize) -> usize {
        batch * self.batch_stride + head * self.head_stride + token * self.token_stride
    }
}

/// The sizes of one attention call.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub batch: usize,
    pub heads: usize,
    pub queries: usize,
    pub keys: usize,
    pub head_dim: usize,
}

/// Whether [`attend`] can run here: an x86-64 CPU with AVX2 and FMA, and a head size that is
/// a whole number of registers (every Stable Diffusion model's is).
pub fn available(head_dim: usize) -> bool {
    head_dim > 0
        && head_dim.is_multiple_of(LANES)
        && is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
}

/// Keys per block: the block's keys and values stay in the L2 cache together; a multiple of
/// `tile`, the products' column granularity.
pub(super) fn key_block(head_dim: usize, tile: usize) -> usize {
    let keys = (32 * 1024 / head_dim).clamp(tile, 512);
    keys / tile * tile
}

/// The arithmetic of the two products: f32 (AVX-512 kernels where the CPU has them, else
/// AVX2), or, in bf16 mode on CPUs with AVX-512 BF16, bf16 inputs with f32 sums
/// (`online_softmax_avx512`). `F32Avx2` keeps the AVX2 kernels even on AVX-512 CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arithmetic {
    F32,
    F32Avx2,
    Bf16,
}

/// The two matrix products of attention over one block of keys, for one (batch, head) pair;
/// [`attend`] runs the online softmax between them.
pub(super) trait Products: Sync {
    /// Key blocks are a whole number of these columns wide (keys beyond the last are padding).
    fn key_tile(&self) -> usize;
    /// Row stride of the output accumulators: the head size, padded as the kernel needs.
    fn out_stride(&self) -> usize;
    /// Scores `s[r][j] = q[r]·k[block_start + j]` of `rows` (scaled) queries against `width`
    /// keys, `width` apart per row. `work` is the task's scratch for repacked inputs.
    fn scores(&self, at: Block, q: &[f32], rows: usize, scores: &mut [f32], work: &mut Vec<u32>);
    /// `out[r] += Σ_j p[r][j]·v[block_start + j]` over the block's `valid` keys; `p` rows are
    /// `width` apart, `out` rows `out_stride()` apart.
    fn values(&self, at: Block, p: &[f32], rows: usize, out: &mut [f32], work: &mut Vec<u32>);
}

/// Where a key block lies: its (batch, head) pair, first key, keys that exist, padded width.
#[derive(Debug, Clone, Copy)]
pub(super) struct Block {
    pub batch: usize,
    pub head: usize,
    pub start: usize,
    pub valid: usize,
    pub width: usize,
}

/// Writes attention for every (batch, head) into `out`, laid out `(batch, queries, heads,
/// head_dim)`. The caller checks [`available`] (and `online_softmax_avx512::available` for bf16)
/// and that every view lies inside its buffer.
pub fn attend(
    arithmetic: Arithmetic,
    shape: Shape,
    scale: f32,
    (q, q_view): (&[f32], HeadsView),
    (k, k_view): (&[f32], HeadsView),
    (v, v_view): (&[f32], HeadsView),
    out: &mut [f32],
) {
    assert!(
        available(shape.head_dim),
        "online_softmax::attend without AVX2/FMA"
    );
    assert_eq!(
        out.len(),
        shape.batch * shape.queries * shape.heads * shape.head_dim
    );
    use super::online_softmax_avx512::{self as avx512, Avx512Products};
    match arithmetic {
        Arithmetic::F32 if avx512::available::<avx512::F32>(shape.head_dim) => {
            let products = Avx512Products::<avx512::F32>::new(shape, (k, k_view), (v, v_view));
            run(&products, shape, scale, (q, q_view), out);
        }
        Arithmetic::F32 | Arithmetic::F32Avx2 => {
            let products = F32Products::new(shape, (k, k_view), (v, v_view));
            run(&products, shape, scale, (q, q_view), out);
        }
        Arithmetic::Bf16 => {
            let products = Avx512Products::<avx512::Bf16>::new(shape, (k, k_view), (v, v_view));
            run(&products, shape, scale, (q, q_view), out);
        }
    }
}

/// One task per (batch, block of queries); each walks the heads and, per head, the key blocks.
fn run(
    products: &impl Products,
    shape: Shape,
    scale: f32,
    (q, q_view): (&[f32], HeadsView),
    out: &mut [f32],
) {
    let Shape {
        heads,
        queries,
        keys,
        head_dim,
        ..
    } = shape;
    let row_len = heads * head_dim;
    let tile = products.key_tile();
    let key_block = key_block(head_dim, tile);
    let out_stride = products.out_stride();
    out.par_chunks_mut(queries * row_len)
        .enumerate()
        .for_each(|(b, out_batch)| {
            out_batch
                .par_chunks_mut(QUERY_BLOCK * row_len)
                .enumerate()
                .for_each(|(block, out_rows)| {
                    let first_query = block * QUERY_BLOCK;
                    let rows = out_rows.len() / row_len;
                    let mut scratch = Scratch::new(rows, head_dim, key_block, out_stride);
                    for h in 0..heads {
                        for r in 0..rows {
                            let source = &q[q_view.row(b, h, first_query + r)..][..head_dim];
                            for (target, &value) in
                                scratch.q[r * head_dim..][..head_dim].iter_mut().zip(source)
                            {
                                *target = value * scale;
                            }
                        }
                        scratch.maxima.fill(f32::NEG_INFINITY);
                        scratch.sums.fill(0.0);
                        scratch.out.fill(0.0);
                        for start in (0..keys).step_by(key_block) {
                            let valid = key_block.min(keys - start);
                            let at = Block {
                                batch: b,
                                head: h,
                                start,
                                valid,
                                width: valid.div_ceil(tile) * tile,
                            };
                            attend_block(products, at, rows, &mut scratch);
                        }
                        for r in 0..rows {
                            let target = &mut out_rows[r * row_len + h * head_dim..][..head_dim];
                            let inverse = 1.0 / scratch.sums[r];
                            for (t, &o) in target.iter_mut().zip(&scratch.out[r * out_stride..]) {
                                *t = o * inverse;
                            }
                        }
                    }
                });
        });
}

/// Per-task buffers: scaled queries, one block of scores, running max/sum, the output
/// accumulators and the products' repacking scratch.
struct Scratch {
    q: Vec<f32>,
    scores: Vec<f32>,
    maxima: Vec<f32>,
    sums: Vec<f32>,
    out: Vec<f32>,
    work: Vec<u32>,
}

impl Scratch {
    fn new(rows: usize, head_dim: usize, key_block: usize, out_stride: usize) -> Self {
        Self {
            q: vec![0.0; rows * head_dim],
            scores: vec![0.0; rows * key_block],
            maxima: vec![0.0; rows],
            sums: vec![0.0; rows],
            out: vec![0.0; rows * out_stride],
            work: Vec::new(),
        }
    }
}

/// One key block of the online softmax: scores, then per row the new running maximum, the
/// rescaling of what was summed so far and `exp(s − max)`, then the values.
fn attend_block(products: &impl Products, at: Block, rows: usize, scratch: &mut Scratch) {
    let width = at.width;
    let scores = &mut scratch.scores[..rows * width];
    products.scores(at, &scratch.q, rows, scores, &mut scratch.work);
    let stride = products.out_stride();
    for r in 0..rows {
        let row = &mut scores[r * width..][..width];
        row[at.valid..].fill(f32::NEG_INFINITY);
        // SAFETY: `attend` asserted AVX2 and FMA; widths are whole tiles of 8 lanes.
        let block_max = unsafe { max_of(row) };
        let old_max = scratch.maxima[r];
        let new_max = old_max.max(block_max);
        // SAFETY: as above.
        let block_sum = unsafe { exp_minus_in_place(row, new_max) };
        let rescale = (old_max - new_max).exp();
        scratch.sums[r] = scratch.sums[r] * rescale + block_sum;
        scratch.maxima[r] = new_max;
        if rescale != 1.0 {
            for o in &mut scratch.out[r * stride..][..stride] {
                *o *= rescale;
            }
        }
    }
    products.values(at, scores, rows, &mut scratch.out, &mut scratch.work);
}

/// The f32 products: kᵀ per (batch, head), one (head_dim × block width) panel per key block,
/// zero-padded to whole tiles, so the score kernel reads 16 consecutive keys per head_dim
/// step; values are read in place through their strides.
struct F32Products<'a> {
    heads: usize,
    head_dim: usize,
    panel_len: usize,
    k_panels: Vec<f32>,
    v: &'a [f32],
    v_view: HeadsView,
}

impl<'a> F32Products<'a> {
    fn new(
        shape: Shape,
        (k, k_view): (&[f32], HeadsView),
        (v, v_view): (&'a [f32], HeadsView),
    ) -> Self {
        let Shape {
            batch,
            heads,
            keys,
            head_dim,
            ..
        } = shape;
        let key_block = key_block(head_dim, KEY_TILE);
        let padded_keys = keys.div_ceil(KEY_TILE) * KEY_TILE;
        let panel_len = head_dim * padded_keys;
        let mut k_panels = vec![0f32; batch * heads * panel_len];
        k_panels
            .par_chunks_mut(panel_len)
            .enumerate()
            .for_each(|(pair, panels)| {
                let (b, h) = (pair / heads, pair % heads);
                for block_start in (0..keys).step_by(key_block) {
                    let valid = key_block.min(keys - block_start);
                    let width = valid.div_ceil(KEY_TILE) * KEY_TILE;
                    let panel = &mut panels[head_dim * block_start..][..head_dim * width];
                    for j in 0..valid {
                        let row = &k[k_view.row(b, h, block_start + j)..][..head_dim];
                        for (d, &value) in row.iter().enumerate() {
                            panel[d * width + j] = value;
                        }
                    }
                }
            });
        Self {
            heads,
            head_dim,
            panel_len,
            k_panels,
            v,
            v_view,
        }
    }
}

impl Products for F32Products<'_> {
    fn key_tile(&self) -> usize {
        KEY_TILE
    }

    fn out_stride(&self) -> usize {
        self.head_dim
    }

    fn scores(&self, at: Block, q: &[f32], rows: usize, scores: &mut [f32], _: &mut Vec<u32>) {
        let d = self.head_dim;
        let panels = &self.k_panels[(at.batch * self.heads + at.head) * self.panel_len..];
        let panel = &panels[d * at.start..][..d * at.width];
        let mut r = 0;
        while r < rows {
            let tile = (rows - r).min(6);
            let (q, s) = (&q[r * d..], &mut scores[r * at.width..]);
            // SAFETY: `attend` asserted AVX2 and FMA; the kernels check their slices.
            unsafe {
                match tile {
                    6 => scores_tile::<6>(q, panel, s, d, at.width),
                    5 => scores_tile::<5>(q, panel, s, d, at.width),
                    4 => scores_tile::<4>(q, panel, s, d, at.width),
                    3 => scores_tile::<3>(q, panel, s, d, at.width),
                    2 => scores_tile::<2>(q, panel, s, d, at.width),
                    _ => scores_tile::<1>(q, panel, s, d, at.width),
                }
            }
            r += tile;
        }
    }

    fn values(&self, at: Block, p: &[f32], rows: usize, out: &mut [f32], _: &mut Vec<u32>) {
        let d = self.head_dim;
        let v = &self.v[self.v_view.row(at.batch, at.head, at.start)..];
        let mut r = 0;
        while r < rows {
            let tile = (rows - r).min(4);
            let block = ValuesBlock {
                p: &p[r * at.width..],
                p_stride: at.width,
                v,
                v_stride: self.v_view.token_stride,
                valid: at.valid,
            };
            let o = &mut out[r * d..];
            // SAFETY: as in `scores`.
            unsafe {
                match tile {
                    4 => values_tile::<4>(&block, o, d),
                    3 => values_tile::<3>(&block, o, d),
                    2 => values_tile::<2>(&block, o, d),
                    _ => values_tile::<1>(&block, o, d),
                }
            }
            r += tile;
        }
    }
}

/// `s[r][j] = Σ_d q[r][d]·panel[d][j]` for `R` query rows and every column of the panel.
#[target_feature(enable = "avx2,fma")]
unsafe fn scores_tile<const R: usize>(
    q: &[f32],
    panel: &[f32],
    s: &mut [f32],
    head_dim: usize,
    width: usize,
) {
    assert!(q.len() >= R * head_dim && s.len() >= (R - 1) * width + width);
    assert!(panel.len() >= head_dim * width && width.is_multiple_of(KEY_TILE));
    let (q, panel, s) = (q.as_ptr(), panel.as_ptr(), s.as_mut_ptr());
    for column in (0..width).step_by(KEY_TILE) {
        let mut acc = [[_mm256_setzero_ps(); 2]; R];
        for d in 0..head_dim {
            let k0 = _mm256_loadu_ps(panel.add(d * width + column));
            let k1 = _mm256_loadu_ps(panel.add(d * width + column + LANES));
            for (r, acc) in acc.iter_mut().enumerate() {
                let q = _mm256_broadcast_ss(&*q.add(r * head_dim + d));
                acc[0] = _mm256_fmadd_ps(q, k0, acc[0]);
                acc[1] = _mm256_fmadd_ps(q, k1, acc[1]);
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            _mm256_storeu_ps(s.add(r * width + column), acc[0]);
            _mm256_storeu_ps(s.add(r * width + column + LANES), acc[1]);
        }
    }
}

/// `R` rows of probabilities against one key block's values.
#[derive(Clone, Copy)]
struct ValuesBlock<'a> {
    /// Probabilities, `p_stride` apart per row.
    p: &'a [f32],
    p_stride: usize,
    /// Value rows, `v_stride` apart.
    v: &'a [f32],
    v_stride: usize,
    /// Keys of the block that exist (the rest of the tile is padding).
    valid: usize,
}

/// `o[r] += Σ_j p[r][j]·v[j]` over the block's valid keys, for `R` query rows.
#[target_feature(enable = "avx2,fma")]
unsafe fn values_tile<const R: usize>(block: &ValuesBlock, o: &mut [f32], head_dim: usize) {
    let ValuesBlock {
        p,
        p_stride,
        v,
        v_stride,
        valid,
    } = *block;
    assert!(p.len() >= (R - 1) * p_stride + valid && o.len() >= R * head_dim);
    assert!(valid == 0 || v.len() >= (valid - 1) * v_stride + head_dim);
    let mut column = 0;
    while column < head_dim {
        let registers = ((head_dim - column) / LANES).min(3);
        match registers {
            1 => values_columns::<R, 1>(block, o, head_dim, column),
            2 => values_columns::<R, 2>(block, o, head_dim, column),
            _ => values_columns::<R, 3>(block, o, head_dim, column),
        }
        column += registers * LANES;
    }
}

/// One `R × C` register tile of [`values_tile`]: `C` registers of output columns from `column`.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn values_columns<const R: usize, const C: usize>(
    block: &ValuesBlock,
    o: &mut [f32],
    head_dim: usize,
    column: usize,
) {
    let (p, v, o) = (block.p.as_ptr(), block.v.as_ptr(), o.as_mut_ptr());
    let (p_stride, v_stride) = (block.p_stride, block.v_stride);
    let mut acc = [[_mm256_setzero_ps(); C]; R];
    for (r, acc) in acc.iter_mut().enumerate() {
        for (c, acc) in acc.iter_mut().enumerate() {
            *acc = _mm256_loadu_ps(o.add(r * head_dim + column + c * LANES));
        }
    }
    for j in 0..block.valid {
        let mut values = [_mm256_setzero_ps(); C];
        for (c, value) in values.iter_mut().enumerate() {
            *value = _mm256_loadu_ps(v.add(j * v_stride + column + c * LANES));
        }
        for (r, acc) in acc.iter_mut().enumerate() {
            let weight = _mm256_broadcast_ss(&*p.add(r * p_stride + j));
            for (acc, value) in acc.iter_mut().zip(values) {
                *acc = _mm256_fmadd_ps(weight, value, *acc);
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        for (c, acc) in acc.iter().enumerate() {
            _mm256_storeu_ps(o.add(r * head_dim + column + c * LANES), *acc);
        }
    }
}

/// Largest value of a row whose length is a multiple of 8.
#[target_feature(enable = "avx2,fma")]
unsafe fn max_of(row: &[f32]) -> f32 {
    let mut max = _mm256_set1_ps(f32::NEG_INFINITY);
    for chunk in row.chunks_exact(LANES) {
        max = _mm256_max_ps(max, _mm256_loadu_ps(chunk.as_ptr()));
    }
    let mut lanes = [0f32; LANES];
    _mm256_storeu_ps(lanes.as_mut_ptr(), max);
    lanes.into_iter().fold(f32::NEG_INFINITY, f32::max)
}

/// Replaces every `x` of the row (length a multiple of 8) by `exp(x − max)`; returns their sum.
#[target_feature(enable = "avx2,fma")]
unsafe fn exp_minus_in_place(row: &mut [f32], max: f32) -> f32 {
    let max = _mm256_set1_ps(max);
    let mut sum = _mm256_setzero_ps();
    for chunk in row.chunks_exact_mut(LANES) {
        let e = exp(_mm256_sub_ps(_mm256_loadu_ps(chunk.as_ptr()), max));
        _mm256_storeu_ps(chunk.as_mut_ptr(), e);
        sum = _mm256_add_ps(sum, e);
    }
    let mut lanes = [0f32; LANES];
    _mm256_storeu_ps(lanes.as_mut_ptr(), sum);
    lanes.iter().sum()
}
