//! `redraft serve`: an OpenAI-compatible HTTP server (`/v1/completions`,
//! `/v1/chat/completions`, `/v1/models`, `/health`) on the rollout engine's sampler, and a
//! rollout server for a trainer: token ids in and out (`return_token_ids`,
//! `return_tokens_as_token_ids`), LoRA adapters loaded and unloaded by name
//! (`/v1/load_lora_adapter`, `/v1/unload_lora_adapter`, as vLLM) and new weights read from disk
//! (`/update_weights_from_disk`, `/get_weight_version`, as SGLang).
//!
//! One thread per connection reads its requests (HTTP/1.1 keep-alive, up to
//! `--max-requests-per-connection`, idle for at most `--keep-alive-secs`), each under a
//! deadline (`--request-timeout-secs`, head and body), validates them and queues their rows;
//! one engine thread batches whatever is queued and sends each token to its request's thread
//! as soon as it is sampled. Connections beyond `--max-connections` and sampling requests
//! beyond `--max-in-flight` are answered 503 with `Retry-After`. A client that hangs up
//! cancels its rows at the next decode step. Errors are OpenAI-style JSON; `stream: true`
//! answers with server-sent events, token by token. See docs/SERVING.md.

mod engine;
mod http;
mod openai;

use std::cell::Cell;
use std::collections::BTreeSet;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use redraft::model::{ModelConfig, check_rows};
use redraft::rollout::{FinishReason, RowRequest, SamplingParams, rng_from_state, row_rng};
use redraft::tokenizer::{Message, Tokenizer};
use serde_json::{Value, json};

use crate::commands::{LoadedModel, encode_text};
use openai::{ApiError, ChatRequest, Common, CompletionRequest, Prompt};

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
    /// How long a kept-alive connection may wait for its next request.
    pub(crate) keep_alive: Duration,
    /// Most requests answered on one connection; the last is answered `Connection: close`.
    pub(crate) max_requests_per_connection: usize,
    pub(crate) seed: u64,
}

/// Seconds a refused client is told to wait (`Retry-After`).
const RETRY_AFTER_SECS: u32 = 1;
/// Most threads writing 503s to connections over the cap at once; beyond, they are dropped.
const MAX_REFUSERS: usize = 64;
/// How often a waiting request checks that its client is still connected.
const HANG_UP_POLL: Duration = Duration::from_millis(50);
/// Most alternatives per token in chat answers (`top_logprobs`), as OpenAI.
const MAX_TOP_LOGPROBS: u32 = 20;
/// Most alternatives per token in completions answers (`logprobs`), as OpenAI.
const MAX_COMPLETION_LOGPROBS: u32 = 5;

/// What request threads share.
struct State {
    settings: Settings,
    config: ModelConfig,
    tokenizer: Arc<dyn Tokenizer>,
    stop_tokens: Vec<u32>,
    jobs: Sender<engine::Message>,
    /// The names of the loaded LoRA adapters (requests name one as their `model`).
    adapters: Mutex<BTreeSet<String>>,
    /// The name of the weights being served.
    weight_version: Mutex<String>,
    next_seed: AtomicU64,
    in_flight: AtomicUsize,
    connections: AtomicUsize,
    refusing: AtomicUsize,
    next_id: AtomicU64,
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
        adapters: Mutex::new(BTreeSet::new()),
        weight_version: Mutex::new("0".into()),
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
        false,
    );
}

/// Writes a JSON answer or error; a 503 carries `Retry-After`. The connection stays open when
/// `keep_alive`, else it is closed.
fn reply(stream: &mut TcpStream, result: Result<Value, ApiError>, keep_alive: bool) {
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
        keep_alive,
    );
}

