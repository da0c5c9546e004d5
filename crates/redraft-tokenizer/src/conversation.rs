//! A conversation kept as tokens, appended to without re-tokenizing what is there.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::{ChatTemplate, Error, Message, Result, Tokenizer};

/// Where a run of ids in a [`Conversation`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpanKind {
    /// A message rendered by the chat template and encoded: system prompt, user turn,
    /// feedback, tool result, or an assistant message given as text (not sampled).
    Message,
    /// The generation prompt that opens an assistant turn (e.g. `<|im_start|>assistant\n`).
    GenerationPrompt,
    /// Ids sampled by the policy, appended verbatim. The only trainable kind.
    Sampled,
    /// Template text closing a sampled assistant turn (e.g. `<|im_end|>\n`), without the part
    /// the policy emitted itself.
    TurnEnd,
}

/// A run of ids of a [`Conversation`] with its provenance.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Span {
    /// First id of the span (index into [`Conversation::ids`]).
    pub start: usize,
    /// One past the last id of the span.
    pub end: usize,
    /// Where the ids came from.
    pub kind: SpanKind,
    /// The role of the message the span belongs to (`assistant` for generation prompts,
    /// sampled ids and turn ends).
    pub role: String,
    /// Index in [`Conversation::messages`] of the message the span belongs to (for an open
    /// assistant turn, the index its message will get when the turn is closed).
    pub message: usize,
}

impl Span {
    /// `start..end`.
    pub fn range(&self) -> Range<usize> {
        self.start..self.end
    }

    /// Number of ids in the span.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// Whether the span has no ids.
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    /// Whether the span was sampled by the policy (and so is trained on).
    pub fn is_sampled(&self) -> bool {
        self.kind == SpanKind::Sampled
    }
}

/// A serialisable snapshot of a [`Conversation`]: its ids, spans and messages, for rollout
/// records and trainers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transcript {
    /// All ids.
    pub ids: Vec<u32>,
    /// The spans covering `ids`, in order.
    pub spans: Vec<Span>,
    /// The messages (closed sampled turns as assistant messages).
    pub messages: Vec<Message>,
}

impl Transcript {
    /// One flag per id: true exactly for the ids sampled by the policy.
    pub fn trainable_mask(&self) -> Vec<bool> {
        trainable_mask(&self.spans, self.ids.len())
    }
}

fn trainable_mask(spans: &[Span], len: usize) -> Vec<bool> {
    let mut mask = vec![false; len];
    for span in spans.iter().filter(|s| s.is_sampled()) {
        mask[span.range()].fill(true);
    }
    mask
}

/// Content put in the assistant message to find where the template closes an assistant turn.
const SENTINEL: &str = "\u{E000}redraft-turn-sentinel\u{E000}";

/// An assistant turn opened by a generation prompt and not closed yet.
#[derive(Debug, Clone)]
struct OpenTurn {
    /// Index in `ids` of the first sampled id of the turn.
    sampled_start: usize,
}

/// The ids of a conversation so far, with per-span provenance.
///
/// Multi-turn RL must train on exactly the tokens the policy sampled. Rendering the whole
/// conversation with the chat template and encoding it again after every turn does not
/// guarantee that: the sampled tokens may not be the canonical tokenization of their text
/// (`" hel" + "lo"` instead of `" hello"`), and text around turn boundaries may merge
/// differently. A [`Conversation`] therefore holds the ids themselves and only ever appends:
///
/// - messages are rendered with the chat template, and only the *textual delta* (the
///   rendering with the new message minus the rendering without it) is encoded and appended;
/// - tokens the policy sampled are appended verbatim ([`Conversation::push_sampled`]);
/// - when a sampled assistant turn is closed, the template's closing text (e.g. `<|im_end|>\n`)
///   is appended, minus the tokens of it that the policy already emitted (e.g. its own
///   `<|im_end|>`).
///
/// **Invariant: existing ids are never changed.** Methods only append ids (and the spans
/// that describe them); a failing step appends nothing
/// ([`push_messages`](Self::push_messages) keeps the messages before the failing one). The ids
/// a caller read earlier are always a prefix of [`ids`](Self::ids), and sampled ids stay
/// exactly what the policy produced. Each appended run of ids is described by a [`Span`] with
/// its [`SpanKind`] and role; [`trainable_mask`](Self::trainable_mask) marks exactly the
/// sampled ids.
///
/// This needs an *append-only* template: rendering `messages + [m]` must start with the
/// rendering of `messages`, and the rendering with the generation prompt must start with the
/// rendering without it. ChatML (Qwen 2 / 2.5), Llama 3 and most templates are; templates that
/// rewrite earlier turns (e.g. dropping the reasoning of earlier assistant turns) are not, and
/// appending to them fails with [`Error::TemplateNotAppendOnly`].
#[derive(Debug, Clone)]
pub struct Conversation {
    template: ChatTemplate,
    extra: serde_json::Map<String, serde_json::Value>,
    messages: Vec<Message>,
    /// Rendering of `messages` without generation prompt.
    rendered: String,
    ids: Vec<u32>,
    spans: Vec<Span>,
    open: Option<OpenTurn>,
}

