//! Group sampling: identical prompts share one prefill whose KV cache is forked, and each row
//! still gets exactly what sampling it alone would give.

use redraft_model::{CausalLm, DeviceSpec, ModelConfig};
use redraft_rollout_engine::{
    Control, FinishReason, RowRequest, SamplingParams, generate_rows, generate_rows_with, row_rng,
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
