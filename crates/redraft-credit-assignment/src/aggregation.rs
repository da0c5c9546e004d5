//! Loss aggregation as per-token weights.
//!
//! verl's `agg_loss(loss_mat, loss_mask, mode)` reduces a `[batch, time]` per-token loss to a
//! scalar. Every mode is linear in the loss, so it equals `Σ_i Σ_t w[i][t] · ℓ[i][t]` for
//! weights that depend only on the mask. [`LossAggregation::token_weights`] returns those
//! weights; the objectives crate multiplies its per-token loss tensor by them and sums.
//!
//! # Layout
//!
//! Weights and masks are **flat, row-major `[batch, time]`** `Vec`s (`index = i * time + t`),
//! ready for `TensorData::new(weights, [batch, time])`. Masked-out tokens (`mask == false`)
//! always get weight 0. [`LossAggregation::token_weights_ragged`] does the same for ragged
//! rows (`Vec<Vec<bool>>`, `time` = longest row).
//!
//! # The normalisation unit
//!
//! The weights normalise over the batch passed in. verl aggregates per micro-batch (and
//! rescales for gradient accumulation); Trinity-RFT likewise. Pass whatever unit the objective
//! reproduces.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, check_finite, check_len};

/// How a `[batch, time]` per-token loss is reduced to a scalar.
///
/// Serialised with a `kind` tag in snake case (`{"kind": "token_mean"}`); verl's dashed names
/// (`"token-mean"`, ...) are accepted as aliases and by [`LossAggregation::from_verl_name`].
/// Default: `TokenMean`, the verl / Trinity-RFT default.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LossAggregation {
    /// verl `"token-mean"` (DAPO's token-level normalisation; verl, Trinity default):
    /// `loss = Σ_{i,t} m_{i,t} ℓ_{i,t} / Σ_{i,t} m_{i,t}`, so `w = 1/N_tokens`.
    ///
    /// verl's `masked_mean` adds 1e-8 to the denominator; this does not (the weights sum to
    /// exactly 1). A batch with no valid token gets all-zero weights.
    #[default]
    #[serde(alias = "token-mean")]
    TokenMean,
    /// verl `"seq-mean-token-mean"` (the GRPO paper's `1/G Σ_i 1/|o_i| Σ_t`):
    /// `loss = (1/S) Σ_i (Σ_t m ℓ / Σ_t m)`, so `w_{i,t} = 1 / (S · n_i)` where `n_i` is row
    /// i's valid-token count and `S` the number of rows with `n_i > 0`.
    #[serde(alias = "seq-mean-token-mean")]
    SeqMeanTokenMean,
    /// verl `"seq-mean-token-sum"`: `loss = (1/S) Σ_i Σ_t m ℓ`, so `w = 1/S`.
    #[serde(alias = "seq-mean-token-sum")]
    SeqMeanTokenSum,
    /// verl `"seq-mean-token-sum-norm"` (Dr.GRPO): `loss = Σ_{i,t} m ℓ / C`, so `w = 1/C`.
    /// `C` = `constant` (verl's `loss_scale_factor`), or when `None` the response length budget
    /// the caller passes to [`token_weights_with_budget`](Self::token_weights_with_budget)
    /// (Dr.GRPO's constant, the maximum number of generated tokens: verl's
    /// `loss_mask.shape[-1]`, its responses being padded to `response_length`), or without one
    /// the time dimension of the batch.
    #[serde(alias = "seq-mean-token-sum-norm")]
    SeqMeanTokenSumNorm {
        /// The divisor C; `None` = the response length budget (else the padded time
        /// dimension).
        #[serde(default)]
        constant: Option<f32>,
    },
    /// Plain sum over valid tokens, `w = 1`: tinker's built-in losses as used by the RLTF code
    /// (`importance_sampling`, `cross_entropy`: Σ over tokens, no length normalisation).
    /// Not a verl mode.
    #[serde(alias = "token-sum")]
    TokenSum,
}

