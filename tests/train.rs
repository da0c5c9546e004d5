//! `redraft train` and `redraft eval` as a user runs them: a run killed with SIGKILL and resumed
//! with `--resume` ends with exactly the metrics of an uninterrupted run (CPU), and bad
//! configurations are refused before any work.

mod common;

use common::{records, rl_steps};

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The one-layer model the integration tests train (shared with redraft-trainer's).
const TINY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/configs/models/test-byte-llama.json"
);

fn redraft() -> Command {
    Command::new(env!("CARGO_BIN_EXE_redraft"))
}

fn write_config(dir: &Path) -> std::path::PathBuf {
    let config = format!(
        r#"
        method = "rltf_sd"
        steps = 6
        [model]
        init = "{}"
        [task]
        family = "arithmetic"
        difficulty = {{ digits = 1 }}
        [rollout]
        prompts_per_step = 2
        group_size = 4
        max_new_tokens = 12
        [optimizer]
        lr = 1e-3
        [sft]
        steps = 3
        batch_size = 4
        [eval]
        problems = 4
        samples = 2
        every = 3
        [checkpoint]
        every = 1
        [templates]
        rltf_revision = "{{{{ question }}}}\nPrevious: {{{{ previous_solution }}}}\nCritique: {{{{ critique }}}}\n"
        rltf_critique = "{{{{ question }}}}\nPrevious: {{{{ previous_solution }}}}\nCritique: "
        "#,
        TINY
    );
    let path = dir.join("run.toml");
    std::fs::write(&path, config).unwrap();
    path
}

#[test]
fn a_killed_run_resumes_to_the_same_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let whole = dir.path().join("whole");
    let out = redraft()
        .args(["train", "--config"])
        .arg(&config)
        .arg("--run-dir")
        .arg(&whole)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("held-out pass@1"));

    // The same run, killed after its third RL step, then resumed.
    let cut = dir.path().join("cut");
    let mut child = redraft()
        .args(["train", "--config"])
        .arg(&config)
        .arg("--run-dir")
        .arg(&cut)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while rl_steps(&cut.join("metrics.jsonl")) < 3 {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the run did not progress"
        );
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let out = redraft()
        .arg("train")
        .arg("--resume")
        .arg(&cut)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    for file in ["metrics.jsonl", "eval.jsonl"] {
        let a = records(&whole.join(file));
        let b = records(&cut.join(file));
        assert_eq!(a.len(), b.len(), "{file}");
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x, y, "{file}");
        }
    }
    let state = |d: &Path| {
        let latest = std::fs::read_to_string(d.join("checkpoints/latest")).unwrap();
        std::fs::read(
            d.join("checkpoints")
                .join(latest.trim())
                .join("model/model.safetensors"),
        )
        .unwrap()
    };
    assert_eq!(state(&whole), state(&cut), "the final weights differ");
    assert!(whole.join("report.md").is_file());

    // `redraft eval` on the trained model, with the run's prompt templates.
    let eval = |templates: &Path| {
        redraft()
            .args([
                "eval",
                "--task",
                "arithmetic",
                "--difficulty",
                "digits=1",
                "--problems",
                "4",
                "--samples",
                "2",
                "--max-new-tokens",
                "12",
                "--with-feedback",
                "--self-feedback",
                "--templates",
            ])
            .arg(templates)
            .arg("--model")
            .arg(whole.join("final"))
            .arg("--out")
            .arg(dir.path().join("eval.json"))
            .output()
            .unwrap()
    };
    let out = eval(Path::new(TINY));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("test-byte-llama.json"));
    assert!(!dir.path().join("eval.json").exists());
    let out = eval(&whole.join("config.toml"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("pass@1") && stdout.contains("with feedback"),
        "{stdout}"
    );
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("eval.json")).unwrap())
            .unwrap();
    assert_eq!(json["problems"], 4);
    assert!(json["self_feedback"]["mean"].is_number());
}

#[test]
fn bad_configurations_are_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let run = dir.path().join("never");
    for (set, key) in [
        ("optimizer.lrr=1", "optimizer"),
        ("rollout.group_size=\"many\"", "rollout.group_size"),
        ("method.strategy.group_size=3", "method.strategy.group_size"),
        ("method.objective.kl_coef=0.1", "method.objective"),
        ("method=\"ppo\"", "method"),
    ] {
        let out = redraft()
            .args(["train", "--config"])
            .arg(&config)
            .args(["--set", set, "--run-dir"])
            .arg(&run)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{set}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(key), "{set}: {err}");
        assert!(!run.exists(), "{set}: work started");
    }
}
