//! R^3L (Shi et al. 2026, arXiv 2601.03715; ALGORITHMS.md §2.2–2.5): an OPMD (or GRPO) base
//! objective over the explore group with pivotal credit and positive amplification, plus the
//! auxiliary SFT term on successful reflections and guided retries.
//!
//! The credit pieces are computed upstream, in redraft-credit-assignment, and arrive in the
//! batch: **pivotal credit** is the trainable mask (`pivot_masks` zeroes the first `k_pivot`
//! assistant turns of a retried base and its distill copy), **positive amplification** is
//! the advantages (`PositiveAmplification` over each explore group, broadcast over tokens).
//! The auxiliary SFT items are [`RowKind::Auxiliary`] rows.
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

use burn::tensor::Tensor;
use redraft_credit_assignment::{LossAggregation, SFT_ADVANTAGE};
use serde::{Deserialize, Serialize};

use crate::batch::{PolicyBatch, RowKind};
use crate::error::{Result, check_non_negative};
use crate::kl::KlEstimator;
use crate::objective::{
    LossOutput, MetricSink, Objective, count, cross_entropy_term, masked_mean, metric,
    prepare_inputs,
};
use crate::opmd::d_k2;
use crate::ppo::{PgSettings, RlvrConfig, RlvrOptions, Surrogate, policy_terms};

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

    fn settings(&self) -> PgSettings {
        let surrogate = match self.base {
            R3lBase::Opmd => Surrogate::Opmd { tau: self.tau },
            R3lBase::Grpo => Surrogate::Ratio(Some(self.grpo.apply(RlvrConfig::grpo()).clip())),
        };
        PgSettings {
            surrogate,
            aggregation: self.aggregation,
            kl_coef: self.kl_coef,
            kl_estimator: self.kl_estimator,
            entropy_coef: self.entropy_coef,
        }
    }
}

/// The R^3L objective. Trains [`RowKind::Policy`] rows (explore group: bases and distilled
/// retries) and [`RowKind::Auxiliary`] rows (SFT items).
#[derive(Debug, Clone, PartialEq)]
pub struct R3lObjective {
    config: R3lConfig,
}

impl R3lObjective {
    /// # Errors
    /// [`Error::InvalidParameter`](crate::Error::InvalidParameter).
    pub fn new(config: R3lConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self { config })
    }

    /// The settings.
    pub fn config(&self) -> &R3lConfig {
        &self.config
    }
}

impl Objective for R3lObjective {
    fn name(&self) -> &'static str {
        "r3l"
    }

    fn needs_reference(&self) -> bool {
        self.config.kl_coef > 0.0
    }

    fn needs_entropy(&self) -> bool {
        self.config.entropy_coef > 0.0
    }

    fn loss(
        &self,
        batch: &PolicyBatch,
        logprobs: Tensor<2>,
        entropy: Option<Tensor<2>>,
    ) -> Result<LossOutput> {
        let (logprobs, entropy) = prepare_inputs(batch, logprobs, entropy)?;
        batch.require_kinds("r3l", &[RowKind::Policy, RowKind::Auxiliary])?;
        let mut sink = MetricSink::default();
        let aux = batch.rows_mask(|k| k == RowKind::Auxiliary);
        let n_aux = count(&aux);
        if n_aux > 0 {
            // Token-mean NLL of the SFT tokens, for monitoring.
            sink.push(
                metric::SFT_LOSS,
                masked_mean(-logprobs.clone().detach(), batch.mask_tensor(&aux), n_aux),
            );
        }
        let settings = self.config.settings();
        let loss = match self.config.sft_mode {
            SftMode::InRl => {
                let aux01 = batch.row_indicator(|k| k == RowKind::Auxiliary);
                let adv = batch.advantages().clone() * (aux01.clone().neg().add_scalar(1.0))
                    + aux01.mul_scalar(SFT_ADVANTAGE);
                let rows = batch.rows_mask(|_| true);
                policy_terms(
                    &settings,
                    batch,
                    &logprobs,
                    entropy.as_ref(),
                    adv,
                    &rows,
                    None,
                    &mut sink,
                )?
            }
            SftMode::Separate => {
                let rows = batch.rows_mask(|k| k == RowKind::Policy);
                let rl = policy_terms(
                    &settings,
                    batch,
                    &logprobs,
                    entropy.as_ref(),
                    batch.advantages().clone(),
                    &rows,
                    None,
                    &mut sink,
                )?;
                let sft = cross_entropy_term(batch, &logprobs, &self.config.sft_aggregation, &aux)?;
                rl + sft.mul_scalar(self.config.sft_coef)
            }
        };
        let metrics = sink.finish(&loss)?;
        Ok(LossOutput { loss, metrics })
    }
}
