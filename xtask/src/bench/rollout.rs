//! `cargo xtask bench rollout`: group sampling (G = 8 samples per prompt) against transformers'
//! `generate(num_return_sequences=8)` in the same run, and what the rollout engine's two KV-cache
//! reuses save:
//!
//! - prefix forking: `generate_rows` prefills a group's identical prompts once and forks the
//!   cache into the G samples. The baseline is the same call with forking defeated: copy `g` of
//!   a prompt gets its first token shifted by `g` (mod the vocabulary), so every row is distinct
//!   and all B × G rows are prefilled, the same work as the engine would do without forking
//!   (same lengths, same batch, same decode);
//! - pivot-prefix reuse: a retry from turn k continuing from a truncated copy of the base
//!   trajectory's cache ([`KvCache::truncate`]) instead of prefilling the replayed prefix again,
//!   both ways one batch-1 continuation. The clone shares the base's storage until its first
//!   write copies it; truncation keeps the storage, and later writes overwrite it in place. This measures the primitive only: the R^3L strategy no
//!   longer reuses caches (it batches all retries through `Policy::generate` and prefills the
//!   replayed prefix again; docs/algorithms/r3l.md).
//!
//! - the sampling step: one step of `B × G` rows over the model's vocabulary, drawn on the
//!   device by `DeviceSampler` (only ids and log-probs read back) against what the engine did
//!   before it: the logits copied to the host, an f64 softmax per row and a linear scan.
//!
//! Settings follow scripts/torch_reference.py: prompts of P uniform random tokens, no
//! padding, temperature 1, no top-k/top-p, no early stop; medians over timed iterations after a
//! warm-up. The PyTorch side (scripts/bench_rollout_torch.py) gets the model configs and
//! workloads from here as JSON, so the two sides cannot drift apart.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use redraft_model::burn::tensor::{Device, Int, Tensor, TensorData};
use redraft_model::{CausalLm, DeviceSpec, KvCache, LogitsFor, ModelConfig};
use redraft_rollout_engine::{DeviceSampler, SamplingParams, generate, row_rng, sample_token};
use serde_json::{Value, json};

use super::machine;

/// Seed of the model weights (that of the model bench).
const SEED: u64 = 1234;
/// Samples per prompt.
const GROUP: usize = 8;
/// PyTorch's thread counts: the reference setting (2), then 1, which is what stays fast when
/// another process holds one of the two cores.
const TORCH_THREADS: [usize; 2] = [2, 1];
/// Untimed calls before the timed ones.
const WARMUP: usize = 1;
/// Fewest timed calls; the median is reported.
const ITERS: usize = 5;
/// Short calls are repeated until they have taken this long in all (at most `MAX_ITERS` calls),
/// so that millisecond medians are not at the mercy of five samples.
const MIN_TIMED_S: f64 = 1.0;
/// Most timed calls.
const MAX_ITERS: usize = 1000;

/// The rollout workloads of one model size.
#[derive(Debug, Clone, Copy)]
struct Settings {
    /// Distinct prompts per call (each sampled `GROUP` times).
    prompts: usize,
    /// Prompt length.
    prompt_len: usize,
    /// New tokens per sample.
    new_tokens: usize,
    /// Pivot retry: tokens of the base trajectory kept (the replayed attempts).
    pivot_prefix: usize,
    /// Pivot retry: base tokens after the pivot, which the retry discards.
    pivot_discarded: usize,
    /// Pivot retry: new tokens fed before sampling (the guidance message).
    pivot_feed: usize,
    /// Pivot retry: tokens sampled.
    pivot_new: usize,
}

impl Settings {
    /// The settings of size `tiny` or `big`.
    fn named(name: &str) -> Option<Self> {
        match name {
            "tiny" => Some(Self {
                prompts: 4,
                prompt_len: 32,
                new_tokens: 64,
                pivot_prefix: 160,
                pivot_discarded: 32,
                pivot_feed: 16,
                pivot_new: 64,
            }),
            "big" => Some(Self {
                prompts: 2,
                prompt_len: 64,
                new_tokens: 64,
                pivot_prefix: 160,
                pivot_discarded: 32,
                pivot_feed: 16,
                pivot_new: 64,
            }),
            // Full models' shapes: one prompt's group of eight, as an RL step samples it.
            "smollm2" | "qwen0.5b" => Some(Self {
                prompts: 1,
                prompt_len: 32,
                new_tokens: 32,
                pivot_prefix: 64,
                pivot_discarded: 16,
                pivot_feed: 8,
                pivot_new: 16,
            }),
            _ => None,
        }
    }
}

