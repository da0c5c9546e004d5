//! Prompt templates as data (minijinja), defaulting to the papers' wording.
//!
//! Every prompt this crate writes, and every prompt a rollout engine needs to inject feedback,
//! is a named template in a [`Templates`] set. The defaults reproduce the papers' released code
//! (sources in `docs/feedback.md`); a configuration may replace any of them by name
//! ([`Templates::with_overrides`]). Templates render with strict undefined variables and keep
//! trailing newlines, so a rendering is exactly the text the model sees.

use std::collections::BTreeMap;

use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

use crate::error::{Error, Result};

/// RLTF's turn-1 revision prompt (`x1`): `question`, `previous_solution`, `critique`,
/// `answer_instruction`.
pub const RLTF_REVISION: &str = "rltf_revision";
/// RLTF-FM's feedback-modelling prompt: the critique the policy learns to predict (training) and
/// writes for itself (test-time self-feedback): `question`, `previous_solution`.
pub const RLTF_CRITIQUE: &str = "rltf_critique";
/// RLTF's math judge prompt (judge type `judge`/`judge_hint`): `question`, `reference` (none
/// hides the "Correct Final Answer" block), `response`.
pub const RLTF_JUDGE_MATH: &str = "rltf_judge_math";
/// RLTF's Knights-and-Knaves judge prompt (no ground truth): `question`, `response`.
pub const RLTF_JUDGE_KNIGHTS_KNAVES: &str = "rltf_judge_knights_knaves";
/// MulFeRL's judge system prompt, "group" mode.
pub const MULFERL_GROUP_SYSTEM: &str = "mulferl_group_system";
/// MulFeRL's judge user prompt, "group" mode: `question`, `solutions` (a list).
pub const MULFERL_GROUP_USER: &str = "mulferl_group_user";
/// MulFeRL's judge system prompt, "merge" mode.
pub const MULFERL_MERGE_SYSTEM: &str = "mulferl_merge_system";
/// MulFeRL's judge user prompt, "merge" mode: `question`, `feedbacks` (a list).
pub const MULFERL_MERGE_USER: &str = "mulferl_merge_user";
/// MulFeRL's regeneration prompt (a single user message): `question`, `feedback`.
pub const MULFERL_REGEN: &str = "mulferl_regen";
/// MulFeRL's forced response prefix `<thinking><feedback>…</feedback>`: `feedback`.
pub const MULFERL_FORCED_PREFIX: &str = "mulferl_forced_prefix";
/// R^3L's reflection system prompt (the "Reflector"; a paraphrase, see `docs/feedback.md`).
pub const R3L_REFLECTION_SYSTEM: &str = "r3l_reflection_system";
/// R^3L's reflection user message: `trajectory` (rendered by [`R3L_TRAJECTORY`]).
pub const R3L_REFLECTION_USER: &str = "r3l_reflection_user";
/// R^3L's trajectory log: `system` (may be empty), `steps` (list of `{index, user, assistant}`).
pub const R3L_TRAJECTORY: &str = "r3l_trajectory";
/// R^3L's guidance (`self_correction.j2`): `report` (the JSON report, indent 2).
pub const R3L_GUIDANCE: &str = "r3l_guidance";
/// R^3L's guidance as a system message: `system` (the original system prompt, empty for a
/// separate message), `guidance`.
pub const R3L_GUIDANCE_SYSTEM: &str = "r3l_guidance_system";
/// R^3L's math retry user turn after a wrong answer: `answer`.
pub const R3L_MATH_RETRY: &str = "r3l_math_retry";
/// R^3L's math user turn after a response with a broken format.
pub const R3L_INVALID_FORMAT: &str = "r3l_invalid_format";

/// RLTF's default answer instruction (the last line of the turn-0 and turn-1 prompts).
pub const RLTF_ANSWER_INSTRUCTION: &str =
    "Let's think step by step and output the final answer within \\boxed{}.";

const RLTF_REVISION_SRC: &str = "Question: {{ question }}

You are given your previous attempt and an expert critique of it below. Your task is to produce an improved solution using the critique.

Your Previous Solution:
{{ previous_solution }}

Expert Critique:
{{ critique }}

