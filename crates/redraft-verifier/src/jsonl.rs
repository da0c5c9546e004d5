//! The logic of `redraft verify` and `redraft tasks generate`, on readers and writers.
//!
//! `verify_jsonl` reads lines `{"gold": ..., "pred": ...}` (math equivalence),
//! `{"task": FAMILY, "problem": {...}, "response": "..."}` (any family), or
//! `{"problem": "...", "answer": "...", "response": "..."}` (a dataset math problem), or
//! `{"question", "answer", "metadata", "response"}` (a line exported by reasoning-gym, its
//! dataset in `metadata.source_dataset`, scored by reasoning-gym's rules: see
//! [`crate::reasoning_gym`]), and writes
//! one verdict per line: `{"reward", "correct", "format_ok", "diagnosis"}` plus the input's `id`
//! if it has one. A malformed input line is an error naming the file and line; with
//! [`OnError::Skip`] it is written as `{"error": "..."}` instead and counted, so output lines stay
//! aligned with input lines.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::dataset::OnError;
use crate::error::{Error, Result};
use crate::math::{MathOptions, check_math};
use crate::reasoning_gym::ReasoningGymProblem;
use crate::tasks::{Difficulty, MathProblem, Problem, TaskFamily};
use crate::verdict::Verdict;

/// Options of [`verify_jsonl`].
#[derive(Clone, Debug, Default)]
pub struct VerifyOptions {
    /// Limits of math checks.
    pub math: MathOptions,
    /// Stop or go on at a malformed line.
    pub on_error: OnError,
    /// The input's name in error messages (`-` for standard input).
    pub file: PathBuf,
}

/// Counts of a [`verify_jsonl`] run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Verdicts written.
    pub verified: usize,
    /// Correct verdicts.
    pub correct: usize,
    /// Sum of rewards.
    pub reward_sum: f64,
    /// Malformed input lines skipped.
    pub malformed: usize,
}

impl Summary {
    /// Mean reward over the verdicts (0 when there are none).
    pub fn mean_reward(&self) -> f64 {
        if self.verified == 0 {
            0.0
        } else {
            self.reward_sum / self.verified as f64
        }
    }
}

fn text_field(v: &serde_json::Value, key: &str) -> Option<String> {
    match v.get(key)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// The verdict for one parsed input line.
fn verdict_for(
    v: &serde_json::Value,
    options: &VerifyOptions,
) -> std::result::Result<Verdict, String> {
    if let (Some(gold), Some(pred)) = (text_field(v, "gold"), text_field(v, "pred")) {
        return Ok(check_math(&gold, &pred, &options.math));
    }
    let response =
        text_field(v, "response").ok_or("missing \"response\" (or \"gold\" and \"pred\")")?;
    if v.get("task").is_some() {
        let mut tagged = serde_json::Map::new();
        tagged.insert("task".into(), v["task"].clone());
        tagged.insert(
            "problem".into(),
            v.get("problem").cloned().unwrap_or(serde_json::Value::Null),
        );
        let problem: Problem = serde_json::from_value(serde_json::Value::Object(tagged))
            .map_err(|e| format!("bad problem: {e}"))?;
        return Ok(problem.verify_with(&response, &options.math));
    }
    if let Some(rg) = ReasoningGymProblem::from_line(v, None).map_err(|e| e.to_string())? {
        return Ok(Problem::ReasoningGym(rg).verify_with(&response, &options.math));
    }
    if let (Some(problem), Some(answer)) = (text_field(v, "problem"), text_field(v, "answer")) {
        let p = Problem::Math(MathProblem {
            problem,
            answer,
            solution: None,
        });
        return Ok(p.verify_with(&response, &options.math));
    }
    Err(
        "expected {\"gold\", \"pred\"}, {\"task\", \"problem\", \"response\"} or \
         {\"question\", \"answer\", \"metadata\", \"response\"}"
            .into(),
    )
}

/// Verifies every line of `reader`, writing one JSON verdict per line to `writer`.
pub fn verify_jsonl(
    reader: impl BufRead,
    mut writer: impl Write,
    options: &VerifyOptions,
) -> Result<Summary> {
    let io_err = |source| Error::Io {
        file: options.file.clone(),
        source,
    };
    let mut summary = Summary::default();
    let mut reader = reader;
    let mut buf = Vec::new();
    let mut i = 0;
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf).map_err(io_err)? == 0 {
            break;
        }
        i += 1;
        let line = std::str::from_utf8(&buf).map_err(|e| format!("not UTF-8: {e}"));
        if line.as_ref().is_ok_and(|l| l.trim().is_empty()) {
            continue;
        }
        let i = i - 1;
        let parsed = line
            .and_then(|l| serde_json::from_str::<serde_json::Value>(l).map_err(|e| e.to_string()));
        let result = parsed.and_then(|v| verdict_for(&v, options).map(|verdict| (v, verdict)));
        let out = match result {
            Ok((v, verdict)) => {
                summary.verified += 1;
                summary.correct += usize::from(verdict.correct);
                summary.reward_sum += f64::from(verdict.reward);
                let mut obj = serde_json::to_value(&verdict).unwrap_or_default();
                if let (Some(id), Some(map)) = (v.get("id"), obj.as_object_mut()) {
                    map.insert("id".into(), id.clone());
                }
                obj
            }
            Err(message) => {
                let err = Error::MalformedLine {
                    file: options.file.clone(),
                    line: i + 1,
                    message,
                };
                if options.on_error == OnError::Stop {
                    return Err(err);
                }
                tracing::warn!("{err}");
                summary.malformed += 1;
                serde_json::json!({ "error": err.to_string() })
            }
        };
        writeln!(writer, "{out}").map_err(io_err)?;
    }
    writer.flush().map_err(io_err)?;
    Ok(summary)
}

