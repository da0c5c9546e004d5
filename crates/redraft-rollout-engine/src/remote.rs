//! A [`Policy`] whose samples come from OpenAI-compatible inference servers (vLLM, SGLang,
//! `redraft serve`), token in and token out: each row is one `/v1/completions` request with a
//! token-id prompt, answered with the sampled token ids and their log-probs
//! (`return_token_ids`, `logprobs`), so multi-turn training keeps exactly the sampled tokens.
//!
//! Requests go to the ready server with the least outstanding work (prompt + budget tokens in
//! flight); one that fails (connection, timeout, 5xx, a malformed answer) is taken out of use and
//! the request retried on another. A server is *ready* once it holds the weights the trainer last
//! synced ([`RemotePolicy::sync_adapter`], [`RemotePolicy::sync_weights`]); one whose sync failed,
//! or that answers with another weight version or without the synced adapter, is not used until
//! a later sync reaches it. When no server is left, sampling fails with an error naming each
//! server and why it is out.
//!
//! Each row's generator travels with it (`rng_state`, a redraft extension: the ChaCha8 seed,
//! stream and position), so `redraft serve` draws exactly the tokens the in-process sampler
//! would; servers without the extension get a `seed` derived from it.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::policy::Policy;
use crate::sampling::{Completion, FinishReason, RowRequest};

/// Where the servers are and how requests to them behave.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteOptions {
    /// Base URLs of the OpenAI-compatible APIs, e.g. `http://10.0.0.2:8000/v1`.
    pub servers: Vec<String>,
    /// Longest wait for one request (or one sync call) before the server is taken out.
    pub timeout: Duration,
    /// Servers tried for one row before the step fails.
    pub max_attempts: usize,
    /// Requests in flight per server.
    pub max_concurrency: usize,
}

/// Why a server is not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerStatus {
    /// Synced and answering.
    Ready,
    /// Not synced to the current weights yet (a failed sync, or another version answered).
    Stale(String),
    /// Failed a request (connection, timeout, server error): out until the next sync.
    Down(String),
}

#[derive(Debug)]
struct Server {
    /// The base URL of the OpenAI API, without a trailing `/` (e.g. `http://h:8000/v1`).
    url: String,
    /// The server's root, where SGLang's `/update_weights_from_disk` lives (`url` less `/v1`).
    root: String,
    /// Prompt + budget tokens of the requests in flight.
    load: AtomicUsize,
    status: Mutex<ServerStatus>,
    /// The name the server serves its base model under (`/v1/models`), learnt on first use.
    base: Mutex<Option<String>>,
}

impl Server {
    fn status(&self) -> ServerStatus {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set(&self, status: ServerStatus) {
        if status != ServerStatus::Ready {
            tracing::warn!(server = %self.url, ?status, "rollout server out of use");
        }
        *self.status.lock().unwrap_or_else(|e| e.into_inner()) = status;
    }
}

/// What every answer must come from: the synced adapter (requests name it as their model) or
/// base weights of a version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Target {
    adapter: Option<String>,
    version: Option<String>,
}

/// The policy served by a fleet of inference servers.
#[derive(Debug)]
pub struct RemotePolicy {
    agent: ureq::Agent,
    servers: Vec<Server>,
    options: RemoteOptions,
    context: usize,
    target: RwLock<Target>,
    retries: AtomicU64,
}

/// How one request failed.
enum Failure {
    /// The server is unusable (connection, timeout, server error, malformed answer).
    Down(String),
    /// The server does not hold the synced weights.
    Stale(String),
    /// The request itself is wrong: no server would answer it.
    Refused(String),
}

