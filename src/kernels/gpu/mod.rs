//! Kernels of our own for NVIDIA GPUs, where candle's generic ones cost most: cuDNN
//! convolutions with PyTorch's precision settings, a fused GroupNorm(+SiLU), fused
//! (flash) attention with a scaled softmax for where it does not apply, GEGLU's gate, and
//! linear layers through cuBLASLt with the bias in the epilogue.

#[cfg(feature = "cudnn")]
pub(crate) mod conv_race;
#[cfg(feature = "cudnn")]
pub(crate) mod cudnn_conv;
pub(crate) mod flash_attention;
pub(crate) mod geglu;
pub(crate) mod group_norm;
pub(crate) mod linear;
pub(crate) mod softmax;
