//! f32 matrix products on the CPU written straight into their destination, bias included.
//!
//! candle's matmul returns a fresh tensor; a convolution then gathers its row blocks with
//! `cat`, stacks the batch and adds the bias, each a pass over the whole output (134 MB per
//! layer for a 512² VAE decode), and a linear layer adds its bias in a pass of its own. Here the
//! destination is filled with the bias and the product (the `gemm` crate, the one candle's
//! CPU matmul calls) adds into it where it lies, so the output is written once.

use rayon::prelude::*;

/// What a product starts from.
#[derive(Clone, Copy, Debug)]
pub enum Bias<'a> {
    None,
    /// One value per row of the product (a convolution's output channels).
    PerRow(&'a [f32]),
    /// One value per column (a linear layer's output features).
    PerColumn(&'a [f32]),
}

impl Bias<'_> {
    /// Writes the bias into `rows × columns` of `out`, whose rows start `out_stride` apart.
    fn fill(self, out: &mut [f32], rows: usize, columns: usize, out_stride: usize) {
        out.par_chunks_mut(out_stride)
            .take(rows)
            .enumerate()
            .for_each(|(row, target)| {
                let target = &mut target[..columns];
                match self {
                    Bias::None => target.fill(0.0),
                    Bias::PerRow(values) => target.fill(values[row]),
                    Bias::PerColumn(values) => target.copy_from_slice(&values[..columns]),
                }
            });
    }

    /// Panics when the bias is shorter than the product it starts.
    pub(crate) fn check(self, rows: usize, columns: usize) {
        match self {
            Bias::None => {}
            Bias::PerRow(values) => assert!(values.len() >= rows, "a bias per row is short"),
            Bias::PerColumn(values) => {
                assert!(values.len() >= columns, "a bias per column is short")
            }
        }
    }
}

/// A matrix read in place: element `(r, c)` is `data[r * row_stride + c * column_stride]`.
#[derive(Clone, Copy, Debug)]
pub struct MatrixRef<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub columns: usize,
    pub row_stride: usize,
    pub column_stride: usize,
}

impl<'a> MatrixRef<'a> {
    /// A row-major matrix whose rows lie one after the other.
    pub fn row_major(data: &'a [f32], rows: usize, columns: usize) -> Self {
        Self {
            data,
            rows,
            columns,
            row_stride: columns,
            column_stride: 1,
        }
    }

    /// The same values read as their transpose.
    pub fn transposed(self) -> Self {
        Self {
            rows: self.columns,
            columns: self.rows,
            row_stride: self.column_stride,
            column_stride: self.row_stride,
            ..self
        }
    }

    fn check(&self) {
        if self.rows > 0 && self.columns > 0 {
            let last = (self.rows - 1) * self.row_stride + (self.columns - 1) * self.column_stride;
            assert!(last < self.data.len(), "a matrix reaches past its data");
        }
    }
}

/// `out = bias + a · b`, where row `r` of the product goes to `out[r * out_stride..][..b.columns]`;
/// on all of rayon's threads.
pub fn multiply(a: MatrixRef, b: MatrixRef, out: &mut [f32], out_stride: usize, bias: Bias) {
    let threads = rayon::current_num_threads();
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    product(a, b, out, out_stride, bias, parallelism);
}

/// [`multiply`] on the calling thread alone, for callers that run several products at once.
pub fn multiply_on_this_thread(
    a: MatrixRef,
    b: MatrixRef,
    out: &mut [f32],
    out_stride: usize,
    bias: Bias,
) {
    product(a, b, out, out_stride, bias, gemm::Parallelism::None);
}

fn product(
    a: MatrixRef,
    b: MatrixRef,
    out: &mut [f32],
    out_stride: usize,
    bias: Bias,
    parallelism: gemm::Parallelism,
) {
    assert_eq!(a.columns, b.rows, "inner dimensions differ");
    a.check();
    b.check();
    let (rows, columns, depth) = (a.rows, b.columns, a.columns);
    if rows == 0 || columns == 0 {
        return;
    }
    assert!(
        out_stride >= columns && out.len() >= (rows - 1) * out_stride + columns,
        "the product does not fit its destination"
    );
    bias.check(rows, columns);
    let read_bias = !matches!(bias, Bias::None);
    if read_bias || depth == 0 {
        bias.fill(out, rows, columns, out_stride);
    }
    if depth == 0 {
        return;
    }
    // SAFETY: the checks above keep every element gemm reads inside `a.data` and `b.data` and
    // every element it writes inside `out`, which this call borrows mutably.
    unsafe {
        gemm::gemm(
            rows,
            columns,
            depth,
            out.as_mut_ptr(),
            1,
            out_stride as isize,
            read_bias,
            a.data.as_ptr(),
            a.column_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.column_stride as isize,
            b.row_stride as isize,
            if read_bias { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_values as values;

    #[test]
    fn equals_the_plain_sum_with_either_bias_and_strides() {
        let (rows, depth, columns, stride) = (37, 70, 53, 60);
        let a = values(rows * depth, 1);
        let b_transposed = values(columns * depth, 2);
        let row_bias = values(rows, 3);
        let column_bias = values(columns, 4);
        let b = MatrixRef::row_major(&b_transposed, columns, depth).transposed();
        for bias in [
            Bias::None,
            Bias::PerRow(&row_bias),
            Bias::PerColumn(&column_bias),
        ] {
            let mut out = vec![f32::NAN; rows * stride];
            multiply(
                MatrixRef::row_major(&a, rows, depth),
                b,
                &mut out,
                stride,
                bias,
            );
            for r in 0..rows {
                for c in 0..columns {
                    let start = match bias {
                        Bias::None => 0.0,
                        Bias::PerRow(v) => v[r] as f64,
                        Bias::PerColumn(v) => v[c] as f64,
                    };
                    let exact = start
                        + (0..depth)
                            .map(|k| a[r * depth + k] as f64 * b_transposed[c * depth + k] as f64)
                            .sum::<f64>();
                    let got = out[r * stride + c] as f64;
                    assert!((got - exact).abs() < 1e-4, "({r}, {c}): {got} vs {exact}");
                }
                // What lies between rows is not the product's.
                assert!(out[r * stride + columns..(r + 1) * stride]
                    .iter()
                    .all(|v| v.is_nan()));
            }
        }
    }

    #[test]
    #[should_panic(expected = "does not fit")]
    fn a_short_destination_is_refused() {
        let a = values(6, 1);
        let mut out = vec![0.0; 8];
        multiply(
            MatrixRef::row_major(&a, 3, 2),
            MatrixRef::row_major(&a, 2, 3),
            &mut out,
            3,
            Bias::None,
        );
    }
}
