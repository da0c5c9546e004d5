//! Episodes: what a rollout strategy hands to the trainer.
//!
//! An [`Episode`] is one trajectory for one problem: one or more token [`Sequence`]s (a
//! sequence is one model context: RLTF's revision is a fresh prompt, so an RLTF episode has two),
//! the [`Turn`]s sampled in them with their verdicts and rewards, the feedback that was given,
//! and its [`Provenance`]. Every sequence is built through a
//! [`Conversation`](redraft_tokenizer::Conversation): ids are only ever appended, sampled ids are
//! kept verbatim, and nothing is re-tokenized.

use std::ops::Range;

use redraft_feedback_protocol::Feedback;
use redraft_tokenizer::{Conversation, Message, Span, SpanKind, Tokenizer};
use redraft_verifier::Verdict;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::sampling::FinishReason;

/// What a token of a [`Sequence`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// System or user prompt text (the problem, R^3L's guidance system message).
    Prompt,
    /// Chat-template scaffolding: generation prompts and turn ends.
    Template,
    /// A message carrying feedback (a critique, RLTF's revision prompt, R^3L's retry message).
    Feedback,
    /// A response prefix the engine forced (MulFeRL's copied feedback), not sampled.
    ForcedPrefix,
    /// Policy-sampled tokens of an earlier episode replayed verbatim (R^3L's retry before the
    /// pivot): context here, trained (if at all) in the episode that sampled them.
    Replayed,
    /// Tokens the policy sampled in this episode: the only trainable kind.
    Sampled,
}

/// One model context: ids with per-token kinds, the conversation spans (roles), log-probs and
/// the trainable mask.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sequence {
    /// All ids.
    pub ids: Vec<u32>,
    /// One kind per id.
    pub kinds: Vec<TokenKind>,
    /// The conversation's spans (with the role of the message each run belongs to).
    pub spans: Vec<Span>,
    /// One per id: the sampling log-probability for sampled and replayed ids, 0 elsewhere.
    pub logprobs: Vec<f32>,
    /// One per id: true exactly for [`TokenKind::Sampled`] ids.
    pub trainable_mask: Vec<bool>,
    /// The messages (closed sampled turns as assistant messages).
    pub messages: Vec<Message>,
    /// Sampled ids the strategy keeps out of training: R^3L's pivotal credit, the prefix of a
    /// retried base before its pivot (docs/algorithms/r3l.md). Empty for other strategies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub untrained: Vec<Range<usize>>,
    /// Whether `logprobs` were computed under another context than this sequence's (R^3L's
    /// distilled copies, re-tokenized reflections): the trainer re-scores the sequence.
    #[serde(default)]
    pub rescore: bool,
}

impl Sequence {
    /// The sampled ids, in order.
    pub fn sampled_ids(&self) -> Vec<u32> {
        self.ids
            .iter()
            .zip(&self.trainable_mask)
            .filter(|(_, m)| **m)
            .map(|(id, _)| *id)
            .collect()
    }

    /// The ids to train: [`trainable_mask`](Self::trainable_mask) less the
    /// [`untrained`](Self::untrained) ranges.
    pub fn credit_mask(&self) -> Vec<bool> {
        let mut mask = self.trainable_mask.clone();
        for r in &self.untrained {
            let end = r.end.min(mask.len());
            mask[r.start.min(end)..end].fill(false);
        }
        mask
    }

    /// Number of ids before the first sampled one (the prompt length).
    pub fn prompt_len(&self) -> usize {
        self.trainable_mask
            .iter()
            .position(|m| *m)
            .unwrap_or(self.ids.len())
    }
}

/// One sampled response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Turn {
    /// Index of the sequence in [`Episode::sequences`].
    pub sequence: usize,
    /// The sampled ids of the turn in that sequence (a forced prefix is not part of it).
    pub sampled: Range<usize>,
    /// The response text the verifier saw (forced prefix included, special tokens skipped).
    pub text: String,
    /// Why sampling stopped.
    pub finish_reason: FinishReason,
    /// The verifier's verdict.
    pub verdict: Verdict,
    /// The turn's reward (the verdict's reward, shaped by the strategy).
    pub reward: f32,
}

/// Feedback given during an episode (or its failure).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedbackRecord {
    /// The turn the feedback is about (index into [`Episode::turns`]; for MulFeRL's group
    /// feedback, `None`: it is about the previous round's group).
    pub turn: Option<usize>,
    /// The feedback, when the provider produced it.
    pub feedback: Option<Feedback>,
    /// The provider's error, when it failed.
    pub error: Option<String>,
}

/// Which strategy produced an episode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StrategyKind {
    /// Single-turn groups (RLVR).
    SingleTurn,
    /// RLTF two-turn critique and revision.
    Rltf,
    /// R^3L reflect-then-retry.
    R3l,
    /// MulFeRL group regeneration.
    Mulferl,
}