/// The random-init Llama of the model bench's workload `name`.
fn model_config(name: &str) -> Result<ModelConfig> {
    match super::model::Workload::named(name) {
        Some(w) => w.config(),
        None => bail!("unknown size `{name}` (tiny, big, smollm2, qwen0.5b)"),
    }
}

/// The timed calls of one workload.
#[derive(Debug, Clone, serde::Serialize)]
struct Series {
    /// Median wall time of one call.
    median_s: f64,
    /// All timed wall times.
    all_s: Vec<f64>,
    /// CPU cores other processes kept busy, on average, from the first timed call to the last.
    other_cores: Option<f64>,
    /// Peak resident memory of the process over the calls (the model's weights included).
    peak_bytes: Option<u64>,
}

/// One measured workload.
#[derive(Debug, Clone, serde::Serialize)]
struct Row {
    /// What was measured.
    workload: String,
    /// Key of the PyTorch figure for the same workload, if there is one.
    #[serde(skip)]
    torch_key: Option<String>,
    /// redraft's timings.
    redraft: Series,
    /// Tokens sampled per call.
    new_tokens: usize,
    /// `new_tokens / median_s`.
    tokens_per_s: f64,
    /// PyTorch's timings of the same workload by thread count.
    torch: BTreeMap<usize, Series>,
}

impl Row {
    /// A row from the timed calls of a workload that samples `new_tokens` tokens per call.
    fn new(
        workload: String,
        torch_key: Option<String>,
        redraft: Series,
        new_tokens: usize,
    ) -> Self {
        Self {
            workload,
            torch_key,
            tokens_per_s: new_tokens as f64 / redraft.median_s,
            redraft,
            new_tokens,
            torch: BTreeMap::new(),
        }
    }

    /// PyTorch's faster median (over the thread counts run) and its thread count.
    fn torch_best(&self) -> Option<(usize, f64)> {
        self.torch
            .iter()
            .map(|(t, s)| (*t, s.median_s))
            .min_by(|a, b| a.1.total_cmp(&b.1))
    }
}

/// A speed-up of one way over its baseline, as the ratio of the medians.
#[derive(Debug, Clone, serde::Serialize)]
struct Speedup {
    /// What is compared.
    what: String,
    /// Baseline median over the optimised median.
    speedup: f64,
}

/// The median of some timings.
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// CPU seconds used by all processes and by this one, from /proc (Linux; `None` elsewhere).
fn cpu_seconds() -> Option<(f64, f64)> {
    // Both files count in USER_HZ, which is 100 on every Linux architecture redraft targets.
    const TICKS: f64 = 100.0;
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let v: Vec<f64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal
    let busy = [0, 1, 2, 5, 6, 7]
        .iter()
        .map(|&i| v.get(i).copied())
        .sum::<Option<f64>>()?;
    let own = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let fields: Vec<&str> = own.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((busy / TICKS, (utime + stime) / TICKS))
}

/// Times `WARMUP` calls of `f(i)` and then at least `ITERS` (and `MIN_TIMED_S` in all, up to
/// `MAX_ITERS`); what `f` does before its returned closure runs is not timed. Notes how many
/// cores other processes kept busy over the timed calls (over the whole series, as the
/// counters tick only every 10 ms), and the process's peak memory over the calls.
fn time_calls<F, G>(f: F) -> Result<Series>
where
    F: FnMut(usize) -> Result<G>,
    G: FnOnce() -> Result<()>,
{
    let (mut series, peak) = super::with_peak(|| time_series(f))?;
    series.peak_bytes = peak;
    Ok(series)
}

