//! Where problems come from: a built-in task family or a dataset file, split into a training
//! stream, an SFT stream and a held-out evaluation set that never overlap.
//!
//! Generated problems are addressed by index, so the data cursor of a run is a single number
//! (the next training index) and a resumed run sees exactly the problems it would have seen.
//! Training and SFT problems whose prompt equals a held-out prompt are skipped.

use std::collections::HashSet;

use redraft_verifier::dataset::{LoadOptions, OnError, load, train_test_split};
use redraft_verifier::{Problem, TaskFamily};

use crate::config::TaskConfig;
use crate::error::{Error, Result};

/// Salts of the three problem streams of a generated family.
const EVAL_STREAM: u64 = 0xE7A1;
const SFT_STREAM: u64 = 0x5F7;

/// The problems of a run.
#[derive(Debug, Clone)]
pub struct ProblemSource {
    kind: SourceKind,
    eval: Vec<Problem>,
    eval_prompts: HashSet<String>,
}

#[derive(Debug, Clone)]
enum SourceKind {
    Generated {
        family: TaskFamily,
        config: TaskConfig,
    },
    Dataset {
        train: Vec<Problem>,
    },
}

impl ProblemSource {
    /// The source of `task` with `eval_problems` held-out problems.
    ///
    /// # Errors
    /// [`Error::Verifier`] when the dataset cannot be read or a generator rejects the
    /// difficulty; [`Error::Config`] for an empty training split.
    pub fn new(task: &TaskConfig, eval_problems: usize) -> Result<Self> {
        if let Some(family) = task.family {
            let eval = (0..eval_problems as u64)
                .map(|i| family.generate_one(task.seed ^ EVAL_STREAM, i, &task.difficulty))
                .collect::<Result<Vec<_>, _>>()?;
            let eval_prompts = eval.iter().map(Problem::prompt).collect();
            return Ok(Self {
                kind: SourceKind::Generated {
                    family,
                    config: task.clone(),
                },
                eval,
                eval_prompts,
            });
        }
        let path = task
            .dataset
            .as_ref()
            .ok_or_else(|| Error::config("task", "no family and no dataset"))?;
        let options = LoadOptions {
            on_error: OnError::Stop,
            reasoning_gym: task.reasoning_gym,
            ..LoadOptions::default()
        };
        let (records, _) = load(path, &options)?;
        let (train, test) = train_test_split(records, task.seed, task.test_fraction);
        if train.is_empty() {
            return Err(Error::config(
                "task.dataset",
                format!("{} has no training problems", path.display()),
            ));
        }
        let to_problems = |rs: Vec<redraft_verifier::dataset::Record>| -> Vec<Problem> {
            rs.into_iter()
                .map(redraft_verifier::dataset::Record::into_problem)
                .collect()
        };
        let eval: Vec<Problem> = to_problems(test).into_iter().take(eval_problems).collect();
        let eval_prompts = eval.iter().map(Problem::prompt).collect();
        Ok(Self {
            kind: SourceKind::Dataset {
                train: to_problems(train),
            },
            eval,
            eval_prompts,
        })
    }

    /// The held-out problems.
    pub fn eval(&self) -> &[Problem] {
        &self.eval
    }

    /// `count` training problems starting at `cursor`; returns them and the next cursor.
    ///
    /// # Errors
    /// [`Error::Verifier`] if the generator fails.
    pub fn train(&self, cursor: u64, count: usize) -> Result<(Vec<Problem>, u64)> {
        self.stream(0, cursor, count)
    }

    /// `count` SFT problems (a stream disjoint from the training one for generated families;
    /// the training problems for datasets) starting at `cursor`.
    ///
    /// # Errors
    /// [`Error::Verifier`] if the generator fails.
    pub fn sft(&self, cursor: u64, count: usize) -> Result<(Vec<Problem>, u64)> {
        self.stream(SFT_STREAM, cursor, count)
    }

