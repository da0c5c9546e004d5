//! The training methods, one file each: the rollout strategy, the credit assignment (the
//! training rows), the objective and the default feedback of a method, in the paper's words.
//!
//! A run names its method in one table, tagged by `type`, that carries that method's options
//! and nothing else:
//!
//! ```toml
//! [method]
//! type = "rltf_sd"
//! [method.objective]          # redraft_objectives::RltfSdConfig
//! rl_coef = { kind = "constant", value = 1.0 }
//! [method.feedback]           # redraft_feedback_protocol::ProviderConfig
//! type = "verifier_critic"
//! ```
//!
//! `method = "grpo"` (a bare name) is the method with all its defaults. A key the method does
//! not read is refused with its path (`method.objective.kl_coef`), never dropped.
//!
//! | file | method |
//! |---|---|
//! | [`grpo`] | GRPO: single-turn groups, group-normalised advantages, clipped surrogate |
//! | [`dr_grpo`] | Dr.GRPO: GRPO without std normalisation and length bias |
//! | [`dapo`] | DAPO: clip-higher, token-mean, dynamic sampling, overlong shaping |
//! | [`opmd`] | OPMD: mean-baseline advantages, OPMD objective |
//! | [`r3l`] | R^3L: reflect-then-retry, pivotal credit, positive amplification |
//! | [`rltf_sd`] | RLTF-SD: critique and revision, self-distillation of the revision |
//! | [`rltf_fm`] | RLTF-FM: critique and revision, feedback modelling |
//! | [`mulferl`] | MulFeRL: regeneration of failed groups with feedback, GRPO + preference pairs |
//!
//! [`groups`] holds the single-turn group rows the four RLVR methods share, [`rltf`] the
//! per-turn rows of both RLTF methods.

pub mod dapo;
pub mod dr_grpo;
pub mod groups;
pub mod grpo;
pub mod mulferl;
pub mod opmd;
pub mod r3l;
pub mod rltf;
pub mod rltf_fm;
pub mod rltf_sd;

use std::str::FromStr;

use redraft_feedback_protocol::{ProviderConfig, Templates};
use redraft_objectives::{Objective, ObjectiveConfig};
use redraft_rollout_engine::{RolloutBatch, RolloutStrategy, StrategyConfig};
use redraft_tokenizer::Tokenizer;
use redraft_verifier::Problem;
use serde::{Deserialize, Serialize};

use crate::config::RolloutConfig;
use crate::error::{Error, Result};
use crate::rows::TrainRows;

pub use dapo::{DapoMethod, DynamicSampling};
pub use dr_grpo::DrGrpoMethod;
pub use grpo::GrpoMethod;
pub use mulferl::MulFeRlMethod;
pub use opmd::OpmdMethod;
pub use r3l::R3lMethod;
pub use rltf_fm::RltfFmMethod;
pub use rltf_sd::RltfSdMethod;

/// What building a method's rows needs besides the batch.
pub struct RowContext<'a> {
    /// The tokenizer (RLTF-FM's critique prompts).
    pub tokenizer: &'a dyn Tokenizer,
    /// The prompt templates (RLTF-FM's `rltf_critique`).
    pub templates: &'a Templates,
    /// The problems the batch was rolled out on ([`redraft_rollout_engine::Episode::problem`]
    /// indexes them).
    pub problems: &'a [Problem],
}

/// What the trainer asks of a method.
pub trait TrainMethod {
    /// The rollout strategy, sized by `rollout` (its `group_size`).
    ///
    /// # Errors
    /// [`Error::Rollout`] for invalid strategy settings.
    fn strategy(&self, rollout: &RolloutConfig) -> Result<Box<dyn RolloutStrategy>> {
        Ok(self.strategy_config(rollout).build()?)
    }

    /// The strategy's settings.
    fn strategy_config(&self, rollout: &RolloutConfig) -> StrategyConfig;

    /// The objective's settings.
    fn objective_config(&self) -> ObjectiveConfig;

