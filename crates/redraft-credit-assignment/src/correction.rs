//! Correcting the gap between the policy that sampled a token (an inference server) and the
//! learner's own scoring of it: per-token importance weights
//! `w_t = π_learner(y_t) / π_sampler(y_t)`, truncated or masked above a cap (truncated
//! importance sampling, Yao et al. 2025; TRL's `vllm_importance_sampling_correction` with
//! `token_truncate` / `token_mask`). The weight multiplies a token's policy-gradient term; it
//! is a constant of the loss (no gradient flows through it).

use serde::{Deserialize, Serialize};

use crate::error::{Result, check_finite, check_len, check_positive};

/// How the sampler–learner gap is corrected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SamplerCorrection {
    /// `w = min(ratio, cap)`: truncated importance sampling.
    #[default]
    Truncate,
    /// `w = ratio` where `ratio <= cap`, else 0: tokens far off the learner's policy are dropped.
    Mask,
    /// `w = 1`: the gap is measured and logged only.
    None,
}

/// What one correction measured, over the tokens it weighed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct GapStats {
    /// Tokens weighed.
    pub tokens: usize,
    /// Mean of `|log π_learner − log π_sampler|`.
    pub abs_gap_mean: f64,
    /// Largest `|log π_learner − log π_sampler|`.
    pub abs_gap_max: f64,
    /// Mean importance weight applied.
    pub weight_mean: f64,
    /// Tokens whose ratio exceeded the cap (truncated or masked).
    pub capped: usize,
}

impl GapStats {
    /// Adds the tokens of `other`.
    pub fn merge(&mut self, other: &GapStats) {
        let n = self.tokens + other.tokens;
        if n == 0 {
            return;
        }
        let mean = |a: f64, b: f64| (a * self.tokens as f64 + b * other.tokens as f64) / n as f64;
        self.abs_gap_mean = mean(self.abs_gap_mean, other.abs_gap_mean);
        self.weight_mean = mean(self.weight_mean, other.weight_mean);
        self.abs_gap_max = self.abs_gap_max.max(other.abs_gap_max);
        self.capped += other.capped;
        self.tokens = n;
    }
}

impl SamplerCorrection {
    /// The weight of one token from its two log-probs.
    pub fn weight(self, learner: f32, sampler: f32, cap: f64) -> f64 {
        let ratio = f64::from(learner - sampler).exp();
        match self {
            Self::Truncate => ratio.min(cap),
            Self::Mask if ratio > cap => 0.0,
            Self::Mask => ratio,
            Self::None => 1.0,
        }
    }

