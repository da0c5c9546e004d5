//! Answer extraction: finds the final answer in a free-form response.
//!
//! Priority, highest first: an `<answer>...</answer>` tag; "the final answer is ..." or the last
//! `\boxed{...}` / `\fbox{...}` (nested braces allowed), whichever comes later; a multiple-choice
//! letter after "answer is" / "option"; a short response that is itself an expression (`10/9`,
//! `28 percent`), taken whole; then the last math segment (`$...$`, `$$...$$`, `\(...\)`,
//! `\[...\]`) or plain number, whichever comes later. Several boxes or segments separated only
//! by connectors ("and", "or", commas) are joined into one list answer:
//! `\boxed{1} and \boxed{2}` extracts as `1, 2`.

use std::ops::Range;
use std::sync::LazyLock;

use regex::Regex;

static CHOICE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"\b(?i:answer|option|choice)\s*(?i:is|:)?\s*(?i:option\s*)?\(?([A-E])\)?(?:[\s.,;!]|$)",
    )
    .expect("valid regex")
});

static ENV_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\\(?:begin|end)\{[A-Za-z*]*\}").expect("valid regex"));

/// Where an extracted answer came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// An `<answer>...</answer>` tag.
    AnswerTag,
    /// A `\boxed{...}` or `\fbox{...}`.
    Boxed,
    /// "The final answer is ...".
    FinalAnswer,
    /// A `$...$`, `$$...$$`, `\(...\)` or `\[...\]` segment.
    Math,
    /// A plain number in running text.
    Number,
    /// A multiple-choice letter after "answer is" / "option".
    Choice,
    /// The whole (short) response.
    Whole,
}

/// An answer found in a response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Extracted {
    /// The answer text, not yet normalised.
    pub text: String,
    /// Byte range of the answer in the response (the first to the last joined piece).
    pub span: Range<usize>,
    /// How it was found.
    pub source: Source,
}

/// One match: the span of the whole construct and of its content.
#[derive(Clone, Debug)]
struct Piece {
    whole: Range<usize>,
    content: Range<usize>,
}

/// Extracts the final answer of `text`, or `None` when nothing answer-like is found.
pub fn extract_answer(text: &str) -> Option<Extracted> {
    if let Some(p) = find_answer_tag(text) {
        return Some(Extracted {
            text: text[p.content.clone()].to_string(),
            span: p.content,
            source: Source::AnswerTag,
        });
    }
    // "The final answer is" and the last box: whichever comes later (a draft answer in a
    // `<think>` block must not win over the final box, nor a box in the working over the final
    // sentence).
    let final_answer = find_final_answer(text);
    let boxed = find_boxed(text);
    let boxed = (!boxed.is_empty()).then(|| join_last(text, &boxed, Source::Boxed));
    match (final_answer, boxed) {
        (Some(f), Some(b)) => return Some(if b.span.start >= f.span.start { b } else { f }),
        (Some(e), None) | (None, Some(e)) => return Some(e),
        (None, None) => {}
    }
    if let Some(e) = find_choice(text) {
        return Some(e);
    }
    if looks_like_bare_answer(text) {
        let start = text.len() - text.trim_start().len();
        let t = text.trim();
        return Some(Extracted {
            text: t.to_string(),
            span: start..start + t.len(),
            source: Source::Whole,
        });
    }
    let math = find_math_segments(text);
    let number = find_numbers(text).pop();
    match (math.last(), number) {
        (Some(m), Some(n)) if n.whole.start >= m.whole.end => {
            Some(piece_answer(text, n, Source::Number))
        }
        (Some(_), _) => Some(join_last(text, &math, Source::Math)),
        (None, Some(n)) => Some(piece_answer(text, n, Source::Number)),
        (None, None) => None,
    }
}

fn piece_answer(text: &str, p: Piece, source: Source) -> Extracted {
    Extracted {
        text: text[p.content.clone()].to_string(),
        span: p.content,
        source,
    }
}

