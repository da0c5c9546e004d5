//! The result of checking one response: [`Verdict`] and its structured [`Diagnosis`].

use std::collections::BTreeMap;
use std::ops::Range;

use serde::{Deserialize, Serialize};

/// What a verifier says about one response. A wrong or malformed answer is a verdict, never an
/// error.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Scalar reward: in `[0, 1]` from the built-in checkers (1 for a correct answer, partial
    /// credit where the task allows it); a weighted or custom reward may be any finite value.
    pub reward: f32,
    /// Whether the final answer is correct.
    pub correct: bool,
    /// Whether the response follows the required answer format (an answer could be extracted).
    pub format_ok: bool,
    /// Where and how the response goes wrong.
    pub diagnosis: Diagnosis,
    /// The reward of each named component when the reward combines several (`task`,
    /// `command`, `http`, ...), before weighting; empty for a single verifier.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub components: BTreeMap<String, f32>,
}

/// The kind of outcome a [`Diagnosis`] describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiagnosisKind {
    /// The answer is correct.
    Correct,
    /// The answer is valid but only partly right (for example a longer-than-shortest path).
    Partial,
    /// The answer was found and parsed but is wrong.
    WrongAnswer,
    /// A step of the worked solution is wrong (see [`Diagnosis::first_error`]).
    WrongStep,
    /// The response does not follow the required format.
    BadFormat,
    /// No answer could be found in the response.
    NoAnswer,
    /// The check ran out of its work budget or time limit and was cancelled.
    TimedOut,
    /// The input (or an intermediate value) exceeds the size limits.
    TooLarge,
}

/// The first point where a response goes wrong.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirstError {
    /// Zero-based index of the first wrong step (0 when the task has a single answer step).
    pub step: usize,
    /// Byte range of the wrong step or answer in the response.
    pub span: Range<usize>,
    /// What was expected there.
    pub expected: String,
    /// What was found there.
    pub found: String,
}

/// A structured account of a verdict, for feedback providers and credit assignment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Diagnosis {
    /// The kind of outcome.
    pub kind: DiagnosisKind,
    /// The first wrong step or span, when it can be located.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_error: Option<FirstError>,
    /// Free-form detail for humans.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

impl Diagnosis {
    /// A diagnosis of `kind` with a free-form detail and no located error.
    pub fn new(kind: DiagnosisKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            first_error: None,
            detail: detail.into(),
        }
    }

    /// Adds the first wrong step or span.
    pub fn with_first_error(mut self, first_error: FirstError) -> Self {
        self.first_error = Some(first_error);
        self
    }
}

impl Verdict {
    /// A correct answer: reward 1.
    pub fn correct(detail: impl Into<String>) -> Self {
        Self {
            reward: 1.0,
            correct: true,
            format_ok: true,
            diagnosis: Diagnosis::new(DiagnosisKind::Correct, detail),
            components: BTreeMap::new(),
        }
    }

    /// A well-formed but wrong answer with reward 0 (or partial credit via [`Verdict::with_reward`]).
    pub fn wrong(diagnosis: Diagnosis) -> Self {
        Self {
            reward: 0.0,
            correct: false,
            format_ok: true,
            diagnosis,
            components: BTreeMap::new(),
        }
    }

    /// A response whose format is broken (no answer, bad format, too large, timed out): reward 0.
    pub fn malformed(diagnosis: Diagnosis) -> Self {
        Self {
            reward: 0.0,
            correct: false,
            format_ok: false,
            diagnosis,
            components: BTreeMap::new(),
        }
    }

    /// A partly right answer with `reward` in `(0, 1)`.
    pub fn partial(reward: f32, diagnosis: Diagnosis) -> Self {
        Self {
            reward: reward.clamp(0.0, 1.0),
            correct: false,
            format_ok: true,
            diagnosis,
            components: BTreeMap::new(),
        }
    }

    /// Replaces the reward, clamped to `[0, 1]`.
    pub fn with_reward(mut self, reward: f32) -> Self {
        self.reward = reward.clamp(0.0, 1.0);
        self
    }
}
