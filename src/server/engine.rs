//! The sampling engine of the server: one thread owns the models and runs every request queued
//! while it was busy as one batch per model, so concurrent requests share forward passes. Each
//! token is sent to its request's thread as soon as it is sampled, with the text it adds (stop
//! strings are found here, incrementally, so streamed and whole answers are cut the same way).
//!
//! The models are the base and the LoRA adapters loaded on it by name (each beside the shared
//! base weights, unmerged, so an adapter costs its own tensors only); new base weights replace
//! the old between batches, the adapters re-read onto them, all or nothing.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};

use redraft::model::CausalLm;
use redraft::model::burn::tensor::Device;
use redraft::rollout::{Control, FinishReason, RowRequest, Sampled, generate_rows_with};
use redraft::tokenizer::{StopText, Tokenizer};

/// What request threads ask of the engine.
pub(crate) enum Message {
    /// Sample a request's rows.
    Sample(Job),
    /// Load the PEFT adapter of folder `path` onto the base, served as model `name`.
    LoadAdapter {
        name: String,
        path: PathBuf,
        reply: Sender<Result<(), String>>,
    },
    /// Forget adapter `name`.
    UnloadAdapter {
        name: String,
        reply: Sender<Result<(), String>>,
    },
    /// Replace the base weights with those of `path` (same configuration), named `version`
    /// (default: one more than the last number); answers the new version.
    UpdateWeights {
        path: PathBuf,
        version: Option<String>,
        reply: Sender<Result<String, String>>,
    },
}

/// The rows of one HTTP request (its `n` choices) and where to send their tokens.
pub(crate) struct Job {
    /// The adapter to sample with (`None`: the base model).
    pub(crate) adapter: Option<String>,
    pub(crate) rows: Vec<RowRequest>,
    /// Stop strings: a choice ends when its text contains one (which is not sent).
    pub(crate) stop: Vec<String>,
    /// Set when the client has gone: the job's rows end at the next decode step (and a job
    /// still queued is never run).
    pub(crate) cancelled: Arc<AtomicBool>,
    pub(crate) events: Sender<Event>,
}

/// What the engine tells a request's thread.
pub(crate) enum Event {
    /// One sampled token.
    Token(Token),
    /// The job's batch starts, on the weights of this version.
    Started { weight_version: String },
    /// The batch has ended: the choices that have not finished end at their length (`Ok`, a
    /// choice given no room for any token), or sampling failed (`Err`).
    Done(Result<(), String>),
}

/// One sampled token of a choice.
pub(crate) struct Token {
    /// The choice (row of the request).
    pub(crate) choice: usize,
    pub(crate) id: u32,
    pub(crate) logprob: f32,
    /// The most likely tokens, when asked for.
    pub(crate) top_logprobs: Vec<(u32, f32)>,
    /// The text this token adds to the choice: held back while it ends in an incomplete
    /// character or may be the start of a stop string, and never part of a stop string.
    pub(crate) text: String,
    /// Why the choice ends with this token, when it does.
    pub(crate) finish: Option<FinishReason>,
}

/// The served models.
struct Models {
    base: CausalLm,
    /// Loaded adapters by name: their folder (re-read onto new base weights) and the model.
    adapters: BTreeMap<String, (PathBuf, CausalLm)>,
    /// The name of the base weights.
    version: String,
    device: Device,
}

impl Models {
    fn get(&self, adapter: Option<&str>) -> Result<&CausalLm, String> {
        match adapter {
            None => Ok(&self.base),
            Some(name) => self
                .adapters
                .get(name)
                .map(|(_, model)| model)
                .ok_or_else(|| format!("the LoRA adapter `{name}` is no longer loaded")),
        }
    }

    fn load_adapter(&mut self, name: String, path: PathBuf) -> Result<(), String> {
        if self.adapters.contains_key(&name) {
            return Err(format!("a LoRA adapter named `{name}` is already loaded"));
        }
        let model = self
            .base
            .clone()
            .with_adapter(&path, &self.device)
            .map_err(|e| format!("loading the LoRA adapter in {}: {e}", path.display()))?;
        self.adapters.insert(name, (path, model));
        Ok(())
    }

    fn update_weights(&mut self, path: PathBuf, version: Option<String>) -> Result<String, String> {
        let base = CausalLm::load(&path, &self.device)
            .map_err(|e| format!("loading weights from {}: {e}", path.display()))?;
        if base.config() != self.base.config() {
            return Err(format!(
                "the model in {} has another configuration than the served one",
                path.display()
            ));
        }
        let mut adapters = BTreeMap::new();
        for (name, (dir, _)) in &self.adapters {
            let model = base.clone().with_adapter(dir, &self.device).map_err(|e| {
                format!("re-reading the LoRA adapter `{name}` onto the new weights: {e}")
            })?;
            adapters.insert(name.clone(), (dir.clone(), model));
        }
        let version = version.unwrap_or_else(|| {
            self.version
                .parse::<u64>()
                .map_or_else(|_| "1".into(), |v| (v + 1).to_string())
        });
        self.base = base;
        self.adapters = adapters;
        self.version = version.clone();
        Ok(version)
    }
}

