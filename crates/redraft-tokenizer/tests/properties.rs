//! Property tests: round trips, streaming decoding, append-only conversations.

mod common;

use std::sync::LazyLock;

use proptest::prelude::*;
use redraft_tokenizer::{
    ByteTokenizer, Conversation, HfTokenizer, IncrementalDecoder, Message, Tokenizer,
};

static HF: LazyLock<HfTokenizer> =
    LazyLock::new(|| HfTokenizer::load(&common::tiny_bpe_dir()).unwrap());

/// Strings made of special-token spellings, their fragments and arbitrary text.
fn text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("<|im_start|>".to_owned()),
        Just("<|im_end|>".to_owned()),
        Just("<|endoftext|>".to_owned()),
        Just("<|".to_owned()),
        Just("\n".to_owned()),
        "[a-z ]{0,8}",
        any::<String>(),
    ];
    prop::collection::vec(piece, 0..6).prop_map(|p| p.concat())
}

fn stream(tok: &dyn Tokenizer, ids: &[u32], skip_special: bool) -> String {
    let mut dec = IncrementalDecoder::new(tok, skip_special);
    let mut out = String::new();
    for &id in ids {
        out.push_str(&dec.push(id).unwrap());
    }
    out + &dec.finish().unwrap()
}

proptest! {
    #[test]
    fn byte_round_trip(s in text()) {
        let tok = ByteTokenizer::default();
        let ids = tok.encode(&s).unwrap();
        prop_assert_eq!(tok.decode(&ids, false).unwrap(), s);
    }

    #[test]
    fn byte_streaming_equals_decode(ids in prop::collection::vec(0u32..261, 0..40), skip in any::<bool>()) {
        let tok = ByteTokenizer::default();
        prop_assert_eq!(stream(&tok, &ids, skip), tok.decode(&ids, skip).unwrap());
    }

    #[test]
    fn byte_streaming_of_text(s in text()) {
        let tok = ByteTokenizer::default();
        let ids = tok.encode(&s).unwrap();
        prop_assert_eq!(stream(&tok, &ids, false), s);
    }

    #[test]
    fn hf_round_trip(s in text()) {
        let ids = HF.encode(&s).unwrap();
        prop_assert_eq!(HF.decode(&ids, false).unwrap(), s);
    }

    #[test]
    fn hf_streaming_equals_decode(raw in prop::collection::vec(any::<u32>(), 0..40), skip in any::<bool>()) {
        let ids: Vec<u32> = raw.iter().map(|r| r % HF.vocab_size() as u32).collect();
        prop_assert_eq!(stream(&*HF, &ids, skip), HF.decode(&ids, skip).unwrap());
    }

    #[test]
    fn conversation_only_appends(ops in prop::collection::vec((0u8..4, text(), prop::collection::vec(any::<u32>(), 0..12)), 1..10), hf in any::<bool>()) {
        let byte = ByteTokenizer::default();
        let tok: &dyn Tokenizer = if hf { &*HF } else { &byte };
        let vocab = tok.vocab_size() as u32;
        let mut conv = Conversation::for_tokenizer(tok).unwrap();
        let mut sampled_total = 0;
        for (op, text, raw) in ops {
            let before = conv.ids().to_vec();
            let result = match op {
                0 => conv.push_message(tok, Message::user(text)).map(|_| ()),
                1 => conv.open_assistant_turn(tok).map(|_| ()),
                2 => {
                    let ids: Vec<u32> = raw.iter().map(|r| r % vocab).collect();
                    let r = conv.push_sampled(&ids);
                    if r.is_ok() {
                        sampled_total += ids.len();
                        prop_assert_eq!(&conv.ids()[before.len()..], &ids[..]);
                    }
                    r.map(|_| ())
                }
                _ => conv.close_turn(tok).map(|_| ()),
            };
            // Only the state errors of the API may occur (push_sampled without a turn, ...).
            if let Err(e) = &result {
                prop_assert!(matches!(e, redraft_tokenizer::Error::Conversation(_)), "{e}");
                prop_assert_eq!(conv.ids(), &before[..]);
            }
            prop_assert!(conv.ids().starts_with(&before));
            let mask = conv.trainable_mask();
            prop_assert_eq!(mask.len(), conv.len());
            prop_assert_eq!(mask.iter().filter(|&&m| m).count(), sampled_total);
            let covered: usize = conv.spans().iter().map(|s| s.len()).sum();
            prop_assert_eq!(covered, conv.len());
        }
    }
}
