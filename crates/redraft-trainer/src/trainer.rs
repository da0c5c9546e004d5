//! The training loop: SFT warm-start, then RL steps of sample prompts → rollout strategy
//! (verify, feedback) → credit assignment → objective → backward → clip → AdamW, with
//! evaluations, checkpoints, per-step metrics and the end-of-run report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use redraft_feedback_protocol::{ChatModel, FeedbackProvider, ProviderConfig, Templates};
use redraft_model::burn::tensor::Tensor;
use redraft_model::{
    CausalLm, DeviceSpec, MemoryEstimate, MemoryLimit, ModelConfig, SaveDType, Workload,
};
use redraft_objectives::{Objective, PairRows, PolicyBatch, RowKind};
use redraft_rollout_engine::{
    LocalPolicy, MeteredPolicy, Policy, PolicyChat, Rltf, RltfConfig, RolloutContext,
    RolloutStrategy, SamplingParams, TurnPrompt, derive_seed,
};
use redraft_tokenizer::{ByteTokenizer, Tokenizer, load_tokenizer};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{self, TrainState};
use crate::config::TrainConfig;
use crate::error::{Error, Result};
use crate::eval::{EvalReport, Evaluator};
use crate::learner::{Learner, Padded, UpdateOutcome, upload};
use crate::methods::RowContext;
use crate::methods::dapo::collect_groups_with_signal;
use crate::metrics::{MetricsRecord, SftMetrics, StepFacts, StepMetrics, TranscriptRecord};
use crate::problems::ProblemSource;
use crate::remote::RolloutServers;
use crate::rows::{Row, TrainRows};
use crate::sft::sft_rows;

