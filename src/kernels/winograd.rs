//! 3×3 convolutions with stride 1 and padding 1 by Winograd's minimal filtering F(m×m, 3×3)
//! (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016), for m = 2 and 4.
//!
//! Each m×m block of outputs comes from the n×n tile of input around it (n = m + 2):
//! `Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`, n² multiplications where the direct sum takes 9·m².
//! Summed over input channels, the n² element-wise products become n² matrix products,
//! (output channels × input channels) · (input channels × tiles), through
//! [`crate::kernels::matmul`]: 2.25× (F(2×2)) or 4× (F(4×4)) fewer multiply-adds than the
//! unfolded direct convolution, for a pass over the tiles before and after. F(2×2)'s
//! coefficients are 0, ±1 and ±½, so its transforms round like additions and the results
//! differ from the direct sum by a few units in the last place; F(4×4)'s reach 8 and 1/144,
//! which costs a few bits more.
//!
//! Layouts: transformed weights `[out][ξ][in]`, transformed input tiles `[in][ξ][tile]` and
//! products `[ξ][out][tile]`, `ξ = n·i + j` indexing the n×n tile, so every parallel task owns
//! one contiguous chunk and each of the n² products reads strided rows in place. The
//! transforms are sums of whole rows of tiles (one per coefficient), which vectorise.

use rayon::prelude::*;
use std::ops::Range;

use crate::kernels::matmul::{self, Bias, MatrixRef};

/// Bounds on the scratch memory of one convolution.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// How many transformed values (input tiles, or products) one block of tile rows may hold.
    pub block_values: usize,
    /// How many transformed weights the products take at a time (a group of output channels).
    pub weight_values: usize,
}

impl Limits {
    /// 16 MB of f32 each. Weights in groups because F(4×4)'s transformed weights for 1280
    /// channels are 236 MB, and glibc hands buffers beyond 32 MiB back to the system when freed:
    /// every call faulted in fresh pages for them, which took as long as transforming them.
    pub const DEFAULT: Limits = Limits {
        block_values: 4 << 20,
        weight_values: 4 << 20,
    };
}

/// Which F(m×m, 3×3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tiling {
    /// F(2×2, 3×3): 4×4 input tiles, 16 products per 4 outputs.
    F2,
    /// F(4×4, 3×3): 6×6 input tiles, 36 products per 16 outputs.
    F4,
}

/// The transform matrices of one tiling, row-major.
struct Matrices {
    /// Outputs per tile side.
    m: usize,
    /// Inputs per tile side, m + 2.
    n: usize,
    /// Bᵀ, n × n.
    input: &'static [f32],
    /// G, n × 3.
    weight: &'static [f32],
    /// Aᵀ, m × n.
    output: &'static [f32],
}

const F2: Matrices = Matrices {
    m: 2,
    n: 4,
    #[rustfmt::skip]
    input: &[
        1.0, 0.0, -1.0, 0.0,
        0.0, 1.0, 1.0, 0.0,
        0.0, -1.0, 1.0, 0.0,
        0.0, 1.0, 0.0, -1.0,
    ],
    #[rustfmt::skip]
    weight: &[
        1.0, 0.0, 0.0,
        0.5, 0.5, 0.5,
        0.5, -0.5, 0.5,
        0.0, 0.0, 1.0,
    ],
    #[rustfmt::skip]
    output: &[
        1.0, 1.0, 1.0, 0.0,
        0.0, 1.0, -1.0, -1.0,
    ],
};

/// Interpolation points 0, ±1, ±2 and ∞ (Lavin & Gray's F(4×4, 3×3)).
const F4: Matrices = Matrices {
    m: 4,
    n: 6,
    #[rustfmt::skip]
    input: &[
        4.0, 0.0, -5.0, 0.0, 1.0, 0.0,
        0.0, -4.0, -4.0, 1.0, 1.0, 0.0,
        0.0, 4.0, -4.0, -1.0, 1.0, 0.0,
        0.0, -2.0, -1.0, 2.0, 1.0, 0.0,
        0.0, 2.0, -1.0, -2.0, 1.0, 0.0,
        0.0, 4.0, 0.0, -5.0, 0.0, 1.0,
    ],
    #[rustfmt::skip]
    weight: &[
        1.0 / 4.0, 0.0, 0.0,
        -1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0,
        -1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0,
        1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0,
        1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0,
        0.0, 0.0, 1.0,
    ],
    #[rustfmt::skip]
    output: &[
        1.0, 1.0, 1.0, 1.0, 1.0, 0.0,
        0.0, 1.0, -1.0, 2.0, -2.0, 0.0,
        0.0, 1.0, 1.0, 4.0, 4.0, 0.0,
        0.0, 1.0, -1.0, 8.0, -8.0, 1.0,
    ],
};

