//! Checkpoints: everything a run needs to continue exactly where it stopped.
//!
//! ```text
//! RUN/checkpoints/step-00000020/
//!     model/            config.json, model.safetensors (f32), tokenizer files: an HF model folder
//!     adapter/          instead of model/ in a LoRA run: adapter_config.json,
//!                       adapter_model.safetensors (a PEFT adapter of the unchanged base), tokenizer files
//!     optimizer.bpk     AdamW moments and step counts (burnpack)
//!     param_ids.json    the parameter ids the optimiser state is keyed by, in visiting order
//!     state.json        step, data cursors, counters ([`TrainState`])
//!     config.toml       the run configuration
//! RUN/checkpoints/latest   the name of the newest complete checkpoint
//! ```
//!
//! A checkpoint is written into a hidden temporary folder (`.step-NNNNNNNN.tmp-PID`), flushed to
//! disk and renamed into place, and `latest` is replaced atomically afterwards, so a crash at
//! any moment leaves the previous checkpoint as the latest one. The temporaries a killed
//! process left are removed before the next checkpoint is written. Random state needs no file: every generator derives from the run seed and
//! the step.

use std::path::{Path, PathBuf};

use redraft_model::{CausalLm, SaveDType, publish_dir, remove_stale_temps, write_atomic};
use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;
use crate::error::{Error, Result};
use crate::learner::{Learner, adamw, param_ids, with_param_ids};

/// Tokenizer files copied from the source model folder into every checkpoint.
pub const TOKENIZER_FILES: [&str; 6] = [
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "special_tokens_map.json",
    "byte_tokenizer.json",
    "generation_config.json",
];

/// The loop's position and counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Completed RL steps.
    pub step: u64,
    /// Completed SFT steps.
    pub sft_step: u64,
    /// Next training problem index.
    pub cursor: u64,
    /// Next SFT problem index.
    pub sft_cursor: u64,
    /// Policy tokens sampled by RL rollouts so far.
    pub sampled_tokens: u64,
    /// Optimiser updates skipped (non-finite loss or gradient).
    pub skipped_updates: u64,
    /// Training seconds so far (excluding evaluation).
    pub train_s: f64,
}

/// The folder of the checkpoints of a run.
pub fn checkpoints_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("checkpoints")
}

/// Writes a checkpoint of `learner` at `state` and keeps the newest `keep`; first removes what
/// killed checkpoint writes left in the checkpoints folder.
///
/// # Errors
/// [`Error::Io`], [`Error::Model`] or [`Error::Checkpoint`]; the previous checkpoint stays
/// the latest one.
pub fn save(
    run_dir: &Path,
    learner: &Learner,
    tokenizer_dir: &Path,
    config: &TrainConfig,
    state: &TrainState,
    keep: usize,
) -> Result<PathBuf> {
    let root = checkpoints_dir(run_dir);
    std::fs::create_dir_all(&root).map_err(|e| Error::io(&root, e))?;
    remove_stale_temps(&root)?;
    let name = format!("step-{:08}", state.step);
    let dir = root.join(&name);
    publish_dir(&dir, |tmp| -> Result<()> {
        let model_dir = tmp.join(policy_dir(learner.model()));
        save_weights(learner.model(), &model_dir)?;
        copy_tokenizer(tokenizer_dir, &model_dir)?;
        learner
            .optimizer()
            .save(tmp.join("optimizer.bpk"))
            .map_err(|e| checkpoint_error(tmp, format!("saving the optimizer: {e:?}")))?;
        write_json(&tmp.join("param_ids.json"), &param_ids(learner.model()))?;
        write_json(&tmp.join("state.json"), state)?;
        let toml = config.to_toml()?;
        write_atomic(&tmp.join("config.toml"), toml.as_bytes())?;
        Ok(())
    })?;
    write_atomic(&root.join("latest"), name.as_bytes())?;
    prune(&root, keep, &name)?;
    Ok(dir)
}

/// The newest complete checkpoint of a run, if any.
pub fn latest(run_dir: &Path) -> Result<Option<PathBuf>> {
    let root = checkpoints_dir(run_dir);
    let pointer = root.join("latest");
    if !pointer.exists() {
        return Ok(None);
    }
    let name = std::fs::read_to_string(&pointer).map_err(|e| Error::io(&pointer, e))?;
    let dir = root.join(name.trim());
    if !dir.join("state.json").is_file() {
        return Err(checkpoint_error(
            &dir,
            "`latest` names a missing checkpoint",
        ));
    }
    Ok(Some(dir))
}

