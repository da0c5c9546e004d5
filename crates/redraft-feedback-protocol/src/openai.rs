//! A blocking client for OpenAI-compatible `/v1/chat/completions` endpoints (vLLM, SGLang,
//! llama.cpp server, hosted APIs), as a [`ChatModel`].
//!
//! Every attempt has a timeout; retryable failures ([`Error::is_retryable`]) are retried with
//! exponential backoff (optionally jittered by a seeded RNG, and honouring `Retry-After` up to
//! the backoff cap); a batch runs on at most `max_concurrency` threads. So a call always returns
//! within about `(max_retries + 1) * timeout + backoff` per request, never hangs.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::chat::{ChatModel, ChatRequest, ChatResponse, Usage};
use crate::error::{Error, Result};

fn default_timeout_ms() -> u64 {
    60_000
}
fn default_max_retries() -> u32 {
    3
}
fn default_backoff_initial_ms() -> u64 {
    500
}
fn default_backoff_max_ms() -> u64 {
    8_000
}
fn default_max_concurrency() -> usize {
    8
}
fn default_budget_ms() -> u64 {
    600_000
}

/// Where and how to reach an OpenAI-compatible endpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAiConfig {
    /// Base URL including the API version, e.g. `http://127.0.0.1:8000/v1` or
    /// `https://api.openai.com/v1`; requests go to `{base_url}/chat/completions`.
    pub base_url: String,
    /// The model name sent in each request.
    pub model: String,
    /// The environment variable holding the API key (sent as `Authorization: Bearer`). `None`:
    /// no key (local servers). A named variable that is not set is an error when the client is
    /// built. The key is never logged.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Timeout of one attempt (connect, send and read), in milliseconds. Default 60000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Retries after the first attempt. Default 3.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// First backoff delay in milliseconds; doubled per retry. Default 500.
    #[serde(default = "default_backoff_initial_ms")]
    pub backoff_initial_ms: u64,
    /// Largest backoff delay in milliseconds. Default 8000.
    #[serde(default = "default_backoff_max_ms")]
    pub backoff_max_ms: u64,
    /// Seed of the backoff jitter (each delay scaled by a factor in `[0.5, 1)`); `None`: no
    /// jitter.
    #[serde(default)]
    pub jitter_seed: Option<u64>,
    /// The most requests in flight at once. Default 8.
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: usize,
    /// The most time, in milliseconds, that all the requests of one client may take together
    /// (the wall time of its calls; a batch's requests run side by side). When it runs out,
    /// requests in flight are abandoned and the rest fail at once, with
    /// [`Error::BudgetExhausted`]. The trainer builds its feedback provider anew for every RL
    /// step and every evaluation, so this bounds the feedback time of one step. Default 600000
    /// (10 minutes).
    #[serde(default = "default_budget_ms")]
    pub budget_ms: u64,
}

impl OpenAiConfig {
    /// A configuration with the defaults for `base_url` and `model`.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            model: model.into(),
            api_key_env: None,
            timeout_ms: default_timeout_ms(),
            max_retries: default_max_retries(),
            backoff_initial_ms: default_backoff_initial_ms(),
            backoff_max_ms: default_backoff_max_ms(),
            jitter_seed: None,
            max_concurrency: default_max_concurrency(),
            budget_ms: default_budget_ms(),
        }
    }

    /// The delay before retry number `retry` (0-based) of request `index`.
    pub fn backoff(&self, index: usize, retry: u32) -> Duration {
        let base = self
            .backoff_initial_ms
            .saturating_mul(1u64 << retry.min(20))
            .min(self.backoff_max_ms);
        let ms = match self.jitter_seed {
            None => base as f64,
            Some(seed) => {
                let mut rng = ChaCha8Rng::seed_from_u64(
                    seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(retry),
                );
                base as f64 * rng.random_range(0.5..1.0)
            }
        };
        Duration::from_secs_f64(ms / 1e3)
    }
}

/// A JSON endpoint reached by POST with the retry, backoff and timeout rules of
/// [`OpenAiConfig`]: the transport shared by [`OpenAiClient`] and the HTTP reward
/// ([`crate::reward::HttpReward`]).
pub(crate) struct JsonEndpoint {
    config: OpenAiConfig,
    url: String,
    api_key: Option<String>,
    agent: ureq::Agent,
    retries: AtomicU64,
}

