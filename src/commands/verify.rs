//! `redraft verify`: one JSON verdict per input line.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;

use anyhow::{Context, Result};
use redraft::verifier::dataset::OnError;
use redraft::verifier::jsonl::{VerifyOptions, verify_jsonl};

use super::Output;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// JSONL lines `{"gold", "pred"}` (math equivalence), `{"task", "problem", "response"}`
    /// (built-in task families) or `{"question", "answer", "metadata", "response"}` (exported by
    /// reasoning-gym, scored by its rules); standard input when absent.
    #[arg(long)]
    input: Option<PathBuf>,
    /// Write the verdicts here instead of standard output.
    #[arg(long)]
    output: Option<PathBuf>,
    /// At a malformed line: stop with its file and line number, or log it and go on.
    #[arg(long, value_enum, default_value = "stop")]
    on_error: OnErrorArg,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum OnErrorArg {
    Stop,
    Skip,
}

pub(crate) fn run(args: Args) -> Result<()> {
    let mut output = Output::create(args.output.clone())?;
    let (reader, name): (Box<dyn BufRead>, PathBuf) = match &args.input {
        Some(path) => {
            let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
            (Box::new(BufReader::new(file)), path.clone())
        }
        None => (Box::new(std::io::stdin().lock()), PathBuf::from("-")),
    };
    let options = VerifyOptions {
        on_error: match args.on_error {
            OnErrorArg::Stop => OnError::Stop,
            OnErrorArg::Skip => OnError::Skip,
        },
        file: name,
        ..VerifyOptions::default()
    };
    let summary = verify_jsonl(reader, output.writer(), &options)?;
    output.finish()?;
    eprintln!(
        "verified {} lines: {} correct, mean reward {:.4}{}",
        summary.verified,
        summary.correct,
        summary.mean_reward(),
        if summary.malformed > 0 {
            format!(", {} malformed lines skipped", summary.malformed)
        } else {
            String::new()
        }
    );
    Ok(())
}
