//! RLTF two-turn rollouts: a first attempt; on failure a critique from the feedback provider and
//! a revision turn prompted by RLTF's revision template (docs/algorithms/rltf.md).

use redraft_feedback_protocol::{FeedbackRequest, Templates};
use redraft_tokenizer::Tokenizer;
use redraft_verifier::Problem;
use serde::{Deserialize, Serialize};

use super::{
    RolloutContext, RolloutStrategy, TurnPrompt, first_turn_prompt, first_turns, positive, room,
    sample_rng, sample_turns, shaped_reward, stage,
};
use crate::episode::{FeedbackRecord, GroupUse, RolloutBatch, SequenceBuilder, StrategyKind, Turn};
use crate::error::Result;
use crate::prompts::revision_message;

/// Configuration of [`Rltf`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RltfConfig {
    /// Episodes per problem. Default 8.
    pub group_size: usize,
    /// End an episode after a correct first attempt (no critique, no second turn). Default
    /// true.
    pub early_termination: bool,
    /// Whether the critic may see the reference answer (RLTF's math judge does). Default true.
    /// Seeing is not revealing: the verifier critic states it only with `reveal_answer = true`,
    /// and the judge is told not to.
    pub allow_reference: bool,
    /// Reward penalty for a response without a parsable answer: a turn's reward is
    /// `reward - format_penalty * (1 - format_ok)`. Default 0.1 (RLTF's `reward_y1`).
    pub format_penalty: f32,
}

impl Default for RltfConfig {
    fn default() -> Self {
        Self {
            group_size: 8,
            early_termination: true,
            allow_reference: true,
            format_penalty: 0.1,
        }
    }
}

/// RLTF's critique-and-revision episodes.
///
/// Turn 0 is the problem's chat prompt. Each failed first attempt (every attempt without
/// early termination) is sent to the feedback provider; with a critique `c0`, turn 1 is sampled
/// from a *fresh* single user message rendered by the `rltf_revision` template (question,
/// previous solution, critique), kept as the episode's second [`Sequence`](crate::Sequence)
/// whose prompt tokens are [`TokenKind::Feedback`](crate::TokenKind::Feedback). A failed
/// provider call is recorded on the episode, which then ends after turn 0; so is a critique
/// whose revision prompt leaves no room in the context (a revision that outgrows it is cut,
/// finish reason `length`). The episode reward is
/// the last turn's reward; per-turn rewards are on the turns.
#[derive(Debug, Clone)]
pub struct Rltf {
    config: RltfConfig,
}

impl Rltf {
    /// The strategy ([`crate::Error::InvalidParam`] for a zero group size).
    pub fn new(config: RltfConfig) -> Result<Self> {
        positive("group_size", config.group_size)?;
        Ok(Self { config })
    }
}

impl RolloutStrategy for Rltf {
    fn turn_prompts(
        &self,
        tokenizer: &dyn Tokenizer,
        templates: &Templates,
        problem: &Problem,
    ) -> Result<Vec<TurnPrompt>> {
        let mut b = SequenceBuilder::new(tokenizer)?;
        b.feedback(tokenizer, revision_message(templates, problem, "", "")?)?;
        b.open(tokenizer)?;
        Ok(vec![
            first_turn_prompt(tokenizer, problem)?,
            TurnPrompt::of("the revision turn", tokenizer, &b, true)?,
        ])
    }

    fn sample(
        &self,
        ctx: &RolloutContext<'_>,
        problems: &[Problem],
        seed: u64,
    ) -> Result<RolloutBatch> {
        let provider = ctx.provider("rltf")?;
        let c = &self.config;
        let mut groups = first_turns(
            ctx,
            problems,
            seed,
            c.group_size,
            StrategyKind::Rltf,
            c.format_penalty,
        )?;
        // (problem, sample) of every episode that gets a critique.
        let mut targets = Vec::new();
        let mut requests = Vec::new();
        for (p, episodes) in groups.iter().enumerate() {
            for (s, e) in episodes.iter().enumerate() {
                let first = &e.turns[0];
                if c.early_termination && first.verdict.correct {
                    continue;
                }
                targets.push((p, s));
                requests.push(
                    FeedbackRequest::new(
                        problems[p].clone(),
                        first.text.clone(),
                        first.verdict.clone(),
                    )
                    .with_reference(c.allow_reference),
                );
            }
        }
        let stats_requests = requests.len();
        let mut stats_failures = 0;
        let feedback = if requests.is_empty() {
            Vec::new()
        } else {
            provider.feedback(&requests)
        };
        let mut builders = Vec::new();
        let mut revised = Vec::new();
        let mut rngs = Vec::new();
        for ((p, s), (request, fb)) in targets.into_iter().zip(requests.iter().zip(feedback)) {
            let episode = &mut groups[p][s];
            match fb {
                Ok(fb) => {
                    let message = revision_message(
                        &ctx.templates,
                        &problems[p],
                        &request.response,
                        &fb.text,
                    )?;
                    let mut b = SequenceBuilder::new(ctx.tokenizer)?;
                    b.feedback(ctx.tokenizer, message)?;
                    b.open(ctx.tokenizer)?;
                    // A critique that leaves the revision no room in the context: the episode
                    // ends after turn 0, as when no critique came (counted, recorded).
                    if room(ctx, &b)? == 0 {
                        stats_failures += 1;
                        let error = format!(
                            "the revision prompt ({} tokens) does not fit the {}-token context",
                            b.ids().len(),
                            ctx.policy.max_context()
                        );
                        tracing::warn!("{error}; the episode ends after its first turn");
                        episode.feedback.push(FeedbackRecord {
                            turn: Some(0),
                            feedback: Some(fb),
                            error: Some(error),
                        });
                        continue;
                    }
                    builders.push(b);
                    revised.push((p, s));
                    rngs.push(sample_rng(seed, p, stage::REVISION, s));
                    episode.feedback.push(FeedbackRecord {
                        turn: Some(0),
                        feedback: Some(fb),
                        error: None,
                    });
                }
                Err(e) => {
                    stats_failures += 1;
                    episode.feedback.push(FeedbackRecord {
                        turn: Some(0),
                        feedback: None,
                        error: Some(e.to_string()),
                    });
                }
            }
        }
        let mut refs: Vec<&mut SequenceBuilder> = builders.iter_mut().collect();
        let sampled = sample_turns(ctx, &mut refs, rngs)?;
        let texts = sampled
            .iter()
            .map(|t| ctx.text(&t.tokens))
            .collect::<Result<Vec<_>>>()?;
        let items: Vec<(&Problem, &str)> = revised
            .iter()
            .zip(&texts)
            .map(|(&(p, _), t)| (&problems[p], t.as_str()))
            .collect();
        let verdicts = ctx.verifier.verify_batch(&items);
        for (((b, t), (p, s)), (text, verdict)) in builders
            .iter()
            .zip(sampled)
            .zip(revised)
            .zip(texts.into_iter().zip(verdicts))
        {
            let reward = shaped_reward(&verdict, c.format_penalty);
            let episode = &mut groups[p][s];
            episode.sequences.push(b.finish());
            episode.turns.push(Turn {
                sequence: 1,
                sampled: t.range,
                text,
                finish_reason: t.finish_reason,
                verdict,
                reward,
            });
            episode.reward = reward;
        }
        let mut batch = RolloutBatch::default();
        for (p, episodes) in groups.into_iter().enumerate() {
            batch.push_group(p, 0, GroupUse::Rl, episodes);
        }
        batch.stats.feedback_requests = stats_requests;
        batch.stats.feedback_failures = stats_failures;
        Ok(batch)
    }
}
