//! Policy objectives for RL of language models from verifiable rewards and text feedback, on
//! burn: the RLVR clipped surrogate (GRPO, Dr.GRPO, DAPO), OPMD, R^3L, RLTF-SD, RLTF-FM and
//! MulFeRL.
//!
//! An [`Objective`] turns a [`PolicyBatch`] (masks, advantages, sampling and reference
//! log-probs, row kinds, preference pairs) and the policy's per-token log-probs into a scalar
//! loss tensor and plain-`f64` [`Metrics`]. [`ObjectiveConfig`] is the serde-tagged enum
//! (`method = "grpo" | "dr_grpo" | "dapo" | "ppo_clip" | "opmd" | "r3l" | "rltf_sd" |
//! "rltf_fm" | "mulferl"`) a config file selects one with; [`ObjectiveConfig::build`] returns a
//! `Box<dyn Objective>`.
//!
//! ```
//! use redraft_model::burn::tensor::{Device, Tensor, TensorData};
//! use redraft_objectives::{Objective, ObjectiveConfig, PolicyBatch};
//!
//! let device = Device::flex();
//! let config: ObjectiveConfig = serde_json::from_str(r#"{"method": "dapo"}"#).unwrap();
//! let objective = config.build()?;
//! let batch = PolicyBatch::new([1, 2], vec![true, true], vec![1.0, 1.0], &device)?;
//! let logprobs = Tensor::<2>::from_data(TensorData::new(vec![-1.0f32, -2.0], [1, 2]), &device);
//! let out = objective.loss(&batch, logprobs, None)?;
//! // On-policy (no sampling log-probs): ratio 1, loss = −mean(A) = −1.
//! assert!((out.metrics.get("loss").unwrap() + 1.0).abs() < 1e-6);
//! # Ok::<(), redraft_objectives::Error>(())
//! ```
//!
//! Modules, in reading order (formulas in each item's docs; the formula as implemented, every
//! option and every departure from the papers and their code in `docs/algorithms/<method>.md`):
//!
//! * [`batch`] — the batch layout, row kinds and pairs;
//! * [`objective`] — the trait, the output and the metric names;
//! * [`kl`] — the k1 / k2 / k3 KL estimators;
//! * [`ppo`] — the RLVR clipped surrogate and its presets;
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
