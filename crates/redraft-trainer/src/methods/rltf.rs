//! What RLTF-SD and RLTF-FM share (Song et al., "Expanding the Capabilities of RL via Text
//! Feedback"; docs/algorithms/rltf.md): the critique-and-revision rollout and the per-turn
//! policy rows.
//!
//! Turn 0 answers the problem; a failed first attempt gets the feedback provider's critique and
//! a revision (turn 1) from the revision prompt. Each turn's return is its reward plus γ times
//! the later turns' (γ = 0.1), centred over the group's episodes that have that turn: every
//! sampled token of a turn carries its turn's advantage.

use redraft_credit_assignment::per_turn_advantages;
use redraft_feedback_protocol::ProviderConfig;
use redraft_objectives::RowKind;
use redraft_rollout_engine::{Episode, GroupUse, RltfConfig, RolloutBatch, StrategyConfig};

use super::groups::members;
use crate::config::RolloutConfig;
use crate::error::{Error, Result};
use crate::rows::{Row, TrainRows, TrainRowsBuilder, only_range};

/// The critique-and-revision strategy: `strategy` as written, or RLTF's defaults with
/// `rollout.group_size` episodes per problem.
pub(crate) fn strategy(strategy: Option<&RltfConfig>, rollout: &RolloutConfig) -> StrategyConfig {
    StrategyConfig::Rltf(strategy.cloned().unwrap_or_else(|| RltfConfig {
        group_size: rollout.group_size,
        ..RltfConfig::default()
    }))
}

/// Refuses a `method.strategy.group_size` other than `rollout.group_size` (one group size per
/// run).
pub(crate) fn check_group_size(written: Option<usize>, rollout: &RolloutConfig) -> Result<()> {
    match written {
        Some(g) if g != rollout.group_size => Err(Error::config(
            "method.strategy.group_size",
            format!(
                "{g} differs from rollout.group_size ({}): set the same or change rollout.group_size",
                rollout.group_size
            ),
        )),
        _ => Ok(()),
    }
}

/// RLTF's and MulFeRL's default feedback: the verifier's critique.
pub(crate) fn verifier_critic() -> ProviderConfig {
    ProviderConfig::VerifierCritic {
        critic: Default::default(),
    }
}

/// Per-turn policy rows of every RL group with discount `gamma`; `extra` adds a method's own
/// rows for each group (its episodes and their per-turn rewards).
pub(crate) fn per_turn_rows(
    batch: &RolloutBatch,
    gamma: f32,
    mut extra: impl FnMut(&[&Episode], &[Vec<f32>], &mut TrainRowsBuilder) -> Result<()>,
) -> Result<TrainRows> {
    let mut out = TrainRowsBuilder::default();
    for group in batch.groups.iter().filter(|g| g.usage == GroupUse::Rl) {
        let episodes = members(batch, &group.episodes);
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
        extra(&episodes, &turn_rewards, &mut out)?;
    }
    Ok(out.finish())
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Two-turn episodes.

    use redraft_feedback_protocol::{Feedback, FeedbackKind, FeedbackSource};
    use redraft_rollout_engine::{
        Episode, FeedbackRecord, FinishReason, GroupUse, RolloutBatch, Sequence, Turn,
    };

    use crate::methods::groups::fixtures::{episode, verdict};

    /// An episode whose first attempt (`r0`) failed and was revised (`r1`, correct when 1),
    /// with the critique "carry the one"; `r1 = None`: solved at once, one turn.
    pub(crate) fn revised(problem: usize, r0: f32, r1: Option<f32>) -> Episode {
        let mut e = episode(problem, 2, r0, r0 >= 1.0);
        let Some(r1) = r1 else {
            return e;
        };
        let n = 6;
        e.sequences.push(Sequence {
            ids: (100..100 + n as u32).collect(),
            kinds: Vec::new(),
            spans: Vec::new(),
            logprobs: vec![-0.25; n],
            trainable_mask: (0..n).map(|i| i >= 4).collect(),
            messages: Vec::new(),
            untrained: Vec::new(),
            rescore: false,
        });
        e.turns.push(Turn {
            sequence: 1,
            sampled: 4..n,
            text: "revised".into(),
            finish_reason: FinishReason::Stop,
            verdict: verdict(r1 >= 1.0),
            reward: r1,
        });
        e.feedback.push(FeedbackRecord {
            turn: Some(0),
            feedback: Some(Feedback::new(
                FeedbackKind::Critique,
                "carry the one",
                FeedbackSource::new("test"),
            )),
            error: None,
        });
        e.reward = r1;
        e
    }

    /// One RL group of these episodes.
    pub(crate) fn batch(episodes: Vec<Episode>) -> RolloutBatch {
        let mut b = RolloutBatch::default();
        b.push_group(0, 0, GroupUse::Rl, episodes);
        b
    }
}
