//! Knights and Knaves: knights always tell the truth, knaves always lie; who is which?
//!
//! Each of `people` inhabitants makes one statement about the others (and possibly themself), a
//! formula of depth `depth` whose `and` / `or` take `width` operands. Generated puzzles have
//! exactly one consistent assignment (checked by brute force). Answer: `Alice is a knight, Bob
//! is a knave, ...` inside the answer marker. Reward: the fraction of inhabitants classified
//! correctly (1 only when all are right); the diagnosis names the first wrong inhabitant.
//!
//! Knobs: `people` (2..=8, default `level + 2`, `level` default 1), `depth` (1..=3, default 2),
//! `width` (2..=4, default 2), `format`.

use rand::Rng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::answer::{AnswerFormat, find_answer};
use super::{Difficulty, TaskFamily};
use crate::error::{Error, Result};
use crate::verdict::{Diagnosis, DiagnosisKind, FirstError, Verdict};

const NAMES: [&str; 20] = [
    "Alice", "Bob", "Carol", "David", "Emma", "Frank", "Grace", "Henry", "Iris", "Jack", "Kate",
    "Liam", "Mia", "Noah", "Olivia", "Paul", "Quinn", "Ruby", "Sam", "Tina",
];

/// A statement about the inhabitants.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Statement {
    /// "`person` is a knight" (`knight` true) or "... is a knave".
    Is {
        /// Index of the inhabitant.
        person: usize,
        /// Whether the claim is "knight".
        knight: bool,
    },
    /// Negation.
    Not(Box<Statement>),
    /// Conjunction.
    And(Vec<Statement>),
    /// Disjunction.
    Or(Vec<Statement>),
    /// Implication.
    Implies(Box<Statement>, Box<Statement>),
    /// Equivalence.
    Iff(Box<Statement>, Box<Statement>),
}

impl Statement {
    /// Truth value under `knights` (true = knight).
    pub fn eval(&self, knights: &[bool]) -> bool {
        match self {
            Statement::Is { person, knight } => {
                knights.get(*person).copied().unwrap_or(false) == *knight
            }
            Statement::Not(s) => !s.eval(knights),
            Statement::And(v) => v.iter().all(|s| s.eval(knights)),
            Statement::Or(v) => v.iter().any(|s| s.eval(knights)),
            Statement::Implies(a, b) => !a.eval(knights) || b.eval(knights),
            Statement::Iff(a, b) => a.eval(knights) == b.eval(knights),
        }
    }

    fn render(&self, names: &[String], top: bool) -> String {
        let name = |i: usize| names.get(i).cloned().unwrap_or_else(|| format!("#{i}"));
        let s = match self {
            Statement::Is { person, knight } => {
                return format!(
                    "{} is a {}",
                    name(*person),
                    if *knight { "knight" } else { "knave" }
                );
            }
            Statement::Not(s) => format!("it is not the case that {}", s.render(names, false)),
            Statement::And(v) => v
                .iter()
                .map(|s| s.render(names, false))
                .collect::<Vec<_>>()
                .join(" and "),
            Statement::Or(v) => v
                .iter()
                .map(|s| s.render(names, false))
                .collect::<Vec<_>>()
                .join(" or "),
            Statement::Implies(a, b) => format!(
                "if {} then {}",
                a.render(names, false),
                b.render(names, false)
            ),
            Statement::Iff(a, b) => format!(
                "{} if and only if {}",
                a.render(names, false),
                b.render(names, false)
            ),
        };
        if top { s } else { format!("({s})") }
    }
}

/// A Knights and Knaves puzzle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnightsKnavesProblem {
    /// The inhabitants' names.
    pub names: Vec<String>,
    /// `statements[i]` is what inhabitant `i` says.
    pub statements: Vec<Statement>,
    /// The unique solution: `knights[i]` is true when inhabitant `i` is a knight.
    pub knights: Vec<bool>,
    /// How the final answer is marked.
    #[serde(default)]
    pub format: AnswerFormat,
}

