//! Tokenizers described by GGUF metadata, built as transformers builds them when it loads a GGUF
//! file (`AutoTokenizer.from_pretrained(..., gguf_file=...)`), as a `tokenizer.json` plus the
//! `tokenizer_config.json` fields (special tokens, chat template). Two vocabulary kinds:
//! `tokenizer.ggml.model = "gpt2"` (byte-level BPE, split by the regex its `tokenizer.ggml.pre`
//! names) and `"llama"` (SentencePiece BPE with byte fallback). Others are refused by name.

use std::collections::HashMap;
use std::path::Path;

use redraft_gguf::{GgufFile, Metadata};
use serde_json::{Map, Value, json};

use crate::byte_level::byte_spelling;
use crate::hf::{
    HF_CHAT_TEMPLATE_FILE, HF_TOKENIZER_CONFIG_FILE, HF_TOKENIZER_FILE, HfTokenizer,
    HfTokenizerConfig,
};
use crate::{Error, Result};

/// GGUF token types (llama.cpp's `llama_token_type`): control tokens become special added
/// tokens, user-defined ones plain added tokens.
const CONTROL: i64 = 3;
const USER_DEFINED: i64 = 4;

/// Pre-tokenizer split patterns by `tokenizer.ggml.pre` (the vocabularies whose merges were
/// learned on another split than GPT-2's); any other name splits as GPT-2 does.
fn split_pattern(pre: &str) -> Option<&'static str> {
    const LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    Some(match pre {
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "smaug-bpe" | "dbrx" => LLAMA3,
        "qwen2" | "deepseek-r1-qwen" => QWEN2,
        _ => return None,
    })
}

/// The files transformers would save for the tokenizer of a GGUF file.
#[derive(Debug, Clone)]
pub struct GgufTokenizerFiles {
    /// `tokenizer.json`.
    pub tokenizer_json: Value,
    /// `tokenizer_config.json` (special tokens, `add_bos_token`, chat template).
    pub tokenizer_config: Value,
}

impl GgufTokenizerFiles {
    /// Writes `tokenizer.json`, `tokenizer_config.json` and, when there is a chat template,
    /// `chat_template.jinja` (transformers 5's layout; the same text as the config's
    /// `chat_template`, which transformers 4 reads) into `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let write = |name: &str, text: String| {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(|source| Error::Io { path, source })
        };
        let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_default();
        write(HF_TOKENIZER_FILE, pretty(&self.tokenizer_json))?;
        write(HF_TOKENIZER_CONFIG_FILE, pretty(&self.tokenizer_config))?;
        if let Some(template) = self.tokenizer_config["chat_template"].as_str() {
            write(HF_CHAT_TEMPLATE_FILE, template.to_string())?;
        }
        Ok(())
    }
}

fn gguf_error(e: redraft_gguf::Error) -> Error {
    Error::Gguf(e)
}

fn optional<T>(
    meta: &Metadata,
    key: &str,
    get: impl Fn(&str) -> redraft_gguf::Result<T>,
) -> Result<Option<T>> {
    meta.get(key)
        .map(|_| get(key))
        .transpose()
        .map_err(gguf_error)
}

/// An added token as transformers adds GGUF tokens (never normalized).
fn added(id: usize, content: &str, special: bool) -> Value {
    json!({"id": id, "content": content, "single_word": false, "lstrip": false,
           "rstrip": false, "normalized": false, "special": special})
}

