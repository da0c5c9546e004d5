//! Multi-digit arithmetic with a column scratchpad whose first wrong step the diagnosis names.
//!
//! Plain format (compact, for a byte-level model trained from scratch on a CPU):
//!
//! ```text
//! prompt:    "457+68="
//! solution:  "7+8+0=15;5+6+1=12;4+0+1=5;<answer>525</answer>"
//! ```
//!
//! Steps, least significant column first, separated by `;`:
//! - `+`: `x+y+carry=s` (`s` is the column sum; its last digit is written, its tens carried).
//! - `-` (`a >= b`): `x-y-borrow=d`, written `1x-y-borrow=d` when the column borrows.
//! - `*`: `a*d=p` for each digit `d` of `b`, then `acc+p0..0=acc'` to add the shifted partial
//!   products.
//!
//! Knobs: `digits` (1..=9, default `level + 1`, `level` default 1) for `a`; `digits_b`
//! (default `digits`) for `b`; `op` = `add` | `sub` | `mul` | `mixed` (default `add`); `format`.
//! Reward: 1 for the right number, else 0; the diagnosis names the first wrong scratchpad step,
//! or the first wrong digit of the answer when there is no scratchpad.

use num_bigint::{BigInt, BigUint};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::answer::{AnswerFormat, find_answer, steps};
use super::{Difficulty, PromptStyle, TaskFamily};
use crate::error::{Error, Result};
use crate::verdict::{Diagnosis, DiagnosisKind, FirstError, Verdict};

/// An arithmetic operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// Addition.
    Add,
    /// Subtraction (`a >= b`).
    Sub,
    /// Multiplication.
    Mul,
}

impl Op {
    fn symbol(self) -> char {
        match self {
            Op::Add => '+',
            Op::Sub => '-',
            Op::Mul => '*',
        }
    }
}

/// `a op b`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArithmeticProblem {
    /// Left operand.
    pub a: u64,
    /// Right operand.
    pub b: u64,
    /// The operation.
    pub op: Op,
    /// How the final answer is marked.
    #[serde(default)]
    pub format: AnswerFormat,
    /// What the user message says (chat or plain).
    #[serde(default)]
    pub prompt_style: PromptStyle,
}

/// Generates one problem (see the module documentation for the knobs).
pub fn generate(rng: &mut ChaCha8Rng, d: &Difficulty) -> Result<ArithmeticProblem> {
    d.check_known(TaskFamily::Arithmetic, &["digits", "digits_b", "op"])?;
    let level = d.int("level", 1, 0..=8)?;
    let digits = d.int("digits", level + 1, 1..=9)? as u32;
    let digits_b = d.int("digits_b", u64::from(digits), 1..=9)? as u32;
    let op = match d.get("op").unwrap_or("add") {
        "add" | "+" => Op::Add,
        "sub" | "-" => Op::Sub,
        "mul" | "*" => Op::Mul,
        "mixed" => [Op::Add, Op::Sub, Op::Mul][rng.random_range(0..3)],
        other => {
            return Err(crate::Error::InvalidOption(format!(
                "arithmetic op={other}: use add, sub, mul or mixed"
            )));
        }
    };
    let draw = |rng: &mut ChaCha8Rng, n: u32| {
        let lo = if n == 1 { 0 } else { 10u64.pow(n - 1) };
        rng.random_range(lo..10u64.pow(n))
    };
    let mut a = draw(rng, digits);
    let mut b = draw(rng, digits_b);
    if op == Op::Sub && a < b {
        std::mem::swap(&mut a, &mut b);
    }
    Ok(ArithmeticProblem {
        a,
        b,
        op,
        format: d.format()?,
        prompt_style: d.prompt_style()?,
    })
}

fn digits_le(n: u64) -> Vec<u64> {
    let s = n.to_string();
    s.bytes().rev().map(|c| u64::from(c - b'0')).collect()
}

impl ArithmeticProblem {
    /// Fails on a problem the task does not define: a subtraction with `a < b`.
    pub fn validate(&self) -> Result<()> {
        if self.op == Op::Sub && self.a < self.b {
            return Err(Error::InvalidProblem {
                task: TaskFamily::Arithmetic,
                message: format!("sub needs a >= b, got a = {} and b = {}", self.a, self.b),
            });
        }
        Ok(())
    }

