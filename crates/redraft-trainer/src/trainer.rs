//! The training loop: SFT warm-start, then RL steps of sample prompts → rollout strategy
//! (verify, feedback) → credit assignment → objective → backward → clip → AdamW, with
//! evaluations, checkpoints, per-step metrics and the end-of-run report.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use redraft_feedback_protocol::{ChatModel, FeedbackProvider, ProviderConfig, Templates};
use redraft_model::burn::tensor::Tensor;
use redraft_model::{CausalLm, ModelConfig, SaveDType};
use redraft_objectives::{Objective, PairRows, PolicyBatch, RowKind};
use redraft_rollout_engine::{
    PolicyChat, RolloutBatch, RolloutContext, RolloutStrategy, SamplingParams, derive_seed,
};
use redraft_tokenizer::{ByteTokenizer, Tokenizer, load_tokenizer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::checkpoint::{self, TrainState};
use crate::config::TrainConfig;
use crate::error::{Error, Result};
use crate::eval::{EvalReport, Evaluator};
use crate::learner::{Learner, Padded, UpdateOutcome, upload};
use crate::problems::ProblemSource;
use crate::rows::{Assembler, Row, TrainRows};
use crate::sft::sft_rows;

/// File names inside a run folder.
pub mod files {
    /// The run configuration.
    pub const CONFIG: &str = "config.toml";
    /// One JSON object per SFT or RL step.
    pub const METRICS: &str = "metrics.jsonl";
    /// One JSON object per evaluation.
    pub const EVALS: &str = "eval.jsonl";
    /// A few episodes of the last steps, for reading.
    pub const TRANSCRIPTS: &str = "transcripts.jsonl";
    /// The tokenizer of a randomly initialised model.
    pub const TOKENIZER: &str = "tokenizer";
    /// The frozen reference model (when a KL term or pair loss needs one).
    pub const REFERENCE: &str = "reference";
    /// The final policy.
    pub const FINAL: &str = "final";
}

/// One evaluation, as written to eval.jsonl.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    /// RL steps done when it ran.
    pub step: u64,
    /// RL-sampled tokens by then.
    pub sampled_tokens: u64,
    /// The figures.
    pub report: EvalReport,
}

/// Something that watches a run (a progress bar, a test).
pub trait Observer {
    /// After each SFT step.
    fn sft_step(&mut self, _step: u64, _total: u64, _loss: f64) {}
    /// After each RL step, with its metrics record.
    fn rl_step(&mut self, _step: u64, _total: u64, _metrics: &Map<String, Value>) {}
    /// After each evaluation.
    fn eval(&mut self, _record: &EvalRecord) {}
    /// After each checkpoint.
    fn checkpoint(&mut self, _dir: &Path) {}
}

/// An observer that does nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl Observer for Silent {}

/// The end of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// The run folder.
    pub run_dir: PathBuf,
    /// Every evaluation, in order (the first is the start, the last the end).
    pub evals: Vec<EvalRecord>,
    /// The final loop state.
    pub state: TrainState,
}

/// A training run.
pub struct Trainer {
    config: TrainConfig,
    run_dir: PathBuf,
    tokenizer: Arc<dyn Tokenizer>,
    tokenizer_dir: PathBuf,
    learner: Learner,
    reference: Option<CausalLm>,
    source: ProblemSource,
    strategy: Box<dyn RolloutStrategy>,
    objective: Box<dyn Objective>,
    templates: Templates,
    state: TrainState,
    last_batch: Option<RolloutBatch>,
    last_problems: Vec<redraft_verifier::Problem>,
}

