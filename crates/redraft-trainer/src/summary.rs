//! The end-of-run report of one training run: report.md with the configuration, the
//! evaluation table, SVG plots of pass@1 and reward, and a few transcripts.

use std::path::Path;

use serde_json::{Map, Value};

use crate::config::TrainConfig;
use crate::error::{Error, Result};
use crate::report::{
    LinePlot, Report, Series, Table, Transcript, TranscriptTurn, format_mean_stderr, format_value,
};
use crate::trainer::{EvalRecord, files, read_jsonl};

/// Transcripts shown in a report.
const REPORT_TRANSCRIPTS: usize = 4;

/// The evaluation table: one row per evaluation.
pub fn eval_table(evals: &[EvalRecord]) -> Table {
    let k = evals.first().map_or(1, |e| e.report.samples);
    let mut table = Table {
        header: vec![
            "step".into(),
            "sampled tokens".into(),
            "pass@1".into(),
            format!("pass@{k}"),
            "with feedback".into(),
            "self-feedback".into(),
            "format ok".into(),
        ],
        rows: Vec::new(),
    };
    for e in evals {
        let r = &e.report;
        let opt = |x: Option<crate::eval::Rate>| {
            x.map_or("–".to_string(), |r| format_mean_stderr(r.mean, r.stderr))
        };
        table.rows.push(vec![
            e.step.to_string(),
            e.sampled_tokens.to_string(),
            format_mean_stderr(r.pass_at_1.mean, r.pass_at_1.stderr),
            format_mean_stderr(r.pass_at_k.mean, r.pass_at_k.stderr),
            opt(r.with_feedback),
            opt(r.self_feedback),
            format_value(r.format_ok),
        ]);
    }
    table
}

/// `(x, y)` points of an RL metric against the step.
pub fn metric_series(metrics: &[Map<String, Value>], key: &str) -> Vec<(f64, f64)> {
    metrics
        .iter()
        .filter(|m| m.get("stage").and_then(Value::as_str) == Some("rl"))
        .filter_map(|m| Some((m.get("step")?.as_f64()?, m.get(key)?.as_f64()?)))
        .collect()
}

/// Writes report.md and its plots into `run_dir`.
///
/// # Errors
/// [`Error::Io`] when a file cannot be written.
pub fn write_report(
    run_dir: &Path,
    config: &TrainConfig,
    evals: &[EvalRecord],
    metrics: &[Map<String, Value>],
) -> Result<()> {
    let name = config.run_name();
    let mut report = Report::new(&format!("redraft run: {name}"));
    let config_text = config.to_toml()?;
    report.section(
        "Configuration",
        &format!("Method `{}`.\n\n```toml\n{config_text}```", config.method),
    );
    if config.feedback().is_some_and(|f| f.reveals_answer()) {
        report.section(
            "Feedback rules",
            "This run's critic **reveals the reference answer** (`reveal_answer = true`): its \
             feedback differs from the default rules every method shares, and its results are \
             not comparable with runs under them.",
        );
    }
    report.table("Held-out evaluation", &eval_table(evals));
    let pass = |x: fn(&EvalRecord) -> f64| -> Vec<(f64, f64)> {
        evals
            .iter()
            .map(|e| (x(e), e.report.pass_at_1.mean))
            .collect()
    };
    report.plot(
        "pass_at_1_vs_step.svg",
        LinePlot {
            title: "Held-out pass@1".into(),
            x_label: "RL step".into(),
            y_label: "pass@1".into(),
            series: vec![Series {
                label: name.clone(),
                points: pass(|e| e.step as f64),
            }],
        },
    );
    report.plot(
        "pass_at_1_vs_tokens.svg",
        LinePlot {
            title: "Held-out pass@1 against sampled tokens".into(),
            x_label: "sampled tokens".into(),
            y_label: "pass@1".into(),
            series: vec![Series {
                label: name.clone(),
                points: pass(|e| e.sampled_tokens as f64),
            }],
        },
    );
    report.plot(
        "reward_vs_step.svg",
        LinePlot {
            title: "Training reward (first attempts)".into(),
            x_label: "RL step".into(),
            y_label: "mean reward".into(),
            series: vec![Series {
                label: name,
                points: metric_series(metrics, "reward_mean"),
            }],
        },
    );
    let transcripts = transcripts(&run_dir.join(files::TRANSCRIPTS))?;
    if !transcripts.is_empty() {
        report.transcripts("Transcripts (last steps)", &transcripts);
    }
    report.write(run_dir).map_err(|e| Error::io(run_dir, e))?;
    Ok(())
}

/// The last few transcripts of transcripts.jsonl, for reading.
pub fn transcripts(path: &Path) -> Result<Vec<Transcript>> {
    let records = read_jsonl(path)?;
    let start = records.len().saturating_sub(REPORT_TRANSCRIPTS);
    Ok(records[start..].iter().map(transcript).collect())
}

fn transcript(m: &Map<String, Value>) -> Transcript {
    let feedback: Vec<(Option<u64>, Option<String>)> = m
        .get("feedback")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|f| {
                    (
                        f.get("turn").and_then(Value::as_u64),
                        f.get("text").and_then(Value::as_str).map(str::to_string),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let attempts = m
        .get("turns")
        .and_then(Value::as_array)
        .map(|turns| {
            turns
                .iter()
                .enumerate()
                .map(|(k, t)| TranscriptTurn {
                    response: t["response"].as_str().unwrap_or_default().to_string(),
                    correct: t["correct"].as_bool().unwrap_or(false),
                    feedback: feedback
                        .iter()
                        .find(|(turn, _)| *turn == Some(k as u64))
                        .and_then(|(_, text)| text.clone()),
                })
                .collect()
        })
        .unwrap_or_default();
    Transcript {
        title: format!(
            "step {}",
            m.get("step").and_then(Value::as_u64).unwrap_or(0)
        ),
        problem: m
            .get("problem")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        attempts,
    }
}
