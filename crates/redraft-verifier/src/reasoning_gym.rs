//! reasoning-gym datasets scored by reasoning-gym's own rules (version 0.1.19), so that a reward
//! in redraft means what it means there.
//!
//! reasoning-gym exports problems as JSONL lines `{"question", "answer", "metadata"}`, the
//! generator's name in `metadata.source_dataset`. A completion is scored as reasoning-gym scores
//! it: the text of the last `<answer>...</answer>` ([`extract_answer`]), then the dataset's
//! `score_answer` ([`ReasoningGymProblem::score_answer`]), partial credit included:
//!
//! | dataset | reward |
//! |---|---|
//! | `knights_knaves` | 1 for the same set of (name, role) pairs in any order or wording; `0.3 + 0.7 * matching / n` when as many pairs as the answer's and some match; else 0 |
//! | `binary_matrix` | 1 for the answer text exactly; 0.1 for a Python list literal of the right matrix; else 0 |
//! | `shortest_path` | 1 for the answer text (trimmed) or a valid path of the same length; 0.5 for a longer valid path; else 0 |
//! | `countdown` | 1 for an expression of exactly the given numbers within `1e-6 + 1e-5 * target` of the target; 0.05 for a parsed expression that misses; 0.01 for no answer or one that does not parse |
//! | `basic_arithmetic` | 1 for the answer text exactly; `len(gold) / len(answer)` when the answer contains the gold text; else 0 |
//!
//! What Python evaluates and redraft cannot (reasoning-gym calls `eval` for binary matrices and
//! sympy's `parse_expr` for countdown) is limited to literals and arithmetic here; the cases
//! out of reach are listed in `docs/verifier.md` and in the conformance test
//! (`tests/reasoning_gym.rs`).

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use num_bigint::BigInt;
use num_rational::BigRational;
use num_traits::{ToPrimitive, Zero};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::tasks::TaskFamily;
use crate::verdict::{Diagnosis, DiagnosisKind, Verdict};

/// The reasoning-gym datasets redraft scores as reasoning-gym does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RgDataset {
    /// `knights_knaves`.
    KnightsKnaves,
    /// `binary_matrix`.
    BinaryMatrix,
    /// `shortest_path`.
    ShortestPath,
    /// `countdown`.
    Countdown,
    /// `basic_arithmetic`.
    BasicArithmetic,
}

impl RgDataset {
    /// Every supported dataset.
    pub const ALL: [RgDataset; 5] = [
        RgDataset::KnightsKnaves,
        RgDataset::BinaryMatrix,
        RgDataset::ShortestPath,
        RgDataset::Countdown,
        RgDataset::BasicArithmetic,
    ];

    /// reasoning-gym's name of the dataset (its `source_dataset`).
    pub fn name(self) -> &'static str {
        match self {
            RgDataset::KnightsKnaves => "knights_knaves",
            RgDataset::BinaryMatrix => "binary_matrix",
            RgDataset::ShortestPath => "shortest_path",
            RgDataset::Countdown => "countdown",
            RgDataset::BasicArithmetic => "basic_arithmetic",
        }
    }
}

impl fmt::Display for RgDataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The message for a dataset name redraft does not score.
struct UnsupportedName<'a>(&'a str);

impl fmt::Display for UnsupportedName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = RgDataset::ALL.iter().map(|d| d.name()).collect();
        write!(
            f,
            "reasoning-gym dataset {:?} is not supported (supported: {})",
            self.0,
            names.join(", ")
        )
    }
}

impl FromStr for RgDataset {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        RgDataset::ALL
            .into_iter()
            .find(|d| d.name() == s.trim())
            .ok_or_else(|| Error::InvalidOption(UnsupportedName(s).to_string()))
    }
}

/// One reasoning-gym problem, as exported: `{"dataset", "question", "answer", "metadata"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReasoningGymProblem {
    /// The generator whose scoring rule applies.
    pub dataset: RgDataset,
    /// The question as reasoning-gym wrote it.
    pub question: String,
    /// The oracle answer.
    pub answer: String,
    /// reasoning-gym's metadata (shortest_path reads `matrix`, countdown `numbers` and `target`).
    #[serde(default)]
    pub metadata: serde_json::Value,
}

