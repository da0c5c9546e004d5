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
