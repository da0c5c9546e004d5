//! Problems and the built-in task families.
//!
//! A [`Problem`] is serde-serialisable as `{"task": FAMILY, "problem": {...}}`; it renders its
//! prompt as plain text ([`Problem::prompt`], compact, for byte-level models) and as chat messages
//! ([`Problem::chat`]), gives its reference solution ([`Problem::solution`], an SFT target that
//! continues the plain prompt), and verifies a response ([`Problem::verify_with`]).
//!
//! Generators are deterministic: problem `i` of seed `s` depends on `(s, i)` only, through a
//! ChaCha8 stream, never on how many problems are generated. Difficulty is a set of named knobs
//! ([`Difficulty`]) documented per family.

pub mod answer;
pub mod arithmetic;
pub mod binary_matrix;
pub mod countdown;
pub mod knights_knaves;
pub mod mix;
pub mod shortest_path;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

pub use answer::AnswerFormat;
pub use mix::{TaskMix, TaskSpec};

use crate::error::{Error, Result};
use crate::math::MathOptions;
use crate::verdict::Verdict;

/// The task families: `math` (dataset problems, no generator) and five generated families.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskFamily {
    /// Math word problems from a dataset, checked by answer equivalence.
    Math,
    /// Multi-digit `+`, `-`, `*` with a column scratchpad.
    Arithmetic,
    /// Reach a target with given numbers and `+ - * /`.
    Countdown,
    /// Knights (always truthful) and knaves (always lying).
    KnightsKnaves,
    /// Shortest path on a grid with walls.
    ShortestPath,
    /// Distance of each cell of a binary matrix to the nearest 0.
    BinaryMatrix,
    /// Problems exported by reasoning-gym, scored by its own rules (no generator; see
    /// [`crate::reasoning_gym`]).
    ReasoningGym,
}

impl TaskFamily {
    /// Every family, in declaration order.
    pub const ALL: [TaskFamily; 7] = [
        TaskFamily::Math,
        TaskFamily::Arithmetic,
        TaskFamily::Countdown,
        TaskFamily::KnightsKnaves,
        TaskFamily::ShortestPath,
        TaskFamily::BinaryMatrix,
        TaskFamily::ReasoningGym,
    ];

    /// Whether problems of the family are generated (math and reasoning-gym problems come from
    /// datasets).
    pub fn has_generator(self) -> bool {
        !matches!(self, TaskFamily::Math | TaskFamily::ReasoningGym)
    }

    /// The snake_case name used in JSON and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            TaskFamily::Math => "math",
            TaskFamily::Arithmetic => "arithmetic",
            TaskFamily::Countdown => "countdown",
            TaskFamily::KnightsKnaves => "knights_knaves",
            TaskFamily::ShortestPath => "shortest_path",
            TaskFamily::BinaryMatrix => "binary_matrix",
            TaskFamily::ReasoningGym => "reasoning_gym",
        }
    }

    /// Problem `index` of `seed`: independent of how many problems are generated.
    pub fn generate_one(self, seed: u64, index: u64, difficulty: &Difficulty) -> Result<Problem> {
        let mut rng = problem_rng(self, seed, index);
        Ok(match self {
            TaskFamily::Math => {
                return Err(Error::InvalidOption(
                    "the math family has no generator; load math problems from a dataset".into(),
                ));
            }
            TaskFamily::ReasoningGym => {
                return Err(Error::InvalidOption(
                    "reasoning-gym problems have no generator here; load a JSONL exported by \
                     reasoning-gym as a dataset"
                        .into(),
                ));
            }
            TaskFamily::Arithmetic => {
                Problem::Arithmetic(arithmetic::generate(&mut rng, difficulty)?)
            }
            TaskFamily::Countdown => Problem::Countdown(countdown::generate(&mut rng, difficulty)?),
            TaskFamily::KnightsKnaves => {
                Problem::KnightsKnaves(knights_knaves::generate(&mut rng, difficulty)?)
            }
            TaskFamily::ShortestPath => {
                Problem::ShortestPath(shortest_path::generate(&mut rng, difficulty)?)
            }
            TaskFamily::BinaryMatrix => {
                Problem::BinaryMatrix(binary_matrix::generate(&mut rng, difficulty)?)
            }
        })
    }

    /// Problems `0..count` of `seed`.
    pub fn generate(
        self,
        seed: u64,
        count: usize,
        difficulty: &Difficulty,
    ) -> Result<Vec<Problem>> {
        (0..count as u64)
            .map(|i| self.generate_one(seed, i, difficulty))
            .collect()
    }
}

impl fmt::Display for TaskFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for TaskFamily {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let norm = s.trim().to_ascii_lowercase().replace('-', "_");
        TaskFamily::ALL
            .into_iter()
            .find(|f| f.name() == norm)
            .ok_or_else(|| Error::InvalidOption(format!("unknown task family {s:?}")))
    }
}

