//! Outcome-reward advantages with group baselines: GRPO, Dr.GRPO, RLOO, Trinity's OPMD mean
//! baseline, and group-mean / batch-std scaling.
//!
//! Every estimator maps the scalar rewards of one *group* (the G responses sampled for one
//! prompt) to one scalar advantage per response; the objectives crate broadcasts it over the
//! response's tokens (`A_i · mask_{i,t}`). Three entry points, all on [`AdvantageFn`]:
//!
//! * [`AdvantageFn::group_advantages`]: one group as a slice;
//! * [`AdvantageFn::advantages_nested`]: a batch as `&[Vec<f32>]`, one row per group;
//! * [`AdvantageFn::advantages_by_id`]: a flat batch with one group id per sample, in any
//!   order (verl's `index` / Trinity's `eid.task`).
//!
//! # Singleton groups
//!
//! verl (`compute_grpo_outcome_advantage`, `compute_rloo_outcome_advantage`) and Trinity-RFT
//! (`grpo_advantage.py`, `opmd_advantage.py`) treat a group with one member as having mean 0
//! and (GRPO) std 1, so its advantage is the raw reward (GRPO: `r / (1 + eps)`). R^3L relies on
//! this: its auxiliary SFT items are singleton groups with reward 1 and so get advantage 1
//! (docs/algorithms/r3l.md). Every estimator here follows that convention.
//!
//! # Numerics
//!
//! Means and standard deviations are computed in f64 and the results rounded to f32. The
//! references compute in f32 (torch); differences are at the level of f32 rounding.

use std::hash::Hash;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, check_finite, check_finite_nested, check_len};
use crate::groups::{group_indices, mean, std};

/// verl's and Trinity-RFT's default `epsilon` in the GRPO denominator `std + eps`.
pub const DEFAULT_EPS: f32 = 1e-6;

/// A per-group advantage estimator.
///
/// Implement [`group_advantages`](AdvantageFn::group_advantages); the batched methods follow.
/// Estimators whose statistics span the whole batch (like
/// [`AdvantageEstimator::GroupMeanBatchStd`]) override the batched methods.
pub trait AdvantageFn {
    /// Advantages of one group, in the order of `rewards`.
    ///
    /// # Errors
    /// [`Error::Empty`] for an empty group, [`Error::NonFinite`] for a NaN or infinite reward
    /// (naming its index).
    fn group_advantages(&self, rewards: &[f32]) -> Result<Vec<f32>>;

    /// Advantages of a batch given as one row of rewards per group; the output has the same
    /// ragged shape.
    ///
    /// # Errors
    /// As [`group_advantages`](AdvantageFn::group_advantages); indices are flat (row-major) and
    /// the group is named.
    fn advantages_nested(&self, groups: &[Vec<f32>]) -> Result<Vec<Vec<f32>>> {
        check_finite_nested("reward", groups)?;
        groups
            .iter()
            .enumerate()
            .map(|(g, rewards)| {
                if rewards.is_empty() {
                    return Err(Error::Empty {
                        what: "group",
                        index: g,
                    });
                }
                self.group_advantages(rewards)
            })
            .collect()
    }

    /// Advantages of a flat batch in which `group_ids[i]` is the group of sample `i` (samples of
    /// a group need not be contiguous). The output is in input order.
    ///
    /// # Errors
    /// [`Error::LengthMismatch`] if the two slices differ in length, [`Error::NonFinite`] with
    /// the flat index of a bad reward.
    fn advantages_by_id<G: Eq + Hash>(&self, rewards: &[f32], group_ids: &[G]) -> Result<Vec<f32>>
    where
        Self: Sized,
    {
        check_len("group_ids", rewards.len(), group_ids.len())?;
        check_finite("reward", rewards)?;
        let mut out = vec![0.0; rewards.len()];
        for members in group_indices(group_ids) {
            let group: Vec<f32> = members.iter().map(|&i| rewards[i]).collect();
            let adv = self.group_advantages(&group)?;
            for (&i, a) in members.iter().zip(adv) {
                out[i] = a;
            }
        }
        Ok(out)
    }
}

