//! 2-D convolution on NVIDIA GPUs through cuDNN, set up the way PyTorch (and so diffusers)
//! sets it up: f16 and bf16 data with f32 accumulation, tensor cores for them, plain FMA
//! arithmetic (no TF32) for f32 data. candle's own cuDNN path accumulates f16 in f16, and
//! its default path unfolds the whole image (im2col) into a buffer nine times the input's size
//! before a matrix product and a transposing copy.
//!
//! The algorithm for each shape is the fastest that cuDNN measures on first use
//! (`cudnnFindConvolutionForwardAlgorithmEx`, what PyTorch's `cudnn.benchmark` does): on an
//! H200 cuDNN's heuristic pick made the SD 1.5 UNet step 82 ms against 69 ms with the
//! measured one in the same run (docs/performance-log.md, run 3).

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::{CudaDType, CudaDevice, DeviceId};
use candle_core::{
    CpuStorage, CudaStorage, CustomOp2, DType, Layout, Result, Shape, Tensor, WithDType,
};
use cudarc::cudnn::{sys, ConvForward, Cudnn, CudnnDataType};
use cudarc::driver::{DevicePtr, DevicePtrMut, DeviceRepr};

/// `conv2d(xs, weight)` without bias for contiguous NCHW `xs` and OIHW `weight` on a CUDA
/// device, in their dtype (f16, bf16 or f32).
pub fn conv2d(xs: &Tensor, weight: &Tensor, padding: usize, stride: usize) -> Result<Tensor> {
    let xs = xs.contiguous()?;
    let weight = weight.contiguous()?;
    xs.apply_op2_no_bwd(&weight, &CudnnConv2d { padding, stride })
}

struct CudnnConv2d {
    padding: usize,
    stride: usize,
}

/// An algorithm and the math type it was measured with.
#[derive(Clone, Copy)]
struct Algorithm {
    algorithm: sys::cudnnConvolutionFwdAlgo_t,
    math: sys::cudnnMathType_t,
}

/// What cuDNN's algorithm choice depends on.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct ShapeKey {
    device: DeviceId,
    dtype: DType,
    input: [i32; 4],
    filter: [i32; 4],
    padding: usize,
    stride: usize,
}

thread_local! {
    static HANDLES: RefCell<HashMap<DeviceId, Arc<Cudnn>>> = RefCell::new(HashMap::new());
    static ALGORITHMS: RefCell<HashMap<ShapeKey, Algorithm>> = RefCell::new(HashMap::new());
}

fn cudnn_error(what: &str, err: impl std::fmt::Debug) -> candle_core::Error {
    candle_core::Error::msg(format!("cuDNN {what}: {err:?}"))
}

fn handle(device: &CudaDevice) -> Result<Arc<Cudnn>> {
    HANDLES.with(|handles| {
        if let Some(handle) = handles.borrow().get(&device.id()) {
            return Ok(handle.clone());
        }
        let handle = Cudnn::new(device.cuda_stream()).map_err(|e| cudnn_error("init", e))?;
        handles.borrow_mut().insert(device.id(), handle.clone());
        Ok(handle)
    })
}

fn dims4(layout: &Layout, what: &str) -> Result<[i32; 4]> {
    let (a, b, c, d) = layout.shape().dims4()?;
    let narrow = |v: usize| {
        i32::try_from(v).map_err(|_| candle_core::Error::msg(format!("conv2d: {what} too large")))
    };
    Ok([narrow(a)?, narrow(b)?, narrow(c)?, narrow(d)?])
}

/// One convolution's shapes, for [`fastest_algorithm`].
struct Shapes {
    data_type: sys::cudnnDataType_t,
    input: [i32; 4],
    filter: [i32; 4],
    output: [i32; 4],
    padding: i32,
    stride: i32,
}

/// Device addresses of one convolution's input, filter and output.
struct Buffers {
    x: u64,
    w: u64,
    y: u64,
}

