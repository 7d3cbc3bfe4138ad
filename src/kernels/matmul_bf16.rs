//! `out = W · B` with bfloat16 inputs and float32 sums, on CPUs with AVX-512 BF16 (Zen 4+,
//! Sapphire Rapids+). `vdpbf16ps` multiplies 32 bf16 pairs into 16 f32 sums per instruction,
//! twice the arithmetic of an f32 FMA of the same width. Inputs are rounded to bf16 (8 bits of
//! mantissa) to the nearest even; every sum is f32, so the error is that of the rounded inputs.
//!
//! Layouts: `W` is row-major with neighbouring columns paired into one `u32` (low half = even
//! column); `B` is cut into tiles of 64 columns, each tile holding its pairs of rows one after
//! the other (`tile → pair → 64 columns`), so the kernel reads it contiguously whatever the
//! matrix width.

use crate::kernels::matmul::Bias;
use rayon::prelude::*;
use std::arch::x86_64::*;

/// Columns of one tile of `B` (four registers of 16 f32 sums).
const TILE: usize = 64;
/// Rows of `W` per register block.
const ROWS: usize = 6;
/// Pairs of the inner dimension per cache block: one block of a tile is 24 KiB (L1).
const PAIRS_PER_BLOCK: usize = 96;

/// Whether this CPU has the instructions the kernels need.
pub fn available() -> bool {
    is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512bf16")
}

/// `W` (rows × depth), rounded to bf16 and paired along the depth.
#[derive(Debug)]
pub struct PairedRows {
    rows: usize,
    pairs: usize,
    data: Vec<u32>,
}

impl PairedRows {
    /// From a row-major f32 matrix. The caller checks [`available`].
    pub fn new(values: &[f32], rows: usize, depth: usize) -> Self {
        assert!(available(), "matmul_bf16 without AVX-512 BF16");
        assert_eq!(values.len(), rows * depth);
        let pairs = depth.div_ceil(2);
        let mut data = vec![0u32; rows * pairs];
        if depth.is_multiple_of(2) {
            // Pairs of neighbours are simply the bf16 values in order.
            const CHUNK: usize = 1 << 14;
            data.par_chunks_mut(CHUNK)
                .zip(values.par_chunks(2 * CHUNK))
                .for_each(|(pairs, values)| {
                    // SAFETY: `new` asserted AVX-512 BF16.
                    unsafe { round_in_pairs(values, pairs) }
                });
        } else {
            for (row, paired) in values.chunks_exact(depth).zip(data.chunks_exact_mut(pairs)) {
                for (p, pair) in paired.iter_mut().enumerate() {
                    let high = row.get(2 * p + 1).map_or(0, |&v| bf16_bits(v));
                    *pair = u32::from(bf16_bits(row[2 * p])) | (u32::from(high) << 16);
                }
            }
        }
        Self { rows, pairs, data }
    }
}

/// `values` (even length) rounded to bf16, two to a `u32`. The caller checks [`available`].
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
pub(crate) unsafe fn round_in_pairs(values: &[f32], pairs: &mut [u32]) {
    assert_eq!(values.len(), 2 * pairs.len());
    let mut chunks = values.chunks_exact(32);
    let mut targets = pairs.chunks_exact_mut(16);
    for (chunk, target) in (&mut chunks).zip(&mut targets) {
        let low = _mm512_loadu_ps(chunk.as_ptr());
        let high = _mm512_loadu_ps(chunk.as_ptr().add(16));
        let packed: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(high, low));
        _mm512_storeu_si512(target.as_mut_ptr().cast(), packed);
    }
    for (pair, values) in targets
        .into_remainder()
        .iter_mut()
        .zip(chunks.remainder().chunks_exact(2))
    {
        *pair = u32::from(bf16_bits(values[0])) | (u32::from(bf16_bits(values[1])) << 16);
    }
}

/// `B` (depth × columns), rounded to bf16, in tiles of 64 columns.
#[derive(Debug)]
pub struct ColumnTiles {
    pairs: usize,
    columns: usize,
    data: Vec<u32>,
}