impl RemotePolicy {
    /// A policy over `options.servers` for a model of `context` positions. Nothing is sent
    /// until the first sync or request; every server starts ready (serving what it was started
    /// with) until a sync says otherwise.
    ///
    /// # Errors
    /// No server, a URL that is not `http://` or `https://`, a zero timeout, attempt count or
    /// concurrency.
    pub fn new(options: RemoteOptions, context: usize) -> Result<Self> {
        let bad = |name, reason: String| Err(Error::InvalidParam { name, reason });
        if options.servers.is_empty() {
            return bad("servers", "at least one server URL is needed".into());
        }
        for url in &options.servers {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return bad(
                    "servers",
                    format!("`{url}` is not an http:// or https:// URL"),
                );
            }
        }
        if options.timeout.is_zero() {
            return bad("timeout_s", "must be above 0".into());
        }
        if options.max_attempts == 0 {
            return bad("max_attempts", "must be at least 1".into());
        }
        if options.max_concurrency == 0 {
            return bad("max_concurrency", "must be at least 1".into());
        }
        let servers = options
            .servers
            .iter()
            .map(|url| {
                let url = url.trim_end_matches('/').to_string();
                let root = url.strip_suffix("/v1").unwrap_or(&url).to_string();
                Server {
                    url,
                    root,
                    load: AtomicUsize::new(0),
                    status: Mutex::new(ServerStatus::Ready),
                    base: Mutex::new(None),
                }
            })
            .collect();
        let agent = ureq::AgentBuilder::new()
            .timeout(options.timeout)
            .max_idle_connections_per_host(options.max_concurrency)
            .build();
        Ok(Self {
            agent,
            servers,
            options,
            context,
            target: RwLock::new(Target::default()),
            retries: AtomicU64::new(0),
        })
    }

    /// Each server's URL and status.
    pub fn servers(&self) -> Vec<(String, ServerStatus)> {
        self.servers
            .iter()
            .map(|s| (s.url.clone(), s.status()))
            .collect()
    }

    /// Requests retried on another server since the last call (then 0 again).
    pub fn take_retries(&self) -> u64 {
        self.retries.swap(0, Ordering::Relaxed)
    }

    /// Loads the PEFT adapter folder `path` on every server as model `name` (vLLM's and
    /// `redraft serve`'s `POST /v1/load_lora_adapter`), unloading `previous` after; requests
    /// then name `name`. Servers it fails on are stale until a later sync reaches them.
    ///
    /// # Errors
    /// [`Error::NoServer`] when no server took the adapter.
    pub fn sync_adapter(&self, name: &str, path: &Path, previous: Option<&str>) -> Result<usize> {
        let path = path.display().to_string();
        let synced = self.sync_each(|server| {
            let unload = |n: &str| {
                self.post(&server.url, "/unload_lora_adapter", &json!({"lora_name": n}))
            };
            // A name loaded before (by a run now resumed) is replaced, not refused.
            let _ = unload(name);
            self.post(
                &server.url,
                "/load_lora_adapter",
                &json!({"lora_name": name, "lora_path": path}),
            )?;
            if let Some(old) = previous.filter(|o| *o != name)
                && let Err(e) = unload(old)
            {
                tracing::warn!(server = %server.url, error = %e.message(), "old adapter not unloaded");
            }
            Ok(())
        });
        *self.target.write().unwrap_or_else(|e| e.into_inner()) = Target {
            adapter: Some(name.to_string()),
            version: None,
        };
        synced
    }

    /// Makes every server reload its base weights from the model folder `path` as `version`
    /// (SGLang's and `redraft serve`'s `POST /update_weights_from_disk`). Servers it fails on,
    /// or that answer another version, are stale until a later sync reaches them.
    ///
    /// # Errors
    /// [`Error::NoServer`] when no server took the weights.
    pub fn sync_weights(&self, path: &Path, version: &str) -> Result<usize> {
        let path = path.display().to_string();
        let synced = self.sync_each(|server| {
            let answer = self.post(
                &server.root,
                "/update_weights_from_disk",
                &json!({"model_path": path, "weight_version": version}),
            )?;
            if answer.get("success").and_then(Value::as_bool) == Some(false) {
                return Err(Failure::Stale(format!(
                    "refused the weights: {}",
                    answer.get("message").unwrap_or(&Value::Null)
                )));
            }
            match answer.get("weight_version").and_then(Value::as_str) {
                Some(v) if v != version => Err(Failure::Stale(format!(
                    "answered weight version `{v}`, not `{version}`"
                ))),
                _ => Ok(()),
            }
        });
        *self.target.write().unwrap_or_else(|e| e.into_inner()) = Target {
            adapter: None,
            version: Some(version.to_string()),
        };
        synced
    }

    /// Runs `sync` on every server at once; a server is ready after it, stale when it failed.
    fn sync_each(
        &self,
        sync: impl Fn(&Server) -> std::result::Result<(), Failure> + Sync,
    ) -> Result<usize> {
        std::thread::scope(|scope| {
            for server in &self.servers {
                let sync = &sync;
                scope.spawn(move || match sync(server) {
                    Ok(()) => server.set(ServerStatus::Ready),
                    Err(f) => server.set(ServerStatus::Stale(f.message())),
                });
            }
        });
        let ready = self
            .servers
            .iter()
            .filter(|s| s.status() == ServerStatus::Ready)
            .count();
        if ready == 0 {
            return Err(self.no_server());
        }
        Ok(ready)
    }

    fn no_server(&self) -> Error {
        Error::NoServer(
            self.servers
                .iter()
                .map(|s| match s.status() {
                    ServerStatus::Ready => format!("{}: ready", s.url),
                    ServerStatus::Stale(why) => format!("{}: stale ({why})", s.url),
                    ServerStatus::Down(why) => format!("{}: down ({why})", s.url),
                })
                .collect::<Vec<_>>()
                .join("; "),
        )
    }

    /// POSTs `body` to `base` + `path`; the answer's JSON (or its text as a JSON string).
    fn post(&self, base: &str, path: &str, body: &Value) -> std::result::Result<Value, Failure> {
        let url = format!("{base}{path}");
        match self.agent.post(&url).send_json(body) {
            Ok(resp) => {
                let text = resp
                    .into_string()
                    .map_err(|e| Failure::Down(format!("reading the answer of {url}: {e}")))?;
                Ok(serde_json::from_str(&text).unwrap_or(Value::String(text)))
            }
            Err(ureq::Error::Status(status, resp)) => {
                let text = resp.into_string().unwrap_or_default();
                let message = serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|v| {
                        v.pointer("/error/message")
                            .or_else(|| v.get("message"))
                            .or_else(|| v.get("detail"))
                            .and_then(Value::as_str)
                            .map(str::to_string)
                    })
                    .unwrap_or(text);
                let message = format!("{url} answered {status}: {message}");
                Err(match status {
                    404 => Failure::Stale(message),
                    408 | 429 | 500.. => Failure::Down(message),
                    _ => Failure::Refused(message),
                })
            }
            Err(ureq::Error::Transport(t)) => Err(Failure::Down(format!("{url}: {t}"))),
        }
    }

    /// The model name to request from `server`: the synced adapter, else its base model
    /// (the first model `/v1/models` lists without a parent).
    fn model_name(&self, server: &Server) -> std::result::Result<String, Failure> {
        if let Some(adapter) = self
            .target
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .adapter
            .clone()
        {
            return Ok(adapter);
        }
        let mut base = server.base.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(name) = base.as_ref() {
            return Ok(name.clone());
        }
        let url = format!("{}/models", server.url);
        let listed: Value = self
            .agent
            .get(&url)
            .call()
            .map_err(|e| Failure::Down(format!("/models: {e}")))?
            .into_json()
            .map_err(|e| Failure::Down(format!("/models answered no JSON: {e}")))?;
        let name = listed
            .get("data")
            .and_then(Value::as_array)
            .and_then(|models| {
                models
                    .iter()
                    .find(|m| m.get("parent").is_none_or(Value::is_null))
                    .and_then(|m| m.get("id"))
                    .and_then(Value::as_str)
            })
            .ok_or_else(|| Failure::Down("/models lists no base model".into()))?
            .to_string();
        *base = Some(name.clone());
        Ok(name)
    }

    /// One row on one server.
    fn complete(
        &self,
        server: &Server,
        row: &RowRequest,
    ) -> std::result::Result<Completion, Failure> {
        let model = self.model_name(server)?;
        let p = &row.params;
        let body = json!({
            "model": model,
            "prompt": row.prompt,
            "max_tokens": p.max_new_tokens,
            "temperature": p.temperature,
            "top_p": p.top_p,
            "top_k": if p.top_k == 0 { -1 } else { p.top_k as i64 },
            "min_p": p.min_p,
            "n": 1,
            "logprobs": 0,
            "return_token_ids": true,
            "return_tokens_as_token_ids": true,
            "stop_token_ids": p.stop_tokens,
            "ignore_eos": true,
            "seed": fallback_seed(&row.rng),
            "rng_state": rng_state(&row.rng),
        });
        let answer = self.post(&server.url, "/completions", &body)?;
        let expected = self
            .target
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .version
            .clone();
        if let (Some(expected), Some(got)) = (
            expected,
            answer.get("weight_version").and_then(Value::as_str),
        ) && got != expected
        {
            return Err(Failure::Stale(format!(
                "answered from weight version `{got}`, not `{expected}`"
            )));
        }
        parse_completion(&answer).map_err(Failure::Down)
    }

    /// Samples one row, retrying on other servers; `Err` when no server could answer it.
    fn sample_row(&self, row: &RowRequest) -> Result<Completion> {
        let cost = row.prompt.len() + row.params.max_new_tokens;
        let mut tried: Vec<usize> = Vec::new();
        let mut last = String::new();
        for attempt in 0..self.options.max_attempts {
            let Some(s) = self.pick(&tried) else {
                break;
            };
            if attempt > 0 {
                self.retries.fetch_add(1, Ordering::Relaxed);
            }
            let server = &self.servers[s];
            server.load.fetch_add(cost, Ordering::SeqCst);
            let result = self.complete(server, row);
            server.load.fetch_sub(cost, Ordering::SeqCst);
            match result {
                Ok(c) => return Ok(c),
                Err(Failure::Refused(why)) => {
                    return Err(Error::ServerRefused {
                        server: server.url.clone(),
                        reason: why,
                    });
                }
                Err(Failure::Down(why)) => {
                    last = why.clone();
                    server.set(ServerStatus::Down(why));
                }
                Err(Failure::Stale(why)) => {
                    last = why.clone();
                    server.set(ServerStatus::Stale(why));
                }
            }
            tried.push(s);
        }
        if tried.len() >= self.options.max_attempts {
            return Err(Error::NoServer(format!(
                "a request failed on {} servers (max_attempts), the last: {last}",
                tried.len()
            )));
        }
        Err(self.no_server())
    }

    /// The ready server with the least outstanding work, among those not `tried`.
    fn pick(&self, tried: &[usize]) -> Option<usize> {
        (0..self.servers.len())
            .filter(|i| !tried.contains(i) && self.servers[*i].status() == ServerStatus::Ready)
            .min_by_key(|&i| self.servers[i].load.load(Ordering::SeqCst))
    }
}

