//! Rollout strategies: how a batch of problems becomes a [`RolloutBatch`] of episodes.
//!
//! Each strategy is a [`RolloutStrategy`] selected by a [`StrategyConfig`] (serde-tagged by
//! `type`: `single_turn`, `rltf`, `r3l`, `mulferl`). All of them prompt the policy through the
//! tokenizer's chat template with [`Problem::chat`] messages, stop on the end-of-sequence token
//! and the template's end-of-turn token (`<|im_end|>` for ChatML), verify with the context's
//! [`Verifier`] (the built-in [`redraft_verifier::DefaultVerifier`] unless the run plugs in
//! another reward), and draw every sample from a generator derived from
//! `(seed, problem index, stage, sample index)`, so the same seed gives the same episodes.

mod mulferl;
mod r3l;
mod rltf;
mod single_turn;

use rand_chacha::ChaCha8Rng;
use redraft_feedback_protocol::{FeedbackProvider, Templates};
use redraft_tokenizer::{Conversation, Message, Tokenizer};
use redraft_verifier::{Problem, Verdict, Verifier};
use serde::{Deserialize, Serialize};

pub use mulferl::{MulFeRl, MulFeRlConfig, RegenPairing, RoundDecision, decide_round};
pub use r3l::{R3l, R3lConfig};
pub use rltf::{Rltf, RltfConfig};
pub use single_turn::{SingleTurn, SingleTurnConfig};

use crate::episode::{Episode, Provenance, RolloutBatch, SequenceBuilder, StrategyKind, Turn};
use crate::error::{Error, Result};
use crate::policy::{MeteredPolicy, Policy};
pub(crate) use crate::prompts::problem_messages;
use crate::sampling::{Completion, FinishReason, RowRequest, SamplingParams, row_rng};

/// What a strategy samples with: the policy, its tokenizer, how to sample, the feedback
/// provider and the prompt templates.
#[derive(Clone)]
pub struct RolloutContext<'a> {
    /// The policy every turn is sampled from. When it is a [`MeteredPolicy`], the rollout's
    /// [`RolloutStats::sampled_tokens`](crate::RolloutStats) is what the meter counted during
    /// the rollout (share the meter with a [`PolicyChat`](crate::PolicyChat) feedback provider
    /// to count the reflections it samples); otherwise a meter is put over it for the rollout.
    pub policy: &'a dyn Policy,
    /// Its tokenizer (must have a chat template).
    pub tokenizer: &'a dyn Tokenizer,
    /// Sampling parameters of every policy turn; `seed` is ignored (the rollout seed is used)
    /// and the end-of-sequence and end-of-turn tokens are added to `stop_tokens`.
    pub sampling: SamplingParams,
    /// The feedback provider: a critic or judge for RLTF and MulFeRL, a self-reflection for
    /// R^3L. Single-turn groups need none.
    pub feedback: Option<&'a dyn FeedbackProvider>,
    /// The prompt templates (revision, regeneration, forced prefix, guidance).
    pub templates: Templates,
    /// What turns responses into verdicts and rewards. Default: the built-in verifier.
    pub verifier: &'a dyn Verifier,
}

impl<'a> RolloutContext<'a> {
    /// A context without feedback provider, with the default templates.
    pub fn new(
        policy: &'a dyn Policy,
        tokenizer: &'a dyn Tokenizer,
        sampling: SamplingParams,
    ) -> Self {
        Self {
            policy,
            tokenizer,
            sampling,
            feedback: None,
            templates: Templates::new(),
            verifier: redraft_verifier::default_verifier(),
        }
    }

    /// Sets the verifier (the reward).
    pub fn with_verifier(mut self, verifier: &'a dyn Verifier) -> Self {
        self.verifier = verifier;
        self
    }

    /// Sets the feedback provider.
    pub fn with_feedback(mut self, provider: &'a dyn FeedbackProvider) -> Self {
        self.feedback = Some(provider);
        self
    }

    /// Sets the templates.
    pub fn with_templates(mut self, templates: Templates) -> Self {
        self.templates = templates;
        self
    }

