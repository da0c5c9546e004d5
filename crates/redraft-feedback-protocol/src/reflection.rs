//! R^3L self-reflection: the policy writes a JSON report on its own trajectory, which is parsed
//! and validated as the paper's code does (`validate_reflect_report`), and turned into guidance
//! for a retry from the pivot turn.

use std::sync::Arc;
use std::time::Instant;

use redraft_tokenizer::Message;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::chat::{ChatModel, ChatRequest};
use crate::error::Result;
use crate::provider::{FeedbackProvider, ProviderStats, StatsRecorder};
use crate::templates::{R3L_REFLECTION_SYSTEM, Templates, TrajectoryStep};
use crate::types::{Exchange, Feedback, FeedbackKind, FeedbackRequest, FeedbackSource, Pivot};

/// The keys a report must have, in the order the guidance writes them.
pub const REPORT_KEYS: [&str; 5] = [
    "trajectory_summary",
    "root_cause_analysis",
    "trajectory_outcome",
    "improvement_suggestion",
    "retry_from_step",
];

/// The reflector's judgement of its trajectory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrajectoryOutcome {
    /// Solved; nothing to improve (no retry).
    Success,
    /// Solved with wasted steps (retried).
    SuccessButInefficient,
    /// Not solved (retried).
    Failure,
}

impl TrajectoryOutcome {
    /// The JSON string of this outcome.
    pub fn as_str(self) -> &'static str {
        match self {
            TrajectoryOutcome::Success => "success",
            TrajectoryOutcome::SuccessButInefficient => "success_but_inefficient",
            TrajectoryOutcome::Failure => "failure",
        }
    }
}

/// A valid reflection report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReflectionReport {
    /// What the trajectory did.
    pub trajectory_summary: String,
    /// The "why" analysis and its root cause.
    pub root_cause_analysis: String,
    /// The judgement.
    pub trajectory_outcome: TrajectoryOutcome,
    /// The lesson for the retry (non-empty unless the outcome is success).
    pub improvement_suggestion: String,
    /// The turn to retry from (`0 <= k < turns`); `None` only for a success whose value was not
    /// a valid step (the code does not check it then).
    pub retry_from_step: Option<usize>,
}

impl ReflectionReport {
    /// The report as the guidance shows it: JSON with 2-space indentation and non-ASCII
    /// characters escaped, like Python's `json.dumps(report, indent=2)`.
    pub fn to_guidance_json(&self) -> String {
        // serde_json's map is sorted unless `preserve_order` is on; write the keys in schema
        // order by hand instead.
        let fields: [(&str, Value); 5] = [
            (
                "trajectory_summary",
                Value::from(self.trajectory_summary.clone()),
            ),
            (
                "root_cause_analysis",
                Value::from(self.root_cause_analysis.clone()),
            ),
            (
                "trajectory_outcome",
                Value::from(self.trajectory_outcome.as_str()),
            ),
            (
                "improvement_suggestion",
                Value::from(self.improvement_suggestion.clone()),
            ),
            (
                "retry_from_step",
                self.retry_from_step.map_or(Value::Null, Value::from),
            ),
        ];
        let mut out = String::from("{\n");
        for (i, (k, v)) in fields.iter().enumerate() {
            let v = serde_json::to_string(v).unwrap_or_default();
            out.push_str(&format!("  \"{k}\": {v}"));
            out.push_str(if i + 1 < fields.len() { ",\n" } else { "\n" });
        }
        out.push('}');
        ascii_escape(&out)
    }
}

/// Escapes non-ASCII characters as `\uXXXX` (UTF-16), as Python's `ensure_ascii` does. Valid for
/// JSON text, where non-ASCII characters only occur inside strings.
fn ascii_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut buf = [0u16; 2];
            for u in c.encode_utf16(&mut buf) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    out
}

/// Why a reflection is invalid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvalidReflection {
    /// No `{ ... }` in the text.
    NoJsonObject,
    /// The text between the first `{` and the last `}` is not JSON.
    BadJson(String),
    /// The JSON is not an object.
    NotAnObject,
    /// A required key is missing.
    MissingKey(String),
    /// `trajectory_outcome` is not one of the three outcomes.
    UnknownOutcome(String),
    /// Not a success, and `improvement_suggestion` is empty.
    EmptySuggestion,
    /// Not a success, and `retry_from_step` is not an integer in `0..turns`.
    BadRetryStep(String),
}

