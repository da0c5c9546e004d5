//! Rewards beyond the built-in verifier: an external program speaking JSON lines, an HTTP
//! endpoint, and weighted sums of several components ([`RewardSet`]), selected by
//! `[[reward]]` tables ([`RewardConfig`]).
//!
//! Every component answers one request per response:
//! `{"prompt": ..., "response": ..., "problem": {...}}` (the problem in its serde form, as the
//! task or dataset line gives it) and replies `{"reward": x}` (other fields are logged). A
//! component that errors, times out or answers something that is not a finite reward gives the
//! sample its `fallback` reward and is counted ([`RewardStats`]); it never hangs or stops a run.
//!
//! A [`RewardSet`] is a [`Verifier`]: its reward is `Σ weight_i · reward_i`, each component's
//! unweighted reward is in [`Verdict::components`], and correctness, format and diagnosis (what
//! the critics use) come from the built-in verifier, whether or not `task` is a component.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redraft_verifier::{DefaultVerifier, Problem, Verdict, Verifier};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::openai::{JsonEndpoint, OpenAiConfig};

fn one() -> f64 {
    1.0
}
fn thirty() -> f64 {
    30.0
}
fn three() -> u32 {
    3
}
fn eight() -> usize {
    8
}

/// One `[[reward]]` table, tagged by `type`:
///
/// ```toml
/// [[reward]]
/// type = "task"          # the built-in verifier
/// weight = 1.0
///
/// [[reward]]
/// type = "command"       # a program speaking JSON lines on stdin/stdout
/// command = ["python3", "my_reward.py"]
/// weight = 0.5
/// timeout_s = 30.0       # per request
/// fallback = 0.0         # the reward of a failed request
///
/// [[reward]]
/// type = "http"          # the same JSON as a POST body and as the reply
/// url = "http://127.0.0.1:8080/reward"
/// weight = 0.5
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RewardConfig {
    /// The built-in verifier's reward.
    Task {
        /// The component's name in logs (default `task`).
        #[serde(default)]
        name: Option<String>,
        /// Its weight. Default 1.
        #[serde(default = "one")]
        weight: f64,
    },
    /// An external program, started once and kept alive ([`CommandReward`]).
    Command {
        /// The program and its arguments.
        command: Vec<String>,
        /// The component's name in logs (default `command`).
        #[serde(default)]
        name: Option<String>,
        /// Its weight. Default 1.
        #[serde(default = "one")]
        weight: f64,
        /// The longest wait for one answer, in seconds; the program is then restarted.
        /// Default 30.
        #[serde(default = "thirty")]
        timeout_s: f64,
        /// The reward of a request that fails. Default 0.
        #[serde(default)]
        fallback: f64,
    },
    /// An HTTP endpoint ([`HttpReward`]).
    Http {
        /// The URL the requests are POSTed to.
        url: String,
        /// The component's name in logs (default `http`).
        #[serde(default)]
        name: Option<String>,
        /// Its weight. Default 1.
        #[serde(default = "one")]
        weight: f64,
        /// Timeout of one attempt, in seconds. Default 30.
        #[serde(default = "thirty")]
        timeout_s: f64,
        /// The reward of a request that fails. Default 0.
        #[serde(default)]
        fallback: f64,
        /// Retries after the first attempt (timeouts, connection failures, 408/409/429/5xx).
        /// Default 3.
        #[serde(default = "three")]
        max_retries: u32,
        /// The most requests in flight at once. Default 8.
        #[serde(default = "eight")]
        max_concurrency: usize,
        /// The environment variable holding a bearer token, if any.
        #[serde(default)]
        api_key_env: Option<String>,
    },
}

impl RewardConfig {
    /// The component's name: `name`, or its type.
    pub fn name(&self) -> &str {
        match self {
            RewardConfig::Task { name, .. } => name.as_deref().unwrap_or("task"),
            RewardConfig::Command { name, .. } => name.as_deref().unwrap_or("command"),
            RewardConfig::Http { name, .. } => name.as_deref().unwrap_or("http"),
        }
    }

    /// The component's weight.
    pub fn weight(&self) -> f64 {
        match self {
            RewardConfig::Task { weight, .. }
            | RewardConfig::Command { weight, .. }
            | RewardConfig::Http { weight, .. } => *weight,
        }
    }