/// The largest m and n of the tilings, for buffers on the stack.
const MAX_M: usize = 4;
const MAX_N: usize = 6;

impl Tiling {
    fn matrices(self) -> &'static Matrices {
        match self {
            Tiling::F2 => &F2,
            Tiling::F4 => &F4,
        }
    }
}

/// The sizes of one convolution's input and weight.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub batch: usize,
    pub in_channels: usize,
    pub out_channels: usize,
    pub height: usize,
    pub width: usize,
}

/// `out` (batch × out_channels × height × width, NCHW) = the 3×3 convolution of `input`
/// (NCHW) with `weight` (out × in × 3 × 3), zero padding 1, plus `bias` per output channel.
/// `limits` bound the scratch memory: tile rows are transformed a block at a time, weights a
/// group of output channels at a time.
pub fn conv3x3(
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    shape: Shape,
    out: &mut [f32],
    limits: Limits,
    tiling: Tiling,
) {
    let Shape {
        batch,
        in_channels,
        out_channels,
        height,
        width,
    } = shape;
    let plane = height * width;
    assert!(
        input.len() >= batch * in_channels * plane,
        "input too short"
    );
    assert!(
        weight.len() >= out_channels * in_channels * 9,
        "weight too short"
    );
    assert!(
        out.len() >= batch * out_channels * plane,
        "output too short"
    );
    if let Some(bias) = bias {
        assert!(bias.len() >= out_channels, "bias too short");
    }
    if batch == 0 || out_channels == 0 || plane == 0 {
        return;
    }
    let matrices = tiling.matrices();
    let (m, n) = (matrices.m, matrices.n);
    let elements = n * n;
    let (tiles_y, tiles_x) = (height.div_ceil(m), width.div_ceil(m));
    let transform = |outputs: Range<usize>| {
        let kernels = &weight[outputs.start * in_channels * 9..outputs.end * in_channels * 9];
        transform_weight(matrices, kernels, in_channels)
    };
    let group_len = (limits.weight_values / (elements * in_channels)).clamp(1, out_channels);
    let groups: Vec<Range<usize>> = (0..out_channels)
        .step_by(group_len)
        .map(|first| first..(first + group_len).min(out_channels))
        .collect();
    // With one group its weights are transformed once, not once per block of tile rows.
    let whole_weight = (groups.len() == 1).then(|| transform(0..out_channels));
    let tile_rows = batch * tiles_y;
    let widest = in_channels.max(out_channels);
    let rows_per_block =
        (limits.block_values / (elements * widest * tiles_x).max(1)).clamp(1, tile_rows);

    let mut tiles = Vec::new();
    let mut products = Vec::new();
    for first_row in (0..tile_rows).step_by(rows_per_block) {
        let rows = rows_per_block.min(tile_rows - first_row);
        let block = rows * tiles_x;
        tiles.resize(in_channels * elements * block, 0.0);
        products.resize(elements * out_channels * block, 0.0);

        tiles
            .par_chunks_mut(elements * block)
            .enumerate()
            .for_each_init(
                || vec![0f32; (n + elements) * block],
                |scratch, (channel, tiles)| {
                    let image =
                        |item: usize| &input[(item * in_channels + channel) * plane..][..plane];
                    transform_input_rows(
                        matrices,
                        image,
                        (height, width),
                        (first_row, tiles_y),
                        scratch,
                        tiles,
                    );
                },
            );

        for group in &groups {
            let group_weight;
            let transformed = match &whole_weight {
                Some(transformed) => transformed,
                None => {
                    group_weight = transform(group.clone());
                    &group_weight
                }
            };
            products
                .par_chunks_mut(out_channels * block)
                .enumerate()
                .for_each(|(xi, product)| {
                    let weight = MatrixRef {
                        data: &transformed[xi * in_channels..],
                        rows: group.len(),
                        columns: in_channels,
                        row_stride: elements * in_channels,
                        column_stride: 1,
                    };
                    let tiles = MatrixRef {
                        data: &tiles[xi * block..],
                        rows: in_channels,
                        columns: block,
                        row_stride: elements * block,
                        column_stride: 1,
                    };
                    let product = &mut product[group.start * block..group.end * block];
                    matmul::multiply_on_this_thread(weight, tiles, product, block, Bias::None);
                });
        }

        // The block's tile rows, grouped by the image they belong to.
        let mut row = 0;
        while row < rows {
            let item = (first_row + row) / tiles_y;
            let item_rows = (tiles_y - (first_row + row) % tiles_y).min(rows - row);
            let image = &mut out[item * out_channels * plane..][..out_channels * plane];
            image
                .par_chunks_mut(plane)
                .enumerate()
                .for_each(|(channel, target)| {
                    let bias = bias.map_or(0.0, |b| b[channel]);
                    let product = |xi: usize| {
                        let start = (xi * out_channels + channel) * block + row * tiles_x;
                        &products[start..start + item_rows * tiles_x]
                    };
                    let first_tile_y = (first_row + row) % tiles_y;
                    transform_output_rows(
                        matrices,
                        product,
                        bias,
                        (height, width),
                        first_tile_y,
                        target,
                    );
                });
            row += item_rows;
        }
    }
}

