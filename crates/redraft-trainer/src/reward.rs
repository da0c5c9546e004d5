//! The run's reward: what rollouts score responses with (`[[reward]]` tables, or the built-in
//! verifier alone), what SFT and evaluation judge correctness with, and the per-step reward
//! metrics.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use redraft_feedback_protocol::{RewardConfig, RewardSet, RewardStats};
use redraft_rollout_engine::RolloutBatch;
use redraft_verifier::{DefaultVerifier, Verifier};

use crate::error::{Error, Result};

/// The verifiers of a run.
pub struct Rewards {
    /// Correctness, format and diagnosis (the built-in verifier or the user's Rust verifier):
    /// what SFT corrupts against and evaluation counts.
    pub correctness: Arc<dyn Verifier>,
    /// What rollouts score with: `correctness` alone without `[[reward]]` tables, else their
    /// weighted sum over it.
    pub reward: Arc<dyn Verifier>,
    set: Option<Arc<RewardSet>>,
    last: Mutex<BTreeMap<String, RewardStats>>,
}

impl std::fmt::Debug for Rewards {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rewards")
            .field("set", &self.set)
            .finish_non_exhaustive()
    }
}

impl Rewards {
    /// The rewards of `configs` over the built-in verifier.
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid `[[reward]]` table.
    pub fn new(configs: &[RewardConfig]) -> Result<Self> {
        Self::with_verifier(configs, Arc::new(DefaultVerifier::default()))
    }

    /// The rewards of `configs` over `verifier` (the source of correctness and the `task`
    /// component).
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid `[[reward]]` table.
    pub fn with_verifier(configs: &[RewardConfig], verifier: Arc<dyn Verifier>) -> Result<Self> {
        let set = if configs.is_empty() {
            None
        } else {
            Some(Arc::new(
                RewardSet::with_verifier(configs, verifier.clone())
                    .map_err(|e| Error::config("reward", e.to_string()))?,
            ))
        };
        let reward = match &set {
            Some(s) => s.clone() as Arc<dyn Verifier>,
            None => verifier.clone(),
        };
        Ok(Self {
            correctness: verifier,
            reward,
            set,
            last: Mutex::new(BTreeMap::new()),
        })
    }

    /// This step's reward metrics: `{component}` (the mean unweighted reward of each
    /// component over every turn of the batch) and, for programs and endpoints,
    /// `{component}/failures`, `/timeouts` and `/restarts` during the step.
    pub fn step_metrics(&self, batch: &RolloutBatch) -> BTreeMap<String, f64> {
        let mut sums: BTreeMap<&str, (f64, usize)> = BTreeMap::new();
        for turn in batch.episodes.iter().flat_map(|e| &e.turns) {
            for (name, value) in &turn.verdict.components {
                let e = sums.entry(name.as_str()).or_default();
                e.0 += f64::from(*value);
                e.1 += 1;
            }
        }
        let mut out: BTreeMap<String, f64> = sums
            .into_iter()
            .map(|(name, (sum, n))| (name.to_string(), sum / n as f64))
            .collect();
        let Some(set) = &self.set else { return out };
        let now = set.stats();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        for (name, s) in &now {
            let before = last.get(name).cloned().unwrap_or_default();
            let counts = [
                ("failures", s.failures - before.failures),
                ("timeouts", s.timeouts - before.timeouts),
                ("restarts", s.restarts - before.restarts),
            ];
            for (what, n) in counts {
                out.insert(format!("{name}/{what}"), n as f64);
            }
        }
        *last = now;
        out
    }
}