Instructions:
- Write a complete solution as if you are answering the Question for the first time. Do not refer to your previous attempt.
- Do NOT mention or refer to the critique or the revision process.
- Use the critique only to improve correctness, clarity, and reasoning.
- Do NOT use words like: critique, feedback, guide, previous, attempt, revise, correction, \"correctly/incorrectly\", \"as suggested\".

{{ answer_instruction }}";

// The released code's FM prompt: its instruction, then the turn-1 prompt up to "Expert
// Critique:" (the instruction-stripping `replace` misses the math wording, so the "Your task is
// to produce an improved solution" sentence stays), then "Critique: ".
const RLTF_CRITIQUE_SRC: &str = "You are given a question and your previous attempt below. Your task is provide a critique of the attempt.

Question: {{ question }}

You are given your previous attempt and an expert critique of it below. Your task is to produce an improved solution using the critique.

Your Previous Solution:
{{ previous_solution }}

Critique: ";

const RLTF_JUDGE_MATH_SRC: &str = "You are an expert grader for math/logic problems.

Problem:
{{ question }}

{% if reference is not none %}Correct Final Answer (for evaluation only — do NOT reveal this to the student):
{{ reference }}

{% endif %}Student Solution:
{{ response }}

Your task:
- Analyze the student solution step by step.
- Focus on correctness and logical consistency.
- Identify all the mistake(s), if any.
- Give one or several concrete, actionable hints based on their work so they can easily arrive at the correct answer based on your hints.
- Do NOT reveal or directly state the correct solution or final answer in any part of your response.
- Keep the Critique section under 200 words.

Format your response exactly as:

Thinking: [Your step-by-step analysis]
Critique: [Your final critique in under 200 words, ending with either \"Your previous attempt was correct.\" or \"Your previous attempt was incorrect.\"]";

const RLTF_JUDGE_KK_SRC: &str = "Problem: {{ question }}
Solution: {{ response }}

Please analyze this solution step by step, then provide a very short but detailed and actionable critique. Focus on the logical consistency of the reasoning and whether the assignments satisfy all the constraints. Keep the final critique under 50 words. **Do not reveal the correct solution.**

Format your response as:
Thinking: [Your step-by-step analysis]
Critique: [Your final critique in under 50 words]";

const MULFERL_FEEDBACK_SCHEMA: &str = "Output ONLY:
<feedback>
Issue:
1. Earliest/root mistake: ...
2. Where it first goes wrong (quote one or two lines): \"...\"
3. Step-by-step errors:
   - (1) ...
   - (2) ...
   - (3) ...

Fix steps:
1. ...
2. ...
3. ...
</feedback>";

const MULFERL_GROUP_SYSTEM_HEAD: &str = "You are a strict reviewer of an incorrect solution.
Please briefly explain (step-by-step) the solution's mistakes and provide your correction suggestions.

Task:
- Identify the earliest/root mistake (the first wrong step).
- Explain the errors step-by-step (concise, specific).
- Give concrete correction suggestions (how to fix the process).

Rules:
- Do NOT provide a full correct solution.
- Do NOT provide or reveal the final numeric answer.
- Avoid generic advice; point to specific steps or lines.

";

const MULFERL_MERGE_SYSTEM_HEAD: &str =
    "You merge multiple feedback comments on an incorrect solution.

Task:
- Combine the feedback into ONE concise, actionable feedback.
- Deduplicate repeated points.
- Keep ONLY the earliest/root failure modes (the first wrong step and its consequences).

Rules:
- Do NOT provide a full correct solution.
- Do NOT provide or reveal the final numeric answer.
- Keep it short and specific.

";

const MULFERL_GROUP_USER_SRC: &str = "Question:
{{ question }}

Student solutions:
{% for s in solutions %}Solution {{ loop.index }}:
{{ s }}{% if not loop.last %}

{% endif %}{% endfor %}

Write feedback in the required format.";

const MULFERL_MERGE_USER_SRC: &str = "Question:
{{ question }}

Feedback comments:
{% for f in feedbacks %}Feedback {{ loop.index }}:
{{ f }}{% if not loop.last %}

{% endif %}{% endfor %}

Merge them into ONE feedback in the required format.";

const MULFERL_REGEN_SRC: &str = "You are a reasoning assistant.
Re-solve the problem from scratch. Use the provided feedback only as hints.
Do NOT create another <feedback> block.
Do NOT modify, repeat, or paraphrase the provided feedback text.

Output format (must follow exactly):
1) Start with EXACTLY: <thinking><feedback>{{ feedback }}</feedback>
2) Continue your reasoning, then close: </thinking>
3) The final answer MUST be written as: \\boxed{answer}
Do NOT output anything else.

