//! The end-of-run report of a training run or of a multi-method comparison: a `report.md`
//! (sections, tables, transcripts, links to plots) plus standalone SVG line plots, written
//! with std only, without any plotting library.

pub mod markdown;
pub mod svg;

pub use markdown::{Table, Transcript, TranscriptTurn, format_mean_stderr, format_value};
pub use svg::{LinePlot, Series};

use std::io;
use std::path::{Path, PathBuf};

/// The name of the markdown file [`Report::write`] writes.
const REPORT_FILE: &str = "report.md";

/// A report.md under construction.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Markdown blocks, joined by blank lines.
    blocks: Vec<String>,
    /// `(file_name, plot)` of every plot, in the order added.
    plots: Vec<(String, LinePlot)>,
}

impl Report {
    /// A report with a `# title` heading.
    pub fn new(title: &str) -> Self {
        Self {
            blocks: vec![format!("# {}", one_line(title))],
            plots: Vec::new(),
        }
    }

    /// Adds a `## heading` section with free markdown text.
    pub fn section(&mut self, heading: &str, markdown: &str) -> &mut Self {
        self.blocks.push(format!(
            "## {}\n\n{}",
            one_line(heading),
            markdown.trim_end()
        ));
        self
    }

    /// Adds a table under a `## heading`.
    pub fn table(&mut self, heading: &str, table: &Table) -> &mut Self {
        self.section(heading, &table.to_markdown())
    }

    /// Adds a plot: remembers `(file_name, plot)` and links it in the document as
    /// `![title](file_name)`. `file_name` must be a plain file name (checked by [`Report::write`]).
    pub fn plot(&mut self, file_name: &str, plot: LinePlot) -> &mut Self {
        let alt = one_line(&plot.title)
            .replace('[', "\\[")
            .replace(']', "\\]");
        let target = if file_name.contains(|c: char| c.is_whitespace() || "()<>".contains(c)) {
            format!("<{file_name}>")
        } else {
            file_name.to_owned()
        };
        self.blocks.push(format!("![{alt}]({target})"));
        self.plots.push((file_name.to_owned(), plot));
        self
    }

    /// Adds transcripts under a `## heading`.
    pub fn transcripts(&mut self, heading: &str, items: &[Transcript]) -> &mut Self {
        let body: String = items.iter().map(Transcript::to_markdown).collect();
        self.section(heading, &body)
    }

    /// The markdown text.
    pub fn to_markdown(&self) -> String {
        let mut out = self.blocks.join("\n\n");
        out.push('\n');
        out
    }

    /// Writes report.md and every plot's SVG into `dir` (created if missing), each file
    /// atomically (write to a temp file in the same directory, then rename), returning the
    /// paths written: the plots in the order added, then report.md. A plot file name that is
    /// not a plain file name, is `report.md` or is used twice is an `InvalidInput` error, and
    /// then nothing is written.
    pub fn write(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        for (i, (name, _)) in self.plots.iter().enumerate() {
            let plain = Path::new(name)
                .file_name()
                .is_some_and(|n| n == name.as_str());
            if !plain || name == REPORT_FILE || self.plots[..i].iter().any(|(n, _)| n == name) {
                let message = format!("plot file name {name:?} is not a plain, unique file name");
                return Err(io::Error::new(io::ErrorKind::InvalidInput, message));
            }
        }
        std::fs::create_dir_all(dir)?;
        let mut written = Vec::with_capacity(self.plots.len() + 1);
        for (name, plot) in &self.plots {
            written.push(write_atomic(&dir.join(name), &plot.to_svg())?);
        }
        written.push(write_atomic(&dir.join(REPORT_FILE), &self.to_markdown())?);
        Ok(written)
    }
}

/// Headings and alt texts must stay on one line.
fn one_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ").trim().to_owned()
}

/// Writes `contents` atomically through [`redraft_model::write_atomic`] (temporary file,
/// fsync, rename, fsync of the folder).
fn write_atomic(path: &Path, contents: &str) -> io::Result<PathBuf> {
    match redraft_model::write_atomic(path, contents.as_bytes()) {
        Ok(()) => Ok(path.to_owned()),
        Err(redraft_model::Error::Io { source, .. }) => Err(source),
        Err(other) => Err(io::Error::other(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        let plot = LinePlot {
            title: "Accuracy [eval]".into(),
            x_label: "step".into(),
            y_label: "accuracy".into(),
            series: vec![Series {
                label: "grpo".into(),
                points: vec![(0.0, 0.1), (10.0, 0.4)],
            }],
        };
        let table = Table {
            header: vec!["method".into()],
            rows: vec![vec!["grpo".into()]],
        };
        let transcript = Transcript {
            title: "P1".into(),
            problem: "1+1".into(),
            attempts: vec![],
        };
        let mut report = Report::new("Run\nsummary");
        report
            .section("Config", "lr = 1e-5\n\n")
            .table("Results", &table)
            .plot("accuracy.svg", plot)
            .transcripts("Transcripts", &[transcript]);
        report
    }

    #[test]
    fn builds_the_document() {
        let expected = "# Run summary\n\n## Config\n\nlr = 1e-5\n\n## Results\n\n| method |\n| --- |\n| grpo |\n\n\
                        ![Accuracy \\[eval\\]](accuracy.svg)\n\n## Transcripts\n\n#### P1\n\n```text\n1+1\n```\n";
        assert_eq!(sample().to_markdown(), expected);
    }

    #[test]
    fn writes_files_atomically_and_rejects_bad_names() {
        let dir = std::env::temp_dir().join(format!("redraft-report-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let written = sample().write(&dir.join("nested")).unwrap();
        let names: Vec<String> = std::fs::read_dir(dir.join("nested"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            written,
            [
                dir.join("nested/accuracy.svg"),
                dir.join("nested/report.md")
            ]
        );
        assert_eq!(names.len(), 2, "leftover files: {names:?}");
        assert_eq!(
            std::fs::read_to_string(&written[1]).unwrap(),
            sample().to_markdown()
        );
        assert!(
            std::fs::read_to_string(&written[0])
                .unwrap()
                .starts_with("<svg")
        );

        for bad in ["../x.svg", "report.md", "accuracy.svg", ""] {
            let mut report = sample();
            report.plot(bad, report.plots[0].1.clone());
            let err = report.write(&dir.join("bad")).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        }
        assert!(!dir.join("bad").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
