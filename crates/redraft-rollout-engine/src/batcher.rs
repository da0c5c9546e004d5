//! Continuous batching: one decode batch that rows join and leave between steps.
//!
//! Rows wait in a queue until the batch has room (at most `max_rows` rows decode at once).
//! Each [`Batcher::step`] first admits waiting rows: their prompts are prefilled together
//! (identical prompts once, the cache forked into their samples) and each new row takes the
//! slot of a row that has finished, written into the batch's KV cache in place
//! ([`KvCache::place_row`]), or is appended while the batch is below `max_rows`. Then every
//! running row samples one token on the device ([`DeviceSampler`]), finished rows leave (their
//! slots free for the next admission), and the rows still running are fed their token. When no
//! row waits and a quarter of the slots are free, the batch is compacted to its running rows,
//! so finished rows are not decoded as padding until the longest one ends.
//!
//! A row's tokens do not depend on the rest of the batch: it draws from its own generator, and
//! its left padding only shifts slots that attention masks out.

use std::collections::VecDeque;

use rand::Rng;
use redraft_model::burn::tensor::{Device, Int, Tensor, TensorData};
use redraft_model::{CausalLm, KvCache, LogitsFor, left_padded};

use crate::device_sampler::{DeviceSampler, Drawn};
use crate::error::Result;
use crate::sampling::{Completion, Control, FinishReason, RowRequest, Sampled, SamplingParams};

/// A row decoding in the batch.
struct Running {
    /// The caller's name for the row.
    id: usize,
    row: RowRequest,
    completion: Completion,
    /// Most tokens it may sample (its budget, within the model's context).
    limit: usize,
}

/// A decode batch with a queue of rows waiting to join it.
pub struct Batcher {
    model: CausalLm,
    device: Device,
    pad_id: u32,
    max_rows: usize,
    waiting: VecDeque<(usize, RowRequest)>,
    /// One entry per row of the cache: the row decoding there, or `None` when free.
    slots: Vec<Option<Running>>,
    cache: Option<KvCache>,
    /// Each slot's next-token logits `[slots, vocab]`.
    logits: Option<Tensor<2>>,
    /// The sampler of the current slots (rebuilt when they change).
    sampler: Option<DeviceSampler>,
    /// Rows that finished without sampling (no room for a token), reported at the next step.
    empty: Vec<(usize, Completion)>,
    decode_steps: usize,
}

/// The parameters of a free slot: greedy, so it draws nothing.
fn idle_params() -> SamplingParams {
    SamplingParams {
        temperature: 0.0,
        ..SamplingParams::default()
    }
}

impl Batcher {
    /// An empty batch of `model` on `device`, decoding at most `max_rows` rows at once (at
    /// least one); prompts are left-padded with `pad_id`. The batch keeps a handle on the
    /// model's weights (a clone shares them).
    pub fn new(model: CausalLm, pad_id: u32, device: &Device, max_rows: usize) -> Self {
        Self {
            model,
            device: device.clone(),
            pad_id,
            max_rows: max_rows.max(1),
            waiting: VecDeque::new(),
            slots: Vec::new(),
            cache: None,
            logits: None,
            sampler: None,
            empty: Vec::new(),
            decode_steps: 0,
        }
    }

    /// Queues a row under the caller's `id` (reported back with its tokens); it joins the
    /// batch at the next step with room. Its parameters are checked now.
    pub fn push(&mut self, id: usize, row: RowRequest) -> Result<()> {
        row.params.validate()?;
        self.waiting.push_back((id, row));
        Ok(())
    }

    /// Whether no row waits or runs.
    pub fn is_idle(&self) -> bool {
        self.waiting.is_empty() && self.running() == 0 && self.empty.is_empty()
    }

    /// Rows decoding now.
    pub fn running(&self) -> usize {
        self.slots.iter().flatten().count()
    }

    /// Rows waiting to join.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Rows of the KV cache, free slots included.
    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    /// Decode forwards run so far (prefills not counted).
    pub fn decode_steps(&self) -> usize {
        self.decode_steps
    }

