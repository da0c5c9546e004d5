//! Token masks: which response tokens carry loss.
//!
//! Masks are `bool` per token (`true` = trained), in the same layout as the tokens they
//! describe. Every function here only ever turns `true` into `false`: a mask is never widened.

use crate::error::{Result, check_len};

/// RLTF-SD's token threshold: a token of the second-turn response `y1` is kept in the
/// self-distillation datum iff `log π(y1_t | x0, y1_<t) ≥ −5` (RLTF code,
/// `distillation_mode="rl_reweight_mask"`).
pub const RLTF_SD_LOGPROB_THRESHOLD: f32 = -5.0;

/// Keep token `t` iff `logprobs[t] ≥ threshold` (a NaN log-prob is dropped).
///
/// RLTF-SD: `keep_t = 1[log q_t ≥ −5]` with `q` the pre-update policy scoring `y1` under the
/// first-turn prompt `x0`; use [`RLTF_SD_LOGPROB_THRESHOLD`].
pub fn logprob_threshold_mask(logprobs: &[f32], threshold: f32) -> Vec<bool> {
    logprobs.iter().map(|&lp| lp >= threshold).collect()
}

/// `mask ∧ (logprobs ≥ threshold)`: restricts an existing mask by a log-prob threshold.
///
/// # Errors
/// [`Error::LengthMismatch`](crate::Error::LengthMismatch) if the slices differ in length.
pub fn restrict_by_logprob(mask: &[bool], logprobs: &[f32], threshold: f32) -> Result<Vec<bool>> {
    check_len("logprobs", mask.len(), logprobs.len())?;
    Ok(mask
        .iter()
        .zip(logprobs)
        .map(|(&m, &lp)| m && lp >= threshold)
        .collect())
}

/// Elementwise `a ∧ b`.
///
/// # Errors
/// [`Error::LengthMismatch`](crate::Error::LengthMismatch) if the slices differ in length.
pub fn and_masks(a: &[bool], b: &[bool]) -> Result<Vec<bool>> {
    check_len("mask", a.len(), b.len())?;
    Ok(a.iter().zip(b).map(|(&x, &y)| x && y).collect())
}

/// Clears the first `n` positions of a response mask (positions past the end are ignored).
///
/// MulFeRL's structured feedback injection: the regenerated response starts with a copy of
/// `<thinking><feedback>{f}</feedback>`; its `n = len(tokenize(prefix))` tokens are context,
/// not trained (`_apply_regen_prefix_mask_inplace`). The reference tokenises the prefix on its
/// own, which can be off by one token at the boundary (docs/algorithms/mulferl.md); pass the
/// count the tokenizer crate computes.
pub fn mask_prefix(mask: &[bool], n: usize) -> Vec<bool> {
    mask.iter().enumerate().map(|(t, &m)| m && t >= n).collect()
}

/// A mask as 0/1 `f32` weights.
pub fn mask_to_f32(mask: &[bool]) -> Vec<f32> {
    mask.iter().map(|&m| if m { 1.0 } else { 0.0 }).collect()
}

/// Per-token advantages `A · m_t` (0 where masked): how a sequence-level advantage is
/// broadcast over its response tokens (verl: `scores.unsqueeze(-1) * response_mask`).
pub fn broadcast_advantage(advantage: f32, mask: &[bool]) -> Vec<f32> {
    mask.iter()
        .map(|&m| if m { advantage } else { 0.0 })
        .collect()
}

/// Per-token advantages of a whole batch, flat row-major `[batch, time]`:
/// `out[i·time + t] = advantages[i] · mask[i·time + t]` (the layout of
/// [`LossAggregation::token_weights`](crate::LossAggregation::token_weights)).
///
/// # Errors
/// [`Error::LengthMismatch`](crate::Error::LengthMismatch) if `advantages.len() != batch` or
/// `mask.len() != batch · time`.
pub fn broadcast_advantages(
    advantages: &[f32],
    mask: &[bool],
    batch: usize,
    time: usize,
) -> Result<Vec<f32>> {
    check_len("advantages", batch, advantages.len())?;
    check_len("mask ([batch, time])", batch * time, mask.len())?;
    Ok(mask
        .iter()
        .enumerate()
        .map(|(k, &m)| if m { advantages[k / time] } else { 0.0 })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_keeps_at_and_above() {
        let lp = [-0.1, -5.0, -5.01, f32::NAN, -20.0];
        assert_eq!(
            logprob_threshold_mask(&lp, RLTF_SD_LOGPROB_THRESHOLD),
            vec![true, true, false, false, false]
        );
        assert_eq!(
            restrict_by_logprob(&[false, true, true, true, true], &lp, -5.0).unwrap(),
            vec![false, true, false, false, false]
        );
        assert!(restrict_by_logprob(&[true], &lp, -5.0).is_err());
    }

    #[test]
    fn prefix_and_broadcast() {
        assert_eq!(
            mask_prefix(&[true, true, false, true], 2),
            vec![false, false, false, true]
        );
        assert_eq!(mask_prefix(&[true], 5), vec![false]);
        assert_eq!(broadcast_advantage(0.5, &[true, false]), vec![0.5, 0.0]);
        assert_eq!(
            broadcast_advantages(&[1.0, -2.0], &[true, false, true, true], 2, 2).unwrap(),
            vec![1.0, 0.0, -2.0, -2.0]
        );
        assert!(broadcast_advantages(&[1.0], &[true, true], 2, 1).is_err());
        assert_eq!(mask_to_f32(&[true, false]), vec![1.0, 0.0]);
        assert_eq!(
            and_masks(&[true, true], &[false, true]).unwrap(),
            vec![false, true]
        );
    }
}
