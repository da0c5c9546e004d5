//! The single-turn group rows GRPO, Dr.GRPO, DAPO and OPMD share: one policy row per sample,
//! every sampled token carrying its group advantage (docs/algorithms/grpo.md).

use redraft_credit_assignment::{AdvantageEstimator, AdvantageFn};
use redraft_rollout_engine::{Episode, GroupUse, RolloutBatch};

use crate::error::Result;
use crate::rows::{TrainRows, TrainRowsBuilder};

/// What a method does with one group's rewards before the advantages.
pub(crate) enum GroupRewards {
    /// Train on these rewards.
    Keep(Vec<f32>),
    /// Drop the group (counted in `groups_filtered`).
    Drop,
}

/// The rows of every RL group of `batch`: `rewards` decides each group's rewards (or drops
/// it), `estimator` turns the kept groups' rewards into advantages.
pub(crate) fn group_rows(
    batch: &RolloutBatch,
    estimator: &AdvantageEstimator,
    mut rewards: impl FnMut(&[&Episode]) -> Result<GroupRewards>,
) -> Result<TrainRows> {
    let mut out = TrainRowsBuilder::default();
    let mut kept = Vec::new();
    let mut kept_rewards = Vec::new();
    for group in batch.groups.iter().filter(|g| g.usage == GroupUse::Rl) {
        let episodes = members(batch, &group.episodes);
        match rewards(&episodes)? {
            GroupRewards::Keep(r) => {
                kept.push(episodes);
                kept_rewards.push(r);
            }
            GroupRewards::Drop => out.rows.stats.groups_filtered += 1,
        }
    }
    // Over every kept group at once: an estimator may scale by the batch's std.
    let advantages = estimator.advantages_nested(&kept_rewards)?;
    for (episodes, a) in kept.iter().zip(&advantages) {
        out.push_group(episodes, a);
    }
    Ok(out.finish())
}

/// Each episode's reward, unchanged.
pub(crate) fn plain_rewards(episodes: &[&Episode]) -> Result<GroupRewards> {
    Ok(GroupRewards::Keep(
        episodes.iter().map(|e| e.reward).collect(),
    ))
}

/// The episodes of a group.
pub(crate) fn members<'b>(batch: &'b RolloutBatch, ids: &[usize]) -> Vec<&'b Episode> {
    ids.iter().map(|&e| &batch.episodes[e]).collect()
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Hand-built episodes for the methods' rows tests.

    use redraft_rollout_engine::{
        Episode, FinishReason, GroupUse, Provenance, RolloutBatch, Sequence, StrategyKind, Turn,
    };
    use redraft_verifier::{Diagnosis, DiagnosisKind, Verdict};

    /// A single-turn episode: a 3-id prompt then `sampled` ids, with `reward` and `correct`.
    pub(crate) fn episode(problem: usize, sampled: usize, reward: f32, correct: bool) -> Episode {
        let prompt = 3;
        let n = prompt + sampled;
        let seq = Sequence {
            ids: (0..n as u32).collect(),
            kinds: Vec::new(),
            spans: Vec::new(),
            logprobs: vec![-0.5; n],
            trainable_mask: (0..n).map(|i| i >= prompt).collect(),
            messages: Vec::new(),
            untrained: Vec::new(),
            rescore: false,
        };
        Episode {
            problem,
            group: 0,
            sample: 0,
            sequences: vec![seq],
            turns: vec![Turn {
                sequence: 0,
                sampled: prompt..n,
                text: String::new(),
                finish_reason: FinishReason::Stop,
                verdict: verdict(correct),
                reward,
            }],
            feedback: Vec::new(),
            reward,
            provenance: Provenance::base(StrategyKind::SingleTurn),
        }
    }

    /// A verdict that is correct or not.
    pub(crate) fn verdict(correct: bool) -> Verdict {
        if correct {
            Verdict::correct("")
        } else {
            Verdict::wrong(Diagnosis::new(DiagnosisKind::WrongAnswer, ""))
        }
    }

    /// A batch of one RL group per entry, each `(reward, correct)` one single-turn episode.
    pub(crate) fn single_turn_batch(groups: &[&[(f32, bool)]]) -> RolloutBatch {
        let mut batch = RolloutBatch::default();
        for (p, g) in groups.iter().enumerate() {
            let episodes = g
                .iter()
                .enumerate()
                .map(|(i, &(r, c))| episode(p, 2 + i, r, c))
                .collect();
            batch.push_group(p, 0, GroupUse::Rl, episodes);
        }
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::single_turn_batch;
    use super::*;

    /// `group_mean_batch_std` centres each group on its own mean but scales by the std of the
    /// whole batch's rewards, so it needs every kept group at once.
    #[test]
    fn group_mean_batch_std_scales_by_the_batch_std() {
        let batch = single_turn_batch(&[&[(1.0, true), (0.0, false)], &[(3.0, true), (3.0, true)]]);
        let estimator = AdvantageEstimator::GroupMeanBatchStd {
            eps: 0.0,
            unbiased_std: false,
        };
        let rows = group_rows(&batch, &estimator, plain_rewards).unwrap();
        // Batch rewards [1, 0, 3, 3]: std 1.299; group 0 centred ±0.5.
        let std =
            (((1.0f32 - 1.75).powi(2) + 1.75f32.powi(2) + 2.0 * 1.25f32.powi(2)) / 4.0).sqrt();
        let first = rows.rows[0].advantages.iter().copied().find(|a| *a != 0.0);
        assert!((first.unwrap() - 0.5 / std).abs() < 1e-5, "{first:?}");
        assert!(rows.rows[2].advantages.iter().all(|a| *a == 0.0));
    }
}