fn invalid(message: impl Into<String>) -> Error {
    Error::InvalidProblem {
        task: TaskFamily::ReasoningGym,
        message: message.into(),
    }
}

impl ReasoningGymProblem {
    /// The problem of an exported line `{"question", "answer", "metadata"}`: the dataset is
    /// `dataset` when given, else the line's `metadata.source_dataset`. `Ok(None)` when neither
    /// names one (the line is not a reasoning-gym problem); an error for an unsupported name or a
    /// line without what its scoring rule reads.
    pub fn from_line(line: &serde_json::Value, dataset: Option<RgDataset>) -> Result<Option<Self>> {
        let source = line
            .get("metadata")
            .and_then(|m| m.get("source_dataset"))
            .and_then(serde_json::Value::as_str);
        let dataset = match (dataset, source) {
            (Some(d), _) => d,
            (None, Some(name)) => name
                .parse()
                .map_err(|_| invalid(format!("{}", UnsupportedName(name))))?,
            (None, None) => return Ok(None),
        };
        let text = |key: &str| match line.get(key) {
            Some(serde_json::Value::String(s)) => Ok(s.clone()),
            _ => Err(invalid(format!("{dataset}: no string {key:?}"))),
        };
        let p = Self {
            dataset,
            question: text("question")?,
            answer: text("answer")?,
            metadata: line.get("metadata").cloned().unwrap_or_default(),
        };
        p.validate()?;
        Ok(Some(p))
    }

    /// Fails when the metadata lacks what the dataset's scoring rule reads (reasoning-gym would
    /// raise there).
    pub fn validate(&self) -> Result<()> {
        match self.dataset {
            RgDataset::ShortestPath => self.grid().map(|_| ()),
            RgDataset::Countdown => self.countdown_numbers().map(|_| ()),
            _ => Ok(()),
        }
    }

    fn grid(&self) -> Result<Grid> {
        let rows = self
            .metadata
            .get("matrix")
            .and_then(serde_json::Value::as_array)
            .ok_or_else(|| invalid("shortest_path: metadata.matrix is not a list of rows"))?;
        let mut cells = Vec::with_capacity(rows.len());
        for row in rows {
            let row: Option<Vec<String>> = row.as_array().and_then(|r| {
                r.iter()
                    .map(|c| c.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
            });
            cells.push(row.ok_or_else(|| {
                invalid("shortest_path: metadata.matrix rows must be lists of strings")
            })?);
        }
        let cols = cells.first().map_or(0, Vec::len);
        if cols == 0 || cells.iter().any(|r| r.len() != cols) {
            return Err(invalid(
                "shortest_path: metadata.matrix must be a non-empty rectangle",
            ));
        }
        let find = |mark: &str| {
            cells.iter().enumerate().find_map(|(r, row)| {
                row.iter()
                    .position(|c| c == mark)
                    .map(|c| (r as i64, c as i64))
            })
        };
        let (start, end) = match (find("*"), find("#")) {
            (Some(s), Some(e)) => (s, e),
            _ => {
                return Err(invalid(
                    "shortest_path: metadata.matrix has no start (*) or no destination (#)",
                ));
            }
        };
        Ok(Grid { cells, start, end })
    }

    fn countdown_numbers(&self) -> Result<(Vec<BigInt>, f64)> {
        let numbers = self
            .metadata
            .get("numbers")
            .and_then(serde_json::Value::as_array)
            .and_then(|a| {
                a.iter()
                    .map(|n| n.as_i64().map(BigInt::from))
                    .collect::<Option<Vec<_>>>()
            })
            .ok_or_else(|| invalid("countdown: metadata.numbers is not a list of integers"))?;
        let target = self
            .metadata
            .get("target")
            .and_then(serde_json::Value::as_f64)
            .ok_or_else(|| invalid("countdown: metadata.target is not a number"))?;
        Ok((numbers, target))
    }

    /// The prompt as one user message: the question, then the `<answer>` instruction.
    pub fn chat_prompt(&self) -> String {
        format!(
            "{}\n\n{}",
            self.question.trim_end(),
            crate::tasks::AnswerFormat::Tag.instruction()
        )
    }

    /// The oracle answer in `<answer>` tags.
    pub fn solution(&self) -> String {
        crate::tasks::AnswerFormat::Tag.wrap(&self.answer)
    }

    /// reasoning-gym's `score_answer(answer, entry)` for an extracted answer (`None` when the
    /// response had none).
    pub fn score_answer(&self, answer: Option<&str>) -> f64 {
        self.score(answer).0
    }

    /// The score with the kind of outcome and a detail for the diagnosis.
    fn score(&self, answer: Option<&str>) -> (f64, DiagnosisKind, &'static str) {
        use DiagnosisKind::*;
        let graded = |s: f64, wrong: &'static str| {
            if s == 1.0 {
                (s, Correct, "")
            } else if s > 0.0 {
                (s, Partial, "partly right (reasoning-gym's partial credit)")
            } else {
                (s, WrongAnswer, wrong)
            }
        };
        if self.dataset == RgDataset::Countdown {
            return self.score_countdown(answer);
        }
        let Some(answer) = answer.filter(|a| !a.is_empty()) else {
            return (0.0, NoAnswer, "no answer in <answer></answer> tags");
        };
        match self.dataset {
            RgDataset::KnightsKnaves => graded(
                score_knights_knaves(answer, &self.answer),
                "the assignment of roles is wrong",
            ),
            RgDataset::BinaryMatrix => {
                let s = if answer == self.answer {
                    1.0
                } else if python_matrix_to_str(answer).as_deref() == Some(self.answer.as_str()) {
                    0.1
                } else {
                    0.0
                };
                graded(s, "the distance matrix differs from the answer")
            }
            RgDataset::ShortestPath => match self.grid() {
                Ok(grid) => graded(
                    score_shortest_path(answer, &self.answer, &grid),
                    "not a valid path from * to #",
                ),
                Err(_) => (0.0, WrongAnswer, "the problem has no valid grid"),
            },
            RgDataset::BasicArithmetic | RgDataset::Countdown => graded(
                substring_score(answer, &self.answer),
                "the answer differs from the gold answer",
            ),
        }
    }

