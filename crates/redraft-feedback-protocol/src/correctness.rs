//! Correctness-only feedback: the papers' ablation (RLTF `judge_type="correctness"`).

use std::time::Instant;

use crate::error::Result;
use crate::provider::{FeedbackProvider, ProviderStats, StatsRecorder};
use crate::types::{Feedback, FeedbackKind, FeedbackRequest, FeedbackSource};

/// RLTF's text for a correct attempt.
pub const CORRECT_TEXT: &str = "Your previous attempt was correct.";
/// RLTF's text for an incorrect attempt.
pub const INCORRECT_TEXT: &str = "Your previous attempt was incorrect.";

/// Says only whether the attempt was correct (from [`redraft_verifier::Verdict::correct`]).
#[derive(Debug, Default)]
pub struct CorrectnessOnly {
    stats: StatsRecorder,
}

impl CorrectnessOnly {
    /// The provider.
    pub fn new() -> Self {
        Self::default()
    }

    /// The feedback for one request (never fails).
    pub fn feedback_one(&self, request: &FeedbackRequest) -> Feedback {
        let start = Instant::now();
        let text = if request.verdict.correct {
            CORRECT_TEXT
        } else {
            INCORRECT_TEXT
        };
        let mut fb = Feedback::new(
            FeedbackKind::CorrectnessOnly,
            text,
            FeedbackSource::new(self.name()),
        );
        fb.verdict = Some(request.verdict.clone());
        fb.latency_ms = start.elapsed().as_secs_f64() * 1e3;
        fb
    }
}

impl FeedbackProvider for CorrectnessOnly {
    fn name(&self) -> &str {
        "correctness_only"
    }

    fn feedback(&self, requests: &[FeedbackRequest]) -> Vec<Result<Feedback>> {
        let out: Vec<Result<Feedback>> =
            requests.iter().map(|r| Ok(self.feedback_one(r))).collect();
        self.stats.record_batch(self.name(), &out);
        out
    }

    fn stats(&self) -> ProviderStats {
        self.stats.snapshot()
    }
}