Problem:
{{ question }}
Start your new solution by continuing from the following prefix exactly:<thinking><feedback>{{ feedback }}</feedback>";

const MULFERL_FORCED_PREFIX_SRC: &str = "<thinking><feedback>{{ feedback }}</feedback>";

const R3L_REFLECTION_SYSTEM_SRC: &str = "You are a Reflector. You analyse the log of an agent's last attempt at a task, including the messages from the user and the environment, and find out why it went the way it did.

Work like Socrates: do not stop at the first explanation. For each problem you see, keep asking \"why?\" until you reach the root cause: the first decision or step in the trajectory that led to the failure or the inefficiency, not just its symptoms.

Then judge the outcome:
- \"success\": the task was solved and the trajectory needs no improvement;
- \"success_but_inefficient\": the task was solved, but with wasted or unnecessary steps;
- \"failure\": the task was not solved.

Unless the outcome is \"success\", write one concrete, actionable suggestion that would have avoided the root cause, phrased as a lesson for a fresh attempt, and name the step from which a new attempt should be retried: the index of the first step (counting the assistant's responses from 0) that must change. Steps before it were fine and will be kept.

Output exactly one JSON object and nothing else, with these keys:
{
  \"trajectory_summary\": \"a short summary of what the agent did\",
  \"root_cause_analysis\": \"the chain of why-questions and the root cause you found\",
  \"trajectory_outcome\": \"success\" | \"success_but_inefficient\" | \"failure\",
  \"improvement_suggestion\": \"the concrete lesson for the next attempt (empty only for success)\",
  \"retry_from_step\": an integer step index, 0 <= retry_from_step < number of steps
}";

const R3L_REFLECTION_USER_SRC: &str = "Here is last attempt trajectory log: \n\n{{ trajectory }}\n\nPlease output in the specified JSON format.";

const R3L_TRAJECTORY_SRC: &str = "{% if system %}**System:** {{ system }}

{% endif %}{% for step in steps %}**Step {{ step.index }} - User:** {{ step.user }}{% if step.assistant is not none %}

**Step {{ step.index }} - Assistant Response:** {{ step.assistant }}{% endif %}{% if not loop.last %}

{% endif %}{% endfor %}";

const R3L_GUIDANCE_SRC: &str = "Your previous attempt encountered issues. Below is a reflection based on user and environment feedback:\n\n{{ report }}\n\nApply the lessons learned from this reflection to avoid repeating the same mistakes. Do not mention or reference this guidance in your response.";

const R3L_GUIDANCE_SYSTEM_SRC: &str = "{% if system %}{{ system }}\n\n{% endif %}# Previous Attempt Analysis & Guidance\n{{ guidance }}";

const R3L_MATH_RETRY_SRC: &str = "Feedback: Incorrect. Your answer {{ answer }} does not match. Please try again.

Now it's your turn to try again. Think step by step inside <think>...</think> tags, then give your final answer inside <answer>...</answer> tags.";

const R3L_INVALID_FORMAT_SRC: &str = "Invalid response format. Please ensure you provide both <think>...</think> and <answer>...</answer> tags.";

