//! The LoRA key mapping as the `lora_keys` fuzz target drives it. A child module of
//! `lora`, so that it reaches the private mapping functions without making them public.

use candle_core::{DType, Device, Tensor};

use super::{name_stem, split_down_name, target_of, KeyStyle, ModuleIndex};
use crate::models::weights::WeightMap;

/// The weight names of one component, indexed the way `deltas` looks LoRA keys up.
pub(crate) struct KeyIndex(ModuleIndex);

impl KeyIndex {
    pub(crate) fn new<'a>(weight_names: impl IntoIterator<Item = &'a str>) -> Self {
        let mut weights = WeightMap::default();
        // Only the names matter; every entry shares one scalar.
        let zero = Tensor::zeros((), DType::F32, &Device::Cpu).expect("a CPU scalar");
        for name in weight_names {
            weights.insert(name.to_string(), zero.clone());
        }
        Self(ModuleIndex::new(&weights))
    }
}

/// What `LoraFile::load` and `deltas` make of one tensor name: taken as a "down" tensor
/// (its up name, stem, target and the weight it changes) and as a bare module key in each
/// style. Returns how many lookups found a weight.
pub(crate) fn map_name(index: &KeyIndex, name: &str, layers_per_block: usize) -> usize {
    let mut found = 0;
    let mut resolve =
        |key: &str| found += usize::from(index.0.resolve(key, layers_per_block).is_some());
    let _ = name_stem(name);
    if let Some((key, _up_name, style)) = split_down_name(name) {
        if let Some((_, key)) = target_of(key, style) {
            resolve(&key);
        }
    }
    for style in [KeyStyle::Kohya, KeyStyle::Peft, KeyStyle::DiffusersLegacy] {
        if let Some((_, key)) = target_of(name, style) {
            resolve(&key);
        }
    }
    resolve(name);
    found
}
