//! Held-out evaluation: single-turn pass@1 (the papers' headline: no feedback at test time),
//! pass@k with the unbiased estimator, multi-turn success with feedback, and RLTF-FM's
//! test-time self-feedback (the policy critiques its own attempt, then revises).

use std::time::Instant;

use redraft_feedback_protocol::{
    ChatModel, ChatRequest, Feedback, FeedbackKind, FeedbackProvider, FeedbackRequest,
    FeedbackSource, ProviderStats, Templates,
};
use redraft_model::CausalLm;
use redraft_model::burn::tensor::Device;
use redraft_rollout_engine::{
    LocalPolicy, PolicyChat, Rltf, RltfConfig, RolloutContext, RolloutStrategy, SamplingParams,
    SingleTurn, SingleTurnConfig,
};
use redraft_tokenizer::{Message, Tokenizer};
use redraft_verifier::{Problem, Verifier};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

use crate::config::EvalConfig;
use crate::error::Result;

/// A success rate over problems: the mean of per-problem rates and its standard error.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rate {
    /// The mean over problems.
    pub mean: f64,
    /// The standard error of the mean over problems.
    pub stderr: f64,
}

impl Rate {
    /// The mean and standard error of per-problem values.
    pub fn of(values: &[f64]) -> Self {
        let n = values.len() as f64;
        if values.is_empty() {
            return Self {
                mean: f64::NAN,
                stderr: f64::NAN,
            };
        }
        let mean = values.iter().sum::<f64>() / n;
        let var = if values.len() > 1 {
            values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
        } else {
            0.0
        };
        Self {
            mean,
            stderr: (var / n).sqrt(),
        }
    }
}

/// The unbiased pass@k estimator for `c` correct samples out of `n`:
/// `1 − C(n − c, k) / C(n, k)` (Chen et al., 2021).
pub fn pass_at_k(n: usize, c: usize, k: usize) -> f64 {
    if k == 0 || k > n {
        return f64::NAN;
    }
    if n - c < k {
        return 1.0;
    }
    // C(n−c, k)/C(n, k) = Π_{i=n−c+1}^{n} (1 − k/i)
    let prod: f64 = ((n - c + 1)..=n)
        .map(|i| 1.0 - k as f64 / i as f64)
        .product();
    1.0 - prod
}

/// What one evaluation measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// Held-out problems.
    pub problems: usize,
    /// Samples per problem.
    pub samples: usize,
    /// Single-turn pass@1 (mean over problems of the share of correct samples).
    pub pass_at_1: Rate,
    /// pass@k for k = `samples` (unbiased estimator).
    pub pass_at_k: Rate,
    /// Per problem: the share of correct samples (for paired comparisons of two models on the
    /// same problems).
    pub per_problem: Vec<f64>,
    /// Share of samples with a parsable answer.
    pub format_ok: f64,
    /// Multi-turn success: a failed first attempt gets feedback and one revision. Computed
    /// over the problems whose failed attempts all got feedback (`problems −
    /// with_feedback_missing` of them); `None` when not measured or when no problem qualifies.
    pub with_feedback: Option<Rate>,
    /// Problems left out of `with_feedback` because feedback asked for one of their attempts
    /// did not arrive (the provider failed: see the run's warnings).
    #[serde(default)]
    pub with_feedback_missing: usize,
    /// Test-time self-feedback: the policy critiques its own failed attempt, then revises.
    pub self_feedback: Option<Rate>,
    /// Tokens sampled by the evaluation.
    pub sampled_tokens: usize,
    /// Wall-clock seconds.
    pub wall_s: f64,
}

/// What an evaluation samples with.
pub struct Evaluator<'a> {
    /// The policy (an inference copy).
    pub policy: &'a CausalLm,
    /// Its tokenizer.
    pub tokenizer: Arc<dyn Tokenizer>,
    /// The plain device.
    pub device: &'a Device,
    /// Settings.
    pub config: &'a EvalConfig,
    /// New tokens per turn.
    pub max_new_tokens: usize,
    /// Most rows decoding at once (0: all rows of a call; [`LocalPolicy::with_max_rows`]).
    pub max_batch_rows: usize,
    /// The critic for multi-turn success (the run's provider or the verifier's critique).
    pub feedback: Option<&'a dyn FeedbackProvider>,
    /// The prompt templates (the revision prompt of multi-turn success).
    pub templates: Templates,
    /// What decides correctness (the run's verifier).
    pub verifier: &'a dyn Verifier,
}

