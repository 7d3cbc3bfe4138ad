//! The products of the fused CPU attention in bf16 mode: queries, keys, probabilities and
//! values rounded to bf16 (nearest even), sums in f32, on CPUs with AVX-512 BF16. `vdpbf16ps`
//! multiplies 32 bf16 pairs into 16 f32 sums per instruction, twice the arithmetic of an f32
//! FMA of the same width; the online softmax between the products stays f32.
//!
//! Both products pair neighbouring elements of their inner dimension into one `u32` (low half
//! first): q·kᵀ pairs along the head (`k` panels are `[head pair][key]`), p·v along the keys
//! (`v` panels are `[key pair][head column]`, the head padded to whole registers of 16).

use rayon::prelude::*;
use std::arch::x86_64::*;

use super::online_softmax::{key_block, Block, HeadsView, Products, Shape};
use crate::pipeline::matmul_bf16::round_in_pairs;

/// Keys per register tile of the score kernel (two registers of 16 sums).
const KEY_TILE: usize = 32;
/// f32 lanes of one AVX-512 register.
const LANES: usize = 16;
/// Query rows per register tile.
const ROWS: usize = 6;
/// Output registers per row that the value kernel keeps at once (with `ROWS` rows: 24).
const COLUMN_REGISTERS: usize = 4;

/// Whether the bf16 products can run here: AVX-512 BF16 and an even head size.
pub fn available(head_dim: usize) -> bool {
    head_dim.is_multiple_of(2) && crate::pipeline::matmul_bf16::available()
}

fn bf16_bits(value: f32) -> u32 {
    u32::from(half::bf16::from_f32(value).to_bits())
}

fn pair(low: f32, high: f32) -> u32 {
    bf16_bits(low) | (bf16_bits(high) << 16)
}

/// Keys and values of every (batch, head) pair, rounded and paired once per attention call.
pub(super) struct Bf16Products {
    heads: usize,
    head_pairs: usize,
    /// Head size rounded up to whole registers: the value panels' row length.
    padded_head: usize,
    k_panel_len: usize,
    k_panels: Vec<u32>,
    v_panel_len: usize,
    v_panels: Vec<u32>,
}

impl Bf16Products {
    pub fn new(
        shape: Shape,
        (k, k_view): (&[f32], HeadsView),
        (v, v_view): (&[f32], HeadsView),
    ) -> Self {
        let Shape {
            batch,
            heads,
            keys,
            head_dim,
            ..
        } = shape;
        assert!(available(head_dim), "bf16 attention without AVX-512 BF16");
        let head_pairs = head_dim / 2;
        let padded_head = head_dim.div_ceil(LANES) * LANES;
        let key_block = key_block(head_dim, KEY_TILE);
        let padded_keys = keys.div_ceil(KEY_TILE) * KEY_TILE;

        // kᵀ per key block: `[head pair][width]`, zero beyond the block's keys.
        let k_panel_len = head_pairs * padded_keys;
        let mut k_panels = vec![0u32; batch * heads * k_panel_len];
        k_panels
            .par_chunks_mut(k_panel_len)
            .enumerate()
            .for_each(|(index, panels)| {
                let (b, h) = (index / heads, index % heads);
                for block_start in (0..keys).step_by(key_block) {
                    let valid = key_block.min(keys - block_start);
                    let width = valid.div_ceil(KEY_TILE) * KEY_TILE;
                    let panel = &mut panels[head_pairs * block_start..][..head_pairs * width];
                    for j in 0..valid {
                        let row = &k[k_view.row(b, h, block_start + j)..][..head_dim];
                        for (p, values) in row.chunks_exact(2).enumerate() {
                            panel[p * width + j] = pair(values[0], values[1]);
                        }
                    }
                }
            });

        // v by pairs of keys: `[key pair][padded head]`, zero beyond the keys and the head.
        let v_panel_len = padded_keys / 2 * padded_head;
        let mut v_panels = vec![0u32; batch * heads * v_panel_len];
        v_panels
            .par_chunks_mut(v_panel_len)
            .enumerate()
            .for_each(|(index, panel)| {
                let (b, h) = (index / heads, index % heads);
                for (key_pair, target) in panel.chunks_exact_mut(padded_head).enumerate() {
                    let key = 2 * key_pair;
                    if key >= keys {
                        break;
                    }
                    let first = &v[v_view.row(b, h, key)..][..head_dim];
                    let second =
                        (key + 1 < keys).then(|| &v[v_view.row(b, h, key + 1)..][..head_dim]);
                    for (d, target) in target[..head_dim].iter_mut().enumerate() {
                        *target = pair(first[d], second.map_or(0.0, |row| row[d]));
                    }
                }
            });
        Self {
            heads,
            head_pairs,
            padded_head,
            k_panel_len,
            k_panels,
            v_panel_len,
            v_panels,
        }
    }

