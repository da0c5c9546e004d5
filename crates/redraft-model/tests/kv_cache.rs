//! The KV cache written in place: storage preallocated and grown by doubling (never concatenated
//! per step), and cached decoding equal to a full forward across growths, forks (`select_rows`),
//! truncation and clones.
//!
//! The device is `cpu` unless `REDRAFT_TEST_DEVICE` names another one compiled into the build.

mod common;

use common::{device, fixture};

use std::ops::Range;

use redraft_model::burn::tensor::{Device, Int, Tensor, TensorData};
use redraft_model::{CausalLm, KvCache, LogitsFor};

/// Largest |cached - full| logit difference accepted.
const TOLERANCE: f32 = 1e-4;

/// The tiny random Llama of the parity fixtures (2 layers, grouped-query attention,
/// `max_position_embeddings` 64, vocabulary 96).
fn model(device: &Device) -> CausalLm {
    CausalLm::from_pretrained(&fixture("llama"), device).unwrap()
}

/// `rows` deterministic token sequences of `len` tokens, distinct per `salt`.
fn sequences(rows: usize, len: usize, salt: usize) -> Vec<Vec<i64>> {
    (0..rows)
        .map(|r| {
            (0..len)
                .map(|i| ((i * 37 + r * 11 + salt * 53 + 5) % 96) as i64)
                .collect()
        })
        .collect()
}

fn ids(rows: &[Vec<i64>], device: &Device) -> Tensor<2, Int> {
    let (b, t) = (rows.len(), rows[0].len());
    Tensor::from_data(TensorData::new(rows.concat(), [b, t]), device)
}

/// Columns `from..to` of every row.
fn cols(rows: &[Vec<i64>], from: usize, to: usize) -> Vec<Vec<i64>> {
    rows.iter().map(|r| r[from..to].to_vec()).collect()
}

/// Logits of the last position of a full (uncached) forward over `rows`: `[batch, 1, vocab]`.
fn full_last(model: &CausalLm, rows: &[Vec<i64>], pad: &[usize], device: &Device) -> Tensor<3> {
    let t = rows[0].len();
    model
        .forward(ids(rows, device), pad)
        .unwrap()
        .narrow(1, t - 1, 1)
}

fn max_diff(a: Tensor<3>, b: Tensor<3>) -> f32 {
    (a - b).abs().max().into_scalar::<f32>()
}

/// Feeds `rows[.., steps]` one token at a time, checking every step against a full forward
/// over `rows[.., ..s + 1]`.
fn decode_and_check(
    model: &CausalLm,
    cache: &mut KvCache,
    rows: &[Vec<i64>],
    pad: &[usize],
    steps: Range<usize>,
    device: &Device,
    what: &str,
) {
    let to = steps.end;
    for s in steps {
        let step = model
            .forward_cached(ids(&cols(rows, s, s + 1), device), cache, LogitsFor::Last)
            .unwrap();
        let full = full_last(model, &cols(rows, 0, s + 1), pad, device);
        let diff = max_diff(step, full);
        assert!(
            diff <= TOLERANCE,
            "{what}: slot {s}: cached logits differ from a full forward by {diff:e}"
        );
    }
    assert_eq!(cache.len(), to, "{what}");
}

#[test]
fn decoding_grows_the_cache_by_doubling_not_per_step() {
    let device = device();
    let model = model(&device);
    let (prefill, total) = (3, 60);
    let rows = sequences(2, total, 0);
    let mut cache = model.new_cache(vec![0, 2]);
    model
        .forward_cached(
            ids(&cols(&rows, 0, prefill), &device),
            &mut cache,
            LogitsFor::Last,
        )
        .unwrap();
    for s in prefill..total {
        model
            .forward_cached(
                ids(&cols(&rows, s, s + 1), &device),
                &mut cache,
                LogitsFor::Last,
            )
            .unwrap();
        assert!(cache.capacity() >= cache.len());
    }
    // 3 -> 6 -> 12 -> 24 -> 48 -> 96: one allocation, then one per doubling.
    let bound = 1 + (total as f64 / prefill as f64).log2().ceil() as usize;
    assert!(
        cache.reallocations() <= bound,
        "{} reallocations of the cache over {} decode steps; expected at most {bound} (doubling)",
        cache.reallocations(),
        total - prefill
    );
    // Doubling stops at the context (64 positions, no padding in row 0), not at 96 slots.
    assert!(
        cache.capacity() <= 64,
        "capacity {} beyond the 64-position context",
        cache.capacity()
    );
}

