//! The training batch an objective consumes: `[batch, time]` tensors aligned with the
//! *targets*, plus the host-side bookkeeping (masks, row kinds, pairs) that the aggregation
//! weights and pair losses are built from.
//!
//! # Layout
//!
//! Position `t` of row `i` holds quantities of the token the model predicts at `t`: the
//! policy's log-prob there is `next_token_logprobs(logits, tokens)[i][t]`
//! (`log π(tokens[i][t+1] | tokens[i][..=t])`), and the mask, advantage, sampling and
//! reference log-probs at `[i][t]` describe the same token. Host inputs are flat row-major
//! `Vec`s (`index = i · time + t`), the layout of
//! [`LossAggregation::token_weights`](redraft_credit_assignment::LossAggregation::token_weights)
//! and [`broadcast_advantages`](redraft_credit_assignment::broadcast_advantages).
//!
//! Values on masked-out tokens are ignored: they are replaced by 0 before upload, so padding
//! may hold anything (even NaN). Values on trainable tokens must be finite.
//!
//! # Rows
//!
//! Every row has a [`RowKind`] that says which term of an objective it feeds: the policy
//! gradient (the default), RLTF's self-distillation datum, an auxiliary cross-entropy target
//! (R^3L's SFT items, RLTF-FM's critiques) or one side of a preference pair (MulFeRL). An
//! objective refuses rows of kinds it does not train ([`Error::UnsupportedRow`]).

use burn::tensor::{Device, Int, Tensor, TensorData};
use redraft_credit_assignment::LossAggregation;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Which term of an objective a row feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RowKind {
    /// A policy-gradient row: its trainable tokens carry the (clipped / OPMD / IS) surrogate
    /// with the row's advantages.
    #[default]
    Policy,
    /// An RLTF-SD self-distillation datum: the second-turn response `y1` scored under the
    /// first-turn prompt `x0`; its advantages hold the sequence-level `A_SD` (before `rl_coef`
    /// and the log-prob mask, which the objective applies).
    SelfDistillation,
    /// An auxiliary cross-entropy target: R^3L's SFT items (reflections, guided retries) and
    /// RLTF-FM's critique tokens under the critique prompt. Advantages are ignored.
    Auxiliary,
    /// One side of a MulFeRL preference pair (see [`PairRows`]). Advantages are ignored.
    Pair,
}

/// A preference pair: the row indices of the chosen and the rejected response (both rows of
/// kind [`RowKind::Pair`]). The sums and means over a side run over that row's trainable tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairRows {
    /// Row of the chosen (preferred) response.
    pub chosen: usize,
    /// Row of the rejected response.
    pub rejected: usize,
}

/// The inputs of an [`Objective`](crate::Objective) other than the policy's own log-probs.
///
/// Built on the host and uploaded once to `device`, which must be the device of the
/// log-probs the objective will receive (for training, the autodiff device). All uploaded
/// tensors are constants (no gradient flows into them).
///
/// ```
/// use redraft_model::burn::tensor::Device;
/// use redraft_objectives::PolicyBatch;
///
/// let device = Device::flex();
/// // 2 rows x 3 targets; row 1 has one padding token.
/// let mask = vec![true, true, true, true, true, false];
/// let adv = vec![0.5, 0.5, 0.5, -0.5, -0.5, 0.0];
/// let batch = PolicyBatch::new([2, 3], mask, adv, &device)?
///     .with_old_logprobs(vec![-1.0; 6])?;
/// assert_eq!(batch.dims(), [2, 3]);
/// # Ok::<(), redraft_objectives::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct PolicyBatch {
    batch: usize,
    time: usize,
    device: Device,
    mask: Vec<bool>,
    kinds: Vec<RowKind>,
    item_weights: Option<Vec<f32>>,
    pairs: Vec<PairRows>,
    step: u64,
    response_budget: Option<usize>,
    advantages: Tensor<2>,
    old_logprobs: Option<Tensor<2>>,
    ref_logprobs: Option<Tensor<2>>,
}

