//! End to end, the way a trainer calls an objective: a tiny Llama model on the autodiff
//! device → `next_token_logprobs` → `Objective::loss` → `backward` → AdamW. A few PPO epochs
//! on one batch raise the log-prob of the positive-advantage response and lower the other.

use redraft_model::burn::optim::{AdamWConfig, GradientsParams};
use redraft_model::burn::tensor::{Int, Tensor, TensorData};
use redraft_model::{CausalLm, ModelConfig, next_token_logprobs};
use redraft_objectives::{Objective, ObjectiveConfig, PolicyBatch, metric};

use crate::common::ad;

/// Σ over trainable targets of each row's log-probs.
fn row_sums(lp: &[f32], mask: &[bool], t: usize) -> Vec<f64> {
    lp.chunks(t)
        .zip(mask.chunks(t))
        .map(|(l, m)| {
            l.iter()
                .zip(m)
                .filter(|(_, m)| **m)
                .map(|(l, _)| f64::from(*l))
                .sum()
        })
        .collect()
}

#[test]
fn grpo_epochs_move_the_policy_in_the_direction_of_the_advantage() {
    let device = ad();
    let config = ModelConfig::from_json_str(
        r#"{"model_type": "llama", "vocab_size": 16, "hidden_size": 16,
            "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
            "num_key_value_heads": 2, "max_position_embeddings": 32}"#,
    )
    .unwrap();
    let mut model = CausalLm::init(&config, 7, &device).unwrap();
    // Two sequences of 6 tokens sharing a 2-token prompt; targets are tokens[1..], so the
    // response targets are positions t >= 1 of the [2, 5] log-probs.
    let ids: Vec<i32> = vec![1, 2, 3, 4, 5, 6, 1, 2, 7, 8, 9, 10];
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids, [2, 6]), &device);
    let (b, t) = (2, 5);
    let mask: Vec<bool> = (0..b * t).map(|k| k % t >= 1).collect();
    let adv: Vec<f32> = (0..b * t).map(|k| if k < t { 1.0 } else { -1.0 }).collect();

    let logprobs = |model: &CausalLm| -> Vec<f32> {
        let logits = model.forward(tokens.clone(), &[]).unwrap();
        next_token_logprobs(logits, tokens.clone())
            .into_data()
            .try_to_vec_as::<f32>()
            .unwrap()
    };
    // Sampling and reference log-probs: the initial policy.
    let initial = logprobs(&model);
    let batch = PolicyBatch::new([b, t], mask.clone(), adv, &device)
        .unwrap()
        .with_old_logprobs(initial.clone())
        .unwrap()
        .with_ref_logprobs(initial.clone())
        .unwrap();
    let objective = ObjectiveConfig::default().build().unwrap(); // GRPO
    let mut optim = AdamWConfig::new().init();
    let mut ratio_max = 1.0;
    for _epoch in 0..4 {
        let logits = model.forward(tokens.clone(), &[]).unwrap();
        let out = objective
            .loss(&batch, next_token_logprobs(logits, tokens.clone()), None)
            .unwrap();
        ratio_max = out.metrics.get(metric::RATIO_MAX).unwrap();
        let grads = GradientsParams::from_grads(out.loss.backward(), &model);
        model = optim.step(1e-2, model, grads);
    }
    assert!(ratio_max > 1.0, "later epochs are off-policy");
    let before = row_sums(&initial, &mask, t);
    let after = row_sums(&logprobs(&model), &mask, t);
    assert!(after[0] > before[0], "{before:?} -> {after:?}");
    assert!(after[1] < before[1], "{before:?} -> {after:?}");
}
