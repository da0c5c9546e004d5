//! `cargo xtask experiment [PRESET | CONFIG.toml]`: a reproducible comparison of methods.
//!
//! An experiment file (presets live in `configs/experiments/<name>.toml`) has
//!
//! * `seeds`, `tasks` (task families, or names of datasets: a task whose
//!   `[tasks_config.<task>]` sets `task.dataset`) and `methods`;
//! * `max_sampled_tokens`: the equal RL budget of every method, in policy-sampled tokens;
//! * `[sft]` (optional): the warm-start run (a `redraft train` configuration, usually with
//!   `model.init`), trained once per task and seed;
//! * `[base]`: the configuration every method run shares. With `[sft]` its `model.path` is set to
//!   the warm-started model; without, `[base]` names the model (`model.path`, a model folder or a
//!   `.gguf`, fetched first when it is a model `cargo xtask fetch-model` knows) and every method
//!   starts from it, evaluated once as the start (with `[lora]`, each run trains its own
//!   adapters on it);
//! * `[tasks_config.<task>]`: per-task changes to both (difficulty knobs differ per family), and
//!   `[methods_config.<method>]`: per-method changes to `[base]` (the method's own options in
//!   its `method` table, `[methods_config.r3l.method]`, whose `type` is set to the method).
//!
//! Paths (`model.init`, `model.path`, `task.dataset`) are relative to the workspace root. Every
//! configuration is validated before any work (`--check` stops there).
//!
//! Everything lands in runs/<name>-<time>/ (never an earlier run's folder): experiment.json
//! (the file, the git commit, the seeds), one folder per run, summary.json, report.md and the
//! plots.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use redraft_trainer::config::set_key;
use redraft_trainer::eval::Rate;
use redraft_trainer::report::{LinePlot, Report, Series, Table, format_mean_stderr, format_value};
use redraft_trainer::summary::last_transcripts;
use redraft_trainer::trainer::files;
use redraft_trainer::{EvalRecord, Observer, RunDir, StepMetrics, TrainConfig, Trainer};
use serde_json::{Value, json};

use crate::workspace_root;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// A preset name (configs/experiments/<name>.toml) or an experiment file.
    #[arg(default_value = "default")]
    experiment: String,
    /// Compute device for every run: cpu, wgpu or cuda[:N] (GPU devices need xtask built with
    /// the `wgpu` or `cuda` feature).
    #[arg(long)]
    device: Option<String>,
    /// Validate every run's configuration, print the plan and stop.
    #[arg(long)]
    check: bool,
}

/// The result of one method run.
struct MethodRun {
    method: String,
    dir: PathBuf,
    evals: Vec<EvalRecord>,
    wall_s: f64,
    steps: u64,
}

/// One (task, seed) cell: the warm start and the method runs.
struct Cell {
    task: String,
    seed: u64,
    start: EvalRecord,
    runs: Vec<MethodRun>,
}

/// The keys an experiment file may have.
const KEYS: [&str; 8] = [
    "seeds",
    "tasks",
    "methods",
    "max_sampled_tokens",
    "sft",
    "base",
    "tasks_config",
    "methods_config",
];

/// A parsed experiment file.
struct Experiment {
    name: String,
    text: String,
    seeds: Vec<u64>,
    tasks: Vec<String>,
    methods: Vec<String>,
    budget: i64,
    /// The warm-start run; without it the methods start from `[base]`'s `model.path`.
    sft: Option<toml::Table>,
    base: toml::Table,
    per_task: toml::Table,
    per_method: toml::Table,
}

impl Experiment {
    /// Reads and parses `path`; relative paths inside are resolved against `root`.
    fn load(path: &Path, root: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the experiment {}", path.display()))?;
        let spec: toml::Table = text
            .parse()
            .with_context(|| format!("parsing {}", path.display()))?;
        if let Some(k) = spec.keys().find(|k| !KEYS.contains(&k.as_str())) {
            bail!(
                "{}: unknown key `{k}` (known: {})",
                path.display(),
                KEYS.join(", ")
            );
        }
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("experiment")
            .to_string();
        let seeds = get_list(&spec, "seeds")?
            .iter()
            .map(|v| {
                v.as_integer()
                    .and_then(|i| u64::try_from(i).ok())
                    .context("seeds are non-negative integers")
            })
            .collect::<Result<_>>()?;
        let optional = |key: &str| match spec.get(key) {
            None => Ok(None),
            Some(toml::Value::Table(t)) => Ok(Some(t.clone())),
            Some(_) => bail!("`{key}` must be a table"),
        };
        let mut sft = optional("sft")?;
        let mut base = table(&spec, "base")?;
        // Paths in an experiment file are relative to the workspace root.
        let mut per_task = optional("tasks_config")?.unwrap_or_default();
        let task_tables = per_task.iter_mut().filter_map(|(_, v)| v.as_table_mut());
        for t in sft.iter_mut().chain([&mut base]).chain(task_tables) {
            for key in [["model", "init"], ["model", "path"], ["task", "dataset"]] {
                let path = t
                    .get(key[0])
                    .and_then(|m| m.get(key[1]))
                    .and_then(toml::Value::as_str)
                    .map(PathBuf::from);
                if let Some(path) = path.filter(|p| p.is_relative()) {
                    set_key(t, &key, root.join(path).display().to_string().into())?;
                }
            }
        }
        match &sft {
            // Its final/ would be an adapter, not a model the methods can start from.
            Some(sft) if sft.contains_key("lora") => bail!(
                "{}: `[sft]` has `lora`: the methods start from the warm start's final/ model, \
                 which a LoRA run writes as an adapter; drop `[sft]` to train LoRA adapters on \
                 `[base]`'s model.path",
                path.display()
            ),
            None if base_model(&base).is_none() => bail!(
                "{}: without `[sft]` every method starts from `[base]`'s model: set \
                 `model = {{ path = \"...\" }}` in `[base]` (a model folder or a .gguf)",
                path.display()
            ),
            _ => {}
        }
        Ok(Self {
            seeds,
            tasks: strings(&spec, "tasks")?,
            methods: strings(&spec, "methods")?,
            budget: spec
                .get("max_sampled_tokens")
                .and_then(toml::Value::as_integer)
                .context("max_sampled_tokens (an integer) is required")?,
            sft,
            base,
            per_task,
            per_method: optional("methods_config")?.unwrap_or_default(),
            name,
            text,
        })
    }

