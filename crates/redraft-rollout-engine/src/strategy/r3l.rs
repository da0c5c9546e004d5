//! R^3L reflect-then-retry (ALGORITHMS.md §2.1–2.2).

use rand_chacha::ChaCha8Rng;
use redraft_feedback_protocol::{Feedback, FeedbackKind, FeedbackRequest, FeedbackSource};
use redraft_model::burn::tensor::{Int, Tensor, TensorData};
use redraft_model::{KvCache, LogitsFor};
use redraft_tokenizer::Message;
use redraft_verifier::Problem;
use serde::{Deserialize, Serialize};

use super::{RolloutContext, RolloutStrategy, positive, problem_messages, sample_rng, stage};
use crate::episode::{
    Episode, FeedbackRecord, GroupUse, Provenance, RolloutBatch, SequenceBuilder, StrategyKind,
    Turn,
};
use crate::error::{Error, Result};
use crate::prompts::{guidance_system, guided_messages};
use crate::sampling::{Completion, FinishReason, SamplingParams, sample_token};

/// Configuration of [`R3l`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct R3lConfig {
    /// Base rollouts per problem (N/2 of R^3L's budget N = 8). Default 4.
    pub base_per_problem: usize,
    /// Attempts per trajectory: after a wrong attempt the user turn is R^3L's math feedback
    /// (`r3l_math_feedback`) and the policy tries again. Default 3.
    pub max_attempts: usize,
    /// Retry from the reflection's pivot turn `k`, replaying the first `k` attempts (and their
    /// feedback) verbatim, with the guidance as a separate system message after them. When false
    /// (the default, R^3L's math code path) every retry restarts from attempt 0 with the
    /// guidance as the system prompt.
    pub replay_to_pivot: bool,
}

impl Default for R3lConfig {
    fn default() -> Self {
        Self {
            base_per_problem: 4,
            max_attempts: 3,
            replay_to_pivot: false,
        }
    }
}

/// R^3L's rollout.
///
/// 1. `base_per_problem` base trajectories per problem, each up to `max_attempts` attempts in one
///    continued chat (the feedback user turns are [`TokenKind::Feedback`](crate::TokenKind));
///    a turn's reward is its verdict's, the episode's is its last turn's (1 when some attempt
///    was correct, since a correct attempt ends the trajectory).
/// 2. Each base is sent to the feedback provider (R^3L's `SelfReflection`, possibly over the
///    policy itself via [`PolicyChat`](crate::PolicyChat)); the record is kept on the base, and
///    invalid reports are counted in [`RolloutStats::invalid_reflections`](crate::RolloutStats).
/// 3. When the feedback [triggers a retry](Feedback::triggers_retry), the retry is sampled with
///    the guidance (the feedback text) as a system message: from attempt 0, or with
///    `replay_to_pivot` from the pivot turn `k`, after replaying the base's first `k` attempts
///    ([`TokenKind::Replayed`](crate::TokenKind), not trainable). Such a retry does not recompute
///    the replayed prefix: each trajectory is decoded with its own KV cache, and the retry
///    continues from a copy of the base's cache truncated to the prefix
///    ([`KvCache::truncate`]); [`Provenance::reused_prefix_tokens`] says how many tokens that
///    saved.
/// 4. Two copies of each retry are kept: the guided one (in a [`GroupUse::Sft`] group when it
///    beat its base and solved the problem, as R^3L's auxiliary SFT task, else in a
///    [`GroupUse::Unused`] group) and the
///    context-distilled one: the same sampled ids (and sampling log-probs) re-expressed under the
///    original prompt with the guidance removed, which joins the bases' RL group.
#[derive(Debug, Clone)]
pub struct R3l {
    config: R3lConfig,
}

impl R3l {
    /// The strategy ([`Error::InvalidParam`] for zero counts).
    pub fn new(config: R3lConfig) -> Result<Self> {
        positive("base_per_problem", config.base_per_problem)?;
        positive("max_attempts", config.max_attempts)?;
        Ok(Self { config })
    }
}

/// A trajectory being decoded with its own KV cache.
#[derive(Clone)]
struct Session {
    builder: SequenceBuilder,
    cache: KvCache,
    /// Number of ids of `builder` whose keys and values are in `cache`.
    cached: usize,
    /// Per attempt: the number of ids before its generation prompt.
    attempt_starts: Vec<usize>,
    turns: Vec<Turn>,
    feedback: Vec<FeedbackRecord>,
    /// Per attempt: the feedback user message that followed it.
    feedback_messages: Vec<String>,
}

