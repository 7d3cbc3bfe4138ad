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
/// Model weights files are at most a few GB each (SDXL's UNet in f32: 10 GB).
pub const MAX_WEIGHTS_FILE_BYTES: u64 = 64 << 30;
/// No network's weight has more dimensions than this.
const MAX_RANK: usize = 8;

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
    /// The header's type name, for messages.
    dtype_name: String,
    /// `None` for types no network uses (checkpoints carry e.g. an I32 `num_updates`): their
    /// bytes are checked, and loading one is an error.
    dtype: Option<DType>,
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
    metadata: HashMap<String, String>,
}

impl SafetensorsFile {
    /// Opens `path` and checks its header: every tensor's type is one models use, its shape
    /// has a size that fits in memory arithmetic, and its bytes — exactly type size × element
    /// count — lie inside the file after the header. Nothing is read beyond the header, and
    /// no number from the file sizes an allocation before it has been checked against the
    /// file's length.
    pub fn open(path: &Path) -> candle_core::Result<Self> {
        Self::open_at_most(path, MAX_WEIGHTS_FILE_BYTES)
    }

    /// [`SafetensorsFile::open`] for a kind of file that is never larger than `max_bytes`
    /// (a LoRA, an embedding).
    pub fn open_at_most(path: &Path, max_bytes: u64) -> candle_core::Result<Self> {
        let mut file = crate::files::open_regular(path, max_bytes).map_err(|e| error(path, e))?;
        let file_len = file.metadata().map_err(|e| error(path, e))?.len();
        let mut length = [0u8; 8];
        file.read_exact(&mut length)
            .map_err(|_| error(path, "too short for a safetensors file"))?;
        let header_len = u64::from_le_bytes(length);
        if header_len > MAX_HEADER_BYTES || header_len > file_len - 8 {
            return Err(error(path, "not a safetensors file (bad header length)"));
        }
        let mut header = vec![0u8; header_len as usize];
        file.read_exact(&mut header).map_err(|e| error(path, e))?;
        let raw: HashMap<String, serde_json::Value> = serde_json::from_slice(&header)
            .map_err(|e| error(path, format!("unreadable safetensors header: {e}")))?;
        let data_start = 8 + header_len;
        let data_len = file_len - data_start;
        let mut entries = HashMap::with_capacity(raw.len());
        let mut metadata = HashMap::new();
        for (name, value) in raw {
            if name == "__metadata__" {
                if let serde_json::Value::Object(map) = value {
                    metadata = map
                        .into_iter()
                        .filter_map(|(k, v)| v.as_str().map(|v| (k, v.to_string())))
                        .collect();
                }
                continue;
            }
            let entry: HeaderEntry = serde_json::from_value(value)
                .map_err(|e| error(path, format!("tensor {name}: {e}")))?;
            let entry = Entry::checked(entry, data_start, data_len)
                .map_err(|why| error(path, format!("tensor {name}: {why}")))?;
            entries.insert(name, entry);
        }
        let mut names: Vec<String> = entries.keys().cloned().collect();
        names.sort_by_key(|name| entries[name].start);
        Ok(Self {
            path: path.to_path_buf(),
            file: Mutex::new(file),
            names,
            entries,
            metadata,
        })
    }

    /// The header's `__metadata__` strings.
    pub fn metadata(&self) -> &HashMap<String, String> {
        &self.metadata
    }

