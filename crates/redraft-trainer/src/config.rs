//! The run configuration ([`TrainConfig`]): one TOML file, validated before any work starts.
//!
//! ```toml
//! name = "grpo-arithmetic"
//! seed = 0
//! device = "cpu"              # cpu | wgpu | cuda[:N]
//! method = "grpo"             # grpo | dr_grpo | dapo | opmd | r3l | rltf_sd | rltf_fm | mulferl
//! steps = 60
//!
//! [model]
//! path = "runs/sft/model"     # an HF or redraft model folder (config.json, safetensors, tokenizer)
//! # init = "configs/models/tiny-byte-llama.json"   # or: initialise from a config with the byte tokenizer
//!
//! [task]
//! family = "arithmetic"       # a built-in task family, or `dataset = "problems.jsonl"`
//! difficulty = { digits = 3 }
//!
//! [rollout]
//! prompts_per_step = 16
//! group_size = 8
//! max_new_tokens = 64
//!
//! [optimizer]
//! lr = 1e-4
//! schedule = "cosine"
//! ```
//!
//! Every table is optional except `model` and `task`. `method` is a method's name (all its
//! defaults) or a `[method]` table tagged by `type` with that method's options
//! ([`MethodConfig`], one file per method in [`crate::methods`]). Unknown keys, keys a method
//! does not read, wrong types and impossible combinations are reported with the key's path
//! ([`Error::Config`]).

use std::path::{Path, PathBuf};

use redraft_model::DeviceSpec;
use redraft_verifier::{Difficulty, TaskFamily};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
pub use crate::methods::{Method, MethodConfig};

/// The whole run configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Run name (folder prefix and report title). Default: the method's name.
    #[serde(default)]
    pub name: Option<String>,
    /// The seed every random choice derives from (initialisation, problems, sampling,
    /// mini-batch order). Default 0.
    #[serde(default)]
    pub seed: u64,
    /// Compute device: `cpu`, `wgpu` or `cuda[:N]` (GPU devices need the matching feature).
    #[serde(default = "default_device")]
    pub device: String,
    /// The method and its options (a bare name: its defaults).
    #[serde(default)]
    pub method: MethodConfig,
    /// RL steps (one rollout batch each). Default 50.
    #[serde(default = "default_steps")]
    pub steps: u64,
    /// Stop RL once this many policy tokens were sampled (0: no budget). Comparisons at an
    /// equal sampled-token budget set it and a generous `steps`.
    #[serde(default)]
    pub max_sampled_tokens: u64,
    /// The policy to start from.
    pub model: ModelSource,
    /// The problems.
    pub task: TaskConfig,
    /// Sampling during rollouts.
    #[serde(default)]
    pub rollout: RolloutConfig,
    /// Prompt-template overrides by name (`rltf_revision`, `mulferl_regen`,
    /// `mulferl_forced_prefix`, `r3l_guidance_system`, ...; minijinja sources).
    #[serde(default)]
    pub templates: std::collections::BTreeMap<String, String>,
    /// The optimiser and its learning-rate schedule.
    #[serde(default)]
    pub optimizer: OptimizerConfig,
    /// Optimiser steps per rollout batch.
    #[serde(default)]
    pub updates: UpdateConfig,
    /// The supervised warm-start stage (before RL).
    #[serde(default)]
    pub sft: SftConfig,
    /// Held-out evaluation.
    #[serde(default)]
    pub eval: EvalConfig,
    /// Checkpoints.
    #[serde(default)]
    pub checkpoint: CheckpointConfig,
    /// The most memory the run may take, e.g. `"2GiB"` (`redraft train --max-memory`). The
    /// estimate of the model, its optimiser state and the largest batch is checked against it
    /// (and, on the CPU, against the memory the machine has available) before any work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_memory: Option<String>,
    /// Reward components (`[[reward]]` tables, tagged by `type`: `task`, `command`, `http`),
    /// summed with their weights. Empty: the built-in verifier alone.
    #[serde(default, rename = "reward", skip_serializing_if = "Vec::is_empty")]
    pub reward: Vec<redraft_feedback_protocol::RewardConfig>,
    /// LoRA (`[lora]`: `rank`, `alpha`, `dropout`, `target_modules`, `use_rslora`): train
    /// low-rank adapters beside the frozen base of `model.path` instead of every weight;
    /// checkpoints and `final/` then hold the adapter in PEFT's format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora: Option<redraft_model::LoraConfig>,
}

