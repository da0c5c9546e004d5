//! redraft-rollout-engine: experience collection on redraft-model.
//!
//! This first part holds batched sampling with the KV cache ([`generate`]); multi-turn episodes
//! and the feedback strategies build on it.
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod episode;
mod error;
mod policy_chat;
pub mod prompts;
mod sampling;
mod strategy;

pub use episode::{
    Episode, FeedbackRecord, Group, GroupUse, PreferencePair, Provenance, RolloutBatch,
    RolloutStats, Sequence, StrategyKind, TokenKind, Turn,
};
pub use error::{Error, Result};
pub use policy_chat::PolicyChat;
pub use sampling::{
    Completion, FinishReason, RowRequest, SamplingParams, generate, generate_rows, row_rng,
    sample_token,
};
pub use strategy::{
    MulFeRl, MulFeRlConfig, R3l, R3lConfig, RegenPairing, Rltf, RltfConfig, RolloutContext,
    RolloutStrategy, RoundDecision, SingleTurn, SingleTurnConfig, StrategyConfig, decide_round,
    derive_seed,
};
