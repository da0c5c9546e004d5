//! Normalisation: rewrites an extracted answer into a canonical LaTeX-ish string for the parser.
//!
//! Each rule is a small function with its own unit test, applied in [`normalize`] in this order:
//! unicode symbols, LaTeX thousands separators, `\left`/`\right`, `\dfrac`/`\tfrac`/`\cfrac`,
//! spacing commands, `\text{}`/`\mathrm{}` (connector words become commas, unit words are dropped),
//! degrees, percentages, currency, unit words after a number, connector words, `x \in`, trailing
//! punctuation, and plain-number separators (thousands separators, decimal commas).

use std::sync::LazyLock;

use regex::Regex;

/// Normalises an extracted answer. Pure string rewriting; never fails.
pub fn normalize(answer: &str) -> String {
    let mut s = answer.trim().to_string();
    s = double_backslashes(&s);
    s = strip_math_delimiters(&s);
    s = unicode_symbols(&s);
    s = latex_thousands(&s);
    s = strip_left_right(&s);
    s = frac_variants(&s);
    s = spacing_commands(&s);
    s = text_commands(&s);
    s = degrees(&s);
    s = percentages(&s);
    s = currency(&s);
    s = unit_words(&s);
    s = connector_words(&s);
    s = trailing_punctuation(&s);
    s = plain_number(&s);
    s.trim().to_string()
}

/// Over-escaped commands (`\\frac`, from JSON written twice) become `\frac`; the row separator
/// `\\` before `\end` or a space stays.
pub fn double_backslashes(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            let mut j = i;
            while j < b.len() && b[j] == b'\\' {
                j += 1;
            }
            let run = j - i;
            let letter = j < b.len() && b[j].is_ascii_alphabetic();
            let word_end = s[j..]
                .find(|c: char| !c.is_ascii_alphabetic())
                .map_or(s.len(), |e| j + e);
            let keep_row = matches!(&s[j..word_end], "end" | "hline" | "cline");
            let paren = j < b.len() && matches!(b[j], b'(' | b')' | b'[' | b']' | b'{' | b'}');
            if run == 2 && ((letter && !keep_row) || paren) {
                out.push('\\');
            } else {
                out.push_str(&s[i..j]);
            }
            i = j;
            continue;
        }
        let c = s[i..].chars().next().unwrap_or(' ');
        out.push(c);
        i += c.len_utf8();
    }
    out
}

/// Removes surrounding `$`, `$$`, `\(`/`\)`, `\[`/`\]` and stray `$` signs.
pub fn strip_math_delimiters(s: &str) -> String {
    let mut t = s.trim();
    for (o, c) in [("$$", "$$"), ("\\[", "\\]"), ("\\(", "\\)"), ("$", "$")] {
        if t.len() >= o.len() + c.len() && t.starts_with(o) && t.ends_with(c) {
            t = &t[o.len()..t.len() - c.len()];
        }
    }
    // Escaped dollars are currency; unescaped ones left over are delimiters of joined segments.
    let t = t.replace("\\$", " ");
    t.replace('$', " ").trim().to_string()
}

/// Unicode math symbols to LaTeX: `−`, `×`, `÷`, `π`, `∞`, `≤`, `≥`, `≠`, `√`, `²`, `³`, `·`.
pub fn unicode_symbols(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '−' | '–' => out.push('-'),
            '×' => out.push_str("\\times "),
            '÷' => out.push_str("\\div "),
            '·' => out.push_str("\\cdot "),
            'π' => out.push_str("\\pi "),
            '∞' => out.push_str("\\infty "),
            '≤' => out.push_str("\\le "),
            '≥' => out.push_str("\\ge "),
            '≠' => out.push_str("\\ne "),
            '√' => out.push_str("\\sqrt "),
            '²' => out.push_str("^2"),
            '³' => out.push_str("^3"),
            '€' | '£' | '¥' => out.push(' '),
            _ => out.push(c),
        }
    }
    out
}

static LATEX_THOUSANDS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(\d)\s*(?:\{,\s*\}|,\\!\s*)\s*(\d)").expect("valid regex"));

/// LaTeX thousands separators `14{,}916` and `11,\!111` become plain `14916`, `11111`.
pub fn latex_thousands(s: &str) -> String {
    let mut cur = s.to_string();
    loop {
        let next = LATEX_THOUSANDS.replace_all(&cur, "$1$2").into_owned();
        if next == cur {
            return cur;
        }
        cur = next;
    }
}

