//! R^3L (Shi et al. 2026, arXiv 2601.03715): pivotal credit masks and positive amplification
//! (docs/algorithms/r3l.md). Which auxiliary SFT items exist is decided where the retries are
//! made: `redraft_feedback_protocol::select_aux_sft`, called by the R^3L rollout strategy.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::advantage::{AdvantageFn, DEFAULT_EPS, check_group, grpo_group};
use crate::error::{Error, Result};
use crate::groups::mean;

/// The advantage of an auxiliary SFT item (a successful reflection or a guided retry).
///
/// The released code trains them as singleton groups with reward 1 inside the same OPMD loss;
/// with the singleton convention (baseline 0) the advantage is 1, so the item is weighted like
/// an RL token with `A = 1` (½ · token-mean in the OPMD loss), not by a separate loss term.
pub const SFT_ADVANTAGE: f32 = 1.0;

/// Contiguous runs of `true` in an action mask: the assistant segments (turns) of a
/// multi-turn trajectory, in order.
pub fn assistant_segments(action_mask: &[bool]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = None;
    for (t, &m) in action_mask.iter().enumerate() {
        match (m, start) {
            (true, None) => start = Some(t),
            (false, Some(s)) => {
                out.push(s..t);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push(s..action_mask.len());
    }
    out
}

/// Pivotal credit assignment: zero the first `k` assistant segments (contiguous runs of
/// `true`) of `action_mask`; everything else is unchanged.
///
/// `mask_k^t = 0 if k < k_pivot else 1` (paper), implemented as in the code's
/// `_adjust_action_mask_for_retry` (turn-level runs of `action_mask == 1`). `k = 0` and
/// `k ≥ #segments` are allowed (no change / everything zeroed).
///
/// ```
/// # use redraft_credit_assignment::pivot_mask;
/// let m = [true, true, false, false, true, true, true, false, true];
/// assert_eq!(pivot_mask(&m, 1), [false, false, false, false, true, true, true, false, true]);
/// ```
pub fn pivot_mask(action_mask: &[bool], k: usize) -> Vec<bool> {
    let mut out = action_mask.to_vec();
    for seg in assistant_segments(action_mask).into_iter().take(k) {
        out[seg].fill(false);
    }
    out
}

/// [`pivot_mask`] applied to a retried base trajectory **and** its distill (retry)
/// trajectory, as the code does (the pivot prefix was replayed verbatim, so neither copy is
/// trained on it). Returns `(base, retry)`.
///
/// The code applies this also to math, whose retry restarts from attempt 0 and so shares no
/// prefix with the base (docs/algorithms/r3l.md); callers reproducing the `step_R3L`
/// math variant pass `k = 0`.
pub fn pivot_masks(base_mask: &[bool], retry_mask: &[bool], k: usize) -> (Vec<bool>, Vec<bool>) {
    (pivot_mask(base_mask, k), pivot_mask(retry_mask, k))
}

/// Positive amplification: the two published forms (docs/algorithms/r3l.md).
///
/// Serialised with a `form` tag: `{"form": "code", "alpha": 3.0}`, `{"form": "paper"}`.
/// Default: [`Code`](Self::Code) with α = 3, the form that produced the published numbers.
///
/// Both forms act on one group (bases and distill retries of one prompt; the code's
/// `task_explore` group) and implement [`AdvantageFn`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "form", rename_all = "snake_case", deny_unknown_fields)]
pub enum PositiveAmplification {
    /// Released code (`opmd_reweight_adv`, also the paper's appendix), on the OPMD mean
    /// baseline (singleton group: baseline 0):
    ///
    /// ```text
    /// s = R − mean_group(R)
    /// Â = 1.0      if R ≥ success_threshold   (hard-coded 1, not α)
    ///   = α · s    elif s ≥ 0
    ///   = s        otherwise
    /// ```
    ///
    /// With rewards in [0, 1] this never flips a sign; every successful trajectory gets 1,
    /// including all members of an all-success group (where `s = 0`). Rewards above the
    /// threshold and below their group mean would get 1 although `s < 0`: the code assumes
    /// rewards in [0, 1], and so does this form.
    Code {
        /// α, the factor on non-negative advantages of unsuccessful trajectories. Default 3
        /// (hard-coded in `opmd_reweight_adv`).
        #[serde(default = "default_alpha")]
        alpha: f32,
        /// Rewards at or above this count as success and get advantage 1. Default 1.0.
        #[serde(default = "default_one")]
        success_threshold: f32,
    },
    /// Paper main text / Algorithm 1, on GRPO's std-normalised advantage:
    ///
    /// ```text
    /// A = (R − mean) / (std + eps)
    /// Â = α        if R = R_max and A > 0
    ///   = α · A    elif A > 0
    ///   = A        otherwise
    /// ```
    ///
    /// Departure: the paper gives `α` whenever `R = R_max`; that would give every member of
    /// a zero-variance group (for example all-failed) advantage α. Here the best trajectory gets
    /// α only when it is above the group mean, so the sign is never changed.
    /// Singleton group: mean 0, std 1 (verl convention).
    Paper {
        /// α. Default 3.
        #[serde(default = "default_alpha")]
        alpha: f32,
        /// Added to the std. Default 1e-6.
        #[serde(default = "default_eps")]
        eps: f32,
        /// Bessel's correction. Default `true` (torch.std).
        #[serde(default = "default_true")]
        unbiased_std: bool,
    },
}

fn default_alpha() -> f32 {
    3.0
}
fn default_one() -> f32 {
    1.0
}
fn default_eps() -> f32 {
    DEFAULT_EPS
}
fn default_true() -> bool {
    true
}

impl Default for PositiveAmplification {
    fn default() -> Self {
        Self::Code {
            alpha: 3.0,
            success_threshold: 1.0,
        }
    }
}

impl PositiveAmplification {
    /// The paper form with α = 3, eps 1e-6, unbiased std.
    pub fn paper() -> Self {
        Self::Paper {
            alpha: 3.0,
            eps: DEFAULT_EPS,
            unbiased_std: true,
        }
    }

    fn validate(&self) -> Result<()> {
        match *self {
            Self::Code {
                alpha,
                success_threshold,
            } => {
                crate::error::check_non_negative("alpha", alpha)?;
                if !success_threshold.is_finite() {
                    return Err(Error::InvalidParameter {
                        name: "success_threshold",
                        reason: format!("must be finite, got {success_threshold}"),
                    });
                }
                Ok(())
            }
            Self::Paper { alpha, eps, .. } => {
                crate::error::check_non_negative("alpha", alpha)?;
                crate::error::check_non_negative("eps", eps)
            }
        }
    }
}

impl AdvantageFn for PositiveAmplification {
    fn group_advantages(&self, rewards: &[f32]) -> Result<Vec<f32>> {
        self.validate()?;
        check_group(rewards)?;
        Ok(match *self {
            Self::Code {
                alpha,
                success_threshold,
            } => {
                let b = if rewards.len() == 1 {
                    0.0
                } else {
                    mean(rewards)
                };
                rewards
                    .iter()
                    .map(|&r| {
                        let s = f64::from(r) - b;
                        if r >= success_threshold {
                            1.0
                        } else if s >= 0.0 {
                            (f64::from(alpha) * s) as f32
                        } else {
                            s as f32
                        }
                    })
                    .collect()
            }
            Self::Paper {
                alpha,
                eps,
                unbiased_std,
            } => {
                let a = grpo_group(rewards, eps, unbiased_std);
                let r_max = rewards.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                rewards
                    .iter()
                    .zip(a)
                    .map(|(&r, a)| {
                        if a > 0.0 && r == r_max {
                            alpha
                        } else if a > 0.0 {
                            alpha * a
                        } else {
                            a
                        }
                    })
                    .collect()
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6)
    }

    /// Worked example: rewards [0,0,1,0,1,0,1,0] → mean .375 →
    /// Â = [-.375,-.375,1,-.375,1,-.375,1,-.375].
    #[test]
    fn worked_example_pa_code() {
        let pa = PositiveAmplification::default();
        let a = pa
            .group_advantages(&[0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0])
            .unwrap();
        let n = -0.375;
        assert!(close(&a, &[n, n, 1.0, n, 1.0, n, 1.0, n]), "{a:?}");
    }

    /// Worked example: partial reward 0.6 with group mean 0.3 → 3 · 0.3 = 0.9.
    #[test]
    fn worked_example_pa_partial_reward() {
        let a = PositiveAmplification::default()
            .group_advantages(&[0.6, 0.0])
            .unwrap();
        assert!(close(&a, &[0.9, -0.3]), "{a:?}");
    }

    #[test]
    fn pa_code_all_success_and_singleton() {
        let pa = PositiveAmplification::default();
        assert_eq!(pa.group_advantages(&[1.0; 3]).unwrap(), vec![1.0; 3]);
        assert_eq!(pa.group_advantages(&[0.0; 3]).unwrap(), vec![0.0; 3]);
        // Singleton (an SFT item): baseline 0, reward 1 → 1.
        assert_eq!(pa.group_advantages(&[1.0]).unwrap(), vec![SFT_ADVANTAGE]);
    }

    #[test]
    fn pa_paper() {
        let pa = PositiveAmplification::paper();
        let a = pa.group_advantages(&[0.0, 0.5, 1.0]).unwrap();
        // mean .5, std 0.5 → A = [-1, 0, 1]; best → α
        assert!(close(&a, &[-1.0 / (1.0 + 2e-6), 0.0, 3.0]), "{a:?}");
        assert_eq!(pa.group_advantages(&[0.0; 4]).unwrap(), vec![0.0; 4]);
        let a = pa.group_advantages(&[0.0, 0.6, 0.8, 1.0]).unwrap();
        let plain = grpo_group(&[0.0, 0.6, 0.8, 1.0], 1e-6, true);
        assert!((a[1] - 3.0 * plain[1]).abs() < 1e-6 && plain[1] > 0.0);
        assert_eq!(a[3], 3.0);
        assert_eq!(a[0], plain[0]);
    }

    /// Worked example: segments [1,1,0,0,1,1,1,0,1] with k=1 → first run zeroed only;
    /// applied to both base and distill.
    #[test]
    fn worked_example_pivot_mask() {
        let m: Vec<bool> = [1, 1, 0, 0, 1, 1, 1, 0, 1]
            .iter()
            .map(|&x| x == 1)
            .collect();
        let want: Vec<bool> = [0, 0, 0, 0, 1, 1, 1, 0, 1]
            .iter()
            .map(|&x| x == 1)
            .collect();
        assert_eq!(pivot_mask(&m, 1), want);
        let (b, r) = pivot_masks(&m, &m, 1);
        assert_eq!((b, r), (want.clone(), want));
        assert_eq!(pivot_mask(&m, 0), m);
        assert_eq!(
            pivot_mask(&m, 2),
            [false, false, false, false, false, false, false, false, true]
        );
        assert_eq!(pivot_mask(&m, 9), vec![false; 9]);
        assert_eq!(assistant_segments(&m), vec![0..2, 4..7, 8..9]);
    }

    #[test]
    fn config_forms() {
        let p: PositiveAmplification = serde_json::from_str(r#"{"form":"code"}"#).unwrap();
        assert_eq!(p, PositiveAmplification::default());
        let p: PositiveAmplification =
            serde_json::from_str(r#"{"form":"paper","alpha":2.0}"#).unwrap();
        assert!(matches!(p, PositiveAmplification::Paper { alpha, .. } if alpha == 2.0));
    }
}