/// Samples one turn for the session's open assistant turn, feeding only the ids not yet cached.
fn decode_turn(
    ctx: &RolloutContext<'_>,
    session: &mut Session,
    params: &SamplingParams,
    rng: &mut ChaCha8Rng,
) -> Result<Completion> {
    let model = ctx.model;
    let ids = session.builder.ids().to_vec();
    let room = model
        .config()
        .max_position_embeddings
        .saturating_sub(ids.len());
    let limit = params.max_new_tokens.min(room);
    let mut out = Completion {
        tokens: Vec::new(),
        logprobs: Vec::new(),
        finish_reason: FinishReason::Length,
    };
    let mut feed: Vec<i64> = ids[session.cached..]
        .iter()
        .map(|t| i64::from(*t))
        .collect();
    while out.tokens.len() < limit {
        let n = feed.len();
        let input = Tensor::<2, Int>::from_data(TensorData::new(feed, [1, n]), ctx.device);
        let logits = model.forward_cached(input, &mut session.cache, LogitsFor::Last)?;
        session.cached += n;
        let host = logits
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| Error::InvalidParam {
                name: "logits",
                reason: format!("{e:?}"),
            })?;
        let (token, logprob) = sample_token(&host, params, rng);
        out.tokens.push(token);
        out.logprobs.push(logprob);
        if params.stop_tokens.contains(&token) {
            out.finish_reason = FinishReason::Stop;
            break;
        }
        feed = vec![i64::from(token)];
    }
    Ok(out)
}

/// Runs attempts `from..max_attempts` of a session whose assistant turn is open; stops after a
/// correct attempt.
fn run_attempts(
    ctx: &RolloutContext<'_>,
    problem: &Problem,
    session: &mut Session,
    from: usize,
    max_attempts: usize,
    mut rng_for: impl FnMut(usize) -> ChaCha8Rng,
) -> Result<()> {
    let params = ctx.turn_params()?;
    for a in from..max_attempts {
        let mut rng = rng_for(a);
        let c = decode_turn(ctx, session, &params, &mut rng)?;
        let range = session.builder.sampled(&c.tokens, &c.logprobs)?;
        session.builder.close(ctx.tokenizer)?;
        let text = ctx.text(&c.tokens)?;
        let verdict = ctx.verifier.verify(problem, &text);
        let correct = verdict.correct;
        let retry_text = ctx.templates.r3l_math_feedback(&verdict)?;
        session.turns.push(Turn {
            sequence: 0,
            sampled: range,
            text,
            finish_reason: c.finish_reason,
            reward: verdict.reward,
            verdict,
        });
        if correct || a + 1 == max_attempts {
            break;
        }
        let text = retry_text.unwrap_or_default();
        let mut fb = Feedback::new(
            FeedbackKind::CorrectnessOnly,
            text.clone(),
            FeedbackSource::new("r3l_math_feedback"),
        );
        fb.verdict = Some(session.turns[session.turns.len() - 1].verdict.clone());
        session.feedback.push(FeedbackRecord {
            turn: Some(session.turns.len() - 1),
            feedback: Some(fb),
            error: None,
        });
        session.feedback_messages.push(text.clone());
        session
            .builder
            .feedback(ctx.tokenizer, Message::user(text))?;
        session.attempt_starts.push(session.builder.ids().len());
        session.builder.open(ctx.tokenizer)?;
    }
    Ok(())
}

fn episode(problem: usize, session: &Session, provenance: Provenance) -> Episode {
    let reward = session.turns.last().map_or(0.0, |t| t.reward);
    Episode {
        problem,
        group: 0,
        sample: 0,
        sequences: vec![session.builder.finish()],
        turns: session.turns.clone(),
        feedback: session.feedback.clone(),
        reward,
        provenance,
    }
}

impl RolloutStrategy for R3l {
    fn kind(&self) -> StrategyKind {
        StrategyKind::R3l
    }

