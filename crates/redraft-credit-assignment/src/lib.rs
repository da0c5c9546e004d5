//! Credit assignment for RL of language models from verifiable rewards and text feedback:
//! advantages, baselines, token masks and loss-aggregation weights, as pure functions over
//! plain slices. No tensor library: a downstream crate can compute GRPO advantages with this
//! crate alone.
//!
//! ```
//! use redraft_credit_assignment::{AdvantageEstimator, AdvantageFn};
//!
//! // Two prompts, verl-style: one group id per sample.
//! let rewards = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0];
//! let uids = ["p0", "p0", "p1", "p1", "p0", "p1"];
//! let adv = AdvantageEstimator::grpo().advantages_by_id(&rewards, &uids)?;
//! assert!(adv[0] > 0.0 && adv[1] < 0.0);
//! # Ok::<(), redraft_credit_assignment::Error>(())
//! ```
//!
//! Modules, in reading order (formulas and sources in each item's docs; every deliberate
//! departure from the papers and released code is listed in `docs/algorithms/credit-assignment.md`):
//!
//! * [`advantage`]: GRPO, Dr.GRPO, RLOO, OPMD mean baseline, batch-std scaling;
//! * [`dapo`]: overlong reward shaping, dynamic-sampling group filter;
//! * [`multiturn`]: RLTF per-turn returns and the RLTF-SD advantage;
//! * [`r3l`]: pivotal credit masks, positive amplification;
//! * [`masks`]: token masks (log-prob threshold, prefix);
//! * [`aggregation`]: loss-aggregation modes as per-token weights;
//! * [`correction`]: importance weights for the gap between a remote sampler and the learner;
//! * [`error`]: the error type.

#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod advantage;
pub mod aggregation;
pub mod correction;
pub mod dapo;
pub mod error;
pub mod groups;
pub mod masks;
pub mod multiturn;
pub mod r3l;

pub use advantage::{
    AdvantageEstimator, AdvantageFn, DEFAULT_EPS, grpo_advantages, scale_by_batch_std,
};
pub use aggregation::LossAggregation;
pub use correction::{GapStats, SamplerCorrection};
pub use dapo::{
    OverlongShaping, dynamic_sampling_filter, dynamic_sampling_filter_by_id, keep_group,
    overlong_penalty,
};
pub use error::{Error, Result};
pub use groups::group_indices;
pub use masks::{
    RLTF_SD_LOGPROB_THRESHOLD, and_masks, broadcast_advantage, broadcast_advantages,
    logprob_threshold_mask, mask_prefix, mask_to_f32, restrict_by_logprob,
};
pub use multiturn::{
    RLTF_GAMMA, SdBaseline, SelfDistillation, discounted_returns, first_turn_baseline,
    per_turn_advantages,
};
pub use r3l::{PositiveAmplification, SFT_ADVANTAGE, assistant_segments, pivot_mask, pivot_masks};