    /// Checks the table without starting anything; errors name the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, why: &str| {
            Err(Error::Config(format!(
                "reward {:?}: {field} {why}",
                self.name()
            )))
        };
        if !self.weight().is_finite() {
            return bad("weight", "must be a finite number");
        }
        match self {
            RewardConfig::Task { .. } => {}
            RewardConfig::Command {
                command,
                timeout_s,
                fallback,
                ..
            } => {
                if command.first().is_none_or(|c| c.trim().is_empty()) {
                    return bad("command", "must name a program");
                }
                if !(timeout_s.is_finite() && *timeout_s > 0.0) {
                    return bad("timeout_s", "must be a positive number of seconds");
                }
                if !fallback.is_finite() {
                    return bad("fallback", "must be a finite number");
                }
            }
            RewardConfig::Http {
                url,
                timeout_s,
                fallback,
                max_concurrency,
                ..
            } => {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return bad("url", "must start with http:// or https://");
                }
                if !(timeout_s.is_finite() && *timeout_s > 0.0) {
                    return bad("timeout_s", "must be a positive number of seconds");
                }
                if !fallback.is_finite() {
                    return bad("fallback", "must be a finite number");
                }
                if *max_concurrency == 0 {
                    return bad("max_concurrency", "must be at least 1");
                }
            }
        }
        Ok(())
    }
}

/// Checks a list of `[[reward]]` tables: each one, and that no two share a name.
///
/// # Errors
/// [`Error::Config`] naming the table and the field.
pub fn validate_rewards(configs: &[RewardConfig]) -> Result<()> {
    for (i, c) in configs.iter().enumerate() {
        c.validate()?;
        if configs[..i].iter().any(|o| o.name() == c.name()) {
            return Err(Error::Config(format!(
                "two [[reward]] tables are named {:?}: give each a distinct `name`",
                c.name()
            )));
        }
    }
    Ok(())
}

/// Counters of one reward component.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RewardStats {
    /// Requests made.
    pub requests: u64,
    /// Requests that failed and got the fallback reward (timeouts included).
    pub failures: u64,
    /// Requests that timed out.
    pub timeouts: u64,
    /// Times the program was started again after it died or hung.
    pub restarts: u64,
}

#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    failures: AtomicU64,
    timeouts: AtomicU64,
    restarts: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> RewardStats {
        RewardStats {
            requests: self.requests.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            timeouts: self.timeouts.load(Ordering::Relaxed),
            restarts: self.restarts.load(Ordering::Relaxed),
        }
    }

    /// Counts `result` and turns a failure into `fallback`.
    fn settle(&self, who: &str, result: Result<f64>, fallback: f64) -> f64 {
        self.requests.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(r) => r,
            Err(e) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                if matches!(e, Error::Timeout(_)) {
                    self.timeouts.fetch_add(1, Ordering::Relaxed);
                }
                tracing::warn!(reward = who, error = %e, fallback, "reward request failed");
                fallback
            }
        }
    }
}

/// The request body of `response` to `problem`.
pub fn reward_request(problem: &Problem, response: &str) -> Value {
    let prompt = problem
        .chat()
        .into_iter()
        .map(|m| m.content)
        .collect::<Vec<_>>()
        .join("\n\n");
    json!({"prompt": prompt, "response": response, "problem": problem})
}

