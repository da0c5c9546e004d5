//! Malformed models, configs, problems and outputs given to the one-shot commands.

use crate::common::{fails_with, files_in, init_model, ok, redraft};

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Sets `key` of the model's config.json to `value`.
fn edit_config(model: &Path, key: &str, value: Value) {
    let path = model.join("config.json");
    let mut config: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    config[key] = value;
    std::fs::write(&path, config.to_string()).unwrap();
}

/// Overwrites every weight of the model with NaN (all-ones bits, in every float format).
fn nan_weights(model: &Path) {
    let path = model.join("model.safetensors");
    let mut bytes = std::fs::read(&path).unwrap();
    let header = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    bytes[8 + header..].fill(0xFF);
    std::fs::write(&path, bytes).unwrap();
}

// --- Item 7: a verifier panic must not take `verify --on-error skip` down ---

#[test]
fn overlapping_knights_knaves_names_do_not_kill_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.jsonl");
    let problem = |names: Value| {
        serde_json::json!({"task": "knights_knaves", "problem": {"names": names,
            "statements": [{"is": {"person": 0, "knight": true}}, {"is": {"person": 1, "knight": true}}],
            "knights": [true, true]},
            "response": "<answer>Mary Ann is a knight, Ann is a knight</answer>"})
    };
    let lines = [
        problem(serde_json::json!(["Mary Ann", "Ann"])),
        problem(serde_json::json!(["Ann", "Ann"])),
        serde_json::json!({"gold": "2", "pred": "\\boxed{2}"}),
    ];
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&input, text).unwrap();
    let out = ok(redraft(&[
        "verify",
        "--input",
        input.to_str().unwrap(),
        "--on-error",
        "skip",
    ]));
    let verdicts: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(verdicts.len(), 3, "{out}");
    assert_eq!(verdicts[0]["correct"], true, "{out}");
    // Repeated names are an invalid problem: refused, naming what is wrong.
    let error = verdicts[1]["error"].as_str().unwrap();
    assert!(
        error.contains("in.jsonl:2") && error.contains("repeated"),
        "{error}"
    );
    assert_eq!(verdicts[2]["correct"], true);
}

// --- Item 8: wrong verdicts at the edges ---

#[test]
fn verify_is_exact_near_two_to_the_64_and_equal_above_the_size_cap() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.jsonl");
    let big = "7".repeat(2 << 20);
    let lines = [
        serde_json::json!({"task": "arithmetic", "problem": {"a": u64::MAX, "b": u64::MAX, "op": "mul"},
            "response": "<answer>340282366920938463426481119284349108225</answer>"}),
        serde_json::json!({"task": "arithmetic", "problem": {"a": u64::MAX, "b": u64::MAX, "op": "add"},
            "response": "<answer>36893488147419103230</answer>"}),
        serde_json::json!({"gold": big, "pred": big}),
    ];
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&input, text).unwrap();
    let out = ok(redraft(&["verify", "--input", input.to_str().unwrap()]));
    for (i, line) in out.lines().enumerate() {
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["correct"], true, "line {}: {v}", i + 1);
    }
}

#[test]
fn invalid_problems_are_refused_naming_what_is_wrong() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.jsonl");
    std::fs::write(
        &input,
        "{\"task\": \"binary_matrix\", \"problem\": {\"matrix\": [[1, 1]]}, \"response\": \"<answer>1 1</answer>\"}\n",
    )
    .unwrap();
    fails_with(
        redraft(&["verify", "--input", input.to_str().unwrap()]),
        "no 0",
    );
}

// --- Item 9: silent NaNs and configs that cannot work ---