impl std::fmt::Debug for Trainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer")
            .field("run_dir", &self.run_dir)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Trainer {
    /// A fresh run of `config` in `run_dir` (created; it must be empty or absent).
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid configuration or a non-empty folder; loading errors.
    pub fn new(config: TrainConfig, run_dir: &Path) -> Result<Self> {
        config.validate()?;
        if run_dir.exists()
            && std::fs::read_dir(run_dir)
                .map_err(|e| Error::io(run_dir, e))?
                .next()
                .is_some()
        {
            return Err(Error::config(
                ".",
                format!(
                    "{} is not empty: resume it with --resume or choose another folder",
                    run_dir.display()
                ),
            ));
        }
        std::fs::create_dir_all(run_dir).map_err(|e| Error::io(run_dir, e))?;
        redraft_model::write_atomic(&run_dir.join(files::CONFIG), config.to_toml()?.as_bytes())?;
        Self::build(config, run_dir, TrainState::default())
    }

    /// Continues the run in `run_dir` from its latest checkpoint (or from the start when it
    /// has none), with the configuration saved in it. Metrics recorded after that checkpoint
    /// are discarded: those steps run again and, on CPU, give the same numbers.
    ///
    /// # Errors
    /// [`Error::Checkpoint`] for a broken checkpoint; loading errors.
    pub fn resume(run_dir: &Path) -> Result<Self> {
        let Some(dir) = checkpoint::latest(run_dir)? else {
            let config = TrainConfig::load(&run_dir.join(files::CONFIG), &[])?;
            truncate_log(&run_dir.join(files::METRICS), |_| false)?;
            truncate_log(&run_dir.join(files::EVALS), |_| false)?;
            return Self::build(config, run_dir, TrainState::default());
        };
        let loaded = checkpoint::read(&dir)?;
        let state = loaded.state.clone();
        let mut trainer = Self::build(loaded.config, run_dir, state.clone())?;
        checkpoint::restore(&dir, &mut trainer.learner, &trainer.config)?;
        if trainer.objective.needs_reference() && state.step > 0 {
            let path = run_dir.join(files::REFERENCE);
            trainer.reference = Some(CausalLm::from_pretrained(
                &path,
                trainer.learner.infer_device(),
            )?);
        }
        truncate_log(&run_dir.join(files::METRICS), |v| {
            match v.get("stage").and_then(Value::as_str) {
                Some("sft") => v["step"].as_u64().is_some_and(|s| s <= state.sft_step),
                _ => v["step"].as_u64().is_some_and(|s| s <= state.step),
            }
        })?;
        truncate_log(&run_dir.join(files::EVALS), |v| {
            v["step"].as_u64().is_some_and(|s| s <= state.step)
        })?;
        Ok(trainer)
    }

    fn build(config: TrainConfig, run_dir: &Path, state: TrainState) -> Result<Self> {
        let spec = config.device_spec()?;
        let device = spec.train_device()?;
        let infer_device = spec.device()?;
        let (model, tokenizer, tokenizer_dir): (CausalLm, Arc<dyn Tokenizer>, PathBuf) =
            match (&config.model.path, &config.model.init) {
                (Some(path), _) => {
                    let model = CausalLm::from_pretrained(path, &device)?;
                    (model, Arc::from(load_tokenizer(path)?), path.clone())
                }
                (None, Some(init)) => {
                    let cfg = ModelConfig::from_file(init)?;
                    let model = CausalLm::init(&cfg, config.seed, &device)?;
                    let tok = ByteTokenizer::new();
                    let dir = run_dir.join(files::TOKENIZER);
                    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
                    tok.save(&dir)?;
                    (model, Arc::new(tok), dir)
                }
                (None, None) => return Err(Error::config("model", "no path and no init")),
            };
        let special = tokenizer.special_tokens();
        let pad = special.pad.or(special.eos).unwrap_or(0);
        let learner = Learner::new(model, &config.optimizer, device, infer_device, pad);
        let source = ProblemSource::new(&config.task, config.eval.problems)?;
        let strategy = config.strategy().build()?;
        let objective = config.objective().build()?;
        Ok(Self {
            run_dir: run_dir.to_path_buf(),
            tokenizer,
            tokenizer_dir,
            learner,
            reference: None,
            source,
            strategy,
            objective,
            templates: Templates::with_overrides(&config.templates)?,
            state,
            last_batch: None,
            last_problems: Vec::new(),
            config,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// The loop state.
    pub fn state(&self) -> &TrainState {
        &self.state
    }

    /// The run folder.
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// Runs the remaining SFT and RL steps with evaluations and checkpoints, then writes the
    /// final model and the report.
    ///
    /// # Errors
    /// Any failure of a step; the latest checkpoint stays valid.
    pub fn run(&mut self, observer: &mut dyn Observer) -> Result<RunSummary> {
        while self.state.sft_step < self.config.sft.steps {
            let loss = self.sft_step()?;
            observer.sft_step(self.state.sft_step, self.config.sft.steps, loss);
        }
        if self.state.step == 0 {
            if self.config.sft.steps > 0 {
                let dir = self.checkpoint()?;
                observer.checkpoint(&dir);
            }
            self.freeze_reference()?;
            if self.config.eval.at_start && !self.has_eval_at(0)? {
                let record = self.evaluate()?;
                observer.eval(&record);
            }
        } else if self.objective.needs_reference() && self.reference.is_none() {
            self.freeze_reference()?;
        }
        while self.state.step < self.config.steps && !self.budget_spent() {
            let metrics = self.rl_step()?;
            observer.rl_step(self.state.step, self.config.steps, &metrics);
            let step = self.state.step;
            let last = step >= self.config.steps || self.budget_spent();
            if self.config.eval.every > 0 && step.is_multiple_of(self.config.eval.every) && !last {
                let record = self.evaluate()?;
                observer.eval(&record);
            }
            if self.config.checkpoint.every > 0
                && step.is_multiple_of(self.config.checkpoint.every)
                && !last
            {
                let dir = self.checkpoint()?;
                observer.checkpoint(&dir);
            }
        }
        if self.config.steps > 0 && !self.has_eval_at(self.state.step)? {
            let record = self.evaluate()?;
            observer.eval(&record);
        }
        let dir = self.checkpoint()?;
        observer.checkpoint(&dir);
        self.save_final()?;
        let evals = read_evals(&self.run_dir.join(files::EVALS))?;
        crate::summary::write_report(&self.run_dir, &self.config, &evals, &self.metrics()?)?;
        Ok(RunSummary {
            run_dir: self.run_dir.clone(),
            evals,
            state: self.state.clone(),
        })
    }

    /// Whether the sampled-token budget is used up.
    fn budget_spent(&self) -> bool {
        self.config.max_sampled_tokens > 0
            && self.state.sampled_tokens >= self.config.max_sampled_tokens
    }

    /// The step records of metrics.jsonl.
    fn metrics(&self) -> Result<Vec<Map<String, Value>>> {
        read_jsonl(&self.run_dir.join(files::METRICS))
    }

    fn has_eval_at(&self, step: u64) -> Result<bool> {
        Ok(read_evals(&self.run_dir.join(files::EVALS))?
            .iter()
            .any(|e| e.step == step))
    }

    /// The policy's current weights as the frozen reference, when the objective needs one.
    fn freeze_reference(&mut self) -> Result<()> {
        if !self.objective.needs_reference() {
            return Ok(());
        }
        let dir = self.run_dir.join(files::REFERENCE);
        if !dir.join("config.json").is_file() {
            self.learner.model().save_pretrained(&dir, SaveDType::F32)?;
        }
        self.reference = Some(CausalLm::from_pretrained(
            &dir,
            self.learner.infer_device(),
        )?);
        Ok(())
    }

    /// Writes a checkpoint now.
    ///
    /// # Errors
    /// See [`checkpoint::save`].
    pub fn checkpoint(&self) -> Result<PathBuf> {
        checkpoint::save(
            &self.run_dir,
            &self.learner,
            &self.tokenizer_dir,
            &self.config,
            &self.state,
            self.config.checkpoint.keep,
        )
    }

    fn save_final(&self) -> Result<()> {
        let dir = self.run_dir.join(files::FINAL);
        let tmp = self.run_dir.join(format!(".{}.tmp", files::FINAL));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        }
        self.learner.model().save_pretrained(&tmp, SaveDType::F32)?;
        checkpoint::copy_tokenizer(&self.tokenizer_dir, &tmp)?;
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        }
        std::fs::rename(&tmp, &dir).map_err(|e| Error::io(&dir, e))
    }

    /// One SFT step; returns its loss.
    ///
    /// # Errors
    /// Data, model or tensor failures.
    pub fn sft_step(&mut self) -> Result<f64> {
        let start = Instant::now();
        let c = &self.config.sft;
        let (problems, cursor) = self.source.sft(self.state.sft_cursor, c.batch_size)?;
        let seed = derive_seed(self.config.seed, &[SFT_SALT, self.state.sft_step]);
        let mut rows = sft_rows(
            &problems,
            self.tokenizer.as_ref(),
            &self.templates,
            c.revision_fraction,
            c.critique_fraction,
            seed,
        )?;
        // Examples longer than the context cannot be trained on: counted, never silent.
        let context = self.learner.model().config().max_position_embeddings;
        let before = rows.len();
        rows.retain(|r| r.ids.len() <= context);
        let too_long = before - rows.len();
        if too_long > 0 {
            tracing::warn!(
                too_long,
                context,
                "SFT examples longer than the context dropped"
            );
        }
        if rows.is_empty() {
            return Err(Error::config(
                "sft",
                format!(
                    "every SFT example of step {} exceeds the {context}-token context",
                    self.state.sft_step
                ),
            ));
        }
        let schedule = crate::config::OptimizerConfig {
            lr: c.lr,
            warmup_steps: c.warmup_steps,
            ..self.config.optimizer.clone()
        };
        let lr = schedule.lr_at(self.state.sft_step, c.steps);
        let refs: Vec<&Row> = rows.iter().collect();
        let trained = rows.iter().map(Row::trained).sum::<usize>();
        let outcome = self.learner.update(
            &refs,
            lr,
            self.config.optimizer.grad_clip,
            1.0,
            false,
            |padded, lp, _| nll_loss(padded, &refs, lp),
        )?;
        self.state.sft_step += 1;
        self.state.sft_cursor = cursor;
        if outcome.skipped.is_some() {
            self.state.skipped_updates += 1;
        }
        let loss = outcome.metrics.get("loss").copied().unwrap_or(f64::NAN);
        let mut record = Map::new();
        record.insert("stage".into(), json!("sft"));
        record.insert("step".into(), json!(self.state.sft_step));
        record.insert("lr".into(), json!(lr));
        record.insert("loss".into(), json!(loss));
        record.insert("grad_norm".into(), json!(finite_or_null(outcome.grad_norm)));
        record.insert("tokens".into(), json!(trained));
        record.insert("skipped".into(), json!(outcome.skipped));
        record.insert("too_long".into(), json!(too_long));
        record.insert("step_s".into(), json!(start.elapsed().as_secs_f64()));
        self.state.train_s += start.elapsed().as_secs_f64();
        append_jsonl(&self.run_dir.join(files::METRICS), &record)?;
        Ok(loss)
    }

    /// One RL step; returns its metrics record (also appended to metrics.jsonl).
    ///
    /// # Errors
    /// Rollout, credit, objective or model failures.
    pub fn rl_step(&mut self) -> Result<Map<String, Value>> {
        let start = Instant::now();
        let step = self.state.step;
        let total = self.config.steps;
        let (problems, cursor) = self
            .source
            .train(self.state.cursor, self.config.rollout.prompts_per_step)?;
        // 1. Rollout with an inference copy of the policy.
        let policy = self.learner.policy();
        let provider = self.provider(&policy)?;
        let sampling = self.sampling();
        let device = self.learner.infer_device().clone();
        let mut ctx = RolloutContext::new(&policy, self.tokenizer.as_ref(), &device, sampling)
            .with_templates(self.templates.clone());
        if let Some(p) = provider.as_deref() {
            ctx = ctx.with_feedback(p);
        }
        let seed = derive_seed(self.config.seed, &[ROLLOUT_SALT, step]);
        let batch = self.strategy.rollout(&ctx, &problems, seed)?;
        let rollout_s = start.elapsed().as_secs_f64();
        // 2. Credit assignment.
        let assembler = Assembler {
            method: self.config.method,
            credit: &self.config.credit,
            tokenizer: self.tokenizer.as_ref(),
            templates: &self.templates,
            problems: &problems,
        };
        let mut rows = assembler.assemble(&batch)?;
        // 3. Log-probs the objective needs besides the sampling ones.
        self.fill_old_logprobs(&policy, &mut rows)?;
        let reference = match &self.reference {
            Some(r) if self.objective.needs_reference() => {
                let refs: Vec<&Row> = rows.rows.iter().collect();
                Some(self.learner.score(r, &refs, self.sampling().temperature)?)
            }
            _ => None,
        };
        // 4. Updates.
        let update_start = Instant::now();
        let lr = self.config.optimizer.lr_at(step, total);
        let mut outcomes = Vec::new();
        for epoch in 0..self.config.updates.epochs {
            for minibatch in self.minibatches(&rows, step, epoch as u64) {
                if minibatch.iter().all(|&i| rows.rows[i].trained() == 0) {
                    continue;
                }
                outcomes.push(self.update(&rows, &minibatch, reference.as_deref(), lr)?);
            }
        }
        let update_s = update_start.elapsed().as_secs_f64();
        // 5. Bookkeeping.
        let skipped = outcomes.iter().filter(|o| o.skipped.is_some()).count();
        self.state.step += 1;
        self.state.cursor = cursor;
        self.state.sampled_tokens += batch.stats.sampled_tokens as u64;
        self.state.skipped_updates += skipped as u64;
        let step_s = start.elapsed().as_secs_f64();
        self.state.train_s += step_s;
        let stats = provider.as_ref().map(|p| p.stats());
        let record = step_record(StepFacts {
            step: self.state.step,
            lr,
            batch: &batch,
            rows: &rows,
            outcomes: &outcomes,
            skipped,
            total_sampled: self.state.sampled_tokens,
            rollout_s,
            update_s,
            step_s,
            feedback: stats.as_ref(),
        });
        append_jsonl(&self.run_dir.join(files::METRICS), &record)?;
        self.last_problems = problems;
        self.last_batch = Some(batch);
        self.write_transcripts()?;
        Ok(record)
    }

    /// Evaluates the current policy on the held-out problems and appends to eval.jsonl.
    ///
    /// # Errors
    /// Rollout failures.
    pub fn evaluate(&mut self) -> Result<EvalRecord> {
        let policy = self.learner.policy();
        let critic = self
            .config
            .feedback()
            .filter(|f| !matches!(f, ProviderConfig::SelfReflection { .. }))
            .unwrap_or(ProviderConfig::VerifierCritic {
                critic: Default::default(),
            })
            .build(None)?;
        let evaluator = Evaluator {
            policy: &policy,
            tokenizer: self.tokenizer.clone(),
            device: self.learner.infer_device(),
            config: &self.config.eval,
            max_new_tokens: self.config.rollout.max_new_tokens,
            feedback: Some(critic.as_ref()),
            templates: self.templates.clone(),
        };
        let seed = derive_seed(self.config.seed, &[EVAL_SALT]);
        let report = evaluator.run(self.source.eval(), seed)?;
        let record = EvalRecord {
            step: self.state.step,
            sampled_tokens: self.state.sampled_tokens,
            report,
        };
        append_jsonl(&self.run_dir.join(files::EVALS), &record)?;
        Ok(record)
    }

    fn sampling(&self) -> SamplingParams {
        let r = &self.config.rollout;
        SamplingParams {
            temperature: r.temperature as f32,
            top_p: r.top_p as f32,
            top_k: r.top_k,
            max_new_tokens: r.max_new_tokens,
            vocab_limit: Some(self.tokenizer.vocab_size()),
            ..SamplingParams::default()
        }
    }

    /// The feedback provider of this step (R^3L's self-reflection samples from `policy`).
    fn provider(&self, policy: &CausalLm) -> Result<Option<Box<dyn FeedbackProvider>>> {
        let Some(config) = self.config.feedback() else {
            return Ok(None);
        };
        let chat: Arc<dyn ChatModel> = Arc::new(PolicyChat::new(
            policy.clone(),
            self.tokenizer.clone(),
            self.learner.infer_device().clone(),
            self.sampling(),
        ));
        Ok(Some(config.build(Some(chat))?))
    }

    /// Scores rows without sampling log-probs (RLTF-SD's re-scored revisions) with the
    /// pre-update policy.
    fn fill_old_logprobs(&self, policy: &CausalLm, rows: &mut TrainRows) -> Result<()> {
        let missing: Vec<usize> = (0..rows.rows.len())
            .filter(|&i| rows.rows[i].old_logprobs.is_none())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let refs: Vec<&Row> = missing.iter().map(|&i| &rows.rows[i]).collect();
        let scored = self
            .learner
            .score(policy, &refs, self.sampling().temperature)?;
        for (i, lp) in missing.into_iter().zip(scored) {
            rows.rows[i].old_logprobs = Some(lp);
        }
        Ok(())
    }

    /// Row indices per mini-batch: problems shuffled by a generator of `(seed, step, epoch)`
    /// and dealt into `minibatches` parts, all rows of a problem together.
    fn minibatches(&self, rows: &TrainRows, step: u64, epoch: u64) -> Vec<Vec<usize>> {
        let n = self.config.updates.minibatches;
        let mut by_problem: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (i, r) in rows.rows.iter().enumerate() {
            by_problem.entry(r.problem).or_default().push(i);
        }
        let mut problems: Vec<Vec<usize>> = by_problem.into_values().collect();
        if n > 1 {
            let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(
                self.config.seed,
                &[SHUFFLE_SALT, step, epoch],
            ));
            problems.shuffle(&mut rng);
        }
        let per = problems.len().div_ceil(n).max(1);
        problems
            .chunks(per)
            .map(|c| c.iter().flatten().copied().collect())
            .collect()
    }

    fn update(
        &mut self,
        rows: &TrainRows,
        minibatch: &[usize],
        reference: Option<&[Vec<f32>]>,
        lr: f64,
    ) -> Result<UpdateOutcome> {
        let refs: Vec<&Row> = minibatch.iter().map(|&i| &rows.rows[i]).collect();
        let position: BTreeMap<usize, usize> =
            minibatch.iter().enumerate().map(|(k, &i)| (i, k)).collect();
        let pairs: Vec<PairRows> = rows
            .pairs
            .iter()
            .filter_map(|(c, r)| {
                Some(PairRows {
                    chosen: *position.get(c)?,
                    rejected: *position.get(r)?,
                })
            })
            .collect();
        let objective = &self.objective;
        let step = self.state.step;
        let device = self.learner.device().clone();
        let with_entropy = objective.needs_entropy();
        let budget = self.config.rollout.max_new_tokens;
        let temperature = self.sampling().temperature;
        self.learner.update(
            &refs,
            lr,
            self.config.optimizer.grad_clip,
            temperature,
            with_entropy,
            |padded, lp, ent| {
                let dims = [padded.batch, padded.time];
                let mask = flatten(padded, refs.iter().map(|r| r.mask.as_slice()), false);
                let adv = flatten(padded, refs.iter().map(|r| r.advantages.as_slice()), 0.0);
                // Rows without sampling log-probs (none after `fill_old_logprobs`) pad with 0.
                let old = flatten(
                    padded,
                    refs.iter()
                        .map(|r| r.old_logprobs.as_deref().unwrap_or(&[])),
                    0.0,
                );
                let kinds: Vec<RowKind> = refs.iter().map(|r| r.kind).collect();
                let mut batch = PolicyBatch::new(dims, mask, adv, &device)?
                    .with_old_logprobs(old)?
                    .with_row_kinds(kinds)?
                    .with_pairs(pairs)
                    .with_step(step)
                    .with_response_budget(budget);
                if let Some(reference) = reference {
                    let rows = minibatch.iter().map(|&i| reference[i].as_slice());
                    batch = batch.with_ref_logprobs(flatten(padded, rows, 0.0))?;
                }
                let out = objective.loss(&batch, lp, ent)?;
                let metrics = out
                    .metrics
                    .iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect();
                Ok((out.loss, metrics))
            },
        )
    }

    /// Writes a few episodes of the last step (failed first attempts with feedback first).
    fn write_transcripts(&self) -> Result<()> {
        let Some(batch) = &self.last_batch else {
            return Ok(());
        };
        let mut chosen: Vec<&redraft_rollout_engine::Episode> = batch
            .episodes
            .iter()
            .filter(|e| e.turns.len() > 1 || !e.feedback.is_empty())
            .take(TRANSCRIPTS_PER_STEP)
            .collect();
        if chosen.is_empty() {
            chosen = batch.episodes.iter().take(TRANSCRIPTS_PER_STEP).collect();
        }
        for e in chosen {
            let problem = &self.last_problems[e.problem];
            let record = json!({
                "step": self.state.step,
                "problem": problem.prompt(),
                "turns": e.turns.iter().map(|t| json!({
                    "response": t.text,
                    "correct": t.verdict.correct,
                    "reward": t.reward,
                })).collect::<Vec<_>>(),
                "feedback": e.feedback.iter().map(|f| json!({
                    "turn": f.turn,
                    "text": f.feedback.as_ref().map(|f| f.text.clone()),
                    "error": f.error,
                })).collect::<Vec<_>>(),
                "provenance": e.provenance,
            });
            let map = record.as_object().cloned().unwrap_or_default();
            append_jsonl(&self.run_dir.join(files::TRANSCRIPTS), &map)?;
        }
        Ok(())
    }
}