    pub(crate) fn provider(&self, strategy: &'static str) -> Result<&'a dyn FeedbackProvider> {
        self.feedback.ok_or_else(|| Error::InvalidParam {
            name: "feedback",
            reason: format!("the {strategy} strategy needs a feedback provider"),
        })
    }

    /// The sampling parameters of a policy turn: `sampling` plus eos and end-of-turn stops.
    pub(crate) fn turn_params(&self) -> Result<SamplingParams> {
        let mut params = self.sampling.clone();
        params
            .stop_tokens
            .extend(Conversation::stop_ids(self.tokenizer)?);
        params.stop_tokens.sort_unstable();
        params.stop_tokens.dedup();
        params.validate()?;
        Ok(params)
    }

    /// Decodes ids as response text (special tokens skipped).
    pub(crate) fn text(&self, ids: &[u32]) -> Result<String> {
        Ok(self.tokenizer.decode(ids, true)?)
    }
}

/// A way of turning problems into episodes.
pub trait RolloutStrategy {
    /// The strategy's episodes for `problems`, with generators derived from `seed` (its
    /// `stats.sampled_tokens` is left to [`rollout`](Self::rollout)).
    fn sample(
        &self,
        ctx: &RolloutContext<'_>,
        problems: &[Problem],
        seed: u64,
    ) -> Result<RolloutBatch>;

    /// The least prompt of each kind of turn this strategy samples for `problem`: its fixed
    /// parts (the problem, the templates, the chat scaffolding) with every earlier response and
    /// every feedback text empty. Start-up checks add `max_new_tokens` and the turn end to
    /// each and refuse what can never fit the context; at run time a turn whose real prompt
    /// leaves less room is cut at the context (finish reason `length`), and one whose prompt
    /// leaves none is not sampled (each strategy says what then happens to its episode).
    ///
    /// # Errors
    /// Template or tokenizer failures.
    fn turn_prompts(
        &self,
        tokenizer: &dyn Tokenizer,
        templates: &Templates,
        problem: &Problem,
    ) -> Result<Vec<TurnPrompt>> {
        let _ = templates;
        Ok(vec![first_turn_prompt(tokenizer, problem)?])
    }

    /// Rolls out `problems` with generators derived from `seed`: [`sample`](Self::sample), with
    /// `stats.sampled_tokens` set to the completion tokens the policy's meter counted meanwhile
    /// (every decode call, wherever it was made; see [`RolloutContext::policy`]).
    fn rollout(
        &self,
        ctx: &RolloutContext<'_>,
        problems: &[Problem],
        seed: u64,
    ) -> Result<RolloutBatch> {
        if let Some(before) = ctx.policy.metered_tokens() {
            let mut batch = self.sample(ctx, problems, seed)?;
            let after = ctx.policy.metered_tokens().unwrap_or(before);
            batch.stats.sampled_tokens = after.saturating_sub(before) as usize;
            return Ok(batch);
        }
        let meter = MeteredPolicy::new(ctx.policy);
        let metered = RolloutContext {
            policy: &meter,
            ..ctx.clone()
        };
        let mut batch = self.sample(&metered, problems, seed)?;
        batch.stats.sampled_tokens = meter.sampled_tokens() as usize;
        Ok(batch)
    }
}

/// The least prompt of one kind of turn ([`RolloutStrategy::turn_prompts`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnPrompt {
    /// Which turn, in words ("the first turn", "the revision turn").
    pub turn: String,
    /// Prompt tokens at least (the open assistant turn and any forced prefix included).
    pub tokens: usize,
    /// Tokens that close the turn when sampling ends without a stop token.
    pub turn_end: usize,
    /// Whether `tokens` leaves out text only known at run time (responses, feedback).
    pub grows: bool,
}

impl TurnPrompt {
    /// The turn whose prompt `builder` holds (its assistant turn open).
    pub(crate) fn of(
        turn: impl Into<String>,
        tokenizer: &dyn Tokenizer,
        builder: &SequenceBuilder,
        grows: bool,
    ) -> Result<Self> {
        Ok(Self {
            turn: turn.into(),
            tokens: builder.ids().len(),
            turn_end: builder.conv.turn_end_ids(tokenizer)?.len(),
            grows,
        })
    }
}

/// The first turn's prompt of `problem` (its chat messages).
pub(crate) fn first_turn_prompt(
    tokenizer: &dyn Tokenizer,
    problem: &Problem,
) -> Result<TurnPrompt> {
    let mut b = SequenceBuilder::new(tokenizer)?;
    for m in problem_messages(problem) {
        b.prompt(tokenizer, m)?;
    }
    b.open(tokenizer)?;
    TurnPrompt::of("the first turn", tokenizer, &b, false)
}

