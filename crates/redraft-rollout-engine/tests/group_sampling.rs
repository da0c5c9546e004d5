//! Group sampling: identical prompts share one prefill whose KV cache is forked, and each row
//! still gets exactly what sampling it alone would give.

use redraft_model::{CausalLm, DeviceSpec, ModelConfig};
use redraft_rollout_engine::{RowRequest, SamplingParams, generate_rows, row_rng};

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