#[test]
fn nan_weights_are_an_error_naming_the_first_position() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    init_model(&model);
    nan_weights(&model);
    let m = model.to_str().unwrap();
    let input = tmp.path().join("in.jsonl");
    std::fs::write(&input, "{\"text\": \"12+34=46\"}\n").unwrap();
    let out = tmp.path().join("scores.jsonl");
    fails_with(
        redraft(&[
            "score",
            "--model",
            m,
            "--input",
            input.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ]),
        "line 1, position 0",
    );
    let gen_out = tmp.path().join("gen.jsonl");
    fails_with(
        redraft(&[
            "generate",
            "--model",
            m,
            "--prompt",
            "12+",
            "--max-new-tokens",
            "4",
            "--json",
            "--output",
            gen_out.to_str().unwrap(),
        ]),
        "prompt 1, step 0",
    );
    assert_eq!(files_in(tmp.path()), ["in.jsonl", "model"]);
}

#[test]
fn configs_that_cannot_work_are_refused_by_key() {
    for (key, value) in [
        ("rms_norm_eps", serde_json::json!(-1e-6)),
        ("eos_token_id", serde_json::json!(100_000)),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let model = tmp.path().join("model");
        init_model(&model);
        edit_config(&model, key, value);
        fails_with(
            redraft(&[
                "score",
                "--model",
                model.to_str().unwrap(),
                "--input",
                "/dev/null",
            ]),
            &format!("`{key}`"),
        );
    }
}

// --- Item 12: outputs checked before the work, output streamed ---

#[test]
fn an_output_in_a_missing_folder_fails_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no/such/folder/out.jsonl");
    let missing = missing.to_str().unwrap();
    let start = Instant::now();
    // A trillion problems: only a check before the work can fail quickly.
    fails_with(
        redraft(&[
            "tasks",
            "generate",
            "--family",
            "arithmetic",
            "--count",
            "1000000000000",
            "--output",
            missing,
        ]),
        "no/such/folder",
    );
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
    let model = tmp.path().join("model");
    init_model(&model);
    let m = model.to_str().unwrap();
    let input = tmp.path().join("in.jsonl");
    std::fs::write(&input, "{\"gold\": \"1\", \"pred\": \"1\"}\n").unwrap();
    let i = input.to_str().unwrap();
    for args in [
        vec!["verify", "--input", i, "--output", missing],
        vec![
            "score",
            "--model",
            m,
            "--input",
            "/dev/null",
            "--output",
            missing,
        ],
        vec![
            "generate", "--model", m, "--prompt", "1", "--output", missing,
        ],
        vec![
            "eval",
            "--model",
            m,
            "--task",
            "arithmetic",
            "--problems",
            "1",
            "--out",
            missing,
        ],
    ] {
        fails_with(redraft(&args), "no/such/folder");
    }
}

#[test]
fn tasks_generate_streams_its_output() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_redraft"))
        .args([
            "tasks",
            "generate",
            "--family",
            "arithmetic",
            "--count",
            "1000000000000",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut first = String::new();
        let _ = BufReader::new(stdout).read_line(&mut first);
        let _ = tx.send(first);
    });
    let first = rx.recv_timeout(Duration::from_secs(20));
    child.kill().unwrap();
    child.wait().unwrap();
    let first = first.expect("no line within 20 s: the output is not streamed");
    let line: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(line["id"], "arithmetic-0-0");
}

#[test]
fn a_failed_run_leaves_no_output_and_no_temporary_file() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.jsonl");
    std::fs::write(&input, "{\"gold\": \"1\", \"pred\": \"1\"}\ngarbage\n").unwrap();
    let out: PathBuf = tmp.path().join("out.jsonl");
    fails_with(
        redraft(&[
            "verify",
            "--input",
            input.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ]),
        "in.jsonl:2",
    );
    assert_eq!(files_in(tmp.path()), ["in.jsonl"]);
    ok(redraft(&[
        "tasks",
        "generate",
        "--family",
        "countdown",
        "--count",
        "3",
        "--output",
        out.to_str().unwrap(),
    ]));
    assert_eq!(files_in(tmp.path()), ["in.jsonl", "out.jsonl"]);
    assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 3);
}
