//! Chat messages and Jinja chat templates rendered under the Hugging Face conventions.

use std::fmt;
use std::io;
use std::sync::Arc;

use minijinja::value::{Kwargs, Value};
use minijinja::{Environment, ErrorKind};
use serde::{Deserialize, Serialize};

use crate::strftime::strftime_now;
use crate::{Error, Result};

/// One chat message: a role (`system`, `user`, `assistant`, `tool`, ...) and its text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Message {
    /// The speaker: `system`, `user`, `assistant`, `tool`, ...
    pub role: String,
    /// The text of the message.
    pub content: String,
}

impl Message {
    /// A message with any role.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }

    /// A `system` message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }

    /// A `user` message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }

    /// An `assistant` message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
}

/// The ChatML template used by the byte tokenizer:
/// `<|im_start|>{role}\n{content}<|im_end|>\n` per message, and `<|im_start|>assistant\n` as
/// the generation prompt.
pub const CHATML_TEMPLATE: &str = r"{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

const TEMPLATE_NAME: &str = "chat_template";

/// A compiled Jinja chat template (cheap to clone).
///
/// A [`ChatTemplate`] is compiled once with `minijinja` and configured like `transformers`
/// configures Jinja for `apply_chat_template`:
/// - `trim_blocks` and `lstrip_blocks` on, trailing newline of the template dropped;
/// - loop controls (`{% break %}`, `{% continue %}`);
/// - context: `messages` (a list of `{role, content}`), `add_generation_prompt`, `bos_token` and
///   `eos_token` (when known), plus any extra variables given to [`ChatTemplate::render_with`]
///   (`tools`, `enable_thinking`, ...);
/// - `raise_exception(message)`, which fails the rendering with
///   [`Error::TemplateException`];
/// - a `tojson` filter that writes JSON as Python's `json.dumps(..., ensure_ascii=False)` does
///   (`", "` and `": "` separators, `indent=` supported, no HTML escaping);
/// - `strftime_now(format)` (UTC);
/// - Python string and dict methods (`.strip()`, `.startswith()`, `.split()`, `.items()`, ...)
///   through `minijinja-contrib`'s `pycompat`.
#[derive(Clone)]
pub struct ChatTemplate {
    inner: Arc<Inner>,
}

struct Inner {
    source: String,
    env: Environment<'static>,
    bos_token: Option<String>,
    eos_token: Option<String>,
}

impl fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("source", &self.inner.source)
            .field("bos_token", &self.inner.bos_token)
            .field("eos_token", &self.inner.eos_token)
            .finish()
    }
}

impl ChatTemplate {
    /// Compiles `source`, with no `bos_token` / `eos_token` in the context.
    pub fn new(source: impl Into<String>) -> Result<Self> {
        Self::with_special_tokens(source, None, None)
    }

    /// Compiles `source`; `bos_token` and `eos_token` (the token strings, as in
    /// `tokenizer_config.json`) are put in the rendering context when given.
    pub fn with_special_tokens(
        source: impl Into<String>,
        bos_token: Option<String>,
        eos_token: Option<String>,
    ) -> Result<Self> {
        let source = source.into();
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_keep_trailing_newline(false);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", |format: String| strftime_now(&format));
        env.add_filter("tojson", tojson);
        env.add_template_owned(TEMPLATE_NAME, source.clone())
            .map_err(Error::Template)?;
        Ok(Self {
            inner: Arc::new(Inner {
                source,
                env,
                bos_token,
                eos_token,
            }),
        })
    }

    /// The built-in ChatML template ([`CHATML_TEMPLATE`]).
    pub fn chatml() -> Self {
        // The built-in template is a constant that compiles (checked by a unit test).
        Self::new(CHATML_TEMPLATE).unwrap_or_else(|e| unreachable!("built-in template: {e}"))
    }

    /// The Jinja source of the template.
    pub fn source(&self) -> &str {
        &self.inner.source
    }

    /// The `bos_token` string given to the template, if any.
    pub fn bos_token(&self) -> Option<&str> {
        self.inner.bos_token.as_deref()
    }

    /// The `eos_token` string given to the template, if any.
    pub fn eos_token(&self) -> Option<&str> {
        self.inner.eos_token.as_deref()
    }

    /// Renders `messages`, followed by the generation prompt (the opening of an assistant
    /// turn) when `add_generation_prompt` is true.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        self.render_with(messages, add_generation_prompt, &serde_json::Map::new())
    }

    /// Like [`render`](Self::render), with extra context variables (`tools`,
    /// `enable_thinking`, ...). Extra variables override `bos_token` / `eos_token`, as keyword
    /// arguments of `apply_chat_template` do; `messages` and `add_generation_prompt` always
    /// come from the arguments. Objects in `extra` reach the template with their keys in
    /// `serde_json::Map` order (sorted).
    pub fn render_with(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
        extra: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<String> {
        let mut ctx = serde_json::Map::new();
        if let Some(bos) = &self.inner.bos_token {
            ctx.insert("bos_token".into(), bos.clone().into());
        }
        if let Some(eos) = &self.inner.eos_token {
            ctx.insert("eos_token".into(), eos.clone().into());
        }
        ctx.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
        let messages = serde_json::to_value(messages).map_err(|e| {
            Error::Template(minijinja::Error::new(
                ErrorKind::BadSerialization,
                e.to_string(),
            ))
        })?;
        ctx.insert("messages".into(), messages);
        ctx.insert("add_generation_prompt".into(), add_generation_prompt.into());
        let template = self
            .inner
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(Error::Template)?;
        template
            .render(Value::from_serialize(&ctx))
            .map_err(template_error)
    }
}

/// The payload of a `raise_exception` call, found again in the error's source chain.
#[derive(Debug)]
struct RaisedException(String);