/// The default templates: `(name, source)`.
pub fn default_sources() -> BTreeMap<&'static str, String> {
    let group_system = format!("{MULFERL_GROUP_SYSTEM_HEAD}{MULFERL_FEEDBACK_SCHEMA}");
    let merge_system = format!("{MULFERL_MERGE_SYSTEM_HEAD}{MULFERL_FEEDBACK_SCHEMA}");
    [
        (RLTF_REVISION, RLTF_REVISION_SRC.to_string()),
        (RLTF_CRITIQUE, RLTF_CRITIQUE_SRC.to_string()),
        (RLTF_JUDGE_MATH, RLTF_JUDGE_MATH_SRC.to_string()),
        (RLTF_JUDGE_KNIGHTS_KNAVES, RLTF_JUDGE_KK_SRC.to_string()),
        (MULFERL_GROUP_SYSTEM, group_system),
        (MULFERL_GROUP_USER, MULFERL_GROUP_USER_SRC.to_string()),
        (MULFERL_MERGE_SYSTEM, merge_system),
        (MULFERL_MERGE_USER, MULFERL_MERGE_USER_SRC.to_string()),
        (MULFERL_REGEN, MULFERL_REGEN_SRC.to_string()),
        (MULFERL_FORCED_PREFIX, MULFERL_FORCED_PREFIX_SRC.to_string()),
        (R3L_REFLECTION_SYSTEM, R3L_REFLECTION_SYSTEM_SRC.to_string()),
        (R3L_REFLECTION_USER, R3L_REFLECTION_USER_SRC.to_string()),
        (R3L_TRAJECTORY, R3L_TRAJECTORY_SRC.to_string()),
        (R3L_GUIDANCE, R3L_GUIDANCE_SRC.to_string()),
        (R3L_GUIDANCE_SYSTEM, R3L_GUIDANCE_SYSTEM_SRC.to_string()),
        (R3L_MATH_RETRY, R3L_MATH_RETRY_SRC.to_string()),
        (R3L_INVALID_FORMAT, R3L_INVALID_FORMAT_SRC.to_string()),
    ]
    .into_iter()
    .collect()
}

/// One step of an R^3L trajectory log: the user/environment text before an assistant turn, and
/// that turn.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TrajectoryStep {
    /// Zero-based index of the assistant turn.
    pub index: usize,
    /// The user (and tool/environment) messages before the turn, joined by blank lines.
    pub user: String,
    /// The assistant's response (`None` for user text after the last assistant turn, such as
    /// the environment's final feedback).
    pub assistant: Option<String>,
}

/// A set of named prompt templates.
#[derive(Debug, Clone)]
pub struct Templates {
    env: Environment<'static>,
    sources: BTreeMap<String, String>,
}

impl Default for Templates {
    fn default() -> Self {
        Self::with_overrides(&BTreeMap::new()).expect("the default templates parse")
    }
}

impl Templates {
    /// The default templates (the papers' wording).
    pub fn new() -> Self {
        Self::default()
    }

    /// The defaults with some templates replaced by name. Unknown names are rejected (a typo
    /// would otherwise silently keep the default); a template that does not parse is an error.
    pub fn with_overrides(overrides: &BTreeMap<String, String>) -> Result<Self> {
        let mut sources: BTreeMap<String, String> = default_sources()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        for (name, src) in overrides {
            if !sources.contains_key(name) {
                return Err(Error::Config(format!(
                    "unknown template {name:?} (known: {})",
                    sources.keys().cloned().collect::<Vec<_>>().join(", ")
                )));
            }
            sources.insert(name.clone(), src.clone());
        }
        let mut env = Environment::new();
        env.set_keep_trailing_newline(true);
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        for (name, src) in &sources {
            env.add_template_owned(name.clone(), src.clone())
                .map_err(|e| Error::template(name, e))?;
        }
        Ok(Self { env, sources })
    }

    /// The source of template `name`.
    pub fn source(&self, name: &str) -> Option<&str> {
        self.sources.get(name).map(String::as_str)
    }

    /// Renders template `name` with `ctx` (any serialisable value with named fields).
    pub fn render(&self, name: &str, ctx: impl Serialize) -> Result<String> {
        let tmpl = self
            .env
            .get_template(name)
            .map_err(|e| Error::template(name, e))?;
        tmpl.render(ctx).map_err(|e| Error::template(name, e))
    }

    /// RLTF's revision prompt `x1` for a failed first attempt, with RLTF's `\boxed{}` answer
    /// instruction.
    pub fn rltf_revision(
        &self,
        question: &str,
        previous_solution: &str,
        critique: &str,
    ) -> Result<String> {
        self.rltf_revision_with(
            question,
            previous_solution,
            critique,
            RLTF_ANSWER_INSTRUCTION,
        )
    }