/// Drops `\left` and `\right` (and the invisible delimiters `\left.`, `\right.`).
pub fn strip_left_right(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while !rest.is_empty() {
        let kw = if rest.starts_with("\\left") {
            5
        } else if rest.starts_with("\\right") {
            6
        } else {
            0
        };
        if kw > 0 && !rest[kw..].starts_with(|c: char| c.is_ascii_alphabetic()) {
            rest = &rest[kw..];
            if rest.starts_with('.') {
                rest = &rest[1..];
            }
            continue;
        }
        let c = rest.chars().next().unwrap_or(' ');
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// `\dfrac`, `\tfrac`, `\cfrac` become `\frac`; `\dbinom`, `\tbinom` become `\binom`.
pub fn frac_variants(s: &str) -> String {
    s.replace("\\dfrac", "\\frac")
        .replace("\\tfrac", "\\frac")
        .replace("\\cfrac", "\\frac")
        .replace("\\dbinom", "\\binom")
        .replace("\\tbinom", "\\binom")
}

/// Spacing and style commands (`\,`, `\!`, `\quad`, `\displaystyle`, ...) become a space.
pub fn spacing_commands(s: &str) -> String {
    let mut t = s.to_string();
    for pat in ["\\displaystyle", "\\qquad", "\\quad", "\\limits", "~"] {
        t = t.replace(pat, " ");
    }
    let b = t.as_bytes();
    let mut out = String::with_capacity(t.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            if b[i + 1] == b'\\' {
                out.push_str("\\\\");
                i += 2;
                continue;
            }
            if matches!(b[i + 1], b',' | b'!' | b';' | b':' | b' ') {
                out.push(' ');
                i += 2;
                continue;
            }
        }
        let c = t[i..].chars().next().unwrap_or(' ');
        out.push(c);
        i += c.len_utf8();
    }
    out
}

const TEXT_COMMANDS: [&str; 12] = [
    "\\textnormal",
    "\\textbf",
    "\\textit",
    "\\textrm",
    "\\text",
    "\\mathrm",
    "\\mathbf",
    "\\mathit",
    "\\mbox",
    "\\operatorname",
    "\\boldsymbol",
    "\\mathbb",
];

/// `\text{...}` and friends: connector words (`and`, `or`) become commas; words after an expression
/// (units such as `\text{ cm}`) are dropped; anything else keeps its content.
pub fn text_commands(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let found = TEXT_COMMANDS.iter().find(|c| {
            s[i..].starts_with(**c)
                && !s[i + c.len()..].starts_with(|ch: char| ch.is_ascii_alphabetic())
        });
        let Some(cmd) = found else {
            let c = s[i..].chars().next().unwrap_or(' ');
            out.push(c);
            i += c.len_utf8();
            continue;
        };
        let mut j = i + cmd.len();
        while j < s.len() && bytes[j] == b' ' {
            j += 1;
        }
        if j >= s.len() || bytes[j] != b'{' {
            i = j;
            continue;
        }
        let close = super::extract::matching_brace(bytes, j).unwrap_or(s.len());
        let content = &s[j + 1..close.min(s.len())];
        let word = content.trim();
        let lower = word.to_ascii_lowercase();
        let before = out.trim();
        let after = s.get(close + 1..).unwrap_or("").trim();
        let alphabetic = !word.is_empty()
            && word
                .chars()
                .all(|c| c.is_alphabetic() || c == ' ' || c == '.');
        let is_math_cmd = matches!(
            *cmd,
            "\\mathbf" | "\\boldsymbol" | "\\mathbb" | "\\operatorname"
        );
        if matches!(lower.as_str(), "and" | "or" | "," | "and also") {
            out.push_str(" , ");
        } else if alphabetic
            && !is_math_cmd
            && (!before.is_empty() || !after.is_empty())
            && word.len() > 1
        {
            out.push(' ');
        } else {
            out.push(' ');
            out.push_str(content);
            out.push(' ');
        }
        i = close + 1;
    }
    out
}

