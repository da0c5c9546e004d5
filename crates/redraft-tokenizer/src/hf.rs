//! Hugging Face tokenizers: `tokenizer.json` through the `tokenizers` crate, with the special
//! tokens and the chat template of `tokenizer_config.json`.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use tokenizers::decoders::DecoderWrapper;

use crate::byte_level::byte_of;
use crate::{ChatTemplate, Error, Result, SpecialTokens, Tokenizer};

/// The file name of a Hugging Face tokenizer in a model directory.
pub const HF_TOKENIZER_FILE: &str = "tokenizer.json";
/// The file name of a Hugging Face tokenizer configuration in a model directory.
pub const HF_TOKENIZER_CONFIG_FILE: &str = "tokenizer_config.json";
/// The file in which recent `transformers` versions save the chat template; read when
/// `tokenizer_config.json` has no `chat_template`.
pub const HF_CHAT_TEMPLATE_FILE: &str = "chat_template.jinja";

/// What this crate uses of `tokenizer_config.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HfTokenizerConfig {
    /// `bos_token` (its spelling).
    pub bos_token: Option<String>,
    /// `eos_token` (its spelling).
    pub eos_token: Option<String>,
    /// `pad_token` (its spelling).
    pub pad_token: Option<String>,
    /// `chat_template`; when the file has a list of named templates, the one named `default`.
    pub chat_template: Option<String>,
}

/// A token in `tokenizer_config.json`: a string or an `AddedToken` object.
#[derive(Deserialize)]
#[serde(untagged)]
enum TokenField {
    Spelling(String),
    Object { content: String },
}

impl TokenField {
    fn into_spelling(self) -> String {
        match self {
            Self::Spelling(s) | Self::Object { content: s } => s,
        }
    }
}

#[derive(Deserialize)]
struct NamedTemplate {
    name: String,
    template: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum TemplateField {
    One(String),
    Named(Vec<NamedTemplate>),
}

#[derive(Deserialize)]
struct RawConfig {
    #[serde(default)]
    bos_token: Option<TokenField>,
    #[serde(default)]
    eos_token: Option<TokenField>,
    #[serde(default)]
    pad_token: Option<TokenField>,
    #[serde(default)]
    chat_template: Option<TemplateField>,
}

impl HfTokenizerConfig {
    /// Parses the content of a `tokenizer_config.json`; fields other than the special tokens
    /// and the chat template are ignored.
    pub fn from_json(json: &str) -> std::result::Result<Self, serde_json::Error> {
        let raw: RawConfig = serde_json::from_str(json)?;
        let chat_template = match raw.chat_template {
            None => None,
            Some(TemplateField::One(t)) => Some(t),
            Some(TemplateField::Named(list)) => {
                let names: Vec<_> = list.iter().map(|t| t.name.clone()).collect();
                let default = list.into_iter().find(|t| t.name == "default");
                if default.is_none() {
                    tracing::warn!(
                        ?names,
                        "tokenizer_config.json has no chat template named \"default\""
                    );
                }
                default.map(|t| t.template)
            }
        };
        Ok(Self {
            bos_token: raw.bos_token.map(TokenField::into_spelling),
            eos_token: raw.eos_token.map(TokenField::into_spelling),
            pad_token: raw.pad_token.map(TokenField::into_spelling),
            chat_template,
        })
    }

