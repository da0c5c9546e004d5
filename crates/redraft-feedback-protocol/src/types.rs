//! The data that flows through the protocol: [`FeedbackRequest`] in, [`Feedback`] out.

use redraft_tokenizer::Message;
use redraft_verifier::{Problem, Verdict};
use serde::{Deserialize, Serialize};

use crate::reflection::{ReflectionOutcome, ReflectionVerdict};

/// Version of the serialised [`Feedback`] / [`FeedbackRequest`] format, written into every value
/// (values without it read as this version). Bumped on incompatible changes, so that a reader can
/// tell a newer format from a corrupt one.
pub const FEEDBACK_FORMAT_VERSION: u32 = 1;

fn current_version() -> u32 {
    FEEDBACK_FORMAT_VERSION
}

/// What kind of feedback a [`Feedback`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedbackKind {
    /// A critique of one response: what is wrong and where (verifier critic, LLM judge; RLTF).
    Critique,
    /// Only whether the attempt was correct ("Your previous attempt was incorrect."; the papers'
    /// ablation).
    CorrectnessOnly,
    /// The policy's own reflection report (R^3L).
    SelfReflection,
    /// One critique merged from the critiques of several failed responses (MulFeRL).
    GroupCritique,
}

/// What a pivot index counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PivotUnit {
    /// A step of a worked solution as the verifier counts them ([`redraft_verifier::FirstError::step`]).
    Step,
    /// An assistant turn of a multi-turn trajectory (R^3L's `retry_from_step`).
    Turn,
}

/// Where the failure starts: the index of the first wrong step or turn (zero-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Pivot {
    /// Zero-based index.
    pub index: usize,
    /// What the index counts.
    pub unit: PivotUnit,
}

impl Pivot {
    /// A step pivot.
    pub fn step(index: usize) -> Self {
        Self {
            index,
            unit: PivotUnit::Step,
        }
    }

    /// A turn pivot.
    pub fn turn(index: usize) -> Self {
        Self {
            index,
            unit: PivotUnit::Turn,
        }
    }
}

/// Who produced a [`Feedback`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FeedbackSource {
    /// The provider's name (`verifier_critic`, `correctness_only`, `self_reflection`,
    /// `llm_judge`, `group_judge`).
    pub provider: String,
    /// The model that wrote the text, when a model did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

impl FeedbackSource {
    /// A source without a model.
    pub fn new(provider: impl Into<String>) -> Self {
        Self {
            provider: provider.into(),
            model: None,
        }
    }

    /// Sets the model.
    pub fn with_model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }
}

/// A piece of text feedback on one response (or, for [`FeedbackKind::GroupCritique`], on a
/// group of responses to one problem).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Feedback {
    /// Format version ([`FEEDBACK_FORMAT_VERSION`]).
    #[serde(default = "current_version")]
    pub version: u32,
    /// The kind of feedback.
    pub kind: FeedbackKind,
    /// The feedback text, as it is injected into the next prompt. Empty for an invalid
    /// self-reflection.
    pub text: String,
    /// The verdict the feedback was made from (absent for group critiques).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// Where the failure starts, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pivot: Option<Pivot>,
    /// Short actionable hints (also contained in `text` where the provider writes them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hints: Vec<String>,
    /// Who produced it.
    pub source: FeedbackSource,
    /// Wall-clock time spent producing it, in milliseconds.
    pub latency_ms: f64,
    /// The parsed reflection report, for [`FeedbackKind::SelfReflection`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reflection: Option<ReflectionOutcome>,
    /// The chat the feedback was written in, when a model wrote it as the answer to a chat that
    /// can be trained on (R^3L's self-reflection: its auxiliary SFT item).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exchange: Option<Exchange>,
}

/// A chat prompt and the model's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Exchange {
    /// The prompt messages.
    pub messages: Vec<Message>,
    /// The model's text.
    pub response: String,
}

impl Feedback {
    /// Feedback of `kind` with `text` from `source`; everything else empty.
    pub fn new(kind: FeedbackKind, text: impl Into<String>, source: FeedbackSource) -> Self {
        Self {
            version: FEEDBACK_FORMAT_VERSION,
            kind,
            text: text.into(),
            verdict: None,
            pivot: None,
            hints: Vec::new(),
            source,
            latency_ms: 0.0,
            reflection: None,
            exchange: None,
        }
    }

    /// Whether this feedback asks for a retry. A self-reflection does when its report is valid
    /// and its outcome is not `success` (R^3L's retry trigger: the model's own judgement, not the
    /// reward); any other feedback when the attempt it is about failed (its verdict is not
    /// correct, or it carries none).
    pub fn triggers_retry(&self) -> bool {
        self.reflection_verdict() == ReflectionVerdict::NeedsRetry
    }

