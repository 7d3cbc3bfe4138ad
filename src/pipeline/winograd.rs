//! 3×3 convolutions with stride 1 and padding 1 by Winograd's minimal filtering F(2×2, 3×3)
//! (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016).
//!
//! Each 2×2 block of outputs comes from the 4×4 tile of input around it: `Y = Aᵀ [(G g Gᵀ) ⊙
//! (Bᵀ d B)] A`, 16 multiplications where the direct sum takes 36. Summed over input channels,
//! the 16 element-wise products become 16 matrix products, (output channels × input channels)
//! · (input channels × tiles), through [`crate::pipeline::matmul`]: 2.25× fewer multiply-adds
//! than the unfolded direct convolution, for a pass over the tiles before and after. All
//! coefficients of `B`, `G` and `A` are 0, ±1 or ±½, so the transforms round like additions;
//! the results differ from the direct sum by a few units in the last place.
//!
//! Layouts: transformed weights `[out][ξ][in]`, transformed input tiles `[in][ξ][tile]` and
//! products `[ξ][out][tile]`, `ξ = 4i + j` indexing the 4×4 tile, so every parallel task owns
//! one contiguous chunk and each of the 16 products reads strided rows in place.

use rayon::prelude::*;

use crate::pipeline::matmul::{self, Bias, MatrixRef};
#[cfg(target_arch = "x86_64")]
use crate::pipeline::matmul_bf16::{self, ColumnTiles, PairedRows};
use crate::pipeline::precision::CpuArithmetic;

/// How many transformed values (input tiles, or products) one block of tile rows may hold (16 MB
/// of f32 each).
pub const BLOCK_VALUES: usize = 4 << 20;

/// The sizes of one convolution's input and weight.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub batch: usize,
    pub in_channels: usize,
    pub out_channels: usize,
    pub height: usize,
    pub width: usize,
}

impl Shape {
    fn tiles_y(&self) -> usize {
        self.height.div_ceil(2)
    }

    fn tiles_x(&self) -> usize {
        self.width.div_ceil(2)
    }
}

/// `out` (batch × out_channels × height × width, NCHW) = the 3×3 convolution of `input`
/// (NCHW) with `weight` (out × in × 3 × 3), zero padding 1, plus `bias` per output channel.
/// `block_values` bounds the scratch memory: tile rows are transformed a block at a time.
/// With bf16 arithmetic the 16 products take bf16 inputs (transformed weights and tiles) and
/// sum in f32 ([`crate::pipeline::matmul_bf16`]); the transforms stay f32.
pub fn conv3x3(
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    shape: Shape,
    out: &mut [f32],
    block_values: usize,
    arithmetic: CpuArithmetic,
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
    let (tiles_y, tiles_x) = (shape.tiles_y(), shape.tiles_x());
    let transformed_weight = transform_weight(weight, out_channels, in_channels);
    #[cfg(target_arch = "x86_64")]
    let paired_weights: Vec<PairedRows> = match arithmetic {
        CpuArithmetic::F32 => Vec::new(),
        CpuArithmetic::Bf16 => (0..16)
            .map(|xi| {
                let rows: Vec<f32> = transformed_weight
                    .chunks_exact(16 * in_channels)
                    .flat_map(|row| &row[xi * in_channels..][..in_channels])
                    .copied()
                    .collect();
                PairedRows::new(&rows, out_channels, in_channels)
            })
            .collect(),
    };
    let tile_rows = batch * tiles_y;
    let widest = in_channels.max(out_channels);
    let rows_per_block = (block_values / (16 * widest * tiles_x).max(1)).clamp(1, tile_rows);

    let mut tiles = Vec::new();
    let mut products = Vec::new();
    for first_row in (0..tile_rows).step_by(rows_per_block) {
        let rows = rows_per_block.min(tile_rows - first_row);
        let block = rows * tiles_x;
        tiles.resize(in_channels * 16 * block, 0.0);
        products.resize(16 * out_channels * block, 0.0);

        tiles
            .par_chunks_mut(16 * block)
            .enumerate()
            .for_each(|(channel, tiles)| {
                let mut scratch = vec![0f32; 18 * (tiles_x + 1)];
                for row in 0..rows {
                    let (item, tile_y) = ((first_row + row) / tiles_y, (first_row + row) % tiles_y);
                    let image = &input[(item * in_channels + channel) * plane..][..plane];
                    transform_input_row(
                        image,
                        (height, width),
                        tile_y,
                        &mut scratch,
                        tiles,
                        (row * tiles_x, block),
                    );
                }
            });

        match arithmetic {
            CpuArithmetic::F32 => products
                .par_chunks_mut(out_channels * block)
                .enumerate()
                .for_each(|(xi, product)| {
                    let weight = MatrixRef {
                        data: &transformed_weight[xi * in_channels..],
                        rows: out_channels,
                        columns: in_channels,
                        row_stride: 16 * in_channels,
                        column_stride: 1,
                    };
                    let tiles = MatrixRef {
                        data: &tiles[xi * block..],
                        rows: in_channels,
                        columns: block,
                        row_stride: 16 * block,
                        column_stride: 1,
                    };
                    matmul::multiply_on_this_thread(weight, tiles, product, block, Bias::None);
                }),
            #[cfg(target_arch = "x86_64")]
            CpuArithmetic::Bf16 => {
                for (xi, product) in products.chunks_exact_mut(out_channels * block).enumerate() {
                    let tiles =
                        ColumnTiles::strided(&tiles[xi * block..], in_channels, block, 16 * block);
                    matmul_bf16::multiply(&paired_weights[xi], &tiles, product, block, Bias::None);
                }
            }
            #[cfg(not(target_arch = "x86_64"))]
            CpuArithmetic::Bf16 => unreachable!("bf16 arithmetic is only offered on x86-64"),
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
                    for r in row..row + item_rows {
                        let tile_y = (first_row + r) % tiles_y;
                        let at = |xi: usize| {
                            let start = (xi * out_channels + channel) * block + r * tiles_x;
                            &products[start..start + tiles_x]
                        };
                        transform_output_row(at, bias, (height, width), tile_y, target);
                    }
                });
            row += item_rows;
        }
    }
}

