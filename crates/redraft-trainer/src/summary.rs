//! The end-of-run report of one training run: report.md with the configuration, the
//! evaluation table, SVG plots of pass@1 and reward, and a few transcripts.

use crate::config::TrainConfig;
use crate::error::{Error, Result};
use crate::metrics::{MetricsRecord, TranscriptRecord};
use crate::report::{
    LinePlot, Report, Series, Table, Transcript, TranscriptTurn, format_mean_stderr, format_value,
};
use crate::run_dir::RunDir;
use crate::trainer::EvalRecord;

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
            r.with_feedback_text(3).unwrap_or_else(|| "–".to_string()),
            opt(r.self_feedback),
            format_value(r.format_ok),
        ]);
    }
    table
}

/// `(step, value)` points of an RL step metric.
pub fn metric_series(
    metrics: &[MetricsRecord],
    value: impl Fn(&crate::metrics::StepMetrics) -> f64,
) -> Vec<(f64, f64)> {
    metrics
        .iter()
        .filter_map(MetricsRecord::rl)
        .map(|m| (m.step as f64, value(m)))
        .collect()
}

/// Writes report.md and its plots into `run_dir`.
///
/// # Errors
/// [`Error::Io`] when a file cannot be written.
pub fn write_report(run_dir: &RunDir, config: &TrainConfig, evals: &[EvalRecord]) -> Result<()> {
    let metrics = run_dir.metrics()?;
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
                points: metric_series(&metrics, |m| m.reward_mean),
            }],
        },
    );
    let transcripts = last_transcripts(run_dir)?;
    if !transcripts.is_empty() {
        report.transcripts("Transcripts (last steps)", &transcripts);
    }
    let path = run_dir.path();
    report.write(path).map_err(|e| Error::io(path, e))?;
    Ok(())
}

/// The last few transcripts of a run, for reading.
///
/// # Errors
/// [`Error::Io`] when transcripts.jsonl cannot be read.
pub fn last_transcripts(run_dir: &RunDir) -> Result<Vec<Transcript>> {
    let records = run_dir.transcripts()?;
    let start = records.len().saturating_sub(REPORT_TRANSCRIPTS);
    Ok(records[start..].iter().map(transcript).collect())
}

fn transcript(r: &TranscriptRecord) -> Transcript {
    Transcript {
        title: format!("step {}", r.step),
        problem: r.problem.clone(),
        attempts: r
            .turns
            .iter()
            .enumerate()
            .map(|(k, t)| TranscriptTurn {
                response: t.response.clone(),
                correct: t.correct,
                feedback: r
                    .feedback
                    .iter()
                    .find(|f| f.turn == Some(k))
                    .and_then(|f| f.text.clone()),
            })
            .collect(),
    }
}
