//! The byte tokenizer: ids `0..=255` are raw bytes, special tokens follow from 256.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::chat::CHATML_TEMPLATE;
use crate::{ChatTemplate, Error, Result, SpecialTokens, Tokenizer};

/// The file name of a saved [`ByteTokenizer`] in a model directory.
pub const BYTE_TOKENIZER_FILE: &str = "byte_tokenizer.json";

/// The version of the [`BYTE_TOKENIZER_FILE`] format written by this crate.
pub const BYTE_TOKENIZER_VERSION: u32 = 1;

/// The special tokens of [`ByteTokenizer::default`], with ids 256 to 260.
pub const DEFAULT_SPECIAL_TOKENS: [&str; 5] = [
    "<|bos|>",
    "<|eos|>",
    "<|pad|>",
    "<|im_start|>",
    "<|im_end|>",
];

/// Number of byte ids; the first special token has this id.
pub const NUM_BYTES: u32 = 256;

/// The `"type"` tag of a byte tokenizer file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ByteKind {
    /// `"byte"`, the only value.
    #[default]
    #[serde(rename = "byte")]
    Byte,
}

/// The content of a [`BYTE_TOKENIZER_FILE`]: everything that defines a [`ByteTokenizer`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ByteTokenizerSpec {
    /// Always `"byte"`.
    #[serde(rename = "type")]
    pub kind: ByteKind,
    /// Format version, [`BYTE_TOKENIZER_VERSION`].
    pub version: u32,
    /// Special tokens; `special_tokens[i]` has id `256 + i`.
    pub special_tokens: Vec<String>,
    /// Beginning-of-sequence token (an entry of `special_tokens`).
    pub bos: Option<String>,
    /// End-of-sequence token (an entry of `special_tokens`).
    pub eos: Option<String>,
    /// Padding token (an entry of `special_tokens`).
    pub pad: Option<String>,
    /// Jinja chat template; a missing field means [`CHATML_TEMPLATE`], `null` means none.
    #[serde(default = "default_chat_template")]
    pub chat_template: Option<String>,
}

fn default_chat_template() -> Option<String> {
    Some(CHATML_TEMPLATE.to_owned())
}

impl Default for ByteTokenizerSpec {
    fn default() -> Self {
        Self {
            kind: ByteKind::Byte,
            version: BYTE_TOKENIZER_VERSION,
            special_tokens: DEFAULT_SPECIAL_TOKENS.map(String::from).to_vec(),
            bos: Some("<|bos|>".into()),
            eos: Some("<|eos|>".into()),
            pad: Some("<|pad|>".into()),
            chat_template: default_chat_template(),
        }
    }
}

/// Byte-level tokenizer with special tokens.
///
/// It needs no training and no vocabulary file, which makes it the tokenizer of the built-in
/// tasks and of tiny test models. It is saved as [`BYTE_TOKENIZER_FILE`] in a model directory:
///
/// ```json
/// {
///   "type": "byte",
///   "version": 1,
///   "special_tokens": ["<|bos|>", "<|eos|>", "<|pad|>", "<|im_start|>", "<|im_end|>"],
///   "bos": "<|bos|>",
///   "eos": "<|eos|>",
///   "pad": "<|pad|>",
///   "chat_template": "{% for message in messages %}..."
/// }
/// ```
///
/// `special_tokens[i]` has id `256 + i`; `bos`, `eos` and `pad` name entries of that list (or
/// are `null`). A missing `chat_template` field means the built-in ChatML template
/// ([`CHATML_TEMPLATE`]); `"chat_template": null` means no template.
///
/// Decoding concatenates the bytes (and the spellings of the special tokens that are not
/// skipped) and converts them to text lossily: byte runs that are not valid UTF-8 become
/// U+FFFD, as `String::from_utf8_lossy` does. It never panics.
#[derive(Debug, Clone)]
pub struct ByteTokenizer {
    spec: ByteTokenizerSpec,
    by_name: HashMap<String, u32>,
    /// Special ids, longest spelling first: the order in which `encode` tries them.
    match_order: Vec<u32>,
    /// Whether some special token starts with the byte (to skip the others quickly).
    starts_special: [bool; 256],
    special: SpecialTokens,
    template: Option<ChatTemplate>,
}

impl Default for ByteTokenizer {
    /// The byte tokenizer with [`DEFAULT_SPECIAL_TOKENS`] and the ChatML template.
    fn default() -> Self {
        // The default spec is valid (checked by a unit test).
        Self::from_spec(ByteTokenizerSpec::default())
            .unwrap_or_else(|e| unreachable!("default byte tokenizer: {e}"))
    }
}

