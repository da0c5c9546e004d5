//! Markdown building blocks of a report: tables, transcripts and number formatting.

/// A markdown table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    /// The column names.
    pub header: Vec<String>,
    /// The body rows; short rows are padded with empty cells.
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// GitHub-flavoured markdown: `|` inside cells escaped as `\|` (line breaks as `<br>`),
    /// numeric-looking columns right-aligned (`---:`). Empty when there are no columns.
    pub fn to_markdown(&self) -> String {
        let columns = self
            .rows
            .iter()
            .map(Vec::len)
            .chain([self.header.len()])
            .max()
            .unwrap_or(0);
        if columns == 0 {
            return String::new();
        }
        let line = |cells: &[String]| {
            let cells: Vec<String> = (0..columns)
                .map(|i| escape_cell(cells.get(i).map_or("", |c| c)))
                .collect();
            format!("| {} |\n", cells.join(" | "))
        };
        let rule: Vec<&str> = (0..columns)
            .map(|i| {
                let cells: Vec<&str> = (self.rows.iter().filter_map(|r| r.get(i)))
                    .map(|c| c.trim())
                    .filter(|c| !c.is_empty() && *c != "–")
                    .collect();
                if !cells.is_empty() && cells.iter().all(|c| looks_numeric(c)) {
                    "---:"
                } else {
                    "---"
                }
            })
            .collect();
        let mut out = line(&self.header);
        out.push_str(&format!("| {} |\n", rule.join(" | ")));
        for row in &self.rows {
            out.push_str(&line(row));
        }
        out
    }
}

/// `true` for cells such as `12`, `-0.5`, `3.00e-4`, `41%` or `0.412 ± 0.031`.
fn looks_numeric(cell: &str) -> bool {
    cell.split('±').all(|part| {
        let part = part.trim().trim_end_matches('%');
        part.parse::<f64>().is_ok() && !part.eq_ignore_ascii_case("nan")
    })
}

fn escape_cell(cell: &str) -> String {
    cell.trim()
        .replace('|', "\\|")
        .replace("\r\n", "<br>")
        .replace('\n', "<br>")
}

/// One transcript for reading: the problem, the first attempt, the feedback, the revision (any
/// of the last three may be absent), and whether each attempt was correct.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Transcript {
    /// The heading of the transcript.
    pub title: String,
    /// The problem statement.
    pub problem: String,
    /// The attempts, in order.
    pub attempts: Vec<TranscriptTurn>,
}

/// One attempt in a transcript.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TranscriptTurn {
    /// The model's response.
    pub response: String,
    /// Whether the verifier accepted the response.
    pub correct: bool,
    /// The feedback given on this response, if any.
    pub feedback: Option<String>,
}

impl Transcript {
    /// Markdown: a `####` heading with the title, the problem in a fenced `text` block, then for
    /// each attempt `**Attempt k** (correct|wrong)` and its response in a fenced block, followed
    /// by `**Feedback**` and a fenced block when feedback is present. Each fence is longer than
    /// any backtick run in its content, so the content cannot break out.
    pub fn to_markdown(&self) -> String {
        let mut out = format!("#### {}\n\n", self.title.replace(['\r', '\n'], " ").trim());
        out.push_str(&fenced(&self.problem));
        for (k, turn) in self.attempts.iter().enumerate() {
            let verdict = if turn.correct { "correct" } else { "wrong" };
            out.push_str(&format!("**Attempt {}** ({verdict})\n\n", k + 1));
            out.push_str(&fenced(&turn.response));
            if let Some(feedback) = &turn.feedback {
                out.push_str("**Feedback**\n\n");
                out.push_str(&fenced(feedback));
            }
        }
        out
    }
}

/// `text` in a fenced `text` block whose fence outnumbers every backtick run inside.
fn fenced(text: &str) -> String {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest.max(2) + 1);
    let newline = if text.is_empty() || text.ends_with('\n') {
        ""
    } else {
        "\n"
    };
    format!("{fence}text\n{text}{newline}{fence}\n\n")
}

