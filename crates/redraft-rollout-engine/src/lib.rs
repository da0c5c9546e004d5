//! redraft-rollout-engine: experience collection on redraft-model.
//!
//! Batched sampling with the KV cache ([`generate_rows`], the one decode loop, drawing tokens
//! on the model's device with [`DeviceSampler`]), behind the
//! [`Policy`] seam that strategies sample through ([`LocalPolicy`] in process,
//! [`RemotePolicy`] on inference servers, metered by [`MeteredPolicy`]); multi-turn episodes and the feedback strategies build on it.
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod batcher;
mod device_sampler;
mod episode;
mod error;
mod policy;
mod policy_chat;
pub mod prompts;
mod remote;
mod sampling;
mod strategy;

pub use batcher::Batcher;
pub use device_sampler::{DeviceSampler, Drawn, THRESHOLD_STEPS};
pub use episode::{
    Episode, FeedbackRecord, Group, GroupUse, PreferencePair, Provenance, RolloutBatch,
    RolloutStats, Sequence, StrategyKind, TokenKind, Turn,
};
pub use error::{Error, Result};
pub use policy::{LocalPolicy, MeteredPolicy, Policy};
pub use policy_chat::PolicyChat;
pub use remote::{RemoteOptions, RemotePolicy, ServerStatus, rng_from_state, rng_state};
pub use sampling::{
    Completion, Control, FinishReason, RowRequest, Sampled, SamplingParams, generate,
    generate_rows, generate_rows_limited, generate_rows_with, row_rng, sample_token, top_logprobs,
};
pub use strategy::{
    MulFeRl, MulFeRlConfig, R3l, R3lConfig, RegenPairing, Rltf, RltfConfig, RolloutContext,
    RolloutStrategy, RoundDecision, SingleTurn, SingleTurnConfig, StrategyConfig, TurnPrompt,
    decide_round, derive_seed,
};