/// Largest scratch buffer an algorithm may use. Unbounded, cudnnFind tried algorithms
/// needing most of an H200's 141 GB; at 1 GiB the SDXL VAE's 256-channel 1024² convolution
/// lost its fast algorithms (47 ms instead of ~5 ms for the same work at 512 channels, 512²).
const MAX_WORKSPACE_BYTES: usize = 4 << 30;

/// Times cuDNN's algorithms for these shapes on `device`, on the convolution's own buffers
/// (the output is overwritten afterwards) with at most [`MAX_WORKSPACE_BYTES`] of scratch
/// (less when the GPU has less free), and returns the fastest that ran. The safe cudarc
/// wrappers hide the raw descriptors `cudnnFindConvolutionForwardAlgorithmEx` takes, so this
/// makes its own, freed on return.
fn fastest_algorithm(
    device: &CudaDevice,
    shapes: &Shapes,
    buffers: &Buffers,
    math: sys::cudnnMathType_t,
) -> Result<Algorithm> {
    use cudarc::cudnn::result;
    struct Raw {
        handle: sys::cudnnHandle_t,
        x: sys::cudnnTensorDescriptor_t,
        y: sys::cudnnTensorDescriptor_t,
        w: sys::cudnnFilterDescriptor_t,
        conv: sys::cudnnConvolutionDescriptor_t,
    }
    impl Drop for Raw {
        fn drop(&mut self) {
            // SAFETY: each non-null member was created below and is destroyed once.
            unsafe {
                if !self.conv.is_null() {
                    let _ = result::destroy_convolution_descriptor(self.conv);
                }
                if !self.w.is_null() {
                    let _ = result::destroy_filter_descriptor(self.w);
                }
                for desc in [self.x, self.y] {
                    if !desc.is_null() {
                        let _ = result::destroy_tensor_descriptor(desc);
                    }
                }
                if !self.handle.is_null() {
                    let _ = result::destroy_handle(self.handle);
                }
            }
        }
    }
    fn error(what: &'static str) -> impl Fn(cudarc::cudnn::CudnnError) -> candle_core::Error {
        move |e| cudnn_error(what, e)
    }
    let nchw = sys::cudnnTensorFormat_t::CUDNN_TENSOR_NCHW;
    let mut raw = Raw {
        handle: std::ptr::null_mut(),
        x: std::ptr::null_mut(),
        y: std::ptr::null_mut(),
        w: std::ptr::null_mut(),
        conv: std::ptr::null_mut(),
    };
    // SAFETY: every descriptor is created before it is set or used, and `raw` frees them.
    unsafe {
        raw.handle = result::create_handle().map_err(error("init"))?;
        result::set_stream(raw.handle, device.cuda_stream().cu_stream() as _)
            .map_err(error("stream"))?;
        raw.x = result::create_tensor_descriptor().map_err(error("input descriptor"))?;
        result::set_tensor4d_descriptor(raw.x, nchw, shapes.data_type, shapes.input)
            .map_err(error("input descriptor"))?;
        raw.y = result::create_tensor_descriptor().map_err(error("output descriptor"))?;
        result::set_tensor4d_descriptor(raw.y, nchw, shapes.data_type, shapes.output)
            .map_err(error("output descriptor"))?;
        raw.w = result::create_filter_descriptor().map_err(error("filter descriptor"))?;
        result::set_filter4d_descriptor(raw.w, shapes.data_type, nchw, shapes.filter)
            .map_err(error("filter descriptor"))?;
        raw.conv = result::create_convolution_descriptor().map_err(error("convolution"))?;
        let (pad, stride) = (shapes.padding, shapes.stride);
        result::set_convolution2d_descriptor(
            raw.conv,
            pad,
            pad,
            stride,
            stride,
            1,
            1,
            sys::cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION,
            sys::cudnnDataType_t::CUDNN_DATA_FLOAT,
        )
        .map_err(error("convolution"))?;
        result::set_convolution_math_type(raw.conv, math).map_err(error("math type"))?;
        let free = cudarc::driver::result::mem_get_info().map_or(0, |(free, _)| free);
        let workspace_bytes = MAX_WORKSPACE_BYTES.min(free / 4);
        let mut workspace = device.alloc::<u8>(workspace_bytes.max(1))?;
        let stream = device.cuda_stream();
        let (workspace_ptr, _workspace_guard) = workspace.device_ptr_mut(&stream);
        let mut returned = 0;
        let mut results: [sys::cudnnConvolutionFwdAlgoPerf_t; 8] = std::mem::zeroed();
        sys::cudnnFindConvolutionForwardAlgorithmEx(
            raw.handle,
            raw.x,
            buffers.x as *const std::ffi::c_void,
            raw.w,
            buffers.w as *const std::ffi::c_void,
            raw.conv,
            raw.y,
            buffers.y as *mut std::ffi::c_void,
            results.len() as i32,
            &mut returned,
            results.as_mut_ptr(),
            workspace_ptr as *mut std::ffi::c_void,
            workspace_bytes,
        )
        .result()
        .map_err(error("algorithm search"))?;
        // Sorted fastest first; failed candidates come last with a non-success status.
        results[..returned.clamp(0, 8) as usize]
            .iter()
            .find(|perf| perf.status == sys::cudnnStatus_t::CUDNN_STATUS_SUCCESS)
            .map(|perf| Algorithm {
                algorithm: perf.algo,
                math: perf.mathType,
            })
            .ok_or_else(|| candle_core::Error::msg("cuDNN found no algorithm for a convolution"))
    }
}

