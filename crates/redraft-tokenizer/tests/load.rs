//! `load_tokenizer` dispatch.

use redraft_tokenizer::{ByteTokenizer, Error, Tokenizer, load_tokenizer};

#[test]
fn byte_tokenizer_from_directory() {
    let dir = tempfile::tempdir().unwrap();
    let mut tok = ByteTokenizer::default();
    tok.add_special_token("<|tool|>").unwrap();
    tok.save(dir.path()).unwrap();
    let loaded = load_tokenizer(dir.path()).unwrap();
    assert_eq!(loaded.vocab_size(), 262);
    assert_eq!(loaded.token_to_id("<|tool|>"), Some(261));
    assert_eq!(loaded.encode("<|tool|>x").unwrap(), vec![261, 120]);
    assert!(loaded.chat_template().is_some());
}

#[test]
fn empty_directory_lists_what_was_looked_for() {
    let dir = tempfile::tempdir().unwrap();
    let err = load_tokenizer(dir.path()).unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }));
    let message = err.to_string();
    assert!(message.contains("tokenizer.json"), "{message}");
    assert!(message.contains("byte_tokenizer.json"), "{message}");
}
