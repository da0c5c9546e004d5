//! Training rows: what every method's credit assignment produces (see [`crate::methods`] for
//! each method's rows).
//!
//! A [`Row`] is one token sequence the objective scores: its ids, and per *target* position
//! (`t` predicts `ids[t + 1]`, the layout of `next_token_logprobs`) the trainable mask, the
//! advantage and the sampling log-prob. [`TrainRows`] holds the rows of one rollout batch, the
//! preference pairs among them and the credit counters.

use std::collections::BTreeMap;

use redraft_credit_assignment::{GapStats, SamplerCorrection};
use redraft_objectives::RowKind;
use redraft_rollout_engine::{Episode, Sequence};
use redraft_tokenizer::{Conversation, Message, Tokenizer};
use serde::Serialize;

use crate::error::{Error, Result};

/// One sequence for the objective.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// All ids.
    pub ids: Vec<u32>,
    /// Per target (`ids.len() - 1`): trained or not.
    pub mask: Vec<bool>,
    /// Per target: the advantage (0 where not trained).
    pub advantages: Vec<f32>,
    /// Per target: the sampling log-prob; `None` when the row was not sampled as it stands
    /// (RLTF-SD's re-scored revision, R^3L's distilled copies and reflections, marked
    /// [`Sequence::rescore`]): the trainer scores it with the pre-update policy.
    pub old_logprobs: Option<Vec<f32>>,
    /// The objective term the row feeds.
    pub kind: RowKind,
    /// The problem the row belongs to (mini-batches never split a problem).
    pub problem: usize,
}

impl Row {
    /// A row from a sampled sequence with its trainable mask (per id) and one advantage.
    pub(crate) fn from_sequence(
        seq: &Sequence,
        id_mask: &[bool],
        advantage: f32,
        kind: RowKind,
        problem: usize,
    ) -> Self {
        let mask: Vec<bool> = id_mask[1..].to_vec();
        let advantages = mask
            .iter()
            .map(|m| if *m { advantage } else { 0.0 })
            .collect();
        Self {
            ids: seq.ids.clone(),
            mask,
            advantages,
            old_logprobs: (!seq.rescore).then(|| seq.logprobs[1..].to_vec()),
            kind,
            problem,
        }
    }

    /// Cuts the row to its first `len` ids (and their targets); returns whether it was longer.
    pub(crate) fn cut_to(&mut self, len: usize) -> bool {
        if self.ids.len() <= len {
            return false;
        }
        let targets = len.saturating_sub(1);
        self.ids.truncate(len);
        self.mask.truncate(targets);
        self.advantages.truncate(targets);
        if let Some(old) = &mut self.old_logprobs {
            old.truncate(targets);
        }
        true
    }

    /// Trained targets.
    pub fn trained(&self) -> usize {
        self.mask.iter().filter(|m| **m).count()
    }
}

/// Counters of one assembly.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CreditStats {
    /// Groups that produced rows.
    pub groups_used: usize,
    /// Groups dropped by DAPO's dynamic sampling (no accuracy signal), over every try.
    pub groups_filtered: usize,
    /// Rollouts DAPO's dynamic sampling drew to fill the batch (1 for the other methods).
    pub sampling_tries: usize,
    /// Mean of the sequence advantages of policy rows.
    pub advantage_mean: f64,
    /// Standard deviation of the sequence advantages of policy rows.
    pub advantage_std: f64,
    /// Smallest sequence advantage.
    pub advantage_min: f64,
    /// Largest sequence advantage.
    pub advantage_max: f64,
    /// Rows per kind.
    pub rows: BTreeMap<String, usize>,
    /// Rows longer than the model's context, cut to it ([`TrainRows::fit_context`]).
    pub rows_cut: usize,
}

/// The rows of one rollout batch.
#[derive(Debug, Clone, Default)]
pub struct TrainRows {
    /// The rows.
    pub rows: Vec<Row>,
    /// Preference pairs `(chosen row, rejected row)`.
    pub pairs: Vec<(usize, usize)>,
    /// Counters.
    pub stats: CreditStats,
}

