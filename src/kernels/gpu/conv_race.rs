//! Which convolution runs on a CUDA device: cuDNN or candle's im2col, whichever ran the shape
//! faster the first time it came (three back-to-back runs each, after one untimed run that
//! lets cuDNN search its algorithms). Neither wins everywhere: on an H200 cuDNN took every
//! 3×3 convolution at 64×64 and above 2–7× faster and lost every 1×1 one and the 3×3s at 16×16
//! and below (docs/performance-log.md). `LATENT_STUDIO_CUDA_CONV=cudnn` skips the race;
//! `LATENT_STUDIO_CONV_LOG=1` prints each shape's times and choice.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use candle_core::{DType, Result, Tensor};

/// Input dims, weight dims, padding, stride, dtype.
type ShapeKey = (
    (usize, usize, usize, usize),
    (usize, usize, usize, usize),
    usize,
    usize,
    DType,
);

/// `conv(xs, weight)` by `cudnn` or `im2col` (both computing the same convolution).
pub(crate) fn run(
    (xs, weight, padding, stride): (&Tensor, &Tensor, usize, usize),
    cudnn: impl Fn() -> Result<Tensor>,
    im2col: impl Fn() -> Result<Tensor>,
) -> Result<Tensor> {
    static CHOICES: OnceLock<Mutex<HashMap<ShapeKey, bool>>> = OnceLock::new();
    static ALWAYS_CUDNN: OnceLock<bool> = OnceLock::new();
    static LOG: OnceLock<bool> = OnceLock::new();
    let env_is = |name: &str, value: &str| std::env::var(name).is_ok_and(|v| v == value);
    if *ALWAYS_CUDNN.get_or_init(|| env_is("LATENT_STUDIO_CUDA_CONV", "cudnn")) {
        return cudnn();
    }
    let key = (xs.dims4()?, weight.dims4()?, padding, stride, xs.dtype());
    let choices = CHOICES.get_or_init(Mutex::default);
    let known = choices
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&key)
        .copied();
    let use_cudnn = match known {
        Some(choice) => choice,
        None => {
            let device = xs.device();
            let time = |run: &dyn Fn() -> Result<Tensor>| -> Result<Duration> {
                run()?;
                device.synchronize()?;
                let started = Instant::now();
                for _ in 0..3 {
                    run()?;
                }
                device.synchronize()?;
                Ok(started.elapsed())
            };
            // A shape cuDNN cannot do goes to im2col.
            let cudnn_time = time(&cudnn);
            let im2col_time = time(&im2col)?;
            let choice = cudnn_time.as_ref().is_ok_and(|t| *t <= im2col_time);
            if *LOG.get_or_init(|| env_is("LATENT_STUDIO_CONV_LOG", "1")) {
                let cudnn_time = match &cudnn_time {
                    Ok(t) => format!("{:.3} ms", t.as_secs_f64() * 1000.0 / 3.0),
                    Err(err) => format!("failed ({err})"),
                };
                eprintln!(
                    "conv {:?} * {:?} pad {padding} stride {stride} {:?}: cudnn {cudnn_time}, im2col {:.3} ms -> {}",
                    key.0,
                    key.1,
                    key.4,
                    im2col_time.as_secs_f64() * 1000.0 / 3.0,
                    if choice { "cudnn" } else { "im2col" }
                );
            }
            choices
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key, choice);
            choice
        }
    };
    if use_cudnn {
        cudnn()
    } else {
        im2col()
    }
}
