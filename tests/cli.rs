//! The `redraft` program end to end: init-model, generate and score on a fresh random model,
//! and clear errors with a non-zero exit on bad input.

mod common;

use common::{fails_with, init_model, model_config, ok, redraft};

use serde_json::Value;

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn generate_records_the_logprobs_that_score_recomputes() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    init_model(&model);
    for file in ["config.json", "model.safetensors", "byte_tokenizer.json"] {
        assert!(model.join(file).exists(), "{file}");
    }
    let m = model.to_str().unwrap();
    let sample = |seed: &str| {
        ok(redraft(&[
            "generate",
            "--model",
            m,
            "--prompt",
            "12+34=",
            "--max-new-tokens",
            "12",
            "--seed",
            seed,
            "--json",
        ]))
    };
    let first = sample("3");
    assert_eq!(first, sample("3"), "same seed, same sample");
    assert_ne!(first, sample("4"), "another seed, another sample");
    let line = &json_lines(&first)[0];
    let tokens: Vec<u64> = line["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap())
        .collect();
    let logprobs: Vec<f64> = line["logprobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_f64().unwrap())
        .collect();
    assert_eq!(tokens.len(), 12);

    // <|bos|> + "12+34=" + sampled tokens, scored by a full forward pass.
    let mut sequence = vec![256u64];
    sequence.extend("12+34=".bytes().map(u64::from));
    sequence.extend(&tokens);
    let input = tmp.path().join("score.jsonl");
    std::fs::write(
        &input,
        format!(
            "{}\n{{\"text\": \"12+34=\"}}\n",
            serde_json::json!({ "tokens": sequence })
        ),
    )
    .unwrap();
    let scored = json_lines(&ok(redraft(&[
        "score",
        "--model",
        m,
        "--input",
        input.to_str().unwrap(),
    ])));
    assert_eq!(scored.len(), 2);
    let all: Vec<f64> = scored[0]["logprobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(all.len(), sequence.len() - 1);
    for (sampled, rescored) in logprobs.iter().zip(&all[all.len() - tokens.len()..]) {
        assert!((sampled - rescored).abs() < 1e-4, "{sampled} vs {rescored}");
    }
    // Text input is BOS + bytes: the same prefix scores identically.
    let text: Vec<f64> = scored[1]["logprobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(text.len(), 6);
    for (a, b) in text.iter().zip(&all) {
        assert!((a - b).abs() < 1e-5);
    }
}

#[test]
fn greedy_generation_is_deterministic_and_writes_files_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    init_model(&model);
    let m = model.to_str().unwrap();
    let prompts = tmp.path().join("prompts.jsonl");
    std::fs::write(
        &prompts,
        "{\"prompt\": \"a\"}\n\n{\"tokens\": [256, 98, 99, 100]}\n",
    )
    .unwrap();
    let out = tmp.path().join("out.jsonl");
    let args = [
        "generate",
        "--model",
        m,
        "--input",
        prompts.to_str().unwrap(),
        "--temperature",
        "0",
        "--max-new-tokens",
        "5",
        "--json",
        "--output",
        out.to_str().unwrap(),
    ];
    ok(redraft(&args));
    let first = std::fs::read_to_string(&out).unwrap();
    assert_eq!(json_lines(&first).len(), 2);
    ok(redraft(&args));
    assert_eq!(first, std::fs::read_to_string(&out).unwrap());
}

#[test]
fn bad_input_gives_clear_errors_and_no_output_file() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    init_model(&model);
    let m = model.to_str().unwrap();

    fails_with(
        redraft(&["generate", "--model", "/nonexistent/model", "--prompt", "x"]),
        "/nonexistent/model",
    );

    let input = tmp.path().join("bad.jsonl");
    let out = tmp.path().join("out.jsonl");
    std::fs::write(&input, "{\"tokens\": [1, 2]}\n{\"tokens\": [1, 999]}\n").unwrap();
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
        "line 2",
    );
    assert!(!out.exists(), "no partial output file");
    std::fs::write(&input, "{\"tokens\": [1, 2]}\nnot json\n").unwrap();
    fails_with(
        redraft(&["score", "--model", m, "--input", input.to_str().unwrap()]),
        "bad.jsonl:2",
    );

    let long = "x".repeat(600);
    fails_with(
        redraft(&["generate", "--model", m, "--prompt", &long]),
        "exceeds the context",
    );

    let config = tmp.path().join("gpt2.json");
    std::fs::write(&config, r#"{"model_type": "gpt2", "vocab_size": 300}"#).unwrap();
    fails_with(
        redraft(&[
            "init-model",
            "--config",
            config.to_str().unwrap(),
            "--out",
            tmp.path().join("g").to_str().unwrap(),
        ]),
        "model_type `gpt2`",
    );
    std::fs::write(&config, r#"{"model_type": "llama", "vocab_size": 300, "hidden_size": 64, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4, "hidden_act": "gelu"}"#).unwrap();
    fails_with(
        redraft(&[
            "init-model",
            "--config",
            config.to_str().unwrap(),
            "--out",
            tmp.path().join("g").to_str().unwrap(),
        ]),
        "hidden_act `gelu`",
    );
    std::fs::write(&config, "{\"model_type\": ").unwrap();
    fails_with(
        redraft(&[
            "init-model",
            "--config",
            config.to_str().unwrap(),
            "--out",
            tmp.path().join("g").to_str().unwrap(),
        ]),
        "invalid JSON",
    );
    fails_with(
        redraft(&[
            "init-model",
            "--config",
            model_config().to_str().unwrap(),
            "--out",
            m,
        ]),
        "not empty",
    );

    // A checkpoint whose tensor does not match the config names the tensor and both shapes.
    let text = std::fs::read_to_string(model.join("config.json"))
        .unwrap()
        .replace("\"intermediate_size\": 384", "\"intermediate_size\": 320");
    std::fs::write(model.join("config.json"), text).unwrap();
    fails_with(
        redraft(&["generate", "--model", m, "--prompt", "x"]),
        "`model.layers.0.mlp.gate_proj.weight` has shape [384, 128], expected [320, 128]",
    );
}

#[test]
fn tasks_generate_then_verify_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    for family in [
        "arithmetic",
        "countdown",
        "knights_knaves",
        "shortest_path",
        "binary_matrix",
    ] {
        let problems = ok(redraft(&[
            "tasks", "generate", "--family", family, "--count", "4", "--seed", "11",
        ]));
        assert_eq!(
            problems,
            ok(redraft(&[
                "tasks", "generate", "--family", family, "--count", "4", "--seed", "11"
            ]))
        );
        let mut lines = String::new();
        for problem in json_lines(&problems) {
            let solution = problem["solution"].as_str().unwrap();
            lines += &serde_json::json!({"task": problem["task"], "problem": problem["problem"], "response": solution}).to_string();
            lines.push('\n');
            lines += &serde_json::json!({"task": problem["task"], "problem": problem["problem"], "response": "no idea"}).to_string();
            lines.push('\n');
        }
        let input = tmp.path().join(format!("{family}.jsonl"));
        std::fs::write(&input, lines).unwrap();
        let verdicts = json_lines(&ok(redraft(&[
            "verify",
            "--input",
            input.to_str().unwrap(),
        ])));
        assert_eq!(verdicts.len(), 8, "{family}");
        for pair in verdicts.chunks(2) {
            assert_eq!(
                pair[0]["correct"], true,
                "{family}: the reference solution verifies: {}",
                pair[0]
            );
            assert_eq!(
                pair[1]["correct"], false,
                "{family}: a non-answer does not: {}",
                pair[1]
            );
            assert!(pair[1]["diagnosis"]["kind"].is_string());
        }
    }
}

#[test]
fn verify_checks_math_answers_and_reports_malformed_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("math.jsonl");
    std::fs::write(&input, "{\"gold\": \"\\\\frac{1}{2}\", \"pred\": \"The answer is $0.5$.\"}\n{\"gold\": \"3\", \"pred\": \"\\\\boxed{4}\"}\n").unwrap();
    let verdicts = json_lines(&ok(redraft(&[
        "verify",
        "--input",
        input.to_str().unwrap(),
    ])));
    assert_eq!(verdicts[0]["correct"], true, "{}", verdicts[0]);
    assert_eq!(verdicts[1]["correct"], false);
    assert_eq!(verdicts[1]["reward"], 0.0);

    std::fs::write(
        &input,
        "{\"gold\": \"1\", \"pred\": \"1\"}\n{\"nothing\": 1}\n",
    )
    .unwrap();
    fails_with(
        redraft(&["verify", "--input", input.to_str().unwrap()]),
        "math.jsonl:2",
    );
    let skipped = ok(redraft(&[
        "verify",
        "--input",
        input.to_str().unwrap(),
        "--on-error",
        "skip",
    ]));
    // Skipping keeps one output line per input line: the malformed one becomes an error record.
    let skipped = json_lines(&skipped);
    assert_eq!(skipped.len(), 2);
    assert_eq!(skipped[0]["correct"], true);
    assert!(
        skipped[1]["error"]
            .as_str()
            .unwrap()
            .contains("math.jsonl:2")
    );
    fails_with(
        redraft(&["tasks", "generate", "--family", "chess", "--count", "1"]),
        "chess",
    );
}
