//! [`TokenizerConfig`]: which tokenizer to build, as written in an experiment configuration.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{ByteTokenizer, HfTokenizer, Result, Tokenizer, load_tokenizer};

/// Which tokenizer to use, as a serde-tagged enum (field `type`) for configuration files.
///
/// ```toml
/// [tokenizer]
/// type = "model_dir"
/// path = "models/qwen2.5-0.5b-instruct"
/// ```
///
/// ```toml
/// [tokenizer]
/// type = "byte"
/// extra_special_tokens = ["<|tool|>"]
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TokenizerConfig {
    /// The tokenizer of a model directory, as [`load_tokenizer`] finds it.
    ModelDir {
        /// The model directory.
        path: PathBuf,
    },
    /// A Hugging Face `tokenizer.json`, with a `tokenizer_config.json` when given.
    Hf {
        /// Path of the `tokenizer.json`.
        tokenizer: PathBuf,
        /// Path of the `tokenizer_config.json`.
        #[serde(default)]
        config: Option<PathBuf>,
    },
    /// The byte tokenizer with its default special tokens, followed by these.
    Byte {
        /// Special tokens added after the default ones (ids from 261).
        #[serde(default)]
        extra_special_tokens: Vec<String>,
    },
}

impl Default for TokenizerConfig {
    /// The default byte tokenizer.
    fn default() -> Self {
        Self::Byte {
            extra_special_tokens: Vec::new(),
        }
    }
}

impl TokenizerConfig {
    /// Builds (loads) the tokenizer.
    pub fn build(&self) -> Result<Box<dyn Tokenizer>> {
        Ok(match self {
            Self::ModelDir { path } => load_tokenizer(path)?,
            Self::Hf { tokenizer, config } => {
                Box::new(HfTokenizer::from_files(tokenizer, config.as_deref())?)
            }
            Self::Byte {
                extra_special_tokens,
            } => {
                let mut tokenizer = ByteTokenizer::default();
                for token in extra_special_tokens {
                    tokenizer.add_special_token(token)?;
                }
                Box::new(tokenizer)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tagged_json_and_build() {
        let config: TokenizerConfig =
            serde_json::from_str(r#"{"type": "byte", "extra_special_tokens": ["<|tool|>"]}"#)
                .unwrap();
        let tokenizer = config.build().unwrap();
        assert_eq!(tokenizer.token_to_id("<|tool|>"), Some(261));
        assert_eq!(
            serde_json::to_value(TokenizerConfig::default()).unwrap(),
            serde_json::json!({"type": "byte", "extra_special_tokens": []})
        );
        let config: TokenizerConfig =
            serde_json::from_str(r#"{"type": "model_dir", "path": "/nonexistent"}"#).unwrap();
        assert!(matches!(config.build(), Err(crate::Error::NotFound { .. })));
    }
}
