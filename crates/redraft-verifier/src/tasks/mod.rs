//! Problems and task families.

use serde::{Deserialize, Serialize};

use crate::math::MathOptions;
use crate::verdict::Verdict;

/// Difficulty knobs.
#[derive(Clone, Debug, Default)]
pub struct Difficulty;

/// Task families.
#[derive(Clone, Copy, Debug)]
pub enum TaskFamily {
    /// Math.
    Math,
}

/// A math problem.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MathProblem {
    /// The question.
    pub problem: String,
    /// The gold answer.
    pub answer: String,
}

/// A problem.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "task", content = "problem", rename_all = "snake_case")]
pub enum Problem {
    /// Math.
    Math(MathProblem),
}

impl Problem {
    /// Verify.
    pub fn verify_with(&self, response: &str, math: &MathOptions) -> Verdict {
        match self {
            Problem::Math(m) => crate::math::check_math(&m.answer, response, math),
        }
    }
}
