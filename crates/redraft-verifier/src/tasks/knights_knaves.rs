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
use super::{Difficulty, PromptStyle, TaskFamily};
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
    /// The first inhabitant index the statement mentions that is not below `n`.
    fn person_out_of(&self, n: usize) -> Option<usize> {
        match self {
            Statement::Is { person, .. } => (*person >= n).then_some(*person),
            Statement::Not(s) => s.person_out_of(n),
            Statement::And(v) | Statement::Or(v) => v.iter().find_map(|s| s.person_out_of(n)),
            Statement::Implies(a, b) | Statement::Iff(a, b) => {
                a.person_out_of(n).or_else(|| b.person_out_of(n))
            }
        }
    }

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
    /// What the user message says (chat or plain).
    #[serde(default)]
    pub prompt_style: PromptStyle,
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
    let prompt_style = d.prompt_style()?;
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
                prompt_style,
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
    /// Fails on a puzzle the task does not define: no inhabitants, as many names, statements
    /// and roles, an empty or repeated name (case-insensitive), a name containing "knight" or
    /// "knave", a statement about a person who
    /// does not exist, or roles under which some statement has the wrong truth value.
    pub fn validate(&self) -> Result<()> {
        let invalid = |message: String| {
            Err(Error::InvalidProblem {
                task: TaskFamily::KnightsKnaves,
                message,
            })
        };
        let n = self.names.len();
        if n == 0 {
            return invalid("there are no inhabitants".into());
        }
        if self.statements.len() != n || self.knights.len() != n {
            return invalid(format!(
                "{n} names, {} statements and {} knights: they must be as many",
                self.statements.len(),
                self.knights.len()
            ));
        }
        for (i, name) in self.names.iter().enumerate() {
            if name.trim().is_empty() {
                return invalid(format!("name {i} is empty"));
            }
            let lower = name.to_ascii_lowercase();
            if lower.contains("knight") || lower.contains("knave") {
                return invalid(format!(
                    "name {i} {name:?} contains \"knight\" or \"knave\": answers could not be read"
                ));
            }
            if let Some(j) = self.names[..i]
                .iter()
                .position(|o| o.eq_ignore_ascii_case(name))
            {
                return invalid(format!("name {i} {name:?} is repeated (name {j})"));
            }
        }
        for (i, s) in self.statements.iter().enumerate() {
            if let Some(p) = s.person_out_of(n) {
                return invalid(format!(
                    "statement {i} is about person {p}, but there are {n} inhabitants"
                ));
            }
            if s.eval(&self.knights) != self.knights[i] {
                return invalid(format!(
                    "statement {i} is {} but {} is a {}",
                    s.eval(&self.knights),
                    self.names[i],
                    role(self.knights[i])
                ));
            }
        }
        Ok(())
    }

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

    /// What an answer claims about each inhabitant, with the claim's byte range in `text`.
    ///
    /// Every mention of a name claims the first "knight" / "knave" before the next mention;
    /// a mention followed only by a connector ("Alice and Bob are knights") takes the next
    /// mention's role. Handles `Alice is a knight, Bob is a knave` and
    /// `(1) Alice is a knave (2) Bob is a knight`.
    fn read_claims(&self, text: &str) -> Vec<Option<(bool, (usize, usize))>> {
        let lower = text.to_ascii_lowercase();
        let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
        let bytes = lower.as_bytes();
        let mut mentions: Vec<(usize, usize, usize)> = Vec::new(); // (start, end, person)
        for (p, name) in self.names.iter().enumerate() {
            let name = name.to_ascii_lowercase();
            if name.is_empty() {
                continue;
            }
            let mut from = 0;
            while let Some(off) = lower[from..].find(&name) {
                let (st, en) = (from + off, from + off + name.len());
                let before_ok = st == 0 || !is_word(bytes[st - 1]);
                let after_ok = en == bytes.len() || !is_word(bytes[en]);
                // "is a knight": a name such as "A" there is the article, not a mention.
                let next = lower[en..].trim_start();
                let article = lower[..st].trim_end().ends_with(" is")
                    && (next.starts_with("knight") || next.starts_with("knave"));
                if before_ok && after_ok && !article {
                    mentions.push((st, en, p));
                }
                from = en;
            }
        }
        // Overlapping mentions ("Mary Ann" and "Ann", or a repeated name): the longest mention
        // starting first wins, so the mentions left are disjoint and in text order.
        mentions.sort_unstable_by_key(|&(st, en, p)| (st, std::cmp::Reverse(en), p));
        let mut end = 0;
        mentions.retain(|&(st, en, _)| {
            let keep = st >= end;
            if keep {
                end = en;
            }
            keep
        });
        let mut claimed: Vec<Option<(bool, (usize, usize))>> = vec![None; self.names.len()];
        let mut carried: Option<bool> = None;
        for i in (0..mentions.len()).rev() {
            let (st, en, p) = mentions[i];
            let stop = mentions.get(i + 1).map_or(lower.len(), |m| m.0);
            let window = &lower[en..stop];
            let role = match (window.find("knight"), window.find("knave")) {
                (Some(a), Some(b)) => Some(a < b),
                (Some(_), None) => Some(true),
                (None, Some(_)) => Some(false),
                (None, None) => {
                    let connector = window
                        .trim()
                        .trim_matches(|c: char| c == ',' || c == '&' || c.is_whitespace());
                    if matches!(connector, "" | "and") {
                        carried
                    } else {
                        None
                    }
                }
            };
            carried = role;
            if let Some(r) = role {
                // Earlier mentions overwrite later ones: the first mention with a role wins.
                claimed[p] = Some((r, (st, stop)));
            }
        }
        claimed
    }

    /// Verifies a response.
    pub fn verify(&self, response: &str) -> Verdict {
        if self.names.is_empty() || self.names.len() != self.knights.len() {
            // A hand-written problem can be inconsistent; that is still a verdict, not a panic.
            return Verdict::malformed(Diagnosis::new(
                DiagnosisKind::BadFormat,
                "invalid problem: names and knights differ in length",
            ));
        }
        let (text, range) = match find_answer(response, self.format) {
            Ok(x) => x,
            Err(v) => return *v,
        };
        let claimed = self.read_claims(text);
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

    #[test]
    fn inconsistent_problems_do_not_panic() {
        let p = KnightsKnavesProblem {
            names: vec!["A".into(), "B".into()],
            statements: vec![],
            knights: vec![true],
            format: AnswerFormat::Tag,
            prompt_style: PromptStyle::Chat,
        };
        assert!(
            !p.verify("<answer>A is a knight, B is a knave</answer>")
                .correct
        );
    }

    #[test]
    fn reads_answer_styles() {
        let p = KnightsKnavesProblem {
            names: vec!["Zoey".into(), "Oliver".into(), "Ann".into()],
            statements: vec![],
            knights: vec![false, true, true],
            format: AnswerFormat::Boxed,
            prompt_style: PromptStyle::Chat,
        };
        for answer in [
            "Zoey is a knave, Oliver is a knight, Ann is a knight",
            "(1) Zoey is a knave (2) Oliver is a knight (3) Ann is a knight",
            "Oliver and Ann are knights, while Zoey is a knave",
            "Zoey: knave; Oliver: knight; Ann: knight",
        ] {
            assert!(
                p.verify(&format!("\\boxed{{{answer}}}")).correct,
                "{answer}"
            );
        }
        let v =
            p.verify("\\boxed{(1) Zoey is a knight (2) Oliver is a knight (3) Ann is a knight}");
        assert!(!v.correct);
        let e = v.diagnosis.first_error.unwrap();
        assert_eq!((e.step, e.found.as_str()), (0, "Zoey is a knight"));
    }
}
