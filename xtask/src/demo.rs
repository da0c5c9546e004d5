//! `cargo xtask demo`: the pipeline on a fresh machine, with nothing downloaded. It initialises a
//! small Llama with the byte tokenizer, samples continuations with the KV cache, and re-scores
//! them with a full forward pass, writing everything under runs/demo-<time>/. The weights are
//! random, so the text is noise: this shows the machinery, not a trained model.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};

use crate::workspace_root;
use redraft_model::{
    CausalLm, DeviceSpec, ModelConfig, SaveDType, next_token_logprobs, right_padded,
};
use redraft_rollout_engine::{SamplingParams, generate};
use redraft_tokenizer::{ByteTokenizer, Tokenizer};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Model config.json to initialise.
    #[arg(long, default_value = "configs/models/tiny-byte-llama.json")]
    config: PathBuf,
    /// Seed of the initialisation and of sampling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Compute device: cpu, wgpu or cuda[:N] (GPU devices need the matching feature).
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
}

pub(crate) fn run(args: Args) -> Result<()> {
    let root = workspace_root();
    let config_path = if args.config.is_absolute() {
        args.config.clone()
    } else {
        root.join(&args.config)
    };
    let config = ModelConfig::from_file(&config_path)?;
    let dir = redraft_trainer::RunDir::new_under(&root, "demo")?;
    let model_dir = dir.join("model");
    let device = args.device.device()?;

    let start = Instant::now();
    let tokenizer = ByteTokenizer::new();
    let model = CausalLm::init(&config, args.seed, &device)?;
    model.save_pretrained(&model_dir, SaveDType::F32)?;
    tokenizer.save(&model_dir)?;
    println!(
        "initialised {} parameters into {} ({:.2}s)",
        config.num_parameters(),
        model_dir.display(),
        start.elapsed().as_secs_f64()
    );

    let model =
        CausalLm::from_pretrained(&model_dir, &device).context("reloading the saved model")?;
    let special = tokenizer.special_tokens().clone();
    let texts = [
        "12+34=",
        "Knights always tell the truth.",
        "def main():",
        "The answer is",
    ];
    let prompts: Vec<Vec<u32>> = texts
        .iter()
        .map(|t| {
            Ok(special
                .bos
                .into_iter()
                .chain(tokenizer.encode(t)?)
                .collect())
        })
        .collect::<Result<_>>()?;
    let params = SamplingParams {
        max_new_tokens: 48,
        seed: args.seed,
        stop_tokens: special.eos.into_iter().collect(),
        ..SamplingParams::default()
    };
    let pad = special.padding_id();
    let start = Instant::now();
    let completions = generate(&model, &prompts, &params, pad, &device)?;
    let sampled: usize = completions.iter().map(|c| c.tokens.len()).sum();
    println!(
        "sampled {sampled} tokens for {} prompts in {:.3}s",
        prompts.len(),
        start.elapsed().as_secs_f64()
    );

    // Re-score prompt + completion with a full forward pass: it must agree with sampling.
    let rows: Vec<Vec<u32>> = prompts
        .iter()
        .zip(&completions)
        .map(|(p, c)| p.iter().chain(&c.tokens).copied().collect())
        .collect();
    let batch = right_padded(model.config(), &rows, pad, &device)?;
    let logits = model.forward(batch.tokens.clone(), &batch.left_pad)?;
    let scored = next_token_logprobs(logits, batch.tokens);
    let [_, width] = scored.dims();
    let scored = scored
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let mut worst = 0.0f32;
    let mut lines = Vec::new();
    for (i, completion) in completions.iter().enumerate() {
        let offset = prompts[i].len() - 1;
        for (k, sampled_lp) in completion.logprobs.iter().enumerate() {
            worst = worst.max((scored[i * width + offset + k] - sampled_lp).abs());
        }
        let text = tokenizer.decode(&completion.tokens, true)?;
        println!("  {:?} -> {:?}", texts[i], text);
        lines.push(serde_json::json!({"prompt": texts[i], "completion": text, "tokens": completion.tokens, "logprobs": completion.logprobs}).to_string());
    }
    std::fs::write(dir.join("samples.jsonl"), lines.join("\n") + "\n")?;
    println!("max |sampling log-prob - full-forward log-prob| = {worst:.2e}");
    println!("wrote {}", dir.display());
    Ok(())
}
