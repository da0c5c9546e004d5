//! The crate's error type.

use std::path::PathBuf;

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while loading tokenizers, encoding, decoding, rendering chat
/// templates or appending to a [`Conversation`](crate::Conversation).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A token id is not in the tokenizer's vocabulary.
    #[error("token id {id} is out of vocabulary (vocab size {vocab_size})")]
    IdOutOfVocab {
        /// The offending id.
        id: u32,
        /// The tokenizer's vocabulary size (valid ids are below it).
        vocab_size: usize,
    },

    /// A file could not be read or written.
    #[error("cannot access {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A tokenizer file exists but its content is not valid.
    #[error("malformed {}: {message}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },

    /// No tokenizer file was found in a model directory.
    #[error("no tokenizer found in {}: looked for {}", dir.display(), looked_for.join(", "))]
    NotFound {
        /// The model directory.
        dir: PathBuf,
        /// The file names that were looked for, in order of preference.
        looked_for: Vec<String>,
    },

    /// A tokenizer configuration is inconsistent (duplicate special tokens, unknown bos, ...).
    #[error("invalid tokenizer configuration: {0}")]
    InvalidConfig(String),

    /// The `tokenizers` crate failed.
    #[error("tokenizers: {0}")]
    Tokenizers(#[source] Box<dyn std::error::Error + Send + Sync>),

    /// The tokenizer has no chat template.
    #[error("the tokenizer has no chat template")]
    NoChatTemplate,

    /// A chat template failed to compile or to render.
    #[error("chat template: {0:#}")]
    Template(#[source] minijinja::Error),

    /// A chat template called `raise_exception(message)`.
    #[error("chat template raised an exception: {0}")]
    TemplateException(String),

    /// Rendering a conversation with one more message (or with the generation prompt) did not
    /// extend the rendering without it, so the new tokens cannot be appended without changing
    /// existing ones.
    #[error("chat template is not append-only: {context}")]
    TemplateNotAppendOnly {
        /// What was being appended.
        context: String,
    },

    /// An operation on a [`Conversation`](crate::Conversation) is not valid in its current state.
    #[error("conversation: {0}")]
    Conversation(String),
    /// A GGUF file, or its tokenizer metadata, could not be read.
    #[error(transparent)]
    Gguf(#[from] redraft_gguf::Error),
}
