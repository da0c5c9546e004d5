//! `redraft serve`: an OpenAI-compatible HTTP server (`/v1/completions`,
//! `/v1/chat/completions`, `/v1/models`, `/health`) on the rollout engine's sampler.
//!
//! One thread per connection reads the request under a deadline (`--request-timeout-secs`,
//! head and body), validates it and queues its rows; one engine thread batches whatever is
//! queued. Connections beyond `--max-connections` and sampling requests beyond
//! `--max-in-flight` are answered 503 with `Retry-After`. A client that hangs up cancels its
//! rows at the next decode step. Errors are OpenAI-style JSON; `stream: true` answers with
//! server-sent events. See docs/SERVING.md.

mod engine;
mod http;
mod openai;

use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use redraft::model::{ModelConfig, check_rows};
use redraft::rollout::{Completion, FinishReason, RowRequest, SamplingParams, row_rng};
use redraft::tokenizer::{Message, Tokenizer};
use serde_json::{Value, json};

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
    /// Most open connections; more are answered 503.
    pub(crate) max_connections: usize,
    /// Time a client has to send its whole request (head and body), and the limit on each
    /// write of the answer.
    pub(crate) request_timeout: Duration,
    pub(crate) seed: u64,
}

/// Seconds a refused client is told to wait (`Retry-After`).
const RETRY_AFTER_SECS: u32 = 1;
/// Most threads writing 503s to connections over the cap at once; beyond, they are dropped.
const MAX_REFUSERS: usize = 64;
/// How often a waiting request checks that its client is still connected.
const HANG_UP_POLL: Duration = Duration::from_millis(50);

/// What request threads share.
struct State {
    settings: Settings,
    config: ModelConfig,
    tokenizer: Arc<dyn Tokenizer>,
    stop_tokens: Vec<u32>,
    jobs: Sender<engine::Job>,
    next_seed: AtomicU64,
    in_flight: AtomicUsize,
    connections: AtomicUsize,
    refusing: AtomicUsize,
    next_id: AtomicU64,
}

/// An answer: one JSON body, or the chunks of a server-sent event stream (`[DONE]` follows).
enum Answer {
    Json(Value),
    Events(Vec<Value>),
}

/// Binds, prints `listening on http://HOST:PORT`, and serves until the process ends.
pub(crate) fn serve(loaded: LoadedModel, settings: Settings) -> Result<()> {
    let listener = TcpListener::bind((settings.host.as_str(), settings.port))
        .with_context(|| format!("cannot listen on {}:{}", settings.host, settings.port))?;
    let address = listener
        .local_addr()
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
        connections: AtomicUsize::new(0),
        refusing: AtomicUsize::new(0),
        next_id: AtomicU64::new(0),
    });
    println!("listening on http://{address}");
    use std::io::Write as _;
    std::io::stdout().flush()?;
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let full =
            state.connections.fetch_add(1, Ordering::SeqCst) >= state.settings.max_connections;
        let job_state = Arc::clone(&state);
        let spawned = if full {
            state.connections.fetch_sub(1, Ordering::SeqCst);
            if state.refusing.fetch_add(1, Ordering::SeqCst) >= MAX_REFUSERS {
                state.refusing.fetch_sub(1, Ordering::SeqCst);
                continue;
            }
            std::thread::Builder::new().spawn(move || {
                refuse_busy(stream, "too many open connections");
                job_state.refusing.fetch_sub(1, Ordering::SeqCst);
            })
        } else {
            std::thread::Builder::new().spawn(move || {
                connection(&job_state, stream);
                job_state.connections.fetch_sub(1, Ordering::SeqCst);
            })
        };
        if spawned.is_err() {
            let counter = if full {
                &state.refusing
            } else {
                &state.connections
            };
            counter.fetch_sub(1, Ordering::SeqCst);
            tracing::warn!("cannot start a connection thread; dropping the connection");
        }
    }
    Ok(())
}

/// Answers 503 to a connection over the cap, without reading its request.
fn refuse_busy(mut stream: TcpStream, why: &str) {
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    reply(
        &mut stream,
        Err(ApiError::new(503, format!("{why}; retry later"))),
    );
}

/// Writes a JSON answer or error; a 503 carries `Retry-After`.
fn reply(stream: &mut TcpStream, result: Result<Value, ApiError>) {
    let (status, body) = match result {
        Ok(body) => (200, body),
        Err(error) => (error.status, error.body()),
    };
    let retry = [("Retry-After", RETRY_AFTER_SECS.to_string())];
    let headers: &[(&str, String)] = if status == 503 { &retry } else { &[] };
    http::respond(
        stream,
        status,
        "application/json",
        headers,
        body.to_string().as_bytes(),
    );
}