    fn score_countdown(&self, answer: Option<&str>) -> (f64, DiagnosisKind, &'static str) {
        let Some(answer) = answer.filter(|a| !py_strip(a).is_empty()) else {
            return (
                0.01,
                DiagnosisKind::NoAnswer,
                "no answer in <answer></answer> tags",
            );
        };
        let bad = (
            0.01,
            DiagnosisKind::BadFormat,
            "the answer is not an arithmetic expression",
        );
        let Ok((numbers, target)) = self.countdown_numbers() else {
            return bad;
        };
        let value = match expr::evaluate(answer) {
            Some(expr::Value::Finite(v)) => v.to_f64().unwrap_or(f64::NAN),
            Some(expr::Value::Nan) => f64::NAN,
            // float(zoo) raises in sympy.
            Some(expr::Value::Zoo) | None => return bad,
        };
        let mut used = extract_ints(answer);
        let mut wanted = numbers;
        used.sort();
        wanted.sort();
        if used != wanted {
            return (
                0.05,
                DiagnosisKind::WrongAnswer,
                "the expression does not use exactly the given numbers",
            );
        }
        // numpy.isclose(value, target, atol=1e-6) with its default rtol=1e-5.
        if (value - target).abs() <= 1e-6 + 1e-5 * target.abs() {
            (1.0, DiagnosisKind::Correct, "")
        } else {
            (
                0.05,
                DiagnosisKind::WrongAnswer,
                "the expression misses the target",
            )
        }
    }

    /// Scores `response` as reasoning-gym does: [`extract_answer`], then
    /// [`ReasoningGymProblem::score_answer`]. A wrong answer is a verdict, never an error.
    pub fn verify(&self, response: &str) -> Verdict {
        let extracted = extract_answer(response);
        let (score, kind, detail) = self.score(extracted);
        let mut verdict = Verdict::wrong(Diagnosis::new(kind, detail));
        verdict.reward = score as f32;
        verdict.correct = score == 1.0;
        verdict.format_ok = !matches!(kind, DiagnosisKind::NoAnswer | DiagnosisKind::BadFormat);
        verdict
    }
}

