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
    /// Rendering or encoding a conversation failed.
    #[error(transparent)]
    Tokenizer(#[from] redraft_tokenizer::Error),
    /// A feedback template could not be rendered (a provider's own failures are recorded on the
    /// episode, not raised).
    #[error(transparent)]
    Feedback(#[from] redraft_feedback_protocol::Error),
    /// The device's results (sampled tokens and log-probs) could not be read back.
    #[error("reading sampled tokens back from the device: {0}")]
    ReadBack(String),
    /// No rollout server can answer: each is named with why it is out of use.
    #[error("no rollout server left: {0}")]
    NoServer(String),
    /// A rollout server refused a request as malformed (a 4xx other than 404/408/429): every
    /// server would.
    #[error("rollout server {server} refused a request: {reason}")]
    ServerRefused {
        /// The server's base URL.
        server: String,
        /// Its answer.
        reason: String,
    },
}

/// The result type of redraft-rollout-engine.
pub type Result<T> = std::result::Result<T, Error>;