fn random_statement(rng: &mut ChaCha8Rng, n: usize, depth: u64, width: usize) -> Statement {
    if depth == 0 || rng.random_bool(0.25) {
        return Statement::Is {
            person: rng.random_range(0..n),
            knight: rng.random_bool(0.5),
        };
    }
    let sub = |rng: &mut ChaCha8Rng| random_statement(rng, n, depth - 1, width);
    match rng.random_range(0..5) {
        0 => Statement::Not(Box::new(sub(rng))),
        1 => Statement::And((0..width).map(|_| sub(rng)).collect()),
        2 => Statement::Or((0..width).map(|_| sub(rng)).collect()),
        3 => Statement::Implies(Box::new(sub(rng)), Box::new(sub(rng))),
        _ => Statement::Iff(Box::new(sub(rng)), Box::new(sub(rng))),
    }
}

/// Consistent assignments of a puzzle (knights' statements true, knaves' false), up to `limit`.
pub fn solutions(statements: &[Statement], limit: usize) -> Vec<Vec<bool>> {
    let n = statements.len();
    let mut out = Vec::new();
    for mask in 0u32..(1 << n) {
        let knights: Vec<bool> = (0..n).map(|i| mask & (1 << i) != 0).collect();
        if statements
            .iter()
            .enumerate()
            .all(|(i, s)| s.eval(&knights) == knights[i])
        {
            out.push(knights);
            if out.len() >= limit {
                break;
            }
        }
    }
    out
}

/// Generates one puzzle with a unique solution (see the module documentation for the knobs).
pub fn generate(rng: &mut ChaCha8Rng, d: &Difficulty) -> Result<KnightsKnavesProblem> {
    d.check_known(TaskFamily::KnightsKnaves, &["people", "depth", "width"])?;
    let level = d.int("level", 1, 0..=6)?;
    let n = d.int("people", level + 2, 2..=8)? as usize;
    let depth = d.int("depth", 2, 1..=3)?;
    let width = d.int("width", 2, 2..=4)? as usize;
    let format = d.format()?;
    let mut pool: Vec<&str> = NAMES.to_vec();
    pool.shuffle(rng);
    let names: Vec<String> = pool[..n].iter().map(|s| s.to_string()).collect();
    for _attempt in 0..2000 {
        let knights: Vec<bool> = (0..n).map(|_| rng.random_bool(0.5)).collect();
        let statements: Vec<Statement> = (0..n)
            .map(|i| {
                let s = random_statement(rng, n, depth, width);
                if s.eval(&knights) == knights[i] {
                    s
                } else {
                    Statement::Not(Box::new(s))
                }
            })
            .collect();
        let sols = solutions(&statements, 2);
        if sols.len() == 1 && sols[0] == knights {
            return Ok(KnightsKnavesProblem {
                names,
                statements,
                knights,
                format,
            });
        }
    }
    Err(Error::InvalidOption(format!(
        "could not generate a unique knights-and-knaves puzzle with {n} people"
    )))
}

fn role(knight: bool) -> &'static str {
    if knight { "knight" } else { "knave" }
}

impl KnightsKnavesProblem {
    fn body(&self) -> String {
        let mut s = format!(
            "A very special island is inhabited only by knights and knaves. Knights always tell the truth, and knaves \
             always lie. You meet {} inhabitants: {}.",
            self.names.len(),
            self.names.join(", ")
        );
        for (i, st) in self.statements.iter().enumerate() {
            s.push_str(&format!(
                " {} says: \"{}.\"",
                self.names[i],
                capitalize(&st.render(&self.names, true))
            ));
        }
        s.push_str(" Who is a knight and who is a knave?");
        s
    }