    fn pair_index(&self, at: Block) -> usize {
        at.batch * self.heads + at.head
    }
}

impl Products for Bf16Products {
    fn key_tile(&self) -> usize {
        KEY_TILE
    }

    fn out_stride(&self) -> usize {
        self.padded_head
    }

    fn scores(&self, at: Block, q: &[f32], rows: usize, scores: &mut [f32], work: &mut Vec<u32>) {
        let (pairs, head_dim) = (self.head_pairs, 2 * self.head_pairs);
        // The (already scaled) queries, rounded and paired along the head.
        work.clear();
        work.resize(rows * pairs, 0);
        // SAFETY: `new` asserted AVX-512 BF16.
        unsafe { round_in_pairs(&q[..rows * head_dim], work) };
        let panels = &self.k_panels[self.pair_index(at) * self.k_panel_len..][..self.k_panel_len];
        let panel = &panels[pairs * at.start..][..pairs * at.width];
        let mut r = 0;
        while r < rows {
            let tile = (rows - r).min(ROWS);
            let (q, s) = (&work[r * pairs..], &mut scores[r * at.width..]);
            // SAFETY: `new` asserted AVX-512 BF16; the kernel checks its slices.
            unsafe {
                match tile {
                    6 => scores_tile::<6>(q, panel, s, pairs, at.width),
                    5 => scores_tile::<5>(q, panel, s, pairs, at.width),
                    4 => scores_tile::<4>(q, panel, s, pairs, at.width),
                    3 => scores_tile::<3>(q, panel, s, pairs, at.width),
                    2 => scores_tile::<2>(q, panel, s, pairs, at.width),
                    _ => scores_tile::<1>(q, panel, s, pairs, at.width),
                }
            }
            r += tile;
        }
    }

    fn values(&self, at: Block, p: &[f32], rows: usize, out: &mut [f32], work: &mut Vec<u32>) {
        // Probabilities rounded and paired along the keys (padding keys have p = 0): a row of
        // bf16 values in order is its pairs, low half first.
        let key_pairs = at.valid.div_ceil(2);
        work.clear();
        work.resize(rows * key_pairs, 0);
        for (row, target) in p[..rows * at.width]
            .chunks_exact(at.width)
            .zip(work.chunks_exact_mut(key_pairs))
        {
            // SAFETY: `new` asserted AVX-512 BF16.
            unsafe { round_in_pairs(&row[..2 * key_pairs], target) };
        }
        let panels = &self.v_panels[self.pair_index(at) * self.v_panel_len..][..self.v_panel_len];
        let panel = &panels[at.start / 2 * self.padded_head..][..key_pairs * self.padded_head];
        let registers = self.padded_head / LANES;
        let mut r = 0;
        while r < rows {
            let tile = (rows - r).min(ROWS);
            let mut column = 0;
            while column < registers {
                let count = (registers - column).min(COLUMN_REGISTERS);
                let block = ValuesTile {
                    p: &work[r * key_pairs..],
                    key_pairs,
                    v: panel,
                    v_stride: self.padded_head,
                    out: &mut out[r * self.padded_head..],
                    out_stride: self.padded_head,
                    first_lane: column * LANES,
                };
                // SAFETY: as in `scores`.
                unsafe {
                    match (tile, count) {
                        (6, 4) => block.run::<6, 4>(),
                        (6, 3) => block.run::<6, 3>(),
                        (6, 2) => block.run::<6, 2>(),
                        (6, _) => block.run::<6, 1>(),
                        (_, 4) => block.run_rows::<4>(tile),
                        (_, 3) => block.run_rows::<3>(tile),
                        (_, 2) => block.run_rows::<2>(tile),
                        _ => block.run_rows::<1>(tile),
                    }
                }
                column += count;
            }
            r += tile;
        }
    }
}