/// Where an episode came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    /// The strategy.
    pub strategy: StrategyKind,
    /// For a retry, the index (in [`RolloutBatch::episodes`]) of the base trajectory.
    pub base: Option<usize>,
    /// For a retry, the turn it restarts from.
    pub pivot: Option<usize>,
    /// For a regeneration, its round (1-based; base rollouts have `None`).
    pub round: Option<usize>,
    /// Whether this is a context-distilled copy (guidance removed).
    pub distilled: bool,
    /// For a regeneration, the group (index into [`RolloutBatch::groups`]) whose failures the
    /// feedback was about.
    pub parent_group: Option<usize>,
    /// Whether this is the policy's reflection on the base episode (R^3L's auxiliary SFT item).
    #[serde(default)]
    pub reflection: bool,
    /// Prompt tokens whose keys and values were reused from an earlier episode's KV cache
    /// instead of being recomputed (0 at present: R^3L's batched retries prefill their
    /// replayed prefix again).
    pub reused_prefix_tokens: usize,
}

impl Provenance {
    /// A base rollout of `strategy`.
    pub fn base(strategy: StrategyKind) -> Self {
        Self {
            strategy,
            base: None,
            pivot: None,
            round: None,
            distilled: false,
            parent_group: None,
            reflection: false,
            reused_prefix_tokens: 0,
        }
    }
}

/// One trajectory for one problem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Episode {
    /// Index of the problem in the rollout's problem list.
    pub problem: usize,
    /// The group (index into [`RolloutBatch::groups`]) the episode belongs to.
    pub group: usize,
    /// Index of the episode within its group.
    pub sample: usize,
    /// The model contexts.
    pub sequences: Vec<Sequence>,
    /// The sampled turns, in order.
    pub turns: Vec<Turn>,
    /// Feedback given during (or for) the episode.
    pub feedback: Vec<FeedbackRecord>,
    /// The episode's reward (see each strategy for how turns combine).
    pub reward: f32,
    /// Where it came from.
    pub provenance: Provenance,
}

impl Episode {
    /// Per-turn rewards.
    pub fn turn_rewards(&self) -> Vec<f32> {
        self.turns.iter().map(|t| t.reward).collect()
    }

    /// Whether any turn was verified correct.
    pub fn solved(&self) -> bool {
        self.turns.iter().any(|t| t.verdict.correct)
    }
}

/// What the trainer should do with a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupUse {
    /// A group-relative RL group.
    Rl,
    /// Members are the chosen side of [`RolloutBatch::pairs`] (MulFeRL's all-solved regeneration).
    Preference,
    /// All failed; superseded by a regeneration round (no gradient of its own).
    Regenerated,
    /// All failed after the last round: no gradient.
    Dropped,
    /// Auxiliary supervised examples (R^3L's guided retries), advantage 1.
    Sft,
    /// Kept for the record, no gradient (R^3L's guided retries that did not improve).
    Unused,
}

/// A group of episodes for one problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// Index of the problem.
    pub problem: usize,
    /// Indices of the member episodes in [`RolloutBatch::episodes`].
    pub episodes: Vec<usize>,
    /// Regeneration round (0 for base groups).
    pub round: usize,
    /// How the trainer uses it.
    pub usage: GroupUse,
}

/// A preference pair of episodes (MulFeRL's cross-turn pairs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreferencePair {
    /// The preferred episode (a regeneration, scored under its regeneration prompt).
    pub chosen: usize,
    /// The rejected episode (a base response, scored under the original prompt).
    pub rejected: usize,
}

/// Counters of a rollout.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutStats {
    /// Sampled turns.
    pub turns: usize,
    /// Completion tokens the policy sampled during the rollout, each counted once wherever it
    /// was sampled (turns, retries, reflections sampled by the policy through a shared meter):
    /// set by [`RolloutStrategy::rollout`](crate::RolloutStrategy::rollout) from the policy's
    /// meter, never from the episodes (a distilled copy re-expresses tokens sampled once).
    pub sampled_tokens: usize,
    /// Feedback requests sent.
    pub feedback_requests: usize,
    /// Feedback requests that failed.
    pub feedback_failures: usize,
    /// Self-reflections whose report was invalid (no retry).
    pub invalid_reflections: usize,
    /// Prompt tokens reused from a KV cache instead of recomputed (0 at present).
    pub reused_prefix_tokens: usize,
}

/// The result of a rollout.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RolloutBatch {
    /// All episodes.
    pub episodes: Vec<Episode>,
    /// Groups of episodes.
    pub groups: Vec<Group>,
    /// Preference pairs.
    pub pairs: Vec<PreferencePair>,
    /// Counters.
    pub stats: RolloutStats,
}

