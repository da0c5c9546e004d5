//! Batched autoregressive sampling with the KV cache.
//!
//! Prompts of different lengths are left-padded and prefilled once (identical prompts, such as
//! the samples of a group, share one prefill whose KV cache is then forked); each step feeds
//! every row its last token. Each row draws from its own generator seeded by
//! `(seed, row)`, so a row's sample does not depend on what else is in the batch. With every
//! sampled token the log-probability under the sampling distribution is recorded: the softmax
//! of `logits / temperature` before top-k/top-p/min-p truncation (the policy whose ratio an RL
//! objective takes, as verl computes it); greedy decoding records temperature-1 log-probs.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use redraft_model::burn::tensor::{Device, Int, Tensor, TensorData};
use redraft_model::{CausalLm, LogitsFor, left_padded};
use serde::{Deserialize, Serialize};

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
}

/// Draws one token from a row of logits; returns the token and its log-probability.
pub fn sample_token(logits: &[f32], params: &SamplingParams, rng: &mut ChaCha8Rng) -> (u32, f32) {
    let temperature = if params.temperature > 0.0 {
        params.temperature
    } else {
        1.0
    };
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let weights: Vec<f64> = logits
        .iter()
        .map(|&l| f64::from((l - max) / temperature).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    let logprob = |i: usize| (weights[i] / total).ln() as f32;
    let limit = params
        .vocab_limit
        .map_or(logits.len(), |l| l.min(logits.len()));
    if params.temperature == 0.0 {
        let best = (0..limit).fold(0, |best, i| if logits[i] > logits[best] { i } else { best });
        return (best as u32, logprob(best));
    }
    // Candidates in decreasing probability, truncated by top-k, min-p and top-p.
    let truncating = params.top_k > 0 || params.top_p < 1.0 || params.min_p > 0.0;
    let mut keep: Vec<usize> = (0..limit).collect();
    if truncating {
        keep.sort_by(|&a, &b| weights[b].total_cmp(&weights[a]).then(a.cmp(&b)));
        if params.top_k > 0 {
            keep.truncate(params.top_k);
        }
        if params.min_p > 0.0 {
            let floor = f64::from(params.min_p) * weights[keep[0]];
            keep.retain(|&i| weights[i] >= floor);
        }
        if params.top_p < 1.0 {
            let (mut mass, target) = (0.0, f64::from(params.top_p) * total);
            let cut = keep.iter().position(|&i| {
                mass += weights[i];
                mass >= target
            });
            keep.truncate(cut.map_or(keep.len(), |c| c + 1));
        }
    }
    let kept: f64 = keep.iter().map(|&i| weights[i]).sum();
    let mut u = rng.random::<f64>() * kept;
    for &i in &keep {
        u -= weights[i];
        if u < 0.0 {
            return (i as u32, logprob(i));
        }
    }
    let last = *keep.last().unwrap_or(&0);
    (last as u32, logprob(last))
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
    generate_rows(model, rows, pad_id, device, &|_, _| false)
}

/// Samples a batch whose rows may differ in every parameter. `stop(row, tokens)` is asked
/// after each new token and ends the row when it returns true (stop strings are checked this
/// way by callers that can decode).
pub fn generate_rows(
    model: &CausalLm,
    mut rows: Vec<RowRequest>,
    pad_id: u32,
    device: &Device,
    stop: &dyn Fn(usize, &[u32]) -> bool,
) -> Result<Vec<Completion>> {
    for row in &rows {
        row.params.validate()?;
    }
    // Identical prompts (the samples of a group) are prefilled once; their cache is forked.
    let mut unique: Vec<Vec<u32>> = Vec::new();
    let mut source: Vec<usize> = Vec::with_capacity(rows.len());
    for row in &rows {
        match unique.iter().position(|p| *p == row.prompt) {
            Some(u) => source.push(u),
            None => {
                source.push(unique.len());
                unique.push(row.prompt.clone());
            }
        }
    }
    let batch = left_padded(model.config(), &unique, pad_id, device)?;
    let n = rows.len();
    let vocab = model.config().vocab_size;
    let room =
        model.config().max_position_embeddings - batch.lengths.iter().max().copied().unwrap_or(0);
    let limits: Vec<usize> = rows
        .iter()
        .map(|r| r.params.max_new_tokens.min(room))
        .collect();
    let mut out: Vec<Completion> = (0..n)
        .map(|_| Completion {
            tokens: Vec::new(),
            logprobs: Vec::new(),
            finish_reason: FinishReason::Length,
        })
        .collect();
    let mut done: Vec<bool> = limits.iter().map(|&l| l == 0).collect();
    let mut cache = model.new_cache(batch.left_pad.clone());
    let mut logits = model.forward_cached(batch.tokens, &mut cache, LogitsFor::Last)?; // [unique, 1, vocab]
    if unique.len() < n {
        let index: Vec<i64> = source.iter().map(|&u| u as i64).collect();
        let index = Tensor::<1, Int>::from_data(TensorData::new(index, [n]), device);
        cache = cache.select_rows(&source);
        logits = logits.select(0, index); // [rows, 1, vocab]
    }
    while !done.iter().all(|d| *d) {
        let host = logits
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap_or_default();
        let mut next = Vec::with_capacity(n);
        for (i, row) in rows.iter_mut().enumerate() {
            if done[i] {
                next.push(i64::from(pad_id));
                continue;
            }
            let (token, logprob) =
                sample_token(&host[i * vocab..(i + 1) * vocab], &row.params, &mut row.rng);
            out[i].tokens.push(token);
            out[i].logprobs.push(logprob);
            if row.params.stop_tokens.contains(&token) || stop(i, &out[i].tokens) {
                done[i] = true;
                out[i].finish_reason = FinishReason::Stop;
            } else if out[i].tokens.len() >= limits[i] {
                done[i] = true;
            }
            next.push(i64::from(token));
        }
        if done.iter().all(|d| *d) {
            break;
        }
        let input = Tensor::<2, Int>::from_data(TensorData::new(next, [n, 1]), device);
        logits = model.forward_cached(input, &mut cache, LogitsFor::Last)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn params(temperature: f32, top_k: usize, top_p: f32, min_p: f32) -> SamplingParams {
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
            sample_token(&[0.1, 2.0, -1.0, 1.9], &params(0.0, 0, 1.0, 0.0), &mut rng);
        assert_eq!(token, 1);
        assert!(logprob < 0.0 && logprob > -1.0);
    }

    #[test]
    fn top_k_one_is_greedy() {
        let mut rng = row_rng(3, 1);
        for _ in 0..20 {
            assert_eq!(
                sample_token(&[0.0, 1.0, 3.0, 2.9], &params(1.0, 1, 1.0, 0.0), &mut rng).0,
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
            assert!(sample_token(&logits, &params(1.0, 0, 0.8, 0.0), &mut rng).0 < 2);
        }
    }

    #[test]
    fn min_p_drops_unlikely_tokens() {
        let logits = [5.0f32, 4.9, 0.0, -1.0];
        let mut rng = row_rng(2, 0);
        for _ in 0..200 {
            assert!(sample_token(&logits, &params(1.0, 0, 1.0, 0.1), &mut rng).0 < 2);
        }
    }

    #[test]
    fn sampling_frequencies_follow_the_softmax() {
        let logits = [0.0f32, (3.0f32).ln()]; // p = [0.25, 0.75]
        let mut rng = row_rng(9, 0);
        let n = 4000;
        let ones = (0..n)
            .filter(|_| sample_token(&logits, &params(1.0, 0, 1.0, 0.0), &mut rng).0 == 1)
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
                assert!(sample_token(&logits, &p, &mut rng).0 < 2);
            }
        }
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
            let (token, logprob) = sample_token(&logits, &params(temperature, top_k, top_p, 0.0), &mut rng);
            prop_assert!((token as usize) < logits.len());
            prop_assert!(logprob.is_finite() && logprob <= 0.0);
        }
    }
}
