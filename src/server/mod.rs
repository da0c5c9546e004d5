//! `redraft serve`: an OpenAI-compatible HTTP server (`/v1/completions`,
//! `/v1/chat/completions`, `/v1/models`, `/health`) on the rollout engine's sampler.
//!
//! Request threads parse and validate; one engine thread batches whatever is queued. Errors
//! are OpenAI-style JSON with 4xx codes; malformed JSON, oversized bodies and dropped
//! connections affect only their own request.

mod engine;
mod openai;

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Sender};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use redraft::model::{ModelConfig, check_rows};
use redraft::rollout::{Completion, FinishReason, RowRequest, SamplingParams, row_rng};
use redraft::tokenizer::{Message, Tokenizer};
use serde_json::{Value, json};
use tiny_http::{Header, Method, Request, Response, Server};

use crate::commands::{LoadedModel, encode_text};
use openai::{ApiError, ChatRequest, Choice, Common, CompletionRequest, Prompt};

/// Server settings.
pub(crate) struct Settings {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) model_name: String,
    pub(crate) max_body_bytes: usize,
    pub(crate) max_batch_rows: usize,
    pub(crate) max_in_flight: usize,
    pub(crate) seed: u64,
}

/// What request threads share.
struct State {
    settings: Settings,
    config: ModelConfig,
    tokenizer: Arc<dyn Tokenizer>,
    stop_tokens: Vec<u32>,
    jobs: Sender<engine::Job>,
    next_seed: AtomicU64,
    in_flight: AtomicUsize,
    next_id: AtomicU64,
}

/// Binds, prints `listening on http://HOST:PORT`, and serves until the process ends.
pub(crate) fn serve(loaded: LoadedModel, settings: Settings) -> Result<()> {
    let server = Server::http((settings.host.as_str(), settings.port)).map_err(|e| {
        anyhow::anyhow!("cannot listen on {}:{}: {e}", settings.host, settings.port)
    })?;
    let address = server
        .server_addr()
        .to_ip()
        .context("the server has no IP address")?;
    let (stop_tokens, pad) = (loaded.stop_tokens(), loaded.pad_id());
    let LoadedModel {
        model,
        tokenizer,
        device,
    } = loaded;
    let config = model.config().clone();
    let (sender, receiver) = mpsc::channel();
    let tokenizer: Arc<dyn Tokenizer> = Arc::from(tokenizer);
    let engine_tokenizer = Arc::clone(&tokenizer);
    let max_rows = settings.max_batch_rows;
    std::thread::spawn(move || {
        engine::run(model, engine_tokenizer, device, pad, max_rows, receiver)
    });
    let state = Arc::new(State {
        next_seed: AtomicU64::new(settings.seed),
        settings,
        config,
        tokenizer,
        stop_tokens,
        jobs: sender,
        in_flight: AtomicUsize::new(0),
        next_id: AtomicU64::new(0),
    });
    println!("listening on http://{address}");
    use std::io::Write as _;
    std::io::stdout().flush()?;
    for request in server.incoming_requests() {
        let state = Arc::clone(&state);
        if state.in_flight.fetch_add(1, Ordering::SeqCst) >= state.settings.max_in_flight {
            state.in_flight.fetch_sub(1, Ordering::SeqCst);
            respond(
                request,
                Err(ApiError::new(
                    503,
                    "too many requests in flight; retry later",
                )),
            );
            continue;
        }
        std::thread::spawn(move || {
            handle(&state, request);
            state.in_flight.fetch_sub(1, Ordering::SeqCst);
        });
    }
    Ok(())
}

fn respond(request: Request, result: Result<Value, ApiError>) {
    let (status, body) = match result {
        Ok(body) => (200, body),
        Err(error) => (error.status, error.body()),
    };
    let header = Header::from_bytes("Content-Type", "application/json").expect("a valid header");
    let response = Response::from_string(body.to_string())
        .with_status_code(status)
        .with_header(header);
    // A client that went away is not the server's problem.
    let _ = request.respond(response);
}

