//! `cargo xtask bench memory`: peak resident memory and time of one GRPO step (4 prompts × 4
//! samples × at most 48 new tokens, KL term on) on SmolLM2-135M-Instruct (when fetched) and on
//! a random model with Qwen2.5-0.5B's shapes (vocabulary 151 936): full fine-tuning and LoRA,
//! per base dtype, with and without gradient checkpointing.
//!
//! Each case runs in a child process of its own (this program, `--case`), so each peak is that
//! run's alone: the kernel's high-water mark of its resident set (`VmHWM`), read after the step.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use redraft_model::{CausalLm, DeviceSpec, ModelConfig, SaveDType};
use redraft_tokenizer::ByteTokenizer;
use redraft_trainer::{Silent, TrainConfig, Trainer};
use serde::{Deserialize, Serialize};

/// Qwen2.5-0.5B's shapes (its config.json, less the weights).
const QWEN_SHAPES: &str = r#"{
  "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
  "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
  "num_attention_heads": 14, "num_key_value_heads": 2, "vocab_size": 151936,
  "max_position_embeddings": 32768, "rope_theta": 1000000.0, "rms_norm_eps": 1e-06,
  "tie_word_embeddings": true, "hidden_act": "silu", "initializer_range": 0.02
}"#;

/// One measured configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Case {
    model: String,
    path: PathBuf,
    /// LoRA rank 8 on all seven projections, or full fine-tuning.
    lora: bool,
    dtype: String,
    checkpointing: bool,
}

/// What a case measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Outcome {
    case: Case,
    peak_bytes: u64,
    rollout_s: f64,
    update_s: f64,
    step_s: f64,
    /// CPU seconds (user + system, every thread) the process spent in the step: unlike the wall
    /// times, not inflated by other jobs sharing the machine or by pausing the case.
    #[serde(default)]
    step_cpu_s: f64,
}

impl Case {
    fn label(&self) -> String {
        let how = if self.lora {
            format!("LoRA r8, base {}", self.dtype)
        } else {
            "full fine-tuning, f32".into()
        };
        let ckpt = if self.checkpointing {
            ", checkpointing"
        } else {
            ""
        };
        format!("{}: {how}{ckpt}", self.model)
    }

    fn config(&self) -> String {
        let lora = if self.lora {
            "[lora]\nrank = 8\nalpha = 16\ntarget_modules = [\"q_proj\", \"k_proj\", \"v_proj\", \"o_proj\", \"gate_proj\", \"up_proj\", \"down_proj\"]\n"
        } else {
            ""
        };
        format!(
            "device = \"cpu\"\nsteps = 1\nseed = 0\n\
             model = {{ path = {path:?}, dtype = {dtype:?} }}\n\
             task = {{ family = \"arithmetic\", difficulty = {{ digits = 1, prompt = \"chat\" }} }}\n\
             rollout = {{ prompts_per_step = 4, group_size = 4, max_new_tokens = 48, temperature = 1.0 }}\n\
             optimizer = {{ lr = 1e-5, gradient_checkpointing = {ckpt} }}\n\
             eval = {{ at_start = false, problems = 1, samples = 1, with_feedback = false }}\n\
             checkpoint = {{ every = 0, keep = 1 }}\n{lora}",
            path = self.path.display().to_string(),
            dtype = self.dtype,
            ckpt = self.checkpointing,
        )
    }
}

