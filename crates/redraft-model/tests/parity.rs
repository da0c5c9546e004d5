//! Numerical parity with transformers on tiny random checkpoints (see
//! scripts/make_model_fixtures.py), and the typed errors of bad checkpoints and inputs.
//!
//! The device is `cpu` unless `REDRAFT_TEST_DEVICE` names another one compiled into the build
//! (CI runs this file again with `--features wgpu` and `REDRAFT_TEST_DEVICE=wgpu`).

mod common;

use common::{device, fixture};

use std::path::Path;

use redraft_model::burn::tensor::{Device, Int, Tensor, TensorData};
use redraft_model::{
    CausalLm, Error, LogitsFor, ModelConfig, SaveDType, entropy, next_token_logprobs,
    token_logprobs,
};

const TOLERANCE: f32 = 1e-4;
const FIXTURES: [&str; 3] = ["llama", "llama3-bf16", "qwen2-sharded"];

#[derive(serde::Deserialize)]
struct Reference {
    input_ids: Vec<Vec<i64>>,
    attention_mask: Vec<Vec<u8>>,
    logprobs: Vec<Vec<f32>>,
    entropy: Vec<Vec<f32>>,
}

fn reference(name: &str) -> Reference {
    serde_json::from_str(&std::fs::read_to_string(fixture(name).join("reference.json")).unwrap())
        .unwrap()
}

fn to_rows(t: Tensor<2>) -> Vec<Vec<f32>> {
    let [b, n] = t.dims();
    let flat = t
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap();
    (0..b).map(|r| flat[r * n..(r + 1) * n].to_vec()).collect()
}

fn tokens(reference: &Reference, device: &Device) -> (Tensor<2, Int>, Vec<usize>) {
    let (b, t) = (reference.input_ids.len(), reference.input_ids[0].len());
    let flat: Vec<i64> = reference.input_ids.concat();
    let pad = reference
        .attention_mask
        .iter()
        .map(|m| m.iter().take_while(|&&x| x == 0).count())
        .collect();
    (
        Tensor::from_data(TensorData::new(flat, [b, t]), device),
        pad,
    )
}

/// Max |ours - theirs| over positions whose token and next token are real.
fn max_diff(ours: &[Vec<f32>], theirs: &[Vec<f32>], pad: &[usize]) -> f32 {
    let mut worst = 0.0f32;
    for (row, p) in pad.iter().enumerate() {
        for t in *p..ours[row].len() {
            worst = worst.max((ours[row][t] - theirs[row][t]).abs());
        }
    }
    worst
}

#[test]
fn full_forward_matches_transformers() {
    let device = device();
    for name in FIXTURES {
        let model = CausalLm::from_pretrained(&fixture(name), &device).unwrap();
        let r = reference(name);
        let (ids, pad) = tokens(&r, &device);
        let logits = model.forward(ids.clone(), &pad).unwrap();
        let diff = max_diff(
            &to_rows(next_token_logprobs(logits.clone(), ids)),
            &r.logprobs,
            &pad,
        );
        println!("{name}: full forward, max |log-prob difference| = {diff:e}");
        assert!(diff <= TOLERANCE, "{name}: log-prob max abs diff {diff:e}");
        let diff = max_diff(&to_rows(entropy(logits)), &r.entropy, &pad);
        assert!(diff <= TOLERANCE, "{name}: entropy max abs diff {diff:e}");
    }
}

