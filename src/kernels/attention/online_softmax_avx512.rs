//! The products of the fused CPU attention on CPUs with AVX-512, in one of two formats:
//! - [`F32`]: f32 FMAs, 16 lanes and 32 registers, so a register tile holds 6 query rows ×
//!   a whole head of up to 64 (the AVX2 kernels keep at most 3 × 8 columns and stream the
//!   values twice per 4 rows);
//! - [`Bf16`] (bf16 mode, AVX-512 BF16): queries, keys, probabilities and values rounded to
//!   bf16 (nearest even), sums in f32; `vdpbf16ps` multiplies 32 bf16 pairs into 16 f32 sums
//!   per instruction, twice the arithmetic of an f32 FMA of the same width.
//!
//! The online softmax between the products stays f32 either way. Inputs are stored in `u32`
//! units: one f32, or two bf16 neighbours along the product's inner dimension (low half
//! first). `k` panels are `[head unit][key]` per key block; `v` panels `[key unit][head
//! column]`, the head padded to whole registers of 16, zero beyond the keys.

use rayon::prelude::*;
use std::arch::x86_64::*;

use super::online_softmax::{key_block, Block, HeadsView, Products, Shape};
use crate::kernels::matmul_bf16::round_in_pairs;

/// Keys per register tile of the score kernel (two registers of 16 sums).
const KEY_TILE: usize = 32;
/// f32 lanes of one AVX-512 register.
const LANES: usize = 16;
/// Query rows per register tile.
const ROWS: usize = 6;
/// Output registers per row that the value kernel keeps at once (with `ROWS` rows: 24).
const COLUMN_REGISTERS: usize = 4;

/// How the products' inputs are stored and multiplied.
pub(super) trait Format: Sync {
    /// Values per `u32` unit along a product's inner dimension.
    const PER_UNIT: usize;
    /// Whether this CPU has the format's instructions.
    fn available() -> bool;
    /// `values` (a whole number of units) packed into `units`. The caller checked
    /// [`Format::available`].
    fn pack(values: &[f32], units: &mut [u32]);
    /// See [`scores_tile`](f32_kernels::scores_tile). The caller checked availability.
    unsafe fn scores<const R: usize>(
        q: &[u32],
        panel: &[u32],
        s: &mut [f32],
        units: usize,
        width: usize,
    );
    /// See [`ValuesTile`]. The caller checked availability.
    unsafe fn values<const R: usize, const C: usize>(tile: ValuesTile);
}

/// f32 products with AVX-512F FMAs.
pub(super) struct F32;
/// bf16 products with AVX-512 BF16 (`vdpbf16ps`).
pub(super) struct Bf16;

impl Format for F32 {
    const PER_UNIT: usize = 1;
    fn available() -> bool {
        is_x86_feature_detected!("avx512f")
    }
    fn pack(values: &[f32], units: &mut [u32]) {
        for (unit, value) in units.iter_mut().zip(values) {
            *unit = value.to_bits();
        }
    }
    unsafe fn scores<const R: usize>(
        q: &[u32],
        panel: &[u32],
        s: &mut [f32],
        units: usize,
        width: usize,
    ) {
        f32_kernels::scores_tile::<R>(q, panel, s, units, width)
    }
    unsafe fn values<const R: usize, const C: usize>(tile: ValuesTile) {
        f32_kernels::values_tile::<R, C>(tile)
    }
}

impl Format for Bf16 {
    const PER_UNIT: usize = 2;
    fn available() -> bool {
        crate::kernels::matmul_bf16::available()
    }
    fn pack(values: &[f32], units: &mut [u32]) {
        // SAFETY: the products were only built after `available`.
        unsafe { round_in_pairs(values, units) }
    }
    unsafe fn scores<const R: usize>(
        q: &[u32],
        panel: &[u32],
        s: &mut [f32],
        units: usize,
        width: usize,
    ) {
        bf16_kernels::scores_tile::<R>(q, panel, s, units, width)
    }
    unsafe fn values<const R: usize, const C: usize>(tile: ValuesTile) {
        bf16_kernels::values_tile::<R, C>(tile)
    }
}

/// Whether `F`'s products can run here for this head size.
pub fn available<F: Format>(head_dim: usize) -> bool {
    head_dim.is_multiple_of(F::PER_UNIT) && F::available()
}