/// New tokens the open turn of `builder` may still take within the policy's context, keeping
/// room for the tokens that close it: 0 when its prompt leaves none (the turn cannot be
/// sampled, and the strategy ends the episode before it).
pub(crate) fn room(ctx: &RolloutContext<'_>, builder: &SequenceBuilder) -> Result<usize> {
    let closing = builder.conv.turn_end_ids(ctx.tokenizer)?.len();
    Ok(ctx
        .policy
        .max_context()
        .saturating_sub(builder.ids().len() + closing))
}

/// The configuration of a strategy, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StrategyConfig {
    /// Single-turn groups (RLVR).
    SingleTurn(SingleTurnConfig),
    /// RLTF two-turn critique and revision.
    Rltf(RltfConfig),
    /// R^3L reflect-then-retry.
    R3l(R3lConfig),
    /// MulFeRL regeneration of all-failed groups.
    Mulferl(MulFeRlConfig),
}

impl Default for StrategyConfig {
    fn default() -> Self {
        Self::SingleTurn(SingleTurnConfig::default())
    }
}

impl StrategyConfig {
    /// The strategy.
    pub fn build(&self) -> Result<Box<dyn RolloutStrategy>> {
        Ok(match self {
            Self::SingleTurn(c) => Box::new(SingleTurn::new(c.clone())?),
            Self::Rltf(c) => Box::new(Rltf::new(c.clone())?),
            Self::R3l(c) => Box::new(R3l::new(c.clone())?),
            Self::Mulferl(c) => Box::new(MulFeRl::new(c.clone())?),
        })
    }
}

pub(crate) fn positive(name: &'static str, value: usize) -> Result<()> {
    if value == 0 {
        return Err(Error::InvalidParam {
            name,
            reason: "must be at least 1".into(),
        });
    }
    Ok(())
}

/// Stages of a rollout, mixed into the seed of each generator.
pub(crate) mod stage {
    /// Base samples / first turns.
    pub(crate) const BASE: u64 = 0;
    /// RLTF's revision turn.
    pub(crate) const REVISION: u64 = 1;
    /// MulFeRL regeneration round `r` uses `REGEN + r`.
    pub(crate) const REGEN: u64 = 100;
    /// R^3L's retry (attempt `a` uses `RETRY + a`; base attempts use `BASE + 10 + a`).
    pub(crate) const RETRY: u64 = 200;
    /// R^3L's base attempts.
    pub(crate) const ATTEMPT: u64 = 10;
}

/// SplitMix64 step.
fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A seed derived from `seed` and `parts` (a SplitMix64 chain): independent streams for the
/// parts of a run (steps, stages, samples) from one configured seed.
pub fn derive_seed(seed: u64, parts: &[u64]) -> u64 {
    parts
        .iter()
        .fold(splitmix(seed), |acc, p| splitmix(acc ^ splitmix(*p)))
}

/// The generator of sample `sample` of problem `problem` at `stage`.
pub(crate) fn sample_rng(seed: u64, problem: usize, stage: u64, sample: usize) -> ChaCha8Rng {
    row_rng(derive_seed(seed, &[problem as u64, stage]), sample)
}

/// A sequence holding `messages` as prompt and an open assistant turn.
pub(crate) fn prompt_sequence(
    ctx: &RolloutContext<'_>,
    messages: &[Message],
) -> Result<SequenceBuilder> {
    let mut b = SequenceBuilder::new(ctx.tokenizer)?;
    for m in messages {
        b.prompt(ctx.tokenizer, m.clone())?;
    }
    b.open(ctx.tokenizer)?;
    Ok(b)
}

/// One sampled turn, already appended to its sequence.
#[derive(Debug, Clone)]
pub(crate) struct SampledTurn {
    /// The sampled ids' range in the sequence.
    pub(crate) range: std::ops::Range<usize>,
    /// The sampled ids.
    pub(crate) tokens: Vec<u32>,
    /// Why sampling stopped.
    pub(crate) finish_reason: FinishReason,
}

