//! Reading `.safetensors` files tensor by tensor with plain reads.
//!
//! Every tensor is copied into memory of its own anyway (candle's CPU tensors own their data,
//! and f16 files are upcast), so mapping the file bought nothing but a higher peak: the
//! mapped pages of everything read so far count as the process's memory until the mapping
//! goes, which made loading SD 1.5 peak at 7.0 GB for 4.0 GB of weights. Reads go through the
//! page cache all the same, so a second load is as fast.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use candle_core::{DType, Device, Tensor};
use serde::Deserialize;

/// Headers larger than this are not safetensors files (real ones are well under 1 MB).
const MAX_HEADER_BYTES: u64 = 100 << 20;

fn error(path: &Path, message: impl std::fmt::Display) -> candle_core::Error {
    candle_core::Error::Msg(format!("{}: {message}", path.display()))
}

#[derive(Debug, Deserialize)]
struct HeaderEntry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: (u64, u64),
}

#[derive(Debug)]
struct Entry {
    dtype: String,
    shape: Vec<usize>,
    start: u64,
    end: u64,
}

#[derive(Debug)]
pub struct SafetensorsFile {
    path: PathBuf,
    file: Mutex<File>,
    /// In the order of their data in the file, so that reading them all reads forward.
    names: Vec<String>,
    entries: HashMap<String, Entry>,
}

impl SafetensorsFile {
    pub fn open(path: &Path) -> candle_core::Result<Self> {
        let mut file = File::open(path).map_err(|e| error(path, e))?;
        let file_len = file.metadata().map_err(|e| error(path, e))?.len();
        let mut length = [0u8; 8];
        file.read_exact(&mut length)
            .map_err(|_| error(path, "too short for a safetensors file"))?;
        let header_len = u64::from_le_bytes(length);
        if header_len > MAX_HEADER_BYTES || 8 + header_len > file_len {
            return Err(error(path, "not a safetensors file (bad header length)"));
        }
        let mut header = vec![0u8; header_len as usize];
        file.read_exact(&mut header).map_err(|e| error(path, e))?;
        let raw: HashMap<String, serde_json::Value> = serde_json::from_slice(&header)
            .map_err(|e| error(path, format!("unreadable safetensors header: {e}")))?;
        let data_start = 8 + header_len;
        let mut entries = HashMap::with_capacity(raw.len());
        for (name, value) in raw {
            if name == "__metadata__" {
                continue;
            }
            let entry: HeaderEntry = serde_json::from_value(value)
                .map_err(|e| error(path, format!("tensor {name}: {e}")))?;
            let (start, end) = entry.data_offsets;
            if start > end || data_start + end > file_len {
                return Err(error(
                    path,
                    format!("tensor {name} lies outside the file (truncated download?)"),
                ));
            }
            entries.insert(
                name,
                Entry {
                    dtype: entry.dtype,
                    shape: entry.shape,
                    start: data_start + start,
                    end: data_start + end,
                },
            );
        }
        let mut names: Vec<String> = entries.keys().cloned().collect();
        names.sort_by_key(|name| entries[name].start);
        Ok(Self {
            path: path.to_path_buf(),
            file: Mutex::new(file),
            names,
            entries,
        })
    }

