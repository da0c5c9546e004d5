//! The crate's error type: [`Error`], and [`ErrorKind`] for counting failures.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Everything that can go wrong while producing feedback.
///
/// A wrong answer is never an error (it is a [`redraft_verifier::Verdict`]), and neither is an
/// invalid self-reflection (it is a [`crate::ReflectionOutcome::Invalid`]). Errors are per
/// request: a batched call returns one `Result` per request, so a trainer can count the failures
/// ([`Error::kind`]) and skip those samples.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The server answered with a non-success HTTP status (429 included).
    #[error("HTTP status {status}: {message}")]
    HttpStatus {
        /// The status code.
        status: u16,
        /// The server's error message (`error.message` of an OpenAI error body, else the body).
        message: String,
    },
    /// The request did not complete within its timeout.
    #[error("request timed out after {0:?}")]
    Timeout(Duration),
    /// The time budget for all of a client's requests ran out (see
    /// [`crate::OpenAiConfig::budget_ms`]): the request was abandoned in flight or never sent.
    #[error("the feedback time budget of {0:?} ran out before an answer")]
    BudgetExhausted(Duration),
    /// The connection could not be made or broke (refused, reset, DNS, TLS).
    #[error("connection failed: {0}")]
    Connection(String),
    /// The server answered 2xx but the body is not a chat completion.
    #[error("malformed response: {0}")]
    MalformedResponse(String),
    /// The environment variable that should hold the API key is not set.
    #[error("the API key environment variable {0} is not set")]
    MissingApiKey(String),
    /// A prompt template failed to parse or render.
    #[error("template {name}: {message}")]
    Template {
        /// The template's name.
        name: String,
        /// What went wrong.
        message: String,
    },
    /// A configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The model produced no usable text (for example an empty critique).
    #[error("empty output: {0}")]
    EmptyOutput(String),
    /// A [`crate::ChatModel`] implementation failed for another reason.
    #[error("model error: {0}")]
    Model(String),
}

/// The kind of an [`Error`], for statistics (`failures` in [`crate::ProviderStats`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// HTTP 429.
    RateLimited,
    /// HTTP 5xx.
    ServerError,
    /// Any other non-success HTTP status.
    HttpStatus,
    /// [`Error::Timeout`].
    Timeout,
    /// [`Error::BudgetExhausted`].
    BudgetExhausted,
    /// [`Error::Connection`].
    Connection,
    /// [`Error::MalformedResponse`].
    MalformedResponse,
    /// [`Error::MissingApiKey`].
    MissingApiKey,
    /// [`Error::Template`].
    Template,
    /// [`Error::Config`].
    Config,
    /// [`Error::EmptyOutput`].
    EmptyOutput,
    /// [`Error::Model`].
    Model,
}

impl Error {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::HttpStatus { status: 429, .. } => ErrorKind::RateLimited,
            Error::HttpStatus { status, .. } if *status >= 500 => ErrorKind::ServerError,
            Error::HttpStatus { .. } => ErrorKind::HttpStatus,
            Error::Timeout(_) => ErrorKind::Timeout,
            Error::BudgetExhausted(_) => ErrorKind::BudgetExhausted,
            Error::Connection(_) => ErrorKind::Connection,
            Error::MalformedResponse(_) => ErrorKind::MalformedResponse,
            Error::MissingApiKey(_) => ErrorKind::MissingApiKey,
            Error::Template { .. } => ErrorKind::Template,
            Error::Config(_) => ErrorKind::Config,
            Error::EmptyOutput(_) => ErrorKind::EmptyOutput,
            Error::Model(_) => ErrorKind::Model,
        }
    }

    /// Whether retrying the same request may succeed: timeouts, connection failures, HTTP 408,
    /// 409, 429 and 5xx (the statuses the OpenAI clients retry).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Timeout(_) | Error::Connection(_) => true,
            Error::HttpStatus { status, .. } => matches!(status, 408 | 409 | 429) || *status >= 500,
            _ => false,
        }
    }

    pub(crate) fn template(name: &str, err: impl std::fmt::Display) -> Self {
        Error::Template {
            name: name.to_string(),
            message: err.to_string(),
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
