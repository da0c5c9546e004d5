//! Task selection from configuration: a weighted mix of families and difficulties.
//!
//! ```toml
//! [[tasks]]
//! family = "arithmetic"
//! difficulty = { digits = 3, op = "mixed" }
//! weight = 3.0
//!
//! [[tasks]]
//! family = "countdown"
//! ```

use serde::{Deserialize, Serialize};

use super::{Difficulty, Problem, TaskFamily, splitmix};
use crate::error::{Error, Result};

fn one() -> f64 {
    1.0
}

/// One family at one difficulty, with a sampling weight.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// The family (not `math`, which has no generator).
    pub family: TaskFamily,
    /// Its difficulty knobs.
    #[serde(default)]
    pub difficulty: Difficulty,
    /// Relative sampling weight (default 1).
    #[serde(default = "one")]
    pub weight: f64,
}

/// A weighted mix of task specs. Problem `i` of seed `s` picks its spec from a hash of `(s, i)`,
/// so, like the families' own generators, it does not depend on how many problems are drawn.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskMix {
    /// The specs.
    pub tasks: Vec<TaskSpec>,
}

impl TaskMix {
    /// Checks that the mix is usable: non-empty, positive finite weights, generated families only,
    /// and knobs each family accepts.
    pub fn validate(&self) -> Result<()> {
        if self.tasks.is_empty() {
            return Err(Error::InvalidOption("the task mix is empty".into()));
        }
        for t in &self.tasks {
            if !(t.weight.is_finite() && t.weight > 0.0) {
                return Err(Error::InvalidOption(format!(
                    "{}: weight must be positive",
                    t.family
                )));
            }
            t.family.generate_one(0, 0, &t.difficulty)?;
        }
        Ok(())
    }

    /// Problem `index` of `seed`.
    pub fn generate_one(&self, seed: u64, index: u64) -> Result<Problem> {
        let total: f64 = self.tasks.iter().map(|t| t.weight.max(0.0)).sum();
        if self.tasks.is_empty() || total.is_nan() || total <= 0.0 {
            return Err(Error::InvalidOption(
                "the task mix is empty or has no positive weight".into(),
            ));
        }
        let u = (splitmix(splitmix(seed) ^ index) >> 11) as f64 / (1u64 << 53) as f64 * total;
        let mut acc = 0.0;
        let spec = self
            .tasks
            .iter()
            .find(|t| {
                acc += t.weight.max(0.0);
                u < acc
            })
            .unwrap_or(&self.tasks[self.tasks.len() - 1]);
        spec.family.generate_one(seed, index, &spec.difficulty)
    }

    /// Problems `0..count` of `seed`.
    pub fn generate(&self, seed: u64, count: usize) -> Result<Vec<Problem>> {
        (0..count as u64)
            .map(|i| self.generate_one(seed, i))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixes_by_weight_and_deterministically() {
        let mix: TaskMix = serde_json::from_str(
            r#"{"tasks": [{"family": "arithmetic", "difficulty": {"digits": 2}, "weight": 3},
                          {"family": "countdown"}]}"#,
        )
        .unwrap();
        mix.validate().unwrap();
        let a = mix.generate(5, 400).unwrap();
        assert_eq!(a, mix.generate(5, 400).unwrap());
        let arith = a
            .iter()
            .filter(|p| p.family() == TaskFamily::Arithmetic)
            .count();
        assert!((250..350).contains(&arith), "{arith}");
        let bad = TaskMix {
            tasks: vec![TaskSpec {
                family: TaskFamily::Math,
                difficulty: Difficulty::default(),
                weight: 1.0,
            }],
        };
        assert!(bad.validate().is_err());
    }
}