/// The parsed result of a reflection: a valid report, or why it is invalid. Invalid reports are
/// counted by the provider ([`ProviderStats::invalid_reflections`]); they are not errors.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ReflectionOutcome {
    /// A valid report.
    Valid {
        /// The report.
        report: ReflectionReport,
    },
    /// An invalid report.
    Invalid {
        /// Why.
        reason: InvalidReflection,
        /// The model's text.
        raw: String,
    },
}

impl ReflectionOutcome {
    /// Whether the report is valid.
    pub fn is_valid(&self) -> bool {
        matches!(self, ReflectionOutcome::Valid { .. })
    }

    /// The report, when valid.
    pub fn report(&self) -> Option<&ReflectionReport> {
        match self {
            ReflectionOutcome::Valid { report } => Some(report),
            ReflectionOutcome::Invalid { .. } => None,
        }
    }

    /// R^3L's retry trigger: a valid report whose outcome is not `success`.
    pub fn triggers_retry(&self) -> bool {
        self.report()
            .is_some_and(|r| r.trajectory_outcome != TrajectoryOutcome::Success)
    }
}

/// Parses and validates a reflection written for a trajectory of `turns` assistant turns:
/// the substring between the first `{` and the last `}` is parsed as JSON; the report is valid
/// iff every key of [`REPORT_KEYS`] is present, the outcome is known, and (the outcome is
/// `success` or (the suggestion is non-empty and `retry_from_step` is an integer in
/// `0..turns`)).
pub fn parse_reflection(text: &str, turns: usize) -> ReflectionOutcome {
    let invalid = |reason| ReflectionOutcome::Invalid {
        reason,
        raw: text.to_string(),
    };
    let (Some(start), Some(end)) = (text.find('{'), text.rfind('}')) else {
        return invalid(InvalidReflection::NoJsonObject);
    };
    if end < start {
        return invalid(InvalidReflection::NoJsonObject);
    }
    let value: Value = match serde_json::from_str(&text[start..=end]) {
        Ok(v) => v,
        Err(e) => return invalid(InvalidReflection::BadJson(e.to_string())),
    };
    let Value::Object(obj) = value else {
        return invalid(InvalidReflection::NotAnObject);
    };
    if let Some(k) = REPORT_KEYS.iter().find(|k| !obj.contains_key(**k)) {
        return invalid(InvalidReflection::MissingKey(k.to_string()));
    }
    let outcome = match &obj["trajectory_outcome"] {
        Value::String(s) if s == "success" => TrajectoryOutcome::Success,
        Value::String(s) if s == "success_but_inefficient" => {
            TrajectoryOutcome::SuccessButInefficient
        }
        Value::String(s) if s == "failure" => TrajectoryOutcome::Failure,
        other => return invalid(InvalidReflection::UnknownOutcome(text_of(other))),
    };
    let suggestion = text_of(&obj["improvement_suggestion"]);
    let step = match &obj["retry_from_step"] {
        Value::Number(n) => n.as_u64().and_then(|s| usize::try_from(s).ok()),
        _ => None,
    };
    let step_ok = step.filter(|s| *s < turns);
    if outcome != TrajectoryOutcome::Success {
        if suggestion.is_empty() {
            return invalid(InvalidReflection::EmptySuggestion);
        }
        if step_ok.is_none() {
            return invalid(InvalidReflection::BadRetryStep(format!(
                "{} (turns: {turns})",
                obj["retry_from_step"]
            )));
        }
    }
    ReflectionOutcome::Valid {
        report: ReflectionReport {
            trajectory_summary: text_of(&obj["trajectory_summary"]),
            root_cause_analysis: text_of(&obj["root_cause_analysis"]),
            trajectory_outcome: outcome,
            improvement_suggestion: suggestion,
            retry_from_step: step_ok,
        },
    }
}

