//! Batched autoregressive sampling with the KV cache: what a caller asks for
//! ([`SamplingParams`], [`RowRequest`]) and gets ([`Completion`]), and the entry points.
//!
//! The rows of a call decode in one continuous batch ([`Batcher`]): prompts of different lengths
//! are left-padded and prefilled (identical prompts, such as the samples of a group, once, their
//! KV cache forked), each step samples one token per running row on the model's device
//! ([`DeviceSampler`]) and feeds it back, and a row that finishes leaves the batch (its slot
//! taken by a waiting row when the rows decoding at once are capped). Each row draws from its
//! own generator seeded by `(seed, row)`, so a row's sample does not depend on what else is in
//! the batch. With every sampled token the log-probability under the sampling distribution is
//! recorded: the softmax of `logits / temperature` before top-k/top-p/min-p truncation (the
//! policy whose ratio an RL objective takes, as verl computes it); greedy decoding records
//! temperature-1 log-probs.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use redraft_model::CausalLm;
use redraft_model::burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::batcher::Batcher;
use crate::device_sampler::{DeviceSampler, Drawn};
use crate::error::{Error, Result};

/// How tokens are drawn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SamplingParams {
    /// Softmax temperature; 0 means greedy.
    pub temperature: f32,
    /// Keep only the k most likely tokens (0 = off).
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches p (1 = off).
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` times the most likely one (0 = off).
    pub min_p: f32,
    /// Most tokens generated per row.
    pub max_new_tokens: usize,
    /// Tokens that end a row (included in its output).
    pub stop_tokens: Vec<u32>,
    /// Only ids below this are ever sampled (`None`: the whole vocabulary). Set it to the
    /// tokenizer's size when a checkpoint pads its vocabulary beyond the tokenizer's ids; like
    /// the other truncations it leaves the recorded log-probabilities unchanged.
    pub vocab_limit: Option<usize>,
    /// Seed of the per-row generators.
    pub seed: u64,
    /// How many of the most likely tokens (with their log-probabilities under the sampling
    /// distribution) to report with each sampled token, in [`Completion::top_logprobs`] (0 =
    /// none, and nothing is computed).
    #[serde(skip_serializing_if = "is_zero")]
    pub top_logprobs: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            max_new_tokens: 128,
            stop_tokens: Vec::new(),
            vocab_limit: None,
            seed: 0,
            top_logprobs: 0,
        }
    }
}

impl SamplingParams {
    /// Checks every parameter's range.
    pub fn validate(&self) -> Result<()> {
        let bad = |name, reason: &str| {
            Err(Error::InvalidParam {
                name,
                reason: reason.into(),
            })
        };
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return bad("temperature", "must be a finite number >= 0");
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top_p", "must be in (0, 1]");
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad("min_p", "must be in [0, 1]");
        }
        if self.vocab_limit == Some(0) {
            return bad("vocab_limit", "must be at least 1");
        }
        Ok(())
    }
}

/// Why a row stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// It produced a stop token.
    Stop,
    /// It reached `max_new_tokens` (or the model's context).
    Length,
}

/// One sampled continuation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    /// The sampled token ids (a final stop token included).
    pub tokens: Vec<u32>,
    /// The sampling log-probability of each token.
    pub logprobs: Vec<f32>,
    /// Why sampling ended.
    pub finish_reason: FinishReason,
    /// For each token, the [`SamplingParams::top_logprobs`] most likely tokens and their
    /// log-probabilities (see [`top_logprobs`]); empty when none were asked for.
    pub top_logprobs: Vec<Vec<(u32, f32)>>,
}

/// Draws one token from a row of logits on the CPU; returns the token and its log-probability
/// (the [`DeviceSampler`]'s step on a batch of one).
pub fn sample_token(
    logits: &[f32],
    params: &SamplingParams,
    rng: &mut ChaCha8Rng,
) -> Result<(u32, f32)> {
    let drawn = step_on_cpu(logits, params, rng)?;
    Ok((drawn.token, drawn.logprob))
}

/// The `n` most likely ids of a row of logits (among those that may be sampled) with their
/// log-probabilities under the sampling distribution (the softmax of `logits / temperature`
/// before truncation, as recorded for a sampled token), most likely first; equal
/// probabilities in increasing id order.
pub fn top_logprobs(logits: &[f32], params: &SamplingParams, n: usize) -> Result<Vec<(u32, f32)>> {
    let params = SamplingParams {
        temperature: params.temperature,
        vocab_limit: params.vocab_limit,
        top_logprobs: n,
        ..SamplingParams::default()
    };
    Ok(step_on_cpu(logits, &params, &mut row_rng(0, 0))?.top_logprobs)
}

fn step_on_cpu(logits: &[f32], params: &SamplingParams, rng: &mut ChaCha8Rng) -> Result<Drawn> {
    let device = Device::flex();
    let vocab = logits.len();
    let logits = Tensor::<2>::from_data(TensorData::new(logits.to_vec(), [1, vocab]), &device);
    let mut drawn =
        DeviceSampler::new(&[params], vocab, &device).step(logits, &mut |_| rng.random::<f64>())?;
    Ok(drawn.remove(0))
}

/// The generator of row `row` of a request seeded with `seed`: stream `row` of ChaCha8.
pub fn row_rng(seed: u64, row: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(row as u64);
    rng
}

/// One row of a batch: a prompt, how to sample its continuation, and its generator.
#[derive(Debug, Clone)]
pub struct RowRequest {
    /// Prompt token ids.
    pub prompt: Vec<u32>,
    /// Sampling parameters of this row (`seed` is ignored: `rng` is used).
    pub params: SamplingParams,
    /// This row's random generator.
    pub rng: ChaCha8Rng,
}

/// Samples one continuation for each prompt, all with the same parameters; row `i` uses
/// [`row_rng`]`(params.seed, i)`.
pub fn generate(
    model: &CausalLm,
    prompts: &[Vec<u32>],
    params: &SamplingParams,
    pad_id: u32,
    device: &Device,
) -> Result<Vec<Completion>> {
    let rows: Vec<RowRequest> = prompts
        .iter()
        .enumerate()
        .map(|(i, prompt)| RowRequest {
            prompt: prompt.clone(),
            params: params.clone(),
            rng: row_rng(params.seed, i),
        })
        .collect();
    generate_rows_with(model, rows, pad_id, device, &mut |_| Control::Continue)
}

/// One sampled token, as [`generate_rows_with`] reports it to its observer.
#[derive(Debug, Clone, Copy)]
pub struct Sampled<'a> {
    /// The row (index into the batch's rows).
    pub row: usize,
    /// The sampled id.
    pub token: u32,
    /// Its log-probability under the sampling distribution.
    pub logprob: f32,
    /// The row's [`SamplingParams::top_logprobs`] most likely tokens (see [`top_logprobs`]);
    /// empty when none were asked for.
    pub top_logprobs: &'a [(u32, f32)],
    /// The row's tokens so far, this one included.
    pub tokens: &'a [u32],
    /// Why the row ends with this token, when it does (a stop token, or its length limit).
    /// The observer can end it earlier by answering [`Control::Stop`].
    pub finish: Option<FinishReason>,
}

/// What the observer of [`generate_rows_with`] answers for each token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Go on sampling the row (unless [`Sampled::finish`] ends it).
    Continue,
    /// End the row now, with [`FinishReason::Stop`].
    Stop,
}

/// Samples a batch whose rows may differ in every parameter. `stop(row, tokens)` is asked
/// after each new token and ends the row when it returns true (stop strings are checked this
/// way by callers that can decode); [`generate_rows_with`] with an observer that only stops.
pub fn generate_rows(
    model: &CausalLm,
    rows: Vec<RowRequest>,
    pad_id: u32,
    device: &Device,
    stop: &dyn Fn(usize, &[u32]) -> bool,
) -> Result<Vec<Completion>> {
    generate_rows_with(model, rows, pad_id, device, &mut stopping(stop))
}

/// The observer that ends a row when `stop(row, tokens)` says so, and does nothing else.
pub(crate) fn stopping(
    stop: &dyn Fn(usize, &[u32]) -> bool,
) -> impl FnMut(&Sampled<'_>) -> Control + '_ {
    move |sampled| {
        if stop(sampled.row, sampled.tokens) {
            Control::Stop
        } else {
            Control::Continue
        }
    }
}

/// Samples a batch whose rows may differ in every parameter, telling `observer` about each
/// token as soon as it is sampled (to stream it, check stop strings, or cancel the row).
/// All rows decode at once ([`generate_rows_limited`] with no limit).
pub fn generate_rows_with(
    model: &CausalLm,
    rows: Vec<RowRequest>,
    pad_id: u32,
    device: &Device,
    observer: &mut dyn FnMut(&Sampled<'_>) -> Control,
) -> Result<Vec<Completion>> {
    let all = rows.len();
    generate_rows_limited(model, rows, pad_id, device, all, observer)
}

/// [`generate_rows_with`] with at most `max_rows` rows decoding at once: a [`Batcher`] that
/// gives a finished row's slot to the next waiting row (continuous batching).
pub fn generate_rows_limited(
    model: &CausalLm,
    rows: Vec<RowRequest>,
    pad_id: u32,
    device: &Device,
    max_rows: usize,
    observer: &mut dyn FnMut(&Sampled<'_>) -> Control,
) -> Result<Vec<Completion>> {
    let mut batcher = Batcher::new(model.clone(), pad_id, device, max_rows);
    let mut out: Vec<Option<Completion>> = vec![None; rows.len()];
    for (i, row) in rows.into_iter().enumerate() {
        batcher.push(i, row)?;
    }
    while !batcher.is_idle() {
        for (i, completion) in batcher.step(observer)? {
            out[i] = Some(completion);
        }
    }
    Ok(out.into_iter().flatten().collect())
}

thread_local! {
    /// Numbers this thread has read back from the device while sampling (see [`read_back`]).
    static VALUES_READ: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Copies a tensor to the host: the one place the decode loop reads the device, counted so
/// that tests can check what crosses per step.
pub(crate) fn read_back<const D: usize>(tensor: Tensor<D>) -> Result<Vec<f32>> {
    let values = tensor
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| Error::ReadBack(format!("{e:?}")))?;
    VALUES_READ.with(|n| n.set(n.get() + values.len()));
    Ok(values)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;
    use redraft_model::{DeviceSpec, ModelConfig};

    fn model_with_vocab(vocab: usize) -> CausalLm {
        let config = ModelConfig::from_json_str(&format!(
            r#"{{"model_type": "llama", "vocab_size": {vocab}, "hidden_size": 16,
                "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                "num_key_value_heads": 1, "max_position_embeddings": 64}}"#
        ))
        .unwrap();
        CausalLm::init(&config, 5, &DeviceSpec::Cpu.device().unwrap()).unwrap()
    }

    #[test]
    fn a_decode_step_reads_back_only_the_sampled_ids_and_logprobs() {
        let model = model_with_vocab(2048);
        let device = DeviceSpec::Cpu.device().unwrap();
        let (rows, steps) = (3, 6);
        for temperature in [0.0, 1.0] {
            let params = SamplingParams {
                temperature,
                top_k: 50,
                top_p: 0.9,
                max_new_tokens: steps,
                ..SamplingParams::default()
            };
            let before = VALUES_READ.with(std::cell::Cell::get);
            let out = generate(&model, &vec![vec![1, 2, 3]; rows], &params, 0, &device).unwrap();
            let read = VALUES_READ.with(std::cell::Cell::get) - before;
            assert!(out.iter().all(|c| c.tokens.len() == steps));
            // An id and a log-prob per row and step, never a row of logits.
            assert_eq!(read, 2 * rows * steps, "temperature {temperature}");
        }
    }

    /// Parameters with the given temperature and truncations, the rest default.
    pub(crate) fn params(temperature: f32, top_k: usize, top_p: f32, min_p: f32) -> SamplingParams {
        SamplingParams {
            temperature,
            top_k,
            top_p,
            min_p,
            ..SamplingParams::default()
        }
    }

    #[test]
    fn greedy_takes_the_argmax() {
        let mut rng = row_rng(0, 0);
        let (token, logprob) =
            sample_token(&[0.1, 2.0, -1.0, 1.9], &params(0.0, 0, 1.0, 0.0), &mut rng).unwrap();
        assert_eq!(token, 1);
        assert!(logprob < 0.0 && logprob > -1.0);
    }

    #[test]
    fn top_k_one_is_greedy() {
        let mut rng = row_rng(3, 1);
        for _ in 0..20 {
            assert_eq!(
                sample_token(&[0.0, 1.0, 3.0, 2.9], &params(1.0, 1, 1.0, 0.0), &mut rng)
                    .unwrap()
                    .0,
                2
            );
        }
    }

    #[test]
    fn top_p_keeps_the_nucleus() {
        // Probabilities ~ [0.64, 0.24, 0.09, 0.03]: top_p 0.8 keeps the first two.
        let logits = [3.0f32, 2.0, 1.0, 0.0];
        let mut rng = row_rng(1, 0);
        for _ in 0..200 {
            assert!(
                sample_token(&logits, &params(1.0, 0, 0.8, 0.0), &mut rng)
                    .unwrap()
                    .0
                    < 2
            );
        }
    }

    #[test]
    fn min_p_drops_unlikely_tokens() {
        let logits = [5.0f32, 4.9, 0.0, -1.0];
        let mut rng = row_rng(2, 0);
        for _ in 0..200 {
            assert!(
                sample_token(&logits, &params(1.0, 0, 1.0, 0.1), &mut rng)
                    .unwrap()
                    .0
                    < 2
            );
        }
    }

    #[test]
    fn sampling_frequencies_follow_the_softmax() {
        let logits = [0.0f32, (3.0f32).ln()]; // p = [0.25, 0.75]
        let mut rng = row_rng(9, 0);
        let n = 4000;
        let ones = (0..n)
            .filter(|_| {
                sample_token(&logits, &params(1.0, 0, 1.0, 0.0), &mut rng)
                    .unwrap()
                    .0
                    == 1
            })
            .count();
        let freq = ones as f64 / n as f64;
        assert!((freq - 0.75).abs() < 0.03, "{freq}");
    }

    #[test]
    fn ids_beyond_the_vocab_limit_are_never_sampled() {
        let logits = [0.0f32, 0.0, 9.0, 9.0];
        let mut rng = row_rng(4, 0);
        for temperature in [0.0, 1.0] {
            let p = SamplingParams {
                temperature,
                vocab_limit: Some(2),
                ..SamplingParams::default()
            };
            for _ in 0..100 {
                assert!(sample_token(&logits, &p, &mut rng).unwrap().0 < 2);
            }
        }
    }

    /// The log-softmax of `logits / temperature`, computed directly.
    fn log_softmax(logits: &[f32], temperature: f64) -> Vec<f64> {
        let scaled: Vec<f64> = logits.iter().map(|&l| f64::from(l) / temperature).collect();
        let max = scaled.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let log_total = scaled.iter().map(|s| (s - max).exp()).sum::<f64>().ln() + max;
        scaled.iter().map(|s| s - log_total).collect()
    }

    #[test]
    fn top_logprobs_are_the_most_likely_tokens_of_the_sampling_distribution() {
        let logits = [0.5f32, 2.0, -1.0, 3.0, 2.0, 0.0];
        for temperature in [0.7f32, 1.0, 1.5] {
            let p = params(temperature, 2, 0.5, 0.0); // truncation does not change them
            let top = top_logprobs(&logits, &p, 4).unwrap();
            let ids: Vec<u32> = top.iter().map(|t| t.0).collect();
            // Sorted by probability; the tie between ids 1 and 4 in increasing id order.
            assert_eq!(ids, [3, 1, 4, 0]);
            let direct = log_softmax(&logits, f64::from(temperature));
            for &(id, logprob) in &top {
                assert!((f64::from(logprob) - direct[id as usize]).abs() < 1e-6);
            }
            // The sampled token's recorded log-prob is the same distribution's.
            let mut rng = row_rng(5, 0);
            let (token, logprob) = sample_token(&logits, &p, &mut rng).unwrap();
            let listed = top.iter().find(|t| t.0 == token).unwrap();
            assert_eq!(listed.1, logprob);
        }
        // Greedy: temperature-1 log-probs, the sampled token first.
        let greedy = params(0.0, 0, 1.0, 0.0);
        let top = top_logprobs(&logits, &greedy, 2).unwrap();
        let (token, logprob) = sample_token(&logits, &greedy, &mut row_rng(0, 0)).unwrap();
        assert_eq!(top[0], (token, logprob));
        assert!((f64::from(top[1].1) - log_softmax(&logits, 1.0)[1]).abs() < 1e-6);
        // Never more than asked for, never ids that cannot be sampled, nothing for 0.
        let limited = SamplingParams {
            vocab_limit: Some(3),
            ..SamplingParams::default()
        };
        let ids: Vec<u32> = top_logprobs(&logits, &limited, 20)
            .unwrap()
            .iter()
            .map(|t| t.0)
            .collect();
        assert_eq!(ids, [1, 0, 2]);
        assert!(top_logprobs(&logits, &greedy, 0).unwrap().is_empty());
    }

    #[test]
    fn invalid_params_are_rejected() {
        assert!(params(-1.0, 0, 1.0, 0.0).validate().is_err());
        assert!(params(1.0, 0, 0.0, 0.0).validate().is_err());
        assert!(params(1.0, 0, 1.0, 1.5).validate().is_err());
    }

    proptest! {
        #[test]
        fn sampled_token_is_in_range_with_a_finite_logprob(
            logits in prop::collection::vec(-30.0f32..30.0, 1..50),
            temperature in 0.0f32..3.0, top_k in 0usize..10, top_p in 0.05f32..1.0, seed: u64,
        ) {
            let mut rng = row_rng(seed, 0);
            let (token, logprob) = sample_token(&logits, &params(temperature, top_k, top_p, 0.0), &mut rng).unwrap();
            prop_assert!((token as usize) < logits.len());
            prop_assert!(logprob.is_finite() && logprob <= 0.0);
        }

        #[test]
        fn top_logprobs_are_sorted_and_led_by_the_greedy_token(
            logits in prop::collection::vec(-30.0f32..30.0, 1..50), n in 0usize..60,
        ) {
            let greedy = params(0.0, 0, 1.0, 0.0);
            let top = top_logprobs(&logits, &greedy, n).unwrap();
            prop_assert_eq!(top.len(), n.min(logits.len()));
            prop_assert!(top.windows(2).all(|w| w[0].1 >= w[1].1 && (w[0].1 > w[1].1 || w[0].0 < w[1].0)));
            if n > 0 {
                prop_assert_eq!(top[0], sample_token(&logits, &greedy, &mut row_rng(0, 0)).unwrap());
            }
        }
    }
}
