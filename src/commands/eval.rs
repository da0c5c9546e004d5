//! `redraft eval`: held-out figures of a model on a built-in task.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use redraft::feedback::{CriticConfig, Templates, VerifierCritic};
use redraft::model::DeviceSpec;
use redraft::trainer::config::{EvalConfig, TaskConfig};
use redraft::trainer::{Evaluator, ProblemSource};
use redraft::verifier::{Difficulty, TaskFamily};

use super::{LoadedModel, Output};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The model folder (config.json, safetensors, tokenizer) or a `.gguf` file.
    #[arg(long)]
    model: PathBuf,
    /// A PEFT LoRA adapter folder (adapter_config.json, adapter_model.safetensors) to apply to
    /// the model.
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// A built-in task family (arithmetic, countdown, knights_knaves, shortest_path,
    /// binary_matrix) or a JSONL/Parquet dataset of math problems.
    #[arg(long)]
    task: String,
    /// Difficulty knobs of a task family, e.g. `digits=3`.
    #[arg(long, default_value = "")]
    difficulty: String,
    /// Seed of the held-out problems (training runs use task.seed; the default matches 0).
    #[arg(long, default_value_t = 0)]
    task_seed: u64,
    /// Held-out problems.
    #[arg(long, default_value_t = 128)]
    problems: usize,
    /// Samples per problem (pass@k is reported for k = 1 and k = samples).
    #[arg(long, default_value_t = 4)]
    samples: usize,
    /// Sampling temperature (0: greedy).
    #[arg(long, default_value_t = 1.0)]
    temperature: f64,
    /// New tokens per turn.
    #[arg(long, default_value_t = 128)]
    max_new_tokens: usize,
    /// Most rows decoding at once, the others waiting for a finished row's slot (0: all).
    #[arg(long, default_value_t = 0)]
    max_batch_rows: usize,
    /// Also measure success when a failed attempt gets the verifier's critique and one revision.
    #[arg(long)]
    with_feedback: bool,
    /// Also measure RLTF-FM's test-time self-feedback (the model critiques itself).
    #[arg(long)]
    self_feedback: bool,
    /// Prompt templates to replace by name: a TOML file with a `[templates]` table, such as a
    /// run's config.toml (so that feedback turns use the prompts the model was trained on).
    #[arg(long)]
    templates: Option<PathBuf>,
    /// Sampling seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Compute device: cpu, wgpu or cuda[:N].
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
    /// Also write the figures as JSON here.
    #[arg(long)]
    out: Option<PathBuf>,
}

pub(crate) fn run(args: Args) -> Result<()> {
    let out = args
        .out
        .clone()
        .map(|p| Output::create(Some(p)))
        .transpose()?;
    let loaded = LoadedModel::open(&args.model, args.adapter.as_deref(), args.device)?;
    let task = match args.task.parse::<TaskFamily>() {
        Ok(family) => TaskConfig {
            family: Some(family),
            difficulty: args.difficulty.parse::<Difficulty>()?,
            dataset: None,
            reasoning_gym: None,
            test_fraction: 0.1,
            seed: args.task_seed,
        },
        Err(_) => TaskConfig {
            family: None,
            difficulty: Difficulty::default(),
            dataset: Some(PathBuf::from(&args.task)),
            reasoning_gym: None,
            test_fraction: 0.1,
            seed: args.task_seed,
        },
    };
    let source = ProblemSource::new(&task, args.problems)
        .with_context(|| format!("loading the task {}", args.task))?;
    let config = EvalConfig {
        every: 0,
        at_start: true,
        problems: args.problems,
        samples: args.samples,
        temperature: args.temperature,
        with_feedback: args.with_feedback,
        self_feedback: args.self_feedback,
    };
    let critic = VerifierCritic::new(CriticConfig::default());
    let evaluator = Evaluator {
        policy: &loaded.model,
        tokenizer: Arc::from(loaded.tokenizer),
        device: &loaded.device,
        config: &config,
        max_new_tokens: args.max_new_tokens,
        max_batch_rows: args.max_batch_rows,
        feedback: Some(&critic),
        templates: match &args.templates {
            Some(path) => load_templates(path)?,
            None => Templates::new(),
        },
        verifier: redraft::verifier::default_verifier(),
    };
    let report = evaluator.run(source.eval(), args.seed)?;
    println!("problems        {}", report.problems);
    println!(
        "pass@1          {:.4} ± {:.4}",
        report.pass_at_1.mean, report.pass_at_1.stderr
    );
    println!(
        "pass@{:<10} {:.4} ± {:.4}",
        report.samples, report.pass_at_k.mean, report.pass_at_k.stderr
    );
    if let Some(text) = report.with_feedback_text(4) {
        println!("with feedback   {text}");
    }
    if let Some(r) = report.self_feedback {
        println!("self-feedback   {:.4} ± {:.4}", r.mean, r.stderr);
    }
    println!("format ok       {:.4}", report.format_ok);
    if let Some(mut out) = out {
        out.line(&serde_json::to_string_pretty(&report)?)?;
        out.finish()?;
    }
    Ok(())
}

/// The `[templates]` table of a TOML file over the default templates.
fn load_templates(path: &Path) -> Result<Templates> {
    #[derive(serde::Deserialize)]
    struct File {
        templates: Option<BTreeMap<String, String>>,
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let file: File =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let table = file
        .templates
        .with_context(|| format!("{} has no [templates] table", path.display()))?;
    Templates::with_overrides(&table).with_context(|| format!("templates of {}", path.display()))
}
