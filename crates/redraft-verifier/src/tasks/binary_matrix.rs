//! Binary matrix: the distance of each cell to the nearest 0 (moves up, down, left, right).
//!
//! Answer: the distance matrix, rows separated by newlines or `;`, entries by spaces or commas.
//! Reward: the fraction of cells right (1 only when all are); a matrix of the wrong shape is a
//! format failure. The diagnosis names the first wrong cell (row-major).
//!
//! Knobs: `rows`, `cols` (1..=12, default `level + 2`, `level` default 1), `ones` percent
//! (0..=95, default 60), `format`.

use std::collections::VecDeque;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::answer::{AnswerFormat, find_answer};
use super::{Difficulty, PromptStyle, TaskFamily};
use crate::error::{Error, Result};
use crate::verdict::{Diagnosis, DiagnosisKind, FirstError, Verdict};

/// A binary matrix problem.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinaryMatrixProblem {
    /// The 0/1 matrix (at least one 0).
    pub matrix: Vec<Vec<u8>>,
    /// How the final answer is marked.
    #[serde(default)]
    pub format: AnswerFormat,
    /// What the user message says (chat or plain).
    #[serde(default)]
    pub prompt_style: PromptStyle,
}

fn render(m: &[Vec<usize>]) -> String {
    m.iter()
        .map(|r| r.iter().map(usize::to_string).collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n")
}

impl BinaryMatrixProblem {
    /// Fails on a matrix the task does not define: empty, ragged, an entry other than 0 or 1,
    /// or no 0 at all.
    pub fn validate(&self) -> Result<()> {
        let invalid = |message: String| {
            Err(Error::InvalidProblem {
                task: TaskFamily::BinaryMatrix,
                message,
            })
        };
        let width = self.matrix.first().map_or(0, Vec::len);
        if width == 0 {
            return invalid("the matrix is empty".into());
        }
        for (r, row) in self.matrix.iter().enumerate() {
            if row.len() != width {
                return invalid(format!(
                    "row {r} has {} entries, row 0 has {width}",
                    row.len()
                ));
            }
            if let Some(c) = row.iter().position(|v| *v > 1) {
                return invalid(format!("entry ({r}, {c}) is {}, not 0 or 1", row[c]));
            }
        }
        if !self.matrix.iter().flatten().any(|v| *v == 0) {
            return invalid("the matrix has no 0".into());
        }
        Ok(())
    }

    /// Distances to the nearest 0 by multi-source breadth-first search.
    pub fn distances(&self) -> Vec<Vec<usize>> {
        let h = self.matrix.len();
        let w = self.matrix.first().map_or(0, Vec::len);
        let mut dist = vec![vec![usize::MAX; w]; h];
        let mut q = VecDeque::new();
        for (r, row) in self.matrix.iter().enumerate() {
            for (c, v) in row.iter().enumerate().take(w) {
                if *v == 0 {
                    dist[r][c] = 0;
                    q.push_back((r, c));
                }
            }
        }
        while let Some((r, c)) = q.pop_front() {
            let d = dist[r][c];
            let mut visit = |nr: usize, nc: usize| {
                if dist[nr][nc] == usize::MAX {
                    dist[nr][nc] = d + 1;
                    q.push_back((nr, nc));
                }
            };
            if r > 0 {
                visit(r - 1, c);
            }
            if r + 1 < h {
                visit(r + 1, c);
            }
            if c > 0 {
                visit(r, c - 1);
            }
            if c + 1 < w {
                visit(r, c + 1);
            }
        }
        dist
    }

    fn matrix_text(&self) -> String {
        self.matrix
            .iter()
            .map(|r| r.iter().map(u8::to_string).collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Plain prompt.
    pub fn prompt(&self) -> String {
        format!("matrix:\n{}\ndistances to nearest 0:", self.matrix_text())
    }

    /// Chat prompt.
    pub fn chat_prompt(&self) -> String {
        format!(
            "For each cell of this binary matrix, give the distance to the nearest 0, moving up, down, left or right. \
             Write the result as a matrix, one row per line, entries separated by spaces.\n\n{}\n\n{}",
            self.matrix_text(),
            self.format.instruction()
        )
    }

    /// Reference solution: the marked distance matrix.
    pub fn solution(&self) -> String {
        self.format.wrap(&render(&self.distances()))
    }

    /// Verifies a response.
    pub fn verify(&self, response: &str) -> Verdict {
        let (text, range) = match find_answer(response, self.format) {
            Ok(x) => x,
            Err(v) => return *v,
        };
        let want = self.distances();
        // Rows of (value, byte range) tokens.
        let mut rows: Vec<Vec<(String, std::ops::Range<usize>)>> = Vec::new();
        let mut row = Vec::new();
        let mut tok_start = None;
        for (i, ch) in text
            .char_indices()
            .chain(std::iter::once((text.len(), '\n')))
        {
            if ch.is_ascii_alphanumeric() || ch == '-' || ch == '.' {
                tok_start.get_or_insert(i);
                continue;
            }
            if let Some(s) = tok_start.take() {
                row.push((text[s..i].to_string(), range.start + s..range.start + i));
            }
            if (ch == '\n' || ch == ';') && !row.is_empty() {
                rows.push(std::mem::take(&mut row));
            }
        }
        let shape_ok =
            rows.len() == want.len() && rows.iter().zip(&want).all(|(r, w)| r.len() == w.len());
        if !shape_ok {
            let got: Vec<usize> = rows.iter().map(Vec::len).collect();
            return Verdict::malformed(Diagnosis::new(
                DiagnosisKind::BadFormat,
                format!(
                    "expected a {}x{} matrix, found rows of lengths {got:?}",
                    want.len(),
                    want.first().map_or(0, Vec::len)
                ),
            ));
        }
        let total = want.iter().map(Vec::len).sum::<usize>().max(1);
        let mut right = 0;
        let mut first: Option<FirstError> = None;
        for (r, (got_row, want_row)) in rows.iter().zip(&want).enumerate() {
            for (c, ((tok, span), w)) in got_row.iter().zip(want_row).enumerate() {
                if tok.parse::<usize>().ok() == Some(*w) {
                    right += 1;
                } else if first.is_none() {
                    first = Some(FirstError {
                        step: r * want_row.len() + c,
                        span: span.clone(),
                        expected: w.to_string(),
                        found: tok.clone(),
                    });
                }
            }
        }
        if right == total {
            return Verdict::correct("every distance is right");
        }
        let e = first.unwrap_or(FirstError {
            step: 0,
            span: range,
            expected: String::new(),
            found: String::new(),
        });
        let cols = want.first().map_or(1, Vec::len).max(1);
        Verdict::partial(
            right as f32 / total as f32,
            Diagnosis::new(
                DiagnosisKind::WrongAnswer,
                format!(
                    "{right} of {total} cells right; first wrong at row {}, column {}",
                    e.step / cols,
                    e.step % cols
                ),
            )
            .with_first_error(e),
        )
    }
}

/// Generates one problem (see the module documentation for the knobs).
pub fn generate(rng: &mut ChaCha8Rng, d: &Difficulty) -> Result<BinaryMatrixProblem> {
    d.check_known(TaskFamily::BinaryMatrix, &["rows", "cols", "ones"])?;
    let level = d.int("level", 1, 0..=10)?;
    let rows = d.int("rows", level + 2, 1..=12)? as usize;
    let cols = d.int("cols", level + 2, 1..=12)? as usize;
    let ones = d.int("ones", 60, 0..=95)? as f64 / 100.0;
    let mut matrix: Vec<Vec<u8>> = (0..rows)
        .map(|_| (0..cols).map(|_| u8::from(rng.random_bool(ones))).collect())
        .collect();
    if matrix.iter().flatten().all(|v| *v == 1) {
        let (r, c) = (rng.random_range(0..rows), rng.random_range(0..cols));
        matrix[r][c] = 0;
    }
    Ok(BinaryMatrixProblem {
        matrix,
        format: d.format()?,
        prompt_style: d.prompt_style()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        let p = BinaryMatrixProblem {
            matrix: vec![vec![0, 1, 1], vec![1, 1, 1]],
            format: AnswerFormat::Tag,
            prompt_style: PromptStyle::Chat,
        };
        assert_eq!(p.distances(), vec![vec![0, 1, 2], vec![1, 2, 3]]);
        assert!(p.verify(&p.solution()).correct);
        let v = p.verify("<answer>0 1 2; 1 3 3</answer>");
        assert!((v.reward - 5.0 / 6.0).abs() < 1e-6);
        let e = v.diagnosis.first_error.unwrap();
        assert_eq!(
            (e.step, e.expected.as_str(), e.found.as_str()),
            (4, "2", "3")
        );
        assert_eq!(
            p.verify("<answer>0 1</answer>").diagnosis.kind,
            DiagnosisKind::BadFormat
        );
    }
}
