//! `redraft train`: a training run from a TOML configuration, or the continuation of one.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use redraft::trainer::{
    EvalRecord, Observer, RunDir, StepMetrics, TrainConfig, Trainer, preflight,
};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The run configuration (TOML; see the README and crates/redraft-trainer/src/config.rs).
    #[arg(long, required_unless_present = "resume")]
    config: Option<PathBuf>,
    /// Override a key of the configuration, e.g. `--set optimizer.lr=3e-4` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// The run folder (default: runs/<name>-<time>/, never an existing one).
    #[arg(long, conflicts_with = "resume")]
    run_dir: Option<PathBuf>,
    /// Continue the run in this folder from its latest checkpoint.
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["config", "overrides", "max_memory"])]
    resume: Option<PathBuf>,
    /// Refuse a run whose estimated memory exceeds this (e.g. `8GiB`; the `max_memory` key).
    #[arg(long, value_name = "BYTES")]
    max_memory: Option<String>,
    /// Run the start-up checks (configuration, context, memory) and stop.
    #[arg(long, conflicts_with = "resume")]
    check: bool,
    /// With `[lora]`: also write RUN/merged/, the base with the trained adapters folded into
    /// its weights (a Hugging Face model folder).
    #[arg(long)]
    merge: bool,
}

pub(crate) fn run(args: Args) -> Result<()> {
    let mut trainer = match (&args.resume, &args.config) {
        (Some(dir), _) => {
            check_merge(&args, &RunDir::open(dir).config()?)?;
            Trainer::resume(dir).with_context(|| format!("resuming {}", dir.display()))?
        }
        (None, Some(path)) => {
            let mut overrides = args.overrides.clone();
            if let Some(limit) = &args.max_memory {
                overrides.push(format!("max_memory={}", toml_string(limit)));
            }
            let config = TrainConfig::load(path, &overrides)?;
            if args.merge && config.lora.is_none() {
                bail!(
                    "--merge needs a [lora] table in the configuration: only adapters can be merged"
                );
            }
            if args.check {
                let p = preflight(&config)?;
                println!(
                    "ok: {} turns fit the {}-token context ({} needs the most: {} prompt tokens{} + {} new + {} closing); estimated memory {}{}",
                    config.run_name(),
                    p.context,
                    p.longest.turn,
                    p.longest.tokens,
                    if p.longest.grows { " at least" } else { "" },
                    config.rollout.max_new_tokens,
                    p.longest.turn_end,
                    p.memory,
                    p.limit
                        .map(|l| format!(", within the {l}"))
                        .unwrap_or_default()
                );
                return Ok(());
            }
            let dir = match &args.run_dir {
                Some(d) => d.clone(),
                None => RunDir::new_under(&std::env::current_dir()?, &config.run_name())?,
            };
            Trainer::new(config, &dir)?
        }
        (None, None) => bail!("give --config RUN.toml or --resume RUN_DIR"),
    };
    eprintln!("run folder: {}", trainer.run_dir().display());
    let summary = trainer.run(&mut Progress::default())?;
    if args.merge {
        let dir = trainer.save_merged()?;
        println!("merged model: {}", dir.display());
    }
    if let (Some(first), Some(last)) = (summary.evals.first(), summary.evals.last()) {
        println!(
            "held-out pass@1: {:.3} ± {:.3} (start) -> {:.3} ± {:.3} (step {})",
            first.report.pass_at_1.mean,
            first.report.pass_at_1.stderr,
            last.report.pass_at_1.mean,
            last.report.pass_at_1.stderr,
            last.step
        );
    }
    println!("report: {}", summary.run_dir.join("report.md").display());
    Ok(())
}

/// Refuses `--merge` for a run without `[lora]`, before any work.
fn check_merge(args: &Args, config: &TrainConfig) -> Result<()> {
    if args.merge && config.lora.is_none() {
        bail!("--merge needs a [lora] table in the configuration: only adapters can be merged");
    }
    Ok(())
}

/// `text` as a TOML string (for the `--set` override that `--max-memory` becomes).
fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

/// One progress line per step on standard error, with the key figures.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    start: Option<std::time::Instant>,
}

impl Progress {
    fn bar(&mut self, stage: &str, step: u64, total: u64) -> String {
        let start = *self.start.get_or_insert_with(std::time::Instant::now);
        let width = 20;
        let done = (step * width / total.max(1)) as usize;
        let elapsed = start.elapsed().as_secs_f64();
        format!(
            "{stage} [{}{}] {step}/{total} {elapsed:.0}s",
            "#".repeat(done),
            ".".repeat(width as usize - done)
        )
    }
}

impl Observer for Progress {
    fn sft_step(&mut self, step: u64, total: u64, loss: f64) {
        if step == total || step.is_multiple_of(10) {
            eprintln!("{} loss {loss:.4}", self.bar("sft", step, total));
        }
    }

    fn rl_step(&mut self, step: u64, total: u64, m: &StepMetrics) {
        // Sampling on servers: how many held the step's weights, and the log-prob gap.
        let servers = m.sampler.as_ref().map_or(String::new(), |s| {
            format!(
                " servers {}/{} gap {:.1e} retries {}",
                s.servers_ready, s.servers, s.logprob_gap_max, s.retries
            )
        });
        eprintln!(
            "{} reward {:.3} pass {:.3} loss {:+.4} grad {:.2} tokens {} ({:.0}/s) {:.1}s/step{servers}",
            self.bar("rl", step, total),
            m.reward_mean,
            m.pass_rate,
            m.total_loss().unwrap_or(f64::NAN),
            m.loss.get("grad_norm").copied().unwrap_or(f64::NAN),
            m.sampled_tokens,
            m.tokens_per_s,
            m.step_s,
        );
        self.start.get_or_insert_with(std::time::Instant::now);
    }

    fn eval(&mut self, r: &EvalRecord) {
        let mut line = format!(
            "eval @ step {}: pass@1 {:.3} ± {:.3}, pass@{} {:.3}",
            r.step,
            r.report.pass_at_1.mean,
            r.report.pass_at_1.stderr,
            r.report.samples,
            r.report.pass_at_k.mean
        );
        if let Some(f) = r.report.with_feedback_text(3) {
            line += &format!(", with feedback {f}");
        }
        eprintln!("{line}");
    }
}