/// Serves one connection: its requests one after the other, each read under the deadline,
/// while the client keeps it alive (and within the idle timeout and the request cap).
fn connection(state: &State, mut stream: TcpStream) {
    let timeout = state.settings.request_timeout;
    let _ = stream.set_write_timeout(Some(timeout));
    let mut reader = http::Reader::default();
    let mut deadline = Instant::now() + timeout;
    for served in 1.. {
        let request =
            match reader.read_request(&mut stream, deadline, state.settings.max_body_bytes) {
                Ok(request) => request,
                Err(http::ReadError::Closed) => return,
                Err(http::ReadError::Timeout) => {
                    let message = format!(
                        "the request did not arrive within {} s",
                        timeout.as_secs_f32()
                    );
                    return reply(&mut stream, Err(ApiError::new(408, message)), false);
                }
                Err(http::ReadError::TooLarge(limit)) => {
                    let message = format!("request body larger than {limit} bytes");
                    return reply(&mut stream, Err(ApiError::new(413, message)), false);
                }
                Err(http::ReadError::Malformed(message)) => {
                    return reply(&mut stream, Err(ApiError::invalid(None, message)), false);
                }
            };
        let keep_alive = !request.close && served < state.settings.max_requests_per_connection;
        match route(state, &mut stream, &request) {
            Ok(Some(body)) => reply(&mut stream, Ok(body), keep_alive),
            Err(error) => reply(&mut stream, Err(error), keep_alive),
            // Streamed (the stream ends the connection), or the client has gone.
            Ok(None) => return,
        }
        if !keep_alive {
            return;
        }
        let idle_until = Instant::now() + state.settings.keep_alive;
        if !reader.wait_for_request(&mut stream, idle_until) {
            return http::close(&mut stream);
        }
        deadline = Instant::now() + timeout;
    }
}

/// Answers one request: `Ok(Some)` a JSON body, `Ok(None)` when the answer has been streamed
/// or the client has gone.
fn route(
    state: &State,
    stream: &mut TcpStream,
    request: &http::Request,
) -> Result<Option<Value>, ApiError> {
    let path = request.path.as_str();
    match (request.method.as_str(), path) {
        ("GET", "/health") => Ok(Some(
            json!({"status": "ok", "weight_version": version(state)}),
        )),
        ("GET", "/get_weight_version") => Ok(Some(json!({"weight_version": version(state)}))),
        ("GET", "/v1/models") => {
            let base = &state.settings.model_name;
            let mut data = vec![json!({
                "id": base, "object": "model", "owned_by": "redraft", "created": now(),
            })];
            data.extend(adapter_names(state).into_iter().map(|name| {
                json!({"id": name, "object": "model", "owned_by": "redraft", "created": now(), "parent": base})
            }));
            Ok(Some(json!({"object": "list", "data": data})))
        }
        ("POST", "/v1/load_lora_adapter") => {
            let body: openai::LoadAdapter = parse(&request.body)?;
            if body.lora_name.is_empty() || body.lora_name == state.settings.model_name {
                return Err(ApiError::invalid(
                    Some("lora_name"),
                    "lora_name must be non-empty and differ from the served model's name",
                ));
            }
            let name = body.lora_name.clone();
            control(state, |reply| engine::Message::LoadAdapter {
                name: body.lora_name,
                path: body.lora_path,
                reply,
            })?;
            lock(&state.adapters).insert(name.clone());
            Ok(Some(
                json!({"status": "ok", "message": format!("LoRA adapter `{name}` loaded")}),
            ))
        }
        ("POST", "/v1/unload_lora_adapter") => {
            let body: openai::UnloadAdapter = parse(&request.body)?;
            let name = body.lora_name.clone();
            control(state, |reply| engine::Message::UnloadAdapter {
                name: body.lora_name,
                reply,
            })
            .map_err(|e| ApiError::new(404, e.message))?;
            lock(&state.adapters).remove(&name);
            Ok(Some(
                json!({"status": "ok", "message": format!("LoRA adapter `{name}` unloaded")}),
            ))
        }
        ("POST", "/update_weights_from_disk") => {
            let body: openai::UpdateWeights = parse(&request.body)?;
            let updated = control(state, |reply| engine::Message::UpdateWeights {
                path: body.model_path,
                version: body.weight_version,
                reply,
            });
            match updated {
                Ok(version) => {
                    *lock(&state.weight_version) = version.clone();
                    Ok(Some(json!({
                        "success": true,
                        "message": "Succeeded to update model weights.",
                        "weight_version": version,
                    })))
                }
                Err(error) => Err(ApiError::new(400, error.message)),
            }
        }
        ("POST", "/v1/completions" | "/v1/chat/completions") => {
            if state.in_flight.fetch_add(1, Ordering::SeqCst) >= state.settings.max_in_flight {
                state.in_flight.fetch_sub(1, Ordering::SeqCst);
                return Err(ApiError::new(
                    503,
                    "too many requests in flight; retry later",
                ));
            }
            let answer = if path == "/v1/completions" {
                parse(&request.body).and_then(|body| completions(state, stream, body))
            } else {
                parse(&request.body).and_then(|body| chat(state, stream, body))
            };
            state.in_flight.fetch_sub(1, Ordering::SeqCst);
            answer
        }
        (
            _,
            "/health"
            | "/get_weight_version"
            | "/v1/models"
            | "/v1/completions"
            | "/v1/chat/completions"
            | "/v1/load_lora_adapter"
            | "/v1/unload_lora_adapter"
            | "/update_weights_from_disk",
        ) => Err(ApiError::new(405, format!("method not allowed on {path}"))),
        _ => Err(ApiError::new(404, format!("no route {path}"))),
    }
}

