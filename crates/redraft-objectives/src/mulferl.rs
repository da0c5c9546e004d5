//! MulFeRL (Li et al. 2026, arXiv 2601.22900; ALGORITHMS.md §4.3): GRPO on the within-turn
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
//! with β = 0.001) over the [`RowKind::Policy`] rows only, so the KL penalty covers GRPO rows
//! only, as in the released `dp_actor.py`. Sums and means over a side run over that row's
//! trainable tokens (the regenerated response's copied feedback prefix is already masked
//! out: `mask_prefix` in redraft-credit-assignment). Pairs come from `MulFeRlRouting`
//! (redraft-credit-assignment) as [`PairRows`](crate::PairRows) of [`RowKind::Pair`] rows.

use burn::tensor::Tensor;
use burn::tensor::activation::log_sigmoid;
use serde::{Deserialize, Serialize};

use crate::batch::{PolicyBatch, RowKind};
use crate::error::{Error, Result, check_non_negative, check_positive};
use crate::objective::{LossOutput, MetricSink, Objective, metric, prepare_inputs};
use crate::ppo::{RlvrConfig, RlvrOptions, policy_terms};

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
    /// [`Error::InvalidParameter`].
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

/// The MulFeRL objective. Trains [`RowKind::Policy`] rows (GRPO) and [`RowKind::Pair`] rows
/// (through the batch's [`pairs`](PolicyBatch::pairs)).
#[derive(Debug, Clone, PartialEq)]
pub struct MulFeRlObjective {
    config: MulFeRlConfig,
    grpo: RlvrConfig,
}

impl MulFeRlObjective {
    /// # Errors
    /// [`Error::InvalidParameter`].
    pub fn new(config: MulFeRlConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            grpo: config.grpo_config(),
            config,
        })
    }

    /// The settings.
    pub fn config(&self) -> &MulFeRlConfig {
        &self.config
    }
}

impl Objective for MulFeRlObjective {
    fn name(&self) -> &'static str {
        "mulferl"
    }

    fn needs_reference(&self) -> bool {
        true
    }

    fn needs_entropy(&self) -> bool {
        self.grpo.entropy_coef > 0.0
    }

    fn loss(
        &self,
        batch: &PolicyBatch,
        logprobs: Tensor<2>,
        entropy: Option<Tensor<2>>,
    ) -> Result<LossOutput> {
        let (logprobs, entropy) = prepare_inputs(batch, logprobs, entropy)?;
        batch.require_kinds("mulferl", &[RowKind::Policy, RowKind::Pair])?;
        let mut sink = MetricSink::default();
        let rows = batch.rows_mask(|k| k == RowKind::Policy);
        let mut loss = policy_terms(
            &self.grpo.settings(),
            batch,
            &logprobs,
            entropy.as_ref(),
            batch.advantages().clone(),
            &rows,
            None,
            &mut sink,
        )?;
        if let Some(pair) = pair_term(&self.config.pair_loss, batch, &logprobs, &mut sink)? {
            loss = loss + pair.mul_scalar(self.config.lambda);
        }
        let metrics = sink.finish(&loss)?;
        Ok(LossOutput { loss, metrics })
    }
}

/// `mean_pairs L_pair` (`None` without pairs). Pushes pair_loss, pair_accuracy, pair_margin.
fn pair_term(
    kind: &PairLoss,
    batch: &PolicyBatch,
    logprobs: &Tensor<2>,
    sink: &mut MetricSink,
) -> Result<Option<Tensor<1>>> {
    let pairs = batch.pairs();
    if pairs.is_empty() {
        return Ok(None);
    }
    let [b, t] = batch.dims();
    let mask = batch.mask();
    let kinds = batch.row_kinds();
    let row_tokens: Vec<usize> = (0..b)
        .map(|i| mask[i * t..(i + 1) * t].iter().filter(|&&m| m).count())
        .collect();
    for (index, p) in pairs.iter().enumerate() {
        for (side, row) in [("chosen", p.chosen), ("rejected", p.rejected)] {
            let reason = if row >= b {
                format!("{side} row {row} is out of range (batch {b})")
            } else if kinds[row] != RowKind::Pair {
                format!("{side} row {row} has kind {:?}, not Pair", kinds[row])
            } else if row_tokens[row] == 0 {
                format!("{side} row {row} has no trainable token")
            } else {
                continue;
            };
            return Err(Error::InvalidPair { index, reason });
        }
        if p.chosen == p.rejected {
            return Err(Error::InvalidPair {
                index,
                reason: format!("chosen and rejected are the same row {}", p.chosen),
            });
        }
    }
    let reference = batch.ref_logprobs().ok_or(Error::MissingInput {
        what: "reference log-probs",
        why: "the DPO / FCO pair loss compares log-ratios to the reference",
    })?;
    let pair_mask = batch.mask_tensor(&batch.rows_mask(|k| k == RowKind::Pair));
    // Per-row Σ_t (log π_θ − log π_ref) over the row's trainable tokens: [b].
    let mut per_row = ((logprobs.clone() - reference.clone()) * pair_mask)
        .sum_dim(1)
        .reshape([b]);
    if matches!(kind, PairLoss::Fco { .. }) {
        let inv: Vec<f32> = row_tokens
            .iter()
            .map(|&n| if n > 0 { 1.0 / n as f32 } else { 0.0 })
            .collect();
        let inv = Tensor::<1>::from_data(burn::tensor::TensorData::new(inv, [b]), batch.device());
        per_row = per_row * inv;
    }
    let chosen: Vec<usize> = pairs.iter().map(|p| p.chosen).collect();
    let rejected: Vec<usize> = pairs.iter().map(|p| p.rejected).collect();
    let delta = per_row.clone().select(0, batch.index_tensor(&chosen))
        - per_row.select(0, batch.index_tensor(&rejected));
    let z = match *kind {
        PairLoss::Dpo { beta } => delta.clone().mul_scalar(beta),
        PairLoss::Fco { tau, margin } => delta.clone().sub_scalar(margin).mul_scalar(tau),
    };
    let loss = -log_sigmoid(z).mean();
    sink.push(metric::PAIR_LOSS, loss.clone());
    sink.push(
        metric::PAIR_ACCURACY,
        delta.clone().detach().greater_elem(0.0).float().mean(),
    );
    sink.push(metric::PAIR_MARGIN, delta.mean());
    Ok(Some(loss))
}