#[test]
fn cached_decode_equals_full_forward_across_growths() {
    let device = device();
    let model = model(&device);
    let rows = sequences(3, 40, 1);
    let pad = vec![0, 1, 4];
    let mut cache = model.new_cache(pad.clone());
    let prefill = model
        .forward_cached(
            ids(&cols(&rows, 0, 5), &device),
            &mut cache,
            LogitsFor::Last,
        )
        .unwrap();
    let diff = max_diff(
        prefill,
        full_last(&model, &cols(&rows, 0, 5), &pad, &device),
    );
    assert!(diff <= TOLERANCE, "prefill: {diff:e}");
    decode_and_check(&model, &mut cache, &rows, &pad, 5..40, &device, "decode");
}

#[test]
fn truncated_cache_continues_like_a_fresh_prefill() {
    let device = device();
    let model = model(&device);
    let pad = vec![0, 3];
    let first = sequences(2, 20, 2);
    let mut cache = model.new_cache(pad.clone());
    model
        .forward_cached(
            ids(&cols(&first, 0, 8), &device),
            &mut cache,
            LogitsFor::Last,
        )
        .unwrap();
    decode_and_check(&model, &mut cache, &first, &pad, 8..20, &device, "before");
    // Back to slot 10 (an R^3L pivot), then a different continuation that outgrows the storage.
    cache.truncate(10);
    assert_eq!(cache.len(), 10);
    let second: Vec<Vec<i64>> = first
        .iter()
        .zip(sequences(2, 50, 3))
        .map(|(a, b)| [&a[..10], &b[10..]].concat())
        .collect();
    decode_and_check(&model, &mut cache, &second, &pad, 10..50, &device, "after");
}

#[test]
fn a_clone_is_untouched_by_writes_to_its_copy() {
    let device = device();
    let model = model(&device);
    let pad = vec![1];
    let base_rows = sequences(1, 30, 4);
    let mut base = model.new_cache(pad.clone());
    model
        .forward_cached(
            ids(&cols(&base_rows, 0, 12), &device),
            &mut base,
            LogitsFor::Last,
        )
        .unwrap();
    // The copy rewrites slots 6.. that the base still holds.
    let mut copy = base.clone();
    copy.truncate(6);
    let other: Vec<Vec<i64>> = vec![[&base_rows[0][..6], &sequences(1, 30, 5)[0][6..]].concat()];
    decode_and_check(&model, &mut copy, &other, &pad, 6..30, &device, "copy");
    decode_and_check(&model, &mut base, &base_rows, &pad, 12..30, &device, "base");
}

#[test]
fn forked_rows_decode_like_their_source_past_growths() {
    let device = device();
    let model = model(&device);
    let rows = sequences(2, 8, 6);
    let pad = vec![2, 0];
    let mut cache = model.new_cache(pad.clone());
    model
        .forward_cached(ids(&rows, &device), &mut cache, LogitsFor::Last)
        .unwrap();
    // Samples 0, 1 of prompt 1 and sample 2 of prompt 0, each continuing differently.
    let source = [1usize, 1, 0];
    let mut forked = cache.select_rows(&source);
    assert_eq!(forked.len(), 8);
    assert_eq!(forked.left_pad(), &[0, 0, 2]);
    let tails = sequences(3, 40, 7);
    let continued: Vec<Vec<i64>> = source
        .iter()
        .zip(&tails)
        .map(|(&s, tail)| [&rows[s][..], &tail[8..]].concat())
        .collect();
    let fork_pad: Vec<usize> = source.iter().map(|&s| pad[s]).collect();
    decode_and_check(
        &model,
        &mut forked,
        &continued,
        &fork_pad,
        8..40,
        &device,
        "forked",
    );
}

