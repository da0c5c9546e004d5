//! Conversations appended as tokens: turn closing, templates, errors.

mod common;

use redraft_tokenizer::{
    ByteTokenizer, ByteTokenizerSpec, ChatTemplate, Conversation, Error, Message, SpanKind,
    Tokenizer,
};

fn llama3_byte_tokenizer() -> ByteTokenizer {
    ByteTokenizer::from_spec(ByteTokenizerSpec {
        special_tokens: common::LLAMA3_SPECIALS.map(String::from).to_vec(),
        bos: Some("<|begin_of_text|>".into()),
        eos: Some("<|end_of_text|>".into()),
        pad: None,
        chat_template: Some(common::LLAMA3_TEMPLATE.into()),
        ..Default::default()
    })
    .unwrap()
}

fn extra() -> serde_json::Map<String, serde_json::Value> {
    let mut extra = serde_json::Map::new();
    extra.insert("date_string".into(), "26 Jul 2024".into());
    extra
}

#[test]
fn chatml_turn_closed_by_policy_and_by_template() {
    let tok = ByteTokenizer::default();
    let mut conv = Conversation::from_messages(&tok, &[Message::user("hi")], true).unwrap();
    assert!(conv.is_turn_open());

    // Turn 1: the policy emits <|im_end|> itself; only "\n" is added.
    let s1 = tok.encode("hello<|im_end|>").unwrap();
    conv.push_sampled(&s1[..2]).unwrap();
    conv.push_sampled(&s1[2..]).unwrap();
    let closed = conv.close_turn(&tok).unwrap();
    assert_eq!(tok.decode(&conv.ids()[closed], false).unwrap(), "\n");
    assert!(!conv.is_turn_open());
    // Closing twice does nothing.
    assert!(conv.close_turn(&tok).unwrap().is_empty());

    // Turn 2: the policy is cut off (no <|im_end|>); the template's closing text is added.
    conv.push_message(&tok, Message::user("again")).unwrap();
    conv.open_assistant_turn(&tok).unwrap();
    let s2 = tok.encode("cut of").unwrap();
    conv.push_sampled(&s2).unwrap();
    conv.push_message(&tok, Message::user("ok")).unwrap();

    assert_eq!(
        tok.decode(conv.ids(), false).unwrap(),
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nhello<|im_end|>\n\
         <|im_start|>user\nagain<|im_end|>\n<|im_start|>assistant\ncut of<|im_end|>\n\
         <|im_start|>user\nok<|im_end|>\n"
    );
    assert_eq!(
        conv.messages(),
        &[
            Message::user("hi"),
            Message::assistant("hello"),
            Message::user("again"),
            Message::assistant("cut of"),
            Message::user("ok"),
        ]
    );
    // One sampled span per turn (consecutive pushes merge), exactly the sampled ids.
    let sampled = conv.sampled_ranges();
    assert_eq!(sampled.len(), 2);
    assert_eq!(&conv.ids()[sampled[0].clone()], &s1[..]);
    assert_eq!(&conv.ids()[sampled[1].clone()], &s2[..]);
    assert_eq!(
        conv.trainable_mask().iter().filter(|&&m| m).count(),
        s1.len() + s2.len()
    );
    // Spans tile the ids and carry roles and message indices.
    let mut at = 0;
    for span in conv.spans() {
        assert_eq!(span.start, at);
        at = span.end;
    }
    assert_eq!(at, conv.len());
    let turn_end = conv
        .spans()
        .iter()
        .find(|s| s.kind == SpanKind::TurnEnd)
        .unwrap();
    assert_eq!((turn_end.role.as_str(), turn_end.message), ("assistant", 1));
}

#[test]
fn llama3_eot_overlap() {
    let tok = llama3_byte_tokenizer();
    let conv = Conversation::for_tokenizer(&tok)
        .unwrap()
        .with_extra_context(extra());
    let mut conv = conv;
    conv.push_messages(&tok, &[Message::system("Be brief."), Message::user("2+2?")])
        .unwrap();
    conv.open_assistant_turn(&tok).unwrap();
    let eot = tok.token_to_id("<|eot_id|>").unwrap();
    assert_eq!(conv.turn_end_ids(&tok).unwrap(), vec![eot]);
    let sampled = tok.encode(" 4 <|eot_id|>").unwrap();
    conv.push_sampled(&sampled).unwrap();
    let before = conv.ids().to_vec();
    let closed = conv.close_turn(&tok).unwrap();
    assert!(closed.is_empty(), "the policy's <|eot_id|> closes the turn");
    conv.push_message(&tok, Message::user("Why?")).unwrap();
    conv.open_assistant_turn(&tok).unwrap();
    assert!(conv.ids().starts_with(&before));
    insta::assert_snapshot!(
        "llama3_conversation",
        tok.decode(conv.ids(), false).unwrap()
    );
    // The template strips contents when rendering; the ids keep the sampled spaces.
    assert_eq!(conv.messages()[2], Message::assistant(" 4 "));
}

#[test]
fn template_that_rewrites_history_is_rejected_without_change() {
    let tok = ByteTokenizer::default();
    let template = ChatTemplate::new(
        "{% for m in messages %}{% if loop.last %}[last]{% endif %}{{ m.content }};{% endfor %}",
    )
    .unwrap();
    let mut conv = Conversation::new(template);
    conv.push_message(&tok, Message::user("a")).unwrap();
    let before = conv.ids().to_vec();
    let spans = conv.spans().to_vec();
    match conv.push_message(&tok, Message::user("b")) {
        Err(Error::TemplateNotAppendOnly { context }) => assert!(context.contains("message 1")),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(conv.ids(), &before[..]);
    assert_eq!(conv.spans(), &spans[..]);
    assert_eq!(conv.messages().len(), 1);
}

#[test]
fn state_errors() {
    let tok = ByteTokenizer::default();
    let mut conv = Conversation::for_tokenizer(&tok).unwrap();
    assert!(matches!(
        conv.push_sampled(&[1, 2]),
        Err(Error::Conversation(_))
    ));
    conv.open_assistant_turn(&tok).unwrap();
    assert!(matches!(
        conv.open_assistant_turn(&tok),
        Err(Error::Conversation(_))
    ));
    // Out-of-vocabulary sampled ids are caught when the turn is closed, without change.
    conv.push_sampled(&[70, 9999]).unwrap();
    let before = conv.ids().to_vec();
    assert!(matches!(
        conv.push_message(&tok, Message::user("x")),
        Err(Error::IdOutOfVocab { id: 9999, .. })
    ));
    assert_eq!(conv.ids(), &before[..]);
    assert!(conv.is_turn_open());

    let no_template = ByteTokenizer::from_spec(ByteTokenizerSpec {
        chat_template: None,
        ..Default::default()
    })
    .unwrap();
    assert!(matches!(
        Conversation::for_tokenizer(&no_template),
        Err(Error::NoChatTemplate)
    ));
}

#[test]
fn teacher_forced_assistant_message_is_not_trainable() {
    let tok = ByteTokenizer::default();
    let conv = Conversation::from_messages(
        &tok,
        &[
            Message::user("q"),
            Message::assistant("a"),
            Message::user("q2"),
        ],
        true,
    )
    .unwrap();
    assert!(conv.trainable_mask().iter().all(|&m| !m));
    assert_eq!(conv.spans()[1].role, "assistant");
    assert_eq!(conv.spans()[1].kind, SpanKind::Message);
}