impl JsonEndpoint {
    /// An endpoint at `url` with the limits of `config`; reads the API key from its
    /// environment variable.
    pub(crate) fn new(url: String, config: OpenAiConfig) -> Result<Self> {
        if config.max_concurrency == 0 {
            return Err(Error::Config("max_concurrency must be at least 1".into()));
        }
        if config.timeout_ms == 0 {
            return Err(Error::Config("timeout_ms must be at least 1".into()));
        }
        if config.budget_ms == 0 {
            return Err(Error::Config("budget_ms must be at least 1".into()));
        }
        let api_key = match &config.api_key_env {
            None => None,
            Some(var) => match std::env::var(var) {
                Ok(k) if !k.is_empty() => Some(k),
                _ => return Err(Error::MissingApiKey(var.clone())),
            },
        };
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_millis(config.timeout_ms))
            .build();
        Ok(Self {
            config,
            url,
            api_key,
            agent,
            retries: AtomicU64::new(0),
        })
    }

    /// Posts `body` with retries and parses a 2xx reply with `parse`; `index` seeds the
    /// jitter. No attempt runs past `deadline` (each attempt's timeout is cut to it, and no
    /// retry waits beyond it). Returns the parsed reply and the latency over all attempts.
    pub(crate) fn post<T>(
        &self,
        body: &Value,
        index: usize,
        deadline: Option<Deadline>,
        parse: impl Fn(&str) -> Result<T>,
    ) -> Result<(T, Duration)> {
        let start = Instant::now();
        let mut retry = 0;
        let configured = Duration::from_millis(self.config.timeout_ms);
        loop {
            let timeout = match deadline {
                None => configured,
                Some(d) => match d.left() {
                    Some(left) => left.min(configured),
                    None => return Err(Error::BudgetExhausted(d.budget)),
                },
            };
            match self.attempt(body, timeout, &parse) {
                Ok(v) => return Ok((v, start.elapsed())),
                Err((e, retry_after)) => {
                    if let Some(d) = deadline.filter(|d| d.left().is_none()) {
                        tracing::debug!(error = %e, retry, url = %self.url, "budget ran out");
                        return Err(Error::BudgetExhausted(d.budget));
                    }
                    if !e.is_retryable() || retry >= self.config.max_retries {
                        tracing::debug!(error = %e, retry, url = %self.url, "request failed");
                        return Err(e);
                    }
                    let mut delay = self.config.backoff(index, retry);
                    if let Some(ra) = retry_after {
                        delay = ra.min(Duration::from_millis(self.config.backoff_max_ms));
                    }
                    if let Some(d) = deadline.filter(|d| d.left().is_none_or(|l| l <= delay)) {
                        tracing::debug!(error = %e, retry, url = %self.url, "no time to retry");
                        return Err(Error::BudgetExhausted(d.budget));
                    }
                    tracing::debug!(error = %e, retry, ?delay, url = %self.url, "retrying request");
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(delay);
                    retry += 1;
                }
            }
        }
    }

    /// One HTTP attempt; on failure also the server's `Retry-After`, if any.
    fn attempt<T>(
        &self,
        body: &Value,
        timeout: Duration,
        parse: &impl Fn(&str) -> Result<T>,
    ) -> std::result::Result<T, (Error, Option<Duration>)> {
        let start = Instant::now();
        let mut req = self
            .agent
            .post(&self.url)
            .timeout(timeout)
            .set("Content-Type", "application/json");
        if let Some(key) = &self.api_key {
            req = req.set("Authorization", &format!("Bearer {key}"));
        }
        match req.send_json(body) {
            Ok(resp) => {
                let text = resp
                    .into_string()
                    .map_err(|e| (io_error(&e, start, timeout), None))?;
                parse(&text).map_err(|e| (e, None))
            }
            Err(ureq::Error::Status(status, resp)) => {
                let retry_after = resp
                    .header("retry-after")
                    .and_then(|v| v.trim().parse::<f64>().ok())
                    .filter(|s| s.is_finite() && *s >= 0.0)
                    .map(Duration::from_secs_f64);
                let body = resp.into_string().unwrap_or_default();
                Err((
                    Error::HttpStatus {
                        status,
                        message: error_message(&body),
                    },
                    retry_after,
                ))
            }
            Err(ureq::Error::Transport(t)) => Err((transport_error(&t, start, timeout), None)),
        }
    }

    /// `f(i, &items[i])` for every item, on at most `max_concurrency` threads, in order.
    pub(crate) fn map_bounded<I: Sync, T: Send>(
        &self,
        items: &[I],
        f: impl Fn(usize, &I) -> Result<T> + Sync,
    ) -> Vec<Result<T>> {
        let workers = self.config.max_concurrency.min(items.len());
        if workers <= 1 {
            return items.iter().enumerate().map(|(i, r)| f(i, r)).collect();
        }
        let next = AtomicUsize::new(0);
        let slots: Vec<Mutex<Option<Result<T>>>> = items.iter().map(|_| Mutex::new(None)).collect();
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(r) = items.get(i) else { break };
                        let res = f(i, r);
                        *slots[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(res);
                    }
                });
            }
        });
        slots
            .into_iter()
            .map(|m| {
                m.into_inner()
                    .unwrap_or_else(|e| e.into_inner())
                    .unwrap_or_else(|| Err(Error::Model("request was not run".into())))
            })
            .collect()
    }

    /// Attempts retried so far.
    pub(crate) fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }
}

