//! The reference workloads, as scripts/torch_reference.py defines them: a random-init
//! Llama (SwiGLU, RoPE 1e4, untied head, f32; `gqa` with grouped-query attention), an RL train
//! step and KV-cache sampling.

use std::time::Instant;

use anyhow::Result;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use redraft_model::burn::optim::AdamWConfig;
use redraft_model::burn::tensor::{Distribution, Int, Tensor, TensorData};
use redraft_model::{CausalLm, DeviceSpec, ModelConfig, TrainPass};
use redraft_rollout_engine::{SamplingParams, generate};

use super::Measurement;

const SEED: u64 = 1234;

/// The sizes [`Workload::named`] knows (`--sizes`); the last two are full models' shapes, for
/// `--sizes smollm2,qwen0.5b` (minutes per side on two cores).
pub(crate) const SIZES: [&str; 5] = ["tiny", "big", "gqa", "smollm2", "qwen0.5b"];

/// One model size with its train and sampling settings.
pub(crate) struct Workload {
    pub(crate) name: &'static str,
    vocab: usize,
    hidden: usize,
    layers: usize,
    heads: usize,
    kv_heads: usize,
    intermediate: usize,
    /// Train: batch, sequence, prompt length (the loss covers targets from the prompt on).
    train: (usize, usize, usize),
    /// Sampling: batch, prompt length, new tokens.
    generate: (usize, usize, usize),
    warmup: usize,
    iters: usize,
}

impl Workload {
    pub(crate) fn named(name: &str) -> Option<Self> {
        match name {
            "tiny" => Some(Self {
                name: "tiny",
                vocab: 64,
                hidden: 128,
                layers: 4,
                heads: 4,
                kv_heads: 4,
                intermediate: 512,
                train: (16, 128, 32),
                generate: (16, 32, 64),
                warmup: 3,
                iters: 10,
            }),
            "big" => Some(Self {
                name: "big",
                vocab: 32000,
                hidden: 512,
                layers: 8,
                heads: 8,
                kv_heads: 8,
                intermediate: 2048,
                train: (8, 256, 64),
                generate: (8, 64, 128),
                warmup: 3,
                iters: 10,
            }),
            // Qwen2.5-0.5B's layer shapes: grouped-query attention, 14 query heads over 2
            // key/value heads; four layers and the big vocabulary.
            "gqa" => Some(Self {
                name: "gqa",
                vocab: 32000,
                hidden: 896,
                layers: 4,
                heads: 14,
                kv_heads: 2,
                intermediate: 4864,
                train: (8, 256, 64),
                generate: (8, 64, 128),
                warmup: 3,
                iters: 10,
            }),
            // SmolLM2-135M's shapes (its 49 152-token vocabulary, 30 layers, 9 query heads over
            // 3 key/value heads), untied.
            "smollm2" => Some(Self {
                name: "smollm2",
                vocab: 49152,
                hidden: 576,
                layers: 30,
                heads: 9,
                kv_heads: 3,
                intermediate: 1536,
                train: (4, 128, 32),
                generate: (8, 32, 32),
                warmup: 1,
                iters: 3,
            }),
            // Qwen2.5-0.5B's shapes (151 936-token vocabulary, 24 layers), untied and without
            // its attention biases.
            "qwen0.5b" => Some(Self {
                name: "qwen0.5b",
                vocab: 151_936,
                hidden: 896,
                layers: 24,
                heads: 14,
                kv_heads: 2,
                intermediate: 4864,
                train: (2, 128, 32),
                generate: (8, 32, 32),
                warmup: 1,
                iters: 3,
            }),
            _ => None,
        }
    }

    /// The random-init Llama of this workload.
    pub(crate) fn config(&self) -> Result<ModelConfig> {
        let json = serde_json::json!({
            "model_type": "llama", "vocab_size": self.vocab, "hidden_size": self.hidden,
            "num_hidden_layers": self.layers, "num_attention_heads": self.heads,
            "num_key_value_heads": self.kv_heads, "intermediate_size": self.intermediate,
            "max_position_embeddings": 256, "hidden_act": "silu", "rms_norm_eps": 1e-6,
            "rope_theta": 10000.0, "tie_word_embeddings": false, "initializer_range": 0.02,
        });
        Ok(ModelConfig::from_json_str(&json.to_string())?)
    }

    /// The script's FLOP formulas: matmul parameters per layer and in total.
    fn matmul_params(&self) -> (f64, f64) {
        let (d, f, l, v) = (
            self.hidden as f64,
            self.intermediate as f64,
            self.layers as f64,
            self.vocab as f64,
        );
        let kv = d * self.kv_heads as f64 / self.heads as f64;
        let per_layer = 2.0 * d * d + 2.0 * d * kv + 3.0 * d * f;
        (per_layer, l * per_layer + d * v)
    }

    fn train_flops(&self) -> f64 {
        let (_, pm) = self.matmul_params();
        let (b, t, _) = self.train;
        let (b, t, d, l) = (b as f64, t as f64, self.hidden as f64, self.layers as f64);
        3.0 * b * (2.0 * pm * t + l * 4.0 * d * t * (t + 1.0) / 2.0)
    }

