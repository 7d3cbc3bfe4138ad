//! Upscaling in overlapping tiles, so that memory follows the tile size instead of the image
//! size: an RRDBNet's ×4 stage holds 64 channels at the output's resolution, 1 GiB per
//! tensor for a 2048² output in one piece, 256 MiB for a 256² tile.
//!
//! How the result differs from an untiled run: every convolution near a tile's inner edge
//! sees zeros (its padding) where the untiled run sees the neighbouring pixels, and an
//! RRDBNet's receptive field spans hundreds of pixels, so no overlap makes tiles exact.
//! Where tiles overlap, their outputs are blended with weights that fall linearly to zero
//! towards each tile's inner edges, which hides the seams; edges that are the image's own
//! are computed exactly as untiled, and an image that fits in one tile is bit-identical.
//! `tests/parity.rs` measures it on the tiny fixture networks, 32-pixel tiles overlapping by
//! 16 against one run: at most 1 8-bit level (RMS 1.3e-4) for a ×4 RRDBNet, 3 levels for
//! SRVGGNetCompact ×4, 9 levels (RMS 5e-3) for a ×1 Real-ESRGAN, whose tiles are only 8×8
//! once pixel-unshuffled.

use candle_core::{DType, Device, Result, Tensor};

use super::Upscaler;

/// Tile edge and overlap, in input pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tiling {
    pub tile: usize,
    pub overlap: usize,
}

impl Tiling {
    /// `tile` pixels a side, overlapping by an eighth of that (at least 8, at most 32 pixels).
    pub fn with_tile(tile: usize) -> Self {
        Self {
            tile,
            overlap: (tile / 8).clamp(8, 32),
        }
    }
}

/// How far an upscale has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileProgress {
    pub done: usize,
    pub total: usize,
}