#[test]
fn cached_decoding_matches_transformers() {
    let device = device();
    for name in FIXTURES {
        let model = CausalLm::from_pretrained(&fixture(name), &device).unwrap();
        let r = reference(name);
        let (ids, pad) = tokens(&r, &device);
        let [b, t] = ids.dims();
        let prefill = 6;
        let mut cache = model.new_cache(pad.clone());
        let mut steps = vec![
            model
                .forward_cached(
                    ids.clone().narrow(1, 0, prefill),
                    &mut cache,
                    LogitsFor::All,
                )
                .unwrap(),
        ];
        for s in prefill..t - 1 {
            steps.push(
                model
                    .forward_cached(ids.clone().narrow(1, s, 1), &mut cache, LogitsFor::All)
                    .unwrap(),
            );
        }
        assert_eq!(cache.len(), t - 1);
        let logits = Tensor::cat(steps, 1); // [b, t - 1, vocab]
        let ours = to_rows(token_logprobs(logits, ids.narrow(1, 1, t - 1)));
        let diff = max_diff(&ours, &r.logprobs, &pad);
        println!("{name}: cached decoding, max |log-prob difference| = {diff:e}");
        assert!(
            diff <= TOLERANCE,
            "{name}: cached decoding log-prob max abs diff {diff:e} (batch {b})"
        );
    }
}

#[test]
fn last_position_logits_equal_full_logits() {
    let device = device();
    let model = CausalLm::from_pretrained(&fixture("llama"), &device).unwrap();
    let r = reference("llama");
    let (ids, pad) = tokens(&r, &device);
    let [_, t] = ids.dims();
    let full = model
        .forward(ids.clone(), &pad)
        .unwrap()
        .narrow(1, t - 1, 1);
    let mut cache = model.new_cache(pad);
    let last = model
        .forward_cached(ids, &mut cache, LogitsFor::Last)
        .unwrap();
    let diff = (full - last).abs().max().into_scalar::<f32>();
    assert!(diff < 1e-5, "{diff:e}");
}

#[test]
fn forked_cache_rows_continue_like_the_original() {
    let device = device();
    let model = CausalLm::from_pretrained(&fixture("qwen2-sharded"), &device).unwrap();
    let r = reference("qwen2-sharded");
    let (ids, pad) = tokens(&r, &device);
    let [_, t] = ids.dims();
    let mut cache = model.new_cache(pad);
    model
        .forward_cached(ids.clone().narrow(1, 0, t - 1), &mut cache, LogitsFor::Last)
        .unwrap();
    let last = ids.narrow(1, t - 1, 1);
    let rows = [2usize, 2, 0];
    let mut forked = cache.select_rows(&rows);
    let index = Tensor::<1, Int>::from_data(
        TensorData::new(rows.iter().map(|&r| r as i64).collect::<Vec<_>>(), [3]),
        &device,
    );
    let a = model
        .forward_cached(
            last.clone().select(0, index.clone()),
            &mut forked,
            LogitsFor::Last,
        )
        .unwrap();
    let b = model
        .forward_cached(last, &mut cache, LogitsFor::Last)
        .unwrap()
        .select(0, index);
    let diff = (a - b).abs().max().into_scalar::<f32>();
    assert!(diff < 1e-5, "{diff:e}");
}

#[test]
fn save_then_load_gives_identical_outputs() {
    let device = device();
    let dir = tempfile::tempdir().unwrap();
    for name in ["llama", "qwen2-sharded"] {
        let model = CausalLm::from_pretrained(&fixture(name), &device).unwrap();
        let out = dir.path().join(name);
        model.save_pretrained(&out, SaveDType::F32).unwrap();
        let again = CausalLm::from_pretrained(&out, &device).unwrap();
        assert_eq!(again.config(), model.config());
        let r = reference(name);
        let (ids, pad) = tokens(&r, &device);
        let diff = (model.forward(ids.clone(), &pad).unwrap() - again.forward(ids, &pad).unwrap())
            .abs()
            .max()
            .into_scalar::<f32>();
        assert_eq!(diff, 0.0, "{name}");
    }
    // A tied model writes no lm_head, as transformers does.
    let names: Vec<String> = redraft_model::Checkpoint::open(&dir.path().join("qwen2-sharded"))
        .unwrap()
        .names()
        .map(String::from)
        .collect();
    assert!(!names.iter().any(|n| n == "lm_head.weight"));
}

