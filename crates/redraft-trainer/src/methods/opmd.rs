//! OPMD (online policy mirror descent, as in Trinity-RFT; docs/algorithms/opmd.md).
//!
//! Single-turn groups as GRPO; the advantage is the reward minus the group's mean, without
//! normalisation (`A_i = r_i − mean(r)`); the OPMD objective (τ = 1, factor ½, token-mean,
//! no KL). No feedback.
//!
//! ```toml
//! [method]
//! type = "opmd"
//! [method.objective]   # redraft_objectives::OpmdConfig
//! tau = 1.0
//! ```

use redraft_credit_assignment::AdvantageEstimator;
use redraft_objectives::{ObjectiveConfig, OpmdConfig};
use redraft_rollout_engine::{RolloutBatch, StrategyConfig};
use serde::{Deserialize, Serialize};

use super::groups::{group_rows, plain_rewards};
use super::grpo::single_turn;
use super::{RowContext, TrainMethod};
use crate::config::RolloutConfig;
use crate::error::Result;
use crate::rows::TrainRows;

/// OPMD's options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpmdMethod {
    /// The advantage estimator. Default the OPMD mean baseline.
    pub estimator: AdvantageEstimator,
    /// The objective's settings.
    pub objective: OpmdConfig,
}

impl Default for OpmdMethod {
    fn default() -> Self {
        Self {
            estimator: AdvantageEstimator::OpmdMean,
            objective: OpmdConfig::default(),
        }
    }
}

impl TrainMethod for OpmdMethod {
    /// 1. Rollout: single-turn groups, as GRPO.
    fn strategy_config(&self, rollout: &RolloutConfig) -> StrategyConfig {
        single_turn(rollout)
    }

    /// 2. Credit: the reward minus the group mean.
    fn rows(&self, batch: &RolloutBatch, _ctx: &RowContext<'_>) -> Result<TrainRows> {
        group_rows(batch, &self.estimator, plain_rewards)
    }

    /// 3. Objective: OPMD.
    fn objective_config(&self) -> ObjectiveConfig {
        ObjectiveConfig::Opmd(self.objective)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::methods::groups::fixtures::single_turn_batch;
    use crate::methods::tests::no_ctx;

    #[test]
    fn rows_use_the_mean_baseline() {
        let batch = single_turn_batch(&[&[(1.0, true), (1.0, true), (0.0, false), (1.0, true)]]);
        let rows = no_ctx(|ctx| OpmdMethod::default().rows(&batch, ctx));
        let seq: Vec<f32> = rows
            .rows
            .iter()
            .map(|r| *r.advantages.last().unwrap())
            .collect();
        assert_eq!(seq, vec![0.25, 0.25, -0.75, 0.25]);
    }
}
