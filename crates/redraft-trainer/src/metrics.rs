//! The typed records of a run folder's logs: one [`MetricsRecord`] per SFT or RL step in
//! metrics.jsonl, a few [`TranscriptRecord`]s per RL step in transcripts.jsonl. The trainer
//! writes them, and reports, the `redraft` program and `cargo xtask experiment` read them as
//! these types, never by string keys.

use std::collections::BTreeMap;

use redraft_feedback_protocol::{ErrorKind, ProviderStats};
use redraft_rollout_engine::{Episode, Provenance, RolloutBatch};
use redraft_verifier::Problem;
use serde::{Deserialize, Serialize};

use crate::learner::UpdateOutcome;
use crate::rows::TrainRows;

/// One line of metrics.jsonl, tagged by `stage`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "stage", rename_all = "snake_case")]
pub enum MetricsRecord {
    /// A supervised warm-start step.
    Sft(SftMetrics),
    /// An RL step.
    Rl(Box<StepMetrics>),
}

impl MetricsRecord {
    /// The RL step's metrics, if this is one.
    pub fn rl(&self) -> Option<&StepMetrics> {
        match self {
            Self::Rl(m) => Some(m),
            Self::Sft(_) => None,
        }
    }
}

/// The metrics of one SFT step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SftMetrics {
    /// SFT steps done (1-based).
    pub step: u64,
    /// The learning rate used.
    pub lr: f64,
    /// Token-mean negative log-likelihood (`None` when not finite).
    pub loss: Option<f64>,
    /// Global gradient norm before clipping (`None` when not finite).
    pub grad_norm: Option<f64>,
    /// Trained target tokens.
    pub tokens: usize,
    /// Why the update was skipped, if it was.
    pub skipped: Option<String>,
    /// Examples dropped for exceeding the context.
    pub too_long: usize,
    /// Wall time of the step, seconds.
    pub step_s: f64,
}

/// Reward and pass rate of one turn index over the step's base episodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TurnMetrics {
    /// Mean reward.
    pub reward: f64,
    /// Share of correct turns.
    pub pass_rate: f64,
    /// Turns with this index.
    pub count: usize,
}

/// Statistics of the sequence advantages of the policy rows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AdvantageStats {
    /// Mean.
    pub mean: f64,
    /// Standard deviation.
    pub std: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
}

/// The metrics of one RL step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    /// RL steps done (1-based).
    pub step: u64,
    /// The learning rate used.
    pub lr: f64,
    /// Share of correct first attempts of base episodes (retries and regenerations excluded).
    pub pass_rate: f64,
    /// Share of base episodes solved by any of their turns.
    pub solved_rate: f64,
    /// Mean episode reward of base episodes.
    pub reward_mean: f64,
    /// Per turn index (0: first attempts), over base episodes.
    pub turns: Vec<TurnMetrics>,
    /// Episodes derived from feedback (retries, regenerations).
    pub feedback_episodes: usize,
    /// Share of those that solved their problem (`None` when there were none).
    pub feedback_episode_solved_rate: Option<f64>,
    /// Sequence advantages of the policy rows.
    pub advantage: AdvantageStats,
    /// Groups that produced rows.
    pub groups_used: usize,
    /// Groups dropped by DAPO's dynamic sampling.
    pub groups_filtered: usize,
    /// Rollouts drawn for the step (more than one only under DAPO's dynamic sampling).
    pub sampling_tries: usize,
    /// Rows per kind.
    pub rows: BTreeMap<String, usize>,
    /// Rows longer than the model's context, cut to it (a long critique, say).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rows_cut: usize,
    /// Preference pairs.
    pub pairs: usize,
    /// The objective's terms and `grad_norm`, averaged over the updates that ran (finite
    /// values only).
    pub loss: BTreeMap<String, f64>,
    /// Optimiser updates attempted.
    pub updates: usize,
    /// Updates skipped for a non-finite loss or gradient.
    pub skipped_updates: usize,
    /// Positions the updates' forward passes ran, padding included: rows that begin another
    /// row (or repeat one) read its pass and cost none.
    #[serde(default)]
    pub update_tokens: usize,
    /// Policy tokens sampled during the step (every decode call, counted once).
    pub sampled_tokens: usize,
    /// Policy tokens sampled by the run so far.
    pub sampled_tokens_total: u64,
    /// Sampled tokens per second of rollout time.
    pub tokens_per_s: f64,
    /// Feedback requests.
    pub feedback_requests: usize,
    /// Feedback requests that failed: those samples got no feedback (RLTF: no revision;
    /// MulFeRL: no regeneration).
    pub feedback_failures: usize,
    /// The provider's failed requests during the step by kind (`budget_exhausted` when the
    /// step's feedback budget ran out, `timeout`, `connection`, ...); empty when none failed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub feedback_failure_kinds: BTreeMap<ErrorKind, u64>,
    /// Self-reflection reports that were missing or invalid.
    pub invalid_reflections: usize,
    /// Mean latency of successful feedback requests, milliseconds (`None`: no provider or no
    /// success).
    pub feedback_latency_ms: Option<f64>,
    /// Rollout wall time, seconds.
    pub rollout_s: f64,
    /// Update wall time, seconds.
    pub update_s: f64,
    /// Step wall time, seconds.
    pub step_s: f64,
    /// Per `[[reward]]` component: its mean unweighted reward over the step's turns, and for
    /// programs and endpoints `<name>/failures`, `/timeouts`, `/restarts` during the step
    /// (empty without `[[reward]]` tables).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub reward: BTreeMap<String, f64>,
    /// Sampling on inference servers (`[rollout.remote]`): the weight version, the servers,
    /// retries and the learner/sampler log-prob gap with its correction (absent in process).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampler: Option<crate::remote::SamplerMetrics>,
}

