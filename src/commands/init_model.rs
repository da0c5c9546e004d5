//! `redraft init-model`: a randomly initialised model directory, so a user with no download can
//! start.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use redraft::model::{
    CausalLm, DeviceSpec, MemoryLimit, ModelConfig, SaveDType, Workload, parse_bytes, publish_dir,
};
use redraft::tokenizer::{ByteTokenizer, Tokenizer};

use super::check_out_dir;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// A Hugging Face config.json (model_type llama or qwen2).
    #[arg(long)]
    config: PathBuf,
    /// The directory to write; must not exist or be empty unless --force.
    #[arg(long)]
    out: PathBuf,
    /// Seed of the random initialisation.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Tokenizer to ship with the model: `byte` (redraft's byte-level tokenizer) or the path
    /// of a Hugging Face tokenizer.json (its tokenizer_config.json beside it is copied too).
    #[arg(long, default_value = "byte")]
    tokenizer: String,
    /// Replace a non-empty output directory (its old contents are removed).
    #[arg(long)]
    force: bool,
    /// Refuse a model whose estimated memory exceeds this (e.g. `2GiB`, `512MB`); the memory
    /// the machine has available is always a limit.
    #[arg(long, value_name = "BYTES")]
    max_memory: Option<String>,
}

pub(crate) fn run(args: Args) -> Result<()> {
    let config = ModelConfig::from_file(&args.config)?;
    check_out_dir(&args.out, args.force)?;
    // Sized before anything is allocated or written.
    let given = match &args.max_memory {
        Some(text) => Some(MemoryLimit {
            bytes: parse_bytes(text).context("--max-memory")?,
            source: "limit set by --max-memory".into(),
        }),
        None => None,
    };
    if let Some(limit) = MemoryLimit::resolve(given, true) {
        config
            .memory_estimate(&Workload::default())
            .check("the model", &limit)?;
    }
    let vocab = publish_dir(&args.out, |tmp| write_model(&args, &config, tmp))?;
    println!(
        "wrote {} ({} parameters, vocabulary {} of {} ids used by the tokenizer, seed {})",
        args.out.display(),
        config.num_parameters(),
        config.vocab_size,
        vocab,
        args.seed
    );
    Ok(())
}

/// Writes the tokenizer and the model into `dir`; returns the tokenizer's vocabulary size.
fn write_model(args: &Args, config: &ModelConfig, dir: &std::path::Path) -> Result<usize> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let vocab = if args.tokenizer == "byte" {
        let tokenizer = ByteTokenizer::new();
        check_vocab(tokenizer.vocab_size(), config)?;
        tokenizer.save(dir)?;
        tokenizer.vocab_size()
    } else {
        let source = PathBuf::from(&args.tokenizer);
        let tokenizer = redraft::tokenizer::HfTokenizer::from_files(&source, None)?;
        check_vocab(tokenizer.vocab_size(), config)?;
        std::fs::copy(&source, dir.join("tokenizer.json"))
            .with_context(|| format!("copying {}", source.display()))?;
        let side = source.with_file_name("tokenizer_config.json");
        if side.exists() {
            std::fs::copy(&side, dir.join("tokenizer_config.json"))
                .with_context(|| format!("copying {}", side.display()))?;
        }
        tokenizer.vocab_size()
    };
    let model = CausalLm::init(config, args.seed, &DeviceSpec::Cpu.device()?)?;
    model.save_pretrained(dir, SaveDType::F32)?;
    Ok(vocab)
}

fn check_vocab(tokenizer_vocab: usize, config: &ModelConfig) -> Result<()> {
    if tokenizer_vocab > config.vocab_size {
        bail!(
            "the tokenizer has {tokenizer_vocab} ids but config vocab_size is {}: raise vocab_size to at least {tokenizer_vocab}",
            config.vocab_size
        );
    }
    Ok(())
}