/// [`time_calls`] without the peak memory.
fn time_series<F, G>(mut f: F) -> Result<Series>
where
    F: FnMut(usize) -> Result<G>,
    G: FnOnce() -> Result<()>,
{
    let mut times: Vec<f64> = Vec::with_capacity(ITERS);
    let mut series_start = None;
    for i in 0.. {
        let timed: f64 = times.iter().sum();
        if times.len() >= MAX_ITERS || (times.len() >= ITERS && timed >= MIN_TIMED_S) {
            break;
        }
        let call = f(i)?;
        if i == WARMUP {
            series_start = Some((Instant::now(), cpu_seconds()));
        }
        let start = Instant::now();
        call()?;
        if i >= WARMUP {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    let other_cores = match series_start {
        Some((start, Some((busy0, own0)))) => cpu_seconds().map(|(busy1, own1)| {
            (((busy1 - busy0) - (own1 - own0)) / start.elapsed().as_secs_f64()).max(0.0)
        }),
        _ => None,
    };
    Ok(Series {
        median_s: median(times.clone()),
        all_s: times,
        other_cores,
        peak_bytes: None,
    })
}

/// The name of a group-sampling workload, which is also the PyTorch side's key for it.
fn group_key(size: &str, s: &Settings, new_tokens: usize) -> String {
    format!(
        "{size} group sampling ({}x{GROUP}, P={}, N={new_tokens})",
        s.prompts, s.prompt_len
    )
}

/// Uniform random prompts.
fn random_prompts(rng: &mut ChaCha8Rng, count: usize, len: usize, vocab: usize) -> Vec<Vec<u32>> {
    (0..count)
        .map(|_| {
            (0..len)
                .map(|_| rng.random_range(0..vocab as u32))
                .collect()
        })
        .collect()
}

/// Each prompt `GROUP` times in a row; with `distinct`, copy `g` has its first token shifted by
/// `g` so that no two rows are equal and nothing is forked.
fn group_rows(prompts: &[Vec<u32>], vocab: usize, distinct: bool) -> Result<Vec<Vec<u32>>> {
    let rows: Vec<Vec<u32>> = prompts
        .iter()
        .flat_map(|p| {
            (0..GROUP).map(move |g| {
                let mut row = p.clone();
                if distinct {
                    row[0] = ((row[0] as usize + g) % vocab) as u32;
                }
                row
            })
        })
        .collect();
    if distinct {
        let unique: std::collections::BTreeSet<&Vec<u32>> = rows.iter().collect();
        ensure!(unique.len() == rows.len(), "two defeated rows coincide");
    }
    Ok(rows)
}

/// Group sampling through `generate` (identical prompts forked, or made distinct).
fn bench_group(
    model: &CausalLm,
    device: &Device,
    s: &Settings,
    new_tokens: usize,
    distinct: bool,
) -> Result<Series> {
    let vocab = model.config().vocab_size;
    // The same prompts for both variants.
    let mut rng = ChaCha8Rng::seed_from_u64(SEED + 3);
    time_calls(|i| {
        let prompts = random_prompts(&mut rng, s.prompts, s.prompt_len, vocab);
        let rows = group_rows(&prompts, vocab, distinct)?;
        let params = SamplingParams {
            max_new_tokens: new_tokens,
            seed: SEED + 100 + i as u64,
            ..SamplingParams::default()
        };
        Ok(move || {
            let out = generate(model, &rows, &params, 0, device)?;
            ensure!(
                out.len() == s.prompts * GROUP && out.iter().all(|c| c.tokens.len() == new_tokens),
                "a row stopped early"
            );
            Ok(())
        })
    })
}

/// One sampling step over `rows` rows of `vocab` random logits (temperature 1, no truncation):
/// on the device with [`DeviceSampler`], or as the engine did before it, on the host (the
/// logits copied out, an f64 softmax per row, a linear scan for the draw).
fn bench_sampling_step(rows: usize, vocab: usize, on_device: bool) -> Result<Series> {
    let device = DeviceSpec::Cpu.device()?;
    let params = SamplingParams::default();
    let mut rng = ChaCha8Rng::seed_from_u64(SEED + 4);
    let values: Vec<f32> = (0..rows * vocab)
        .map(|_| rng.random_range(-8.0f32..8.0))
        .collect();
    let logits = Tensor::<2>::from_data(TensorData::new(values, [rows, vocab]), &device);
    let all = vec![&params; rows];
    let sampler = DeviceSampler::new(&all, vocab, &device);
    time_calls(|call| {
        let mut rngs: Vec<ChaCha8Rng> = (0..rows).map(|i| row_rng(SEED + call as u64, i)).collect();
        let (logits, sampler) = (logits.clone(), &sampler);
        Ok(move || {
            if on_device {
                sampler.step(logits, &mut |i| rngs[i].random::<f64>())?;
                return Ok(());
            }
            let host = logits
                .into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            for (row, rng) in host.chunks(vocab).zip(&mut rngs) {
                let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let weights: Vec<f64> = row.iter().map(|&l| f64::from(l - max).exp()).collect();
                let mut u = rng.random::<f64>() * weights.iter().sum::<f64>();
                let token = weights.iter().position(|w| {
                    u -= w;
                    u < 0.0
                });
                std::hint::black_box(token);
            }
            Ok(())
        })
    })
}

/// An R^3L-style retry from a pivot: keep the base trajectory's first `pivot_prefix` tokens,
/// feed `pivot_feed` new ones and sample `new_tokens` at batch 1, either continuing from a
/// truncated copy of the base's cache (`reuse`) or prefilling prefix and feed from scratch.
fn bench_pivot(
    model: &CausalLm,
    device: &Device,
    s: &Settings,
    new_tokens: usize,
    reuse: bool,
) -> Result<Series> {
    let vocab = model.config().vocab_size;
    let mut rng = ChaCha8Rng::seed_from_u64(SEED + 4);
    let base_len = s.pivot_prefix + s.pivot_discarded;
    let base = random_prompts(&mut rng, 1, base_len, vocab).remove(0);
    // The base trajectory's cache, as its own decoding left it (built untimed).
    let mut base_cache = model.new_cache(vec![0]);
    let ids = base.iter().map(|&t| i64::from(t)).collect::<Vec<_>>();
    let _ = model.forward_cached(
        Tensor::<2, Int>::from_data(TensorData::new(ids, [1, base_len]), device),
        &mut base_cache,
        LogitsFor::Last,
    )?;
    let params = SamplingParams::default();
    time_calls(|i| {
        let guidance = random_prompts(&mut rng, 1, s.pivot_feed, vocab).remove(0);
        let (base, base_cache, params) = (&base, &base_cache, &params);
        Ok(move || {
            let (mut cache, mut feed): (KvCache, Vec<u32>) = if reuse {
                let mut cache = base_cache.clone();
                cache.truncate(s.pivot_prefix);
                (cache, guidance)
            } else {
                let mut feed = base[..s.pivot_prefix].to_vec();
                feed.extend(guidance);
                (model.new_cache(vec![0]), feed)
            };
            let mut sample_rng = row_rng(SEED + 200 + i as u64, 0);
            let mut sampled = 0;
            // As r3l.rs's decode_turn: feed what is not cached, sample, feed the token.
            while sampled < new_tokens {
                let n = feed.len();
                let ids = feed.iter().map(|&t| i64::from(t)).collect::<Vec<_>>();
                let input = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, n]), device);
                let logits = model.forward_cached(input, &mut cache, LogitsFor::Last)?;
                let host = logits
                    .into_data()
                    .convert::<f32>()
                    .try_into_vec::<f32>()
                    .map_err(|e| anyhow::anyhow!("{e:?}"))?;
                let (token, _) = sample_token(&host, params, &mut sample_rng)?;
                feed = vec![token];
                sampled += 1;
            }
            Ok(())
        })
    })
}

