//! A run folder ([`RunDir`]): where a run's configuration, logs, checkpoints and final model
//! live, and the only code that reads or writes its files. The trainer keeps the loop.
//!
//! ```text
//! config.toml          the run configuration
//! metrics.jsonl        one MetricsRecord per SFT or RL step
//! eval.jsonl           one EvalRecord per evaluation
//! transcripts.jsonl    a few TranscriptRecords per RL step
//! tokenizer/           the tokenizer of a randomly initialised model
//! reference/           the frozen reference model (when a KL term or pair loss needs one)
//! checkpoints/         step-NNNNNNNN/ folders and `latest` (see crate::checkpoint)
//! final/               the final policy (HF safetensors + tokenizer)
//! report.md, *.svg     the end-of-run report
//! ```

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::checkpoint::TrainState;
use crate::config::TrainConfig;
use crate::error::{Error, Result};
use crate::metrics::{MetricsRecord, TranscriptRecord};
use crate::trainer::EvalRecord;

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
    /// The base with a LoRA run's adapters merged in (`redraft train --merge`).
    pub const MERGED: &str = "merged";
    /// The weights synced to rollout servers (`[rollout.remote]` without a `sync_dir`).
    pub const ROLLOUT_SYNC: &str = "rollout-sync";
}

/// A run folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    /// An existing run folder (nothing is read yet).
    pub fn open(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
        }
    }

    /// A fresh run folder at `path` (created; it must be empty or absent) holding `config`.
    ///
    /// # Errors
    /// [`Error::Config`] for a non-empty folder; [`Error::Io`].
    pub fn create(path: &Path, config: &TrainConfig) -> Result<Self> {
        if path.exists()
            && std::fs::read_dir(path)
                .map_err(|e| Error::io(path, e))?
                .next()
                .is_some()
        {
            return Err(Error::config(
                ".",
                format!(
                    "{} is not empty: resume it with --resume or choose another folder",
                    path.display()
                ),
            ));
        }
        std::fs::create_dir_all(path).map_err(|e| Error::io(path, e))?;
        let dir = Self::open(path);
        redraft_model::write_atomic(&dir.join(files::CONFIG), config.to_toml()?.as_bytes())?;
        Ok(dir)
    }

    /// A new folder `root/runs/<name>-<unix seconds>` (with a `-k` suffix if that exists):
    /// never an earlier run's folder.
    ///
    /// # Errors
    /// [`Error::Io`] when `root/runs` cannot be created.
    pub fn new_under(root: &Path, name: &str) -> Result<PathBuf> {
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

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A path inside the folder.
    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.path.join(name)
    }

    /// The configuration saved in the folder.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Config`].
    pub fn config(&self) -> Result<TrainConfig> {
        TrainConfig::load(&self.join(files::CONFIG), &[])
    }

    /// Appends a step's metrics.
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn append_metrics(&self, record: &MetricsRecord) -> Result<()> {
        append_jsonl(&self.join(files::METRICS), record)
    }

    /// Appends an evaluation.
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn append_eval(&self, record: &EvalRecord) -> Result<()> {
        append_jsonl(&self.join(files::EVALS), record)
    }

    /// Appends transcripts.
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn append_transcripts(&self, records: &[TranscriptRecord]) -> Result<()> {
        records
            .iter()
            .try_for_each(|r| append_jsonl(&self.join(files::TRANSCRIPTS), r))
    }

    /// Every step's metrics, in order.
    ///
    /// # Errors
    /// [`Error::Io`] when the file exists but cannot be read.
    pub fn metrics(&self) -> Result<Vec<MetricsRecord>> {
        read_jsonl(&self.join(files::METRICS))
    }

    /// Every evaluation, in order.
    ///
    /// # Errors
    /// [`Error::Io`] when the file exists but cannot be read.
    pub fn evals(&self) -> Result<Vec<EvalRecord>> {
        read_jsonl(&self.join(files::EVALS))
    }

    /// Every transcript, in order.
    ///
    /// # Errors
    /// [`Error::Io`] when the file exists but cannot be read.
    pub fn transcripts(&self) -> Result<Vec<TranscriptRecord>> {
        read_jsonl(&self.join(files::TRANSCRIPTS))
    }

    /// Removes what writes of a killed process left behind: the temporaries of atomic writes
    /// (`.NAME.tmp-PID`: a log being rewritten, `final/` or `reference/` being published, a
    /// checkpoint) in the folder and in `checkpoints/`, and nothing else.
    ///
    /// # Errors
    /// [`Error::Model`] when one cannot be removed.
    pub fn remove_stale_temps(&self) -> Result<()> {
        for dir in [
            self.path.clone(),
            crate::checkpoint::checkpoints_dir(&self.path),
        ] {
            for path in redraft_model::remove_stale_temps(&dir)? {
                tracing::debug!(path = %path.display(), "removed a killed write's temporary");
            }
        }
        Ok(())
    }

    /// Publishes the model folder `name` (`final`, `reference`): `write` fills a temporary
    /// folder, which is then flushed to disk and renamed into place, so the folder is whole
    /// or absent.
    ///
    /// # Errors
    /// What `write` returns; [`Error::Model`] when publishing fails.
    pub fn publish_dir(&self, name: &str, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
        redraft_model::publish_dir(&self.join(name), write)
    }

    /// Drops what was logged after `state` (the checkpoint a run resumes from; the default
    /// state drops everything): those steps run again.
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn truncate_to(&self, state: &TrainState) -> Result<()> {
        rewrite_jsonl(&self.join(files::METRICS), |m: &MetricsRecord| match m {
            MetricsRecord::Sft(s) => s.step <= state.sft_step,
            MetricsRecord::Rl(r) => r.step <= state.step,
        })?;
        rewrite_jsonl(&self.join(files::EVALS), |e: &EvalRecord| {
            e.step <= state.step
        })?;
        rewrite_jsonl(&self.join(files::TRANSCRIPTS), |t: &TranscriptRecord| {
            t.step <= state.step
        })
    }
}

/// Appends one JSON line and flushes it.
fn append_jsonl(path: &Path, record: &impl Serialize) -> Result<()> {
    let mut line = serde_json::to_string(record).map_err(|e| Error::io(path, e.into()))?;
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

/// The records of a JSONL file (a missing file has none; a torn last line, as a killed run
/// leaves, is skipped).
fn read_jsonl<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    Ok(lines(path)?
        .into_iter()
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect())
}

/// The lines of a file (none when it is missing).
fn lines(path: &Path) -> Result<Vec<String>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    Ok(text.lines().map(str::to_string).collect())
}

/// Keeps the lines of a JSONL file whose record satisfies `keep`, byte for byte (a torn or
/// unreadable line is dropped), rewriting it atomically.
fn rewrite_jsonl<T: DeserializeOwned>(path: &Path, keep: impl Fn(&T) -> bool) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let kept: String = lines(path)?
        .into_iter()
        .filter(|l| serde_json::from_str::<T>(l).is_ok_and(|r| keep(&r)))
        .map(|l| l + "\n")
        .collect();
    redraft_model::write_atomic(path, kept.as_bytes())?;
    Ok(())
}
