//! Countdown: reach a target with the given numbers (each at most once) and `+ - * /`.
//!
//! Plain format:
//!
//! ```text
//! prompt:    "numbers 3 7 25 4 target 88:"
//! solution:  "25-3=22;22*4=88;<answer>(25-3)*4</answer>"
//! ```
//!
//! Knobs: `count` of numbers (2..=6, default `level + 2`, `level` default 2), `max` number
//! (2..=100, default 25), `max_target` (default 500), `format`. Generated targets are always
//! reachable: the generator combines all the numbers by a random expression whose intermediate
//! results are positive integers. Reward: 1 for an expression equal to the target using only the
//! given numbers; 0.1 for a well-formed expression with the given numbers but the wrong value
//! (as in TinyZero's format reward); 0 otherwise. The diagnosis names the first step of the
//! response whose arithmetic is wrong (`a op b = c` lines), or the number that is not available.

use num_rational::BigRational;
use num_traits::ToPrimitive;
use rand::Rng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::answer::{AnswerFormat, find_answer, steps};
use super::{Difficulty, PromptStyle, TaskFamily};
use crate::budget::{Budget, Limit};
use crate::error::{Error, Result};
use crate::math::MathOptions;
use crate::math::eval::{EvalError, Num, Point, eval};
use crate::math::parse::{Expr, ParseError, parse};
use crate::verdict::{Diagnosis, DiagnosisKind, FirstError, Verdict};

/// Reward for a well-formed expression over the given numbers that misses the target.
pub const FORMAT_REWARD: f32 = 0.1;

/// A Countdown problem.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountdownProblem {
    /// The available numbers (each usable at most once).
    pub numbers: Vec<u64>,
    /// The target.
    pub target: u64,
    /// A reference expression that reaches the target.
    pub reference: String,
    /// The reference's steps, `a op b = c`.
    #[serde(default)]
    pub reference_steps: Vec<String>,
    /// How the final answer is marked.
    #[serde(default)]
    pub format: AnswerFormat,
    /// What the user message says (chat or plain).
    #[serde(default)]
    pub prompt_style: PromptStyle,
}

#[derive(Clone)]
struct Item {
    value: u64,
    text: String,
    prec: u8,
}

/// Generates one problem (see the module documentation for the knobs).
pub fn generate(rng: &mut ChaCha8Rng, d: &Difficulty) -> Result<CountdownProblem> {
    d.check_known(TaskFamily::Countdown, &["count", "max", "max_target"])?;
    let level = d.int("level", 2, 0..=4)?;
    let count = d.int("count", level + 2, 2..=6)? as usize;
    let max = d.int("max", 25, 2..=100)?;
    let max_target = d.int("max_target", 500, 2..=1_000_000)?;
    let format = d.format()?;
    let prompt_style = d.prompt_style()?;
    let mut best = None;
    for _attempt in 0..64 {
        let numbers: Vec<u64> = (0..count).map(|_| rng.random_range(1..=max)).collect();
        let mut items: Vec<Item> = numbers
            .iter()
            .map(|n| Item {
                value: *n,
                text: n.to_string(),
                prec: 3,
            })
            .collect();
        let mut steps_out = Vec::new();
        while items.len() > 1 {
            let i = rng.random_range(0..items.len());
            let a = items.swap_remove(i);
            let j = rng.random_range(0..items.len());
            let b = items.swap_remove(j);
            let (a, b) = if a.value >= b.value { (a, b) } else { (b, a) };
            let mut ops = ['+', '-', '*', '/'];
            ops.shuffle(rng);
            let op = ops
                .into_iter()
                .find(|op| match op {
                    '-' => a.value > b.value,
                    '/' => b.value > 1 && a.value % b.value == 0,
                    '*' => a.value.saturating_mul(b.value) <= max_target.saturating_mul(4),
                    _ => true,
                })
                .unwrap_or('+');
            let value = match op {
                '+' => a.value + b.value,
                '-' => a.value - b.value,
                '*' => a.value * b.value,
                _ => a.value / b.value,
            };
            steps_out.push(format!("{}{}{}={}", a.value, op, b.value, value));
            items.push(combine(&a, &b, op, value));
        }
        let top = items.pop().unwrap_or(Item {
            value: 0,
            text: "0".into(),
            prec: 3,
        });
        let candidate = CountdownProblem {
            numbers: numbers.clone(),
            target: top.value,
            reference: top.text,
            reference_steps: steps_out,
            format,
            prompt_style,
        };
        let ok = top.value >= 2 && top.value <= max_target;
        if ok {
            return Ok(candidate);
        }
        best.get_or_insert(candidate);
    }
    Ok(best.unwrap_or(CountdownProblem {
        numbers: vec![1, 1],
        target: 2,
        reference: "1+1".into(),
        reference_steps: vec!["1+1=2".into()],
        format,
        prompt_style,
    }))
}

