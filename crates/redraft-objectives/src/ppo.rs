//! RLVR: the PPO-style clipped surrogate with clip-higher, dual clip, the verl aggregation
//! modes, a KL penalty to a reference and an optional entropy bonus; presets GRPO, Dr.GRPO
//! and DAPO (docs/algorithms/grpo.md).
//!
//! Per trainable token, with `ρ = exp(clamp(log π_θ − log π_old, −20, 20))`:
//!
//! ```text
//! ℓ₁ = −A ρ,   ℓ₂ = −A clip(ρ, 1 − ε_low, 1 + ε_high),   ℓ_clip = max(ℓ₁, ℓ₂)
//! ℓ  = min(ℓ_clip, −A c)   if A < 0 and dual clip is on        (verl clip_ratio_c = c)
//!    = ℓ_clip              otherwise
//! L  = Σ_{i,t} w_{i,t} ℓ_{i,t}  +  β Σ_{i,t} w_{i,t} KL_{i,t}  −  η Σ_{i,t} w_{i,t} H_{i,t}
//! ```
//!
//! `w` are the aggregation weights of [`LossAggregation`] (verl's `agg_loss`); KL is one of
//! the [`KlEstimator`]s against `log π_ref`; `H` the per-token entropy. Without sampling
//! log-probs in the batch, `log π_old` is the detached `log π_θ` (on-policy: ρ = 1 in value,
//! `∇ρ = ∇ log π_θ`).

use redraft_credit_assignment::LossAggregation;
use serde::{Deserialize, Serialize};

use crate::error::{Result, check_non_negative, check_param};
use crate::kl::KlEstimator;
use crate::terms::{
    AnyTerm, Clip, POLICY, Surrogate, Terms, composed_objective, regularised_policy,
};

/// Settings of the clipped surrogate and its regularisers. Every field has a default (the
/// GRPO preset, verl's `grpo.md` settings), so a config file names only what it changes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RlvrConfig {
    /// ε_low: the ratio is clipped from below at `1 − ε_low`. Default 0.2.
    #[serde(default = "d_clip")]
    pub clip_low: f64,
    /// ε_high: the ratio is clipped from above at `1 + ε_high` (DAPO's clip-higher: 0.28).
    /// Default 0.2.
    #[serde(default = "d_clip")]
    pub clip_high: f64,
    /// Dual clip for negative advantages (verl): `ℓ = min(ℓ_clip, −A c)`. Default on.
    #[serde(default = "d_true")]
    pub dual_clip: bool,
    /// `c`, verl's `clip_ratio_c` (> 1). Default 3.
    #[serde(default = "d_clip_c")]
    pub clip_ratio_c: f64,
    /// How per-token losses are reduced. Default verl `token-mean`.
    #[serde(default)]
    pub aggregation: LossAggregation,
    /// β, the KL coefficient (0 disables the term; reference log-probs are then optional).
    /// Default 0.001 (verl's GRPO example).
    #[serde(default = "d_kl_coef")]
    pub kl_coef: f64,
    /// The KL estimator. Default k3 (`low_var_kl`).
    #[serde(default)]
    pub kl_estimator: KlEstimator,
    /// η, the entropy-bonus coefficient (0 disables it). Default 0.
    #[serde(default)]
    pub entropy_coef: f64,
}

fn d_clip() -> f64 {
    0.2
}
fn d_true() -> bool {
    true
}
fn d_clip_c() -> f64 {
    3.0
}
fn d_kl_coef() -> f64 {
    0.001
}

impl Default for RlvrConfig {
    fn default() -> Self {
        Self::grpo()
    }
}

impl RlvrConfig {
    /// GRPO as verl runs it (`docs/algo/grpo.md`): ε 0.2, dual clip c = 3, `token-mean`,
    /// k3 KL with β = 0.001, no entropy bonus. (The GRPO paper: β = 0.04 and
    /// `seq-mean-token-mean`; see docs/algorithms/grpo.md.)
    pub fn grpo() -> Self {
        Self {
            clip_low: 0.2,
            clip_high: 0.2,
            dual_clip: true,
            clip_ratio_c: 3.0,
            aggregation: LossAggregation::TokenMean,
            kl_coef: 0.001,
            kl_estimator: KlEstimator::K3,
            entropy_coef: 0.0,
        }
    }

    /// Dr.GRPO: ε 0.2, `seq-mean-token-sum-norm` (Σ over tokens / a constant), no KL. The
    /// constant is the batch's response length budget
    /// ([`PolicyBatch::with_response_budget`](crate::PolicyBatch::with_response_budget), the
    /// rollout's `max_new_tokens`) unless the aggregation sets `constant`.
    pub fn dr_grpo() -> Self {
        Self {
            aggregation: LossAggregation::SeqMeanTokenSumNorm { constant: None },
            kl_coef: 0.0,
            ..Self::grpo()
        }
    }

