//! The sampling step on the model's device.
//!
//! A decode step turns the batch's last logits `[rows, vocab]` into one token and its
//! log-probability per row with tensor ops on the device that holds the logits; only those
//! `2 × rows` numbers (and each row's top log-probabilities, when asked for) are read back.
//! Rows may differ in every parameter. Every operation is row-wise, so a row's token depends
//! only on its logits, its parameters and its uniform draw, never on the rest of the batch.
//!
//! - **The sampling distribution**: weights `exp((l - max) / T)` (temperature 1 when greedy).
//!   The log-probability recorded for a token is its log-weight minus the log of the whole
//!   vocabulary's weight: the distribution before truncation, which an RL objective's ratio
//!   takes (as verl records it).
//! - **Truncation** keeps, among the ids a row may sample (below its `vocab_limit`), those
//!   whose log-weight reaches the row's threshold, the largest of: the best log-weight plus
//!   `ln(min_p)`; the largest `t` with at least `top_k` ids at or above it; the largest `t`
//!   whose ids at or above it hold `top_p` of the whole vocabulary's weight. The last two are
//!   found by bisection ([`THRESHOLD_STEPS`] halvings of the row's log-weight range), not by a
//!   sort: burn 0.22 has no GPU sort and would read the logits back to sort them. Ids tied at
//!   a threshold are all kept.
//! - **The draw** is by inversion in id order: the first id whose cumulative kept weight
//!   exceeds `u` times the row's kept total, `u` the row's uniform draw from its own generator
//!   ([`crate::row_rng`], one draw per sampled token: a stream keyed by the row's seed and its
//!   position). Greedy rows take the first largest logit and draw nothing.

use redraft_model::burn::tensor::{Bool, Device, Int, Tensor, TensorData};

use crate::error::Result;
use crate::sampling::SamplingParams;

/// Halvings of a row's log-weight range that locate its top-k and top-p thresholds: the range
/// shrinks by 2^-32, far below an f32 log-weight's own resolution for any usual range.
pub const THRESHOLD_STEPS: usize = 32;

/// One row's result of a sampling step.
#[derive(Debug, Clone, PartialEq)]
pub struct Drawn {
    /// The sampled id.
    pub token: u32,
    /// Its log-probability under the sampling distribution.
    pub logprob: f32,
    /// The row's most likely ids with their log-probabilities, most likely first, equal
    /// probabilities in increasing id order; as many as its `top_logprobs` asks (at most the
    /// ids it may sample).
    pub top_logprobs: Vec<(u32, f32)>,
}

/// The per-row parameters of a batch, as tensors on its device.
#[derive(Debug, Clone)]
pub struct DeviceSampler {
    device: Device,
    rows: usize,
    vocab: usize,
    /// Each row's temperature (1 for greedy rows), `[rows, 1]`; `None` when all are 1.
    temperature: Option<Tensor<2>>,
    /// Which rows decode greedily (and draw no uniform).
    greedy_rows: Vec<bool>,
    /// The same on the device, when some rows do and some do not.
    greedy: Option<Tensor<2, Bool>>,
    /// The ids each row may not sample (at or beyond its `vocab_limit`), when some row has
    /// such ids; `[rows, vocab]`.
    outside: Option<Tensor<2, Bool>>,
    /// `ln(min_p)` per row (minus infinity when off), when some row sets `min_p`.
    log_min_p: Option<Tensor<2>>,
    /// `top_k` per row and the rows without one, when some row sets it.
    top_k: Option<(Tensor<2>, Tensor<2, Bool>)>,
    /// `top_p` per row and the rows without one, when some row sets it.
    top_p: Option<(Tensor<2>, Tensor<2, Bool>)>,
    /// Each row's `top_logprobs` (at most its sampled ids).
    top_logprobs: Vec<usize>,
}