const TRANSCRIPTS_PER_STEP: usize = 2;
const SFT_SALT: u64 = 0x5F7;
const ROLLOUT_SALT: u64 = 0x2011;
const EVAL_SALT: u64 = 0xE7A1;
const SHUFFLE_SALT: u64 = 0x5A1F;

/// Token-mean negative log-likelihood of the trained targets.
fn nll_loss(
    padded: &Padded,
    rows: &[&Row],
    logprobs: Tensor<2>,
) -> Result<(Tensor<1>, BTreeMap<String, f64>)> {
    let mask = flatten(padded, rows.iter().map(|r| r.mask.as_slice()), false);
    let n = mask.iter().filter(|m| **m).count().max(1) as f32;
    let weights: Vec<f32> = mask
        .iter()
        .map(|m| if *m { 1.0 / n } else { 0.0 })
        .collect();
    let w = upload(weights, [padded.batch, padded.time], &logprobs.device());
    let loss = (logprobs * w).sum().neg();
    let value = crate::learner::read(loss.clone())?[0];
    let mut metrics = BTreeMap::new();
    metrics.insert("loss".to_string(), f64::from(value));
    Ok((loss, metrics))
}

/// Per-row target values, each padded with `pad` to `padded.time` and flattened row-major
/// (`[batch, time]`).
fn flatten<'r, T: Copy + 'r>(
    padded: &Padded,
    rows: impl IntoIterator<Item = &'r [T]>,
    pad: T,
) -> Vec<T> {
    let mut out = Vec::with_capacity(padded.batch * padded.time);
    for v in rows {
        out.extend_from_slice(v);
        out.extend(std::iter::repeat_n(pad, padded.time - v.len()));
    }
    out
}

