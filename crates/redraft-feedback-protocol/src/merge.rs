//! MulFeRL's group feedback: the failed responses to one problem are shuffled into groups, a
//! judge critiques each group ("group" mode), and the critiques are merged into one ("merge"
//! mode). The merged critique is injected into the regeneration prompt.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use redraft_tokenizer::Message;
use serde::{Deserialize, Serialize};

use crate::chat::{ChatModel, ChatRequest};
use crate::error::{Error, Result};
use crate::judge::extract_feedback_block;
use crate::provider::{FeedbackProvider, ProviderStats, StatsRecorder};
use crate::templates::{
    MULFERL_GROUP_SYSTEM, MULFERL_GROUP_USER, MULFERL_MERGE_SYSTEM, MULFERL_MERGE_USER, Templates,
};
use crate::types::{Feedback, FeedbackKind, FeedbackRequest, FeedbackSource};

fn default_group_size() -> usize {
    2
}
fn default_temperature() -> Option<f32> {
    Some(0.0)
}
fn default_max_tokens() -> Option<u32> {
    Some(1024)
}
fn default_stop() -> Vec<String> {
    vec!["</feedback>".to_string()]
}

/// Options of the [`GroupJudge`] (defaults: MulFeRL's code).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupJudgeConfig {
    /// Responses per judge call ("group" mode). Default 2.
    #[serde(default = "default_group_size")]
    pub group_size: usize,
    /// Seed of the shuffle that forms the groups.
    #[serde(default)]
    pub seed: u64,
    /// Sampling temperature. Default 0.
    #[serde(default = "default_temperature")]
    pub temperature: Option<f32>,
    /// Token limit. Default 1024.
    #[serde(default = "default_max_tokens")]
    pub max_tokens: Option<u32>,
    /// Stop strings. Default `["</feedback>"]`.
    #[serde(default = "default_stop")]
    pub stop: Vec<String>,
}

impl Default for GroupJudgeConfig {
    fn default() -> Self {
        Self {
            group_size: default_group_size(),
            seed: 0,
            temperature: default_temperature(),
            max_tokens: default_max_tokens(),
            stop: default_stop(),
        }
    }
}

/// MulFeRL's group judge. As a [`FeedbackProvider`] it groups a batch by problem (requests with
/// equal problems, in order of first appearance) and gives every request of a problem the same
/// merged [`FeedbackKind::GroupCritique`]. The judge never sees the reference.
pub struct GroupJudge {
    model: Arc<dyn ChatModel>,
    templates: Arc<Templates>,
    config: GroupJudgeConfig,
    calls: AtomicU64,
    stats: StatsRecorder,
}

impl GroupJudge {
    /// A group judge asking `model`.
    pub fn new(
        model: Arc<dyn ChatModel>,
        templates: Arc<Templates>,
        config: GroupJudgeConfig,
    ) -> Result<Self> {
        if config.group_size == 0 {
            return Err(Error::Config("group_size must be at least 1".into()));
        }
        Ok(Self {
            model,
            templates,
            config,
            calls: AtomicU64::new(0),
            stats: StatsRecorder::new(),
        })
    }

    fn request(&self, system: &str, user: String) -> Result<ChatRequest> {
        let system = self.templates.render(system, minijinja::context! {})?;
        Ok(ChatRequest {
            messages: vec![Message::system(system), Message::user(user)],
            temperature: self.config.temperature,
            max_tokens: self.config.max_tokens,
            stop: self.config.stop.clone(),
        })
    }

    /// The "group"-mode judge request for some responses to `question`.
    pub fn group_request(&self, question: &str, solutions: &[&str]) -> Result<ChatRequest> {
        let user = self.templates.render(
            MULFERL_GROUP_USER,
            minijinja::context! { question => question, solutions => solutions },
        )?;
        self.request(MULFERL_GROUP_SYSTEM, user)
    }

    /// The "merge"-mode judge request for some critiques on `question`.
    pub fn merge_request(&self, question: &str, feedbacks: &[String]) -> Result<ChatRequest> {
        let user = self.templates.render(
            MULFERL_MERGE_USER,
            minijinja::context! { question => question, feedbacks => feedbacks },
        )?;
        self.request(MULFERL_MERGE_SYSTEM, user)
    }

    /// Merges critiques into one: blank ones are dropped; zero left is an
    /// [`Error::EmptyOutput`], one is returned as is (no call, as in the code), several are
    /// merged by the judge.
    pub fn merge(&self, question: &str, feedbacks: &[String]) -> Result<String> {
        self.merge_batch(&[(question.to_string(), feedbacks.to_vec())])
            .pop()
            .unwrap_or_else(|| Err(Error::Model("no response".into())))
    }

