//! GRPO with a reward function written in Rust, in one file: the built-in verifier decides
//! correctness, and the reward adds a bonus for short responses. Any `Fn(&Problem, &str) ->
//! Verdict` (or `impl Verifier`) plugs in the same way; `[[reward]]` tables in a configuration
//! file do the same for an external program (`type = "command"`) or an HTTP endpoint
//! (`type = "http"`), see docs/rewards.md.
//!
//! ```text
//! cargo run --release --example custom_reward -- 20
//! ```

use std::sync::Arc;

use redraft::trainer::{RunDir, Silent, TrainConfig, Trainer};
use redraft::verifier::{FnVerifier, Problem, Verdict, Verifier, default_verifier};

/// Correct answers earn 1, and every response earns up to 0.2 more for being short.
fn reward(problem: &Problem, response: &str) -> Verdict {
    let mut verdict = default_verifier().verify(problem, response);
    let brevity = 0.2 * (1.0 - response.len() as f32 / 64.0).max(0.0);
    verdict.reward += brevity;
    verdict
}

/// Trains `steps` GRPO steps with [`reward`] in a temporary folder; returns the mean
/// first-attempt reward of each step.
fn train(steps: u64) -> Result<Vec<f64>, Box<dyn std::error::Error>> {
    let model = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/configs/models/test-byte-llama.json"
    );
    let config = TrainConfig::parse(
        &format!(
            r#"
            method = "grpo"
            steps = {steps}
            [model]
            init = "{model}"
            [task]
            family = "arithmetic"
            difficulty = {{ digits = 1 }}
            [rollout]
            prompts_per_step = 2
            group_size = 4
            max_new_tokens = 16
            [sft]
            steps = 0
            [eval]
            problems = 2
            samples = 1
            at_start = false
            with_feedback = false
            [checkpoint]
            every = 0
            "#
        ),
        &[],
    )?;
    let dir = tempfile::tempdir()?;
    let run = dir.path().join("run");
    let mut trainer =
        Trainer::new(config, &run)?.with_verifier(Arc::new(FnVerifier::new(reward)))?;
    trainer.run(&mut Silent)?;
    let rewards: Vec<f64> = RunDir::open(&run)
        .metrics()?
        .iter()
        .filter_map(|m| Some(m.rl()?.reward_mean))
        .collect();
    for (step, r) in rewards.iter().enumerate() {
        println!("step {}: mean reward {r:.3}", step + 1);
    }
    Ok(rewards)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let steps = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    train(steps)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn two_steps_run_with_the_custom_reward() {
        let rewards = super::train(2).unwrap();
        assert_eq!(rewards.len(), 2);
        // The brevity bonus is positive for every response shorter than 64 bytes (16 tokens
        // of the byte tokenizer are at most 64 bytes), so no step averages zero.
        assert!(rewards.iter().all(|r| *r > 0.0 && *r <= 1.2), "{rewards:?}");
    }
}
