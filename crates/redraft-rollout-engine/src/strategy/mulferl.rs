//! MulFeRL: regeneration of all-failed groups with merged feedback (ALGORITHMS.md §4.2).

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use redraft_feedback_protocol::{Feedback, FeedbackRequest};
use redraft_verifier::Problem;
use serde::{Deserialize, Serialize};

use super::{
    RolloutContext, RolloutStrategy, derive_seed, first_turns, positive, sample_rng, sample_turns,
    stage,
};
use crate::episode::{
    Episode, FeedbackRecord, GroupUse, PreferencePair, Provenance, RolloutBatch, SequenceBuilder,
    StrategyKind, Turn,
};
use crate::error::Result;
use crate::prompts::regeneration_prompt;

/// Configuration of [`MulFeRl`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MulFeRlConfig {
    /// Samples per problem, in the base group and in each regeneration. Default 8.
    pub group_size: usize,
    /// Regeneration rounds R (`max_regen_turns`). Default 2.
    pub max_rounds: usize,
    /// A sample counts as solved when its reward is at least this. Default 1.0.
    pub success_threshold: f32,
    /// Start each regenerated response with the forced prefix
    /// `<thinking><feedback>{f}</feedback>` (never trained). Default true.
    pub forced_prefix: bool,
    /// Send at most this many failed responses of a group to the feedback provider. Default
    /// `None`: all of them, as the paper's group judge sees. Per-response critics (the
    /// verifier's) give one critique each and their distinct texts are joined, so a small
    /// context may need 1.
    pub feedback_per_group: Option<usize>,
}

impl Default for MulFeRlConfig {
    fn default() -> Self {
        Self {
            group_size: 8,
            max_rounds: 2,
            success_threshold: 1.0,
            forced_prefix: true,
            feedback_per_group: None,
        }
    }
}

/// How a group's rewards route it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoundDecision {
    /// Every sample solved it.
    AllSolved,
    /// Some solved it, some did not.
    Mixed,
    /// Every sample failed (or the group is empty).
    AllFailed,
}

/// Classifies a group by its rewards. The trainer-side counterpart, which also maps the class
/// and round to GRPO / pairs / regenerate / drop, is `redraft_credit_assignment::MulFeRlRouting::
/// decide` (this crate may not depend on credit assignment).
pub fn decide_round(rewards: &[f32], threshold: f32) -> RoundDecision {
    let solved = rewards.iter().filter(|r| **r >= threshold).count();
    match solved {
        0 => RoundDecision::AllFailed,
        n if n == rewards.len() => RoundDecision::AllSolved,
        _ => RoundDecision::Mixed,
    }
}

/// Drops group `g` (no usable regeneration), recording `error` on its first episode.
fn drop_group(batch: &mut RolloutBatch, g: usize, error: String) {
    batch.groups[g].usage = GroupUse::Dropped;
    if let Some(&e) = batch.groups[g].episodes.first() {
        batch.episodes[e].feedback.push(FeedbackRecord {
            turn: None,
            feedback: None,
            error: Some(error),
        });
    }
}

/// One feedback text per problem from the per-response feedback of its failed group: the text
/// when all agree (a group judge already merged them), else the distinct texts in order, one
/// per line.
fn merge_texts(feedback: &[Feedback]) -> String {
    let mut distinct: Vec<&str> = Vec::new();
    for f in feedback {
        let t = f.text.trim();
        if !t.is_empty() && !distinct.contains(&t) {
            distinct.push(t);
        }
    }
    distinct.join("\n")
}

/// MulFeRL's rollout.
///
/// The base group (`group_size` samples per problem) is classified with [`decide_round`]: all
/// solved or mixed groups are RL groups. For each all-failed problem, up to `max_rounds`
/// rounds: the failed responses of the latest group go to the feedback provider (a
/// `GroupJudge` merges them into one critique; other providers' distinct texts are joined),
/// and `group_size` regenerations are sampled from a fresh `mulferl_regen` prompt (question and
/// the merged feedback only, no history; [`TokenKind::Feedback`](crate::TokenKind::Feedback))
/// with the forced prefix as the start of the response
/// ([`TokenKind::ForcedPrefix`](crate::TokenKind::ForcedPrefix), never trainable; the verifier
/// sees prefix and sampled text, as MulFeRL's reward does). A regenerated group that is
///
/// - mixed becomes an RL group ([`GroupUse::Rl`]);
/// - all solved becomes a [`GroupUse::Preference`] group: each regeneration is `chosen` against
///   a base response (a seeded permutation of the base group) as `rejected`;
/// - all failed feeds the next round ([`GroupUse::Regenerated`]), or is [`GroupUse::Dropped`]
///   after the last round (also when no feedback could be obtained).
#[derive(Debug, Clone)]
pub struct MulFeRl {
    config: MulFeRlConfig,
}