fn default_device() -> String {
    "cpu".into()
}
fn default_steps() -> u64 {
    50
}

/// Where the initial policy comes from: exactly one of `path` and `init`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSource {
    /// An HF or redraft model folder: config.json, safetensors weights, a tokenizer.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// A model config.json to initialise randomly (seeded by the run seed), with the byte
    /// tokenizer.
    #[serde(default)]
    pub init: Option<PathBuf>,
    /// How the frozen base of a LoRA run is stored: `f32` (default), `bf16` or `f16` (half
    /// the memory; each weight is widened to f32 where it is used). Needs `[lora]`.
    #[serde(default)]
    pub dtype: redraft_model::BaseDType,
}

/// The problems: a built-in task family or a dataset file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskConfig {
    /// A built-in generated family (`arithmetic`, `countdown`, `knights_knaves`,
    /// `shortest_path`, `binary_matrix`).
    #[serde(default)]
    pub family: Option<TaskFamily>,
    /// The family's difficulty knobs.
    #[serde(default)]
    pub difficulty: Difficulty,
    /// A JSONL or Parquet dataset of problems (instead of `family`). JSONL lines exported by
    /// reasoning-gym are scored by its rules (the dataset named in `metadata.source_dataset`).
    #[serde(default)]
    pub dataset: Option<PathBuf>,
    /// Score every line of `dataset` as this reasoning-gym dataset (`knights_knaves`,
    /// `binary_matrix`, `shortest_path`, `countdown`, `basic_arithmetic`), for lines without
    /// `metadata.source_dataset`.
    #[serde(default)]
    pub reasoning_gym: Option<redraft_verifier::RgDataset>,
    /// Share of a dataset held out for evaluation (by a hash of the problem text). Default 0.1.
    #[serde(default = "default_test_fraction")]
    pub test_fraction: f64,
    /// Seed of the generated problems (independent of the run seed so that runs with several
    /// seeds see the same held-out problems). Default 0.
    #[serde(default)]
    pub seed: u64,
}

fn default_test_fraction() -> f64 {
    0.1
}

/// Sampling during rollouts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RolloutConfig {
    /// Problems per RL step. Default 16.
    pub prompts_per_step: usize,
    /// Samples per problem (G); the default strategy's group size. Default 8.
    pub group_size: usize,
    /// Sampling temperature. Default 1.0.
    pub temperature: f64,
    /// Nucleus sampling threshold. Default 1.0 (off).
    pub top_p: f64,
    /// Top-k sampling (0: off). Default 0.
    pub top_k: usize,
    /// Maximum new tokens per turn. Default 128.
    pub max_new_tokens: usize,
    /// Most rows decoding at once in process (vLLM's `max_num_seqs`): a sampling call with
    /// more rows decodes them continuously batched, each waiting row taking a finished row's
    /// slot. Bounds the rollout's and evaluation's KV cache. Default 0: every row of a call at
    /// once.
    pub max_batch_rows: usize,
    /// Sample on OpenAI-compatible inference servers instead of in process
    /// (`[rollout.remote]`). Default: none (in process).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<RemoteConfig>,
}

impl Default for RolloutConfig {
    fn default() -> Self {
        Self {
            prompts_per_step: 16,
            group_size: 8,
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            max_new_tokens: 128,
            max_batch_rows: 0,
            remote: None,
        }
    }
}