#[test]
fn random_init_is_deterministic_in_the_seed() {
    let device = device();
    let config = ModelConfig::from_file(&fixture("llama").join("config.json")).unwrap();
    let a = CausalLm::init(&config, 5, &device).unwrap().export();
    let b = CausalLm::init(&config, 5, &device).unwrap().export();
    let c = CausalLm::init(&config, 6, &device).unwrap().export();
    assert_eq!(a.len(), b.len());
    assert!(a.iter().zip(&b).all(|(x, y)| x.values == y.values));
    assert!(a.iter().zip(&c).any(|(x, y)| x.values != y.values));
    let params: usize = a.iter().map(|t| t.values.len()).sum();
    assert_eq!(params, config.num_parameters());
}

fn copy_fixture(name: &str, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(fixture(name)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[test]
fn bad_checkpoints_are_typed_errors_naming_the_problem() {
    let device = device();
    let dir = tempfile::tempdir().unwrap();

    // Shape mismatch: config says a wider MLP than the weights have.
    let wide = dir.path().join("wide");
    copy_fixture("llama", &wide);
    let text = std::fs::read_to_string(wide.join("config.json"))
        .unwrap()
        .replace("\"intermediate_size\": 160", "\"intermediate_size\": 170");
    std::fs::write(wide.join("config.json"), text).unwrap();
    let err = CausalLm::from_pretrained(&wide, &device).unwrap_err();
    assert!(
        matches!(&err, Error::ShapeMismatch { name, expected, found }
            if name == "model.layers.0.mlp.gate_proj.weight" && expected == &[170, 64] && found == &[160, 64]),
        "{err}"
    );

    // Missing tensor: a tied config over untied weights is fine, the reverse names lm_head.
    let untied = dir.path().join("untied");
    copy_fixture("qwen2-sharded", &untied);
    let text = std::fs::read_to_string(untied.join("config.json"))
        .unwrap()
        .replace(
            "\"tie_word_embeddings\": true",
            "\"tie_word_embeddings\": false",
        );
    std::fs::write(untied.join("config.json"), text).unwrap();
    let err = CausalLm::from_pretrained(&untied, &device).unwrap_err();
    assert!(
        matches!(&err, Error::MissingTensor { name, .. } if name == "lm_head.weight"),
        "{err}"
    );

    // Missing files and malformed JSON.
    let err = CausalLm::from_pretrained(&dir.path().join("nowhere"), &device).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    let broken = dir.path().join("broken");
    copy_fixture("llama", &broken);
    std::fs::write(broken.join("config.json"), "{\"model_type\": \"llama\",").unwrap();
    let err = CausalLm::from_pretrained(&broken, &device).unwrap_err();
    assert!(matches!(err, Error::Json { .. }), "{err}");
}

#[test]
fn bad_inputs_are_typed_errors() {
    let device = device();
    let model = CausalLm::from_pretrained(&fixture("llama"), &device).unwrap();
    let config = model.config().clone();
    let err = redraft_model::left_padded(&config, &[vec![1, 2, 96]], 0, &device).unwrap_err();
    assert!(
        matches!(
            err,
            Error::TokenOutOfVocab {
                id: 96,
                position: 2,
                vocab_size: 96
            }
        ),
        "{err}"
    );
    let long = vec![1u32; config.max_position_embeddings + 1];
    let err = redraft_model::left_padded(&config, &[long], 0, &device).unwrap_err();
    assert!(matches!(err, Error::ContextOverflow { .. }), "{err}");
    let batch = redraft_model::left_padded(&config, &[vec![1; 60]], 0, &device).unwrap();
    let mut cache = model.new_cache(batch.left_pad.clone());
    model
        .forward_cached(batch.tokens, &mut cache, LogitsFor::Last)
        .unwrap();
    let more = Tensor::<2, Int>::from_data(TensorData::new(vec![1i64; 5], [1, 5]), &device);
    let err = model
        .forward_cached(more, &mut cache, LogitsFor::Last)
        .unwrap_err();
    assert!(
        matches!(err, Error::ContextOverflow { len: 65, max: 64 }),
        "{err}"
    );
}