/// One unit from up to `PER_UNIT` values (missing ones are 0).
fn unit<F: Format>(values: &[f32]) -> u32 {
    let mut padded = [0f32; 2];
    padded[..values.len()].copy_from_slice(values);
    let mut unit = [0u32];
    F::pack(&padded[..F::PER_UNIT], &mut unit);
    unit[0]
}

/// Keys and values of every (batch, head) pair, packed once per attention call.
pub(super) struct Avx512Products<F: Format> {
    heads: usize,
    head_units: usize,
    /// Head size rounded up to whole registers: the value panels' row length.
    padded_head: usize,
    k_panel_len: usize,
    k_panels: Vec<u32>,
    v_panel_len: usize,
    v_panels: Vec<u32>,
    format: std::marker::PhantomData<F>,
}

impl<F: Format> Avx512Products<F> {
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
        assert!(
            available::<F>(head_dim),
            "AVX-512 attention products without the CPU for them"
        );
        let per_unit = F::PER_UNIT;
        let head_units = head_dim / per_unit;
        let padded_head = head_dim.div_ceil(LANES) * LANES;
        let key_block = key_block(head_dim, KEY_TILE);
        let padded_keys = keys.div_ceil(KEY_TILE) * KEY_TILE;

        // kᵀ per key block: `[head unit][width]`, zero beyond the block's keys.
        let k_panel_len = head_units * padded_keys;
        let mut k_panels = vec![0u32; batch * heads * k_panel_len];
        k_panels
            .par_chunks_mut(k_panel_len)
            .enumerate()
            .for_each(|(index, panels)| {
                let (b, h) = (index / heads, index % heads);
                for block_start in (0..keys).step_by(key_block) {
                    let valid = key_block.min(keys - block_start);
                    let width = valid.div_ceil(KEY_TILE) * KEY_TILE;
                    let panel = &mut panels[head_units * block_start..][..head_units * width];
                    for j in 0..valid {
                        let row = &k[k_view.row(b, h, block_start + j)..][..head_dim];
                        for (u, values) in row.chunks_exact(per_unit).enumerate() {
                            panel[u * width + j] = unit::<F>(values);
                        }
                    }
                }
            });

        // v by units of keys: `[key unit][padded head]`.
        let v_panel_len = padded_keys / per_unit * padded_head;
        let mut v_panels = vec![0u32; batch * heads * v_panel_len];
        v_panels
            .par_chunks_mut(v_panel_len)
            .enumerate()
            .for_each(|(index, panel)| {
                let (b, h) = (index / heads, index % heads);
                for (key_unit, target) in panel.chunks_exact_mut(padded_head).enumerate() {
                    let first_key = key_unit * per_unit;
                    if first_key >= keys {
                        break;
                    }
                    let row = |key: usize| &v[v_view.row(b, h, key)..][..head_dim];
                    let first = row(first_key);
                    // The second key of a bf16 pair, if there is one.
                    let second =
                        (per_unit == 2 && first_key + 1 < keys).then(|| row(first_key + 1));
                    for (d, target) in target[..head_dim].iter_mut().enumerate() {
                        let values = [first[d], second.map_or(0.0, |row| row[d])];
                        *target = unit::<F>(&values[..per_unit]);
                    }
                }
            });
        Self {
            heads,
            head_units,
            padded_head,
            k_panel_len,
            k_panels,
            v_panel_len,
            v_panels,
            format: std::marker::PhantomData,
        }
    }

    fn pair_index(&self, at: Block) -> usize {
        at.batch * self.heads + at.head
    }
}

impl<F: Format> Products for Avx512Products<F> {
    fn key_tile(&self) -> usize {
        KEY_TILE
    }

    fn out_stride(&self) -> usize {
        self.padded_head
    }