impl Failure {
    fn message(&self) -> String {
        match self {
            Self::Down(m) | Self::Stale(m) | Self::Refused(m) => m.clone(),
        }
    }
}

impl Policy for RemotePolicy {
    fn generate(
        &self,
        rows: Vec<RowRequest>,
        stop: &dyn Fn(usize, &[u32]) -> bool,
    ) -> Result<Vec<Completion>> {
        for row in &rows {
            row.params.validate()?;
        }
        let ready = self
            .servers
            .iter()
            .filter(|s| s.status() == ServerStatus::Ready)
            .count();
        if ready == 0 {
            return Err(self.no_server());
        }
        let queue: Mutex<VecDeque<usize>> = Mutex::new((0..rows.len()).collect());
        let results: Mutex<Vec<Option<Completion>>> = Mutex::new(vec![None; rows.len()]);
        let failed = AtomicBool::new(false);
        let first_error: Mutex<Option<Error>> = Mutex::new(None);
        let workers = rows.len().min(ready * self.options.max_concurrency);
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| {
                    while !failed.load(Ordering::SeqCst) {
                        let Some(i) = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front()
                        else {
                            break;
                        };
                        match self.sample_row(&rows[i]) {
                            Ok(c) => results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(c),
                            Err(e) => {
                                failed.store(true, Ordering::SeqCst);
                                first_error
                                    .lock()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .get_or_insert(e);
                            }
                        }
                    }
                });
            }
        });
        if let Some(e) = first_error.into_inner().unwrap_or_else(|e| e.into_inner()) {
            return Err(e);
        }
        let results = results.into_inner().unwrap_or_else(|e| e.into_inner());
        results
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                let mut c =
                    c.ok_or_else(|| Error::NoServer(format!("row {i} was left unanswered")))?;
                // Stop rules the server cannot know: the row ends at the first prefix they end.
                if let Some(k) = (1..=c.tokens.len()).find(|&k| stop(i, &c.tokens[..k])) {
                    c.tokens.truncate(k);
                    c.logprobs.truncate(k);
                    c.finish_reason = FinishReason::Stop;
                }
                Ok(c)
            })
            .collect()
    }

    fn max_context(&self) -> usize {
        self.context
    }
}

