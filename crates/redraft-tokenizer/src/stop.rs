//! Stop strings found in text decoded token by token: the one place that cuts a sampled
//! answer at its first stop string, used by `redraft serve` (streamed and whole answers alike)
//! and by the policy answering as a chat model.

use crate::{IncrementalDecoder, Tokenizer};

/// The text of one answer, decoded token by token with an [`IncrementalDecoder`] (never by
/// decoding the whole answer again), cut before its first stop string. Text that may be the
/// start of a stop string is held back until it is not, so no part of a stop string is ever
/// returned.
#[derive(Debug, Clone)]
pub struct StopText<T> {
    decoder: IncrementalDecoder<T>,
    stop: Vec<String>,
    /// Decoded text not returned yet: it may be the start of a stop string.
    held: String,
}

impl<T: Tokenizer> StopText<T> {
    /// The text of an answer decoded with `tokenizer` (special tokens left out), cut at the
    /// first of `stop` (empty strings are ignored).
    pub fn new(tokenizer: T, stop: Vec<String>) -> Self {
        Self {
            decoder: IncrementalDecoder::new(tokenizer, true),
            stop: stop.into_iter().filter(|s| !s.is_empty()).collect(),
            held: String::new(),
        }
    }

    /// Adds token `id` (the answer's last when `last`: then as [`finish`](Self::finish));
    /// returns the text that can be given out now and whether a stop string has ended the
    /// answer (the text stops before it). An id that does not decode adds no text (logged).
    pub fn push(&mut self, id: u32, last: bool) -> (String, bool) {
        match self.decoder.push(id) {
            Ok(text) => self.held.push_str(&text),
            Err(error) => tracing::warn!(%error, id, "a sampled token does not decode"),
        }
        if last {
            return self.finish();
        }
        if let Some(cut) = self.first_stop() {
            return (self.take(cut), true);
        }
        // Hold back the longest end of the text that begins a stop string.
        let keep = self
            .stop
            .iter()
            .flat_map(|s| {
                (1..s.len())
                    .filter(move |&k| s.is_char_boundary(k))
                    .map(move |k| &s[..k])
            })
            .filter(|prefix| self.held.ends_with(prefix))
            .map(str::len)
            .max()
            .unwrap_or(0);
        let ready = self.held.len() - keep;
        let text = self.held[..ready].to_string();
        self.held.drain(..ready);
        (text, false)
    }

    /// Ends the answer: the text still held back (an incomplete last character decodes to
    /// U+FFFD), cut before a stop string if one has formed, and whether one did.
    pub fn finish(&mut self) -> (String, bool) {
        match self.decoder.finish() {
            Ok(rest) => self.held.push_str(&rest),
            Err(error) => tracing::warn!(%error, "the last tokens do not decode"),
        }
        let (cut, hit) = self
            .first_stop()
            .map_or((self.held.len(), false), |cut| (cut, true));
        (self.take(cut), hit)
    }

    /// Where the first stop string starts in the held text.
    fn first_stop(&self) -> Option<usize> {
        self.stop
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min()
    }

    /// The held text before `cut`; the rest is dropped.
    fn take(&mut self, cut: usize) -> String {
        let text = self.held[..cut].to_string();
        self.held.clear();
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ByteTokenizer;

    /// The pieces `StopText` gives out for `text` pushed byte by byte, and whether it stopped.
    fn pieces(text: &str, stop: &[&str]) -> (Vec<String>, bool) {
        let mut answer = StopText::new(
            ByteTokenizer::default(),
            stop.iter().map(|s| s.to_string()).collect(),
        );
        let bytes = text.as_bytes();
        let mut out = Vec::new();
        for (i, &b) in bytes.iter().enumerate() {
            let (piece, hit) = answer.push(u32::from(b), i + 1 == bytes.len());
            out.push(piece);
            if hit {
                return (out, true);
            }
        }
        (out, false)
    }

    #[test]
    fn stop_strings_are_cut_and_never_sent_even_in_part() {
        let (sent, hit) = pieces("abcSTxSTOPdef", &["STOP"]);
        assert!(hit);
        assert_eq!(sent.concat(), "abcSTx");
        // "ST" is held back until it turns out not to start "STOP".
        assert_eq!(sent[3..6], ["", "", "STx"]);
        let (sent, hit) = pieces("héllo wörld", &["ö", "zz"]);
        assert!(hit);
        assert_eq!(sent.concat(), "héllo w");
        // A character split over tokens is sent whole, with its last byte.
        let (sent, hit) = pieces("h€", &[]);
        assert!(!hit);
        assert_eq!(sent, ["h", "", "", "€"]);
        // The last token flushes what is held back.
        let (sent, hit) = pieces("abST", &["STOP"]);
        assert!(!hit);
        assert_eq!(sent.concat(), "abST");
    }
}
