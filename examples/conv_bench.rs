//! Our CPU convolution against candle's on the layer shapes of SD 1.5's UNet (batch 2 = CFG)
//! and VAE decoder, f32 (and, on CPUs with AVX-512 BF16, bf16 arithmetic):
//! `cargo run --release --example conv_bench`.

use candle_core::{Device, Module, Tensor};
use candle_nn::Conv2dConfig;
use latent_studio::kernels::conv::Conv2d;
use latent_studio::kernels::precision::{bf16_available, set_cpu_arithmetic, CpuArithmetic};
use std::time::Instant;
fn time(f: &dyn Fn() -> Tensor) -> f64 {
    let _ = f();
    let t = Instant::now();
    for _ in 0..3 {
        let _ = f();
    }
    t.elapsed().as_secs_f64() / 3.0
}
fn main() -> candle_core::Result<()> {
    // The allocator set up as the app's `main` does: buffers up to 32 MiB reused, not faulted in
    // afresh on every call.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; no other thread exists yet.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
    let d = Device::Cpu;
    for &(b, c, hw, co, k) in &[
        (2usize, 320usize, 64usize, 320usize, 3usize),
        (2, 640, 32, 640, 3),
        (2, 1280, 16, 1280, 3),
        (2, 640, 16, 640, 3),
        (2, 1280, 8, 1280, 3),
        (1, 128, 256, 128, 3),
        (1, 256, 128, 256, 3),
        (2, 320, 64, 320, 1),
    ] {
        let x = Tensor::randn(0f32, 1.0, (b, c, hw, hw), &d)?;
        let w = Tensor::randn(0f32, 1.0, (co, c, k, k), &d)?;
        let conv = Conv2d::new(
            w,
            None,
            Conv2dConfig {
                padding: k / 2,
                ..Default::default()
            },
        );
        let ours = time(&|| conv.forward(&x).unwrap());
        let candle = time(&|| conv.forward_with_candle(&x).unwrap());
        let flops = 2.0 * (b * hw * hw * co * c * k * k) as f64;
        print!("conv b{b} {c}->{co} {hw}² k{k}: ours {:.0} ms ({:.0} GFLOP/s), candle {:.0} ms ({:.0} GFLOP/s)", ours * 1e3, flops / ours / 1e9, candle * 1e3, flops / candle / 1e9);
        if bf16_available() {
            set_cpu_arithmetic(CpuArithmetic::Bf16).expect("checked");
            let bf16 = time(&|| conv.forward(&x).unwrap());
            set_cpu_arithmetic(CpuArithmetic::F32).expect("f32 is always there");
            print!(
                ", bf16 {:.0} ms ({:.0} GFLOP/s)",
                bf16 * 1e3,
                flops / bf16 / 1e9
            );
        }
        println!();
    }
    Ok(())
}
