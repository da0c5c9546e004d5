//! Single-turn groups (RLVR): `group_size` samples per problem, one verified turn each.

use redraft_verifier::Problem;
use serde::{Deserialize, Serialize};

use super::{RolloutContext, RolloutStrategy, first_turns, positive};
use crate::episode::{GroupUse, RolloutBatch, StrategyKind};
use crate::error::Result;

/// Configuration of [`SingleTurn`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SingleTurnConfig {
    /// Samples per problem (GRPO's G). Default 8.
    pub group_size: usize,
}

impl Default for SingleTurnConfig {
    fn default() -> Self {
        Self { group_size: 8 }
    }
}

/// Single-turn groups: each problem's samples form one RL group; an episode's reward is its
/// verdict's reward.
#[derive(Debug, Clone)]
pub struct SingleTurn {
    config: SingleTurnConfig,
}

impl SingleTurn {
    /// The strategy ([`crate::Error::InvalidParam`] for a zero group size).
    pub fn new(config: SingleTurnConfig) -> Result<Self> {
        positive("group_size", config.group_size)?;
        Ok(Self { config })
    }
}

impl RolloutStrategy for SingleTurn {
    fn sample(
        &self,
        ctx: &RolloutContext<'_>,
        problems: &[Problem],
        seed: u64,
    ) -> Result<RolloutBatch> {
        let groups = first_turns(
            ctx,
            problems,
            seed,
            self.config.group_size,
            StrategyKind::SingleTurn,
            0.0,
        )?;
        let mut batch = RolloutBatch::default();
        for (p, episodes) in groups.into_iter().enumerate() {
            batch.push_group(p, 0, GroupUse::Rl, episodes);
        }
        Ok(batch)
    }
}