    fn generate_flops(&self) -> f64 {
        let (pl, pm) = self.matmul_params();
        let (b, p, n) = self.generate;
        let (b, p, d, l, v) = (
            b as f64,
            p as f64,
            self.hidden as f64,
            self.layers as f64,
            self.vocab as f64,
        );
        let prefill = b * (2.0 * l * pl * p + 2.0 * d * v + l * 4.0 * d * p * (p + 1.0) / 2.0);
        let decode: f64 = (1..n)
            .map(|j| b * (2.0 * pm + l * 4.0 * d * (p + j as f64)))
            .sum();
        prefill + decode
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Forward, masked policy-gradient loss, backward and an AdamW step (PyTorch's hyper-parameters).
pub(crate) fn bench_train(w: &Workload) -> Result<Measurement> {
    let device = DeviceSpec::Cpu.train_device()?;
    let config = w.config()?;
    let mut model = CausalLm::init(&config, SEED, &device)?;
    let mut optim = AdamWConfig::new()
        .with_beta_1(0.9)
        .with_beta_2(0.999)
        .with_epsilon(1e-8)
        .with_weight_decay(0.01)
        .init();
    let (b, t, prompt) = w.train;
    let mut rng = ChaCha8Rng::seed_from_u64(SEED + 1);
    let mask_values: Vec<f32> = (0..b)
        .flat_map(|_| (0..t - 1).map(|j| if j + 1 >= prompt { 1.0 } else { 0.0 }))
        .collect();
    let mask = Tensor::<2>::from_data(TensorData::new(mask_values, [b, t - 1]), &device);
    let mask_sum = ((t - prompt) * b) as f64;
    let mut times = Vec::new();
    for step in 0..w.warmup + w.iters {
        let ids: Vec<i64> = (0..b * t)
            .map(|_| rng.random_range(0..w.vocab as i64))
            .collect();
        let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [b, t]), &device);
        let advantages = Tensor::<1>::random([b], Distribution::Normal(0.0, 1.0), &device);
        let start = Instant::now();
        // The learner's path: a training pass, the loss's gradient with respect to the
        // log-probs (here in closed form), carried back through the model.
        let (pass, logp, _) = TrainPass::new(&model, ids, 1.0, false, false)?;
        let weights = (advantages.unsqueeze_dim::<2>(1) * mask.clone())
            .div_scalar(mask_sum)
            .inner();
        let loss = (logp * weights.clone()).sum().neg();
        let grads = pass.backward(&model, weights.neg(), None);
        model = optim.step(1e-5, model, grads);
        let _ = loss.into_scalar::<f32>();
        if step >= w.warmup {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    let median_s = median(times);
    Ok(Measurement {
        workload: format!("{} train step (B={b}, T={t})", w.name),
        median_s,
        tokens_per_s: (b * t) as f64 / median_s,
        gflops_per_s: w.train_flops() / median_s / 1e9,
        torch_median_s: None,
        peak_bytes: None,
        torch_peak_bytes: None,
    })
}

/// Batched sampling with the KV cache: temperature 1, no truncation, no early stop.
pub(crate) fn bench_generate(w: &Workload) -> Result<Measurement> {
    let device = DeviceSpec::Cpu.device()?;
    let model = CausalLm::init(&w.config()?, SEED, &device)?;
    let (b, p, n) = w.generate;
    let mut rng = ChaCha8Rng::seed_from_u64(SEED + 2);
    let mut times = Vec::new();
    let gen_warmup = 1;
    let gen_iters = 5;
    for i in 0..gen_warmup + gen_iters {
        let prompts: Vec<Vec<u32>> = (0..b)
            .map(|_| {
                (0..p)
                    .map(|_| rng.random_range(0..w.vocab as u32))
                    .collect()
            })
            .collect();
        let params = SamplingParams {
            max_new_tokens: n,
            seed: SEED + 100 + i as u64,
            ..SamplingParams::default()
        };
        let start = Instant::now();
        let out = generate(&model, &prompts, &params, 0, &device)?;
        let elapsed = start.elapsed().as_secs_f64();
        anyhow::ensure!(
            out.iter().all(|c| c.tokens.len() == n),
            "a row stopped early"
        );
        if i >= gen_warmup {
            times.push(elapsed);
        }
    }
    let median_s = median(times);
    Ok(Measurement {
        workload: format!("{} sampling (B={b}, P={p}, N={n})", w.name),
        median_s,
        tokens_per_s: (b * n) as f64 / median_s,
        gflops_per_s: w.generate_flops() / median_s / 1e9,
        torch_median_s: None,
        peak_bytes: None,
        torch_peak_bytes: None,
    })
}

/// The achieved f32 matmul rate of a 1024^3 product: the practical peak of this machine.
pub(crate) fn matmul_peak_gflops() -> Result<f64> {
    let device = DeviceSpec::Cpu.device()?;
    let n = 1024;
    let a = Tensor::<2>::random([n, n], Distribution::Default, &device);
    let b = Tensor::<2>::random([n, n], Distribution::Default, &device);
    let _ = a.clone().matmul(b.clone()).sum().into_scalar::<f32>();
    let reps = 8;
    let start = Instant::now();
    for _ in 0..reps {
        let _ = a.clone().matmul(b.clone()).sum().into_scalar::<f32>();
    }
    Ok(2.0 * (n * n * n) as f64 * reps as f64 / start.elapsed().as_secs_f64() / 1e9)
}
