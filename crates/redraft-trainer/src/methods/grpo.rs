//! GRPO (Shao et al. 2024; docs/algorithms/grpo.md).
//!
//! For each problem, sample a group of G responses; verify each for its reward `r_i`;
//! credit every sampled token of response `i` with the group-normalised advantage
//! `A_i = (r_i − mean(r)) / (std(r) + ε)`; train the clipped surrogate (ε = 0.2, dual clip
//! c = 3, token-mean, k3 KL β = 0.001). No feedback.
//!
//! ```toml
//! [method]
//! type = "grpo"
//! estimator = { kind = "grpo" }   # redraft_credit_assignment::AdvantageEstimator
//! [method.objective]              # redraft_objectives::RlvrOptions (changes to GRPO's preset)
//! kl_coef = 0.0
//! ```

use redraft_credit_assignment::AdvantageEstimator;
use redraft_objectives::{ObjectiveConfig, RlvrOptions};
use redraft_rollout_engine::{RolloutBatch, SingleTurnConfig, StrategyConfig};
use serde::{Deserialize, Serialize};

use super::groups::{group_rows, plain_rewards};
use super::{RowContext, TrainMethod};
use crate::config::RolloutConfig;
use crate::error::Result;
use crate::rows::TrainRows;

/// GRPO's options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GrpoMethod {
    /// The advantage estimator. Default GRPO's (ε 1e-6, unbiased std).
    pub estimator: AdvantageEstimator,
    /// Changes to GRPO's objective preset.
    pub objective: RlvrOptions,
}

impl Default for GrpoMethod {
    fn default() -> Self {
        Self {
            estimator: AdvantageEstimator::grpo(),
            objective: RlvrOptions::default(),
        }
    }
}

/// Single-turn groups of `rollout.group_size` samples: the strategy of the four RLVR methods.
pub(crate) fn single_turn(rollout: &RolloutConfig) -> StrategyConfig {
    StrategyConfig::SingleTurn(SingleTurnConfig {
        group_size: rollout.group_size,
    })
}

impl TrainMethod for GrpoMethod {
    /// 1. Rollout: a group of `rollout.group_size` single-turn samples per problem.
    fn strategy_config(&self, rollout: &RolloutConfig) -> StrategyConfig {
        single_turn(rollout)
    }

    /// 2. Credit: each sample's reward, group-normalised.
    fn rows(&self, batch: &RolloutBatch, _ctx: &RowContext<'_>) -> Result<TrainRows> {
        group_rows(batch, &self.estimator, plain_rewards)
    }

    /// 3. Objective: GRPO's clipped surrogate.
    fn objective_config(&self) -> ObjectiveConfig {
        ObjectiveConfig::Grpo(self.objective)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::methods::groups::fixtures::single_turn_batch;
    use crate::methods::tests::no_ctx;

    #[test]
    fn rows_carry_group_normalised_advantages_on_sampled_tokens() {
        let batch =
            single_turn_batch(&[&[(1.0, true), (0.0, false)], &[(0.0, false), (0.0, false)]]);
        let rows = no_ctx(|ctx| GrpoMethod::default().rows(&batch, ctx));
        assert_eq!(rows.rows.len(), 4);
        assert_eq!(rows.stats.groups_used, 2);
        assert_eq!(rows.stats.groups_filtered, 0);
        // (1 − 0.5) / (unbiased std 1/√2 + 1e-6) = 1/√2 on every sampled token, none on the
        // prompt.
        let first = &rows.rows[0];
        assert_eq!(first.mask, vec![false, false, true, true]);
        let a = first.advantages[2];
        assert!((a - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-4, "{a}");
        assert_eq!(first.advantages[..2], [0.0, 0.0]);
        assert!((rows.rows[1].advantages[3] + a).abs() < 1e-6);
        // An all-failed group trains with advantage 0 (GRPO keeps it).
        assert!(
            rows.rows[2..]
                .iter()
                .all(|r| r.advantages.iter().all(|x| *x == 0.0))
        );
    }
}
