//! Real models' chat templates against transformers' `apply_chat_template`: SmolLM2-135M-Instruct's
//! (from its GGUF) and Qwen2.5-Instruct's, committed in tests/data/templates/ with transformers'
//! renderings (scripts/chat_template_fixtures.py) of single- and multi-turn conversations, with
//! and without a system prompt, including feedback turns after a wrong answer. Multi-turn
//! conversations are also grown the way RL grows them: assistant turns appended as sampled
//! tokens, feedback as a new user message; the ids decode to transformers' text.

use std::path::{Path, PathBuf};

use redraft_gguf::GgufFile;
use redraft_tokenizer::{ChatTemplate, Conversation, HfTokenizer, Message, Tokenizer};
use serde::Deserialize;

#[derive(Deserialize)]
struct Rendering {
    template: String,
    messages: Vec<Message>,
    add_generation_prompt: bool,
    text: String,
}

fn templates() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/templates")
}

fn renderings() -> Vec<Rendering> {
    let text = std::fs::read_to_string(templates().join("renderings.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn template(name: &str) -> String {
    std::fs::read_to_string(templates().join(name)).unwrap()
}

#[test]
fn real_templates_render_as_transformers_does() {
    let all = renderings();
    assert_eq!(all.len(), 16);
    for r in &all {
        let t = ChatTemplate::new(template(&r.template)).unwrap();
        assert_eq!(
            t.render(&r.messages, r.add_generation_prompt).unwrap(),
            r.text,
            "{} with {} messages",
            r.template,
            r.messages.len()
        );
    }
}

#[test]
fn multi_turn_history_kept_as_sampled_tokens_decodes_to_transformers_text() {
    // A byte-level BPE tokenizer with <|im_start|>/<|im_end|> as special tokens (a GGUF fixture).
    let gguf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/gguf/llama-f32.gguf");
    let mut tokenizer = HfTokenizer::from_gguf(&GgufFile::open(&gguf).unwrap()).unwrap();
    let end = "<|im_end|>";
    let mut checked = 0;
    for r in renderings()
        .iter()
        .filter(|r| r.add_generation_prompt && r.messages.iter().any(|m| m.role == "assistant"))
    {
        tokenizer.set_chat_template(Some(ChatTemplate::new(template(&r.template)).unwrap()));
        let mut conv = Conversation::for_tokenizer(&tokenizer).unwrap();
        for m in &r.messages {
            if m.role == "assistant" {
                conv.open_assistant_turn(&tokenizer).unwrap();
                let sampled = tokenizer.encode(&format!("{}{end}", m.content)).unwrap();
                conv.push_sampled(&sampled).unwrap();
            } else {
                conv.push_message(&tokenizer, m.clone()).unwrap();
            }
        }
        conv.open_assistant_turn(&tokenizer).unwrap();
        assert_eq!(
            tokenizer.decode(conv.ids(), false).unwrap(),
            r.text,
            "{}",
            r.template
        );
        let sampled: usize = conv.trainable_mask().iter().filter(|&&m| m).count();
        let expected: usize = r
            .messages
            .iter()
            .filter(|m| m.role == "assistant")
            .map(|m| {
                tokenizer
                    .encode(&format!("{}{end}", m.content))
                    .unwrap()
                    .len()
            })
            .sum();
        assert_eq!(sampled, expected, "only the sampled tokens are trainable");
        checked += 1;
    }
    assert_eq!(checked, 4);
}
