//! R^3L (Shi et al. 2026, arXiv 2601.03715; docs/algorithms/r3l.md): an OPMD (or GRPO) base
//! objective over the explore group with pivotal credit and positive amplification, plus the
//! auxiliary SFT term on successful reflections and guided retries.
//!
//! The credit pieces are computed upstream, in redraft-credit-assignment, and arrive in the
//! batch: **pivotal credit** is the trainable mask (`pivot_masks` zeroes the first `k_pivot`
//! assistant turns of a retried base and its distill copy), **positive amplification** is
//! the advantages (`PositiveAmplification` over each explore group, broadcast over tokens).
//! The auxiliary SFT items are [`RowKind::Auxiliary`](crate::RowKind::Auxiliary) rows.
//!
//! ```text
//! released code (SftMode::InRl, default; opmd_reweight_adv):
//!     A'  = Â on policy rows, 1 on auxiliary rows        (singleton groups with reward 1)
//!     L   = Σ_{i,t} w_{i,t} · (−A'_{i,t} log π_θ) / (1 + τ)  +  β Σ w k2        τ = 1, β = 0.001
//!           (w = token-mean over policy ∪ auxiliary tokens)
//! paper (SftMode::Separate):
//!     L   = Σ w · (−Â log π_θ)/(1 + τ)   (+ β Σ w KL, β = 0 in the paper)   +  γ_sft · token-mean(−log π_θ(aux))
//! GRPO base (R3lBase::Grpo, grpo_reweight_adv): the clipped surrogate of `ppo` replaces
//!     −A log π / (1 + τ).
//! ```

use redraft_credit_assignment::LossAggregation;
use serde::{Deserialize, Serialize};

use crate::error::{Result, check_non_negative};
use crate::kl::KlEstimator;
use crate::opmd::d_k2;
use crate::ppo::{RlvrConfig, RlvrOptions};
use crate::terms::{
    AnyTerm, POLICY, POLICY_AUX, Sft, SftForm, Surrogate, Terms, composed_objective,
    regularised_policy,
};

/// The base policy-gradient loss of R^3L.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum R3lBase {
    /// OPMD: `−A log π_θ / (1 + τ)` (`opmd_reweight_adv`, the published runs). Default.
    #[default]
    Opmd,
    /// The GRPO clipped surrogate (`grpo_reweight_adv`), with the clip settings of
    /// [`R3lConfig::grpo`].
    Grpo,
}

/// How the auxiliary SFT items are trained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SftMode {
    /// Released code: the items join the RL loss with advantage 1 (singleton groups with
    /// reward 1), in the same aggregation and KL. Default.
    #[default]
    InRl,
    /// Paper: a separate `sft_coef · CE` term, aggregated with `sft_aggregation` over the
    /// auxiliary tokens; the RL term (and its KL) covers the policy rows only.
    Separate,
}

fn d_tau() -> f64 {
    1.0
}
fn d_kl() -> f64 {
    0.001
}
fn d_one() -> f64 {
    1.0
}

/// R^3L settings. Defaults: the released code (`opmd_reweight_adv`): OPMD base with τ = 1,
/// `token-mean`, k2 KL with β = 0.001, no entropy bonus, SFT items inside the RL loss.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct R3lConfig {
    /// The base loss. Default OPMD.
    #[serde(default)]
    pub base: R3lBase,
    /// τ of the OPMD base. Default 1 (factor ½).
    #[serde(default = "d_tau")]
    pub tau: f64,
    /// Clip settings of the GRPO base (only `clip_low`, `clip_high`, `dual_clip`,
    /// `clip_ratio_c` are read; the rest comes from the fields below). Default the GRPO
    /// preset's.
    #[serde(default)]
    pub grpo: RlvrOptions,
    /// Aggregation of the RL term. Default `token-mean`.
    #[serde(default)]
    pub aggregation: LossAggregation,
    /// β of the KL penalty. Default 0.001 (code; the paper has none).
    #[serde(default = "d_kl")]
    pub kl_coef: f64,
    /// KL estimator. Default k2.
    #[serde(default = "d_k2")]
    pub kl_estimator: KlEstimator,
    /// η of the entropy bonus. Default 0.
    #[serde(default)]
    pub entropy_coef: f64,
    /// How auxiliary SFT rows are trained. Default in the RL loss (code).
    #[serde(default)]
    pub sft_mode: SftMode,
    /// Coefficient of the separate SFT term ([`SftMode::Separate`] only). Default 1.
    #[serde(default = "d_one")]
    pub sft_coef: f64,
    /// Aggregation of the separate SFT term. Default `token-mean`.
    #[serde(default)]
    pub sft_aggregation: LossAggregation,
}