/// `G g Gᵀ` for every (output, input) pair, as `[out][ξ][in]`.
fn transform_weight(weight: &[f32], out_channels: usize, in_channels: usize) -> Vec<f32> {
    let mut transformed = vec![0f32; out_channels * 16 * in_channels];
    transformed
        .par_chunks_mut(16 * in_channels)
        .enumerate()
        .for_each(|(output, target)| {
            for input in 0..in_channels {
                let g = &weight[(output * in_channels + input) * 9..][..9];
                // G g: rows g₀, (g₀+g₁+g₂)/2, (g₀−g₁+g₂)/2, g₂ of the 3×3 kernel.
                let mut gg = [[0f32; 3]; 4];
                for column in 0..3 {
                    let (a, b, c) = (g[column], g[3 + column], g[6 + column]);
                    gg[0][column] = a;
                    gg[1][column] = 0.5 * (a + b + c);
                    gg[2][column] = 0.5 * (a - b + c);
                    gg[3][column] = c;
                }
                // (G g) Gᵀ: the same combination along each row.
                for (i, [a, b, c]) in gg.into_iter().enumerate() {
                    let row = [a, 0.5 * (a + b + c), 0.5 * (a - b + c), c];
                    for (j, value) in row.into_iter().enumerate() {
                        target[(4 * i + j) * in_channels + input] = value;
                    }
                }
            }
        });
    transformed
}

/// `Bᵀ d B` for the tiles of one tile row of one channel's `image`: tile `t` covers input rows
/// `2·tile_y − 1 ..= 2·tile_y + 2` and columns `2t − 1 ..= 2t + 2`, zero outside the image.
/// Element ξ of tile `t` goes to `tiles[ξ * stride + first + t]`; `scratch` holds
/// 18 × (tiles + 1) values.
fn transform_input_row(
    image: &[f32],
    (height, width): (usize, usize),
    tile_y: usize,
    scratch: &mut [f32],
    tiles: &mut [f32],
    (first, stride): (usize, usize),
) {
    let tiles_x = width.div_ceil(2);
    let (rows, split) = scratch.split_at_mut(16 * tiles_x);
    let (even, shifted_odd) = split.split_at_mut(tiles_x + 1);
    let shifted_odd = &mut shifted_odd[..tiles_x + 1];
    // Along each of the four input rows first: row k's (d B) values j = 0..4 per tile at
    // rows[(4k + j) * tiles_x + t]. With even[t] = x[2t] and shifted_odd[t] = x[2t − 1]
    // (zero outside the row), tile t reads d = (shifted_odd[t], even[t], shifted_odd[t + 1],
    // even[t + 1]), so every combination is a plain element-wise one.
    for k in 0..4 {
        let rows = &mut rows[4 * k * tiles_x..][..4 * tiles_x];
        let Some(y) = (2 * tile_y + k).checked_sub(1).filter(|&y| y < height) else {
            rows.fill(0.0);
            continue;
        };
        let line = &image[y * width..][..width];
        even.fill(0.0);
        shifted_odd.fill(0.0);
        for (target, pair) in even.iter_mut().zip(line.chunks(2)) {
            *target = pair[0];
        }
        for (target, pair) in shifted_odd[1..].iter_mut().zip(line.chunks_exact(2)) {
            *target = pair[1];
        }
        let (r0, rest) = rows.split_at_mut(tiles_x);
        let (r1, rest) = rest.split_at_mut(tiles_x);
        let (r2, r3) = rest.split_at_mut(tiles_x);
        let (d0, d1) = (&shifted_odd[..tiles_x], &even[..tiles_x]);
        let (d2, d3) = (&shifted_odd[1..], &even[1..]);
        for t in 0..tiles_x {
            r0[t] = d0[t] - d2[t];
            r1[t] = d1[t] + d2[t];
            r2[t] = d2[t] - d1[t];
            r3[t] = d1[t] - d3[t];
        }
    }
    // Then across the rows: Bᵀ (d B).
    let row = |k: usize, j: usize| &rows[(4 * k + j) * tiles_x..][..tiles_x];
    for j in 0..4 {
        let (d0, d1, d2, d3) = (row(0, j), row(1, j), row(2, j), row(3, j));
        let combinations: [(&[f32], f32, &[f32]); 4] = [
            (d0, -1.0, d2),
            (d1, 1.0, d2),
            (d2, -1.0, d1),
            (d1, -1.0, d3),
        ];
        for (i, (a, sign, b)) in combinations.into_iter().enumerate() {
            let target = &mut tiles[(4 * i + j) * stride + first..][..tiles_x];
            for (v, (a, b)) in target.iter_mut().zip(a.iter().zip(b)) {
                *v = a + sign * b;
            }
        }
    }
}