    fn scores(&self, at: Block, q: &[f32], rows: usize, scores: &mut [f32], work: &mut Vec<u32>) {
        let units = self.head_units;
        // The (already scaled) queries, packed along the head.
        work.clear();
        work.resize(rows * units, 0);
        F::pack(&q[..rows * units * F::PER_UNIT], work);
        let panels = &self.k_panels[self.pair_index(at) * self.k_panel_len..][..self.k_panel_len];
        let panel = &panels[units * at.start..][..units * at.width];
        let mut r = 0;
        while r < rows {
            let tile = (rows - r).min(ROWS);
            let (q, s) = (&work[r * units..], &mut scores[r * at.width..]);
            // SAFETY: `new` asserted the format's instructions; the kernel checks its slices.
            unsafe {
                match tile {
                    6 => F::scores::<6>(q, panel, s, units, at.width),
                    5 => F::scores::<5>(q, panel, s, units, at.width),
                    4 => F::scores::<4>(q, panel, s, units, at.width),
                    3 => F::scores::<3>(q, panel, s, units, at.width),
                    2 => F::scores::<2>(q, panel, s, units, at.width),
                    _ => F::scores::<1>(q, panel, s, units, at.width),
                }
            }
            r += tile;
        }
    }

    fn values(&self, at: Block, p: &[f32], rows: usize, out: &mut [f32], work: &mut Vec<u32>) {
        // Probabilities packed along the keys (padding keys have p = 0).
        let key_units = at.valid.div_ceil(F::PER_UNIT);
        work.clear();
        work.resize(rows * key_units, 0);
        for (row, target) in p[..rows * at.width]
            .chunks_exact(at.width)
            .zip(work.chunks_exact_mut(key_units))
        {
            F::pack(&row[..key_units * F::PER_UNIT], target);
        }
        let panels = &self.v_panels[self.pair_index(at) * self.v_panel_len..][..self.v_panel_len];
        let first_unit = at.start / F::PER_UNIT;
        let panel = &panels[first_unit * self.padded_head..][..key_units * self.padded_head];
        let registers = self.padded_head / LANES;
        let mut r = 0;
        while r < rows {
            let tile = (rows - r).min(ROWS);
            let mut column = 0;
            while column < registers {
                let count = (registers - column).min(COLUMN_REGISTERS);
                let block = ValuesTile {
                    p: &work[r * key_units..],
                    key_units,
                    v: panel,
                    v_stride: self.padded_head,
                    out: &mut out[r * self.padded_head..],
                    out_stride: self.padded_head,
                    first_lane: column * LANES,
                };
                // SAFETY: as in `scores`.
                unsafe {
                    match (tile, count) {
                        (6, 4) => F::values::<6, 4>(block),
                        (6, 3) => F::values::<6, 3>(block),
                        (6, 2) => F::values::<6, 2>(block),
                        (6, _) => F::values::<6, 1>(block),
                        (_, 4) => block.rows_one_by_one::<F, 4>(tile),
                        (_, 3) => block.rows_one_by_one::<F, 3>(tile),
                        (_, 2) => block.rows_one_by_one::<F, 2>(tile),
                        _ => block.rows_one_by_one::<F, 1>(tile),
                    }
                }
                column += count;
            }
            r += tile;
        }
    }
}

/// Rows of packed probabilities against a value panel: `out[r] += Σ_k p[r][k]·v[k]` over the
/// key units, into `C` registers of output columns from `first_lane`.
pub(super) struct ValuesTile<'a> {
    p: &'a [u32],
    key_units: usize,
    v: &'a [u32],
    v_stride: usize,
    out: &'a mut [f32],
    out_stride: usize,
    first_lane: usize,
}

impl ValuesTile<'_> {
    /// A tile of `rows < ROWS` rows, one row at a time (the last rows of a query block).
    unsafe fn rows_one_by_one<F: Format, const C: usize>(self, rows: usize) {
        let ValuesTile {
            p,
            key_units,
            v,
            v_stride,
            out,
            out_stride,
            first_lane,
        } = self;
        for (r, out) in out.chunks_mut(out_stride).take(rows).enumerate() {
            F::values::<1, C>(ValuesTile {
                p: &p[r * key_units..],
                key_units,
                v,
                v_stride,
                out,
                out_stride,
                first_lane,
            });
        }
    }

    /// The bounds every kernel relies on, for `R` rows and `C` registers.
    fn check<const R: usize, const C: usize>(&self) {
        let lanes = self.first_lane + C * LANES;
        assert!(self.p.len() >= (R - 1) * self.key_units + self.key_units);
        assert!(self.out.len() >= (R - 1) * self.out_stride + lanes && lanes <= self.v_stride);
        assert!(
            self.key_units == 0 || self.v.len() >= (self.key_units - 1) * self.v_stride + lanes
        );
    }
}

