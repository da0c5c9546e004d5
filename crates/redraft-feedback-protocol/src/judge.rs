//! The LLM judge: a [`ChatModel`] critiques each response from a prompt template (RLTF's
//! setting by default), and a parser takes the critique out of its answer.

use std::sync::Arc;
use std::time::Instant;

use redraft_tokenizer::Message;
use redraft_verifier::TaskFamily;
use serde::{Deserialize, Serialize};

use crate::chat::{ChatModel, ChatRequest};
use crate::error::{Error, Result};
use crate::provider::{FeedbackProvider, ProviderStats, StatsRecorder};
use crate::templates::{RLTF_JUDGE_KNIGHTS_KNAVES, RLTF_JUDGE_MATH, Templates};
use crate::types::{Feedback, FeedbackKind, FeedbackRequest, FeedbackSource};

/// How the critique is taken out of the judge's answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CritiqueParser {
    /// RLTF: the text after the last `Critique:`, else the last line; chat end tokens removed.
    #[default]
    RltfCritique,
    /// MulFeRL: the `<feedback>…</feedback>` block (see [`extract_feedback_block`]).
    FeedbackBlock,
    /// The whole answer, trimmed.
    Raw,
}

impl CritiqueParser {
    /// The critique in `answer`.
    pub fn parse(self, answer: &str) -> String {
        match self {
            CritiqueParser::RltfCritique => extract_rltf_critique(answer),
            CritiqueParser::FeedbackBlock => extract_feedback_block(answer),
            CritiqueParser::Raw => answer.trim().to_string(),
        }
    }
}

/// RLTF's critique extraction: the text after the last `Critique:` (else the last line), with
/// `<|im_end|>`, `</s>` and `<|endoftext|>` removed.
pub fn extract_rltf_critique(answer: &str) -> String {
    let critique = match answer.rsplit_once("Critique:") {
        Some((_, after)) => after.trim().to_string(),
        None => answer.trim().lines().last().unwrap_or("").to_string(),
    };
    critique
        .replace("<|im_end|>", "")
        .replace("</s>", "")
        .replace("<|endoftext|>", "")
        .trim()
        .to_string()
}

/// MulFeRL's feedback extraction: drop `<think>` tags, look inside `<thinking>…</thinking>` when
/// present, then take the text between `<feedback>` and `</feedback>` (or after an opening tag
/// without a closing one, as happens with the stop string `</feedback>`, or before a closing tag
/// without an opening one); otherwise the whole text. Tags match case-insensitively.
pub fn extract_feedback_block(answer: &str) -> String {
    let lower_find = |hay: &str, needle: &str| hay.to_ascii_lowercase().find(needle);
    // Remove <think> / </think> tags (keeping their content), as the code's two regexes do.
    let mut text = String::with_capacity(answer.len());
    let mut rest = answer;
    while let Some(i) = lower_find(rest, "<think>")
        .into_iter()
        .chain(lower_find(rest, "</think>"))
        .min()
    {
        text.push_str(&rest[..i]);
        let tag_len = if rest[i..].to_ascii_lowercase().starts_with("<think>") {
            "<think>".len()
        } else {
            "</think>".len()
        };
        rest = &rest[i + tag_len..];
    }
    text.push_str(rest);
    let text = text.trim();
    let search = match (
        lower_find(text, "<thinking>"),
        lower_find(text, "</thinking>"),
    ) {
        (Some(a), Some(b)) if b >= a + "<thinking>".len() => &text[a + "<thinking>".len()..b],
        _ => text,
    };
    let open = lower_find(search, "<feedback>");
    let close = open
        .map(|o| o + "<feedback>".len())
        .and_then(|from| lower_find(&search[from..], "</feedback>").map(|c| c + from));
    match (open, close) {
        (Some(o), Some(c)) => search[o + "<feedback>".len()..c].trim().to_string(),
        (Some(o), None) => search[o + "<feedback>".len()..].trim().to_string(),
        (None, _) => match lower_find(search, "</feedback>") {
            Some(c) => search[..c].trim().to_string(),
            None => search.trim().to_string(),
        },
    }
}

fn default_temperature() -> Option<f32> {
    Some(1.0)
}
fn default_max_tokens() -> Option<u32> {
    Some(8096)
}

