//! Runs the PyTorch reference script, when Python has torch and transformers.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// PyTorch's medians (and peak resident memory, when the script reports it) per size, from the
/// same machine.
pub(crate) struct Reference {
    pub(crate) env: String,
    train: BTreeMap<String, (f64, Option<u64>)>,
    generate: BTreeMap<String, (f64, Option<u64>)>,
}

impl Reference {
    /// The train step's median and peak of size `size`.
    pub(crate) fn train(&self, size: &str) -> (Option<f64>, Option<u64>) {
        self.train
            .get(size)
            .map_or((None, None), |&(t, p)| (Some(t), p))
    }

    /// The sampling workload's median and peak of size `size`.
    pub(crate) fn generate(&self, size: &str) -> (Option<f64>, Option<u64>) {
        self.generate
            .get(size)
            .map_or((None, None), |&(t, p)| (Some(t), p))
    }
}

/// Whether `python` can run the PyTorch-side `script` (torch and transformers importable, the
/// script present); says on stderr why not.
pub(crate) fn can_run(python: &str, script: &Path) -> bool {
    let probe = Command::new(python)
        .args(["-c", "import torch, transformers"])
        .output();
    if !matches!(probe, Ok(ref o) if o.status.success()) {
        eprintln!(
            "PyTorch side skipped: `{python}` cannot import torch and transformers \
             (choose another interpreter with --python)"
        );
        return false;
    }
    if !script.exists() {
        eprintln!("PyTorch side skipped: {} not found", script.display());
        return false;
    }
    true
}

pub(crate) fn run(python: &str, script: &Path, sizes: &[String]) -> Result<Option<Reference>> {
    if !can_run(python, script) {
        return Ok(None);
    }
    eprintln!("running the PyTorch reference ({}) ...", script.display());
    let out = Command::new(python)
        .arg(script)
        .args(["--sizes", &sizes.join(","), "--quiet-mode", "0"])
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!(
            "the PyTorch reference failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let json: Value =
        serde_json::from_slice(&out.stdout).context("parsing the PyTorch reference's JSON")?;
    let env = &json["env"];
    let mut reference = Reference {
        env: format!(
            "torch {} / transformers {}, {} threads, {} attention",
            env["torch"].as_str().unwrap_or("?"),
            env["transformers"].as_str().unwrap_or("?"),
            env["num_threads"],
            env["attn_implementation"].as_str().unwrap_or("?")
        ),
        train: BTreeMap::new(),
        generate: BTreeMap::new(),
    };
    for size in sizes {
        let result = &json["results"][size];
        if let Some(t) = result["train"]["primary_s"].as_f64() {
            let peak = result["train"]["peak_rss_bytes"].as_u64();
            reference.train.insert(size.clone(), (t, peak));
        }
        if let Some(t) = result["gen"]["primary_s"].as_f64() {
            let peak = result["gen"]["peak_rss_bytes"].as_u64();
            reference.generate.insert(size.clone(), (t, peak));
        }
    }
    Ok(Some(reference))
}
