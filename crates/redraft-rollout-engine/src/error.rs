//! The error type of redraft-rollout-engine.

/// What can go wrong while sampling.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The model rejected the input (token outside the vocabulary, context overflow, ...).
    #[error(transparent)]
    Model(#[from] redraft_model::Error),
    /// Sampling parameters out of range.
    #[error("invalid sampling parameter `{name}`: {reason}")]
    InvalidParam {
        /// The parameter.
        name: &'static str,
        /// Why it is invalid.
        reason: String,
    },
}

/// The result type of redraft-rollout-engine.
pub type Result<T> = std::result::Result<T, Error>;