impl Default for R3lConfig {
    fn default() -> Self {
        Self {
            base: R3lBase::Opmd,
            tau: 1.0,
            grpo: RlvrOptions::default(),
            aggregation: LossAggregation::TokenMean,
            kl_coef: 0.001,
            kl_estimator: KlEstimator::K2,
            entropy_coef: 0.0,
            sft_mode: SftMode::InRl,
            sft_coef: 1.0,
            sft_aggregation: LossAggregation::TokenMean,
        }
    }
}

impl R3lConfig {
    /// The paper's form: OPMD base, no KL, separate SFT term with coefficient 1.
    pub fn paper() -> Self {
        Self {
            kl_coef: 0.0,
            sft_mode: SftMode::Separate,
            ..Self::default()
        }
    }

    /// Checks the ranges.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`](crate::Error::InvalidParameter).
    pub fn validate(&self) -> Result<()> {
        check_non_negative("tau", self.tau)?;
        self.grpo.apply(RlvrConfig::grpo()).validate()?;
        check_non_negative("kl_coef", self.kl_coef)?;
        check_non_negative("entropy_coef", self.entropy_coef)?;
        check_non_negative("sft_coef", self.sft_coef)
    }

    /// The terms. In the RL loss (code): the surrogate, KL and entropy aggregated over policy
    /// and auxiliary rows, the auxiliary rows with `A = 1`; separate (paper): the same over the
    /// policy rows plus `sft_coef` times the auxiliary rows' cross-entropy.
    pub(crate) fn terms(&self) -> Vec<AnyTerm> {
        let surrogate = match self.base {
            R3lBase::Opmd => Surrogate::Opmd { tau: self.tau },
            R3lBase::Grpo => Surrogate::Ratio(Some(self.grpo.apply(RlvrConfig::grpo()).clip())),
        };
        let (unit, form) = match self.sft_mode {
            SftMode::InRl => (
                POLICY_AUX,
                SftForm::InRl {
                    surrogate,
                    aggregation: self.aggregation,
                },
            ),
            SftMode::Separate => (
                POLICY,
                SftForm::Separate {
                    coef: self.sft_coef,
                    aggregation: self.sft_aggregation,
                },
            ),
        };
        let mut terms = regularised_policy(
            surrogate,
            self.aggregation,
            (self.kl_coef, self.kl_estimator),
            self.entropy_coef,
            unit,
        );
        terms.push(AnyTerm::Sft(Sft { form }));
        terms
    }
}

/// The R^3L objective: the terms of [`R3lConfig`]. Trains
/// [`RowKind::Policy`](crate::RowKind::Policy) rows (explore group: bases and distilled
/// retries) and [`RowKind::Auxiliary`](crate::RowKind::Auxiliary) rows (SFT items).
#[derive(Debug, Clone, PartialEq)]
pub struct R3lObjective {
    config: R3lConfig,
    terms: Terms,
}

impl R3lObjective {
    /// # Errors
    /// [`Error::InvalidParameter`](crate::Error::InvalidParameter).
    pub fn new(config: R3lConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            terms: Terms::new("r3l", config.terms()),
            config,
        })
    }

    /// The settings.
    pub fn config(&self) -> &R3lConfig {
        &self.config
    }
}

composed_objective!(R3lObjective);