impl LossAggregation {
    /// verl's name for the mode (`"token-mean"`, ...); `None` for [`TokenSum`](Self::TokenSum).
    pub fn verl_name(&self) -> Option<&'static str> {
        match self {
            Self::TokenMean => Some("token-mean"),
            Self::SeqMeanTokenMean => Some("seq-mean-token-mean"),
            Self::SeqMeanTokenSum => Some("seq-mean-token-sum"),
            Self::SeqMeanTokenSumNorm { .. } => Some("seq-mean-token-sum-norm"),
            Self::TokenSum => None,
        }
    }

    /// Parses verl's `loss_agg_mode` string (`seq-mean-token-sum-norm` gets `constant: None`).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for an unknown name.
    pub fn from_verl_name(name: &str) -> Result<Self> {
        Ok(match name {
            "token-mean" => Self::TokenMean,
            "seq-mean-token-mean" => Self::SeqMeanTokenMean,
            "seq-mean-token-sum" => Self::SeqMeanTokenSum,
            "seq-mean-token-sum-norm" => Self::SeqMeanTokenSumNorm { constant: None },
            other => {
                return Err(Error::InvalidParameter {
                    name: "loss_agg_mode",
                    reason: format!("unknown verl loss_agg_mode {other:?}"),
                });
            }
        })
    }

    /// Per-token weights `w` (flat row-major `[batch, time]`) such that
    /// `Σ_i Σ_t w[i·time + t] · ℓ[i·time + t]` equals verl's `agg_loss(ℓ, mask, mode)`.
    ///
    /// Rows without a valid token get weight 0 and are not counted in `S` (verl ≥ 0.5 excludes
    /// fully masked sequences; older verl divides by the full batch size and yields NaN for
    /// such a row under `seq-mean-token-mean`).
    ///
    /// Sums of the weights: 1 for `TokenMean` and `SeqMeanTokenMean` (0 if no valid token);
    /// `N_tokens / S` for `SeqMeanTokenSum`; `N_tokens / C` for `SeqMeanTokenSumNorm`;
    /// `N_tokens` for `TokenSum`.
    ///
    /// # Errors
    /// [`Error::LengthMismatch`] if `mask.len() != batch · time`; [`Error::InvalidParameter`]
    /// for a non-positive `constant`.
    pub fn token_weights(&self, mask: &[bool], batch: usize, time: usize) -> Result<Vec<f32>> {
        self.token_weights_with_budget(mask, batch, time, None)
    }

    /// [`token_weights`](Self::token_weights) given the response length budget (the most
    /// tokens a response may have, `max_new_tokens`): the divisor of
    /// [`SeqMeanTokenSumNorm`](Self::SeqMeanTokenSumNorm) without a `constant`. Rows that hold
    /// a prompt as well as a response are longer than the budget, so the padded time
    /// dimension would be the wrong constant.
    ///
    /// # Errors
    /// As [`token_weights`](Self::token_weights), and [`Error::InvalidParameter`] for a budget
    /// of 0.
    pub fn token_weights_with_budget(
        &self,
        mask: &[bool],
        batch: usize,
        time: usize,
        budget: Option<usize>,
    ) -> Result<Vec<f32>> {
        check_len("mask ([batch, time])", batch * time, mask.len())?;
        let row_counts: Vec<usize> = (0..batch)
            .map(|i| {
                mask[i * time..(i + 1) * time]
                    .iter()
                    .filter(|&&m| m)
                    .count()
            })
            .collect();
        let n_tokens: usize = row_counts.iter().sum();
        let n_seqs = row_counts.iter().filter(|&&n| n > 0).count();
        let per_row: Vec<f64> = match *self {
            Self::TokenMean => {
                let w = if n_tokens > 0 {
                    1.0 / n_tokens as f64
                } else {
                    0.0
                };
                vec![w; batch]
            }
            Self::SeqMeanTokenMean => row_counts
                .iter()
                .map(|&n| {
                    if n > 0 {
                        1.0 / (n_seqs as f64 * n as f64)
                    } else {
                        0.0
                    }
                })
                .collect(),
            Self::SeqMeanTokenSum => {
                let w = if n_seqs > 0 { 1.0 / n_seqs as f64 } else { 0.0 };
                vec![w; batch]
            }
            Self::SeqMeanTokenSumNorm { constant } => {
                let c = match constant {
                    Some(c) => {
                        crate::error::check_positive("constant", c)?;
                        f64::from(c)
                    }
                    None => match budget {
                        Some(0) => {
                            return Err(Error::InvalidParameter {
                                name: "response budget",
                                reason: "must be > 0".into(),
                            });
                        }
                        Some(b) => b as f64,
                        None => time.max(1) as f64,
                    },
                };
                vec![1.0 / c; batch]
            }
            Self::TokenSum => vec![1.0; batch],
        };
        let mut w = Vec::with_capacity(batch * time);
        for (i, &row_w) in per_row.iter().enumerate() {
            w.extend(
                mask[i * time..(i + 1) * time]
                    .iter()
                    .map(|&m| if m { row_w as f32 } else { 0.0 }),
            );
        }
        Ok(w)
    }

    /// [`token_weights`](Self::token_weights) for ragged rows: row `i` has `masks[i].len()`
    /// tokens; `time` (the padded length, used by `SeqMeanTokenSumNorm { constant: None }`) is
    /// the longest row. The output has the same ragged shape.
    ///
    /// # Errors
    /// As [`token_weights`](Self::token_weights).
    pub fn token_weights_ragged(&self, masks: &[Vec<bool>]) -> Result<Vec<Vec<f32>>> {
        let time = masks.iter().map(Vec::len).max().unwrap_or(0);
        let mut flat = Vec::with_capacity(masks.len() * time);
        for row in masks {
            flat.extend_from_slice(row);
            flat.extend(std::iter::repeat_n(false, time - row.len()));
        }
        let w = self.token_weights(&flat, masks.len(), time)?;
        Ok(masks
            .iter()
            .enumerate()
            .map(|(i, row)| w[i * time..i * time + row.len()].to_vec())
            .collect())
    }

    /// Reference reduction: `Σ w · ℓ` with the weights of
    /// [`token_weights`](Self::token_weights) (f64 accumulation). For tests and small CPU
    /// losses; the objectives crate does the same on tensors. Masked-out losses are ignored,
    /// even if they are not finite.
    ///
    /// # Errors
    /// As [`token_weights`](Self::token_weights), plus a length check on `loss` and
    /// [`Error::NonFinite`] for a bad loss on a valid token.
    pub fn aggregate(&self, loss: &[f32], mask: &[bool], batch: usize, time: usize) -> Result<f32> {
        check_len("loss ([batch, time])", batch * time, loss.len())?;
        let w = self.token_weights(mask, batch, time)?;
        let valid: Vec<f32> = loss
            .iter()
            .zip(mask)
            .map(|(&l, &m)| if m { l } else { 0.0 })
            .collect();
        check_finite("loss", &valid)?;
        Ok(w.iter()
            .zip(&valid)
            .map(|(&w, &l)| f64::from(w) * f64::from(l))
            .sum::<f64>() as f32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: bool = true;
    const F: bool = false;

    /// Direct transcription of verl's agg_loss on a 2x3 example.
    #[test]
    fn matches_verl_agg_loss() {
        let mask = [T, T, F, T, F, F];
        let loss = [1.0, 2.0, 100.0, 4.0, 100.0, 100.0];
        let agg = |m: LossAggregation| m.aggregate(&loss, &mask, 2, 3).unwrap();
        // token-mean: (1+2+4)/3
        assert!((agg(LossAggregation::TokenMean) - 7.0 / 3.0).abs() < 1e-6);
        // seq-mean-token-mean: ((1+2)/2 + 4/1) / 2
        assert!((agg(LossAggregation::SeqMeanTokenMean) - 2.75).abs() < 1e-6);
        // seq-mean-token-sum: (3 + 4) / 2
        assert!((agg(LossAggregation::SeqMeanTokenSum) - 3.5).abs() < 1e-6);
        // seq-mean-token-sum-norm: 7 / shape[-1] = 7/3, or 7 / constant
        let none = LossAggregation::SeqMeanTokenSumNorm { constant: None };
        assert!((agg(none) - 7.0 / 3.0).abs() < 1e-6);
        let c = LossAggregation::SeqMeanTokenSumNorm {
            constant: Some(10.0),
        };
        assert!((agg(c) - 0.7).abs() < 1e-6);
        assert!((agg(LossAggregation::TokenSum) - 7.0).abs() < 1e-6);
    }

    /// Dr.GRPO's divisor is the response budget, not the prompt + response time dimension:
    /// 7 summed over rows of 3 targets with a budget of 10 → 0.7 (a constant still wins).
    #[test]
    fn dr_grpo_divides_by_the_response_budget() {
        let mask = [T, T, F, T, F, F];
        let loss = [1.0, 2.0, 100.0, 4.0, 100.0, 100.0];
        let norm = LossAggregation::SeqMeanTokenSumNorm { constant: None };
        let w = norm
            .token_weights_with_budget(&mask, 2, 3, Some(10))
            .unwrap();
        let got: f32 = w.iter().zip(&loss).map(|(w, l)| w * l).sum();
        assert!((got - 0.7).abs() < 1e-6, "{got}");
        let c = LossAggregation::SeqMeanTokenSumNorm {
            constant: Some(4.0),
        };
        let w = c.token_weights_with_budget(&mask, 2, 3, Some(10)).unwrap();
        assert_eq!(w[0], 0.25);
        assert!(
            norm.token_weights_with_budget(&mask, 2, 3, Some(0))
                .is_err()
        );
    }

    #[test]
    fn empty_rows_are_excluded() {
        let w = LossAggregation::SeqMeanTokenMean
            .token_weights(&[T, T, F, F], 2, 2)
            .unwrap();
        assert_eq!(w, vec![0.5, 0.5, 0.0, 0.0]);
        let w = LossAggregation::TokenMean
            .token_weights(&[F, F], 1, 2)
            .unwrap();
        assert_eq!(w, vec![0.0, 0.0]);
    }

    #[test]
    fn ragged_and_names() {
        let w = LossAggregation::SeqMeanTokenSumNorm { constant: None }
            .token_weights_ragged(&[vec![T, T, T, T], vec![T]])
            .unwrap();
        assert_eq!(w, vec![vec![0.25; 4], vec![0.25]]);
        for name in [
            "token-mean",
            "seq-mean-token-mean",
            "seq-mean-token-sum",
            "seq-mean-token-sum-norm",
        ] {
            let m = LossAggregation::from_verl_name(name).unwrap();
            assert_eq!(m.verl_name(), Some(name));
        }
        assert!(LossAggregation::from_verl_name("token-max").is_err());
        let m: LossAggregation = serde_json::from_str(r#"{"kind":"seq-mean-token-mean"}"#).unwrap();
        assert_eq!(m, LossAggregation::SeqMeanTokenMean);
        let m: LossAggregation =
            serde_json::from_str(r#"{"kind":"seq_mean_token_sum_norm","constant":4096}"#).unwrap();
        assert_eq!(
            m,
            LossAggregation::SeqMeanTokenSumNorm {
                constant: Some(4096.0)
            }
        );
        assert!(
            LossAggregation::SeqMeanTokenSumNorm {
                constant: Some(0.0)
            }
            .token_weights(&[T], 1, 1)
            .is_err()
        );
        assert!(
            LossAggregation::TokenMean
                .token_weights(&[T], 2, 1)
                .is_err()
        );
    }
}