impl PolicyBatch {
    /// A batch of `[batch, time]` targets with its trainable `mask` and per-token
    /// `advantages` (flat row-major; see the module docs). All rows are
    /// [`RowKind::Policy`], item weights 1, no sampling or reference log-probs (on-policy:
    /// the ratio is 1), step 0.
    ///
    /// # Errors
    /// [`Error::EmptyBatch`] if `batch` or `time` is 0; [`Error::ShapeMismatch`] if a `Vec`
    /// does not have `batch · time` entries; [`Error::NonFinite`] for a non-finite advantage
    /// on a trainable token.
    pub fn new(
        [batch, time]: [usize; 2],
        mask: Vec<bool>,
        advantages: Vec<f32>,
        device: &Device,
    ) -> Result<Self> {
        if batch == 0 || time == 0 {
            return Err(Error::EmptyBatch { batch, time });
        }
        check_shape("mask", [batch, time], mask.len())?;
        let adv = sanitize("advantage", [batch, time], &mask, advantages)?;
        Ok(Self {
            batch,
            time,
            device: device.clone(),
            advantages: upload(adv, [batch, time], device),
            mask,
            kinds: vec![RowKind::Policy; batch],
            item_weights: None,
            pairs: Vec::new(),
            step: 0,
            response_budget: None,
            old_logprobs: None,
            ref_logprobs: None,
        })
    }

    /// Sampling ("old") log-probs `log π_old` of the targets, flat `[batch, time]`: the
    /// denominator of the importance ratio `ρ = exp(log π − log π_old)`. Without them the
    /// objective uses the detached current log-probs (ratio exactly 1, gradient `A ∇ log π`).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`]; [`Error::NonFinite`] on a trainable token.
    pub fn with_old_logprobs(mut self, old_logprobs: Vec<f32>) -> Result<Self> {
        let v = sanitize("old log-prob", self.dims(), &self.mask, old_logprobs)?;
        self.old_logprobs = Some(upload(v, self.dims(), &self.device));
        Ok(self)
    }

    /// Reference-model log-probs `log π_ref` of the targets, flat `[batch, time]`: used by
    /// the KL penalty and by the DPO / FCO pair losses.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`]; [`Error::NonFinite`] on a trainable token.
    pub fn with_ref_logprobs(mut self, ref_logprobs: Vec<f32>) -> Result<Self> {
        let v = sanitize("reference log-prob", self.dims(), &self.mask, ref_logprobs)?;
        self.ref_logprobs = Some(upload(v, self.dims(), &self.device));
        Ok(self)
    }

    /// [`with_old_logprobs`](Self::with_old_logprobs) from a `[batch, time]` tensor already on
    /// the batch's device (no host round trip). The tensor is detached and its masked-out
    /// positions are set to 0; its trainable values are not checked for finiteness.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`].
    pub fn with_old_logprobs_tensor(mut self, old_logprobs: Tensor<2>) -> Result<Self> {
        self.old_logprobs = Some(self.constant("old log-probs ([batch, time])", old_logprobs)?);
        Ok(self)
    }

    /// [`with_ref_logprobs`](Self::with_ref_logprobs) from a `[batch, time]` tensor already on
    /// the batch's device (for example the reference model's `next_token_logprobs`). Detached,
    /// masked-out positions set to 0, not checked for finiteness.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`].
    pub fn with_ref_logprobs_tensor(mut self, ref_logprobs: Tensor<2>) -> Result<Self> {
        self.ref_logprobs =
            Some(self.constant("reference log-probs ([batch, time])", ref_logprobs)?);
        Ok(self)
    }

    fn constant(&self, what: &'static str, t: Tensor<2>) -> Result<Tensor<2>> {
        self.check_dims(what, &t)?;
        let off = self.mask_tensor(&self.mask).equal_elem(0.0);
        Ok(t.detach().mask_fill(off, 0.0))
    }

