//! DAPO (Yu et al. 2025; docs/algorithms/dapo.md).
//!
//! 1. **Dynamic sampling.** Sample single-turn groups for a batch of problems and keep the
//!    groups whose accuracy is neither 0 nor 1 (some response verified correct, some not:
//!    [`redraft_verifier::Verdict::correct`], not the shaped reward). Sample further batches of
//!    problems until `rollout.prompts_per_step` groups are kept or `max_tries` batches were
//!    drawn; groups beyond the target are discarded. Tries and dropped groups are metrics
//!    (`sampling_tries`, `groups_filtered`).
//! 2. **Overlong reward shaping** (optional): a soft length penalty added to each reward.
//! 3. **Credit:** GRPO's group-normalised advantage on every sampled token.
//! 4. **Objective:** clip-higher (ε_low 0.2, ε_high 0.28), dual clip c = 10, token-mean,
//!    no KL. No feedback.
//!
//! ```toml
//! [method]
//! type = "dapo"
//! overlong = { max_len = 64, cache_len = 16, factor = 1.0 }   # within rollout.max_new_tokens
//! dynamic_sampling = { enabled = true, max_tries = 10 }
//! [method.objective]   # redraft_objectives::RlvrOptions (changes to DAPO's preset)
//! clip_high = 0.28
//! ```

use redraft_credit_assignment::{AdvantageEstimator, OverlongShaping};
use redraft_objectives::{ObjectiveConfig, RlvrOptions};
use redraft_rollout_engine::{Episode, GroupUse, RolloutBatch, RolloutStats, StrategyConfig};
use redraft_verifier::Problem;
use serde::{Deserialize, Serialize};

use super::groups::{GroupRewards, group_rows, members};
use super::grpo::single_turn;
use super::{RowContext, TrainMethod};
use crate::config::RolloutConfig;
use crate::error::{Error, Result};
use crate::rows::{TrainRows, sampled_len};

/// DAPO's options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DapoMethod {
    /// The advantage estimator. Default GRPO's.
    pub estimator: AdvantageEstimator,
    /// Changes to DAPO's objective preset.
    pub objective: RlvrOptions,
    /// Overlong reward shaping (off by default); `max_len` at most `rollout.max_new_tokens`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overlong: Option<OverlongShaping>,
    /// Dynamic sampling.
    pub dynamic_sampling: DynamicSampling,
}

impl Default for DapoMethod {
    fn default() -> Self {
        Self {
            estimator: AdvantageEstimator::grpo(),
            objective: RlvrOptions::default(),
            overlong: None,
            dynamic_sampling: DynamicSampling::default(),
        }
    }
}

/// DAPO's dynamic sampling: keep only groups with an accuracy signal, sample again to fill the
/// batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DynamicSampling {
    /// On or off. Default on.
    pub enabled: bool,
    /// Most rollout batches drawn per step (DAPO's `max_num_gen_batches`). Default 10. When
    /// they are spent the step trains on the groups kept so far.
    pub max_tries: usize,
}

impl Default for DynamicSampling {
    fn default() -> Self {
        Self {
            enabled: true,
            max_tries: 10,
        }
    }
}

/// Whether a group carries an accuracy signal: some response correct, some not.
pub fn has_signal(episodes: &[&Episode]) -> bool {
    let correct = episodes.iter().filter(|e| e.solved()).count();
    correct > 0 && correct < episodes.len()
}

/// The groups dynamic sampling collected.
#[derive(Debug, Clone, Default)]
pub struct Collected {
    /// The kept groups (at most the target), re-indexed; `stats` count every try.
    pub batch: RolloutBatch,
    /// The problems of the kept groups (`Episode::problem` indexes them).
    pub problems: Vec<Problem>,
    /// Rollout batches drawn.
    pub tries: usize,
    /// Groups dropped for lack of signal.
    pub filtered: usize,
}

