//! MulFeRL: regeneration of all-failed groups with merged feedback (docs/algorithms/mulferl.md).

use rand::SeedableRng;
use rand::seq::{SliceRandom, index};
use rand_chacha::ChaCha8Rng;
use redraft_feedback_protocol::{Feedback, FeedbackRequest, Templates};
use redraft_tokenizer::Tokenizer;
use redraft_verifier::Problem;
use serde::{Deserialize, Serialize};

use super::{
    RolloutContext, RolloutStrategy, TurnPrompt, derive_seed, first_turn_prompt, first_turns,
    positive, room, sample_rng, sample_turns, stage,
};
use crate::episode::{
    Episode, FeedbackRecord, GroupUse, PreferencePair, Provenance, RolloutBatch, SequenceBuilder,
    StrategyKind, TokenKind, Turn,
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
    /// `<thinking><feedback>{f}</feedback>` (never trained). Default true. With `false` the
    /// policy writes the prefix itself, as the prompt asks; the leading sampled tokens that
    /// copy it are then not trained either.
    pub forced_prefix: bool,
    /// Send at most this many failed responses of a group to the feedback provider, drawn at
    /// random (seeded from the rollout seed). Default `None`: all of them, as the paper's group
    /// judge sees. Per-response critics (the verifier's) give one critique each and their
    /// distinct texts are joined, so a small context may need 1.
    pub feedback_per_group: Option<usize>,
    /// How the regenerations of an all-solved round are paired with base responses. Default
    /// `permuted` (the v2 code); `index_aligned` pairs regeneration `i` with base `i` (v1).
    pub pairing: RegenPairing,
}

/// How regenerated responses are paired with the failed base responses (the released code's
/// two versions).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegenPairing {
    /// Regeneration `i` with base `perm[i mod K]`, `perm` a seeded permutation (v2, FCO).
    #[default]
    Permuted,
    /// Regeneration `i` with base `i mod K` (v1, DPO).
    IndexAligned,
}