/// Degrees: `^\circ`, `^{\circ}`, `\circ`, `\degree` and the word `degrees` are dropped.
pub fn degrees(s: &str) -> String {
    let mut t = s.to_string();
    for pat in ["^{\\circ}", "^\\circ", "\\circ", "\\degree", "°"] {
        t = t.replace(pat, " ");
    }
    t
}

static PERCENT_WORDS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)\b(percentage|percent|pct)\b").expect("valid regex"));

/// Whether an answer is written as a percentage (`%`, `percent`, `pct`).
pub fn has_percent(s: &str) -> bool {
    s.contains('%') || PERCENT_WORDS.is_match(s)
}

/// Percentages: `\%`, `%`, `percent`, `pct` are dropped, so `28\%` compares equal to `28`.
pub fn percentages(s: &str) -> String {
    let t = s.replace("\\%", " ").replace('%', " ");
    PERCENT_WORDS.replace_all(&t, " ").into_owned()
}

static CURRENCY_WORDS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(dollars?|cents?|euros?|yuan|usd|eur|rs\.?)\b|\\euro|\\pounds")
        .expect("valid regex")
});

/// Currency words and signs are dropped.
pub fn currency(s: &str) -> String {
    CURRENCY_WORDS.replace_all(s, " ").into_owned()
}

static UNIT_WORDS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?x)([0-9}.)])\s*(?:square\s+|sq\.?\s+|cubic\s+)?
        (?:mm|cm|km|inch|inches|ft|feet|foot|yd|yards?|miles?|meters?|metres?|centimeters?|
        kilometers?|kg|grams?|kilograms?|lbs?|pounds?|oz|ounces?|seconds?|sec|minutes?|min|
        hours?|hrs?|days?|weeks?|months?|years?|units?|degrees?|liters?|litres?|ml|mph|cups?|
        people|students|ways|times)\b(\^\{?\d\}?)?|([0-9}.)])\s+(?:m|g|s|in|h)(\^\{?\d\}?)?\s*$",
    )
    .expect("valid regex")
});

/// Unit words after a number (`35 cm`, `125 miles`, `15 cm^2`) are dropped.
pub fn unit_words(s: &str) -> String {
    UNIT_WORDS
        .replace_all(s, |c: &regex::Captures<'_>| {
            let lead = c.get(1).or_else(|| c.get(3)).map_or("", |m| m.as_str());
            format!("{lead} ")
        })
        .into_owned()
}

static CONNECTORS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\s+(and|or)\s+|\)\s*(?:or|and)\s*\(|(\d)or([A-Za-z(])").expect("valid regex")
});

/// The words `and` / `or` between answers become commas: `6 and 8` is the list `6, 8`.
pub fn connector_words(s: &str) -> String {
    CONNECTORS
        .replace_all(s, |c: &regex::Captures<'_>| {
            if c.get(1).is_some() {
                " , ".to_string()
            } else if let (Some(a), Some(b)) = (c.get(2), c.get(3)) {
                format!("{},{}", a.as_str(), b.as_str())
            } else {
                "),(".to_string()
            }
        })
        .into_owned()
}

/// Trailing periods, commas and semicolons are dropped.
pub fn trailing_punctuation(s: &str) -> String {
    let mut t = s.trim();
    loop {
        let u = t.trim_end_matches(['.', ',', ';']).trim_end();
        let u = u.strip_suffix("\\.").unwrap_or(u).trim_end();
        if u == t {
            break;
        }
        t = u;
    }
    t.to_string()
}

static THOUSANDS_COMMA: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^-?\d{1,3}(,\d{3})+(\.\d+)?$").expect("valid regex"));
static THOUSANDS_SPACE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^-?\d{1,3}( \d{3})+(\.\d+)?$").expect("valid regex"));
static DECIMAL_COMMA: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^-?\d+,\d{2,}$").expect("valid regex"));
static EUROPEAN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^-?\d{1,3}(\.\d{3})+,\d+$").expect("valid regex"));

