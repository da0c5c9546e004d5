//! Two training steps of every method on a tiny randomly initialised model, end to end: SFT
//! warm-start, rollouts with feedback, credit assignment, objective, AdamW, evaluation,
//! checkpoints and the report.

use std::path::Path;

use redraft_trainer::{Method, RunDir, Silent, StepMetrics, TrainConfig, Trainer};

/// The one-layer model the integration tests train (shared with the CLI tests).
const TINY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../configs/models/test-byte-llama.json"
);

fn config(method: Method, extra: &[&str]) -> TrainConfig {
    let model = Path::new(TINY);
    let text = format!(
        r#"
        method = "{method}"
        steps = 2
        [model]
        init = "{}"
        [task]
        family = "arithmetic"
        difficulty = {{ digits = 1 }}
        [rollout]
        prompts_per_step = 2
        group_size = 4
        max_new_tokens = 10
        [sft]
        steps = 2
        batch_size = 4
        revision_fraction = 0.5
        [eval]
        problems = 3
        samples = 2
        [checkpoint]
        every = 1
        [templates]
        rltf_revision = "{{{{ question }}}}\nPrevious: {{{{ previous_solution }}}}\nExpert Critique: {{{{ critique }}}}\n"
        mulferl_regen = "{{{{ question }}}}\nFeedback: {{{{ feedback }}}}"
        r3l_guidance_system = "Guidance: {{{{ guidance }}}}"
        "#,
        model.display()
    );
    let overrides: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    TrainConfig::parse(&text, &overrides).unwrap()
}

fn train(method: Method, extra: &[&str]) -> Vec<StepMetrics> {
    train_with_state(method, extra).0
}

fn train_with_state(
    method: Method,
    extra: &[&str],
) -> (Vec<StepMetrics>, redraft_trainer::TrainState) {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut trainer = Trainer::new(config(method, extra), &run).unwrap();
    let summary = trainer.run(&mut Silent).unwrap();
    assert_eq!(summary.state.step, 2, "{method}");
    assert_eq!(summary.state.sft_step, 2, "{method}");
    // Start and end evaluations on the same held-out problems.
    assert_eq!(summary.evals.len(), 2, "{method}");
    assert_eq!(summary.evals[0].step, 0);
    assert_eq!(summary.evals[1].step, 2);
    assert_eq!(summary.evals[1].report.problems, 3);
    let rl: Vec<StepMetrics> = RunDir::open(&run)
        .metrics()
        .unwrap()
        .iter()
        .filter_map(|m| m.rl().cloned())
        .collect();
    assert_eq!(rl.len(), 2, "{method}");
    for m in &rl {
        assert!(m.sampled_tokens > 0, "{method}");
        assert_eq!(m.skipped_updates, 0, "{method}");
        // A step whose groups were all filtered or dropped has nothing to update.
        if m.updates > 0 {
            assert!(m.total_loss().unwrap().is_finite(), "{method}: {m:?}");
            assert!(m.loss["grad_norm"].is_finite(), "{method}");
        }
    }
    // Checkpoints, the final model and the report.
    let latest = std::fs::read_to_string(run.join("checkpoints/latest")).unwrap();
    assert_eq!(latest.trim(), "step-00000002");
    for file in [
        "model/config.json",
        "model/model.safetensors",
        "model/byte_tokenizer.json",
        "optimizer.bpk",
        "state.json",
        "config.toml",
        "param_ids.json",
    ] {
        assert!(
            run.join("checkpoints")
                .join(latest.trim())
                .join(file)
                .is_file(),
            "{file}"
        );
    }
    assert!(run.join("final/config.json").is_file());
    let report = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(report.contains("Held-out evaluation"), "{report}");
    assert!(run.join("pass_at_1_vs_step.svg").is_file());
    (rl, summary.state)
}

