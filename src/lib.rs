//! redraft: reinforcement learning of language models from verifiable rewards and from text
//! feedback, on burn.
//!
//! This facade re-exports the workspace's crates under short names. Each crate can also be
//! used on its own; the crates marked "no burn" below never pull in a tensor library.
//!
//! | module | crate | what |
//! |---|---|---|
//! | [`gguf`] | redraft-gguf (no burn) | GGUF files: metadata, tensors, dequantization |
//! | [`tokenizer`] | redraft-tokenizer (no burn) | tokenizers, chat templates, token transcripts |
//! | [`verifier`] | redraft-verifier (no burn) | verdicts for math answers and built-in tasks |
//! | [`feedback`] | redraft-feedback-protocol (no burn) | feedback types and providers |
//! | [`credit`] | redraft-credit-assignment (no burn) | advantages, baselines, masks, weights |
//! | [`model`] | redraft-model | Llama/Qwen2 decoder, KV cache, safetensors |
//! | [`rollout`] | redraft-rollout-engine | sampling and multi-turn episodes |
//! | [`objectives`] | redraft-objectives | policy-gradient losses |
//! | [`trainer`] | redraft-trainer | the training loop |

pub use redraft_credit_assignment as credit;
pub use redraft_feedback_protocol as feedback;
pub use redraft_gguf as gguf;
pub use redraft_model as model;
pub use redraft_objectives as objectives;
pub use redraft_rollout_engine as rollout;
pub use redraft_tokenizer as tokenizer;
pub use redraft_trainer as trainer;
pub use redraft_verifier as verifier;