/// Rollouts on inference servers (vLLM, SGLang, `redraft serve`): where they are, how
/// requests behave, where the trainer writes the weights it syncs after each step, and how the
/// gap between the servers' and the learner's log-probs is corrected. See docs/SCALING.md.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RemoteConfig {
    /// Base URLs of the servers' OpenAI APIs, e.g. `["http://10.0.0.2:8000/v1"]`.
    pub servers: Vec<String>,
    /// Longest wait for one request or sync call, in seconds. Default 600.
    pub timeout_s: f64,
    /// Servers tried for one request before the step fails. Default 3.
    pub max_attempts: usize,
    /// Requests in flight per server. Default 64.
    pub max_concurrency: usize,
    /// A folder every server can read, where the synced weights (LoRA runs: the PEFT adapter;
    /// full fine-tuning: a model folder) are written. Default: `rollout-sync/` in the run
    /// folder (servers on this machine or on a shared file system).
    pub sync_dir: Option<PathBuf>,
    /// How the learner corrects for the servers' log-probs differing from its own: `truncate`
    /// (truncated importance sampling), `mask`, or `none` (logged only). Default `truncate`.
    pub correction: redraft_credit_assignment::SamplerCorrection,
    /// The cap on the per-token importance ratio. Default 2.0.
    pub correction_cap: f64,
}

impl Default for RemoteConfig {
    fn default() -> Self {
        Self {
            servers: Vec::new(),
            timeout_s: 600.0,
            max_attempts: 3,
            max_concurrency: 64,
            sync_dir: None,
            correction: Default::default(),
            correction_cap: 2.0,
        }
    }
}

impl RemoteConfig {
    /// The options of the [`RemotePolicy`](redraft_rollout_engine::RemotePolicy) over these
    /// servers.
    pub fn options(&self) -> Result<redraft_rollout_engine::RemoteOptions> {
        if !(self.timeout_s > 0.0 && self.timeout_s.is_finite()) {
            return Err(Error::config(
                "rollout.remote.timeout_s",
                "must be a positive number",
            ));
        }
        Ok(redraft_rollout_engine::RemoteOptions {
            servers: self.servers.clone(),
            timeout: std::time::Duration::from_secs_f64(self.timeout_s),
            max_attempts: self.max_attempts,
            max_concurrency: self.max_concurrency,
        })
    }
}

/// The learning-rate schedule after warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// Constant learning rate.
    #[default]
    Constant,
    /// Cosine decay to `min_lr_ratio · lr` at the last step.
    Cosine,
}

/// AdamW and its schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimizerConfig {
    /// Peak learning rate. Default 1e-4.
    pub lr: f64,
    /// Adam β₁, β₂. Default (0.9, 0.999).
    pub betas: [f64; 2],
    /// Adam ε. Default 1e-8 (PyTorch's).
    pub eps: f64,
    /// Decoupled weight decay. Default 0.
    pub weight_decay: f64,
    /// Global gradient-norm clip (0: off). Default 1.0.
    pub grad_clip: f64,
    /// Linear warm-up steps. Default 0.
    pub warmup_steps: u64,
    /// Schedule after warm-up. Default constant.
    pub schedule: Schedule,
    /// Final learning rate of the cosine schedule, as a share of `lr`. Default 0.1.
    pub min_lr_ratio: f64,
    /// Keep only each layer's input during an update and recompute the layers one at a time in
    /// the backward: activation memory of one layer instead of all, for one more forward pass
    /// (transformers' `gradient_checkpointing`). Default false.
    pub gradient_checkpointing: bool,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        Self {
            lr: 1e-4,
            betas: [0.9, 0.999],
            eps: 1e-8,
            weight_decay: 0.0,
            grad_clip: 1.0,
            warmup_steps: 0,
            schedule: Schedule::Constant,
            min_lr_ratio: 0.1,
            gradient_checkpointing: false,
        }
    }
}

impl OptimizerConfig {
    /// The learning rate of update `step` (0-based) of `total`.
    pub fn lr_at(&self, step: u64, total: u64) -> f64 {
        if step < self.warmup_steps {
            return self.lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        match self.schedule {
            Schedule::Constant => self.lr,
            Schedule::Cosine => {
                let span = total.saturating_sub(self.warmup_steps).max(1) as f64;
                let t = ((step - self.warmup_steps) as f64 / span).min(1.0);
                let min = self.lr * self.min_lr_ratio;
                min + (self.lr - min) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
            }
        }
    }
}

/// Optimiser steps per rollout batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpdateConfig {
    /// Passes over the batch. Default 1.
    pub epochs: usize,
    /// Mini-batches per pass (split by problem; all rows of a problem stay together).
    /// Default 1 (one on-policy update per batch).
    pub minibatches: usize,
}

