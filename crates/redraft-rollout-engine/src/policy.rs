//! The sampler seam between strategies and the model: a [`Policy`] samples continuations of
//! token prompts. [`LocalPolicy`] is the in-process model ([`generate_rows`], the one decode
//! loop); [`MeteredPolicy`] counts every completion token a policy returns, which is what a
//! rollout's [`RolloutStats::sampled_tokens`](crate::RolloutStats) reports.

use std::sync::atomic::{AtomicU64, Ordering};

use redraft_model::CausalLm;
use redraft_model::burn::tensor::Device;
use redraft_tokenizer::Tokenizer;

use crate::error::Result;
use crate::sampling::{Completion, RowRequest, generate_rows_limited, stopping};

/// Anything that samples continuations of token prompts: the in-process burn model first; a
/// remote inference server later.
pub trait Policy: Send + Sync {
    /// One completion per row (each row: prompt ids, sampling params, its own generator);
    /// `stop(row, tokens)` may end a row early (stop strings).
    fn generate(
        &self,
        rows: Vec<RowRequest>,
        stop: &dyn Fn(usize, &[u32]) -> bool,
    ) -> Result<Vec<Completion>>;

    /// The longest sequence (prompt + completion) the policy accepts.
    fn max_context(&self) -> usize;

    /// The completion tokens counted by a [`MeteredPolicy`] at the top of this policy, if any
    /// (`None` for an unmetered policy).
    fn metered_tokens(&self) -> Option<u64> {
        None
    }
}

impl<P: Policy + ?Sized> Policy for &P {
    fn generate(
        &self,
        rows: Vec<RowRequest>,
        stop: &dyn Fn(usize, &[u32]) -> bool,
    ) -> Result<Vec<Completion>> {
        (**self).generate(rows, stop)
    }

    fn max_context(&self) -> usize {
        (**self).max_context()
    }

    fn metered_tokens(&self) -> Option<u64> {
        (**self).metered_tokens()
    }
}

impl<P: Policy + ?Sized> Policy for std::sync::Arc<P> {
    fn generate(
        &self,
        rows: Vec<RowRequest>,
        stop: &dyn Fn(usize, &[u32]) -> bool,
    ) -> Result<Vec<Completion>> {
        (**self).generate(rows, stop)
    }

    fn max_context(&self) -> usize {
        (**self).max_context()
    }

    fn metered_tokens(&self) -> Option<u64> {
        (**self).metered_tokens()
    }
}

/// The in-process model on its device, decoding with the KV cache ([`generate_rows`]).
#[derive(Debug, Clone)]
pub struct LocalPolicy {
    model: CausalLm,
    device: Device,
    pad_id: u32,
    /// Most rows decoding at once (`None`: all rows of a call).
    max_rows: Option<usize>,
}

impl LocalPolicy {
    /// `model` on `device`; prompts of a batch are left-padded with `pad_id`.
    pub fn new(model: CausalLm, device: Device, pad_id: u32) -> Self {
        Self {
            model,
            device,
            pad_id,
            max_rows: None,
        }
    }

    /// Decodes at most `max_rows` rows at once (0: all rows of a call), the others waiting for
    /// a finished row's slot ([`generate_rows_limited`], continuous batching): bounds the KV
    /// cache and the logits of a large call.
    pub fn with_max_rows(mut self, max_rows: usize) -> Self {
        self.max_rows = (max_rows > 0).then_some(max_rows);
        self
    }

    /// `model` on `device`, padding with `tokenizer`'s padding id
    /// ([`SpecialTokens::padding_id`](redraft_tokenizer::SpecialTokens::padding_id)).
    pub fn for_tokenizer(model: CausalLm, device: Device, tokenizer: &dyn Tokenizer) -> Self {
        Self::new(model, device, tokenizer.special_tokens().padding_id())
    }

    /// The model.
    pub fn model(&self) -> &CausalLm {
        &self.model
    }
}

impl Policy for LocalPolicy {
    fn generate(
        &self,
        rows: Vec<RowRequest>,
        stop: &dyn Fn(usize, &[u32]) -> bool,
    ) -> Result<Vec<Completion>> {
        let max_rows = self.max_rows.unwrap_or(rows.len());
        generate_rows_limited(
            &self.model,
            rows,
            self.pad_id,
            &self.device,
            max_rows,
            &mut stopping(stop),
        )
    }

    fn max_context(&self) -> usize {
        self.model.config().max_position_embeddings
    }
}

/// A token meter: a [`Policy`] that counts every completion token the inner policy returns
/// (atomically, so one meter can serve the strategy and a [`PolicyChat`](crate::PolicyChat)
/// sampling reflections at once).
#[derive(Debug, Default)]
pub struct MeteredPolicy<P> {
    inner: P,
    tokens: AtomicU64,
}

impl<P: Policy> MeteredPolicy<P> {
    /// A meter at 0 over `inner`.
    pub fn new(inner: P) -> Self {
        Self {
            inner,
            tokens: AtomicU64::new(0),
        }
    }

    /// Completion tokens returned so far.
    pub fn sampled_tokens(&self) -> u64 {
        self.tokens.load(Ordering::Relaxed)
    }

    /// Sets the count back to 0; returns what it was.
    pub fn reset(&self) -> u64 {
        self.tokens.swap(0, Ordering::Relaxed)
    }

    /// The metered policy.
    pub fn inner(&self) -> &P {
        &self.inner
    }
}

impl<P: Policy> Policy for MeteredPolicy<P> {
    fn generate(
        &self,
        rows: Vec<RowRequest>,
        stop: &dyn Fn(usize, &[u32]) -> bool,
    ) -> Result<Vec<Completion>> {
        let out = self.inner.generate(rows, stop)?;
        let n: usize = out.iter().map(|c| c.tokens.len()).sum();
        self.tokens.fetch_add(n as u64, Ordering::Relaxed);
        Ok(out)
    }

    fn max_context(&self) -> usize {
        self.inner.max_context()
    }

    fn metered_tokens(&self) -> Option<u64> {
        Some(self.sampled_tokens())
    }
}