/// The exact state of a row's generator: `{seed: 64 hex digits, stream, word_pos}`.
pub fn rng_state(rng: &ChaCha8Rng) -> Value {
    let seed: String = rng.get_seed().iter().map(|b| format!("{b:02x}")).collect();
    json!({"seed": seed, "stream": rng.get_stream(), "word_pos": rng.get_word_pos()})
}

/// The generator an [`rng_state`] describes.
///
/// # Errors
/// A message naming the field that is missing or malformed.
pub fn rng_from_state(state: &Value) -> std::result::Result<ChaCha8Rng, String> {
    use rand::SeedableRng;
    let hex = state
        .get("seed")
        .and_then(Value::as_str)
        .ok_or("`rng_state.seed` must be a string of 64 hex digits")?;
    if hex.len() != 64 || !hex.is_ascii() {
        return Err("`rng_state.seed` must be a string of 64 hex digits".into());
    }
    let mut seed = [0u8; 32];
    for (i, b) in seed.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
            .map_err(|_| "`rng_state.seed` must be a string of 64 hex digits".to_string())?;
    }
    let stream = state
        .get("stream")
        .and_then(Value::as_u64)
        .ok_or("`rng_state.stream` must be an unsigned integer")?;
    let word_pos = match state.get("word_pos") {
        None => 0,
        Some(v) => v
            .as_u64()
            .map(u128::from)
            .or_else(|| serde_json::from_value::<u128>(v.clone()).ok())
            .ok_or("`rng_state.word_pos` must be an unsigned integer")?,
    };
    let mut rng = ChaCha8Rng::from_seed(seed);
    rng.set_stream(stream);
    rng.set_word_pos(word_pos);
    Ok(rng)
}