/// A whole answer that is a plain number with separators: `7,425,000` and `1 000` lose their
/// thousands separators, `1000,99` and `0,111` have decimal commas, `1.000,5` is European.
/// `1,234` (one comma, three digits after, a non-zero lead) reads as a thousands separator.
pub fn plain_number(s: &str) -> String {
    let t = s.trim();
    if THOUSANDS_COMMA.is_match(t) && !t.starts_with("0,") && !t.starts_with("-0,") {
        t.replace(',', "")
    } else if THOUSANDS_SPACE.is_match(t) {
        t.replace(' ', "")
    } else if DECIMAL_COMMA.is_match(t) {
        t.replace(',', ".")
    } else if EUROPEAN.is_match(t) {
        t.replace('.', "").replace(',', ".")
    } else {
        t.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delimiters() {
        assert_eq!(strip_math_delimiters("$9$"), "9");
        assert_eq!(strip_math_delimiters("\\[ 9 \\]"), "9");
    }

    #[test]
    fn over_escaped() {
        assert_eq!(double_backslashes("\\\\frac{1}{2}"), "\\frac{1}{2}");
        assert_eq!(double_backslashes("1 \\\\ 2 \\\\end"), "1 \\\\ 2 \\\\end");
        assert_eq!(double_backslashes("a\\\\\\frac"), "a\\\\\\frac");
    }

    #[test]
    fn unicode() {
        assert_eq!(unicode_symbols("2×π"), "2\\times \\pi ");
    }

    #[test]
    fn thousands_in_latex() {
        assert_eq!(latex_thousands("14{,}916"), "14916");
        assert_eq!(latex_thousands("11,\\! 111,\\! 100"), "11111100");
    }

    #[test]
    fn left_right() {
        assert_eq!(
            strip_left_right("\\left( \\frac{1}{3} \\right)"),
            "( \\frac{1}{3} )"
        );
        assert_eq!(strip_left_right("\\left.x\\right|"), "x|");
        assert_eq!(strip_left_right("\\leftarrow"), "\\leftarrow");
    }

    #[test]
    fn fracs() {
        assert_eq!(
            frac_variants("\\dfrac{1}{2}+\\tfrac12"),
            "\\frac{1}{2}+\\frac12"
        );
    }

    #[test]
    fn spacing() {
        assert_eq!(
            spacing_commands("a\\,b\\quad c")
                .split_whitespace()
                .collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
    }

    #[test]
    fn text() {
        assert_eq!(text_commands("\\text{Evelyn}").trim(), "Evelyn");
        assert_eq!(text_commands("12\\text{ and }13").replace(' ', ""), "12,13");
        assert_eq!(
            text_commands("\\frac{1}{3} \\textbf{meters}").trim(),
            "\\frac{1}{3}"
        );
        assert_eq!(text_commands("\\mathrm{(C)}").trim(), "(C)");
    }

    #[test]
    fn degrees_and_percent() {
        assert_eq!(degrees("90^\\circ").trim(), "90");
        assert_eq!(percentages("28\\%").trim(), "28");
        assert_eq!(percentages("28 percent").trim(), "28");
    }

    #[test]
    fn currency_and_units() {
        assert_eq!(currency("5 dollars").trim(), "5");
        assert_eq!(unit_words("35 cm").trim(), "35");
        assert_eq!(unit_words("15 cm^2").trim(), "15");
        assert_eq!(unit_words("2x").trim(), "2x");
        assert_eq!(unit_words("2m+1").trim(), "2m+1");
        assert_eq!(unit_words("3 m").trim(), "3");
    }

    #[test]
    fn connectors() {
        assert_eq!(connector_words("6 and 8").replace(' ', ""), "6,8");
        assert_eq!(connector_words("(11,7)or(7,11)"), "(11,7),(7,11)");
    }

    #[test]
    fn trailing() {
        assert_eq!(trailing_punctuation("5."), "5");
        assert_eq!(trailing_punctuation("x,;"), "x");
    }

    #[test]
    fn plain_numbers() {
        assert_eq!(plain_number("7,425,000"), "7425000");
        assert_eq!(plain_number("1 000"), "1000");
        assert_eq!(plain_number("1000,99"), "1000.99");
        assert_eq!(plain_number("0,111"), "0.111");
        assert_eq!(plain_number("1,22"), "1.22");
        assert_eq!(plain_number("1.000,5"), "1000.5");
        assert_eq!(plain_number("(1,3)"), "(1,3)");
        assert_eq!(plain_number("6,8"), "6,8");
    }

    #[test]
    fn whole() {
        assert_eq!(normalize("$\\frac{1}{3} \\text{meters}$"), "\\frac{1}{3}");
        assert_eq!(normalize("$1,000.99$"), "1000.99");
    }
}
