//! From episodes to training rows: the credit assignment of each method, applied to a
//! [`RolloutBatch`].
//!
//! A [`Row`] is one token sequence the objective scores: its ids, and per *target* position
//! (`t` predicts `ids[t + 1]`, the layout of `next_token_logprobs`) the trainable mask, the
//! advantage and the sampling log-prob. Which rows exist and what they carry is the method:
//!
//! | method | rows |
//! |---|---|
//! | grpo, dr_grpo, dapo, opmd | one policy row per sample; group advantages (DAPO: overlong shaping, groups with equal rewards dropped) |
//! | rltf_sd, rltf_fm | one policy row per turn with RLTF's per-turn advantages; SD: the revision re-scored under the first prompt; FM: the critique under the feedback-modelling prompt |
//! | r3l | policy rows for bases and distilled retries (positive amplification, the strategy's pivotal-credit masks); the strategy's auxiliary SFT items (guided retries, reflections) as auxiliary rows |
//! | mulferl | policy rows for mixed groups (GRPO advantages); preference rows for all-solved regenerations against the base responses |

use std::collections::{BTreeMap, HashMap};

use redraft_credit_assignment::{
    AdvantageEstimator, AdvantageFn, RLTF_GAMMA, SelfDistillation, keep_group, per_turn_advantages,
};
use redraft_feedback_protocol::Templates;
use redraft_objectives::RowKind;
use redraft_rollout_engine::prompts::critique_message;
use redraft_rollout_engine::{Episode, GroupUse, RolloutBatch, Sequence};
use redraft_tokenizer::{Conversation, Message, Tokenizer};
use redraft_verifier::Problem;
use serde::Serialize;

use crate::config::{CreditConfig, Method};
use crate::error::Result;

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
    fn from_sequence(
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
    /// Groups dropped by DAPO's dynamic sampling.
    pub groups_filtered: usize,
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
    fn push(&mut self, row: Row) -> usize {
        let name = serde_json::to_value(row.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        *self.stats.rows.entry(name).or_default() += 1;
        self.rows.push(row);
        self.rows.len() - 1
    }
}

/// What the assembly needs besides the batch.
pub struct Assembler<'a> {
    /// The method.
    pub method: Method,
    /// Its credit settings.
    pub credit: &'a CreditConfig,
    /// The tokenizer (for RLTF-FM's critique prompts).
    pub tokenizer: &'a dyn Tokenizer,
    /// The prompt templates (RLTF-FM's `rltf_critique`).
    pub templates: &'a Templates,
    /// The problems the batch was rolled out on ([`Episode::problem`] indexes them).
    pub problems: &'a [Problem],
}

