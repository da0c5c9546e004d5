//! MulFeRL (Li et al. 2026, arXiv 2601.22900; ALGORITHMS.md §4.2): routing of base and
//! regenerated groups into GRPO groups and cross-turn preference pairs.
//!
//! Everything works on indices, so the rollout engine can apply it to its own episodes:
//! a response is named by `(prompt, round, index)` where round 0 is the base group and round
//! `r ≥ 1` the r-th regeneration.
//!
//! Procedure (code `ray_trainer.py::_collect_multiturn_regen_batches`):
//!
//! ```text
//! round 0 (base, K samples):  all-success or mixed → GRPO group
//!                             all-failure          → regenerate with feedback
//! round r ≥ 1 (K regens):     all-success → K preference pairs (chosen = regen, rejected = base)
//!                             mixed       → GRPO group of the regen responses only
//!                             all-failure → regenerate again if r < max_regen_turns, else drop
//! ```
//!
//! The rejected side always comes from the round-0 base group, also for round-2 successes
//! (ALGORITHMS.md §6 MulFeRL 3).

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, check_finite};

/// How the rewards of one group split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupOutcome {
    /// Every response is a success.
    AllSuccess,
    /// At least one success and one failure.
    Mixed,
    /// No response is a success.
    AllFailure,
}

/// Classifies a group: a response is a success iff `reward ≥ success_threshold`. MulFeRL's
/// rewards are binary {0, 1} and the threshold 1, which reproduces the code's all-1 / all-0
/// tests.
///
/// # Errors
/// [`Error::Empty`] for an empty group, [`Error::NonFinite`] for a bad reward.
pub fn classify_group(rewards: &[f32], success_threshold: f32) -> Result<GroupOutcome> {
    crate::advantage::check_group(rewards)?;
    let n_ok = rewards.iter().filter(|&&r| r >= success_threshold).count();
    Ok(if n_ok == rewards.len() {
        GroupOutcome::AllSuccess
    } else if n_ok == 0 {
        GroupOutcome::AllFailure
    } else {
        GroupOutcome::Mixed
    })
}

/// How regenerated responses are paired with base responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Pairing {
    /// v1 code (DPO): regen `i` with base `i`, `min(K_regen, K_base)` pairs.
    IndexAligned,
    /// v2 code (FCO): regen `i` with base `perm[i]`, `perm` a random permutation of the base
    /// indices. Here the permutation is seeded: ChaCha8 from `seed`, stream = prompt index, so
    /// it is reproducible and independent of the order prompts are routed in.
    Permuted {
        /// Seed of the permutation.
        #[serde(default)]
        seed: u64,
    },
}

impl Default for Pairing {
    /// `Permuted { seed: 0 }`: the v2 code, the latest release.
    fn default() -> Self {
        Self::Permuted { seed: 0 }
    }
}

impl Pairing {
    /// `(regen index, base index)` pairs for one prompt.
    pub fn pair_indices(
        &self,
        prompt: usize,
        n_regen: usize,
        n_base: usize,
    ) -> Vec<(usize, usize)> {
        let mut base: Vec<usize> = (0..n_base).collect();
        if let Self::Permuted { seed } = *self {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(prompt as u64);
            base.shuffle(&mut rng);
        }
        (0..n_regen).zip(base).collect()
    }
}

/// What to do with a prompt after a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoundDecision {
    /// This round's responses form a GRPO group.
    Grpo,
    /// This round's responses become chosen sides of preference pairs against the base group.
    Pairs,
    /// Collect feedback on this round's failures and regenerate.
    Regenerate,
    /// All failed after the last allowed round: no gradient from this prompt.
    Drop,
}

/// MulFeRL routing settings. Defaults: 2 regeneration turns, success threshold 1.0, v2
/// pairing.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MulFeRlRouting {
    /// Maximum regeneration rounds after the base round (`max_regen_turns`, 2).
    #[serde(default = "default_turns")]
    pub max_regen_turns: usize,
    /// A reward at or above this is a success. Default 1.0.
    #[serde(default = "default_threshold")]
    pub success_threshold: f32,
    /// Pairing of regen and base responses. Default v2 (seeded permutation).
    #[serde(default)]
    pub pairing: Pairing,
}

fn default_turns() -> usize {
    2
}
fn default_threshold() -> f32 {
    1.0
}

impl Default for MulFeRlRouting {
    fn default() -> Self {
        Self {
            max_regen_turns: 2,
            success_threshold: 1.0,
            pairing: Pairing::default(),
        }
    }
}