/// Runs every case of `models` (`smollm2`, `qwen0.5b`) in child processes and prints the table.
pub(crate) fn run(models: &[String], out: Option<&Path>) -> Result<()> {
    let scratch = tempfile::tempdir()?;
    let mut cases = Vec::new();
    for model in models {
        match model.as_str() {
            "smollm2" => match crate::fetch::model_path("smollm2") {
                Ok(path) if path.exists() => cases.extend(variants("SmolLM2-135M", &path, true)),
                _ => eprintln!(
                    "SmolLM2 skipped: models/SmolLM2-135M-Instruct.Q4_1.gguf is absent \
                     (cargo xtask fetch-model smollm2)"
                ),
            },
            "qwen0.5b" => {
                let dir = scratch.path().join("qwen0.5b-shapes");
                eprintln!("writing a random model with Qwen2.5-0.5B's shapes ...");
                random_model(QWEN_SHAPES, &dir)?;
                cases.extend(variants("Qwen2.5-0.5B shapes", &dir, false));
            }
            other => bail!("unknown model `{other}` (smollm2, qwen0.5b)"),
        }
    }
    let exe = std::env::current_exe()?;
    let mut outcomes = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        eprintln!(
            "[{}/{}] {} ... ({})",
            i + 1,
            cases.len(),
            case.label(),
            super::load()
        );
        let spec = scratch.path().join(format!("case-{i}.json"));
        std::fs::write(&spec, serde_json::to_string(case)?)?;
        let output = Command::new(&exe)
            .args(["bench", "memory", "--case"])
            .arg(&spec)
            .output()
            .context("starting a case")?;
        if !output.status.success() {
            bail!(
                "case `{}` failed:\n{}",
                case.label(),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let line = String::from_utf8_lossy(&output.stdout);
        let outcome: Outcome = serde_json::from_str(line.trim())
            .with_context(|| format!("reading the outcome of `{}`: {line}", case.label()))?;
        eprintln!(
            "    peak {:.2} GB, step {:.1} s ({:.1} CPU s)",
            outcome.peak_bytes as f64 / 1e9,
            outcome.step_s,
            outcome.step_cpu_s
        );
        outcomes.push(outcome);
    }
    println!("machine: {}", super::machine());
    println!(
        "glibc MALLOC_MMAP_THRESHOLD_: {}",
        std::env::var("MALLOC_MMAP_THRESHOLD_")
            .unwrap_or_else(|_| "unset (glibc's default)".into())
    );
    println!("one GRPO step: 4 prompts x 4 samples x at most 48 new tokens, KL on (beta 0.001)");
    println!(
        "{:<58} {:>10} {:>9} {:>9} {:>9} {:>9}",
        "run", "peak GB", "rollout s", "update s", "step s", "step CPU s"
    );
    for o in &outcomes {
        println!(
            "{:<58} {:>10.2} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
            o.case.label(),
            o.peak_bytes as f64 / 1e9,
            o.rollout_s,
            o.update_s,
            o.step_s,
            o.step_cpu_s
        );
    }
    if let Some(out) = out {
        let json = serde_json::json!({ "machine": super::machine(), "results": outcomes });
        std::fs::write(out, serde_json::to_string_pretty(&json)?)
            .with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}

/// The cases measured on a model: full fine-tuning and LoRA, each with and without gradient
/// checkpointing, then LoRA over a half-precision base (`all`); only the checkpointed ones
/// otherwise (a larger model, where each case takes minutes on a small CPU).
fn variants(model: &str, path: &Path, all: bool) -> Vec<Case> {
    let case = |lora: bool, dtype: &str, checkpointing: bool| Case {
        model: model.into(),
        path: path.to_path_buf(),
        lora,
        dtype: dtype.into(),
        checkpointing,
    };
    let mut cases = Vec::new();
    for lora in [false, true] {
        if all {
            cases.push(case(lora, "f32", false));
        }
        cases.push(case(lora, "f32", true));
    }
    cases.push(case(true, "bf16", true));
    if all {
        cases.push(case(true, "f16", true));
    }
    cases
}

/// A randomly initialised model folder (byte tokenizer) with the shapes of `config_json`.
fn random_model(config_json: &str, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let config = ModelConfig::from_json_str(config_json)?;
    ByteTokenizer::new().save(dir)?;
    CausalLm::init(&config, 0, &DeviceSpec::Cpu.device()?)?.save_pretrained(dir, SaveDType::F32)?;
    Ok(())
}

/// Runs the case in `spec` in this process and prints its outcome as one JSON line.
pub(crate) fn run_case(spec: &Path) -> Result<()> {
    let case: Case = serde_json::from_str(&std::fs::read_to_string(spec)?)?;
    let config = TrainConfig::parse(&case.config(), &[])?;
    let dir = spec.with_extension("run");
    let mut trainer = Trainer::new(config, &dir)?;
    let cpu_before = cpu_seconds()?;
    trainer.run(&mut Silent)?;
    let step_cpu_s = cpu_seconds()? - cpu_before;
    let peak_bytes = super::peak_resident()?;
    let metrics = std::fs::read_to_string(dir.join("metrics.jsonl"))?;
    let step: serde_json::Value = serde_json::from_str(
        metrics
            .lines()
            .find(|l| l.contains("\"rollout_s\""))
            .context("no step record in metrics.jsonl")?,
    )?;
    let get = |k: &str| step[k].as_f64().unwrap_or(f64::NAN);
    let outcome = Outcome {
        peak_bytes,
        rollout_s: get("rollout_s"),
        update_s: get("update_s"),
        step_s: get("step_s"),
        step_cpu_s,
        case,
    };
    println!("{}", serde_json::to_string(&outcome)?);
    Ok(())
}

/// CPU time this process has used (user + system, all threads), from `/proc/self/stat` in
/// USER_HZ ticks (100 per second on Linux).
fn cpu_seconds() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the command name (which may hold spaces) start at state (field 3);
    // utime and stime are fields 14 and 15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed /proc/self/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Result<f64> {
        fields
            .get(i - 3)
            .and_then(|f| f.parse::<f64>().ok())
            .context("no utime/stime in /proc/self/stat")
    };
    Ok((ticks(14)? + ticks(15)?) / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every case the suite runs is a valid run configuration with the settings it names.
    #[test]
    fn every_case_is_a_valid_run() {
        for case in variants("m", Path::new("models/m"), true) {
            let config = TrainConfig::parse(&case.config(), &[])
                .unwrap_or_else(|e| panic!("{}: {e}", case.label()));
            assert_eq!(config.lora.is_some(), case.lora, "{}", case.label());
            assert_eq!(
                config.optimizer.gradient_checkpointing,
                case.checkpointing,
                "{}",
                case.label()
            );
            assert_eq!(config.model.dtype.to_string(), case.dtype);
            assert_eq!(
                config.rollout.prompts_per_step * config.rollout.group_size,
                16
            );
        }
        assert_eq!(variants("m", Path::new("m"), false).len(), 3);
    }
}