impl CudnnConv2d {
    fn run<T>(
        &self,
        xs: &CudaStorage,
        xs_layout: &Layout,
        weight: &CudaStorage,
        weight_layout: &Layout,
    ) -> Result<(CudaStorage, Shape)>
    where
        T: CudaDType + CudnnDataType + DeviceRepr + WithDType,
    {
        if !xs_layout.is_contiguous() || !weight_layout.is_contiguous() {
            candle_core::bail!("cudnn conv2d: inputs must be contiguous");
        }
        let input = dims4(xs_layout, "input")?;
        let filter = dims4(weight_layout, "weight")?;
        if input[1] != filter[1] {
            candle_core::bail!(
                "conv2d: input has {} channels, the weight expects {}",
                input[1],
                filter[1]
            );
        }
        let (padding, stride) = (self.padding as i32, self.stride.max(1) as i32);
        let out_size = |size: i32, kernel: i32| (size + 2 * padding - kernel) / stride + 1;
        let (out_h, out_w) = (out_size(input[2], filter[2]), out_size(input[3], filter[3]));
        if out_h <= 0 || out_w <= 0 {
            candle_core::bail!(
                "conv2d: {}×{} input is smaller than the kernel",
                input[2],
                input[3]
            );
        }
        let output = [input[0], filter[0], out_h, out_w];

        let device = xs.device().clone();
        let cudnn = handle(&device)?;
        let nchw = sys::cudnnTensorFormat_t::CUDNN_TENSOR_NCHW;
        let x = cudnn
            .create_4d_tensor::<T>(nchw, input)
            .map_err(|e| cudnn_error("input descriptor", e))?;
        let w = cudnn
            .create_4d_filter::<T>(nchw, filter)
            .map_err(|e| cudnn_error("filter descriptor", e))?;
        let y = cudnn
            .create_4d_tensor::<T>(nchw, output)
            .map_err(|e| cudnn_error("output descriptor", e))?;
        // f32 accumulation whatever the data type, as PyTorch asks for half and bfloat16.
        let mut conv = cudnn
            .create_conv2d::<f32>(
                [padding, padding],
                [stride, stride],
                [1, 1],
                sys::cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION,
            )
            .map_err(|e| cudnn_error("convolution descriptor", e))?;
        let math = if T::DATA_TYPE == sys::cudnnDataType_t::CUDNN_DATA_FLOAT {
            sys::cudnnMathType_t::CUDNN_FMA_MATH
        } else {
            sys::cudnnMathType_t::CUDNN_TENSOR_OP_MATH
        };
        conv.set_math_type(math)
            .map_err(|e| cudnn_error("math type", e))?;

        let xs_slice = xs.as_cuda_slice::<T>()?.slice(xs_layout.start_offset()..);
        let weight_slice = weight
            .as_cuda_slice::<T>()?
            .slice(weight_layout.start_offset()..);
        let out_len = output.iter().map(|&d| d as usize).product::<usize>();
        // SAFETY: cuDNN writes every element of `out` and reads the workspace only after
        // writing it.
        let mut out = unsafe { device.alloc::<T>(out_len)? };

        let key = ShapeKey {
            device: device.id(),
            dtype: xs.dtype(),
            input,
            filter,
            padding: self.padding,
            stride: self.stride,
        };
        let cached = ALGORITHMS.with(|algorithms| algorithms.borrow().get(&key).copied());
        let chosen = match cached {
            Some(chosen) => chosen,
            None => {
                let shapes = Shapes {
                    data_type: T::DATA_TYPE,
                    input,
                    filter,
                    output,
                    padding,
                    stride,
                };
                let stream = device.cuda_stream();
                let (x_ptr, _x_guard) = xs_slice.device_ptr(&stream);
                let (w_ptr, _w_guard) = weight_slice.device_ptr(&stream);
                let (y_ptr, _y_guard) = out.device_ptr_mut(&stream);
                let buffers = Buffers {
                    x: x_ptr,
                    w: w_ptr,
                    y: y_ptr,
                };
                let chosen = fastest_algorithm(&device, &shapes, &buffers, math)?;
                ALGORITHMS.with(|algorithms| algorithms.borrow_mut().insert(key, chosen));
                chosen
            }
        };
        let algorithm = chosen.algorithm;
        if chosen.math != math {
            conv.set_math_type(chosen.math)
                .map_err(|e| cudnn_error("math type", e))?;
        }
        let forward = ConvForward {
            conv: &conv,
            x: &x,
            w: &w,
            y: &y,
        };
        let workspace_bytes = forward
            .get_workspace_size(algorithm)
            .map_err(|e| cudnn_error("workspace size", e))?;

        let mut workspace = if workspace_bytes > 0 {
            Some(unsafe { device.alloc::<u8>(workspace_bytes)? })
        } else {
            None
        };
        // SAFETY: the descriptors above describe exactly these buffers (dtype, NCHW shapes,
        // contiguous), and `out` holds `out_len` elements.
        unsafe {
            forward.launch(
                algorithm,
                workspace.as_mut(),
                (T::from_f64(1.0), T::from_f64(0.0)),
                &xs_slice,
                &weight_slice,
                &mut out,
            )
        }
        .map_err(|e| cudnn_error("convolution", e))?;
        let shape = Shape::from(output.iter().map(|&d| d as usize).collect::<Vec<usize>>());
        Ok((CudaStorage::wrap_cuda_slice(out, device), shape))
    }
}

impl CustomOp2 for CudnnConv2d {
    fn name(&self) -> &'static str {
        "cudnn-conv2d"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        candle_core::bail!("the cuDNN convolution runs on CUDA devices only")
    }

    fn cuda_fwd(
        &self,
        xs: &CudaStorage,
        xs_layout: &Layout,
        weight: &CudaStorage,
        weight_layout: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        if xs.dtype() != weight.dtype() {
            candle_core::bail!(
                "conv2d: input is {:?}, the weight {:?}",
                xs.dtype(),
                weight.dtype()
            );
        }
        match xs.dtype() {
            DType::F16 => self.run::<half::f16>(xs, xs_layout, weight, weight_layout),
            DType::BF16 => self.run::<half::bf16>(xs, xs_layout, weight, weight_layout),
            DType::F32 => self.run::<f32>(xs, xs_layout, weight, weight_layout),
            other => candle_core::bail!("cudnn conv2d: no {other:?} convolution"),
        }
    }
}