impl ColumnTiles {
    /// From a row-major f32 matrix. The caller checks [`available`].
    pub fn new(values: &[f32], depth: usize, columns: usize) -> Self {
        assert!(available(), "matmul_bf16 without AVX-512 BF16");
        assert_eq!(values.len(), depth * columns);
        let pairs = depth.div_ceil(2);
        let tiles = columns.div_ceil(TILE);
        let mut data = vec![0u32; tiles * pairs * TILE];
        data.par_chunks_mut(pairs * TILE)
            .enumerate()
            .for_each(|(tile, packed)| {
                let first = tile * TILE;
                let width = TILE.min(columns - first);
                for (p, target) in packed.chunks_exact_mut(TILE).enumerate() {
                    let even = &values[2 * p * columns + first..][..width];
                    let odd = (2 * p + 1 < depth)
                        .then(|| &values[(2 * p + 1) * columns + first..][..width]);
                    if width == TILE {
                        // SAFETY: `new` asserted AVX-512 BF16; both rows hold 64 values.
                        unsafe { interleave_tile(even, odd, target) };
                    } else {
                        for (n, pair) in target[..width].iter_mut().enumerate() {
                            let high = odd.map_or(0, |odd| bf16_bits(odd[n]));
                            *pair = u32::from(bf16_bits(even[n])) | (u32::from(high) << 16);
                        }
                    }
                }
            });
        Self {
            pairs,
            columns,
            data,
        }
    }
}

impl ColumnTiles {
    /// From a function that writes `out[i]` = `B[row][first_column + i]`, already in bf16
    /// bits, for one row and up to 64 consecutive columns at a time.
    pub fn from_fn(
        depth: usize,
        columns: usize,
        fill: impl Fn(usize, usize, &mut [u16]) + Sync,
    ) -> Self {
        let pairs = depth.div_ceil(2);
        let tiles = columns.div_ceil(TILE);
        let mut data = vec![0u32; tiles * pairs * TILE];
        data.par_chunks_mut(pairs * TILE)
            .enumerate()
            .for_each(|(tile, packed)| {
                let first = tile * TILE;
                let width = TILE.min(columns - first);
                let (mut even, mut odd) = ([0u16; TILE], [0u16; TILE]);
                for (p, target) in packed.chunks_exact_mut(TILE).enumerate() {
                    fill(2 * p, first, &mut even[..width]);
                    if 2 * p + 1 < depth {
                        fill(2 * p + 1, first, &mut odd[..width]);
                    } else {
                        odd.fill(0);
                    }
                    for ((pair, &low), &high) in target.iter_mut().zip(&even).zip(&odd) {
                        *pair = u32::from(low) | (u32::from(high) << 16);
                    }
                }
            });
        Self {
            pairs,
            columns,
            data,
        }
    }
}

/// `values` rounded to bf16 (bits), nearest even. The caller checks [`available`].
pub fn round_to_bf16(values: &[f32]) -> Vec<u16> {
    assert!(available(), "matmul_bf16 without AVX-512 BF16");
    const CHUNK: usize = 1 << 15;
    let mut rounded = vec![0u16; values.len()];
    rounded
        .par_chunks_mut(CHUNK)
        .zip(values.par_chunks(CHUNK))
        .for_each(|(target, values)| {
            // SAFETY: `round_to_bf16` asserted AVX-512 BF16.
            unsafe { round_chunk(values, target) }
        });
    rounded
}

#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn round_chunk(values: &[f32], target: &mut [u16]) {
    assert_eq!(values.len(), target.len());
    let mut sources = values.chunks_exact(16);
    let mut targets = target.chunks_exact_mut(16);
    for (source, target) in (&mut sources).zip(&mut targets) {
        let rounded: __m256i =
            std::mem::transmute(_mm512_cvtneps_pbh(_mm512_loadu_ps(source.as_ptr())));
        _mm256_storeu_si256(target.as_mut_ptr().cast(), rounded);
    }
    for (value, target) in sources.remainder().iter().zip(targets.into_remainder()) {
        *target = bf16_bits(*value);
    }
}

/// Rounds to the nearest bf16, ties to even (what `vcvtneps2bf16` does).
fn bf16_bits(value: f32) -> u16 {
    half::bf16::from_f32(value).to_bits()
}

/// Packs 64 columns of two rows into 64 pairs.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn interleave_tile(even: &[f32], odd: Option<&[f32]>, target: &mut [u32]) {
    assert!(even.len() >= TILE && target.len() >= TILE && odd.is_none_or(|o| o.len() >= TILE));
    let low_index = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    let high_index = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
    for block in 0..TILE / 16 {
        let a = _mm512_loadu_ps(even.as_ptr().add(16 * block));
        let b = match odd {
            Some(odd) => _mm512_loadu_ps(odd.as_ptr().add(16 * block)),
            None => _mm512_setzero_ps(),
        };
        let first = _mm512_permutex2var_ps(a, low_index, b);
        let second = _mm512_permutex2var_ps(a, high_index, b);
        let packed: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(second, first));
        _mm512_storeu_si512(target.as_mut_ptr().add(16 * block).cast(), packed);
    }
}