/// A response: `round` 0 is the base group, `r ≥ 1` the r-th regeneration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ResponseRef {
    /// Prompt index (position in the input).
    pub prompt: usize,
    /// Round.
    pub round: usize,
    /// Index within the round's group.
    pub index: usize,
}

/// A GRPO group: all responses of one round of one prompt (uid = the prompt).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrpoGroup {
    /// Prompt index.
    pub prompt: usize,
    /// Round the responses come from (0 = base; regen responses are trained under their
    /// regen prompt).
    pub round: usize,
    /// Number of responses (indices `0..len` of that round).
    pub len: usize,
}

/// A cross-turn preference pair (DPO in v1, FCO in v2): chosen = a regen response scored under
/// its regen prompt, rejected = a base response scored under the original prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreferencePair {
    /// The regenerated, successful response.
    pub chosen: ResponseRef,
    /// The base (round-0), failed response.
    pub rejected: ResponseRef,
}

/// Rewards of one prompt's rounds: the base group and each regeneration round run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptRounds {
    /// Round 0 rewards (K base responses).
    pub base: Vec<f32>,
    /// Rewards of regeneration rounds 1, 2, …
    pub regen: Vec<Vec<f32>>,
}

/// The routed batch.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Routing {
    /// GRPO groups, in prompt order.
    pub grpo_groups: Vec<GrpoGroup>,
    /// Preference pairs, in prompt order then regen index (the code interleaves them as
    /// `[c0, r0, c1, r1, …]` in its micro-batches).
    pub pairs: Vec<PreferencePair>,
    /// Prompts still all-failed after `max_regen_turns` rounds (no gradient).
    pub dropped: Vec<usize>,
}

impl MulFeRlRouting {
    /// The decision after round `round` (0 = base) whose rewards are `rewards`.
    ///
    /// # Errors
    /// [`Error::Empty`] / [`Error::NonFinite`] for the rewards; [`Error::Inconsistent`] for a
    /// round beyond `max_regen_turns`.
    pub fn decide(&self, round: usize, rewards: &[f32]) -> Result<RoundDecision> {
        if round > self.max_regen_turns {
            return Err(Error::Inconsistent(format!(
                "round {round} exceeds max_regen_turns {}",
                self.max_regen_turns
            )));
        }
        let outcome = classify_group(rewards, self.success_threshold)?;
        Ok(match (round, outcome) {
            (0, GroupOutcome::AllSuccess | GroupOutcome::Mixed) => RoundDecision::Grpo,
            (_, GroupOutcome::AllSuccess) => RoundDecision::Pairs,
            (_, GroupOutcome::Mixed) => RoundDecision::Grpo,
            (r, GroupOutcome::AllFailure) if r < self.max_regen_turns => RoundDecision::Regenerate,
            (_, GroupOutcome::AllFailure) => RoundDecision::Drop,
        })
    }