/// Sends the engine a control message and waits for its answer (a 400 naming what failed).
fn control<T>(
    state: &State,
    message: impl FnOnce(Sender<Result<T, String>>) -> engine::Message,
) -> Result<T, ApiError> {
    let (reply, answer) = mpsc::channel();
    state
        .jobs
        .send(message(reply))
        .map_err(|_| engine_stopped())?;
    answer
        .recv()
        .map_err(|_| engine_stopped())?
        .map_err(|e| ApiError::invalid(None, e))
}

/// The lock's value, even if a thread panicked holding it (the values stay consistent).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn version(state: &State) -> String {
    lock(&state.weight_version).clone()
}

fn adapter_names(state: &State) -> Vec<String> {
    lock(&state.adapters).iter().cloned().collect()
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

/// A request's job, queued or running: its tokens arrive on `events`.
struct Running {
    events: Receiver<engine::Event>,
    cancelled: Arc<AtomicBool>,
    choices: usize,
    prompt: Vec<u32>,
    /// When the client's connection was last checked.
    checked: Cell<Instant>,
}

impl Running {
    /// The next event; `None` when the client on `stream` has hung up (the job is then
    /// cancelled: its rows end at the next decode step). The connection is checked every
    /// `HANG_UP_POLL`, whether tokens are arriving or not.
    fn next(&self, stream: &TcpStream) -> Result<Option<engine::Event>, ApiError> {
        loop {
            if self.checked.get().elapsed() >= HANG_UP_POLL {
                self.checked.set(Instant::now());
                if http::hung_up(stream) {
                    self.cancel();
                    return Ok(None);
                }
            }
            match self.events.recv_timeout(HANG_UP_POLL) {
                Ok(event) => return Ok(Some(event)),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Err(engine_stopped()),
            }
        }
    }

    fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
    }
}

fn engine_stopped() -> ApiError {
    ApiError::new(500, "the sampling engine has stopped")
}

