//! Dr.GRPO (Liu et al. 2025; docs/algorithms/dr-grpo.md): GRPO without its two biases.
//!
//! The group advantage subtracts the mean and divides by nothing, `A_i = r_i − mean(r)`
//! (no std normalisation), and the loss sums over tokens and divides by a constant
//! (`seq-mean-token-sum-norm`, no length bias); clipped surrogate ε = 0.2, no KL. Single-turn
//! groups as GRPO. No feedback.
//!
//! ```toml
//! [method]
//! type = "dr_grpo"
//! [method.objective]   # redraft_objectives::RlvrOptions (changes to Dr.GRPO's preset)
//! clip_high = 0.28
//! ```

use redraft_credit_assignment::AdvantageEstimator;
use redraft_objectives::{ObjectiveConfig, RlvrOptions};
use redraft_rollout_engine::{RolloutBatch, StrategyConfig};
use serde::{Deserialize, Serialize};

use super::groups::{group_rows, plain_rewards};
use super::grpo::single_turn;
use super::{RowContext, TrainMethod};
use crate::config::RolloutConfig;
use crate::error::Result;
use crate::rows::TrainRows;

/// Dr.GRPO's options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DrGrpoMethod {
    /// The advantage estimator. Default Dr.GRPO's (mean subtracted, nothing divided).
    pub estimator: AdvantageEstimator,
    /// Changes to Dr.GRPO's objective preset.
    pub objective: RlvrOptions,
}

impl Default for DrGrpoMethod {
    fn default() -> Self {
        Self {
            estimator: AdvantageEstimator::DrGrpo,
            objective: RlvrOptions::default(),
        }
    }
}

impl TrainMethod for DrGrpoMethod {
    /// 1. Rollout: single-turn groups, as GRPO.
    fn strategy_config(&self, rollout: &RolloutConfig) -> StrategyConfig {
        single_turn(rollout)
    }

    /// 2. Credit: `r_i − mean(r)` on every sampled token.
    fn rows(&self, batch: &RolloutBatch, _ctx: &RowContext<'_>) -> Result<TrainRows> {
        group_rows(batch, &self.estimator, plain_rewards)
    }

    /// 3. Objective: the clipped surrogate, token-sum over a constant.
    fn objective_config(&self) -> ObjectiveConfig {
        ObjectiveConfig::DrGrpo(self.objective)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::methods::groups::fixtures::single_turn_batch;
    use crate::methods::tests::no_ctx;

    #[test]
    fn rows_subtract_the_group_mean_without_dividing() {
        let batch = single_turn_batch(&[&[(1.0, true), (0.0, false), (0.0, false), (0.0, false)]]);
        let rows = no_ctx(|ctx| DrGrpoMethod::default().rows(&batch, ctx));
        let seq: Vec<f32> = rows
            .rows
            .iter()
            .map(|r| *r.advantages.last().unwrap())
            .collect();
        assert_eq!(seq, vec![0.75, -0.25, -0.25, -0.25]);
        assert!(matches!(
            DrGrpoMethod::default().objective_config(),
            ObjectiveConfig::DrGrpo(_)
        ));
    }
}