/// A string value as is, null as empty, anything else as its JSON text.
fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Splits a trajectory into R^3L steps: the system text, and one step per assistant turn with
/// the user/tool messages before it. User text after the last assistant turn becomes a final
/// step without a response.
pub fn trajectory_steps(messages: &[Message]) -> (String, Vec<TrajectoryStep>) {
    let mut system = Vec::new();
    let mut steps = Vec::new();
    let mut pending: Vec<&str> = Vec::new();
    for m in messages {
        match m.role.as_str() {
            "system" => system.push(m.content.as_str()),
            "assistant" => {
                steps.push(TrajectoryStep {
                    index: steps.len(),
                    user: pending.join("\n\n"),
                    assistant: Some(m.content.clone()),
                });
                pending.clear();
            }
            _ => pending.push(m.content.as_str()),
        }
    }
    if !pending.is_empty() {
        steps.push(TrajectoryStep {
            index: steps.len(),
            user: pending.join("\n\n"),
            assistant: None,
        });
    }
    (system.join("\n\n"), steps)
}

fn default_temperature() -> Option<f32> {
    Some(1.0)
}

fn default_max_tokens() -> u32 {
    4096
}

/// Options of [`SelfReflection`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelfReflectionConfig {
    /// Sampling temperature of the reflection. Default 1.0, the rollout temperature the code
    /// uses (the paper says 0.7).
    #[serde(default = "default_temperature")]
    pub temperature: Option<f32>,
    /// Token limit of the reflection. Default 4096.
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u32,
}

impl Default for SelfReflectionConfig {
    fn default() -> Self {
        Self {
            temperature: default_temperature(),
            max_tokens: default_max_tokens(),
        }
    }
}

/// R^3L's self-reflection provider: the policy (any [`ChatModel`]) reflects on its trajectory.
///
/// Each [`Feedback`] carries the parsed [`ReflectionOutcome`]; for a valid report that asks for
/// a retry, `text` is the guidance (`self_correction.j2`) and `pivot` is the turn to retry from.
/// For an invalid report, `text` is empty and [`Feedback::triggers_retry`] is false.
pub struct SelfReflection {
    model: Arc<dyn ChatModel>,
    templates: Arc<Templates>,
    config: SelfReflectionConfig,
    stats: StatsRecorder,
}

impl SelfReflection {
    /// A provider that asks `model` to reflect.
    pub fn new(
        model: Arc<dyn ChatModel>,
        templates: Arc<Templates>,
        config: SelfReflectionConfig,
    ) -> Self {
        Self {
            model,
            templates,
            config,
            stats: StatsRecorder::new(),
        }
    }

    /// The reflection conversation for `request`: the Reflector system prompt and the user
    /// message with the trajectory log.
    pub fn reflection_messages(&self, request: &FeedbackRequest) -> Result<Vec<Message>> {
        let (system, steps) = trajectory_steps(&request.trajectory());
        let log = self.templates.r3l_trajectory(&system, &steps)?;
        let user = self.templates.r3l_reflection_user(&log)?;
        let system_prompt = self
            .templates
            .render(R3L_REFLECTION_SYSTEM, minijinja::context! {})?;
        Ok(vec![Message::system(system_prompt), Message::user(user)])
    }

    /// The guidance text for a valid report.
    pub fn guidance(&self, report: &ReflectionReport) -> Result<String> {
        self.templates.r3l_guidance(&report.to_guidance_json())
    }
}

impl FeedbackProvider for SelfReflection {
    fn name(&self) -> &str {
        "self_reflection"
    }