impl Default for UpdateConfig {
    fn default() -> Self {
        Self {
            epochs: 1,
            minibatches: 1,
        }
    }
}

/// The supervised warm-start: next-token cross-entropy on reference solutions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SftConfig {
    /// Optimiser steps (0: no SFT stage). Default 0.
    pub steps: u64,
    /// Examples per step. Default 32.
    pub batch_size: usize,
    /// Peak learning rate (same AdamW settings and schedule shape as RL). Default 1e-3.
    pub lr: f64,
    /// Warm-up steps. Default 10.
    pub warmup_steps: u64,
    /// Share of examples that are feedback-conditioned revisions: a corrupted solution, the
    /// verifier's critique of it and the reference solution, in the prompt format of each
    /// feedback method (RLTF's revision prompt, MulFeRL's regeneration with its forced
    /// prefix, R^3L's guidance). Default 0.
    pub revision_fraction: f64,
    /// Share of those feedback examples that train the critique instead: RLTF-FM's
    /// feedback-modelling prompt (`rltf_critique`) for the corrupted solution, the verifier's
    /// critique as the target. Default 0.
    pub critique_fraction: f64,
}

impl Default for SftConfig {
    fn default() -> Self {
        Self {
            steps: 0,
            batch_size: 32,
            lr: 1e-3,
            warmup_steps: 10,
            revision_fraction: 0.0,
            critique_fraction: 0.0,
        }
    }
}

/// Held-out evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvalConfig {
    /// Evaluate every this many RL steps (0: only at the start and the end). Default 0.
    pub every: u64,
    /// Evaluate before the first RL step. Default true.
    pub at_start: bool,
    /// Held-out problems. Default 128.
    pub problems: usize,
    /// Samples per problem (pass@k is reported for k = 1 and k = samples). Default 4.
    pub samples: usize,
    /// Sampling temperature (0: greedy). Default 1.0.
    pub temperature: f64,
    /// Also measure multi-turn success with the run's feedback provider (or the verifier's
    /// critique): a failed first attempt gets one critique and one revision. Default true.
    pub with_feedback: bool,
    /// Also measure RLTF-FM's test-time self-feedback: the policy critiques its own failed
    /// attempt (the feedback-modelling prompt) and revises. Default false.
    pub self_feedback: bool,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            every: 0,
            at_start: true,
            problems: 128,
            samples: 4,
            temperature: 1.0,
            with_feedback: true,
            self_feedback: false,
        }
    }
}

/// Checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CheckpointConfig {
    /// Write a checkpoint every this many RL steps (0: only at the end). Default 10.
    pub every: u64,
    /// Checkpoints kept (older ones are deleted; the last one always stays). Default 2.
    pub keep: usize,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        Self { every: 10, keep: 2 }
    }
}