impl TrainRows {
    /// Cuts every row longer than `context` ids to it, like a turn that reaches the context
    /// (rows built from text, such as RLTF-FM's critiques, can be longer than anything
    /// sampled); counts them in `stats.rows_cut`. The one place no row exceeds the context.
    pub(crate) fn fit_context(&mut self, context: usize) {
        let cut = self
            .rows
            .iter_mut()
            .filter_map(|r| r.cut_to(context).then_some(()))
            .count();
        if cut > 0 {
            tracing::warn!(
                rows = cut,
                context,
                "training rows longer than the context were cut to it"
            );
        }
        self.stats.rows_cut += cut;
    }

    /// Moves the sampling log-probs of every row aside (`None` for rows that had none), so that
    /// the trainer scores every row with its own pre-update policy: with a remote sampler the
    /// servers' log-probs are not the learner's.
    pub(crate) fn take_sampler_logprobs(&mut self) -> Vec<Option<Vec<f32>>> {
        self.rows
            .iter_mut()
            .map(|r| r.old_logprobs.take())
            .collect()
    }

    /// Weighs each trained token that was sampled (`sampler[row]` is `Some`) by the importance
    /// weight `correction` gives its learner/sampler ratio (the learner's log-probs are the
    /// rows' `old_logprobs`, filled by then), by scaling its advantage: every policy-gradient
    /// term is linear in the advantage, so this is the weight TRL and verl put on the token's
    /// policy loss; the KL and other terms are left unweighted.
    ///
    /// # Errors
    /// A row without learner log-probs, or a length or value the correction refuses.
    pub(crate) fn correct_sampler_gap(
        &mut self,
        sampler: &[Option<Vec<f32>>],
        correction: SamplerCorrection,
        cap: f64,
    ) -> Result<GapStats> {
        let mut stats = GapStats::default();
        for (row, sampled) in self.rows.iter_mut().zip(sampler) {
            let Some(sampled) = sampled else {
                continue;
            };
            let learner = row.old_logprobs.as_deref().ok_or_else(|| {
                Error::config(
                    "rollout.remote",
                    "a sampled row was not re-scored by the learner",
                )
            })?;
            let (weights, gap) = correction.weights(learner, sampled, &row.mask, cap)?;
            for (a, w) in row.advantages.iter_mut().zip(weights) {
                *a *= w;
            }
            stats.merge(&gap);
        }
        Ok(stats)
    }

    /// Appends a row (counted by kind); returns its index.
    pub(crate) fn push(&mut self, row: Row) -> usize {
        let name = serde_json::to_value(row.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        *self.stats.rows.entry(name).or_default() += 1;
        self.rows.push(row);
        self.rows.len() - 1
    }
}

/// Collects rows and the sequence advantages of policy rows (for [`CreditStats`]).
#[derive(Default)]
pub(crate) struct TrainRowsBuilder {
    /// The rows so far.
    pub(crate) rows: TrainRows,
    advantages: Vec<f32>,
}

impl TrainRowsBuilder {
    /// A policy row with its sequence advantage (counted when it trains a target).
    pub(crate) fn push_policy(&mut self, row: Row, advantage: f32) {
        if row.trained() > 0 {
            self.advantages.push(advantage);
        }
        self.rows.push(row);
    }

    /// The policy rows of a group of single-sequence episodes with their advantages.
    pub(crate) fn push_group(&mut self, episodes: &[&Episode], advantages: &[f32]) {
        self.rows.stats.groups_used += 1;
        for (e, &a) in episodes.iter().zip(advantages) {
            let seq = &e.sequences[0];
            let row = Row::from_sequence(seq, &seq.trainable_mask, a, RowKind::Policy, e.problem);
            self.push_policy(row, a);
        }
    }