/// Parses a reply `{"reward": x}`; other fields are logged.
pub fn parse_reward_reply(text: &str) -> Result<f64> {
    let v: Value = serde_json::from_str(text.trim())
        .map_err(|e| Error::MalformedResponse(format!("reward reply is not JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| Error::MalformedResponse("reward reply is not a JSON object".into()))?;
    let reward = obj
        .get("reward")
        .and_then(Value::as_f64)
        .filter(|r| r.is_finite())
        .ok_or_else(|| {
            Error::MalformedResponse("reward reply has no finite number `reward`".into())
        })?;
    if obj.len() > 1 {
        tracing::debug!(reply = %text.trim(), "reward reply extra fields");
    }
    Ok(reward)
}

/// A running reward program.
struct Running {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<std::io::Result<String>>,
}

impl Running {
    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An external program that answers one JSON line per request line on stdin/stdout. Started on
/// the first request and kept alive; a program that dies is started again (and the request
/// retried once); one that does not answer within the timeout is killed and restarted on the
/// next request, and that request fails. Its stderr goes to the log.
pub struct CommandReward {
    command: Vec<String>,
    timeout: Duration,
    fallback: f64,
    name: String,
    running: Mutex<Option<Running>>,
    started: AtomicU64,
    counters: Counters,
}

impl std::fmt::Debug for CommandReward {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandReward")
            .field("command", &self.command)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl CommandReward {
    /// A reward from `command` (program and arguments) with a per-request `timeout` and the
    /// `fallback` reward of failed requests. Nothing is started before the first request.
    pub fn new(command: Vec<String>, timeout: Duration, fallback: f64) -> Result<Self> {
        if command.first().is_none_or(|c| c.trim().is_empty()) {
            return Err(Error::Config("reward command: no program given".into()));
        }
        Ok(Self {
            name: "command".into(),
            command,
            timeout,
            fallback,
            running: Mutex::new(None),
            started: AtomicU64::new(0),
            counters: Counters::default(),
        })
    }

    fn named(mut self, name: &str) -> Self {
        self.name = name.to_string();
        self
    }

    /// The counters so far.
    pub fn stats(&self) -> RewardStats {
        self.counters.snapshot()
    }

    fn start(&self) -> Result<Running> {
        let mut child = Command::new(&self.command[0])
            .args(&self.command[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                Error::Connection(format!(
                    "cannot start reward program {:?}: {e}",
                    self.command[0]
                ))
            })?;
        if self.started.fetch_add(1, Ordering::Relaxed) > 0 {
            self.counters.restarts.fetch_add(1, Ordering::Relaxed);
        }
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| Error::Connection("reward program has no stdin".into()))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| Error::Connection("reward program has no stdout".into()))?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        if let Some(stderr) = child.stderr.take() {
            let program = self.command[0].clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
                    tracing::info!(program = %program, "{line}");
                }
            });
        }
        Ok(Running {
            child,
            stdin,
            lines,
        })
    }

    /// One request, restarting a dead program once.
    fn request(&self, body: &Value) -> Result<f64> {
        let line = format!("{body}\n");
        let mut guard = self.running.lock().unwrap_or_else(|e| e.into_inner());
        for _ in 0..2 {
            if guard.is_none() {
                *guard = Some(self.start()?);
            }
            let Some(r) = guard.as_mut() else {
                continue;
            };
            let sent = r
                .stdin
                .write_all(line.as_bytes())
                .and_then(|()| r.stdin.flush());
            if sent.is_err() {
                if let Some(r) = guard.take() {
                    r.stop();
                }
                continue;
            }
            match r.lines.recv_timeout(self.timeout) {
                Ok(Ok(reply)) => return parse_reward_reply(&reply),
                Ok(Err(_)) | Err(RecvTimeoutError::Disconnected) => {
                    // The program died (or closed stdout) before answering.
                    if let Some(r) = guard.take() {
                        r.stop();
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    if let Some(r) = guard.take() {
                        r.stop();
                    }
                    return Err(Error::Timeout(self.timeout));
                }
            }
        }
        Err(Error::Connection(format!(
            "reward program {:?} exited without answering",
            self.command[0]
        )))
    }

    /// The reward of `response` to `problem` (the fallback when the request fails).
    pub fn reward(&self, problem: &Problem, response: &str) -> f64 {
        let result = self.request(&reward_request(problem, response));
        self.counters.settle(&self.name, result, self.fallback)
    }
}

impl Drop for CommandReward {
    fn drop(&mut self) {
        if let Some(r) = self
            .running
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            r.stop();
        }
    }
}

/// An HTTP endpoint that answers each POSTed request with `{"reward": x}`, with the retries,
/// backoff and bounded concurrency of the judge's client ([`crate::OpenAiClient`]).
pub struct HttpReward {
    endpoint: JsonEndpoint,
    fallback: f64,
    name: String,
    counters: Counters,
}

impl std::fmt::Debug for HttpReward {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpReward").finish_non_exhaustive()
    }
}

impl HttpReward {
    /// A reward at `url`, with the timeout, retries and concurrency of `limits` (its `base_url`
    /// and `model` are unused) and the `fallback` reward of failed requests.
    pub fn new(url: impl Into<String>, limits: OpenAiConfig, fallback: f64) -> Result<Self> {
        Ok(Self {
            endpoint: JsonEndpoint::new(url.into(), limits)?,
            fallback,
            name: "http".into(),
            counters: Counters::default(),
        })
    }

    /// The counters so far.
    pub fn stats(&self) -> RewardStats {
        self.counters.snapshot()
    }