    /// The kind of every row (length `batch`).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] if `kinds.len() != batch`.
    pub fn with_row_kinds(mut self, kinds: Vec<RowKind>) -> Result<Self> {
        if kinds.len() != self.batch {
            return Err(Error::ShapeMismatch {
                what: "row kinds ([batch])",
                expected: vec![self.batch],
                found: vec![kinds.len()],
            });
        }
        self.kinds = kinds;
        Ok(self)
    }

    /// Per-row weights (length `batch`), multiplied into the aggregation weights of the
    /// policy-gradient, self-distillation and auxiliary terms: `w_{i,t} ← w_{i,t} · c_i`.
    /// Default 1. Use them to down-weight items (for example replayed or off-policy data);
    /// none of the reproduced methods needs them.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`]; [`Error::NonFinite`] for a non-finite weight.
    pub fn with_item_weights(mut self, weights: Vec<f32>) -> Result<Self> {
        if weights.len() != self.batch {
            return Err(Error::ShapeMismatch {
                what: "item weights ([batch])",
                expected: vec![self.batch],
                found: vec![weights.len()],
            });
        }
        if let Some((index, &value)) = weights.iter().enumerate().find(|(_, w)| !w.is_finite()) {
            return Err(Error::NonFinite {
                what: "item weight",
                index,
                value,
            });
        }
        self.item_weights = Some(weights);
        Ok(self)
    }

    /// Preference pairs (row indices into this batch; both rows must be
    /// [`RowKind::Pair`] — checked when a pair objective uses them).
    pub fn with_pairs(mut self, pairs: Vec<PairRows>) -> Self {
        self.pairs = pairs;
        self
    }

    /// The training step (number of optimiser updates so far), read by schedules such as
    /// RLTF-SD's linear `rl_coef` ramp. Default 0.
    pub fn with_step(mut self, step: u64) -> Self {
        self.step = step;
        self
    }

    /// The response length budget (the most tokens a sampled response may have, the rollout's
    /// `max_new_tokens`): the divisor of `seq-mean-token-sum-norm` without a `constant`
    /// (Dr.GRPO; see
    /// [`LossAggregation::token_weights_with_budget`](redraft_credit_assignment::LossAggregation::token_weights_with_budget)).
    /// Without it that divisor is the time dimension, which also counts the prompt.
    pub fn with_response_budget(mut self, max_new_tokens: usize) -> Self {
        self.response_budget = Some(max_new_tokens);
        self
    }

    /// The response length budget, if given.
    pub fn response_budget(&self) -> Option<usize> {
        self.response_budget
    }

    /// `[batch, time]`.
    pub fn dims(&self) -> [usize; 2] {
        [self.batch, self.time]
    }

    /// The device the batch's tensors live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The trainable mask, flat `[batch, time]`.
    pub fn mask(&self) -> &[bool] {
        &self.mask
    }

    /// The kind of every row.
    pub fn row_kinds(&self) -> &[RowKind] {
        &self.kinds
    }

    /// The preference pairs.
    pub fn pairs(&self) -> &[PairRows] {
        &self.pairs
    }

    /// The training step.
    pub fn step(&self) -> u64 {
        self.step
    }

    /// Per-token advantages `[batch, time]` (0 on masked-out tokens).
    pub fn advantages(&self) -> &Tensor<2> {
        &self.advantages
    }

    /// Sampling log-probs `[batch, time]`, if given.
    pub fn old_logprobs(&self) -> Option<&Tensor<2>> {
        self.old_logprobs.as_ref()
    }

    /// Reference log-probs `[batch, time]`, if given.
    pub fn ref_logprobs(&self) -> Option<&Tensor<2>> {
        self.ref_logprobs.as_ref()
    }

