//! The [`ChatModel`] trait: anything that completes chat conversations.
//!
//! The LLM judge and the self-reflection provider are built on it. This crate implements it
//! for OpenAI-compatible HTTP endpoints ([`crate::OpenAiClient`]); the rollout engine implements
//! it for the local policy.

use std::time::{Duration, Instant};

use redraft_tokenizer::Message;
use serde::{Deserialize, Serialize};

use crate::error::Result;

/// One chat completion request.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// The conversation so far.
    pub messages: Vec<Message>,
    /// Sampling temperature (the model's default when `None`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// The most tokens to generate (the model's default when `None`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Stop strings; generation ends before any of them (they are not part of the text).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
}

impl ChatRequest {
    /// A request with these messages and default sampling.
    pub fn new(messages: Vec<Message>) -> Self {
        Self {
            messages,
            ..Self::default()
        }
    }

    /// Sets the temperature.
    pub fn temperature(mut self, t: f32) -> Self {
        self.temperature = Some(t);
        self
    }

    /// Sets the token limit.
    pub fn max_tokens(mut self, n: u32) -> Self {
        self.max_tokens = Some(n);
        self
    }

    /// Sets the stop strings.
    pub fn stop(mut self, stop: Vec<String>) -> Self {
        self.stop = stop;
        self
    }
}

/// Token counts reported by the model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Generated tokens.
    pub completion_tokens: u64,
}

/// One chat completion.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    /// The generated text.
    pub text: String,
    /// Why generation ended (`stop`, `length`, ...), when reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
    /// The model that answered, when reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Token counts, when reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Wall-clock time of the completion including retries.
    pub latency: Duration,
}

impl ChatResponse {
    /// A response with just `text`.
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            ..Self::default()
        }
    }
}

/// Anything that completes chat conversations, batched: one result per request, in order.
pub trait ChatModel: Send + Sync {
    /// A name for [`crate::FeedbackSource::model`].
    fn name(&self) -> &str;

    /// Completes each request.
    fn complete(&self, requests: &[ChatRequest]) -> Vec<Result<ChatResponse>>;

    /// How many attempts this model has retried so far (0 for models that never retry).
    fn retries(&self) -> u64 {
        0
    }
}

/// A [`ChatModel`] made of a function that completes one request: for tests, and for wrapping
/// simple local generators.
pub struct FnChatModel<F> {
    name: String,
    f: F,
}

impl<F> FnChatModel<F>
where
    F: Fn(&ChatRequest) -> Result<String> + Send + Sync,
{
    /// A model named `name` that answers each request with `f`.
    pub fn new(name: impl Into<String>, f: F) -> Self {
        Self {
            name: name.into(),
            f,
        }
    }
}

impl<F> ChatModel for FnChatModel<F>
where
    F: Fn(&ChatRequest) -> Result<String> + Send + Sync,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn complete(&self, requests: &[ChatRequest]) -> Vec<Result<ChatResponse>> {
        requests
            .iter()
            .map(|r| {
                let start = Instant::now();
                (self.f)(r).map(|text| ChatResponse {
                    text,
                    model: Some(self.name.clone()),
                    latency: start.elapsed(),
                    ..ChatResponse::default()
                })
            })
            .collect()
    }
}
