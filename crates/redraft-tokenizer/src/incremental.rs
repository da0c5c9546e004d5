//! Incremental (streaming) decoding: ids in one at a time, finished text out.

use crate::{Result, Tokenizer};

/// Decodes ids one at a time for streaming, yielding only text that is complete.
///
/// Text is held back while the decoded window ends with an incomplete character: an
/// incomplete UTF-8 sequence, or an incomplete byte-level BPE piece, both of which decode to
/// U+FFFD until the following ids complete them. Each step decodes a short window of ids (the
/// ids of the previous chunk, for context, and the ids not yet emitted) and yields what it
/// adds to the previous chunk, as Hugging Face's `DecodeStream` and TGI do.
///
/// For tokenizers whose decoding is concatenative at byte level (the
/// [`ByteTokenizer`](crate::ByteTokenizer), byte-level BPE such as GPT-2, Llama 3 or Qwen), the
/// concatenation of everything [`push`](Self::push) yields and of what
/// [`finish`](Self::finish) returns equals `tokenizer.decode(all_ids, skip_special)`. For
/// decoders that rewrite text depending on context (SentencePiece's leading-space rule,
/// clean-up of spaces before punctuation), the window keeps the result as close as those
/// decoders allow.
///
/// The decoder owns its tokenizer handle `T`: a reference (`&HfTokenizer`,
/// `&dyn Tokenizer`) or a shared pointer (`Arc<dyn Tokenizer>`), so that it can live in a
/// struct next to the sequence it decodes.
#[derive(Debug, Clone)]
pub struct IncrementalDecoder<T> {
    tokenizer: T,
    skip_special: bool,
    /// Ids of the current window; `ids[..prefix]` is no longer needed.
    ids: Vec<u32>,
    /// Start of the previous chunk's ids in `ids` (context for decoding).
    prefix: usize,
    /// End of the ids already emitted.
    read: usize,
}

impl<T: Tokenizer> IncrementalDecoder<T> {
    /// A decoder over `tokenizer`; special tokens are left out when `skip_special` is true.
    pub fn new(tokenizer: T, skip_special: bool) -> Self {
        Self {
            tokenizer,
            skip_special,
            ids: Vec::new(),
            prefix: 0,
            read: 0,
        }
    }

    /// Adds one id and returns the text it completes (often empty while a character is
    /// incomplete). An out-of-vocabulary id is an error and is not added.
    pub fn push(&mut self, id: u32) -> Result<String> {
        self.ids.push(id);
        let decoded = self.decode_window();
        let (before, now) = match decoded {
            Ok(pair) => pair,
            Err(e) => {
                self.ids.pop();
                return Err(e);
            }
        };
        if now.len() <= before.len() || now.ends_with(char::REPLACEMENT_CHARACTER) {
            return Ok(String::new());
        }
        let chunk = difference(&before, &now);
        self.prefix = self.read;
        self.read = self.ids.len();
        // Forget the ids that are no longer part of any window.
        self.ids.drain(..self.prefix);
        self.read -= self.prefix;
        self.prefix = 0;
        Ok(chunk)
    }

    /// Adds several ids; returns the concatenation of what [`push`](Self::push) yields for
    /// each of them.
    pub fn push_all(&mut self, ids: &[u32]) -> Result<String> {
        let mut out = String::new();
        for &id in ids {
            out.push_str(&self.push(id)?);
        }
        Ok(out)
    }

    /// Returns the text held back (an incomplete character decodes to U+FFFD, as in
    /// [`Tokenizer::decode`]) and resets the decoder for a new stream.
    pub fn finish(&mut self) -> Result<String> {
        let (before, now) = self.decode_window()?;
        self.ids.clear();
        self.prefix = 0;
        self.read = 0;
        Ok(difference(&before, &now))
    }

    /// The tokenizer handle.
    pub fn tokenizer(&self) -> &T {
        &self.tokenizer
    }

    /// Whether ids are held back (pushed but not yet emitted as text).
    pub fn has_pending(&self) -> bool {
        self.read < self.ids.len()
    }

    /// Decodes the previous chunk and the whole window.
    fn decode_window(&self) -> Result<(String, String)> {
        let before = self
            .tokenizer
            .decode(&self.ids[self.prefix..self.read], self.skip_special)?;
        let now = self
            .tokenizer
            .decode(&self.ids[self.prefix..], self.skip_special)?;
        Ok((before, now))
    }
}

/// What `now` adds to `before`: the suffix after `before` when `now` starts with it, else the
/// part after their longest common prefix (a context-dependent decoder rewrote the end of the
/// previous chunk; the rewrite cannot be taken back from a stream).
fn difference(before: &str, now: &str) -> String {
    if let Some(rest) = now.strip_prefix(before) {
        return rest.to_owned();
    }
    let common = before
        .char_indices()
        .zip(now.chars())
        .find(|((_, a), b)| a != b)
        .map_or(before.len().min(now.len()), |((i, _), _)| i);
    tracing::debug!(
        before,
        now,
        "incremental decode: window does not extend the previous chunk"
    );
    now.get(common..).unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ByteTokenizer;

    #[test]
    fn holds_back_incomplete_utf8() {
        let t = ByteTokenizer::default();
        let mut d = IncrementalDecoder::new(&t, false);
        let euro = "€".as_bytes();
        assert_eq!(d.push(u32::from(b'a')).unwrap(), "a");
        assert_eq!(d.push(u32::from(euro[0])).unwrap(), "");
        assert_eq!(d.push(u32::from(euro[1])).unwrap(), "");
        assert!(d.has_pending());
        assert_eq!(d.push(u32::from(euro[2])).unwrap(), "€");
        assert_eq!(d.push(260).unwrap(), "<|im_end|>");
        assert_eq!(d.push(u32::from(euro[0])).unwrap(), "");
        assert_eq!(d.finish().unwrap(), "\u{FFFD}");
        assert!(!d.has_pending());
    }

    #[test]
    fn skips_special_and_rejects_unknown() {
        let t = ByteTokenizer::default();
        let mut d = IncrementalDecoder::new(&t, true);
        assert_eq!(d.push_all(&[259, 104, 105, 260]).unwrap(), "hi");
        assert!(d.push(10_000).is_err());
        assert_eq!(d.push(33).unwrap(), "!");
    }

    #[test]
    fn owns_a_shared_handle() {
        let t: std::sync::Arc<dyn Tokenizer> = std::sync::Arc::new(ByteTokenizer::default());
        let mut d = IncrementalDecoder::new(t.clone(), false);
        assert_eq!(d.push_all(&[104, 105]).unwrap(), "hi");
        assert_eq!(d.tokenizer().vocab_size(), 261);
    }
}