/// `reasoning_gym.utils.extract_answer`: the text of the last `<answer>...</answer>` (regex
/// `<answer>\s?(.*?)\s?</answer>`, DOTALL), stripped of whitespace; `None` without one.
pub fn extract_answer(completion: &str) -> Option<&str> {
    const OPEN: &str = "<answer>";
    const CLOSE: &str = "</answer>";
    let mut last = None;
    let mut at = 0;
    while let Some(p) = completion[at..].find(OPEN) {
        let inner = at + p + OPEN.len();
        let Some(q) = completion[inner..].find(CLOSE) else {
            break;
        };
        last = Some(&completion[inner..inner + q]);
        at = inner + q + CLOSE.len();
    }
    last.map(py_strip)
}

/// Python's `str.isspace` for one character.
fn py_is_space(c: char) -> bool {
    matches!(
        c,
        '\t'..='\r'
            | '\x1c'..='\x1f'
            | ' '
            | '\u{85}'
            | '\u{a0}'
            | '\u{1680}'
            | '\u{2000}'..='\u{200a}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202f}'
            | '\u{205f}'
            | '\u{3000}'
    )
}

/// Python's `str.strip()`.
fn py_strip(s: &str) -> &str {
    s.trim_matches(py_is_space)
}

/// Python's `str.split()`.
fn py_split(s: &str) -> impl Iterator<Item = &str> {
    s.split(py_is_space).filter(|p| !p.is_empty())
}

/// reasoning-gym's default `score_answer`: 1 for the same text, `len(oracle) / len(answer)`
/// (in characters) when the answer contains the oracle.
fn substring_score(answer: &str, oracle: &str) -> f64 {
    if answer == oracle {
        1.0
    } else if answer.contains(oracle) {
        oracle.chars().count() as f64 / answer.chars().count() as f64
    } else {
        0.0
    }
}

/// The knights-and-knaves role words of every wording reasoning-gym uses.
const ROLES: [&str; 14] = [
    "altruist", "angel", "devil", "egoist", "fool", "hero", "knave", "knight", "laggard",
    "pioneer", "sage", "saint", "sinner", "villain",
];

/// `KnightsKnavesDataset._normalize_answer`: the set of (name, role) pairs.
fn kk_assignments(answer: &str) -> BTreeSet<(String, String)> {
    let lower = answer.to_lowercase();
    let text = py_strip(&lower)
        .replace(['.', ',', ')', '('], " ")
        .replace(" and ", " ");
    let mut out = BTreeSet::new();
    let mut name: Option<&str> = None;
    for part in py_split(&text) {
        if ["is", "a", "an"].contains(&part) {
            continue;
        }
        if ROLES.contains(&part) {
            if let Some(n) = name.take() {
                out.insert((n.to_string(), part.to_string()));
            }
        } else {
            name = Some(part);
        }
    }
    out
}

fn score_knights_knaves(answer: &str, oracle: &str) -> f64 {
    let gold = kk_assignments(oracle);
    let got = kk_assignments(answer);
    if gold == got {
        return 1.0;
    }
    if gold.len() == got.len() {
        let matching = gold.intersection(&got).count();
        if matching > 0 {
            return 0.3 + (0.7 * matching as f64 / gold.len() as f64);
        }
    }
    0.0
}

/// A shortest-path grid: cells, start `*` and destination `#`.
struct Grid {
    cells: Vec<Vec<String>>,
    start: (i64, i64),
    end: (i64, i64),
}

impl Grid {
    /// `ShortestPathDataset._is_valid_path`.
    fn is_valid_path(&self, path: &[&str]) -> bool {
        let (rows, cols) = (self.cells.len() as i64, self.cells[0].len() as i64);
        let (mut r, mut c) = self.start;
        for step in path {
            let (dr, dc) = match *step {
                "right" => (0, 1),
                "down" => (1, 0),
                "left" => (0, -1),
                "up" => (-1, 0),
                _ => return false,
            };
            r += dr;
            c += dc;
            if !(0..rows).contains(&r) || !(0..cols).contains(&c) {
                return false;
            }
            if self.cells[r as usize][c as usize] == "X" {
                return false;
            }
        }
        (r, c) == self.end
    }
}