    /// The rows with their advantage statistics.
    pub(crate) fn finish(mut self) -> TrainRows {
        let a = &self.advantages;
        if !a.is_empty() {
            let n = a.len() as f64;
            let mean = a.iter().map(|x| f64::from(*x)).sum::<f64>() / n;
            let var = a
                .iter()
                .map(|x| (f64::from(*x) - mean).powi(2))
                .sum::<f64>()
                / n;
            let s = &mut self.rows.stats;
            s.advantage_mean = mean;
            s.advantage_std = var.sqrt();
            s.advantage_min = a.iter().copied().fold(f32::INFINITY, f32::min).into();
            s.advantage_max = a.iter().copied().fold(f32::NEG_INFINITY, f32::max).into();
        }
        self.rows
    }
}

/// Ids of a one-turn conversation whose assistant response (`target` and the end-of-turn
/// token) is the only trained part.
pub(crate) struct SupervisedIds {
    ids: Vec<u32>,
    id_mask: Vec<bool>,
}

impl SupervisedIds {
    /// The row (kind [`RowKind::Auxiliary`]).
    pub(crate) fn into_row(self, problem: usize) -> Row {
        let mask: Vec<bool> = self.id_mask[1..].to_vec();
        let n = mask.len();
        Row {
            ids: self.ids,
            advantages: mask.iter().map(|m| if *m { 1.0 } else { 0.0 }).collect(),
            mask,
            old_logprobs: Some(vec![0.0; n]),
            kind: RowKind::Auxiliary,
            problem,
        }
    }
}

/// `messages` as the prompt, then `response` as the assistant turn, trained including the
/// template's end-of-turn token (so that the policy learns to stop). `forced` is a response
/// prefix that is context, not trained (MulFeRL's copied feedback).
pub(crate) fn supervised_ids(
    tokenizer: &dyn Tokenizer,
    messages: &[Message],
    forced: &str,
    response: &str,
) -> Result<SupervisedIds> {
    let mut conv = Conversation::for_tokenizer(tokenizer)?;
    for m in messages {
        conv.push_message(tokenizer, m.clone())?;
    }
    conv.open_assistant_turn(tokenizer)?;
    let prefix_end = if forced.is_empty() {
        conv.len()
    } else {
        conv.push_sampled(&tokenizer.encode(forced)?)?.end
    };
    let mut target = tokenizer.encode(response)?;
    if let Some(&stop) = conv.turn_end_ids(tokenizer)?.first() {
        target.push(stop);
    }
    let range = conv.push_sampled(&target)?;
    conv.close_turn(tokenizer)?;
    let ids = conv.ids().to_vec();
    let id_mask = (0..ids.len())
        .map(|i| i >= prefix_end.max(range.start) && i < range.end)
        .collect();
    Ok(SupervisedIds { ids, id_mask })
}

/// The sampled tokens of an episode.
pub(crate) fn sampled_len(e: &Episode) -> usize {
    e.sequences
        .iter()
        .map(|s| s.trainable_mask.iter().filter(|m| **m).count())
        .sum()
}

/// `mask` restricted to `range`.
pub(crate) fn only_range(mask: &[bool], range: std::ops::Range<usize>) -> Vec<bool> {
    mask.iter()
        .enumerate()
        .map(|(i, m)| *m && range.contains(&i))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(len: usize) -> Row {
        Row {
            ids: (0..len as u32).collect(),
            mask: vec![true; len - 1],
            advantages: vec![1.0; len - 1],
            old_logprobs: Some(vec![-1.0; len - 1]),
            kind: RowKind::Policy,
            problem: 0,
        }
    }

    #[test]
    fn rows_longer_than_the_context_are_cut_to_it() {
        let mut rows = TrainRows::default();
        rows.push(row(10));
        rows.push(row(4));
        rows.fit_context(6);
        let long = &rows.rows[0];
        assert_eq!(
            (long.ids.len(), long.mask.len(), long.advantages.len()),
            (6, 5, 5)
        );
        assert_eq!(long.old_logprobs.as_ref().map(Vec::len), Some(5));
        assert_eq!(rows.rows[1], row(4));
        assert_eq!(rows.stats.rows_cut, 1);
    }
}
