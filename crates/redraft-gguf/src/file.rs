//! The GGUF container (versions 2 and 3): header, metadata, tensor directory, aligned data.
//!
//! Every count and length read from the file is checked against the bytes that remain before
//! anything is allocated for it, so a hostile or truncated header is an error, not an abort.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::metadata::{Metadata, Value};
use crate::quant::{SUPPORTED, TensorType, dequantize};

/// Most dimensions a tensor may have (GGML's limit).
const MAX_DIMS: u32 = 4;
/// Deepest nesting of metadata arrays accepted.
const MAX_ARRAY_DEPTH: usize = 4;

/// One entry of the tensor directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// llama.cpp's name (`blk.0.attn_q.weight`).
    pub name: String,
    /// The shape outermost first (PyTorch's order: GGUF stores it innermost first), so a
    /// weight of `[out, in]` in transformers reads `[out, in]` here too.
    pub shape: Vec<usize>,
    /// GGML type id (see [`TensorType::from_id`]).
    pub type_id: u32,
    /// Offset of the data from the file's start.
    pub offset: u64,
    /// Size of the data in bytes.
    pub bytes: u64,
}

impl TensorInfo {
    /// The number of elements.
    pub fn elements(&self) -> usize {
        self.shape.iter().product()
    }

    /// GGML's name of the tensor's type.
    pub fn type_name(&self) -> String {
        TensorType::name_of_id(self.type_id)
    }
}

/// An open GGUF file: its metadata and tensor directory; tensors are read on demand.
#[derive(Debug)]
pub struct GgufFile {
    path: PathBuf,
    version: u32,
    metadata: Metadata,
    tensors: Vec<TensorInfo>,
    by_name: HashMap<String, usize>,
}

/// A reader that knows how many bytes remain, so lengths can be checked before allocating.
struct Cursor<R> {
    inner: R,
    remaining: u64,
    path: PathBuf,
}

impl<R: Read> Cursor<R> {
    fn malformed(&self, reason: impl Into<String>) -> Error {
        Error::Malformed {
            path: self.path.clone(),
            reason: reason.into(),
        }
    }