    /// Reads a `tokenizer_config.json`; errors name the path.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = read(path)?;
        Self::from_json(&text).map_err(|e| Error::Malformed {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })
}

/// A Hugging Face tokenizer (`tokenizer.json`) behind the [`Tokenizer`] trait.
///
/// Truncation and padding that a `tokenizer.json` may configure are switched off: the trait
/// encodes whole texts. Special tokens are the added tokens marked `special`, plus the
/// `bos_token`, `eos_token` and `pad_token` of the configuration.
#[derive(Debug, Clone)]
pub struct HfTokenizer {
    inner: tokenizers::Tokenizer,
    special: SpecialTokens,
    vocab_size: usize,
    template: Option<ChatTemplate>,
    /// Ids of the added tokens (special or not), sorted: they decode to their text.
    added: Vec<u32>,
    /// How the decoder turns vocabulary strings into bytes (for [`Tokenizer::token_bytes`]).
    bytes: TokenBytes,
}

/// How a vocabulary string becomes bytes, read from the `tokenizer.json` decoder.
#[derive(Debug, Clone, Copy, Default)]
struct TokenBytes {
    /// A `ByteLevel` decoder: each character stands for one byte (GPT-2's byte-to-unicode
    /// table, [`byte_of`]).
    byte_level: bool,
    /// A `ByteFallback` decoder: `<0xAB>` stands for the byte 0xAB.
    byte_fallback: bool,
}

impl TokenBytes {
    fn of(decoder: Option<&DecoderWrapper>) -> Self {
        let mut found = Self::default();
        let mut stack: Vec<&DecoderWrapper> = decoder.into_iter().collect();
        while let Some(decoder) = stack.pop() {
            match decoder {
                DecoderWrapper::ByteLevel(_) => found.byte_level = true,
                DecoderWrapper::ByteFallback(_) => found.byte_fallback = true,
                DecoderWrapper::Sequence(sequence) => stack.extend(sequence.get_decoders()),
                _ => {}
            }
        }
        found
    }
}

impl HfTokenizer {
    /// Loads `model_dir/tokenizer.json`, with `model_dir/tokenizer_config.json` and
    /// `model_dir/chat_template.jinja` when they exist.
    pub fn load(model_dir: &Path) -> Result<Self> {
        let config_path = model_dir.join(HF_TOKENIZER_CONFIG_FILE);
        let config_path = config_path.is_file().then_some(config_path);
        let mut tokenizer =
            Self::from_files(&model_dir.join(HF_TOKENIZER_FILE), config_path.as_deref())?;
        let jinja = model_dir.join(HF_CHAT_TEMPLATE_FILE);
        if tokenizer.template.is_none() && jinja.is_file() {
            let source = read(&jinja)?;
            tokenizer.template = Some(
                tokenizer
                    .template_from_source(source)
                    .map_err(|e| with_path(e, &jinja))?,
            );
        }
        Ok(tokenizer)
    }

    /// Loads a `tokenizer.json` and, when given, a `tokenizer_config.json`.
    pub fn from_files(tokenizer_json: &Path, tokenizer_config: Option<&Path>) -> Result<Self> {
        let text = read(tokenizer_json)?;
        let inner =
            tokenizers::Tokenizer::from_bytes(text.as_bytes()).map_err(|e| Error::Malformed {
                path: tokenizer_json.to_owned(),
                message: e.to_string(),
            })?;
        match tokenizer_config {
            None => Self::from_parts(inner, HfTokenizerConfig::default())
                .map_err(|e| with_path(e, tokenizer_json)),
            Some(path) => {
                let config = HfTokenizerConfig::from_file(path)?;
                Self::from_parts(inner, config).map_err(|e| with_path(e, path))
            }
        }
    }

    /// Wraps a `tokenizers` tokenizer with a configuration.
    ///
    /// A `bos_token` / `eos_token` / `pad_token` that is not in the vocabulary is an
    /// [`Error::InvalidConfig`].
    pub fn from_parts(mut inner: tokenizers::Tokenizer, config: HfTokenizerConfig) -> Result<Self> {
        inner.with_truncation(None).map_err(Error::Tokenizers)?;
        inner.with_padding(None);
        let resolve = |name: &str, token: &Option<String>| -> Result<Option<u32>> {
            match token {
                None => Ok(None),
                Some(t) => inner.token_to_id(t).map(Some).ok_or_else(|| {
                    Error::InvalidConfig(format!("{name} {t:?} is not in the vocabulary"))
                }),
            }
        };
        let bos = resolve("bos_token", &config.bos_token)?;
        let eos = resolve("eos_token", &config.eos_token)?;
        let pad = resolve("pad_token", &config.pad_token)?;
        let mut all: Vec<u32> = inner
            .get_added_tokens_decoder()
            .into_iter()
            .filter(|(_, token)| token.special)
            .map(|(id, _)| id)
            .chain([bos, eos, pad].into_iter().flatten())
            .collect();
        all.sort_unstable();
        all.dedup();
        let max_id = inner.get_vocab(true).into_values().max();
        let vocab_size = max_id
            .map_or(0, |id| id as usize + 1)
            .max(inner.get_vocab_size(true));
        let mut added: Vec<u32> = inner
            .get_added_tokens_decoder()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        added.sort_unstable();
        let bytes = TokenBytes::of(inner.get_decoder());
        let mut tokenizer = Self {
            inner,
            special: SpecialTokens { bos, eos, pad, all },
            vocab_size,
            template: None,
            added,
            bytes,
        };
        tokenizer.template = config
            .chat_template
            .map(|source| {
                ChatTemplate::with_special_tokens(source, config.bos_token, config.eos_token)
            })
            .transpose()?;
        Ok(tokenizer)
    }

    fn template_from_source(&self, source: String) -> Result<ChatTemplate> {
        let spelling = |id: Option<u32>| id.and_then(|id| self.inner.id_to_token(id));
        ChatTemplate::with_special_tokens(
            source,
            spelling(self.special.bos),
            spelling(self.special.eos),
        )
    }

