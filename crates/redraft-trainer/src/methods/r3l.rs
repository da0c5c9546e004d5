//! R^3L: reflect, then retry, with reinforcement (docs/algorithms/r3l.md).
//!
//! 1. **Rollout** (reflect-then-retry): base trajectories per problem; a failed one gets a
//!    reflection (default: the policy's own self-reflection report) naming the pivot turn `k`
//!    and guidance; a guided retry restarts with the guidance; a retry that improves is also
//!    kept as a *distilled* copy with the guidance removed.
//! 2. **Credit:** bases and distilled retries of a problem form one group; positive
//!    amplification turns their rewards into advantages (the released code's form by
//!    default: successes get 1, non-negative advantages of failures ×α); **pivotal credit**
//!    (marked by the strategy, [`Sequence::credit_mask`]) trains a retried base only from the
//!    reflection's pivot on, while a distilled retry trains every token it sampled itself.
//!    Guided retries that improved, and the reflections that led to them, are the strategy's
//!    auxiliary SFT items: auxiliary rows (advantage 1).
//! 3. **Objective:** the OPMD-based R^3L loss (τ = 1, token-mean, k2 KL β = 0.001) with the
//!    auxiliary rows in the RL loss.
//!
//! [`Sequence::credit_mask`]: redraft_rollout_engine::Sequence::credit_mask
//!
//! ```toml
//! [method]
//! type = "r3l"
//! positive_amplification = { form = "code", alpha = 3.0 }
//! [method.strategy]    # redraft_rollout_engine::R3lConfig (whole)
//! base_per_problem = 4
//! max_attempts = 1
//! [method.objective]   # redraft_objectives::R3lConfig
//! [method.feedback]    # redraft_feedback_protocol::ProviderConfig
//! type = "verifier_critic"
//! ```

use redraft_credit_assignment::{AdvantageFn, PositiveAmplification};
use redraft_feedback_protocol::ProviderConfig;
use redraft_objectives::{
    ObjectiveConfig, R3lBase, R3lConfig as R3lObjectiveConfig, RlvrOptions, RowKind,
};
use redraft_rollout_engine::{
    GroupUse, R3lConfig as R3lStrategyConfig, RolloutBatch, StrategyConfig,
};
use serde::{Deserialize, Serialize};

use super::groups::members;
use super::{RowContext, TrainMethod};
use crate::config::RolloutConfig;
use crate::error::{Error, Result};
use crate::rows::{Row, TrainRows, TrainRowsBuilder};

/// R^3L's options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct R3lMethod {
    /// Reflect-then-retry settings, replacing the defaults as a whole. Default: R^3L's with
    /// half of `rollout.group_size` (at least 1) base trajectories per problem, the other half
    /// of the budget for retries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strategy: Option<R3lStrategyConfig>,
    /// Positive amplification. Default the released code's form.
    pub positive_amplification: PositiveAmplification,
    /// The objective.
    pub objective: R3lObjectiveConfig,
    /// The reflection. Default the policy's own self-reflection.
    pub feedback: ProviderConfig,
}

impl Default for R3lMethod {
    fn default() -> Self {
        Self {
            strategy: None,
            positive_amplification: PositiveAmplification::default(),
            objective: R3lObjectiveConfig::default(),
            feedback: ProviderConfig::SelfReflection {
                reflection: Default::default(),
                templates: Default::default(),
            },
        }
    }
}

impl TrainMethod for R3lMethod {
    /// 1. Rollout: reflect-then-retry.
    fn strategy_config(&self, rollout: &RolloutConfig) -> StrategyConfig {
        StrategyConfig::R3l(self.strategy.clone().unwrap_or_else(|| R3lStrategyConfig {
            base_per_problem: (rollout.group_size / 2).max(1),
            ..R3lStrategyConfig::default()
        }))
    }

    /// The reflection.
    fn feedback(&self) -> Option<ProviderConfig> {
        Some(self.feedback.clone())
    }