    /// Weights for the tokens where `weigh` is true (1 elsewhere) from the learner's and the
    /// sampler's log-probs of the same tokens, and what was measured.
    ///
    /// # Errors
    /// Slices of different lengths, a non-finite log-prob, or a cap that is not a finite
    /// number above 0.
    pub fn weights(
        self,
        learner: &[f32],
        sampler: &[f32],
        weigh: &[bool],
        cap: f64,
    ) -> Result<(Vec<f32>, GapStats)> {
        check_len("sampler log-probs", learner.len(), sampler.len())?;
        check_len("token mask", learner.len(), weigh.len())?;
        check_finite("learner log-prob", learner)?;
        check_finite("sampler log-prob", sampler)?;
        check_positive("cap", cap as f32)?;
        let mut stats = GapStats::default();
        let mut gap_sum = 0.0;
        let mut weight_sum = 0.0;
        let weights = learner
            .iter()
            .zip(sampler)
            .zip(weigh)
            .map(|((&l, &s), &on)| {
                if !on {
                    return 1.0;
                }
                let gap = f64::from((l - s).abs());
                let ratio = f64::from(l - s).exp();
                let w = self.weight(l, s, cap);
                stats.tokens += 1;
                stats.abs_gap_max = stats.abs_gap_max.max(gap);
                stats.capped += usize::from(ratio > cap);
                gap_sum += gap;
                weight_sum += w;
                w as f32
            })
            .collect();
        if stats.tokens > 0 {
            stats.abs_gap_mean = gap_sum / stats.tokens as f64;
            stats.weight_mean = weight_sum / stats.tokens as f64;
        }
        Ok((weights, stats))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn equal_log_probs_weigh_one_and_far_tokens_are_capped() {
        let (w, s) = SamplerCorrection::Truncate
            .weights(
                &[-1.0, -0.1, -2.0],
                &[-1.0, -3.0, -2.5],
                &[true, true, false],
                2.0,
            )
            .unwrap();
        assert_eq!(w[0], 1.0);
        assert_eq!(w[1], 2.0, "ratio e^2.9 is truncated to the cap");
        assert_eq!(w[2], 1.0, "an unweighed token keeps weight 1");
        assert_eq!(s.tokens, 2);
        assert_eq!(s.capped, 1);
        assert!((s.abs_gap_max - 2.9).abs() < 1e-6);
        let (w, _) = SamplerCorrection::Mask
            .weights(&[-1.0, -0.1], &[-1.2, -3.0], &[true, true], 2.0)
            .unwrap();
        assert!((f64::from(w[0]) - 0.2f64.exp()).abs() < 1e-6);
        assert_eq!(w[1], 0.0, "a token beyond the cap is masked");
    }

    #[test]
    fn bad_input_is_refused_by_name() {
        let e = SamplerCorrection::Truncate
            .weights(&[0.0], &[0.0, 0.0], &[true], 2.0)
            .unwrap_err();
        assert!(e.to_string().contains("sampler log-probs"), "{e}");
        let e = SamplerCorrection::Truncate
            .weights(&[0.0], &[0.0], &[true], 0.0)
            .unwrap_err();
        assert!(e.to_string().contains("cap"), "{e}");
    }

    proptest! {
        /// Every weight lies in [0, cap]; `None` weighs 1; truncation and masking agree below
        /// the cap; the statistics merge like one pass over the concatenation.
        #[test]
        fn weights_are_bounded_and_stats_merge(
            pairs in prop::collection::vec((-20.0f32..0.0, -20.0f32..0.0, any::<bool>()), 0..40),
            split in 0usize..40,
            cap in 1.0f64..5.0,
        ) {
            let l: Vec<f32> = pairs.iter().map(|p| p.0).collect();
            let s: Vec<f32> = pairs.iter().map(|p| p.1).collect();
            let m: Vec<bool> = pairs.iter().map(|p| p.2).collect();
            let (t, all) = SamplerCorrection::Truncate.weights(&l, &s, &m, cap).unwrap();
            let (k, _) = SamplerCorrection::Mask.weights(&l, &s, &m, cap).unwrap();
            let (n, _) = SamplerCorrection::None.weights(&l, &s, &m, cap).unwrap();
            for i in 0..l.len() {
                prop_assert!(t[i] >= 0.0 && f64::from(t[i]) <= cap + 1e-6);
                prop_assert!(k[i] >= 0.0 && f64::from(k[i]) <= cap + 1e-6);
                prop_assert_eq!(n[i], 1.0);
                if k[i] != 0.0 || !m[i] {
                    prop_assert!((t[i] - k[i]).abs() <= 1e-6 * t[i].max(1.0));
                }
            }
            let cut = split.min(l.len());
            let (_, mut a) = SamplerCorrection::Truncate
                .weights(&l[..cut], &s[..cut], &m[..cut], cap).unwrap();
            let (_, b) = SamplerCorrection::Truncate
                .weights(&l[cut..], &s[cut..], &m[cut..], cap).unwrap();
            a.merge(&b);
            prop_assert_eq!(a.tokens, all.tokens);
            prop_assert_eq!(a.capped, all.capped);
            prop_assert!((a.abs_gap_mean - all.abs_gap_mean).abs() < 1e-9);
            prop_assert!((a.weight_mean - all.weight_mean).abs() < 1e-9);
            prop_assert_eq!(a.abs_gap_max, all.abs_gap_max);
        }
    }
}