    /// DAPO: clip-higher ε_low 0.2 / ε_high 0.28, `token-mean`, no KL; dual clip with
    /// c = 10 as in verl's DAPO recipe scripts (`clip_ratio_c=10.0`).
    pub fn dapo() -> Self {
        Self {
            clip_high: 0.28,
            clip_ratio_c: 10.0,
            kl_coef: 0.0,
            ..Self::grpo()
        }
    }

    /// Generic PPO clip with verl's actor defaults: ε 0.2, dual clip c = 3, `token-mean`,
    /// no KL loss, no entropy bonus.
    pub fn ppo() -> Self {
        Self {
            kl_coef: 0.0,
            ..Self::grpo()
        }
    }

    /// Checks the ranges: `0 ≤ ε_low < 1`, `ε_high ≥ 0`, `c > 1`, `β, η ≥ 0`.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`](crate::Error::InvalidParameter).
    pub fn validate(&self) -> Result<()> {
        check_param(
            "clip_low",
            self.clip_low,
            (0.0..1.0).contains(&self.clip_low),
            "must be in [0, 1)",
        )?;
        check_non_negative("clip_high", self.clip_high)?;
        check_param(
            "clip_ratio_c",
            self.clip_ratio_c,
            self.clip_ratio_c > 1.0,
            "must be > 1",
        )?;
        check_non_negative("kl_coef", self.kl_coef)?;
        check_non_negative("entropy_coef", self.entropy_coef)
    }

    pub(crate) fn clip(&self) -> Clip {
        Clip {
            low: self.clip_low,
            high: self.clip_high,
            dual_c: self.dual_clip.then_some(self.clip_ratio_c),
        }
    }

    /// The terms: the clipped surrogate, the KL penalty and the entropy bonus on the policy
    /// rows.
    pub(crate) fn terms(&self) -> Vec<AnyTerm> {
        regularised_policy(
            Surrogate::Ratio(Some(self.clip())),
            self.aggregation,
            (self.kl_coef, self.kl_estimator),
            self.entropy_coef,
            POLICY,
        )
    }
}

/// Changes to an [`RlvrConfig`] preset: what a config file under `type = "grpo"`,
/// `"dr_grpo"`, `"dapo"` or `"ppo_clip"` contains. Missing fields keep the preset's value.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RlvrOptions {
    /// See [`RlvrConfig::clip_low`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip_low: Option<f64>,
    /// See [`RlvrConfig::clip_high`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip_high: Option<f64>,
    /// See [`RlvrConfig::dual_clip`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dual_clip: Option<bool>,
    /// See [`RlvrConfig::clip_ratio_c`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip_ratio_c: Option<f64>,
    /// See [`RlvrConfig::aggregation`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregation: Option<LossAggregation>,
    /// See [`RlvrConfig::kl_coef`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kl_coef: Option<f64>,
    /// See [`RlvrConfig::kl_estimator`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kl_estimator: Option<KlEstimator>,
    /// See [`RlvrConfig::entropy_coef`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entropy_coef: Option<f64>,
}

impl RlvrOptions {
    /// `preset` with these changes applied.
    pub fn apply(&self, preset: RlvrConfig) -> RlvrConfig {
        RlvrConfig {
            clip_low: self.clip_low.unwrap_or(preset.clip_low),
            clip_high: self.clip_high.unwrap_or(preset.clip_high),
            dual_clip: self.dual_clip.unwrap_or(preset.dual_clip),
            clip_ratio_c: self.clip_ratio_c.unwrap_or(preset.clip_ratio_c),
            aggregation: self.aggregation.unwrap_or(preset.aggregation),
            kl_coef: self.kl_coef.unwrap_or(preset.kl_coef),
            kl_estimator: self.kl_estimator.unwrap_or(preset.kl_estimator),
            entropy_coef: self.entropy_coef.unwrap_or(preset.entropy_coef),
        }
    }
}

/// The RLVR objective (GRPO, Dr.GRPO, DAPO, generic PPO clip): the terms of
/// [`RlvrConfig`]. Trains [`RowKind::Policy`](crate::RowKind::Policy) rows only.
#[derive(Debug, Clone, PartialEq)]
pub struct RlvrObjective {
    config: RlvrConfig,
    terms: Terms,
}

impl RlvrObjective {
    /// An RLVR objective reported under `name` (`"grpo"`, `"dapo"`, ...).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`](crate::Error::InvalidParameter) (see
    /// [`RlvrConfig::validate`]).
    pub fn new(name: &'static str, config: RlvrConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            terms: Terms::new(name, config.terms()),
            config,
        })
    }

    /// The settings.
    pub fn config(&self) -> &RlvrConfig {
        &self.config
    }
}

composed_objective!(RlvrObjective);