/// The two kernels for one format, from its broadcast and multiply-add: the same register
/// tiles, compiled with the format's CPU features.
macro_rules! kernels {
    ($module:ident, $features:literal, $broadcast:ident, $multiply_add:ident) => {
        mod $module {
            use super::*;

            /// `s[r][j] = Σ_u q[r][u]·panel[u][j]` (f32 sums) for `R` query rows and every
            /// column of the panel.
            #[target_feature(enable = $features)]
            pub unsafe fn scores_tile<const R: usize>(
                q: &[u32],
                panel: &[u32],
                s: &mut [f32],
                units: usize,
                width: usize,
            ) {
                assert!(q.len() >= R * units && s.len() >= (R - 1) * width + width);
                assert!(panel.len() >= units * width && width.is_multiple_of(KEY_TILE));
                let (q, panel, s) = (q.as_ptr(), panel.as_ptr(), s.as_mut_ptr());
                for column in (0..width).step_by(KEY_TILE) {
                    let mut acc = [[_mm512_setzero_ps(); 2]; R];
                    for u in 0..units {
                        let keys = panel.add(u * width + column);
                        let k0 = _mm512_loadu_ps(keys.cast());
                        let k1 = _mm512_loadu_ps(keys.add(LANES).cast());
                        for (r, acc) in acc.iter_mut().enumerate() {
                            let query = $broadcast(*q.add(r * units + u));
                            acc[0] = $multiply_add(acc[0], query, k0);
                            acc[1] = $multiply_add(acc[1], query, k1);
                        }
                    }
                    for (r, acc) in acc.iter().enumerate() {
                        _mm512_storeu_ps(s.add(r * width + column), acc[0]);
                        _mm512_storeu_ps(s.add(r * width + column + LANES), acc[1]);
                    }
                }
            }

            /// [`ValuesTile`] for `R` rows and `C` registers.
            #[target_feature(enable = $features)]
            pub unsafe fn values_tile<const R: usize, const C: usize>(tile: ValuesTile) {
                tile.check::<R, C>();
                let (p, v, out) = (tile.p.as_ptr(), tile.v.as_ptr(), tile.out.as_mut_ptr());
                let column = |r: usize, c: usize| r * tile.out_stride + tile.first_lane + c * LANES;
                let mut acc = [[_mm512_setzero_ps(); C]; R];
                for (r, acc) in acc.iter_mut().enumerate() {
                    for (c, acc) in acc.iter_mut().enumerate() {
                        *acc = _mm512_loadu_ps(out.add(column(r, c)));
                    }
                }
                for k in 0..tile.key_units {
                    let row = v.add(k * tile.v_stride + tile.first_lane);
                    let values: [__m512; C] =
                        std::array::from_fn(|c| _mm512_loadu_ps(row.add(c * LANES).cast()));
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let weight = $broadcast(*p.add(r * tile.key_units + k));
                        for (acc, value) in acc.iter_mut().zip(values) {
                            *acc = $multiply_add(*acc, weight, value);
                        }
                    }
                }
                for (r, acc) in acc.iter().enumerate() {
                    for (c, acc) in acc.iter().enumerate() {
                        _mm512_storeu_ps(out.add(column(r, c)), *acc);
                    }
                }
            }
        }
    };
}

#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn f32_broadcast(unit: u32) -> __m512 {
    _mm512_set1_ps(f32::from_bits(unit))
}

#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn f32_multiply_add(acc: __m512, a: __m512, b: __m512) -> __m512 {
    _mm512_fmadd_ps(a, b, acc)
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn bf16_broadcast(unit: u32) -> __m512 {
    _mm512_castsi512_ps(_mm512_set1_epi32(unit as i32))
}

/// `acc + a₀·b₀ + a₁·b₁` per lane, for the bf16 pairs held in `a` and `b`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn bf16_multiply_add(acc: __m512, a: __m512, b: __m512) -> __m512 {
    _mm512_dpbf16_ps(
        acc,
        std::mem::transmute::<__m512, __m512bh>(a),
        std::mem::transmute::<__m512, __m512bh>(b),
    )
}

kernels!(f32_kernels, "avx512f", f32_broadcast, f32_multiply_add);
kernels!(
    bf16_kernels,
    "avx512f,avx512bw,avx512bf16",
    bf16_broadcast,
    bf16_multiply_add
);
