//! The [`Objective`] trait, its output ([`LossOutput`], [`Metrics`]) and the small loss helpers
//! the terms share.
//!
//! # How a trainer calls an objective
//!
//! ```text
//! logits   = model.forward(tokens) / T                  # [batch, seq, vocab], autodiff device;
//!                                                       # T the rollout temperature (1 for SFT)
//! logprobs = next_token_logprobs(logits, tokens)        # [batch, seq − 1]
//! entropy  = entropy(logits[:, :-1])                    # only if the objective needs it
//! out      = objective.loss(&batch, logprobs, entropy)? # batch built with PolicyBatch::new(..)
//! grads    = out.loss.backward()
//! log(out.metrics)
//! ```
//!
//! # Metrics and their cost
//!
//! Metrics are plain `f64` values read back from the device after the loss is built. All of
//! them are gathered into one small tensor and read in **one** device synchronisation per
//! call (a few dozen floats), which on a GPU waits for the forward pass to finish. Metric
//! tensors are detached, so they add nothing to the backward graph.

use std::fmt;

use burn::tensor::Tensor;

use crate::batch::PolicyBatch;
use crate::error::{Error, Result};

/// A policy objective: from a [`PolicyBatch`] and the policy's log-probs of the batch's
/// targets, the scalar loss to minimise and its metrics.
pub trait Objective: fmt::Debug + Send + Sync {
    /// The method's name (`"grpo"`, `"opmd"`, ...), as in
    /// [`ObjectiveConfig`](crate::ObjectiveConfig)'s `type` tag.
    fn name(&self) -> &'static str;

    /// Whether [`loss`](Self::loss) needs reference log-probs in the batch (KL penalty with a
    /// positive coefficient, DPO / FCO pair losses).
    fn needs_reference(&self) -> bool;

    /// Whether [`loss`](Self::loss) needs per-token entropies (an entropy bonus with a
    /// positive coefficient). Entropies passed anyway are only reported as a metric.
    fn needs_entropy(&self) -> bool;

    /// The loss (shape `[1]`, to minimise) and its metrics.
    ///
    /// # Shapes
    /// - `logprobs`: `[batch, time]`, `log π_θ` of each target (the output of
    ///   `next_token_logprobs`), on the batch's device, tracked by autodiff for training;
    /// - `entropy`: `[batch, time]`, the policy's entropy at each position, if available.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] for inputs that do not match the batch,
    /// [`Error::MissingInput`] for missing reference log-probs or entropies,
    /// [`Error::UnsupportedRow`] for rows this objective does not train,
    /// [`Error::InvalidPair`] for bad preference pairs, [`Error::TensorRead`] if the metrics
    /// cannot be read back.
    fn loss(
        &self,
        batch: &PolicyBatch,
        logprobs: Tensor<2>,
        entropy: Option<Tensor<2>>,
    ) -> Result<LossOutput>;
}

impl<T: Objective + ?Sized> Objective for Box<T> {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn needs_reference(&self) -> bool {
        (**self).needs_reference()
    }
    fn needs_entropy(&self) -> bool {
        (**self).needs_entropy()
    }
    fn loss(
        &self,
        batch: &PolicyBatch,
        logprobs: Tensor<2>,
        entropy: Option<Tensor<2>>,
    ) -> Result<LossOutput> {
        (**self).loss(batch, logprobs, entropy)
    }
}

/// What [`Objective::loss`] returns.
#[derive(Debug, Clone)]
pub struct LossOutput {
    /// The scalar loss, shape `[1]`; call `backward()` on it.
    pub loss: Tensor<1>,
    /// Metrics of this call (see [`metric`] for the names).
    pub metrics: Metrics,
}

/// Metric names. Each objective reports the subset that applies to it.
pub mod metric {
    /// The total loss (what `backward` differentiates).
    pub const LOSS: &str = "loss";
    /// The policy-gradient term alone (clipped surrogate, OPMD or IS term), aggregated.
    pub const POLICY_LOSS: &str = "policy_loss";
    /// The KL estimate to the reference, aggregated like the policy term (before `β`).
    pub const KL: &str = "kl";
    /// Mean entropy over the trainable tokens of the policy rows.
    pub const ENTROPY: &str = "entropy";
    /// Share of trainable tokens where the clipped term is active (verl `pg_clipfrac`:
    /// `−A·clip(ρ) > −A·ρ`).
    pub const CLIP_FRACTION: &str = "clip_fraction";
    /// Share of trainable tokens where the dual clip is active (`A < 0` and
    /// `max(−Aρ, −A clip(ρ)) > −A c`; verl `pg_clipfrac_lower`).
    pub const CLIP_FRACTION_LOWER: &str = "clip_fraction_lower";
    /// Mean importance ratio over trainable tokens.
    pub const RATIO_MEAN: &str = "ratio_mean";
    /// Smallest importance ratio over trainable tokens.
    pub const RATIO_MIN: &str = "ratio_min";
    /// Largest importance ratio over trainable tokens.
    pub const RATIO_MAX: &str = "ratio_max";
    /// verl's `ppo_kl`: token-mean of `log π_old − log π` over trainable tokens.
    pub const APPROX_KL: &str = "approx_kl";
    /// R^3L: token-mean negative log-likelihood of the auxiliary SFT tokens.
    pub const SFT_LOSS: &str = "sft_loss";
    /// RLTF-SD: the self-distillation term (already scaled by `rl_coef`), aggregated.
    pub const SD_LOSS: &str = "sd_loss";
    /// RLTF-SD: the `rl_coef` used at this step.
    pub const SD_COEF: &str = "sd_coef";
    /// RLTF-SD: share of self-distillation tokens kept by the log-prob threshold.
    pub const SD_KEEP_FRACTION: &str = "sd_keep_fraction";
    /// RLTF-FM: the critique cross-entropy, aggregated (before `λ`).
    pub const FM_LOSS: &str = "fm_loss";
    /// MulFeRL: the DPO / FCO pair loss, mean over pairs (before `λ`).
    pub const PAIR_LOSS: &str = "pair_loss";
    /// MulFeRL: share of pairs with `Δ > 0`.
    pub const PAIR_ACCURACY: &str = "pair_accuracy";
    /// MulFeRL: mean margin `Δ` over pairs.
    pub const PAIR_MARGIN: &str = "pair_margin";
    /// Number of trainable tokens in the policy-gradient term.
    pub const POLICY_TOKENS: &str = "policy_tokens";
}