/// A plain `seed` for servers without `rng_state`: the same row always gets the same one.
fn fallback_seed(rng: &ChaCha8Rng) -> u64 {
    let seed = rng.get_seed();
    let mut head = [0u8; 8];
    head.copy_from_slice(&seed[..8]);
    (u64::from_le_bytes(head) ^ rng.get_stream().wrapping_mul(0x9E37_79B9_7F4A_7C15)) >> 1
}

/// The completion of an unstreamed `/v1/completions` answer with one choice: token ids from
/// `token_ids` (vLLM's `return_token_ids`) or from `token_id:N` names in `logprobs.tokens`
/// (`return_tokens_as_token_ids`), log-probs from `logprobs.token_logprobs`.
fn parse_completion(answer: &Value) -> std::result::Result<Completion, String> {
    let choice = answer
        .pointer("/choices/0")
        .ok_or("the answer has no choices[0]")?;
    let logprobs: Vec<f32> = choice
        .pointer("/logprobs/token_logprobs")
        .and_then(Value::as_array)
        .ok_or("choices[0].logprobs.token_logprobs is missing")?
        .iter()
        .map(|v| v.as_f64().map(|x| x as f32))
        .collect::<Option<_>>()
        .ok_or("choices[0].logprobs.token_logprobs holds a non-number")?;
    let tokens: Vec<u32> = match choice.get("token_ids").and_then(Value::as_array) {
        Some(ids) => ids
            .iter()
            .map(|v| v.as_u64().and_then(|x| u32::try_from(x).ok()))
            .collect::<Option<_>>()
            .ok_or("choices[0].token_ids holds a non-id")?,
        None => choice
            .pointer("/logprobs/tokens")
            .and_then(Value::as_array)
            .ok_or("the answer has neither choices[0].token_ids nor logprobs.tokens")?
            .iter()
            .map(|v| {
                v.as_str()
                    .and_then(|s| s.strip_prefix("token_id:"))
                    .and_then(|n| n.parse().ok())
            })
            .collect::<Option<_>>()
            .ok_or("logprobs.tokens are not `token_id:N` (return_tokens_as_token_ids)")?,
    };
    if tokens.len() != logprobs.len() {
        return Err(format!(
            "{} token ids but {} log-probs",
            tokens.len(),
            logprobs.len()
        ));
    }
    let finish_reason = match choice.get("finish_reason").and_then(Value::as_str) {
        Some("length") => FinishReason::Length,
        Some("stop") => FinishReason::Stop,
        other => return Err(format!("unknown finish_reason {other:?}")),
    };
    Ok(Completion {
        tokens,
        logprobs,
        finish_reason,
        top_logprobs: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampling::row_rng;
    use rand::Rng;

    #[test]
    fn a_generator_travels_exactly() {
        let mut rng = row_rng(12345, 7);
        let _: u64 = rng.random();
        let mut copy = rng_from_state(&rng_state(&rng)).unwrap();
        for _ in 0..10 {
            assert_eq!(rng.random::<u64>(), copy.random::<u64>());
        }
        let e = rng_from_state(&json!({"seed": "zz", "stream": 1})).unwrap_err();
        assert!(e.contains("rng_state.seed"), "{e}");
    }

    #[test]
    fn answers_are_read_from_token_ids_or_token_names() {
        let with_ids = json!({"choices": [{"token_ids": [5, 6], "finish_reason": "stop",
            "logprobs": {"token_logprobs": [-0.5, -1.0], "tokens": ["a", "b"]}}]});
        let c = parse_completion(&with_ids).unwrap();
        assert_eq!((c.tokens, c.logprobs), (vec![5, 6], vec![-0.5, -1.0]));
        let named = json!({"choices": [{"finish_reason": "length",
            "logprobs": {"token_logprobs": [-0.5], "tokens": ["token_id:42"]}}]});
        let c = parse_completion(&named).unwrap();
        assert_eq!(
            (c.tokens, c.finish_reason),
            (vec![42], FinishReason::Length)
        );
        let short = json!({"choices": [{"token_ids": [1, 2], "finish_reason": "stop",
            "logprobs": {"token_logprobs": [-0.5]}}]});
        assert!(
            parse_completion(&short)
                .unwrap_err()
                .contains("2 token ids but 1")
        );
    }

    #[test]
    fn options_are_checked_by_name() {
        let ok = RemoteOptions {
            servers: vec!["http://127.0.0.1:1/v1".into()],
            timeout: Duration::from_secs(1),
            max_attempts: 2,
            max_concurrency: 4,
        };
        assert!(RemotePolicy::new(ok.clone(), 64).is_ok());
        let e = RemotePolicy::new(
            RemoteOptions {
                servers: vec![],
                ..ok.clone()
            },
            64,
        )
        .unwrap_err();
        assert!(e.to_string().contains("servers"), "{e}");
        let e = RemotePolicy::new(
            RemoteOptions {
                servers: vec!["127.0.0.1:8000".into()],
                ..ok.clone()
            },
            64,
        )
        .unwrap_err();
        assert!(e.to_string().contains("127.0.0.1:8000"), "{e}");
        let e = RemotePolicy::new(
            RemoteOptions {
                max_attempts: 0,
                ..ok
            },
            64,
        )
        .unwrap_err();
        assert!(e.to_string().contains("max_attempts"), "{e}");
    }

    #[test]
    fn no_server_listening_is_a_clear_error() {
        // Port 1 on the loopback refuses connections at once.
        let policy = RemotePolicy::new(
            RemoteOptions {
                servers: vec!["http://127.0.0.1:1/v1".into()],
                timeout: Duration::from_secs(2),
                max_attempts: 2,
                max_concurrency: 1,
            },
            64,
        )
        .unwrap();
        let row = RowRequest {
            prompt: vec![1, 2],
            params: crate::SamplingParams::default(),
            rng: row_rng(0, 0),
        };
        let e = policy.generate(vec![row], &|_, _| false).unwrap_err();
        assert!(matches!(e, Error::NoServer(_)), "{e}");
        assert!(e.to_string().contains("127.0.0.1:1"), "{e}");
        assert!(matches!(policy.servers()[0].1, ServerStatus::Down(_)));
    }
}
