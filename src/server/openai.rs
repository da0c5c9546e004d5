//! The OpenAI wire format: request bodies (validated into sampling jobs) and response bodies.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// An error answered to the client, OpenAI-style: `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: u16,
    pub(crate) message: String,
    pub(crate) param: Option<&'static str>,
}

impl ApiError {
    pub(crate) fn invalid(param: Option<&'static str>, message: impl Into<String>) -> Self {
        Self {
            status: 400,
            message: message.into(),
            param,
        }
    }

    pub(crate) fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            param: None,
        }
    }

    pub(crate) fn body(&self) -> Value {
        let kind = match self.status {
            400 | 413 | 422 => "invalid_request_error",
            404 | 405 => "not_found_error",
            503 => "overloaded_error",
            _ => "server_error",
        };
        json!({"error": {"message": self.message, "type": kind, "param": self.param, "code": self.status}})
    }
}

/// `stop` may be one string or a list.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum Stop {
    One(String),
    Many(Vec<String>),
}

impl Stop {
    pub(crate) fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s],
            Self::Many(v) => v,
        }
    }
}

/// A completions prompt: text or token ids (one prompt per request).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum Prompt {
    Text(String),
    Tokens(Vec<u32>),
}

/// Parameters shared by both endpoints.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Common {
    #[serde(default)]
    pub(crate) model: Option<String>,
    #[serde(default)]
    pub(crate) max_tokens: Option<usize>,
    #[serde(default)]
    pub(crate) max_completion_tokens: Option<usize>,
    #[serde(default)]
    pub(crate) temperature: Option<f32>,
    #[serde(default)]
    pub(crate) top_p: Option<f32>,
    #[serde(default)]
    pub(crate) n: Option<usize>,
    #[serde(default)]
    pub(crate) stop: Option<Stop>,
    #[serde(default)]
    pub(crate) seed: Option<u64>,
}

/// `POST /v1/completions`.
#[derive(Debug, Deserialize)]
pub(crate) struct CompletionRequest {
    pub(crate) prompt: Prompt,
    /// Number of log-probs per token (OpenAI's legacy field); any value returns the sampled
    /// token's log-prob (top alternatives are not computed).
    #[serde(default)]
    pub(crate) logprobs: Option<u32>,
    #[serde(flatten)]
    pub(crate) common: Common,
}

/// One chat message as clients send it.
#[derive(Debug, Deserialize)]
pub(crate) struct ChatMessage {
    pub(crate) role: String,
    pub(crate) content: String,
}

/// `POST /v1/chat/completions`.
#[derive(Debug, Deserialize)]
pub(crate) struct ChatRequest {
    pub(crate) messages: Vec<ChatMessage>,
    #[serde(default)]
    pub(crate) logprobs: Option<bool>,
    #[serde(flatten)]
    pub(crate) common: Common,
}

/// One returned choice, before formatting for an endpoint.
#[derive(Debug, Serialize)]
pub(crate) struct Choice {
    pub(crate) text: String,
    pub(crate) tokens: Vec<String>,
    pub(crate) logprobs: Vec<f32>,
    pub(crate) finish_reason: &'static str,
}