    /// Routes a whole batch after all rounds ran.
    ///
    /// # Errors
    /// [`Error::Inconsistent`] if a prompt has a regeneration round after a round that did
    /// not ask for one, or is still all-failed with fewer than `max_regen_turns` rounds;
    /// [`Error::Empty`] / [`Error::NonFinite`] for the rewards (via [`decide`](Self::decide)).
    pub fn route(&self, prompts: &[PromptRounds]) -> Result<Routing> {
        check_finite("threshold", &[self.success_threshold])?;
        let mut out = Routing::default();
        for (p, pr) in prompts.iter().enumerate() {
            let rounds = std::iter::once(&pr.base).chain(&pr.regen);
            let n_rounds = 1 + pr.regen.len();
            for (round, rewards) in rounds.enumerate() {
                let decision = self.decide(round, rewards)?;
                let last = round + 1 == n_rounds;
                match decision {
                    RoundDecision::Regenerate if last => {
                        return Err(Error::Inconsistent(format!(
                            "prompt {p}: still all-failed after round {round} but only {} of {} \
                             regeneration rounds recorded",
                            pr.regen.len(),
                            self.max_regen_turns
                        )));
                    }
                    RoundDecision::Regenerate => continue,
                    _ if !last => {
                        return Err(Error::Inconsistent(format!(
                            "prompt {p}: round {} recorded after round {round} decided {decision:?}",
                            round + 1
                        )));
                    }
                    RoundDecision::Grpo => out.grpo_groups.push(GrpoGroup {
                        prompt: p,
                        round,
                        len: rewards.len(),
                    }),
                    RoundDecision::Pairs => {
                        for (i, j) in self.pairing.pair_indices(p, rewards.len(), pr.base.len()) {
                            out.pairs.push(PreferencePair {
                                chosen: ResponseRef {
                                    prompt: p,
                                    round,
                                    index: i,
                                },
                                rejected: ResponseRef {
                                    prompt: p,
                                    round: 0,
                                    index: j,
                                },
                            });
                        }
                    }
                    RoundDecision::Drop => out.dropped.push(p),
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pr(base: &[f32], regen: &[&[f32]]) -> PromptRounds {
        PromptRounds {
            base: base.to_vec(),
            regen: regen.iter().map(|r| r.to_vec()).collect(),
        }
    }

    /// ALGORITHMS.md §7: all-1 base → GRPO; all-0 base + mixed regen → GRPO on regen only;
    /// all-0 base + all-1 regen → 8 pairs; all-0 twice → dropped.
    #[test]
    fn worked_example_routing() {
        let ones = [1.0; 8];
        let zeros = [0.0; 8];
        let mixed = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0];
        let r = MulFeRlRouting {
            pairing: Pairing::IndexAligned,
            ..MulFeRlRouting::default()
        };
        let out = r
            .route(&[
                pr(&ones, &[]),
                pr(&zeros, &[&mixed]),
                pr(&zeros, &[&ones]),
                pr(&zeros, &[&zeros, &zeros]),
                pr(&mixed, &[]),
                pr(&zeros, &[&zeros, &ones]),
            ])
            .unwrap();
        assert_eq!(
            out.grpo_groups,
            vec![
                GrpoGroup {
                    prompt: 0,
                    round: 0,
                    len: 8
                },
                GrpoGroup {
                    prompt: 1,
                    round: 1,
                    len: 8
                },
                GrpoGroup {
                    prompt: 4,
                    round: 0,
                    len: 8
                },
            ]
        );
        assert_eq!(out.dropped, vec![3]);
        assert_eq!(out.pairs.len(), 16);
        let p2: Vec<_> = out.pairs.iter().filter(|p| p.chosen.prompt == 2).collect();
        assert_eq!(p2.len(), 8);
        for (i, p) in p2.iter().enumerate() {
            assert_eq!(
                p.chosen,
                ResponseRef {
                    prompt: 2,
                    round: 1,
                    index: i
                }
            );
            assert_eq!(
                p.rejected,
                ResponseRef {
                    prompt: 2,
                    round: 0,
                    index: i
                }
            );
        }
        // Round-2 success still pairs against the round-0 base group.
        assert!(
            out.pairs
                .iter()
                .filter(|p| p.chosen.prompt == 5)
                .all(|p| p.chosen.round == 2 && p.rejected.round == 0)
        );
    }

    #[test]
    fn permuted_pairing_is_a_seeded_permutation() {
        let p = Pairing::Permuted { seed: 7 };
        let a = p.pair_indices(3, 8, 8);
        assert_eq!(a, p.pair_indices(3, 8, 8));
        let mut rejected: Vec<usize> = a.iter().map(|x| x.1).collect();
        rejected.sort_unstable();
        assert_eq!(rejected, (0..8).collect::<Vec<_>>());
        assert_eq!(
            a.iter().map(|x| x.0).collect::<Vec<_>>(),
            (0..8).collect::<Vec<_>>()
        );
        assert_eq!(
            Pairing::IndexAligned.pair_indices(0, 3, 2),
            vec![(0, 0), (1, 1)]
        );
    }

    #[test]
    fn decide_and_inconsistencies() {
        let r = MulFeRlRouting::default();
        assert_eq!(r.decide(0, &[0.0, 0.0]).unwrap(), RoundDecision::Regenerate);
        assert_eq!(r.decide(2, &[0.0, 0.0]).unwrap(), RoundDecision::Drop);
        assert_eq!(r.decide(1, &[1.0, 1.0]).unwrap(), RoundDecision::Pairs);
        assert!(r.decide(3, &[1.0]).is_err());
        assert!(r.route(&[pr(&[1.0, 0.0], &[&[1.0, 1.0]])]).is_err());
        assert!(r.route(&[pr(&[0.0, 0.0], &[])]).is_err());
        assert!(r.route(&[pr(&[], &[])]).is_err());
        let none = MulFeRlRouting {
            max_regen_turns: 0,
            ..MulFeRlRouting::default()
        };
        assert_eq!(none.route(&[pr(&[0.0], &[])]).unwrap().dropped, vec![0]);
    }
}
