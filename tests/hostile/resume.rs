//! Runs that are killed and resumed, and feedback providers that never answer: a resumed run's
//! files equal the uninterrupted run's, leftovers of killed writes are removed, and a hung judge
//! costs a step at most its feedback budget, with a warning and the figures it spoiled reported
//! as missing.

use crate::common::{records, rl_steps};

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The one-layer model the training tests use.
fn tiny() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/models/test-byte-llama.json")
}

fn train(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_redraft"))
        .arg("train")
        .args(args)
        .output()
        .expect("redraft runs")
}

/// A small RLTF-SD run with a checkpoint every step; `extra` is appended to the TOML.
fn write_config(dir: &Path, steps: u64, extra: &str) -> PathBuf {
    let config = format!(
        r#"
        steps = {steps}
        [model]
        init = "{}"
        [task]
        family = "arithmetic"
        difficulty = {{ digits = 1 }}
        [rollout]
        prompts_per_step = 2
        group_size = 2
        max_new_tokens = 8
        [optimizer]
        lr = 1e-3
        [sft]
        steps = 2
        batch_size = 4
        [eval]
        problems = 3
        samples = 2
        every = 2
        [checkpoint]
        every = 1
        [method]
        type = "rltf_sd"
        {extra}
        "#,
        tiny().display()
    );
    let path = dir.join("run.toml");
    std::fs::write(&path, config).unwrap();
    path
}

/// Every path under `dir` whose name looks like a temporary file of an atomic write.
fn temporaries(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if entry.file_name().to_string_lossy().contains(".tmp") {
            out.push(path.clone());
        }
        if path.is_dir() {
            out.extend(temporaries(&path));
        }
    }
    out
}

#[test]
fn a_resumed_run_equals_the_uninterrupted_one_and_leaves_no_temporaries() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 4, "");
    let whole = dir.path().join("whole");
    let out = train(&[
        "--config".as_ref(),
        config.as_os_str(),
        "--run-dir".as_ref(),
        whole.as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The same run, killed (SIGKILL) after its second RL step.
    let cut = dir.path().join("cut");
    let mut child = Command::new(env!("CARGO_BIN_EXE_redraft"))
        .args(["train", "--config"])
        .arg(&config)
        .arg("--run-dir")
        .arg(&cut)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while rl_steps(&cut.join("metrics.jsonl")) < 2 && child.try_wait().unwrap().is_none() {
        assert!(start.elapsed() < Duration::from_secs(120), "no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // What a process killed while writing leaves behind (another pid than any live one), and
    // things of the user's that look alike but are not ours to remove.
    let checkpoints = cut.join("checkpoints");
    let stale = [
        checkpoints.join(".step-00000003.tmp-4000000"),
        checkpoints.join(".latest.tmp-4000001"),
        cut.join(".metrics.jsonl.tmp-4000002"),
        cut.join(".final.tmp-4000003"),
    ];
    std::fs::create_dir_all(stale[0].join("model")).unwrap();
    std::fs::write(
        stale[0].join("model/.model.safetensors.tmp-4000000"),
        b"torn",
    )
    .unwrap();
    std::fs::write(&stale[1], b"step-").unwrap();
    std::fs::write(&stale[2], b"{\"stage\"").unwrap();
    std::fs::create_dir_all(&stale[3]).unwrap();
    let user = [cut.join("notes.tmp"), checkpoints.join(".keep.tmp-me")];
    for u in &user {
        std::fs::write(u, b"mine").unwrap();
    }
    let kept_before = std::fs::read_to_string(cut.join("metrics.jsonl")).unwrap();

    let out = train(&["--resume".as_ref(), cut.as_os_str()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    for file in ["metrics.jsonl", "eval.jsonl", "transcripts.jsonl"] {
        let (a, b) = (records(&whole.join(file)), records(&cut.join(file)));
        assert!(!a.is_empty(), "{file} is empty");
        assert_eq!(a.len(), b.len(), "{file}: a different number of lines");
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            assert_eq!(x, y, "{file} line {}", i + 1);
        }
    }
    // The lines the resume kept are the killed run's, byte for byte: one SFT line per SFT step
    // and the RL steps up to the checkpoint it resumed from.
    let after = std::fs::read_to_string(cut.join("metrics.jsonl")).unwrap();
    let kept: Vec<&str> = kept_before.lines().filter(|l| after.contains(l)).collect();
    assert!(kept.len() >= 3, "fewer lines kept than SFT steps + 1");
    assert!(after.starts_with(&(kept.join("\n") + "\n")));
    for name in ["model.safetensors", "config.json"] {
        assert_eq!(
            std::fs::read(whole.join("final").join(name)).unwrap(),
            std::fs::read(cut.join("final").join(name)).unwrap(),
            "final/{name} differs"
        );
    }
    for s in &stale {
        assert!(!s.exists(), "{} was left behind", s.display());
    }
    for u in &user {
        assert!(u.exists(), "{} was removed", u.display());
    }
    let left: Vec<PathBuf> = temporaries(&cut)
        .into_iter()
        .filter(|p| !user.contains(p))
        .collect();
    assert!(left.is_empty(), "temporaries left: {left:?}");
    assert!(temporaries(&whole).is_empty());
}

/// An HTTP server on 127.0.0.1 that accepts connections, reads the requests and never answers.
fn silent_judge() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut buf = [0u8; 4096];
                while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
            });
        }
    });
    format!("http://{addr}/v1")
}