/// Validates the shared parameters, turns them into one row per choice (asking for `top`
/// alternatives per token) and queues them.
fn sample(
    state: &State,
    prompt: Vec<u32>,
    common: &Common,
    default_max: usize,
    top: usize,
) -> Result<Running, ApiError> {
    common.refuse_unsupported()?;
    let adapter = match common
        .model
        .as_ref()
        .filter(|m| **m != state.settings.model_name)
    {
        None => None,
        Some(name) if lock(&state.adapters).contains(name) => Some(name.clone()),
        Some(model) => {
            let mut served = vec![state.settings.model_name.clone()];
            served.extend(adapter_names(state));
            return Err(ApiError::new(
                404,
                format!(
                    "model `{model}` is not served here (serving {})",
                    served
                        .iter()
                        .map(|m| format!("`{m}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    };
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
    let top_k = match common.top_k {
        None | Some(-1 | 0) => 0,
        Some(k) if k > 0 => usize::try_from(k).unwrap_or(usize::MAX),
        Some(k) => {
            return Err(ApiError::invalid(
                Some("top_k"),
                format!("top_k must be -1, 0 (all tokens) or positive, got {k}"),
            ));
        }
    };
    let mut stop_tokens = if common.ignore_eos == Some(true) {
        Vec::new()
    } else {
        state.stop_tokens.clone()
    };
    let extra_stops = common.stop_token_ids.clone().unwrap_or_default();
    if let Some(bad) = extra_stops
        .iter()
        .find(|&&id| id as usize >= state.config.vocab_size)
    {
        return Err(ApiError::invalid(
            Some("stop_token_ids"),
            format!(
                "token id {bad} is outside the vocabulary of {}",
                state.config.vocab_size
            ),
        ));
    }
    stop_tokens.extend(extra_stops);
    stop_tokens.sort_unstable();
    stop_tokens.dedup();
    let params = SamplingParams {
        temperature,
        top_p: common.top_p.unwrap_or(1.0),
        top_k,
        min_p: common.min_p.unwrap_or(0.0),
        max_new_tokens: max_tokens,
        stop_tokens,
        vocab_limit: Some(state.tokenizer.vocab_size()),
        top_logprobs: top,
        ..SamplingParams::default()
    };
    params.validate().map_err(|e| match e {
        redraft::rollout::Error::InvalidParam { name, reason } => {
            ApiError::invalid(Some(name), format!("`{name}` {reason}"))
        }
        other => ApiError::invalid(None, other.to_string()),
    })?;
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
    let first = match &common.rng_state {
        Some(state) => {
            Some(rng_from_state(state).map_err(|e| ApiError::invalid(Some("rng_state"), e))?)
        }
        None => None,
    };
    let seed = common
        .seed
        .unwrap_or_else(|| state.next_seed.fetch_add(1, Ordering::SeqCst));
    let rows = (0..n)
        .map(|i| RowRequest {
            prompt: prompt.clone(),
            params: params.clone(),
            rng: match &first {
                Some(rng) => {
                    let mut rng = rng.clone();
                    rng.set_stream(rng.get_stream().wrapping_add(i as u64));
                    rng
                }
                None => row_rng(seed, i),
            },
        })
        .collect();
    let (events, receiver) = mpsc::channel();
    let cancelled = Arc::new(AtomicBool::new(false));
    state
        .jobs
        .send(engine::Message::Sample(engine::Job {
            adapter,
            rows,
            stop,
            cancelled: Arc::clone(&cancelled),
            events,
        }))
        .map_err(|_| engine_stopped())?;
    Ok(Running {
        events: receiver,
        cancelled,
        choices: n,
        prompt,
        checked: Cell::new(Instant::now()),
    })
}

/// One choice, gathered token by token.
#[derive(Debug, Default)]
struct Choice {
    tokens: Vec<u32>,
    logprobs: Vec<f32>,
    top_logprobs: Vec<Vec<(u32, f32)>>,
    text: String,
    finish: Option<FinishReason>,
}

impl Choice {
    fn add(&mut self, token: engine::Token) {
        self.tokens.push(token.id);
        self.logprobs.push(token.logprob);
        self.top_logprobs.push(token.top_logprobs);
        self.text.push_str(&token.text);
        self.finish = token.finish;
    }

    /// OpenAI's name of the finish reason; a choice that ended without one ended at its
    /// length.
    fn finish_reason(&self) -> &'static str {
        finish_name(self.finish)
    }
}

fn finish_name(finish: Option<FinishReason>) -> &'static str {
    match finish {
        Some(FinishReason::Stop) => "stop",
        Some(FinishReason::Length) | None => "length",
    }
}

/// What a job sampled: its choices and the version of the weights that sampled them.
struct Followed {
    choices: Vec<Choice>,
    weight_version: Option<String>,
}

/// Follows a job to its end, calling `each(token)` on every token as it arrives; `Ok(None)`
/// when the client hung up or `each` failed (the client left while being written to): the job
/// is then cancelled.
fn follow(
    running: &Running,
    stream: &TcpStream,
    mut each: impl FnMut(&engine::Token) -> std::io::Result<()>,
) -> Result<Option<Followed>, ApiError> {
    let mut choices: Vec<Choice> = (0..running.choices).map(|_| Choice::default()).collect();
    let mut weight_version = None;
    while choices.iter().any(|c| c.finish.is_none()) {
        match running.next(stream)? {
            None => return Ok(None),
            Some(engine::Event::Token(token)) => {
                if each(&token).is_err() {
                    running.cancel();
                    return Ok(None);
                }
                choices[token.choice].add(token);
            }
            Some(engine::Event::Started { weight_version: v }) => weight_version = Some(v),
            Some(engine::Event::Done(Ok(()))) => break,
            Some(engine::Event::Done(Err(error))) => {
                return Err(ApiError::new(500, format!("sampling failed: {error}")));
            }
        }
    }
    Ok(Some(Followed {
        choices,
        weight_version,
    }))
}

fn usage(prompt_tokens: usize, choices: &[Choice]) -> Value {
    let completion_tokens: usize = choices.iter().map(|c| c.tokens.len()).sum();
    json!({"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens})
}

/// How an endpoint writes its answers.
enum Format {
    /// `/v1/chat/completions`, with each token's log-prob when `logprobs`.
    Chat { logprobs: bool, ids: Ids },
    /// `/v1/completions`, with log-probs when `logprobs` is given (`Some(0)`: the sampled
    /// tokens' only; `Some(k)`: `k` alternatives per token).
    Completions { logprobs: Option<u32>, ids: Ids },
}

/// How an answer shows token ids (vLLM's extensions, for trainers that need the exact tokens).
#[derive(Debug, Clone, Copy, Default)]
struct Ids {
    /// Tokens in `logprobs` are written `token_id:N` (`return_tokens_as_token_ids`).
    as_names: bool,
    /// Each choice lists its `token_ids`, the answer its `prompt_token_ids`
    /// (`return_token_ids`).
    listed: bool,
}

impl Ids {
    fn of(common: &Common) -> Self {
        Self {
            as_names: common.return_tokens_as_token_ids == Some(true),
            listed: common.return_token_ids == Some(true),
        }
    }

    /// How token `id` is named in `logprobs`.
    fn name(self, state: &State, id: u32) -> String {
        if self.as_names {
            format!("token_id:{id}")
        } else {
            token_text(state, id)
        }
    }
}

impl Format {
    fn ids(&self) -> Ids {
        match self {
            Self::Chat { ids, .. } | Self::Completions { ids, .. } => *ids,
        }
    }

    /// The fields every body or chunk of the answer starts with.
    fn envelope(&self, state: &State, streams: bool) -> Value {
        let id = state.next_id.fetch_add(1, Ordering::SeqCst);
        let (id, object) = match self {
            Self::Chat { .. } if streams => (format!("chatcmpl-{id}"), "chat.completion.chunk"),
            Self::Chat { .. } => (format!("chatcmpl-{id}"), "chat.completion"),
            Self::Completions { .. } => (format!("cmpl-{id}"), "text_completion"),
        };
        json!({"id": id, "object": object, "created": now(), "model": state.settings.model_name})
    }

    /// The whole answer's `choices`.
    fn choices(&self, state: &State, choices: &[Choice]) -> Value {
        choices
            .iter()
            .enumerate()
            .map(|(i, c)| match self {
                Self::Chat { logprobs, ids } => json!({
                    "index": i,
                    "message": {"role": "assistant", "content": c.text},
                    "finish_reason": c.finish_reason(),
                    "logprobs": if *logprobs {
                        json!({"content": (0..c.tokens.len())
                            .map(|t| chat_logprob(state, *ids, c.tokens[t], c.logprobs[t], c.top_logprobs.get(t)))
                            .collect::<Vec<_>>()})
                    } else { Value::Null },
                }),
                Self::Completions { logprobs, ids } => json!({
                    "index": i,
                    "text": c.text,
                    "finish_reason": c.finish_reason(),
                    "logprobs": logprobs.map(|k| completion_logprobs(state, *ids, c, 0..c.tokens.len(), k > 0, 0)),
                }),
            })
            .zip(choices)
            .map(|(mut value, c)| {
                if self.ids().listed {
                    value["token_ids"] = json!(c.tokens);
                }
                value
            })
            .collect()
    }

    /// The chunk that opens choice `i` of a stream (chat: the role), if any.
    fn opening(&self, i: usize) -> Option<Value> {
        match self {
            Self::Chat { .. } => Some(
                json!({"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}),
            ),
            Self::Completions { .. } => None,
        }
    }

    /// The chunk of one token, whose text starts at `offset` in its choice's tokens' texts.
    fn token(&self, state: &State, token: &engine::Token, offset: usize) -> Value {
        let i = token.choice;
        let mut value = match self {
            Self::Chat { logprobs, ids } => json!({
                "index": i, "delta": {"content": token.text}, "finish_reason": null,
                "logprobs": if *logprobs {
                    json!({"content": [chat_logprob(state, *ids, token.id, token.logprob, Some(&token.top_logprobs))]})
                } else { Value::Null },
            }),
            Self::Completions { logprobs, ids } => {
                let single = Choice {
                    tokens: vec![token.id],
                    logprobs: vec![token.logprob],
                    top_logprobs: vec![token.top_logprobs.clone()],
                    ..Choice::default()
                };
                json!({
                    "index": i, "text": token.text, "finish_reason": null,
                    "logprobs": logprobs.map(|k| completion_logprobs(state, *ids, &single, 0..1, k > 0, offset)),
                })
            }
        };
        if self.ids().listed {
            value["token_ids"] = json!([token.id]);
        }
        value
    }

    /// The chunk that closes choice `i` with its finish reason.
    fn closing(&self, i: usize, finish: Option<FinishReason>) -> Value {
        let reason = finish_name(finish);
        match self {
            Self::Chat { .. } => {
                json!({"index": i, "delta": {}, "logprobs": null, "finish_reason": reason})
            }
            Self::Completions { .. } => {
                json!({"index": i, "text": "", "logprobs": null, "finish_reason": reason})
            }
        }
    }
}

/// How a sampled token is shown: its text alone, lossily decoded (special tokens by their
/// spelling).
fn token_text(state: &State, id: u32) -> String {
    state.tokenizer.decode(&[id], false).unwrap_or_default()
}

/// One entry of a chat answer's `logprobs.content`: the token, its log-prob, its real bytes
/// (never U+FFFD's for a token that is not a character alone) and its alternatives.
fn chat_logprob(
    state: &State,
    ids: Ids,
    id: u32,
    logprob: f32,
    top: Option<&Vec<(u32, f32)>>,
) -> Value {
    let entry = |id: u32, logprob: f32| json!({"token": ids.name(state, id), "logprob": logprob, "bytes": state.tokenizer.token_bytes(id)});
    let mut value = entry(id, logprob);
    value["top_logprobs"] = top
        .map(|top| top.iter().map(|&(id, l)| entry(id, l)).collect())
        .unwrap_or_default();
    value
}

/// The legacy `logprobs` object of tokens `range` of a choice (text offsets from `offset`);
/// with `alternatives`, `top_logprobs` holds a {token: log-prob} map per token.
fn completion_logprobs(
    state: &State,
    ids: Ids,
    choice: &Choice,
    range: std::ops::Range<usize>,
    alternatives: bool,
    offset: usize,
) -> Value {
    let tokens: Vec<String> = choice.tokens[range.clone()]
        .iter()
        .map(|&t| ids.name(state, t))
        .collect();
    // Offsets into the text, whatever the tokens are named.
    let offsets: Vec<usize> = choice.tokens[range.clone()]
        .iter()
        .scan(offset, |at, &t| {
            let start = *at;
            *at += token_text(state, t).len();
            Some(start)
        })
        .collect();
    let top = if alternatives {
        choice.top_logprobs[range.clone()]
            .iter()
            .map(|top| {
                top.iter()
                    .map(|&(id, l)| (ids.name(state, id), json!(l)))
                    .collect::<serde_json::Map<_, _>>()
            })
            .collect()
    } else {
        Value::Null
    };
    json!({"tokens": tokens, "token_logprobs": &choice.logprobs[range], "top_logprobs": top, "text_offset": offsets})
}

/// Answers a queued job: as one JSON body, or (`stream: true`) as server-sent events written
/// as the tokens are sampled. `Ok(None)`: the client has gone (or the stream is already
/// written), nothing more to send.
fn answer(
    state: &State,
    stream: &mut TcpStream,
    running: Running,
    format: Format,
    common: &Common,
) -> Result<Option<Value>, ApiError> {
    if !common.streams() {
        let Some(followed) = follow(&running, stream, |_| Ok(()))? else {
            return Ok(None);
        };
        let choices = &followed.choices;
        let mut body = format.envelope(state, false);
        body["usage"] = usage(running.prompt.len(), choices);
        body["choices"] = format.choices(state, choices);
        body["weight_version"] = json!(followed.weight_version);
        if format.ids().listed {
            body["prompt_token_ids"] = json!(running.prompt);
        }
        return Ok(Some(body));
    }
    let envelope = format.envelope(state, true);
    let include_usage = common.stream_usage();
    let chunk = |choice: Value| {
        let mut chunk = envelope.clone();
        chunk["choices"] = json!([choice]);
        if include_usage {
            chunk["usage"] = Value::Null;
        }
        chunk.to_string()
    };
    let opened = http::start_events(stream).and_then(|()| {
        (0..running.choices)
            .filter_map(|i| format.opening(i))
            .try_for_each(|c| http::send_event(stream, &chunk(c)))
    });
    if opened.is_err() {
        running.cancel();
        return Ok(None);
    }
    let mut writer = stream
        .try_clone()
        .map_err(|e| ApiError::new(500, e.to_string()))?;
    let mut offsets = vec![0; running.choices];
    let followed = follow(&running, stream, |token| {
        let offset = offsets[token.choice];
        offsets[token.choice] += token_text(state, token.id).len();
        http::send_event(&mut writer, &chunk(format.token(state, token, offset)))?;
        match token.finish {
            Some(finish) => http::send_event(
                &mut writer,
                &chunk(format.closing(token.choice, Some(finish))),
            ),
            None => Ok(()),
        }
    });
    let sent = match followed {
        Ok(None) => return Ok(None),
        Ok(Some(Followed { choices, .. })) => choices
            .iter()
            .enumerate()
            .filter(|(_, c)| c.finish.is_none())
            .try_for_each(|(i, _)| http::send_event(stream, &chunk(format.closing(i, None))))
            .and_then(|()| {
                if include_usage {
                    let mut last = envelope.clone();
                    last["choices"] = json!([]);
                    last["usage"] = usage(running.prompt.len(), &choices);
                    http::send_event(stream, &last.to_string())
                } else {
                    Ok(())
                }
            }),
        // Too late for a status code: the error is the stream's last event.
        Err(error) => http::send_event(stream, &error.body().to_string()),
    };
    if sent
        .and_then(|()| http::send_event(stream, "[DONE]"))
        .is_ok()
    {
        http::close(stream);
    }
    Ok(None)
}

fn completions(
    state: &State,
    stream: &mut TcpStream,
    request: CompletionRequest,
) -> Result<Option<Value>, ApiError> {
    if request
        .logprobs
        .is_some_and(|k| k > MAX_COMPLETION_LOGPROBS)
    {
        return Err(ApiError::invalid(
            Some("logprobs"),
            format!("logprobs must be between 0 and {MAX_COMPLETION_LOGPROBS}"),
        ));
    }
    if request.common.top_logprobs.is_some_and(|k| k > 0) {
        return Err(ApiError::invalid(
            Some("top_logprobs"),
            "`top_logprobs` is a chat parameter; completions take `logprobs: N`",
        ));
    }
    let prompt = match request.prompt {
        Prompt::Tokens(ids) => ids,
        Prompt::Text(text) => encode_text(state.tokenizer.as_ref(), &text)
            .map_err(|e| ApiError::invalid(Some("prompt"), e.to_string()))?,
    };
    let top = request.logprobs.unwrap_or(0) as usize;
    let running = sample(state, prompt, &request.common, 16, top)?;
    let format = Format::Completions {
        logprobs: request.logprobs,
        ids: Ids::of(&request.common),
    };
    answer(state, stream, running, format, &request.common)
}

fn chat(
    state: &State,
    stream: &mut TcpStream,
    request: ChatRequest,
) -> Result<Option<Value>, ApiError> {
    if request.messages.is_empty() {
        return Err(ApiError::invalid(
            Some("messages"),
            "messages must not be empty",
        ));
    }
    let logprobs = request.logprobs.unwrap_or(false);
    let top = request.common.top_logprobs.unwrap_or(0);
    if top > MAX_TOP_LOGPROBS {
        return Err(ApiError::invalid(
            Some("top_logprobs"),
            format!("top_logprobs must be between 0 and {MAX_TOP_LOGPROBS}"),
        ));
    }
    if top > 0 && !logprobs {
        return Err(ApiError::invalid(
            Some("top_logprobs"),
            "top_logprobs needs `logprobs: true`",
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
    let running = sample(state, prompt, &request.common, default_max, top as usize)?;
    answer(
        state,
        stream,
        running,
        Format::Chat {
            logprobs,
            ids: Ids::of(&request.common),
        },
        &request.common,
    )
}
