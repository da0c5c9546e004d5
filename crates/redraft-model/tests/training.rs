//! The training pass (chunked head, backward driven from the log-probs, optional gradient
//! checkpointing) gives the log-probs, entropies and parameter gradients of one autodiff graph
//! over full logits, on an untied Llama with grouped-query attention, a tied Qwen2 with
//! biases, and a LoRA model, at temperatures 1 and 0.7.

mod common;

use common::{device, fixture};

use std::collections::BTreeMap;

use redraft_model::burn::module::{Module, ModuleVisitor, Param};
use redraft_model::burn::nn::DropoutConfig;
use redraft_model::burn::optim::GradientsParams;
use redraft_model::burn::tensor::{Device, Int, Tensor, TensorData};
use redraft_model::{CausalLm, TrainPass, entropy, next_token_logprobs};

/// Largest accepted difference, relative to the largest magnitude compared.
const TOLERANCE: f32 = 1e-4;

fn train_device() -> Device {
    device().autodiff()
}

fn tokens(rows: usize, len: usize, vocab: usize, device: &Device) -> Tensor<2, Int> {
    let ids: Vec<i64> = (0..rows * len)
        .map(|i| ((i * 37 + (i / len) * 11 + 5) % vocab) as i64)
        .collect();
    Tensor::from_data(TensorData::new(ids, [rows, len]), device)
}

/// Deterministic loss weights in [-1, 1), `[rows, len]`.
fn weights(rows: usize, len: usize, salt: usize, device: &Device) -> Tensor<2> {
    let w: Vec<f32> = (0..rows * len)
        .map(|i| ((i * 7919 + salt * 104_729) % 2000) as f32 / 1000.0 - 1.0)
        .collect();
    Tensor::from_data(TensorData::new(w, [rows, len]), device)
}

fn host(t: Tensor<2>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

/// Every parameter's gradient, by visiting order.
fn by_param(model: &CausalLm, grads: &GradientsParams) -> BTreeMap<usize, Vec<f32>> {
    struct Collect<'a> {
        grads: &'a GradientsParams,
        out: BTreeMap<usize, Vec<f32>>,
        next: usize,
    }
    impl ModuleVisitor for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.get::<D>(param.id) {
                let v = g.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
                self.out.insert(self.next, v);
            }
            self.next += 1;
        }
    }
    let mut c = Collect {
        grads,
        out: BTreeMap::new(),
        next: 0,
    };
    model.visit(&mut c);
    c.out
}