fn score_shortest_path(answer: &str, oracle: &str, grid: &Grid) -> f64 {
    let (answer, oracle) = (py_strip(answer), py_strip(oracle));
    if answer == oracle {
        return 1.0;
    }
    let path: Vec<&str> = py_split(answer).collect();
    if !grid.is_valid_path(&path) {
        0.0
    } else if path.len() == py_split(oracle).count() {
        1.0
    } else {
        0.5
    }
}

/// `_extract_ints`: the integers matched by `\b\d+\b`.
fn extract_ints(s: &str) -> Vec<BigInt> {
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_ascii_digit() {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            let before = start.checked_sub(1).map(|j| chars[j]);
            if !word(before) && !word(chars.get(i).copied()) {
                let digits: String = chars[start..i].iter().collect();
                if let Ok(n) = digits.parse() {
                    out.push(n);
                }
            }
        } else {
            i += 1;
        }
    }
    out
}

/// `BinaryMatrixDataset._matrix_to_str(eval(answer))` for answers that are Python literals
/// (lists, tuples, integers, strings without escapes); `None` where Python would raise or where
/// the literal is beyond this reader (then no match is possible or it is listed as out of reach).
fn python_matrix_to_str(answer: &str) -> Option<String> {
    let value = pylit::parse(answer)?;
    let rows = value.iter_items()?;
    let mut lines = Vec::with_capacity(rows.len());
    for row in rows {
        let items = row.iter_items()?;
        let cells: Option<Vec<String>> = items.iter().map(pylit::Lit::str).collect();
        lines.push(cells?.join(" "));
    }
    Some(lines.join("\n"))
}

/// Python literals for binary-matrix answers.
mod pylit {
    /// A Python literal value.
    pub(super) enum Lit {
        Int(String),
        Str(String),
        Seq(Vec<Lit>),
        /// A float or anything else whose `str` redraft does not render.
        Other,
    }

    impl Lit {
        /// Iterating it, as `for row in value` does: a list's items or a string's characters.
        pub(super) fn iter_items(&self) -> Option<Vec<Lit>> {
            match self {
                Lit::Seq(items) => Some(items.iter().map(Lit::shallow).collect()),
                Lit::Str(s) => Some(s.chars().map(|c| Lit::Str(c.to_string())).collect()),
                _ => None,
            }
        }

        fn shallow(&self) -> Lit {
            match self {
                Lit::Int(s) => Lit::Int(s.clone()),
                Lit::Str(s) => Lit::Str(s.clone()),
                Lit::Seq(v) => Lit::Seq(v.iter().map(Lit::shallow).collect()),
                Lit::Other => Lit::Other,
            }
        }

        /// `str(value)` where it could equal a cell of the oracle (integers and strings);
        /// a sequence renders with brackets, which no oracle cell has.
        pub(super) fn str(&self) -> Option<String> {
            match self {
                Lit::Int(s) | Lit::Str(s) => Some(s.clone()),
                Lit::Seq(_) | Lit::Other => Some("[".into()),
            }
        }
    }