/// Tiles handled at once by the output transform, its intermediate rows kept on the stack.
const OUTPUT_CHUNK: usize = 64;

/// `Aᵀ m A` + bias for one tile row: `m(ξ)` gives element ξ of every tile of the row; the 2×2
/// outputs go to rows `2·tile_y`, `2·tile_y + 1` of `target` (one channel's plane), as far as
/// the plane reaches.
fn transform_output_row<'a>(
    m: impl Fn(usize) -> &'a [f32],
    bias: f32,
    (height, width): (usize, usize),
    tile_y: usize,
    target: &mut [f32],
) {
    let tiles_x = width.div_ceil(2);
    // Aᵀ m: output row 0 = m₀ + m₁ + m₂, row 1 = m₁ − m₂ − m₃ (rows i of the 4×4 tile).
    for (first_row, sign, output_y) in [(0, 1.0, 2 * tile_y), (4, -1.0, 2 * tile_y + 1)] {
        if output_y >= height {
            continue;
        }
        let line = &mut target[output_y * width..][..width];
        for start in (0..tiles_x).step_by(OUTPUT_CHUNK) {
            let count = OUTPUT_CHUNK.min(tiles_x - start);
            let mut r = [[0f32; OUTPUT_CHUNK]; 4];
            for (j, r) in r.iter_mut().enumerate() {
                let a = &m(first_row + j)[start..start + count];
                let b = &m(first_row + 4 + j)[start..start + count];
                let c = &m(first_row + 8 + j)[start..start + count];
                for (((r, a), b), c) in r.iter_mut().zip(a).zip(b).zip(c) {
                    *r = a + sign * (b + c);
                }
            }
            // (Aᵀ m) A: output column 0 = r₀ + r₁ + r₂, column 1 = r₁ − r₂ − r₃.
            let mut columns = [[0f32; 2]; OUTPUT_CHUNK];
            for (t, pair) in columns.iter_mut().enumerate().take(count) {
                pair[0] = r[0][t] + r[1][t] + r[2][t] + bias;
                pair[1] = r[1][t] - r[2][t] - r[3][t] + bias;
            }
            let line = &mut line[2 * start..];
            let flat = columns.as_flattened();
            let written = (2 * count).min(line.len());
            line[..written].copy_from_slice(&flat[..written]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::test_values as values;

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
        // Even and odd sizes, images narrower than a tile, one channel, and blocks of tile rows
        // that split an image or span two.
        for (batch, in_channels, out_channels, height, width, block_values) in [
            (1, 3, 4, 8, 8, BLOCK_VALUES),
            (2, 5, 3, 7, 9, BLOCK_VALUES),
            (1, 1, 1, 1, 1, BLOCK_VALUES),
            (1, 2, 2, 2, 3, BLOCK_VALUES),
            (3, 4, 6, 5, 6, 16 * 4 * 3),
            (2, 4, 6, 6, 5, 16 * 4 * 3 * 4),
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
                let exact = |want: f64| 1e-4 * (1.0 + want.abs());
                let mut arithmetics: Vec<(CpuArithmetic, &dyn Fn(f64) -> f64)> =
                    vec![(CpuArithmetic::F32, &exact)];
                // bf16 rounds the transformed inputs (sums of up to four values) to 8 bits of
                // mantissa: about as far off as the unfolded bf16 convolution, whose sums of
                // 9·channels products of N(0, 1) values are off by ~2⁻⁸·√(9·channels). A wrong
                // tile or coefficient would be off by the size of the outputs (~8 here).
                let rounded = |_: f64| 0.05 * (9.0 * in_channels as f64).sqrt();
                if crate::pipeline::precision::bf16_available() {
                    arithmetics.push((CpuArithmetic::Bf16, &rounded));
                }
                for (arithmetic, tolerance) in arithmetics {
                    let mut out = vec![f32::NAN; batch * out_channels * height * width];
                    conv3x3(
                        &input,
                        &weight,
                        bias,
                        shape,
                        &mut out,
                        block_values,
                        arithmetic,
                    );
                    for (i, (&got, &want)) in out.iter().zip(&expected).enumerate() {
                        assert!(
                            (got as f64 - want).abs() < tolerance(want),
                            "{arithmetic:?} {shape:?} at {i}: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}