/// Builds the tokenizer files of `file` from its `tokenizer.*` metadata.
///
/// # Errors
/// [`Error::InvalidConfig`] naming the key for missing, mistyped or unsupported metadata.
pub fn gguf_tokenizer_files(file: &GgufFile) -> Result<GgufTokenizerFiles> {
    let meta = file.metadata();
    let kind = meta.str("tokenizer.ggml.model").map_err(gguf_error)?;
    let tokens = meta
        .str_array("tokenizer.ggml.tokens")
        .map_err(gguf_error)?;
    let types =
        optional(meta, "tokenizer.ggml.token_type", |k| meta.int_array(k))?.unwrap_or_default();
    let merges = optional(meta, "tokenizer.ggml.merges", |k| meta.str_array(k))?;
    let pre = optional(meta, "tokenizer.ggml.pre", |k| meta.str(k))?;
    let byte_level = match kind {
        "gpt2" => true,
        "llama" => false,
        other => {
            return Err(Error::InvalidConfig(format!(
                "GGUF tokenizer.ggml.model `{other}` is not supported (supported: gpt2, llama)"
            )));
        }
    };
    // The vocabulary; a later duplicate spelling wins, as in a Python dict.
    let spelling = byte_spelling();
    let alphabet: std::collections::HashSet<char> = spelling.iter().copied().collect();
    let spelled = |token: &str| -> String {
        if !byte_level || token.chars().all(|c| alphabet.contains(&c)) {
            token.to_string()
        } else {
            token.bytes().map(|b| spelling[b as usize]).collect()
        }
    };
    let mut vocab = Map::new();
    let mut ids: HashMap<String, usize> = HashMap::new();
    for (id, token) in tokens.iter().enumerate() {
        let key = spelled(token);
        vocab.insert(key.clone(), id.into());
        ids.insert(key, id);
    }
    let merges: Vec<Value> = match merges {
        Some(merges) => merges
            .iter()
            .enumerate()
            .map(|(i, m)| match m.split(' ').collect::<Vec<_>>().as_slice() {
                [a, b] => Ok(json!([a, b])),
                _ => Err(Error::InvalidConfig(format!(
                    "GGUF tokenizer.ggml.merges[{i}] = {m:?} is not two tokens separated by a space"
                ))),
            })
            .collect::<Result<_>>()?,
        None if byte_level => Vec::new(),
        None => {
            let scores = meta
                .float_array("tokenizer.ggml.scores")
                .map_err(gguf_error)?;
            merges_from_scores(&tokens, &scores, &ids)
        }
    };
    // Added tokens: the default specials of transformers' class, then control and user-defined
    // tokens of the file.
    let mut added_tokens: Vec<Value> = Vec::new();
    let mut next_id = tokens.len();
    let mut add = |content: &str, special: bool, added_tokens: &mut Vec<Value>| {
        if added_tokens.iter().any(|t| t["content"] == content) {
            return;
        }
        let id = ids.get(content).copied().unwrap_or_else(|| {
            next_id += 1;
            next_id - 1
        });
        added_tokens.push(added(id, content, special));
    };
    let defaults: &[&str] = if byte_level {
        &["<|endoftext|>"]
    } else {
        &["<unk>", "<s>", "</s>"]
    };
    for d in defaults {
        add(d, true, &mut added_tokens);
    }
    for (token, ty) in tokens.iter().zip(types.iter()) {
        if *ty == CONTROL && (!byte_level || token.chars().all(|c| alphabet.contains(&c))) {
            add(token, true, &mut added_tokens);
        }
    }
    for (token, ty) in tokens.iter().zip(types.iter()) {
        if *ty == USER_DEFINED && ids.contains_key(*token) {
            add(token, false, &mut added_tokens);
        }
    }
    let special_of = |key: &str| -> Result<Option<String>> {
        Ok(optional(meta, key, |k| meta.uint(k))?
            .and_then(|id| tokens.get(id as usize).map(|t| (*t).to_string())))
    };
    let bos = special_of("tokenizer.ggml.bos_token_id")?;
    let eos = special_of("tokenizer.ggml.eos_token_id")?;
    let unk = special_of("tokenizer.ggml.unknown_token_id")?;
    let pad = special_of("tokenizer.ggml.padding_token_id")?;
    for t in [&bos, &eos, &unk, &pad].into_iter().flatten() {
        add(t, true, &mut added_tokens);
    }
    let sequence_only = json!({"type": "TemplateProcessing",
        "single": [{"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {}});
    let tokenizer_json = if byte_level {
        let byte_level_step = |use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex});
        let pre_tokenizer = match pre.and_then(split_pattern) {
            Some(pattern) => json!({"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": false},
                byte_level_step(false)]}),
            None => byte_level_step(true),
        };
        json!({"version": "1.0", "truncation": null, "padding": null, "added_tokens": added_tokens,
            "normalizer": null, "pre_tokenizer": pre_tokenizer, "post_processor": sequence_only,
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "",
                "end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                "vocab": vocab, "merges": merges}})
    } else {
        json!({"version": "1.0", "truncation": null, "padding": null, "added_tokens": added_tokens,
            "normalizer": null,
            "pre_tokenizer": {"type": "Metaspace", "replacement": "\u{2581}", "prepend_scheme": "first", "split": false},
            "post_processor": sequence_only,
            "decoder": {"type": "Sequence", "decoders": [
                {"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "},
                {"type": "ByteFallback"}, {"type": "Fuse"},
                {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
            "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
                "vocab": vocab, "merges": merges}})
    };
    let add_bos = match optional(meta, "tokenizer.ggml.add_bos_token", |k| meta.bool(k))? {
        Some(flag) => Some(flag),
        None if !byte_level => Some(true),
        None => None,
    };
    let mut config = Map::new();
    for (key, value) in [
        ("bos_token", &bos),
        ("eos_token", &eos),
        ("unk_token", &unk),
        ("pad_token", &pad),
    ] {
        config.insert(key.into(), value.clone().map_or(Value::Null, Value::from));
    }
    if let Some(flag) = add_bos {
        config.insert("add_bos_token".into(), flag.into());
    }
    if let Some(flag) = optional(meta, "tokenizer.ggml.add_eos_token", |k| meta.bool(k))? {
        config.insert("add_eos_token".into(), flag.into());
    }
    if let Some(template) = optional(meta, "tokenizer.chat_template", |k| meta.str(k))? {
        config.insert("chat_template".into(), template.into());
    }
    Ok(GgufTokenizerFiles {
        tokenizer_json,
        tokenizer_config: Value::Object(config),
    })
}

/// SentencePiece merges recovered from a vocabulary with scores (transformers'
/// `generate_merges`): every split of a token into two vocabulary entries, best score first.
fn merges_from_scores(tokens: &[&str], scores: &[f64], ids: &HashMap<String, usize>) -> Vec<Value> {
    // A Python dict of token -> score: a later duplicate keeps the first position, last score.
    let mut order: Vec<&str> = Vec::new();
    let mut score_of: HashMap<&str, f64> = HashMap::new();
    for (token, score) in tokens.iter().zip(scores) {
        if score_of.insert(token, *score).is_none() {
            order.push(token);
        }
    }
    let mut merges: Vec<(&str, &str, f64)> = Vec::new();
    for token in order {
        let mut local: Vec<(&str, &str, f64)> = token
            .char_indices()
            .skip(1)
            .map(|(at, _)| (&token[..at], &token[at..]))
            .filter(|(l, r)| ids.contains_key(*l) && ids.contains_key(*r))
            .map(|(l, r)| (l, r, score_of[token]))
            .collect();
        local.sort_by_key(|(l, r, _)| (ids[*l], ids[*r]));
        merges.extend(local);
    }
    // Python's sort is stable; with reverse=True equal keys keep their order.
    merges.sort_by(|a, b| {
        (b.2, b.0.chars().count(), b.1.chars().count())
            .partial_cmp(&(a.2, a.0.chars().count(), a.1.chars().count()))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    merges.into_iter().map(|(l, r, _)| json!([l, r])).collect()
}

impl HfTokenizer {
    /// The tokenizer of GGUF file `file`, built from its metadata (see [`gguf_tokenizer_files`]).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for unsupported or malformed tokenizer metadata.
    pub fn from_gguf(file: &GgufFile) -> Result<Self> {
        let files = gguf_tokenizer_files(file)?;
        let inner = tokenizers::Tokenizer::from_bytes(files.tokenizer_json.to_string().as_bytes())
            .map_err(|e| Error::Malformed {
                path: file.path().into(),
                message: format!("tokenizer built from the GGUF metadata: {e}"),
            })?;
        let config =
            HfTokenizerConfig::from_json(&files.tokenizer_config.to_string()).map_err(|e| {
                Error::Malformed {
                    path: file.path().into(),
                    message: e.to_string(),
                }
            })?;
        Self::from_parts(inner, config)
    }
}