pub use crate::run_dir::{RunDir, files};

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
    fn rl_step(&mut self, _step: u64, _total: u64, _metrics: &StepMetrics) {}
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
    run_dir: RunDir,
    tokenizer: Arc<dyn Tokenizer>,
    tokenizer_dir: PathBuf,
    learner: Learner,
    reference: Option<CausalLm>,
    source: ProblemSource,
    strategy: Box<dyn RolloutStrategy>,
    objective: Box<dyn Objective>,
    templates: Templates,
    state: TrainState,
    rewards: crate::reward::Rewards,
    /// The inference servers rollouts sample on (`[rollout.remote]`); `None`: in process.
    remote: Option<RolloutServers>,
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
        preflight(&config)?;
        let dir = RunDir::create(run_dir, &config)?;
        Self::build(config, dir, TrainState::default())
    }

    /// Continues the run in `run_dir` from its latest checkpoint (or from the start when it
    /// has none), with the configuration saved in it. Metrics recorded after that checkpoint
    /// are discarded: those steps run again and, on CPU, give the same numbers.
    ///
    /// # Errors
    /// [`Error::Checkpoint`] for a broken checkpoint; loading errors.
    pub fn resume(run_dir: &Path) -> Result<Self> {
        let dir = RunDir::open(run_dir);
        dir.remove_stale_temps()?;
        let Some(checkpoint) = checkpoint::latest(run_dir)? else {
            let config = dir.config()?;
            preflight(&config)?;
            let state = TrainState::default();
            dir.truncate_to(&state)?;
            return Self::build(config, dir, state);
        };
        let loaded = checkpoint::read(&checkpoint)?;
        preflight(&loaded.config)?;
        let state = loaded.state.clone();
        let mut trainer = Self::build(loaded.config, dir, state.clone())?;
        checkpoint::restore(&checkpoint, &mut trainer.learner, &trainer.config)?;
        trainer.run_dir.truncate_to(&state)?;
        if trainer.objective.needs_reference() && trainer.config.lora.is_none() && state.step > 0 {
            let path = trainer.run_dir.join(files::REFERENCE);
            trainer.reference = Some(CausalLm::from_pretrained(
                &path,
                trainer.learner.infer_device(),
            )?);
        }
        Ok(trainer)
    }

    fn build(config: TrainConfig, run_dir: RunDir, state: TrainState) -> Result<Self> {
        let spec = config.device_spec()?;
        let device = spec.train_device()?;
        let infer_device = spec.device()?;
        let (model, tokenizer, tokenizer_dir): (CausalLm, Arc<dyn Tokenizer>, PathBuf) =
            match (&config.model.path, &config.model.init) {
                (Some(path), _) if redraft_model::is_gguf(path) => {
                    // The run keeps the tokenizer's files for its checkpoints and final model.
                    let model = CausalLm::from_gguf(path, &device)?;
                    let file = redraft_model::redraft_gguf::GgufFile::open(path)
                        .map_err(redraft_model::Error::from)?;
                    let dir = run_dir.join(files::TOKENIZER);
                    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
                    redraft_tokenizer::gguf_tokenizer_files(&file)?.write(&dir)?;
                    (model, Arc::from(load_tokenizer(&dir)?), dir)
                }
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
        let model = match &config.lora {
            Some(lora) => model
                .with_new_lora(lora, "[lora]", config.seed, &device)?
                .with_base_dtype(config.model.dtype),
            None => model,
        };
        let remote = match &config.rollout.remote {
            Some(r) => Some(RolloutServers::new(
                r,
                run_dir.join(files::ROLLOUT_SYNC),
                model.config().max_position_embeddings,
            )?),
            None => None,
        };
        let pad = tokenizer.special_tokens().padding_id();
        let learner = Learner::new(model, &config.optimizer, device, infer_device, pad);
        let source = ProblemSource::new(&config.task, config.eval.problems)?;
        let strategy = config.method.method().strategy(&config.rollout)?;
        let objective = config.method.method().objective()?;
        Ok(Self {
            run_dir,
            tokenizer,
            tokenizer_dir,
            learner,
            reference: None,
            source,
            strategy,
            objective,
            templates: Templates::with_overrides(&config.templates)?,
            state,
            rewards: crate::reward::Rewards::new(&config.reward)?,
            remote,
            config,
        })
    }

    /// Scores with `verifier` (a reward written in Rust) instead of the built-in verifier: it
    /// gives correctness and, with `[[reward]]` tables, the `task` component.
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid `[[reward]]` table.
    pub fn with_verifier(mut self, verifier: Arc<dyn redraft_verifier::Verifier>) -> Result<Self> {
        self.rewards = crate::reward::Rewards::with_verifier(&self.config.reward, verifier)?;
        Ok(self)
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
        self.run_dir.path()
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
        let evals = self.run_dir.evals()?;
        crate::summary::write_report(&self.run_dir, &self.config, &evals)?;
        Ok(RunSummary {
            run_dir: self.run_dir.path().to_path_buf(),
            evals,
            state: self.state.clone(),
        })
    }

    /// Whether the sampled-token budget is used up.
    fn budget_spent(&self) -> bool {
        self.config.max_sampled_tokens > 0
            && self.state.sampled_tokens >= self.config.max_sampled_tokens
    }

    fn has_eval_at(&self, step: u64) -> Result<bool> {
        Ok(self.run_dir.evals()?.iter().any(|e| e.step == step))
    }

    /// The policy's current weights as the frozen reference, when the objective needs one.
    /// With LoRA there is nothing to freeze: the reference is the base with its adapters off
    /// ([`Learner::lora_reference`]).
    fn freeze_reference(&mut self) -> Result<()> {
        if !self.objective.needs_reference() || self.config.lora.is_some() {
            return Ok(());
        }
        let dir = self.run_dir.join(files::REFERENCE);
        if !dir.join("config.json").is_file() {
            let model = self.learner.model();
            self.run_dir.publish_dir(files::REFERENCE, |tmp| {
                Ok(model.save_pretrained(tmp, SaveDType::F32)?)
            })?;
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
            self.run_dir.path(),
            &self.learner,
            &self.tokenizer_dir,
            &self.config,
            &self.state,
            self.config.checkpoint.keep,
        )
    }

    /// `final/`: the trained model, or with LoRA the adapter in PEFT's format (to use with the
    /// base: `--model BASE --adapter RUN/final`), with the tokenizer files.
    fn save_final(&self) -> Result<()> {
        self.run_dir.publish_dir(files::FINAL, |tmp| {
            checkpoint::save_weights(self.learner.model(), tmp)?;
            checkpoint::copy_tokenizer(&self.tokenizer_dir, tmp)
        })
    }

    /// Writes `merged/`: the base with the trained LoRA adapters folded into its weights
    /// (`W + scaling·B·A`), a Hugging Face model folder with the tokenizer files.
    ///
    /// # Errors
    /// [`Error::Config`] when the run has no `[lora]` table; write failures.
    pub fn save_merged(&self) -> Result<PathBuf> {
        if self.config.lora.is_none() {
            return Err(Error::config(
                "lora",
                "only a LoRA run has adapters to merge",
            ));
        }
        let merged = self.learner.policy().merge_lora();
        self.run_dir.publish_dir(files::MERGED, |tmp| {
            merged.save_pretrained(tmp, SaveDType::F32)?;
            checkpoint::copy_tokenizer(&self.tokenizer_dir, tmp)
        })?;
        Ok(self.run_dir.join(files::MERGED))
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
            self.rewards.correctness.as_ref(),
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
        self.learner.device().seed(derive_seed(
            self.config.seed,
            &[DROPOUT_SALT, SFT_SALT, self.state.sft_step],
        ));
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
        let step_s = start.elapsed().as_secs_f64();
        self.state.train_s += step_s;
        self.run_dir
            .append_metrics(&MetricsRecord::Sft(SftMetrics {
                step: self.state.sft_step,
                lr,
                loss: Some(loss).filter(|x| x.is_finite()),
                grad_norm: Some(outcome.grad_norm).filter(|x| x.is_finite()),
                tokens: trained,
                skipped: outcome.skipped.map(str::to_string),
                too_long,
                step_s,
            }))?;
        Ok(loss)
    }

    /// One RL step; returns its metrics record (also appended to metrics.jsonl).
    ///
    /// # Errors
    /// Rollout, credit, objective or model failures.
    pub fn rl_step(&mut self) -> Result<StepMetrics> {
        let start = Instant::now();
        let step = self.state.step;
        let total = self.config.steps;
        let per_step = self.config.rollout.prompts_per_step;
        // 1. Rollout with an inference copy of the policy, in process or on servers synced to
        // it. Every token sampled for the step (the strategy's turns and the reflections R^3L's
        // provider samples from the policy) goes through one meter.
        let policy = self.learner.sampler();
        let (sampler, version): (Arc<dyn Policy>, _) = match &mut self.remote {
            Some(servers) => {
                let version = servers.sync(self.learner.model(), step)?;
                (servers.policy(), Some(version))
            }
            None => (
                Arc::new(
                    LocalPolicy::for_tokenizer(
                        policy.clone(),
                        self.learner.infer_device().clone(),
                        self.tokenizer.as_ref(),
                    )
                    .with_max_rows(self.config.rollout.max_batch_rows),
                ),
                None,
            ),
        };
        let meter = Arc::new(MeteredPolicy::new(sampler));
        let provider = self.provider(meter.clone())?;
        let sampling = self.sampling();
        let mut ctx = RolloutContext::new(meter.as_ref(), self.tokenizer.as_ref(), sampling)
            .with_templates(self.templates.clone())
            .with_verifier(self.rewards.reward.as_ref());
        if let Some(p) = provider.as_deref() {
            ctx = ctx.with_feedback(p);
        }
        let seed = derive_seed(self.config.seed, &[ROLLOUT_SALT, step]);
        let method = self.config.method.method();
        let mut cursor = self.state.cursor;
        // DAPO's dynamic sampling draws fresh problems until its groups carry signal.
        let (batch, problems, tries, filtered) = match method.dynamic_sampling() {
            Some(ds) => {
                let collected = collect_groups_with_signal(per_step, ds.max_tries, |k| {
                    let (problems, next) = self.source.train(cursor, per_step)?;
                    cursor = next;
                    let seed = match k {
                        0 => seed,
                        k => derive_seed(self.config.seed, &[ROLLOUT_SALT, step, k as u64]),
                    };
                    Ok((self.strategy.rollout(&ctx, &problems, seed)?, problems))
                })?;
                let c = collected;
                (c.batch, c.problems, c.tries, c.filtered)
            }
            None => {
                let (problems, next) = self.source.train(cursor, per_step)?;
                cursor = next;
                (
                    self.strategy.rollout(&ctx, &problems, seed)?,
                    problems,
                    1,
                    0,
                )
            }
        };
        let rollout_s = start.elapsed().as_secs_f64();
        // 2. Credit assignment.
        let row_ctx = RowContext {
            tokenizer: self.tokenizer.as_ref(),
            templates: &self.templates,
            problems: &problems,
        };
        let mut rows = method.rows(&batch, &row_ctx)?;
        rows.fit_context(policy.config().max_position_embeddings);
        rows.stats.sampling_tries = tries;
        rows.stats.groups_filtered += filtered;
        // 3. Log-probs the objective needs besides the sampling ones: with servers, every row
        // is re-scored by the learner and the gap to the servers' log-probs corrected.
        let sampled = self.remote.as_ref().map(|_| rows.take_sampler_logprobs());
        self.fill_old_logprobs(&policy, &mut rows)?;
        let sampler_metrics = match (&self.remote, sampled, version) {
            (Some(servers), Some(sampled), Some(version)) => {
                let c = &servers.config;
                let gap = rows.correct_sampler_gap(&sampled, c.correction, c.correction_cap)?;
                Some(servers.metrics(version, &gap))
            }
            _ => None,
        };
        let lora_reference = self.learner.lora_reference();
        let reference = match lora_reference.as_ref().or(self.reference.as_ref()) {
            Some(r) if self.objective.needs_reference() => {
                let refs: Vec<&Row> = rows.rows.iter().collect();
                Some(self.learner.score(r, &refs, self.sampling().temperature)?)
            }
            _ => None,
        };
        // 4. Updates.
        let update_start = Instant::now();
        let lr = self.config.optimizer.lr_at(step, total);
        self.learner
            .device()
            .seed(derive_seed(self.config.seed, &[DROPOUT_SALT, step]));
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
        let mut metrics = StepMetrics::of(StepFacts {
            step: self.state.step,
            lr,
            batch: &batch,
            rows: &rows,
            outcomes: &outcomes,
            total_sampled: self.state.sampled_tokens,
            rollout_s,
            update_s,
            step_s,
            feedback: stats.as_ref(),
        });
        metrics.reward = self.rewards.step_metrics(&batch);
        metrics.sampler = sampler_metrics;
        self.run_dir
            .append_metrics(&MetricsRecord::Rl(Box::new(metrics.clone())))?;
        self.run_dir.append_transcripts(&TranscriptRecord::of_step(
            self.state.step,
            &batch,
            &problems,
        ))?;
        Ok(metrics)
    }

    /// Evaluates the current policy on the held-out problems and appends to eval.jsonl.
    ///
    /// # Errors
    /// Rollout failures.
    pub fn evaluate(&mut self) -> Result<EvalRecord> {
        let policy = self.learner.sampler();
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
            max_batch_rows: self.config.rollout.max_batch_rows,
            feedback: Some(critic.as_ref()),
            templates: self.templates.clone(),
            verifier: self.rewards.correctness.as_ref(),
        };
        let seed = derive_seed(self.config.seed, &[EVAL_SALT]);
        let report = evaluator.run(self.source.eval(), seed)?;
        let record = EvalRecord {
            step: self.state.step,
            sampled_tokens: self.state.sampled_tokens,
            report,
        };
        self.run_dir.append_eval(&record)?;
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
    fn provider(&self, policy: Arc<dyn Policy>) -> Result<Option<Box<dyn FeedbackProvider>>> {
        let Some(config) = self.config.feedback() else {
            return Ok(None);
        };
        let chat: Arc<dyn ChatModel> = Arc::new(PolicyChat::new(
            policy,
            self.tokenizer.clone(),
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
}

/// What [`preflight`] admitted a run with.
#[derive(Debug, Clone)]
pub struct Preflight {
    /// The model's context (`max_position_embeddings`).
    pub context: usize,
    /// The turn with the longest prompt, with `rollout.max_new_tokens` the closest to the
    /// context.
    pub longest: TurnPrompt,
    /// The estimated memory of the run.
    pub memory: MemoryEstimate,
    /// What it was checked against (`None`: no limit known).
    pub limit: Option<MemoryLimit>,
}

/// Training problems whose prompts [`preflight`] measures (with every held-out problem):
/// generated families render alike, so the first ones stand for the stream.
const PREFLIGHT_PROBLEMS: usize = 256;

/// Rows decoded at once for a call of `rows` rows under `max_batch_rows` (0: no cap).
fn decoded_at_once(rows: usize, max_batch_rows: usize) -> usize {
    match max_batch_rows {
        0 => rows,
        cap => rows.min(cap),
    }
}

/// The start-up checks of a run, before anything is allocated or written (both
/// [`Trainer::new`] and [`Trainer::resume`] run them; `redraft train --check` stops after):
///
/// 1. the configuration is valid ([`TrainConfig::validate`]);
/// 2. the estimated memory of the model, its gradients and AdamW state, a reference copy and the
///    largest batch (`rollout.prompts_per_step` × `rollout.group_size` rows, or the evaluation's
///    `eval.problems` × `eval.samples`, at most `rollout.max_batch_rows` of them decoding at
///    once) fits `max_memory` and, on the CPU, the memory the
///    machine has available ([`ModelConfig::memory_estimate`]);
/// 3. every kind of turn the method samples, and evaluation's revision turn when
///    `eval.with_feedback`, fits the model's context with `rollout.max_new_tokens` new tokens:
///    the first turn with the longest rendered prompt of the training and held-out problems,
///    later turns with their fixed parts ([`RolloutStrategy::turn_prompts`]); feedback that
///    makes a later turn longer at run time cuts that turn instead.
///
/// # Errors
/// [`Error::Config`] naming the key (`rollout.max_new_tokens`), [`Error::Model`] with the
/// memory estimate, loading errors of the model config, tokenizer or problems.
pub fn preflight(config: &TrainConfig) -> Result<Preflight> {
    config.validate()?;
    let (model, tokenizer): (ModelConfig, Box<dyn Tokenizer>) =
        match (&config.model.path, &config.model.init) {
            (Some(path), _) => (ModelConfig::load(path)?, load_tokenizer(path)?),
            (None, Some(init)) => (
                ModelConfig::from_file(init)?,
                Box::new(ByteTokenizer::new()),
            ),
            (None, None) => return Err(Error::config("model", "no path and no init")),
        };
    if let Some(lora) = &config.lora {
        lora.validate(&model, redraft_model::LoraKeys::Run, "[lora]")?;
    }
    let context = model.max_position_embeddings;
    let r = &config.rollout;
    let method = config.method.method();
    // Memory first: a batch too large for the machine is refused before its problems exist.
    let rollout_rows = r.prompts_per_step.saturating_mul(r.group_size);
    // A LoRA run's reference is its base with the adapters off: no copy.
    let workload = Workload {
        copies: usize::from(method.objective()?.needs_reference() && config.lora.is_none()),
        adapter_parameters: config
            .lora
            .as_ref()
            .map_or(0, |lora| lora.parameter_count(&model)),
        train_rows: rollout_rows.div_ceil(config.updates.minibatches),
        decode_rows: decoded_at_once(
            rollout_rows.max(config.eval.problems.saturating_mul(config.eval.samples)),
            r.max_batch_rows,
        ),
        tokens: r.max_new_tokens.min(context),
        base_dtype: config.model.dtype,
    };
    let memory = model.memory_estimate(&workload);
    let given = config.memory_limit()?.map(|bytes| MemoryLimit {
        bytes,
        source: "limit set by max_memory (--max-memory)".into(),
    });
    let limit = MemoryLimit::resolve(given, config.device_spec()? == DeviceSpec::Cpu);
    if let Some(limit) = &limit {
        memory.check("the run", limit)?;
    }
    // Then the context: the longest prompt of each kind of turn.
    let templates = Templates::with_overrides(&config.templates)?;
    let source = ProblemSource::new(&config.task, config.eval.problems)?;
    let count = usize::try_from(config.steps)
        .unwrap_or(usize::MAX)
        .saturating_mul(r.prompts_per_step)
        .clamp(1, PREFLIGHT_PROBLEMS);
    let (train, _) = source.train(0, count)?;
    let strategy = method.strategy(&config.rollout)?;
    let mut turns: Vec<TurnPrompt> = Vec::new();
    let mut add = |t: TurnPrompt| match turns.iter_mut().find(|u| u.turn == t.turn) {
        Some(u) if t.tokens + t.turn_end > u.tokens + u.turn_end => *u = t,
        Some(_) => {}
        None => turns.push(t),
    };
    let tok = tokenizer.as_ref();
    for problem in train.iter().chain(source.eval()) {
        for t in strategy.turn_prompts(tok, &templates, problem)? {
            add(t);
        }
    }
    if config.eval.with_feedback {
        let revision = Rltf::new(RltfConfig::default())?;
        for problem in source.eval() {
            for mut t in revision
                .turn_prompts(tok, &templates, problem)?
                .into_iter()
                .skip(1)
            {
                t.turn = format!("{} of evaluation with feedback", t.turn);
                add(t);
            }
        }
    }
    let n = r.max_new_tokens;
    let need = |t: &TurnPrompt| t.tokens.saturating_add(n).saturating_add(t.turn_end);
    if let Some(t) = turns.iter().find(|t| need(t) > context) {
        let prompt = if t.grows {
            format!(
                "at least {} tokens (its fixed parts; responses and feedback come on top)",
                t.tokens
            )
        } else {
            format!("up to {} tokens", t.tokens)
        };
        return Err(Error::config(
            "rollout.max_new_tokens",
            format!(
                "rollout.max_new_tokens = {n}: {}'s prompt of {prompt} + {n} new tokens + {} \
                 closing the turn = {} exceed the model's context of {context} \
                 (max_position_embeddings); lower rollout.max_new_tokens or shorten the prompts",
                t.turn,
                t.turn_end,
                need(t)
            ),
        ));
    }
    let longest = turns
        .into_iter()
        .max_by_key(need)
        .ok_or_else(|| Error::config("task", "no problems to measure"))?;
    Ok(Preflight {
        context,
        longest,
        memory,
        limit,
    })
}

const SFT_SALT: u64 = 0x5F7;
const ROLLOUT_SALT: u64 = 0x2011;
const EVAL_SALT: u64 = 0xE7A1;
const SHUFFLE_SALT: u64 = 0x5A1F;
/// Seeds the training device's generator (LoRA dropout masks) before a step's updates, so a
/// resumed run draws the same masks.
const DROPOUT_SALT: u64 = 0xD209;

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
