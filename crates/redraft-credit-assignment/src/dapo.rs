//! DAPO (Yu et al. 2025, arXiv 2503.14476): overlong reward shaping and dynamic-sampling group
//! filtering. (Clip-higher and token-level normalisation belong to the objective and to
//! [`LossAggregation::TokenMean`](crate::LossAggregation::TokenMean).)

use std::hash::Hash;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, check_finite, check_finite_nested, check_len};
use crate::groups::group_indices;

/// DAPO's soft overlong punishment, as in verl's `DAPORewardManager` and R^3L's
/// `dapo_workflow.py`:
///
/// ```text
/// expected = max_len − cache_len
/// penalty  = min( −(len − expected) / cache_len , 0 ) · factor
/// ```
///
/// 0 up to `max_len − cache_len` tokens, falling linearly to `−factor` at `max_len`; lengths
/// beyond `max_len` continue the line (the references do not clamp). Add it to the reward.
///
/// Defaults ([`OverlongShaping::default`]) are R^3L's math settings: max response 4096,
/// cache 3000, factor 1.0.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverlongShaping {
    /// Maximum response length L_max in tokens.
    pub max_len: usize,
    /// Length of the soft-penalty buffer L_cache (verl `overlong_buffer.len`), in tokens.
    pub cache_len: usize,
    /// Penalty factor (verl `overlong_buffer.penalty_factor`); the penalty reaches `−factor`
    /// at `max_len`.
    pub factor: f32,
}

impl Default for OverlongShaping {
    fn default() -> Self {
        Self {
            max_len: 4096,
            cache_len: 3000,
            factor: 1.0,
        }
    }
}

impl OverlongShaping {
    /// Checks `0 < cache_len ≤ max_len` and a finite, non-negative factor.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] naming the bad field.
    pub fn validate(&self) -> Result<()> {
        if self.cache_len == 0 || self.cache_len > self.max_len {
            return Err(Error::InvalidParameter {
                name: "cache_len",
                reason: format!(
                    "must satisfy 0 < cache_len <= max_len ({}), got {}",
                    self.max_len, self.cache_len
                ),
            });
        }
        crate::error::check_non_negative("factor", self.factor)
    }

    /// The (non-positive) reward term for a response of `len` tokens.
    ///
    /// # Errors
    /// As [`validate`](Self::validate).
    pub fn penalty(&self, len: usize) -> Result<f32> {
        self.validate()?;
        let expected = (self.max_len - self.cache_len) as f64;
        let exceed = len as f64 - expected;
        let p = (-exceed / self.cache_len as f64).min(0.0) * f64::from(self.factor);
        Ok(p as f32)
    }

    /// Returns `reward + penalty(len)` for each response.
    ///
    /// # Errors
    /// [`Error::LengthMismatch`], [`Error::NonFinite`], or as [`validate`](Self::validate).
    pub fn shape(&self, rewards: &[f32], lengths: &[usize]) -> Result<Vec<f32>> {
        check_len("lengths", rewards.len(), lengths.len())?;
        check_finite("reward", rewards)?;
        rewards
            .iter()
            .zip(lengths)
            .map(|(&r, &l)| Ok(r + self.penalty(l)?))
            .collect()
    }
}

/// [`OverlongShaping::penalty`] as a free function.
///
/// # Errors
/// As [`OverlongShaping::validate`].
pub fn overlong_penalty(len: usize, max_len: usize, cache_len: usize, factor: f32) -> Result<f32> {
    OverlongShaping {
        max_len,
        cache_len,
        factor,
    }
    .penalty(len)
}

/// Whether DAPO's dynamic sampling keeps a group: its rewards are not all equal, **or** it has
/// a single member.
///
/// verl's DAPO trainer keeps `uid`s with `std(metric) > 0 or len(metric) == 1`; a singleton is
/// kept because its (verl-convention) advantage is its raw reward, not zero. "All equal" is
/// tested exactly (`==`), where verl tests `np.std(..) > 0` in floating point; the two agree
/// on the binary rewards DAPO uses. An empty group is not kept.
pub fn keep_group(rewards: &[f32]) -> bool {
    match rewards {
        [] => false,
        [_] => true,
        [first, rest @ ..] => rest.iter().any(|r| r != first),
    }
}

/// Dynamic-sampling filter over a batch of groups (one row per group): `keep[g]` per
/// [`keep_group`]. The trainer drops the other groups and keeps sampling until the batch is
/// full.
///
/// # Errors
/// [`Error::NonFinite`] for a NaN or infinite reward.
pub fn dynamic_sampling_filter(groups: &[Vec<f32>]) -> Result<Vec<bool>> {
    check_finite_nested("reward", groups)?;
    Ok(groups.iter().map(|g| keep_group(g)).collect())
}

/// Dynamic-sampling filter over a flat batch with one group id per sample: `keep[i]` is whether
/// sample `i`'s group is kept.
///
/// # Errors
/// [`Error::LengthMismatch`] or [`Error::NonFinite`].
pub fn dynamic_sampling_filter_by_id<G: Eq + Hash>(
    rewards: &[f32],
    group_ids: &[G],
) -> Result<Vec<bool>> {
    check_len("group_ids", rewards.len(), group_ids.len())?;
    check_finite("reward", rewards)?;
    let mut keep = vec![false; rewards.len()];
    for members in group_indices(group_ids) {
        let g: Vec<f32> = members.iter().map(|&i| rewards[i]).collect();
        let k = keep_group(&g);
        for i in members {
            keep[i] = k;
        }
    }
    Ok(keep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlong_penalty_ramp() {
        // R^3L math: max 4096, cache 3000 → no penalty up to 1096 tokens, −1 at 4096.
        assert_eq!(overlong_penalty(1000, 4096, 3000, 1.0).unwrap(), 0.0);
        assert_eq!(overlong_penalty(1096, 4096, 3000, 1.0).unwrap(), 0.0);
        assert!((overlong_penalty(2596, 4096, 3000, 1.0).unwrap() + 0.5).abs() < 1e-6);
        assert!((overlong_penalty(4096, 4096, 3000, 1.0).unwrap() + 1.0).abs() < 1e-6);
        assert!((overlong_penalty(4096, 4096, 3000, 0.5).unwrap() + 0.5).abs() < 1e-6);
        assert!(overlong_penalty(10, 100, 0, 1.0).is_err());
        assert!(overlong_penalty(10, 100, 101, 1.0).is_err());
        let s = OverlongShaping::default()
            .shape(&[1.0, 1.0], &[10, 4096])
            .unwrap();
        assert!((s[0] - 1.0).abs() < 1e-6 && s[1].abs() < 1e-6);
    }

    #[test]
    fn dynamic_sampling() {
        let keep = dynamic_sampling_filter(&[
            vec![1.0, 1.0],
            vec![0.0, 1.0],
            vec![0.0; 3],
            vec![0.0],
            vec![],
        ])
        .unwrap();
        assert_eq!(keep, vec![false, true, false, true, false]);
        let by_id = dynamic_sampling_filter_by_id(&[1.0, 0.0, 1.0, 1.0], &[0, 1, 0, 1]).unwrap();
        assert_eq!(by_id, vec![false, true, false, true]);
    }
}