impl MulFeRl {
    /// The strategy ([`crate::Error::InvalidParam`] for a zero group size).
    pub fn new(config: MulFeRlConfig) -> Result<Self> {
        positive("group_size", config.group_size)?;
        if let Some(n) = config.feedback_per_group {
            positive("feedback_per_group", n)?;
        }
        Ok(Self { config })
    }
}

impl RolloutStrategy for MulFeRl {
    fn kind(&self) -> StrategyKind {
        StrategyKind::Mulferl
    }

    fn sample(
        &self,
        ctx: &RolloutContext<'_>,
        problems: &[Problem],
        seed: u64,
    ) -> Result<RolloutBatch> {
        let c = &self.config;
        let base = first_turns(
            ctx,
            problems,
            seed,
            c.group_size,
            StrategyKind::Mulferl,
            0.0,
        )?;
        let mut batch = RolloutBatch::default();
        // (problem, base group, latest all-failed group)
        let mut pending = Vec::new();
        for (p, episodes) in base.into_iter().enumerate() {
            let rewards: Vec<f32> = episodes.iter().map(|e| e.reward).collect();
            let decision = decide_round(&rewards, c.success_threshold);
            let usage = match decision {
                RoundDecision::AllFailed if c.max_rounds > 0 => GroupUse::Regenerated,
                RoundDecision::AllFailed => GroupUse::Dropped,
                _ => GroupUse::Rl,
            };
            let g = batch.push_group(p, 0, usage, episodes);
            if usage == GroupUse::Regenerated {
                pending.push((p, g, g));
            }
        }
        for round in 1..=c.max_rounds {
            if pending.is_empty() {
                break;
            }
            let provider = ctx.provider("mulferl")?;
            let mut requests = Vec::new();
            let mut owner = Vec::new();
            let per_group = c.feedback_per_group.unwrap_or(usize::MAX);
            for (k, &(p, _, g)) in pending.iter().enumerate() {
                for &e in batch.groups[g].episodes.iter().take(per_group) {
                    let turn = &batch.episodes[e].turns[0];
                    requests.push(FeedbackRequest::new(
                        problems[p].clone(),
                        turn.text.clone(),
                        turn.verdict.clone(),
                    ));
                    owner.push(k);
                }
            }
            batch.stats.feedback_requests += requests.len();
            let results = provider.feedback(&requests);
            let mut per_problem: Vec<(Vec<Feedback>, Vec<String>)> =
                vec![(Vec::new(), Vec::new()); pending.len()];
            for (k, r) in owner.into_iter().zip(results) {
                match r {
                    Ok(f) => per_problem[k].0.push(f),
                    Err(e) => {
                        batch.stats.feedback_failures += 1;
                        per_problem[k].1.push(e.to_string());
                    }
                }
            }
            let mut builders = Vec::new();
            let mut rngs = Vec::new();
            let mut meta = Vec::new(); // (pending index, prefix ids, record)
            let mut regen = Vec::new(); // pending entries that regenerate
            for (k, ((oks, errs), &(p, _, g))) in per_problem.into_iter().zip(&pending).enumerate()
            {
                let merged = merge_texts(&oks);
                let Some(first) = oks.into_iter().next().filter(|_| !merged.is_empty()) else {
                    drop_group(&mut batch, g, errs.join("; "));
                    continue;
                };
                let (message, prefix) =
                    regeneration_prompt(&ctx.templates, &problems[p], &merged, c.forced_prefix)?;
                let prefix = if prefix.is_empty() {
                    Vec::new()
                } else {
                    ctx.tokenizer.encode(&prefix)?
                };
                let mut b = SequenceBuilder::new(ctx.tokenizer)?;
                b.feedback(ctx.tokenizer, message)?;
                b.open(ctx.tokenizer)?;
                if !prefix.is_empty() {
                    b.forced(&prefix)?;
                }
                // Merged critiques of a whole group can outgrow a small context: the group is
                // dropped and counted, the run goes on.
                let context = ctx.policy.max_context();
                if b.ids().len() >= context {
                    batch.stats.feedback_failures += 1;
                    tracing::warn!(
                        tokens = b.ids().len(),
                        context,
                        "MulFeRL regeneration prompt does not fit the context; group dropped"
                    );
                    let error = format!(
                        "the regeneration prompt ({} tokens) does not fit the {context}-token context",
                        b.ids().len()
                    );
                    drop_group(&mut batch, g, error);
                    continue;
                }
                let mut record = first;
                record.text = merged;
                for s in 0..c.group_size {
                    builders.push(b.clone());
                    rngs.push(sample_rng(seed, p, stage::REGEN + round as u64, s));
                    meta.push((k, prefix.clone()));
                }
                regen.push((k, record));
            }
            let mut refs: Vec<&mut SequenceBuilder> = builders.iter_mut().collect();
            let sampled = sample_turns(ctx, &mut refs, rngs)?;
            let mut new_groups: Vec<Vec<Episode>> = vec![Vec::new(); pending.len()];
            for ((b, t), (k, prefix)) in builders.iter().zip(sampled).zip(meta) {
                let (p, _, g) = pending[k];
                let mut ids = prefix;
                ids.extend_from_slice(&t.tokens);
                let text = ctx.text(&ids)?;
                let verdict = problems[p].verify(&text);
                let reward = verdict.reward;
                let record = regen.iter().find(|(j, _)| *j == k).map(|(_, r)| r.clone());
                new_groups[k].push(Episode {
                    problem: p,
                    group: 0,
                    sample: 0,
                    sequences: vec![b.finish()],
                    turns: vec![Turn {
                        sequence: 0,
                        sampled: t.range,
                        text,
                        finish_reason: t.finish_reason,
                        verdict,
                        reward,
                    }],
                    feedback: vec![FeedbackRecord {
                        turn: None,
                        feedback: record,
                        error: None,
                    }],
                    reward,
                    provenance: Provenance {
                        round: Some(round),
                        parent_group: Some(g),
                        ..Provenance::base(StrategyKind::Mulferl)
                    },
                });
            }
            let mut next = Vec::new();
            for (k, episodes) in new_groups.into_iter().enumerate() {
                if episodes.is_empty() {
                    continue;
                }
                let (p, base_group, _) = pending[k];
                let rewards: Vec<f32> = episodes.iter().map(|e| e.reward).collect();
                let decision = decide_round(&rewards, c.success_threshold);
                let usage = match decision {
                    RoundDecision::Mixed => GroupUse::Rl,
                    RoundDecision::AllSolved => GroupUse::Preference,
                    RoundDecision::AllFailed if round < c.max_rounds => GroupUse::Regenerated,
                    RoundDecision::AllFailed => GroupUse::Dropped,
                };
                let g = batch.push_group(p, round, usage, episodes);
                match usage {
                    GroupUse::Preference => {
                        let mut rejected = batch.groups[base_group].episodes.clone();
                        let mut rng =
                            ChaCha8Rng::seed_from_u64(derive_seed(seed, &[p as u64, round as u64]));
                        rejected.shuffle(&mut rng);
                        let chosen = batch.groups[g].episodes.clone();
                        for (i, chosen) in chosen.into_iter().enumerate() {
                            batch.pairs.push(PreferencePair {
                                chosen,
                                rejected: rejected[i % rejected.len()],
                            });
                        }
                    }
                    GroupUse::Regenerated => next.push((p, base_group, g)),
                    _ => {}
                }
            }
            pending = next;
        }
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions() {
        assert_eq!(decide_round(&[1.0, 1.0], 1.0), RoundDecision::AllSolved);
        assert_eq!(decide_round(&[1.0, 0.0], 1.0), RoundDecision::Mixed);
        assert_eq!(decide_round(&[0.0, 0.5], 1.0), RoundDecision::AllFailed);
        assert_eq!(decide_round(&[], 1.0), RoundDecision::AllFailed);
    }
}
