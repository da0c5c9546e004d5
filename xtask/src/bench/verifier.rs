//! Verifier throughput on the Math-Verify conformance set, against Math-Verify (Python) in the
//! same run when `python3` can import it.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use redraft_verifier::bench::{conformance_throughput, load_conformance};
use serde_json::Value;

pub(crate) fn run(root: &Path, python: &str, min_seconds: f64) -> Result<()> {
    let cases_path =
        root.join("crates/redraft-verifier/tests/data/conformance/math_answer_equivalence.jsonl");
    let cases = load_conformance(&cases_path)
        .with_context(|| format!("reading {}", cases_path.display()))?;
    let script = root.join("crates/redraft-verifier/bench/math_verify_bench.py");
    // Python first, so the two never compete for the cores.
    let python_stats: Option<Value> = Command::new(python)
        .arg(&script)
        .arg(&cases_path)
        .args(["--min-seconds", &min_seconds.to_string()])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| serde_json::from_slice(&o.stdout).ok());
    let ours = conformance_throughput(&cases, Duration::from_secs_f64(min_seconds));
    println!(
        "conformance set: {} cases ({})",
        cases.len(),
        cases_path.display()
    );
    println!();
    println!("| verifier | verdicts/s | agreement with the labels | passes |");
    println!("|---|---:|---:|---:|");
    println!(
        "| redraft-verifier | {:.0} | {:.1}% | {} |",
        ours.verdicts_per_second,
        100.0 * ours.agreement,
        ours.passes
    );
    match &python_stats {
        Some(p) => {
            let vps = p["verdicts_per_second"].as_f64().unwrap_or(f64::NAN);
            println!(
                "| Math-Verify (Python) | {:.0} | {:.1}% | {} |",
                vps,
                100.0 * p["agreement"].as_f64().unwrap_or(f64::NAN),
                p["passes"]
            );
            println!(
                "\nspeed-up vs Math-Verify: {:.0}x",
                ours.verdicts_per_second / vps
            );
        }
        None => println!(
            "\nMath-Verify not measured: `{python}` cannot run {} (pip install math-verify)",
            script.display()
        ),
    }
    Ok(())
}
