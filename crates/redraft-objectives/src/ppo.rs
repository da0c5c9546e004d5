//! RLVR: the PPO-style clipped surrogate with clip-higher, dual clip, the verl aggregation
//! modes, a KL penalty to a reference and an optional entropy bonus; presets GRPO, Dr.GRPO
//! and DAPO (ALGORITHMS.md §1.1–1.3).
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

use burn::tensor::Tensor;
use redraft_credit_assignment::LossAggregation;
use serde::{Deserialize, Serialize};

use crate::batch::{PolicyBatch, RowKind};
use crate::error::{Error, Result, check_non_negative, check_param};
use crate::kl::{KlEstimator, LOG_RATIO_CLAMP};
use crate::objective::{
    LossOutput, MetricSink, Objective, count, masked_mean, metric, prepare_inputs,
    push_ratio_stats, weighted_sum,
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

    /// Dr.GRPO: ε 0.2, `seq-mean-token-sum-norm` (Σ over tokens / a constant), no KL. Set
    /// the aggregation's `constant` to the maximum response length to reproduce the paper;
    /// `None` divides by the padded time dimension (verl's default).
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
    /// [`Error::InvalidParameter`].
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

    pub(crate) fn settings(&self) -> PgSettings {
        PgSettings {
            surrogate: Surrogate::Ratio(Some(self.clip())),
            aggregation: self.aggregation,
            kl_coef: self.kl_coef,
            kl_estimator: self.kl_estimator,
            entropy_coef: self.entropy_coef,
        }
    }
}

/// Changes to an [`RlvrConfig`] preset: what a config file under `method = "grpo"`,
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

/// The RLVR objective (GRPO, Dr.GRPO, DAPO, generic PPO clip). Trains
/// [`RowKind::Policy`] rows only.
#[derive(Debug, Clone, PartialEq)]
pub struct RlvrObjective {
    name: &'static str,
    config: RlvrConfig,
}

impl RlvrObjective {
    /// An RLVR objective reported under `name` (`"grpo"`, `"dapo"`, ...).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] (see [`RlvrConfig::validate`]).
    pub fn new(name: &'static str, config: RlvrConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self { name, config })
    }

    /// The settings.
    pub fn config(&self) -> &RlvrConfig {
        &self.config
    }
}

impl Objective for RlvrObjective {
    fn name(&self) -> &'static str {
        self.name
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
        batch.require_kinds(self.name, &[RowKind::Policy])?;
        let mut sink = MetricSink::default();
        let rows = batch.rows_mask(|_| true);
        let loss = policy_terms(
            &self.config.settings(),
            batch,
            &logprobs,
            entropy.as_ref(),
            batch.advantages().clone(),
            &rows,
            None,
            &mut sink,
        )?;
        let metrics = sink.finish(&loss)?;
        Ok(LossOutput { loss, metrics })
    }
}

// ---------------------------------------------------------------------------------------
// Shared pieces (also used by OPMD, R^3L, RLTF and MulFeRL).

/// The clip range of the PPO surrogate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Clip {
    pub(crate) low: f64,
    pub(crate) high: f64,
    pub(crate) dual_c: Option<f64>,
}

/// The per-token policy-gradient surrogate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Surrogate {
    /// `−A ρ`, clipped if `Some` (PPO / GRPO / DAPO); unclipped = tinker's
    /// `importance_sampling` loss.
    Ratio(Option<Clip>),
    /// OPMD: `−A log π_θ / (1 + τ)`, no ratio.
    Opmd { tau: f64 },
}

/// A policy-gradient term with its regularisers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct PgSettings {
    pub(crate) surrogate: Surrogate,
    pub(crate) aggregation: LossAggregation,
    pub(crate) kl_coef: f64,
    pub(crate) kl_estimator: KlEstimator,
    pub(crate) entropy_coef: f64,
}

/// `log π_θ − log π_old`, clamped to ±20 (verl); `log π_old` = detached `log π_θ` if absent.
pub(crate) fn log_ratio(logprobs: &Tensor<2>, old: Option<&Tensor<2>>) -> Tensor<2> {
    let old = match old {
        Some(o) => o.clone(),
        None => logprobs.clone().detach(),
    };
    (logprobs.clone() - old).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
}

