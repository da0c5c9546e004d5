//! The error type of the trainer.

use std::path::PathBuf;

/// Everything that can stop a training run, an evaluation or a checkpoint operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The run configuration is invalid; `path` is the offending key (`optimizer.lr`).
    #[error("config: {path}: {message}")]
    Config {
        /// Dotted key path (`.` for the whole document).
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A checkpoint or run folder is missing a part or holds an inconsistent one.
    #[error("checkpoint {}: {message}", path.display())]
    Checkpoint {
        /// The checkpoint folder.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The model failed (loading, forward pass, saving).
    #[error(transparent)]
    Model(#[from] redraft_model::Error),
    /// The tokenizer failed.
    #[error(transparent)]
    Tokenizer(#[from] redraft_tokenizer::Error),
    /// The verifier or a task generator failed.
    #[error(transparent)]
    Verifier(#[from] redraft_verifier::Error),
    /// A feedback provider could not be built.
    #[error(transparent)]
    Feedback(#[from] redraft_feedback_protocol::Error),
    /// A rollout failed.
    #[error(transparent)]
    Rollout(#[from] redraft_rollout_engine::Error),
    /// Credit assignment rejected its inputs.
    #[error(transparent)]
    Credit(#[from] redraft_credit_assignment::Error),
    /// An objective rejected its inputs.
    #[error(transparent)]
    Objective(#[from] redraft_objectives::Error),
    /// A tensor could not be read back to the host.
    #[error("reading a tensor back: {0}")]
    TensorRead(String),
}

impl Error {
    /// An [`Error::Config`] at `path`.
    pub fn config(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Config {
            path: path.into(),
            message: message.into(),
        }
    }

    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// The trainer's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