impl ByteTokenizer {
    /// Same as [`ByteTokenizer::default`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a tokenizer from its spec, checking it: a known version, non-empty and unique
    /// special tokens, `bos` / `eos` / `pad` among them, a chat template that compiles.
    pub fn from_spec(spec: ByteTokenizerSpec) -> Result<Self> {
        if spec.version != BYTE_TOKENIZER_VERSION {
            return Err(Error::InvalidConfig(format!(
                "unsupported byte tokenizer version {} (this build reads version {})",
                spec.version, BYTE_TOKENIZER_VERSION
            )));
        }
        let mut by_name = HashMap::new();
        for (i, token) in spec.special_tokens.iter().enumerate() {
            if token.is_empty() {
                return Err(Error::InvalidConfig("empty special token".into()));
            }
            let id = u32::try_from(i)
                .ok()
                .and_then(|i| i.checked_add(NUM_BYTES))
                .ok_or_else(|| Error::InvalidConfig("too many special tokens".into()))?;
            if by_name.insert(token.clone(), id).is_some() {
                return Err(Error::InvalidConfig(format!(
                    "duplicate special token {token:?}"
                )));
            }
        }
        let role = |name: &str, token: &Option<String>| -> Result<Option<u32>> {
            match token {
                None => Ok(None),
                Some(t) => by_name.get(t).copied().map(Some).ok_or_else(|| {
                    Error::InvalidConfig(format!("{name} token {t:?} is not a special token"))
                }),
            }
        };
        let special = SpecialTokens {
            bos: role("bos", &spec.bos)?,
            eos: role("eos", &spec.eos)?,
            pad: role("pad", &spec.pad)?,
            all: (NUM_BYTES..NUM_BYTES + by_name.len() as u32).collect(),
        };
        let template = spec
            .chat_template
            .as_ref()
            .map(|source| {
                ChatTemplate::with_special_tokens(
                    source.clone(),
                    spec.bos.clone(),
                    spec.eos.clone(),
                )
            })
            .transpose()?;
        let mut match_order: Vec<u32> = special.all.clone();
        match_order.sort_by_key(|&id| {
            std::cmp::Reverse(spec.special_tokens[(id - NUM_BYTES) as usize].len())
        });
        let mut starts_special = [false; 256];
        for token in &spec.special_tokens {
            starts_special[usize::from(token.as_bytes()[0])] = true;
        }
        Ok(Self {
            spec,
            by_name,
            match_order,
            starts_special,
            special,
            template,
        })
    }

    /// The spec this tokenizer was built from (what [`save`](Self::save) writes).
    pub fn spec(&self) -> &ByteTokenizerSpec {
        &self.spec
    }

    /// Adds a special token at the end (id `vocab_size()` before the call) and returns its id.
    pub fn add_special_token(&mut self, token: &str) -> Result<u32> {
        let mut spec = self.spec.clone();
        spec.special_tokens.push(token.to_owned());
        *self = Self::from_spec(spec)?;
        Ok(self.by_name[token])
    }

    /// Reads a tokenizer from a [`BYTE_TOKENIZER_FILE`]; errors name the path.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        let malformed = |message: String| Error::Malformed {
            path: path.to_owned(),
            message,
        };
        let spec: ByteTokenizerSpec =
            serde_json::from_str(&text).map_err(|e| malformed(e.to_string()))?;
        Self::from_spec(spec).map_err(|e| match e {
            Error::InvalidConfig(message) => malformed(message),
            Error::Template(e) => malformed(format!("chat_template: {e:#}")),
            other => other,
        })
    }

    /// Reads `model_dir/byte_tokenizer.json`.
    pub fn load(model_dir: &Path) -> Result<Self> {
        Self::from_file(&model_dir.join(BYTE_TOKENIZER_FILE))
    }

    /// Writes `model_dir/byte_tokenizer.json` (pretty JSON) and returns its path.
    pub fn save(&self, model_dir: &Path) -> Result<PathBuf> {
        let path = model_dir.join(BYTE_TOKENIZER_FILE);
        let json = serde_json::to_string_pretty(&self.spec).map_err(|e| Error::Malformed {
            path: path.clone(),
            message: e.to_string(),
        })?;
        std::fs::write(&path, json + "\n").map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        Ok(path)
    }

    fn special_spelling(&self, id: u32) -> Option<&str> {
        let index = id.checked_sub(NUM_BYTES)? as usize;
        self.spec.special_tokens.get(index).map(String::as_str)
    }
}

