//! The [`FeedbackProvider`] trait and the statistics every provider keeps.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::error::{ErrorKind, Result};
use crate::types::{Feedback, FeedbackRequest};

/// Anything that turns responses into text feedback.
///
/// Batched: one result per request, in order, so that one failure does not lose the rest. An
/// `Err` is a failure the trainer counts and skips (see [`crate::Error::kind`]); it never panics
/// and never blocks past the provider's own time limits.
pub trait FeedbackProvider: Send + Sync {
    /// The provider's name, as written in [`crate::FeedbackSource::provider`].
    fn name(&self) -> &str;

    /// Feedback on each request, in order.
    fn feedback(&self, requests: &[FeedbackRequest]) -> Vec<Result<Feedback>>;

    /// A snapshot of the statistics since the provider was built.
    fn stats(&self) -> ProviderStats;
}

/// Counters a provider keeps, for the trainer's logs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProviderStats {
    /// Requests received.
    pub requests: u64,
    /// Requests that produced feedback (invalid reflections included).
    pub successes: u64,
    /// Failed requests by error kind.
    pub failures: BTreeMap<ErrorKind, u64>,
    /// Self-reflections whose report was missing, unparsable or invalid.
    pub invalid_reflections: u64,
    /// HTTP attempts retried after a retryable failure.
    pub retries: u64,
    /// Sum of the latencies of successful requests, in milliseconds.
    pub total_latency_ms: f64,
    /// The largest latency of a successful request, in milliseconds.
    pub max_latency_ms: f64,
}

impl ProviderStats {
    /// Total failed requests.
    pub fn failed(&self) -> u64 {
        self.failures.values().sum()
    }

    /// Mean latency of successful requests in milliseconds (0 when there were none).
    pub fn mean_latency_ms(&self) -> f64 {
        if self.successes == 0 {
            0.0
        } else {
            self.total_latency_ms / self.successes as f64
        }
    }

    /// Adds `other`'s counters to these.
    pub fn merge(&mut self, other: &ProviderStats) {
        self.requests += other.requests;
        self.successes += other.successes;
        for (k, v) in &other.failures {
            *self.failures.entry(*k).or_default() += v;
        }
        self.invalid_reflections += other.invalid_reflections;
        self.retries += other.retries;
        self.total_latency_ms += other.total_latency_ms;
        self.max_latency_ms = self.max_latency_ms.max(other.max_latency_ms);
    }
}

/// Thread-safe accumulator of [`ProviderStats`], for provider implementations.
#[derive(Debug, Default)]
pub struct StatsRecorder {
    inner: Mutex<ProviderStats>,
}

impl StatsRecorder {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<R>(&self, f: impl FnOnce(&mut ProviderStats) -> R) -> R {
        // A poisoned lock only means another thread panicked mid-update; counters stay usable.
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }

    /// Records the outcomes of one batch of `provider` and logs a warning when requests failed
    /// (their samples get no feedback), naming the provider and the first failure.
    pub fn record_batch(&self, provider: &str, results: &[Result<Feedback>]) {
        let mut errors = results.iter().filter_map(|r| r.as_ref().err());
        if let Some(first) = errors.next() {
            tracing::warn!(
                provider,
                failed = 1 + errors.count(),
                requests = results.len(),
                error = %first,
                "feedback requests failed; their samples get no feedback"
            );
        }
        self.with(|s| {
            for r in results {
                s.requests += 1;
                match r {
                    Ok(fb) => {
                        s.successes += 1;
                        s.total_latency_ms += fb.latency_ms;
                        s.max_latency_ms = s.max_latency_ms.max(fb.latency_ms);
                        if fb.reflection.as_ref().is_some_and(|r| !r.is_valid()) {
                            s.invalid_reflections += 1;
                        }
                    }
                    Err(e) => *s.failures.entry(e.kind()).or_default() += 1,
                }
            }
        });
    }

    /// Records `n` retried attempts.
    pub fn record_retries(&self, n: u64) {
        self.with(|s| s.retries += n);
    }

    /// A copy of the current counters.
    pub fn snapshot(&self) -> ProviderStats {
        self.with(|s| s.clone())
    }
}