/// `target[t] = Σ coefficients[s] · source(s)[t]` over the nonzero coefficients.
#[inline]
fn combine<'a>(target: &mut [f32], coefficients: &[f32], source: impl Fn(usize) -> &'a [f32]) {
    let mut first = true;
    for (s, &coefficient) in coefficients.iter().enumerate() {
        if coefficient == 0.0 {
            continue;
        }
        let values = &source(s)[..target.len()];
        if first {
            for (t, &v) in target.iter_mut().zip(values) {
                *t = coefficient * v;
            }
            first = false;
        } else {
            for (t, &v) in target.iter_mut().zip(values) {
                *t += coefficient * v;
            }
        }
    }
    if first {
        target.fill(0.0);
    }
}

/// `G g Gᵀ` for every (output, input) pair of `kernels` (output channels × `in_channels` × 3 × 3),
/// as `[out][ξ][in]`: element ξ = (i, j) is `Σ G[i][r]·G[j][c]·g[r][c]`, summed over the 9 taps
/// for all input channels at once.
fn transform_weight(matrices: &Matrices, kernels: &[f32], in_channels: usize) -> Vec<f32> {
    let n = matrices.n;
    let g = matrices.weight;
    let mut coefficients = vec![0f32; n * n * 9];
    for i in 0..n {
        for j in 0..n {
            for tap in 0..9 {
                let (r, c) = (tap / 3, tap % 3);
                let product = f64::from(g[3 * i + r]) * f64::from(g[3 * j + c]);
                coefficients[(n * i + j) * 9 + tap] = product as f32;
            }
        }
    }
    let out_channels = kernels.len() / (9 * in_channels);
    let mut transformed = vec![0f32; out_channels * n * n * in_channels];
    transformed
        .par_chunks_mut(n * n * in_channels)
        .zip(kernels.par_chunks(9 * in_channels))
        .for_each_init(
            || vec![0f32; 9 * in_channels],
            |taps, (target, kernels)| {
                for (input, kernel) in kernels.chunks_exact(9).enumerate() {
                    for (tap, &value) in kernel.iter().enumerate() {
                        taps[tap * in_channels + input] = value;
                    }
                }
                for (xi, target) in target.chunks_exact_mut(in_channels).enumerate() {
                    combine(target, &coefficients[xi * 9..][..9], |tap| {
                        &taps[tap * in_channels..]
                    });
                }
            },
        );
    transformed
}