/// The built-in advantage estimators, selectable from a config file.
///
/// Serialised with a `kind` tag, fields defaulting to the references' values:
/// `{"kind": "grpo"}`, `{"kind": "grpo", "eps": 1e-6, "unbiased_std": false}`,
/// `{"kind": "dr_grpo"}`, `{"kind": "rloo"}`, `{"kind": "opmd_mean"}`,
/// `{"kind": "group_mean_batch_std"}`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum AdvantageEstimator {
    /// GRPO (Shao et al. 2024; verl `compute_grpo_outcome_advantage` with
    /// `norm_adv_by_std_in_grpo=True`):
    ///
    /// `A_i = (r_i − mean_j r_j) / (std_j r_j + eps)`
    ///
    /// Singleton group: mean 0, std 1, so `A = r / (1 + eps)` (verl). A group whose rewards are
    /// all equal gets `A = 0`.
    Grpo {
        /// Added to the std in the denominator. Default 1e-6 (verl, Trinity-RFT).
        #[serde(default = "default_eps")]
        eps: f32,
        /// Bessel's correction (divide by G − 1). Default `true`: verl and Trinity use
        /// `torch.std`, which is unbiased.
        #[serde(default = "default_true")]
        unbiased_std: bool,
    },
    /// Dr.GRPO (Liu et al. 2025; verl with `norm_adv_by_std_in_grpo=False`): the group mean is
    /// subtracted, nothing is divided.
    ///
    /// `A_i = r_i − mean_j r_j`; singleton group: `A = r` (verl's mean-0 rule).
    DrGrpo,
    /// RLOO (Ahmadian et al. 2024; verl `compute_rloo_outcome_advantage`): leave-one-out
    /// baseline.
    ///
    /// `A_i = r_i − (1/(G−1)) Σ_{j≠i} r_j = G/(G−1) · (r_i − mean_j r_j)`; singleton group:
    /// `A = r` (verl leaves the score unchanged).
    Rloo,
    /// OPMD "mean" baseline as implemented in Trinity-RFT (`opmd_advantage.py`), the base of
    /// R^3L: `A_i = r_i − mean_j r_j`, no std; singleton group: baseline 0, `A = r`.
    /// Numerically identical to [`DrGrpo`](AdvantageEstimator::DrGrpo); kept separate so
    /// configs say which method they reproduce.
    OpmdMean,
    /// Group mean, batch std ("Lite PPO", Liu et al. 2025, *Tricks or Traps*): centre each
    /// group on its own mean, then divide by the std of **all rewards in the batch**:
    ///
    /// `A_i = (r_i − mean_{j∈g(i)} r_j) / (std_{batch} r + eps)`
    ///
    /// Singleton groups use mean 0 (as verl). A batch of one sample uses std 1. Only the
    /// batched methods ([`AdvantageFn::advantages_nested`], [`AdvantageFn::advantages_by_id`])
    /// see the whole batch; [`AdvantageFn::group_advantages`] refuses this estimator
    /// ([`Error::NeedsBatch`]) rather than divide by one group's std.
    GroupMeanBatchStd {
        /// Added to the batch std. Default 1e-6.
        #[serde(default = "default_eps")]
        eps: f32,
        /// Bessel's correction for the batch std. Default `true` (torch.std).
        #[serde(default = "default_true")]
        unbiased_std: bool,
    },
}

fn default_eps() -> f32 {
    DEFAULT_EPS
}

fn default_true() -> bool {
    true
}

impl Default for AdvantageEstimator {
    /// GRPO with verl's defaults (eps 1e-6, unbiased std).
    fn default() -> Self {
        Self::grpo()
    }
}

impl AdvantageEstimator {
    /// GRPO with verl's defaults: eps 1e-6, unbiased (Bessel) std.
    pub fn grpo() -> Self {
        Self::Grpo {
            eps: DEFAULT_EPS,
            unbiased_std: true,
        }
    }

    /// Group mean and batch std with eps 1e-6 and unbiased std.
    pub fn group_mean_batch_std() -> Self {
        Self::GroupMeanBatchStd {
            eps: DEFAULT_EPS,
            unbiased_std: true,
        }
    }

    fn validate(&self) -> Result<()> {
        match *self {
            Self::Grpo { eps, .. } | Self::GroupMeanBatchStd { eps, .. } => {
                crate::error::check_non_negative("eps", eps)
            }
            _ => Ok(()),
        }
    }

    /// Centred rewards of a group with the singleton convention (mean 0 for one member).
    fn centred(rewards: &[f32]) -> Vec<f64> {
        let m = if rewards.len() == 1 {
            0.0
        } else {
            mean(rewards)
        };
        rewards.iter().map(|&r| f64::from(r) - m).collect()
    }

