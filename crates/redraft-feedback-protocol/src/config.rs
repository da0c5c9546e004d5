//! [`ProviderConfig`]: the built-in providers, selectable from a configuration file.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::chat::ChatModel;
use crate::correctness::CorrectnessOnly;
use crate::critic::{CriticConfig, VerifierCritic};
use crate::error::{Error, Result};
use crate::judge::{JudgeConfig, LlmJudge};
use crate::merge::{GroupJudge, GroupJudgeConfig};
use crate::openai::{OpenAiClient, OpenAiConfig};
use crate::provider::FeedbackProvider;
use crate::reflection::{SelfReflection, SelfReflectionConfig};
use crate::templates::Templates;

/// A built-in provider and its options. Tagged by `type`:
///
/// ```toml
/// type = "llm_judge"
/// [endpoint]
/// base_url = "http://127.0.0.1:8000/v1"
/// model = "Qwen/Qwen3-235B-A22B-Instruct-2507"
/// api_key_env = "OPENAI_API_KEY"
/// [judge]
/// send_reference = true
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ProviderConfig {
    /// [`VerifierCritic`].
    VerifierCritic {
        /// Options.
        #[serde(default)]
        critic: CriticConfig,
    },
    /// [`CorrectnessOnly`].
    CorrectnessOnly {},
    /// [`SelfReflection`] with the policy given to [`ProviderConfig::build`].
    SelfReflection {
        /// Options.
        #[serde(default)]
        reflection: SelfReflectionConfig,
        /// Template overrides by name.
        #[serde(default)]
        templates: BTreeMap<String, String>,
    },
    /// [`LlmJudge`] over an OpenAI-compatible endpoint.
    LlmJudge {
        /// The endpoint.
        endpoint: OpenAiConfig,
        /// Options.
        #[serde(default)]
        judge: JudgeConfig,
        /// Template overrides by name.
        #[serde(default)]
        templates: BTreeMap<String, String>,
    },
    /// [`GroupJudge`] (MulFeRL) over an OpenAI-compatible endpoint.
    GroupJudge {
        /// The endpoint.
        endpoint: OpenAiConfig,
        /// Options.
        #[serde(default)]
        group: GroupJudgeConfig,
        /// Template overrides by name.
        #[serde(default)]
        templates: BTreeMap<String, String>,
    },
}

impl ProviderConfig {
    /// Whether this provider states the reference answer in its feedback (only the verifier
    /// critic with `reveal_answer = true`; judges that see the reference are told not to
    /// reveal it).
    pub fn reveals_answer(&self) -> bool {
        matches!(self, ProviderConfig::VerifierCritic { critic } if critic.reveal_answer)
    }

    /// Builds the provider. `policy` is the model that writes self-reflections (required by
    /// `self_reflection`, ignored otherwise).
    pub fn build(&self, policy: Option<Arc<dyn ChatModel>>) -> Result<Box<dyn FeedbackProvider>> {
        Ok(match self {
            ProviderConfig::VerifierCritic { critic } => {
                Box::new(VerifierCritic::new(critic.clone()))
            }
            ProviderConfig::CorrectnessOnly {} => Box::new(CorrectnessOnly::new()),
            ProviderConfig::SelfReflection {
                reflection,
                templates,
            } => {
                let policy = policy.ok_or_else(|| {
                    Error::Config("self_reflection needs the policy as a ChatModel".into())
                })?;
                Box::new(SelfReflection::new(
                    policy,
                    Arc::new(Templates::with_overrides(templates)?),
                    reflection.clone(),
                ))
            }
            ProviderConfig::LlmJudge {
                endpoint,
                judge,
                templates,
            } => Box::new(LlmJudge::new(
                Arc::new(OpenAiClient::new(endpoint.clone())?),
                Arc::new(Templates::with_overrides(templates)?),
                judge.clone(),
            )),
            ProviderConfig::GroupJudge {
                endpoint,
                group,
                templates,
            } => Box::new(GroupJudge::new(
                Arc::new(OpenAiClient::new(endpoint.clone())?),
                Arc::new(Templates::with_overrides(templates)?),
                group.clone(),
            )?),
        })
    }
}
