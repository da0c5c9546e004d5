//! `redraft score`: the log-probability of each token given the tokens before it.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use redraft::model::{DeviceSpec, right_padded};
use serde::Deserialize;

use super::{LoadedModel, Output, encode_text, read_jsonl};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// A model directory (config.json, safetensors weights, tokenizer) or a `.gguf` file.
    #[arg(long)]
    model: PathBuf,
    /// A PEFT LoRA adapter folder (adapter_config.json, adapter_model.safetensors) to apply to
    /// the model.
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// JSONL lines `{"tokens": [ids...]}` or `{"text": "..."}`.
    #[arg(long)]
    input: PathBuf,
    /// Write the results here instead of standard output.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Sequences scored per forward pass.
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    /// Compute device: cpu, wgpu or cuda[:N].
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
}

#[derive(Debug, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
enum Line {
    Tokens { tokens: Vec<u32> },
    Text { text: String },
}

pub(crate) fn run(args: Args) -> Result<()> {
    let mut output = Output::create(args.output.clone())?;
    let loaded = LoadedModel::open(&args.model, args.adapter.as_deref(), args.device)?;
    let lines: Vec<Line> = read_jsonl(&args.input)?;
    let mut rows = Vec::with_capacity(lines.len());
    for (index, line) in lines.into_iter().enumerate() {
        let tokens = match line {
            Line::Tokens { tokens } => tokens,
            Line::Text { text } => encode_text(loaded.tokenizer.as_ref(), &text)?,
        };
        redraft::model::check_rows(loaded.model.config(), std::slice::from_ref(&tokens))
            .with_context(|| format!("{}: line {}", args.input.display(), index + 1))?;
        rows.push(tokens);
    }
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let mut results: Vec<Vec<f32>> = vec![Vec::new(); rows.len()];
    // Rows of fewer than two tokens have nothing to score.
    let scorable: Vec<usize> = (0..rows.len()).filter(|&i| rows[i].len() >= 2).collect();
    for chunk in scorable.chunks(args.batch_size) {
        let batch_rows: Vec<Vec<u32>> = chunk.iter().map(|&i| rows[i].clone()).collect();
        let batch = right_padded(
            loaded.model.config(),
            &batch_rows,
            loaded.pad_id(),
            &loaded.device,
        )?;
        // Right padding: no left padding to pass; the head runs in chunks of positions.
        let (logprobs, _) = loaded
            .model
            .next_token_stats(batch.tokens, None, 1.0, false)?;
        let [_, width] = logprobs.dims();
        let flat = logprobs
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        for (k, &i) in chunk.iter().enumerate() {
            results[i] = flat[k * width..k * width + rows[i].len() - 1].to_vec();
        }
    }
    for (i, logprobs) in results.iter().enumerate() {
        if let Some(position) = logprobs.iter().position(|l| !l.is_finite()) {
            bail!(
                "{}: line {}, position {position}: the model's log-probability is {} (broken \
                 weights or config); nothing written",
                args.input.display(),
                i + 1,
                logprobs[position]
            );
        }
    }
    for logprobs in results {
        output.line(&serde_json::json!({ "logprobs": logprobs }).to_string())?;
    }
    output.finish()
}