/// A one-step run whose critic is [`silent_judge`], with `budget_ms` of feedback time per step
/// (and the default one-minute timeout and three retries per request).
fn judge_config(dir: &Path, budget_ms: u64) -> PathBuf {
    let url = silent_judge();
    write_config(
        dir,
        1,
        &format!(
            r#"
            [method.feedback]
            type = "llm_judge"
            endpoint = {{ base_url = "{url}", model = "judge", budget_ms = {budget_ms} }}
            "#
        ),
    )
}

#[test]
fn a_judge_that_never_answers_costs_a_step_its_budget_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let config = judge_config(dir.path(), 1500);
    let run = dir.path().join("run");
    let start = Instant::now();
    let out = train(&[
        "--config".as_ref(),
        config.as_os_str(),
        "--run-dir".as_ref(),
        run.as_os_str(),
        "--set".as_ref(),
        "eval.with_feedback=false".as_ref(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // One step and no feedback evaluation: one budget, plus the run itself.
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "the run took {:?}",
        start.elapsed()
    );
    let line = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .find(|l| l.contains("\"stage\":\"rl\""))
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .expect("an RL step");
    let rollout_s = line["rollout_s"].as_f64().unwrap();
    assert!(rollout_s < 1.5 + 10.0, "the rollout took {rollout_s} s");
    let requests = line["feedback_requests"].as_u64().unwrap();
    assert!(requests > 0, "{line}");
    assert_eq!(line["feedback_failures"].as_u64(), Some(requests), "{line}");
    assert_eq!(
        line["feedback_failure_kinds"]["budget_exhausted"].as_u64(),
        Some(requests),
        "{line}"
    );
    assert!(
        stderr.contains("WARN") && stderr.contains("llm_judge") && stderr.contains("budget"),
        "no warning naming the provider and the failure: {stderr}"
    );
}

#[test]
fn an_evaluation_without_feedback_reports_the_figure_missing() {
    let dir = tempfile::tempdir().unwrap();
    let config = judge_config(dir.path(), 500);
    let run = dir.path().join("run");
    let out = train(&[
        "--config".as_ref(),
        config.as_os_str(),
        "--run-dir".as_ref(),
        run.as_os_str(),
        "--set".as_ref(),
        "steps=0".as_ref(),
        "--set".as_ref(),
        "sft.steps=0".as_ref(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let eval_line = stderr
        .lines()
        .find(|l| l.starts_with("eval @"))
        .unwrap_or_else(|| panic!("no eval line: {stderr}"));
    assert!(
        eval_line.contains("with feedback –") && !eval_line.contains("with feedback 0"),
        "{eval_line}"
    );
    let eval: Value = serde_json::from_str(
        std::fs::read_to_string(run.join("eval.jsonl"))
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    let report = &eval["report"];
    assert!(report["with_feedback"].is_null(), "{report}");
    assert_eq!(report["with_feedback_missing"], 3, "{report}");
    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(
        md.contains("no feedback"),
        "report.md does not say the feedback figure is missing: {md}"
    );
}