    /// `[tasks_config.<task>]`, merged into every configuration of that task.
    fn task_extra(&self, task: &str) -> Option<&toml::Table> {
        self.per_task.get(task).and_then(toml::Value::as_table)
    }

    /// The start of `task` and `seed`: the `[sft]` warm-start run, or without `[sft]` the
    /// `[base]` configuration with no steps, whose evaluation is the start's figures.
    fn start_config(&self, task: &str, seed: u64, device: Option<&str>) -> Result<TrainConfig> {
        let (mut t, what) = match &self.sft {
            Some(sft) => (sft.clone(), "sft"),
            None => (self.base.clone(), "start"),
        };
        if let Some(extra) = self.task_extra(task) {
            merge(&mut t, extra);
        }
        set_task(&mut t, task)?;
        set_key(&mut t, &["eval", "at_start"], true.into())?;
        t.insert("seed".into(), (seed as i64).into());
        t.insert("steps".into(), 0.into());
        t.insert("name".into(), format!("{task}-{what}").into());
        if let Some(d) = device {
            t.insert("device".into(), d.into());
        }
        let context = match self.sft {
            Some(_) => format!("the [sft] configuration for {task}"),
            None => format!("the start (the [base] model) for {task}"),
        };
        TrainConfig::parse(&toml::to_string(&t)?, &[]).context(context)
    }

    /// The folder of the start of `task` and `seed` under the experiment's folder `dir`.
    fn start_dir(&self, dir: &Path, task: &str, seed: u64) -> PathBuf {
        let what = if self.sft.is_some() { "sft" } else { "start" };
        dir.join(format!("{task}-seed{seed}-{what}"))
    }

    /// The model the methods start from, when it is not `[base]`'s own: the warm start's
    /// final/ under its folder `start_dir`.
    fn start_model(&self, start_dir: &Path) -> Option<PathBuf> {
        self.sft.as_ref().map(|_| start_dir.join(files::FINAL))
    }

    /// What the tables call the start.
    fn start_label(&self) -> &'static str {
        if self.sft.is_some() {
            "start (SFT)"
        } else {
            "start (base model)"
        }
    }

    /// The model files the runs open (`model.path` of `[sft]` and `[base]`).
    fn model_paths(&self) -> Vec<PathBuf> {
        self.sft
            .iter()
            .chain([&self.base])
            .filter_map(base_model)
            .collect()
    }

    /// The run of `method` on `task` and `seed`, starting from `model` (else `[base]`'s).
    fn method_config(
        &self,
        method: &str,
        task: &str,
        seed: u64,
        model: Option<&Path>,
        device: Option<&str>,
    ) -> Result<TrainConfig> {
        let mut t = self.base.clone();
        if let Some(extra) = self.task_extra(task) {
            merge(&mut t, extra);
        }
        if let Some(extra) = self.per_method.get(method).and_then(toml::Value::as_table) {
            merge(&mut t, extra);
        }
        set_key(&mut t, &["method", "type"], method.into())?;
        t.insert("name".into(), method.into());
        t.insert("seed".into(), (seed as i64).into());
        t.insert("max_sampled_tokens".into(), self.budget.into());
        set_task(&mut t, task)?;
        if let Some(model) = model {
            set_key(
                &mut t,
                &["model", "path"],
                model.display().to_string().into(),
            )?;
        }
        set_key(&mut t, &["eval", "at_start"], false.into())?;
        if let Some(d) = device {
            t.insert("device".into(), d.into());
        }
        TrainConfig::parse(&toml::to_string(&t)?, &[])
            .with_context(|| format!("the configuration of {method} on {task}"))
    }

    /// Every configuration (parsing validates it), before any work; a line per planned run.
    fn plan(&self, device: Option<&str>) -> Result<Vec<String>> {
        let mut lines = Vec::new();
        for task in &self.tasks {
            for &seed in &self.seeds {
                let c = self.start_config(task, seed, device)?;
                lines.push(match self.sft {
                    Some(_) => format!(
                        "[{task} seed {seed}] SFT {} steps × {} examples",
                        c.sft.steps, c.sft.batch_size
                    ),
                    None => format!(
                        "[{task} seed {seed}] start: {} evaluated, no SFT",
                        c.model.path.as_deref().unwrap_or(Path::new("?")).display()
                    ),
                });
                let start = self.start_model(Path::new("-"));
                for m in &self.methods {
                    let c = self.method_config(m, task, seed, start.as_deref(), device)?;
                    lines.push(format!(
                        "[{task} seed {seed}] {m}: {} sampled tokens, {} prompts × {} samples a step",
                        self.budget, c.rollout.prompts_per_step, c.rollout.group_size
                    ));
                }
            }
        }
        Ok(lines)
    }
}

