//! The terms objectives are composed of, and the one `loss` that sums them.
//!
//! A method declares its terms (each config's `terms()`); [`Terms::loss`] prepares the inputs
//! once (shape checks, masked-out positions set to 0), refuses rows no term trains, asks every
//! term for its part, sums the parts and reads all metrics back in one synchronisation.
//!
//! | term | formula (per trainable token of its rows; `w` the aggregation weights) | used by |
//! |---|---|---|
//! | [`PolicyGradient`] | clipped surrogate `max(−Aρ, −A clip(ρ))` (dual clip), unclipped `−Aρ`, or OPMD `−A log π / (1 + τ)` | every method |
//! | [`KlPenalty`] | `β Σ w KL(log π, log π_ref)` | RLVR, OPMD, R^3L, MulFeRL |
//! | [`EntropyBonus`] | `−η Σ w H` | RLVR, OPMD, R^3L, MulFeRL |
//! | [`Sft`] | auxiliary rows: `γ Σ w (−log π)`, or the surrogate with `A = 1` | R^3L |
//! | [`SelfDistillation`] | the surrogate with `A = rl_coef · A_SD · 1[log q ≥ −5]` | RLTF-SD |
//! | [`FeedbackModelling`] | `λ Σ w (−log π(critique))` | RLTF-FM |
//! | [`PairPreference`] | `λ · mean_pairs −log σ(β Δ)` (DPO) or `−log σ(τ (Δ − m))` (FCO) | MulFeRL |
//!
//! Each term trains some row kinds ([`Term::rows`]) and normalises its aggregation over a
//! *unit* of row kinds, which may be larger: RLTF-SD's policy and self-distillation terms share
//! one aggregation over both kinds of rows, as R^3L's policy term and its SFT rows trained in
//! the RL loss do. Splitting such a sum into terms leaves it unchanged.

use burn::tensor::Tensor;
use burn::tensor::activation::log_sigmoid;
use redraft_credit_assignment::{LossAggregation, SFT_ADVANTAGE};

use crate::batch::{PolicyBatch, RowKind};
use crate::error::{Error, Result};
use crate::kl::{KlEstimator, LOG_RATIO_CLAMP};
use crate::mulferl::PairLoss;
use crate::objective::{
    LossOutput, MetricSink, count, cross_entropy_term, masked_mean, metric, prepare_inputs,
    push_ratio_stats, weighted_sum,
};
use crate::rltf::CoefSchedule;

/// Policy rows only.
pub(crate) const POLICY: &[RowKind] = &[RowKind::Policy];
/// Policy and auxiliary rows (R^3L's SFT items in the RL loss).
pub(crate) const POLICY_AUX: &[RowKind] = &[RowKind::Policy, RowKind::Auxiliary];
/// Policy and self-distillation rows (RLTF-SD's one aggregation).
pub(crate) const POLICY_SD: &[RowKind] = &[RowKind::Policy, RowKind::SelfDistillation];
/// Auxiliary rows only.
pub(crate) const AUX: &[RowKind] = &[RowKind::Auxiliary];
/// Self-distillation rows only.
pub(crate) const SD: &[RowKind] = &[RowKind::SelfDistillation];
/// Pair rows only.
pub(crate) const PAIR: &[RowKind] = &[RowKind::Pair];

/// What every term reads: the batch and the policy's (masked) log-probs and entropies.
pub(crate) struct Inputs<'a> {
    pub(crate) batch: &'a PolicyBatch,
    pub(crate) logprobs: &'a Tensor<2>,
    pub(crate) entropy: Option<&'a Tensor<2>>,
}

impl Inputs<'_> {
    /// The trainable mask restricted to rows of `kinds`.
    fn mask(&self, kinds: &[RowKind]) -> Vec<bool> {
        self.batch.rows_mask(|k| kinds.contains(&k))
    }

    /// Aggregation weights of `agg` normalised over the rows of `unit`, kept on the rows of
    /// `rows` (a subset of `unit`).
    fn weights(
        &self,
        agg: &LossAggregation,
        rows: &[RowKind],
        unit: &[RowKind],
    ) -> Result<Tensor<2>> {
        let unit_mask = self.mask(unit);
        if rows == unit {
            return self.batch.weights(agg, &unit_mask);
        }
        Ok(self.batch.weights(agg, &unit_mask)? * self.batch.row_indicator(|k| rows.contains(&k)))
    }

    /// `log π_old`, or the detached `log π_θ` without sampling log-probs.
    fn old(&self) -> Tensor<2> {
        match self.batch.old_logprobs() {
            Some(o) => o.clone(),
            None => self.logprobs.clone().detach(),
        }
    }
}