/// A loaded checkpoint.
#[derive(Debug)]
pub struct Loaded {
    /// The run configuration saved with it.
    pub config: TrainConfig,
    /// The loop state.
    pub state: TrainState,
}

/// Reads the configuration and state of checkpoint `dir`.
///
/// # Errors
/// [`Error::Checkpoint`] for a missing or malformed part.
pub fn read(dir: &Path) -> Result<Loaded> {
    let text = std::fs::read_to_string(dir.join("config.toml"))
        .map_err(|e| Error::io(dir.join("config.toml"), e))?;
    let config = TrainConfig::parse(&text, &[])?;
    let state = read_json(&dir.join("state.json"))?;
    Ok(Loaded { config, state })
}

/// Restores the model and optimiser of checkpoint `dir` into `learner`.
///
/// # Errors
/// [`Error::Model`] or [`Error::Checkpoint`].
pub fn restore(dir: &Path, learner: &mut Learner, config: &TrainConfig) -> Result<()> {
    let device = config.device_spec()?.train_device()?;
    let model = match learner.model().lora() {
        // The base never changes: only the adapters are read back.
        Some(_) => learner
            .model()
            .clone()
            .without_lora()
            .with_adapter(&dir.join(ADAPTER_DIR), &device)?,
        None => CausalLm::from_pretrained(&dir.join(MODEL_DIR), &device)?,
    };
    let ids: Vec<u64> = read_json(&dir.join("param_ids.json"))?;
    let model = with_param_ids(model, &ids).map_err(|e| checkpoint_error(dir, e.to_string()))?;
    let optim = adamw(&config.optimizer)
        .load(dir.join("optimizer.bpk"))
        .map_err(|e| checkpoint_error(dir, format!("loading the optimizer: {e:?}")))?;
    learner.set_model(model);
    learner.set_optimizer(optim);
    Ok(())
}

/// A checkpoint's folder of the full policy.
const MODEL_DIR: &str = "model";
/// A checkpoint's folder of a LoRA policy's adapter.
const ADAPTER_DIR: &str = "adapter";

/// The folder of a checkpoint that holds `model`'s weights: `adapter/` with LoRA adapters,
/// `model/` otherwise.
fn policy_dir(model: &CausalLm) -> &'static str {
    if model.lora().is_some() {
        ADAPTER_DIR
    } else {
        MODEL_DIR
    }
}

/// Writes what a run keeps of `model` into folder `dir`: with LoRA adapters, the adapter as a
/// PEFT folder (the base is unchanged); otherwise the whole model as a Hugging Face folder.
pub(crate) fn save_weights(model: &CausalLm, dir: &Path) -> Result<()> {
    if model.lora().is_some() {
        model.save_adapter(dir)?;
    } else {
        model.save_pretrained(dir, SaveDType::F32)?;
    }
    Ok(())
}

/// Copies the tokenizer files present in `from` into `to`.
pub fn copy_tokenizer(from: &Path, to: &Path) -> Result<()> {
    for name in TOKENIZER_FILES {
        let src = from.join(name);
        if src.is_file() {
            let bytes = std::fs::read(&src).map_err(|e| Error::io(&src, e))?;
            write_atomic(&to.join(name), &bytes)?;
        }
    }
    Ok(())
}

fn prune(root: &Path, keep: usize, newest: &str) -> Result<()> {
    let mut names: Vec<String> = std::fs::read_dir(root)
        .map_err(|e| Error::io(root, e))?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with("step-"))
        .collect();
    names.sort();
    let excess = names.len().saturating_sub(keep.max(1));
    for name in names.into_iter().take(excess).filter(|n| n != newest) {
        let dir = root.join(&name);
        std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    }
    Ok(())
}

fn checkpoint_error(path: &Path, message: impl Into<String>) -> Error {
    Error::Checkpoint {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Writes `value` as pretty JSON, atomically.
pub(crate) fn write_json<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<()> {
    let text =
        serde_json::to_string_pretty(value).map_err(|e| checkpoint_error(path, e.to_string()))?;
    write_atomic(path, text.as_bytes())?;
    Ok(())
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| checkpoint_error(path, e.to_string()))
}
