//! Runs that can never finish and sizes that cannot fit the machine (issue #16 items 5 and 6):
//! refused before any work with the keys and the estimate named, or, when only the feedback of
//! a run makes a turn too long, finished with that turn cut at the context.

use crate::common::{fails_with, model_config, ok, redraft};

use std::path::{Path, PathBuf};

use serde_json::Value;

/// The one-layer test model (context 1024).
fn test_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/models/test-byte-llama.json")
}

/// A copy of a model config.json at `dir/name` with `key` set to `value`.
fn edited_config(source: &Path, dir: &Path, name: &str, key: &str, value: Value) -> PathBuf {
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(source).unwrap()).unwrap();
    config[key] = value;
    let path = dir.join(name);
    std::fs::write(&path, config.to_string()).unwrap();
    path
}

/// A small run of `method` on the model config `model` (one-digit plain arithmetic).
fn run_config(dir: &Path, model: &Path, method: &str, extra: &str) -> PathBuf {
    let config = format!(
        r#"
        method = "{method}"
        steps = 2
        [model]
        init = '{}'
        [task]
        family = "arithmetic"
        difficulty = {{ digits = 1, prompt = "plain" }}
        [rollout]
        prompts_per_step = 2
        group_size = 2
        max_new_tokens = 16
        [eval]
        problems = 2
        samples = 1
        at_start = false
        with_feedback = false
        [checkpoint]
        every = 1
        keep = 2
        {extra}
        "#,
        model.display()
    );
    let path = dir.join(format!("{method}.toml"));
    std::fs::write(&path, config).unwrap();
    path
}

fn train(config: &Path, run: &Path, sets: &[&str]) -> std::process::Output {
    let mut args = vec![
        "train",
        "--config",
        config.to_str().unwrap(),
        "--run-dir",
        run.to_str().unwrap(),
    ];
    for s in sets {
        args.extend(["--set", s]);
    }
    redraft(&args)
}

/// The RL steps recorded in a run's metrics.jsonl.
fn rl_steps(run: &Path) -> usize {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"stage\":\"rl\""))
        .count()
}

// --- Item 5: a run that can never finish ---

#[test]
fn new_tokens_that_cannot_fit_the_context_are_refused_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let config = run_config(tmp.path(), &test_model(), "grpo", "");
    let run = tmp.path().join("never");
    for n in ["1000", "1000000000"] {
        let set = format!("rollout.max_new_tokens={n}");
        let out = train(&config, &run, &[&set]);
        fails_with(out, &format!("rollout.max_new_tokens = {n}"));
        assert!(!run.exists(), "{n}: work started");
    }
    // The later turns of a multi-turn method too: a revision template with 600 fixed tokens
    // leaves room for 500 new tokens in the first turn, never in the revision.
    let template = format!(
        "templates.rltf_revision='{}{{{{ question }}}}{{{{ previous_solution }}}}{{{{ critique }}}}'",
        "x".repeat(600)
    );
    let out = train(
        &config,
        &run,
        &["method=rltf_sd", &template, "rollout.max_new_tokens=500"],
    );
    fails_with(out, "rollout.max_new_tokens = 500");
    assert!(!run.exists(), "rltf_sd: work started");
    // `--check` validates everything (context and memory included) and starts nothing.
    let out = ok(redraft(&[
        "train",
        "--config",
        config.to_str().unwrap(),
        "--run-dir",
        run.to_str().unwrap(),
        "--check",
    ]));
    assert!(out.contains("ok"), "{out}");
    assert!(!run.exists(), "--check started work");
    let out = redraft(&[
        "train",
        "--config",
        config.to_str().unwrap(),
        "--check",
        "--set",
        "rollout.max_new_tokens=1000",
    ]);
    fails_with(out, "exceed the model's context of 1024");
}