    /// The objective.
    ///
    /// # Errors
    /// [`Error::Objective`] for out-of-range settings.
    fn objective(&self) -> Result<Box<dyn Objective>> {
        Ok(self.objective_config().build()?)
    }

    /// The feedback provider asked during rollouts (`None`: the method takes none).
    fn feedback(&self) -> Option<ProviderConfig> {
        None
    }

    /// DAPO's dynamic sampling, when the method samples until its groups carry signal.
    fn dynamic_sampling(&self) -> Option<DynamicSampling> {
        None
    }

    /// The training rows of `batch`: the method's credit assignment.
    ///
    /// # Errors
    /// [`Error::Credit`] when credit assignment rejects rewards; [`Error::Tokenizer`] when a
    /// prompt cannot be rendered.
    fn rows(&self, batch: &RolloutBatch, ctx: &RowContext<'_>) -> Result<TrainRows>;

    /// Checks the settings against the rollout; errors name the key under `method`.
    ///
    /// # Errors
    /// [`Error::Config`] naming the key.
    fn validate(&self, rollout: &RolloutConfig) -> Result<()> {
        validate_parts(self, rollout)
    }
}

/// Builds a method's strategy and objective once, so that bad settings are refused with
/// their key (`method.strategy`, `method.objective`).
///
/// # Errors
/// [`Error::Config`] naming the part.
pub fn validate_parts<M: TrainMethod + ?Sized>(method: &M, rollout: &RolloutConfig) -> Result<()> {
    method
        .strategy_config(rollout)
        .build()
        .map_err(|e| Error::config("method.strategy", e.to_string()))?;
    method
        .objective_config()
        .build()
        .map_err(|e| Error::config("method.objective", e.to_string()))?;
    Ok(())
}

/// A method's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// GRPO.
    Grpo,
    /// Dr.GRPO.
    DrGrpo,
    /// DAPO.
    Dapo,
    /// OPMD.
    Opmd,
    /// R^3L.
    R3l,
    /// RLTF-SD.
    RltfSd,
    /// RLTF-FM.
    RltfFm,
    /// MulFeRL.
    Mulferl,
}

impl Method {
    /// Every method, in the order of the papers' comparisons.
    pub const ALL: [Method; 8] = [
        Method::Grpo,
        Method::DrGrpo,
        Method::Dapo,
        Method::Opmd,
        Method::R3l,
        Method::RltfSd,
        Method::RltfFm,
        Method::Mulferl,
    ];

    /// The snake_case name (the `type` tag).
    pub fn name(self) -> &'static str {
        match self {
            Method::Grpo => "grpo",
            Method::DrGrpo => "dr_grpo",
            Method::Dapo => "dapo",
            Method::Opmd => "opmd",
            Method::R3l => "r3l",
            Method::RltfSd => "rltf_sd",
            Method::RltfFm => "rltf_fm",
            Method::Mulferl => "mulferl",
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Method {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let norm = s.trim().to_ascii_lowercase().replace('-', "_");
        Method::ALL
            .into_iter()
            .find(|m| m.name() == norm)
            .ok_or_else(|| {
                Error::config(
                    "method",
                    format!(
                        "unknown method {s:?} (one of {})",
                        Method::ALL.map(Method::name).join(", ")
                    ),
                )
            })
    }
}

/// A method and its options (serde tag `type`; a bare name is the method with its defaults).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MethodConfig {
    /// GRPO.
    Grpo(GrpoMethod),
    /// Dr.GRPO.
    DrGrpo(DrGrpoMethod),
    /// DAPO.
    Dapo(DapoMethod),
    /// OPMD.
    Opmd(OpmdMethod),
    /// R^3L.
    R3l(R3lMethod),
    /// RLTF-SD.
    RltfSd(RltfSdMethod),
    /// RLTF-FM.
    RltfFm(RltfFmMethod),
    /// MulFeRL.
    Mulferl(MulFeRlMethod),
}

impl Default for MethodConfig {
    /// GRPO with its defaults.
    fn default() -> Self {
        Self::defaults(Method::Grpo)
    }
}

