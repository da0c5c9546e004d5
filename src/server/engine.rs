//! The sampling engine of the server: one thread owns the model and runs every request queued
//! while it was busy as one batch, so concurrent requests share forward passes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};

use redraft::model::CausalLm;
use redraft::model::burn::tensor::Device;
use redraft::rollout::{Completion, RowRequest, generate_rows};
use redraft::tokenizer::Tokenizer;

/// The rows of one HTTP request (its `n` choices) and where to send their completions.
pub(crate) struct Job {
    pub(crate) rows: Vec<RowRequest>,
    /// Stop strings: a row ends when its decoded text contains one.
    pub(crate) stop: Vec<String>,
    /// Set when the client has gone: the job's rows end at the next decode step (and a job
    /// still queued is never run).
    pub(crate) cancelled: Arc<AtomicBool>,
    pub(crate) reply: Sender<Result<Vec<Completion>, String>>,
}

/// Runs jobs until every sender is gone. At most `max_rows` rows go into one batch; a job is
/// never split.
pub(crate) fn run(
    model: CausalLm,
    tokenizer: Arc<dyn Tokenizer>,
    device: Device,
    pad_id: u32,
    max_rows: usize,
    jobs: Receiver<Job>,
) {
    let mut waiting: Option<Job> = None;
    loop {
        let first = match waiting.take() {
            Some(job) => job,
            None => match jobs.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
        };
        if first.cancelled.load(Ordering::SeqCst) {
            continue;
        }
        let mut batch = vec![first];
        let mut rows = batch[0].rows.len();
        while let Ok(job) = jobs.try_recv() {
            if job.cancelled.load(Ordering::SeqCst) {
                continue;
            }
            if rows + job.rows.len() > max_rows {
                waiting = Some(job);
                break;
            }
            rows += job.rows.len();
            batch.push(job);
        }
        // Which job (and so which stop strings) each row belongs to.
        let counts: Vec<usize> = batch.iter().map(|job| job.rows.len()).collect();
        let owner: Vec<usize> = batch
            .iter()
            .enumerate()
            .flat_map(|(j, job)| std::iter::repeat_n(j, job.rows.len()))
            .collect();
        let all_rows: Vec<RowRequest> = batch
            .iter_mut()
            .flat_map(|job| std::mem::take(&mut job.rows))
            .collect();
        let stop = |row: usize, tokens: &[u32]| {
            let job = &batch[owner[row]];
            if job.cancelled.load(Ordering::SeqCst) {
                return true;
            }
            let strings = &job.stop;
            !strings.is_empty()
                && tokenizer
                    .decode(tokens, true)
                    .is_ok_and(|text| strings.iter().any(|s| text.contains(s.as_str())))
        };
        tracing::debug!(jobs = batch.len(), rows = all_rows.len(), "running a batch");
        match generate_rows(&model, all_rows, pad_id, &device, &stop) {
            Ok(completions) => {
                let mut completions = completions.into_iter();
                for (job, n) in batch.iter().zip(counts) {
                    let _ = job.reply.send(Ok(completions.by_ref().take(n).collect()));
                }
            }
            Err(error) => {
                for job in &batch {
                    let _ = job.reply.send(Err(error.to_string()));
                }
            }
        }
    }
}