/// Sends the chunks of a stream, then `[DONE]`; stops when the client has gone.
fn send_events(stream: &mut TcpStream, chunks: &[Value]) {
    let sent = http::start_events(stream).and_then(|()| {
        chunks
            .iter()
            .try_for_each(|chunk| http::send_event(stream, &chunk.to_string()))?;
        http::send_event(stream, "[DONE]")
    });
    if sent.is_ok() {
        http::close(stream);
    }
}

/// Serves one connection: reads its request under the deadline and answers it.
fn connection(state: &State, mut stream: TcpStream) {
    let timeout = state.settings.request_timeout;
    let _ = stream.set_write_timeout(Some(timeout));
    let request = match http::read_request(
        &mut stream,
        Instant::now() + timeout,
        state.settings.max_body_bytes,
    ) {
        Ok(request) => request,
        Err(http::ReadError::Closed) => return,
        Err(http::ReadError::Timeout) => {
            let message = format!(
                "the request did not arrive within {} s",
                timeout.as_secs_f32()
            );
            return reply(&mut stream, Err(ApiError::new(408, message)));
        }
        Err(http::ReadError::TooLarge(limit)) => {
            let message = format!("request body larger than {limit} bytes");
            return reply(&mut stream, Err(ApiError::new(413, message)));
        }
        Err(http::ReadError::Malformed(message)) => {
            return reply(&mut stream, Err(ApiError::invalid(None, message)));
        }
    };
    let path = request.path.as_str();
    let result = match (request.method.as_str(), path) {
        ("GET", "/health") => Ok(Answer::Json(json!({"status": "ok"}))),
        ("GET", "/v1/models") => Ok(Answer::Json(json!({"object": "list", "data": [{
            "id": state.settings.model_name, "object": "model", "owned_by": "redraft", "created": now(),
        }]}))),
        ("POST", "/v1/completions" | "/v1/chat/completions") => {
            if state.in_flight.fetch_add(1, Ordering::SeqCst) >= state.settings.max_in_flight {
                Err(ApiError::new(
                    503,
                    "too many requests in flight; retry later",
                ))
            } else {
                let answer = if path == "/v1/completions" {
                    parse(&request.body).and_then(|body| completions(state, &stream, body))
                } else {
                    parse(&request.body).and_then(|body| chat(state, &stream, body))
                };
                state.in_flight.fetch_sub(1, Ordering::SeqCst);
                answer
            }
        }
        (_, "/health" | "/v1/models" | "/v1/completions" | "/v1/chat/completions") => {
            Err(ApiError::new(405, format!("method not allowed on {path}")))
        }
        _ => Err(ApiError::new(404, format!("no route {path}"))),
    };
    match result {
        Ok(Answer::Events(chunks)) => send_events(&mut stream, &chunks),
        Ok(Answer::Json(body)) => reply(&mut stream, Ok(body)),
        Err(error) => reply(&mut stream, Err(error)),
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(None, format!("invalid JSON body: {e}")))
}