fn handle(state: &State, mut request: Request) {
    let method = request.method().clone();
    let path = request.url().split('?').next().unwrap_or("").to_string();
    let result = match (method, path.as_str()) {
        (Method::Get, "/health") => Ok(json!({"status": "ok"})),
        (Method::Get, "/v1/models") => Ok(json!({"object": "list", "data": [{
            "id": state.settings.model_name, "object": "model", "owned_by": "redraft", "created": now(),
        }]})),
        (Method::Post, "/v1/completions") => {
            read_json(state, &mut request).and_then(|body| completions(state, body))
        }
        (Method::Post, "/v1/chat/completions") => {
            read_json(state, &mut request).and_then(|body| chat(state, body))
        }
        (_, "/health" | "/v1/models" | "/v1/completions" | "/v1/chat/completions") => {
            Err(ApiError::new(405, format!("method not allowed on {path}")))
        }
        _ => Err(ApiError::new(404, format!("no route {path}"))),
    };
    respond(request, result);
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn read_json<T: serde::de::DeserializeOwned>(
    state: &State,
    request: &mut Request,
) -> Result<T, ApiError> {
    let limit = state.settings.max_body_bytes;
    if request.body_length().is_some_and(|n| n > limit) {
        return Err(ApiError::new(
            413,
            format!("request body larger than {limit} bytes"),
        ));
    }
    let mut body = Vec::new();
    request
        .as_reader()
        .take(limit as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|e| ApiError::invalid(None, format!("cannot read the request body: {e}")))?;
    if body.len() > limit {
        return Err(ApiError::new(
            413,
            format!("request body larger than {limit} bytes"),
        ));
    }
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid(None, format!("invalid JSON body: {e}")))
}

/// Turns the shared parameters into one row per choice and runs them.
fn sample(
    state: &State,
    prompt: Vec<u32>,
    common: Common,
    default_max: usize,
) -> Result<(Vec<Choice>, usize), ApiError> {
    if let Some(model) = common
        .model
        .as_ref()
        .filter(|m| **m != state.settings.model_name)
    {
        return Err(ApiError::new(
            404,
            format!(
                "model `{model}` is not served here (serving `{}`)",
                state.settings.model_name
            ),
        ));
    }
    check_rows(&state.config, std::slice::from_ref(&prompt))
        .map_err(|e| ApiError::invalid(Some("prompt"), e.to_string()))?;
    if prompt.is_empty() {
        return Err(ApiError::invalid(Some("prompt"), "the prompt is empty"));
    }
    let room = state.config.max_position_embeddings - prompt.len();
    let max_tokens = common
        .max_completion_tokens
        .or(common.max_tokens)
        .unwrap_or(default_max.min(room));
    if max_tokens > room {
        return Err(ApiError::invalid(
            Some("max_tokens"),
            format!(
                "{} prompt tokens + max_tokens {max_tokens} exceed the context of {}",
                prompt.len(),
                state.config.max_position_embeddings
            ),
        ));
    }
    let n = common.n.unwrap_or(1);
    if !(1..=128).contains(&n) {
        return Err(ApiError::invalid(Some("n"), "n must be between 1 and 128"));
    }
    let temperature = common.temperature.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(ApiError::invalid(
            Some("temperature"),
            "temperature must be between 0 and 2",
        ));
    }
    let params = SamplingParams {
        temperature,
        top_p: common.top_p.unwrap_or(1.0),
        max_new_tokens: max_tokens,
        stop_tokens: state.stop_tokens.clone(),
        vocab_limit: Some(state.tokenizer.vocab_size()),
        ..SamplingParams::default()
    };
    params
        .validate()
        .map_err(|e| ApiError::invalid(Some("top_p"), e.to_string()))?;
    let stop = common.stop.map(openai::Stop::into_vec).unwrap_or_default();
    if stop.len() > 4 || stop.iter().any(String::is_empty) {
        return Err(ApiError::invalid(
            Some("stop"),
            "up to 4 non-empty stop strings",
        ));
    }
    let seed = common
        .seed
        .unwrap_or_else(|| state.next_seed.fetch_add(1, Ordering::SeqCst));
    let rows = (0..n)
        .map(|i| RowRequest {
            prompt: prompt.clone(),
            params: params.clone(),
            rng: row_rng(seed, i),
        })
        .collect();
    let (reply, answer) = mpsc::channel();
    state
        .jobs
        .send(engine::Job {
            rows,
            stop: stop.clone(),
            reply,
        })
        .map_err(|_| ApiError::new(500, "the sampling engine has stopped"))?;
    let completions = answer
        .recv()
        .map_err(|_| ApiError::new(500, "the sampling engine has stopped"))?
        .map_err(|e| ApiError::new(500, format!("sampling failed: {e}")))?;
    let choices = completions
        .into_iter()
        .map(|c| choice(state, c, &stop))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((choices, prompt.len()))
}

