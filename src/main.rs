//! The `redraft` command-line program.

mod commands;
mod server;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Reinforcement learning of language models from verifiable rewards and text feedback.
#[derive(Debug, Parser)]
#[command(name = "redraft", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a randomly initialised model directory (config, weights, tokenizer).
    InitModel(commands::init_model::Args),
    /// Convert a GGUF file (llama.cpp's format) into a Hugging Face model directory.
    Convert(commands::convert::Args),
    /// Per-token log-probabilities of token sequences or texts under a model.
    Score(commands::score::Args),
    /// Sample continuations of prompts with the KV cache.
    Generate(commands::generate::Args),
    /// Verify answers: math equivalence or built-in task responses, one verdict per line.
    Verify(commands::verify::Args),
    /// Serve a model over the OpenAI API (/v1/chat/completions, /v1/completions).
    Serve(commands::serve::Args),
    /// Train a policy: SFT warm-start and RL with any method, from a TOML configuration.
    Train(commands::train::Args),
    /// Held-out pass@1, pass@k and multi-turn success of a model on a task.
    Eval(commands::eval::Args),
    /// Built-in task families.
    #[command(subcommand)]
    Tasks(commands::tasks::Command),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("REDRAFT_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        // Warnings (a feedback provider failing, dropped examples) go to the console as plain
        // text when stderr is a file or a pipe.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::InitModel(args) => commands::init_model::run(args),
        Command::Convert(args) => commands::convert::run(args),
        Command::Score(args) => commands::score::run(args),
        Command::Generate(args) => commands::generate::run(args),
        Command::Verify(args) => commands::verify::run(args),
        Command::Serve(args) => commands::serve::run(args),
        Command::Train(args) => commands::train::run(args),
        Command::Eval(args) => commands::eval::run(args),
        Command::Tasks(command) => commands::tasks::run(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