impl DeviceSampler {
    /// The sampler of a batch whose row `i` samples with `params[i]` from `vocab` logits.
    pub fn new(params: &[&SamplingParams], vocab: usize, device: &Device) -> Self {
        let rows = params.len();
        let column =
            |values: Vec<f32>| Tensor::<2>::from_data(TensorData::new(values, [rows, 1]), device);
        let flags = |values: Vec<bool>| {
            Tensor::<2, Bool>::from_data(TensorData::new(values, [rows, 1]), device)
        };
        let limit = |p: &SamplingParams| p.vocab_limit.map_or(vocab, |l| l.min(vocab));
        let greedy: Vec<bool> = params.iter().map(|p| p.temperature == 0.0).collect();
        let all_greedy = greedy.iter().all(|g| *g);
        let temperatures: Vec<f32> = params
            .iter()
            .map(|p| {
                if p.temperature > 0.0 {
                    p.temperature
                } else {
                    1.0
                }
            })
            .collect();
        let temperature = temperatures
            .iter()
            .any(|&t| t != 1.0)
            .then(|| column(temperatures));
        let outside = params.iter().any(|p| limit(p) < vocab).then(|| {
            let limits: Vec<i64> = params.iter().map(|p| limit(p) as i64).collect();
            let limits = Tensor::<2, Int>::from_data(TensorData::new(limits, [rows, 1]), device);
            ids(rows, vocab, device).greater_equal(limits.expand([rows, vocab]))
        });
        // Truncation only matters to rows that draw.
        let drawing = || params.iter().filter(|p| p.temperature > 0.0);
        let log_min_p = drawing().any(|p| p.min_p > 0.0).then(|| {
            column(
                params
                    .iter()
                    .map(|p| {
                        if p.min_p > 0.0 {
                            p.min_p.ln()
                        } else {
                            f32::NEG_INFINITY
                        }
                    })
                    .collect(),
            )
        });
        let top_k = drawing().any(|p| p.top_k > 0).then(|| {
            (
                column(params.iter().map(|p| p.top_k as f32).collect()),
                flags(params.iter().map(|p| p.top_k == 0).collect()),
            )
        });
        let top_p = drawing().any(|p| p.top_p < 1.0).then(|| {
            (
                column(params.iter().map(|p| p.top_p).collect()),
                flags(params.iter().map(|p| p.top_p >= 1.0).collect()),
            )
        });
        Self {
            device: device.clone(),
            rows,
            vocab,
            temperature,
            greedy: (!all_greedy && greedy.iter().any(|g| *g)).then(|| flags(greedy.clone())),
            greedy_rows: greedy,
            outside,
            log_min_p,
            top_k,
            top_p,
            top_logprobs: params
                .iter()
                .map(|p| p.top_logprobs.min(limit(p)))
                .collect(),
        }
    }

    /// Draws one token per row from `logits` (`[rows, vocab]`, on the sampler's device);
    /// `uniform(i)` is row `i`'s next uniform draw in [0, 1) (from its own generator), asked
    /// once per step of each row that is not greedy.
    pub fn step(
        &self,
        logits: Tensor<2>,
        uniform: &mut dyn FnMut(usize) -> f64,
    ) -> Result<Vec<Drawn>> {
        let [rows, vocab] = [self.rows, self.vocab];
        debug_assert_eq!(logits.dims(), [rows, vocab]);
        let full = [rows, vocab];
        let shifted = logits.clone() - logits.max_dim(1);
        let x = match &self.temperature {
            Some(temperature) => shifted / temperature.clone(),
            None => shifted,
        }; // log-weights
        let weights = x.clone().exp();
        let all_greedy = self.greedy_rows.iter().all(|g| *g);
        let plain = self.outside.is_none() && !self.truncating() && !all_greedy;
        // Rows sampling from the whole vocabulary: one cumulative sum gives the draw and the
        // total weight (the log-probs' normaliser).
        let (cdf, log_total) = if plain {
            let cdf = weights.clone().cumsum(1);
            let total = cdf.clone().slice([0..rows, vocab - 1..vocab]);
            (Some(cdf), total.log())
        } else {
            (None, weights.clone().sum_dim(1).log())
        };
        // What the rows may sample: ids outside their limit get log-weight -inf and weight 0;
        // the weights are then taken relative to the best id left (so that they do not all
        // underflow when the limit drops the best ones), and `log_scale` is the log of the
        // whole vocabulary's weight on that scale.
        let (xs, ws, log_scale) = match &self.outside {
            Some(outside) => {
                let xs = x.clone().mask_fill(outside.clone(), f32::NEG_INFINITY);
                let best = xs.clone().max_dim(1);
                let ws = (xs.clone() - best.clone()).exp();
                (xs, ws, log_total.clone() - best)
            }
            None => (x.clone(), weights, log_total.clone()),
        };
        let drawn = (!all_greedy).then(|| {
            let cdf = cdf.unwrap_or_else(|| {
                let kept = match self.threshold(&x, &xs, &ws, &log_scale) {
                    Some(t) => ws.mask_fill(xs.clone().lower(t.expand(full)), 0.0),
                    None => ws,
                };
                kept.cumsum(1)
            });
            let total = cdf.clone().slice([0..rows, vocab - 1..vocab]);
            // u below 1 - 2^-24 keeps u × total below total in f32, so some id's cumulative
            // weight exceeds it, and the first that does has weight.
            let u: Vec<f32> = (0..rows)
                .map(|i| {
                    if self.greedy_rows[i] {
                        0.5
                    } else {
                        (uniform(i) as f32).clamp(0.0, 1.0 - f32::EPSILON / 2.0)
                    }
                })
                .collect();
            let u = Tensor::<2>::from_data(TensorData::new(u, [rows, 1]), &self.device);
            // The first id whose cumulative weight exceeds u × total.
            cdf.lower_equal((total * u).expand(full)).int().sum_dim(1)
        });
        let token = match (drawn, &self.greedy) {
            (None, _) => xs.clone().argmax(1),
            (Some(drawn), None) => drawn,
            (Some(drawn), Some(greedy)) => drawn.mask_where(greedy.clone(), xs.clone().argmax(1)),
        };
        let logprob = x.gather(1, token.clone()) - log_total.clone();
        // One read: per row its token, log-prob, and top log-probs (ids, then values).
        let top = self.top_logprobs.iter().copied().max().unwrap_or(0);
        let mut columns = vec![token.float(), logprob];
        if top > 0 {
            let mut lp = xs - log_total;
            let ids = ids(rows, vocab, &self.device);
            let (mut top_ids, mut top_values) = (Vec::new(), Vec::new());
            for _ in 0..top.min(vocab) {
                let best = lp.clone().argmax(1);
                top_values.push(lp.clone().gather(1, best.clone()));
                lp = lp.mask_fill(
                    ids.clone().equal(best.clone().expand(full)),
                    f32::NEG_INFINITY,
                );
                top_ids.push(best.float());
            }
            columns.extend(top_ids);
            columns.extend(top_values);
        }
        let width = columns.len();
        let host = crate::sampling::read_back(Tensor::cat(columns, 1))?;
        Ok(host
            .chunks(width)
            .zip(&self.top_logprobs)
            .map(|(row, &n)| {
                let listed = (width - 2) / 2;
                Drawn {
                    token: row[0] as u32,
                    logprob: row[1],
                    top_logprobs: (0..n)
                        .map(|j| (row[2 + j] as u32, row[2 + listed + j]))
                        .collect(),
                }
            })
            .collect())
    }