    /// Ends the row named `id` now (waiting or running): it is reported finished, with
    /// [`FinishReason::Stop`] and what it sampled so far, by the next step.
    pub fn cancel(&mut self, id: usize) {
        if let Some(at) = self.waiting.iter().position(|(i, _)| *i == id) {
            self.waiting.remove(at);
            self.empty.push((id, empty_completion(FinishReason::Stop)));
        }
        for slot in &mut self.slots {
            if slot.as_ref().is_some_and(|r| r.id == id)
                && let Some(mut running) = slot.take()
            {
                running.completion.finish_reason = FinishReason::Stop;
                self.empty.push((id, running.completion));
                self.sampler = None;
            }
        }
    }

    /// Admits waiting rows, samples one token for every running row (telling `observer` about
    /// each, which may end the row), and feeds the rows still running their token. Returns
    /// the rows that finished, with their completions.
    pub fn step(
        &mut self,
        observer: &mut dyn FnMut(&Sampled<'_>) -> Control,
    ) -> Result<Vec<(usize, Completion)>> {
        self.admit()?;
        let mut finished = std::mem::take(&mut self.empty);
        let Some(logits) = self.logits.take() else {
            return Ok(finished);
        };
        let sampler = match self.sampler.take() {
            Some(sampler) => sampler,
            None => {
                let idle = idle_params();
                let params: Vec<&SamplingParams> = self
                    .slots
                    .iter()
                    .map(|s| s.as_ref().map_or(&idle, |r| &r.row.params))
                    .collect();
                DeviceSampler::new(&params, self.model.config().vocab_size, &self.device)
            }
        };
        let slots = &mut self.slots;
        let drawn = sampler.step(logits, &mut |i| {
            slots[i].as_mut().map_or(0.5, |r| r.row.rng.random::<f64>())
        })?;
        self.sampler = Some(sampler);
        let mut next = Vec::with_capacity(self.slots.len());
        for (slot, drawn) in self.slots.iter_mut().zip(drawn) {
            let Some(running) = slot.as_mut() else {
                next.push(i64::from(self.pad_id));
                continue;
            };
            let Drawn {
                token,
                logprob,
                top_logprobs,
            } = drawn;
            let params = &running.row.params;
            let completion = &mut running.completion;
            completion.tokens.push(token);
            completion.logprobs.push(logprob);
            let finish = if params.stop_tokens.contains(&token) {
                Some(FinishReason::Stop)
            } else if completion.tokens.len() >= running.limit {
                Some(FinishReason::Length)
            } else {
                None
            };
            let control = observer(&Sampled {
                row: running.id,
                token,
                logprob,
                top_logprobs: &top_logprobs,
                tokens: &completion.tokens,
                finish,
            });
            if params.top_logprobs > 0 {
                completion.top_logprobs.push(top_logprobs);
            }
            let end = match (control, finish) {
                (Control::Stop, _) => Some(FinishReason::Stop),
                (Control::Continue, reason) => reason,
            };
            next.push(i64::from(token));
            if let Some(reason) = end {
                let mut running = slot.take().expect("a running slot");
                running.completion.finish_reason = reason;
                finished.push((running.id, running.completion));
                self.sampler = None;
            }
        }
        self.decode(next)?;
        Ok(finished)
    }

    /// Feeds every running row its last token (`next`, one per slot): the next logits.
    fn decode(&mut self, mut next: Vec<i64>) -> Result<()> {
        let running = self.running();
        if running == 0 {
            // Nothing left to decode: the next admission starts a new batch.
            self.slots.clear();
            self.cache = None;
            self.sampler = None;
            return Ok(());
        }
        let free = self.slots.len() - running;
        if self.waiting.is_empty() && free > 0 && free * 4 >= self.slots.len() {
            let keep: Vec<usize> = (0..self.slots.len())
                .filter(|&i| self.slots[i].is_some())
                .collect();
            if let Some(cache) = &self.cache {
                self.cache = Some(cache.compact(&keep));
            }
            next = keep.iter().map(|&i| next[i]).collect();
            self.slots = std::mem::take(&mut self.slots)
                .into_iter()
                .flatten()
                .map(Some)
                .collect();
            self.sampler = None;
        }
        let n = self.slots.len();
        let cache = self.cache.as_mut().expect("a running batch has a cache");
        let input = Tensor::<2, Int>::from_data(TensorData::new(next, [n, 1]), &self.device);
        let logits = self.model.forward_cached(input, cache, LogitsFor::Last)?;
        self.logits = Some(logits.reshape([n, self.model.config().vocab_size]));
        self.decode_steps += 1;
        Ok(())
    }

    /// Moves waiting rows into free slots (and new ones, up to `max_rows`), prefilling them.
    fn admit(&mut self) -> Result<()> {
        let free: Vec<usize> = (0..self.slots.len())
            .filter(|&i| self.slots[i].is_none())
            .collect();
        let room = free.len() + self.max_rows.saturating_sub(self.slots.len());
        let context = self.model.config().max_position_embeddings;
        let mut new: Vec<Running> = Vec::new();
        while new.len() < room {
            let Some((id, row)) = self.waiting.pop_front() else {
                break;
            };
            let limit = row
                .params
                .max_new_tokens
                .min(context.saturating_sub(row.prompt.len()));
            if limit == 0 {
                self.empty
                    .push((id, empty_completion(FinishReason::Length)));
                continue;
            }
            let completion = empty_completion(FinishReason::Length);
            new.push(Running {
                id,
                row,
                completion,
                limit,
            });
        }
        if new.is_empty() {
            return Ok(());
        }
        // Identical prompts (the samples of a group) are prefilled once; their cache is forked.
        let mut unique: Vec<Vec<u32>> = Vec::new();
        let mut source: Vec<usize> = Vec::with_capacity(new.len());
        for running in &new {
            match unique.iter().position(|p| *p == running.row.prompt) {
                Some(u) => source.push(u),
                None => {
                    source.push(unique.len());
                    unique.push(running.row.prompt.clone());
                }
            }
        }
        let vocab = self.model.config().vocab_size;
        let batch = left_padded(self.model.config(), &unique, self.pad_id, &self.device)?;
        let longest = batch.tokens.dims()[1];
        // Sized to the new rows' budget, so their decode does not grow the cache.
        let budget = longest + new.iter().map(|r| r.limit).max().unwrap_or(0);
        let mut cache = self
            .model
            .new_cache_with_capacity(batch.left_pad.clone(), budget);
        let logits = self
            .model
            .forward_cached(batch.tokens, &mut cache, LogitsFor::Last)?
            .reshape([unique.len(), vocab]);
        let index = |rows: &[usize]| {
            let ids: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
            Tensor::<1, Int>::from_data(TensorData::new(ids, [rows.len()]), &self.device)
        };
        let (cache, logits) = if unique.len() < new.len() {
            (cache.select_rows(&source), logits.select(0, index(&source)))
        } else {
            (cache, logits)
        };
        self.sampler = None;
        let (Some(mut batch_cache), Some(mut batch_logits)) =
            (self.cache.take(), self.logits.take())
        else {
            self.cache = Some(cache);
            self.logits = Some(logits);
            self.slots = new.into_iter().map(Some).collect();
            return Ok(());
        };
        if batch_cache.len() < longest {
            batch_cache.pad_left(longest - batch_cache.len());
        }
        let placed = free.len().min(new.len());
        for (j, &slot) in free.iter().take(placed).enumerate() {
            batch_cache.place_row(slot, &cache, j)?;
            batch_logits = batch_logits.slice_assign(
                [slot..slot + 1, 0..vocab],
                logits.clone().slice([j..j + 1, 0..vocab]),
            );
        }
        let appended: Vec<usize> = (placed..new.len()).collect();
        if !appended.is_empty() {
            let mut tail = cache.select_rows(&appended);
            tail.pad_left(batch_cache.len() - tail.len());
            batch_cache.append_rows(&tail)?;
            batch_logits = Tensor::cat(vec![batch_logits, logits.select(0, index(&appended))], 0);
        }
        let mut new = new.into_iter();
        for &slot in free.iter().take(placed) {
            self.slots[slot] = new.next();
        }
        self.slots.extend(new.map(Some));
        self.cache = Some(batch_cache);
        self.logits = Some(batch_logits);
        Ok(())
    }
}

fn empty_completion(finish_reason: FinishReason) -> Completion {
    Completion {
        tokens: Vec::new(),
        logprobs: Vec::new(),
        finish_reason,
        top_logprobs: Vec::new(),
    }
}
