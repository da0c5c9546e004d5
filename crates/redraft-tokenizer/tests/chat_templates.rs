//! Real-world-style chat templates rendered under the HF conventions (snapshots).

mod common;

use redraft_tokenizer::{ChatTemplate, Error, Message};

fn dialogue() -> Vec<Message> {
    vec![
        Message::system("  Be brief.  "),
        Message::user("What is 2+2?"),
        Message::assistant("4"),
        Message::user("Are you sure?"),
    ]
}

fn fixed_date() -> serde_json::Map<String, serde_json::Value> {
    let mut extra = serde_json::Map::new();
    extra.insert("date_string".into(), "26 Jul 2024".into());
    extra
}

#[test]
fn qwen2_chatml() {
    let t = ChatTemplate::new(common::QWEN2_TEMPLATE).unwrap();
    insta::assert_snapshot!("qwen2_with_system", t.render(&dialogue(), true).unwrap());
    insta::assert_snapshot!(
        "qwen2_default_system",
        t.render(&[Message::user("Hi")], true).unwrap()
    );
    assert_eq!(
        t.render(&[Message::user("Hi")], false).unwrap(),
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
    );
}

#[test]
fn llama3() {
    let t = ChatTemplate::with_special_tokens(
        common::LLAMA3_TEMPLATE,
        Some("<|begin_of_text|>".into()),
        Some("<|eot_id|>".into()),
    )
    .unwrap();
    let text = t.render_with(&dialogue(), true, &fixed_date()).unwrap();
    insta::assert_snapshot!("llama3_with_system", text);
    assert!(text.starts_with("<|begin_of_text|><|start_header_id|>system"));
    // `.strip()` and `| trim` removed the spaces around the system message.
    assert!(text.contains("\n\nBe brief.<|eot_id|>"));

    // Without a date in the context, `strftime_now` gives today's date.
    let today = t.render(&[Message::user("x")], false).unwrap();
    let date_line = today
        .lines()
        .find(|l| l.starts_with("Today Date: "))
        .unwrap();
    assert_eq!(date_line.split(' ').count(), 5, "{date_line}");
}

#[test]
fn llama3_rejects_unknown_role() {
    let t = ChatTemplate::new(common::LLAMA3_TEMPLATE).unwrap();
    match t.render_with(&[Message::new("narrator", "x")], false, &fixed_date()) {
        Err(Error::TemplateException(message)) => assert_eq!(message, "Unknown role: narrator"),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn qwen25_style_tools_use_python_json() {
    let source = r#"{%- if tools %}
{{- '<|im_start|>system\n' }}{{- messages[0]['content'] if messages[0]['role'] == 'system' else 'You are a helpful assistant.' }}
{{- "\n\n# Tools\n\n<tools>" }}
{%- for tool in tools %}
{{- "\n" }}{{- tool | tojson }}
{%- endfor %}
{{- "\n</tools><|im_end|>\n" }}
{%- endif %}
{%- for message in messages if message.role != 'system' %}
{{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>\n' }}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}
"#;
    let t = ChatTemplate::new(source).unwrap();
    let mut extra = serde_json::Map::new();
    extra.insert(
        "tools".into(),
        serde_json::json!([{"type": "function", "function": {"name": "add", "parameters": {"a": "int"}}}]),
    );
    insta::assert_snapshot!(
        "qwen25_tools",
        t.render_with(&[Message::user("1+1?")], true, &extra)
            .unwrap()
    );
}
