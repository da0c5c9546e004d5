//! Group sampling: identical prompts share one prefill whose KV cache is forked, and each row
//! still gets exactly what sampling it alone would give.

use redraft_model::{CausalLm, DeviceSpec, ModelConfig};
use redraft_rollout_engine::{
    Batcher, Control, FinishReason, LocalPolicy, Policy, RowRequest, SamplingParams, generate_rows,
    generate_rows_limited, generate_rows_with, row_rng,
};

fn tiny_model() -> CausalLm {
    let config = ModelConfig::from_json_str(
        r#"{"model_type": "llama", "vocab_size": 40, "hidden_size": 32, "intermediate_size": 64,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "max_position_embeddings": 64, "initializer_range": 0.5}"#,
    )
    .unwrap();
    CausalLm::init(&config, 3, &DeviceSpec::Cpu.device().unwrap()).unwrap()
}

#[test]
fn forked_group_rows_equal_rows_sampled_alone() {
    let model = tiny_model();
    let device = DeviceSpec::Cpu.device().unwrap();
    let params = SamplingParams {
        max_new_tokens: 10,
        stop_tokens: vec![39],
        ..SamplingParams::default()
    };
    let group = vec![1u32, 5, 9, 2, 7];
    let other = vec![3u32, 4, 8];
    let prompts = [&group, &group, &other, &group, &other];
    let rows = |range: std::ops::Range<usize>| -> Vec<RowRequest> {
        range
            .map(|i| RowRequest {
                prompt: prompts[i].clone(),
                params: params.clone(),
                rng: row_rng(11, i),
            })
            .collect()
    };
    let together =
        generate_rows(&model, rows(0..prompts.len()), 0, &device, &|_, _| false).unwrap();
    // The rows of a group draw different samples from one shared prefill.
    assert_ne!(together[0].tokens, together[1].tokens);
    for (i, batched) in together.iter().enumerate() {
        let alone = generate_rows(&model, rows(i..i + 1), 0, &device, &|_, _| false)
            .unwrap()
            .remove(0);
        assert_eq!(batched.tokens, alone.tokens, "row {i}");
        for (a, b) in batched.logprobs.iter().zip(&alone.logprobs) {
            assert!((a - b).abs() < 1e-4, "row {i}: {a} vs {b}");
        }
    }
}

#[test]
fn the_observer_sees_every_token_as_it_is_sampled_and_can_stop_a_row() {
    let model = tiny_model();
    let device = DeviceSpec::Cpu.device().unwrap();
    let params = SamplingParams {
        max_new_tokens: 12,
        top_logprobs: 3,
        ..SamplingParams::default()
    };
    let rows = || -> Vec<RowRequest> {
        (0..3)
            .map(|i| RowRequest {
                prompt: vec![1, 2, 3],
                params: params.clone(),
                rng: row_rng(7, i),
            })
            .collect()
    };
    /// What the observer saw of one token: id, log-prob, alternatives.
    type Seen = (u32, f32, Vec<(u32, f32)>);
    let mut seen: Vec<Vec<Seen>> = vec![Vec::new(); 3];
    let mut finishes = [None; 3];
    let out = generate_rows_with(&model, rows(), 0, &device, &mut |s| {
        seen[s.row].push((s.token, s.logprob, s.top_logprobs.to_vec()));
        assert_eq!(s.tokens.len(), seen[s.row].len());
        finishes[s.row] = s.finish;
        // Row 1 is stopped after its fourth token.
        if s.row == 1 && s.tokens.len() == 4 {
            Control::Stop
        } else {
            Control::Continue
        }
    })
    .unwrap();
    for (i, completion) in out.iter().enumerate() {
        let tokens: Vec<u32> = seen[i].iter().map(|t| t.0).collect();
        assert_eq!(completion.tokens, tokens, "row {i}");
        let tops: Vec<Vec<(u32, f32)>> = seen[i].iter().map(|t| t.2.clone()).collect();
        assert_eq!(completion.top_logprobs, tops, "row {i}");
        assert!(tops.iter().all(|t| t.len() == 3));
    }
    assert_eq!(out[1].tokens.len(), 4);
    assert_eq!(out[1].finish_reason, FinishReason::Stop);
    assert_eq!(out[0].tokens.len(), 12);
    assert_eq!(finishes[0], Some(FinishReason::Length));
    // Observing changes nothing: the rows equal those of the plain loop.
    let plain = generate_rows(&model, rows(), 0, &device, &|_, _| false).unwrap();
    assert_eq!(plain[0], out[0]);
    assert!(plain[0].top_logprobs.iter().all(|t| t.len() == 3));
}

/// What sampling `row` alone gives.
fn alone(model: &CausalLm, row: &RowRequest) -> redraft_rollout_engine::Completion {
    let device = DeviceSpec::Cpu.device().unwrap();
    generate_rows(model, vec![row.clone()], 0, &device, &|_, _| false)
        .unwrap()
        .remove(0)
}

fn row(prompt: &[u32], max_new_tokens: usize, seed: u64) -> RowRequest {
    RowRequest {
        prompt: prompt.to_vec(),
        params: SamplingParams {
            max_new_tokens,
            top_logprobs: 2,
            ..SamplingParams::default()
        },
        rng: row_rng(seed, 0),
    }
}

