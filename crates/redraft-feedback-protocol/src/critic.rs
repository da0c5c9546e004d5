//! The verifier critic: turns a verifier [`Diagnosis`] into a critique, for each built-in task
//! family: what is wrong and where, revealing expected values only when allowed.

use std::time::Instant;

use redraft_verifier::tasks::AnswerFormat;
use redraft_verifier::{Diagnosis, DiagnosisKind, FirstError, Problem, Verdict};
use serde::{Deserialize, Serialize};

use crate::correctness::INCORRECT_TEXT;
use crate::error::Result;
use crate::provider::{FeedbackProvider, ProviderStats, StatsRecorder};
use crate::types::{Feedback, FeedbackKind, FeedbackRequest, FeedbackSource, Pivot};

/// Options of the [`VerifierCritic`].
///
/// By default the critic says what is wrong and where but never states the expected values
/// (the right step, the right answer), whatever the request allows: every method gets the same
/// feedback rules, as the papers' judges (which see the reference but are told not to reveal
/// it). Revealing is the explicit `reveal_answer = true`, and a run's report says so.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CriticConfig {
    /// State the expected values (the right step, the right answer) when the request allows
    /// the reference. Default `false`: never.
    #[serde(default)]
    pub reveal_answer: bool,
    /// End incorrect critiques with RLTF's "Your previous attempt was incorrect." Default `false`.
    #[serde(default)]
    pub closing_sentence: bool,
}

/// A rendered critique: what is wrong and where, and hints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Critique {
    /// What is wrong and where (one or more sentences).
    pub what: String,
    /// Actionable hints.
    pub hints: Vec<String>,
    /// Where the failure starts (the verifier's first wrong step).
    pub pivot: Option<Pivot>,
}

impl Critique {
    /// `what` followed by the hints, one paragraph.
    pub fn text(&self) -> String {
        let mut parts = vec![self.what.clone()];
        parts.extend(self.hints.iter().cloned());
        parts.join(" ")
    }
}

/// Critiques responses from their verdicts alone: no model, deterministic, instantaneous.
#[derive(Debug, Default)]
pub struct VerifierCritic {
    config: CriticConfig,
    stats: StatsRecorder,
}

impl VerifierCritic {
    /// A critic with `config`.
    pub fn new(config: CriticConfig) -> Self {
        Self {
            config,
            stats: StatsRecorder::new(),
        }
    }

    /// The feedback for one request (never fails).
    pub fn feedback_one(&self, request: &FeedbackRequest) -> Feedback {
        let start = Instant::now();
        let reveal = self.config.reveal_answer && request.allow_reference;
        let c = critique(&request.problem, &request.verdict, reveal);
        let mut text = c.text();
        if self.config.closing_sentence && !request.verdict.correct {
            text.push(' ');
            text.push_str(INCORRECT_TEXT);
        }
        let mut fb = Feedback::new(
            FeedbackKind::Critique,
            text,
            FeedbackSource::new(self.name()),
        );
        fb.verdict = Some(request.verdict.clone());
        fb.pivot = c.pivot;
        fb.hints = c.hints;
        fb.latency_ms = start.elapsed().as_secs_f64() * 1e3;
        fb
    }
}