impl Assembler<'_> {
    /// The rows of `batch`.
    ///
    /// # Errors
    /// [`crate::Error::Credit`] when credit assignment rejects rewards;
    /// [`crate::Error::Tokenizer`] when a critique prompt cannot be rendered.
    pub fn assemble(&self, batch: &RolloutBatch) -> Result<TrainRows> {
        let mut out = TrainRowsBuilder::default();
        match self.method {
            Method::Grpo | Method::DrGrpo | Method::Dapo | Method::Opmd => {
                self.single_turn(batch, &mut out)?;
            }
            Method::RltfSd | Method::RltfFm => self.rltf(batch, &mut out)?,
            Method::R3l => self.r3l(batch, &mut out)?,
            Method::Mulferl => self.mulferl(batch, &mut out)?,
        }
        Ok(out.finish())
    }

    fn estimator(&self) -> AdvantageEstimator {
        self.credit.estimator.unwrap_or(match self.method {
            Method::DrGrpo => AdvantageEstimator::DrGrpo,
            Method::Opmd => AdvantageEstimator::OpmdMean,
            _ => AdvantageEstimator::grpo(),
        })
    }

    fn single_turn(&self, batch: &RolloutBatch, out: &mut TrainRowsBuilder) -> Result<()> {
        let estimator = self.estimator();
        let dynamic = self
            .credit
            .dynamic_sampling
            .unwrap_or(self.method == Method::Dapo);
        for group in batch.groups.iter().filter(|g| g.usage == GroupUse::Rl) {
            let episodes: Vec<&Episode> =
                group.episodes.iter().map(|&e| &batch.episodes[e]).collect();
            let mut rewards: Vec<f32> = episodes.iter().map(|e| e.reward).collect();
            if let Some(shaping) = &self.credit.overlong {
                let lengths: Vec<usize> = episodes.iter().map(|e| sampled_len(e)).collect();
                rewards = shaping.shape(&rewards, &lengths)?;
            }
            if dynamic && !keep_group(&rewards) {
                out.rows.stats.groups_filtered += 1;
                continue;
            }
            out.push_group(&episodes, &estimator.group_advantages(&rewards)?);
        }
        Ok(())
    }

    fn rltf(&self, batch: &RolloutBatch, out: &mut TrainRowsBuilder) -> Result<()> {
        let sd = match self.method {
            Method::RltfSd => Some(self.credit.self_distillation.unwrap_or_default()),
            _ => None,
        };
        let gamma = sd.map_or(RLTF_GAMMA, |s| s.gamma);
        for group in batch.groups.iter().filter(|g| g.usage == GroupUse::Rl) {
            let episodes: Vec<&Episode> =
                group.episodes.iter().map(|&e| &batch.episodes[e]).collect();
            let turn_rewards: Vec<Vec<f32>> = episodes.iter().map(|e| e.turn_rewards()).collect();
            let per_turn = per_turn_advantages(&turn_rewards, gamma)?;
            out.rows.stats.groups_used += 1;
            for (e, advs) in episodes.iter().zip(&per_turn) {
                for (turn, &a) in e.turns.iter().zip(advs) {
                    let seq = &e.sequences[turn.sequence];
                    let mask = only_range(&seq.trainable_mask, turn.sampled.clone());
                    let row = Row::from_sequence(seq, &mask, a, RowKind::Policy, e.problem);
                    out.push_policy(row, a);
                }
            }
            if let Some(sd) = sd {
                self.self_distillation(&sd, &episodes, &turn_rewards, out)?;
            }
            if self.method == Method::RltfFm {
                for e in &episodes {
                    if let Some(row) = self.feedback_modelling_row(e)? {
                        out.rows.push(row);
                    }
                }
            }
        }
        Ok(())
    }

    /// RLTF-SD: each revision `y1`, re-scored under the first prompt `x0`, with `A_SD`.
    fn self_distillation(
        &self,
        sd: &SelfDistillation,
        episodes: &[&Episode],
        turn_rewards: &[Vec<f32>],
        out: &mut TrainRowsBuilder,
    ) -> Result<()> {
        let a_sd = sd.advantages(turn_rewards)?;
        for (e, a) in episodes.iter().zip(a_sd) {
            let (Some(a), Some(first), Some(second)) = (a, e.turns.first(), e.turns.get(1)) else {
                continue;
            };
            let x0 = &e.sequences[first.sequence];
            let prompt = &x0.ids[..first.sampled.start];
            let y1 = &e.sequences[second.sequence].ids[second.sampled.clone()];
            let ids: Vec<u32> = prompt.iter().chain(y1).copied().collect();
            let mask: Vec<bool> = (1..ids.len()).map(|i| i >= prompt.len()).collect();
            let advantages = mask.iter().map(|m| if *m { a } else { 0.0 }).collect();
            out.rows.push(Row {
                ids,
                mask,
                advantages,
                old_logprobs: None,
                kind: RowKind::SelfDistillation,
                problem: e.problem,
            });
        }
        Ok(())
    }

    /// RLTF-FM: the critique of the first attempt as the target of the feedback-modelling
    /// prompt (`rltf_critique`) for that attempt.
    /// Episodes that ended after a correct first attempt have no critique and no row.
    fn feedback_modelling_row(&self, e: &Episode) -> Result<Option<Row>> {
        let critique = e.feedback.iter().find_map(|f| f.feedback.as_ref());
        let (Some(first), Some(critique), true) = (e.turns.first(), critique, e.turns.len() > 1)
        else {
            return Ok(None);
        };
        let prompt = critique_message(self.templates, &self.problems[e.problem], &first.text)?;
        let ids = supervised_ids(self.tokenizer, &[prompt], "", &critique.text)?;
        Ok(Some(ids.into_row(e.problem)))
    }

    /// R^3L: the strategy marks what is trained ([`Sequence::credit_mask`]: pivotal credit) and
    /// which episodes are auxiliary SFT items (its [`GroupUse::Sft`] groups).
    fn r3l(&self, batch: &RolloutBatch, out: &mut TrainRowsBuilder) -> Result<()> {
        let amplification = self.credit.positive_amplification.unwrap_or_default();
        for group in &batch.groups {
            let members: Vec<&Episode> =
                group.episodes.iter().map(|&i| &batch.episodes[i]).collect();
            match group.usage {
                GroupUse::Rl => {
                    let rewards: Vec<f32> = members.iter().map(|e| e.reward).collect();
                    let adv = amplification.group_advantages(&rewards)?;
                    out.rows.stats.groups_used += 1;
                    for (e, a) in members.iter().zip(adv) {
                        let seq = &e.sequences[0];
                        let mask = seq.credit_mask();
                        let row = Row::from_sequence(seq, &mask, a, RowKind::Policy, e.problem);
                        out.push_policy(row, a);
                    }
                }
                GroupUse::Sft => {
                    for e in &members {
                        let seq = &e.sequences[0];
                        let mask = seq.credit_mask();
                        let row =
                            Row::from_sequence(seq, &mask, 1.0, RowKind::Auxiliary, e.problem);
                        out.rows.push(row);
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn mulferl(&self, batch: &RolloutBatch, out: &mut TrainRowsBuilder) -> Result<()> {
        let estimator = self.estimator();
        for group in batch.groups.iter().filter(|g| g.usage == GroupUse::Rl) {
            let episodes: Vec<&Episode> =
                group.episodes.iter().map(|&e| &batch.episodes[e]).collect();
            let rewards: Vec<f32> = episodes.iter().map(|e| e.reward).collect();
            out.push_group(&episodes, &estimator.group_advantages(&rewards)?);
        }
        let mut pair_rows: HashMap<usize, usize> = HashMap::new();
        let mut row_of = |episode: usize, out: &mut TrainRowsBuilder| -> usize {
            *pair_rows.entry(episode).or_insert_with(|| {
                let e = &batch.episodes[episode];
                let seq = &e.sequences[0];
                out.rows.push(Row::from_sequence(
                    seq,
                    &seq.trainable_mask,
                    0.0,
                    RowKind::Pair,
                    e.problem,
                ))
            })
        };
        for pair in &batch.pairs {
            let chosen = row_of(pair.chosen, out);
            let rejected = row_of(pair.rejected, out);
            out.rows.pairs.push((chosen, rejected));
        }
        Ok(())
    }
}

#[derive(Default)]
struct TrainRowsBuilder {
    rows: TrainRows,
    advantages: Vec<f32>,
}

impl TrainRowsBuilder {
    fn push_policy(&mut self, row: Row, advantage: f32) {
        if row.trained() > 0 {
            self.advantages.push(advantage);
        }
        self.rows.push(row);
    }

    /// The policy rows of a group of single-sequence episodes with their advantages.
    fn push_group(&mut self, episodes: &[&Episode], advantages: &[f32]) {
        self.rows.stats.groups_used += 1;
        for (e, &a) in episodes.iter().zip(advantages) {
            let seq = &e.sequences[0];
            let row = Row::from_sequence(seq, &seq.trainable_mask, a, RowKind::Policy, e.problem);
            self.push_policy(row, a);
        }
    }

    fn finish(mut self) -> TrainRows {
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
fn sampled_len(e: &Episode) -> usize {
    e.sequences
        .iter()
        .map(|s| s.trainable_mask.iter().filter(|m| **m).count())
        .sum()
}

/// `mask` restricted to `range`.
fn only_range(mask: &[bool], range: std::ops::Range<usize>) -> Vec<bool> {
    mask.iter()
        .enumerate()
        .map(|(i, m)| *m && range.contains(&i))
        .collect()
}