    /// The rewards of a batch, at most `max_concurrency` requests in flight.
    pub fn rewards(&self, items: &[(&Problem, &str)]) -> Vec<f64> {
        self.endpoint
            .map_bounded(items, |i, (p, r)| {
                self.endpoint
                    .post(&reward_request(p, r), i, None, parse_reward_reply)
                    .map(|(v, _)| v)
            })
            .into_iter()
            .map(|r| self.counters.settle(&self.name, r, self.fallback))
            .collect()
    }
}

/// One built component.
enum Component {
    Task,
    Command(CommandReward),
    Http(HttpReward),
}

/// A weighted sum of reward components, as a [`Verifier`]: the reward is
/// `Σ weight_i · reward_i`; [`Verdict::components`] holds each unweighted `reward_i`; the rest
/// of the verdict (correctness, format, diagnosis) is the built-in verifier's.
pub struct RewardSet {
    verifier: Arc<dyn Verifier>,
    components: Vec<(String, f64, Component)>,
}

impl std::fmt::Debug for RewardSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.components.iter().map(|c| c.0.as_str()).collect();
        f.debug_struct("RewardSet")
            .field("components", &names)
            .finish_non_exhaustive()
    }
}

impl RewardSet {
    /// Builds the components of `configs` over the built-in verifier. Programs start on their
    /// first request.
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid table or two tables with one name.
    pub fn new(configs: &[RewardConfig]) -> Result<Self> {
        Self::with_verifier(configs, Arc::new(DefaultVerifier::default()))
    }

    /// As [`RewardSet::new`], with `verifier` as the `task` component and the source of
    /// correctness.
    pub fn with_verifier(configs: &[RewardConfig], verifier: Arc<dyn Verifier>) -> Result<Self> {
        validate_rewards(configs)?;
        let mut components: Vec<(String, f64, Component)> = Vec::new();
        for c in configs {
            let name = c.name().to_string();
            let built = match c {
                RewardConfig::Task { .. } => Component::Task,
                RewardConfig::Command {
                    command,
                    timeout_s,
                    fallback,
                    ..
                } => Component::Command(
                    CommandReward::new(
                        command.clone(),
                        Duration::from_secs_f64(*timeout_s),
                        *fallback,
                    )?
                    .named(&name),
                ),
                RewardConfig::Http {
                    url,
                    timeout_s,
                    fallback,
                    max_retries,
                    max_concurrency,
                    api_key_env,
                    ..
                } => {
                    let mut limits = OpenAiConfig::new(url.clone(), String::new());
                    limits.timeout_ms = (timeout_s * 1e3).ceil().max(1.0) as u64;
                    limits.max_retries = *max_retries;
                    limits.max_concurrency = *max_concurrency;
                    limits.api_key_env = api_key_env.clone();
                    let mut http = HttpReward::new(url.clone(), limits, *fallback)?;
                    http.name = name.clone();
                    Component::Http(http)
                }
            };
            components.push((name, c.weight(), built));
        }
        Ok(Self {
            verifier,
            components,
        })
    }

    /// The counters of each program or endpoint component, by name.
    pub fn stats(&self) -> BTreeMap<String, RewardStats> {
        self.components
            .iter()
            .filter_map(|(name, _, c)| match c {
                Component::Task => None,
                Component::Command(c) => Some((name.clone(), c.stats())),
                Component::Http(h) => Some((name.clone(), h.stats())),
            })
            .collect()
    }
}

impl Verifier for RewardSet {
    fn verify(&self, problem: &Problem, response: &str) -> Verdict {
        self.verify_batch(&[(problem, response)])
            .pop()
            .unwrap_or_else(|| self.verifier.verify(problem, response))
    }

    fn verify_batch(&self, items: &[(&Problem, &str)]) -> Vec<Verdict> {
        let mut verdicts = self.verifier.verify_batch(items);
        let mut totals = vec![0.0f64; items.len()];
        for (name, weight, component) in &self.components {
            let values: Vec<f64> = match component {
                Component::Task => verdicts.iter().map(|v| f64::from(v.reward)).collect(),
                Component::Command(c) => items.iter().map(|(p, r)| c.reward(p, r)).collect(),
                Component::Http(h) => h.rewards(items),
            };
            for ((v, total), value) in verdicts.iter_mut().zip(&mut totals).zip(values) {
                *total += weight * value;
                v.components.insert(name.clone(), value as f32);
            }
        }
        for (v, total) in verdicts.iter_mut().zip(totals) {
            v.reward = total as f32;
        }
        verdicts
    }
}