impl Evaluator<'_> {
    fn sampling(&self) -> SamplingParams {
        SamplingParams {
            temperature: self.config.temperature as f32,
            max_new_tokens: self.max_new_tokens,
            vocab_limit: Some(self.tokenizer.vocab_size()),
            ..SamplingParams::default()
        }
    }

    /// The policy as a sampler.
    fn local(&self) -> LocalPolicy {
        LocalPolicy::for_tokenizer(
            self.policy.clone(),
            self.device.clone(),
            self.tokenizer.as_ref(),
        )
        .with_max_rows(self.max_batch_rows)
    }

    fn context<'a>(&'a self, policy: &'a LocalPolicy) -> RolloutContext<'a> {
        RolloutContext::new(policy, self.tokenizer.as_ref(), self.sampling())
            .with_templates(self.templates.clone())
            .with_verifier(self.verifier)
    }

    /// Evaluates on `problems` with sampling seed `seed`.
    ///
    /// # Errors
    /// [`crate::Error::Rollout`] when sampling fails.
    pub fn run(&self, problems: &[Problem], seed: u64) -> Result<EvalReport> {
        let start = Instant::now();
        let k = self.config.samples;
        let single = SingleTurn::new(SingleTurnConfig { group_size: k })?;
        let policy = self.local();
        let batch = single.rollout(&self.context(&policy), problems, seed)?;
        let mut sampled_tokens = batch.stats.sampled_tokens;
        let mut p1 = Vec::new();
        let mut pk = Vec::new();
        let mut format_ok = 0usize;
        let mut total = 0usize;
        for g in &batch.groups {
            let c = g
                .episodes
                .iter()
                .filter(|&&e| batch.episodes[e].solved())
                .count();
            format_ok += g
                .episodes
                .iter()
                .filter(|&&e| batch.episodes[e].turns[0].verdict.format_ok)
                .count();
            total += g.episodes.len();
            p1.push(c as f64 / g.episodes.len() as f64);
            pk.push(pass_at_k(g.episodes.len(), c, k));
        }
        let (with_feedback, with_feedback_missing) =
            match (self.config.with_feedback, self.feedback) {
                (true, Some(provider)) => {
                    let outcome = self.multi_turn(provider, problems, seed)?;
                    sampled_tokens += outcome.sampled_tokens;
                    (outcome.rate, outcome.missing)
                }
                _ => (None, 0),
            };
        let self_feedback = if self.config.self_feedback {
            let critic = SelfCritic::new(self)?;
            let outcome = self.multi_turn(&critic, problems, seed)?;
            sampled_tokens += outcome.sampled_tokens + critic.sampled_tokens();
            outcome.rate
        } else {
            None
        };
        Ok(EvalReport {
            problems: problems.len(),
            samples: k,
            pass_at_1: Rate::of(&p1),
            per_problem: p1.clone(),
            pass_at_k: Rate::of(&pk),
            format_ok: format_ok as f64 / total.max(1) as f64,
            with_feedback,
            with_feedback_missing,
            self_feedback,
            sampled_tokens,
            wall_s: start.elapsed().as_secs_f64(),
        })
    }

    /// Success within two turns (critique and revision after a failed first attempt), over the
    /// problems whose failed attempts all got feedback.
    fn multi_turn(
        &self,
        provider: &dyn FeedbackProvider,
        problems: &[Problem],
        seed: u64,
    ) -> Result<MultiTurn> {
        let strategy = Rltf::new(RltfConfig {
            group_size: self.config.samples,
            early_termination: true,
            ..RltfConfig::default()
        })?;
        let policy = self.local();
        let ctx = self.context(&policy).with_feedback(provider);
        let batch = strategy.rollout(&ctx, problems, seed)?;
        let unanswered = |e: usize| {
            batch.episodes[e]
                .feedback
                .iter()
                .any(|f| f.feedback.is_none())
        };
        let (answered, unanswered): (Vec<_>, Vec<_>) = batch
            .groups
            .iter()
            .partition(|g| !g.episodes.iter().any(|&e| unanswered(e)));
        let rates: Vec<f64> = answered
            .iter()
            .map(|g| {
                let solved = g
                    .episodes
                    .iter()
                    .filter(|&&e| batch.episodes[e].solved())
                    .count();
                solved as f64 / g.episodes.len() as f64
            })
            .collect();
        Ok(MultiTurn {
            rate: (!rates.is_empty()).then(|| Rate::of(&rates)),
            missing: unanswered.len(),
            sampled_tokens: batch.stats.sampled_tokens,
        })
    }
}