impl fmt::Display for RaisedException {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RaisedException {}

fn raise_exception(message: String) -> Result<Value, minijinja::Error> {
    Err(
        minijinja::Error::new(ErrorKind::InvalidOperation, message.clone())
            .with_source(RaisedException(message)),
    )
}

/// Maps a rendering error to [`Error::TemplateException`] when it comes from
/// `raise_exception`, to [`Error::Template`] otherwise.
fn template_error(err: minijinja::Error) -> Error {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(e) = cur {
        if let Some(raised) = e.downcast_ref::<RaisedException>() {
            return Error::TemplateException(raised.0.clone());
        }
        cur = e.source();
    }
    Error::Template(err)
}

/// `json.dumps` separators without indentation: `", "` between items, `": "` after keys.
struct PythonCompactFormatter;

impl serde_json::ser::Formatter for PythonCompactFormatter {
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(b": ")
    }
}

/// The `tojson` filter as `transformers` defines it: `json.dumps(value, ensure_ascii=False,
/// indent=indent)`.
fn tojson(value: &Value, indent: Option<Value>, kwargs: Kwargs) -> Result<Value, minijinja::Error> {
    let indent = match indent {
        Some(indent) => Some(indent),
        None => kwargs.get::<Option<Value>>("indent")?,
    };
    // Accepted for compatibility; `ensure_ascii` is always false, keys keep their order.
    let _: Option<Value> = kwargs.get("ensure_ascii")?;
    let _: Option<Value> = kwargs.get("sort_keys")?;
    kwargs.assert_all_used()?;
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() || v.is_undefined() => None,
        Some(v) => Some(usize::try_from(v)?),
    };
    let mut out = Vec::new();
    let result = match indent {
        Some(n) => {
            let indentation = " ".repeat(n);
            let formatter = serde_json::ser::PrettyFormatter::with_indent(indentation.as_bytes());
            let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
            serde::Serialize::serialize(value, &mut ser)
        }
        None => {
            let mut ser = serde_json::Serializer::with_formatter(&mut out, PythonCompactFormatter);
            serde::Serialize::serialize(value, &mut ser)
        }
    };
    result.map_err(|e| {
        minijinja::Error::new(ErrorKind::InvalidOperation, "cannot serialize to JSON")
            .with_source(e)
    })?;
    let json = String::from_utf8(out).map_err(|e| {
        minijinja::Error::new(ErrorKind::InvalidOperation, "JSON is not UTF-8").with_source(e)
    })?;
    Ok(Value::from_safe_string(json))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatml_renders() {
        let t = ChatTemplate::chatml();
        let msgs = [Message::system("sys"), Message::user("hi")];
        assert_eq!(
            t.render(&msgs, true).unwrap(),
            "<|im_start|>system\nsys<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(
            t.render(&msgs[..1], false).unwrap(),
            "<|im_start|>system\nsys<|im_end|>\n"
        );
    }

    #[test]
    fn raise_exception_is_typed() {
        let t = ChatTemplate::new(
            "{% if messages[0].role != 'user' %}{{ raise_exception('first must be user') }}{% endif %}ok",
        )
        .unwrap();
        match t.render(&[Message::system("x")], false) {
            Err(Error::TemplateException(m)) => assert_eq!(m, "first must be user"),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(t.render(&[Message::user("x")], false).unwrap(), "ok");
    }

    #[test]
    fn syntax_error_is_template_error() {
        assert!(matches!(
            ChatTemplate::new("{% for %}"),
            Err(Error::Template(_))
        ));
    }

    #[test]
    fn tojson_is_python_like() {
        let t =
            ChatTemplate::new("{{ tools | tojson }}|{{ tools[0] | tojson(indent=2) }}").unwrap();
        let mut extra = serde_json::Map::new();
        extra.insert(
            "tools".into(),
            serde_json::json!([{"name": "f<x>", "args": [1, "é"]}]),
        );
        let out = t.render_with(&[], false, &extra).unwrap();
        assert_eq!(
            out,
            // serde_json maps keep keys sorted: "args" before "name".
            "[{\"args\": [1, \"é\"], \"name\": \"f<x>\"}]|{\n  \"args\": [\n    1,\n    \"é\"\n  ],\n  \"name\": \"f<x>\"\n}"
        );
    }

    #[test]
    fn pycompat_methods_and_strftime() {
        let t = ChatTemplate::new(
            "{{ messages[0].content.strip().upper() }} {{ messages[0].content.strip().startswith('he') }} {{ strftime_now('%Y') | length }}",
        )
        .unwrap();
        assert_eq!(
            t.render(&[Message::user("  hello ")], false).unwrap(),
            "HELLO True 4"
        );
    }

    #[test]
    fn special_tokens_in_context_and_overridable() {
        let t = ChatTemplate::with_special_tokens(
            "{{ bos_token }}{{ eos_token }}",
            Some("<s>".into()),
            Some("</s>".into()),
        )
        .unwrap();
        assert_eq!(t.render(&[], false).unwrap(), "<s></s>");
        let mut extra = serde_json::Map::new();
        extra.insert("bos_token".into(), "B".into());
        assert_eq!(t.render_with(&[], false, &extra).unwrap(), "B</s>");
    }

    #[test]
    fn loop_controls_and_trim_blocks() {
        let t = ChatTemplate::new(
            "{% for m in messages %}\n{% if loop.index > 1 %}{% break %}{% endif %}\n  {{ m.content }}\n{% endfor %}\n",
        )
        .unwrap();
        assert_eq!(
            t.render(&[Message::user("a"), Message::user("b")], false)
                .unwrap(),
            "  a\n"
        );
    }
}
