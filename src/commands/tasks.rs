//! `redraft tasks`: the built-in task families.

use std::path::PathBuf;

use anyhow::Result;
use redraft::verifier::jsonl::generate_jsonl;
use redraft::verifier::{Difficulty, TaskFamily};

use super::Output;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Write seeded problems as JSONL (`id`, `task`, `problem`, `prompt`, `chat`, `solution`).
    Generate(GenerateArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct GenerateArgs {
    /// knights_knaves, shortest_path, binary_matrix, arithmetic or countdown.
    #[arg(long)]
    family: TaskFamily,
    /// How many problems.
    #[arg(long)]
    count: usize,
    /// Seed: the same seed gives the same problems; problem i does not depend on --count.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Difficulty knobs, e.g. `digits=3,op=mul` or a bare level such as `2`.
    #[arg(long, default_value = "")]
    difficulty: String,
    /// Write here instead of standard output.
    #[arg(long)]
    output: Option<PathBuf>,
}

pub(crate) fn run(command: Command) -> Result<()> {
    match command {
        Command::Generate(args) => {
            let difficulty: Difficulty = args.difficulty.parse()?;
            let mut output = Output::create(args.output)?;
            generate_jsonl(
                output.writer(),
                args.family,
                args.seed,
                args.count,
                &difficulty,
            )?;
            output.finish()
        }
    }
}