/// One part of an objective's loss.
pub(crate) trait Term {
    /// The row kinds whose tokens this term trains.
    fn rows(&self) -> &'static [RowKind];

    /// Whether the term needs reference log-probs.
    fn needs_reference(&self) -> bool {
        false
    }

    /// Whether the term needs per-token entropies.
    fn needs_entropy(&self) -> bool {
        false
    }

    /// The term's part of the loss (`None`: nothing to add), pushing its metrics.
    fn loss(&self, x: &Inputs<'_>, sink: &mut MetricSink) -> Result<Option<Tensor<1>>>;
}

/// Any of the terms (a closed set, so objectives stay `Clone + PartialEq`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AnyTerm {
    PolicyGradient(PolicyGradient),
    Kl(KlPenalty),
    Entropy(EntropyBonus),
    Sft(Sft),
    SelfDistillation(SelfDistillation),
    FeedbackModelling(FeedbackModelling),
    Pair(PairPreference),
}

impl AnyTerm {
    fn term(&self) -> &dyn Term {
        match self {
            Self::PolicyGradient(t) => t,
            Self::Kl(t) => t,
            Self::Entropy(t) => t,
            Self::Sft(t) => t,
            Self::SelfDistillation(t) => t,
            Self::FeedbackModelling(t) => t,
            Self::Pair(t) => t,
        }
    }
}

/// The terms of one objective: `L = Σ_terms L_term`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Terms {
    name: &'static str,
    terms: Vec<AnyTerm>,
}

impl Terms {
    /// The terms of the objective called `name`.
    pub(crate) fn new(name: &'static str, terms: Vec<AnyTerm>) -> Self {
        Self { name, terms }
    }

    /// The objective's name.
    pub(crate) fn name(&self) -> &'static str {
        self.name
    }

    /// Whether any term needs reference log-probs.
    pub(crate) fn needs_reference(&self) -> bool {
        self.terms.iter().any(|t| t.term().needs_reference())
    }

    /// Whether any term needs entropies.
    pub(crate) fn needs_entropy(&self) -> bool {
        self.terms.iter().any(|t| t.term().needs_entropy())
    }

    /// Checks the inputs and the row kinds, sums the terms, collects the metrics.
    pub(crate) fn loss(
        &self,
        batch: &PolicyBatch,
        logprobs: Tensor<2>,
        entropy: Option<Tensor<2>>,
    ) -> Result<LossOutput> {
        let (logprobs, entropy) = prepare_inputs(batch, logprobs, entropy)?;
        let mut accepted: Vec<RowKind> = Vec::new();
        for kind in self.terms.iter().flat_map(|t| t.term().rows()) {
            if !accepted.contains(kind) {
                accepted.push(*kind);
            }
        }
        batch.require_kinds(self.name, &accepted)?;
        let x = Inputs {
            batch,
            logprobs: &logprobs,
            entropy: entropy.as_ref(),
        };
        let mut sink = MetricSink::default();
        let mut loss: Option<Tensor<1>> = None;
        for term in &self.terms {
            if let Some(part) = term.term().loss(&x, &mut sink)? {
                loss = Some(match loss {
                    Some(l) => l + part,
                    None => part,
                });
            }
        }
        let loss = loss.unwrap_or_else(|| Tensor::zeros([1], batch.device()));
        let metrics = sink.finish(&loss)?;
        Ok(LossOutput { loss, metrics })
    }
}

/// The policy-gradient term with its KL penalty and entropy bonus, all three normalised over
/// the rows of `unit` (the KL and entropy cover those rows too): the RLVR, OPMD, R^3L and
/// MulFeRL policy part.
pub(crate) fn regularised_policy(
    surrogate: Surrogate,
    aggregation: LossAggregation,
    kl: (f64, KlEstimator),
    entropy_coef: f64,
    unit: &'static [RowKind],
) -> Vec<AnyTerm> {
    vec![
        AnyTerm::PolicyGradient(PolicyGradient {
            surrogate,
            aggregation,
            unit,
        }),
        AnyTerm::Kl(KlPenalty {
            coef: kl.0,
            estimator: kl.1,
            aggregation,
            rows: unit,
        }),
        AnyTerm::Entropy(EntropyBonus {
            coef: entropy_coef,
            aggregation,
            rows: unit,
        }),
    ]
}