/// Joins the last piece with the preceding ones separated only by connectors.
fn join_last(text: &str, pieces: &[Piece], source: Source) -> Extracted {
    let mut first = pieces.len() - 1;
    while first > 0
        && is_connector_gap(&text[pieces[first - 1].whole.end..pieces[first].whole.start])
    {
        first -= 1;
    }
    let parts: Vec<&str> = pieces[first..]
        .iter()
        .map(|p| text[p.content.clone()].trim())
        .collect();
    Extracted {
        text: parts.join(", "),
        span: pieces[first].content.start..pieces[pieces.len() - 1].content.end,
        source,
    }
}

/// Whether the text between two answers only connects them ("and", "or", ",", `\quad`).
fn is_connector_gap(gap: &str) -> bool {
    if gap.len() > 40 {
        return false;
    }
    let mut cleaned = gap.to_string();
    for pat in [
        "\\text{",
        "\\textbf{",
        "\\mbox{",
        "\\quad",
        "\\qquad",
        "\\[",
        "\\]",
        "\\(",
        "\\)",
        "$",
        "}",
        "{",
        "\\,",
        "\\;",
        "\\ ",
    ] {
        cleaned = cleaned.replace(pat, " ");
    }
    let words: Vec<&str> = cleaned
        .split(|c: char| c.is_whitespace() || c == ',' || c == ';' || c == '.')
        .filter(|w| w.chars().any(char::is_alphabetic))
        .collect();
    words.is_empty()
        || words
            .iter()
            .any(|w| matches!(w.to_ascii_lowercase().as_str(), "and" | "or" | "&"))
}

/// A short response that is itself an expression: no long words other than units/connectors.
fn looks_like_bare_answer(text: &str) -> bool {
    let t = text.trim();
    if t.is_empty() || t.len() > 120 || t.contains('\n') {
        return false;
    }
    if t.contains('$') || t.contains("\\(") || t.contains("\\[") {
        return false;
    }
    if t.contains('\'') {
        return false;
    }
    // Environment names (`\begin{pmatrix}`) are not words.
    let stripped = ENV_NAME.replace_all(t, " ");
    let t = stripped.as_ref();
    let b = t.as_bytes();
    let mut words = 0;
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_alphabetic() {
            let s = i;
            while i < b.len() && b[i].is_ascii_alphabetic() {
                i += 1;
            }
            let w = &t[s..i];
            let command = s > 0 && b[s - 1] == b'\\';
            let known = matches!(w, "percent" | "percentage" | "pct" | "and" | "or");
            if !command && !known && w.len() >= 4 {
                return false;
            }
            if !command && !known && w.len() >= 2 {
                words += 1;
            }
        } else {
            i += 1;
        }
    }
    words <= 1
}

/// "The answer is (B)": the last multiple-choice letter after "answer", "option" or "choice".
fn find_choice(text: &str) -> Option<Extracted> {
    let c = CHOICE.captures_iter(text).last()?;
    let m = c.get(1)?;
    Some(Extracted {
        text: m.as_str().to_string(),
        span: m.range(),
        source: Source::Choice,
    })
}

fn find_answer_tag(text: &str) -> Option<Piece> {
    let open = text.rfind("<answer>")?;
    let start = open + "<answer>".len();
    let end = text[start..]
        .find("</answer>")
        .map_or(text.len(), |e| start + e);
    Some(Piece {
        whole: open..end,
        content: start..end,
    })
}