    /// [`GroupJudge::merge`] for several problems, the judge calls in one batch.
    pub fn merge_batch(&self, items: &[(String, Vec<String>)]) -> Vec<Result<String>> {
        let mut out: Vec<Option<Result<String>>> = vec![None; items.len()];
        let mut reqs = Vec::new();
        let mut index = Vec::new();
        for (i, (question, feedbacks)) in items.iter().enumerate() {
            let cleaned: Vec<String> = feedbacks
                .iter()
                .filter(|f| !f.trim().is_empty())
                .cloned()
                .collect();
            match cleaned.len() {
                0 => out[i] = Some(Err(Error::EmptyOutput("no critique to merge".into()))),
                1 => out[i] = Some(Ok(cleaned[0].clone())),
                _ => match self.merge_request(question, &cleaned) {
                    Ok(r) => {
                        reqs.push(r);
                        index.push(i);
                    }
                    Err(e) => out[i] = Some(Err(e)),
                },
            }
        }
        for (i, resp) in index.into_iter().zip(self.model.complete(&reqs)) {
            out[i] = Some(resp.and_then(|resp| {
                let text = extract_feedback_block(&resp.text);
                if text.is_empty() {
                    Err(Error::EmptyOutput("the merge wrote no feedback".into()))
                } else {
                    Ok(text)
                }
            }));
        }
        out.into_iter()
            .map(|o| o.unwrap_or_else(|| Err(Error::Model("no response".into()))))
            .collect()
    }

    /// One merged critique of `responses` (failed answers to `question`): shuffle, split into
    /// groups of `group_size`, critique the groups in one batch, merge. Groups whose call fails
    /// are left out of the merge; if every group fails, the first error is returned.
    pub fn group_feedback(&self, question: &str, responses: &[String]) -> Result<String> {
        self.group_feedback_batch(&[(question.to_string(), responses.to_vec())])
            .pop()
            .unwrap_or_else(|| Err(Error::Model("no response".into())))
    }

    /// [`GroupJudge::group_feedback`] for several problems `(question, responses)`: all group
    /// calls in one batch, then all merge calls in one batch.
    pub fn group_feedback_batch(&self, items: &[(String, Vec<String>)]) -> Vec<Result<String>> {
        let mut out: Vec<Option<Result<String>>> = vec![None; items.len()];
        let mut reqs = Vec::new();
        let mut owner = Vec::new();
        for (i, (question, responses)) in items.iter().enumerate() {
            if responses.is_empty() {
                out[i] = Some(Err(Error::EmptyOutput("no responses to critique".into())));
                continue;
            }
            let call = self.calls.fetch_add(1, Ordering::Relaxed);
            let mut rng =
                ChaCha8Rng::seed_from_u64(self.config.seed ^ call.wrapping_mul(0x9E37_79B9));
            let mut order: Vec<&str> = responses.iter().map(String::as_str).collect();
            order.shuffle(&mut rng);
            let built = order
                .chunks(self.config.group_size)
                .map(|chunk| self.group_request(question, chunk))
                .collect::<Result<Vec<_>>>();
            match built {
                Ok(rs) => {
                    owner.extend(std::iter::repeat_n(i, rs.len()));
                    reqs.extend(rs);
                }
                Err(e) => out[i] = Some(Err(e)),
            }
        }
        let mut critiques: Vec<Vec<String>> = vec![Vec::new(); items.len()];
        let mut first_err: Vec<Option<Error>> = vec![None; items.len()];
        for (i, r) in owner.into_iter().zip(self.model.complete(&reqs)) {
            match r {
                Ok(resp) => critiques[i].push(extract_feedback_block(&resp.text)),
                Err(e) => {
                    tracing::debug!(error = %e, "a group critique failed");
                    first_err[i].get_or_insert(e);
                }
            }
        }
        let mut merge_items = Vec::new();
        let mut merge_index = Vec::new();
        for i in 0..items.len() {
            if out[i].is_some() {
                continue;
            }
            if critiques[i].iter().all(|c| c.trim().is_empty())
                && let Some(e) = first_err[i].take()
            {
                out[i] = Some(Err(e));
                continue;
            }
            merge_items.push((items[i].0.clone(), std::mem::take(&mut critiques[i])));
            merge_index.push(i);
        }
        for (i, r) in merge_index.into_iter().zip(self.merge_batch(&merge_items)) {
            out[i] = Some(r);
        }
        out.into_iter()
            .map(|o| o.unwrap_or_else(|| Err(Error::Model("no response".into()))))
            .collect()
    }
}

impl FeedbackProvider for GroupJudge {
    fn name(&self) -> &str {
        "group_judge"
    }

    fn feedback(&self, requests: &[FeedbackRequest]) -> Vec<Result<Feedback>> {
        // Groups of request indices with equal problems, in order of first appearance.
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for (i, r) in requests.iter().enumerate() {
            match groups
                .iter_mut()
                .find(|g| requests[g[0]].problem == r.problem)
            {
                Some(g) => g.push(i),
                None => groups.push(vec![i]),
            }
        }
        let start = Instant::now();
        let items: Vec<(String, Vec<String>)> = groups
            .iter()
            .map(|g| {
                let question = requests[g[0]].question();
                (
                    question,
                    g.iter().map(|&i| requests[i].response.clone()).collect(),
                )
            })
            .collect();
        let merged = self.group_feedback_batch(&items);
        let latency_ms = start.elapsed().as_secs_f64() * 1e3;
        let mut out: Vec<Option<Result<Feedback>>> = vec![None; requests.len()];
        for (g, merged) in groups.iter().zip(merged) {
            for &i in g {
                out[i] = Some(merged.clone().map(|text| {
                    let mut fb = Feedback::new(
                        FeedbackKind::GroupCritique,
                        text,
                        FeedbackSource::new("group_judge").with_model(self.model.name()),
                    );
                    fb.latency_ms = latency_ms;
                    fb
                }));
            }
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
