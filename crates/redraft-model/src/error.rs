//! The error type of redraft-model.

use std::path::PathBuf;

/// Everything that can go wrong while building, loading, saving or running a model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A JSON file (config.json, an index) is not valid JSON or has a field of the wrong type.
    #[error("{path}: invalid JSON: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's error, with line and column.
        source: serde_json::Error,
    },
    /// The configuration asks for something this crate does not implement.
    #[error("unsupported model configuration: {0}")]
    Unsupported(String),
    /// The configuration is inconsistent (for example heads that do not divide the width).
    #[error("invalid model configuration: `{field}`: {reason}")]
    InvalidConfig {
        /// The config.json key at fault.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A safetensors file is malformed.
    #[error("{path}: invalid safetensors file: {message}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// What the reader reported.
        message: String,
    },
    /// A tensor the model needs is not in the checkpoint.
    #[error("tensor `{name}` is missing from the checkpoint in {dir}")]
    MissingTensor {
        /// The transformers name of the tensor.
        name: String,
        /// The model directory.
        dir: PathBuf,
    },
    /// A tensor in the checkpoint has the wrong shape.
    #[error("tensor `{name}` has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        /// The transformers name of the tensor.
        name: String,
        /// The shape the configuration implies.
        expected: Vec<usize>,
        /// The shape in the file.
        found: Vec<usize>,
    },
    /// A tensor in the checkpoint has a dtype that cannot be converted to floats.
    #[error("tensor `{name}` has dtype {dtype}; only F32, BF16 and F16 are supported")]
    UnsupportedDType {
        /// The transformers name of the tensor.
        name: String,
        /// The dtype in the file.
        dtype: String,
    },
    /// A token id is outside the model's vocabulary.
    #[error("token id {id} at position {position} is outside the vocabulary (size {vocab_size})")]
    TokenOutOfVocab {
        /// The offending id.
        id: u32,
        /// Its position in the input sequence.
        position: usize,
        /// The model's vocabulary size.
        vocab_size: usize,
    },
    /// A sequence does not fit in the model's context.
    #[error("sequence of {len} tokens exceeds the context of {max} positions")]
    ContextOverflow {
        /// The length asked for.
        len: usize,
        /// The model's `max_position_embeddings`.
        max: usize,
    },
    /// The estimated memory of a model or a run exceeds what the machine has free, or a limit
    /// given with `--max-memory` (see [`MemoryEstimate`](crate::MemoryEstimate)).
    #[error("{what} needs an estimated {estimate}, more than the {limit}")]
    MemoryLimit {
        /// What was sized ("the model", "the run").
        what: String,
        /// The estimate with its parts.
        estimate: String,
        /// The limit and where it comes from.
        limit: String,
    },
    /// Inputs whose shapes do not fit together (for example rows of different lengths).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The device asked for is unknown or not compiled into this build.
    #[error("device `{spec}`: {reason}")]
    Device {
        /// The device string as given.
        spec: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// A LoRA setting (a run's `[lora]` key or an `adapter_config.json` key) is invalid or
    /// does not fit the model.
    #[error("{origin}: invalid LoRA setting `{key}`: {reason}")]
    Lora {
        /// Where the setting was read.
        origin: String,
        /// The key at fault, as that source spells it.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A tensor of a PEFT adapter does not fit the model (missing, wrong shape, or unknown).
    #[error("{path}: adapter tensor `{name}` {reason}")]
    AdapterTensor {
        /// The adapter's safetensors file.
        path: PathBuf,
        /// PEFT's name of the tensor.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A GGUF file could not be read.
    #[error(transparent)]
    Gguf(#[from] redraft_gguf::Error),
}

/// The result type of redraft-model.
pub type Result<T> = std::result::Result<T, Error>;
