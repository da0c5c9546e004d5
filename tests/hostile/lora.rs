//! `--adapter DIR` (a PEFT LoRA adapter) on generate, score and serve: the adapter's log-probs
//! match peft's, and an adapter that does not fit the model is refused before any work, naming
//! the key or tensor, with no output file.

use crate::common::{fails_with, init_model, ok, redraft};

use std::path::{Path, PathBuf};

use serde_json::Value;

/// redraft-model's LoRA fixtures (scripts/make_lora_fixtures.py).
fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("crates/redraft-model/tests/fixtures")
        .join(name)
}

/// The adapters' base (the tiny Llama fixture) as a model folder the program opens: its weights
/// with a byte tokenizer beside them (scoring reads token ids, so the tokenizer is never used).
fn base_model(root: &Path) -> PathBuf {
    let byte = root.join("byte");
    init_model(&byte);
    let dir = root.join("base");
    std::fs::create_dir_all(&dir).unwrap();
    for file in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture("llama").join(file), dir.join(file)).unwrap();
    }
    std::fs::copy(
        byte.join("byte_tokenizer.json"),
        dir.join("byte_tokenizer.json"),
    )
    .unwrap();
    dir
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The real tokens of each row of the base fixture's batch (its left padding removed).
fn rows() -> Vec<Vec<u64>> {
    let r = read_json(&fixture("llama").join("reference.json"));
    let ids = r["input_ids"].as_array().unwrap();
    let mask = r["attention_mask"].as_array().unwrap();
    ids.iter()
        .zip(mask)
        .map(|(ids, mask)| {
            ids.as_array()
                .unwrap()
                .iter()
                .zip(mask.as_array().unwrap())
                .filter(|(_, m)| m.as_u64() == Some(1))
                .map(|(id, _)| id.as_u64().unwrap())
                .collect()
        })
        .collect()
}

#[test]
fn score_with_a_peft_adapter_matches_peft() {
    let root = tempfile::tempdir().unwrap();
    let model = base_model(root.path());
    let input = root.path().join("rows.jsonl");
    let lines: Vec<String> = rows()
        .iter()
        .map(|r| serde_json::json!({ "tokens": r }).to_string())
        .collect();
    std::fs::write(&input, lines.join("\n")).unwrap();
    for name in ["llama-lora", "llama-rslora"] {
        let out = ok(redraft(&[
            "score",
            "--model",
            model.to_str().unwrap(),
            "--adapter",
            fixture(name).to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--batch-size",
            "1",
        ]));
        // peft's log-probs, laid out over the padded batch: row r's real targets are its last ones.
        let theirs = read_json(&fixture(name).join("reference.json"));
        let mut worst = 0.0f64;
        for (r, line) in out.lines().enumerate() {
            let ours: Vec<f64> = serde_json::from_str::<Value>(line).unwrap()["logprobs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            let full = theirs["logprobs"][r].as_array().unwrap();
            let tail = &full[full.len() - ours.len()..];
            for (a, b) in ours.iter().zip(tail) {
                worst = worst.max((a - b.as_f64().unwrap()).abs());
            }
        }
        assert_eq!(out.lines().count(), 3);
        assert!(worst <= 1e-4, "{name}: max |log-prob difference| {worst:e}");
    }
}

/// Copies adapter fixture `name` into `dir`, letting `edit` change its config.
fn edited_adapter(dir: &Path, name: &str, edit: impl FnOnce(&mut Value)) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    for file in ["adapter_config.json", "adapter_model.safetensors"] {
        std::fs::copy(fixture(name).join(file), dir.join(file)).unwrap();
    }
    let path = dir.join("adapter_config.json");
    let mut config = read_json(&path);
    edit(&mut config);
    std::fs::write(&path, config.to_string()).unwrap();
    dir.into()
}