    fn feedback(&self, requests: &[FeedbackRequest]) -> Vec<Result<Feedback>> {
        let start = Instant::now();
        let mut out: Vec<Option<Result<Feedback>>> = vec![None; requests.len()];
        let mut chat = Vec::new();
        let mut index = Vec::new();
        for (i, r) in requests.iter().enumerate() {
            match self.reflection_messages(r) {
                Ok(messages) => {
                    let mut req = ChatRequest::new(messages).max_tokens(self.config.max_tokens);
                    req.temperature = self.config.temperature;
                    chat.push(req);
                    index.push(i);
                }
                Err(e) => out[i] = Some(Err(e)),
            }
        }
        let responses = self.model.complete(&chat);
        for ((i, resp), asked) in index.into_iter().zip(responses).zip(&chat) {
            let request = &requests[i];
            out[i] = Some(resp.and_then(|resp| {
                let turns = request
                    .trajectory()
                    .iter()
                    .filter(|m| m.role == "assistant")
                    .count();
                let outcome = parse_reflection(&resp.text, turns);
                let mut fb = Feedback::new(
                    FeedbackKind::SelfReflection,
                    String::new(),
                    FeedbackSource::new(self.name()).with_model(self.model.name()),
                );
                if let Some(report) = outcome.report() {
                    if outcome.triggers_retry() {
                        fb.text = self.guidance(report)?;
                        fb.pivot = report.retry_from_step.map(Pivot::turn);
                    }
                    if !report.improvement_suggestion.is_empty() {
                        fb.hints = vec![report.improvement_suggestion.clone()];
                    }
                }
                fb.verdict = Some(request.verdict.clone());
                fb.reflection = Some(outcome);
                fb.exchange = Some(Exchange {
                    messages: asked.messages.clone(),
                    response: resp.text.clone(),
                });
                fb.latency_ms = if resp.latency.is_zero() {
                    start.elapsed().as_secs_f64() * 1e3
                } else {
                    resp.latency.as_secs_f64() * 1e3
                };
                Ok(fb)
            }));
        }
        let out: Vec<Result<Feedback>> = out
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Err(crate::Error::Model("no response".into()))))
            .collect();
        self.stats.record_batch(self.name(), &out);
        out
    }

    fn stats(&self) -> ProviderStats {
        let mut s = self.stats.snapshot();
        s.retries = self.model.retries();
        s
    }
}

/// What a reflection (or other feedback) on a base trajectory concluded, in R^3L's terms
/// (docs/algorithms/r3l.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReflectionVerdict {
    /// The report failed `validate_reflect_report`: no retry, no SFT item.
    Invalid,
    /// Valid report with `trajectory_outcome == "success"` (or a correct attempt): no retry.
    Success,
    /// A retry: a valid report with any other outcome (`success_but_inefficient`, `failure`;
    /// the model's judgement, not the reward), or other feedback on a failed attempt.
    NeedsRetry,
}

/// One retry of a base trajectory.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RetryRecord {
    /// Reward of the retry (the distilled copy has the same tokens and reward).
    pub reward: f32,
    /// Number of environment steps (assistant turns) the retry used.
    pub steps: usize,
}

/// A base trajectory, its reflection, and its retry if one was made.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ReflectRetryRecord {
    /// Reward of the base trajectory.
    pub base_reward: f32,
    /// Number of environment steps (assistant turns) of the base trajectory.
    pub base_steps: usize,
    /// What the reflection concluded.
    pub verdict: ReflectionVerdict,
    /// The retry, when `verdict` is `NeedsRetry` and the retry ran (ignored otherwise).
    pub retry: Option<RetryRecord>,
}

/// Which auxiliary SFT items (advantage 1, singleton groups) a record yields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AuxSftSelection {
    /// Train the reflection (reflection prompt → report).
    pub reflection: bool,
    /// Train the guided retry (prefix ⊕ guidance → retry suffix).
    pub guided_retry: bool,
}

/// Rules for selecting auxiliary SFT items. The default is the released code's math rule
/// ([`code_math`](Self::code_math)).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuxSftRules {
    /// A reward at or above this is a success. Default 1.0.
    #[serde(default = "default_one")]
    pub success_threshold: f32,
    /// Code: an improved retry must also be a success (`R(retry) > R(base)` **and**
    /// `R(retry) ≥ threshold`). Paper: `false` ("retry achieves strictly higher reward").
    pub require_success: bool,
    /// Code, ALFWorld only: a successful retry that used fewer steps than its base also
    /// qualifies (`R(retry) ≥ threshold and steps(retry) < steps(base)`).
    pub fewer_steps_counts: bool,
    /// Code only (not in the paper): when the base succeeded and the reflection said
    /// "success", the reflection is an SFT item.
    pub reflect_on_verified_success: bool,
}

fn default_one() -> f32 {
    1.0
}

impl Default for AuxSftRules {
    fn default() -> Self {
        Self::code_math()
    }
}

