//! The byte-level BPE fixture: regeneration (ignored test) and what the HF adapter does with it.

mod common;

use redraft_tokenizer::{
    Conversation, Error, HfTokenizer, IncrementalDecoder, Message, SpanKind, Tokenizer,
    load_tokenizer,
};

/// Rewrites `tests/fixtures/tiny-bpe/` (tokenizer.json and tokenizer_config.json).
///
/// `cargo test -p redraft-tokenizer --test fixture -- --ignored regenerate_tiny_bpe`
#[test]
#[ignore = "rewrites the committed fixture"]
fn regenerate_tiny_bpe() {
    use tokenizers::models::TrainerWrapper;
    use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    use tokenizers::{AddedToken, Tokenizer as HfInner};

    let specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
    let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
        .vocab_size(400)
        .min_frequency(2)
        .show_progress(false)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .special_tokens(
            specials
                .iter()
                .map(|s| AddedToken::from(*s, true))
                .collect(),
        )
        .build()
        .into();
    let mut tokenizer = HfInner::new(BPE::default());
    tokenizer
        .with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(false)))
        .with_post_processor(Some(ByteLevel::default().trim_offsets(false)))
        .with_decoder(Some(ByteLevel::default()));
    let corpus = [
        "You are a helpful assistant.",
        "What is the sum of two and three? The answer is five.",
        "Let me think step by step. First, add the numbers. Then check the answer.",
        "The quick brown fox jumps over the lazy dog.",
        "Hello, world! Hello again, world.",
        "user assistant system feedback: your answer is wrong, try again.",
        "0 1 2 3 4 5 6 7 8 9 10 11 12 42 100 2+2=4 3*3=9",
        "Überprüfung: café, naïve, 東京, emoji 🎉 and more text.",
    ];
    let lines: Vec<String> = (0..20)
        .flat_map(|_| corpus.iter().map(|s| s.to_string()))
        .collect();
    tokenizer.train(&mut trainer, lines.into_iter()).unwrap();

    let dir = common::tiny_bpe_dir();
    std::fs::create_dir_all(&dir).unwrap();
    tokenizer.save(dir.join("tokenizer.json"), true).unwrap();
    let config = serde_json::json!({
        "bos_token": null,
        "eos_token": "<|im_end|>",
        "pad_token": {"content": "<|endoftext|>", "special": true},
        "chat_template": common::QWEN2_TEMPLATE,
        "model_max_length": 512,
    });
    std::fs::write(
        dir.join("tokenizer_config.json"),
        serde_json::to_string_pretty(&config).unwrap() + "\n",
    )
    .unwrap();
}

fn tiny() -> HfTokenizer {
    HfTokenizer::load(&common::tiny_bpe_dir()).unwrap()
}

#[test]
fn loads_with_config() {
    let tok = tiny();
    let im_end = tok.token_to_id("<|im_end|>").unwrap();
    let eot = tok.token_to_id("<|endoftext|>").unwrap();
    let specials = tok.special_tokens();
    assert_eq!(specials.bos, None);
    assert_eq!(specials.eos, Some(im_end));
    assert_eq!(specials.pad, Some(eot));
    assert_eq!(specials.all.len(), 3);
    assert!(specials.is_special(tok.token_to_id("<|im_start|>").unwrap()));
    assert!(tok.chat_template().is_some());
    assert!(tok.vocab_size() > 256);
    assert_eq!(tok.id_to_token(im_end).as_deref(), Some("<|im_end|>"));

    // Also through the directory dispatch.
    let boxed = load_tokenizer(&common::tiny_bpe_dir()).unwrap();
    assert_eq!(boxed.vocab_size(), tok.vocab_size());
}

#[test]
fn encode_splits_special_tokens_and_adds_none() {
    let tok = tiny();
    let start = tok.token_to_id("<|im_start|>").unwrap();
    let end = tok.token_to_id("<|im_end|>").unwrap();
    let ids = tok
        .encode("<|im_start|>user\nHello, world!<|im_end|>")
        .unwrap();
    assert_eq!(ids.first(), Some(&start));
    assert_eq!(ids.last(), Some(&end));
    assert_eq!(ids.iter().filter(|&&i| i == start || i == end).count(), 2);
    assert_eq!(
        tok.decode(&ids, false).unwrap(),
        "<|im_start|>user\nHello, world!<|im_end|>"
    );
    assert_eq!(tok.decode(&ids, true).unwrap(), "user\nHello, world!");
    // Merges were learnt: fewer ids than bytes.
    assert!(tok.encode("Hello, world!").unwrap().len() < "Hello, world!".len());
    assert_eq!(tok.encode("").unwrap(), Vec::<u32>::new());
}