/// Implements [`Objective`](crate::Objective) for a type with a `terms: Terms` field.
macro_rules! composed_objective {
    ($ty:ty) => {
        impl $crate::objective::Objective for $ty {
            fn name(&self) -> &'static str {
                self.terms.name()
            }

            fn needs_reference(&self) -> bool {
                self.terms.needs_reference()
            }

            fn needs_entropy(&self) -> bool {
                self.terms.needs_entropy()
            }

            fn loss(
                &self,
                batch: &$crate::batch::PolicyBatch,
                logprobs: burn::tensor::Tensor<2>,
                entropy: Option<burn::tensor::Tensor<2>>,
            ) -> $crate::error::Result<$crate::objective::LossOutput> {
                self.terms.loss(batch, logprobs, entropy)
            }
        }
    };
}
pub(crate) use composed_objective;

// ---------------------------------------------------------------------------------------
// The per-token surrogate shared by the policy, SFT-in-RL and self-distillation terms.

/// The clip range of the PPO surrogate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Clip {
    pub(crate) low: f64,
    pub(crate) high: f64,
    pub(crate) dual_c: Option<f64>,
}

/// The per-token policy-gradient surrogate.
///
/// ```text
/// Ratio(Some(clip)):  ℓ = max(−Aρ, −A clip(ρ, 1 − ε_low, 1 + ε_high)),
///                     then min(ℓ, −A c) where A < 0 with dual clip c         (PPO / GRPO / DAPO)
/// Ratio(None):        ℓ = −Aρ                                   (tinker's importance_sampling)
/// Opmd { τ }:         ℓ = −A log π_θ / (1 + τ)                                   (no ratio)
/// ρ = exp(clamp(log π_θ − log π_old, −20, 20))
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Surrogate {
    Ratio(Option<Clip>),
    Opmd { tau: f64 },
}

/// The per-token surrogate and what its diagnostics need.
struct SurrogateTokens {
    tokens: Tensor<2>,
    log_ratio: Option<Tensor<2>>,
    clipped: Option<Tensor<2>>,
    lower: Option<Tensor<2>>,
}

impl Surrogate {
    fn tokens(&self, x: &Inputs<'_>, adv: Tensor<2>) -> SurrogateTokens {
        match *self {
            Self::Ratio(clip) => {
                let lr = log_ratio(x.logprobs, x.batch.old_logprobs());
                let (tokens, clipped, lower) = clipped_tokens(lr.clone().exp(), adv, clip);
                SurrogateTokens {
                    tokens,
                    log_ratio: Some(lr),
                    clipped,
                    lower,
                }
            }
            Self::Opmd { tau } => SurrogateTokens {
                tokens: -(adv * x.logprobs.clone()).div_scalar(1.0 + tau),
                log_ratio: None,
                clipped: None,
                lower: None,
            },
        }
    }
}

/// `log π_θ − log π_old`, clamped to ±20 (verl); `log π_old` = detached `log π_θ` if absent.
fn log_ratio(logprobs: &Tensor<2>, old: Option<&Tensor<2>>) -> Tensor<2> {
    let old = match old {
        Some(o) => o.clone(),
        None => logprobs.clone().detach(),
    };
    (logprobs.clone() - old).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
}

/// Per-token clipped surrogate loss and the 0/1 indicators of the clip and the dual clip.
fn clipped_tokens(
    ratio: Tensor<2>,
    adv: Tensor<2>,
    clip: Option<Clip>,
) -> (Tensor<2>, Option<Tensor<2>>, Option<Tensor<2>>) {
    let l1 = -(adv.clone() * ratio.clone());
    let Some(clip) = clip else {
        return (l1, None, None);
    };
    let l2 = -(adv.clone() * ratio.clamp(1.0 - clip.low, 1.0 + clip.high));
    let clipped = l2.clone().greater(l1.clone()).float();
    let c1 = l1.max_pair(l2);
    let Some(c) = clip.dual_c else {
        return (c1, Some(clipped), None);
    };
    let l3 = -adv.clone().mul_scalar(c);
    let neg = adv.lower_elem(0.0);
    let lower = c1.clone().greater(l3.clone()).bool_and(neg.clone()).float();
    let c2 = c1.clone().min_pair(l3);
    (c1.mask_where(neg, c2), Some(clipped), Some(lower))
}

