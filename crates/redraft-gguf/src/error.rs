//! Errors of GGUF reading.

use std::path::PathBuf;

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong reading a GGUF file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a GGUF file this reader understands, or is inconsistent.
    #[error("{path}: not a valid GGUF file: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong, and where.
        reason: String,
    },
    /// A tensor is stored in a type this reader cannot dequantize.
    #[error(
        "tensor `{tensor}` has GGUF type {type_name}, which is not supported (supported: {supported})"
    )]
    UnsupportedType {
        /// The tensor.
        tensor: String,
        /// The type's name (or id, when unknown).
        type_name: String,
        /// The supported types.
        supported: &'static str,
    },
    /// A metadata key is missing.
    #[error("GGUF metadata has no `{key}`")]
    MissingKey {
        /// The key.
        key: String,
    },
    /// A metadata value has another type than expected.
    #[error("GGUF metadata `{key}` is {found}, expected {expected}")]
    WrongType {
        /// The key.
        key: String,
        /// What was expected.
        expected: &'static str,
        /// What was found.
        found: &'static str,
    },
    /// No tensor of that name.
    #[error("the GGUF file has no tensor `{0}`")]
    MissingTensor(String),
}
