//! redraft-model: a Llama/Qwen2-family decoder on burn 0.22.
//!
//! It reads Hugging Face `config.json` and safetensors checkpoints under transformers' tensor
//! names, matches transformers' `LlamaForCausalLM` / `Qwen2ForCausalLM` numerically, decodes
//! batches of left-padded prompts incrementally through a [`KvCache`] kept outside the module,
//! and computes per-token log-probabilities and entropies. The same code runs on every burn
//! backend; the [`DeviceSpec`] chosen at start picks it.
//!
//! ```no_run
//! use redraft_model::{CausalLm, DeviceSpec, LogitsFor};
//! # fn main() -> redraft_model::Result<()> {
//! let device = DeviceSpec::Cpu.device()?;
//! let model = CausalLm::from_pretrained("path/to/model".as_ref(), &device)?;
//! let batch = redraft_model::left_padded(model.config(), &[vec![1, 2, 3], vec![4]], 0, &device)?;
//! let mut cache = model.new_cache(batch.left_pad.clone());
//! let logits = model.forward_cached(batch.tokens, &mut cache, LogitsFor::Last)?; // [2, 1, vocab]
//! # Ok(()) }
//! ```
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod batch;
mod cache;
mod config;
mod device;
mod dtype;
mod error;
mod gguf;
mod head;
mod logprobs;
pub mod lora;
mod pretrained;
mod rope;
mod training;
mod transformer;
mod weights;

pub use batch::{PaddedBatch, check_rows, left_padded, right_padded};
pub use cache::KvCache;
pub use config::{
    Architecture, MemoryEstimate, MemoryLimit, ModelConfig, RopeScaling, Workload, format_bytes,
    parse_bytes,
};
pub use device::DeviceSpec;
pub use dtype::BaseDType;
pub use error::{Error, Result};
pub use gguf::{GgufWeights, is_gguf};
pub use head::{TokenStats, inverse_temperature};
pub use logprobs::{entropy, next_token_logprobs, token_logprobs};
pub use lora::{LoraConfig, LoraKeys, PeftAdapter};
pub use rope::{Rope, apply_rope};
pub use training::{TrainPass, add_grads};
pub use transformer::{Attention, CausalLm, DecoderLayer, LogitsFor, Mlp};
pub use weights::{
    Checkpoint, Init, NamedTensor, RandomInit, SaveDType, WeightSource, publish_dir,
    remove_stale_temps, replace_dir, safetensors_bytes, temp_path, write_atomic,
};

/// The GGUF reader, re-exported for callers that open GGUF files themselves.
pub use redraft_gguf;

/// burn's tensor and device types, re-exported so users need no direct burn dependency.
pub use burn;