/// When a budget of time runs out: no request runs past `at`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Deadline {
    /// The instant the budget is spent.
    at: Instant,
    /// The whole budget, for the error.
    budget: Duration,
}

impl Deadline {
    /// The time left, `None` once it has run out.
    fn left(&self) -> Option<Duration> {
        Some(self.at.saturating_duration_since(Instant::now())).filter(|d| !d.is_zero())
    }
}

/// The HTTP client. Cheap to share (`Arc`); thread-safe.
pub struct OpenAiClient {
    endpoint: JsonEndpoint,
    /// Wall time its calls have taken so far, against `budget_ms`.
    spent: Mutex<Duration>,
}

impl std::fmt::Debug for OpenAiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiClient")
            .field("url", &self.endpoint.url)
            .field("model", &self.endpoint.config.model)
            .field(
                "api_key",
                &self.endpoint.api_key.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl OpenAiClient {
    /// A client for `config`; reads the API key from its environment variable.
    pub fn new(config: OpenAiConfig) -> Result<Self> {
        let url = format!("{}/chat/completions", config.base_url.trim_end_matches('/'));
        Ok(Self {
            endpoint: JsonEndpoint::new(url, config)?,
            spent: Mutex::new(Duration::ZERO),
        })
    }

    /// Runs `call` with the deadline the rest of the budget gives, and charges its wall time.
    fn within_budget<T>(&self, call: impl FnOnce(Deadline) -> T) -> T {
        let budget = Duration::from_millis(self.endpoint.config.budget_ms);
        let start = Instant::now();
        let spent = *self.spent.lock().unwrap_or_else(|e| e.into_inner());
        let deadline = Deadline {
            at: start + budget.saturating_sub(spent),
            budget,
        };
        let out = call(deadline);
        *self.spent.lock().unwrap_or_else(|e| e.into_inner()) += start.elapsed();
        out
    }

    /// One request with retries until `deadline`; `index` seeds its jitter.
    fn send(
        &self,
        request: &ChatRequest,
        index: usize,
        deadline: Deadline,
    ) -> Result<ChatResponse> {
        let (mut resp, latency) =
            self.endpoint
                .post(&self.body(request), index, Some(deadline), parse_completion)?;
        resp.latency = latency;
        Ok(resp)
    }

    /// The configuration.
    pub fn config(&self) -> &OpenAiConfig {
        &self.endpoint.config
    }

    /// The request body for `request`.
    pub fn body(&self, request: &ChatRequest) -> Value {
        let messages: Vec<Value> = request
            .messages
            .iter()
            .map(|m| json!({"role": m.role, "content": m.content}))
            .collect();
        let mut body = json!({"model": self.endpoint.config.model, "messages": messages});
        if let Some(t) = request.temperature {
            body["temperature"] = json!(t);
        }
        if let Some(n) = request.max_tokens {
            body["max_tokens"] = json!(n);
        }
        if !request.stop.is_empty() {
            body["stop"] = json!(request.stop);
        }
        body
    }

    /// Completes one request with retries, within what is left of the budget; `index` seeds
    /// its jitter.
    pub fn complete_one(&self, request: &ChatRequest, index: usize) -> Result<ChatResponse> {
        self.within_budget(|deadline| self.send(request, index, deadline))
    }
}

/// Maps an I/O error while reading a body.
fn io_error(e: &std::io::Error, start: Instant, timeout: Duration) -> Error {
    use std::io::ErrorKind as K;
    if matches!(e.kind(), K::TimedOut | K::WouldBlock) || start.elapsed() >= timeout {
        Error::Timeout(timeout)
    } else {
        Error::Connection(e.to_string())
    }
}

/// Maps a ureq transport error.
fn transport_error(t: &ureq::Transport, start: Instant, timeout: Duration) -> Error {
    use ureq::ErrorKind as K;
    let msg = t.to_string();
    let timed_out = msg.contains("timed out")
        || msg.contains("Timed out")
        || std::error::Error::source(t)
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .is_some_and(|e| {
                matches!(
                    e.kind(),
                    std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
                )
            })
        || start.elapsed() >= timeout;
    match t.kind() {
        _ if timed_out => Error::Timeout(timeout),
        K::InvalidUrl | K::UnknownScheme | K::InsecureRequestHttpsOnly | K::InvalidProxyUrl => {
            Error::Config(msg)
        }
        K::BadStatus | K::BadHeader => Error::MalformedResponse(msg),
        _ => Error::Connection(msg),
    }
}

/// The message of an OpenAI error body (`{"error": {"message": ...}}`), else the body itself
/// (truncated).
fn error_message(body: &str) -> String {
    if let Ok(v) = serde_json::from_str::<Value>(body) {
        let m = v
            .pointer("/error/message")
            .or_else(|| v.get("error").filter(|e| e.is_string()))
            .or_else(|| v.get("message"))
            .or_else(|| v.get("detail"));
        if let Some(Value::String(s)) = m {
            return s.clone();
        }
    }
    body.chars().take(500).collect()
}

/// Parses a chat completion body.
pub fn parse_completion(body: &str) -> Result<ChatResponse> {
    let v: Value = serde_json::from_str(body)
        .map_err(|e| Error::MalformedResponse(format!("not JSON: {e}")))?;
    let choice = v
        .pointer("/choices/0")
        .ok_or_else(|| Error::MalformedResponse("no choices[0]".into()))?;
    let text = match choice.pointer("/message/content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) => String::new(),
        _ => {
            return Err(Error::MalformedResponse(
                "choices[0].message.content is missing".into(),
            ));
        }
    };
    let usage = v.get("usage").map(|u| Usage {
        prompt_tokens: u.get("prompt_tokens").and_then(Value::as_u64).unwrap_or(0),
        completion_tokens: u
            .get("completion_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0),
    });
    Ok(ChatResponse {
        text,
        finish_reason: choice
            .get("finish_reason")
            .and_then(Value::as_str)
            .map(str::to_string),
        model: v.get("model").and_then(Value::as_str).map(str::to_string),
        usage,
        latency: Duration::ZERO,
    })
}

impl ChatModel for OpenAiClient {
    fn name(&self) -> &str {
        &self.endpoint.config.model
    }

    fn complete(&self, requests: &[ChatRequest]) -> Vec<Result<ChatResponse>> {
        self.within_budget(|deadline| {
            self.endpoint
                .map_bounded(requests, |i, r| self.send(r, i, deadline))
        })
    }

    fn retries(&self) -> u64 {
        self.endpoint.retries()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let mut c = OpenAiConfig::new("http://x/v1", "m");
        c.backoff_initial_ms = 100;
        c.backoff_max_ms = 350;
        let ms = |r| c.backoff(0, r).as_millis();
        assert_eq!((ms(0), ms(1), ms(2), ms(30)), (100, 200, 350, 350));
    }

    #[test]
    fn jitter_is_seeded_and_bounded() {
        let mut c = OpenAiConfig::new("http://x/v1", "m");
        c.backoff_initial_ms = 1000;
        c.jitter_seed = Some(7);
        for i in 0..20 {
            let d = c.backoff(i, 0);
            assert!(d >= Duration::from_millis(500) && d < Duration::from_millis(1000));
            assert_eq!(d, c.backoff(i, 0), "deterministic");
        }
        assert_ne!(c.backoff(0, 0), c.backoff(1, 0));
    }

    #[test]
    fn completion_bodies_and_error_bodies() {
        let ok = parse_completion(
            r#"{"choices":[{"message":{"content":null},"finish_reason":"length"}]}"#,
        )
        .unwrap();
        assert_eq!(
            (ok.text.as_str(), ok.finish_reason.as_deref()),
            ("", Some("length"))
        );
        assert!(parse_completion(r#"{"choices":[{"message":{}}]}"#).is_err());
        assert_eq!(error_message(r#"{"error":{"message":"m"}}"#), "m");
        assert_eq!(error_message(r#"{"error":"e"}"#), "e");
        assert_eq!(error_message(r#"{"detail":"d"}"#), "d");
        assert_eq!(error_message("plain"), "plain");
    }

    #[test]
    fn request_bodies_omit_unset_fields() {
        let client = OpenAiClient::new(OpenAiConfig::new("http://x/v1/", "m")).unwrap();
        assert_eq!(client.endpoint.url, "http://x/v1/chat/completions");
        let body = client.body(&ChatRequest::new(vec![redraft_tokenizer::Message::user(
            "u",
        )]));
        assert_eq!(
            body,
            json!({"model": "m", "messages": [{"role": "user", "content": "u"}]})
        );
    }
}