    /// Tensor names in file order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(String::as_str)
    }

    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.entries.get(name).map(|entry| entry.shape.as_slice())
    }

    /// Reads one tensor, in the file's dtype.
    pub fn load(&self, name: &str, device: &Device) -> candle_core::Result<Tensor> {
        let entry = self
            .entries
            .get(name)
            .ok_or_else(|| error(&self.path, format!("no tensor {name}")))?;
        let dtype = match entry.dtype.as_str() {
            "F32" => DType::F32,
            "F16" => DType::F16,
            "BF16" => DType::BF16,
            "F64" => DType::F64,
            "I64" => DType::I64,
            "U32" => DType::U32,
            "U8" => DType::U8,
            other => {
                return Err(error(
                    &self.path,
                    format!("tensor {name} has type {other}, which models never use"),
                ))
            }
        };
        let bytes_wanted = entry.shape.iter().product::<usize>() * dtype.size_in_bytes();
        if (entry.end - entry.start) as usize != bytes_wanted {
            return Err(error(
                &self.path,
                format!("tensor {name}: its data does not match its shape"),
            ));
        }
        let shape = entry.shape.as_slice();
        let read = |bytes: &mut [u8]| -> candle_core::Result<()> {
            let mut file = self
                .file
                .lock()
                .map_err(|_| error(&self.path, "an earlier read panicked"))?;
            file.seek(SeekFrom::Start(entry.start))
                .and_then(|_| file.read_exact(bytes))
                .map_err(|e| error(&self.path, format!("reading {name}: {e}")))
        };
        // The common types are read straight into the tensor's own buffer (no second copy).
        match dtype {
            DType::F32 => read_typed::<f32>(shape, read, device),
            DType::F16 => read_typed::<half::f16>(shape, read, device),
            DType::BF16 => read_typed::<half::bf16>(shape, read, device),
            _ => {
                let mut bytes = vec![0u8; bytes_wanted];
                read(&mut bytes)?;
                Tensor::from_raw_buffer(&bytes, dtype, shape, device)
            }
        }
    }
}

/// Plain-old-data element types every bit pattern of which is a valid value.
trait PlainElement: candle_core::WithDType + Default {}
impl PlainElement for f32 {}
impl PlainElement for half::f16 {}
impl PlainElement for half::bf16 {}

fn read_typed<T: PlainElement>(
    shape: &[usize],
    read: impl FnOnce(&mut [u8]) -> candle_core::Result<()>,
    device: &Device,
) -> candle_core::Result<Tensor> {
    let mut values = vec![T::default(); shape.iter().product()];
    // SAFETY: `T` is f32, f16 or bf16: no padding, and any bytes form a valid value; the byte
    // view covers exactly the vector's initialised elements and ends before `values` is used.
    let bytes = unsafe {
        std::slice::from_raw_parts_mut(
            values.as_mut_ptr().cast::<u8>(),
            std::mem::size_of_val(values.as_slice()),
        )
    };
    read(bytes)?;
    Tensor::from_vec(values, shape, device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_candle_writes_and_refuses_truncated_files() {
        let dir = std::env::temp_dir().join(format!("latent-studio-st-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.safetensors");
        let device = Device::Cpu;
        let a = Tensor::arange(0f32, 12.0, &device)
            .unwrap()
            .reshape((3, 4))
            .unwrap();
        let b = Tensor::new(&[1.5f32, -2.0], &device)
            .unwrap()
            .to_dtype(DType::F16)
            .unwrap();
        candle_core::safetensors::save(
            &HashMap::from([("a".to_string(), a.clone()), ("b".to_string(), b.clone())]),
            &path,
        )
        .unwrap();
        let file = SafetensorsFile::open(&path).unwrap();
        let mut names: Vec<_> = file.names().collect();
        names.sort();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(file.shape("a"), Some(&[3, 4][..]));
        let read_a = file.load("a", &device).unwrap();
        assert_eq!(
            read_a.to_vec2::<f32>().unwrap(),
            a.to_vec2::<f32>().unwrap()
        );
        let read_b = file.load("b", &device).unwrap();
        assert_eq!(read_b.dtype(), DType::F16);
        assert_eq!(
            read_b
                .to_dtype(DType::F32)
                .unwrap()
                .to_vec1::<f32>()
                .unwrap(),
            [1.5, -2.0]
        );
        assert!(file.load("c", &device).is_err());

        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 4]).unwrap();
        let err = SafetensorsFile::open(&path).unwrap_err().to_string();
        assert!(err.contains("outside the file"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