    fn bytes(&mut self, n: u64, what: &str) -> Result<Vec<u8>> {
        if n > self.remaining {
            return Err(self.malformed(format!(
                "{what} needs {n} bytes but only {} remain (truncated file?)",
                self.remaining
            )));
        }
        let mut buffer = vec![0u8; n as usize];
        self.inner
            .read_exact(&mut buffer)
            .map_err(|source| Error::Io {
                path: self.path.clone(),
                source,
            })?;
        self.remaining -= n;
        Ok(buffer)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let bytes = self.bytes(N as u64, what)?;
        Ok(bytes.try_into().unwrap_or([0; N]))
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let len = self.u64(what)?;
        let bytes = self.bytes(len, what)?;
        Ok(String::from_utf8(bytes)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
    }

    fn value(&mut self, type_id: u32, key: &str, depth: usize) -> Result<Value> {
        Ok(match type_id {
            0 => Value::Uint(u64::from(self.array::<1>(key)?[0])),
            1 => Value::Int(i64::from(self.array::<1>(key)?[0] as i8)),
            2 => Value::Uint(u64::from(u16::from_le_bytes(self.array(key)?))),
            3 => Value::Int(i64::from(i16::from_le_bytes(self.array(key)?))),
            4 => Value::Uint(u64::from(self.u32(key)?)),
            5 => Value::Int(i64::from(i32::from_le_bytes(self.array(key)?))),
            6 => Value::Float(f64::from(f32::from_le_bytes(self.array(key)?))),
            7 => match self.array::<1>(key)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                other => {
                    return Err(self.malformed(format!("`{key}`: boolean byte {other}")));
                }
            },
            8 => Value::Str(self.string(key)?),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(self.malformed(format!("`{key}`: arrays nested too deep")));
                }
                let item_type = self.u32(key)?;
                let len = self.u64(key)?;
                // Every item takes at least one byte: a longer array cannot fit.
                if len > self.remaining {
                    return Err(self.malformed(format!(
                        "`{key}`: array of {len} items longer than the file"
                    )));
                }
                let mut items = Vec::with_capacity(len.min(1 << 20) as usize);
                for _ in 0..len {
                    items.push(self.value(item_type, key, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::Uint(self.u64(key)?),
            11 => Value::Int(i64::from_le_bytes(self.array(key)?)),
            12 => Value::Float(f64::from_le_bytes(self.array(key)?)),
            other => return Err(self.malformed(format!("`{key}`: unknown value type {other}"))),
        })
    }
}

impl GgufFile {
    /// Opens `path` and reads its header, metadata and tensor directory.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be read; [`Error::Malformed`] when it is not GGUF
    /// version 2 or 3, is truncated, or its directory is inconsistent (tensors out of the file,
    /// overlapping sizes, a shape that is not whole blocks of its type, duplicate names).
    pub fn open(path: &Path) -> Result<Self> {
        let io = |source| Error::Io {
            path: path.into(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        let mut r = Cursor {
            inner: BufReader::new(file),
            remaining: size,
            path: path.into(),
        };
        if r.array::<4>("the magic number")? != *b"GGUF" {
            return Err(r.malformed("it does not start with `GGUF`"));
        }
        let version = r.u32("the version")?;
        if !(2..=3).contains(&version) {
            return Err(r.malformed(format!(
                "version {version} (this reader supports versions 2 and 3)"
            )));
        }
        let tensor_count = r.u64("the tensor count")?;
        let kv_count = r.u64("the metadata count")?;
        // Each entry takes well over 8 bytes: larger counts cannot fit in the file.
        if tensor_count > size / 8 || kv_count > size / 8 {
            return Err(r.malformed(format!(
                "{tensor_count} tensors and {kv_count} metadata entries cannot fit in {size} bytes"
            )));
        }
        let mut values = BTreeMap::new();
        for _ in 0..kv_count {
            let key = r.string("a metadata key")?;
            let type_id = r.u32(&key)?;
            let value = r.value(type_id, &key, 0)?;
            if values.insert(key.clone(), value).is_some() {
                return Err(r.malformed(format!("metadata key `{key}` appears twice")));
            }
        }
        let metadata = Metadata { values };
        let mut raw = Vec::with_capacity(tensor_count as usize);
        for _ in 0..tensor_count {
            let name = r.string("a tensor name")?;
            let dims = r.u32(&name)?;
            if dims == 0 || dims > MAX_DIMS {
                return Err(r.malformed(format!("tensor `{name}` has {dims} dimensions")));
            }
            let mut shape = Vec::with_capacity(dims as usize);
            for _ in 0..dims {
                shape.push(r.u64(&name)?);
            }
            shape.reverse();
            let type_id = r.u32(&name)?;
            let offset = r.u64(&name)?;
            raw.push((name, shape, type_id, offset));
        }
        let alignment = match metadata.get("general.alignment") {
            None => 32,
            Some(_) => metadata.uint("general.alignment")?,
        };
        if alignment == 0 || !alignment.is_power_of_two() {
            return Err(r.malformed(format!(
                "general.alignment {alignment} is not a power of two"
            )));
        }
        let header_end = size - r.remaining;
        let data_start = header_end.div_ceil(alignment) * alignment;
        let mut tensors = Vec::with_capacity(raw.len());
        let mut by_name = HashMap::new();
        for (name, shape, type_id, offset) in raw {
            let elements = shape
                .iter()
                .try_fold(1u64, |n, &d| n.checked_mul(d))
                .filter(|&n| usize::try_from(n).is_ok());
            let Some(elements) = elements else {
                return Err(r.malformed(format!("tensor `{name}`: shape {shape:?} overflows")));
            };
            // Unsupported types are refused when read, by name; their size is unknown here.
            let bytes = match TensorType::from_id(type_id) {
                Some(ty) => ty.bytes_for(elements).ok_or_else(|| {
                    r.malformed(format!(
                        "tensor `{name}`: {elements} values are not whole {} blocks",
                        ty.name()
                    ))
                })?,
                None => 0,
            };
            let start = data_start.checked_add(offset);
            let end = start.and_then(|s| s.checked_add(bytes));
            match (start, end) {
                (Some(start), Some(end)) if end <= size && offset.is_multiple_of(alignment) => {
                    if by_name.insert(name.clone(), tensors.len()).is_some() {
                        return Err(r.malformed(format!("tensor `{name}` appears twice")));
                    }
                    tensors.push(TensorInfo {
                        name,
                        shape: shape.iter().map(|&d| d as usize).collect(),
                        type_id,
                        offset: start,
                        bytes,
                    });
                }
                _ => {
                    return Err(r.malformed(format!(
                        "tensor `{name}` (offset {offset}, {bytes} bytes) lies outside the file \
                         of {size} bytes or is misaligned (truncated file?)"
                    )));
                }
            }
        }
        Ok(Self {
            path: path.into(),
            version,
            metadata,
            tensors,
            by_name,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The metadata.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The tensor directory, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The directory entry of tensor `name`.
    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.by_name.get(name).map(|&i| &self.tensors[i])
    }

    /// Reads tensor `name` and dequantizes it to `f32`, row-major in [`TensorInfo::shape`].
    ///
    /// # Errors
    /// [`Error::MissingTensor`], [`Error::UnsupportedType`] (naming the tensor and its type),
    /// or [`Error::Io`].
    pub fn tensor_f32(&self, name: &str) -> Result<Vec<f32>> {
        let info = self
            .tensor_info(name)
            .ok_or_else(|| Error::MissingTensor(name.into()))?;
        let ty = TensorType::from_id(info.type_id).ok_or_else(|| Error::UnsupportedType {
            tensor: name.into(),
            type_name: info.type_name(),
            supported: SUPPORTED,
        })?;
        let io = |source| Error::Io {
            path: self.path.clone(),
            source,
        };
        let mut file = File::open(&self.path).map_err(io)?;
        file.seek(SeekFrom::Start(info.offset)).map_err(io)?;
        let mut bytes = vec![0u8; info.bytes as usize];
        file.read_exact(&mut bytes).map_err(io)?;
        let mut out = Vec::with_capacity(info.elements());
        dequantize(ty, &bytes, &mut out);
        Ok(out)
    }
}