fn assert_same(a: &redraft_rollout_engine::Completion, b: &redraft_rollout_engine::Completion) {
    assert_eq!(a.tokens, b.tokens);
    assert_eq!(a.finish_reason, b.finish_reason);
    for (x, y) in a.logprobs.iter().zip(&b.logprobs) {
        assert!((x - y).abs() < 1e-4, "{x} vs {y}");
    }
}

#[test]
fn a_finished_rows_slot_is_reused_by_a_waiting_row() {
    let model = tiny_model();
    let device = DeviceSpec::Cpu.device().unwrap();
    // Two slots; row 0 ends after 2 tokens, row 1 after 9; rows 2 (a prompt longer than the
    // batch's slots when it joins) and 3 wait for a slot.
    let rows = [
        row(&[1, 2, 3], 2, 1),
        row(&[4, 5, 6], 9, 2),
        row(&[7, 8, 9, 10, 11, 12, 13, 14, 15, 16], 3, 3),
        row(&[2, 2], 3, 4),
    ];
    let mut batcher = Batcher::new(model.clone(), 0, &device, 2);
    for (i, r) in rows.iter().enumerate() {
        batcher.push(i, r.clone()).unwrap();
    }
    let mut done = vec![None; rows.len()];
    let mut order = Vec::new();
    while !batcher.is_idle() {
        for (i, completion) in batcher.step(&mut |_| Control::Continue).unwrap() {
            order.push(i);
            done[i] = Some(completion);
        }
        assert!(batcher.slots() <= 2 && batcher.running() <= 2);
    }
    // Rows 2 and 3 ran in row 0's slot while row 1 kept decoding: static batches of two would
    // take 9 + 3 steps; here row 1's 9 tokens bound it.
    assert_eq!(order[0], 0);
    assert_eq!(*order.last().unwrap(), 1);
    assert!(
        batcher.decode_steps() <= 9,
        "{} steps",
        batcher.decode_steps()
    );
    for (i, r) in rows.iter().enumerate() {
        assert_same(done[i].as_ref().unwrap(), &alone(&model, r));
    }
    // The same through generate_rows_limited, in the rows' order.
    let limited = generate_rows_limited(&model, rows.to_vec(), 0, &device, 2, &mut |_| {
        Control::Continue
    })
    .unwrap();
    for (i, completion) in limited.iter().enumerate() {
        assert_eq!(Some(completion), done[i].as_ref());
    }
}

#[test]
fn rows_join_a_running_batch_and_can_be_cancelled() {
    let model = tiny_model();
    let device = DeviceSpec::Cpu.device().unwrap();
    let first = row(&[3, 1, 4, 1, 5], 8, 5);
    let later = [
        row(&[9, 2], 6, 6),
        row(&[9, 2], 6, 7),
        row(&[2, 7, 1], 8, 8),
    ];
    let mut batcher = Batcher::new(model.clone(), 0, &device, 8);
    batcher.push(0, first.clone()).unwrap();
    let mut done = vec![None; 4];
    for _ in 0..3 {
        assert!(batcher.step(&mut |_| Control::Continue).unwrap().is_empty());
    }
    // Three more rows join the running one (a group of two shares its prefill).
    for (i, r) in later.iter().enumerate() {
        batcher.push(i + 1, r.clone()).unwrap();
    }
    let mut steps = 0;
    while !batcher.is_idle() {
        if steps == 2 {
            batcher.cancel(3);
        }
        for (i, completion) in batcher.step(&mut |_| Control::Continue).unwrap() {
            done[i] = Some(completion);
        }
        steps += 1;
    }
    assert_same(done[0].as_ref().unwrap(), &alone(&model, &first));
    for (i, r) in later.iter().enumerate().take(2) {
        assert_same(done[i + 1].as_ref().unwrap(), &alone(&model, r));
    }
    let cancelled = done[3].as_ref().unwrap();
    assert_eq!(cancelled.finish_reason, FinishReason::Stop);
    assert_eq!(cancelled.tokens.len(), 2);
    assert_eq!(cancelled.tokens, alone(&model, &later[2]).tokens[..2]);
}

#[test]
fn a_local_policy_with_fewer_slots_than_rows_samples_the_same_rows() {
    let model = tiny_model();
    let device = DeviceSpec::Cpu.device().unwrap();
    let rows: Vec<RowRequest> = (0..6)
        .map(|i| row(&[1 + i as u32, 2, 3], 3 + i, 20 + i as u64))
        .collect();
    let stop = |_: usize, tokens: &[u32]| tokens.last() == Some(&7);
    let all = LocalPolicy::new(model.clone(), device.clone(), 0)
        .generate(rows.clone(), &stop)
        .unwrap();
    let capped = LocalPolicy::new(model, device, 0)
        .with_max_rows(2)
        .generate(rows, &stop)
        .unwrap();
    assert_eq!(all.len(), 6);
    for (a, b) in all.iter().zip(&capped) {
        assert_same(a, b);
    }
}
