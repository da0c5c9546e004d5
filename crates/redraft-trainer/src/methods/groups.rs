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
/// it), `estimator` turns them into advantages.
pub(crate) fn group_rows(
    batch: &RolloutBatch,
    estimator: &AdvantageEstimator,
    mut rewards: impl FnMut(&[&Episode]) -> Result<GroupRewards>,
) -> Result<TrainRows> {
    let mut out = TrainRowsBuilder::default();
    for group in batch.groups.iter().filter(|g| g.usage == GroupUse::Rl) {
        let episodes = members(batch, &group.episodes);
        match rewards(&episodes)? {
            GroupRewards::Keep(r) => out.push_group(&episodes, &estimator.group_advantages(&r)?),
            GroupRewards::Drop => out.rows.stats.groups_filtered += 1,
        }
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