    fn stream(&self, salt: u64, mut cursor: u64, count: usize) -> Result<(Vec<Problem>, u64)> {
        let mut out = Vec::with_capacity(count);
        match &self.kind {
            SourceKind::Generated { family, config } => {
                while out.len() < count {
                    let p = family.generate_one(config.seed ^ salt, cursor, &config.difficulty)?;
                    cursor += 1;
                    if !self.eval_prompts.contains(&p.prompt()) {
                        out.push(p);
                    }
                }
            }
            SourceKind::Dataset { train } => {
                while out.len() < count {
                    out.push(train[(cursor % train.len() as u64) as usize].clone());
                    cursor += 1;
                }
            }
        }
        Ok((out, cursor))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redraft_verifier::Difficulty;

    fn arithmetic() -> TaskConfig {
        TaskConfig {
            family: Some(TaskFamily::Arithmetic),
            difficulty: Difficulty::from_pairs([("digits", "1")]),
            dataset: None,
            reasoning_gym: None,
            test_fraction: 0.1,
            seed: 3,
        }
    }

    #[test]
    fn training_never_sees_a_held_out_prompt_and_resumes_by_cursor() {
        let source = ProblemSource::new(&arithmetic(), 20).unwrap();
        let held: HashSet<String> = source.eval().iter().map(Problem::prompt).collect();
        let (all, end) = source.train(0, 50).unwrap();
        assert!(end >= 50);
        assert!(all.iter().all(|p| !held.contains(&p.prompt())));
        let (first, mid) = source.train(0, 20).unwrap();
        let (rest, end2) = source.train(mid, 30).unwrap();
        assert_eq!(end, end2);
        let joined: Vec<String> = first.iter().chain(&rest).map(Problem::prompt).collect();
        let direct: Vec<String> = all.iter().map(Problem::prompt).collect();
        assert_eq!(joined, direct);
    }

    #[test]
    fn dataset_source_splits_and_cycles() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.jsonl");
        let lines: Vec<String> = (0..40)
            .map(|i| {
                format!(
                    "{{\"problem\": \"What is {i}+1?\", \"answer\": \"{}\"}}",
                    i + 1
                )
            })
            .collect();
        std::fs::write(&path, lines.join("\n")).unwrap();
        let task = TaskConfig {
            family: None,
            dataset: Some(path),
            test_fraction: 0.25,
            ..arithmetic()
        };
        let source = ProblemSource::new(&task, 100).unwrap();
        let held: HashSet<String> = source.eval().iter().map(Problem::prompt).collect();
        assert!(!held.is_empty());
        let (train, _) = source.train(0, 80).unwrap();
        assert_eq!(train.len(), 80);
        assert!(train.iter().all(|p| !held.contains(&p.prompt())));
    }

    /// Lines exported by reasoning-gym (from the conformance fixture), without their cases.
    fn reasoning_gym_lines(strip_source: bool) -> String {
        let fixture = include_str!("../../redraft-verifier/tests/data/reasoning_gym/cases.jsonl");
        fixture
            .lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                let m = v.as_object_mut().unwrap();
                m.remove("cases");
                if strip_source {
                    m["metadata"]
                        .as_object_mut()
                        .unwrap()
                        .remove("source_dataset");
                }
                format!("{v}\n")
            })
            .collect()
    }

    #[test]
    fn a_reasoning_gym_export_loads_as_problems_scored_by_its_rules() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rg.jsonl");
        std::fs::write(&path, reasoning_gym_lines(false)).unwrap();
        let task = TaskConfig {
            family: None,
            dataset: Some(path),
            ..arithmetic()
        };
        let source = ProblemSource::new(&task, 5).unwrap();
        let (train, _) = source.train(0, 100).unwrap();
        for p in source.eval().iter().chain(&train) {
            let Problem::ReasoningGym(rg) = p else {
                panic!("not loaded as a reasoning-gym problem: {p:?}");
            };
            assert_eq!(p.verify(&p.solution()).reward, 1.0, "{rg:?}");
            // reasoning-gym's rule, not the math checker: countdown gives 0.01 for no answer.
            let none = p.verify("no tags").reward;
            let want = if rg.dataset.name() == "countdown" {
                0.01
            } else {
                0.0
            };
            assert_eq!(none, want, "{}", rg.dataset);
        }
    }

    #[test]
    fn the_config_names_the_reasoning_gym_dataset_of_lines_without_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kk.jsonl");
        let lines: String = reasoning_gym_lines(true)
            .lines()
            .take(20)
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(&path, lines).unwrap();
        let task = TaskConfig {
            family: None,
            dataset: Some(path),
            reasoning_gym: Some("knights_knaves".parse().unwrap()),
            ..arithmetic()
        };
        let source = ProblemSource::new(&task, 2).unwrap();
        let (train, _) = source.train(0, 10).unwrap();
        for p in &train {
            let Problem::ReasoningGym(rg) = p else {
                panic!("not a reasoning-gym problem: {p:?}");
            };
            assert_eq!(rg.dataset.name(), "knights_knaves");
        }
        let toml_task: TaskConfig =
            toml::from_str("dataset = \"kk.jsonl\"\nreasoning_gym = \"knights_knaves\"").unwrap();
        assert_eq!(toml_task.reasoning_gym, task.reasoning_gym);
        let err =
            toml::from_str::<TaskConfig>("dataset = \"kk.jsonl\"\nreasoning_gym = \"sudoku\"");
        assert!(err.is_err());
    }
}
