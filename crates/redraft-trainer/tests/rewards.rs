//! Training with rewards other than the built-in verifier alone: `[[reward]]` tables with an
//! external program, and a verifier written in Rust given to the trainer.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use redraft_trainer::{RunDir, Silent, StepMetrics, TrainConfig, Trainer};
use redraft_verifier::{FnVerifier, Verdict};

const TINY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../configs/models/test-byte-llama.json"
);

fn config(extra: &str) -> TrainConfig {
    let text = format!(
        r#"
        method = "grpo"
        steps = 2
        [model]
        init = "{}"
        [task]
        family = "arithmetic"
        difficulty = {{ digits = 1 }}
        [rollout]
        prompts_per_step = 2
        group_size = 4
        max_new_tokens = 8
        [sft]
        steps = 0
        [eval]
        problems = 2
        samples = 1
        at_start = false
        [checkpoint]
        every = 0
        {extra}
        "#,
        Path::new(TINY).display()
    );
    TrainConfig::parse(&text, &[]).unwrap()
}

fn rl_metrics(run: &Path) -> Vec<StepMetrics> {
    RunDir::open(run)
        .metrics()
        .unwrap()
        .iter()
        .filter_map(|m| m.rl().cloned())
        .collect()
}

#[test]
fn grpo_trains_two_steps_with_a_command_reward() {
    let python = std::process::Command::new("python3")
        .args(["-c", "pass"])
        .status()
        .is_ok_and(|s| s.success());
    if !python {
        println!("skipped: python3 is not available");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Rewards short responses: 1 for an empty one, 0 from 10 bytes on.
    let script = dir.path().join("short.py");
    std::fs::write(
        &script,
        "import json, sys\nfor line in sys.stdin:\n    r = json.loads(line)['response']\n    print(json.dumps({'reward': max(0.0, 1 - len(r) / 10)}), flush=True)\n",
    )
    .unwrap();
    let extra = format!(
        "[[reward]]\ntype = \"task\"\n[[reward]]\ntype = \"command\"\nname = \"short\"\ncommand = [\"python3\", {:?}]\nweight = 0.5\ntimeout_s = 20.0\n",
        script.display().to_string()
    );
    let run = dir.path().join("run");
    let mut trainer = Trainer::new(config(&extra), &run).unwrap();
    let summary = trainer.run(&mut Silent).unwrap();
    assert_eq!(summary.state.step, 2);
    let rl = rl_metrics(&run);
    assert_eq!(rl.len(), 2);
    for m in &rl {
        let (short, task) = (m.reward["short"], m.reward["task"]);
        assert!((0.0..=1.0).contains(&short), "{m:?}");
        assert!(short > 0.0, "8-token responses earn some reward: {m:?}");
        assert_eq!(m.reward["short/failures"], 0.0, "{m:?}");
        // The episode reward is the weighted sum (single-turn: one turn per episode).
        assert!((m.reward_mean - (task + 0.5 * short)).abs() < 1e-4, "{m:?}");
    }
    // The saved configuration keeps the tables.
    let saved = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(saved.contains("[[reward]]"), "{saved}");
    TrainConfig::parse(&saved, &[]).unwrap();
}

#[test]
fn a_rust_verifier_scores_rollouts_sft_and_evaluation() {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let everything_right = FnVerifier::new(move |_, _| {
        seen.fetch_add(1, Ordering::SeqCst);
        Verdict::correct("custom")
    });
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut trainer = Trainer::new(config(""), &run)
        .unwrap()
        .with_verifier(Arc::new(everything_right))
        .unwrap();
    let summary = trainer.run(&mut Silent).unwrap();
    for m in rl_metrics(&run) {
        assert_eq!(m.reward_mean, 1.0, "{m:?}");
        assert_eq!(m.pass_rate, 1.0, "{m:?}");
    }
    let end = &summary.evals.last().unwrap().report;
    assert_eq!(end.pass_at_1.mean, 1.0);
    // 2 steps × 2 problems × 4 samples, and 2 held-out problems × 1 sample.
    assert!(calls.load(Ordering::SeqCst) >= 18);
}

#[test]
fn bad_reward_tables_are_config_errors() {
    let e = TrainConfig::parse(
        &format!(
            "[model]\ninit = \"{TINY}\"\n[task]\nfamily = \"arithmetic\"\n[[reward]]\ntype = \"http\"\nurl = \"nope\"\n"
        ),
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("reward") && e.contains("url"), "{e}");
}