/// Turns the shared parameters into one row per choice and runs them; cancels the rows when
/// the client on `stream` hangs up.
fn sample(
    state: &State,
    stream: &TcpStream,
    prompt: Vec<u32>,
    common: &Common,
    default_max: usize,
) -> Result<(Vec<Choice>, usize), ApiError> {
    common.refuse_unsupported()?;
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
    let context = state.config.max_position_embeddings;
    let room = context - prompt.len();
    let max_tokens = common
        .max_completion_tokens
        .or(common.max_tokens)
        .unwrap_or(default_max.min(room).max(1));
    // Like vLLM: a prompt that leaves no room for the completion asked for is refused, never
    // answered with zero tokens.
    if max_tokens > room {
        return Err(ApiError::invalid(
            Some("max_tokens"),
            format!(
                "{} prompt tokens + max_tokens {max_tokens} exceed the context of {context}",
                prompt.len(),
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
    let stop = common
        .stop
        .clone()
        .map(openai::Stop::into_vec)
        .unwrap_or_default();
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
    let cancelled = Arc::new(AtomicBool::new(false));
    let stopped = || ApiError::new(500, "the sampling engine has stopped");
    state
        .jobs
        .send(engine::Job {
            rows,
            stop: stop.clone(),
            cancelled: Arc::clone(&cancelled),
            reply,
        })
        .map_err(|_| stopped())?;
    let completions = loop {
        match answer.recv_timeout(HANG_UP_POLL) {
            Ok(result) => break result,
            Err(RecvTimeoutError::Timeout) => {
                if http::hung_up(stream) {
                    cancelled.store(true, Ordering::SeqCst);
                    return Err(ApiError::new(499, "the client closed the connection"));
                }
            }
            Err(RecvTimeoutError::Disconnected) => return Err(stopped()),
        }
    }
    .map_err(|e| ApiError::new(500, format!("sampling failed: {e}")))?;
    let choices = completions
        .into_iter()
        .map(|c| choice(state, c, &stop, common.streams()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((choices, prompt.len()))
}

/// Decodes a completion, cutting the text at the first stop string (which is not returned);
/// with `deltas`, also what each token adds to the text (for streaming).
fn choice(
    state: &State,
    completion: Completion,
    stop: &[String],
    deltas: bool,
) -> Result<Choice, ApiError> {
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
    // What each token adds to the text: the growth of the decoded prefix, held back while it
    // ends in an incomplete character, and never past the (possibly cut) text.
    let mut pieces = Vec::with_capacity(tokens.len());
    let mut emitted = 0;
    for end in (1..=completion.tokens.len()).filter(|_| deltas) {
        let reach = if end == completion.tokens.len() {
            text.len()
        } else {
            let prefix = decode(&completion.tokens[..end])?;
            common_prefix(&text, prefix.trim_end_matches('\u{FFFD}')).max(emitted)
        };
        pieces.push(text[emitted..reach].to_string());
        emitted = reach;
    }
    Ok(Choice {
        text,
        tokens,
        deltas: pieces,
        logprobs: completion.logprobs,
        finish_reason,
    })
}

/// Length in bytes of the longest common prefix of `a` and `b` (a character boundary).
fn common_prefix(a: &str, b: &str) -> usize {
    a.char_indices()
        .zip(b.chars())
        .find(|((_, x), y)| x != y)
        .map(|((at, _), _)| at)
        .unwrap_or(a.len().min(b.len()))
}

fn usage(prompt_tokens: usize, choices: &[Choice]) -> Value {
    let completion_tokens: usize = choices.iter().map(|c| c.tokens.len()).sum();
    json!({"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens})
}

/// The chunks of a streamed answer: `first` opens each choice, `token` carries its tokens one
/// by one, `last` closes it with the finish reason; with `include_usage` every chunk has
/// `"usage": null` and a last chunk with no choices carries the usage (OpenAI's layout).
fn stream_chunks(
    envelope: &Value,
    choices: &[Choice],
    usage: Value,
    include_usage: bool,
    first: impl Fn(usize) -> Option<Value>,
    token: impl Fn(usize, &Choice, usize) -> Value,
    last: impl Fn(usize, &Choice) -> Value,
) -> Vec<Value> {
    let chunk = |choice: Value| {
        let mut chunk = envelope.clone();
        chunk["choices"] = json!([choice]);
        if include_usage {
            chunk["usage"] = Value::Null;
        }
        chunk
    };
    let mut chunks = Vec::new();
    for (i, c) in choices.iter().enumerate() {
        chunks.extend(first(i).map(chunk));
        chunks.extend((0..c.tokens.len()).map(|t| chunk(token(i, c, t))));
        chunks.push(chunk(last(i, c)));
    }
    if include_usage {
        let mut closing = envelope.clone();
        closing["choices"] = json!([]);
        closing["usage"] = usage;
        chunks.push(closing);
    }
    chunks
}

fn completions(
    state: &State,
    stream: &TcpStream,
    request: CompletionRequest,
) -> Result<Answer, ApiError> {
    if request.logprobs.is_some_and(|k| k > 0) {
        return Err(ApiError::invalid(
            Some("logprobs"),
            "alternatives per token (`logprobs` > 0) are not supported; 0 returns the sampled tokens' log-probs",
        ));
    }
    let prompt = match request.prompt {
        Prompt::Tokens(ids) => ids,
        Prompt::Text(text) => encode_text(state.tokenizer.as_ref(), &text)
            .map_err(|e| ApiError::invalid(Some("prompt"), e.to_string()))?,
    };
    let (choices, prompt_tokens) = sample(state, stream, prompt, &request.common, 16)?;
    let with_logprobs = request.logprobs.is_some();
    let id = state.next_id.fetch_add(1, Ordering::SeqCst);
    let envelope = json!({
        "id": format!("cmpl-{id}"),
        "object": "text_completion",
        "created": now(),
        "model": state.settings.model_name,
    });
    let usage = usage(prompt_tokens, &choices);
    if request.common.streams() {
        let token = |i: usize, c: &Choice, t: usize| {
            let offset = offsets(&c.tokens)[t];
            json!({"index": i, "text": c.deltas[t], "finish_reason": null,
                "logprobs": if with_logprobs {
                    json!({"tokens": [c.tokens[t]], "token_logprobs": [c.logprobs[t]], "top_logprobs": null, "text_offset": [offset]})
                } else { Value::Null }})
        };
        let last = |i: usize, c: &Choice| json!({"index": i, "text": "", "logprobs": null, "finish_reason": c.finish_reason});
        let chunks = stream_chunks(
            &envelope,
            &choices,
            usage,
            request.common.stream_usage(),
            |_| None,
            token,
            last,
        );
        return Ok(Answer::Events(chunks));
    }
    let mut body = envelope;
    body["usage"] = usage;
    body["choices"] = choices.iter().enumerate().map(|(i, c)| json!({
        "index": i,
        "text": c.text,
        "finish_reason": c.finish_reason,
        "logprobs": if with_logprobs {
            json!({"tokens": c.tokens, "token_logprobs": c.logprobs, "top_logprobs": null, "text_offset": offsets(&c.tokens)})
        } else { Value::Null },
    })).collect();
    Ok(Answer::Json(body))
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

/// One entry of a chat answer's `logprobs.content`. A token that is not valid UTF-8 alone
/// decodes to U+FFFD, whose bytes are not the token's: its `bytes` is `null` (OpenAI: no bytes
/// representation), since the tokenizer does not expose a token's raw bytes.
fn chat_logprob(c: &Choice, t: usize) -> Value {
    let token = &c.tokens[t];
    let bytes = if token.contains('\u{FFFD}') {
        Value::Null
    } else {
        json!(token.as_bytes())
    };
    json!({"token": token, "logprob": c.logprobs[t], "bytes": bytes, "top_logprobs": []})
}

fn chat(state: &State, stream: &TcpStream, request: ChatRequest) -> Result<Answer, ApiError> {
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
        .map(|m| Ok(Message::new(m.role, m.content.into_text()?)))
        .collect::<Result<_, ApiError>>()?;
    let text = template
        .render(&messages, true)
        .map_err(|e| ApiError::invalid(Some("messages"), e.to_string()))?;
    let prompt = state
        .tokenizer
        .encode(&text)
        .map_err(|e| ApiError::invalid(Some("messages"), e.to_string()))?;
    let default_max = state.config.max_position_embeddings;
    let (choices, prompt_tokens) = sample(state, stream, prompt, &request.common, default_max)?;
    let with_logprobs = request.logprobs.unwrap_or(false);
    let id = state.next_id.fetch_add(1, Ordering::SeqCst);
    let envelope = json!({
        "id": format!("chatcmpl-{id}"),
        "object": if request.common.streams() { "chat.completion.chunk" } else { "chat.completion" },
        "created": now(),
        "model": state.settings.model_name,
    });
    let usage = usage(prompt_tokens, &choices);
    if request.common.streams() {
        let first = |i: usize| {
            Some(
                json!({"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}),
            )
        };
        let token = |i: usize, c: &Choice, t: usize| {
            json!({"index": i, "delta": {"content": c.deltas[t]}, "finish_reason": null,
                "logprobs": if with_logprobs { json!({"content": [chat_logprob(c, t)]}) } else { Value::Null }})
        };
        let last = |i: usize, c: &Choice| json!({"index": i, "delta": {}, "logprobs": null, "finish_reason": c.finish_reason});
        let chunks = stream_chunks(
            &envelope,
            &choices,
            usage,
            request.common.stream_usage(),
            first,
            token,
            last,
        );
        return Ok(Answer::Events(chunks));
    }
    let mut body = envelope;
    body["usage"] = usage;
    body["choices"] = choices.iter().enumerate().map(|(i, c)| json!({
        "index": i,
        "message": {"role": "assistant", "content": c.text},
        "finish_reason": c.finish_reason,
        "logprobs": if with_logprobs {
            json!({"content": (0..c.tokens.len()).map(|t| chat_logprob(c, t)).collect::<Vec<_>>()})
        } else { Value::Null },
    })).collect();
    Ok(Answer::Json(body))
}