    /// Replaces the chat template (e.g. one of the named templates of a configuration).
    pub fn set_chat_template(&mut self, template: Option<ChatTemplate>) {
        self.template = template;
    }

    /// The wrapped `tokenizers` tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}

/// Attaches a path to configuration and template errors.
fn with_path(e: Error, path: &Path) -> Error {
    let path: PathBuf = path.to_owned();
    match e {
        Error::InvalidConfig(message) => Error::Malformed { path, message },
        Error::Template(e) => Error::Malformed {
            path,
            message: format!("chat template: {e:#}"),
        },
        other => other,
    }
}

impl Tokenizer for HfTokenizer {
    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self.inner.encode(text, false).map_err(Error::Tokenizers)?;
        Ok(encoding.get_ids().to_vec())
    }

    fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        // `tokenizers` silently drops unknown ids; they are an error here.
        if let Some(&id) = ids
            .iter()
            .find(|&&id| id as usize >= self.vocab_size || self.inner.id_to_token(id).is_none())
        {
            return Err(Error::IdOutOfVocab {
                id,
                vocab_size: self.vocab_size,
            });
        }
        self.inner
            .decode(ids, skip_special)
            .map_err(Error::Tokenizers)
    }

    fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Added tokens give their text; with a `ByteLevel` decoder each character of the
    /// vocabulary string maps back to its byte; with `ByteFallback`, `<0xAB>` is the byte
    /// 0xAB; otherwise the text the decoder gives the token alone.
    fn token_bytes(&self, id: u32) -> Option<Vec<u8>> {
        if id as usize >= self.vocab_size {
            return None;
        }
        let token = self.inner.id_to_token(id)?;
        if self.added.binary_search(&id).is_ok() {
            return Some(token.into_bytes());
        }
        if self.bytes.byte_fallback
            && let Some(hex) = token.strip_prefix("<0x").and_then(|t| t.strip_suffix('>'))
            && hex.len() == 2
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            return Some(vec![byte]);
        }
        if self.bytes.byte_level
            && let Some(bytes) = token.chars().map(byte_of).collect::<Option<Vec<u8>>>()
        {
            return Some(bytes);
        }
        self.inner.decode(&[id], false).ok().map(String::into_bytes)
    }

    fn special_tokens(&self) -> &SpecialTokens {
        &self.special
    }

    fn chat_template(&self) -> Option<&ChatTemplate> {
        self.template.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_fallback_tokens_are_their_byte() {
        let json = r#"{"version": "1.0", "added_tokens": [{"id": 3, "content": "<s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}],
            "normalizer": null, "pre_tokenizer": null, "post_processor": null,
            "decoder": {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"}]},
            "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": true,
                "vocab": {"<0xE2>": 0, "a▁b": 1, "é": 2, "<s>": 3}, "merges": []}}"#;
        let inner = tokenizers::Tokenizer::from_bytes(json.as_bytes()).unwrap();
        let t = HfTokenizer::from_parts(inner, HfTokenizerConfig::default()).unwrap();
        assert_eq!(t.decode(&[0], false).unwrap(), "\u{FFFD}");
        assert_eq!(t.token_bytes(0), Some(vec![0xE2]));
        assert_eq!(t.token_bytes(1), Some(b"a b".to_vec()));
        assert_eq!(t.token_bytes(2), Some("é".as_bytes().to_vec()));
        assert_eq!(t.token_bytes(3), Some(b"<s>".to_vec()));
        assert_eq!(t.token_bytes(4), None);
    }

    #[test]
    fn config_token_forms_and_named_templates() {
        let c = HfTokenizerConfig::from_json(
            r#"{"bos_token": {"content": "<s>", "lstrip": false}, "eos_token": "</s>", "pad_token": null,
                "chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}],
                "model_max_length": 1000}"#,
        )
        .unwrap();
        assert_eq!(c.bos_token.as_deref(), Some("<s>"));
        assert_eq!(c.eos_token.as_deref(), Some("</s>"));
        assert_eq!(c.pad_token, None);
        assert_eq!(c.chat_template.as_deref(), Some("D"));

        let c = HfTokenizerConfig::from_json(r#"{"chat_template": "X"}"#).unwrap();
        assert_eq!(c.chat_template.as_deref(), Some("X"));
        let c = HfTokenizerConfig::from_json(
            r#"{"chat_template": [{"name": "rag", "template": "R"}]}"#,
        )
        .unwrap();
        assert_eq!(c.chat_template, None);
    }
}