impl RolloutBatch {
    /// Appends a group of episodes, setting their `group` and `sample` fields; returns the
    /// group's index.
    pub fn push_group(
        &mut self,
        problem: usize,
        round: usize,
        usage: GroupUse,
        episodes: Vec<Episode>,
    ) -> usize {
        let id = self.groups.len();
        let start = self.episodes.len();
        for (i, mut e) in episodes.into_iter().enumerate() {
            e.group = id;
            e.sample = i;
            self.stats.turns += e.turns.len();
            self.stats.reused_prefix_tokens += e.provenance.reused_prefix_tokens;
            self.episodes.push(e);
        }
        self.groups.push(Group {
            problem,
            episodes: (start..self.episodes.len()).collect(),
            round,
            usage,
        });
        id
    }
}

/// Builds a [`Sequence`] on a [`Conversation`], remembering which messages are feedback, which
/// ids were forced or replayed, and the log-probs of sampled ids.
#[derive(Debug, Clone)]
pub(crate) struct SequenceBuilder {
    pub(crate) conv: Conversation,
    feedback_messages: Vec<usize>,
    forced: Vec<Range<usize>>,
    replayed: Vec<Range<usize>>,
    logprobs: Vec<(usize, Vec<f32>)>,
}

impl SequenceBuilder {
    /// An empty sequence with the tokenizer's chat template.
    pub(crate) fn new(tokenizer: &dyn Tokenizer) -> Result<Self> {
        Ok(Self {
            conv: Conversation::for_tokenizer(tokenizer)?,
            feedback_messages: Vec::new(),
            forced: Vec::new(),
            replayed: Vec::new(),
            logprobs: Vec::new(),
        })
    }

    /// Appends a prompt message.
    pub(crate) fn prompt(&mut self, tokenizer: &dyn Tokenizer, message: Message) -> Result<()> {
        self.conv.push_message(tokenizer, message)?;
        Ok(())
    }

    /// Appends a feedback message.
    pub(crate) fn feedback(&mut self, tokenizer: &dyn Tokenizer, message: Message) -> Result<()> {
        self.conv.push_message(tokenizer, message)?;
        // Closing an open turn first adds the assistant message: the feedback is the last one.
        self.feedback_messages.push(self.conv.messages().len() - 1);
        Ok(())
    }

    /// Opens an assistant turn.
    pub(crate) fn open(&mut self, tokenizer: &dyn Tokenizer) -> Result<()> {
        self.conv.open_assistant_turn(tokenizer)?;
        Ok(())
    }

    /// Appends forced (not sampled) ids to the open turn.
    pub(crate) fn forced(&mut self, ids: &[u32]) -> Result<()> {
        let r = self.conv.push_sampled(ids)?;
        self.forced.push(r);
        Ok(())
    }

    /// Appends ids sampled in an earlier episode, verbatim, to the open turn.
    pub(crate) fn replayed(&mut self, ids: &[u32], logprobs: &[f32]) -> Result<()> {
        let r = self.conv.push_sampled(ids)?;
        self.logprobs.push((r.start, logprobs.to_vec()));
        self.replayed.push(r);
        Ok(())
    }

    /// Appends sampled ids with their log-probs to the open turn; returns their range.
    pub(crate) fn sampled(&mut self, ids: &[u32], logprobs: &[f32]) -> Result<Range<usize>> {
        let r = self.conv.push_sampled(ids)?;
        self.logprobs.push((r.start, logprobs.to_vec()));
        Ok(r)
    }

    /// Closes the open turn.
    pub(crate) fn close(&mut self, tokenizer: &dyn Tokenizer) -> Result<()> {
        self.conv.close_turn(tokenizer)?;
        Ok(())
    }

    /// The ids so far.
    pub(crate) fn ids(&self) -> &[u32] {
        self.conv.ids()
    }

    /// The finished sequence.
    pub(crate) fn finish(&self) -> Sequence {
        let transcript = self.conv.transcript();
        let n = transcript.ids.len();
        let mut kinds = vec![TokenKind::Prompt; n];
        for span in &transcript.spans {
            let kind = match span.kind {
                SpanKind::Message if self.feedback_messages.contains(&span.message) => {
                    TokenKind::Feedback
                }
                SpanKind::Message => TokenKind::Prompt,
                SpanKind::GenerationPrompt | SpanKind::TurnEnd => TokenKind::Template,
                SpanKind::Sampled => TokenKind::Sampled,
            };
            kinds[span.range()].fill(kind);
        }
        for r in &self.forced {
            kinds[r.clone()].fill(TokenKind::ForcedPrefix);
        }
        for r in &self.replayed {
            kinds[r.clone()].fill(TokenKind::Replayed);
        }
        let mut logprobs = vec![0.0; n];
        for (start, lp) in &self.logprobs {
            logprobs[*start..*start + lp.len()].copy_from_slice(lp);
        }
        let trainable_mask = kinds.iter().map(|k| *k == TokenKind::Sampled).collect();
        Sequence {
            ids: transcript.ids,
            kinds,
            spans: transcript.spans,
            logprobs,
            trainable_mask,
            messages: transcript.messages,
            untrained: Vec::new(),
            rescore: false,
        }
    }
}
