//! Per-token KL estimators to a reference policy, as verl's `kl_penalty` computes them.
//!
//! With `d = log π_θ − log π_ref` on a sampled token (sampled from π_θ's behaviour policy):
//!
//! ```text
//! k1 ("kl")          = d                                  unbiased, high variance, can be < 0
//! k2 ("mse")         = ½ d²                               biased, low variance, ≥ 0
//! k3 ("low_var_kl")  = exp(−d) − (−d) − 1                 unbiased (Schulman), ≥ 0
//!                      with verl's clamps: −d to [−20, 20] before exp, k3 to [−10, 10]
//! abs                = |d|
//! ```
//!
//! The clamps are verl's (`low_var_kl` only); gradients are zero where a clamp is active,
//! as in PyTorch.

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

/// verl's clamp on the log-ratio inside `low_var_kl` (and on the PPO log-ratio).
pub const LOG_RATIO_CLAMP: f64 = 20.0;
/// verl's clamp on the `low_var_kl` value.
pub const K3_CLAMP: f64 = 10.0;

/// A per-token KL estimator. Serialised in snake case; verl's names are aliases
/// (`"kl"` = k1, `"mse"` = k2, `"low_var_kl"` = k3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KlEstimator {
    /// `k1 = log π_θ − log π_ref`.
    #[serde(alias = "kl")]
    K1,
    /// `k2 = ½ (log π_θ − log π_ref)²` (Trinity-RFT's `"k2"`, verl's `"mse"`).
    #[serde(alias = "mse")]
    K2,
    /// `k3 = exp(log π_ref − log π_θ) − (log π_ref − log π_θ) − 1`, with the log-ratio
    /// clamped to `[−20, 20]` and the result to `[−10, 10]` (verl `"low_var_kl"`). Default.
    #[default]
    #[serde(alias = "low_var_kl")]
    K3,
    /// `|log π_θ − log π_ref|` (verl `"abs"`).
    Abs,
}

impl KlEstimator {
    /// The per-token estimate, elementwise. `logprobs` is tracked, `ref_logprobs` a constant.
    ///
    /// # Shapes
    /// - `logprobs`, `ref_logprobs`: `[batch, time]` -> `[batch, time]`
    pub fn tokens(self, logprobs: Tensor<2>, ref_logprobs: Tensor<2>) -> Tensor<2> {
        match self {
            Self::K1 => logprobs - ref_logprobs,
            Self::K2 => (logprobs - ref_logprobs).square().mul_scalar(0.5),
            Self::K3 => {
                let kl = (ref_logprobs - logprobs).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP);
                (kl.clone().exp() - kl)
                    .sub_scalar(1.0)
                    .clamp(-K3_CLAMP, K3_CLAMP)
            }
            Self::Abs => (logprobs - ref_logprobs).abs(),
        }
    }

    /// The same estimate for one token, in f64 (a host reference for tests and docs).
    pub fn value(self, logprob: f64, ref_logprob: f64) -> f64 {
        let d = logprob - ref_logprob;
        match self {
            Self::K1 => d,
            Self::K2 => 0.5 * d * d,
            Self::K3 => {
                let kl = (-d).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP);
                (kl.exp() - kl - 1.0).clamp(-K3_CLAMP, K3_CLAMP)
            }
            Self::Abs => d.abs(),
        }
    }
}