/// Samples one turn for each builder (each with an open assistant turn, possibly holding a
/// forced prefix), appends the sampled ids and closes the turns.
pub(crate) fn sample_turns(
    ctx: &RolloutContext<'_>,
    builders: &mut [&mut SequenceBuilder],
    rngs: Vec<ChaCha8Rng>,
) -> Result<Vec<SampledTurn>> {
    if builders.is_empty() {
        return Ok(Vec::new());
    }
    let params = ctx.turn_params()?;
    // Each turn takes at most what its context has left once closed (finish reason `length`);
    // a turn with no room is not sent to the policy at all.
    let mut rows = Vec::with_capacity(builders.len());
    let mut sent = Vec::with_capacity(builders.len());
    for (b, rng) in builders.iter().zip(rngs) {
        let room = room(ctx, b)?;
        sent.push(room > 0);
        if room > 0 {
            let mut params = params.clone();
            params.max_new_tokens = params.max_new_tokens.min(room);
            rows.push(RowRequest {
                prompt: b.ids().to_vec(),
                params,
                rng,
            });
        }
    }
    let mut returned = if rows.is_empty() {
        Vec::new()
    } else {
        ctx.policy.generate(rows, &|_, _| false)?
    }
    .into_iter();
    let completions = sent
        .into_iter()
        .map(|sent| if sent { returned.next() } else { None });
    let mut out = Vec::with_capacity(builders.len());
    for (b, c) in builders.iter_mut().zip(completions) {
        let c = c.unwrap_or(Completion {
            tokens: Vec::new(),
            logprobs: Vec::new(),
            finish_reason: FinishReason::Length,
            top_logprobs: Vec::new(),
        });
        let range = b.sampled(&c.tokens, &c.logprobs)?;
        b.close(ctx.tokenizer)?;
        out.push(SampledTurn {
            range,
            tokens: c.tokens,
            finish_reason: c.finish_reason,
        });
    }
    Ok(out)
}

/// The reward of a verdict with a format penalty: `reward - penalty * (1 - format_ok)` (RLTF's
/// `0.1 * (format_ok - 1) + correct` with penalty 0.1).
pub(crate) fn shaped_reward(verdict: &Verdict, format_penalty: f32) -> f32 {
    if verdict.format_ok {
        verdict.reward
    } else {
        verdict.reward - format_penalty
    }
}

/// First-turn episodes: `group_size` samples per problem, verified; one inner vector per
/// problem. `group` and `sample` are set when the episodes are pushed into a batch.
pub(crate) fn first_turns(
    ctx: &RolloutContext<'_>,
    problems: &[Problem],
    seed: u64,
    group_size: usize,
    strategy: StrategyKind,
    format_penalty: f32,
) -> Result<Vec<Vec<Episode>>> {
    let mut builders = Vec::with_capacity(problems.len() * group_size);
    let mut rngs = Vec::with_capacity(builders.capacity());
    for (p, problem) in problems.iter().enumerate() {
        let messages = problem_messages(problem);
        let b = prompt_sequence(ctx, &messages)?;
        for s in 0..group_size {
            builders.push(b.clone());
            rngs.push(sample_rng(seed, p, stage::BASE, s));
        }
    }
    let mut refs: Vec<&mut SequenceBuilder> = builders.iter_mut().collect();
    let sampled = sample_turns(ctx, &mut refs, rngs)?;
    let texts = sampled
        .iter()
        .map(|t| ctx.text(&t.tokens))
        .collect::<Result<Vec<_>>>()?;
    let items: Vec<(&Problem, &str)> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| (&problems[i / group_size], t.as_str()))
        .collect();
    let verdicts = ctx.verifier.verify_batch(&items);
    let mut out: Vec<Vec<Episode>> = (0..problems.len()).map(|_| Vec::new()).collect();
    for (i, ((b, t), (text, verdict))) in builders
        .iter()
        .zip(sampled)
        .zip(texts.into_iter().zip(verdicts))
        .enumerate()
    {
        let p = i / group_size;
        let reward = shaped_reward(&verdict, format_penalty);
        out[p].push(Episode {
            problem: p,
            group: 0,
            sample: i % group_size,
            sequences: vec![b.finish()],
            turns: vec![Turn {
                sequence: 0,
                sampled: t.range,
                text,
                finish_reason: t.finish_reason,
                verdict,
                reward,
            }],
            feedback: Vec::new(),
            reward,
            provenance: Provenance::base(strategy),
        });
    }
    Ok(out)
}
