//! RLTF-FM: RL from text feedback with feedback modelling (Song et al.;
//! docs/algorithms/rltf.md).
//!
//! 1. **Rollout:** critique and revision, as RLTF-SD ([`super::rltf`]).
//! 2. **Credit:** every turn's tokens carry RLTF's per-turn advantage (γ = 0.1).
//! 3. **Feedback modelling:** the critique `c0` of each failed first attempt becomes the
//!    target of the feedback-modelling prompt (`rltf_critique`: question and attempt), an
//!    auxiliary row, so that the policy learns to critique itself.
//! 4. **Objective:** importance-sampling RL loss plus λ = 0.1 times the critique
//!    cross-entropy.
//!
//! ```toml
//! [method]
//! type = "rltf_fm"
//! [method.objective]   # redraft_objectives::RltfFmConfig
//! fm_coef = 0.1
//! fm_aggregation = { kind = "token_mean" }
//! [method.feedback]    # redraft_feedback_protocol::ProviderConfig
//! type = "verifier_critic"
//! ```

use redraft_credit_assignment::RLTF_GAMMA;
use redraft_feedback_protocol::ProviderConfig;
use redraft_objectives::{ObjectiveConfig, RltfFmConfig};
use redraft_rollout_engine::prompts::critique_message;
use redraft_rollout_engine::{Episode, RltfConfig, RolloutBatch, StrategyConfig};
use serde::{Deserialize, Serialize};

use super::rltf::{check_group_size, per_turn_rows, strategy, verifier_critic};
use super::{RowContext, TrainMethod};
use crate::config::RolloutConfig;
use crate::error::Result;
use crate::rows::{Row, TrainRows, supervised_ids};

/// RLTF-FM's options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RltfFmMethod {
    /// The critique-and-revision rollout, replacing RLTF's defaults as a whole (`group_size`
    /// must equal `rollout.group_size`). Default RLTF's with `rollout.group_size`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strategy: Option<RltfConfig>,
    /// The objective (λ, the RL loss, aggregations).
    pub objective: RltfFmConfig,
    /// The critic. Default the verifier's critique.
    pub feedback: ProviderConfig,
}

impl Default for RltfFmMethod {
    fn default() -> Self {
        Self {
            strategy: None,
            objective: RltfFmConfig::default(),
            feedback: verifier_critic(),
        }
    }
}

impl TrainMethod for RltfFmMethod {
    /// 1. Rollout: critique and revision.
    fn strategy_config(&self, rollout: &RolloutConfig) -> StrategyConfig {
        strategy(self.strategy.as_ref(), rollout)
    }

    /// The critic.
    fn feedback(&self) -> Option<ProviderConfig> {
        Some(self.feedback.clone())
    }

    /// 2–3. Credit: per-turn rows, then each critique as a feedback-modelling row.
    fn rows(&self, batch: &RolloutBatch, ctx: &RowContext<'_>) -> Result<TrainRows> {
        per_turn_rows(batch, RLTF_GAMMA, |episodes, _, out| {
            for e in episodes {
                if let Some(row) = feedback_modelling_row(ctx, e)? {
                    out.rows.push(row);
                }
            }
            Ok(())
        })
    }

    /// 4. Objective: IS loss + λ × critique cross-entropy.
    fn objective_config(&self) -> ObjectiveConfig {
        ObjectiveConfig::RltfFm(self.objective)
    }

    fn validate(&self, rollout: &RolloutConfig) -> Result<()> {
        check_group_size(self.strategy.as_ref().map(|s| s.group_size), rollout)?;
        super::validate_parts(self, rollout)
    }
}

/// The critique of the first attempt as the target of the feedback-modelling prompt
/// (`rltf_critique`) for that attempt. Episodes that ended after a correct first attempt have
/// no critique and no row.
fn feedback_modelling_row(ctx: &RowContext<'_>, e: &Episode) -> Result<Option<Row>> {
    let critique = e.feedback.iter().find_map(|f| f.feedback.as_ref());
    let (Some(first), Some(critique), true) = (e.turns.first(), critique, e.turns.len() > 1) else {
        return Ok(None);
    };
    let prompt = critique_message(ctx.templates, &ctx.problems[e.problem], &first.text)?;
    let ids = supervised_ids(ctx.tokenizer, &[prompt], "", &critique.text)?;
    Ok(Some(ids.into_row(e.problem)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::methods::rltf::fixtures::{batch, revised};
    use crate::methods::tests::with_ctx;
    use redraft_objectives::RowKind;

    #[test]
    fn critiques_become_feedback_modelling_rows() {
        let b = batch(vec![revised(0, 1.0, None), revised(0, 0.0, Some(1.0))]);
        let rows = with_ctx(|ctx| RltfFmMethod::default().rows(&b, ctx));
        assert_eq!(rows.stats.rows["policy"], 3);
        let aux: Vec<&Row> = rows
            .rows
            .iter()
            .filter(|r| r.kind == RowKind::Auxiliary)
            .collect();
        assert_eq!(aux.len(), 1, "only the revised episode has a critique");
        // The byte tokenizer: the trained targets are the critique's bytes and the end of turn.
        assert_eq!(aux[0].trained(), "carry the one".len() + 1);
        assert!(
            rows.rows
                .iter()
                .all(|r| r.kind != RowKind::SelfDistillation)
        );
    }
}