/// DAPO's sampling loop: `draw(k)` rolls out the `k`-th batch of fresh problems; groups with
/// signal ([`has_signal`]) are kept until `target` of them are, for at most `max_tries` draws.
///
/// # Errors
/// Whatever `draw` returns.
pub fn collect_groups_with_signal(
    target: usize,
    max_tries: usize,
    mut draw: impl FnMut(usize) -> Result<(RolloutBatch, Vec<Problem>)>,
) -> Result<Collected> {
    let mut out = Collected::default();
    let mut stats = RolloutStats::default();
    while out.problems.len() < target && out.tries < max_tries {
        let (batch, problems) = draw(out.tries)?;
        out.tries += 1;
        add_stats(&mut stats, &batch.stats);
        for group in batch.groups.iter().filter(|g| g.usage == GroupUse::Rl) {
            if out.problems.len() == target {
                break;
            }
            let episodes = members(&batch, &group.episodes);
            if !has_signal(&episodes) {
                out.filtered += 1;
                continue;
            }
            let index = out.problems.len();
            out.problems.push(problems[group.problem].clone());
            let episodes = episodes
                .into_iter()
                .map(|e| Episode {
                    problem: index,
                    ..e.clone()
                })
                .collect();
            out.batch
                .push_group(index, group.round, GroupUse::Rl, episodes);
        }
    }
    out.batch.stats = stats;
    Ok(out)
}

fn add_stats(total: &mut RolloutStats, s: &RolloutStats) {
    total.turns += s.turns;
    total.sampled_tokens += s.sampled_tokens;
    total.feedback_requests += s.feedback_requests;
    total.feedback_failures += s.feedback_failures;
    total.invalid_reflections += s.invalid_reflections;
    total.reused_prefix_tokens += s.reused_prefix_tokens;
}

impl TrainMethod for DapoMethod {
    /// 1. Rollout: single-turn groups, as GRPO (the trainer repeats it, see
    ///    [`collect_groups_with_signal`]).
    fn strategy_config(&self, rollout: &RolloutConfig) -> StrategyConfig {
        single_turn(rollout)
    }

    fn dynamic_sampling(&self) -> Option<DynamicSampling> {
        self.dynamic_sampling
            .enabled
            .then_some(self.dynamic_sampling)
    }

    /// 2–3. Credit: groups without signal dropped, rewards shaped for length, GRPO advantages.
    fn rows(&self, batch: &RolloutBatch, _ctx: &RowContext<'_>) -> Result<TrainRows> {
        group_rows(batch, &self.estimator, |episodes| {
            if self.dynamic_sampling.enabled && !has_signal(episodes) {
                return Ok(GroupRewards::Drop);
            }
            let rewards: Vec<f32> = episodes.iter().map(|e| e.reward).collect();
            Ok(GroupRewards::Keep(match &self.overlong {
                Some(shaping) => {
                    let lengths: Vec<usize> = episodes.iter().map(|e| sampled_len(e)).collect();
                    shaping.shape(&rewards, &lengths)?
                }
                None => rewards,
            }))
        })
    }

    /// 4. Objective: DAPO's clip-higher surrogate.
    fn objective_config(&self) -> ObjectiveConfig {
        ObjectiveConfig::Dapo(self.objective)
    }