/// A pointer the tasks of [`multiply`] share; each writes only its own rows × columns.
#[derive(Clone, Copy)]
struct Output(*mut f32);
// SAFETY: tasks write disjoint parts of the output (see `multiply`).
unsafe impl Send for Output {}
unsafe impl Sync for Output {}

impl Output {
    /// Taking `self` whole keeps closures capturing the `Send` wrapper, not its raw field.
    unsafe fn at(self, offset: usize) -> *mut f32 {
        self.0.add(offset)
    }
}

/// `out = bias + W · B`, where row `r` of the product goes to `out[r * out_stride..][..columns]`.
pub fn multiply(
    weight: &PairedRows,
    columns: &ColumnTiles,
    out: &mut [f32],
    out_stride: usize,
    bias: Bias,
) {
    assert!(available(), "matmul_bf16 without AVX-512 BF16");
    assert_eq!(weight.pairs, columns.pairs, "inner dimensions differ");
    let (rows, width) = (weight.rows, columns.columns);
    assert!(out_stride >= width && rows > 0 && out.len() >= (rows - 1) * out_stride + width);
    bias.check(rows, width);
    let tiles = width.div_ceil(TILE);
    // Enough tasks for every thread even when the image is small (8×8 latents: one tile).
    let wanted = 4 * rayon::current_num_threads();
    let row_groups = wanted.div_ceil(tiles).clamp(1, rows.div_ceil(ROWS));
    let rows_per_group = rows.div_ceil(row_groups).div_ceil(ROWS) * ROWS;
    let row_groups = rows.div_ceil(rows_per_group);
    let output = Output(out.as_mut_ptr());
    (0..tiles * row_groups).into_par_iter().for_each(|task| {
        let (tile, group) = (task / row_groups, task % row_groups);
        let first_row = group * rows_per_group;
        let last_row = (first_row + rows_per_group).min(rows);
        let first_column = tile * TILE;
        let valid = TILE.min(width - first_column);
        let panel = &columns.data[tile * columns.pairs * TILE..][..columns.pairs * TILE];
        for first_pair in (0..weight.pairs).step_by(PAIRS_PER_BLOCK) {
            let count = PAIRS_PER_BLOCK.min(weight.pairs - first_pair);
            let mut row = first_row;
            while row < last_row {
                let block = ROWS.min(last_row - row);
                let a = &weight.data[row * weight.pairs + first_pair..];
                let b = &panel[first_pair * TILE..][..count * TILE];
                // SAFETY: rows `row..row + block` and columns `first_column..+valid` lie inside
                // `out` and belong to this task alone; `a` holds `block` rows of `pairs`.
                unsafe {
                    let c = output.at(row * out_stride + first_column);
                    let tile = Tile {
                        a: a.as_ptr(),
                        a_stride: weight.pairs,
                        b: b.as_ptr(),
                        count,
                        c,
                        c_stride: out_stride,
                        valid,
                        start: if first_pair > 0 {
                            Start::Target
                        } else {
                            match bias {
                                Bias::None => Start::Zero,
                                Bias::PerRow(values) => Start::RowBias(values[row..].as_ptr()),
                                Bias::PerColumn(values) => {
                                    Start::ColumnBias(values[first_column..].as_ptr())
                                }
                            }
                        },
                    };
                    match block {
                        6 => tile.run::<6>(),
                        5 => tile.run::<5>(),
                        4 => tile.run::<4>(),
                        3 => tile.run::<3>(),
                        2 => tile.run::<2>(),
                        _ => tile.run::<1>(),
                    }
                }
                row += block;
            }
        }
    });
}

/// One register block: `R` rows × 64 columns over `count` pairs of the inner dimension.
struct Tile {
    a: *const u32,
    a_stride: usize,
    b: *const u32,
    count: usize,
    c: *mut f32,
    c_stride: usize,
    valid: usize,
    start: Start,
}

/// What a tile's sums start from: zero, the bias (one value per row from the pointer on, or
/// one per column), or what the previous block of the inner dimension left in `c`.
#[derive(Clone, Copy)]
enum Start {
    Zero,
    RowBias(*const f32),
    ColumnBias(*const f32),
    Target,
}