impl Default for MulFeRlConfig {
    fn default() -> Self {
        Self {
            group_size: 8,
            max_rounds: 2,
            success_threshold: 1.0,
            forced_prefix: true,
            feedback_per_group: None,
            pairing: RegenPairing::Permuted,
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

/// Classifies a group by its rewards: the one MulFeRL routing decision (the strategy maps the
/// class and round to an RL group, preference pairs, a regeneration or a drop; the trainer only
/// reads the groups it marked).
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

/// Which of a group's `n` failed responses go to the feedback provider: all of them in order
/// when `limit >= n`, else `limit` of them drawn at random by `rng`, in group order.
fn pick_failed(n: usize, limit: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
    if limit >= n {
        return (0..n).collect();
    }
    let mut picked = index::sample(rng, n, limit).into_vec();
    picked.sort_unstable();
    picked
}

/// The base response (index into the base group of `n_base`) each of `n_regen` regenerations is
/// paired with.
fn pair_targets(
    pairing: RegenPairing,
    n_regen: usize,
    n_base: usize,
    rng: &mut ChaCha8Rng,
) -> Vec<usize> {
    let mut base: Vec<usize> = (0..n_base).collect();
    if pairing == RegenPairing::Permuted {
        base.shuffle(rng);
    }
    (0..n_regen).map(|i| base[i % n_base.max(1)]).collect()
}

/// How many leading `sampled` ids copy `prefix` (the longest common prefix of the two).
fn copied_len(sampled: &[u32], prefix: &[u32]) -> usize {
    sampled
        .iter()
        .zip(prefix)
        .take_while(|(a, b)| a == b)
        .count()
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
///   a base response as `rejected` (a seeded permutation of the base group, or index-aligned,
///   per `pairing`);
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
    fn turn_prompts(
        &self,
        tokenizer: &dyn Tokenizer,
        templates: &Templates,
        problem: &Problem,
    ) -> Result<Vec<TurnPrompt>> {
        let (message, prefix) =
            regeneration_prompt(templates, problem, "", self.config.forced_prefix)?;
        let mut b = SequenceBuilder::new(tokenizer)?;
        b.feedback(tokenizer, message)?;
        b.open(tokenizer)?;
        if !prefix.is_empty() {
            b.forced(&tokenizer.encode(&prefix)?)?;
        }
        let mut turns = vec![first_turn_prompt(tokenizer, problem)?];
        if self.config.max_rounds > 0 {
            turns.push(TurnPrompt::of(
                "the regeneration turn",
                tokenizer,
                &b,
                true,
            )?);
        }
        Ok(turns)
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
                let episodes = &batch.groups[g].episodes;
                let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(
                    seed,
                    &[p as u64, stage::REGEN + round as u64, PICK_SALT],
                ));
                for i in pick_failed(episodes.len(), per_group, &mut rng) {
                    let e = episodes[i];
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
            let mut meta = Vec::new(); // (pending index, forced prefix ids, ids a copy would have)
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
                // Without a forced prefix, the copy of it the policy writes is not trained.
                let copy = if c.forced_prefix {
                    Vec::new()
                } else {
                    ctx.tokenizer
                        .encode(&ctx.templates.forced_prefix(&merged)?)?
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
                if room(ctx, &b)? == 0 {
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
                    meta.push((k, prefix.clone(), copy.clone()));
                }
                regen.push((k, record));
            }
            let mut refs: Vec<&mut SequenceBuilder> = builders.iter_mut().collect();
            let sampled = sample_turns(ctx, &mut refs, rngs)?;
            let mut new_groups: Vec<Vec<Episode>> = vec![Vec::new(); pending.len()];
            let mut texts = Vec::with_capacity(sampled.len());
            for (t, (_, prefix, _)) in sampled.iter().zip(&meta) {
                let mut ids = prefix.clone();
                ids.extend_from_slice(&t.tokens);
                texts.push(ctx.text(&ids)?);
            }
            let items: Vec<(&Problem, &str)> = meta
                .iter()
                .zip(&texts)
                .map(|((k, ..), t)| (&problems[pending[*k].0], t.as_str()))
                .collect();
            let verdicts = ctx.verifier.verify_batch(&items);
            for (((b, t), (k, _, copy)), (text, verdict)) in builders
                .iter()
                .zip(sampled)
                .zip(meta)
                .zip(texts.into_iter().zip(verdicts))
            {
                let (p, _, g) = pending[k];
                let reward = verdict.reward;
                let record = regen.iter().find(|(j, _)| *j == k).map(|(_, r)| r.clone());
                let mut sequence = b.finish();
                let copied = t.range.start..t.range.start + copied_len(&t.tokens, &copy);
                sequence.kinds[copied.clone()].fill(TokenKind::ForcedPrefix);
                sequence.trainable_mask[copied].fill(false);
                new_groups[k].push(Episode {
                    problem: p,
                    group: 0,
                    sample: 0,
                    sequences: vec![sequence],
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
                        let base = batch.groups[base_group].episodes.clone();
                        let mut rng =
                            ChaCha8Rng::seed_from_u64(derive_seed(seed, &[p as u64, round as u64]));
                        let chosen = batch.groups[g].episodes.clone();
                        let targets = pair_targets(c.pairing, chosen.len(), base.len(), &mut rng);
                        for (chosen, j) in chosen.into_iter().zip(targets) {
                            batch.pairs.push(PreferencePair {
                                chosen,
                                rejected: base[j],
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

/// Mixed into the seed that picks the failed responses sent for feedback.
const PICK_SALT: u64 = 0x5049_434b;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_responses_for_feedback_are_picked_at_random() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        assert_eq!(pick_failed(3, usize::MAX, &mut rng), vec![0, 1, 2]);
        let picks: Vec<Vec<usize>> = (0..20)
            .map(|s| pick_failed(8, 2, &mut ChaCha8Rng::seed_from_u64(s)))
            .collect();
        assert!(
            picks
                .iter()
                .all(|p| p.len() == 2 && p[0] < p[1] && p[1] < 8)
        );
        // Not always the first ones, and reproducible from the seed.
        assert!(picks.iter().any(|p| p != &vec![0, 1]));
        assert_eq!(
            picks[3],
            pick_failed(8, 2, &mut ChaCha8Rng::seed_from_u64(3))
        );
    }

    #[test]
    fn pairing_is_index_aligned_or_a_permutation() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        assert_eq!(
            pair_targets(RegenPairing::IndexAligned, 5, 4, &mut rng),
            vec![0, 1, 2, 3, 0]
        );
        let perm = pair_targets(RegenPairing::Permuted, 8, 8, &mut rng);
        let mut sorted = perm.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..8).collect::<Vec<_>>());
        assert_ne!(perm, (0..8).collect::<Vec<_>>());
    }

    #[test]
    fn copied_feedback_is_the_common_prefix() {
        assert_eq!(copied_len(&[1, 2, 3, 9], &[1, 2, 3, 4]), 3);
        assert_eq!(copied_len(&[5, 2], &[1, 2]), 0);
        assert_eq!(copied_len(&[1, 2], &[]), 0);
        assert_eq!(copied_len(&[1, 2], &[1, 2, 3]), 2);
    }

    #[test]
    fn decisions() {
        assert_eq!(decide_round(&[1.0, 1.0], 1.0), RoundDecision::AllSolved);
        assert_eq!(decide_round(&[1.0, 0.0], 1.0), RoundDecision::Mixed);
        assert_eq!(decide_round(&[0.0, 0.5], 1.0), RoundDecision::AllFailed);
        assert_eq!(decide_round(&[], 1.0), RoundDecision::AllFailed);
    }
}
