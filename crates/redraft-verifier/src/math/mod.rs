//! Math answers: extraction, normalisation, parsing and equivalence, behind [`check_math`].
//!
//! The pipeline reads top to bottom: [`extract`] finds the final answer in the response,
//! [`normalize`] rewrites it, [`parse`] builds an expression tree, and [`equiv`] decides
//! equivalence with the gold answer (which goes through the same steps). Each step runs under a
//! shared [`Budget`], so a hostile answer ends as a "timed out" or "too large" verdict.

// In pipeline order.
pub mod extract;

pub mod normalize;

pub mod parse;

pub mod eval;

pub mod equiv;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::budget::{Budget, Limit};
use crate::verdict::{Diagnosis, DiagnosisKind, FirstError, Verdict};

/// Limits and options of a math check.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MathOptions {
    /// Elementary work steps allowed per check (deterministic cancellation).
    pub step_budget: u64,
    /// Wall-clock limit per check, in milliseconds (a backstop to the step budget).
    pub time_limit_ms: u64,
    /// The longest extracted answer, in bytes; longer answers are "too large".
    pub max_answer_bytes: usize,
    /// The longest response, in bytes; longer responses are "too large".
    pub max_response_bytes: usize,
    /// Require a marked answer (`\boxed{}`, `<answer>`, "the final answer is"): a bare number or
    /// math segment in running text is then a bad-format verdict.
    pub require_marked_answer: bool,
}

impl Default for MathOptions {
    fn default() -> Self {
        Self {
            step_budget: 400_000,
            time_limit_ms: 200,
            max_answer_bytes: 4096,
            max_response_bytes: 1 << 20,
            require_marked_answer: false,
        }
    }
}

/// A gold answer prepared once for repeated checks: extracted and normalised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gold {
    /// The normalised gold answer.
    pub normalized: String,
    /// Whether the gold answer was written as a percentage.
    pub percent: bool,
}

impl Gold {
    /// Prepares a gold answer: extracts it (a gold solution may be a whole worked solution) and
    /// normalises it. A gold answer with nothing extractable is taken whole.
    pub fn new(gold: &str) -> Self {
        let text = extract::extract_answer(gold).map_or_else(|| gold.to_string(), |e| e.text);
        Self {
            normalized: normalize::normalize(&text),
            percent: normalize::has_percent(&text),
        }
    }
}

fn limit_verdict(limit: Limit, what: &str) -> Verdict {
    match limit {
        Limit::TimedOut => Verdict::malformed(Diagnosis::new(
            DiagnosisKind::TimedOut,
            format!("timed out while checking the {what}"),
        )),
        Limit::TooLarge => Verdict::malformed(Diagnosis::new(
            DiagnosisKind::TooLarge,
            format!("the {what} is too large to check"),
        )),
    }
}

fn loose_text(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace() && *c != '{' && *c != '}')
        .flat_map(char::to_lowercase)
        .collect()
}

fn is_words(s: &str) -> bool {
    s.chars().all(|c| c.is_alphabetic() || c == ' ')
        && s.chars().filter(|c| c.is_alphabetic()).count() >= 2
}

/// Checks `response` against the gold answer `gold`: extracts the response's final answer,
/// normalises both, and compares them. Never panics; every outcome is a [`Verdict`].
pub fn check_math(gold: &str, response: &str, options: &MathOptions) -> Verdict {
    let cap = options.max_response_bytes;
    if (gold.len() > cap || response.len() > cap) && gold == response {
        // Too large to parse, but equal bytes are equal answers (comparing them is linear).
        return Verdict::correct("the answer is byte-identical to the gold answer");
    }
    if gold.len() > cap {
        return limit_verdict(Limit::TooLarge, "gold answer");
    }
    check_math_prepared(&Gold::new(gold), response, options)
}