/// PyTorch's timings by workload key, and a line describing its environment.
struct TorchSide {
    /// Versions, threads and attention implementation.
    env: String,
    /// The script's whole JSON output.
    json: Value,
    /// Timings by workload key and thread count.
    series: BTreeMap<String, BTreeMap<usize, Series>>,
}

/// Runs scripts/bench_rollout_torch.py on `spec`, or says why not.
fn run_torch(python: &str, script: &Path, spec: &Value) -> Result<Option<TorchSide>> {
    if !super::torch::can_run(python, script) {
        return Ok(None);
    }
    eprintln!("running the PyTorch side ({}) ...", script.display());
    // Its progress (and any error) goes straight to our stderr.
    let out = Command::new(python)
        .arg(script)
        .args(["--spec", &spec.to_string()])
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!("the PyTorch side failed ({})", out.status);
    }
    let json: Value =
        serde_json::from_slice(&out.stdout).context("parsing the PyTorch side's JSON")?;
    let env = &json["env"];
    let env_line = format!(
        "torch {} / transformers {}, {} attention, threads {}",
        env["torch"].as_str().unwrap_or("?"),
        env["transformers"].as_str().unwrap_or("?"),
        env["attn_implementation"].as_str().unwrap_or("?"),
        env["num_threads"],
    );
    let mut series = BTreeMap::new();
    for (key, result) in json["results"].as_object().into_iter().flatten() {
        let mut by_threads = BTreeMap::new();
        for (threads, r) in result["threads"].as_object().into_iter().flatten() {
            let (Ok(threads), Some(median_s)) = (threads.parse(), r["median_s"].as_f64()) else {
                continue;
            };
            let all_s = r["all_s"].as_array().into_iter().flatten();
            by_threads.insert(
                threads,
                Series {
                    median_s,
                    all_s: all_s.filter_map(Value::as_f64).collect(),
                    other_cores: r["other_cores"].as_f64(),
                    peak_bytes: r["peak_rss_bytes"].as_u64(),
                },
            );
        }
        series.insert(key.clone(), by_threads);
    }
    Ok(Some(TorchSide {
        env: env_line,
        json,
        series,
    }))
}