/// `Bᵀ d B` for one input channel's tiles in a block of tile rows: block tile row `r` is tile
/// row `first_row + r` of the batch, and its tile `t` covers input rows `m·tile_y − 1 ..` and
/// columns `m·t − 1 ..` (n of each) of `image(item)`, zero outside the image. `tiles` is
/// `[ξ][tile]` for the whole block; `scratch` holds (n + n²) values per tile.
fn transform_input_rows<'a>(
    matrices: &Matrices,
    image: impl Fn(usize) -> &'a [f32],
    (height, width): (usize, usize),
    (first_row, tiles_y): (usize, usize),
    scratch: &mut [f32],
    tiles: &mut [f32],
) {
    let (m, n, b) = (matrices.m, matrices.n, matrices.input);
    let tiles_x = width.div_ceil(m);
    let block = tiles.len() / (n * n);
    let (columns, rows) = scratch.split_at_mut(n * block);
    let rows = &mut rows[..n * n * block];
    // Along each of the n input rows k of every tile first: (d B) values i = 0..n at
    // rows[(n·k + i) · block + tile], from columns[j · block + tile] = d[k][j], so that every
    // combination is a plain element-wise one over the whole block.
    for k in 0..n {
        for r in 0..block / tiles_x {
            let (item, tile_y) = ((first_row + r) / tiles_y, (first_row + r) % tiles_y);
            let y = (m * tile_y + k).checked_sub(1).filter(|&y| y < height);
            for j in 0..n {
                let column = &mut columns[j * block + r * tiles_x..][..tiles_x];
                match y {
                    Some(y) => gather_column(&image(item)[y * width..][..width], m, j, column),
                    None => column.fill(0.0),
                }
            }
        }
        let columns = &*columns;
        for (i, target) in rows[n * k * block..][..n * block]
            .chunks_exact_mut(block)
            .enumerate()
        {
            combine(target, &b[n * i..][..n], |j| &columns[j * block..]);
        }
    }
    // Then across the rows: Bᵀ (d B).
    let rows = &*rows;
    for (xi, target) in tiles.chunks_exact_mut(block).enumerate() {
        let (i, j) = (xi / n, xi % n);
        combine(target, &b[n * i..][..n], |k| &rows[(n * k + j) * block..]);
    }
}

/// `column[t] = line[m·t + j − 1]`, zero outside the line.
fn gather_column(line: &[f32], m: usize, j: usize, column: &mut [f32]) {
    // Tile 0's first column is the padding left of the line.
    let (skip, offset) = if j == 0 { (1, m - 1) } else { (0, j - 1) };
    column[..skip].fill(0.0);
    let mut filled = skip;
    if let Some(values) = line.get(offset..) {
        for (target, &value) in column[skip..].iter_mut().zip(values.iter().step_by(m)) {
            *target = value;
            filled += 1;
        }
    }
    column[filled..].fill(0.0);
}

/// Tiles handled at once by the output transform, its intermediate rows kept on the stack.
const OUTPUT_CHUNK: usize = 128;

