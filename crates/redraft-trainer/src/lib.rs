//! redraft-trainer: the whole system end to end. It composes the other crates into a training
//! run: an optional supervised warm-start, then RL steps of
//! sample prompts → rollout strategy (verify, feedback) → credit assignment → objective →
//! backward → gradient clipping → AdamW, with held-out evaluations, atomic checkpoints that
//! resume exactly, per-step metrics as JSONL and an end-of-run report.
//!
//! ```no_run
//! use redraft_trainer::{Silent, TrainConfig, Trainer};
//!
//! let config = TrainConfig::load("run.toml".as_ref(), &["optimizer.lr=3e-4".into()])?;
//! let mut trainer = Trainer::new(config, "runs/my-run".as_ref())?;
//! let summary = trainer.run(&mut Silent)?;
//! println!("final pass@1 {:.3}", summary.evals.last().unwrap().report.pass_at_1.mean);
//! # Ok::<(), redraft_trainer::Error>(())
//! ```
//!
//! Modules, in reading order:
//!
//! * [`config`] — the run configuration and its validation;
//! * [`problems`] — training, SFT and held-out problem streams;
//! * [`methods`] — one file per method: its strategy, credit assignment (rows), objective
//!   and default feedback, configured by one `[method]` table;
//! * [`rows`] — the training rows every method's credit assignment produces;
//! * [`remote`] — rollouts on inference servers: weights synced before each step;
//! * [`reward`] — the run's verifiers: `[[reward]]` components or a Rust verifier;
//! * [`sft`] — supervised warm-start examples (solutions and feedback-conditioned revisions);
//! * [`learner`] — the policy, AdamW, one clipped and guarded update;
//! * [`eval`] — pass@1, pass@k, multi-turn and self-feedback success;
//! * [`checkpoint`] — atomic checkpoints and exact resume;
//! * [`metrics`] — the typed records of metrics.jsonl and transcripts.jsonl;
//! * [`run_dir`] — the run folder: every file a run reads or writes;
//! * [`trainer`] — the loop;
//! * [`summary`] and [`report`] — report.md and its SVG plots;
//! * [`error`] — the error type.

#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod checkpoint;
pub mod config;
pub mod error;
pub mod eval;
pub mod learner;
pub mod methods;
pub mod metrics;
pub mod problems;
pub mod remote;
pub mod report;
pub mod reward;
pub mod rows;
pub mod run_dir;
pub mod sft;
pub mod summary;
pub mod trainer;

pub use checkpoint::TrainState;
pub use config::TrainConfig;
pub use error::{Error, Result};
pub use eval::{EvalReport, Evaluator, Rate, pass_at_k};
pub use learner::Learner;
pub use methods::{Method, MethodConfig, TrainMethod};
pub use metrics::{MetricsRecord, StepMetrics};
pub use problems::ProblemSource;
pub use run_dir::RunDir;
pub use trainer::{EvalRecord, Observer, Preflight, RunSummary, Silent, Trainer, preflight};