#[test]
fn adapters_that_do_not_fit_are_refused_before_any_output() {
    let root = tempfile::tempdir().unwrap();
    let model = base_model(root.path());
    let input = root.path().join("rows.jsonl");
    std::fs::write(&input, "{\"tokens\": [1, 2, 3]}\n").unwrap();
    let out_dir = root.path().join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let output = out_dir.join("scores.jsonl");
    let score = |adapter: &Path| {
        redraft(&[
            "score",
            "--model",
            model.to_str().unwrap(),
            "--adapter",
            adapter.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
        ])
    };
    let zero = edited_adapter(&root.path().join("zero"), "llama-lora", |c| {
        c["r"] = 0.into()
    });
    fails_with(score(&zero), "`r`: must be at least 1");
    let big = edited_adapter(&root.path().join("big"), "llama-lora", |c| {
        c["r"] = 100.into()
    });
    fails_with(score(&big), "`r`: 100 is larger than");
    let unknown = edited_adapter(&root.path().join("unknown"), "llama-lora", |c| {
        c["target_modules"] = serde_json::json!(["q_proj", "c_attn"])
    });
    fails_with(score(&unknown), "the model has no module `c_attn`");
    fails_with(score(&root.path().join("missing")), "adapter_config.json");
    assert!(std::fs::read_dir(&out_dir).unwrap().next().is_none());

    // An adapter made for another base: the tiny byte Llama (hidden 128) is not its base.
    let other = root.path().join("byte");
    let adapter = fixture("llama-lora");
    let tensor = "adapter tensor `base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight` has shape [4, 64]";
    fails_with(
        redraft(&[
            "generate",
            "--model",
            other.to_str().unwrap(),
            "--adapter",
            adapter.to_str().unwrap(),
            "--prompt",
            "hi",
        ]),
        tensor,
    );
    fails_with(
        redraft(&[
            "serve",
            "--model",
            other.to_str().unwrap(),
            "--adapter",
            adapter.to_str().unwrap(),
            "--port",
            "0",
        ]),
        tensor,
    );
}

/// A two-step GRPO run with a KL term (so it needs a reference) of LoRA adapters on `model`.
fn lora_run_config(dir: &Path, model: &Path, lora: &str) -> PathBuf {
    let config = format!(
        r#"
        method = "grpo"
        steps = 2
        [model]
        path = '{}'
        [task]
        family = "arithmetic"
        difficulty = {{ digits = 1, prompt = "plain" }}
        [rollout]
        prompts_per_step = 2
        group_size = 2
        max_new_tokens = 8
        [optimizer]
        lr = 1e-2
        [eval]
        problems = 2
        samples = 1
        at_start = false
        with_feedback = false
        [checkpoint]
        every = 1
        keep = 2
        [lora]
        {lora}
        "#,
        model.display()
    );
    let path = dir.join("lora.toml");
    std::fs::write(&path, config).unwrap();
    path
}

fn train(config: &Path, run: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "train",
        "--config",
        config.to_str().unwrap(),
        "--run-dir",
        run.to_str().unwrap(),
        "--set",
        "method.objective.kl_coef=0.1",
    ];
    args.extend(extra);
    redraft(&args)
}

#[test]
fn lora_settings_that_do_not_fit_are_refused_before_the_run() {
    let root = tempfile::tempdir().unwrap();
    let model = root.path().join("model");
    init_model(&model);
    let run = root.path().join("run");
    let cases = [
        (
            "rank = 0\nalpha = 8\ntarget_modules = [\"q_proj\"]",
            "[lora]: invalid LoRA setting `rank`: must be at least 1",
        ),
        // The tiny model's q_proj is [128, 128].
        (
            "rank = 129\nalpha = 8\ntarget_modules = [\"q_proj\"]",
            "`rank`: 129 is larger than q_proj",
        ),
        (
            "rank = 2\nalpha = 8\ntarget_modules = [\"q_proj\", \"qkv_proj\"]",
            "`target_modules`: the model has no module `qkv_proj`",
        ),
        (
            "rank = 2\nalpha = 8\ntarget_modules = [\"q_proj\"]\nranks = 3",
            "ranks",
        ),
    ];
    for (lora, expected) in cases {
        let config = lora_run_config(root.path(), &model, lora);
        fails_with(train(&config, &run, &[]), expected);
        assert!(!run.exists(), "{lora}: a run folder was made");
    }
    let config = root.path().join("full.toml");
    let text = std::fs::read_to_string(lora_run_config(
        root.path(),
        &model,
        "rank = 2\nalpha = 4\ntarget_modules = [\"q_proj\"]",
    ))
    .unwrap();
    std::fs::write(
        &config,
        text.replace("[lora]\n", "")
            .replace("rank = 2\nalpha = 4\ntarget_modules = [\"q_proj\"]", ""),
    )
    .unwrap();
    fails_with(
        train(&config, &run, &["--merge"]),
        "--merge needs a [lora] table",
    );
    assert!(!run.exists());
}