#[test]
fn out_of_vocab_names_id_and_size() {
    let tok = tiny();
    let bad = tok.vocab_size() as u32 + 5;
    match tok.decode(&[0, bad], false) {
        Err(Error::IdOutOfVocab { id, vocab_size }) => {
            assert_eq!(id, bad);
            assert_eq!(vocab_size, tok.vocab_size());
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn streaming_splits_multibyte_pieces() {
    let tok = tiny();
    let text = "東京 🎉 café";
    let ids = tok.encode(text).unwrap();
    let mut dec = IncrementalDecoder::new(&tok, false);
    let mut chunks = Vec::new();
    for &id in &ids {
        chunks.push(dec.push(id).unwrap());
    }
    chunks.push(dec.finish().unwrap());
    assert_eq!(chunks.concat(), text);
    assert!(chunks.iter().all(|c| !c.contains('\u{FFFD}')));
}

#[test]
fn errors_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tokenizer.json"), "{not json").unwrap();
    let err = load_tokenizer(dir.path()).unwrap_err();
    assert!(matches!(err, Error::Malformed { .. }), "{err:?}");
    assert!(err.to_string().contains("tokenizer.json"), "{err}");

    let fixture = common::tiny_bpe_dir().join("tokenizer.json");
    std::fs::copy(&fixture, dir.path().join("tokenizer.json")).unwrap();
    std::fs::write(
        dir.path().join("tokenizer_config.json"),
        r#"{"eos_token": "<|nope|>"}"#,
    )
    .unwrap();
    let err = load_tokenizer(dir.path()).unwrap_err();
    assert!(err.to_string().contains("tokenizer_config.json"), "{err}");
    assert!(err.to_string().contains("<|nope|>"), "{err}");

    std::fs::write(
        dir.path().join("tokenizer_config.json"),
        r#"{"chat_template": 3}"#,
    )
    .unwrap();
    let err = load_tokenizer(dir.path()).unwrap_err();
    assert!(err.to_string().contains("tokenizer_config.json"), "{err}");

    // No configuration: no chat template, unless chat_template.jinja is there.
    std::fs::remove_file(dir.path().join("tokenizer_config.json")).unwrap();
    assert!(
        load_tokenizer(dir.path())
            .unwrap()
            .chat_template()
            .is_none()
    );
    std::fs::write(
        dir.path().join("chat_template.jinja"),
        common::QWEN2_TEMPLATE,
    )
    .unwrap();
    assert!(
        load_tokenizer(dir.path())
            .unwrap()
            .chat_template()
            .is_some()
    );
}

#[test]
fn conversation_keeps_sampled_ids_verbatim() {
    let tok = tiny();
    let mut conv = Conversation::from_messages(
        &tok,
        &[Message::user("What is the sum of two and three?")],
        true,
    )
    .unwrap();
    let prompt = conv.ids().to_vec();
    assert_eq!(
        tok.decode(&prompt, false).unwrap(),
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWhat is the sum of two and three?<|im_end|>\n<|im_start|>assistant\n"
    );

    // The policy spells "The answer" byte by byte (not the canonical merges) and stops with
    // <|im_end|>.
    let mut sampled: Vec<u32> = "The answer"
        .chars()
        .map(|c| tok.encode(&c.to_string()).unwrap()[0])
        .collect();
    sampled.push(tok.token_to_id("<|im_end|>").unwrap());
    assert_ne!(
        tok.encode("The answer").unwrap(),
        sampled[..sampled.len() - 1]
    );
    conv.push_sampled(&sampled).unwrap();
    let after_sample = conv.ids().to_vec();

    conv.push_message(&tok, Message::user("feedback: try again."))
        .unwrap();
    conv.open_assistant_turn(&tok).unwrap();
    assert!(conv.ids().starts_with(&after_sample));
    assert_eq!(&conv.ids()[prompt.len()..after_sample.len()], &sampled[..]);
    assert_eq!(
        tok.decode(&conv.ids()[after_sample.len()..], false)
            .unwrap(),
        "\n<|im_start|>user\nfeedback: try again.<|im_end|>\n<|im_start|>assistant\n"
    );
    assert_eq!(conv.messages()[1], Message::assistant("The answer"));
    let mask = conv.trainable_mask();
    let trained: Vec<usize> = (0..mask.len()).filter(|&i| mask[i]).collect();
    assert_eq!(
        trained,
        (prompt.len()..after_sample.len()).collect::<Vec<_>>()
    );
    let kinds: Vec<SpanKind> = conv.spans().iter().map(|s| s.kind).collect();
    assert_eq!(
        kinds,
        [
            SpanKind::Message,
            SpanKind::GenerationPrompt,
            SpanKind::Sampled,
            SpanKind::TurnEnd,
            SpanKind::Message,
            SpanKind::GenerationPrompt
        ]
    );
    assert_eq!(
        conv.turn_end_ids(&tok).unwrap(),
        tok.encode("<|im_end|>\n").unwrap()
    );
}

#[test]
fn token_bytes_concatenate_to_the_text() {
    let t = tiny();
    let text = "Überprüfung: 東京 🎉 naïve<|im_end|>";
    let ids = t.encode(text).unwrap();
    let bytes: Vec<u8> = ids
        .iter()
        .flat_map(|&id| t.token_bytes(id).unwrap())
        .collect();
    assert_eq!(bytes, text.as_bytes());
    // Some token is a piece of a character: its bytes are not UTF-8 and its decode is lossy.
    let piece = ids
        .iter()
        .find(|&&id| String::from_utf8(t.token_bytes(id).unwrap()).is_err())
        .expect("a token that is part of a character");
    assert!(t.decode(&[*piece], false).unwrap().contains('\u{FFFD}'));
    // Tokens that are whole characters: their bytes are their decoded text.
    for id in 0..t.vocab_size() as u32 {
        if let Ok(text) = String::from_utf8(t.token_bytes(id).unwrap()) {
            assert_eq!(t.decode(&[id], false).unwrap(), text, "id {id}");
        }
    }
    assert_eq!(t.token_bytes(t.vocab_size() as u32), None);
}