impl MethodConfig {
    /// `method` with all its defaults.
    pub fn defaults(method: Method) -> Self {
        match method {
            Method::Grpo => Self::Grpo(GrpoMethod::default()),
            Method::DrGrpo => Self::DrGrpo(DrGrpoMethod::default()),
            Method::Dapo => Self::Dapo(DapoMethod::default()),
            Method::Opmd => Self::Opmd(OpmdMethod::default()),
            Method::R3l => Self::R3l(R3lMethod::default()),
            Method::RltfSd => Self::RltfSd(RltfSdMethod::default()),
            Method::RltfFm => Self::RltfFm(RltfFmMethod::default()),
            Method::Mulferl => Self::Mulferl(MulFeRlMethod::default()),
        }
    }

    /// Which method this is.
    pub fn kind(&self) -> Method {
        match self {
            Self::Grpo(_) => Method::Grpo,
            Self::DrGrpo(_) => Method::DrGrpo,
            Self::Dapo(_) => Method::Dapo,
            Self::Opmd(_) => Method::Opmd,
            Self::R3l(_) => Method::R3l,
            Self::RltfSd(_) => Method::RltfSd,
            Self::RltfFm(_) => Method::RltfFm,
            Self::Mulferl(_) => Method::Mulferl,
        }
    }

    /// The method's implementation.
    pub fn method(&self) -> &dyn TrainMethod {
        match self {
            Self::Grpo(m) => m,
            Self::DrGrpo(m) => m,
            Self::Dapo(m) => m,
            Self::Opmd(m) => m,
            Self::R3l(m) => m,
            Self::RltfSd(m) => m,
            Self::RltfFm(m) => m,
            Self::Mulferl(m) => m,
        }
    }

    /// Reads the `method` value of a configuration: a bare name or a table tagged by `type`.
    ///
    /// # Errors
    /// [`Error::Config`] naming the key path under `method`.
    pub fn from_toml(value: toml::Value) -> Result<Self> {
        let mut table = match value {
            toml::Value::String(name) => return Ok(Self::defaults(name.parse()?)),
            toml::Value::Table(t) => t,
            other => {
                return Err(Error::config(
                    "method",
                    format!(
                        "a method name or a table with `type`, not a {}",
                        other.type_str()
                    ),
                ));
            }
        };
        let name = match table.remove("type") {
            Some(toml::Value::String(s)) => s,
            Some(_) => return Err(Error::config("method.type", "must be a method name")),
            None => {
                return Err(Error::config(
                    "method.type",
                    "missing: name the method (`type = \"grpo\"`)",
                ));
            }
        };
        let method: Method = name
            .parse()
            .map_err(|e: Error| Error::config("method.type", e.to_string()))?;
        let rest = toml::Value::Table(table);
        match method {
            Method::Grpo => options(rest).map(Self::Grpo),
            Method::DrGrpo => options(rest).map(Self::DrGrpo),
            Method::Dapo => options(rest).map(Self::Dapo),
            Method::Opmd => options(rest).map(Self::Opmd),
            Method::R3l => options(rest).map(Self::R3l),
            Method::RltfSd => options(rest).map(Self::RltfSd),
            Method::RltfFm => options(rest).map(Self::RltfFm),
            Method::Mulferl => options(rest).map(Self::Mulferl),
        }
    }
}

/// A method's options struct from its table (without `type`), errors at `method.<path>`.
fn options<T: serde::de::DeserializeOwned>(value: toml::Value) -> Result<T> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." {
            "method".to_string()
        } else {
            format!("method.{path}")
        };
        Error::config(path, e.into_inner().to_string())
    })
}

impl<'de> Deserialize<'de> for MethodConfig {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        let value = toml::Value::deserialize(deserializer)?;
        Self::from_toml(value).map_err(serde::de::Error::custom)
    }
}

impl std::fmt::Display for MethodConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kind().name())
    }
}

#[cfg(test)]
mod tests;