fn sum(rl: &[StepMetrics], value: impl Fn(&StepMetrics) -> usize) -> usize {
    rl.iter().map(value).sum()
}

#[test]
fn grpo_dr_grpo_and_opmd_train_on_every_group() {
    for m in [Method::Grpo, Method::DrGrpo, Method::Opmd] {
        let (rl, state) = train_with_state(m, &[]);
        assert_eq!(sum(&rl, |m| m.feedback_requests), 0, "{m}");
        // A random model fails everything; these methods keep every group (advantage 0).
        assert_eq!(sum(&rl, |m| m.groups_used), 4, "{m}");
        assert_eq!(
            sum(&rl, |m| m.sampling_tries),
            2,
            "{m}: one batch of problems per step"
        );
        assert!(state.cursor >= 4, "{m}");
    }
}

/// DAPO's dynamic sampling samples fresh problems until `prompts_per_step` groups carry signal
/// (or its try cap is spent), never training on a short batch while tries remain.
#[test]
fn dapo_samples_again_until_its_groups_carry_signal() {
    let (rl, state) = train_with_state(Method::Dapo, &["method.dynamic_sampling.max_tries=3"]);
    let mut tries = 0;
    for m in &rl {
        let (t, used, filtered) = (m.sampling_tries, m.groups_used, m.groups_filtered);
        assert!((1..=3).contains(&t), "{m:?}");
        assert!(used <= 2, "{m:?}");
        assert!(used == 2 || t == 3, "stopped short with tries left: {m:?}");
        assert!(filtered + used <= 2 * t, "{m:?}");
        tries += t;
    }
    // Each try drew a fresh batch of two problems (the stream skips held-out problems).
    assert!(
        state.cursor >= 2 * tries as u64,
        "{} < 2 × {tries}",
        state.cursor
    );
    // A random model solves (almost) nothing: the cap is what ended the sampling.
    assert!(tries > 2, "{rl:?}");
}

#[test]
fn rltf_sd_and_fm_train_on_revisions() {
    let rl = train(Method::RltfSd, &[]);
    assert!(sum(&rl, |m| m.feedback_requests) > 0);
    assert!(
        sum(&rl, |m| m
            .rows
            .get("self_distillation")
            .copied()
            .unwrap_or(0))
            > 0,
        "{rl:?}"
    );
    let rl = train(Method::RltfFm, &[]);
    assert!(
        sum(&rl, |m| m.rows.get("auxiliary").copied().unwrap_or(0)) > 0,
        "{rl:?}"
    );
    assert!(rl.iter().any(|m| m.loss.contains_key("fm_loss")));
}

#[test]
fn r3l_trains_with_self_reflection_and_with_a_critic() {
    // The policy's own reflections: a random model writes no usable report; every request is
    // counted as invalid or failed, and training goes on.
    let rl = train(
        Method::R3l,
        &[
            "method.strategy.max_attempts=1",
            "method.strategy.base_per_problem=2",
        ],
    );
    assert!(sum(&rl, |m| m.feedback_requests) > 0, "{rl:?}");
    assert_eq!(
        sum(&rl, |m| m.invalid_reflections) + sum(&rl, |m| m.feedback_failures),
        sum(&rl, |m| m.feedback_requests),
        "{rl:?}"
    );
    // The verifier's critique triggers retries and their distilled copies.
    let rl = train(
        Method::R3l,
        &[
            "method.feedback.type=\"verifier_critic\"",
            "method.strategy.max_attempts=1",
            "method.strategy.base_per_problem=2",
        ],
    );
    assert!(sum(&rl, |m| m.feedback_episodes) > 0, "{rl:?}");
}

#[test]
fn mulferl_regenerates_failed_groups() {
    let rl = train(Method::Mulferl, &[]);
    assert!(sum(&rl, |m| m.feedback_requests) > 0, "{rl:?}");
    assert!(sum(&rl, |m| m.feedback_episodes) > 0, "{rl:?}");
}
