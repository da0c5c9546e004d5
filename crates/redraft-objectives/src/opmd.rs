//! OPMD as implemented in Trinity-RFT (docs/algorithms/opmd.md): no importance ratio, no clipping.
//!
//! ```text
//! ℓ_{i,t} = −A_{i,t} · log π_θ(o_{i,t}) / (1 + τ)        τ = 1  →  factor ½
//! L       = Σ_{i,t} w_{i,t} ℓ_{i,t}  (+ β Σ w KL)  (− η Σ w H)
//! ```
//!
//! With `token-mean` weights this is Trinity's `masked_mean(−A · logprob, mask) / (1 + τ)`
//! (`opmd_policy_loss.py`). The advantages are OPMD's mean-baseline ones
//! (`AdvantageEstimator::opmd()` in redraft-credit-assignment: `A_i = r_i − mean_j r_j`, no
//! std). Sampling log-probs are not used by the loss; if present, the ratio statistics are
//! still reported.

use redraft_credit_assignment::LossAggregation;
use serde::{Deserialize, Serialize};

use crate::error::{Result, check_non_negative};
use crate::kl::KlEstimator;
use crate::terms::{AnyTerm, POLICY, Surrogate, Terms, composed_objective, regularised_policy};

/// OPMD settings. Defaults: Trinity-RFT's `opmd` policy loss (τ = 1, `token-mean`) with no KL
/// (the R^3L repository's OPMD baseline: `kl_coef` 0) and no entropy bonus.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpmdConfig {
    /// τ: the loss is divided by `1 + τ`. Default 1.
    #[serde(default = "d_tau")]
    pub tau: f64,
    /// Aggregation. Default `token-mean`.
    #[serde(default)]
    pub aggregation: LossAggregation,
    /// β of the KL penalty. Default 0.
    #[serde(default)]
    pub kl_coef: f64,
    /// KL estimator. Default k2 (Trinity-RFT's default `kl_loss_fn`).
    #[serde(default = "d_k2")]
    pub kl_estimator: KlEstimator,
    /// η of the entropy bonus. Default 0.
    #[serde(default)]
    pub entropy_coef: f64,
}

fn d_tau() -> f64 {
    1.0
}
pub(crate) fn d_k2() -> KlEstimator {
    KlEstimator::K2
}

impl Default for OpmdConfig {
    fn default() -> Self {
        Self {
            tau: 1.0,
            aggregation: LossAggregation::TokenMean,
            kl_coef: 0.0,
            kl_estimator: KlEstimator::K2,
            entropy_coef: 0.0,
        }
    }
}

impl OpmdConfig {
    /// Checks `τ ≥ 0`, `β ≥ 0`, `η ≥ 0`.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`](crate::Error::InvalidParameter).
    pub fn validate(&self) -> Result<()> {
        check_non_negative("tau", self.tau)?;
        check_non_negative("kl_coef", self.kl_coef)?;
        check_non_negative("entropy_coef", self.entropy_coef)
    }

    /// The terms: the OPMD surrogate, the KL penalty and the entropy bonus on the policy rows.
    pub(crate) fn terms(&self) -> Vec<AnyTerm> {
        regularised_policy(
            Surrogate::Opmd { tau: self.tau },
            self.aggregation,
            (self.kl_coef, self.kl_estimator),
            self.entropy_coef,
            POLICY,
        )
    }
}

/// The OPMD objective: the terms of [`OpmdConfig`]. Trains
/// [`RowKind::Policy`](crate::RowKind::Policy) rows only.
#[derive(Debug, Clone, PartialEq)]
pub struct OpmdObjective {
    config: OpmdConfig,
    terms: Terms,
}

impl OpmdObjective {
    /// # Errors
    /// [`Error::InvalidParameter`](crate::Error::InvalidParameter).
    pub fn new(config: OpmdConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            terms: Terms::new("opmd", config.terms()),
            config,
        })
    }

    /// The settings.
    pub fn config(&self) -> &OpmdConfig {
        &self.config
    }
}

composed_objective!(OpmdObjective);
