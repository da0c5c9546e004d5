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

pub mod dataset;

pub mod jsonl;

pub mod bench;

pub use error::{Error, Result};
pub use math::{MathOptions, check_math, math_equivalent};
pub use tasks::{Difficulty, Problem, PromptStyle, TaskFamily};
pub use verdict::{Diagnosis, DiagnosisKind, FirstError, Verdict};

/// Anything that checks a response to a problem.
pub trait Verifier: Send + Sync {
    /// The verdict on `response` as an answer to `problem`. Never panics.
    fn verify(&self, problem: &Problem, response: &str) -> Verdict;
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
