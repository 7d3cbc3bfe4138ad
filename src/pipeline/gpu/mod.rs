//! Kernels of our own for NVIDIA GPUs, where candle's generic ones cost most: cuDNN
//! convolutions with PyTorch's precision settings, a fused GroupNorm(+SiLU) and a scaled
//! softmax for attention scores.

#[cfg(feature = "cudnn")]
pub(crate) mod conv_race;
#[cfg(feature = "cudnn")]
pub(crate) mod cudnn_conv;
pub(crate) mod group_norm;
pub(crate) mod softmax;