    /// `Err(UnsupportedRow)` for the first row whose kind is not in `allowed`.
    pub(crate) fn require_kinds(&self, objective: &'static str, allowed: &[RowKind]) -> Result<()> {
        match self
            .kinds
            .iter()
            .enumerate()
            .find(|(_, k)| !allowed.contains(k))
        {
            Some((row, &kind)) => Err(Error::UnsupportedRow {
                objective,
                kind,
                row,
            }),
            None => Ok(()),
        }
    }

    /// The trainable mask restricted to rows whose kind satisfies `rows`.
    pub(crate) fn rows_mask(&self, rows: impl Fn(RowKind) -> bool) -> Vec<bool> {
        self.mask
            .iter()
            .enumerate()
            .map(|(k, &m)| m && rows(self.kinds[k / self.time]))
            .collect()
    }

    /// 1.0 on every position (trainable or not) of the rows whose kind satisfies `rows`.
    pub(crate) fn row_indicator(&self, rows: impl Fn(RowKind) -> bool) -> Tensor<2> {
        let v = (0..self.batch * self.time)
            .map(|k| f32::from(u8::from(rows(self.kinds[k / self.time]))))
            .collect();
        self.upload(v)
    }

    /// Aggregation weights of `agg` over `mask` (a restriction of the batch mask), times the
    /// item weights, uploaded.
    pub(crate) fn weights(&self, agg: &LossAggregation, mask: &[bool]) -> Result<Tensor<2>> {
        let mut w =
            agg.token_weights_with_budget(mask, self.batch, self.time, self.response_budget)?;
        if let Some(iw) = &self.item_weights {
            for (k, x) in w.iter_mut().enumerate() {
                *x *= iw[k / self.time];
            }
        }
        Ok(self.upload(w))
    }

    /// A host mask as a 0/1 tensor.
    pub(crate) fn mask_tensor(&self, mask: &[bool]) -> Tensor<2> {
        self.upload(mask.iter().map(|&m| f32::from(u8::from(m))).collect())
    }

    /// Uploads flat `[batch, time]` values to the batch's device.
    pub(crate) fn upload(&self, values: Vec<f32>) -> Tensor<2> {
        upload(values, self.dims(), &self.device)
    }

    /// Row indices as an int tensor on the batch's device.
    pub(crate) fn index_tensor(&self, rows: &[usize]) -> Tensor<1, Int> {
        let v: Vec<i32> = rows
            .iter()
            .map(|&r| i32::try_from(r).unwrap_or(i32::MAX))
            .collect();
        Tensor::<1, Int>::from_data(TensorData::new(v, [rows.len()]), &self.device)
    }

    /// `Err(ShapeMismatch)` unless `t` is `[batch, time]`.
    pub(crate) fn check_dims(&self, what: &'static str, t: &Tensor<2>) -> Result<()> {
        let found = t.dims();
        if found != self.dims() {
            return Err(Error::ShapeMismatch {
                what,
                expected: self.dims().to_vec(),
                found: found.to_vec(),
            });
        }
        Ok(())
    }
}

fn check_shape(what: &'static str, [batch, time]: [usize; 2], len: usize) -> Result<()> {
    if len != batch * time {
        return Err(Error::ShapeMismatch {
            what,
            expected: vec![batch, time],
            found: vec![len],
        });
    }
    Ok(())
}

/// Checks the length, zeroes masked-out values and rejects non-finite trainable ones.
fn sanitize(
    what: &'static str,
    dims: [usize; 2],
    mask: &[bool],
    mut values: Vec<f32>,
) -> Result<Vec<f32>> {
    check_shape(what, dims, values.len())?;
    for (index, (v, &m)) in values.iter_mut().zip(mask).enumerate() {
        if !m {
            *v = 0.0;
        } else if !v.is_finite() {
            return Err(Error::NonFinite {
                what,
                index,
                value: *v,
            });
        }
    }
    Ok(values)
}

fn upload(values: Vec<f32>, [batch, time]: [usize; 2], device: &Device) -> Tensor<2> {
    Tensor::<2>::from_data(TensorData::new(values, [batch, time]), device)
}