fn combine(a: &Item, b: &Item, op: char, value: u64) -> Item {
    let prec = if matches!(op, '+' | '-') { 1 } else { 2 };
    let left = if a.prec < prec {
        format!("({})", a.text)
    } else {
        a.text.clone()
    };
    let right = if b.prec < prec || (b.prec == prec && matches!(op, '-' | '/')) {
        format!("({})", b.text)
    } else {
        b.text.clone()
    };
    Item {
        value,
        text: format!("{left}{op}{right}"),
        prec,
    }
}

/// The integer literals of an expression made only of numbers and `+ - * /`, or `None`.
fn literals(e: &Expr, out: &mut Vec<BigRational>) -> bool {
    match e {
        Expr::Num {
            value,
            decimals: None,
        } => {
            out.push(value.clone());
            true
        }
        Expr::Neg(x) => literals(x, out),
        Expr::Add(v) | Expr::Mul(v) => v.iter().all(|x| literals(x, out)),
        Expr::Div(a, b) => literals(a, out) && literals(b, out),
        _ => false,
    }
}

impl CountdownProblem {
    /// Fails on a problem the task does not define: no numbers.
    pub fn validate(&self) -> Result<()> {
        if self.numbers.is_empty() {
            return Err(Error::InvalidProblem {
                task: TaskFamily::Countdown,
                message: "there are no numbers to use".into(),
            });
        }
        Ok(())
    }