    fn rollout(
        &self,
        ctx: &RolloutContext<'_>,
        problems: &[Problem],
        seed: u64,
    ) -> Result<RolloutBatch> {
        let provider = ctx.provider("r3l")?;
        let c = &self.config;
        let tok = ctx.tokenizer;
        // 1. Base trajectories.
        let mut bases: Vec<(usize, Session)> = Vec::new();
        for (p, problem) in problems.iter().enumerate() {
            let messages = problem_messages(problem);
            for s in 0..c.base_per_problem {
                let mut builder = SequenceBuilder::new(tok)?;
                for m in &messages {
                    builder.prompt(tok, m.clone())?;
                }
                let start = builder.ids().len();
                builder.open(tok)?;
                let mut session = Session {
                    builder,
                    cache: ctx.model.new_cache(vec![0]),
                    cached: 0,
                    attempt_starts: vec![start],
                    turns: Vec::new(),
                    feedback: Vec::new(),
                    feedback_messages: Vec::new(),
                };
                run_attempts(ctx, problem, &mut session, 0, c.max_attempts, |a| {
                    sample_rng(seed, p, stage::ATTEMPT + a as u64, s)
                })?;
                bases.push((p, session));
            }
        }
        // 2. Reflection on every base.
        let requests: Vec<FeedbackRequest> = bases
            .iter()
            .map(|(p, s)| {
                let last = &s.turns[s.turns.len() - 1];
                FeedbackRequest::new(
                    problems[*p].clone(),
                    last.text.clone(),
                    last.verdict.clone(),
                )
                .with_transcript(s.builder.conv.messages().to_vec())
            })
            .collect();
        let results = provider.feedback(&requests);
        let mut batch = RolloutBatch::default();
        batch.stats.feedback_requests = requests.len();
        // 3. Retries, problem by problem.
        let mut retries: Vec<Option<(usize, Session, Session)>> = Vec::new();
        for ((p, base), result) in bases.iter_mut().zip(results) {
            let last_turn = base.turns.len() - 1;
            let fb = match result {
                Ok(fb) => fb,
                Err(e) => {
                    batch.stats.feedback_failures += 1;
                    base.feedback.push(FeedbackRecord {
                        turn: Some(last_turn),
                        feedback: None,
                        error: Some(e.to_string()),
                    });
                    retries.push(None);
                    continue;
                }
            };
            if fb.reflection.as_ref().is_some_and(|r| !r.is_valid()) {
                batch.stats.invalid_reflections += 1;
            }
            base.feedback.push(FeedbackRecord {
                turn: Some(last_turn),
                feedback: Some(fb.clone()),
                error: None,
            });
            if !fb.triggers_retry() {
                retries.push(None);
                continue;
            }
            let pivot = if c.replay_to_pivot {
                fb.pivot.map_or(0, |pv| pv.index).min(base.turns.len() - 1)
            } else {
                0
            };
            let guidance = guidance_system(&ctx.templates, &fb.text)?;
            let (guided, distilled) = self.retry(ctx, &problems[*p], base, pivot, &guidance)?;
            let mut guided = guided;
            let mut distilled = distilled;
            let base_index = retries.len();
            run_attempts(
                ctx,
                &problems[*p],
                &mut guided,
                pivot,
                c.max_attempts,
                |a| sample_rng(seed, *p, stage::RETRY + a as u64, base_index),
            )?;
            // The distilled copy: the same sampled ids under the original context.
            distill(ctx, &guided, &mut distilled)?;
            retries.push(Some((pivot, guided, distilled)));
        }
        // 4. Groups: bases and distilled copies per problem; guided retries that improved.
        type Item = (Session, Option<(usize, Session, Session)>);
        let mut per_problem: Vec<Vec<Item>> = (0..problems.len()).map(|_| Vec::new()).collect();
        for ((p, base), retry) in bases.into_iter().zip(retries) {
            per_problem[p].push((base, retry));
        }
        for (p, items) in per_problem.into_iter().enumerate() {
            let start = batch.episodes.len();
            let mut explore = Vec::new();
            let mut distills = Vec::new();
            let mut sft = Vec::new();
            let mut unused = Vec::new();
            for (k, (base, retry)) in items.iter().enumerate() {
                explore.push(episode(p, base, Provenance::base(StrategyKind::R3l)));
                if let Some((pivot, guided, distilled)) = retry {
                    let reused = if *pivot > 0 {
                        base.attempt_starts[*pivot]
                    } else {
                        0
                    };
                    let provenance = Provenance {
                        base: Some(start + k),
                        pivot: Some(*pivot),
                        ..Provenance::base(StrategyKind::R3l)
                    };
                    distills.push(episode(
                        p,
                        distilled,
                        Provenance {
                            distilled: true,
                            ..provenance.clone()
                        },
                    ));
                    let retry_reward = guided.turns.last().map_or(0.0, |t| t.reward);
                    let base_reward = base.turns.last().map_or(0.0, |t| t.reward);
                    let guided = episode(
                        p,
                        guided,
                        Provenance {
                            reused_prefix_tokens: reused,
                            ..provenance
                        },
                    );
                    if retry_reward > base_reward && retry_reward >= 1.0 {
                        sft.push(guided);
                    } else {
                        unused.push(guided);
                    }
                }
            }
            explore.extend(distills);
            batch.push_group(p, 0, GroupUse::Rl, explore);
            if !sft.is_empty() {
                batch.push_group(p, 0, GroupUse::Sft, sft);
            }
            if !unused.is_empty() {
                batch.push_group(p, 0, GroupUse::Unused, unused);
            }
        }
        Ok(batch)
    }
}