    /// Whether some row truncates (min-p, top-k or top-p).
    fn truncating(&self) -> bool {
        self.log_min_p.is_some() || self.top_k.is_some() || self.top_p.is_some()
    }

    /// Each row's truncation threshold on its log-weights (`[rows, 1]`), or `None` when no
    /// row truncates. `x`: log-weights of all ids; `xs`: those of the ids each row may sample
    /// (-inf for the others); `ws`: their weights on some scale per row, on which the whole
    /// vocabulary's weight is `exp(log_scale)`.
    fn threshold(
        &self,
        x: &Tensor<2>,
        xs: &Tensor<2>,
        ws: &Tensor<2>,
        log_scale: &Tensor<2>,
    ) -> Option<Tensor<2>> {
        let full = [self.rows, self.vocab];
        let mut thresholds = Vec::new();
        if let Some(log_min_p) = &self.log_min_p {
            thresholds.push(xs.clone().max_dim(1) + log_min_p.clone());
        }
        // Bisection for "the largest t such that enough is at or above t": `enough(t)` holds
        // at `lo` (below every id) and never above the best log-weight (0).
        let bisect = |enough: &dyn Fn(Tensor<2>) -> Tensor<2, Bool>| {
            let mut lo = x.clone().min_dim(1) - 1.0;
            let mut hi = lo.ones_like();
            for _ in 0..THRESHOLD_STEPS {
                let mid = (lo.clone() + hi.clone()) / 2.0;
                let ok = enough(mid.clone());
                lo = lo.mask_where(ok.clone(), mid.clone());
                hi = mid.mask_where(ok, hi);
            }
            lo
        };
        let at_or_above = |t: Tensor<2>| xs.clone().greater_equal(t.expand(full));
        if let Some((k, off)) = &self.top_k {
            let count = |t| at_or_above(t).float().sum_dim(1).greater_equal(k.clone());
            thresholds.push(bisect(&count).mask_fill(off.clone(), f32::NEG_INFINITY));
        }
        if let Some((p, off)) = &self.top_p {
            let target = log_scale.clone().exp() * p.clone();
            let mass = |t: Tensor<2>| {
                let below = at_or_above(t).bool_not();
                let mass = ws.clone().mask_fill(below, 0.0).sum_dim(1);
                mass.greater_equal(target.clone())
            };
            thresholds.push(bisect(&mass).mask_fill(off.clone(), f32::NEG_INFINITY));
        }
        thresholds.into_iter().reduce(Tensor::max_pair)
    }
}