    /// Batch-std scaling over explicit groups (indices into `rewards`).
    fn batch_std_scaled(
        rewards: &[f32],
        groups: &[Vec<usize>],
        eps: f32,
        unbiased_std: bool,
    ) -> Vec<f32> {
        let s = if rewards.len() == 1 {
            1.0
        } else {
            std(rewards, unbiased_std)
        };
        let denom = s + f64::from(eps);
        let mut out = vec![0.0; rewards.len()];
        for members in groups {
            let g: Vec<f32> = members.iter().map(|&i| rewards[i]).collect();
            for (&i, c) in members.iter().zip(Self::centred(&g)) {
                out[i] = safe_div(c, denom) as f32;
            }
        }
        out
    }
}

/// `num / den`, or 0 when both are 0 (eps = 0 on a zero-variance group).
fn safe_div(num: f64, den: f64) -> f64 {
    if den == 0.0 { 0.0 } else { num / den }
}

/// GRPO advantages of one non-empty, finite group (no validation).
pub(crate) fn grpo_group(rewards: &[f32], eps: f32, unbiased_std: bool) -> Vec<f32> {
    let (m, s) = if rewards.len() == 1 {
        (0.0, 1.0)
    } else {
        (mean(rewards), std(rewards, unbiased_std))
    };
    let denom = s + f64::from(eps);
    rewards
        .iter()
        .map(|&r| safe_div(f64::from(r) - m, denom) as f32)
        .collect()
}

/// Checks a single group: non-empty and finite.
pub(crate) fn check_group(rewards: &[f32]) -> Result<()> {
    if rewards.is_empty() {
        return Err(Error::Empty {
            what: "group",
            index: 0,
        });
    }
    check_finite("reward", rewards)
}

impl AdvantageFn for AdvantageEstimator {
    fn group_advantages(&self, rewards: &[f32]) -> Result<Vec<f32>> {
        self.validate()?;
        check_group(rewards)?;
        Ok(match *self {
            Self::Grpo { eps, unbiased_std } => grpo_group(rewards, eps, unbiased_std),
            Self::DrGrpo | Self::OpmdMean => Self::centred(rewards)
                .into_iter()
                .map(|a| a as f32)
                .collect(),
            Self::Rloo => {
                let n = rewards.len();
                let scale = if n > 1 {
                    n as f64 / (n as f64 - 1.0)
                } else {
                    1.0
                };
                Self::centred(rewards)
                    .into_iter()
                    .map(|a| (a * scale) as f32)
                    .collect()
            }
            Self::GroupMeanBatchStd { .. } => {
                return Err(Error::NeedsBatch {
                    estimator: "group_mean_batch_std",
                });
            }
        })
    }

    fn advantages_nested(&self, groups: &[Vec<f32>]) -> Result<Vec<Vec<f32>>> {
        self.validate()?;
        check_finite_nested("reward", groups)?;
        if let Some(g) = groups.iter().position(Vec::is_empty) {
            return Err(Error::Empty {
                what: "group",
                index: g,
            });
        }
        match *self {
            Self::GroupMeanBatchStd { eps, unbiased_std } => {
                let flat: Vec<f32> = groups.iter().flatten().copied().collect();
                let mut idx = Vec::with_capacity(groups.len());
                let mut offset = 0;
                for g in groups {
                    idx.push((offset..offset + g.len()).collect::<Vec<_>>());
                    offset += g.len();
                }
                let adv = Self::batch_std_scaled(&flat, &idx, eps, unbiased_std);
                Ok(idx
                    .iter()
                    .map(|members| members.iter().map(|&i| adv[i]).collect())
                    .collect())
            }
            _ => groups.iter().map(|g| self.group_advantages(g)).collect(),
        }
    }

    fn advantages_by_id<G: Eq + Hash>(&self, rewards: &[f32], group_ids: &[G]) -> Result<Vec<f32>> {
        self.validate()?;
        check_len("group_ids", rewards.len(), group_ids.len())?;
        check_finite("reward", rewards)?;
        let groups = group_indices(group_ids);
        match *self {
            Self::GroupMeanBatchStd { eps, unbiased_std } => {
                Ok(Self::batch_std_scaled(rewards, &groups, eps, unbiased_std))
            }
            _ => {
                let mut out = vec![0.0; rewards.len()];
                for members in groups {
                    let g: Vec<f32> = members.iter().map(|&i| rewards[i]).collect();
                    for (&i, a) in members.iter().zip(self.group_advantages(&g)?) {
                        out[i] = a;
                    }
                }
                Ok(out)
            }
        }
    }
}