    /// RLTF-FM's feedback-modelling prompt for `previous_solution` (its target, or the policy's
    /// own critique, follows it).
    pub fn rltf_critique(&self, question: &str, previous_solution: &str) -> Result<String> {
        self.render(
            RLTF_CRITIQUE,
            minijinja::context! {
                question => question,
                previous_solution => previous_solution,
            },
        )
    }

    /// RLTF's revision prompt with another answer instruction (for tasks answered in tags).
    pub fn rltf_revision_with(
        &self,
        question: &str,
        previous_solution: &str,
        critique: &str,
        answer_instruction: &str,
    ) -> Result<String> {
        self.render(
            RLTF_REVISION,
            minijinja::context! {
                question => question,
                previous_solution => previous_solution,
                critique => critique,
                answer_instruction => answer_instruction,
            },
        )
    }

    /// MulFeRL's regeneration prompt (one user message, no system prompt).
    pub fn mulferl_regen(&self, question: &str, feedback: &str) -> Result<String> {
        self.render(
            MULFERL_REGEN,
            minijinja::context! { question => question, feedback => feedback },
        )
    }

    /// MulFeRL's forced response prefix `<thinking><feedback>{feedback}</feedback>`. The rollout
    /// engine starts the response with it and masks its tokens from the loss (the copied
    /// feedback is context, not trained).
    pub fn forced_prefix(&self, feedback: &str) -> Result<String> {
        self.render(
            MULFERL_FORCED_PREFIX,
            minijinja::context! { feedback => feedback },
        )
    }

    /// R^3L's guidance text (`self_correction.j2`) around a report already rendered as JSON.
    pub fn r3l_guidance(&self, report_json: &str) -> Result<String> {
        self.render(R3L_GUIDANCE, minijinja::context! { report => report_json })
    }

    /// R^3L's guidance system message: `{system}\n\n# Previous Attempt Analysis &
    /// Guidance\n{guidance}`, or without the first part when `system` is empty (the separate
    /// system message inserted at the pivot).
    pub fn r3l_guidance_system(&self, system: &str, guidance: &str) -> Result<String> {
        self.render(
            R3L_GUIDANCE_SYSTEM,
            minijinja::context! { system => system, guidance => guidance },
        )
    }

    /// R^3L's math user turn after a wrong answer `answer`.
    pub fn r3l_math_retry(&self, answer: &str) -> Result<String> {
        self.render(R3L_MATH_RETRY, minijinja::context! { answer => answer })
    }

    /// R^3L's math user turn after a wrong attempt judged by `verdict`: the invalid-format
    /// message when the format is broken, else the retry message with the answer found (the
    /// verifier's `first_error.found`). `None` for a correct attempt (the episode ends).
    pub fn r3l_math_feedback(&self, verdict: &redraft_verifier::Verdict) -> Result<Option<String>> {
        if verdict.correct {
            return Ok(None);
        }
        if !verdict.format_ok {
            return self.r3l_invalid_format().map(Some);
        }
        let answer = verdict
            .diagnosis
            .first_error
            .as_ref()
            .map(|e| e.found.as_str())
            .unwrap_or("");
        self.r3l_math_retry(answer).map(Some)
    }

    /// R^3L's math user turn after a badly formatted response.
    pub fn r3l_invalid_format(&self) -> Result<String> {
        self.render(R3L_INVALID_FORMAT, minijinja::context! {})
    }

    /// R^3L's trajectory log of `system` (may be empty) and `steps`.
    pub fn r3l_trajectory(&self, system: &str, steps: &[TrajectoryStep]) -> Result<String> {
        self.render(
            R3L_TRAJECTORY,
            minijinja::context! { system => system, steps => steps },
        )
    }

    /// R^3L's reflection user message around a rendered trajectory log.
    pub fn r3l_reflection_user(&self, trajectory: &str) -> Result<String> {
        self.render(
            R3L_REFLECTION_USER,
            minijinja::context! { trajectory => trajectory },
        )
    }
}

/// MulFeRL's forced prefix with the default template, as a plain string (for token masking
/// where no [`Templates`] is at hand).
pub fn forced_prefix(feedback: &str) -> String {
    format!("<thinking><feedback>{feedback}</feedback>")
}