/// Per-token clipped surrogate loss and the 0/1 indicators of the clip and the dual clip.
pub(crate) fn clipped_tokens(
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

/// The policy-gradient term over the tokens of `rows` (a restriction of the batch mask) with
/// per-token advantages `adv`, plus its KL penalty and entropy bonus on the same tokens and
/// weights. Pushes policy_loss, policy_tokens, clip fractions, ratio stats, approx_kl, kl,
/// entropy; with `split = Some((name, indicator))` also the part of the policy term on the
/// positions where the 0/1 `indicator` is 1, under `name`.
#[allow(clippy::too_many_arguments)] // reason: internal helper shared by every objective
pub(crate) fn policy_terms(
    s: &PgSettings,
    batch: &PolicyBatch,
    logprobs: &Tensor<2>,
    entropy: Option<&Tensor<2>>,
    adv: Tensor<2>,
    rows: &[bool],
    split: Option<(&'static str, Tensor<2>)>,
    sink: &mut MetricSink,
) -> Result<Tensor<1>> {
    let n = count(rows);
    let weights = batch.weights(&s.aggregation, rows)?;
    let mask01 = batch.mask_tensor(rows);
    sink.push_host(metric::POLICY_TOKENS, n as f64);

    let tokens = match s.surrogate {
        Surrogate::Ratio(clip) => {
            let lr = log_ratio(logprobs, batch.old_logprobs());
            let ratio = lr.clone().exp();
            push_ratio_stats(sink, &ratio, &mask01, n);
            if n > 0 && batch.old_logprobs().is_some() {
                sink.push(
                    metric::APPROX_KL,
                    masked_mean(-lr.detach(), mask01.clone(), n),
                );
            }
            let (tokens, clipped, lower) = clipped_tokens(ratio, adv, clip);
            if n > 0 {
                if let Some(c) = clipped {
                    sink.push(metric::CLIP_FRACTION, masked_mean(c, mask01.clone(), n));
                }
                if let Some(c) = lower {
                    sink.push(
                        metric::CLIP_FRACTION_LOWER,
                        masked_mean(c, mask01.clone(), n),
                    );
                }
            }
            tokens
        }
        Surrogate::Opmd { tau } => {
            if let (Some(old), true) = (batch.old_logprobs(), n > 0) {
                let ratio = log_ratio(logprobs, Some(old)).exp();
                push_ratio_stats(sink, &ratio, &mask01, n);
            }
            -(adv * logprobs.clone()).div_scalar(1.0 + tau)
        }
    };
    if let Some((name, indicator)) = split {
        sink.push(
            name,
            weighted_sum(tokens.clone().detach(), weights.clone() * indicator),
        );
    }
    let pg = weighted_sum(tokens, weights.clone());
    sink.push(metric::POLICY_LOSS, pg.clone());
    let mut loss = pg;

    if let Some(kl) = kl_term(s, batch, logprobs, weights.clone(), sink)? {
        loss = loss + kl;
    }
    if let Some(h) = entropy {
        if n > 0 {
            sink.push(metric::ENTROPY, masked_mean(h.clone().detach(), mask01, n));
        }
        if s.entropy_coef > 0.0 {
            loss = loss - weighted_sum(h.clone(), weights).mul_scalar(s.entropy_coef);
        }
    } else if s.entropy_coef > 0.0 {
        return Err(Error::MissingInput {
            what: "entropy",
            why: "the entropy bonus has a positive coefficient",
        });
    }
    Ok(loss)
}

/// `β Σ w KL` if `β > 0` (needs reference log-probs); pushes the aggregated KL whenever
/// reference log-probs are present.
fn kl_term(
    s: &PgSettings,
    batch: &PolicyBatch,
    logprobs: &Tensor<2>,
    weights: Tensor<2>,
    sink: &mut MetricSink,
) -> Result<Option<Tensor<1>>> {
    let Some(reference) = batch.ref_logprobs() else {
        if s.kl_coef > 0.0 {
            return Err(Error::MissingInput {
                what: "reference log-probs",
                why: "the KL penalty has a positive coefficient",
            });
        }
        return Ok(None);
    };
    let kl = weighted_sum(
        s.kl_estimator.tokens(logprobs.clone(), reference.clone()),
        weights,
    );
    sink.push(metric::KL, kl.clone());
    Ok((s.kl_coef > 0.0).then(|| kl.mul_scalar(s.kl_coef)))
}