/// Options of the [`LlmJudge`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JudgeConfig {
    /// The prompt template (a single user message; see [`crate::templates`]). `None`: RLTF's
    /// prompt for the problem's family (Knights and Knaves: its own prompt without ground truth;
    /// everything else: the math prompt).
    #[serde(default)]
    pub template: Option<String>,
    /// An optional system-prompt template rendered with the same variables.
    #[serde(default)]
    pub system_template: Option<String>,
    /// Whether the judge is shown the reference answer (only for requests that allow it).
    /// Default `false`: the judge does not receive the ground truth unless configured (RLTF's
    /// math judge sets it).
    #[serde(default)]
    pub send_reference: bool,
    /// Sampling temperature. Default 1.0 (RLTF's judge).
    #[serde(default = "default_temperature")]
    pub temperature: Option<f32>,
    /// Token limit. Default 8096 (RLTF).
    #[serde(default = "default_max_tokens")]
    pub max_tokens: Option<u32>,
    /// Stop strings.
    #[serde(default)]
    pub stop: Vec<String>,
    /// How the critique is taken out of the answer.
    #[serde(default)]
    pub parser: CritiqueParser,
}

impl Default for JudgeConfig {
    fn default() -> Self {
        Self {
            template: None,
            system_template: None,
            send_reference: false,
            temperature: default_temperature(),
            max_tokens: default_max_tokens(),
            stop: Vec::new(),
            parser: CritiqueParser::default(),
        }
    }
}

/// An LLM judge over any [`ChatModel`] (usually an [`crate::OpenAiClient`]).
pub struct LlmJudge {
    model: Arc<dyn ChatModel>,
    templates: Arc<Templates>,
    config: JudgeConfig,
    stats: StatsRecorder,
}

impl LlmJudge {
    /// A judge asking `model` with `templates`.
    pub fn new(model: Arc<dyn ChatModel>, templates: Arc<Templates>, config: JudgeConfig) -> Self {
        Self {
            model,
            templates,
            config,
            stats: StatsRecorder::new(),
        }
    }

    /// The judge's conversation for `request`. Template variables: `question`, `response`,
    /// `reference` (none unless both the config and the request allow it), `family`.
    pub fn messages(&self, request: &FeedbackRequest) -> Result<Vec<Message>> {
        let family = request.problem.family();
        let name = self.config.template.clone().unwrap_or_else(|| {
            match family {
                TaskFamily::KnightsKnaves => RLTF_JUDGE_KNIGHTS_KNAVES,
                _ => RLTF_JUDGE_MATH,
            }
            .to_string()
        });
        let reference = if self.config.send_reference {
            request.reference()
        } else {
            None
        };
        let ctx = minijinja::context! {
            question => request.question(),
            response => request.response,
            reference => reference,
            family => family.name(),
        };
        let mut msgs = Vec::new();
        if let Some(sys) = &self.config.system_template {
            msgs.push(Message::system(self.templates.render(sys, &ctx)?));
        }
        msgs.push(Message::user(self.templates.render(&name, &ctx)?));
        Ok(msgs)
    }
}

impl FeedbackProvider for LlmJudge {
    fn name(&self) -> &str {
        "llm_judge"
    }

    fn feedback(&self, requests: &[FeedbackRequest]) -> Vec<Result<Feedback>> {
        let mut out: Vec<Option<Result<Feedback>>> = vec![None; requests.len()];
        let mut chat = Vec::new();
        let mut index = Vec::new();
        for (i, r) in requests.iter().enumerate() {
            match self.messages(r) {
                Ok(m) => {
                    chat.push(ChatRequest {
                        messages: m,
                        temperature: self.config.temperature,
                        max_tokens: self.config.max_tokens,
                        stop: self.config.stop.clone(),
                    });
                    index.push(i);
                }
                Err(e) => out[i] = Some(Err(e)),
            }
        }
        let start = Instant::now();
        let responses = self.model.complete(&chat);
        for (i, resp) in index.into_iter().zip(responses) {
            out[i] = Some(resp.and_then(|resp| {
                let text = self.config.parser.parse(&resp.text);
                if text.is_empty() {
                    return Err(Error::EmptyOutput("the judge wrote no critique".into()));
                }
                let mut fb = Feedback::new(
                    FeedbackKind::Critique,
                    text,
                    FeedbackSource::new(self.name()).with_model(self.model.name()),
                );
                fb.verdict = Some(requests[i].verdict.clone());
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
            .map(|o| o.unwrap_or_else(|| Err(Error::Model("no response".into()))))
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