fn max_rel_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = a.iter().chain(b).fold(1e-6f32, |m, x| m.max(x.abs()));
    a.iter()
        .zip(b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

/// Log-probs, entropies and gradients of `Σ a·logp + Σ c·H` from one graph over full logits.
fn reference(
    model: &CausalLm,
    ids: Tensor<2, Int>,
    temperature: f32,
    a: Tensor<2>,
    c: Tensor<2>,
) -> (Vec<f32>, Vec<f32>, BTreeMap<usize, Vec<f32>>) {
    let [b, t] = ids.dims();
    let logits = model.forward(ids.clone(), &[]).unwrap();
    let logits = if temperature == 1.0 {
        logits
    } else {
        logits.div_scalar(temperature)
    };
    let lp = next_token_logprobs(logits.clone(), ids);
    let ent = entropy(logits).slice([0..b, 0..t - 1]);
    let loss = (lp.clone() * a.autodiff()).sum() + (ent.clone() * c.autodiff()).sum();
    let grads = GradientsParams::from_grads(loss.backward(), model);
    (host(lp.inner()), host(ent.inner()), by_param(model, &grads))
}

/// Log-probs and entropies within [`TOLERANCE`] of what is wanted.
fn assert_stats(
    what: &str,
    lp: Tensor<2>,
    ent: Option<Tensor<2>>,
    lp_want: &[f32],
    ent_want: &[f32],
) {
    assert!(
        max_rel_diff(&host(lp), lp_want) < TOLERANCE,
        "{what}: log-probs"
    );
    let ent = ent.expect("entropies were asked for");
    assert!(
        max_rel_diff(&host(ent), ent_want) < TOLERANCE,
        "{what}: entropies"
    );
}

fn check(name: &str, model: &CausalLm) {
    let device = train_device();
    let vocab = model.config().vocab_size;
    let (rows, len) = (3, 11);
    for temperature in [1.0, 0.7] {
        let ids = tokens(rows, len, vocab, &device);
        let a = weights(rows, len - 1, 1, &device.clone().inner());
        let c = weights(rows, len - 1, 2, &device.clone().inner());
        let (lp_ref, ent_ref, grads_ref) =
            reference(model, ids.clone(), temperature, a.clone(), c.clone());
        assert!(!grads_ref.is_empty(), "{name}: the reference has gradients");
        for checkpoint in [false, true] {
            let what = format!("{name}, T {temperature}, checkpointing {checkpoint}");
            let (pass, lp, ent) =
                TrainPass::new(model, ids.clone(), temperature, true, checkpoint).unwrap();
            assert_stats(&what, lp, ent, &lp_ref, &ent_ref);
            let grads = by_param(model, &pass.backward(model, a.clone(), Some(c.clone())));
            assert_eq!(
                grads.keys().collect::<Vec<_>>(),
                grads_ref.keys().collect::<Vec<_>>(),
                "{what}: the same parameters get gradients"
            );
            for (k, g) in &grads {
                let d = max_rel_diff(g, &grads_ref[k]);
                assert!(d < TOLERANCE, "{what}: parameter {k} differs by {d}");
            }
        }
        // The head at some positions only: a loss reading only those gets the same values
        // and gradients; the other positions read 0.
        let needed: Vec<bool> = (0..rows * (len - 1)).map(|i| i % 3 != 1).collect();
        let keep = Tensor::<2>::from_data(
            TensorData::new(
                needed.iter().map(|&k| f32::from(u8::from(k))).collect(),
                [rows, len - 1],
            ),
            &device.clone().inner(),
        );
        let (a, c) = (a * keep.clone(), c * keep);
        let (_, _, grads_ref) = reference(model, ids.clone(), temperature, a.clone(), c.clone());
        let expect = |full: &[f32]| -> Vec<f32> {
            full.iter()
                .zip(&needed)
                .map(|(&x, &k)| if k { x } else { 0.0 })
                .collect()
        };
        for checkpoint in [false, true] {
            let what =
                format!("{name} at some positions, T {temperature}, checkpointing {checkpoint}");
            let (pass, lp, ent) =
                TrainPass::at(model, ids.clone(), &needed, temperature, true, checkpoint).unwrap();
            assert_stats(&what, lp, ent, &expect(&lp_ref), &expect(&ent_ref));
            let grads = by_param(model, &pass.backward(model, a.clone(), Some(c.clone())));
            for (k, g) in &grads {
                let d = max_rel_diff(g, &grads_ref[k]);
                assert!(d < TOLERANCE, "{what}: parameter {k} differs by {d}");
            }
            assert_eq!(
                grads.len(),
                grads_ref.len(),
                "{what}: parameters with gradients"
            );
        }
        // Scoring without gradients at the same positions.
        let (lp, ent) = model
            .valid()
            .next_token_stats(ids.inner(), Some(&needed), temperature, true)
            .unwrap();
        let what = format!("{name} scored at some positions, T {temperature}");
        assert_stats(&what, lp, ent, &expect(&lp_ref), &expect(&ent_ref));
    }
}

#[test]
fn an_untied_llama_with_grouped_query_attention() {
    let model = CausalLm::from_pretrained(&fixture("llama"), &train_device()).unwrap();
    assert!(model.lm_head.is_some());
    check("llama", &model);
}

#[test]
fn a_tied_qwen2_with_biases() {
    let model = CausalLm::from_pretrained(&fixture("qwen2-sharded"), &train_device()).unwrap();
    assert!(model.lm_head.is_none());
    check("qwen2", &model);
}

/// PEFT's adapter with non-zero B (scripts/make_lora_fixtures.py), its dropout off so that
/// both passes compute the same function: only the adapters get gradients.
#[test]
fn lora_adapters_only() {
    let device = train_device();
    let mut model = CausalLm::from_pretrained(&fixture("llama"), &device)
        .unwrap()
        .with_adapter(&fixture("llama-lora"), &device)
        .unwrap();
    for layer in &mut model.layers {
        let projections = [
            &mut layer.self_attn.q_proj,
            &mut layer.self_attn.k_proj,
            &mut layer.self_attn.v_proj,
            &mut layer.self_attn.o_proj,
            &mut layer.mlp.gate_proj,
            &mut layer.mlp.up_proj,
            &mut layer.mlp.down_proj,
        ];
        for adapter in projections.into_iter().filter_map(|p| p.lora.as_mut()) {
            adapter.dropout = DropoutConfig::new(0.0).init();
        }
    }
    check("lora", &model);
}

#[test]
fn rows_shorter_than_two_tokens_are_refused() {
    let device = train_device();
    let model = CausalLm::from_pretrained(&fixture("llama"), &device).unwrap();
    let err = TrainPass::new(&model, tokens(2, 1, 96, &device), 1.0, false, false).unwrap_err();
    assert!(err.to_string().contains("at least 2 tokens"), "{err}");
    let ids = tokens(2, 5, 96, &device);
    let err = TrainPass::at(&model, ids.clone(), &[true; 5], 1.0, false, false).unwrap_err();
    assert!(
        err.to_string()
            .contains("5 needed positions given for a [2, 4] pass"),
        "{err}"
    );
    let err = model
        .valid()
        .next_token_stats(ids.inner(), Some(&[true; 9]), 1.0, false)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("9 needed positions given for a [2, 4] pass"),
        "{err}"
    );
}