/// The log-probs `redraft score` prints for `rows` (extra arguments: the model and adapter).
fn score(args: &[&str], input: &Path) -> Vec<Vec<f64>> {
    let mut all = vec!["score", "--input", input.to_str().unwrap()];
    all.extend(args);
    ok(redraft(&all))
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["logprobs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect()
        })
        .collect()
}

#[test]
fn a_lora_run_writes_peft_adapters_resumes_and_merges() {
    let root = tempfile::tempdir().unwrap();
    let model = root.path().join("model");
    init_model(&model);
    let lora = "rank = 4\nalpha = 8\ndropout = 0.1\ntarget_modules = [\"q_proj\", \"v_proj\", \"down_proj\"]";
    let config = lora_run_config(root.path(), &model, lora);
    let run = root.path().join("run");
    ok(train(&config, &run, &["--merge"]));
    // No full copy of the model anywhere: the reference is the base with adapters off.
    assert!(!run.join("reference").exists());
    for dir in [
        run.join("final"),
        run.join("checkpoints/step-00000001/adapter"),
        run.join("checkpoints/step-00000002/adapter"),
    ] {
        let config = read_json(&dir.join("adapter_config.json"));
        assert_eq!(config["r"], 4, "{}", dir.display());
        assert_eq!(config["lora_alpha"], 8.0);
        assert!(dir.join("adapter_model.safetensors").is_file());
        assert!(!dir.join("model.safetensors").exists());
    }
    // The adapter moved: scoring with it differs from the base; the merged model scores the
    // same as base + adapter.
    let input = root.path().join("rows.jsonl");
    std::fs::write(&input, "{\"text\": \"12+7=19\"}\n{\"text\": \"3+4=\"}\n").unwrap();
    let (m, f, merged) = (
        model.to_str().unwrap(),
        run.join("final"),
        run.join("merged"),
    );
    let base = score(&["--model", m], &input);
    let adapted = score(&["--model", m, "--adapter", f.to_str().unwrap()], &input);
    let folded = score(&["--model", merged.to_str().unwrap()], &input);
    let diff = |a: &[Vec<f64>], b: &[Vec<f64>]| {
        a.iter()
            .flatten()
            .zip(b.iter().flatten())
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max)
    };
    assert!(diff(&base, &adapted) > 1e-4, "the adapter did not train");
    assert!(diff(&adapted, &folded) < 1e-4, "merged differs");

    // Resuming from the first checkpoint ends with the same adapter.
    let again = root.path().join("again");
    std::fs::create_dir_all(again.join("checkpoints")).unwrap();
    let copy = |from: &Path, to: &Path| {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            if e.path().is_file() {
                std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
            }
        }
    };
    copy(&run, &again);
    copy(
        &run.join("checkpoints/step-00000001"),
        &again.join("checkpoints/step-00000001"),
    );
    copy(
        &run.join("checkpoints/step-00000001/adapter"),
        &again.join("checkpoints/step-00000001/adapter"),
    );
    std::fs::write(again.join("checkpoints/latest"), "step-00000001").unwrap();
    if run.join("tokenizer").is_dir() {
        copy(&run.join("tokenizer"), &again.join("tokenizer"));
    }
    ok(redraft(&["train", "--resume", again.to_str().unwrap()]));
    let same = std::fs::read(run.join("final/adapter_model.safetensors")).unwrap()
        == std::fs::read(again.join("final/adapter_model.safetensors")).unwrap();
    assert!(same, "the resumed run's adapter differs");
}
