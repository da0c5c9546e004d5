//! `redraft generate`: sampling with the KV cache.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use redraft::model::DeviceSpec;
use redraft::rollout::{SamplingParams, generate};
use redraft::tokenizer::Message;
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
    /// The prompt text.
    #[arg(long, conflicts_with = "input", required_unless_present = "input")]
    prompt: Option<String>,
    /// JSONL lines `{"prompt": "..."}` or `{"tokens": [ids...]}`, one completion each.
    #[arg(long)]
    input: Option<PathBuf>,
    /// Most new tokens per prompt.
    #[arg(long, default_value_t = 64)]
    max_new_tokens: usize,
    /// Softmax temperature; 0 is greedy.
    #[arg(long, default_value_t = 1.0)]
    temperature: f32,
    /// Nucleus sampling mass (1 = off).
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    /// Keep only the k most likely tokens (0 = off).
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    /// Drop tokens less likely than this fraction of the most likely (0 = off).
    #[arg(long, default_value_t = 0.0)]
    min_p: f32,
    /// Random seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Render each prompt as a user message with the tokenizer's chat template.
    #[arg(long)]
    chat: bool,
    /// Print JSON lines with the text, token ids, log-probs and finish reason.
    #[arg(long)]
    json: bool,
    /// Write the results here instead of standard output.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Compute device: cpu, wgpu or cuda[:N].
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
}

#[derive(Debug, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
enum Line {
    Tokens { tokens: Vec<u32> },
    Prompt { prompt: String },
}

pub(crate) fn run(args: Args) -> Result<()> {
    let mut output = Output::create(args.output.clone())?;
    let loaded = LoadedModel::open(&args.model, args.adapter.as_deref(), args.device)?;
    let lines = match (&args.prompt, &args.input) {
        (Some(prompt), None) => vec![Line::Prompt {
            prompt: prompt.clone(),
        }],
        (None, Some(path)) => read_jsonl(path)?,
        _ => bail!("give exactly one of --prompt and --input"),
    };
    let tokenizer = loaded.tokenizer.as_ref();
    let mut prompts = Vec::with_capacity(lines.len());
    for (index, line) in lines.into_iter().enumerate() {
        let ids = match line {
            Line::Tokens { tokens } => tokens,
            Line::Prompt { prompt } if args.chat => {
                let template = tokenizer
                    .chat_template()
                    .context("--chat: the tokenizer has no chat template")?;
                tokenizer.encode(&template.render(&[Message::user(prompt)], true)?)?
            }
            Line::Prompt { prompt } => encode_text(tokenizer, &prompt)?,
        };
        if ids.is_empty() {
            bail!("prompt {} is empty", index + 1);
        }
        redraft::model::check_rows(loaded.model.config(), std::slice::from_ref(&ids))
            .with_context(|| format!("prompt {}", index + 1))?;
        prompts.push(ids);
    }
    let stop_tokens = loaded.stop_tokens();
    let params = SamplingParams {
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        min_p: args.min_p,
        max_new_tokens: args.max_new_tokens,
        stop_tokens,
        vocab_limit: Some(tokenizer.vocab_size()),
        seed: args.seed,
        ..SamplingParams::default()
    };
    let completions = generate(
        &loaded.model,
        &prompts,
        &params,
        loaded.pad_id(),
        &loaded.device,
    )?;
    for (i, completion) in completions.iter().enumerate() {
        if let Some(step) = completion.logprobs.iter().position(|l| !l.is_finite()) {
            bail!(
                "prompt {}, step {step}: the model's log-probability is {} (broken weights or \
                 config); nothing written",
                i + 1,
                completion.logprobs[step]
            );
        }
    }
    for completion in completions {
        let text = tokenizer.decode(&completion.tokens, true)?;
        if args.json {
            output.line(
                &serde_json::json!({
                    "text": text,
                    "tokens": completion.tokens,
                    "logprobs": completion.logprobs,
                    "finish_reason": completion.finish_reason,
                })
                .to_string(),
            )?;
        } else {
            output.line(&text)?;
        }
    }
    output.finish()
}