impl Tile {
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    unsafe fn run<const R: usize>(&self) {
        let masks: [__mmask16; 4] = std::array::from_fn(|j| {
            let lanes = self.valid.saturating_sub(16 * j).min(16);
            ((1u32 << lanes) - 1) as __mmask16
        });
        let mut acc = [[_mm512_setzero_ps(); 4]; R];
        for (r, acc) in acc.iter_mut().enumerate() {
            for (j, acc) in acc.iter_mut().enumerate() {
                *acc = match self.start {
                    Start::Zero => _mm512_setzero_ps(),
                    Start::RowBias(bias) => _mm512_set1_ps(*bias.add(r)),
                    Start::ColumnBias(bias) => _mm512_maskz_loadu_ps(masks[j], bias.add(16 * j)),
                    Start::Target => {
                        _mm512_maskz_loadu_ps(masks[j], self.c.add(r * self.c_stride + 16 * j))
                    }
                };
            }
        }
        for p in 0..self.count {
            let b = self.b.add(p * TILE);
            let columns: [__m512bh; 4] = std::array::from_fn(|j| {
                std::mem::transmute(_mm512_loadu_si512(b.add(16 * j).cast()))
            });
            for (r, acc) in acc.iter_mut().enumerate() {
                let pair = *self.a.add(r * self.a_stride + p);
                let weights: __m512bh = std::mem::transmute(_mm512_set1_epi32(pair as i32));
                for (acc, column) in acc.iter_mut().zip(columns) {
                    *acc = _mm512_dpbf16_ps(*acc, weights, column);
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            for (j, acc) in acc.iter().enumerate() {
                _mm512_mask_storeu_ps(self.c.add(r * self.c_stride + 16 * j), masks[j], *acc);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_values as values;

    fn rounded(value: f32) -> f32 {
        half::bf16::from_f32(value).to_f32()
    }

    #[test]
    fn tiles_from_a_function_equal_tiles_from_a_matrix() {
        if !available() {
            return;
        }
        // Odd depth, a whole tile and a partial one.
        let (depth, width) = (7, 100);
        let b = values(depth * width, 3);
        let from_matrix = ColumnTiles::new(&b, depth, width);
        let from_fn = ColumnTiles::from_fn(depth, width, |row, first, out| {
            for (i, target) in out.iter_mut().enumerate() {
                *target = bf16_bits(b[row * width + first + i]);
            }
        });
        assert_eq!(from_matrix.data, from_fn.data);
    }

    #[test]
    fn equals_an_f32_product_of_the_rounded_inputs() {
        if !available() {
            return;
        }
        // Odd depth (a half-empty last pair), partial tiles and row blocks, several cache
        // blocks of the inner dimension (the bias must count once), and a single-tile case
        // split over row groups; each kind of bias in turn.
        for (case, (rows, depth, width)) in [
            (13, 37, 150),
            (7, 250, 64),
            (64, 200, 64),
            (320, 9, 5),
            (5, 40, 3),
        ]
        .into_iter()
        .enumerate()
        {
            let w = values(rows * depth, 1);
            let b = values(depth * width, 2);
            let row_bias = values(rows, 3);
            let column_bias = values(width, 4);
            let bias = match case % 3 {
                0 => Bias::None,
                1 => Bias::PerRow(&row_bias),
                _ => Bias::PerColumn(&column_bias),
            };
            let mut out = vec![f32::NAN; rows * width];
            multiply(
                &PairedRows::new(&w, rows, depth),
                &ColumnTiles::new(&b, depth, width),
                &mut out,
                width,
                bias,
            );
            for i in 0..rows {
                for j in 0..width {
                    let start = match bias {
                        Bias::None => 0.0,
                        Bias::PerRow(v) => v[i] as f64,
                        Bias::PerColumn(v) => v[j] as f64,
                    };
                    let exact: f64 = start
                        + (0..depth)
                            .map(|k| {
                                rounded(w[i * depth + k]) as f64 * rounded(b[k * width + j]) as f64
                            })
                            .sum::<f64>();
                    let got = out[i * width + j] as f64;
                    assert!(
                        (got - exact).abs() <= 1e-5 * (1.0 + exact.abs()) * (depth as f64).sqrt(),
                        "{rows}×{depth}×{width} at ({i}, {j}): {got} vs {exact}"
                    );
                }
            }
        }
    }
}