/// A model with a 160-token context, and revision, regeneration and retry prompts with the
/// feedback (repeated for some) so that a later turn is often cut at the context or has no room
/// at all: the run finishes its steps and resumes.
#[test]
fn feedback_that_pushes_a_later_turn_past_the_context_ends_the_turn_not_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let model = edited_config(
        &test_model(),
        tmp.path(),
        "short.json",
        "max_position_embeddings",
        Value::from(160),
    );
    let templates = r#"
        [templates]
        rltf_revision = '{{ question }}|{{ previous_solution }}|{{ critique }}'
        mulferl_regen = '{{ question }}|{{ feedback }}{{ feedback }}'
        r3l_guidance_system = '{{ system }}{% for i in range(4) %}{{ guidance }}{% endfor %}'
        r3l_math_retry = 'Not {{ answer }}.'
        r3l_invalid_format = 'Bad format.'
        "#;
    for (method, sets) in [
        (
            "rltf_sd",
            &[
                "method.strategy.early_termination=false",
                "method.strategy.group_size=2",
            ][..],
        ),
        (
            "r3l",
            &[
                "method.strategy.max_attempts=3",
                "method.strategy.base_per_problem=2",
            ][..],
        ),
        ("mulferl", &[][..]),
    ] {
        let config = run_config(tmp.path(), &model, method, templates);
        let run = tmp.path().join(format!("run-{method}"));
        let mut sets = sets.to_vec();
        sets.push("rollout.max_new_tokens=48");
        let out = train(&config, &run, &sets);
        assert!(
            out.status.success(),
            "{method}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(rl_steps(&run), 2, "{method}");
        // Back to the first checkpoint: `--resume` runs step 2 again and finishes.
        std::fs::write(run.join("checkpoints/latest"), "step-00000001").unwrap();
        ok(redraft(&["train", "--resume", run.to_str().unwrap()]));
        assert_eq!(rl_steps(&run), 2, "{method} resumed");
    }
}

// --- Item 6: no size check before allocating ---

#[test]
fn init_model_refuses_a_model_larger_than_the_machine() {
    let tmp = tempfile::tempdir().unwrap();
    for (key, value) in [
        ("hidden_size", 1_000_000_000u64),
        ("num_hidden_layers", 1_000_000),
    ] {
        let config = edited_config(
            &model_config(),
            tmp.path(),
            "big.json",
            key,
            Value::from(value),
        );
        let out_dir = tmp.path().join("model");
        let out = redraft(&[
            "init-model",
            "--config",
            config.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
        ]);
        fails_with(out, "estimated");
        assert!(!out_dir.exists(), "{key}: a folder was left behind");
        let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "{key}: {left:?}");
    }
    // A limit of one's own: the tiny model (about 3 MB of weights) does not fit 1 MiB.
    let out_dir = tmp.path().join("model");
    let args = |limit: &'static str| {
        vec![
            "init-model".to_string(),
            "--config".into(),
            model_config().to_str().unwrap().into(),
            "--out".into(),
            out_dir.to_str().unwrap().into(),
            "--max-memory".into(),
            limit.into(),
        ]
    };
    let run = |limit| {
        let a = args(limit);
        redraft(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    fails_with(run("1MiB"), "--max-memory");
    assert!(!out_dir.exists());
    ok(run("1GiB"));
    assert!(out_dir.join("model.safetensors").is_file());
}

#[test]
fn train_refuses_batches_larger_than_the_machine_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let config = run_config(tmp.path(), &test_model(), "grpo", "");
    let run = tmp.path().join("never");
    for set in [
        "rollout.prompts_per_step=100000000",
        "rollout.group_size=100000000",
    ] {
        let out = train(&config, &run, &[set]);
        fails_with(out, "estimated");
        assert!(!run.exists(), "{set}: work started");
    }
    let big = edited_config(
        &test_model(),
        tmp.path(),
        "big.json",
        "hidden_size",
        Value::from(1_000_000_000u64),
    );
    let set = format!("model.init='{}'", big.display());
    fails_with(train(&config, &run, &[&set]), "estimated");
    assert!(!run.exists(), "big model: work started");
    // A limit of one's own, also as a config key.
    fails_with(train(&config, &run, &["max_memory=\"64KB\""]), "max_memory");
    assert!(!run.exists(), "max_memory: work started");
    let out = redraft(&[
        "train",
        "--config",
        config.to_str().unwrap(),
        "--run-dir",
        run.to_str().unwrap(),
        "--max-memory",
        "64KB",
    ]);
    fails_with(out, "--max-memory");
    assert!(!run.exists(), "--max-memory: work started");
}
