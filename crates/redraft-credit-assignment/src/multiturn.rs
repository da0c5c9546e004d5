//! Multi-turn credit for RLTF (Song, Chen et al. 2026, arXiv 2602.02482; docs/algorithms/rltf.md):
//! per-turn discounted returns centred per turn index, and the RLTF-SD
//! self-distillation advantage with its first-turn (default) or second-turn baseline.
//!
//! An *episode* is the list of per-turn rewards `[r_0, r_1, …]` of one of the G episodes of a
//! problem; with early termination a solved episode has one turn. All functions here take the
//! G episodes of one problem (one group).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, check_finite, check_finite_nested};

/// RLTF's turn discount γ = 0.1.
pub const RLTF_GAMMA: f32 = 0.1;

/// Discounted return from every turn: `R_h = Σ_{h' ≥ h} γ^{h'−h} r_{h'}`.
pub fn discounted_returns(rewards: &[f32], gamma: f32) -> Vec<f32> {
    let mut out = vec![0.0; rewards.len()];
    let mut acc = 0.0f64;
    for h in (0..rewards.len()).rev() {
        acc = f64::from(rewards[h]) + f64::from(gamma) * acc;
        out[h] = acc as f32;
    }
    out
}

/// RLTF's multi-turn RL advantages (tinker `compute_advantages(normalize_by_std=False)` as
/// used by the RLTF code): per-transition discounted returns, centred per turn index over the
/// episodes that reached that turn, no std normalisation:
///
/// ```text
/// R_h^i = r_h^i + γ R_{h+1}^i            (R_0 = r_0 + 0.1 r_1, or r_0 if early-terminated)
/// A_h^i = R_h^i − mean_{j : |e_j| > h} R_h^j
/// ```
///
/// The output has the shape of `episodes`. A turn reached by one episode only gets `A = 0`
/// (it is its own baseline; the verl singleton rule does not apply here).
///
/// # Errors
/// [`Error::Empty`] for an episode with no turn, [`Error::NonFinite`] for a bad reward,
/// [`Error::InvalidParameter`] for a non-finite γ.
pub fn per_turn_advantages(episodes: &[Vec<f32>], gamma: f32) -> Result<Vec<Vec<f32>>> {
    validate_episodes(episodes)?;
    check_finite("gamma", &[gamma]).map_err(|_| Error::InvalidParameter {
        name: "gamma",
        reason: format!("must be finite, got {gamma}"),
    })?;
    let returns: Vec<Vec<f32>> = episodes
        .iter()
        .map(|e| discounted_returns(e, gamma))
        .collect();
    let horizon = returns.iter().map(Vec::len).max().unwrap_or(0);
    let mut baselines = vec![0.0f64; horizon];
    for (h, b) in baselines.iter_mut().enumerate() {
        let at_h: Vec<f64> = returns
            .iter()
            .filter_map(|r| r.get(h).map(|&x| f64::from(x)))
            .collect();
        *b = at_h.iter().sum::<f64>() / at_h.len() as f64;
    }
    Ok(returns
        .iter()
        .map(|r| {
            r.iter()
                .zip(&baselines)
                .map(|(&x, &b)| (f64::from(x) - b) as f32)
                .collect()
        })
        .collect())
}

fn validate_episodes(episodes: &[Vec<f32>]) -> Result<()> {
    if let Some(i) = episodes.iter().position(Vec::is_empty) {
        return Err(Error::Empty {
            what: "episode",
            index: i,
        });
    }
    check_finite_nested("reward", episodes)
}

/// The first-turn baseline of RLTF-SD: `b_0 = (1/N) Σ_j r_0^j` over **all** episodes
/// (early-terminated ones contribute their only, final reward).
///
/// # Errors
/// [`Error::Empty`] for no episodes or an empty episode; [`Error::NonFinite`].
pub fn first_turn_baseline(episodes: &[Vec<f32>]) -> Result<f32> {
    if episodes.is_empty() {
        return Err(Error::Empty {
            what: "group of episodes",
            index: 0,
        });
    }
    validate_episodes(episodes)?;
    let s: f64 = episodes.iter().map(|e| f64::from(e[0])).sum();
    Ok((s / episodes.len() as f64) as f32)
}

/// Which baseline the RLTF-SD advantage subtracts (docs/algorithms/rltf.md, "Departures").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SdBaseline {
    /// Paper (default): `A_SD^i = r_1^i − (1/N) Σ_j r_0^j`, the mean first-turn reward of all N
    /// episodes: the revision is credited for beating what the policy achieves from `x0`,
    /// which is the distribution the self-distillation datum trains.
    #[default]
    FirstTurn,
    /// Released code: `use_first_turn_baseline` is never forwarded, so the SD datum reuses the
    /// second-turn centred return `A_SD^i = A_1^i = R_1^i − mean_{j has turn 1} R_1^j`, the
    /// baseline the paper argues against (it compares revisions with revisions). Kept to
    /// reproduce the released numbers.
    SecondTurn,
}