/// The random stream of problem `index` of `seed` in `family`.
fn problem_rng(family: TaskFamily, seed: u64, index: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(splitmix(seed ^ splitmix(family as u64 + 1)));
    rng.set_stream(index);
    rng
}

/// SplitMix64 finaliser: a cheap, well-mixed 64-bit hash.
pub(crate) fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Difficulty knobs: `name=value` pairs such as `digits=3,op=mul`; a bare number sets `level`.
/// Each family documents its knobs and their defaults; unknown knobs are rejected.
/// In JSON or TOML it is a map whose values may be strings, integers or booleans
/// (`{digits = 3, op = "mul"}`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Difficulty {
    knobs: BTreeMap<String, String>,
}

impl<'de> Deserialize<'de> for Difficulty {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Knob {
            Int(u64),
            Bool(bool),
            Str(String),
        }
        let raw = BTreeMap::<String, Knob>::deserialize(d)?;
        let knobs = raw
            .into_iter()
            .map(|(k, v)| {
                let v = match v {
                    Knob::Int(i) => i.to_string(),
                    Knob::Bool(b) => b.to_string(),
                    Knob::Str(s) => s,
                };
                (k, v)
            })
            .collect();
        Ok(Self { knobs })
    }
}

impl Difficulty {
    /// A knob set from `(name, value)` pairs.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self {
            knobs: pairs
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// The raw value of knob `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.knobs.get(name).map(String::as_str)
    }

    /// Knob `name` as an integer in `range`, or `default`.
    pub fn int(
        &self,
        name: &str,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<u64> {
        let Some(v) = self.get(name) else {
            return Ok(default);
        };
        let n: u64 = v
            .parse()
            .map_err(|_| Error::InvalidOption(format!("difficulty {name}={v}: not an integer")))?;
        if !range.contains(&n) {
            return Err(Error::InvalidOption(format!(
                "difficulty {name}={n}: must be in {}..={}",
                range.start(),
                range.end()
            )));
        }
        Ok(n)
    }

    /// The answer format knob `format` (`tag` or `boxed`; default `tag`).
    pub fn format(&self) -> Result<AnswerFormat> {
        self.choice(
            "format",
            &[("tag", AnswerFormat::Tag), ("boxed", AnswerFormat::Boxed)],
        )
    }

    /// The prompt style knob `prompt` (`chat` or `plain`; default `chat`).
    pub fn prompt_style(&self) -> Result<PromptStyle> {
        self.choice(
            "prompt",
            &[("chat", PromptStyle::Chat), ("plain", PromptStyle::Plain)],
        )
    }

    /// A knob naming one of `options` (the first is the default).
    fn choice<T: Copy>(&self, name: &str, options: &[(&str, T)]) -> Result<T> {
        let Some(v) = self.get(name) else {
            return Ok(options[0].1);
        };
        match options.iter().find(|(o, _)| *o == v) {
            Some((_, t)) => Ok(*t),
            None => {
                let names: Vec<&str> = options.iter().map(|(o, _)| *o).collect();
                Err(Error::InvalidOption(format!(
                    "difficulty {name}={v}: use {}",
                    names.join(" or ")
                )))
            }
        }
    }

    /// Fails on knobs outside `known` (plus `level`, `format` and `prompt`, accepted
    /// everywhere).
    pub fn check_known(&self, family: TaskFamily, known: &[&str]) -> Result<()> {
        for k in self.knobs.keys() {
            if !["level", "format", "prompt"].contains(&k.as_str()) && !known.contains(&k.as_str())
            {
                return Err(Error::InvalidOption(format!(
                    "{family} has no difficulty knob {k:?} (knobs: {})",
                    known.join(", ")
                )));
            }
        }
        Ok(())
    }
}

impl FromStr for Difficulty {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let mut knobs = BTreeMap::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.split_once('=') {
                Some((k, v)) => knobs.insert(k.trim().to_string(), v.trim().to_string()),
                None if part.parse::<u64>().is_ok() => {
                    knobs.insert("level".to_string(), part.to_string())
                }
                None => {
                    return Err(Error::InvalidOption(format!(
                        "difficulty {part:?}: expected name=value"
                    )));
                }
            };
        }
        Ok(Self { knobs })
    }
}

/// What the user message of a generated problem says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptStyle {
    /// The task spelled out with its answer format, for instruction-tuned models.
    #[default]
    Chat,
    /// The compact plain prompt ([`Problem::prompt`], e.g. `457+68=`), for small models trained
    /// from scratch: every token of instruction is compute they pay for and never need.
    Plain,
}

/// A chat message for instruction-tuned models.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The message text.
    pub content: String,
}

impl ChatMessage {
    /// A `user` message.
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: "user".into(),
            content: content.into(),
        }
    }
}

