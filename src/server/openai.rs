//! The OpenAI wire format: request bodies (validated into sampling jobs) and response bodies.

use serde::Deserialize;
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
    /// vLLM's: keep the k most likely tokens (0 or -1: all).
    #[serde(default)]
    pub(crate) top_k: Option<i64>,
    /// vLLM's: drop tokens less likely than `min_p` times the most likely one.
    #[serde(default)]
    pub(crate) min_p: Option<f32>,
    /// vLLM's: ids that end a choice (kept in its tokens), besides the model's end tokens.
    #[serde(default)]
    pub(crate) stop_token_ids: Option<Vec<u32>>,
    /// vLLM's: the model's own end tokens do not end a choice (only `stop_token_ids` do).
    #[serde(default)]
    pub(crate) ignore_eos: Option<bool>,
    /// Redraft's: the exact generator of the first choice (`{seed: 64 hex digits, stream,
    /// word_pos}`; choice `i` uses stream `stream + i`), so a trainer's rows draw here the
    /// tokens they would draw in process. Overrides `seed`.
    #[serde(default)]
    pub(crate) rng_state: Option<Value>,
    #[serde(default)]
    pub(crate) n: Option<usize>,
    #[serde(default)]
    pub(crate) stop: Option<Stop>,
    #[serde(default)]
    pub(crate) seed: Option<u64>,
    /// Answer with server-sent events.
    #[serde(default)]
    pub(crate) stream: Option<bool>,
    #[serde(default)]
    pub(crate) stream_options: Option<StreamOptions>,
    // Accepted only at their neutral values (see [`Common::refuse_unsupported`]).
    #[serde(default)]
    response_format: Option<Value>,
    #[serde(default)]
    tools: Option<Value>,
    #[serde(default)]
    tool_choice: Option<Value>,
    #[serde(default)]
    functions: Option<Value>,
    #[serde(default)]
    function_call: Option<Value>,
    #[serde(default)]
    logit_bias: Option<Value>,
    #[serde(default)]
    presence_penalty: Option<f32>,
    #[serde(default)]
    frequency_penalty: Option<f32>,
    #[serde(default)]
    echo: Option<bool>,
    #[serde(default)]
    suffix: Option<String>,
    #[serde(default)]
    best_of: Option<usize>,
    /// Alternatives per token of a chat answer (0 to 20, with `logprobs: true`).
    #[serde(default)]
    pub(crate) top_logprobs: Option<u32>,
    /// vLLM's: tokens in `logprobs` are written `token_id:N` (every id is then identifiable,
    /// whatever its bytes).
    #[serde(default)]
    pub(crate) return_tokens_as_token_ids: Option<bool>,
    /// vLLM's: each choice carries its sampled `token_ids`, and the answer its
    /// `prompt_token_ids` (so a trainer uses exactly the tokens that were sampled).
    #[serde(default)]
    pub(crate) return_token_ids: Option<bool>,
}

/// `stream_options`: whether a last chunk carries the usage.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct StreamOptions {
    #[serde(default)]
    pub(crate) include_usage: Option<bool>,
}

impl Common {
    /// A 400 naming the first parameter this server does not implement that asks for
    /// something other than its neutral value (which is accepted and changes nothing).
    pub(crate) fn refuse_unsupported(&self) -> Result<(), ApiError> {
        let empty = |v: &Option<Value>| match v {
            None | Some(Value::Null) => true,
            Some(Value::Array(a)) => a.is_empty(),
            Some(Value::Object(o)) => o.is_empty(),
            Some(_) => false,
        };
        let refused: Option<&'static str> = if !empty(&self.tools) {
            Some("tools")
        } else if !empty(&self.tool_choice)
            && self.tool_choice != Some(Value::String("none".into()))
        {
            Some("tool_choice")
        } else if !empty(&self.functions) {
            Some("functions")
        } else if !empty(&self.function_call)
            && self.function_call != Some(Value::String("none".into()))
        {
            Some("function_call")
        } else if !empty(&self.response_format)
            && self.response_format != Some(json!({"type": "text"}))
        {
            Some("response_format")
        } else if !empty(&self.logit_bias) {
            Some("logit_bias")
        } else if self.presence_penalty.is_some_and(|p| p != 0.0) {
            Some("presence_penalty")
        } else if self.frequency_penalty.is_some_and(|p| p != 0.0) {
            Some("frequency_penalty")
        } else if self.echo == Some(true) {
            Some("echo")
        } else if self.suffix.as_ref().is_some_and(|s| !s.is_empty()) {
            Some("suffix")
        } else if self.best_of.is_some_and(|b| b != self.n.unwrap_or(1)) {
            Some("best_of")
        } else {
            None
        };
        match refused {
            Some(param) => Err(ApiError::invalid(
                Some(param),
                format!("`{param}` is not supported by this server"),
            )),
            None => Ok(()),
        }
    }

    /// Whether the answer is a stream of server-sent events.
    pub(crate) fn streams(&self) -> bool {
        self.stream == Some(true)
    }

    /// Whether a stream ends with a usage chunk.
    pub(crate) fn stream_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false)
    }
}

/// `POST /v1/completions`.
#[derive(Debug, Deserialize)]
pub(crate) struct CompletionRequest {
    pub(crate) prompt: Prompt,
    /// Number of alternatives per token (OpenAI's legacy field, 0 to 5): 0 returns the sampled
    /// tokens' log-probs, `k` also the `k` most likely tokens at each step.
    #[serde(default)]
    pub(crate) logprobs: Option<u32>,
    #[serde(flatten)]
    pub(crate) common: Common,
}

/// One chat message as clients send it.
#[derive(Debug, Deserialize)]
pub(crate) struct ChatMessage {
    pub(crate) role: String,
    pub(crate) content: Content,
}

/// Message content: a string, or a list of parts of which only text parts are supported.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Content {
    Text(String),
    Parts(Vec<Part>),
}

/// One part of a message's content.
#[derive(Debug, Deserialize)]
pub(crate) struct Part {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

impl Content {
    /// The text of the message: its parts joined; a part that is not text is refused.
    pub(crate) fn into_text(self) -> Result<String, ApiError> {
        match self {
            Self::Text(text) => Ok(text),
            Self::Parts(parts) => parts
                .into_iter()
                .map(|part| match (part.kind.as_str(), part.text) {
                    ("text", Some(text)) => Ok(text),
                    (kind, _) => Err(ApiError::invalid(
                        Some("messages"),
                        format!("content parts of type `{kind}` are not supported (only `text` with a `text` field)"),
                    )),
                })
                .collect(),
        }
    }
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

/// `POST /v1/load_lora_adapter` (vLLM's): a PEFT adapter folder served under a model name.
#[derive(Debug, Deserialize)]
pub(crate) struct LoadAdapter {
    pub(crate) lora_name: String,
    pub(crate) lora_path: std::path::PathBuf,
}

/// `POST /v1/unload_lora_adapter` (vLLM's).
#[derive(Debug, Deserialize)]
pub(crate) struct UnloadAdapter {
    pub(crate) lora_name: String,
}

/// `POST /update_weights_from_disk` (SGLang's): new weights for the served model, from a model
/// folder or `.gguf` of the same configuration.
#[derive(Debug, Deserialize)]
pub(crate) struct UpdateWeights {
    pub(crate) model_path: std::path::PathBuf,
    /// The name of the new weights (`GET /get_weight_version`); default: one more than the
    /// last number.
    #[serde(default)]
    pub(crate) weight_version: Option<String>,
}