pub(crate) fn run(args: Args) -> Result<()> {
    let root = workspace_root();
    let path = if args.experiment.ends_with(".toml") {
        PathBuf::from(&args.experiment)
    } else {
        root.join("configs/experiments")
            .join(format!("{}.toml", args.experiment))
    };
    let exp = Experiment::load(&path, &root)?;
    let device = args.device.as_deref();
    let plan = exp.plan(device)?;
    if args.check {
        println!("experiment {}: every configuration is valid", exp.name);
        for line in plan {
            println!("  {line}");
        }
        return Ok(());
    }
    for model in exp.model_paths() {
        crate::fetch::fetch_missing(&model)?;
    }
    let name = exp.name.clone();
    let dir = RunDir::new_under(&root, &name)?;
    std::fs::write(
        dir.join("experiment.json"),
        serde_json::to_string_pretty(&json!({
            "preset": name,
            "file": path.display().to_string(),
            "experiment": exp.text,
            "git_commit": git_commit(&root),
            "seeds": exp.seeds,
            "device": device.unwrap_or("cpu"),
        }))?,
    )?;
    println!("experiment {name}: {}", dir.display());
    let started = Instant::now();
    let cells = run_cells(&exp, &dir, device)?;
    let summary = summarize(&name, exp.start_label(), &cells);
    std::fs::write(
        dir.join("summary.json"),
        serde_json::to_string_pretty(&summary)?,
    )?;
    write_report(&dir, &name, &cells, &summary)?;
    print_table(exp.start_label(), &cells);
    println!(
        "wrote {}/summary.json and report.md ({:.0} s)",
        dir.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Every (task, seed) cell of `exp`: its start, then each method from it, in folders under `dir`.
fn run_cells(exp: &Experiment, dir: &Path, device: Option<&str>) -> Result<Vec<Cell>> {
    let mut cells = Vec::new();
    for task in &exp.tasks {
        for &seed in &exp.seeds {
            let start_dir = exp.start_dir(dir, task, seed);
            let config = exp.start_config(task, seed, device)?;
            let mut trainer = Trainer::new(config, &start_dir)?;
            let start = if exp.sft.is_some() {
                println!(
                    "[{task} seed {seed}] SFT warm-start ({} steps)",
                    trainer.config().sft.steps
                );
                trainer
                    .run(&mut Lines::new("sft"))?
                    .evals
                    .last()
                    .cloned()
                    .context("the warm-start run was not evaluated")?
            } else {
                // Only the evaluation: the start is the model itself, so nothing is written.
                println!("[{task} seed {seed}] start: the base model, evaluated");
                let record = trainer.evaluate()?;
                Lines::new("start").eval(&record);
                record
            };
            drop(trainer);
            let model = exp.start_model(&start_dir);
            let mut runs = Vec::new();
            for m in &exp.methods {
                let config = exp.method_config(m, task, seed, model.as_deref(), device)?;
                let run_dir = dir.join(format!("{task}-seed{seed}-{m}"));
                println!("[{task} seed {seed}] {m}");
                let t = Instant::now();
                let mut trainer = Trainer::new(config, &run_dir)?;
                let summary = trainer.run(&mut Lines::new(m))?;
                runs.push(MethodRun {
                    method: m.clone(),
                    dir: run_dir,
                    evals: summary.evals,
                    wall_s: t.elapsed().as_secs_f64(),
                    steps: summary.state.step,
                });
            }
            cells.push(Cell {
                task: task.clone(),
                seed,
                start,
                runs,
            });
        }
    }
    Ok(cells)
}

/// The paired difference of a method's per-problem pass@1 and the start's.
fn improvement(start: &EvalRecord, end: &EvalRecord) -> Rate {
    let d: Vec<f64> = end
        .report
        .per_problem
        .iter()
        .zip(&start.report.per_problem)
        .map(|(a, b)| a - b)
        .collect();
    Rate::of(&d)
}

/// summary.json of `cells`; `start_label` names the start in the tables
/// ([`Experiment::start_label`]).
fn summarize(name: &str, start_label: &str, cells: &[Cell]) -> Value {
    let mut by_task: BTreeMap<&str, Vec<&Cell>> = BTreeMap::new();
    for c in cells {
        by_task.entry(&c.task).or_default().push(c);
    }
    let mut tasks = serde_json::Map::new();
    for (task, cells) in &by_task {
        let starts: Vec<f64> = cells
            .iter()
            .map(|c| c.start.report.pass_at_1.mean)
            .collect();
        let one = cells.len() == 1;
        let start_stderr = if one {
            cells[0].start.report.pass_at_1.stderr
        } else {
            Rate::of(&starts).stderr
        };
        // Like the methods' pass@k and with-feedback figures: the last seed's.
        let start_last = &cells[cells.len() - 1].start.report;
        let mut methods = serde_json::Map::new();
        for (k, run) in cells[0].runs.iter().enumerate() {
            let finals: Vec<(&Cell, &MethodRun, &EvalRecord)> = cells
                .iter()
                .filter_map(|c| Some((*c, &c.runs[k], c.runs[k].evals.last()?)))
                .collect();
            let values: Vec<f64> = finals
                .iter()
                .map(|(_, _, e)| e.report.pass_at_1.mean)
                .collect();
            let rate = if one {
                finals
                    .first()
                    .map_or(Rate::of(&[]), |(_, _, e)| e.report.pass_at_1)
            } else {
                Rate::of(&values)
            };
            let gain: Vec<Rate> = finals
                .iter()
                .map(|(c, _, e)| improvement(&c.start, e))
                .collect();
            let gain_rate = if one {
                gain.first().copied().unwrap_or(Rate::of(&[]))
            } else {
                Rate::of(&gain.iter().map(|g| g.mean).collect::<Vec<_>>())
            };
            let tokens: u64 = finals.iter().map(|(_, _, e)| e.sampled_tokens).sum::<u64>()
                / finals.len().max(1) as u64;
            let wall: f64 =
                finals.iter().map(|(_, r, _)| r.wall_s).sum::<f64>() / finals.len().max(1) as f64;
            let last = finals.last().map(|(_, _, e)| &e.report);
            methods.insert(
                run.method.clone(),
                json!({
                    "pass@1": rate.mean,
                    "pass@1_stderr": rate.stderr,
                    "pass@k": last.map(|r| r.pass_at_k.mean),
                    "k": last.map(|r| r.samples),
                    "with_feedback": last.and_then(|r| r.with_feedback.map(|x| x.mean)),
                    "improvement": gain_rate.mean,
                    "improvement_stderr": gain_rate.stderr,
                    "improved_by_2_stderr": gain_rate.mean > 2.0 * gain_rate.stderr,
                    "sampled_tokens": tokens,
                    "steps": finals.iter().map(|(_, r, _)| r.steps).max(),
                    "wall_s": wall,
                    "runs": finals.iter().map(|(c, r, _)| json!({"seed": c.seed, "dir": r.dir.display().to_string()})).collect::<Vec<_>>(),
                }),
            );
        }
        tasks.insert(
            task.to_string(),
            json!({
                "start": {
                    "label": start_label,
                    "pass@1": starts.iter().sum::<f64>() / starts.len() as f64,
                    "pass@1_stderr": start_stderr,
                    "pass@k": start_last.pass_at_k.mean,
                    "k": start_last.samples,
                    "with_feedback": start_last.with_feedback.map(|x| x.mean),
                },
                "seeds": cells.iter().map(|c| c.seed).collect::<Vec<_>>(),
                "methods": methods,
            }),
        );
    }
    let first = by_task.keys().next().copied().unwrap_or("");
    let head = tasks.get(first).cloned().unwrap_or(Value::Null);
    json!({
        "preset": name,
        "task": first,
        "start": head["start"],
        "methods": head["methods"],
        "tasks": tasks,
    })
}

fn write_report(dir: &Path, name: &str, cells: &[Cell], summary: &Value) -> Result<()> {
    let mut report = Report::new(&format!("redraft experiment: {name}"));
    let mut text = String::from(
        "Every method starts from the same model (the start: the SFT warm start, or without \
         `[sft]` the base model) and trains until it has sampled the same number of policy \
         tokens; all are evaluated on the same held-out problems with the same sampling seeds. \
         `improvement` is the paired difference in per-problem pass@1 against the start, with \
         its standard error over problems (over seeds when there are several).\n\n",
    );
    for (task, t) in summary["tasks"].as_object().into_iter().flatten() {
        text += &format!(
            "**{task}** — start pass@1 {}.\n\n",
            format_mean_stderr(
                t["start"]["pass@1"].as_f64().unwrap_or(f64::NAN),
                t["start"]["pass@1_stderr"].as_f64().unwrap_or(f64::NAN),
            )
        );
        let mut best: Option<(&str, f64)> = None;
        for (m, v) in t["methods"].as_object().into_iter().flatten() {
            let p = v["pass@1"].as_f64().unwrap_or(f64::NAN);
            if best.is_none_or(|(_, b)| p > b) {
                best = Some((m, p));
            }
            let sig = v["improved_by_2_stderr"].as_bool().unwrap_or(false);
            text += &format!(
                "- {m}: pass@1 {}, improvement {} ({}).\n",
                format_mean_stderr(p, v["pass@1_stderr"].as_f64().unwrap_or(f64::NAN)),
                format_mean_stderr(
                    v["improvement"].as_f64().unwrap_or(f64::NAN),
                    v["improvement_stderr"].as_f64().unwrap_or(f64::NAN)
                ),
                if sig {
                    "more than 2 standard errors"
                } else {
                    "NOT more than 2 standard errors"
                }
            );
        }
        if let Some((m, _)) = best {
            text += &format!("\nHighest held-out pass@1 on {task}: **{m}**.\n\n");
        }
    }
    report.section("Findings", &text);
    report.table("Results", &results_table(summary));
    report.table(
        "Held-out pass@1, the papers' layout (mean ± s.e.)",
        &paper_table(summary),
    );
    for (task, _) in summary["tasks"].as_object().into_iter().flatten() {
        let cell = cells.iter().find(|c| &c.task == task);
        let Some(cell) = cell else { continue };
        let line = |x: fn(&EvalRecord) -> f64, run: &MethodRun| Series {
            label: run.method.clone(),
            points: std::iter::once(&cell.start)
                .chain(&run.evals)
                .map(|e| (x(e), e.report.pass_at_1.mean))
                .collect(),
        };
        report.plot(
            &format!("{task}_pass_at_1_vs_step.svg"),
            LinePlot {
                title: format!("{task}: held-out pass@1 (seed {})", cell.seed),
                x_label: "RL step".into(),
                y_label: "pass@1".into(),
                series: cell
                    .runs
                    .iter()
                    .map(|r| line(|e| e.step as f64, r))
                    .collect(),
            },
        );
        report.plot(
            &format!("{task}_pass_at_1_vs_tokens.svg"),
            LinePlot {
                title: format!(
                    "{task}: held-out pass@1 against sampled tokens (seed {})",
                    cell.seed
                ),
                x_label: "sampled tokens".into(),
                y_label: "pass@1".into(),
                series: cell
                    .runs
                    .iter()
                    .map(|r| line(|e| e.sampled_tokens as f64, r))
                    .collect(),
            },
        );
        let mut reward = Vec::new();
        for r in &cell.runs {
            let metrics = RunDir::open(&r.dir).metrics()?;
            reward.push(Series {
                label: r.method.clone(),
                points: redraft_trainer::summary::metric_series(&metrics, |m| m.reward_mean),
            });
        }
        report.plot(
            &format!("{task}_reward_vs_step.svg"),
            LinePlot {
                title: format!("{task}: training reward of first attempts"),
                x_label: "RL step".into(),
                y_label: "mean reward".into(),
                series: reward,
            },
        );
        let mut items = Vec::new();
        for r in &cell.runs {
            if let Ok(mut t) = last_transcripts(&RunDir::open(&r.dir))
                && let Some(mut last) = t.pop()
            {
                last.title = format!("{} ({})", r.method, last.title);
                items.push(last);
            }
        }
        report.transcripts(&format!("{task}: transcripts"), &items);
    }
    report.write(dir)?;
    Ok(())
}

fn results_table(summary: &Value) -> Table {
    let mut table = Table {
        header: [
            "task",
            "method",
            "pass@1",
            "improvement",
            "> 2 s.e.",
            "pass@k",
            "with feedback",
            "sampled tokens",
            "steps",
            "wall s",
        ]
        .map(String::from)
        .to_vec(),
        rows: Vec::new(),
    };
    let num = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    for (task, t) in summary["tasks"].as_object().into_iter().flatten() {
        table.rows.push(vec![
            task.clone(),
            start_label(t),
            format_mean_stderr(
                num(&t["start"]["pass@1"]),
                num(&t["start"]["pass@1_stderr"]),
            ),
            "–".into(),
            "–".into(),
            format_value(num(&t["start"]["pass@k"])),
            format_value(num(&t["start"]["with_feedback"])),
            "0".into(),
            "0".into(),
            "–".into(),
        ]);
        for (m, v) in t["methods"].as_object().into_iter().flatten() {
            table.rows.push(vec![
                task.clone(),
                m.clone(),
                format_mean_stderr(num(&v["pass@1"]), num(&v["pass@1_stderr"])),
                format_mean_stderr(num(&v["improvement"]), num(&v["improvement_stderr"])),
                if v["improved_by_2_stderr"].as_bool().unwrap_or(false) {
                    "yes"
                } else {
                    "no"
                }
                .into(),
                format_value(num(&v["pass@k"])),
                format_value(num(&v["with_feedback"])),
                v["sampled_tokens"].to_string(),
                v["steps"].to_string(),
                format!("{:.0}", num(&v["wall_s"])),
            ]);
        }
    }
    table
}

/// One row per task, one column per method (the start first): held-out pass@1 as mean ± s.e.,
/// the layout of the papers' result tables.
fn paper_table(summary: &Value) -> Table {
    let tasks: Vec<(&String, &Value)> =
        summary["tasks"].as_object().into_iter().flatten().collect();
    let mut methods: Vec<&String> = Vec::new();
    for (_, t) in &tasks {
        for m in t["methods"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(m, _)| m)
        {
            if !methods.contains(&m) {
                methods.push(m);
            }
        }
    }
    let cell = |v: &Value| {
        format_mean_stderr(
            v["pass@1"].as_f64().unwrap_or(f64::NAN),
            v["pass@1_stderr"].as_f64().unwrap_or(f64::NAN),
        )
    };
    let start = tasks
        .first()
        .map_or("start".into(), |(_, t)| start_label(t));
    let mut header = vec!["task".to_string(), start];
    header.extend(methods.iter().map(|m| m.to_string()));
    let rows = tasks
        .iter()
        .map(|(task, t)| {
            let mut row = vec![task.to_string(), cell(&t["start"])];
            row.extend(methods.iter().map(|m| match t["methods"].get(m.as_str()) {
                Some(v) => cell(v),
                None => "–".into(),
            }));
            row
        })
        .collect();
    Table { header, rows }
}

/// The start's name in a task of summary.json.
fn start_label(task: &Value) -> String {
    task["start"]["label"]
        .as_str()
        .unwrap_or("start")
        .to_string()
}

fn print_table(start_label: &str, cells: &[Cell]) {
    println!();
    println!("| task | seed | method | pass@1 | improvement | sampled tokens | steps | wall s |");
    println!("|---|---:|---|---:|---:|---:|---:|---:|");
    for c in cells {
        let s = &c.start.report.pass_at_1;
        println!(
            "| {} | {} | {start_label} | {:.3} ± {:.3} | – | 0 | 0 | – |",
            c.task, c.seed, s.mean, s.stderr
        );
        for r in &c.runs {
            let Some(e) = r.evals.last() else { continue };
            let g = improvement(&c.start, e);
            println!(
                "| {} | {} | {} | {:.3} ± {:.3} | {:+.3} ± {:.3} | {} | {} | {:.0} |",
                c.task,
                c.seed,
                r.method,
                e.report.pass_at_1.mean,
                e.report.pass_at_1.stderr,
                g.mean,
                g.stderr,
                e.sampled_tokens,
                r.steps,
                r.wall_s
            );
        }
    }
}

/// Progress lines of one run.
struct Lines {
    label: String,
    start: Instant,
}

impl Lines {
    fn new(label: &str) -> Self {
        Self {
            label: label.into(),
            start: Instant::now(),
        }
    }
}

impl Observer for Lines {
    fn sft_step(&mut self, step: u64, total: u64, loss: f64) {
        if step.is_multiple_of(25) || step == total {
            eprintln!(
                "  {} step {step}/{total} loss {loss:.4} ({:.0}s)",
                self.label,
                self.start.elapsed().as_secs_f64()
            );
        }
    }

    fn rl_step(&mut self, step: u64, _total: u64, m: &StepMetrics) {
        if step.is_multiple_of(5) {
            eprintln!(
                "  {} step {step}: reward {:.3} pass {:.3} tokens {} ({:.0}s)",
                self.label,
                m.reward_mean,
                m.pass_rate,
                m.sampled_tokens_total,
                self.start.elapsed().as_secs_f64()
            );
        }
    }

    fn eval(&mut self, r: &EvalRecord) {
        eprintln!(
            "  {} eval @ step {}: pass@1 {:.3} ± {:.3}",
            self.label, r.step, r.report.pass_at_1.mean, r.report.pass_at_1.stderr
        );
    }
}

fn git_commit(root: &Path) -> Option<String> {
    let out = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(root)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn get_list<'a>(spec: &'a toml::Table, key: &str) -> Result<&'a Vec<toml::Value>> {
    spec.get(key)
        .and_then(toml::Value::as_array)
        .with_context(|| format!("`{key}` (a list) is required"))
}

fn strings(spec: &toml::Table, key: &str) -> Result<Vec<String>> {
    get_list(spec, key)?
        .iter()
        .map(|v| {
            v.as_str()
                .map(str::to_string)
                .with_context(|| format!("`{key}` holds strings"))
        })
        .collect()
}

/// Names the task of a run configuration table: a built-in family `task`, unless the table
/// (its `[tasks_config.<task>]`) gives a `task.dataset`, whose problems `task` then names.
fn set_task(t: &mut toml::Table, task: &str) -> Result<()> {
    let dataset = t.get("task").and_then(|x| x.get("dataset")).is_some();
    if !dataset {
        set_key(t, &["task", "family"], task.into())?;
    }
    Ok(())
}

/// `model.path` of a run configuration table.
fn base_model(t: &toml::Table) -> Option<PathBuf> {
    t.get("model")
        .and_then(|m| m.get("path"))
        .and_then(toml::Value::as_str)
        .map(PathBuf::from)
}

fn table(spec: &toml::Table, key: &str) -> Result<toml::Table> {
    match spec.get(key) {
        Some(toml::Value::Table(t)) => Ok(t.clone()),
        Some(_) => bail!("`{key}` must be a table"),
        None => bail!("`[{key}]` is required"),
    }
}

/// Sets `path` in a table, creating intermediate tables.
/// Merges `extra` into `t` (tables recursively, other values replaced).
fn merge(t: &mut toml::Table, extra: &toml::Table) {
    for (k, v) in extra {
        match (t.get_mut(k), v) {
            (Some(toml::Value::Table(a)), toml::Value::Table(b)) => merge(a, b),
            _ => {
                t.insert(k.clone(), v.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redraft_trainer::eval::EvalReport;

    /// Every preset shipped in configs/experiments/ parses and every run of it validates.
    #[test]
    fn every_preset_validates() {
        let root = workspace_root();
        let mut seen = 0;
        for entry in std::fs::read_dir(root.join("configs/experiments")).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let exp = Experiment::load(&path, &root).unwrap();
                let plan = exp
                    .plan(None)
                    .unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
                assert_eq!(
                    plan.len(),
                    exp.tasks.len() * exp.seeds.len() * (1 + exp.methods.len())
                );
                seen += 1;
            }
        }
        assert!(seen >= 3, "the default, paper and smollm2 presets");
    }

    /// The default preset's method tables resolve to the settings its runs were measured with.
    #[test]
    fn default_preset_methods_keep_their_settings() {
        use redraft_trainer::MethodConfig;
        let root = workspace_root();
        let exp = Experiment::load(&root.join("configs/experiments/default.toml"), &root).unwrap();
        let method = |m: &str| {
            exp.method_config(m, "arithmetic", 0, Some(Path::new("-")), None)
                .unwrap()
                .method
        };
        assert_eq!(
            method("grpo"),
            MethodConfig::defaults(redraft_trainer::Method::Grpo)
        );
        let MethodConfig::R3l(r3l) = method("r3l") else {
            panic!("r3l")
        };
        let s = r3l.strategy.unwrap();
        assert_eq!(
            (s.base_per_problem, s.max_attempts, s.replay_to_pivot),
            (4, 1, false)
        );
        let feedback = serde_json::to_value(&r3l.feedback).unwrap();
        assert_eq!(feedback["type"], "verifier_critic");
        let MethodConfig::Mulferl(mulferl) = method("mulferl") else {
            panic!("mulferl")
        };
        let s = mulferl.strategy.unwrap();
        assert_eq!((s.group_size, s.feedback_per_group), (8, Some(1)));
        let MethodConfig::RltfSd(sd) = method("rltf_sd") else {
            panic!("rltf_sd")
        };
        assert_eq!(sd.objective.rl_coef.at(0), 1.0);
        let MethodConfig::RltfFm(fm) = method("rltf_fm") else {
            panic!("rltf_fm")
        };
        assert_eq!(fm.objective.fm_coef, 0.1);
        let aggregation = serde_json::to_value(fm.objective.fm_aggregation).unwrap();
        assert_eq!(aggregation["kind"], "token_mean");
    }

    #[test]
    fn unknown_keys_and_bad_runs_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let root = workspace_root();
        let good = std::fs::read_to_string(root.join("configs/experiments/default.toml")).unwrap();
        let typo = dir.join("typo.toml");
        std::fs::write(&typo, format!("method = [\"grpo\"]\n{good}")).unwrap();
        let err = Experiment::load(&typo, &root).err().unwrap().to_string();
        assert!(err.contains("unknown key `method`"), "{err}");
        let bad = dir.join("bad.toml");
        std::fs::write(
            &bad,
            format!("{good}\n[tasks_config.arithmetic.task.difficulty]\nwidth = 3\n"),
        )
        .unwrap();
        let exp = Experiment::load(&bad, &root).unwrap();
        let err = format!("{:#}", exp.plan(None).unwrap_err());
        assert!(err.contains("width"), "{err}");
    }

    /// An experiment file in `dir` with `[base]` as given and no `[sft]`.
    fn without_sft(dir: &Path, base: &str) -> PathBuf {
        let path = dir.join("nosft.toml");
        std::fs::write(
            &path,
            format!(
                "seeds = [0]\ntasks = [\"arithmetic\"]\nmethods = [\"grpo\", \"rltf_sd\"]\n\
                 max_sampled_tokens = 100000\n{base}"
            ),
        )
        .unwrap();
        path
    }

    /// Without `[sft]`, the start is `[base]`'s model (a path relative to the workspace root),
    /// evaluated with no steps, and every method trains from it: with `[lora]`, adapters on it.
    #[test]
    fn without_sft_every_run_starts_from_the_base_model() {
        let tmp = tempfile::tempdir().unwrap();
        let root = workspace_root();
        let path = without_sft(
            tmp.path(),
            "[base]\nmodel = { path = \"models/some.gguf\" }\n\
             task = { difficulty = { digits = 1 } }\n\
             lora = { rank = 4, alpha = 8, target_modules = [\"q_proj\"] }\n",
        );
        let exp = Experiment::load(&path, &root).unwrap();
        let base = root.join("models/some.gguf");
        assert_eq!(exp.model_paths(), vec![base.clone()]);
        assert_eq!(exp.plan(None).unwrap().len(), 3);
        let start = exp.start_config("arithmetic", 0, None).unwrap();
        assert_eq!((start.steps, start.sft.steps), (0, 0));
        assert!(start.eval.at_start);
        assert_eq!(start.model.path.as_deref(), Some(base.as_path()));
        assert!(start.lora.is_some());
        assert_eq!(exp.start_model(Path::new("d")), None);
        assert_eq!(
            exp.start_dir(Path::new("d"), "arithmetic", 0),
            Path::new("d/arithmetic-seed0-start")
        );
        for m in ["grpo", "rltf_sd"] {
            let c = exp.method_config(m, "arithmetic", 0, None, None).unwrap();
            assert_eq!(c.model.path.as_deref(), Some(base.as_path()), "{m}");
            assert_eq!(c.lora.as_ref().map(|l| l.rank), Some(4), "{m}");
            assert!(!c.eval.at_start, "{m}");
        }
        assert_eq!(exp.start_label(), "start (base model)");

        // No model to start from, or a warm start that would write an adapter: refused.
        let path = without_sft(tmp.path(), "[base]\nsteps = 3\n");
        let err = Experiment::load(&path, &root).err().unwrap().to_string();
        assert!(err.contains("without `[sft]`"), "{err}");
        let path = without_sft(
            tmp.path(),
            "[sft]\nmodel = { path = \"m\" }\n[sft.lora]\nrank = 4\n[base]\nsteps = 3\n",
        );
        let err = Experiment::load(&path, &root).err().unwrap().to_string();
        assert!(err.contains("`[sft]` has `lora`"), "{err}");
    }

    /// The whole harness without `[sft]`, on a tiny model: the start is the base model's
    /// evaluation (nothing written beside it), each method trains LoRA adapters on the base, and
    /// the summary and report name the start as the base model.
    #[test]
    fn an_experiment_without_sft_trains_adapters_on_the_base_model() {
        let tmp = tempfile::tempdir().unwrap();
        let root = workspace_root();
        // The base: a randomly initialised tiny byte-level Llama, written as a model folder.
        let init = format!(
            "steps = 0\nmodel = {{ init = '{}' }}\ntask = {{ family = \"arithmetic\" }}\n\
             rollout = {{ max_new_tokens = 8 }}\n\
             eval = {{ at_start = false, with_feedback = false }}\n",
            root.join("configs/models/tiny-byte-llama.json").display()
        );
        let mut trainer = Trainer::new(
            TrainConfig::parse(&init, &[]).unwrap(),
            &tmp.path().join("init"),
        )
        .unwrap();
        trainer.run(&mut Lines::new("init")).unwrap();
        let base = tmp.path().join("init").join(files::FINAL);
        let path = without_sft(
            tmp.path(),
            &format!(
                "[base]\nsteps = 1\nmodel = {{ path = '{}' }}\n\
                 task = {{ difficulty = {{ digits = 1, prompt = \"plain\" }} }}\n\
                 rollout = {{ prompts_per_step = 2, group_size = 2, max_new_tokens = 8 }}\n\
                 eval = {{ problems = 2, samples = 1 }}\n\
                 checkpoint = {{ every = 0, keep = 1 }}\n\
                 [base.lora]\nrank = 2\nalpha = 4\ntarget_modules = [\"q_proj\", \"v_proj\"]\n\
                 [base.templates]\n\
                 rltf_revision = \"{{{{ question }}}}\\nPrevious: {{{{ previous_solution }}}}\\n\
                 Critique: {{{{ critique }}}}\\n{{{{ question }}}}\"\n",
                base.display()
            ),
        );
        let exp = Experiment::load(&path, &root).unwrap();
        let dir = tmp.path().join("experiment");
        let cells = run_cells(&exp, &dir, None).unwrap();
        assert_eq!(cells.len(), 1);
        let cell = &cells[0];
        assert_eq!(cell.start.step, 0);
        assert_eq!(cell.start.report.problems, 2);
        let start = dir.join("arithmetic-seed0-start");
        assert!(start.join(files::EVALS).is_file());
        assert!(!start.join(files::FINAL).exists());
        let methods: Vec<&str> = cell.runs.iter().map(|r| r.method.as_str()).collect();
        assert_eq!(methods, ["grpo", "rltf_sd"]);
        for run in &cell.runs {
            assert_eq!(run.steps, 1, "{}", run.method);
            assert_eq!(run.evals.last().map(|e| e.step), Some(1), "{}", run.method);
            let adapter = run.dir.join(files::FINAL).join("adapter_config.json");
            assert!(adapter.is_file(), "{}", adapter.display());
            let config: toml::Table = std::fs::read_to_string(run.dir.join(files::CONFIG))
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(
                base_model(&config).as_deref(),
                Some(base.as_path()),
                "{}",
                run.method
            );
        }
        let summary = summarize("nosft", exp.start_label(), &cells);
        assert_eq!(results_table(&summary).rows[0][1], "start (base model)");
        assert_eq!(paper_table(&summary).header[1], "start (base model)");
        write_report(&dir, "nosft", &cells, &summary).unwrap();
        let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
        assert!(report.contains("start (base model)"));
    }

    fn record(per_problem: &[f64], with_feedback: f64) -> EvalRecord {
        let rate = Rate::of(per_problem);
        EvalRecord {
            step: 3,
            sampled_tokens: 100,
            report: EvalReport {
                problems: per_problem.len(),
                samples: 2,
                pass_at_1: rate,
                pass_at_k: rate,
                per_problem: per_problem.to_vec(),
                format_ok: 1.0,
                with_feedback: Some(Rate::of(&[with_feedback])),
                with_feedback_missing: 0,
                self_feedback: None,
                sampled_tokens: 0,
                wall_s: 1.0,
            },
        }
    }

    /// summary.json: the start with its feedback figure, each method's paired improvement, and
    /// the report's table built from them.
    #[test]
    fn the_summary_pairs_each_method_with_the_start() {
        let run = |method: &str, per_problem: &[f64]| MethodRun {
            method: method.into(),
            dir: PathBuf::from(method),
            evals: vec![record(per_problem, 0.9)],
            wall_s: 2.0,
            steps: 3,
        };
        let cell = Cell {
            task: "arithmetic".into(),
            seed: 0,
            start: record(&[0.0, 0.5, 0.5, 0.0], 0.4),
            runs: vec![
                run("grpo", &[1.0, 1.0, 1.0, 0.5]),
                run("rltf_sd", &[0.0, 0.5, 0.5, 0.0]),
            ],
        };
        let s = summarize("test", "start (SFT)", &[cell]);
        assert_eq!(s["task"], "arithmetic");
        assert_eq!(s["start"]["pass@1"], 0.25);
        assert_eq!(s["start"]["with_feedback"], 0.4);
        let grpo = &s["methods"]["grpo"];
        assert_eq!(grpo["pass@1"], 0.875);
        // Paired differences 1, .5, .5, .5: mean .625, s.e. .125.
        assert_eq!(grpo["improvement"], 0.625);
        assert!((grpo["improvement_stderr"].as_f64().unwrap() - 0.125).abs() < 1e-12);
        assert_eq!(grpo["improved_by_2_stderr"], true);
        assert_eq!(s["methods"]["rltf_sd"]["improved_by_2_stderr"], false);
        let table = results_table(&s);
        assert_eq!(table.rows[0][1], "start (SFT)");
        assert_eq!(table.rows[0][6], format_value(0.4));
        assert_eq!(table.rows[1][4], "yes");
        assert_eq!(table.rows[2][4], "no");
    }
}
