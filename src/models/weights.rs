//! A component's weights held in memory by name. Modules are built from it through a
//! `VarBuilder`, optionally with LoRA deltas added, so adding or removing a LoRA rebuilds the
//! modules from memory instead of reading the model again. Modules share the tensors'
//! storage with the map, so holding it costs no extra memory.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::VarBuilder;

#[derive(Default)]
pub struct WeightMap {
    tensors: HashMap<String, Tensor>,
}

impl WeightMap {
    pub fn insert(&mut self, name: String, tensor: Tensor) {
        self.tensors.insert(name, tensor);
    }

    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.tensors.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Adds every tensor of a safetensors file, converted to `dtype` on `device` — except,
    /// with `keep_half`, tensors stored in f16/bf16, which stay so (`LoadOptions::keep_f16_weights`).
    pub fn read_safetensors(
        &mut self,
        file: &Path,
        dtype: DType,
        device: &Device,
        keep_half: bool,
    ) -> candle_core::Result<()> {
        let file = super::safetensors_file::SafetensorsFile::open(file)?;
        for name in file.names() {
            let tensor = file.load(name, device)?;
            let tensor = if keep_half && matches!(tensor.dtype(), DType::F16 | DType::BF16) {
                tensor
            } else {
                tensor.to_dtype(dtype)?
            };
            self.insert(name.to_string(), tensor);
        }
        Ok(())
    }

    /// A `VarBuilder` over these weights with `deltas` (same names) added on the way out.
    pub fn var_builder(
        self: &Arc<Self>,
        deltas: Arc<HashMap<String, Tensor>>,
        dtype: DType,
        device: &Device,
    ) -> VarBuilder<'static> {
        VarBuilder::from_backend(
            Box::new(MergedBackend {
                base: Arc::clone(self),
                deltas,
            }),
            dtype,
            device.clone(),
        )
    }
}

struct MergedBackend {
    base: Arc<WeightMap>,
    deltas: Arc<HashMap<String, Tensor>>,
}

impl MergedBackend {
    fn tensor(&self, name: &str, dtype: DType, device: &Device) -> candle_core::Result<Tensor> {
        let base = self
            .base
            .get(name)
            .ok_or_else(|| candle_core::Error::CannotFindTensor {
                path: name.to_string(),
            })?;
        let merged = match self.deltas.get(name) {
            // Summed in f32 so an f16 model loses no more than one rounding.
            Some(delta) => (base.to_dtype(DType::F32)? + delta.to_dtype(DType::F32)?)?,
            // A convolution's or linear layer's weight kept in f16 (the map holds f16 for f32
            // arithmetic only with `LoadOptions::keep_f16_weights`): the layer widens it per use.
            None if dtype == DType::F32
                && matches!(base.dtype(), DType::F16 | DType::BF16)
                && base.rank() >= 2
                && crate::kernels::precision::stored_weight_precision_allowed() =>
            {
                return base.to_device(device);
            }
            None => base.clone(),
        };
        merged.to_dtype(dtype)?.to_device(device)
    }
}

impl candle_nn::var_builder::SimpleBackend for MergedBackend {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let tensor = self.tensor(name, dtype, device)?;
        if tensor.shape() != &shape {
            return Err(candle_core::Error::UnexpectedShape {
                msg: format!("shape mismatch for {name}"),
                expected: shape,
                got: tensor.shape().clone(),
            }
            .bt());
        }
        Ok(tensor)
    }

    fn get_unchecked(
        &self,
        name: &str,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        self.tensor(name, dtype, device)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.base.get(name).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_are_added_and_shapes_checked() {
        let mut map = WeightMap::default();
        map.insert(
            "w".into(),
            Tensor::new(&[1.0f32, 2.0], &Device::Cpu).unwrap(),
        );
        let map = Arc::new(map);
        let mut deltas = HashMap::new();
        deltas.insert(
            "w".into(),
            Tensor::new(&[0.5f32, -1.0], &Device::Cpu).unwrap(),
        );
        let vb = map.var_builder(Arc::new(deltas), DType::F32, &Device::Cpu);
        let merged: Vec<f32> = vb.get(2, "w").unwrap().to_vec1().unwrap();
        assert_eq!(merged, vec![1.5, 1.0]);
        assert!(vb.get(3, "w").is_err());
        assert!(vb.get(2, "missing").is_err());
        let plain = map.var_builder(Arc::default(), DType::F32, &Device::Cpu);
        let base: Vec<f32> = plain.get(2, "w").unwrap().to_vec1().unwrap();
        assert_eq!(base, vec![1.0, 2.0]);
    }
}