/// Decodes a completion, cutting the text at the first stop string (which is not returned).
fn choice(state: &State, completion: Completion, stop: &[String]) -> Result<Choice, ApiError> {
    let decode = |ids: &[u32]| {
        state
            .tokenizer
            .decode(ids, true)
            .map_err(|e| ApiError::new(500, e.to_string()))
    };
    let mut text = decode(&completion.tokens)?;
    let mut finish_reason = match completion.finish_reason {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
    };
    if let Some(cut) = stop.iter().filter_map(|s| text.find(s.as_str())).min() {
        text.truncate(cut);
        finish_reason = "stop";
    }
    let tokens = completion
        .tokens
        .iter()
        .map(|&t| decode(&[t]))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Choice {
        text,
        tokens,
        logprobs: completion.logprobs,
        finish_reason,
    })
}

fn usage(prompt_tokens: usize, choices: &[Choice]) -> Value {
    let completion_tokens: usize = choices.iter().map(|c| c.tokens.len()).sum();
    json!({"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens})
}

fn completions(state: &State, request: CompletionRequest) -> Result<Value, ApiError> {
    let prompt = match request.prompt {
        Prompt::Tokens(ids) => ids,
        Prompt::Text(text) => encode_text(state.tokenizer.as_ref(), &text)
            .map_err(|e| ApiError::invalid(Some("prompt"), e.to_string()))?,
    };
    let (choices, prompt_tokens) = sample(state, prompt, request.common, 16)?;
    let with_logprobs = request.logprobs.is_some();
    let id = state.next_id.fetch_add(1, Ordering::SeqCst);
    Ok(json!({
        "id": format!("cmpl-{id}"),
        "object": "text_completion",
        "created": now(),
        "model": state.settings.model_name,
        "usage": usage(prompt_tokens, &choices),
        "choices": choices.iter().enumerate().map(|(i, c)| json!({
            "index": i,
            "text": c.text,
            "finish_reason": c.finish_reason,
            "logprobs": if with_logprobs {
                json!({"tokens": c.tokens, "token_logprobs": c.logprobs, "top_logprobs": null, "text_offset": offsets(&c.tokens)})
            } else { Value::Null },
        })).collect::<Vec<_>>(),
    }))
}

fn offsets(tokens: &[String]) -> Vec<usize> {
    tokens
        .iter()
        .scan(0, |at, t| {
            let start = *at;
            *at += t.len();
            Some(start)
        })
        .collect()
}

fn chat(state: &State, request: ChatRequest) -> Result<Value, ApiError> {
    if request.messages.is_empty() {
        return Err(ApiError::invalid(
            Some("messages"),
            "messages must not be empty",
        ));
    }
    let template = state.tokenizer.chat_template().ok_or_else(|| {
        ApiError::invalid(
            Some("messages"),
            "the model's tokenizer has no chat template; use /v1/completions",
        )
    })?;
    let messages: Vec<Message> = request
        .messages
        .into_iter()
        .map(|m| Message::new(m.role, m.content))
        .collect();
    let text = template
        .render(&messages, true)
        .map_err(|e| ApiError::invalid(Some("messages"), e.to_string()))?;
    let prompt = state
        .tokenizer
        .encode(&text)
        .map_err(|e| ApiError::invalid(Some("messages"), e.to_string()))?;
    let default_max = state.config.max_position_embeddings;
    let (choices, prompt_tokens) = sample(state, prompt, request.common, default_max)?;
    let with_logprobs = request.logprobs.unwrap_or(false);
    let id = state.next_id.fetch_add(1, Ordering::SeqCst);
    Ok(json!({
        "id": format!("chatcmpl-{id}"),
        "object": "chat.completion",
        "created": now(),
        "model": state.settings.model_name,
        "usage": usage(prompt_tokens, &choices),
        "choices": choices.iter().enumerate().map(|(i, c)| json!({
            "index": i,
            "message": {"role": "assistant", "content": c.text},
            "finish_reason": c.finish_reason,
            "logprobs": if with_logprobs {
                json!({"content": c.tokens.iter().zip(&c.logprobs).map(|(t, l)| json!({
                    "token": t, "logprob": l, "bytes": t.as_bytes(), "top_logprobs": [],
                })).collect::<Vec<_>>()})
            } else { Value::Null },
        })).collect::<Vec<_>>(),
    }))
}
