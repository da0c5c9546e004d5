//! `redraft convert`: a GGUF file (llama.cpp's format) as a Hugging Face model directory:
//! config.json, model.safetensors (dequantized), tokenizer.json, tokenizer_config.json and
//! chat_template.jinja, read as transformers reads the file. The directory is written beside
//! its destination and renamed into place, so a failure leaves nothing behind.

use std::path::PathBuf;

use anyhow::{Context, Result};

use super::check_out_dir;
use redraft::model::{CausalLm, DeviceSpec, SaveDType, publish_dir};
use redraft::tokenizer::gguf_tokenizer_files;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The GGUF file.
    #[arg(long)]
    from: PathBuf,
    /// The model directory to write; must not exist or be empty unless --force.
    #[arg(long)]
    out: PathBuf,
    /// Float format of the weights written: f32 (exact dequantized values) or bf16.
    #[arg(long, value_enum, default_value = "f32")]
    dtype: Dtype,
    /// Replace a non-empty output directory.
    #[arg(long)]
    force: bool,
}

/// `--dtype`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Dtype {
    F32,
    Bf16,
}

pub(crate) fn run(args: Args) -> Result<()> {
    check_out_dir(&args.out, args.force)?;
    let file = redraft::gguf::GgufFile::open(&args.from)?;
    let tokenizer = gguf_tokenizer_files(&file)
        .with_context(|| format!("building the tokenizer of {}", args.from.display()))?;
    let model = CausalLm::from_gguf(&args.from, &DeviceSpec::Cpu.device()?)
        .with_context(|| format!("reading the model in {}", args.from.display()))?;
    let dtype = match args.dtype {
        Dtype::F32 => SaveDType::F32,
        Dtype::Bf16 => SaveDType::Bf16,
    };
    publish_dir(&args.out, |tmp| -> Result<()> {
        model.save_pretrained(tmp, dtype)?;
        tokenizer.write(tmp)?;
        Ok(())
    })?;
    let config = model.config();
    println!(
        "wrote {} ({} {} layers, {} parameters, vocabulary {})",
        args.out.display(),
        config.architecture.model_type(),
        config.num_layers,
        config.num_parameters(),
        config.vocab_size
    );
    Ok(())
}
