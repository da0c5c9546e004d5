//! RLTF (Song, Chen et al. 2026, arXiv 2602.02482; docs/algorithms/rltf.md): the multi-turn RL
//! term, plus either the self-distillation term (RLTF-SD) or the feedback-modelling
//! cross-entropy (RLTF-FM).
//!
//! ```text
//! multi-turn RL (policy rows: (x0, y0) with A_0, (x1, y1) with A_1 from per_turn_advantages):
//!     L_RL = Σ_{i,t} w_{i,t} · (−ρ_{i,t} A_{i,t})          tinker "importance_sampling", Σ over tokens
//!
//! RLTF-SD (self-distillation rows: y1 scored under x0, advantages = A_SD):
//!     keep_t = 1[log q_t ≥ −5]       q = the pre-update policy on (x0, y1) = the sampling log-probs
//!     adv_t  = rl_coef(step) · A_SD · keep_t
//!     L_SD   = Σ_{i,t} w_{i,t} · (−exp(log π_θ − log q) adv_t)     (ratio 1 at the one on-policy step:
//!                                                                    the AWR gradient A ∇ log π(y1 | x0))
//!     L      = L_RL + L_SD                                  (one loss, one aggregation over both)
//!
//! RLTF-FM (auxiliary rows: the critique c under the critique prompt):
//!     L_FM   = Σ_{i,t} w'_{i,t} · (−log π_θ(c_t | prompt, c_<t))
//!     L      = L_RL + λ L_FM                                 λ = sft_loss_weight = 0.1
//! ```
//!
//! The SD rows carry the sequence-level `A_SD` (from `SelfDistillation::advantages` in
//! redraft-credit-assignment, broadcast over the row's tokens): this objective applies
//! `rl_coef` and the log-prob mask. Without sampling log-probs the detached current log-probs
//! stand in for `log q` (the released code's situation: one update per batch).

use redraft_credit_assignment::LossAggregation;
use serde::{Deserialize, Serialize};

use crate::error::{Result, check_non_negative, check_param};
use crate::terms::{
    AnyTerm, Clip, FeedbackModelling, POLICY, POLICY_SD, PolicyGradient, SelfDistillation,
    Surrogate, Terms, composed_objective,
};

/// The loss of the multi-turn RL term.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RltfRlLoss {
    /// tinker's `importance_sampling`: `−ρ A`, no clip (RLTF-SD and RLTF-FM). Default.
    #[default]
    ImportanceSampling,
    /// tinker's `ppo`: `−min(ρA, clip(ρ, 1 − ε_low, 1 + ε_high) A)`, no dual clip (the
    /// multi-turn GRPO baseline, thresholds 0.8 / 1.2).
    Ppo,
}

/// A coefficient that may change with the training step. Serialised with a `kind` tag:
/// `{"kind": "constant", "value": 0.1}`, `{"kind": "linear", "start": 0.0, "end": 0.1,
/// "steps": 200}`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum CoefSchedule {
    /// The same value at every step.
    Constant {
        /// The value.
        value: f64,
    },
    /// `start + (end − start) · min(step / steps, 1)` (RLTF's DAPO preset: 0 → 0.1 over
    /// training).
    Linear {
        /// Value at step 0.
        start: f64,
        /// Value from step `steps` on.
        end: f64,
        /// Length of the ramp, in steps (> 0).
        steps: u64,
    },
}

impl CoefSchedule {
    /// The coefficient at `step`.
    pub fn at(&self, step: u64) -> f64 {
        match *self {
            Self::Constant { value } => value,
            Self::Linear { start, end, steps } => {
                let f = if steps == 0 {
                    1.0
                } else {
                    (step as f64 / steps as f64).min(1.0)
                };
                start + (end - start) * f
            }
        }
    }

    fn validate(&self) -> Result<()> {
        match *self {
            Self::Constant { value } => check_non_negative("rl_coef", value),
            Self::Linear { start, end, steps } => {
                check_non_negative("rl_coef.start", start)?;
                check_non_negative("rl_coef.end", end)?;
                check_param("rl_coef.steps", steps as f64, steps > 0, "must be > 0")
            }
        }
    }
}

fn d_rl_coef() -> CoefSchedule {
    CoefSchedule::Constant { value: 0.1 }
}
fn d_threshold() -> f64 {
    -5.0
}
fn d_clip() -> f64 {
    0.2
}
fn d_token_sum() -> LossAggregation {
    LossAggregation::TokenSum
}
fn d_fm_coef() -> f64 {
    0.1
}

/// RLTF-SD settings. Defaults: the released code (`distillation_mode="rl_reweight_mask"`):
/// importance-sampling RL loss summed over tokens, `rl_coef` 0.1, threshold −5.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RltfSdConfig {
    /// The multi-turn RL loss. Default importance sampling.
    #[serde(default)]
    pub rl_loss: RltfRlLoss,
    /// ε_low of [`RltfRlLoss::Ppo`]. Default 0.2.
    #[serde(default = "d_clip")]
    pub clip_low: f64,
    /// ε_high of [`RltfRlLoss::Ppo`]. Default 0.2.
    #[serde(default = "d_clip")]
    pub clip_high: f64,
    /// Aggregation of the RL + SD loss. Default token-sum (tinker).
    #[serde(default = "d_token_sum")]
    pub aggregation: LossAggregation,
    /// The SD coefficient `rl_coef`. Default constant 0.1.
    #[serde(default = "d_rl_coef")]
    pub rl_coef: CoefSchedule,
    /// SD tokens with `log q < threshold` get advantage 0. Default −5.
    #[serde(default = "d_threshold")]
    pub logprob_threshold: f64,
}