/// What a step appends; computed in full before anything is changed.
struct Plan {
    ids: Vec<u32>,
    spans: Vec<Span>,
    messages: Vec<Message>,
    rendered: String,
    open: Option<OpenTurn>,
}

impl Conversation {
    /// An empty conversation rendered with `template`.
    pub fn new(template: ChatTemplate) -> Self {
        Self {
            template,
            extra: serde_json::Map::new(),
            messages: Vec::new(),
            rendered: String::new(),
            ids: Vec::new(),
            spans: Vec::new(),
            open: None,
        }
    }

    /// An empty conversation with the tokenizer's chat template ([`Error::NoChatTemplate`]
    /// when it has none).
    pub fn for_tokenizer(tokenizer: &dyn Tokenizer) -> Result<Self> {
        let template = tokenizer.chat_template().ok_or(Error::NoChatTemplate)?;
        Ok(Self::new(template.clone()))
    }

    /// A conversation holding `messages`, followed by the generation prompt of an assistant
    /// turn when `add_generation_prompt` is true (then [`push_sampled`](Self::push_sampled)
    /// can follow).
    pub fn from_messages(
        tokenizer: &dyn Tokenizer,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<Self> {
        let mut conversation = Self::for_tokenizer(tokenizer)?;
        conversation.push_messages(tokenizer, messages)?;
        if add_generation_prompt {
            conversation.open_assistant_turn(tokenizer)?;
        }
        Ok(conversation)
    }

    /// Sets extra template variables (`tools`, `enable_thinking`, ...) used by every later
    /// rendering. Set them before the first message: changing them later may make the
    /// template render earlier turns differently, which later appends detect as
    /// [`Error::TemplateNotAppendOnly`].
    pub fn with_extra_context(mut self, extra: serde_json::Map<String, serde_json::Value>) -> Self {
        self.extra = extra;
        self
    }

    /// All ids so far.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// Number of ids.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there are no ids.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The spans, in order, covering [`ids`](Self::ids) without gaps or overlaps.
    pub fn spans(&self) -> &[Span] {
        &self.spans
    }

    /// The messages so far; a closed sampled turn is an assistant message whose content is
    /// its decoded text (special tokens left out).
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// The chat template.
    pub fn template(&self) -> &ChatTemplate {
        &self.template
    }

    /// Whether an assistant turn is open (sampled ids can be pushed).
    pub fn is_turn_open(&self) -> bool {
        self.open.is_some()
    }

    /// One flag per id: true exactly for the ids sampled by the policy.
    pub fn trainable_mask(&self) -> Vec<bool> {
        trainable_mask(&self.spans, self.ids.len())
    }

    /// A serialisable snapshot of the ids, spans and messages.
    pub fn transcript(&self) -> Transcript {
        Transcript {
            ids: self.ids.clone(),
            spans: self.spans.clone(),
            messages: self.messages.clone(),
        }
    }

    /// The ranges of sampled ids, one per [`SpanKind::Sampled`] span.
    pub fn sampled_ranges(&self) -> Vec<Range<usize>> {
        self.spans
            .iter()
            .filter(|s| s.is_sampled())
            .map(Span::range)
            .collect()
    }

    /// Appends a message; closes the open assistant turn first, if any. Returns the range of
    /// the ids appended by the whole step.
    pub fn push_message(
        &mut self,
        tokenizer: &dyn Tokenizer,
        message: Message,
    ) -> Result<Range<usize>> {
        let start = self.ids.len();
        let mut plan = self.close_plan(tokenizer)?;
        let rendered = self.render(&plan.messages, Some(&message), false)?;
        let delta = extension(&plan.rendered, &rendered, || {
            format!("message {} ({})", plan.messages.len(), message.role)
        })?;
        let ids = tokenizer.encode(delta)?;
        let message_index = plan.messages.len();
        push_span(
            &mut plan,
            start,
            ids,
            SpanKind::Message,
            &message.role,
            message_index,
        );
        plan.messages.push(message);
        plan.rendered = rendered;
        self.apply(plan);
        Ok(start..self.ids.len())
    }

    /// Appends several messages, one [`push_message`](Self::push_message) each; on an error,
    /// the messages before the failing one stay appended.
    pub fn push_messages(
        &mut self,
        tokenizer: &dyn Tokenizer,
        messages: &[Message],
    ) -> Result<Range<usize>> {
        let start = self.ids.len();
        for message in messages {
            self.push_message(tokenizer, message.clone())?;
        }
        Ok(start..self.ids.len())
    }

    /// Opens an assistant turn: appends the generation prompt. Fails when a turn is open.
    pub fn open_assistant_turn(&mut self, tokenizer: &dyn Tokenizer) -> Result<Range<usize>> {
        if self.open.is_some() {
            return Err(Error::Conversation(
                "an assistant turn is already open".into(),
            ));
        }
        let start = self.ids.len();
        let with_prompt = self.render(&self.messages, None, true)?;
        let delta = extension(&self.rendered, &with_prompt, || {
            "the generation prompt".into()
        })?;
        let ids = tokenizer.encode(delta)?;
        let mut plan = self.unchanged_plan();
        push_span(
            &mut plan,
            start,
            ids,
            SpanKind::GenerationPrompt,
            "assistant",
            self.messages.len(),
        );
        plan.open = Some(OpenTurn {
            sampled_start: start + plan.ids.len(),
        });
        self.apply(plan);
        Ok(start..self.ids.len())
    }

    /// Appends ids sampled by the policy, verbatim, to the open assistant turn; several calls
    /// extend the same span. Pass the ids up to and including the stop token, if one was
    /// sampled. Fails when no turn is open.
    pub fn push_sampled(&mut self, ids: &[u32]) -> Result<Range<usize>> {
        let Some(open) = &self.open else {
            return Err(Error::Conversation(
                "no open assistant turn: call open_assistant_turn first".into(),
            ));
        };
        let start = self.ids.len();
        let message = self.messages.len();
        self.ids.extend_from_slice(ids);
        let end = self.ids.len();
        match self.spans.last_mut() {
            Some(last) if last.is_sampled() && last.end == start && start > open.sampled_start => {
                last.end = end;
            }
            _ if start == end => {}
            _ => self.spans.push(Span {
                start,
                end,
                kind: SpanKind::Sampled,
                role: "assistant".into(),
                message,
            }),
        }
        Ok(start..end)
    }

    /// Closes the open assistant turn: appends the template's closing text for an assistant
    /// message, minus its first ids when the policy sampled them itself (its own end-of-turn
    /// token), and records the turn as an assistant message. Does nothing when no turn is
    /// open. Returns the range of the appended ids.
    pub fn close_turn(&mut self, tokenizer: &dyn Tokenizer) -> Result<Range<usize>> {
        let start = self.ids.len();
        let plan = self.close_plan(tokenizer)?;
        self.apply(plan);
        Ok(start..self.ids.len())
    }

    /// The ids of the text that closes an assistant turn in this conversation's template
    /// (e.g. `<|im_end|>` and `\n` for ChatML, `<|eot_id|>` for Llama 3). Its first id is the
    /// natural stop token for sampling, besides the end-of-sequence token.
    pub fn turn_end_ids(&self, tokenizer: &dyn Tokenizer) -> Result<Vec<u32>> {
        tokenizer.encode(&self.turn_end_text(&self.messages)?)
    }

    /// The ids that end a sampled assistant turn of `tokenizer`'s chat template: its
    /// end-of-sequence token and the first id of the template's turn end ([`turn_end_ids`]),
    /// sorted, without duplicates. The one stop rule of every policy turn.
    ///
    /// [`turn_end_ids`]: Self::turn_end_ids
    ///
    /// # Errors
    /// [`Error::Conversation`] when the tokenizer has no usable chat template.
    pub fn stop_ids(tokenizer: &dyn Tokenizer) -> Result<Vec<u32>> {
        let end = Self::for_tokenizer(tokenizer)?.turn_end_ids(tokenizer)?;
        let mut stops: Vec<u32> = tokenizer.special_tokens().eos.into_iter().collect();
        stops.extend(end.first().copied());
        stops.sort_unstable();
        stops.dedup();
        Ok(stops)
    }

    /// The text after the content of an assistant message appended to `history`.
    fn turn_end_text(&self, history: &[Message]) -> Result<String> {
        let rendered = self.render(history, Some(&Message::assistant(SENTINEL)), false)?;
        let at = rendered.rfind(SENTINEL).ok_or_else(|| {
            Error::Conversation("the chat template does not render assistant content".into())
        })?;
        Ok(rendered[at + SENTINEL.len()..].to_owned())
    }

    /// The plan that closes the open turn (or changes nothing when none is open).
    fn close_plan(&self, tokenizer: &dyn Tokenizer) -> Result<Plan> {
        let mut plan = self.unchanged_plan();
        let Some(open) = &self.open else {
            return Ok(plan);
        };
        let sampled = &self.ids[open.sampled_start..];
        let closing = tokenizer.encode(&self.turn_end_text(&self.messages)?)?;
        // The longest run of trailing sampled ids that starts the closing ids.
        let overlap = (1..=sampled.len().min(closing.len()))
            .rev()
            .find(|&n| sampled[sampled.len() - n..] == closing[..n])
            .unwrap_or(0);
        let content = tokenizer.decode(&sampled[..sampled.len() - overlap], true)?;
        let message = Message::assistant(content);
        let rendered = self.render(&self.messages, Some(&message), false)?;
        // Earlier turns must render as before; the generation prompt itself need not be a
        // prefix of the assistant message (templates that open `<think>` in it).
        extension(&self.rendered, &rendered, || {
            format!("assistant turn {} (closing)", self.messages.len())
        })?;
        let start = self.ids.len();
        push_span(
            &mut plan,
            start,
            closing[overlap..].to_vec(),
            SpanKind::TurnEnd,
            "assistant",
            self.messages.len(),
        );
        plan.messages.push(message);
        plan.rendered = rendered;
        plan.open = None;
        Ok(plan)
    }

    fn unchanged_plan(&self) -> Plan {
        Plan {
            ids: Vec::new(),
            spans: Vec::new(),
            messages: self.messages.clone(),
            rendered: self.rendered.clone(),
            open: self.open.clone(),
        }
    }

    /// Applies a plan: appends its ids and spans (never touching existing ids).
    fn apply(&mut self, plan: Plan) {
        self.ids.extend_from_slice(&plan.ids);
        self.spans.extend(plan.spans);
        self.messages = plan.messages;
        self.rendered = plan.rendered;
        self.open = plan.open;
    }

    fn render(
        &self,
        history: &[Message],
        next: Option<&Message>,
        add_generation_prompt: bool,
    ) -> Result<String> {
        let mut messages = history.to_vec();
        messages.extend(next.cloned());
        self.template
            .render_with(&messages, add_generation_prompt, &self.extra)
    }
}

/// Adds `ids` to the plan as one span starting at `conversation_start + plan.ids.len()`.
fn push_span(
    plan: &mut Plan,
    conversation_start: usize,
    ids: Vec<u32>,
    kind: SpanKind,
    role: &str,
    message: usize,
) {
    if ids.is_empty() {
        return;
    }
    let start = conversation_start + plan.ids.len();
    plan.ids.extend(ids);
    plan.spans.push(Span {
        start,
        end: conversation_start + plan.ids.len(),
        kind,
        role: role.to_owned(),
        message,
    });
}

/// The text `longer` adds to `prefix`, or [`Error::TemplateNotAppendOnly`].
fn extension<'a>(
    prefix: &str,
    longer: &'a str,
    context: impl FnOnce() -> String,
) -> Result<&'a str> {
    longer
        .strip_prefix(prefix)
        .ok_or_else(|| Error::TemplateNotAppendOnly { context: context() })
}