impl FeedbackProvider for VerifierCritic {
    fn name(&self) -> &str {
        "verifier_critic"
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

/// The critique of `verdict` on an answer to `problem`; `reveal` allows expected values.
pub fn critique(problem: &Problem, verdict: &Verdict, reveal: bool) -> Critique {
    let d = &verdict.diagnosis;
    let fe = d.first_error.as_ref();
    let pivot = fe.map(|e| Pivot::step(e.step));
    let (what, hints) = match d.kind {
        DiagnosisKind::Correct => (correct_text(fe), Vec::new()),
        DiagnosisKind::BadFormat | DiagnosisKind::NoAnswer => format_text(problem, d),
        DiagnosisKind::TimedOut => (
            "Your answer could not be checked in time.".to_string(),
            vec!["Write the final answer in its simplest form.".to_string()],
        ),
        DiagnosisKind::TooLarge => (
            "Your response or answer is too large to be checked.".to_string(),
            vec!["Keep the response short and write a compact final answer.".to_string()],
        ),
        DiagnosisKind::WrongAnswer | DiagnosisKind::WrongStep | DiagnosisKind::Partial => {
            match problem {
                Problem::Math(_) | Problem::ReasoningGym(_) => math(fe, reveal),
                Problem::Arithmetic(_) => arithmetic(d, fe, reveal),
                Problem::Countdown(_) => countdown(d, fe, reveal),
                Problem::KnightsKnaves(p) => knights_knaves(&p.names, fe, reveal),
                Problem::ShortestPath(p) => shortest_path(d, fe, p.shortest, reveal),
                Problem::BinaryMatrix(p) => {
                    let cols = p.matrix.first().map_or(1, Vec::len).max(1);
                    binary_matrix(fe, cols, reveal)
                }
            }
        }
    };
    Critique { what, hints, pivot }
}

fn correct_text(fe: Option<&FirstError>) -> String {
    match fe {
        Some(e) => format!(
            "Your final answer is correct, but step {} of your work differs from the reference.",
            e.step + 1
        ),
        None => "Your answer is correct.".to_string(),
    }
}

fn answer_format(problem: &Problem) -> AnswerFormat {
    match problem {
        Problem::Math(_) => AnswerFormat::Boxed,
        Problem::ReasoningGym(_) => AnswerFormat::Tag,
        Problem::Arithmetic(p) => p.format,
        Problem::Countdown(p) => p.format,
        Problem::KnightsKnaves(p) => p.format,
        Problem::ShortestPath(p) => p.format,
        Problem::BinaryMatrix(p) => p.format,
    }
}

/// Bad-format and no-answer details never contain the reference: they say what was expected of
/// the format.
fn format_text(problem: &Problem, d: &Diagnosis) -> (String, Vec<String>) {
    let what = if d.detail.is_empty() {
        match d.kind {
            DiagnosisKind::NoAnswer => "No final answer was found in your response.".to_string(),
            _ => "Your response does not follow the required answer format.".to_string(),
        }
    } else {
        sentence(&d.detail)
    };
    let mut hints = Vec::new();
    if let Some(e) = &d.first_error
        && !e.expected.is_empty()
        && problem.family() != redraft_verifier::TaskFamily::Math
    {
        hints.push(format!("Expected {}.", e.expected));
    }
    hints.push(answer_format(problem).instruction().to_string());
    (what, hints)
}

fn math(fe: Option<&FirstError>, reveal: bool) -> (String, Vec<String>) {
    let mut what = match fe {
        Some(e) if !e.found.is_empty() => format!("Your final answer {} is incorrect.", e.found),
        _ => "Your final answer is incorrect.".to_string(),
    };
    if reveal && let Some(e) = fe.filter(|e| !e.expected.is_empty()) {
        what.push_str(&format!(" The correct answer is {}.", e.expected));
    }
    (
        what,
        vec![
            "Re-check each step of your derivation, especially the final computations and simplification."
                .to_string(),
        ],
    )
}

fn arithmetic(d: &Diagnosis, fe: Option<&FirstError>, reveal: bool) -> (String, Vec<String>) {
    let Some(e) = fe else {
        return generic(d, reveal);
    };
    match d.kind {
        DiagnosisKind::WrongStep => {
            let mut what = format!(
                "Step {} of your scratchpad is wrong: you wrote `{}`.",
                e.step + 1,
                e.found
            );
            if reveal {
                what.push_str(&format!(" It should be `{}`.", e.expected));
            }
            (
                what,
                vec!["Redo that column carefully, including the carry or borrow.".to_string()],
            )
        }
        _ => {
            let column = e
                .expected
                .bytes()
                .rev()
                .zip(e.found.bytes().rev())
                .position(|(a, b)| a != b)
                .unwrap_or(e.expected.len().min(e.found.len()));
            let mut what = format!(
                "Your final result {} is wrong from digit {} counting from the right (0 = units digit).",
                e.found, column
            );
            if reveal {
                what.push_str(&format!(" The correct result is {}.", e.expected));
            }
            (
                what,
                vec![
                    "Work column by column from the right and write each step in the scratchpad."
                        .to_string(),
                ],
            )
        }
    }
}

fn countdown(d: &Diagnosis, fe: Option<&FirstError>, reveal: bool) -> (String, Vec<String>) {
    let Some(e) = fe else {
        return generic(d, reveal);
    };
    match d.kind {
        DiagnosisKind::WrongStep => {
            let mut what = format!(
                "Step {} of your work has an arithmetic error: `{}`.",
                e.step + 1,
                e.found
            );
            if reveal {
                what.push_str(&format!(" It should be `{}`.", e.expected));
            }
            (
                what,
                vec!["Recompute every intermediate result before using it.".to_string()],
            )
        }
        _ => (
            // The target is part of the problem: saying it reveals nothing.
            format!(
                "Your expression evaluates to {}, not the target {}.",
                e.found, e.expected
            ),
            vec![
                "Try another combination of the numbers; each may be used at most once."
                    .to_string(),
            ],
        ),
    }
}

fn knights_knaves(
    names: &[String],
    fe: Option<&FirstError>,
    reveal: bool,
) -> (String, Vec<String>) {
    let Some(e) = fe else {
        return (
            "Your classification is not correct.".to_string(),
            vec![
                "Check every statement against your assignment: knights' statements must be true and knaves' false."
                    .to_string(),
            ],
        );
    };
    // The verifier writes `expected` as "Name is a knight"; the name is not a secret.
    let name = e
        .expected
        .split_once(" is a ")
        .map(|(n, _)| n.to_string())
        .or_else(|| names.get(e.step).cloned())
        .unwrap_or_else(|| "someone".to_string());
    let mut what = if e.found.starts_with("nothing about") {
        format!("Your answer says nothing about {name}.")
    } else {
        format!(
            "Your answer is wrong about {name}: you said \"{}\".",
            e.found
        )
    };
    if reveal {
        what.push_str(&format!(" In fact, {}.", e.expected));
    }
    (
        what,
        vec![format!(
            "Check {name}'s statement against your assignment: a knight's statement must be true and a knave's false."
        )],
    )
}

fn shortest_path(
    d: &Diagnosis,
    fe: Option<&FirstError>,
    shortest: usize,
    reveal: bool,
) -> (String, Vec<String>) {
    let hint = vec!["Trace your path on the grid cell by cell before writing it.".to_string()];
    let Some(e) = fe else {
        let mut what = "Your path is not a shortest path to G.".to_string();
        if reveal {
            what.push_str(&format!(" A shortest path has {shortest} moves."));
        }
        return (what, hint);
    };
    let mut what = match d.kind {
        DiagnosisKind::WrongStep => {
            let how = if d.detail.contains("leaves the grid") {
                "leaves the grid"
            } else {
                "runs into a wall"
            };
            format!("Move {} ({}) {how}.", e.step + 1, e.found)
        }
        DiagnosisKind::Partial => format!(
            "Your path reaches G but is not a shortest path: move {} ({}) is a detour.",
            e.step + 1,
            e.found
        ),
        _ => format!("Your path stops after {} moves without reaching G.", e.step),
    };
    if reveal && !e.expected.is_empty() {
        what.push_str(&format!(
            " From that cell a shortest path continues with {}.",
            e.expected
        ));
        if d.kind == DiagnosisKind::Partial {
            what.push_str(&format!(" A shortest path has {shortest} moves."));
        }
    }
    (what, hint)
}

fn binary_matrix(fe: Option<&FirstError>, cols: usize, reveal: bool) -> (String, Vec<String>) {
    let hint = vec![
        "The distance of a cell is the number of up/down/left/right moves to the nearest 0; recompute it from its neighbours."
            .to_string(),
    ];
    let Some(e) = fe.filter(|e| !e.found.is_empty()) else {
        return ("Some distances in your matrix are wrong.".to_string(), hint);
    };
    let mut what = format!(
        "The distance at row {}, column {} (counting from 1) is wrong: you wrote {}.",
        e.step / cols + 1,
        e.step % cols + 1,
        e.found
    );
    if reveal {
        what.push_str(&format!(" It should be {}.", e.expected));
    }
    (what, hint)
}

/// The fallback: details of wrong answers may contain expected values, so only with `reveal`.
fn generic(d: &Diagnosis, reveal: bool) -> (String, Vec<String>) {
    let what = if reveal && !d.detail.is_empty() {
        format!("Your answer is incorrect: {}", sentence(&d.detail))
    } else {
        "Your answer is incorrect.".to_string()
    };
    (what, Vec::new())
}

/// `s` with a capital first letter and a final full stop.
fn sentence(s: &str) -> String {
    let s = s.trim();
    let mut c = s.chars();
    let mut out = match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect::<String>(),
        None => String::new(),
    };
    if !out.ends_with(['.', '!', '?']) {
        out.push('.');
    }
    out
}