    fn numbers_text(&self) -> String {
        self.numbers
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Plain prompt: `numbers 3 7 25 4 target 88:`.
    pub fn prompt(&self) -> String {
        format!("numbers {} target {}:", self.numbers_text(), self.target)
    }

    /// Chat prompt.
    pub fn chat_prompt(&self) -> String {
        format!(
            "Using the numbers {} (each at most once) and the operations +, -, *, /, write an \
             expression equal to {}. Show each step as a op b = c, then give the expression. {}",
            self.numbers
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            self.target,
            self.format.instruction()
        )
    }

    /// Reference solution: steps and the marked expression.
    pub fn solution(&self) -> String {
        let mut s = self.reference_steps.join(";");
        if !s.is_empty() {
            s.push(';');
        }
        s.push_str(&self.format.wrap(&self.reference));
        s
    }

    /// Verifies a response.
    pub fn verify(&self, response: &str, options: &MathOptions) -> Verdict {
        let (text, range) = match find_answer(response, self.format) {
            Ok(x) => x,
            Err(v) => return *v,
        };
        let expr_text = text
            .split('=')
            .next()
            .unwrap_or("")
            .replace("\\times", "*")
            .replace("\\div", "/");
        // `×`, `÷`, `−` as well as ASCII operators.
        let expr_text = crate::math::normalize::unicode_symbols(&expr_text);
        let mut budget = Budget::new(
            options.step_budget,
            std::time::Duration::from_millis(options.time_limit_ms),
        );
        let bad = |detail: String| {
            Verdict::malformed(
                Diagnosis::new(DiagnosisKind::BadFormat, detail).with_first_error(FirstError {
                    step: 0,
                    span: range.clone(),
                    expected: "an expression of the given numbers with + - * /".into(),
                    found: text.to_string(),
                }),
            )
        };
        let expr = match parse(&expr_text, &mut budget) {
            Ok(e) => e,
            Err(ParseError::Limit(Limit::TooLarge)) => {
                return Verdict::malformed(Diagnosis::new(
                    DiagnosisKind::TooLarge,
                    "the expression is too large",
                ));
            }
            Err(ParseError::Limit(Limit::TimedOut)) => {
                return Verdict::malformed(Diagnosis::new(
                    DiagnosisKind::TimedOut,
                    "timed out parsing the expression",
                ));
            }
            Err(ParseError::Syntax(e)) => {
                return bad(format!("the answer is not an expression ({e})"));
            }
        };
        let mut used = Vec::new();
        if !literals(&expr, &mut used) {
            return bad("only integers and + - * / are allowed".into());
        }
        let mut pool: Vec<u64> = self.numbers.clone();
        for n in &used {
            let v = n.to_integer().to_u64();
            match v.and_then(|v| pool.iter().position(|p| *p == v)) {
                Some(i) => {
                    pool.swap_remove(i);
                }
                None => {
                    return Verdict::wrong(
                        Diagnosis::new(
                            DiagnosisKind::WrongAnswer,
                            format!(
                                "uses {n}, which is not available (numbers: {})",
                                self.numbers_text()
                            ),
                        )
                        .with_first_error(FirstError {
                            step: 0,
                            span: range.clone(),
                            expected: format!(
                                "numbers from [{}], each at most once",
                                self.numbers_text()
                            ),
                            found: n.to_string(),
                        }),
                    );
                }
            }
        }
        let value = match eval(&expr, Point(0), &mut budget) {
            Ok(Num::Q(q)) => q,
            Ok(Num::F(_)) | Err(EvalError::NotScalar) | Err(EvalError::Undefined) => {
                return Verdict::wrong(Diagnosis::new(
                    DiagnosisKind::WrongAnswer,
                    "the expression has no value (division by zero?)",
                ));
            }
            Err(EvalError::Limit(l)) => {
                let kind = if l == Limit::TooLarge {
                    DiagnosisKind::TooLarge
                } else {
                    DiagnosisKind::TimedOut
                };
                return Verdict::malformed(Diagnosis::new(
                    kind,
                    "the expression is too costly to evaluate",
                ));
            }
        };
        if value == BigRational::from_integer(self.target.into()) {
            return Verdict::correct("the expression reaches the target");
        }
        let marker = match self.format {
            AnswerFormat::Tag => "<answer>".len(),
            AnswerFormat::Boxed => "\\boxed{".len(),
        };
        let scratch = &response[..range.start.saturating_sub(marker)];
        if let Some(e) = first_wrong_step(scratch, &mut budget) {
            return Verdict::partial(
                FORMAT_REWARD,
                Diagnosis::new(
                    DiagnosisKind::WrongStep,
                    format!(
                        "step {} is wrong: {} should be {}",
                        e.step, e.found, e.expected
                    ),
                )
                .with_first_error(e),
            );
        }
        Verdict::partial(
            FORMAT_REWARD,
            Diagnosis::new(
                DiagnosisKind::WrongAnswer,
                format!("the expression equals {value}, not {}", self.target),
            )
            .with_first_error(FirstError {
                step: 0,
                span: range,
                expected: self.target.to_string(),
                found: value.to_string(),
            }),
        )
    }
}

/// The first `lhs=rhs` step whose arithmetic is wrong.
fn first_wrong_step(scratch: &str, budget: &mut Budget) -> Option<FirstError> {
    for (i, (s, span)) in steps(scratch).into_iter().enumerate() {
        let Some((lhs, rhs)) = s.split_once('=') else {
            continue;
        };
        let (Ok(l), Ok(r)) = (parse(lhs, budget), parse(rhs, budget)) else {
            continue;
        };
        let (Ok(lv), Ok(rv)) = (eval(&l, Point(0), budget), eval(&r, Point(0), budget)) else {
            continue;
        };
        if lv != rv {
            let expected = match lv {
                Num::Q(q) => q.to_string(),
                Num::F(f) => f.to_string(),
            };
            return Some(FirstError {
                step: i,
                span,
                expected: format!("{lhs}={expected}"),
                found: s.to_string(),
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prob() -> CountdownProblem {
        CountdownProblem {
            numbers: vec![3, 7, 25, 4],
            target: 88,
            reference: "(25-3)*4".into(),
            reference_steps: vec!["25-3=22".into(), "22*4=88".into()],
            format: AnswerFormat::Tag,
            prompt_style: PromptStyle::Chat,
        }
    }

    #[test]
    fn reference_and_alternatives() {
        let p = prob();
        assert!(p.verify(&p.solution(), &MathOptions::default()).correct);
        assert!(
            p.verify(
                "<answer>4 \\times (25 - 3) = 88</answer>",
                &MathOptions::default()
            )
            .correct
        );
        assert!(
            p.verify("<answer>(25 − 3) × 4</answer>", &MathOptions::default())
                .correct
        );
    }

    #[test]
    fn wrong_numbers_and_values() {
        let p = prob();
        let v = p.verify("<answer>(25-3)*4*1</answer>", &MathOptions::default());
        assert!(!v.correct);
        assert_eq!(v.diagnosis.first_error.unwrap().found, "1");
        let v = p.verify("25-3=23;<answer>25+3</answer>", &MathOptions::default());
        assert_eq!(v.reward, FORMAT_REWARD);
        assert_eq!(v.diagnosis.kind, DiagnosisKind::WrongStep);
        let v = p.verify("<answer>x+1</answer>", &MathOptions::default());
        assert_eq!(v.diagnosis.kind, DiagnosisKind::BadFormat);
    }
}
