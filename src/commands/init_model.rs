//! `redraft init-model`: a randomly initialised model directory, so a user with no download can
//! start.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use redraft::model::{CausalLm, DeviceSpec, ModelConfig, SaveDType};
use redraft::tokenizer::{ByteTokenizer, Tokenizer};

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
    /// Replace the files of a non-empty output directory.
    #[arg(long)]
    force: bool,
}

pub(crate) fn run(args: Args) -> Result<()> {
    let config = ModelConfig::from_file(&args.config)?;
    let non_empty = std::fs::read_dir(&args.out)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false);
    if non_empty && !args.force {
        bail!(
            "{} exists and is not empty (use --force to replace its model files)",
            args.out.display()
        );
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let vocab = if args.tokenizer == "byte" {
        let tokenizer = ByteTokenizer::new();
        check_vocab(tokenizer.vocab_size(), &config)?;
        tokenizer.save(&args.out)?;
        tokenizer.vocab_size()
    } else {
        let source = PathBuf::from(&args.tokenizer);
        let tokenizer = redraft::tokenizer::HfTokenizer::from_files(&source, None)?;
        check_vocab(tokenizer.vocab_size(), &config)?;
        std::fs::copy(&source, args.out.join("tokenizer.json"))
            .with_context(|| format!("copying {}", source.display()))?;
        let side = source.with_file_name("tokenizer_config.json");
        if side.exists() {
            std::fs::copy(&side, args.out.join("tokenizer_config.json"))
                .with_context(|| format!("copying {}", side.display()))?;
        }
        tokenizer.vocab_size()
    };
    let model = CausalLm::init(&config, args.seed, &DeviceSpec::Cpu.device()?)?;
    model.save_pretrained(&args.out, SaveDType::F32)?;
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

fn check_vocab(tokenizer_vocab: usize, config: &ModelConfig) -> Result<()> {
    if tokenizer_vocab > config.vocab_size {
        bail!(
            "the tokenizer has {tokenizer_vocab} ids but config vocab_size is {}: raise vocab_size to at least {tokenizer_vocab}",
            config.vocab_size
        );
    }
    Ok(())
}