/// Runs the suite for `sizes`; PyTorch first (unless `no_torch`), so the two never compete.
pub(crate) fn run(
    sizes: &[String],
    no_torch: bool,
    python: &str,
    script: &Path,
    out: Option<&Path>,
) -> Result<()> {
    let mut plan = Vec::new();
    for size in sizes {
        let settings = Settings::named(size)
            .with_context(|| format!("unknown size `{size}` (tiny, big, smollm2, qwen0.5b)"))?;
        plan.push((size.as_str(), settings, model_config(size)?));
    }
    let torch = if no_torch {
        None
    } else {
        let models: serde_json::Map<String, Value> = plan
            .iter()
            .map(|(size, _, config)| (size.to_string(), config.to_hf_json()))
            .collect();
        let workloads: Vec<Value> = plan
            .iter()
            .flat_map(|(size, s, _)| {
                [s.new_tokens, 1].map(|n| {
                    json!({
                        "name": group_key(size, s, n), "model": size, "prompts": s.prompts,
                        "group": GROUP, "prompt_len": s.prompt_len, "new_tokens": n,
                    })
                })
            })
            .collect();
        let spec = json!({
            "seed": SEED, "threads": TORCH_THREADS, "warmup": WARMUP, "iters": ITERS,
            "min_timed_s": MIN_TIMED_S, "max_iters": MAX_ITERS,
            "models": models, "workloads": workloads,
        });
        run_torch(python, script, &spec)?
    };

    let device = DeviceSpec::Cpu.device()?;
    let mut rows = Vec::new();
    let mut speedups = Vec::new();
    for (size, s, config) in &plan {
        let model = CausalLm::init(config, SEED, &device)?;
        let samples = s.prompts * GROUP;
        for n in [s.new_tokens, 1] {
            let key = group_key(size, s, n);
            eprintln!(
                "[{size}] group sampling, N={n}, forked ... ({})",
                super::load()
            );
            let forked = bench_group(&model, &device, s, n, false)?;
            eprintln!("[{size}] group sampling, N={n}, forking defeated ...");
            let defeated = bench_group(&model, &device, s, n, true)?;
            let forked = Row::new(
                format!("{key}: prefill once, fork"),
                Some(key.clone()),
                forked,
                samples * n,
            );
            let defeated = Row::new(
                format!("{key}: forking defeated"),
                None,
                defeated,
                samples * n,
            );
            speedups.push(Speedup {
                what: format!("{size} prefix forking, N={n}"),
                speedup: defeated.redraft.median_s / forked.redraft.median_s,
            });
            rows.push(forked);
            rows.push(defeated);
        }
        let (batch, vocab) = (s.prompts * GROUP, config.vocab_size);
        eprintln!("[{size}] sampling step, device and host ...");
        let device_step = bench_sampling_step(batch, vocab, true)?;
        let host_step = bench_sampling_step(batch, vocab, false)?;
        let what = format!("{size} sampling step ({batch} rows x {vocab} logits)");
        speedups.push(Speedup {
            what: format!("{what}: on the device vs on the host"),
            speedup: host_step.median_s / device_step.median_s,
        });
        rows.push(Row::new(
            format!("{what}: on the device"),
            None,
            device_step,
            batch,
        ));
        rows.push(Row::new(
            format!("{what}: on the host (before)"),
            None,
            host_step,
            batch,
        ));
        for n in [s.pivot_new, 1] {
            let key = format!(
                "{size} pivot retry (prefix {}, +{}, N={n})",
                s.pivot_prefix, s.pivot_feed
            );
            eprintln!(
                "[{size}] pivot retry, N={n}, reusing the cache ... ({})",
                super::load()
            );
            let reused = bench_pivot(&model, &device, s, n, true)?;
            eprintln!("[{size}] pivot retry, N={n}, re-prefilling ...");
            let prefilled = bench_pivot(&model, &device, s, n, false)?;
            let reused = Row::new(format!("{key}: truncated cache"), None, reused, n);
            let prefilled = Row::new(format!("{key}: re-prefill"), None, prefilled, n);
            speedups.push(Speedup {
                what: format!("{size} pivot-prefix reuse, N={n}"),
                speedup: prefilled.redraft.median_s / reused.redraft.median_s,
            });
            rows.push(reused);
            rows.push(prefilled);
        }
    }
    if let Some(torch) = &torch {
        for row in &mut rows {
            if let Some(key) = &row.torch_key {
                row.torch = torch.series.get(key).cloned().unwrap_or_default();
            }
        }
    }
    print_table(&rows, &speedups, torch.as_ref());
    if let Some(out) = out {
        let json = json!({
            "machine": machine(),
            "group": GROUP,
            "warmup": WARMUP,
            "iters": ITERS,
            "min_timed_s": MIN_TIMED_S,
            "torch": torch.as_ref().map(|t| &t.json),
            "results": rows,
            "speedups": speedups,
        });
        std::fs::write(out, serde_json::to_string_pretty(&json)?)
            .with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}

/// Prints the measurements as a Markdown table, then the speed-ups.
/// Seconds with four decimals, or six below 10 ms (a sampling step takes microseconds).
fn seconds(s: f64) -> String {
    if s < 0.01 {
        format!("{s:.6}")
    } else {
        format!("{s:.4}")
    }
}

fn print_table(rows: &[Row], speedups: &[Speedup], torch: Option<&TorchSide>) {
    println!("machine: {}", machine());
    match torch {
        Some(t) => println!("PyTorch side: {}", t.env),
        None => {
            println!("PyTorch side: not run (no Python with torch and transformers, or --no-torch)")
        }
    }
    println!(
        "medians of at least {ITERS} timed calls ({MIN_TIMED_S} s in all) after {WARMUP} \
         warm-up; G = {GROUP}; (x.x) = CPU cores other processes kept busy meanwhile"
    );
    println!();
    let threads = TORCH_THREADS
        .map(|t| format!(" PyTorch {t} thr. s |"))
        .concat();
    println!(
        "| workload | redraft median s | new tokens/s | peak GB |{threads} PyTorch tokens/s (faster) | \
         PyTorch peak GB | speed-up vs faster PyTorch |"
    );
    println!(
        "|---|---:|---:|---:|{}---:|---:|---:|",
        "---:|".repeat(TORCH_THREADS.len())
    );
    let cell = |s: Option<&Series>| match s {
        Some(s) => match s.other_cores {
            Some(o) => format!("{} ({o:.1})", seconds(s.median_s)),
            None => seconds(s.median_s),
        },
        None => "-".into(),
    };
    for r in rows {
        let torch: String = TORCH_THREADS
            .iter()
            .map(|t| format!(" {} |", cell(r.torch.get(t))))
            .collect();
        let (tps, torch_peak, ratio) = match r.torch_best() {
            Some((threads, t)) => (
                format!("{:.0}", r.new_tokens as f64 / t),
                super::gb(r.torch.get(&threads).and_then(|s| s.peak_bytes)),
                format!("{:.2}x", t / r.redraft.median_s),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        println!(
            "| {} | {} | {:.0} | {} |{torch} {tps} | {torch_peak} | {ratio} |",
            r.workload,
            cell(Some(&r.redraft)),
            r.tokens_per_s,
            super::gb(r.redraft.peak_bytes),
        );
    }
    println!();
    for s in speedups {
        println!("{}: {:.2}x", s.what, s.speedup);
    }
}