/// Runs `net` over `image` (`(1, channels, height, width)`, floats in [0, 1]) in tiles, or in
/// one piece when `tiling` is `None` or the image fits in one tile, and returns the unclamped
/// output on the CPU in f32. `progress` hears of every finished tile and stops the work by
/// returning `false` (then the result is `None`).
pub fn upscale_tiled(
    net: &Upscaler,
    image: &Tensor,
    tiling: Option<Tiling>,
    progress: &mut dyn FnMut(TileProgress) -> bool,
) -> Result<Option<Tensor>> {
    let (_, _, height, width) = image.dims4()?;
    let align = net.alignment();
    let Some(tiling) = tiling.filter(|t| t.tile < height.max(width)) else {
        let out = net.forward(image)?;
        let keep_going = progress(TileProgress { done: 1, total: 1 });
        return keep_going
            .then(|| out.to_device(&Device::Cpu)?.to_dtype(DType::F32))
            .transpose();
    };
    // Tiles start at multiples of the alignment and are a multiple of it long.
    let tile = (tiling.tile / align * align).max(align);
    let overlap = tiling.overlap.div_ceil(align) * align;
    if overlap >= tile {
        candle_core::bail!(
            "tiles of {tile} pixels cannot overlap by {overlap}: the overlap must be smaller"
        );
    }
    let rows = spans(height, tile, overlap, align);
    let columns = spans(width, tile, overlap, align);
    let scale = net.scale();
    let out_channels = net.output_channels();
    let (out_h, out_w) = (height * scale, width * scale);
    let mut sum = vec![0f32; out_channels * out_h * out_w];
    let mut weight_sum = vec![0f32; out_h * out_w];
    let total = rows.len() * columns.len();
    let mut done = 0;
    for (row, &(y0, y1)) in rows.iter().enumerate() {
        let row_weights = blend_weights(&rows, row, scale);
        for (column, &(x0, x1)) in columns.iter().enumerate() {
            let column_weights = blend_weights(&columns, column, scale);
            let crop = image.narrow(2, y0, y1 - y0)?.narrow(3, x0, x1 - x0)?;
            let out = net
                .forward(&crop)?
                .to_device(&Device::Cpu)?
                .to_dtype(DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            let (tile_h, tile_w) = ((y1 - y0) * scale, (x1 - x0) * scale);
            for (y, &wy) in row_weights.iter().enumerate() {
                let out_y = y0 * scale + y;
                for (x, &wx) in column_weights.iter().enumerate() {
                    let out_x = x0 * scale + x;
                    let weight = wy * wx;
                    weight_sum[out_y * out_w + out_x] += weight;
                    for c in 0..out_channels {
                        sum[(c * out_h + out_y) * out_w + out_x] +=
                            weight * out[(c * tile_h + y) * tile_w + x];
                    }
                }
            }
            done += 1;
            if !progress(TileProgress { done, total }) {
                return Ok(None);
            }
        }
    }
    for plane in sum.chunks_mut(out_h * out_w) {
        for (value, weight) in plane.iter_mut().zip(&weight_sum) {
            *value /= weight;
        }
    }
    Tensor::from_vec(sum, (1, out_channels, out_h, out_w), &Device::Cpu).map(Some)
}

/// `[start, end)` of the tiles along a side of `length` pixels: as few as tiles of at most
/// `tile` pixels overlapping by `overlap` need, made as small as that count allows (at 512
/// pixels, three tiles of 192 instead of 256: 1.27× the work of one piece instead of 2.25×).
/// They start at multiples of `align`; the last ends at the side's end, so it may be up to
/// `align − 1` pixels longer than the others.
fn spans(length: usize, tile: usize, overlap: usize, align: usize) -> Vec<(usize, usize)> {
    if length <= tile {
        return vec![(0, length)];
    }
    let count = (length - overlap).div_ceil(tile - overlap);
    let size = (length + (count - 1) * overlap)
        .div_ceil(count)
        .div_ceil(align)
        * align;
    let stride = size - overlap;
    let last_start = (length - size) / align * align;
    let mut spans: Vec<(usize, usize)> = (0..)
        .map(|i| i * stride)
        .take_while(|&start| start < last_start)
        .map(|start| (start, start + size))
        .collect();
    spans.push((last_start, length));
    spans
}

/// The blend weight of each output pixel along one side of tile `index` (output pixels,
/// `scale` per input pixel): rising linearly across the overlap with the previous tile,
/// falling across the overlap with the next, 1 between; never 0, so every pixel is covered.
fn blend_weights(spans: &[(usize, usize)], index: usize, scale: usize) -> Vec<f32> {
    let (start, end) = spans[index];
    let (start, end) = (start * scale, end * scale);
    let rise = index
        .checked_sub(1)
        .map(|previous| spans[previous].1 * scale - start);
    let fall = spans.get(index + 1).map(|next| end - next.0 * scale);
    (start..end)
        .map(|p| {
            let mut weight = 1f64;
            if let Some(rise) = rise.filter(|&r| p < start + r) {
                weight = weight.min(((p - start) as f64 + 0.5) / rise as f64);
            }
            if let Some(fall) = fall.filter(|&f| p >= end - f) {
                weight = weight.min(((end - p) as f64 - 0.5) / fall as f64);
            }
            weight as f32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_cover_the_side_with_the_overlap_asked_for() {
        assert_eq!(spans(100, 128, 16, 1), [(0, 100)]);
        assert_eq!(spans(512, 256, 32, 1), [(0, 192), (160, 352), (320, 512)]);
        // Aligned to 4: the last tile starts at a multiple of 4 and runs to the end.
        assert_eq!(spans(103, 40, 8, 4), [(0, 40), (32, 72), (60, 103)]);
        for (length, tile, overlap, align) in [
            (1000, 256, 32, 1),
            (517, 64, 8, 4),
            (65, 64, 8, 2),
            (100, 40, 8, 1),
            (2048, 256, 32, 4),
        ] {
            let spans = spans(length, tile, overlap, align);
            assert!(spans.iter().all(|(start, end)| end - start < tile + align));
            assert_eq!(spans[0].0, 0);
            assert_eq!(spans.last().unwrap().1, length);
            for pair in spans.windows(2) {
                assert!(pair[1].0 % align == 0);
                assert!(pair[0].1 >= pair[1].0 + overlap, "{pair:?}");
                assert!(pair[1].0 > pair[0].0);
            }
        }
    }

    #[test]
    fn weights_of_overlapping_tiles_add_up_to_one() {
        let spans = spans(100, 40, 8, 1);
        let scale = 2;
        let mut total = vec![0f32; 200];
        for index in 0..spans.len() {
            let start = spans[index].0 * scale;
            for (offset, weight) in blend_weights(&spans, index, scale).into_iter().enumerate() {
                assert!(weight > 0.0);
                total[start + offset] += weight;
            }
        }
        for (p, sum) in total.iter().enumerate() {
            assert!((sum - 1.0).abs() < 1e-6, "pixel {p}: {sum}");
        }
    }
}