/// Formats a float for tables: three decimals (`0.123456` → `"0.123"`), exact integers with
/// `|x| >= 1` without decimals (`"1200"`), small non-zero values (`|x| < 0.001`) in scientific
/// notation (`"3.00e-4"`), NaN as `"–"` and infinities as `"inf"` / `"-inf"`.
pub fn format_value(x: f64) -> String {
    if x.is_nan() {
        "–".to_owned()
    } else if x.is_infinite() {
        (if x > 0.0 { "inf" } else { "-inf" }).to_owned()
    } else if x.fract() == 0.0 && x.abs() >= 1.0 {
        format!("{x:.0}")
    } else if x != 0.0 && x.abs() < 1e-3 {
        format!("{x:.2e}")
    } else {
        format!("{:.3}", x + 0.0)
    }
}

/// `"0.412 ± 0.031"`: both parts formatted by [`format_value`]; a NaN standard error (e.g. a
/// single seed) shows the mean alone.
pub fn format_mean_stderr(mean: f64, stderr: f64) -> String {
    if stderr.is_nan() {
        format_value(mean)
    } else {
        format!("{} ± {}", format_value(mean), format_value(stderr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(cells: &[&str]) -> Vec<String> {
        cells.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn table_aligns_numbers_and_escapes_pipes() {
        let table = Table {
            header: strings(&["method", "accuracy", "steps", "note"]),
            rows: vec![
                strings(&["grpo", "0.412 ± 0.031", "1200", "a|b"]),
                strings(&["redraft", "–", "-3.00e-4", "2"]),
                strings(&["short"]),
            ],
        };
        let expected = "| method | accuracy | steps | note |\n\
                        | --- | ---: | ---: | --- |\n\
                        | grpo | 0.412 ± 0.031 | 1200 | a\\|b |\n\
                        | redraft | – | -3.00e-4 | 2 |\n\
                        | short |  |  |  |\n";
        assert_eq!(table.to_markdown(), expected);
        assert_eq!(Table::default().to_markdown(), "");
        let words = Table {
            header: strings(&["x"]),
            rows: vec![strings(&["nan"]), strings(&["line\nbreak"])],
        };
        assert_eq!(
            words.to_markdown(),
            "| x |\n| --- |\n| nan |\n| line<br>break |\n"
        );
    }

    #[test]
    fn transcript_fences_outnumber_embedded_backticks() {
        let transcript = Transcript {
            title: "Problem 7".into(),
            problem: "Compute 2+2.".into(),
            attempts: vec![
                TranscriptTurn {
                    response: "```\n5\n````".into(),
                    correct: false,
                    feedback: Some("Check `2+2`.\n".into()),
                },
                TranscriptTurn {
                    response: "4".into(),
                    correct: true,
                    feedback: None,
                },
            ],
        };
        let md = transcript.to_markdown();
        assert!(md.starts_with("#### Problem 7\n\n```text\nCompute 2+2.\n```\n\n"));
        assert!(md.contains("**Attempt 1** (wrong)\n\n`````text\n```\n5\n````\n`````\n\n"));
        assert!(md.contains("**Feedback**\n\n```text\nCheck `2+2`.\n```\n\n"));
        assert!(md.ends_with("**Attempt 2** (correct)\n\n```text\n4\n```\n\n"));
    }

    #[test]
    fn formats_values() {
        assert_eq!(format_value(0.123456), "0.123");
        assert_eq!(format_value(1200.0), "1200");
        assert_eq!(format_value(-3.0), "-3");
        assert_eq!(format_value(12.5), "12.500");
        assert_eq!(format_value(0.0), "0.000");
        assert_eq!(format_value(-0.0), "0.000");
        assert_eq!(format_value(0.0003), "3.00e-4");
        assert_eq!(format_value(f64::NAN), "–");
        assert_eq!(format_value(f64::NEG_INFINITY), "-inf");
        assert_eq!(format_mean_stderr(0.41234, 0.0312), "0.412 ± 0.031");
        assert_eq!(format_mean_stderr(0.5, f64::NAN), "0.500");
    }
}