/// [`check_math`] with a gold answer prepared by [`Gold::new`].
pub fn check_math_prepared(gold: &Gold, response: &str, options: &MathOptions) -> Verdict {
    if response.len() > options.max_response_bytes {
        return limit_verdict(Limit::TooLarge, "response");
    }
    let Some(found) = extract::extract_answer(response) else {
        return Verdict::malformed(Diagnosis::new(
            DiagnosisKind::NoAnswer,
            "no final answer found (expected \\boxed{...}, <answer>...</answer>, or a final number)",
        ));
    };
    let marked = matches!(
        found.source,
        extract::Source::AnswerTag | extract::Source::Boxed | extract::Source::FinalAnswer
    );
    if options.require_marked_answer && !marked {
        return Verdict::malformed(
            Diagnosis::new(
                DiagnosisKind::BadFormat,
                "the answer is not marked (expected \\boxed{...} or <answer>...</answer>)",
            )
            .with_first_error(FirstError {
                step: 0,
                span: found.span.clone(),
                expected: "a marked final answer".into(),
                found: found.text.clone(),
            }),
        );
    }
    if found.text.len() > options.max_answer_bytes
        || gold.normalized.len() > options.max_answer_bytes
    {
        return limit_verdict(Limit::TooLarge, "answer");
    }
    let pred = normalize::normalize(&found.text);
    let wrong = |detail: &str| {
        Verdict::wrong(
            Diagnosis::new(DiagnosisKind::WrongAnswer, detail).with_first_error(FirstError {
                step: 0,
                span: found.span.clone(),
                expected: gold.normalized.clone(),
                found: pred.clone(),
            }),
        )
    };
    if pred.is_empty() {
        return Verdict::malformed(Diagnosis::new(
            DiagnosisKind::NoAnswer,
            "the extracted answer is empty",
        ));
    }
    if pred == gold.normalized || loose_text(&pred) == loose_text(&gold.normalized) {
        return Verdict::correct("the answer matches the reference");
    }
    if is_words(&pred) && is_words(&gold.normalized) {
        return wrong("the answer does not match the reference text");
    }
    let mut budget = Budget::new(
        options.step_budget,
        Duration::from_millis(options.time_limit_ms),
    );
    let g = match parse::parse(&gold.normalized, &mut budget) {
        Ok(g) => g,
        Err(parse::ParseError::Limit(l)) => return limit_verdict(l, "gold answer"),
        Err(parse::ParseError::Syntax(_)) => {
            return wrong("the reference could not be parsed and the texts differ");
        }
    };
    let p = match parse::parse(&pred, &mut budget) {
        Ok(p) => p,
        Err(parse::ParseError::Limit(l)) => return limit_verdict(l, "answer"),
        Err(parse::ParseError::Syntax(e)) => {
            return wrong(&format!("the answer could not be parsed ({e})"));
        }
    };
    let pred_percent = normalize::has_percent(&found.text);
    let verdict = match equiv::equivalent(&g, &p, &mut budget) {
        // `25\%` was compared as 25; when only one side is a percentage, also try it over 100,
        // so that `25\%` matches `1/4`.
        Ok(false) if pred_percent != gold.percent => {
            let hundredth = |e: parse::Expr| {
                let hundred = num_rational::BigRational::from_integer(100.into());
                parse::Expr::Div(
                    Box::new(e),
                    Box::new(parse::Expr::Num {
                        value: hundred,
                        decimals: None,
                    }),
                )
            };
            let (g, p) = if pred_percent {
                (g, hundredth(p))
            } else {
                (hundredth(g), p)
            };
            equiv::equivalent(&g, &p, &mut budget)
        }
        other => other,
    };
    match verdict {
        Ok(true) => Verdict::correct("the answer is equivalent to the reference"),
        Ok(false) => wrong("the answer is not equivalent to the reference"),
        Err(l) => limit_verdict(l, "answer"),
    }
}

/// Whether `pred` is equivalent to `gold` (both may be whole responses).
pub fn math_equivalent(gold: &str, pred: &str) -> bool {
    check_math(gold, pred, &MathOptions::default()).correct
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_kinds() {
        let o = MathOptions::default();
        assert!(check_math("1/2", "so \\boxed{0.5}", &o).correct);
        let v = check_math("1/2", "so \\boxed{0.6}", &o);
        assert_eq!(v.diagnosis.kind, DiagnosisKind::WrongAnswer);
        assert_eq!(
            v.diagnosis.first_error.as_ref().map(|e| e.found.as_str()),
            Some("0.6")
        );
        assert_eq!(
            check_math("1/2", "no idea", &o).diagnosis.kind,
            DiagnosisKind::NoAnswer
        );
        let strict = MathOptions {
            require_marked_answer: true,
            ..o.clone()
        };
        assert_eq!(
            check_math("2", "it is 2", &strict).diagnosis.kind,
            DiagnosisKind::BadFormat
        );
        assert!(check_math("2", "it is 2", &o).correct);
        assert!(check_math("2", "it is \\boxed{2}", &strict).correct);
    }
}