// ---------------------------------------------------------------------------------------
// The terms.

/// The policy-gradient term over the rows of `rows` with the batch's advantages, aggregated
/// over the rows of `unit`:
///
/// ```text
/// L_PG = Σ_{i,t} w_{i,t} ℓ_{i,t}        ℓ the [`Surrogate`], w normalised over `unit`
/// ```
///
/// Metrics: `policy_loss`, `policy_tokens`, the ratio statistics, `approx_kl` (with sampling
/// log-probs), the clip fractions (clipped surrogate).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PolicyGradient {
    pub(crate) surrogate: Surrogate,
    pub(crate) aggregation: LossAggregation,
    pub(crate) unit: &'static [RowKind],
}

impl Term for PolicyGradient {
    fn rows(&self) -> &'static [RowKind] {
        POLICY
    }

    fn loss(&self, x: &Inputs<'_>, sink: &mut MetricSink) -> Result<Option<Tensor<1>>> {
        let rows = x.mask(POLICY);
        let n = count(&rows);
        let weights = x.weights(&self.aggregation, POLICY, self.unit)?;
        let mask01 = x.batch.mask_tensor(&rows);
        sink.push_host(metric::POLICY_TOKENS, n as f64);
        let s = self.surrogate.tokens(x, x.batch.advantages().clone());
        match (&s.log_ratio, x.batch.old_logprobs()) {
            (Some(lr), old) => {
                push_ratio_stats(sink, &lr.clone().exp(), &mask01, n);
                if n > 0 && old.is_some() {
                    sink.push(
                        metric::APPROX_KL,
                        masked_mean(-lr.clone().detach(), mask01.clone(), n),
                    );
                }
            }
            // OPMD uses no ratio; it is still reported when sampling log-probs are given.
            (None, Some(old)) if n > 0 => {
                let ratio = log_ratio(x.logprobs, Some(old)).exp();
                push_ratio_stats(sink, &ratio, &mask01, n);
            }
            (None, _) => {}
        }
        if n > 0 {
            if let Some(c) = s.clipped {
                sink.push(metric::CLIP_FRACTION, masked_mean(c, mask01.clone(), n));
            }
            if let Some(c) = s.lower {
                sink.push(metric::CLIP_FRACTION_LOWER, masked_mean(c, mask01, n));
            }
        }
        let pg = weighted_sum(s.tokens, weights);
        sink.push(metric::POLICY_LOSS, pg.clone());
        Ok(Some(pg))
    }
}

/// The KL penalty to the reference on the tokens of `rows`, aggregated over `unit`:
///
/// ```text
/// L_KL = β Σ_{i,t} w_{i,t} KL(log π_θ, log π_ref)_{i,t}        (a [`KlEstimator`])
/// ```
///
/// Reference log-probs are required when `β > 0`; whenever present, the aggregated KL (before
/// `β`) is reported as `kl`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct KlPenalty {
    pub(crate) coef: f64,
    pub(crate) estimator: KlEstimator,
    pub(crate) aggregation: LossAggregation,
    pub(crate) rows: &'static [RowKind],
}

impl Term for KlPenalty {
    fn rows(&self) -> &'static [RowKind] {
        self.rows
    }

    fn needs_reference(&self) -> bool {
        self.coef > 0.0
    }

    fn loss(&self, x: &Inputs<'_>, sink: &mut MetricSink) -> Result<Option<Tensor<1>>> {
        let Some(reference) = x.batch.ref_logprobs() else {
            if self.coef > 0.0 {
                return Err(Error::MissingInput {
                    what: "reference log-probs",
                    why: "the KL penalty has a positive coefficient",
                });
            }
            return Ok(None);
        };
        let weights = x.weights(&self.aggregation, self.rows, self.rows)?;
        let kl = weighted_sum(
            self.estimator.tokens(x.logprobs.clone(), reference.clone()),
            weights,
        );
        sink.push(metric::KL, kl.clone());
        Ok((self.coef > 0.0).then(|| kl.mul_scalar(self.coef)))
    }
}

/// The entropy bonus on the tokens of `rows`:
///
/// ```text
/// L_H = −η Σ_{i,t} w_{i,t} H_{i,t}
/// ```
///
/// Entropies are required when `η > 0`; whenever given, their mean over the rows' trainable
/// tokens is reported as `entropy`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EntropyBonus {
    pub(crate) coef: f64,
    pub(crate) aggregation: LossAggregation,
    pub(crate) rows: &'static [RowKind],
}

