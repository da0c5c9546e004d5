//! redraft-rollout-engine: experience collection on redraft-model.
//!
//! This first part holds batched sampling with the KV cache ([`generate`]); multi-turn episodes
//! and the feedback strategies build on it.
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod error;
mod sampling;

pub use error::{Error, Result};
pub use sampling::{
    Completion, FinishReason, RowRequest, SamplingParams, generate, generate_rows, row_rng,
    sample_token,
};