/// What a multi-turn evaluation measured.
struct MultiTurn {
    /// Success over the problems whose feedback all arrived (`None`: no such problem).
    rate: Option<Rate>,
    /// Problems left out because feedback did not arrive.
    missing: usize,
    /// Policy tokens sampled.
    sampled_tokens: usize,
}

impl EvalReport {
    /// `with_feedback` for people: `mean ± stderr` (`decimals` digits), with `(over N of M
    /// problems: no feedback for the rest)` when feedback was missing for some problems, or
    /// `– (no feedback arrived)` when for all; `None` when it was not measured.
    pub fn with_feedback_text(&self, decimals: usize) -> Option<String> {
        let missing = self.with_feedback_missing;
        match self.with_feedback {
            None if missing == 0 => None,
            None => Some(format!("– (no feedback arrived for {missing} problems)")),
            Some(r) => {
                let figure = format!("{:.decimals$} ± {:.decimals$}", r.mean, r.stderr);
                Some(if missing == 0 {
                    figure
                } else {
                    format!(
                        "{figure} (over {} of {} problems: no feedback for the rest)",
                        self.problems.saturating_sub(missing),
                        self.problems
                    )
                })
            }
        }
    }
}

/// RLTF-FM's test-time critic: the policy itself, prompted with the feedback-modelling prompt
/// (`rltf_critique`, the prompt RLTF-FM trains it on).
struct SelfCritic {
    chat: PolicyChat,
    templates: Templates,
    tokens: std::sync::atomic::AtomicUsize,
}

impl SelfCritic {
    fn new(eval: &Evaluator<'_>) -> Result<Self> {
        Ok(Self {
            chat: PolicyChat::new(
                Arc::new(eval.local()),
                eval.tokenizer.clone(),
                eval.sampling(),
            )
            .with_name("self-critic"),
            templates: eval.templates.clone(),
            tokens: Default::default(),
        })
    }

    fn sampled_tokens(&self) -> usize {
        self.tokens.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl FeedbackProvider for SelfCritic {
    fn name(&self) -> &str {
        "self_critic"
    }

    fn feedback(
        &self,
        requests: &[FeedbackRequest],
    ) -> Vec<redraft_feedback_protocol::Result<Feedback>> {
        // A prompt that does not render fails its own request only.
        let prompts: Vec<_> = requests
            .iter()
            .map(|r| self.templates.rltf_critique(&r.question(), &r.response))
            .collect();
        let chats: Vec<ChatRequest> = prompts
            .iter()
            .flatten()
            .map(|p| ChatRequest::new(vec![Message::user(p.clone())]))
            .collect();
        let mut replies = self.chat.complete(&chats).into_iter();
        prompts
            .into_iter()
            .zip(requests)
            .map(|(prompt, request)| {
                prompt?;
                let reply = replies.next().ok_or_else(|| {
                    redraft_feedback_protocol::Error::Config("the policy chat lost a reply".into())
                })??;
                let used = reply.usage.map_or(0, |u| u.completion_tokens as usize);
                self.tokens
                    .fetch_add(used, std::sync::atomic::Ordering::Relaxed);
                let mut feedback = Feedback::new(
                    FeedbackKind::Critique,
                    reply.text,
                    FeedbackSource::new("self_critic").with_model("policy"),
                );
                feedback.verdict = Some(request.verdict.clone());
                feedback.latency_ms = reply.latency.as_secs_f64() * 1e3;
                Ok(feedback)
            })
            .collect()
    }

    fn stats(&self) -> ProviderStats {
        ProviderStats::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pass_at_k_matches_the_definition() {
        assert_eq!(pass_at_k(4, 0, 1), 0.0);
        assert_eq!(pass_at_k(4, 4, 1), 1.0);
        assert!((pass_at_k(4, 1, 1) - 0.25).abs() < 1e-12);
        // 1 − C(2,2)/C(4,2) = 1 − 1/6
        assert!((pass_at_k(4, 2, 2) - 5.0 / 6.0).abs() < 1e-12);
        assert_eq!(pass_at_k(4, 3, 2), 1.0);
        assert!(pass_at_k(2, 1, 3).is_nan());
    }

    #[test]
    fn rate_is_mean_and_standard_error() {
        let r = Rate::of(&[0.0, 1.0, 1.0, 0.0]);
        assert_eq!(r.mean, 0.5);
        // sample std = sqrt(1/3), stderr = that / 2
        assert!((r.stderr - (1.0f64 / 3.0).sqrt() / 2.0).abs() < 1e-12);
        assert!(Rate::of(&[]).mean.is_nan());
    }
}