impl AuxSftRules {
    /// Released code, math / WebShop / ScienceWorld workflows.
    pub fn code_math() -> Self {
        Self {
            success_threshold: 1.0,
            require_success: true,
            fewer_steps_counts: false,
            reflect_on_verified_success: true,
        }
    }

    /// Released code, ALFWorld workflow (adds the fewer-steps rule).
    pub fn code_alfworld() -> Self {
        Self {
            fewer_steps_counts: true,
            ..Self::code_math()
        }
    }

    /// The paper's rule: strictly higher reward only.
    pub fn paper() -> Self {
        Self {
            success_threshold: 1.0,
            require_success: false,
            fewer_steps_counts: false,
            reflect_on_verified_success: false,
        }
    }
}

/// Selects the auxiliary SFT items a reflect-then-retry record yields (the one place R^3L decides
/// them; docs/algorithms/r3l.md):
///
/// * verdict `Success`: the reflection, iff `reflect_on_verified_success` and
///   `R(base) ≥ threshold` (code-only rule);
/// * verdict `NeedsRetry` with a retry: reflection **and** guided retry iff
///   `R(retry) > R(base)` (and `R(retry) ≥ threshold` when `require_success`), or, with
///   `fewer_steps_counts`, `R(retry) ≥ threshold` and `steps(retry) < steps(base)`;
/// * otherwise nothing (a non-finite reward never qualifies).
pub fn select_aux_sft(record: &ReflectRetryRecord, rules: &AuxSftRules) -> AuxSftSelection {
    let thr = rules.success_threshold;
    match (record.verdict, record.retry) {
        (ReflectionVerdict::NeedsRetry, Some(retry)) => {
            let improved = retry.reward > record.base_reward
                && (!rules.require_success || retry.reward >= thr);
            let faster =
                rules.fewer_steps_counts && retry.reward >= thr && retry.steps < record.base_steps;
            let yes = improved || faster;
            AuxSftSelection {
                reflection: yes,
                guided_retry: yes,
            }
        }
        (ReflectionVerdict::Success, _) => AuxSftSelection {
            reflection: rules.reflect_on_verified_success && record.base_reward >= thr,
            guided_retry: false,
        },
        _ => AuxSftSelection::default(),
    }
}

#[cfg(test)]
mod aux_sft_tests {
    use super::*;

    #[test]
    fn aux_sft_rules() {
        let code = AuxSftRules::code_math();
        let rec = |base_reward, verdict, retry: Option<(f32, usize)>| ReflectRetryRecord {
            base_reward,
            base_steps: 10,
            verdict,
            retry: retry.map(|(reward, steps)| RetryRecord { reward, steps }),
        };
        let both = AuxSftSelection {
            reflection: true,
            guided_retry: true,
        };
        let none = AuxSftSelection::default();
        use ReflectionVerdict::*;
        assert_eq!(
            select_aux_sft(&rec(0.0, NeedsRetry, Some((1.0, 10))), &code),
            both
        );
        // improved but not a success: code no, paper yes
        assert_eq!(
            select_aux_sft(&rec(0.0, NeedsRetry, Some((0.5, 10))), &code),
            none
        );
        assert_eq!(
            select_aux_sft(
                &rec(0.0, NeedsRetry, Some((0.5, 10))),
                &AuxSftRules::paper()
            ),
            both
        );
        // success but inefficient base, successful faster retry: ALFWorld rule only
        let r = rec(1.0, NeedsRetry, Some((1.0, 5)));
        assert_eq!(select_aux_sft(&r, &code), none);
        assert_eq!(select_aux_sft(&r, &AuxSftRules::code_alfworld()), both);
        // code-only reflection SFT on a verified success
        let s = rec(1.0, Success, None);
        assert_eq!(
            select_aux_sft(&s, &code),
            AuxSftSelection {
                reflection: true,
                guided_retry: false
            }
        );
        assert_eq!(select_aux_sft(&s, &AuxSftRules::paper()), none);
        assert_eq!(select_aux_sft(&rec(0.0, Success, None), &code), none);
        assert_eq!(select_aux_sft(&rec(1.0, Invalid, None), &code), none);
        assert_eq!(
            select_aux_sft(&rec(f32::NAN, NeedsRetry, Some((f32::NAN, 1))), &code),
            none
        );
    }
}