impl Term for EntropyBonus {
    fn rows(&self) -> &'static [RowKind] {
        self.rows
    }

    fn needs_entropy(&self) -> bool {
        self.coef > 0.0
    }

    fn loss(&self, x: &Inputs<'_>, sink: &mut MetricSink) -> Result<Option<Tensor<1>>> {
        let Some(h) = x.entropy else {
            if self.coef > 0.0 {
                return Err(Error::MissingInput {
                    what: "entropy",
                    why: "the entropy bonus has a positive coefficient",
                });
            }
            return Ok(None);
        };
        let rows = x.mask(self.rows);
        let n = count(&rows);
        if n > 0 {
            let mask01 = x.batch.mask_tensor(&rows);
            sink.push(metric::ENTROPY, masked_mean(h.clone().detach(), mask01, n));
        }
        if self.coef <= 0.0 {
            return Ok(None);
        }
        let weights = x.weights(&self.aggregation, self.rows, self.rows)?;
        Ok(Some(
            -weighted_sum(h.clone(), weights).mul_scalar(self.coef),
        ))
    }
}

/// How R^3L's auxiliary SFT rows are trained.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum SftForm {
    /// In the RL loss: the policy's surrogate with `A = 1` (`SFT_ADVANTAGE`), aggregated with
    /// the policy rows (unit policy ∪ auxiliary).
    InRl {
        surrogate: Surrogate,
        aggregation: LossAggregation,
    },
    /// A separate cross-entropy `γ Σ w (−log π)`, aggregated over the auxiliary rows.
    Separate {
        coef: f64,
        aggregation: LossAggregation,
    },
}

/// R^3L's SFT term on the auxiliary rows (reflections, guided retries):
///
/// ```text
/// in RL:    L_SFT = Σ_{i,t} w_{i,t} ℓ(A = 1)_{i,t}      w normalised over policy ∪ auxiliary
/// separate: L_SFT = γ Σ_{i,t} w'_{i,t} (−log π_θ)       w' normalised over auxiliary rows
/// ```
///
/// Metric: `sft_loss`, the token-mean NLL of the auxiliary tokens (for monitoring).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sft {
    pub(crate) form: SftForm,
}

impl Term for Sft {
    fn rows(&self) -> &'static [RowKind] {
        AUX
    }

    fn loss(&self, x: &Inputs<'_>, sink: &mut MetricSink) -> Result<Option<Tensor<1>>> {
        let aux = x.mask(AUX);
        let n_aux = count(&aux);
        if n_aux > 0 {
            sink.push(
                metric::SFT_LOSS,
                masked_mean(
                    -x.logprobs.clone().detach(),
                    x.batch.mask_tensor(&aux),
                    n_aux,
                ),
            );
        }
        Ok(Some(match self.form {
            SftForm::InRl {
                surrogate,
                aggregation,
            } => {
                let weights = x.weights(&aggregation, AUX, POLICY_AUX)?;
                let adv = x
                    .batch
                    .row_indicator(|k| k == RowKind::Auxiliary)
                    .mul_scalar(SFT_ADVANTAGE);
                weighted_sum(surrogate.tokens(x, adv).tokens, weights)
            }
            SftForm::Separate { coef, aggregation } => {
                cross_entropy_term(x.batch, x.logprobs, &aggregation, &aux)?.mul_scalar(coef)
            }
        }))
    }
}

/// RLTF-SD's self-distillation term on the self-distillation rows (`y1` scored under `x0`,
/// advantages `A_SD`), aggregated with the policy rows (unit policy ∪ self-distillation):
///
/// ```text
/// keep_t = 1[log q_t ≥ threshold]        log q = the sampling log-probs (pre-update policy)
/// adv_t  = rl_coef(step) · A_SD · keep_t
/// L_SD   = Σ_{i,t} w_{i,t} ℓ(adv)_{i,t}    ℓ the RL term's surrogate
/// ```
///
/// Metrics: `sd_loss` (`L_SD`), `sd_coef`, `sd_keep_fraction`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SelfDistillation {
    pub(crate) surrogate: Surrogate,
    pub(crate) aggregation: LossAggregation,
    pub(crate) rl_coef: CoefSchedule,
    pub(crate) threshold: f64,
}