    /// The exact result (a big integer: `u64` operands overflow every machine integer).
    pub fn result(&self) -> BigInt {
        let (a, b) = (BigInt::from(self.a), BigInt::from(self.b));
        match self.op {
            Op::Add => a + b,
            Op::Sub => a - b,
            Op::Mul => a * b,
        }
    }

    /// The scratchpad steps of the reference solution.
    pub fn steps(&self) -> Vec<String> {
        let (x, y) = (digits_le(self.a), digits_le(self.b));
        let n = x.len().max(y.len());
        let at = |v: &[u64], i: usize| v.get(i).copied().unwrap_or(0);
        let mut out = Vec::new();
        match self.op {
            Op::Add => {
                let mut carry = 0;
                for i in 0..n {
                    let s = at(&x, i) + at(&y, i) + carry;
                    out.push(format!("{}+{}+{}={}", at(&x, i), at(&y, i), carry, s));
                    carry = s / 10;
                }
            }
            Op::Sub => {
                let mut borrow = 0;
                for i in 0..n {
                    let (xi, yi) = (at(&x, i), at(&y, i));
                    if xi < yi + borrow {
                        out.push(format!(
                            "1{}-{}-{}={}",
                            xi,
                            yi,
                            borrow,
                            xi + 10 - yi - borrow
                        ));
                        borrow = 1;
                    } else {
                        out.push(format!("{}-{}-{}={}", xi, yi, borrow, xi - yi - borrow));
                        borrow = 0;
                    }
                }
            }
            Op::Mul => {
                let mut acc = BigUint::from(0u8);
                for (i, d) in y.iter().enumerate() {
                    let p = BigUint::from(self.a) * *d;
                    out.push(format!("{}*{}={}", self.a, d, p));
                    if i > 0 {
                        let shifted = &p * BigUint::from(10u8).pow(i as u32);
                        let sum = &acc + shifted;
                        out.push(format!("{}+{}{}={}", acc, p, "0".repeat(i), sum));
                        acc = sum;
                    } else {
                        acc = p;
                    }
                }
            }
        }
        out
    }

    /// Plain prompt: `457+68=`.
    pub fn prompt(&self) -> String {
        format!("{}{}{}=", self.a, self.op.symbol(), self.b)
    }

    /// Chat prompt with the scratchpad convention spelled out.
    pub fn chat_prompt(&self) -> String {
        format!(
            "Compute {} {} {}. Work column by column from the right, writing one step per line \
             (for example 7+8+0=15 for a column with its carry), then give the result. {}",
            self.a,
            self.op.symbol(),
            self.b,
            self.format.instruction()
        )
    }

    /// Reference solution: the scratchpad steps and the marked answer.
    pub fn solution(&self) -> String {
        let mut s = self.steps().join(";");
        s.push(';');
        s.push_str(&self.format.wrap(&self.result().to_string()));
        s
    }