/// RLTF-SD (`distillation_mode="rl_reweight_mask"`) credit settings: the baseline of the
/// sequence-level advantage and the turn discount. The coefficient `rl_coef` and the log-prob
/// mask on the distilled tokens belong to the objective (`RltfSdConfig` in redraft-objectives),
/// which alone applies them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelfDistillation {
    /// Baseline of the SD advantage. Default [`SdBaseline::FirstTurn`] (paper).
    #[serde(default)]
    pub baseline: SdBaseline,
    /// Turn discount for the second-turn return ([`SdBaseline::SecondTurn`]). Default 0.1.
    #[serde(default = "default_gamma")]
    pub gamma: f32,
}

fn default_gamma() -> f32 {
    RLTF_GAMMA
}

impl Default for SelfDistillation {
    fn default() -> Self {
        Self {
            baseline: SdBaseline::default(),
            gamma: RLTF_GAMMA,
        }
    }
}

impl SelfDistillation {
    /// The sequence-level SD advantage `A_SD` (before the objective's `rl_coef` and log-prob
    /// mask) of every episode that has a second turn; `None` for single-turn
    /// (early-terminated) episodes, which yield no SD datum. Output in episode order.
    ///
    /// # Errors
    /// As [`per_turn_advantages`].
    pub fn advantages(&self, episodes: &[Vec<f32>]) -> Result<Vec<Option<f32>>> {
        match self.baseline {
            SdBaseline::FirstTurn => {
                let b0 = f64::from(first_turn_baseline(episodes)?);
                Ok(episodes
                    .iter()
                    .map(|e| e.get(1).map(|&r1| (f64::from(r1) - b0) as f32))
                    .collect())
            }
            SdBaseline::SecondTurn => Ok(per_turn_advantages(episodes, self.gamma)?
                .into_iter()
                .map(|a| a.get(1).copied())
                .collect()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f32], b: &[f32], tol: f32) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol)
    }

    /// Worked example: r0=[1,0,0], r1=[-,1,0] → R0=[1,.1,0] → A0=[.633,-.267,-.367];
    /// A1=[.5,-.5].
    #[test]
    fn worked_example_per_turn_returns() {
        let eps = vec![vec![1.0], vec![0.0, 1.0], vec![0.0, 0.0]];
        assert!(close(&discounted_returns(&eps[1], 0.1), &[0.1, 1.0], 1e-7));
        let a = per_turn_advantages(&eps, RLTF_GAMMA).unwrap();
        let a0: Vec<f32> = a.iter().map(|e| e[0]).collect();
        assert!(
            close(&a0, &[0.633_333, -0.266_667, -0.366_667], 1e-5),
            "{a0:?}"
        );
        let a1: Vec<f32> = a.iter().filter_map(|e| e.get(1).copied()).collect();
        assert!(close(&a1, &[0.5, -0.5], 1e-6), "{a1:?}");
        assert_eq!(a[0].len(), 1);
    }

    /// Worked example: r0=[1,0,…,0] (8), r1 for the 7 failures = [1,1,0,1,1,1,0] →
    /// A_SD = r1 − .125 = .875 / −.125 (× 0.1 on the tokens).
    #[test]
    fn worked_example_sd_first_turn_baseline() {
        let r1 = [1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0];
        let mut eps = vec![vec![1.0]];
        eps.extend(r1.iter().map(|&r| vec![0.0, r]));
        assert_eq!(first_turn_baseline(&eps).unwrap(), 0.125);
        // The default is the paper's first-turn baseline.
        let sd = SelfDistillation::default();
        assert_eq!(sd.baseline, SdBaseline::FirstTurn);
        let a = sd.advantages(&eps).unwrap();
        assert_eq!(a[0], None);
        let got: Vec<f32> = a[1..].iter().map(|x| x.unwrap()).collect();
        let want: Vec<f32> = r1.iter().map(|&r| r - 0.125).collect();
        assert!(close(&got, &want, 1e-7), "{got:?}");
        // Released code, a named option: second-turn baseline (mean r1 over the 7 = 5/7).
        let code = SelfDistillation {
            baseline: SdBaseline::SecondTurn,
            ..SelfDistillation::default()
        }
        .advantages(&eps)
        .unwrap();
        assert!((code[1].unwrap() - (1.0 - 5.0 / 7.0)).abs() < 1e-6);
        assert!(serde_json::from_str::<SelfDistillation>(r#"{"rl_coef": 0.1}"#).is_err());
    }

    #[test]
    fn errors() {
        assert!(matches!(
            per_turn_advantages(&[vec![1.0], vec![]], 0.1),
            Err(Error::Empty { index: 1, .. })
        ));
        assert!(matches!(
            per_turn_advantages(&[vec![1.0], vec![0.0, f32::NAN]], 0.1),
            Err(Error::NonFinite {
                index: 2,
                group: Some(1),
                ..
            })
        ));
        assert!(first_turn_baseline(&[]).is_err());
        assert!(per_turn_advantages(&[], 0.1).unwrap().is_empty());
    }
}