impl Tokenizer for ByteTokenizer {
    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let bytes = text.as_bytes();
        let mut ids = Vec::with_capacity(bytes.len());
        let mut i = 0;
        'outer: while i < bytes.len() {
            if !self.starts_special[usize::from(bytes[i])] {
                ids.push(u32::from(bytes[i]));
                i += 1;
                continue;
            }
            for &id in &self.match_order {
                let spelling = self.spec.special_tokens[(id - NUM_BYTES) as usize].as_bytes();
                if bytes[i..].starts_with(spelling) {
                    ids.push(id);
                    i += spelling.len();
                    continue 'outer;
                }
            }
            ids.push(u32::from(bytes[i]));
            i += 1;
        }
        Ok(ids)
    }

    fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        let mut bytes = Vec::with_capacity(ids.len());
        for &id in ids {
            if let Ok(byte) = u8::try_from(id) {
                bytes.push(byte);
            } else if let Some(spelling) = self.special_spelling(id) {
                if !skip_special {
                    bytes.extend_from_slice(spelling.as_bytes());
                }
            } else {
                return Err(Error::IdOutOfVocab {
                    id,
                    vocab_size: self.vocab_size(),
                });
            }
        }
        Ok(match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })
    }

    fn vocab_size(&self) -> usize {
        NUM_BYTES as usize + self.spec.special_tokens.len()
    }

    /// Special tokens by spelling; bytes as the character itself for printable ASCII
    /// (`"a"`), and as `<0xNN>` (upper-case hex, as byte-fallback vocabularies spell them) for
    /// every byte.
    fn token_to_id(&self, token: &str) -> Option<u32> {
        if let Some(&id) = self.by_name.get(token) {
            return Some(id);
        }
        match token.as_bytes() {
            [b] if b.is_ascii_graphic() => Some(u32::from(*b)),
            [b'<', b'0', b'x', hi, lo, b'>']
                if hi.is_ascii_hexdigit() && lo.is_ascii_hexdigit() =>
            {
                u8::from_str_radix(&token[3..5], 16).ok().map(u32::from)
            }
            _ => None,
        }
    }

    /// Printable ASCII bytes as themselves, other bytes as `<0xNN>`, special tokens by spelling.
    fn id_to_token(&self, id: u32) -> Option<String> {
        match u8::try_from(id) {
            Ok(b) if b.is_ascii_graphic() => Some(char::from(b).to_string()),
            Ok(b) => Some(format!("<0x{b:02X}>")),
            Err(_) => self.special_spelling(id).map(str::to_owned),
        }
    }

    /// A byte id gives its byte; a special token its spelling.
    fn token_bytes(&self, id: u32) -> Option<Vec<u8>> {
        match u8::try_from(id) {
            Ok(byte) => Some(vec![byte]),
            Err(_) => self.special_spelling(id).map(|s| s.as_bytes().to_vec()),
        }
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
    fn default_layout() {
        let t = ByteTokenizer::default();
        assert_eq!(t.vocab_size(), 261);
        assert_eq!(t.special_tokens().bos, Some(256));
        assert_eq!(t.special_tokens().eos, Some(257));
        assert_eq!(t.special_tokens().pad, Some(258));
        assert_eq!(t.token_to_id("<|im_start|>"), Some(259));
        assert_eq!(t.token_to_id("<|im_end|>"), Some(260));
        assert_eq!(t.special_tokens().all, vec![256, 257, 258, 259, 260]);
        assert!(t.chat_template().is_some());
    }

    #[test]
    fn encode_recognises_special_tokens() {
        let t = ByteTokenizer::default();
        let ids = t.encode("<|im_start|>hi<|im_end|><|im").unwrap();
        let mut want = vec![259, u32::from(b'h'), u32::from(b'i'), 260];
        want.extend("<|im".bytes().map(u32::from));
        assert_eq!(ids, want);
        assert_eq!(
            t.decode(&ids, false).unwrap(),
            "<|im_start|>hi<|im_end|><|im"
        );
        assert_eq!(t.decode(&ids, true).unwrap(), "hi<|im");
    }

    #[test]
    fn longest_special_token_wins() {
        let mut t = ByteTokenizer::default();
        let short = t.add_special_token("<|a").unwrap();
        let long = t.add_special_token("<|a|>").unwrap();
        assert_eq!(t.encode("<|a|><|a").unwrap(), vec![long, short]);
    }

    #[test]
    fn out_of_vocab_is_an_error() {
        let t = ByteTokenizer::default();
        let err = t.decode(&[65, 261], false).unwrap_err();
        assert!(matches!(
            err,
            Error::IdOutOfVocab {
                id: 261,
                vocab_size: 261
            }
        ));
        assert_eq!(
            err.to_string(),
            "token id 261 is out of vocabulary (vocab size 261)"
        );
        assert_eq!(t.id_to_token(261), None);
    }

    #[test]
    fn invalid_utf8_is_lossy() {
        let t = ByteTokenizer::default();
        assert_eq!(
            t.decode(&[0xff, 65, 0xe2, 0x82], false).unwrap(),
            "\u{FFFD}A\u{FFFD}"
        );
    }

    #[test]
    fn token_bytes_are_raw_bytes() {
        let t = ByteTokenizer::default();
        // 0xE2 starts a three-byte character: not valid UTF-8 alone.
        assert_eq!(t.decode(&[0xE2], false).unwrap(), "\u{FFFD}");
        assert_eq!(t.token_bytes(0xE2), Some(vec![226]));
        assert_eq!(t.token_bytes(u32::from(b'a')), Some(b"a".to_vec()));
        assert_eq!(t.token_bytes(260), Some(b"<|im_end|>".to_vec()));
        assert_eq!(t.token_bytes(261), None);
    }

    #[test]
    fn token_spellings_round_trip() {
        let t = ByteTokenizer::default();
        for id in 0..t.vocab_size() as u32 {
            let token = t.id_to_token(id).unwrap();
            assert_eq!(t.token_to_id(&token), Some(id), "{token}");
        }
        assert_eq!(t.token_to_id("<0x41>"), Some(65));
        assert_eq!(t.token_to_id("ab"), None);
    }

    #[test]
    fn invalid_specs_are_rejected() {
        let mut spec = ByteTokenizerSpec::default();
        spec.special_tokens.push("<|bos|>".into());
        assert!(matches!(
            ByteTokenizer::from_spec(spec),
            Err(Error::InvalidConfig(_))
        ));
        let spec = ByteTokenizerSpec {
            eos: Some("<|nope|>".into()),
            ..Default::default()
        };
        assert!(matches!(
            ByteTokenizer::from_spec(spec),
            Err(Error::InvalidConfig(_))
        ));
        let spec = ByteTokenizerSpec {
            version: 2,
            ..Default::default()
        };
        assert!(matches!(
            ByteTokenizer::from_spec(spec),
            Err(Error::InvalidConfig(_))
        ));
    }

    #[test]
    fn save_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = ByteTokenizer::default();
        t.add_special_token("<|tool|>").unwrap();
        let path = t.save(dir.path()).unwrap();
        assert_eq!(path.file_name().unwrap(), BYTE_TOKENIZER_FILE);
        let back = ByteTokenizer::load(dir.path()).unwrap();
        assert_eq!(back.spec(), t.spec());
        assert_eq!(back.token_to_id("<|tool|>"), Some(261));
    }

    #[test]
    fn file_defaults_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(BYTE_TOKENIZER_FILE);
        std::fs::write(
            &path,
            r#"{"type": "byte", "version": 1, "special_tokens": ["<s>"], "bos": "<s>", "eos": null, "pad": null}"#,
        )
        .unwrap();
        let t = ByteTokenizer::from_file(&path).unwrap();
        assert_eq!(t.special_tokens().bos, Some(256));
        assert_eq!(t.chat_template().unwrap().source(), CHATML_TEMPLATE);

        std::fs::write(&path, r#"{"type": "byte", "version": 7, "special_tokens": [], "bos": null, "eos": null, "pad": null}"#).unwrap();
        let err = ByteTokenizer::from_file(&path).unwrap_err();
        assert!(matches!(err, Error::Malformed { .. }));
        assert!(err.to_string().contains(BYTE_TOKENIZER_FILE), "{err}");

        std::fs::write(&path, r#"{"type": "bpe"}"#).unwrap();
        assert!(matches!(
            ByteTokenizer::from_file(&path),
            Err(Error::Malformed { .. })
        ));

        let missing = ByteTokenizer::load(&dir.path().join("nope")).unwrap_err();
        assert!(matches!(missing, Error::Io { .. }));
        assert!(missing.to_string().contains("nope"), "{missing}");
    }
}