impl R3l {
    /// The guided retry session (open at attempt `pivot`, its prefix cached) and the distilled
    /// session's prefix (no guidance).
    fn retry(
        &self,
        ctx: &RolloutContext<'_>,
        problem: &Problem,
        base: &Session,
        pivot: usize,
        guidance: &str,
    ) -> Result<(Session, Session)> {
        let tok = ctx.tokenizer;
        let messages = problem_messages(problem);
        let replay = |b: &mut SequenceBuilder| -> Result<Vec<usize>> {
            let mut starts = vec![b.ids().len()];
            for a in 0..pivot {
                b.open(tok)?;
                let t = &base.turns[a];
                let seq = base.builder.finish();
                b.replayed(
                    &seq.ids[t.sampled.clone()],
                    &seq.logprobs[t.sampled.clone()],
                )?;
                b.close(tok)?;
                b.feedback(tok, Message::user(base.feedback_messages[a].clone()))?;
                starts.push(b.ids().len());
            }
            Ok(starts)
        };
        let mut guided = SequenceBuilder::new(tok)?;
        let mut distilled = SequenceBuilder::new(tok)?;
        let (cache, cached, starts);
        if pivot == 0 {
            let all = guided_messages(guidance, problem);
            let (system, prompt) = all.split_at(1);
            guided.feedback(tok, system[0].clone())?;
            for m in prompt {
                guided.prompt(tok, m.clone())?;
            }
            for m in &messages {
                distilled.prompt(tok, m.clone())?;
            }
            starts = vec![guided.ids().len()];
            cache = ctx.model.new_cache(vec![0]);
            cached = 0;
        } else {
            for m in &messages {
                guided.prompt(tok, m.clone())?;
                distilled.prompt(tok, m.clone())?;
            }
            starts = replay(&mut guided)?;
            replay(&mut distilled)?;
            let prefix = base.attempt_starts[pivot];
            if guided.ids().len() != prefix || !base.builder.ids().starts_with(guided.ids()) {
                return Err(Error::InvalidParam {
                    name: "pivot",
                    reason: "the replayed prefix differs from the base trajectory".into(),
                });
            }
            // Reuse the base's keys and values for the replayed prefix.
            let mut c = base.cache.clone();
            c.truncate(prefix);
            cache = c;
            cached = prefix;
            guided.feedback(tok, Message::system(guidance.to_owned()))?;
        }
        let mut attempt_starts = starts;
        if let Some(last) = attempt_starts.last_mut() {
            *last = guided.ids().len();
        }
        guided.open(tok)?;
        let session = Session {
            builder: guided,
            cache,
            cached,
            attempt_starts,
            turns: Vec::new(),
            feedback: Vec::new(),
            feedback_messages: Vec::new(),
        };
        let distilled = Session {
            builder: distilled,
            cache: ctx.model.new_cache(vec![0]),
            cached: 0,
            attempt_starts: Vec::new(),
            turns: Vec::new(),
            feedback: Vec::new(),
            feedback_messages: Vec::new(),
        };
        Ok((session, distilled))
    }
}

/// Appends the guided retry's attempts (sampled ids verbatim) and feedback turns to the
/// distilled session.
fn distill(ctx: &RolloutContext<'_>, guided: &Session, distilled: &mut Session) -> Result<()> {
    let tok = ctx.tokenizer;
    let seq = guided.builder.finish();
    for (i, t) in guided.turns.iter().enumerate() {
        distilled.builder.open(tok)?;
        let range = distilled.builder.sampled(
            &seq.ids[t.sampled.clone()],
            &seq.logprobs[t.sampled.clone()],
        )?;
        distilled.builder.close(tok)?;
        distilled.turns.push(Turn {
            sampled: range,
            ..t.clone()
        });
        if let Some(text) = guided.feedback_messages.get(i) {
            distilled
                .builder
                .feedback(tok, Message::user(text.clone()))?;
        }
    }
    distilled.feedback = guided.feedback.clone();
    Ok(())
}
