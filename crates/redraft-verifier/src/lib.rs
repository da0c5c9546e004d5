//! redraft-verifier: turns a response into a [`Verdict`].
//!
//! Two kinds of problems are checked: math answers against a gold answer ([`math`]), and the
//! built-in task families ([`tasks`]), each with a seeded generator, a reference solution, a
//! verifier with partial credit and a diagnosis of the first error. [`dataset`] loads problems
//! from JSONL and Parquet; [`jsonl`] holds the logic of `redraft verify` and
//! `redraft tasks generate`; [`mod@bench`] measures throughput.
//!
//! Invariants: a wrong or malformed answer is a [`Verdict`], never an `Err`; no input panics;
//! every check runs under a [`budget::Budget`] that really cancels it.
//!
//! ```
//! use redraft_verifier::{DiagnosisKind, Difficulty, MathOptions, TaskFamily, check_math};
//!
//! let v = check_math("\\frac{1}{2}", "so the answer is \\boxed{0.5}", &MathOptions::default());
//! assert!(v.correct);
//!
//! let difficulty: Difficulty = "digits=3,op=add".parse()?;
//! let problem = TaskFamily::Arithmetic.generate_one(7, 0, &difficulty)?;
//! assert!(problem.verify(&problem.solution()).correct);
//! let v = problem.verify("1+1+0=3;<answer>0</answer>");
//! assert_eq!(v.diagnosis.kind, DiagnosisKind::WrongStep);
//! assert_eq!(v.diagnosis.first_error.map(|e| e.step), Some(0));
//! # Ok::<(), redraft_verifier::Error>(())
//! ```
#![deny(clippy::print_stdout, clippy::print_stderr)]

// Modules in reading order: the result type, the cancellation mechanism, the checkers, then
// data and command-line plumbing.
pub mod error;

pub mod verdict;

pub mod budget;

pub mod math;

pub mod tasks;

pub mod reasoning_gym;

pub mod dataset;

pub mod jsonl;

pub mod bench;

pub use error::{Error, Result};
pub use math::{MathOptions, check_math, math_equivalent};
pub use reasoning_gym::{ReasoningGymProblem, RgDataset};
pub use tasks::{Difficulty, Problem, PromptStyle, TaskFamily};
pub use verdict::{Diagnosis, DiagnosisKind, FirstError, Verdict};

/// Anything that checks a response to a problem: the seam through which rollouts, SFT and
/// evaluation get their rewards (the built-in [`DefaultVerifier`], a user's reward function, an
/// external program or endpoint).
pub trait Verifier: Send + Sync {
    /// The verdict on `response` as an answer to `problem`. Never panics.
    fn verify(&self, problem: &Problem, response: &str) -> Verdict;

    /// The verdicts on a batch of `(problem, response)` pairs, in order. The default checks
    /// them one by one; verifiers that reach a program or a server may run them concurrently.
    fn verify_batch(&self, items: &[(&Problem, &str)]) -> Vec<Verdict> {
        items.iter().map(|(p, r)| self.verify(p, r)).collect()
    }
}

impl<V: Verifier + ?Sized> Verifier for std::sync::Arc<V> {
    fn verify(&self, problem: &Problem, response: &str) -> Verdict {
        (**self).verify(problem, response)
    }

    fn verify_batch(&self, items: &[(&Problem, &str)]) -> Vec<Verdict> {
        (**self).verify_batch(items)
    }
}

/// A [`Verifier`] from a closure `(problem, response) -> Verdict`, for a reward function
/// written in Rust.
///
/// ```
/// use redraft_verifier::{FnVerifier, Verdict, Verifier, Diagnosis, DiagnosisKind};
/// let short = FnVerifier::new(|_p, r: &str| {
///     if r.len() < 10 { Verdict::correct("short") }
///     else { Verdict::wrong(Diagnosis::new(DiagnosisKind::WrongAnswer, "too long")) }
/// });
/// # let _ = short;
/// ```
pub struct FnVerifier<F>(F);

impl<F> FnVerifier<F>
where
    F: Fn(&Problem, &str) -> Verdict + Send + Sync,
{
    /// Wraps `f`.
    pub fn new(f: F) -> Self {
        Self(f)
    }
}

impl<F> std::fmt::Debug for FnVerifier<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FnVerifier")
    }
}

impl<F> Verifier for FnVerifier<F>
where
    F: Fn(&Problem, &str) -> Verdict + Send + Sync,
{
    fn verify(&self, problem: &Problem, response: &str) -> Verdict {
        (self.0)(problem, response)
    }
}

/// The shared [`DefaultVerifier`] with default options (what [`Problem::verify`] applies).
pub fn default_verifier() -> &'static DefaultVerifier {
    static DEFAULT: std::sync::LazyLock<DefaultVerifier> =
        std::sync::LazyLock::new(DefaultVerifier::default);
    &DEFAULT
}

/// The verifier for every [`Problem`]: math problems by answer equivalence, task families by
/// their own checkers.
#[derive(Clone, Debug, Default)]
pub struct DefaultVerifier {
    /// Limits of math checks.
    pub math: MathOptions,
}

impl Verifier for DefaultVerifier {
    fn verify(&self, problem: &Problem, response: &str) -> Verdict {
        problem.verify_with(response, &self.math)
    }
}