    /// 2. Credit: positive amplification over each problem's bases and distilled retries,
    ///    the strategy's pivotal-credit masks ([`Sequence::credit_mask`]), and the strategy's
    ///    auxiliary SFT items (guided retries, successful reflections: its [`GroupUse::Sft`]
    ///    groups) as auxiliary rows.
    fn rows(&self, batch: &RolloutBatch, _ctx: &RowContext<'_>) -> Result<TrainRows> {
        let mut out = TrainRowsBuilder::default();
        for group in &batch.groups {
            let episodes = members(batch, &group.episodes);
            match group.usage {
                GroupUse::Rl => {
                    let rewards: Vec<f32> = episodes.iter().map(|e| e.reward).collect();
                    let adv = self.positive_amplification.group_advantages(&rewards)?;
                    out.rows.stats.groups_used += 1;
                    for (e, a) in episodes.iter().zip(adv) {
                        let seq = &e.sequences[0];
                        let row = Row::from_sequence(
                            seq,
                            &seq.credit_mask(),
                            a,
                            RowKind::Policy,
                            e.problem,
                        );
                        out.push_policy(row, a);
                    }
                }
                GroupUse::Sft => {
                    for e in &episodes {
                        let seq = &e.sequences[0];
                        let row = Row::from_sequence(
                            seq,
                            &seq.credit_mask(),
                            1.0,
                            RowKind::Auxiliary,
                            e.problem,
                        );
                        out.rows.push(row);
                    }
                }
                _ => {}
            }
        }
        Ok(out.finish())
    }

    /// 3. Objective: R^3L's.
    fn objective_config(&self) -> ObjectiveConfig {
        ObjectiveConfig::R3l(self.objective)
    }

    /// Also refuses the GRPO-base settings R^3L never reads.
    fn validate(&self, rollout: &RolloutConfig) -> Result<()> {
        let grpo = &self.objective.grpo;
        let own = [
            ("kl_coef", grpo.kl_coef.is_some()),
            ("kl_estimator", grpo.kl_estimator.is_some()),
            ("aggregation", grpo.aggregation.is_some()),
            ("entropy_coef", grpo.entropy_coef.is_some()),
        ];
        if let Some((key, _)) = own.iter().find(|(_, set)| *set) {
            return Err(Error::config(
                format!("method.objective.grpo.{key}"),
                format!("R^3L reads `method.objective.{key}` for either base, never this one"),
            ));
        }
        if self.objective.base == R3lBase::Opmd && *grpo != RlvrOptions::default() {
            return Err(Error::config(
                "method.objective.grpo",
                "read only with `base = \"grpo\"` (the base is opmd)",
            ));
        }
        super::validate_parts(self, rollout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::methods::groups::fixtures::episode;
    use crate::methods::tests::no_ctx;
    use redraft_rollout_engine::Episode;

    /// Two attempts: ids 0..7, assistant segments 2..4 and 5..7.
    fn two_attempts(reward: f32) -> Episode {
        let mut e = episode(0, 4, reward, reward >= 1.0);
        e.sequences[0].trainable_mask = vec![false, false, true, true, false, true, true];
        e
    }

    #[test]
    fn rows_amplify_successes_and_follow_the_strategys_pivotal_masks() {
        let mut batch = RolloutBatch::default();
        let base = two_attempts(0.0);
        let mut base = base;
        let mut distilled = two_attempts(1.0);
        distilled.provenance.distilled = true;
        distilled.provenance.base = Some(0);
        distilled.provenance.pivot = Some(1);
        // The strategy marks the attempts before the pivot k = 1 (ids 2..4) as not trained.
        let before_pivot = std::iter::once(2..4);
        base.sequences[0].untrained = before_pivot.clone().collect();
        distilled.sequences[0].untrained = before_pivot.collect();
        distilled.sequences[0].rescore = true;
        batch.push_group(0, 0, GroupUse::Rl, vec![base, distilled]);
        let guided = two_attempts(1.0);
        batch.push_group(0, 0, GroupUse::Sft, vec![guided]);
        batch.push_group(0, 0, GroupUse::Unused, vec![two_attempts(0.0)]);
        let rows = no_ctx(|ctx| R3lMethod::default().rows(&batch, ctx));
        assert_eq!(rows.rows.len(), 3, "unused retries give no row");
        // Code form: the success gets 1, the failure its centred reward −0.5.
        let (b, d, aux) = (&rows.rows[0], &rows.rows[1], &rows.rows[2]);
        // Pivot k = 1: the first attempt (targets 1..3) is not trained in either copy.
        let trained = vec![false, false, false, false, true, true];
        assert_eq!(b.mask, trained);
        assert_eq!(d.mask, trained);
        assert_eq!(b.advantages[5], -0.5);
        assert!(b.old_logprobs.is_some());
        assert!(d.old_logprobs.is_none(), "a distilled copy is re-scored");
        assert_eq!(d.advantages[5], 1.0);
        assert_eq!(aux.kind, RowKind::Auxiliary);
        assert_eq!(aux.mask, vec![false, true, true, false, true, true]);
        assert_eq!(aux.advantages[1], 1.0);
        assert_eq!(rows.stats.groups_used, 1);
    }
}