    struct Parser<'a> {
        s: &'a [u8],
        at: usize,
        depth: usize,
    }

    /// Parses a whole literal; `None` on anything Python's `eval` would reject or that is out
    /// of reach.
    pub(super) fn parse(text: &str) -> Option<Lit> {
        let mut p = Parser {
            s: text.as_bytes(),
            at: 0,
            depth: 0,
        };
        let v = p.value()?;
        p.ws();
        (p.at == p.s.len()).then_some(v)
    }

    impl Parser<'_> {
        fn ws(&mut self) {
            while self
                .s
                .get(self.at)
                .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0c'))
            {
                self.at += 1;
            }
        }

        fn eat(&mut self, b: u8) -> bool {
            self.ws();
            if self.s.get(self.at) == Some(&b) {
                self.at += 1;
                true
            } else {
                false
            }
        }

        fn value(&mut self) -> Option<Lit> {
            self.depth += 1;
            if self.depth > 100 {
                return None;
            }
            self.ws();
            let v = match *self.s.get(self.at)? {
                open @ (b'[' | b'(') => {
                    self.at += 1;
                    let close = if open == b'[' { b']' } else { b')' };
                    let mut items = Vec::new();
                    let mut trailing_comma = false;
                    loop {
                        if self.eat(close) {
                            break;
                        }
                        items.push(self.value()?);
                        trailing_comma = self.eat(b',');
                        if !trailing_comma {
                            if !self.eat(close) {
                                return None;
                            }
                            break;
                        }
                    }
                    // `(x)` is x itself, `(x,)` a tuple.
                    if open == b'(' && items.len() == 1 && !trailing_comma {
                        items.pop()?
                    } else {
                        Lit::Seq(items)
                    }
                }
                q @ (b'\'' | b'"') => {
                    let start = self.at + 1;
                    let len = self.s[start..].iter().position(|&b| b == q)?;
                    let body = &self.s[start..start + len];
                    if body.iter().any(|&b| b == b'\\' || b == b'\n') {
                        return None;
                    }
                    self.at = start + len + 1;
                    Lit::Str(String::from_utf8(body.to_vec()).ok()?)
                }
                b'+' | b'-' => {
                    let negative = self.s[self.at] == b'-';
                    self.at += 1;
                    match self.value()? {
                        Lit::Int(s) => {
                            let zero = s == "0";
                            match (negative, s.strip_prefix('-')) {
                                (false, _) => Lit::Int(s),
                                (true, Some(pos)) => Lit::Int(pos.to_string()),
                                (true, None) if zero => Lit::Int(s),
                                (true, None) => Lit::Int(format!("-{s}")),
                            }
                        }
                        Lit::Other => Lit::Other,
                        _ => return None,
                    }
                }
                b'0'..=b'9' | b'.' => self.number()?,
                _ => return None,
            };
            self.depth -= 1;
            Some(v)
        }

        fn number(&mut self) -> Option<Lit> {
            let start = self.at;
            while self
                .s
                .get(self.at)
                .is_some_and(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.'))
            {
                self.at += 1;
            }
            let tok = std::str::from_utf8(&self.s[start..self.at]).ok()?;
            if tok.bytes().all(|b| b.is_ascii_digit() || b == b'_') {
                // Python: no leading zeros unless all zeros; `_` only between digits.
                if tok.starts_with('_') || tok.ends_with('_') || tok.contains("__") {
                    return None;
                }
                let digits: String = tok.chars().filter(|c| *c != '_').collect();
                if digits.len() > 1 && digits.starts_with('0') {
                    return digits
                        .bytes()
                        .all(|b| b == b'0')
                        .then(|| Lit::Int("0".into()));
                }
                Some(Lit::Int(digits))
            } else if tok.parse::<f64>().is_ok() {
                Some(Lit::Other)
            } else {
                None
            }
        }
    }
}

/// The arithmetic of countdown answers as sympy's `parse_expr` evaluates it: integer and
/// decimal literals, `+ - * / // % ** ^` (bitwise xor on integers) and parentheses, exactly in
/// rationals, with sympy's `zoo` (division of a non-zero by zero) and `nan`.
mod expr {
    use super::*;

    /// A sympy value.
    pub(super) enum Value {
        Finite(BigRational),
        /// Complex infinity: `float()` of it raises.
        Zoo,
        Nan,
    }

    /// The value of `text`, or `None` where sympy raises (or the text is beyond this reader).
    pub(super) fn evaluate(text: &str) -> Option<Value> {
        let tokens = tokenize(text)?;
        let mut p = Parser {
            t: &tokens,
            at: 0,
            depth: 0,
        };
        let v = p.xor()?;
        (p.at == tokens.len()).then_some(v)
    }

    #[derive(Clone, Debug, PartialEq)]
    enum Tok {
        Num(BigRational),
        Op(&'static str),
    }