    fn validate(&self, rollout: &RolloutConfig) -> Result<()> {
        super::validate_parts(self, rollout)?;
        if self.dynamic_sampling.max_tries == 0 {
            return Err(Error::config(
                "method.dynamic_sampling.max_tries",
                "must be at least 1",
            ));
        }
        if let Some(o) = &self.overlong {
            o.validate()
                .map_err(|e| Error::config("method.overlong", e.to_string()))?;
            if o.max_len > rollout.max_new_tokens {
                return Err(Error::config(
                    "method.overlong.max_len",
                    format!(
                        "{} exceeds rollout.max_new_tokens ({}): no response can reach it",
                        o.max_len, rollout.max_new_tokens
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::methods::groups::fixtures::single_turn_batch;
    use crate::methods::tests::no_ctx;
    use redraft_verifier::{Difficulty, TaskFamily};

    #[test]
    fn rows_drop_groups_without_accuracy_signal_not_without_reward_spread() {
        let batch = single_turn_batch(&[
            // All correct, but rewards differ (partial credit): no accuracy signal, dropped.
            &[(1.0, true), (0.5, true)],
            // Mixed accuracy: kept.
            &[(1.0, true), (0.0, false)],
            // All wrong: dropped.
            &[(0.0, false), (0.0, false)],
        ]);
        let rows = no_ctx(|ctx| DapoMethod::default().rows(&batch, ctx));
        assert_eq!(rows.stats.groups_used, 1);
        assert_eq!(rows.stats.groups_filtered, 2);
        assert!(rows.rows.iter().all(|r| r.problem == 1));
        let off = DapoMethod {
            dynamic_sampling: DynamicSampling {
                enabled: false,
                ..DynamicSampling::default()
            },
            ..DapoMethod::default()
        };
        let rows = no_ctx(|ctx| off.rows(&batch, ctx));
        assert_eq!(rows.stats.groups_used, 3);
    }

    #[test]
    fn overlong_shaping_lowers_the_reward_of_long_responses() {
        // Sampled lengths 2 and 3 (fixtures), both correct-and-wrong pairs.
        let batch = single_turn_batch(&[&[(1.0, true), (0.0, false), (1.0, true)]]);
        let shaped = DapoMethod {
            overlong: Some(OverlongShaping {
                max_len: 4,
                cache_len: 2,
                factor: 1.0,
            }),
            ..DapoMethod::default()
        };
        let shaped = no_ctx(|ctx| shaped.rows(&batch, ctx));
        let plain = no_ctx(|ctx| DapoMethod::default().rows(&batch, ctx));
        // Lengths 2, 3, 4: the third (longest, correct) is penalised, so it ends below the first.
        let a = |r: &TrainRows, i: usize| *r.rows[i].advantages.last().unwrap();
        assert_eq!(a(&plain, 0), a(&plain, 2));
        assert!(
            a(&shaped, 2) < a(&shaped, 0),
            "{} {}",
            a(&shaped, 2),
            a(&shaped, 0)
        );
    }

    fn problems(n: usize) -> Vec<Problem> {
        (0..n)
            .map(|i| {
                TaskFamily::Arithmetic
                    .generate_one(0, i as u64, &Difficulty::default())
                    .unwrap()
            })
            .collect()
    }

    /// DAPO never trains on fewer groups than asked while tries remain: it samples again.
    #[test]
    fn dynamic_sampling_refills_the_batch_from_further_tries() {
        // Each try: two problems, the first group without signal, the second with.
        let draws: Vec<RolloutBatch> = vec![
            single_turn_batch(&[&[(0.0, false), (0.0, false)], &[(1.0, true), (0.0, false)]]),
            single_turn_batch(&[&[(1.0, true), (1.0, true)], &[(0.0, false), (1.0, true)]]),
            single_turn_batch(&[&[(1.0, true), (0.0, false)], &[(1.0, true), (0.0, false)]]),
        ];
        let mut drawn = 0;
        let c = collect_groups_with_signal(2, 10, |k| {
            drawn += 1;
            Ok((draws[k].clone(), problems(2)))
        })
        .unwrap();
        assert_eq!(drawn, 2, "stops once the target is met");
        assert_eq!(c.tries, 2);
        assert_eq!(c.filtered, 2);
        assert_eq!(c.batch.groups.len(), 2);
        assert_eq!(c.problems.len(), 2);
        for (g, group) in c.batch.groups.iter().enumerate() {
            assert_eq!(group.problem, g);
            for &e in &group.episodes {
                assert_eq!(c.batch.episodes[e].problem, g);
            }
        }
        // Every sampled token counts against the budget, the dropped groups' too.
        let all: usize = draws[..2].iter().map(|b| b.stats.sampled_tokens).sum();
        assert_eq!(c.batch.stats.sampled_tokens, all);
        // The target is a cap: surplus groups with signal are not trained on.
        let c =
            collect_groups_with_signal(1, 10, |k| Ok((draws[k + 2].clone(), problems(2)))).unwrap();
        assert_eq!((c.tries, c.batch.groups.len(), c.filtered), (1, 1, 0));
    }

    #[test]
    fn dynamic_sampling_stops_at_the_try_cap() {
        let empty = single_turn_batch(&[&[(0.0, false), (0.0, false)]]);
        let c = collect_groups_with_signal(4, 3, |_| Ok((empty.clone(), problems(1)))).unwrap();
        assert_eq!((c.tries, c.filtered, c.batch.groups.len()), (3, 3, 0));
    }

    #[test]
    fn overlong_beyond_max_new_tokens_is_refused_with_its_path() {
        let m = DapoMethod {
            overlong: Some(OverlongShaping {
                max_len: 4096,
                cache_len: 16,
                factor: 1.0,
            }),
            ..DapoMethod::default()
        };
        let e = m.validate(&RolloutConfig::default()).unwrap_err();
        assert!(
            e.to_string().starts_with("config: method.overlong.max_len"),
            "{e}"
        );
    }
}