/// Divides already-centred advantages of a whole batch by their batch std
/// (`a_i / (std_batch a + eps)`), the batch-level std scaling step on its own. Use it to
/// compose with any mean baseline, e.g. `scale_by_batch_std(&DrGrpo advantages, 1e-6, true)`
/// (REINFORCE++-baseline-style scaling without re-centring).
///
/// A batch of one value is returned unchanged (std taken as 1, minus eps).
///
/// # Errors
/// [`Error::NonFinite`] for a bad value, [`Error::InvalidParameter`] for a negative eps.
pub fn scale_by_batch_std(advantages: &[f32], eps: f32, unbiased_std: bool) -> Result<Vec<f32>> {
    crate::error::check_non_negative("eps", eps)?;
    check_finite("advantage", advantages)?;
    let s = if advantages.len() == 1 {
        1.0
    } else {
        std(advantages, unbiased_std)
    };
    let denom = s + f64::from(eps);
    Ok(advantages
        .iter()
        .map(|&a| safe_div(f64::from(a), denom) as f32)
        .collect())
}

/// GRPO advantages of one group with verl's defaults (eps 1e-6, unbiased std): the shortest
/// path for a downstream crate.
///
/// # Errors
/// As [`AdvantageFn::group_advantages`].
pub fn grpo_advantages(rewards: &[f32]) -> Result<Vec<f32>> {
    AdvantageEstimator::grpo().group_advantages(rewards)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f32], b: &[f32], tol: f32) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol)
    }

    #[test]
    fn grpo_matches_torch_std() {
        // rewards [1,0,0,1]: mean .5, torch.std (unbiased) = sqrt(1/3) = .57735
        let a = grpo_advantages(&[1.0, 0.0, 0.0, 1.0]).unwrap();
        let v = 0.5 / (0.577_350_27 + 1e-6);
        assert!(close(&a, &[v, -v, -v, v], 1e-6), "{a:?}");
        let pop = AdvantageEstimator::Grpo {
            eps: 1e-6,
            unbiased_std: false,
        }
        .group_advantages(&[1.0, 0.0, 0.0, 1.0])
        .unwrap();
        assert!(close(&pop, &[1.0, -1.0, -1.0, 1.0], 1e-5), "{pop:?}");
    }

    #[test]
    fn singleton_groups_follow_verl() {
        let g = grpo_advantages(&[1.0]).unwrap();
        assert!((g[0] - 1.0 / (1.0 + 1e-6)).abs() < 1e-7);
        for e in [
            AdvantageEstimator::DrGrpo,
            AdvantageEstimator::Rloo,
            AdvantageEstimator::OpmdMean,
        ] {
            assert_eq!(e.group_advantages(&[0.7]).unwrap(), vec![0.7]);
        }
    }

    #[test]
    fn zero_variance_group_is_zero() {
        assert_eq!(grpo_advantages(&[1.0; 4]).unwrap(), vec![0.0; 4]);
        let no_eps = AdvantageEstimator::Grpo {
            eps: 0.0,
            unbiased_std: true,
        };
        assert_eq!(no_eps.group_advantages(&[0.0; 3]).unwrap(), vec![0.0; 3]);
    }

    #[test]
    fn rloo_is_leave_one_out() {
        let a = AdvantageEstimator::Rloo
            .group_advantages(&[1.0, 0.0, 0.5])
            .unwrap();
        assert!(
            close(&a, &[1.0 - 0.25, 0.0 - 0.75, 0.5 - 0.5], 1e-6),
            "{a:?}"
        );
    }

    #[test]
    fn by_id_matches_nested() {
        let e = AdvantageEstimator::grpo();
        let flat = e
            .advantages_by_id(&[1.0, 5.0, 0.0, 3.0, 0.5], &[0, 1, 0, 1, 0])
            .unwrap();
        let nested = e
            .advantages_nested(&[vec![1.0, 0.0, 0.5], vec![5.0, 3.0]])
            .unwrap();
        assert_eq!(
            flat,
            vec![
                nested[0][0],
                nested[1][0],
                nested[0][1],
                nested[1][1],
                nested[0][2]
            ]
        );
    }

    #[test]
    fn batch_std_uses_all_rewards() {
        let e = AdvantageEstimator::group_mean_batch_std();
        let groups = vec![vec![1.0, 0.0], vec![3.0, 3.0]];
        let a = e.advantages_nested(&groups).unwrap();
        let s = std(&[1.0, 0.0, 3.0, 3.0], true) + 1e-6;
        assert!((f64::from(a[0][0]) - 0.5 / s).abs() < 1e-6);
        assert_eq!(a[1], vec![0.0, 0.0]);
        let by_id = e
            .advantages_by_id(&[1.0, 3.0, 0.0, 3.0], &["a", "b", "a", "b"])
            .unwrap();
        assert_eq!(by_id, vec![a[0][0], a[1][0], a[0][1], a[1][1]]);
    }

    /// Hand-computed: groups [1, 0] and [3, 3]; batch rewards [1, 0, 3, 3] have mean 1.75 and
    /// unbiased std sqrt(6.75 / 3) = 1.5, so A = ±0.5 / 1.5 = ±1/3 in the first group and 0 in
    /// the second (one group's std, 0.707, would give ±0.707). A single group cannot know the
    /// batch: refused.
    #[test]
    fn group_mean_batch_std_divides_by_the_batch_std() {
        let e = AdvantageEstimator::group_mean_batch_std();
        let a = e
            .advantages_nested(&[vec![1.0, 0.0], vec![3.0, 3.0]])
            .unwrap();
        let third = 0.5f32 / 1.500_001;
        assert!(close(&a[0], &[third, -third], 1e-6), "{a:?}");
        assert_eq!(a[1], vec![0.0, 0.0]);
        let one = e.group_advantages(&[1.0, 0.0]);
        assert!(one.is_err(), "one group's std: {one:?}");
        assert!(format!("{}", one.unwrap_err()).contains("group_mean_batch_std"));
    }

    #[test]
    fn errors_name_the_index() {
        let e = AdvantageEstimator::grpo();
        assert!(matches!(
            e.group_advantages(&[0.0, f32::NAN]),
            Err(Error::NonFinite { index: 1, .. })
        ));
        assert!(matches!(
            e.advantages_nested(&[vec![0.0], vec![1.0, f32::INFINITY]]),
            Err(Error::NonFinite {
                index: 2,
                group: Some(1),
                ..
            })
        ));
        assert!(matches!(
            e.advantages_nested(&[vec![0.0], vec![]]),
            Err(Error::Empty { index: 1, .. })
        ));
        assert!(matches!(
            e.advantages_by_id(&[0.0, 1.0], &[0]),
            Err(Error::LengthMismatch { .. })
        ));
        assert!(matches!(e.group_advantages(&[]), Err(Error::Empty { .. })));
    }

    #[test]
    fn usable_as_trait_object() {
        let fns: Vec<Box<dyn AdvantageFn>> = vec![
            Box::new(AdvantageEstimator::DrGrpo),
            Box::new(crate::PositiveAmplification::default()),
        ];
        let a: Vec<Vec<f32>> = fns
            .iter()
            .map(|f| f.advantages_nested(&[vec![1.0, 0.0]]).unwrap().concat())
            .collect();
        assert_eq!(a, vec![vec![0.5, -0.5], vec![1.0, -0.5]]);
        assert!(
            serde_json::from_str::<AdvantageEstimator>(r#"{"kind":"grpo","epsilon":1}"#).is_err()
        );
    }

    #[test]
    fn config_round_trip_and_defaults() {
        let e: AdvantageEstimator = serde_json::from_str(r#"{"kind":"grpo"}"#).unwrap();
        assert_eq!(e, AdvantageEstimator::grpo());
        let e: AdvantageEstimator =
            serde_json::from_str(r#"{"kind":"grpo","unbiased_std":false}"#).unwrap();
        assert_eq!(
            e,
            AdvantageEstimator::Grpo {
                eps: 1e-6,
                unbiased_std: false
            }
        );
        for e in [
            AdvantageEstimator::grpo(),
            AdvantageEstimator::DrGrpo,
            AdvantageEstimator::Rloo,
            AdvantageEstimator::OpmdMean,
            AdvantageEstimator::group_mean_batch_std(),
        ] {
            let s = serde_json::to_string(&e).unwrap();
            assert_eq!(serde_json::from_str::<AdvantageEstimator>(&s).unwrap(), e);
        }
        assert_eq!(
            serde_json::to_string(&AdvantageEstimator::DrGrpo).unwrap(),
            r#"{"kind":"dr_grpo"}"#
        );
    }
}