/// `s[r][j] = Σ_p q[r][p]·panel[p][j]` (bf16 pairs, f32 sums) for `R` query rows and every
/// column of the panel.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn scores_tile<const R: usize>(
    q: &[u32],
    panel: &[u32],
    s: &mut [f32],
    pairs: usize,
    width: usize,
) {
    assert!(q.len() >= R * pairs && s.len() >= (R - 1) * width + width);
    assert!(panel.len() >= pairs * width && width.is_multiple_of(KEY_TILE));
    let (q, panel, s) = (q.as_ptr(), panel.as_ptr(), s.as_mut_ptr());
    for column in (0..width).step_by(KEY_TILE) {
        let mut acc = [[_mm512_setzero_ps(); 2]; R];
        for p in 0..pairs {
            let keys = panel.add(p * width + column);
            let k0: __m512bh = std::mem::transmute(_mm512_loadu_si512(keys.cast()));
            let k1: __m512bh = std::mem::transmute(_mm512_loadu_si512(keys.add(LANES).cast()));
            for (r, acc) in acc.iter_mut().enumerate() {
                let query: __m512bh =
                    std::mem::transmute(_mm512_set1_epi32(*q.add(r * pairs + p) as i32));
                acc[0] = _mm512_dpbf16_ps(acc[0], query, k0);
                acc[1] = _mm512_dpbf16_ps(acc[1], query, k1);
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            _mm512_storeu_ps(s.add(r * width + column), acc[0]);
            _mm512_storeu_ps(s.add(r * width + column + LANES), acc[1]);
        }
    }
}

/// Rows of paired probabilities against a value panel, into `C` registers of output columns
/// from `first_lane`.
struct ValuesTile<'a> {
    p: &'a [u32],
    key_pairs: usize,
    v: &'a [u32],
    v_stride: usize,
    out: &'a mut [f32],
    out_stride: usize,
    first_lane: usize,
}

impl ValuesTile<'_> {
    /// A tile of `rows < R` rows, one row at a time (the last rows of a query block).
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    unsafe fn run_rows<const C: usize>(self, rows: usize) {
        let ValuesTile {
            p,
            key_pairs,
            v,
            v_stride,
            out,
            out_stride,
            first_lane,
        } = self;
        for (r, out) in out.chunks_mut(out_stride).take(rows).enumerate() {
            ValuesTile {
                p: &p[r * key_pairs..],
                key_pairs,
                v,
                v_stride,
                out,
                out_stride,
                first_lane,
            }
            .run::<1, C>();
        }
    }

    /// `out[r] += Σ_k p[r][k]·v[k]` over the key pairs, for `R` rows and `C` registers.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    unsafe fn run<const R: usize, const C: usize>(self) {
        let lanes = self.first_lane + C * LANES;
        assert!(self.p.len() >= (R - 1) * self.key_pairs + self.key_pairs);
        assert!(self.out.len() >= (R - 1) * self.out_stride + lanes && lanes <= self.v_stride);
        assert!(
            self.key_pairs == 0 || self.v.len() >= (self.key_pairs - 1) * self.v_stride + lanes
        );
        let (p, v, out) = (self.p.as_ptr(), self.v.as_ptr(), self.out.as_mut_ptr());
        let mut acc = [[_mm512_setzero_ps(); C]; R];
        for (r, acc) in acc.iter_mut().enumerate() {
            for (c, acc) in acc.iter_mut().enumerate() {
                *acc = _mm512_loadu_ps(out.add(r * self.out_stride + self.first_lane + c * LANES));
            }
        }
        for k in 0..self.key_pairs {
            let row = v.add(k * self.v_stride + self.first_lane);
            let values: [__m512bh; C] = std::array::from_fn(|c| {
                std::mem::transmute(_mm512_loadu_si512(row.add(c * LANES).cast()))
            });
            for (r, acc) in acc.iter_mut().enumerate() {
                let weight: __m512bh =
                    std::mem::transmute(_mm512_set1_epi32(*p.add(r * self.key_pairs + k) as i32));
                for (acc, value) in acc.iter_mut().zip(values) {
                    *acc = _mm512_dpbf16_ps(*acc, weight, value);
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            for (c, acc) in acc.iter().enumerate() {
                _mm512_storeu_ps(
                    out.add(r * self.out_stride + self.first_lane + c * LANES),
                    *acc,
                );
            }
        }
    }
}
