//! Tokenizers for redraft: the [`Tokenizer`] trait, a byte tokenizer, Hugging Face
//! `tokenizer.json` tokenizers, chat templates, streaming decoding, and conversations kept as
//! tokens.
//!
//! - [`Tokenizer`]: encode, decode, vocabulary, [`SpecialTokens`], optional
//!   [`ChatTemplate`]; implemented by [`ByteTokenizer`] and [`HfTokenizer`].
//! - [`load_tokenizer`]: the tokenizer of a model directory (`tokenizer.json`, else
//!   `byte_tokenizer.json`); [`TokenizerConfig`] names one in a configuration file.
//! - [`ChatTemplate`]: Jinja chat templates rendered under the `transformers` conventions.
//! - [`IncrementalDecoder`]: streaming text out of ids sampled one at a time; [`StopText`]:
//!   that text cut at its first stop string, checked token by token.
//! - [`Conversation`]: the ids of a multi-turn conversation, appended to without
//!   re-tokenizing, with spans that say which ids the policy sampled (the trainable ones).
//!
//! ```
//! use redraft_tokenizer::{ByteTokenizer, Conversation, Message, Tokenizer};
//!
//! let tok = ByteTokenizer::default();
//! let mut conv = Conversation::from_messages(&tok, &[Message::user("2+2?")], true)?;
//! let sampled = tok.encode("4<|im_end|>")?;
//! conv.push_sampled(&sampled)?;
//! conv.push_message(&tok, Message::user("Why?"))?;
//! conv.open_assistant_turn(&tok)?;
//! assert_eq!(
//!     tok.decode(conv.ids(), false)?,
//!     "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n\
//!      <|im_start|>user\nWhy?<|im_end|>\n<|im_start|>assistant\n"
//! );
//! let mask = conv.trainable_mask();
//! assert_eq!(mask.iter().filter(|&&m| m).count(), sampled.len());
//! # Ok::<(), redraft_tokenizer::Error>(())
//! ```
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod byte;
mod byte_level;
mod chat;
mod config;
mod conversation;
mod error;
mod gguf;
mod hf;
mod incremental;
mod stop;
mod strftime;
mod tokenizer;

use std::path::Path;

pub use byte::{
    BYTE_TOKENIZER_FILE, BYTE_TOKENIZER_VERSION, ByteKind, ByteTokenizer, ByteTokenizerSpec,
    DEFAULT_SPECIAL_TOKENS, NUM_BYTES,
};
pub use chat::{CHATML_TEMPLATE, ChatTemplate, Message};
pub use config::TokenizerConfig;
pub use conversation::{Conversation, Span, SpanKind, Transcript};
pub use error::{Error, Result};
pub use gguf::{GgufTokenizerFiles, gguf_tokenizer_files};
pub use hf::{
    HF_CHAT_TEMPLATE_FILE, HF_TOKENIZER_CONFIG_FILE, HF_TOKENIZER_FILE, HfTokenizer,
    HfTokenizerConfig,
};
pub use incremental::IncrementalDecoder;
pub use stop::StopText;
pub use tokenizer::{SpecialTokens, Tokenizer};

/// Loads the tokenizer of a model directory, or of a `.gguf` file (built from its metadata):
/// `tokenizer.json` (with `tokenizer_config.json`)
/// as an [`HfTokenizer`], else `byte_tokenizer.json` as a [`ByteTokenizer`], else
/// [`Error::NotFound`] listing the files looked for.
pub fn load_tokenizer(model_dir: &Path) -> Result<Box<dyn Tokenizer>> {
    if model_dir.is_file()
        && model_dir
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
    {
        tracing::debug!(file = %model_dir.display(), "building the tokenizer of a GGUF file");
        let file = redraft_gguf::GgufFile::open(model_dir)?;
        return Ok(Box::new(HfTokenizer::from_gguf(&file)?));
    }
    if model_dir.join(HF_TOKENIZER_FILE).is_file() {
        tracing::debug!(dir = %model_dir.display(), "loading Hugging Face tokenizer");
        return Ok(Box::new(HfTokenizer::load(model_dir)?));
    }
    if model_dir.join(BYTE_TOKENIZER_FILE).is_file() {
        tracing::debug!(dir = %model_dir.display(), "loading byte tokenizer");
        return Ok(Box::new(ByteTokenizer::load(model_dir)?));
    }
    Err(Error::NotFound {
        dir: model_dir.to_owned(),
        looked_for: vec![HF_TOKENIZER_FILE.into(), BYTE_TOKENIZER_FILE.into()],
    })
}
