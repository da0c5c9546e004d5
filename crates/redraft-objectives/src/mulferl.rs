//! MulFeRL (Li et al. 2026, arXiv 2601.22900; docs/algorithms/mulferl.md): GRPO on the within-turn
//! groups plus λ times a cross-turn preference loss on (regenerated success, original
//! failure) pairs.
//!
//! ```text
//! L = L_GRPO(policy rows)  +  λ · mean_pairs L_pair
//!
//! v1 (DPO):  Δ = [Σ_t log π_θ(c) − Σ_t log π_ref(c)] − [Σ_t log π_θ(r) − Σ_t log π_ref(r)]
//!            L_pair = −log σ(β Δ)                              β = 0.005, λ = 0.01
//! v2 (FCO):  s(y) = (1/|y|) Σ_t [log π_θ(y_t) − log π_ref(y_t)]   (length-normalised)
//!            Δ = s(c) − s(r);   L_pair = −log σ(τ (Δ − m))      τ = 0.005, m = 0, λ = 0.01
//! ```
//!
//! `L_GRPO` is the [`RlvrConfig::grpo`] surrogate (ε 0.2, dual clip 3, `token-mean`, k3 KL
//! with β = 0.001) over the [`RowKind::Policy`](crate::RowKind::Policy) rows only, so the KL penalty covers GRPO rows
//! only, as in the released `dp_actor.py`. Sums and means over a side run over that row's
//! trainable tokens (the regenerated response's copied feedback prefix is already masked
//! out by the rollout strategy). Pairs come from the MulFeRL rollout strategy (its
//! `decide_round` and pairing, redraft-rollout-engine) as [`PairRows`](crate::PairRows) of
//! [`RowKind::Pair`] rows.

use serde::{Deserialize, Serialize};

use crate::error::{Result, check_non_negative, check_positive};
use crate::ppo::{RlvrConfig, RlvrOptions};
use crate::terms::{AnyTerm, PairPreference, Terms, composed_objective};

/// The cross-turn pair loss. Serialised with a `kind` tag:
/// `{"kind": "dpo", "beta": 0.005}`, `{"kind": "fco", "tau": 0.005, "margin": 0.0}`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum PairLoss {
    /// v1 code: DPO on summed log-ratios, `−log σ(β Δ)`.
    Dpo {
        /// β (`dpo_beta`). Default 0.005.
        #[serde(default = "d_small")]
        beta: f64,
    },
    /// v2 code: Feedback-Contrastive Optimization on length-normalised log-ratios,
    /// `−log σ(τ (Δ − m))`.
    Fco {
        /// τ (`fco_tau`). Default 0.005.
        #[serde(default = "d_small")]
        tau: f64,
        /// m (`fco_margin`). Default 0.
        #[serde(default)]
        margin: f64,
    },
}

fn d_small() -> f64 {
    0.005
}
fn d_lambda() -> f64 {
    0.01
}

impl Default for PairLoss {
    /// FCO with τ = 0.005, m = 0: the latest released code (v2).
    fn default() -> Self {
        Self::Fco {
            tau: 0.005,
            margin: 0.0,
        }
    }
}

impl PairLoss {
    /// DPO with β = 0.005 (v1).
    pub fn dpo() -> Self {
        Self::Dpo { beta: 0.005 }
    }
}

/// MulFeRL settings. Defaults: the v2 release (`mulferl.sh`): GRPO as [`RlvrConfig::grpo`],
/// FCO τ = 0.005, margin 0, λ = 0.01.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MulFeRlConfig {
    /// Changes to the GRPO preset used for the policy rows.
    #[serde(default)]
    pub grpo: RlvrOptions,
    /// The pair loss. Default FCO.
    #[serde(default)]
    pub pair_loss: PairLoss,
    /// λ, the pair-loss coefficient (`dpo_lambda` / `fco_lambda`). Default 0.01.
    #[serde(default = "d_lambda")]
    pub lambda: f64,
}

impl MulFeRlConfig {
    /// The v1 release: DPO β = 0.005, λ = 0.01.
    pub fn v1_dpo() -> Self {
        Self {
            pair_loss: PairLoss::dpo(),
            lambda: 0.01,
            grpo: RlvrOptions::default(),
        }
    }

    /// The v2 release: FCO τ = 0.005, m = 0, λ = 0.01 (the default).
    pub fn v2_fco() -> Self {
        Self {
            pair_loss: PairLoss::default(),
            lambda: 0.01,
            grpo: RlvrOptions::default(),
        }
    }

    /// The resolved GRPO settings.
    pub fn grpo_config(&self) -> RlvrConfig {
        self.grpo.apply(RlvrConfig::grpo())
    }

    /// Checks the GRPO part, `λ ≥ 0`, `β > 0` / `τ > 0`, finite margin.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`](crate::Error::InvalidParameter).
    pub fn validate(&self) -> Result<()> {
        self.grpo_config().validate()?;
        check_non_negative("lambda", self.lambda)?;
        match self.pair_loss {
            PairLoss::Dpo { beta } => check_positive("beta", beta),
            PairLoss::Fco { tau, margin } => {
                check_positive("tau", tau)?;
                crate::error::check_param("margin", margin, true, "must be finite")
            }
        }
    }
}

impl MulFeRlConfig {
    /// The terms: GRPO's (surrogate, KL, entropy on the policy rows) and the pair term.
    pub(crate) fn terms(&self) -> Vec<AnyTerm> {
        let mut terms = self.grpo_config().terms();
        terms.push(AnyTerm::Pair(PairPreference {
            kind: self.pair_loss,
            lambda: self.lambda,
        }));
        terms
    }
}

/// The MulFeRL objective: GRPO's terms on [`RowKind::Policy`](crate::RowKind::Policy) rows
/// and the pair term on [`RowKind::Pair`](crate::RowKind::Pair) rows (through the batch's
/// [`pairs`](crate::PolicyBatch::pairs)).
#[derive(Debug, Clone, PartialEq)]
pub struct MulFeRlObjective {
    config: MulFeRlConfig,
    terms: Terms,
}

impl MulFeRlObjective {
    /// # Errors
    /// [`Error::InvalidParameter`](crate::Error::InvalidParameter).
    pub fn new(config: MulFeRlConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            terms: Terms::new("mulferl", config.terms()),
            config,
        })
    }

    /// The settings.
    pub fn config(&self) -> &MulFeRlConfig {
        &self.config
    }
}

composed_objective!(MulFeRlObjective);