struct StepFacts<'a> {
    step: u64,
    lr: f64,
    batch: &'a RolloutBatch,
    rows: &'a TrainRows,
    outcomes: &'a [UpdateOutcome],
    skipped: usize,
    total_sampled: u64,
    rollout_s: f64,
    update_s: f64,
    step_s: f64,
    feedback: Option<&'a redraft_feedback_protocol::ProviderStats>,
}

/// The metrics record of one RL step.
fn step_record(f: StepFacts<'_>) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("stage".into(), json!("rl"));
    m.insert("step".into(), json!(f.step));
    m.insert("lr".into(), json!(f.lr));
    // Rewards and pass rates per turn index, over base episodes (retries and regenerations
    // are reported separately).
    let mut per_turn: BTreeMap<usize, (f64, f64, usize)> = BTreeMap::new();
    let mut base_reward = Vec::new();
    let mut solved = 0usize;
    let mut base = 0usize;
    for e in f
        .batch
        .episodes
        .iter()
        .filter(|e| e.provenance.base.is_none() && e.provenance.round.is_none())
    {
        base += 1;
        base_reward.push(f64::from(e.reward));
        solved += usize::from(e.solved());
        for (k, t) in e.turns.iter().enumerate() {
            let entry = per_turn.entry(k).or_default();
            entry.0 += f64::from(t.reward);
            entry.1 += f64::from(u8::from(t.verdict.correct));
            entry.2 += 1;
        }
    }
    let first_pass = per_turn.get(&0).map_or(0.0, |(_, c, n)| c / *n as f64);
    m.insert("pass_rate".into(), json!(first_pass));
    m.insert(
        "solved_rate".into(),
        json!(solved as f64 / base.max(1) as f64),
    );
    m.insert(
        "reward_mean".into(),
        json!(base_reward.iter().sum::<f64>() / base_reward.len().max(1) as f64),
    );
    for (k, (r, c, n)) in &per_turn {
        m.insert(format!("turn{k}/reward"), json!(r / *n as f64));
        m.insert(format!("turn{k}/pass_rate"), json!(c / *n as f64));
        m.insert(format!("turn{k}/count"), json!(n));
    }
    let derived: Vec<&redraft_rollout_engine::Episode> = f
        .batch
        .episodes
        .iter()
        .filter(|e| e.provenance.base.is_some() || e.provenance.round.is_some())
        .collect();
    if !derived.is_empty() {
        let ok = derived.iter().filter(|e| e.solved()).count();
        m.insert("feedback_episodes".into(), json!(derived.len()));
        m.insert(
            "feedback_episode_solved_rate".into(),
            json!(ok as f64 / derived.len() as f64),
        );
    }
    let s = &f.rows.stats;
    m.insert("advantage/mean".into(), json!(s.advantage_mean));
    m.insert("advantage/std".into(), json!(s.advantage_std));
    m.insert("advantage/min".into(), json!(s.advantage_min));
    m.insert("advantage/max".into(), json!(s.advantage_max));
    m.insert("groups_used".into(), json!(s.groups_used));
    m.insert("groups_filtered".into(), json!(s.groups_filtered));
    for (kind, n) in &s.rows {
        m.insert(format!("rows/{kind}"), json!(n));
    }
    m.insert("pairs".into(), json!(f.rows.pairs.len()));
    // Loss terms, averaged over the updates that ran.
    let ran: Vec<&UpdateOutcome> = f.outcomes.iter().filter(|o| o.skipped.is_none()).collect();
    let mut sums: BTreeMap<&str, (f64, usize)> = BTreeMap::new();
    for o in &ran {
        for (k, v) in &o.metrics {
            if v.is_finite() {
                let e = sums.entry(k.as_str()).or_default();
                e.0 += v;
                e.1 += 1;
            }
        }
        let e = sums.entry("grad_norm").or_default();
        e.0 += o.grad_norm;
        e.1 += 1;
    }
    for (k, (v, n)) in sums {
        m.insert(k.to_string(), json!(v / n as f64));
    }
    m.insert("updates".into(), json!(f.outcomes.len()));
    m.insert("skipped_updates".into(), json!(f.skipped));
    let st = &f.batch.stats;
    m.insert("sampled_tokens".into(), json!(st.sampled_tokens));
    m.insert("sampled_tokens_total".into(), json!(f.total_sampled));
    m.insert(
        "tokens_per_s".into(),
        json!(st.sampled_tokens as f64 / f.rollout_s.max(1e-9)),
    );
    m.insert(
        "reused_prefix_tokens".into(),
        json!(st.reused_prefix_tokens),
    );
    m.insert("feedback_requests".into(), json!(st.feedback_requests));
    m.insert("feedback_failures".into(), json!(st.feedback_failures));
    m.insert("invalid_reflections".into(), json!(st.invalid_reflections));
    if let Some(fb) = f.feedback {
        m.insert(
            "feedback_latency_ms".into(),
            json!(finite_or_null(fb.mean_latency_ms())),
        );
    }
    m.insert("rollout_s".into(), json!(f.rollout_s));
    m.insert("update_s".into(), json!(f.update_s));
    m.insert("step_s".into(), json!(f.step_s));
    m
}