    /// Verifies a response: the marked answer decides the reward; the scratchpad locates the
    /// first wrong step.
    pub fn verify(&self, response: &str) -> Verdict {
        let (text, range) = match find_answer(response, self.format) {
            Ok(x) => x,
            Err(v) => return *v,
        };
        let cleaned: String = text
            .chars()
            .filter(|c| !c.is_whitespace() && *c != ',')
            .collect();
        let Some(found) = canonical_integer(&cleaned) else {
            return Verdict::malformed(
                Diagnosis::new(
                    DiagnosisKind::BadFormat,
                    format!("the answer {text:?} is not an integer"),
                )
                .with_first_error(FirstError {
                    step: 0,
                    span: range,
                    expected: "an integer".into(),
                    found: text.into(),
                }),
            );
        };
        let expected = self.result().to_string();
        let marker = match self.format {
            AnswerFormat::Tag => "<answer>".len(),
            AnswerFormat::Boxed => "\\boxed{".len(),
        };
        let scratch = &response[..range.start.saturating_sub(marker)];
        let want = self.steps();
        let got = steps(scratch);
        let first_wrong_step = got.iter().enumerate().find_map(|(i, (s, span))| {
            let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
            match want.get(i) {
                Some(w) if *w == s => None,
                Some(w) => Some(FirstError {
                    step: i,
                    span: span.clone(),
                    expected: w.clone(),
                    found: s,
                }),
                None => Some(FirstError {
                    step: i,
                    span: span.clone(),
                    expected: "the answer".into(),
                    found: s,
                }),
            }
        });
        if found == expected {
            let mut v = Verdict::correct("the result is correct");
            if let Some(e) = first_wrong_step {
                v.diagnosis.detail = format!(
                    "the result is correct, but scratchpad step {} differs from the reference",
                    e.step
                );
                v.diagnosis.first_error = Some(e);
            }
            return v;
        }
        if let Some(e) = first_wrong_step {
            return Verdict::wrong(
                Diagnosis::new(
                    DiagnosisKind::WrongStep,
                    format!(
                        "step {} is wrong: expected {}, found {}",
                        e.step, e.expected, e.found
                    ),
                )
                .with_first_error(e),
            );
        }
        // No scratchpad error: locate the first wrong digit of the answer, from the right.
        let (e, f) = (expected, found);
        let column = e
            .bytes()
            .rev()
            .zip(f.bytes().rev())
            .position(|(a, b)| a != b)
            .unwrap_or(e.len().min(f.len()));
        Verdict::wrong(
            Diagnosis::new(
                DiagnosisKind::WrongAnswer,
                format!(
                    "the result is wrong from column {column} (counting from the right, 0-based)"
                ),
            )
            .with_first_error(FirstError {
                step: got.len(),
                span: range,
                expected: e,
                found: f,
            }),
        )
    }
}

/// `text` as an integer in canonical decimal (no `+`, no leading zeros, `0` never negative),
/// or `None` when it is not an optionally signed run of ASCII digits. Kept as text: an answer
/// may be far longer than any result, and comparing text costs nothing.
fn canonical_integer(text: &str) -> Option<String> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = digits.trim_start_matches('0');
    Some(match (negative, digits.is_empty()) {
        (_, true) => "0".into(),
        (true, false) => format!("-{digits}"),
        (false, false) => digits.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(a: u64, b: u64, op: Op) -> ArithmeticProblem {
        ArithmeticProblem {
            a,
            b,
            op,
            format: AnswerFormat::Tag,
            prompt_style: PromptStyle::Chat,
        }
    }

    #[test]
    fn scratchpads() {
        assert_eq!(
            p(457, 68, Op::Add).solution(),
            "7+8+0=15;5+6+1=12;4+0+1=5;<answer>525</answer>"
        );
        assert_eq!(
            p(923, 189, Op::Sub).solution(),
            "13-9-0=4;12-8-1=3;9-1-1=7;<answer>734</answer>"
        );
        assert_eq!(
            p(12, 34, Op::Mul).solution(),
            "12*4=48;12*3=36;48+360=408;<answer>408</answer>"
        );
    }

    #[test]
    fn reference_verifies() {
        for prob in [
            p(457, 68, Op::Add),
            p(923, 189, Op::Sub),
            p(99, 99, Op::Mul),
        ] {
            let v = prob.verify(&prob.solution());
            assert!(v.correct, "{v:?}");
            assert!(v.diagnosis.first_error.is_none());
        }
    }

    #[test]
    fn first_wrong_step_is_named() {
        let prob = p(457, 68, Op::Add);
        let v = prob.verify("7+8+0=15;5+6+1=13;4+0+1=5;<answer>535</answer>");
        assert!(!v.correct);
        assert_eq!(v.diagnosis.kind, DiagnosisKind::WrongStep);
        let e = v.diagnosis.first_error.unwrap();
        assert_eq!(
            (e.step, e.expected.as_str(), e.found.as_str()),
            (1, "5+6+1=12", "5+6+1=13")
        );
        assert_eq!(e.span, 9..17);
    }

    #[test]
    fn format_failures() {
        let prob = p(1, 2, Op::Add);
        assert_eq!(prob.verify("3").diagnosis.kind, DiagnosisKind::NoAnswer);
        assert_eq!(
            prob.verify("\\boxed{3}").diagnosis.kind,
            DiagnosisKind::BadFormat
        );
        assert_eq!(
            prob.verify("<answer>three</answer>").diagnosis.kind,
            DiagnosisKind::BadFormat
        );
    }
}
