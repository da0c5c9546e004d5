//! The local policy as a [`ChatModel`], so that feedback providers (R^3L's self-reflection) can
//! ask the policy itself.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use redraft_feedback_protocol::{ChatModel, ChatRequest, ChatResponse, Usage};
use redraft_tokenizer::{Conversation, StopText, Tokenizer};

use crate::policy::Policy;
use crate::sampling::{FinishReason, RowRequest, SamplingParams, row_rng};
use crate::strategy::derive_seed;

/// The policy answering chat requests with the tokenizer's chat template.
///
/// Each request is rendered with the chat template and a generation prompt, and sampled with
/// `params`, except that a request's `temperature` replaces `params.temperature` and its
/// `max_tokens` is capped at `params.max_new_tokens`. Sampling stops at the end-of-sequence and
/// end-of-turn tokens and at the request's stop strings (which are cut from the text, as an
/// OpenAI-compatible server does). Call `n` (counted from 0) of [`ChatModel::complete`] draws
/// request `i` from the generator derived from `(params.seed, n)`, row `i`: a sequence of calls
/// is reproducible. Sampling goes through the [`Policy`], so a
/// [`MeteredPolicy`](crate::MeteredPolicy) shared with the rollout counts these tokens too.
pub struct PolicyChat {
    name: String,
    policy: Arc<dyn Policy>,
    tokenizer: Arc<dyn Tokenizer>,
    params: SamplingParams,
    calls: AtomicU64,
}

impl std::fmt::Debug for PolicyChat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyChat")
            .field("name", &self.name)
            .field("params", &self.params)
            .field("calls", &self.calls)
            .finish_non_exhaustive()
    }
}

impl PolicyChat {
    /// The `policy` with its tokenizer, sampling with `params`.
    pub fn new(
        policy: Arc<dyn Policy>,
        tokenizer: Arc<dyn Tokenizer>,
        params: SamplingParams,
    ) -> Self {
        Self {
            name: "policy".into(),
            policy,
            tokenizer,
            params,
            calls: AtomicU64::new(0),
        }
    }

    /// Sets the name reported as the feedback's model (default `policy`).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// How many times [`ChatModel::complete`] has been called.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    fn stop_tokens(&self) -> Vec<u32> {
        let tok = self.tokenizer.as_ref();
        let mut stops = self.params.stop_tokens.clone();
        match Conversation::stop_ids(tok) {
            Ok(ids) => stops.extend(ids),
            // Without a chat template the end-of-sequence token still ends a turn.
            Err(_) => stops.extend(tok.special_tokens().eos),
        }
        stops.sort_unstable();
        stops.dedup();
        stops
    }
}

fn model_error(e: impl std::fmt::Display) -> redraft_feedback_protocol::Error {
    redraft_feedback_protocol::Error::Model(e.to_string())
}

/// The answer text of one row, built token by token as the policy samples it (each token
/// decoded once, never the whole answer again), cut at the request's first stop string.
struct Answer<'a> {
    text: StopText<&'a dyn Tokenizer>,
    /// Tokens seen so far.
    seen: usize,
    /// The text given out so far.
    out: String,
    /// A stop string has ended the answer.
    stopped: bool,
}

impl<'a> Answer<'a> {
    fn new(tokenizer: &'a dyn Tokenizer, stop: &[String]) -> Self {
        Self {
            text: StopText::new(tokenizer, stop.to_vec()),
            seen: 0,
            out: String::new(),
            stopped: false,
        }
    }

    /// Takes the row's tokens so far (the new ones are decoded); whether a stop string has
    /// ended it.
    fn see(&mut self, tokens: &[u32]) -> bool {
        for &id in &tokens[self.seen.min(tokens.len())..] {
            if self.stopped {
                break;
            }
            let (piece, hit) = self.text.push(id, false);
            self.out.push_str(&piece);
            self.stopped = hit;
        }
        self.seen = tokens.len();
        self.stopped
    }

    /// The whole answer, and whether a stop string cut it.
    fn finish(mut self) -> (String, bool) {
        if !self.stopped {
            let (rest, hit) = self.text.finish();
            self.out.push_str(&rest);
            self.stopped = hit;
        }
        (self.out, self.stopped)
    }
}

impl ChatModel for PolicyChat {
    fn name(&self) -> &str {
        &self.name
    }

    fn complete(
        &self,
        requests: &[ChatRequest],
    ) -> Vec<redraft_feedback_protocol::Result<ChatResponse>> {
        let start = Instant::now();
        let call = self.calls.fetch_add(1, Ordering::Relaxed);
        let seed = derive_seed(self.params.seed, &[call]);
        let tok = self.tokenizer.as_ref();
        let stop_tokens = self.stop_tokens();
        let mut out: Vec<Option<redraft_feedback_protocol::Result<ChatResponse>>> =
            (0..requests.len()).map(|_| None).collect();
        let mut rows = Vec::new();
        let mut owners = Vec::new();
        for (i, r) in requests.iter().enumerate() {
            match Conversation::from_messages(tok, &r.messages, true) {
                Ok(conv) => {
                    let mut params = self.params.clone();
                    params.stop_tokens = stop_tokens.clone();
                    if let Some(t) = r.temperature {
                        params.temperature = t;
                    }
                    if let Some(m) = r.max_tokens {
                        params.max_new_tokens = params.max_new_tokens.min(m as usize);
                    }
                    rows.push(RowRequest {
                        prompt: conv.ids().to_vec(),
                        params,
                        rng: row_rng(seed, i),
                    });
                    owners.push(i);
                }
                Err(e) => out[i] = Some(Err(model_error(e))),
            }
        }
        if !rows.is_empty() {
            let prompt_lens: Vec<usize> = rows.iter().map(|r| r.prompt.len()).collect();
            let answers: Vec<RefCell<Answer<'_>>> = owners
                .iter()
                .map(|&i| RefCell::new(Answer::new(tok, &requests[i].stop)))
                .collect();
            let stop = |row: usize, tokens: &[u32]| answers[row].borrow_mut().see(tokens);
            match self.policy.generate(rows, &stop) {
                Ok(completions) => {
                    for (((c, &i), plen), answer) in completions
                        .into_iter()
                        .zip(&owners)
                        .zip(prompt_lens)
                        .zip(answers)
                    {
                        let mut answer = answer.into_inner();
                        answer.see(&c.tokens);
                        let (text, cut) = answer.finish();
                        let reason = if cut || c.finish_reason == FinishReason::Stop {
                            "stop"
                        } else {
                            "length"
                        };
                        out[i] = Some(Ok(ChatResponse {
                            text,
                            finish_reason: Some(reason.into()),
                            model: Some(self.name.clone()),
                            usage: Some(Usage {
                                prompt_tokens: plen as u64,
                                completion_tokens: c.tokens.len() as u64,
                            }),
                            latency: start.elapsed(),
                        }));
                    }
                }
                Err(e) => {
                    for &i in &owners {
                        out[i] = Some(Err(model_error(&e)));
                    }
                }
            }
        }
        out.into_iter()
            .map(|o| o.unwrap_or_else(|| Err(model_error("no response"))))
            .collect()
    }
}