impl TrainConfig {
    /// Reads a TOML file, applies `overrides` (`key.path=value`, the value parsed as TOML and
    /// taken as a string when it does not parse) and validates the result.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text, overrides).map_err(|e| match e {
            Error::Config { path: key, message } => {
                Error::config(key, format!("{message} (in {})", path.display()))
            }
            other => other,
        })
    }

    /// [`load`](Self::load) from a string.
    pub fn parse(text: &str, overrides: &[String]) -> Result<Self> {
        let mut doc: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| Error::config(".", e.to_string()))?;
        for item in overrides {
            // `--set method.objective.x=...` on `method = "name"`: the name becomes a table.
            if let Some(toml::Value::String(name)) = doc.get("method") {
                let mut t = toml::Table::new();
                t.insert("type".into(), toml::Value::String(name.clone()));
                doc.insert("method".into(), toml::Value::Table(t));
            }
            apply_override(&mut doc, item)?;
        }
        // The method separately, so that its errors name the key under `method`.
        let method = doc.remove("method");
        let mut config: TrainConfig = serde_path_to_error::deserialize(toml::Value::Table(doc))
            .map_err(|e| {
                let path = e.path().to_string();
                Error::config(path, e.into_inner().to_string())
            })?;
        if let Some(method) = method {
            config.method = MethodConfig::from_toml(method)?;
        }
        config.validate()?;
        Ok(config)
    }

    /// The run's name.
    pub fn run_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.method.to_string())
    }

    /// The feedback provider of the method's rollouts (`None`: it takes none).
    pub fn feedback(&self) -> Option<redraft_feedback_protocol::ProviderConfig> {
        self.method.method().feedback()
    }

    /// The device (one this build includes).
    pub fn device_spec(&self) -> Result<DeviceSpec> {
        let spec: DeviceSpec = self
            .device
            .parse()
            .map_err(|e: redraft_model::Error| Error::config("device", e.to_string()))?;
        spec.check_built()
            .map_err(|e| Error::config("device", e.to_string()))?;
        Ok(spec)
    }

    /// Checks every setting and combination; the first problem found is returned.
    pub fn validate(&self) -> Result<()> {
        self.device_spec()?;
        match (&self.model.path, &self.model.init) {
            (Some(_), Some(_)) => {
                return Err(Error::config(
                    "model",
                    "set either `path` or `init`, not both",
                ));
            }
            (None, None) => {
                return Err(Error::config(
                    "model",
                    "set `path` (a model folder) or `init` (a config.json)",
                ));
            }
            (None, Some(_)) if self.lora.is_some() => {
                return Err(Error::config(
                    "lora",
                    "LoRA adapters are trained on a saved base: set `model.path`, not `model.init`",
                ));
            }
            _ => {}
        }
        if self.model.dtype != redraft_model::BaseDType::F32 && self.lora.is_none() {
            return Err(Error::config(
                "model.dtype",
                format!(
                    "{} stores a frozen base: it needs `[lora]` (full fine-tuning trains f32 weights)",
                    self.model.dtype
                ),
            ));
        }
        match (&self.task.family, &self.task.dataset) {
            (Some(_), Some(_)) => {
                return Err(Error::config("task", "set either `family` or `dataset`"));
            }
            (None, None) => {
                return Err(Error::config(
                    "task",
                    "set `family` (a built-in task) or `dataset` (a JSONL/Parquet file)",
                ));
            }
            (Some(family), _) if !family.has_generator() => {
                return Err(Error::config(
                    "task.family",
                    format!("{family} has no generator: use `dataset`"),
                ));
            }
            (Some(family), None) => {
                family
                    .generate_one(self.task.seed, 0, &self.task.difficulty)
                    .map_err(|e| Error::config("task.difficulty", e.to_string()))?;
            }
            (None, Some(_)) => {}
        }
        if !(0.0..1.0).contains(&self.task.test_fraction) {
            return Err(Error::config("task.test_fraction", "must be in [0, 1)"));
        }
        positive("rollout.prompts_per_step", self.rollout.prompts_per_step)?;
        positive("rollout.group_size", self.rollout.group_size)?;
        positive("rollout.max_new_tokens", self.rollout.max_new_tokens)?;
        if !(self.rollout.temperature > 0.0 && self.rollout.temperature.is_finite()) {
            return Err(Error::config("rollout.temperature", "must be positive"));
        }
        if !(self.rollout.top_p > 0.0 && self.rollout.top_p <= 1.0) {
            return Err(Error::config("rollout.top_p", "must be in (0, 1]"));
        }
        if let Some(remote) = &self.rollout.remote {
            redraft_rollout_engine::RemotePolicy::new(remote.options()?, 1).map_err(
                |e| match e {
                    redraft_rollout_engine::Error::InvalidParam { name, reason } => {
                        Error::config(format!("rollout.remote.{name}"), reason)
                    }
                    other => Error::config("rollout.remote", other.to_string()),
                },
            )?;
            if !(remote.correction_cap > 0.0 && remote.correction_cap.is_finite()) {
                return Err(Error::config(
                    "rollout.remote.correction_cap",
                    "must be a positive number",
                ));
            }
        }
        self.method.method().validate(&self.rollout)?;
        redraft_feedback_protocol::validate_rewards(&self.reward)
            .map_err(|e| Error::config("reward", e.to_string()))?;
        let o = &self.optimizer;
        if !(o.lr > 0.0 && o.lr.is_finite()) {
            return Err(Error::config("optimizer.lr", "must be positive"));
        }
        if o.betas.iter().any(|b| !(0.0..1.0).contains(b)) {
            return Err(Error::config("optimizer.betas", "each must be in [0, 1)"));
        }
        if o.eps.is_nan() || o.eps <= 0.0 {
            return Err(Error::config("optimizer.eps", "must be positive"));
        }
        if o.weight_decay.is_nan() || o.weight_decay < 0.0 {
            return Err(Error::config("optimizer.weight_decay", "must be >= 0"));
        }
        if o.grad_clip.is_nan() || o.grad_clip < 0.0 {
            return Err(Error::config("optimizer.grad_clip", "must be >= 0"));
        }
        if !(0.0..=1.0).contains(&o.min_lr_ratio) {
            return Err(Error::config("optimizer.min_lr_ratio", "must be in [0, 1]"));
        }
        if o.gradient_checkpointing && self.lora.as_ref().is_some_and(|l| l.dropout > 0.0) {
            // The recomputed layers would draw other dropout masks than the forward did.
            return Err(Error::config(
                "optimizer.gradient_checkpointing",
                "cannot be combined with `lora.dropout` > 0 (set the dropout to 0)",
            ));
        }
        positive("updates.epochs", self.updates.epochs)?;
        positive("updates.minibatches", self.updates.minibatches)?;
        if self.updates.minibatches > self.rollout.prompts_per_step {
            return Err(Error::config(
                "updates.minibatches",
                "cannot exceed rollout.prompts_per_step (mini-batches split by problem)",
            ));
        }
        if self.sft.steps > 0 {
            positive("sft.batch_size", self.sft.batch_size)?;
            if self.sft.lr.is_nan() || self.sft.lr <= 0.0 {
                return Err(Error::config("sft.lr", "must be positive"));
            }
            if !(0.0..=1.0).contains(&self.sft.revision_fraction) {
                return Err(Error::config("sft.revision_fraction", "must be in [0, 1]"));
            }
            if !(0.0..=1.0).contains(&self.sft.critique_fraction) {
                return Err(Error::config("sft.critique_fraction", "must be in [0, 1]"));
            }
            if self.task.family.is_none() && self.sft.revision_fraction > 0.0 {
                return Err(Error::config(
                    "sft.revision_fraction",
                    "revision examples need a built-in task family (its critic)",
                ));
            }
        }
        redraft_feedback_protocol::Templates::with_overrides(&self.templates)
            .map_err(|e| Error::config("templates", e.to_string()))?;
        positive("eval.problems", self.eval.problems)?;
        positive("eval.samples", self.eval.samples)?;
        if self.eval.temperature.is_nan() || self.eval.temperature < 0.0 {
            return Err(Error::config("eval.temperature", "must be >= 0"));
        }
        positive("checkpoint.keep", self.checkpoint.keep)?;
        self.memory_limit()?;
        Ok(())
    }

    /// The `max_memory` limit in bytes, if set.
    ///
    /// # Errors
    /// [`Error::Config`] for a value that is not a memory size.
    pub fn memory_limit(&self) -> Result<Option<u64>> {
        self.max_memory
            .as_deref()
            .map(|text| {
                redraft_model::parse_bytes(text)
                    .map_err(|e| Error::config("max_memory", e.to_string()))
            })
            .transpose()
    }

    /// The configuration as TOML (written into every run folder and checkpoint).
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self).map_err(|e| Error::config(".", e.to_string()))
    }
}