/// All `\boxed{...}` and `\fbox{...}` in order; an unclosed box runs to the end of the text.
fn find_boxed(text: &str) -> Vec<Piece> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let rest = &bytes[i..];
        let kw = if rest.starts_with(b"\\boxed") {
            6
        } else if rest.starts_with(b"\\fbox") {
            5
        } else {
            i += 1;
            continue;
        };
        let mut j = i + kw;
        while j < bytes.len() && bytes[j] == b' ' {
            j += 1;
        }
        if j >= bytes.len() || bytes[j] != b'{' {
            i = j.max(i + 1);
            continue;
        }
        let content_start = j + 1;
        let close = matching_brace(bytes, j);
        let (content_end, whole_end) = match close {
            Some(c) => (c, c + 1),
            None => (bytes.len(), bytes.len()),
        };
        out.push(Piece {
            whole: i..whole_end,
            content: content_start..content_end,
        });
        i = whole_end.max(i + 1);
    }
    out
}

/// Index of the `}` matching the `{` at `open`, skipping escaped `\{` and `\}`.
pub(crate) fn matching_brace(bytes: &[u8], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut k = open;
    while k < bytes.len() {
        match bytes[k] {
            b'\\' => k += 1,
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(k);
                }
            }
            _ => {}
        }
        k += 1;
    }
    None
}

fn find_final_answer(text: &str) -> Option<Extracted> {
    let lower = text.to_ascii_lowercase();
    let key = "final answer is";
    let at = lower.rfind(key)?;
    let start = at + key.len();
    let line_end = text[start..].find('\n').map_or(text.len(), |e| start + e);
    let tail = &text[start..line_end];
    let segs = find_math_segments(tail);
    if !segs.is_empty() {
        // The first segment, joined with the following ones separated only by connectors.
        let mut last = 0;
        while last + 1 < segs.len()
            && is_connector_gap(&tail[segs[last].whole.end..segs[last + 1].whole.start])
        {
            last += 1;
        }
        let mut e = join_last(tail, &segs[..=last], Source::FinalAnswer);
        e.span = e.span.start + start..e.span.end + start;
        return Some(e);
    }
    let trimmed_start = start + (tail.len() - tail.trim_start().len());
    let body = &text[trimmed_start..line_end];
    let end = body
        .find(". ")
        .or_else(|| body.find(" I hope"))
        .unwrap_or(body.len());
    let ans = body[..end].trim().trim_end_matches('.');
    if ans.is_empty() {
        return None;
    }
    Some(Extracted {
        text: ans.to_string(),
        span: trimmed_start..trimmed_start + ans.len(),
        source: Source::FinalAnswer,
    })
}

/// All math segments: `$$...$$`, `\[...\]` (may span lines), `$...$`, `\(...\)` (one line).
fn find_math_segments(text: &str) -> Vec<Piece> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let rest = &bytes[i..];
        let (open_len, close, multiline): (usize, &[u8], bool) = if rest.starts_with(b"$$") {
            (2, b"$$", true)
        } else if rest.starts_with(b"\\[") {
            (2, b"\\]", true)
        } else if rest.starts_with(b"\\(") {
            (2, b"\\)", false)
        } else if rest.starts_with(b"\\$") {
            i += 2;
            continue;
        } else if rest.starts_with(b"$") {
            (1, b"$", false)
        } else {
            i += 1;
            continue;
        };
        let start = i + open_len;
        let mut k = start;
        let mut found = None;
        while k < bytes.len() {
            if bytes[k..].starts_with(close) && !(close == b"$" && k > 0 && bytes[k - 1] == b'\\') {
                found = Some(k);
                break;
            }
            if !multiline && bytes[k] == b'\n' {
                break;
            }
            k += 1;
        }
        match found {
            Some(end) => {
                if !text[start..end].trim().is_empty() {
                    out.push(Piece {
                        whole: i..end + close.len(),
                        content: start..end,
                    });
                }
                i = end + close.len();
            }
            // No closer before `k`: no later opener before `k` can have one either.
            None => i = k.max(start),
        }
    }
    out
}