/// What an RL step's metrics are computed from.
pub(crate) struct StepFacts<'a> {
    pub(crate) step: u64,
    pub(crate) lr: f64,
    pub(crate) batch: &'a RolloutBatch,
    pub(crate) rows: &'a TrainRows,
    pub(crate) outcomes: &'a [UpdateOutcome],
    pub(crate) total_sampled: u64,
    pub(crate) rollout_s: f64,
    pub(crate) update_s: f64,
    pub(crate) step_s: f64,
    pub(crate) feedback: Option<&'a ProviderStats>,
}

impl StepMetrics {
    /// The metrics of the step `f` describes.
    pub(crate) fn of(f: StepFacts<'_>) -> Self {
        // Rewards and pass rates per turn index, over base episodes (retries and
        // regenerations are reported separately).
        let is_derived = |e: &&Episode| e.provenance.base.is_some() || e.provenance.round.is_some();
        let base: Vec<&Episode> = f.batch.episodes.iter().filter(|e| !is_derived(e)).collect();
        let mut turns: Vec<(f64, f64, usize)> = Vec::new();
        for e in &base {
            for (k, t) in e.turns.iter().enumerate() {
                if turns.len() <= k {
                    turns.resize(k + 1, (0.0, 0.0, 0));
                }
                turns[k].0 += f64::from(t.reward);
                turns[k].1 += f64::from(u8::from(t.verdict.correct));
                turns[k].2 += 1;
            }
        }
        let turns: Vec<TurnMetrics> = turns
            .into_iter()
            .map(|(r, c, n)| TurnMetrics {
                reward: r / n.max(1) as f64,
                pass_rate: c / n.max(1) as f64,
                count: n,
            })
            .collect();
        let derived: Vec<&Episode> = f.batch.episodes.iter().filter(is_derived).collect();
        let solved = |es: &[&Episode]| es.iter().filter(|e| e.solved()).count() as f64;
        let n_base = base.len().max(1) as f64;
        // Loss terms, averaged over the updates that ran.
        let mut sums: BTreeMap<String, (f64, usize)> = BTreeMap::new();
        for o in f.outcomes.iter().filter(|o| o.skipped.is_none()) {
            let terms = o.metrics.iter().map(|(k, v)| (k.as_str(), *v));
            for (k, v) in terms.chain([("grad_norm", o.grad_norm)]) {
                if v.is_finite() {
                    let e = sums.entry(k.to_string()).or_default();
                    e.0 += v;
                    e.1 += 1;
                }
            }
        }
        let s = &f.rows.stats;
        let st = &f.batch.stats;
        Self {
            step: f.step,
            lr: f.lr,
            pass_rate: turns.first().map_or(0.0, |t| t.pass_rate),
            solved_rate: solved(&base) / n_base,
            reward_mean: base.iter().map(|e| f64::from(e.reward)).sum::<f64>() / n_base,
            turns,
            feedback_episodes: derived.len(),
            feedback_episode_solved_rate: (!derived.is_empty())
                .then(|| solved(&derived) / derived.len() as f64),
            advantage: AdvantageStats {
                mean: s.advantage_mean,
                std: s.advantage_std,
                min: s.advantage_min,
                max: s.advantage_max,
            },
            groups_used: s.groups_used,
            groups_filtered: s.groups_filtered,
            sampling_tries: s.sampling_tries,
            rows: s.rows.clone(),
            rows_cut: s.rows_cut,
            pairs: f.rows.pairs.len(),
            loss: sums
                .into_iter()
                .map(|(k, (v, n))| (k, v / n as f64))
                .collect(),
            updates: f.outcomes.len(),
            skipped_updates: f.outcomes.iter().filter(|o| o.skipped.is_some()).count(),
            update_tokens: f.outcomes.iter().map(|o| o.forwarded_tokens).sum(),
            sampled_tokens: st.sampled_tokens,
            sampled_tokens_total: f.total_sampled,
            tokens_per_s: st.sampled_tokens as f64 / f.rollout_s.max(1e-9),
            feedback_requests: st.feedback_requests,
            feedback_failures: st.feedback_failures,
            feedback_failure_kinds: f.feedback.map(|p| p.failures.clone()).unwrap_or_default(),
            invalid_reflections: st.invalid_reflections,
            feedback_latency_ms: f
                .feedback
                .map(ProviderStats::mean_latency_ms)
                .filter(|x| x.is_finite()),
            rollout_s: f.rollout_s,
            update_s: f.update_s,
            step_s: f.step_s,
            reward: BTreeMap::new(),
            sampler: None,
        }
    }