fn positive(path: &str, value: usize) -> Result<()> {
    if value == 0 {
        return Err(Error::config(path, "must be at least 1"));
    }
    Ok(())
}

/// Sets `key.path = value` in a TOML table.
fn apply_override(doc: &mut toml::Table, item: &str) -> Result<()> {
    let (key, raw) = item
        .split_once('=')
        .ok_or_else(|| Error::config(item, "an override is `key.path=value`"))?;
    let key = key.trim();
    let raw = raw.trim();
    let value = format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(Error::config(key, "empty key segment in override"));
    }
    set_key(doc, &parts, value)
}

/// Sets the value at the key path `path` (`["method", "objective", "kl_coef"]`) of a TOML
/// document, creating the tables on the way: the one setter of `--set` overrides and of
/// experiment presets.
///
/// # Errors
/// [`Error::Config`] when the path is empty or runs through a value that is not a table.
pub fn set_key(doc: &mut toml::Table, path: &[&str], value: toml::Value) -> Result<()> {
    let Some((last, parents)) = path.split_last() else {
        return Err(Error::config(".", "an empty key path"));
    };
    let mut table = doc;
    for (i, part) in parents.iter().enumerate() {
        let entry = table
            .entry((*part).to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = entry.as_table_mut().ok_or_else(|| {
            Error::config(
                path[..=i].join("."),
                "is not a table, so it has no keys to set",
            )
        })?;
    }
    table.insert((*last).to_string(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        method = "grpo"
        [model]
        init = "configs/models/tiny-byte-llama.json"
        [task]
        family = "arithmetic"
        difficulty = { digits = 2 }
    "#;

    #[test]
    fn minimal_config_takes_the_method_defaults() {
        let c = TrainConfig::parse(MINIMAL, &[]).unwrap();
        assert_eq!(c.method, MethodConfig::defaults(Method::Grpo));
        assert!(c.feedback().is_none());
        assert_eq!(c.run_name(), "grpo");
        let c = TrainConfig::parse(MINIMAL, &["method=rltf_sd".into()]).unwrap();
        assert!(c.feedback().is_some());
        assert_eq!(c.run_name(), "rltf_sd");
    }

    #[test]
    fn unknown_keys_and_wrong_types_name_the_key_path() {
        let e = TrainConfig::parse(MINIMAL, &["optimizer.lrr=0.1".into()]).unwrap_err();
        assert!(e.to_string().contains("optimizer"), "{e}");
        assert!(e.to_string().contains("lrr"), "{e}");
        let e = TrainConfig::parse(MINIMAL, &["rollout.group_size=\"eight\"".into()]).unwrap_err();
        assert!(
            e.to_string().starts_with("config: rollout.group_size"),
            "{e}"
        );
        let e = TrainConfig::parse(MINIMAL, &["optimizer.lr=-1".into()]).unwrap_err();
        assert!(e.to_string().starts_with("config: optimizer.lr"), "{e}");
    }

    #[test]
    fn impossible_combinations_are_rejected() {
        let e = TrainConfig::parse(
            MINIMAL,
            &["method.feedback.type=\"correctness_only\"".into()],
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("config: method"), "{e}");
        assert!(e.to_string().contains("feedback"), "{e}");
        let e = TrainConfig::parse(MINIMAL, &["model.path=\"x\"".into()]).unwrap_err();
        assert!(e.to_string().starts_with("config: model"), "{e}");
        let e = TrainConfig::parse(MINIMAL, &["task.difficulty.digits=99".into()]).unwrap_err();
        assert!(e.to_string().starts_with("config: task.difficulty"), "{e}");
        // A backend this build leaves out is refused before any work.
        let gpu = TrainConfig::parse(MINIMAL, &["device=\"wgpu\"".into()]);
        match DeviceSpec::Wgpu.check_built() {
            Ok(()) => assert!(gpu.is_ok(), "{gpu:?}"),
            Err(_) => {
                let e = gpu.unwrap_err().to_string();
                assert!(
                    e.starts_with("config: device") && e.contains("--features wgpu"),
                    "{e}"
                );
            }
        }
        let sd = |key: &str| TrainConfig::parse(MINIMAL, &["method=rltf_sd".into(), key.into()]);
        let e = sd("method.self_distillation.rl_coef=1.0").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("config: method.self_distillation"),
            "{e}"
        );
        assert!(e.to_string().contains("rl_coef"), "{e}");
        let ok = sd("method.self_distillation.baseline=\"first_turn\"");
        assert!(ok.is_ok(), "{ok:?}");
        // A half-precision base is a frozen base: full fine-tuning trains f32 weights.
        let e = TrainConfig::parse(MINIMAL, &["model.dtype=\"bf16\"".into()]).unwrap_err();
        assert!(e.to_string().starts_with("config: model.dtype"), "{e}");
        assert!(e.to_string().contains("needs `[lora]`"), "{e}");
        // Recomputed layers would draw other LoRA dropout masks than the forward did.
        let lora = |dropout: &str| {
            let text = MINIMAL.replace(
                "init = \"configs/models/tiny-byte-llama.json\"",
                "path = \"models/base\"\ndtype = \"f16\"",
            );
            let text = format!(
                "{text}\n[lora]\nrank = 2\nalpha = 4\ndropout = {dropout}\ntarget_modules = [\"q_proj\"]\n"
            );
            TrainConfig::parse(&text, &["optimizer.gradient_checkpointing=true".into()])
        };
        let e = lora("0.05").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("config: optimizer.gradient_checkpointing"),
            "{e}"
        );
        assert!(e.to_string().contains("lora.dropout"), "{e}");
        let ok = lora("0.0");
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[test]
    fn overrides_parse_toml_values_and_fall_back_to_strings() {
        let c = TrainConfig::parse(
            MINIMAL,
            &[
                "optimizer.lr=3e-4".into(),
                "name=my-run".into(),
                "eval.with_feedback=false".into(),
            ],
        )
        .unwrap();
        assert_eq!(c.optimizer.lr, 3e-4);
        assert_eq!(c.run_name(), "my-run");
        assert!(!c.eval.with_feedback);
        let e = TrainConfig::parse(MINIMAL, &["method".into()]).unwrap_err();
        assert!(e.to_string().contains("key.path=value"), "{e}");
    }

    #[test]
    fn remote_rollouts_are_checked_by_key() {
        let with = |remote: &str| {
            TrainConfig::parse(&format!("{MINIMAL}\n[rollout.remote]\n{remote}"), &[])
        };
        let ok = with("servers = [\"http://10.0.0.2:8000/v1\"]\ncorrection = \"mask\"").unwrap();
        let remote = ok.rollout.remote.as_ref().unwrap();
        assert_eq!(
            remote.correction,
            redraft_credit_assignment::SamplerCorrection::Mask
        );
        assert_eq!((remote.max_attempts, remote.correction_cap), (3, 2.0));
        assert_eq!(TrainConfig::parse(&ok.to_toml().unwrap(), &[]).unwrap(), ok);
        for (remote, key) in [
            ("servers = []", "rollout.remote.servers"),
            ("servers = [\"10.0.0.2:8000\"]", "rollout.remote.servers"),
            (
                "servers = [\"http://h/v1\"]\ntimeout_s = 0",
                "rollout.remote.timeout_s",
            ),
            (
                "servers = [\"http://h/v1\"]\nmax_attempts = 0",
                "rollout.remote.max_attempts",
            ),
            (
                "servers = [\"http://h/v1\"]\ncorrection_cap = -1",
                "rollout.remote.correction_cap",
            ),
            (
                "servers = [\"http://h/v1\"]\ncorrection = \"clip\"",
                "correction",
            ),
            ("servers = [\"http://h/v1\"]\nserver = \"x\"", "server"),
        ] {
            let e = with(remote).unwrap_err().to_string();
            assert!(e.contains(key), "{remote}: {e}");
        }
    }

    #[test]
    fn config_round_trips_through_toml() {
        let c = TrainConfig::parse(MINIMAL, &["method=rltf_sd".into()]).unwrap();
        let again = TrainConfig::parse(&c.to_toml().unwrap(), &[]).unwrap();
        assert_eq!(c, again);
    }

    #[test]
    fn learning_rate_schedule() {
        let o = OptimizerConfig {
            lr: 1.0,
            warmup_steps: 4,
            schedule: Schedule::Cosine,
            min_lr_ratio: 0.0,
            ..OptimizerConfig::default()
        };
        assert_eq!(o.lr_at(0, 104), 0.25);
        assert_eq!(o.lr_at(3, 104), 1.0);
        assert!((o.lr_at(4, 104) - 1.0).abs() < 1e-12);
        assert!((o.lr_at(54, 104) - 0.5).abs() < 1e-12);
        assert!(o.lr_at(104, 104).abs() < 1e-12);
    }
}