/// Writes problems `0..count` of `family` and `seed` as JSONL: `{"id", "task", "problem",
/// "prompt", "chat", "solution"}` per line. Returns the number written.
pub fn generate_jsonl(
    mut writer: impl Write,
    family: TaskFamily,
    seed: u64,
    count: usize,
    difficulty: &Difficulty,
) -> Result<usize> {
    let io_err = |source| Error::Io {
        file: PathBuf::from("-"),
        source,
    };
    for i in 0..count as u64 {
        let p = family.generate_one(seed, i, difficulty)?;
        let mut obj = serde_json::to_value(&p).unwrap_or_default();
        if let Some(map) = obj.as_object_mut() {
            map.insert("id".into(), format!("{family}-{seed}-{i}").into());
            map.insert("prompt".into(), p.prompt().into());
            map.insert(
                "chat".into(),
                serde_json::to_value(p.chat()).unwrap_or_default(),
            );
            map.insert("solution".into(), p.solution().into());
        }
        writeln!(writer, "{obj}").map_err(io_err)?;
    }
    writer.flush().map_err(io_err)?;
    Ok(count)
}

/// One line of `redraft tasks generate` output, as read back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GeneratedLine {
    /// `<family>-<seed>-<index>`.
    pub id: String,
    /// The problem.
    #[serde(flatten)]
    pub problem: Problem,
    /// Plain-text prompt.
    pub prompt: String,
    /// Reference solution.
    pub solution: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_math_and_task_lines() {
        let input = concat!(
            "{\"gold\": \"1/2\", \"pred\": \"\\\\boxed{0.5}\", \"id\": 7}\n",
            "{\"task\": \"arithmetic\", \"problem\": {\"a\": 2, \"b\": 3, \"op\": \"add\"}, \"response\": \"<answer>5</answer>\"}\n",
            "garbage\n",
        );
        let mut with_bad_utf8 = input.as_bytes().to_vec();
        with_bad_utf8.extend_from_slice(b"\xff\xfe\n");
        let opts_skip = VerifyOptions {
            on_error: OnError::Skip,
            file: "in.jsonl".into(),
            ..Default::default()
        };
        let s = verify_jsonl(&with_bad_utf8[..], Vec::new(), &opts_skip).unwrap();
        assert_eq!(s.malformed, 2);
        let mut out = Vec::new();
        let opts = VerifyOptions {
            on_error: OnError::Skip,
            file: "in.jsonl".into(),
            ..Default::default()
        };
        let s = verify_jsonl(input.as_bytes(), &mut out, &opts).unwrap();
        assert_eq!((s.verified, s.correct, s.malformed), (2, 2, 1));
        let lines: Vec<serde_json::Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["correct"], true);
        assert_eq!(lines[0]["id"], 7);
        assert_eq!(lines[1]["diagnosis"]["kind"], "correct");
        assert!(
            lines[2]["error"]
                .as_str()
                .unwrap()
                .starts_with("in.jsonl:3:")
        );

        let err = verify_jsonl(
            input.as_bytes(),
            Vec::new(),
            &VerifyOptions {
                file: "in.jsonl".into(),
                ..Default::default()
            },
        );
        assert!(err.unwrap_err().to_string().starts_with("in.jsonl:3:"));
    }

    #[test]
    fn generated_lines_round_trip_and_verify() {
        for family in TaskFamily::ALL.into_iter().filter(|f| f.has_generator()) {
            let mut out = Vec::new();
            generate_jsonl(&mut out, family, 3, 2, &Difficulty::default()).unwrap();
            for line in String::from_utf8(out).unwrap().lines() {
                let g: GeneratedLine = serde_json::from_str(line).unwrap();
                assert!(g.problem.verify(&g.solution).correct, "{family}: {line}");
            }
        }
    }
}