fn finite_or_null(x: f64) -> Value {
    if x.is_finite() { json!(x) } else { Value::Null }
}

/// Appends one JSON line and flushes it.
pub(crate) fn append_jsonl(path: &Path, record: &(impl Serialize + ?Sized)) -> Result<()> {
    let mut line = serde_json::to_string(record).map_err(|e| Error::TensorRead(e.to_string()))?;
    line.push('\n');
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    f.write_all(line.as_bytes())
        .map_err(|e| Error::io(path, e))?;
    f.flush().map_err(|e| Error::io(path, e))
}

/// The JSON objects of a JSONL file such as metrics.jsonl (a missing file is empty; a torn
/// last line is ignored).
///
/// # Errors
/// [`Error::Io`] when the file exists but cannot be read.
pub fn read_jsonl(path: &Path) -> Result<Vec<Map<String, Value>>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str::<Map<String, Value>>(l).ok())
        .collect())
}

/// The evaluations of an eval.jsonl file.
pub fn read_evals(path: &Path) -> Result<Vec<EvalRecord>> {
    Ok(read_jsonl(path)?
        .into_iter()
        .filter_map(|m| serde_json::from_value(Value::Object(m)).ok())
        .collect())
}

/// Keeps the lines of a JSONL file for which `keep` holds (and drops a torn last line),
/// rewriting it atomically.
fn truncate_log(path: &Path, keep: impl Fn(&Map<String, Value>) -> bool) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let kept: Vec<String> = read_jsonl(path)?
        .into_iter()
        .filter(|m| keep(m))
        .map(|m| Value::Object(m).to_string() + "\n")
        .collect();
    redraft_model::write_atomic(path, kept.concat().as_bytes())?;
    Ok(())
}

/// A new run folder `root/runs/<name>-<unix seconds>` (with a `-k` suffix if that exists):
/// never an earlier run's folder.
///
/// # Errors
/// [`Error::Io`] when `root/runs` cannot be created.
pub fn new_run_dir(root: &Path, name: &str) -> Result<PathBuf> {
    let runs = root.join("runs");
    std::fs::create_dir_all(&runs).map_err(|e| Error::io(&runs, e))?;
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut attempt = 0u32;
    loop {
        let dir = runs.join(if attempt == 0 {
            format!("{name}-{secs}")
        } else {
            format!("{name}-{secs}-{attempt}")
        });
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => attempt += 1,
            Err(e) => return Err(Error::io(&dir, e)),
        }
    }
}