    /// What this feedback concluded about the attempt, in R^3L's terms: a self-reflection's
    /// report (invalid, `success`, or anything else: retry); for other feedback, a retry when
    /// the attempt failed (its verdict is not correct, or it carries none), else success.
    pub fn reflection_verdict(&self) -> ReflectionVerdict {
        match &self.reflection {
            Some(r) if !r.is_valid() => ReflectionVerdict::Invalid,
            Some(r) if r.triggers_retry() => ReflectionVerdict::NeedsRetry,
            Some(_) => ReflectionVerdict::Success,
            None if self.verdict.as_ref().is_some_and(|v| v.correct) => ReflectionVerdict::Success,
            None => ReflectionVerdict::NeedsRetry,
        }
    }
}

/// A request for feedback on one response.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeedbackRequest {
    /// Format version ([`FEEDBACK_FORMAT_VERSION`]).
    #[serde(default = "current_version")]
    pub version: u32,
    /// The problem that was answered.
    pub problem: Problem,
    /// The (last) response to critique.
    pub response: String,
    /// The verifier's verdict on `response`.
    pub verdict: Verdict,
    /// Whether the provider may see (and the critic reveal) the reference answer. RLTF's math
    /// judge sees it; MulFeRL's judge and RLTF's Knights-and-Knaves judge do not.
    #[serde(default)]
    pub allow_reference: bool,
    /// The whole trajectory for multi-turn episodes (system, user and assistant messages, ending
    /// with `response`). Empty for a single turn: then the trajectory is the problem's chat prompt
    /// followed by `response`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transcript: Vec<Message>,
}

impl FeedbackRequest {
    /// A single-turn request that does not allow the reference.
    pub fn new(problem: Problem, response: impl Into<String>, verdict: Verdict) -> Self {
        Self {
            version: FEEDBACK_FORMAT_VERSION,
            problem,
            response: response.into(),
            verdict,
            allow_reference: false,
            transcript: Vec::new(),
        }
    }

    /// Sets whether the reference may be seen.
    pub fn with_reference(mut self, allow: bool) -> Self {
        self.allow_reference = allow;
        self
    }

    /// Sets the multi-turn trajectory.
    pub fn with_transcript(mut self, transcript: Vec<Message>) -> Self {
        self.transcript = transcript;
        self
    }

    /// The question as a judge or a regeneration prompt shows it: a math problem's raw text (no
    /// answer-format suffix, like MulFeRL's `question_raw`), or a task family's chat prompt (its
    /// answer format is part of the task).
    pub fn question(&self) -> String {
        question_of(&self.problem)
    }

    /// The reference answer, when the request allows it: a math problem's gold answer, or a task
    /// family's reference solution.
    pub fn reference(&self) -> Option<String> {
        self.allow_reference.then(|| reference_of(&self.problem))
    }

    /// The trajectory as messages: `transcript`, or the problem's chat prompt and `response`.
    pub fn trajectory(&self) -> Vec<Message> {
        if !self.transcript.is_empty() {
            return self.transcript.clone();
        }
        let mut msgs: Vec<Message> = self
            .problem
            .chat()
            .into_iter()
            .map(|m| Message::new(m.role, m.content))
            .collect();
        msgs.push(Message::assistant(self.response.clone()));
        msgs
    }
}

/// The question text of `problem` (see [`FeedbackRequest::question`]).
pub fn question_of(problem: &Problem) -> String {
    match problem {
        Problem::Math(m) => m.problem.trim().to_string(),
        other => other
            .chat()
            .into_iter()
            .map(|m| m.content)
            .collect::<Vec<_>>()
            .join("\n\n"),
    }
}

/// The reference answer of `problem` (see [`FeedbackRequest::reference`]).
pub fn reference_of(problem: &Problem) -> String {
    match problem {
        Problem::Math(m) => m.answer.clone(),
        other => other.solution(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redraft_verifier::{Diagnosis, DiagnosisKind};

    #[test]
    fn only_failed_attempts_trigger_a_retry() {
        let critique = |verdict: Option<Verdict>| {
            let mut fb = Feedback::new(FeedbackKind::Critique, "c", FeedbackSource::new("x"));
            fb.verdict = verdict;
            fb
        };
        let wrong = Verdict::wrong(Diagnosis::new(DiagnosisKind::WrongAnswer, "no"));
        assert!(critique(Some(wrong)).triggers_retry());
        assert!(!critique(Some(Verdict::correct("yes"))).triggers_retry());
        // Without a verdict nothing says the attempt succeeded.
        assert!(critique(None).triggers_retry());
    }
}
