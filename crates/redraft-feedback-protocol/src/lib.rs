//! redraft-feedback-protocol: text feedback for reinforcement learning of language models.
//!
//! - Types ([`types`]): a [`FeedbackRequest`] (problem, response, verdict, whether the reference
//!   may be seen, optional multi-turn transcript) goes in; a [`Feedback`] (kind, text, verdict,
//!   pivot, hints, source, latency, parsed reflection) comes out. Both are serde-serialisable and
//!   versioned ([`FEEDBACK_FORMAT_VERSION`]).
//! - [`FeedbackProvider`]: batched, one `Result` per request. Built-ins: [`VerifierCritic`]
//!   (critiques from verifier diagnoses), [`CorrectnessOnly`] (the papers' ablation),
//!   [`SelfReflection`] (R^3L's JSON reflection by the policy), [`LlmJudge`] (RLTF's judge over
//!   any [`ChatModel`]) and [`GroupJudge`] (MulFeRL's group-and-merge critiques), selectable from
//!   a configuration file through [`ProviderConfig`].
//! - [`ChatModel`]: what the judges and the reflection run on; [`OpenAiClient`] implements it for
//!   OpenAI-compatible `/v1/chat/completions` endpoints (timeouts, retries with backoff, bounded
//!   concurrency, typed errors); the rollout engine implements it for the local policy.
//! - Rewards ([`reward`]): [`RewardConfig`] selects the built-in verifier (`task`), an external
//!   program speaking JSON lines ([`CommandReward`]) or an HTTP endpoint ([`HttpReward`]);
//!   [`RewardSet`] sums weighted components as a [`redraft_verifier::Verifier`].
//! - [`Templates`]: every prompt as minijinja data, defaulting to the papers' wording: RLTF's
//!   revision prompt, MulFeRL's regeneration prompt and forced `<thinking><feedback>…</feedback>`
//!   prefix ([`forced_prefix`]), R^3L's reflection, guidance and retry messages.
//!
//! ```
//! use redraft_feedback_protocol::{FeedbackProvider, FeedbackRequest, VerifierCritic};
//! use redraft_verifier::{Problem, TaskFamily, Difficulty};
//!
//! let problem = TaskFamily::Arithmetic.generate_one(0, 0, &Difficulty::default())?;
//! let response = "<answer>0</answer>";
//! let verdict = problem.verify(response);
//! let critic = VerifierCritic::default();
//! let fb = critic.feedback(&[FeedbackRequest::new(problem, response, verdict)]);
//! assert!(fb[0].as_ref().unwrap().text.contains("wrong"));
//! # Ok::<(), redraft_verifier::Error>(())
//! ```
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod chat;
pub mod config;
pub mod correctness;
pub mod critic;
pub mod error;
pub mod judge;
pub mod merge;
pub mod openai;
pub mod provider;
pub mod reflection;
pub mod reward;
pub mod templates;
pub mod types;

pub use chat::{ChatModel, ChatRequest, ChatResponse, FnChatModel, Usage};
pub use config::ProviderConfig;
pub use correctness::{CORRECT_TEXT, CorrectnessOnly, INCORRECT_TEXT};
pub use critic::{CriticConfig, Critique, VerifierCritic, critique};
pub use error::{Error, ErrorKind, Result};
pub use judge::{
    CritiqueParser, JudgeConfig, LlmJudge, extract_feedback_block, extract_rltf_critique,
};
pub use merge::{GroupJudge, GroupJudgeConfig};
pub use openai::{OpenAiClient, OpenAiConfig};
pub use provider::{FeedbackProvider, ProviderStats, StatsRecorder};
pub use reflection::{
    AuxSftRules, AuxSftSelection, InvalidReflection, ReflectRetryRecord, ReflectionOutcome,
    ReflectionReport, ReflectionVerdict, RetryRecord, SelfReflection, SelfReflectionConfig,
    TrajectoryOutcome, parse_reflection, select_aux_sft,
};
pub use reward::{
    CommandReward, HttpReward, RewardConfig, RewardSet, RewardStats, validate_rewards,
};
pub use templates::{Templates, forced_prefix};
pub use types::{
    Exchange, FEEDBACK_FORMAT_VERSION, Feedback, FeedbackKind, FeedbackRequest, FeedbackSource,
    Pivot, PivotUnit,
};
