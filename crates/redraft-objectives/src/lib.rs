//! Policy objectives for RL of language models from verifiable rewards and text feedback, on
//! burn: the RLVR clipped surrogate (GRPO, Dr.GRPO, DAPO), OPMD, R^3L, RLTF-SD, RLTF-FM and
//! MulFeRL.
//!
//! An [`Objective`] turns a [`PolicyBatch`] (masks, advantages, sampling and reference
//! log-probs, row kinds, preference pairs) and the policy's per-token log-probs into a scalar
//! loss tensor and plain-`f64` [`Metrics`]. [`ObjectiveConfig`] is the serde-tagged enum
//! (`type = "grpo" | "dr_grpo" | "dapo" | "ppo_clip" | "opmd" | "r3l" | "rltf_sd" |
//! "rltf_fm" | "mulferl"`) a config file selects one with; [`ObjectiveConfig::build`] returns a
//! `Box<dyn Objective>`.
//!
//! ```
//! use redraft_model::burn::tensor::{Device, Tensor, TensorData};
//! use redraft_objectives::{Objective, ObjectiveConfig, PolicyBatch};
//!
//! let device = Device::flex();
//! let config: ObjectiveConfig = serde_json::from_str(r#"{"type": "dapo"}"#).unwrap();
//! let objective = config.build()?;
//! let batch = PolicyBatch::new([1, 2], vec![true, true], vec![1.0, 1.0], &device)?;
//! let logprobs = Tensor::<2>::from_data(TensorData::new(vec![-1.0f32, -2.0], [1, 2]), &device);
//! let out = objective.loss(&batch, logprobs, None)?;
//! // On-policy (no sampling log-probs): ratio 1, loss = −mean(A) = −1.
//! assert!((out.metrics.get("loss").unwrap() + 1.0).abs() < 1e-6);
//! # Ok::<(), redraft_objectives::Error>(())
//! ```
//!
//! # Objectives are sums of terms
//!
//! Every objective is a list of terms, each one small type with its formula, summed by one
//! `loss` that prepares the inputs, refuses rows no term trains and collects the metrics:
//!
//! | method | terms |
//! |---|---|
//! | `grpo`, `dr_grpo`, `dapo`, `ppo_clip` | policy gradient (clipped surrogate) + KL + entropy |
//! | `opmd` | policy gradient (OPMD surrogate) + KL + entropy |
//! | `r3l` | policy gradient (OPMD or clipped) + KL + entropy + SFT (auxiliary rows) |
//! | `rltf_sd` | policy gradient (importance sampling or PPO) + self-distillation |
//! | `rltf_fm` | policy gradient (importance sampling or PPO) + feedback modelling |
//! | `mulferl` | GRPO's three terms + pair preference (DPO / FCO) |
//!
//! The policy-gradient term trains [`RowKind::Policy`] rows; the SFT and feedback-modelling
//! terms [`RowKind::Auxiliary`] rows, the self-distillation term
//! [`RowKind::SelfDistillation`] rows and the pair term [`RowKind::Pair`] rows. A term may
//! share its aggregation with another (RLTF-SD's policy and self-distillation terms normalise
//! over both kinds of rows; so do R^3L's policy and in-RL SFT terms), which leaves the sum
//! what one aggregation over the union gives.
//!
//! Log-probs are those of the sampling distribution: a trainer scores at the rollout
//! temperature (`softmax(logits / T)`), so that on-policy ratios are 1.
//!
//! Modules, in reading order (formulas in each item's docs; the formula as implemented, every
//! option and every departure from the papers and their code in `docs/algorithms/<method>.md`):
//!
//! * [`batch`] — the batch layout, row kinds and pairs;
//! * [`objective`] — the trait, the output and the metric names;
//! * [`kl`] — the k1 / k2 / k3 KL estimators;
//! * `terms` (private) — the terms, the shared surrogate and the one `loss` that sums them;
//! * [`ppo`] — the RLVR settings, their presets and terms;
//! * [`opmd`] — OPMD;
//! * [`r3l`] — R^3L;
//! * [`rltf`] — RLTF-SD and RLTF-FM;
//! * [`mulferl`] — MulFeRL (GRPO + DPO / FCO pairs);
//! * [`config`] — the config enum;
//! * [`error`] — the error type.

#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod batch;
pub mod config;
pub mod error;
pub mod kl;
pub mod mulferl;
pub mod objective;
pub mod opmd;
pub mod ppo;
pub mod r3l;
pub mod rltf;
mod terms;

pub use batch::{PairRows, PolicyBatch, RowKind};
pub use config::ObjectiveConfig;
pub use error::{Error, Result};
pub use kl::KlEstimator;
pub use mulferl::{MulFeRlConfig, MulFeRlObjective, PairLoss};
pub use objective::{LossOutput, Metrics, Objective, metric};
pub use opmd::{OpmdConfig, OpmdObjective};
pub use ppo::{RlvrConfig, RlvrObjective, RlvrOptions};
pub use r3l::{R3lBase, R3lConfig, R3lObjective, SftMode};
pub use rltf::{CoefSchedule, RltfFmConfig, RltfObjective, RltfRlLoss, RltfSdConfig};