/// Named `f64` metrics of one [`Objective::loss`] call, in insertion order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics {
    entries: Vec<(&'static str, f64)>,
}

impl Metrics {
    /// The value of metric `name`, if reported.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.entries
            .iter()
            .find(|(n, _)| *n == name)
            .map(|&(_, v)| v)
    }

    /// All metrics, in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, f64)> + '_ {
        self.entries.iter().copied()
    }

    /// Number of metrics.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there is no metric.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Collects detached scalar tensors and reads them in one synchronisation.
#[derive(Default)]
pub(crate) struct MetricSink {
    names: Vec<&'static str>,
    values: Vec<Tensor<1>>,
    host: Vec<(&'static str, f64)>,
}

impl MetricSink {
    /// A device value (shape `[1]`).
    pub(crate) fn push(&mut self, name: &'static str, value: Tensor<1>) {
        self.names.push(name);
        self.values.push(value.detach());
    }

    /// A value known on the host.
    pub(crate) fn push_host(&mut self, name: &'static str, value: f64) {
        self.host.push((name, value));
    }

    /// Reads the device values (one synchronisation) and returns all metrics, `loss` first.
    pub(crate) fn finish(mut self, loss: &Tensor<1>) -> Result<Metrics> {
        self.names.insert(0, metric::LOSS);
        self.values.insert(0, loss.clone().detach());
        let data = Tensor::cat(self.values, 0)
            .try_into_data()
            .map_err(|e| Error::TensorRead(format!("{e:?}")))?;
        let values: Vec<f32> = data
            .try_into_vec_as::<f32>()
            .map_err(|e| Error::TensorRead(format!("{e:?}")))?;
        let mut entries: Vec<(&'static str, f64)> = self
            .names
            .into_iter()
            .zip(values)
            .map(|(n, v)| (n, f64::from(v)))
            .collect();
        entries.extend(self.host);
        Ok(Metrics { entries })
    }
}

/// `Σ_{i,t} w_{i,t} · x_{i,t}` → shape `[1]`.
pub(crate) fn weighted_sum(values: Tensor<2>, weights: Tensor<2>) -> Tensor<1> {
    (values * weights).sum()
}

/// Mean of `values` over the tokens where `mask01` is 1 (`n` of them, `n > 0`).
pub(crate) fn masked_mean(values: Tensor<2>, mask01: Tensor<2>, n: usize) -> Tensor<1> {
    (values * mask01).sum().div_scalar(n.max(1) as f64)
}

/// Count of `true` in a host mask.
pub(crate) fn count(mask: &[bool]) -> usize {
    mask.iter().filter(|&&m| m).count()
}

/// Pushes the mean / min / max of `ratio` over the tokens of `mask` (if any).
pub(crate) fn push_ratio_stats(
    sink: &mut MetricSink,
    ratio: &Tensor<2>,
    mask01: &Tensor<2>,
    n: usize,
) {
    if n == 0 {
        return;
    }
    let ratio = ratio.clone().detach();
    let off = mask01.clone().equal_elem(0.0);
    sink.push(
        metric::RATIO_MEAN,
        masked_mean(ratio.clone(), mask01.clone(), n),
    );
    sink.push(
        metric::RATIO_MIN,
        ratio.clone().mask_fill(off.clone(), f32::INFINITY).min(),
    );
    sink.push(
        metric::RATIO_MAX,
        ratio.mask_fill(off, f32::NEG_INFINITY).max(),
    );
}

/// Checks `logprobs` (and `entropy`) against the batch and sets their masked-out positions to
/// 0, so that a non-finite value on padding (a `−inf` log-prob of a padding target) cannot
/// poison the sums (`0 · inf = NaN`). Gradients at those positions are 0 either way.
pub(crate) fn prepare_inputs(
    batch: &PolicyBatch,
    logprobs: Tensor<2>,
    entropy: Option<Tensor<2>>,
) -> Result<(Tensor<2>, Option<Tensor<2>>)> {
    batch.check_dims("logprobs ([batch, time])", &logprobs)?;
    if let Some(e) = &entropy {
        batch.check_dims("entropy ([batch, time])", e)?;
    }
    let off = batch.mask_tensor(batch.mask()).equal_elem(0.0);
    Ok((
        logprobs.mask_fill(off.clone(), 0.0),
        entropy.map(|e| e.mask_fill(off, 0.0)),
    ))
}

/// Cross-entropy (negative log-likelihood) of the tokens of `rows` (a restriction of the batch
/// mask), aggregated with `agg`: `Σ_{i,t} w_{i,t} · (−log π_θ)`.
pub(crate) fn cross_entropy_term(
    batch: &PolicyBatch,
    logprobs: &Tensor<2>,
    agg: &redraft_credit_assignment::LossAggregation,
    rows: &[bool],
) -> Result<Tensor<1>> {
    let w = batch.weights(agg, rows)?;
    Ok(weighted_sum(-logprobs.clone(), w))
}
