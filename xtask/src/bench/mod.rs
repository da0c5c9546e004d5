//! `cargo xtask bench`: measured figures, printed as a table and optionally saved as JSON.

mod memory;
mod model;
mod rollout;
mod torch;
mod verifier;

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::workspace_root;

/// Which benchmark to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Suite {
    /// Train step and KV-cache sampling on the reference Llama models.
    Model,
    /// Verdicts per second on the Math-Verify conformance set.
    Verifier,
    /// Group sampling (G = 8) against transformers' `generate`; prefix forking and pivot reuse.
    Rollout,
    /// Peak resident memory and time of a GRPO step: full fine-tuning and LoRA, per base dtype.
    Memory,
}

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The suite to run.
    #[arg(value_enum, default_value = "model")]
    suite: Suite,
    /// Model sizes (tiny, big, gqa), comma-separated.
    #[arg(long, default_value = "tiny,big", value_delimiter = ',')]
    sizes: Vec<String>,
    /// Skip the PyTorch reference even when Python has torch and transformers.
    #[arg(long)]
    no_torch: bool,
    /// Python interpreter for the references (PyTorch, Math-Verify).
    #[arg(long, default_value = "python3")]
    python: String,
    /// The PyTorch script [default: scripts/torch_reference.py for `model`,
    /// scripts/bench_rollout_torch.py for `rollout`].
    #[arg(long)]
    torch_script: Option<PathBuf>,
    /// Models of the `memory` suite (smollm2, qwen0.5b), comma-separated.
    #[arg(long, default_value = "smollm2,qwen0.5b", value_delimiter = ',')]
    models: Vec<String>,
    /// Run one `memory` case (a file the suite writes) in this process.
    #[arg(long, hide = true)]
    case: Option<PathBuf>,
    /// Also write all measurements as JSON here.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// One measured workload.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Measurement {
    pub(crate) workload: String,
    pub(crate) median_s: f64,
    pub(crate) tokens_per_s: f64,
    pub(crate) gflops_per_s: f64,
    pub(crate) torch_median_s: Option<f64>,
    /// Peak resident memory while the workload ran (this process's, weights included).
    pub(crate) peak_bytes: Option<u64>,
    /// PyTorch's, for the same workload.
    pub(crate) torch_peak_bytes: Option<u64>,
}

pub(crate) fn run(args: Args) -> Result<()> {
    let root = workspace_root();
    let default_script = match args.suite {
        Suite::Rollout => "scripts/bench_rollout_torch.py",
        Suite::Model | Suite::Verifier | Suite::Memory => "scripts/torch_reference.py",
    };
    let script = root.join(
        args.torch_script
            .as_deref()
            .unwrap_or(std::path::Path::new(default_script)),
    );
    if args.suite == Suite::Memory {
        return match &args.case {
            Some(case) => memory::run_case(case),
            None => memory::run(&args.models, args.out.as_deref()),
        };
    }
    if args.suite == Suite::Verifier {
        return verifier::run(&root, &args.python, 3.0);
    }
    if args.suite == Suite::Rollout {
        return rollout::run(
            &args.sizes,
            args.no_torch,
            &args.python,
            &script,
            args.out.as_deref(),
        );
    }
    // PyTorch first, so the two never compete for the cores.
    let reference = if args.no_torch {
        None
    } else {
        torch::run(&args.python, &script, &args.sizes)?
    };
    let peak = model::matmul_peak_gflops()?;
    let mut rows = Vec::new();
    for size in &args.sizes {
        let workload = model::Workload::named(size)
            .with_context(|| format!("unknown size `{size}` ({})", model::SIZES.join(", ")))?;
        eprintln!("[{size}] train step ... ({})", load());
        let (mut train, peak) = with_peak(|| model::bench_train(&workload))?;
        train.peak_bytes = peak;
        eprintln!("[{size}] sampling ... ({})", load());
        let (mut sample, peak) = with_peak(|| model::bench_generate(&workload))?;
        sample.peak_bytes = peak;
        if let Some(reference) = &reference {
            (train.torch_median_s, train.torch_peak_bytes) = reference.train(size);
            (sample.torch_median_s, sample.torch_peak_bytes) = reference.generate(size);
        }
        rows.push(train);
        rows.push(sample);
    }
    print_table(&rows, peak, reference.as_ref());
    if let Some(out) = &args.out {
        let json = serde_json::json!({
            "machine": machine(),
            "matmul_peak_gflops": peak,
            "torch": reference.as_ref().map(|r| &r.env),
            "results": rows,
        });
        std::fs::write(out, serde_json::to_string_pretty(&json)?)
            .with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    format!("{cpu}, {cores} cores, {}", load())
}

/// The machine's load averages now (1, 5 and 15 minutes, from /proc/loadavg): a benchmark on
/// its own keeps about as many cores busy as it uses, so more than that means other jobs ran
/// beside it.
/// The peak resident set of this process (`VmHWM`), in bytes.
pub(crate) fn peak_resident() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/self/status")?;
    Ok(kb * 1024)
}

/// Runs `work` and returns its result with this process's peak resident memory meanwhile:
/// the high-water mark is reset to the current resident set first (Linux's
/// `/proc/self/clear_refs`), so each workload's peak is its own (`None` where that fails).
pub(crate) fn with_peak<T>(work: impl FnOnce() -> Result<T>) -> Result<(T, Option<u64>)> {
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let out = work()?;
    Ok((out, reset.then(|| peak_resident().ok()).flatten()))
}

/// Bytes as gigabytes with two decimals, or `-`.
pub(crate) fn gb(bytes: Option<u64>) -> String {
    bytes.map_or_else(|| "-".into(), |b| format!("{:.2}", b as f64 / 1e9))
}

pub(crate) fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .map(|l| format!("load average {l} (1/5/15 min)"))
        .unwrap_or_else(|| "load average unknown".into())
}

fn print_table(rows: &[Measurement], peak: f64, reference: Option<&torch::Reference>) {
    println!("machine: {}", machine());
    println!("matmul peak (1024^3 f32 on burn flex): {peak:.1} GFLOP/s");
    match reference {
        Some(r) => println!("PyTorch reference: {}", r.env),
        None => println!(
            "PyTorch reference: not run (no Python with torch and transformers, or --no-torch)"
        ),
    }
    println!();
    println!(
        "| workload | median s | tokens/s | GFLOP/s | % of peak | peak GB | PyTorch median s | PyTorch peak GB | speed-up vs PyTorch |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let (torch, ratio) = match r.torch_median_s {
            Some(t) => (format!("{t:.4}"), format!("{:.2}x", t / r.median_s)),
            None => ("-".into(), "-".into()),
        };
        println!(
            "| {} | {:.4} | {:.0} | {:.1} | {:.0}% | {} | {} | {} | {} |",
            r.workload,
            r.median_s,
            r.tokens_per_s,
            r.gflops_per_s,
            100.0 * r.gflops_per_s / peak,
            gb(r.peak_bytes),
            torch,
            gb(r.torch_peak_bytes),
            ratio
        );
    }
}