#[test]
fn a_capacity_hint_allocates_once_and_truncation_keeps_the_storage() {
    let device = device();
    let model = model(&device);
    let rows = sequences(2, 48, 8);
    let pad = vec![3, 0];
    let mut cache = model.new_cache_with_capacity(pad.clone(), 48);
    assert_eq!((cache.capacity(), cache.reallocations()), (48, 0));
    model
        .forward_cached(
            ids(&cols(&rows, 0, 4), &device),
            &mut cache,
            LogitsFor::Last,
        )
        .unwrap();
    decode_and_check(&model, &mut cache, &rows, &pad, 4..30, &device, "hinted");
    cache.truncate(20);
    decode_and_check(
        &model,
        &mut cache,
        &rows,
        &pad,
        20..48,
        &device,
        "re-decoded",
    );
    assert_eq!(
        (cache.capacity(), cache.reallocations()),
        (48, 1),
        "a decode within the hinted budget, truncation included, allocates the storage once"
    );
    // A fork keeps the capacity in one copy of its own.
    let forked = cache.select_rows(&[1, 0, 1]);
    assert_eq!((forked.capacity(), forked.reallocations()), (48, 1));
}

#[test]
fn a_cache_truncated_to_nothing_takes_a_longer_prefill() {
    let device = device();
    let model = model(&device);
    let rows = sequences(1, 40, 9);
    let pad = vec![0];
    let mut cache = model.new_cache(pad.clone());
    model
        .forward_cached(
            ids(&cols(&rows, 0, 4), &device),
            &mut cache,
            LogitsFor::Last,
        )
        .unwrap();
    cache.truncate(0);
    assert!(cache.is_empty());
    // A prefill longer than the storage: it grows with nothing to copy.
    let logits = model
        .forward_cached(
            ids(&cols(&rows, 0, 20), &device),
            &mut cache,
            LogitsFor::Last,
        )
        .unwrap();
    let diff = max_diff(
        logits,
        full_last(&model, &cols(&rows, 0, 20), &pad, &device),
    );
    assert!(diff <= TOLERANCE, "re-prefill: {diff:e}");
    decode_and_check(&model, &mut cache, &rows, &pad, 20..40, &device, "after");
}

#[test]
fn sequences_placed_appended_and_compacted_decode_like_a_full_forward() {
    let device = device();
    let model = model(&device);
    // A running batch of two 6-token prompts, decoded two steps (8 slots).
    let first = sequences(2, 30, 9);
    let mut cache = model.new_cache(vec![0, 0]);
    model
        .forward_cached(
            ids(&cols(&first, 0, 6), &device),
            &mut cache,
            LogitsFor::Last,
        )
        .unwrap();
    decode_and_check(&model, &mut cache, &first, &[0, 0], 6..8, &device, "first");
    // Row 0 finishes; a 10-token prompt takes its slot (the batch padded by two first), and a
    // 4-token prompt is appended as a third row.
    let (long, short) = (
        sequences(1, 30, 10).remove(0),
        sequences(1, 30, 11).remove(0),
    );
    let prefill = |tokens: &[i64]| {
        let mut own = model.new_cache(vec![0]);
        let rows = vec![tokens.to_vec()];
        model
            .forward_cached(ids(&rows, &device), &mut own, LogitsFor::Last)
            .unwrap();
        own
    };
    let long_cache = prefill(&long[..10]);
    assert!(
        cache.place_row(0, &long_cache, 0).is_err(),
        "10 tokens in 8 slots"
    );
    cache.pad_left(2);
    cache.place_row(0, &long_cache, 0).unwrap();
    let mut short_cache = prefill(&short[..4]);
    assert!(
        cache.append_rows(&short_cache).is_err(),
        "4 slots joined to 10"
    );
    short_cache.pad_left(6);
    cache.append_rows(&short_cache).unwrap();
    assert_eq!(cache.left_pad(), &[0, 2, 6]);
    // Each row as a full forward sees it: left padding, then its tokens.
    let padded = |pad: usize, tokens: &[i64]| [vec![0; pad], tokens.to_vec()].concat();
    let rows = vec![
        long[..26].to_vec(),
        padded(2, &first[1][..24]),
        padded(6, &short[..20]),
    ];
    decode_and_check(
        &model,
        &mut cache,
        &rows,
        &[0, 2, 6],
        10..18,
        &device,
        "joined",
    );
    // Row 0 finishes: the batch keeps rows 1 and 2 without the two slots both pad.
    let mut compacted = cache.compact(&[1, 2]);
    assert_eq!(
        (compacted.left_pad(), compacted.len()),
        (&[0usize, 4][..], 16)
    );
    let rest: Vec<Vec<i64>> = rows[1..].iter().map(|r| r[2..].to_vec()).collect();
    decode_and_check(
        &model,
        &mut compacted,
        &rest,
        &[0, 4],
        16..24,
        &device,
        "compacted",
    );
}