/// `Aᵀ M A` + bias for consecutive tile rows of one image, from `first_tile_y` on: `product(ξ)`
/// gives element ξ of every tile of those rows, row after row; the m×m outputs go to `target`
/// (one channel's plane), as far as the plane reaches.
fn transform_output_rows<'a>(
    matrices: &Matrices,
    product: impl Fn(usize) -> &'a [f32],
    bias: f32,
    (height, width): (usize, usize),
    first_tile_y: usize,
    target: &mut [f32],
) {
    let (m, n, a) = (matrices.m, matrices.n, matrices.output);
    let tiles_x = width.div_ceil(m);
    let rows = product(0).len() / tiles_x;
    // Pieces of whole tile rows where they fit in a chunk, else of parts of one row.
    let rows_per_piece = (OUTPUT_CHUNK / tiles_x).max(1);
    for piece_row in (0..rows).step_by(rows_per_piece) {
        let piece_rows = rows_per_piece.min(rows - piece_row);
        for first_tile in (0..tiles_x).step_by(OUTPUT_CHUNK) {
            let row_tiles = OUTPUT_CHUNK.min(tiles_x - first_tile);
            let (offset, len) = (piece_row * tiles_x + first_tile, piece_rows * row_tiles);
            // Aᵀ M: r[n·i + j] = Σ_s Aᵀ[i][s] · M[n·s + j], row i of each tile's n columns j.
            let mut r = [[0f32; OUTPUT_CHUNK]; MAX_M * MAX_N];
            for i in 0..m {
                for j in 0..n {
                    combine(&mut r[n * i + j][..len], &a[n * i..][..n], |s| {
                        &product(n * s + j)[offset..]
                    });
                }
            }
            for (i, r) in r.chunks_exact(n).take(m).enumerate() {
                // (Aᵀ M) A: output column c = Σ_j Aᵀ[c][j] · r[j].
                let mut columns = [[0f32; OUTPUT_CHUNK]; MAX_M];
                for (c, column) in columns.iter_mut().take(m).enumerate() {
                    combine(&mut column[..len], &a[n * c..][..n], |j| &r[j][..]);
                }
                for piece in 0..piece_rows {
                    let y = m * (first_tile_y + piece_row + piece) + i;
                    if y >= height {
                        continue;
                    }
                    let line = &mut target[y * width..][..width];
                    for t in 0..row_tiles {
                        let x = m * (first_tile + t);
                        let u = piece * row_tiles + t;
                        for (c, column) in columns.iter().take(m.min(width - x)).enumerate() {
                            line[x + c] = column[u] + bias;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_values as values;

    /// The direct sum, in f64.
    fn reference(input: &[f32], weight: &[f32], bias: Option<&[f32]>, shape: Shape) -> Vec<f64> {
        let (h, w) = (shape.height as isize, shape.width as isize);
        let mut out = Vec::new();
        for item in 0..shape.batch {
            for o in 0..shape.out_channels {
                for y in 0..h {
                    for x in 0..w {
                        let mut sum = bias.map_or(0.0, |b| b[o] as f64);
                        for c in 0..shape.in_channels {
                            let plane = &input[(item * shape.in_channels + c) * (h * w) as usize..];
                            for ky in 0..3 {
                                for kx in 0..3 {
                                    let (iy, ix) = (y + ky - 1, x + kx - 1);
                                    if iy < 0 || iy >= h || ix < 0 || ix >= w {
                                        continue;
                                    }
                                    let g = weight[((o * shape.in_channels + c) * 3 + ky as usize)
                                        * 3
                                        + kx as usize];
                                    sum += g as f64 * plane[(iy * w + ix) as usize] as f64;
                                }
                            }
                        }
                        out.push(sum);
                    }
                }
            }
        }
        out
    }

    #[test]
    fn equals_the_direct_sum_on_every_edge_case() {
        // Even and odd sizes, images narrower than a tile, one channel, blocks of tile rows that
        // split an image or span two, and rows wider than the output transform's chunk.
        let default = Limits::DEFAULT;
        // Blocks of a few tile rows, weights in groups of 1–2 output channels.
        let small = Limits {
            block_values: 36 * 6 * 3,
            weight_values: 36 * 4 * 2,
        };
        for (batch, in_channels, out_channels, height, width, limits) in [
            (1, 3, 4, 8, 8, default),
            (2, 5, 3, 7, 9, default),
            (1, 1, 1, 1, 1, default),
            (1, 2, 2, 2, 3, default),
            (3, 4, 6, 5, 6, small),
            (
                2,
                4,
                6,
                6,
                5,
                Limits {
                    block_values: 36 * 6 * 3 * 4,
                    ..small
                },
            ),
            // Rows of more tiles than the output transform takes at once.
            (1, 2, 2, 5, 517, default),
            (2, 1, 1, 9, 261, default),
        ] {
            let shape = Shape {
                batch,
                in_channels,
                out_channels,
                height,
                width,
            };
            let input = values(batch * in_channels * height * width, 1);
            let weight = values(out_channels * in_channels * 9, 2);
            let bias = values(out_channels, 3);
            for bias in [None, Some(bias.as_slice())] {
                let expected = reference(&input, &weight, bias, shape);
                for tiling in [Tiling::F2, Tiling::F4] {
                    let mut out = vec![f32::NAN; batch * out_channels * height * width];
                    conv3x3(&input, &weight, bias, shape, &mut out, limits, tiling);
                    for (i, (&got, &want)) in out.iter().zip(&expected).enumerate() {
                        assert!(
                            (got as f64 - want).abs() < 1e-4 * (1.0 + want.abs()),
                            "{tiling:?} {shape:?} at {i}: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}