/// A math problem from a dataset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MathProblem {
    /// The question.
    pub problem: String,
    /// The gold answer (a bare answer or a worked solution with a final answer).
    pub answer: String,
    /// The worked solution, when the dataset has one (the SFT target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub solution: Option<String>,
}

/// A problem of any family. JSON: `{"task": "arithmetic", "problem": {...}}`.
///
/// Reading one checks it ([`Problem::validate`]): a problem the task does not define fails to
/// deserialize, naming what is wrong, and is never judged.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "task", content = "problem", rename_all = "snake_case")]
pub enum Problem {
    /// A dataset math problem.
    Math(MathProblem),
    /// Multi-digit arithmetic.
    Arithmetic(#[serde(deserialize_with = "valid")] arithmetic::ArithmeticProblem),
    /// Countdown.
    Countdown(#[serde(deserialize_with = "valid")] countdown::CountdownProblem),
    /// Knights and knaves.
    KnightsKnaves(#[serde(deserialize_with = "valid")] knights_knaves::KnightsKnavesProblem),
    /// Shortest path on a grid.
    ShortestPath(#[serde(deserialize_with = "valid")] shortest_path::ShortestPathProblem),
    /// Binary matrix distances.
    BinaryMatrix(#[serde(deserialize_with = "valid")] binary_matrix::BinaryMatrixProblem),
    /// A reasoning-gym problem, scored by reasoning-gym's rules.
    ReasoningGym(#[serde(deserialize_with = "valid")] crate::reasoning_gym::ReasoningGymProblem),
}

/// A family's problem type that can check itself.
trait Validate {
    fn validate(&self) -> Result<()>;
}

macro_rules! impl_validate {
    ($($t:ty),*) => {$(
        impl Validate for $t {
            fn validate(&self) -> Result<()> {
                <$t>::validate(self)
            }
        }
    )*};
}
impl_validate!(
    arithmetic::ArithmeticProblem,
    countdown::CountdownProblem,
    knights_knaves::KnightsKnavesProblem,
    shortest_path::ShortestPathProblem,
    binary_matrix::BinaryMatrixProblem,
    crate::reasoning_gym::ReasoningGymProblem
);

/// Deserializes a family's problem and refuses it unless [`Validate::validate`] passes.
fn valid<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Validate,
{
    let p = T::deserialize(d)?;
    p.validate().map_err(serde::de::Error::custom)?;
    Ok(p)
}

impl Problem {
    /// Fails with [`Error::InvalidProblem`] on a problem its task does not define (each family's
    /// `validate` says what that is). Deserializing a problem already checks this.
    pub fn validate(&self) -> Result<()> {
        match self {
            Problem::Math(_) => Ok(()),
            Problem::Arithmetic(p) => p.validate(),
            Problem::Countdown(p) => p.validate(),
            Problem::KnightsKnaves(p) => p.validate(),
            Problem::ShortestPath(p) => p.validate(),
            Problem::BinaryMatrix(p) => p.validate(),
            Problem::ReasoningGym(p) => p.validate(),
        }
    }

    /// The problem's family.
    pub fn family(&self) -> TaskFamily {
        match self {
            Problem::Math(_) => TaskFamily::Math,
            Problem::Arithmetic(_) => TaskFamily::Arithmetic,
            Problem::Countdown(_) => TaskFamily::Countdown,
            Problem::KnightsKnaves(_) => TaskFamily::KnightsKnaves,
            Problem::ShortestPath(_) => TaskFamily::ShortestPath,
            Problem::BinaryMatrix(_) => TaskFamily::BinaryMatrix,
            Problem::ReasoningGym(_) => TaskFamily::ReasoningGym,
        }
    }

    /// The prompt style of a generated problem (dataset math problems are always chat).
    pub fn prompt_style(&self) -> PromptStyle {
        match self {
            Problem::Math(_) | Problem::ReasoningGym(_) => PromptStyle::Chat,
            Problem::Arithmetic(p) => p.prompt_style,
            Problem::Countdown(p) => p.prompt_style,
            Problem::KnightsKnaves(p) => p.prompt_style,
            Problem::ShortestPath(p) => p.prompt_style,
            Problem::BinaryMatrix(p) => p.prompt_style,
        }
    }

    /// The prompt in plain text (compact, for byte-level models trained from scratch).
    pub fn prompt(&self) -> String {
        match self {
            Problem::Math(m) => format!("{}\n", m.problem),
            Problem::Arithmetic(p) => p.prompt(),
            Problem::Countdown(p) => p.prompt(),
            Problem::KnightsKnaves(p) => p.prompt(),
            Problem::ShortestPath(p) => p.prompt(),
            Problem::BinaryMatrix(p) => p.prompt(),
            Problem::ReasoningGym(p) => format!("{}\n", p.question),
        }
    }

    /// The prompt as chat messages: one user message, the task spelled out with its answer
    /// format ([`PromptStyle::Chat`]) or the plain prompt ([`PromptStyle::Plain`]).
    pub fn chat(&self) -> Vec<ChatMessage> {
        if self.prompt_style() == PromptStyle::Plain {
            return vec![ChatMessage::user(self.prompt())];
        }
        let content = match self {
            // RLTF's turn-0 suffix.
            Problem::Math(m) => format!(
                "{} Let's think step by step and output the final answer within \\boxed{{}}.",
                m.problem.trim_end()
            ),
            Problem::Arithmetic(p) => p.chat_prompt(),
            Problem::Countdown(p) => p.chat_prompt(),
            Problem::KnightsKnaves(p) => p.chat_prompt(),
            Problem::ShortestPath(p) => p.chat_prompt(),
            Problem::BinaryMatrix(p) => p.chat_prompt(),
            Problem::ReasoningGym(p) => p.chat_prompt(),
        };
        vec![ChatMessage::user(content)]
    }

    /// The reference solution: a worked solution ending in the marked answer (continues
    /// [`Problem::prompt`]; an SFT target).
    pub fn solution(&self) -> String {
        match self {
            Problem::Math(m) => m
                .solution
                .clone()
                .unwrap_or_else(|| AnswerFormat::Boxed.wrap(&m.answer)),
            Problem::Arithmetic(p) => p.solution(),
            Problem::Countdown(p) => p.solution(),
            Problem::KnightsKnaves(p) => p.solution(),
            Problem::ShortestPath(p) => p.solution(),
            Problem::BinaryMatrix(p) => p.solution(),
            Problem::ReasoningGym(p) => p.solution(),
        }
    }

    /// Verifies `response` (math problems use `math` limits). Never panics.
    pub fn verify_with(&self, response: &str, math: &MathOptions) -> Verdict {
        if response.len() > math.max_response_bytes {
            return Verdict::malformed(crate::verdict::Diagnosis::new(
                crate::verdict::DiagnosisKind::TooLarge,
                "the response is too large to check",
            ));
        }
        match self {
            Problem::Math(m) => crate::math::check_math(&m.answer, response, math),
            Problem::Arithmetic(p) => p.verify(response),
            Problem::Countdown(p) => p.verify(response, math),
            Problem::KnightsKnaves(p) => p.verify(response),
            Problem::ShortestPath(p) => p.verify(response),
            Problem::BinaryMatrix(p) => p.verify(response),
            Problem::ReasoningGym(p) => p.verify(response),
        }
    }

    /// Verifies `response` with default limits.
    pub fn verify(&self, response: &str) -> Verdict {
        self.verify_with(response, &MathOptions::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn family_names_round_trip() {
        for f in TaskFamily::ALL {
            assert_eq!(f.name().parse::<TaskFamily>().unwrap(), f);
            assert_eq!(
                serde_json::to_string(&f).unwrap(),
                format!("\"{}\"", f.name())
            );
        }
    }

    #[test]
    fn plain_prompt_style_sends_the_compact_prompt() {
        for family in TaskFamily::ALL.into_iter().filter(|f| f.has_generator()) {
            let plain = family
                .generate_one(3, 0, &"prompt=plain".parse().unwrap())
                .unwrap();
            let chat = family.generate_one(3, 0, &Difficulty::default()).unwrap();
            assert_eq!(plain.prompt(), chat.prompt(), "{family}");
            assert_eq!(
                plain.chat(),
                vec![ChatMessage::user(plain.prompt())],
                "{family}"
            );
            assert_ne!(chat.chat(), plain.chat(), "{family}");
            let json = serde_json::to_string(&plain).unwrap();
            assert_eq!(serde_json::from_str::<Problem>(&json).unwrap(), plain);
        }
        let err = TaskFamily::Arithmetic
            .generate_one(3, 0, &"prompt=terse".parse().unwrap())
            .unwrap_err();
        assert!(err.to_string().contains("prompt=terse"), "{err}");
    }

    #[test]
    fn difficulty_deserializes_numbers_and_strings() {
        let d: Difficulty =
            serde_json::from_str(r#"{"digits": 3, "op": "mul", "x": true}"#).unwrap();
        assert_eq!(d, "digits=3,op=mul,x=true".parse().unwrap());
    }

    #[test]
    fn difficulty_parses() {
        let d: Difficulty = "digits=3, op=mul".parse().unwrap();
        assert_eq!(d.get("op"), Some("mul"));
        assert_eq!(d.int("digits", 1, 1..=9).unwrap(), 3);
        assert!(d.int("digits", 1, 4..=9).is_err());
        let d: Difficulty = "2".parse().unwrap();
        assert_eq!(d.get("level"), Some("2"));
    }
}
