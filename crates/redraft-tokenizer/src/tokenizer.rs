//! The [`Tokenizer`] trait and the [`SpecialTokens`] every tokenizer describes.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{ChatTemplate, Result};

/// The special tokens of a tokenizer: the well-known roles and the list of all special ids.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecialTokens {
    /// Beginning-of-sequence token, when the tokenizer has one.
    pub bos: Option<u32>,
    /// End-of-sequence token, when the tokenizer has one.
    pub eos: Option<u32>,
    /// Padding token, when the tokenizer has one.
    pub pad: Option<u32>,
    /// Every special id (including `bos`, `eos` and `pad`), sorted and without duplicates.
    pub all: Vec<u32>,
}

impl SpecialTokens {
    /// Whether `id` is a special token.
    pub fn is_special(&self, id: u32) -> bool {
        self.all.binary_search(&id).is_ok()
    }

    /// The id that pads batches: the pad token, else the end-of-sequence token, else 0 (padding
    /// is masked, so any id works).
    pub fn padding_id(&self) -> u32 {
        self.pad.or(self.eos).unwrap_or(0)
    }
}

/// A tokenizer: text to ids and back, with special tokens and an optional chat template.
///
/// The trait is object safe (and `Debug`, so that structs holding one can derive it); `Box<dyn Tokenizer>` and `Arc<dyn Tokenizer>` are the usual
/// handles (see [`load_tokenizer`](crate::load_tokenizer)).
pub trait Tokenizer: Send + Sync + std::fmt::Debug {
    /// Encodes `text` into ids.
    ///
    /// No special token is added implicitly (no BOS, no EOS). Special-token strings that occur
    /// literally in `text` (such as `<|im_start|>`) are recognised and encoded as their ids, as
    /// the Hugging Face tokenizers do for added special tokens.
    fn encode(&self, text: &str) -> Result<Vec<u32>>;

    /// Decodes `ids` into text, leaving out special tokens when `skip_special` is true.
    ///
    /// Byte sequences that are not valid UTF-8 are replaced by U+FFFD (lossy decoding); this
    /// never panics. An id outside the vocabulary is an [`Error::IdOutOfVocab`](crate::Error).
    fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String>;

    /// Number of ids: every valid id is below it (the size of an embedding table).
    fn vocab_size(&self) -> usize;

    /// The id of the token spelled `token` (a vocabulary entry or a special token).
    fn token_to_id(&self, token: &str) -> Option<u32>;

    /// The spelling of token `id` in the vocabulary, `None` when out of vocabulary.
    fn id_to_token(&self, id: u32) -> Option<String>;

    /// The bytes token `id` stands for in decoded text, `None` when out of vocabulary.
    ///
    /// Unlike [`decode`](Self::decode)`(&[id])`, this is exact for tokens that are not valid
    /// UTF-8 alone (a byte of a multi-byte character): their bytes, never U+FFFD. A special
    /// token gives its text.
    fn token_bytes(&self, id: u32) -> Option<Vec<u8>>;

    /// The tokenizer's special tokens.
    fn special_tokens(&self) -> &SpecialTokens;

    /// The chat template, when the tokenizer has one.
    fn chat_template(&self) -> Option<&ChatTemplate>;
}

macro_rules! forward_tokenizer {
    ($($ty:ty),*) => {$(
        impl<T: Tokenizer + ?Sized> Tokenizer for $ty {
            fn encode(&self, text: &str) -> Result<Vec<u32>> {
                (**self).encode(text)
            }
            fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
                (**self).decode(ids, skip_special)
            }
            fn vocab_size(&self) -> usize {
                (**self).vocab_size()
            }
            fn token_to_id(&self, token: &str) -> Option<u32> {
                (**self).token_to_id(token)
            }
            fn id_to_token(&self, id: u32) -> Option<String> {
                (**self).id_to_token(id)
            }
            fn token_bytes(&self, id: u32) -> Option<Vec<u8>> {
                (**self).token_bytes(id)
            }
            fn special_tokens(&self) -> &SpecialTokens {
                (**self).special_tokens()
            }
            fn chat_template(&self) -> Option<&ChatTemplate> {
                (**self).chat_template()
            }
        }
    )*};
}

forward_tokenizer!(&T, Box<T>, Arc<T>);
