//! The crate's one error type. Wrong answers are never errors: they are [`crate::Verdict`]s.

use std::path::PathBuf;

/// Everything that can fail outside a verdict: reading files, malformed input lines, bad options.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O failure while reading or writing `file` (`-` for standard streams).
    #[error("{file}: {source}")]
    Io {
        /// The file being read or written.
        file: PathBuf,
        /// The underlying failure.
        #[source]
        source: std::io::Error,
    },
    /// A line of a JSONL input that is not valid JSON or lacks required fields.
    #[error("{file}:{line}: {message}")]
    MalformedLine {
        /// The file holding the line (`-` for standard input).
        file: PathBuf,
        /// One-based line number.
        line: usize,
        /// What is wrong with the line.
        message: String,
    },
    /// A Parquet file that cannot be read.
    #[error("{file}: parquet: {message}")]
    Parquet {
        /// The Parquet file.
        file: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// An option or configuration value that is not valid.
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// A problem the task does not define (a statement about a person who does not exist, a
    /// matrix with no 0, ...): refused when read or constructed, never judged.
    #[error("invalid {task} problem: {message}")]
    InvalidProblem {
        /// The problem's family.
        task: crate::tasks::TaskFamily,
        /// What is wrong, and where.
        message: String,
    },
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