/// Runs jobs until every sender is gone. At most `max_rows` rows go into one batch, all of one
/// model; a job is never split, and jobs keep their order within a model.
pub(crate) fn run(
    model: CausalLm,
    tokenizer: Arc<dyn Tokenizer>,
    device: Device,
    pad_id: u32,
    max_rows: usize,
    messages: Receiver<Message>,
) {
    let mut models = Models {
        base: model,
        adapters: BTreeMap::new(),
        version: "0".into(),
        device: device.clone(),
    };
    let mut queue: VecDeque<Job> = VecDeque::new();
    loop {
        if queue.is_empty() {
            match messages.recv() {
                Ok(message) => handle(&mut models, &mut queue, message),
                Err(_) => return,
            }
        }
        while let Ok(message) = messages.try_recv() {
            handle(&mut models, &mut queue, message);
        }
        queue.retain(|job| !job.cancelled.load(Ordering::SeqCst));
        let Some(first) = queue.pop_front() else {
            continue;
        };
        let adapter = first.adapter.clone();
        let mut rows = first.rows.len();
        let mut batch = vec![first];
        let mut rest = VecDeque::new();
        while let Some(job) = queue.pop_front() {
            if job.adapter == adapter && rows + job.rows.len() <= max_rows {
                rows += job.rows.len();
                batch.push(job);
            } else {
                rest.push_back(job);
            }
        }
        queue = rest;
        let model = match models.get(adapter.as_deref()) {
            Ok(model) => model,
            Err(error) => {
                for job in &batch {
                    let _ = job.events.send(Event::Done(Err(error.clone())));
                }
                continue;
            }
        };
        for job in &batch {
            let weight_version = models.version.clone();
            let _ = job.events.send(Event::Started { weight_version });
        }
        let result = run_batch(model, &tokenizer, &device, pad_id, &mut batch);
        for job in &batch {
            let _ = job.events.send(Event::Done(result.clone()));
        }
    }
}

/// Applies a control message now; queues a job.
fn handle(models: &mut Models, queue: &mut VecDeque<Job>, message: Message) {
    match message {
        Message::Sample(job) => queue.push_back(job),
        Message::LoadAdapter { name, path, reply } => {
            let _ = reply.send(models.load_adapter(name, path));
        }
        Message::UnloadAdapter { name, reply } => {
            let _ = reply.send(match models.adapters.remove(&name) {
                Some(_) => Ok(()),
                None => Err(format!("no LoRA adapter named `{name}` is loaded")),
            });
        }
        Message::UpdateWeights {
            path,
            version,
            reply,
        } => {
            let _ = reply.send(models.update_weights(path, version));
        }
    }
}

/// Samples the rows of `batch` with `model`, sending each token to its job as it comes.
fn run_batch(
    model: &CausalLm,
    tokenizer: &Arc<dyn Tokenizer>,
    device: &Device,
    pad_id: u32,
    batch: &mut [Job],
) -> Result<(), String> {
    // Which job each row belongs to, and which of its choices it is.
    let mut owner = Vec::new();
    let mut choice = Vec::new();
    let mut texts = Vec::new();
    for (j, job) in batch.iter().enumerate() {
        for i in 0..job.rows.len() {
            owner.push(j);
            choice.push(i);
            texts.push(StopText::new(Arc::clone(tokenizer), job.stop.clone()));
        }
    }
    let all_rows: Vec<RowRequest> = batch
        .iter_mut()
        .flat_map(|job| std::mem::take(&mut job.rows))
        .collect();
    let mut observer = |sampled: &Sampled<'_>| {
        let job = &batch[owner[sampled.row]];
        if job.cancelled.load(Ordering::SeqCst) {
            return Control::Stop;
        }
        let (text, hit) = texts[sampled.row].push(sampled.token, sampled.finish.is_some());
        let token = Token {
            choice: choice[sampled.row],
            id: sampled.token,
            logprob: sampled.logprob,
            top_logprobs: sampled.top_logprobs.to_vec(),
            text,
            finish: if hit {
                Some(FinishReason::Stop)
            } else {
                sampled.finish
            },
        };
        // A request whose thread has gone is cancelled.
        if job.events.send(Event::Token(token)).is_err() || hit {
            Control::Stop
        } else {
            Control::Continue
        }
    };
    tracing::debug!(jobs = batch.len(), rows = all_rows.len(), "running a batch");
    generate_rows_with(model, all_rows, pad_id, device, &mut observer)
        .map(|_| ())
        .map_err(|error| error.to_string())
}