    /// The objective's total loss (`None` when no update ran).
    pub fn total_loss(&self) -> Option<f64> {
        self.loss.get("loss").copied()
    }
}

/// One turn of a transcript.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TranscriptTurnRecord {
    /// The sampled response text.
    pub response: String,
    /// The verifier's verdict on it.
    pub correct: bool,
    /// Its reward.
    pub reward: f32,
}

/// Feedback received in a transcript.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TranscriptFeedback {
    /// The turn it answers.
    pub turn: Option<usize>,
    /// Its text (`None` when the request failed).
    pub text: Option<String>,
    /// The failure, if the request failed.
    pub error: Option<String>,
}

/// One episode of an RL step, for reading (transcripts.jsonl).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TranscriptRecord {
    /// RL steps done when it was sampled (1-based).
    pub step: u64,
    /// The problem's prompt.
    pub problem: String,
    /// The turns.
    pub turns: Vec<TranscriptTurnRecord>,
    /// The feedback received.
    pub feedback: Vec<TranscriptFeedback>,
    /// How the episode came about.
    pub provenance: Provenance,
}

/// Transcripts kept per RL step.
const TRANSCRIPTS_PER_STEP: usize = 2;

impl TranscriptRecord {
    /// A few episodes of step `step`'s batch: ones with feedback or several turns first.
    pub(crate) fn of_step(step: u64, batch: &RolloutBatch, problems: &[Problem]) -> Vec<Self> {
        let mut chosen: Vec<&Episode> = batch
            .episodes
            .iter()
            .filter(|e| e.turns.len() > 1 || !e.feedback.is_empty())
            .take(TRANSCRIPTS_PER_STEP)
            .collect();
        if chosen.is_empty() {
            chosen = batch.episodes.iter().take(TRANSCRIPTS_PER_STEP).collect();
        }
        chosen
            .into_iter()
            .map(|e| Self {
                step,
                problem: problems[e.problem].prompt(),
                turns: e
                    .turns
                    .iter()
                    .map(|t| TranscriptTurnRecord {
                        response: t.text.clone(),
                        correct: t.verdict.correct,
                        reward: t.reward,
                    })
                    .collect(),
                feedback: e
                    .feedback
                    .iter()
                    .map(|f| TranscriptFeedback {
                        turn: f.turn,
                        text: f.feedback.as_ref().map(|f| f.text.clone()),
                        error: f.error.clone(),
                    })
                    .collect(),
                provenance: e.provenance.clone(),
            })
            .collect()
    }
}

/// Whether a counter is zero (left out of the logs, so the lines of runs without it are unchanged).
fn is_zero(n: &usize) -> bool {
    *n == 0
}