    /// Every tensor of a type networks use, in the file's dtypes (counters and the like of
    /// other types are left out).
    pub fn load_all(&self, device: &Device) -> candle_core::Result<HashMap<String, Tensor>> {
        self.names()
            .filter(|name| self.entries[*name].dtype.is_some())
            .map(|name| Ok((name.to_string(), self.load(name, device)?)))
            .collect()
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
        let Some(dtype) = entry.dtype else {
            return Err(error(
                &self.path,
                format!(
                    "tensor {name} has type {}, which models never use",
                    entry.dtype_name
                ),
            ));
        };
        let bytes_wanted = (entry.end - entry.start) as usize;
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

impl Entry {
    /// The header's entry, checked: a known type, a rank and element count that fit, and
    /// exactly type size × element count bytes inside the data section.
    fn checked(entry: HeaderEntry, data_start: u64, data_len: u64) -> Result<Self, String> {
        let dtype = match entry.dtype.as_str() {
            "F32" => Some(DType::F32),
            "F16" => Some(DType::F16),
            "BF16" => Some(DType::BF16),
            "F64" => Some(DType::F64),
            "I64" => Some(DType::I64),
            "U32" => Some(DType::U32),
            "U8" => Some(DType::U8),
            _ => None,
        };
        // Every type of the safetensors format, for the size check.
        let element_bytes: u64 = match entry.dtype.as_str() {
            "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" | "F8_E8M0" => 1,
            "U16" | "I16" | "F16" | "BF16" => 2,
            "U32" | "I32" | "F32" => 4,
            "U64" | "I64" | "F64" => 8,
            other => return Err(format!("type {other} is not a safetensors type")),
        };
        if entry.shape.len() > MAX_RANK {
            return Err(format!("{} dimensions", entry.shape.len()));
        }
        let bytes = entry
            .shape
            .iter()
            .try_fold(element_bytes, |acc, &dim| acc.checked_mul(dim as u64))
            .ok_or("its shape is impossibly large")?;
        let (start, end) = entry.data_offsets;
        if start > end || end > data_len {
            return Err("its data lies outside the file (truncated download?)".into());
        }
        if end - start != bytes {
            return Err(format!(
                "its data ({} bytes) does not match its shape {:?} of {}",
                end - start,
                entry.shape,
                entry.dtype
            ));
        }
        Ok(Self {
            dtype_name: entry.dtype,
            dtype,
            shape: entry.shape,
            start: data_start + start,
            end: data_start + end,
        })
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

    /// A file with `header` as its JSON header, followed by `data_len` zero bytes.
    fn raw_file(name: &str, header: &str, data_len: usize) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("latent-studio-st-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        bytes.resize(bytes.len() + data_len, 0);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn headers_that_lie_are_refused_without_panics() {
        let cases = [
            (
                "offsets near u64::MAX",
                r#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[18446744073709551612,18446744073709551615]}}"#,
                "outside the file",
            ),
            (
                "a shape whose product overflows",
                r#"{"w":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,4]}}"#,
                "impossibly large",
            ),
            (
                "bytes that do not match the shape",
                r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#,
                "does not match its shape",
            ),
            (
                "an unknown type",
                r#"{"w":{"dtype":"Q4","shape":[1],"data_offsets":[0,4]}}"#,
                "not a safetensors type",
            ),
            (
                "too many dimensions",
                r#"{"w":{"dtype":"U8","shape":[1,1,1,1,1,1,1,1,1],"data_offsets":[0,1]}}"#,
                "dimensions",
            ),
        ];
        for (what, header, expected) in cases {
            let path = raw_file("lie.safetensors", header, 4);
            let err = SafetensorsFile::open(&path)
                .map(|_| ())
                .expect_err(what)
                .to_string();
            assert!(err.contains(expected), "{what}: {err}");
        }
        // A header length past the end of the file, and one near u64::MAX.
        let path = raw_file("short.safetensors", "{}", 0);
        let mut bytes = std::fs::read(&path).unwrap();
        for length in [1000u64, u64::MAX - 4] {
            bytes[..8].copy_from_slice(&length.to_le_bytes());
            std::fs::write(&path, &bytes).unwrap();
            let err = SafetensorsFile::open(&path).map(|_| ()).unwrap_err();
            assert!(err.to_string().contains("bad header length"), "{err}");
        }
        let good = raw_file(
            "good.safetensors",
            r#"{"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
            4,
        );
        let file = SafetensorsFile::open(&good).unwrap();
        assert_eq!(file.metadata()["format"], "pt");
        assert_eq!(file.load_all(&Device::Cpu).unwrap().len(), 1);
    }
}
