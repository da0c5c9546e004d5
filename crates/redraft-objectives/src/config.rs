//! [`ObjectiveConfig`]: the objective a config file selects, with the papers' / released
//! code's settings as defaults.
//!
//! Tagged by `type` (the one tag key of the workspace's configuration); every other field is
//! optional and overrides the method's default. (In a run configuration the method's
//! `[method.objective]` table holds these fields without `type`: the method fixes it.)
//!
//! ```toml
//! [objective]
//! type = "dapo"                   # grpo | dr_grpo | dapo | ppo_clip (alias rlvr) | opmd | r3l
//!                                 # | rltf_sd | rltf_fm | mulferl
//! clip_high = 0.28
//! aggregation = { kind = "token_mean" }
//! ```
//!
//! | type | defaults (see `docs/algorithms/<method>.md`) |
//! |---|---|
//! | `grpo` | ε 0.2, dual clip c = 3, `token-mean`, k3 KL β = 0.001 |
//! | `dr_grpo` | ε 0.2, dual clip c = 3, `seq-mean-token-sum-norm`, no KL |
//! | `dapo` | ε_low 0.2, ε_high 0.28, dual clip c = 10, `token-mean`, no KL |
//! | `ppo_clip` | ε 0.2, dual clip c = 3, `token-mean`, no KL |
//! | `opmd` | τ = 1 (factor ½), `token-mean`, no KL |
//! | `r3l` | OPMD base τ = 1, `token-mean`, k2 KL β = 0.001, SFT items in the RL loss |
//! | `rltf_sd` | IS loss Σ over tokens, `rl_coef` 0.1, log-prob mask −5 |
//! | `rltf_fm` | IS loss Σ over tokens, λ = 0.1 critique CE Σ over tokens |
//! | `mulferl` | GRPO as above + λ = 0.01 FCO (τ 0.005, margin 0); DPO β 0.005 selectable |

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::mulferl::{MulFeRlConfig, MulFeRlObjective};
use crate::objective::Objective;
use crate::opmd::{OpmdConfig, OpmdObjective};
use crate::ppo::{RlvrConfig, RlvrObjective, RlvrOptions};
use crate::r3l::{R3lConfig, R3lObjective};
use crate::rltf::{RltfFmConfig, RltfObjective, RltfSdConfig};

/// A built-in objective and its settings (serde tag `type`, snake case).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ObjectiveConfig {
    /// GRPO ([`RlvrConfig::grpo`] with the given changes).
    Grpo(RlvrOptions),
    /// Dr.GRPO ([`RlvrConfig::dr_grpo`] with the given changes).
    DrGrpo(RlvrOptions),
    /// DAPO ([`RlvrConfig::dapo`] with the given changes).
    Dapo(RlvrOptions),
    /// The generic clipped surrogate ([`RlvrConfig::ppo`] with the given changes); every
    /// knob of [`RlvrConfig`] is available.
    #[serde(alias = "rlvr")]
    PpoClip(RlvrOptions),
    /// OPMD.
    Opmd(OpmdConfig),
    /// R^3L.
    R3l(R3lConfig),
    /// RLTF-SD.
    RltfSd(RltfSdConfig),
    /// RLTF-FM.
    RltfFm(RltfFmConfig),
    /// MulFeRL.
    Mulferl(MulFeRlConfig),
}

impl Default for ObjectiveConfig {
    /// GRPO with its defaults.
    fn default() -> Self {
        Self::Grpo(RlvrOptions::default())
    }
}

impl ObjectiveConfig {
    /// The `type` tag (the method's name).
    pub fn method(&self) -> &'static str {
        match self {
            Self::Grpo(_) => "grpo",
            Self::DrGrpo(_) => "dr_grpo",
            Self::Dapo(_) => "dapo",
            Self::PpoClip(_) => "ppo_clip",
            Self::Opmd(_) => "opmd",
            Self::R3l(_) => "r3l",
            Self::RltfSd(_) => "rltf_sd",
            Self::RltfFm(_) => "rltf_fm",
            Self::Mulferl(_) => "mulferl",
        }
    }

    /// The resolved clipped-surrogate settings of the RLVR methods (`None` for the others).
    pub fn rlvr_config(&self) -> Option<RlvrConfig> {
        match self {
            Self::Grpo(o) => Some(o.apply(RlvrConfig::grpo())),
            Self::DrGrpo(o) => Some(o.apply(RlvrConfig::dr_grpo())),
            Self::Dapo(o) => Some(o.apply(RlvrConfig::dapo())),
            Self::PpoClip(o) => Some(o.apply(RlvrConfig::ppo())),
            _ => None,
        }
    }

    /// Builds the objective.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`](crate::Error::InvalidParameter) for out-of-range settings.
    pub fn build(&self) -> Result<Box<dyn Objective>> {
        let rlvr = |o: &RlvrOptions, preset: RlvrConfig| -> Result<Box<dyn Objective>> {
            Ok(Box::new(RlvrObjective::new(
                self.method(),
                o.apply(preset),
            )?))
        };
        match self {
            Self::Grpo(o) => rlvr(o, RlvrConfig::grpo()),
            Self::DrGrpo(o) => rlvr(o, RlvrConfig::dr_grpo()),
            Self::Dapo(o) => rlvr(o, RlvrConfig::dapo()),
            Self::PpoClip(o) => rlvr(o, RlvrConfig::ppo()),
            Self::Opmd(c) => Ok(Box::new(OpmdObjective::new(*c)?)),
            Self::R3l(c) => Ok(Box::new(R3lObjective::new(*c)?)),
            Self::RltfSd(c) => Ok(Box::new(RltfObjective::self_distillation(*c)?)),
            Self::RltfFm(c) => Ok(Box::new(RltfObjective::feedback_modeling(*c)?)),
            Self::Mulferl(c) => Ok(Box::new(MulFeRlObjective::new(*c)?)),
        }
    }
}
