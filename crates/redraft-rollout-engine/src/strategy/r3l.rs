//! R^3L reflect-then-retry (docs/algorithms/r3l.md).

use std::ops::Range;

use redraft_feedback_protocol::{
    AuxSftRules, Exchange, Feedback, FeedbackKind, FeedbackRequest, FeedbackSource, Pivot,
    PivotUnit, ReflectRetryRecord, RetryRecord, Templates, select_aux_sft,
};
use redraft_tokenizer::{Conversation, Message, Tokenizer};
use redraft_verifier::{Problem, Verdict};
use serde::{Deserialize, Serialize};

use super::{
    RolloutContext, RolloutStrategy, TurnPrompt, first_turn_prompt, positive, problem_messages,
    room, sample_rng, sample_turns, stage,
};
use crate::episode::{
    Episode, FeedbackRecord, GroupUse, Provenance, RolloutBatch, SequenceBuilder, StrategyKind,
    Turn,
};
use crate::error::{Error, Result};
use crate::prompts::{guidance_system, guided_messages};
use crate::sampling::FinishReason;

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
    /// Which auxiliary SFT items (guided retries, reflections) a retry yields. Default: the
    /// released code's math rule.
    pub aux_sft: AuxSftRules,
}

impl Default for R3lConfig {
    fn default() -> Self {
        Self {
            base_per_problem: 4,
            max_attempts: 3,
            replay_to_pivot: false,
            aux_sft: AuxSftRules::default(),
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
/// 3. When the feedback [triggers a retry](Feedback::triggers_retry) (a reflection that does not
///    judge the base a success; a critic's feedback on a failed base), the retry is sampled with
///    the guidance (the feedback text) as a system message: from attempt 0, or with
///    `replay_to_pivot` from the pivot turn `k`, after replaying the base's first `k` attempts
///    ([`TokenKind::Replayed`](crate::TokenKind), not trainable). The pivot also marks what of
///    the retried base is trained ([`Sequence::untrained`](crate::Sequence::untrained);
///    `pivot_plan`, docs/algorithms/r3l.md). Every attempt of every base
///    (and then of every retry) of the step is decoded in one batch through
///    [`Policy::generate`](crate::Policy::generate); the replayed prefix is prefilled again (no
///    KV cache is kept between attempts).
/// 4. Two copies of each retry are kept: the guided one and the context-distilled one: the same
///    sampled ids (and sampling log-probs, marked for re-scoring) re-expressed under the
///    original prompt with the guidance removed, which joins the bases' RL group.
/// 5. [`select_aux_sft`] (rules `aux_sft`) decides the auxiliary SFT items of each base: the
///    guided retry and the reflection (when the policy wrote it: [`Exchange`]) join the
///    problem's [`GroupUse::Sft`] group; guided retries that are not items are kept in a
///    [`GroupUse::Unused`] group.
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

/// A trajectory: its sequence, attempts and feedback, and where its next attempt stands.
#[derive(Clone)]
struct Session {
    /// Index of the problem.
    problem: usize,
    builder: SequenceBuilder,
    turns: Vec<Turn>,
    feedback: Vec<FeedbackRecord>,
    /// Per attempt: the feedback user message that followed it.
    feedback_messages: Vec<String>,
    /// The next attempt's index.
    next: usize,
    /// Whether the trajectory has ended (a correct attempt, or the last one).
    done: bool,
    /// The stage and sample index of its generators: attempt `a` draws from
    /// `sample_rng(seed, problem, stage + a, sample)`.
    stage: u64,
    sample: usize,
    /// Sampled ids kept out of training (pivotal credit of a retried base).
    untrained: Vec<Range<usize>>,
}

/// Runs the attempts of every session until each has ended (a correct attempt or
/// `max_attempts`): each round samples the next attempt of all open sessions in one batch.
fn run_attempts(
    ctx: &RolloutContext<'_>,
    problems: &[Problem],
    sessions: &mut [Session],
    max_attempts: usize,
    seed: u64,
) -> Result<()> {
    for s in sessions.iter_mut() {
        s.done = s.next >= max_attempts;
    }
    loop {
        let mut open: Vec<&mut Session> = sessions.iter_mut().filter(|s| !s.done).collect();
        if open.is_empty() {
            return Ok(());
        }
        let rngs = open
            .iter()
            .map(|s| sample_rng(seed, s.problem, s.stage + s.next as u64, s.sample))
            .collect();
        let mut builders: Vec<&mut SequenceBuilder> =
            open.iter_mut().map(|s| &mut s.builder).collect();
        let sampled = sample_turns(ctx, &mut builders, rngs)?;
        for (session, t) in open.into_iter().zip(sampled) {
            let text = ctx.text(&t.tokens)?;
            let verdict = ctx.verifier.verify(&problems[session.problem], &text);
            let correct = verdict.correct;
            let retry_text = ctx.templates.r3l_math_feedback(&verdict)?;
            session.turns.push(Turn {
                sequence: 0,
                sampled: t.range,
                text,
                finish_reason: t.finish_reason,
                reward: verdict.reward,
                verdict,
            });
            session.next += 1;
            if correct || session.next >= max_attempts {
                session.done = true;
                continue;
            }
            let text = retry_text.unwrap_or_default();
            // Feedback that leaves the next attempt no room in the context ends the
            // trajectory at this attempt.
            let mut next = session.builder.clone();
            next.feedback(ctx.tokenizer, Message::user(text.clone()))?;
            next.open(ctx.tokenizer)?;
            if room(ctx, &next)? == 0 {
                tracing::debug!(
                    tokens = next.ids().len(),
                    "R^3L attempt has no room left in the context; trajectory ended"
                );
                session.done = true;
                continue;
            }
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
            session.feedback_messages.push(text);
            session.builder = next;
        }
    }
}

fn episode(problem: usize, session: &Session, provenance: Provenance) -> Episode {
    let reward = session.turns.last().map_or(0.0, |t| t.reward);
    let mut sequence = session.builder.finish();
    sequence.untrained = session.untrained.clone();
    // A distilled copy's log-probs were sampled under the guided context.
    sequence.rescore = provenance.distilled;
    Episode {
        problem,
        group: 0,
        sample: 0,
        sequences: vec![sequence],
        turns: session.turns.clone(),
        feedback: session.feedback.clone(),
        reward,
        provenance,
    }
}

impl RolloutStrategy for R3l {
    fn turn_prompts(
        &self,
        tokenizer: &dyn Tokenizer,
        templates: &Templates,
        problem: &Problem,
    ) -> Result<Vec<TurnPrompt>> {
        // The longest fixed parts: a guided retry (the guidance's template before the problem)
        // after empty attempts, each followed by the shorter of the two feedback messages.
        let retry = templates.r3l_math_retry("")?;
        let invalid = templates.r3l_invalid_format()?;
        let feedback = if retry.len() <= invalid.len() {
            retry
        } else {
            invalid
        };
        let mut b = SequenceBuilder::new(tokenizer)?;
        let guided = guided_messages(&guidance_system(templates, "")?, problem);
        let (system, prompt) = guided.split_at(1);
        b.feedback(tokenizer, system[0].clone())?;
        for m in prompt {
            b.prompt(tokenizer, m.clone())?;
        }
        b.open(tokenizer)?;
        let mut turns = vec![first_turn_prompt(tokenizer, problem)?];
        for attempt in 1..=self.config.max_attempts {
            if attempt > 1 {
                b.close(tokenizer)?;
                b.feedback(tokenizer, Message::user(feedback.clone()))?;
                b.open(tokenizer)?;
            }
            let turn = format!("attempt {attempt} of a guided retry");
            turns.push(TurnPrompt::of(turn, tokenizer, &b, true)?);
        }
        Ok(turns)
    }

    fn sample(
        &self,
        ctx: &RolloutContext<'_>,
        problems: &[Problem],
        seed: u64,
    ) -> Result<RolloutBatch> {
        let provider = ctx.provider("r3l")?;
        let c = &self.config;
        let tok = ctx.tokenizer;
        // 1. Base trajectories, every attempt batched across all of them.
        let mut bases: Vec<Session> = Vec::new();
        for (p, problem) in problems.iter().enumerate() {
            let mut builder = SequenceBuilder::new(tok)?;
            for m in &problem_messages(problem) {
                builder.prompt(tok, m.clone())?;
            }
            builder.open(tok)?;
            for s in 0..c.base_per_problem {
                bases.push(Session::new(p, builder.clone(), stage::ATTEMPT, s));
            }
        }
        run_attempts(ctx, problems, &mut bases, c.max_attempts, seed)?;
        // 2. Reflection on every base.
        let requests: Vec<FeedbackRequest> = bases
            .iter()
            .map(|s| {
                let last = &s.turns[s.turns.len() - 1];
                FeedbackRequest::new(
                    problems[s.problem].clone(),
                    last.text.clone(),
                    last.verdict.clone(),
                )
                .with_transcript(s.builder.conv.messages().to_vec())
            })
            .collect();
        let results = provider.feedback(&requests);
        let mut batch = RolloutBatch::default();
        batch.stats.feedback_requests = requests.len();
        // 3. Retries of the bases whose feedback asks for one, batched like the bases.
        let mut guided: Vec<Session> = Vec::new();
        let mut distilled: Vec<SequenceBuilder> = Vec::new();
        // Per base: (pivot, index into `guided`) of its retry, and its feedback.
        let mut retry_of: Vec<Option<(usize, usize)>> = vec![None; bases.len()];
        let mut feedback_of: Vec<Option<Feedback>> = vec![None; bases.len()];
        for (b, (base, result)) in bases.iter_mut().zip(results).enumerate() {
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
            feedback_of[b] = Some(fb.clone());
            if !fb.triggers_retry() {
                continue;
            }
            let (pivot, untrained) = pivot_plan(fb.pivot, base, c.replay_to_pivot, tok)?;
            let guidance = guidance_system(&ctx.templates, &fb.text)?;
            let (session, copy) = retry(ctx, &problems[base.problem], base, pivot, &guidance, b)?;
            // Guidance that leaves the retry no room in the context: no retry.
            if room(ctx, &session.builder)? == 0 {
                tracing::warn!(
                    tokens = session.builder.ids().len(),
                    context = ctx.policy.max_context(),
                    "R^3L retry prompt leaves no room in the context; no retry"
                );
                continue;
            }
            base.untrained = untrained;
            retry_of[b] = Some((pivot, guided.len()));
            guided.push(session);
            distilled.push(copy);
        }
        run_attempts(ctx, problems, &mut guided, c.max_attempts, seed)?;
        // The distilled copies: the same sampled ids under the original context.
        let distilled: Vec<Session> = guided
            .iter()
            .zip(distilled)
            .map(|(g, copy)| distill(ctx, g, copy))
            .collect::<Result<_>>()?;
        // 4. Groups: bases and distilled copies per problem; guided retries that improved.
        for p in 0..problems.len() {
            let start = batch.episodes.len();
            let mut explore = Vec::new();
            let mut distills = Vec::new();
            let mut sft = Vec::new();
            let mut unused = Vec::new();
            let members = (0..bases.len()).filter(|&b| bases[b].problem == p);
            for (k, b) in members.enumerate() {
                let base = &bases[b];
                explore.push(episode(p, base, Provenance::base(StrategyKind::R3l)));
                let base_reward = base.turns.last().map_or(0.0, |t| t.reward);
                let Some(fb) = &feedback_of[b] else {
                    continue;
                };
                let retry = retry_of[b].map(|(pivot, r)| (pivot, &guided[r], &distilled[r]));
                let record = ReflectRetryRecord {
                    base_reward,
                    base_steps: base.turns.len(),
                    verdict: fb.reflection_verdict(),
                    retry: retry.map(|(_, g, _)| RetryRecord {
                        reward: g.turns.last().map_or(0.0, |t| t.reward),
                        steps: g.turns.len(),
                    }),
                };
                let selected = select_aux_sft(&record, &c.aux_sft);
                if selected.reflection
                    && let Some(exchange) = &fb.exchange
                {
                    // The verdict the reflection led to: its retry's, else its base's.
                    let last = retry.map_or(base, |(_, g, _)| g).turns.last();
                    let verdict = last.map_or_else(|| base_verdict(base), |t| t.verdict.clone());
                    let provenance = Provenance {
                        base: Some(start + k),
                        reflection: true,
                        ..Provenance::base(StrategyKind::R3l)
                    };
                    let reflection = reflection_episode(ctx, p, exchange, verdict, provenance)?;
                    // A reflection longer than the context cannot be trained on.
                    if reflection.sequences[0].ids.len() <= ctx.policy.max_context() {
                        sft.push(reflection);
                    }
                }
                let Some((pivot, guided, distilled)) = retry else {
                    continue;
                };
                let provenance = Provenance {
                    base: Some(start + k),
                    pivot: Some(pivot),
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
                let guided = episode(p, guided, provenance);
                if selected.guided_retry {
                    sft.push(guided);
                } else {
                    unused.push(guided);
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

impl Session {
    /// A trajectory of problem `problem` whose assistant turn is open in `builder`.
    fn new(problem: usize, builder: SequenceBuilder, stage: u64, sample: usize) -> Self {
        Self {
            problem,
            builder,
            turns: Vec::new(),
            feedback: Vec::new(),
            feedback_messages: Vec::new(),
            next: 0,
            done: false,
            stage,
            sample,
            untrained: Vec::new(),
        }
    }
}

/// The guided retry of `base` (base number `index`; open at attempt `pivot`) and the distilled
/// copy's prefix (no guidance).
fn retry(
    ctx: &RolloutContext<'_>,
    problem: &Problem,
    base: &Session,
    pivot: usize,
    guidance: &str,
    index: usize,
) -> Result<(Session, SequenceBuilder)> {
    let tok = ctx.tokenizer;
    let messages = problem_messages(problem);
    let seq = base.builder.finish();
    let replay = |b: &mut SequenceBuilder| -> Result<()> {
        for a in 0..pivot {
            b.open(tok)?;
            let t = &base.turns[a];
            b.replayed(
                &seq.ids[t.sampled.clone()],
                &seq.logprobs[t.sampled.clone()],
            )?;
            b.close(tok)?;
            b.feedback(tok, Message::user(base.feedback_messages[a].clone()))?;
        }
        Ok(())
    };
    let mut guided = SequenceBuilder::new(tok)?;
    let mut distilled = SequenceBuilder::new(tok)?;
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
    } else {
        for m in &messages {
            guided.prompt(tok, m.clone())?;
            distilled.prompt(tok, m.clone())?;
        }
        replay(&mut guided)?;
        replay(&mut distilled)?;
        if !base.builder.ids().starts_with(guided.ids()) {
            return Err(Error::InvalidParam {
                name: "pivot",
                reason: "the replayed prefix differs from the base trajectory".into(),
            });
        }
        guided.feedback(tok, Message::system(guidance.to_owned()))?;
    }
    guided.open(tok)?;
    let mut session = Session::new(base.problem, guided, stage::RETRY, index);
    session.next = pivot;
    Ok((session, distilled))
}

/// The distilled copy of a guided retry: `prefix` (the original context, replayed attempts
/// included) followed by the retry's attempts (sampled ids verbatim) and feedback turns.
fn distill(ctx: &RolloutContext<'_>, guided: &Session, prefix: SequenceBuilder) -> Result<Session> {
    let tok = ctx.tokenizer;
    let seq = guided.builder.finish();
    let mut out = Session::new(guided.problem, prefix, guided.stage, guided.sample);
    for (i, t) in guided.turns.iter().enumerate() {
        out.builder.open(tok)?;
        let range = out.builder.sampled(
            &seq.ids[t.sampled.clone()],
            &seq.logprobs[t.sampled.clone()],
        )?;
        out.builder.close(tok)?;
        out.turns.push(Turn {
            sampled: range,
            ..t.clone()
        });
        if let Some(text) = guided.feedback_messages.get(i) {
            out.builder.feedback(tok, Message::user(text.clone()))?;
        }
    }
    out.feedback = guided.feedback.clone();
    Ok(out)
}

/// The verdict of a base's last attempt (every base has one).
fn base_verdict(base: &Session) -> Verdict {
    base.turns[base.turns.len() - 1].verdict.clone()
}

/// Where the retry of `base` restarts (the attempts it replays) and which of the base's sampled
/// ids pivotal credit keeps out of training (docs/algorithms/r3l.md, "The pivot"), by the
/// pivot's unit:
///
/// * [`PivotUnit::Turn`] `k` (a self-reflection's `retry_from_step`): the base's attempts before
///   `k` are judged sound; they are not trained on the base, and with `replay_to_pivot` the
///   retry replays them and restarts at attempt `k` (else it restarts from attempt 0);
/// * [`PivotUnit::Step`] `k` (a critic's `Diagnosis::first_error` in the base's last attempt):
///   the `k` scratchpad steps before the first wrong one were verified; the tokens of that
///   attempt before the wrong step's first byte are not trained. The retry restarts from
///   attempt 0 (a step is not an attempt boundary to replay to). `k = 0` keeps everything.
fn pivot_plan(
    pivot: Option<Pivot>,
    base: &Session,
    replay_to_pivot: bool,
    tokenizer: &dyn Tokenizer,
) -> Result<(usize, Vec<Range<usize>>)> {
    let Some(pivot) = pivot else {
        return Ok((0, Vec::new()));
    };
    match pivot.unit {
        PivotUnit::Turn => {
            let k = pivot.index.min(base.turns.len().saturating_sub(1));
            let untrained = base.turns[..k].iter().map(|t| t.sampled.clone()).collect();
            Ok((if replay_to_pivot { k } else { 0 }, untrained))
        }
        PivotUnit::Step => {
            let last = &base.turns[base.turns.len() - 1];
            let error = last.verdict.diagnosis.first_error.as_ref();
            let Some(byte) = error.filter(|_| pivot.index > 0).map(|e| e.span.start) else {
                return Ok((0, Vec::new()));
            };
            let ids = &base.builder.ids()[last.sampled.clone()];
            let n = tokens_before_byte(ids, byte, tokenizer)?;
            let start = last.sampled.start;
            let verified = std::iter::once(start..start + n).filter(|r| !r.is_empty());
            Ok((0, verified.collect()))
        }
    }
}

/// The most leading ids of `ids` whose decoded text is at most `byte` bytes long.
fn tokens_before_byte(ids: &[u32], byte: usize, tokenizer: &dyn Tokenizer) -> Result<usize> {
    let (mut lo, mut hi) = (0, ids.len());
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if tokenizer.decode(&ids[..mid], true)?.len() <= byte {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    Ok(lo)
}

/// A reflection as an auxiliary SFT episode: its prompt messages, then the report as the
/// assistant turn (re-tokenized from the text the policy wrote, with the end-of-turn token, so
/// it is re-scored: [`Sequence::rescore`](crate::Sequence::rescore)), reward 1.
fn reflection_episode(
    ctx: &RolloutContext<'_>,
    problem: usize,
    exchange: &Exchange,
    verdict: Verdict,
    provenance: Provenance,
) -> Result<Episode> {
    let tok = ctx.tokenizer;
    let mut b = SequenceBuilder::new(tok)?;
    for m in &exchange.messages {
        b.prompt(tok, m.clone())?;
    }
    b.open(tok)?;
    let mut ids = tok.encode(&exchange.response)?;
    let end = Conversation::for_tokenizer(tok)?.turn_end_ids(tok)?;
    ids.extend(end.first().copied());
    let range = b.sampled(&ids, &vec![0.0; ids.len()])?;
    b.close(tok)?;
    let mut sequence = b.finish();
    sequence.rescore = true;
    Ok(Episode {
        problem,
        group: 0,
        sample: 0,
        sequences: vec![sequence],
        turns: vec![Turn {
            sequence: 0,
            sampled: range,
            text: exchange.response.clone(),
            finish_reason: FinishReason::Stop,
            verdict,
            reward: 1.0,
        }],
        feedback: Vec::new(),
        reward: 1.0,
        provenance,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use redraft_tokenizer::ByteTokenizer;
    use redraft_verifier::{Diagnosis, DiagnosisKind, FirstError};

    /// A base whose attempts are `texts` (each failed; the last with its first error at byte
    /// `error_at`, as step `step`).
    fn base(texts: &[&str], step: usize, error_at: usize) -> Session {
        let tok = ByteTokenizer::new();
        let mut builder = SequenceBuilder::new(&tok).unwrap();
        builder.prompt(&tok, Message::user("q")).unwrap();
        let mut session = Session::new(0, builder, stage::ATTEMPT, 0);
        for (i, text) in texts.iter().enumerate() {
            session.builder.open(&tok).unwrap();
            let ids = tok.encode(text).unwrap();
            let range = session
                .builder
                .sampled(&ids, &vec![0.0; ids.len()])
                .unwrap();
            session.builder.close(&tok).unwrap();
            let diagnosis =
                Diagnosis::new(DiagnosisKind::WrongStep, "").with_first_error(FirstError {
                    step,
                    span: error_at..error_at + 1,
                    expected: String::new(),
                    found: String::new(),
                });
            session.turns.push(Turn {
                sequence: 0,
                sampled: range,
                text: (*text).to_string(),
                finish_reason: FinishReason::Stop,
                verdict: Verdict::wrong(diagnosis),
                reward: 0.0,
            });
            if i + 1 < texts.len() {
                session
                    .builder
                    .feedback(&tok, Message::user("again"))
                    .unwrap();
            }
        }
        session
    }

    #[test]
    #[allow(clippy::single_range_in_vec_init)] // one range of ids, not a range of values
    fn the_pivot_unit_decides_what_is_kept_out_of_training() {
        let tok = ByteTokenizer::new();
        let b = base(&["a=1\nb=3", "a=1\nb=5\nc=9"], 1, 5);
        let (first, last) = (b.turns[0].sampled.clone(), b.turns[1].sampled.clone());
        // A turn pivot: the attempts before it; replayed only with `replay_to_pivot`.
        assert_eq!(
            pivot_plan(Some(Pivot::turn(1)), &b, false, &tok).unwrap(),
            (0, vec![first.clone()])
        );
        assert_eq!(
            pivot_plan(Some(Pivot::turn(1)), &b, true, &tok).unwrap(),
            (1, vec![first])
        );
        assert_eq!(
            pivot_plan(Some(Pivot::turn(0)), &b, true, &tok).unwrap(),
            (0, vec![])
        );
        // A step pivot: the verified steps of the last attempt (its first 5 bytes), never a
        // replay; step 0 verifies nothing.
        assert_eq!(
            pivot_plan(Some(Pivot::step(1)), &b, true, &tok).unwrap(),
            (0, vec![last.start..last.start + 5])
        );
        assert_eq!(
            pivot_plan(Some(Pivot::step(0)), &b, false, &tok).unwrap(),
            (0, vec![])
        );
        assert_eq!(pivot_plan(None, &b, true, &tok).unwrap(), (0, vec![]));
    }
}
