//! RLTF-SD: RL from text feedback with self-distillation (Song et al.; docs/algorithms/rltf.md).
//!
//! 1. **Rollout:** critique and revision ([`super::rltf`]): a failed first attempt `y0` gets
//!    the verifier's critique `c0` (the default feedback) and a revision `y1` from the
//!    revision prompt `x1`.
//! 2. **Credit:** every turn's tokens carry RLTF's per-turn advantage (γ = 0.1).
//! 3. **Self-distillation:** each revision `y1` is re-scored under the *first* prompt `x0`
//!    (what the policy sees at test time) as a row of kind `self_distillation` with the SD
//!    advantage `A_SD` (baseline: the paper's first-turn mean by default, or the released
//!    code's second-turn return); its log-probs are the pre-update policy's at the rollout
//!    temperature, computed by the trainer.
//! 4. **Objective:** importance-sampling RL loss summed over tokens plus `rl_coef` (0.1) times
//!    the SD term on tokens with `log q ≥ −5`.
//!
//! ```toml
//! [method]
//! type = "rltf_sd"
//! self_distillation = { baseline = "second_turn", gamma = 0.1 }
//! [method.objective]   # redraft_objectives::RltfSdConfig
//! rl_coef = { kind = "constant", value = 1.0 }
//! [method.feedback]    # redraft_feedback_protocol::ProviderConfig
//! type = "verifier_critic"
//! # [method.strategy] # redraft_rollout_engine::RltfConfig (whole; group_size = rollout's)
//! ```

use redraft_credit_assignment::SelfDistillation;
use redraft_feedback_protocol::ProviderConfig;
use redraft_objectives::{ObjectiveConfig, RltfSdConfig, RowKind};
use redraft_rollout_engine::{Episode, RltfConfig, RolloutBatch, StrategyConfig};
use serde::{Deserialize, Serialize};

use super::rltf::{check_group_size, per_turn_rows, strategy, verifier_critic};
use super::{RowContext, TrainMethod};
use crate::config::RolloutConfig;
use crate::error::Result;
use crate::rows::{Row, TrainRows, TrainRowsBuilder};

/// RLTF-SD's options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RltfSdMethod {
    /// The critique-and-revision rollout, replacing RLTF's defaults as a whole (`group_size`
    /// must equal `rollout.group_size`). Default RLTF's with `rollout.group_size`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strategy: Option<RltfConfig>,
    /// The SD advantage's baseline and the turn discount.
    pub self_distillation: SelfDistillation,
    /// The objective (`rl_coef`, the log-prob threshold, the RL loss).
    pub objective: RltfSdConfig,
    /// The critic. Default the verifier's critique.
    pub feedback: ProviderConfig,
}

impl Default for RltfSdMethod {
    fn default() -> Self {
        Self {
            strategy: None,
            self_distillation: SelfDistillation::default(),
            objective: RltfSdConfig::default(),
            feedback: verifier_critic(),
        }
    }
}

impl TrainMethod for RltfSdMethod {
    /// 1. Rollout: critique and revision.
    fn strategy_config(&self, rollout: &RolloutConfig) -> StrategyConfig {
        strategy(self.strategy.as_ref(), rollout)
    }

    /// The critic.
    fn feedback(&self) -> Option<ProviderConfig> {
        Some(self.feedback.clone())
    }

    /// 2–3. Credit: per-turn rows, then each revision re-scored under the first prompt.
    fn rows(&self, batch: &RolloutBatch, _ctx: &RowContext<'_>) -> Result<TrainRows> {
        let sd = self.self_distillation;
        per_turn_rows(batch, sd.gamma, |episodes, turn_rewards, out| {
            self_distillation_rows(&sd, episodes, turn_rewards, out)
        })
    }

    /// 4. Objective: IS loss + `rl_coef` × SD.
    fn objective_config(&self) -> ObjectiveConfig {
        ObjectiveConfig::RltfSd(self.objective)
    }

    fn validate(&self, rollout: &RolloutConfig) -> Result<()> {
        check_group_size(self.strategy.as_ref().map(|s| s.group_size), rollout)?;
        super::validate_parts(self, rollout)
    }
}

/// Each revision `y1`, re-scored under the first prompt `x0`, with `A_SD`.
fn self_distillation_rows(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::methods::rltf::fixtures::{batch, revised};
    use crate::methods::tests::no_ctx;

    #[test]
    fn revisions_are_distilled_under_the_first_prompt() {
        let b = batch(vec![
            revised(0, 1.0, None),
            revised(0, 0.0, Some(1.0)),
            revised(0, 0.0, Some(0.0)),
        ]);
        let rows = no_ctx(|ctx| RltfSdMethod::default().rows(&b, ctx));
        // Policy rows: one per turn (1 + 2 + 2); SD rows: one per revision.
        assert_eq!(rows.stats.rows["policy"], 5);
        assert_eq!(rows.stats.rows["self_distillation"], 2);
        let sd: Vec<&Row> = rows
            .rows
            .iter()
            .filter(|r| r.kind == RowKind::SelfDistillation)
            .collect();
        // x0's prompt (ids 0..3) then y1's sampled ids (104, 105), only y1 trained.
        assert_eq!(sd[0].ids, vec![0, 1, 2, 104, 105]);
        assert_eq!(sd[0].mask, vec![false, false, true, true]);
        assert!(sd[0].old_logprobs.is_none());
        // First-turn baseline (the default): each revision's reward minus the mean
        // first-attempt reward 1/3.
        assert!(
            (sd[0].advantages[3] - 2.0 / 3.0).abs() < 1e-6,
            "{:?}",
            sd[0].advantages
        );
        assert!((sd[1].advantages[3] + 1.0 / 3.0).abs() < 1e-6);
        // The released code's second-turn baseline: the revisions against each other, ±0.5.
        let code = RltfSdMethod {
            self_distillation: SelfDistillation {
                baseline: redraft_credit_assignment::SdBaseline::SecondTurn,
                ..SelfDistillation::default()
            },
            ..RltfSdMethod::default()
        };
        let rows = no_ctx(|ctx| code.rows(&b, ctx));
        let sd: Vec<f32> = rows
            .rows
            .iter()
            .filter(|r| r.kind == RowKind::SelfDistillation)
            .map(|r| r.advantages[3])
            .collect();
        assert!(
            (sd[0] - 0.5).abs() < 1e-6 && (sd[1] + 0.5).abs() < 1e-6,
            "{sd:?}"
        );
        // The revision's own policy row trains only the revision's sampled tokens.
        let turn1 = &rows.rows[2];
        assert_eq!(turn1.ids[0], 100);
        assert_eq!(turn1.mask, vec![false, false, false, true, true]);
    }
}