impl Term for SelfDistillation {
    fn rows(&self) -> &'static [RowKind] {
        SD
    }

    fn loss(&self, x: &Inputs<'_>, sink: &mut MetricSink) -> Result<Option<Tensor<1>>> {
        let coef = self.rl_coef.at(x.batch.step());
        sink.push_host(metric::SD_COEF, coef);
        let keep = x.old().greater_equal_elem(self.threshold).float();
        let sd_rows = x.mask(SD);
        let n_sd = count(&sd_rows);
        if n_sd > 0 {
            sink.push(
                metric::SD_KEEP_FRACTION,
                masked_mean(keep.clone(), x.batch.mask_tensor(&sd_rows), n_sd),
            );
        }
        let adv = (x.batch.advantages().clone() * keep).mul_scalar(coef);
        let weights = x.weights(&self.aggregation, SD, POLICY_SD)?;
        let sd = weighted_sum(self.surrogate.tokens(x, adv).tokens, weights);
        sink.push(metric::SD_LOSS, sd.clone());
        Ok(Some(sd))
    }
}

/// RLTF-FM's feedback-modelling term on the auxiliary rows (the critique under the critique
/// prompt):
///
/// ```text
/// L_FM = λ Σ_{i,t} w'_{i,t} (−log π_θ(c_t | prompt, c_<t))     w' normalised over auxiliary rows
/// ```
///
/// Metric: `fm_loss` (before `λ`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FeedbackModelling {
    pub(crate) coef: f64,
    pub(crate) aggregation: LossAggregation,
}

impl Term for FeedbackModelling {
    fn rows(&self) -> &'static [RowKind] {
        AUX
    }

    fn loss(&self, x: &Inputs<'_>, sink: &mut MetricSink) -> Result<Option<Tensor<1>>> {
        let ce = cross_entropy_term(x.batch, x.logprobs, &self.aggregation, &x.mask(AUX))?;
        sink.push(metric::FM_LOSS, ce.clone());
        Ok(Some(ce.mul_scalar(self.coef)))
    }
}

/// MulFeRL's cross-turn preference term on the batch's pairs of [`RowKind::Pair`] rows:
///
/// ```text
/// s(y)  = Σ_t (log π_θ − log π_ref)           (DPO)   or its mean over y's tokens (FCO)
/// Δ     = s(chosen) − s(rejected)
/// L_pair = λ · mean_pairs −log σ(β Δ)         (DPO)   or −log σ(τ (Δ − m))          (FCO)
/// ```
///
/// Nothing without pairs. Metrics: `pair_loss` (before `λ`), `pair_accuracy`, `pair_margin`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PairPreference {
    pub(crate) kind: PairLoss,
    pub(crate) lambda: f64,
}

impl Term for PairPreference {
    fn rows(&self) -> &'static [RowKind] {
        PAIR
    }

    fn needs_reference(&self) -> bool {
        true
    }

    fn loss(&self, x: &Inputs<'_>, sink: &mut MetricSink) -> Result<Option<Tensor<1>>> {
        let batch = x.batch;
        let pairs = batch.pairs();
        if pairs.is_empty() {
            return Ok(None);
        }
        let [b, t] = batch.dims();
        let mask = batch.mask();
        let kinds = batch.row_kinds();
        let row_tokens: Vec<usize> = (0..b).map(|i| count(&mask[i * t..(i + 1) * t])).collect();
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
        let pair_mask = batch.mask_tensor(&x.mask(PAIR));
        // Per-row Σ_t (log π_θ − log π_ref) over the row's trainable tokens: [b].
        let mut per_row = ((x.logprobs.clone() - reference.clone()) * pair_mask)
            .sum_dim(1)
            .reshape([b]);
        if matches!(self.kind, PairLoss::Fco { .. }) {
            let inv: Vec<f32> = row_tokens
                .iter()
                .map(|&n| if n > 0 { 1.0 / n as f32 } else { 0.0 })
                .collect();
            let inv =
                Tensor::<1>::from_data(burn::tensor::TensorData::new(inv, [b]), batch.device());
            per_row = per_row * inv;
        }
        let chosen: Vec<usize> = pairs.iter().map(|p| p.chosen).collect();
        let rejected: Vec<usize> = pairs.iter().map(|p| p.rejected).collect();
        let delta = per_row.clone().select(0, batch.index_tensor(&chosen))
            - per_row.select(0, batch.index_tensor(&rejected));
        let z = match self.kind {
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
        Ok(Some(loss.mul_scalar(self.lambda)))
    }
}
