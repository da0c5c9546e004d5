//! GRPO on a built-in task, top to bottom, with the crates themselves instead of the trainer:
//! a small Llama with the byte tokenizer, single-digit addition, eight samples per problem,
//! group-normalised advantages, the clipped surrogate and AdamW.
//!
//! ```text
//! cargo run --release --example grpo_minimal -- 30
//! ```
//!
//! The weights start random, so most of what this shows in a few steps is the machinery (the
//! reward climbs slowly from zero); `cargo xtask experiment` trains a warm-started model.

use redraft::credit::{AdvantageEstimator, AdvantageFn};
use redraft::model::burn::module::Module;
use redraft::model::burn::optim::{AdamWConfig, GradientsParams};
use redraft::model::burn::tensor::{Int, Tensor, TensorData};
use redraft::model::{CausalLm, DeviceSpec, ModelConfig, next_token_logprobs};
use redraft::objectives::{ObjectiveConfig, PolicyBatch, RlvrOptions};
use redraft::rollout::{
    LocalPolicy, RolloutContext, RolloutStrategy, SamplingParams, SingleTurn, SingleTurnConfig,
};
use redraft::tokenizer::{ByteTokenizer, Tokenizer};
use redraft::verifier::{Difficulty, TaskFamily};

/// Runs `steps` GRPO steps and returns the mean reward of each.
fn train(steps: u64) -> Result<Vec<f32>, Box<dyn std::error::Error>> {
    // 1. A policy on the autodiff device, and its tokenizer.
    let spec = DeviceSpec::Cpu;
    let (device, plain) = (spec.train_device()?, spec.device()?);
    let config = ModelConfig::from_json_str(
        r#"{"model_type": "llama", "vocab_size": 261, "hidden_size": 64,
            "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 2, "max_position_embeddings": 256,
            "tie_word_embeddings": true, "bos_token_id": 256, "eos_token_id": 257}"#,
    )?;
    let mut model = CausalLm::init(&config, 0, &device)?;
    let tokenizer = ByteTokenizer::new();
    let pad = tokenizer.special_tokens().pad.unwrap_or(0);

    // 2. The method: single-turn groups of 8, GRPO advantages, GRPO's clipped objective.
    let strategy = SingleTurn::new(SingleTurnConfig { group_size: 8 })?;
    let estimator = AdvantageEstimator::grpo();
    // GRPO's clipped surrogate without its KL term (which would need a reference model).
    let objective = ObjectiveConfig::Grpo(RlvrOptions {
        kl_coef: Some(0.0),
        ..RlvrOptions::default()
    })
    .build()?;
    let mut optim = AdamWConfig::new()
        .with_epsilon(1e-8)
        .with_weight_decay(0.0)
        .init();
    let difficulty = Difficulty::from_pairs([("digits", "1")]);

    let mut rewards = Vec::new();
    for step in 0..steps {
        // 3. Sample: four problems, eight answers each, verified.
        let problems = (0..4)
            .map(|i| TaskFamily::Arithmetic.generate_one(0, step * 4 + i, &difficulty))
            .collect::<Result<Vec<_>, _>>()?;
        let policy = LocalPolicy::for_tokenizer(model.valid(), plain.clone(), &tokenizer);
        let sampling = SamplingParams {
            max_new_tokens: 24,
            vocab_limit: Some(tokenizer.vocab_size()),
            ..SamplingParams::default()
        };
        let ctx = RolloutContext::new(&policy, &tokenizer, sampling);
        let batch = strategy.rollout(&ctx, &problems, step)?;

        // 4. Credit: group-normalised advantages, one per sample, on its sampled tokens.
        let rows: Vec<_> = batch.episodes.iter().map(|e| &e.sequences[0]).collect();
        let time = rows.iter().map(|s| s.ids.len()).max().unwrap_or(1) - 1;
        let (mut ids, mut mask, mut adv, mut old) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for group in &batch.groups {
            let r: Vec<f32> = group
                .episodes
                .iter()
                .map(|&e| batch.episodes[e].reward)
                .collect();
            let a = estimator.group_advantages(&r)?;
            for (&e, a) in group.episodes.iter().zip(a) {
                let s = &batch.episodes[e].sequences[0];
                for t in 0..=time {
                    ids.push(s.ids.get(t).map_or(i64::from(pad), |&x| i64::from(x)));
                }
                for t in 0..time {
                    let m = s.trainable_mask.get(t + 1).copied().unwrap_or(false);
                    mask.push(m);
                    adv.push(if m { a } else { 0.0 });
                    old.push(s.logprobs.get(t + 1).copied().unwrap_or(0.0));
                }
            }
        }
        let n = batch.episodes.len();
        rewards.push(batch.episodes.iter().map(|e| e.reward).sum::<f32>() / n as f32);

        // 5. The objective on the policy's log-probs, backward, AdamW.
        let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids, [n, time + 1]), &device);
        let inputs = PolicyBatch::new([n, time], mask, adv, &device)?.with_old_logprobs(old)?;
        let logprobs = next_token_logprobs(model.forward(tokens.clone(), &[])?, tokens);
        let out = objective.loss(&inputs, logprobs, None)?;
        let grads = GradientsParams::from_grads(out.loss.backward(), &model);
        model = optim.step(1e-3, model, grads);
        println!("step {step}: mean reward {:.3}", rewards[rewards.len() - 1]);
    }
    Ok(rewards)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let steps = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let rewards = train(steps)?;
    println!("rewards: {rewards:?}");
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn two_steps_run() {
        let rewards = super::train(2).unwrap();
        assert_eq!(rewards.len(), 2);
        assert!(rewards.iter().all(|r| (0.0..=1.0).contains(r)));
    }
}