    fn tokenize(text: &str) -> Option<Vec<Tok>> {
        let b = text.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            let c = b[i];
            if matches!(c, b' ' | b'\t' | b'\x0c') {
                i += 1;
                continue;
            }
            if c.is_ascii_digit() || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)) {
                let start = i;
                while i < b.len()
                    && (b[i].is_ascii_alphanumeric()
                        || b[i] == b'.'
                        || b[i] == b'_'
                        || ((b[i] == b'+' || b[i] == b'-')
                            && matches!(b[i - 1], b'e' | b'E')
                            && b[start..i]
                                .iter()
                                .all(|x| !x.is_ascii_alphabetic() || *x == b'e' || *x == b'E')))
                {
                    i += 1;
                }
                out.push(number(&text[start..i])?);
                continue;
            }
            let ops = ["**", "//", "+", "-", "*", "/", "%", "^", "(", ")"];
            let op = ops.into_iter().find(|o| text[i..].starts_with(o))?;
            out.push(Tok::Op(op));
            i += op.len();
        }
        Some(out)
    }

    /// A Python number literal: an integer or a decimal float (read exactly).
    fn number(tok: &str) -> Option<Tok> {
        if tok.starts_with('_') || tok.ends_with('_') || tok.contains("__") {
            return None;
        }
        let t: String = tok.chars().filter(|c| *c != '_').collect();
        if t.bytes().all(|b| b.is_ascii_digit()) {
            if t.len() > 1 && t.starts_with('0') && !t.bytes().all(|b| b == b'0') {
                return None;
            }
            return Some(Tok::Num(BigRational::from_integer(t.parse().ok()?)));
        }
        let (mantissa, exp) = match t.find(['e', 'E']) {
            Some(k) => (&t[..k], t[k + 1..].parse::<i32>().ok()?),
            None => (t.as_str(), 0),
        };
        if exp.abs() > 400 || mantissa.is_empty() {
            return None;
        }
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        if !(int.bytes().all(|b| b.is_ascii_digit()) && frac.bytes().all(|b| b.is_ascii_digit()))
            || (int.is_empty() && frac.is_empty())
        {
            return None;
        }
        let digits: BigInt = format!("{int}{frac}0").parse().ok()?;
        let scale = exp - frac.len() as i32 - 1;
        let ten = BigInt::from(10);
        let v = if scale >= 0 {
            BigRational::from_integer(digits * num_traits::pow(ten, scale as usize))
        } else {
            BigRational::new(digits, num_traits::pow(ten, (-scale) as usize))
        };
        Some(Tok::Num(v))
    }

    struct Parser<'a> {
        t: &'a [Tok],
        at: usize,
        depth: usize,
    }

    fn is_int(v: &Value) -> Option<BigInt> {
        match v {
            Value::Finite(r) if r.is_integer() => Some(r.to_integer()),
            _ => None,
        }
    }

    fn add(a: Value, b: Value) -> Value {
        match (a, b) {
            (Value::Finite(x), Value::Finite(y)) => Value::Finite(x + y),
            (Value::Nan, _) | (_, Value::Nan) | (Value::Zoo, Value::Zoo) => Value::Nan,
            _ => Value::Zoo,
        }
    }

    fn neg(a: Value) -> Value {
        match a {
            Value::Finite(x) => Value::Finite(-x),
            other => other,
        }
    }

    fn mul(a: Value, b: Value) -> Value {
        match (a, b) {
            (Value::Finite(x), Value::Finite(y)) => Value::Finite(x * y),
            (Value::Nan, _) | (_, Value::Nan) => Value::Nan,
            (Value::Finite(x), Value::Zoo) | (Value::Zoo, Value::Finite(x)) if x.is_zero() => {
                Value::Nan
            }
            _ => Value::Zoo,
        }
    }

    fn div(a: Value, b: Value) -> Value {
        match b {
            Value::Finite(y) if y.is_zero() => match a {
                Value::Finite(x) if x.is_zero() => Value::Nan,
                Value::Nan => Value::Nan,
                _ => Value::Zoo,
            },
            Value::Finite(y) => mul(a, Value::Finite(y.recip())),
            Value::Zoo => match a {
                Value::Finite(_) => Value::Finite(BigRational::zero()),
                _ => Value::Nan,
            },
            Value::Nan => Value::Nan,
        }
    }

    impl Parser<'_> {
        fn peek(&self, op: &str) -> bool {
            matches!(self.t.get(self.at), Some(Tok::Op(o)) if *o == op)
        }

        fn take(&mut self, ops: &[&'static str]) -> Option<&'static str> {
            let op = ops.iter().find(|o| self.peek(o))?;
            self.at += 1;
            Some(op)
        }

        /// `a ^ b`: bitwise xor of integers (sympy raises on anything else).
        fn xor(&mut self) -> Option<Value> {
            let mut v = self.sum()?;
            while self.take(&["^"]).is_some() {
                let w = self.sum()?;
                v = Value::Finite(BigRational::from_integer(is_int(&v)? ^ is_int(&w)?));
            }
            Some(v)
        }

        fn sum(&mut self) -> Option<Value> {
            let mut v = self.term()?;
            while let Some(op) = self.take(&["+", "-"]) {
                let w = self.term()?;
                v = if op == "+" { add(v, w) } else { add(v, neg(w)) };
            }
            Some(v)
        }

        fn term(&mut self) -> Option<Value> {
            let mut v = self.unary()?;
            while let Some(op) = self.take(&["*", "/", "//", "%"]) {
                let w = self.unary()?;
                v = match op {
                    "*" => mul(v, w),
                    "/" => div(v, w),
                    // Floor division and modulo of finite values by a non-zero value only.
                    _ => match (v, w) {
                        (Value::Finite(x), Value::Finite(y)) if !y.is_zero() => {
                            let q = (&x / &y).floor();
                            Value::Finite(if op == "//" { q } else { x - q * y })
                        }
                        _ => return None,
                    },
                };
            }
            Some(v)
        }

        fn unary(&mut self) -> Option<Value> {
            match self.take(&["+", "-"]) {
                Some(op) => {
                    self.depth += 1;
                    if self.depth > 100 {
                        return None;
                    }
                    let v = self.unary()?;
                    self.depth -= 1;
                    Some(if op == "-" { neg(v) } else { v })
                }
                None => self.power(),
            }
        }

        fn power(&mut self) -> Option<Value> {
            let base = self.atom()?;
            if self.take(&["**"]).is_none() {
                return Some(base);
            }
            let exp = self.unary()?;
            let e = is_int(&exp)?.to_i64().filter(|e| e.abs() <= 64)?;
            match base {
                Value::Finite(b) if b.is_zero() && e < 0 => Some(Value::Zoo),
                Value::Finite(b) => {
                    let bits = b.numer().bits().max(b.denom().bits());
                    (bits * e.unsigned_abs() <= 4096).then(|| Value::Finite(b.pow(e as i32)))
                }
                // Powers of zoo and nan are beyond this reader.
                _ => None,
            }
        }

        fn atom(&mut self) -> Option<Value> {
            match self.t.get(self.at)? {
                Tok::Num(v) => {
                    self.at += 1;
                    Some(Value::Finite(v.clone()))
                }
                Tok::Op("(") => {
                    self.at += 1;
                    self.depth += 1;
                    if self.depth > 100 {
                        return None;
                    }
                    let v = self.xor()?;
                    self.depth -= 1;
                    self.take(&[")"])?;
                    Some(v)
                }
                _ => None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extraction_follows_the_regex() {
        assert_eq!(extract_answer("<answer> 5 </answer>"), Some("5"));
        assert_eq!(
            extract_answer("<answer>a</answer><answer>b</answer>"),
            Some("b")
        );
        assert_eq!(extract_answer("<answer>a</answer><answer>b"), Some("a"));
        assert_eq!(
            extract_answer("<answer>x <answer>y</answer>"),
            Some("x <answer>y")
        );
        assert_eq!(extract_answer("<answer></answer>"), Some(""));
        assert_eq!(extract_answer("5"), None);
    }

    #[test]
    fn countdown_arithmetic_matches_sympy() {
        let f = |s: &str| match expr::evaluate(s) {
            Some(expr::Value::Finite(v)) => Some(v.to_f64().unwrap()),
            Some(expr::Value::Nan) => Some(f64::NAN),
            _ => None,
        };
        assert_eq!(f("2^3"), Some(1.0));
        assert_eq!(f("2**-1"), Some(0.5));
        assert_eq!(f("1++2"), Some(3.0));
        assert_eq!(f("-2**2"), Some(-4.0));
        assert!(f("1/0").is_none());
        assert!(f("(1/0)*0").unwrap().is_nan());
        assert_eq!(f("1_000"), Some(1000.0));
        assert_eq!(f("1e3"), Some(1000.0));
        assert!(f("007").is_none());
        assert!(f("1+2=3").is_none());
        assert!(f("(1+2").is_none());
    }
}