impl Default for RltfSdConfig {
    fn default() -> Self {
        Self {
            rl_loss: RltfRlLoss::ImportanceSampling,
            clip_low: 0.2,
            clip_high: 0.2,
            aggregation: LossAggregation::TokenSum,
            rl_coef: d_rl_coef(),
            logprob_threshold: -5.0,
        }
    }
}

/// RLTF-FM settings. Defaults: the released code (`distillation_mode="feedback_modeling"`):
/// importance-sampling RL loss and critique cross-entropy, both summed over tokens,
/// λ = 0.1.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RltfFmConfig {
    /// The multi-turn RL loss. Default importance sampling.
    #[serde(default)]
    pub rl_loss: RltfRlLoss,
    /// ε_low of [`RltfRlLoss::Ppo`]. Default 0.2.
    #[serde(default = "d_clip")]
    pub clip_low: f64,
    /// ε_high of [`RltfRlLoss::Ppo`]. Default 0.2.
    #[serde(default = "d_clip")]
    pub clip_high: f64,
    /// Aggregation of the RL loss. Default token-sum (tinker).
    #[serde(default = "d_token_sum")]
    pub aggregation: LossAggregation,
    /// λ (`sft_loss_weight`). Default 0.1.
    #[serde(default = "d_fm_coef")]
    pub fm_coef: f64,
    /// Aggregation of the critique cross-entropy. Default token-sum (tinker
    /// `cross_entropy`).
    #[serde(default = "d_token_sum")]
    pub fm_aggregation: LossAggregation,
}

impl Default for RltfFmConfig {
    fn default() -> Self {
        Self {
            rl_loss: RltfRlLoss::ImportanceSampling,
            clip_low: 0.2,
            clip_high: 0.2,
            aggregation: LossAggregation::TokenSum,
            fm_coef: 0.1,
            fm_aggregation: LossAggregation::TokenSum,
        }
    }
}

/// The RLTF objective: the multi-turn RL term on [`RowKind::Policy`](crate::RowKind::Policy)
/// rows plus the self-distillation term on
/// [`RowKind::SelfDistillation`](crate::RowKind::SelfDistillation) rows (RLTF-SD) or the
/// feedback-modelling term on [`RowKind::Auxiliary`](crate::RowKind::Auxiliary) rows
/// (RLTF-FM).
#[derive(Debug, Clone, PartialEq)]
pub struct RltfObjective {
    terms: Terms,
}

/// The surrogate of the multi-turn RL term.
fn rl_surrogate(rl_loss: RltfRlLoss, clip_low: f64, clip_high: f64) -> Result<Surrogate> {
    check_param(
        "clip_low",
        clip_low,
        (0.0..1.0).contains(&clip_low),
        "must be in [0, 1)",
    )?;
    check_non_negative("clip_high", clip_high)?;
    Ok(Surrogate::Ratio(match rl_loss {
        RltfRlLoss::ImportanceSampling => None,
        RltfRlLoss::Ppo => Some(Clip {
            low: clip_low,
            high: clip_high,
            dual_c: None,
        }),
    }))
}

impl RltfSdConfig {
    /// The terms: the RL term and the self-distillation term, one aggregation over both.
    pub(crate) fn terms(&self) -> Result<Vec<AnyTerm>> {
        self.rl_coef.validate()?;
        check_param(
            "logprob_threshold",
            self.logprob_threshold,
            true,
            "must be finite",
        )?;
        let surrogate = rl_surrogate(self.rl_loss, self.clip_low, self.clip_high)?;
        Ok(vec![
            AnyTerm::PolicyGradient(PolicyGradient {
                surrogate,
                aggregation: self.aggregation,
                unit: POLICY_SD,
            }),
            AnyTerm::SelfDistillation(SelfDistillation {
                surrogate,
                aggregation: self.aggregation,
                rl_coef: self.rl_coef,
                threshold: self.logprob_threshold,
            }),
        ])
    }
}

impl RltfFmConfig {
    /// The terms: the RL term and the feedback-modelling term.
    pub(crate) fn terms(&self) -> Result<Vec<AnyTerm>> {
        check_non_negative("fm_coef", self.fm_coef)?;
        let surrogate = rl_surrogate(self.rl_loss, self.clip_low, self.clip_high)?;
        Ok(vec![
            AnyTerm::PolicyGradient(PolicyGradient {
                surrogate,
                aggregation: self.aggregation,
                unit: POLICY,
            }),
            AnyTerm::FeedbackModelling(FeedbackModelling {
                coef: self.fm_coef,
                aggregation: self.fm_aggregation,
            }),
        ])
    }
}

impl RltfObjective {
    /// RLTF-SD.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`](crate::Error::InvalidParameter).
    pub fn self_distillation(config: RltfSdConfig) -> Result<Self> {
        Ok(Self {
            terms: Terms::new("rltf_sd", config.terms()?),
        })
    }

    /// RLTF-FM.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`](crate::Error::InvalidParameter).
    pub fn feedback_modeling(config: RltfFmConfig) -> Result<Self> {
        Ok(Self {
            terms: Terms::new("rltf_fm", config.terms()?),
        })
    }
}

composed_objective!(RltfObjective);