/// Plain numbers not glued to a preceding letter: `-12`, `1,000.99`, `2,74`, `.4`, `1 000`.
fn find_numbers(text: &str) -> Vec<Piece> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let starts = c.is_ascii_digit()
            || (c == b'.' && i + 1 < bytes.len() && bytes[i + 1].is_ascii_digit());
        if !starts || (i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_')) {
            i += 1;
            continue;
        }
        let mut start = i;
        if i > 0 && bytes[i - 1] == b'-' {
            start = i - 1;
        }
        let mut k = i;
        loop {
            while k < bytes.len() && bytes[k].is_ascii_digit() {
                k += 1;
            }
            // Scientific notation: `1.5e-3`.
            if k + 1 < bytes.len() && matches!(bytes[k], b'e' | b'E') {
                let sign = usize::from(matches!(bytes[k + 1], b'+' | b'-'));
                if bytes.get(k + 1 + sign).is_some_and(u8::is_ascii_digit) {
                    k += 1 + sign;
                    continue;
                }
            }
            // A separator followed by a digit continues the number ("1,000", "2.5", "1 000").
            if k + 1 < bytes.len()
                && matches!(bytes[k], b',' | b'.' | b'/')
                && bytes[k + 1].is_ascii_digit()
            {
                k += 1;
                continue;
            }
            if k + 3 < bytes.len()
                && bytes[k] == b' '
                && bytes[k + 1..k + 4].iter().all(u8::is_ascii_digit)
                && (k + 4 == bytes.len() || !bytes[k + 4].is_ascii_digit())
                && text[start..k].bytes().filter(u8::is_ascii_digit).count() <= 3
            {
                k += 4;
                continue;
            }
            break;
        }
        // Glued to following letters other than a unit? Keep: "1,000.99m²" is a number with a unit.
        if k < bytes.len()
            && bytes[k].is_ascii_alphabetic()
            && start > 0
            && bytes[start - 1].is_ascii_alphabetic()
        {
            i = k;
            continue;
        }
        out.push(Piece {
            whole: start..k,
            content: start..k,
        });
        i = k;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(s: &str) -> String {
        extract_answer(s).map(|e| e.text).unwrap_or_default()
    }

    #[test]
    fn boxed_with_nested_braces() {
        assert_eq!(ex("so $x = \\boxed{\\frac{1}{2}}$."), "\\frac{1}{2}");
        assert_eq!(ex("\\fbox{3} then \\boxed{4}"), "4");
    }

    #[test]
    fn later_of_final_answer_and_box() {
        assert_eq!(
            ex("<think>the final answer is 5? no</think> so \\boxed{6}"),
            "6"
        );
        assert_eq!(
            ex("\\boxed{200} then ... The final answer is $10,455$. I hope"),
            "10,455"
        );
    }

    #[test]
    fn joined_boxes() {
        assert_eq!(ex("\\boxed{1} and \\boxed{2}"), "1, 2");
        assert_eq!(ex("\\boxed{1} no no no no no \\boxed{2}"), "2");
    }

    #[test]
    fn answer_tag_and_final_answer() {
        assert_eq!(ex("work <answer>42</answer>"), "42");
        assert_eq!(
            ex("The final answer is $28 \\%$. I hope it is correct."),
            "28 \\%"
        );
    }

    #[test]
    fn math_segments() {
        assert_eq!(ex("Answer \\[ 9 \\]"), "9");
        assert_eq!(ex("Answer $ \n 9 \n $"), "9");
        assert_eq!(ex("Answer $$ \n 9 \n $$").trim(), "9");
    }

    #[test]
    fn multiple_choice() {
        assert_eq!(ex("so the answer is (B)."), "B");
        assert_eq!(ex("Answer: C"), "C");
        assert_eq!(ex("the answer is a prime, 7"), "7");
        assert_eq!(ex("The correct option is D"), "D");
    }

    #[test]
    fn plain_numbers() {
        assert_eq!(ex("the number is not 10 which is 1,000.99€"), "1,000.99");
        assert_eq!(ex("AZYUK2A"), "");
        assert_eq!(ex("Soucis : 2,74 $ a.."), "2,74");
    }
}
