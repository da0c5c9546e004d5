//! MulFeRL: multi-turn feedback RL by regenerating failed groups (docs/algorithms/mulferl.md).
//!
//! 1. **Rollout:** a group of G responses per problem; a group that failed entirely gets
//!    feedback (default: the verifier's critique of its failed responses) and is regenerated
//!    under the feedback (with the forced prefix), for up to R rounds.
//! 2. **Credit:** every group with mixed outcomes is a GRPO group (group-normalised
//!    advantages); an all-solved regeneration gives preference pairs, each regenerated
//!    response (chosen) against a failed base response (rejected).
//! 3. **Objective:** GRPO plus λ = 0.01 times the pair loss (FCO by default, DPO selectable).
//!
//! ```toml
//! [method]
//! type = "mulferl"
//! [method.strategy]    # redraft_rollout_engine::MulFeRlConfig (whole; group_size = rollout's)
//! feedback_per_group = 1
//! [method.objective]   # redraft_objectives::MulFeRlConfig
//! ```

use std::collections::HashMap;

use redraft_credit_assignment::AdvantageEstimator;
use redraft_feedback_protocol::ProviderConfig;
use redraft_objectives::{MulFeRlConfig as MulFeRlObjectiveConfig, ObjectiveConfig, RowKind};
use redraft_rollout_engine::{
    MulFeRlConfig as MulFeRlStrategyConfig, RolloutBatch, StrategyConfig,
};
use serde::{Deserialize, Serialize};

use super::groups::{group_rows, plain_rewards};
use super::rltf::{check_group_size, verifier_critic};
use super::{RowContext, TrainMethod};
use crate::config::RolloutConfig;
use crate::error::Result;
use crate::rows::{Row, TrainRows};

/// MulFeRL's options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MulFeRlMethod {
    /// Regeneration settings, replacing the defaults as a whole (`group_size` must equal
    /// `rollout.group_size`). Default MulFeRL's with `rollout.group_size`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strategy: Option<MulFeRlStrategyConfig>,
    /// The advantage estimator of the GRPO groups. Default GRPO's.
    pub estimator: AdvantageEstimator,
    /// The objective.
    pub objective: MulFeRlObjectiveConfig,
    /// The feedback. Default the verifier's critique.
    pub feedback: ProviderConfig,
}

impl Default for MulFeRlMethod {
    fn default() -> Self {
        Self {
            strategy: None,
            estimator: AdvantageEstimator::grpo(),
            objective: MulFeRlObjectiveConfig::default(),
            feedback: verifier_critic(),
        }
    }
}

impl TrainMethod for MulFeRlMethod {
    /// 1. Rollout: groups, regenerated under feedback when all failed.
    fn strategy_config(&self, rollout: &RolloutConfig) -> StrategyConfig {
        StrategyConfig::Mulferl(
            self.strategy
                .clone()
                .unwrap_or_else(|| MulFeRlStrategyConfig {
                    group_size: rollout.group_size,
                    ..MulFeRlStrategyConfig::default()
                }),
        )
    }

    /// The feedback.
    fn feedback(&self) -> Option<ProviderConfig> {
        Some(self.feedback.clone())
    }

    /// 2. Credit: GRPO rows of the mixed groups, pair rows of the preference pairs.
    fn rows(&self, batch: &RolloutBatch, _ctx: &RowContext<'_>) -> Result<TrainRows> {
        let mut rows = group_rows(batch, &self.estimator, plain_rewards)?;
        let mut pair_rows: HashMap<usize, usize> = HashMap::new();
        let mut row_of = |episode: usize, rows: &mut TrainRows| -> usize {
            *pair_rows.entry(episode).or_insert_with(|| {
                let e = &batch.episodes[episode];
                let seq = &e.sequences[0];
                rows.push(Row::from_sequence(
                    seq,
                    &seq.trainable_mask,
                    0.0,
                    RowKind::Pair,
                    e.problem,
                ))
            })
        };
        for pair in &batch.pairs {
            let chosen = row_of(pair.chosen, &mut rows);
            let rejected = row_of(pair.rejected, &mut rows);
            rows.pairs.push((chosen, rejected));
        }
        Ok(rows)
    }

    /// 3. Objective: GRPO + λ × pair loss.
    fn objective_config(&self) -> ObjectiveConfig {
        ObjectiveConfig::Mulferl(self.objective)
    }

    fn validate(&self, rollout: &RolloutConfig) -> Result<()> {
        check_group_size(self.strategy.as_ref().map(|s| s.group_size), rollout)?;
        super::validate_parts(self, rollout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::methods::groups::fixtures::episode;
    use crate::methods::tests::no_ctx;
    use redraft_rollout_engine::{GroupUse, PreferencePair};

    #[test]
    fn mixed_groups_train_and_solved_regenerations_pair_against_failures() {
        let mut batch = RolloutBatch::default();
        batch.push_group(
            0,
            0,
            GroupUse::Rl,
            vec![episode(0, 2, 1.0, true), episode(0, 2, 0.0, false)],
        );
        // Problem 1: the base group failed (regenerated), the regeneration all solved.
        batch.push_group(
            1,
            0,
            GroupUse::Regenerated,
            vec![episode(1, 2, 0.0, false), episode(1, 3, 0.0, false)],
        );
        batch.push_group(
            1,
            1,
            GroupUse::Preference,
            vec![episode(1, 2, 1.0, true), episode(1, 3, 1.0, true)],
        );
        batch.pairs = vec![
            PreferencePair {
                chosen: 4,
                rejected: 2,
            },
            PreferencePair {
                chosen: 5,
                rejected: 2,
            },
        ];
        let rows = no_ctx(|ctx| MulFeRlMethod::default().rows(&batch, ctx));
        assert_eq!(rows.stats.groups_used, 1);
        assert_eq!(rows.stats.rows["policy"], 2);
        // Episode 2 is rejected twice but scored once: three pair rows.
        assert_eq!(rows.stats.rows["pair"], 3);
        assert_eq!(rows.pairs, vec![(2, 3), (4, 3)]);
        assert!(
            rows.rows[2..]
                .iter()
                .all(|r| r.kind == RowKind::Pair && r.problem == 1)
        );
        assert!(rows.rows[0].advantages[3] > 0.0 && rows.rows[1].advantages[3] < 0.0);
    }
}
