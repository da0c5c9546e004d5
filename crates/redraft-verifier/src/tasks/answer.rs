//! Answer formats shared by the task families: an `<answer>...</answer>` tag or `\boxed{...}`.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::verdict::{Diagnosis, DiagnosisKind, Verdict};

/// How a task's final answer must be marked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerFormat {
    /// `<answer>...</answer>`: compact, for plain-text (byte-level) models.
    #[default]
    Tag,
    /// `\boxed{...}`: for instruction-tuned models.
    Boxed,
}

impl AnswerFormat {
    /// Wraps `answer` in this format.
    pub fn wrap(self, answer: &str) -> String {
        match self {
            AnswerFormat::Tag => format!("<answer>{answer}</answer>"),
            AnswerFormat::Boxed => format!("\\boxed{{{answer}}}"),
        }
    }

    /// The instruction sentence that tells a model how to mark its answer.
    pub fn instruction(self) -> &'static str {
        match self {
            AnswerFormat::Tag => "Write the final answer inside <answer></answer> tags.",
            AnswerFormat::Boxed => "Put your final answer in \\boxed{} format.",
        }
    }
}

/// The last answer marked in `format`, with its byte range in `response`; a missing or
/// unterminated marker, or the other format, is a bad-format verdict.
pub fn find_answer(
    response: &str,
    format: AnswerFormat,
) -> Result<(&str, Range<usize>), Box<Verdict>> {
    let found = match format {
        AnswerFormat::Tag => find_tag(response),
        AnswerFormat::Boxed => find_boxed(response),
    };
    match found {
        Some(r) => Ok((&response[r.clone()], r)),
        None => {
            let other = match format {
                AnswerFormat::Tag => find_boxed(response).map(|_| "\\boxed{}"),
                AnswerFormat::Boxed => find_tag(response).map(|_| "<answer></answer>"),
            };
            let wanted = match format {
                AnswerFormat::Tag => "<answer>...</answer>",
                AnswerFormat::Boxed => "\\boxed{...}",
            };
            let detail = match other {
                Some(o) => {
                    format!("the answer is marked with {o}, but this task requires {wanted}")
                }
                None => format!("no answer marked with {wanted}"),
            };
            let kind = if other.is_some() {
                DiagnosisKind::BadFormat
            } else {
                DiagnosisKind::NoAnswer
            };
            Err(Box::new(Verdict::malformed(Diagnosis::new(kind, detail))))
        }
    }
}

fn find_tag(s: &str) -> Option<Range<usize>> {
    let open = s.rfind("<answer>")?;
    let start = open + "<answer>".len();
    let end = s[start..].find("</answer>")? + start;
    Some(start..end)
}

fn find_boxed(s: &str) -> Option<Range<usize>> {
    let at = s.rfind("\\boxed{")?;
    let open = at + "\\boxed".len();
    let close = crate::math::extract::matching_brace(s.as_bytes(), open)?;
    Some(open + 1..close)
}

/// Splits the text before the answer into scratchpad steps separated by `;` or newlines, with
/// their byte ranges; empty steps are skipped.
pub fn steps(text: &str) -> Vec<(&str, Range<usize>)> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, c) in text
        .char_indices()
        .chain(std::iter::once((text.len(), ';')))
    {
        if c == ';' || c == '\n' {
            let raw = &text[start..i];
            let trimmed = raw.trim();
            if !trimmed.is_empty() {
                let off = start + (raw.len() - raw.trim_start().len());
                out.push((trimmed, off..off + trimmed.len()));
            }
            start = i + c.len_utf8();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_tags_and_boxes() {
        assert_eq!(
            find_answer("x <answer>12</answer>", AnswerFormat::Tag)
                .unwrap()
                .0,
            "12"
        );
        assert_eq!(
            find_answer("x \\boxed{1{2}}", AnswerFormat::Boxed)
                .unwrap()
                .0,
            "1{2}"
        );
        let v = find_answer("x \\boxed{12}", AnswerFormat::Tag).unwrap_err();
        assert_eq!(v.diagnosis.kind, DiagnosisKind::BadFormat);
        let v = find_answer("12", AnswerFormat::Tag).unwrap_err();
        assert_eq!(v.diagnosis.kind, DiagnosisKind::NoAnswer);
    }

    #[test]
    fn splits_steps() {
        let s = steps("a=1; b=2\n\nc=3;");
        assert_eq!(
            s.iter().map(|x| x.0).collect::<Vec<_>>(),
            ["a=1", "b=2", "c=3"]
        );
        assert_eq!(&"a=1; b=2\n\nc=3;"[s[1].1.clone()], "b=2");
    }
}
