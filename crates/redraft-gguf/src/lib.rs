//! redraft-gguf: read GGUF files, the format llama.cpp writes models in.
//!
//! [`GgufFile::open`] reads the header: the metadata (architecture, hyper-parameters, the
//! tokenizer's vocabulary and chat template) and the directory of tensors. Tensors are read one
//! at a time on demand and dequantized to `f32` ([`GgufFile::tensor_f32`]), so a file is never
//! held in memory whole. Tensor types F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q5_K and Q6_K are
//! supported; any other is refused by name. A file that is truncated or inconsistent is refused
//! with an error naming what is wrong, never a panic.
//!
//! This crate knows the container only. Mapping llama.cpp's tensor names to transformers' and
//! its metadata to a model config is redraft-model's job; building a tokenizer from the
//! vocabulary is redraft-tokenizer's.
//!
//! ```no_run
//! # fn main() -> Result<(), redraft_gguf::Error> {
//! let file = redraft_gguf::GgufFile::open("model.gguf".as_ref())?;
//! let arch = file.metadata().str("general.architecture")?;
//! let embedding = file.tensor_f32("token_embd.weight")?;
//! # let _ = (arch, embedding); Ok(()) }
//! ```
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod error;
mod file;
mod metadata;
mod quant;

pub use error::{Error, Result};
pub use file::{GgufFile, TensorInfo};
pub use metadata::{Metadata, Value};
pub use quant::{TensorType, dequantize};
