//! The sampling engine of the server: one thread owns the models and decodes requests in one
//! continuously batched [`Batcher`]: a request arriving while a batch runs joins it at the next
//! step when it samples with the same model, its rows taking the slots of finished rows, so
//! concurrent requests share forward passes and none waits for another to end. Each
//! token is sent to its request's thread as soon as it is sampled, with the text it adds (stop
//! strings are found here, incrementally, so streamed and whole answers are cut the same way).
//!
//! The models are the base and the LoRA adapters loaded on it by name (each beside the shared
//! base weights, unmerged, so an adapter costs its own tensors only); new base weights replace
//! the old between steps, the adapters re-read onto them, all or nothing; rows already
//! decoding finish on the weights they started with, and requests after the change start a
//! new batch once the old one has drained.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};

use redraft::model::CausalLm;
use redraft::model::burn::tensor::Device;
use redraft::rollout::{Batcher, Control, FinishReason, RowRequest, Sampled};
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
    /// Counts the changes that make a model differ from what a running batch samples with
    /// (new base weights, an adapter unloaded).
    generation: u64,
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
        self.generation += 1;
        self.version = version.clone();
        Ok(version)
    }
}

/// Runs jobs until every sender is gone, continuously batched: the rows of every job that
/// samples with the running batch's model (same adapter, same weights) join it as soon as it
/// has room, at most `max_rows` rows decoding at once, each taking a finished row's slot. A job
/// for another model waits until the batch has drained (jobs keep their order; later jobs do
/// not join past it). Control messages apply between steps; rows already decoding finish on
/// the weights they started with.
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
        generation: 0,
        device: device.clone(),
    };
    let mut queue: VecDeque<Job> = VecDeque::new();
    let mut batch: Option<Batch> = None;
    loop {
        if batch.is_none() && queue.is_empty() {
            match messages.recv() {
                Ok(message) => handle(&mut models, &mut queue, message),
                Err(_) => return,
            }
        }
        while let Ok(message) = messages.try_recv() {
            handle(&mut models, &mut queue, message);
        }
        queue.retain(|job| !job.cancelled.load(Ordering::SeqCst));
        if batch.is_none()
            && let Some(first) = queue.front()
        {
            match models.get(first.adapter.as_deref()) {
                Ok(model) => {
                    let batcher = Batcher::new(model.clone(), pad_id, &device, max_rows);
                    batch = Some(Batch::new(first.adapter.clone(), &models, batcher));
                }
                Err(error) => {
                    if let Some(job) = queue.pop_front() {
                        let _ = job.events.send(Event::Done(Err(error)));
                    }
                    continue;
                }
            }
        }
        let Some(running) = batch.as_mut() else {
            continue;
        };
        while queue.front().is_some_and(|job| {
            job.adapter == running.adapter && models.generation == running.generation
        }) {
            if let Some(job) = queue.pop_front() {
                running.join(job, &models.version, &tokenizer);
            }
        }
        if let Err(error) = running.step() {
            for live in running.jobs.values() {
                let _ = live.job.events.send(Event::Done(Err(error.clone())));
            }
            batch = None;
        } else if running.batcher.is_idle() {
            batch = None;
        }
    }
}

/// The batch decoding now and the jobs with rows in it.
struct Batch {
    /// The adapter it samples with.
    adapter: Option<String>,
    /// [`Models::generation`] when it started: jobs join only on the same weights.
    generation: u64,
    batcher: Batcher,
    /// Jobs by key, with how many of their rows have not finished.
    jobs: BTreeMap<usize, Live>,
    /// Each batcher row: its job's key, its choice, and its text so far.
    rows: BTreeMap<usize, RowState>,
    next_job: usize,
    next_row: usize,
}

struct Live {
    job: Job,
    remaining: usize,
}

struct RowState {
    job: usize,
    choice: usize,
    text: StopText<Arc<dyn Tokenizer>>,
}

impl Batch {
    fn new(adapter: Option<String>, models: &Models, batcher: Batcher) -> Self {
        Self {
            adapter,
            generation: models.generation,
            batcher,
            jobs: BTreeMap::new(),
            rows: BTreeMap::new(),
            next_job: 0,
            next_row: 0,
        }
    }

    /// Queues `job`'s rows in the batch and tells it which weights it samples with. A job with
    /// a row the batch refuses is answered with the error and leaves nothing in the batch.
    fn join(&mut self, mut job: Job, weight_version: &str, tokenizer: &Arc<dyn Tokenizer>) {
        let weight_version = weight_version.to_string();
        let _ = job.events.send(Event::Started { weight_version });
        if let Some(error) = job.rows.iter().find_map(|row| row.params.validate().err()) {
            let _ = job.events.send(Event::Done(Err(error.to_string())));
            return;
        }
        let key = self.next_job;
        self.next_job += 1;
        let rows = std::mem::take(&mut job.rows);
        let remaining = rows.len();
        for (choice, row) in rows.into_iter().enumerate() {
            let id = self.next_row;
            self.next_row += 1;
            if let Err(error) = self.batcher.push(id, row) {
                // Unreachable after the check above; the error still goes to the job.
                let _ = job.events.send(Event::Done(Err(error.to_string())));
                return;
            }
            let text = StopText::new(Arc::clone(tokenizer), job.stop.clone());
            self.rows.insert(
                id,
                RowState {
                    job: key,
                    choice,
                    text,
                },
            );
        }
        if remaining == 0 {
            let _ = job.events.send(Event::Done(Ok(())));
        } else {
            self.jobs.insert(key, Live { job, remaining });
        }
    }

    /// One decode step: each token sent to its job as it comes; a job is done when all its
    /// rows are.
    fn step(&mut self) -> Result<(), String> {
        let Self {
            batcher,
            jobs,
            rows,
            ..
        } = self;
        // Rows of jobs whose client has gone end now, waiting or running.
        for (id, row) in rows.iter() {
            if jobs[&row.job].job.cancelled.load(Ordering::SeqCst) {
                batcher.cancel(*id);
            }
        }
        let mut observer = |sampled: &Sampled<'_>| {
            let row = rows.get_mut(&sampled.row).expect("a row of the batch");
            let job = &jobs[&row.job].job;
            if job.cancelled.load(Ordering::SeqCst) {
                return Control::Stop;
            }
            let (text, hit) = row.text.push(sampled.token, sampled.finish.is_some());
            let token = Token {
                choice: row.choice,
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
        let finished = batcher.step(&mut observer).map_err(|e| e.to_string())?;
        for (id, _) in finished {
            let Some(row) = rows.remove(&id) else {
                continue;
            };
            if let Some(live) = jobs.get_mut(&row.job) {
                live.remaining -= 1;
                if live.remaining == 0
                    && let Some(live) = jobs.remove(&row.job)
                {
                    let _ = live.job.events.send(Event::Done(Ok(())));
                }
            }
        }
        tracing::trace!(
            running = batcher.running(),
            waiting = batcher.waiting(),
            "decode step"
        );
        Ok(())
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
                Some(_) => {
                    models.generation += 1;
                    Ok(())
                }
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