    /// The answer text: `Alice is a knight, Bob is a knave`.
    pub fn answer(&self) -> String {
        self.names
            .iter()
            .zip(&self.knights)
            .map(|(n, k)| format!("{n} is a {}", role(*k)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Plain prompt.
    pub fn prompt(&self) -> String {
        format!("{}\n", self.body())
    }

    /// Chat prompt.
    pub fn chat_prompt(&self) -> String {
        format!(
            "{} Answer in the form \"Name is a knight, Name is a knave, ...\". {}",
            self.body(),
            self.format.instruction()
        )
    }

    /// Reference solution: each statement checked against the solution, then the answer.
    pub fn solution(&self) -> String {
        let mut s = String::new();
        for (i, st) in self.statements.iter().enumerate() {
            let k = self.knights[i];
            s.push_str(&format!(
                "If {} is a {}, the statement \"{}\" is {}, which is consistent.\n",
                self.names[i],
                role(k),
                st.render(&self.names, true),
                if st.eval(&self.knights) {
                    "true"
                } else {
                    "false"
                }
            ));
        }
        s.push_str(&self.format.wrap(&self.answer()));
        s
    }

    /// Verifies a response.
    pub fn verify(&self, response: &str) -> Verdict {
        let (text, range) = match find_answer(response, self.format) {
            Ok(x) => x,
            Err(v) => return v,
        };
        let lower = text.to_ascii_lowercase();
        // Clauses split at , ; . newlines and " and ".
        let mut clauses: Vec<(usize, usize)> = Vec::new();
        let mut start = 0;
        let b = lower.as_bytes();
        let mut i = 0;
        while i <= b.len() {
            let sep = if i == b.len() || matches!(b[i], b',' | b';' | b'.' | b'\n') {
                1
            } else if b[i..].starts_with(b" and ") {
                5
            } else {
                0
            };
            if sep > 0 {
                clauses.push((start, i));
                start = i + sep;
                i += sep;
            } else {
                i += 1;
            }
        }
        let mut claimed: Vec<Option<(bool, (usize, usize))>> = vec![None; self.names.len()];
        for (cs, ce) in clauses {
            let c = &lower[cs..ce];
            let role = if c.contains("knave") {
                false
            } else if c.contains("knight") {
                true
            } else {
                continue;
            };
            for (p, name) in self.names.iter().enumerate() {
                let name = name.to_ascii_lowercase();
                let has = c.split(|ch: char| !ch.is_alphanumeric()).any(|w| w == name);
                if has && claimed[p].is_none() {
                    claimed[p] = Some((role, (cs, ce)));
                }
            }
        }
        if claimed.iter().all(Option::is_none) {
            return Verdict::malformed(Diagnosis::new(
                DiagnosisKind::BadFormat,
                "the answer names nobody as a knight or a knave (expected \"Name is a knight, ...\")",
            ));
        }
        let right = claimed
            .iter()
            .zip(&self.knights)
            .filter(|(c, k)| c.map(|c| c.0) == Some(**k))
            .count();
        let reward = right as f32 / self.names.len() as f32;
        if right == self.names.len() {
            return Verdict::correct("everyone is classified correctly");
        }
        let (p, claim) = claimed
            .iter()
            .enumerate()
            .find(|(p, c)| c.map(|c| c.0) != Some(self.knights[*p]))
            .map(|(p, c)| (p, *c))
            .unwrap_or((0, None));
        let (found, span) = match claim {
            Some((r, (cs, ce))) => (
                format!("{} is a {}", self.names[p], role(r)),
                range.start + cs..range.start + ce,
            ),
            None => (format!("nothing about {}", self.names[p]), range.clone()),
        };
        Verdict::partial(
            reward,
            Diagnosis::new(
                DiagnosisKind::WrongAnswer,
                format!(
                    "{right} of {} inhabitants classified correctly; first wrong: {}",
                    self.names.len(),
                    self.names[p]
                ),
            )
            .with_first_error(FirstError {
                step: p,
                span,
                expected: format!("{} is a {}", self.names[p], role(self.knights[p])),
                found,
            }),
        )
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn generated_puzzles_are_unique_and_verify() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let p = generate(&mut rng, &Difficulty::default()).unwrap();
        assert_eq!(solutions(&p.statements, 3).len(), 1);
        assert!(p.verify(&p.solution()).correct);
        let mut wrong = p.clone();
        wrong.knights[0] = !wrong.knights[0];
        let v = p.verify(&wrong.format.wrap(&wrong.answer()));
        assert!(!v.correct);
        assert_eq!(v.diagnosis.first_error.unwrap().step, 0);
        assert!(v.reward > 0.0 && v.reward < 1.0);
    }
}