/// `[rows, vocab]` ids: every row `0, 1, ..., vocab - 1`.
fn ids(rows: usize, vocab: usize, device: &Device) -> Tensor<2, Int> {
    Tensor::<1, Int>::arange(0..vocab as i64, device)
        .reshape([1, vocab])
        .expand([rows, vocab])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampling::row_rng;
    use crate::sampling::tests::params;
    use proptest::prelude::*;
    use rand::Rng;
    use rand_chacha::ChaCha8Rng;

    /// `sampler`'s step with row `i` drawing from `rngs[i]`.
    fn step(sampler: &DeviceSampler, logits: Tensor<2>, rngs: &mut [ChaCha8Rng]) -> Vec<Drawn> {
        sampler
            .step(logits, &mut |i| rngs[i].random::<f64>())
            .unwrap()
    }

    fn cpu() -> Device {
        Device::flex()
    }

    /// `rows` copies of `logits` as a `[rows, vocab]` tensor.
    fn batch(logits: &[f32], rows: usize) -> Tensor<2> {
        let data: Vec<f32> = (0..rows).flat_map(|_| logits.iter().copied()).collect();
        Tensor::from_data(TensorData::new(data, [rows, logits.len()]), &cpu())
    }

    /// One step over `rows` copies of `logits`, row `i` drawing from `row_rng(seed, i)`.
    fn draws(logits: &[f32], params: &SamplingParams, rows: usize, seed: u64) -> Vec<Drawn> {
        let mut rngs: Vec<ChaCha8Rng> = (0..rows).map(|i| row_rng(seed, i)).collect();
        let all = vec![params; rows];
        step(
            &DeviceSampler::new(&all, logits.len(), &cpu()),
            batch(logits, rows),
            &mut rngs,
        )
    }

    /// The host reference, in f64: the sampling distribution of `params` over `logits`,
    /// truncated as the host sampler did (candidates in decreasing probability, then top-k,
    /// min-p relative to the best, and the shortest prefix reaching top-p of the whole mass).
    fn reference(logits: &[f32], params: &SamplingParams) -> Vec<f64> {
        let t = f64::from(if params.temperature > 0.0 {
            params.temperature
        } else {
            1.0
        });
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let w: Vec<f64> = logits
            .iter()
            .map(|&l| (f64::from(l - max) / t).exp())
            .collect();
        let total: f64 = w.iter().sum();
        let limit = params.vocab_limit.unwrap_or(w.len()).min(w.len());
        let mut keep: Vec<usize> = (0..limit).collect();
        // By logit (the order of the weights, also where they underflow), then by id.
        keep.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
        if params.top_k > 0 {
            keep.truncate(params.top_k);
        }
        let floor = f64::from(params.min_p) * w[keep[0]];
        keep.retain(|&i| w[i] >= floor);
        let mut mass = 0.0;
        let cut = keep.iter().position(|&i| {
            mass += w[i];
            mass >= f64::from(params.top_p) * total
        });
        keep.truncate(cut.map_or(keep.len(), |c| c + 1));
        let kept: f64 = keep.iter().map(|&i| w[i]).sum();
        let mut p = vec![0.0; w.len()];
        for i in keep {
            p[i] = w[i] / kept;
        }
        p
    }

    /// Distinct logits, no two within any threshold's reach of each other.
    const LOGITS: [f32; 10] = [1.2, -0.3, 2.5, 0.4, 2.1, -1.7, 0.9, 3.0, -0.8, 1.6];

    #[test]
    fn draws_follow_the_truncated_sampling_distribution() {
        let n = 6000;
        let cases = [
            params(1.0, 0, 1.0, 0.0),
            params(0.7, 0, 1.0, 0.0),
            params(1.3, 4, 1.0, 0.0),
            params(1.0, 0, 0.8, 0.0),
            params(1.0, 0, 1.0, 0.2),
            params(0.8, 5, 0.9, 0.05),
            SamplingParams {
                vocab_limit: Some(7),
                ..params(1.0, 3, 0.95, 0.0)
            },
        ];
        for (c, p) in cases.iter().enumerate() {
            let expected = reference(&LOGITS, p);
            let drawn = draws(&LOGITS, p, n, 40 + c as u64);
            for (id, &prob) in expected.iter().enumerate() {
                let count = drawn.iter().filter(|d| d.token as usize == id).count();
                let freq = count as f64 / n as f64;
                if prob == 0.0 {
                    assert_eq!(count, 0, "case {c}: id {id} is truncated but was drawn");
                } else {
                    // Five standard errors of a binomial proportion.
                    let bound = 5.0 * (prob * (1.0 - prob) / n as f64).sqrt();
                    assert!(
                        (freq - prob).abs() < bound,
                        "case {c}, id {id}: {freq} vs {prob}"
                    );
                }
            }
            // The recorded log-prob is the untruncated distribution's.
            let t = f64::from(p.temperature);
            let greedy_free = reference(&LOGITS, &params(p.temperature, 0, 1.0, 0.0));
            for d in &drawn {
                let direct = greedy_free[d.token as usize].ln();
                assert!(
                    (f64::from(d.logprob) - direct).abs() < 1e-5,
                    "case {c}, T {t}"
                );
            }
        }
    }

    #[test]
    fn greedy_rows_take_the_first_largest_logit_beside_drawing_rows() {
        let logits = [0.5f32, 3.0, -1.0, 3.0, 2.0];
        let (greedy, drawing) = (params(0.0, 0, 1.0, 0.0), params(1.0, 0, 0.9, 0.0));
        let limited = SamplingParams {
            vocab_limit: Some(1),
            ..greedy.clone()
        };
        let all = [&greedy, &drawing, &limited, &greedy];
        let mut rngs: Vec<ChaCha8Rng> = (0..4).map(|i| row_rng(1, i)).collect();
        let out = step(
            &DeviceSampler::new(&all, 5, &cpu()),
            batch(&logits, 4),
            &mut rngs,
        );
        assert_eq!(out[0].token, 1);
        assert_eq!(out[3].token, 1);
        assert_eq!(out[2].token, 0, "the only id below the limit");
        // Greedy log-probs are at temperature 1; greedy rows draw nothing from their generator.
        let direct = reference(&logits, &params(1.0, 0, 1.0, 0.0));
        assert!((f64::from(out[0].logprob) - direct[1].ln()).abs() < 1e-6);
        assert_eq!(rngs[0], row_rng(1, 0));
        assert_ne!(rngs[1], row_rng(1, 1));
    }

    #[test]
    fn a_rows_token_does_not_depend_on_the_rest_of_the_batch() {
        let p = params(0.9, 4, 0.85, 0.02);
        let others = [
            params(0.0, 0, 1.0, 0.0),
            params(1.5, 0, 1.0, 0.0),
            SamplingParams {
                vocab_limit: Some(3),
                top_logprobs: 2,
                ..params(1.0, 2, 0.5, 0.3)
            },
        ];
        let alone = draws(&LOGITS, &p, 1, 9).remove(0);
        for other in &others {
            let all = [other, &p, other];
            let mut rngs = [row_rng(3, 0), row_rng(9, 0), row_rng(4, 0)];
            let sampler = DeviceSampler::new(&all, LOGITS.len(), &cpu());
            let out = step(&sampler, batch(&LOGITS, 3), &mut rngs);
            assert_eq!(out[1], alone, "beside {other:?}");
        }
    }

    proptest! {
        #[test]
        fn draws_are_kept_ids_with_finite_logprobs(
            logits in prop::collection::vec(-30.0f32..30.0, 1..60),
            temperature in 0.0f32..3.0, top_k in 0usize..10, top_p in 0.05f32..1.0,
            min_p in 0.0f32..0.5, limit in 1usize..70, seed: u64,
        ) {
            let p = SamplingParams {
                vocab_limit: Some(limit),
                top_logprobs: 3,
                ..params(temperature, top_k, top_p, min_p)
            };
            let d = draws(&logits, &p, 1, seed).remove(0);
            prop_assert!((d.token as usize) < logits.len().min(limit));
            prop_assert!(d.logprob.is_finite() && d.logprob <= 0.0);
            prop_assert_eq!(d.top_logprobs.len(), 3.min(logits.len()).min(limit));
            // Never an id the host reference truncates away (ties aside, which it splits by id;
            // NaN: every kept weight underflows, and the one id left is taken).
            let expected = reference(&logits, &p)[d.token as usize];
            let tied = logits.iter().filter(|&&l| l == logits[d.token as usize]).count() > 1;
            prop_assert!(expected > 0.0 || expected.is_nan() || tied || temperature == 0.0);
        }
    }
}
