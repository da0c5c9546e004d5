//! Rollouts on inference servers (`[rollout.remote]`): the [`RemotePolicy`] a run's steps sample
//! through, and the weights synced to it before each step's rollout, so every sample of step `k`
//! comes from the policy after `k` updates:
//!
//! - LoRA runs write the PEFT adapter (`<sync_dir>/redraft-step-<k>/`) and load it on every
//!   server under that name (vLLM's `POST /v1/load_lora_adapter`), unloading the previous one;
//! - full fine-tuning writes a model folder (config.json + model.safetensors) and makes every
//!   server reload its weights from it as version `redraft-step-<k>` (SGLang's
//!   `POST /update_weights_from_disk`).
//!
//! The learner then re-scores every sampled token itself and corrects the gap to the servers'
//! log-probs ([`TrainRows::correct_sampler_gap`](crate::rows::TrainRows::correct_sampler_gap)).

use std::path::PathBuf;
use std::sync::Arc;

use redraft_credit_assignment::GapStats;
use redraft_model::{CausalLm, SaveDType, publish_dir};
use redraft_rollout_engine::{RemotePolicy, ServerStatus};
use serde::{Deserialize, Serialize};

use crate::config::RemoteConfig;
use crate::error::{Error, Result};

/// The servers of a run and what was last synced to them.
#[derive(Debug)]
pub(crate) struct RolloutServers {
    policy: Arc<RemotePolicy>,
    pub(crate) config: RemoteConfig,
    dir: PathBuf,
    synced: Option<String>,
}

/// What a step's sampling on servers recorded (`sampler` in metrics.jsonl).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplerMetrics {
    /// The weight version every sample of the step came from (each answer is checked).
    pub weight_version: String,
    /// Servers that held it.
    pub servers_ready: usize,
    /// Servers in the run.
    pub servers: usize,
    /// Requests retried on another server.
    pub retries: u64,
    /// Tokens whose sampler log-prob was compared with the learner's.
    pub tokens: usize,
    /// Mean `|log π_learner − log π_sampler|` over them.
    pub logprob_gap_mean: f64,
    /// Largest `|log π_learner − log π_sampler|`.
    pub logprob_gap_max: f64,
    /// Mean importance weight applied (1 when the correction is `none`).
    pub is_weight_mean: f64,
    /// Tokens whose importance ratio exceeded the cap.
    pub is_capped: usize,
}

impl RolloutServers {
    /// The servers of `config`, for a model of `context` positions; weights are synced to
    /// `config.sync_dir` or else `default_dir`.
    pub(crate) fn new(config: &RemoteConfig, default_dir: PathBuf, context: usize) -> Result<Self> {
        let policy = RemotePolicy::new(config.options()?, context)?;
        Ok(Self {
            policy: Arc::new(policy),
            dir: config.sync_dir.clone().unwrap_or(default_dir),
            config: config.clone(),
            synced: None,
        })
    }

    /// The policy the step samples through.
    pub(crate) fn policy(&self) -> Arc<RemotePolicy> {
        Arc::clone(&self.policy)
    }

    /// Makes the servers hold `model`, the policy after `step` updates (a LoRA model syncs its
    /// adapter, any other its weights). Servers that miss it are not used until a later sync
    /// reaches them; the folders of earlier versions are removed.
    ///
    /// # Errors
    /// Writing the weights, or no server taking them.
    pub(crate) fn sync(&mut self, model: &CausalLm, step: u64) -> Result<String> {
        let version = format!("redraft-step-{step}");
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        let path = self.dir.join(&version);
        if !path.is_dir() {
            publish_dir(&path, |tmp| -> Result<()> {
                if model.lora().is_some() {
                    model.save_adapter(tmp)?;
                } else {
                    model.save_pretrained(tmp, SaveDType::F32)?;
                }
                Ok(())
            })?;
        }
        let ready = if model.lora().is_some() {
            self.policy
                .sync_adapter(&version, &path, self.synced.as_deref())?
        } else {
            self.policy.sync_weights(&path, &version)?
        };
        tracing::info!(%version, ready, servers = self.config.servers.len(), "weights synced");
        self.synced = Some(version.clone());
        self.remove_old_versions(&version);
        Ok(version)
    }

    /// Removes the synced folders of versions other than `current` (best effort: a folder
    /// left behind is only disk space).
    fn remove_old_versions(&self, current: &str) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("redraft-step-")
                && name != current
                && let Err(error) = std::fs::remove_dir_all(entry.path())
            {
                tracing::warn!(%error, folder = %entry.path().display(), "old synced weights not removed");
            }
        }
    }

    /// The step's record: the version, the servers that held it, the retries, the gap.
    pub(crate) fn metrics(&self, version: String, gap: &GapStats) -> SamplerMetrics {
        let servers = self.policy.servers();
        SamplerMetrics {
            weight_version: version,
            servers_ready: servers
                .iter()
                .filter(|(_, s)| *s == ServerStatus::Ready)
                .count(),
            servers: servers.len(),
            retries: self.policy.take_retries(),
            tokens: gap.tokens,
            logprob_gap_mean: gap.abs_gap_mean,
            logprob_gap_max: gap.abs_gap_max,
            is_weight_mean: gap.weight_mean,
            is_capped: gap.capped,
        }
    }
}
