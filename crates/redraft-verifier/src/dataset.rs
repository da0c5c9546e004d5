//! Datasets: math problems from JSONL and Parquet files with HF-style columns, streamed, plus
//! deterministic train/test splits.
//!
//! Columns are found by name: the problem in `problem` / `question` / `prompt`, the gold answer in
//! `answer` / `ground_truth` / `final_answer` / `solution` (a worked solution works too: its final
//! answer is extracted when verifying), an optional worked solution in `solution`, an optional id
//! in `id` / `unique_id`. [`ColumnMap`] overrides any of them. A JSONL line exported by
//! reasoning-gym (`metadata.source_dataset` naming a dataset of [`crate::reasoning_gym`], or any
//! line with [`LoadOptions::reasoning_gym`]) becomes a problem scored by reasoning-gym's rules
//! ([`Record::into_problem`]). A malformed line or row is reported
//! with its file and line (or row) number; [`OnError`] says whether to stop or to skip it.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::reasoning_gym::{ReasoningGymProblem, RgDataset};
use crate::tasks::{MathProblem, Problem, splitmix};

/// What to do with a malformed line or row.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Stop with the error.
    #[default]
    Stop,
    /// Log it (through `tracing`), remember it, and go on.
    Skip,
}

/// Column names to use instead of the defaults; `None` means "look for the usual names".
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ColumnMap {
    /// The problem column.
    pub problem: Option<String>,
    /// The gold answer column.
    pub answer: Option<String>,
    /// The worked-solution column.
    pub solution: Option<String>,
    /// The id column.
    pub id: Option<String>,
}

const PROBLEM_COLUMNS: [&str; 3] = ["problem", "question", "prompt"];
const ANSWER_COLUMNS: [&str; 4] = ["answer", "ground_truth", "final_answer", "solution"];
const SOLUTION_COLUMNS: [&str; 1] = ["solution"];
const ID_COLUMNS: [&str; 2] = ["id", "unique_id"];

/// Options for loading a dataset.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoadOptions {
    /// Column overrides.
    pub columns: ColumnMap,
    /// Stop or skip on malformed records.
    pub on_error: OnError,
    /// Score every JSONL line as this reasoning-gym dataset (else a line is a reasoning-gym
    /// problem when its `metadata.source_dataset` names a supported one).
    pub reasoning_gym: Option<RgDataset>,
}

/// One problem of a dataset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The id column, else `<file name>:<line or row number>`.
    pub id: String,
    /// The problem and its gold answer.
    pub problem: MathProblem,
    /// The line as a reasoning-gym problem, scored by reasoning-gym's rules (JSONL lines whose
    /// `metadata.source_dataset` names a supported dataset, or every line with
    /// [`LoadOptions::reasoning_gym`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_gym: Option<ReasoningGymProblem>,
}

impl Record {
    /// The problem to train or evaluate on: the reasoning-gym problem when there is one, else a
    /// math problem.
    pub fn into_problem(self) -> Problem {
        match self.reasoning_gym {
            Some(rg) => Problem::ReasoningGym(rg),
            None => Problem::Math(self.problem),
        }
    }
}

fn pick<'a>(
    get: &dyn Fn(&str) -> Option<String>,
    mapped: &Option<String>,
    defaults: &[&'a str],
) -> Option<String> {
    match mapped {
        Some(name) => get(name),
        None => defaults.iter().find_map(|n| get(n)),
    }
}

fn scalar_string(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        serde_json::Value::Array(a) if a.len() == 1 => scalar_string(&a[0]),
        _ => None,
    }
}

/// Builds a record from a column getter; `where_` names the line or row for errors.
fn record(
    get: &dyn Fn(&str) -> Option<String>,
    columns: &ColumnMap,
    default_id: String,
) -> std::result::Result<Record, String> {
    let problem = pick(get, &columns.problem, &PROBLEM_COLUMNS).ok_or_else(|| {
        format!(
            "no problem column (looked for {})",
            columns
                .problem
                .as_deref()
                .map_or(PROBLEM_COLUMNS.join("/"), str::to_string)
        )
    })?;
    let answer = pick(get, &columns.answer, &ANSWER_COLUMNS).ok_or_else(|| {
        format!(
            "no answer column (looked for {})",
            columns
                .answer
                .as_deref()
                .map_or(ANSWER_COLUMNS.join("/"), str::to_string)
        )
    })?;
    let solution = pick(get, &columns.solution, &SOLUTION_COLUMNS).filter(|s| *s != answer);
    let id = pick(get, &columns.id, &ID_COLUMNS).unwrap_or(default_id);
    Ok(Record {
        id,
        problem: MathProblem {
            problem,
            answer,
            solution,
        },
        reasoning_gym: None,
    })
}

/// Streams the records of a JSONL file (one JSON object per line; blank lines are skipped).
pub struct JsonlRecords<R> {
    reader: R,
    file: PathBuf,
    line: usize,
    options: LoadOptions,
    /// Malformed lines skipped so far (with [`OnError::Skip`]).
    pub skipped: Vec<Error>,
    done: bool,
}

impl<R: BufRead> JsonlRecords<R> {
    /// Reads records from `reader`; `file` names it in errors.
    pub fn new(reader: R, file: impl Into<PathBuf>, options: LoadOptions) -> Self {
        Self {
            reader,
            file: file.into(),
            line: 0,
            options,
            skipped: Vec::new(),
            done: false,
        }
    }
}

impl<R: BufRead> Iterator for JsonlRecords<R> {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Result<Record>> {
        let mut buf = String::new();
        while !self.done {
            buf.clear();
            self.line += 1;
            match self.reader.read_line(&mut buf) {
                Ok(0) => {
                    self.done = true;
                    return None;
                }
                Ok(_) => {}
                Err(source) => {
                    self.done = true;
                    return Some(Err(Error::Io {
                        file: self.file.clone(),
                        source,
                    }));
                }
            }
            if buf.trim().is_empty() {
                continue;
            }
            let name = self
                .file
                .file_name()
                .map_or_else(|| "-".into(), |n| n.to_string_lossy().into_owned());
            let parsed = serde_json::from_str::<serde_json::Value>(&buf)
                .map_err(|e| e.to_string())
                .and_then(|v| {
                    let get = |k: &str| v.get(k).and_then(scalar_string);
                    let mut r =
                        record(&get, &self.options.columns, format!("{name}:{}", self.line))?;
                    r.reasoning_gym =
                        ReasoningGymProblem::from_line(&v, self.options.reasoning_gym)
                            .map_err(|e| e.to_string())?;
                    Ok(r)
                });
            match parsed {
                Ok(r) => return Some(Ok(r)),
                Err(message) => {
                    let err = Error::MalformedLine {
                        file: self.file.clone(),
                        line: self.line,
                        message,
                    };
                    match self.options.on_error {
                        OnError::Stop => {
                            self.done = true;
                            return Some(Err(err));
                        }
                        OnError::Skip => {
                            tracing::warn!("skipping {err}");
                            self.skipped.push(err);
                        }
                    }
                }
            }
        }
        None
    }
}

/// Opens a JSONL file as a stream of records.
pub fn read_jsonl(path: &Path, options: &LoadOptions) -> Result<JsonlRecords<BufReader<File>>> {
    let f = File::open(path).map_err(|source| Error::Io {
        file: path.to_path_buf(),
        source,
    })?;
    Ok(JsonlRecords::new(BufReader::new(f), path, options.clone()))
}

/// Streams the records of a Parquet file row by row (string, integer, float and boolean columns;
/// snappy compression supported). Rows are numbered from 1 in errors.
pub struct ParquetRecords {
    rows: parquet::record::reader::RowIter<'static>,
    file: PathBuf,
    name: String,
    row: usize,
    options: LoadOptions,
    /// Malformed rows skipped so far (with [`OnError::Skip`]).
    pub skipped: Vec<Error>,
    done: bool,
}

impl Iterator for ParquetRecords {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Result<Record>> {
        use parquet::record::Field;

        while !self.done {
            let row = match self.rows.next() {
                None => {
                    self.done = true;
                    return None;
                }
                Some(Err(e)) => {
                    self.done = true;
                    return Some(Err(Error::Parquet {
                        file: self.file.clone(),
                        message: format!("row {}: {e}", self.row + 1),
                    }));
                }
                Some(Ok(r)) => r,
            };
            self.row += 1;
            let get = |k: &str| {
                row.get_column_iter()
                    .find(|(n, _)| n.as_str() == k)
                    .and_then(|(_, f)| match f {
                        Field::Str(s) => Some(s.clone()),
                        Field::Int(v) => Some(v.to_string()),
                        Field::Long(v) => Some(v.to_string()),
                        Field::Double(v) => Some(v.to_string()),
                        Field::Float(v) => Some(v.to_string()),
                        Field::Bool(v) => Some(v.to_string()),
                        _ => None,
                    })
            };
            match record(
                &get,
                &self.options.columns,
                format!("{}:{}", self.name, self.row),
            ) {
                Ok(r) => return Some(Ok(r)),
                Err(message) => {
                    let err = Error::MalformedLine {
                        file: self.file.clone(),
                        line: self.row,
                        message,
                    };
                    match self.options.on_error {
                        OnError::Stop => {
                            self.done = true;
                            return Some(Err(err));
                        }
                        OnError::Skip => {
                            tracing::warn!("skipping {err}");
                            self.skipped.push(err);
                        }
                    }
                }
            }
        }
        None
    }
}

/// Opens a Parquet file as a stream of records.
pub fn read_parquet(path: &Path, options: &LoadOptions) -> Result<ParquetRecords> {
    use parquet::file::reader::SerializedFileReader;

    if let Some(d) = options.reasoning_gym {
        return Err(Error::InvalidOption(format!(
            "{}: reasoning-gym problems ({d}) are read from JSONL exports, not Parquet",
            path.display()
        )));
    }
    let f = File::open(path).map_err(|source| Error::Io {
        file: path.to_path_buf(),
        source,
    })?;
    let reader = SerializedFileReader::new(f).map_err(|e| Error::Parquet {
        file: path.to_path_buf(),
        message: e.to_string(),
    })?;
    Ok(ParquetRecords {
        rows: parquet::record::reader::RowIter::from_file_into(Box::new(reader)),
        file: path.to_path_buf(),
        name: path
            .file_name()
            .map_or_else(|| "-".into(), |n| n.to_string_lossy().into_owned()),
        row: 0,
        options: options.clone(),
        skipped: Vec::new(),
        done: false,
    })
}

/// Loads a `.jsonl` / `.json` or `.parquet` file (by extension). Returns the records and the
/// malformed lines skipped.
pub fn load(path: &Path, options: &LoadOptions) -> Result<(Vec<Record>, Vec<Error>)> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    if ext == "parquet" {
        let mut it = read_parquet(path, options)?;
        let mut out = Vec::new();
        for r in it.by_ref() {
            out.push(r?);
        }
        return Ok((out, it.skipped));
    }
    let mut it = read_jsonl(path, options)?;
    let mut out = Vec::new();
    for r in it.by_ref() {
        out.push(r?);
    }
    Ok((out, it.skipped))
}

/// Which side of a train/test split a problem falls on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    /// Training set.
    Train,
    /// Test set.
    Test,
}

/// The split of a problem, from a hash of its text and `seed`: deterministic, and identical
/// problems (duplicates) always land on the same side, so the splits are disjoint in content.
pub fn split_of(problem_text: &str, seed: u64, test_fraction: f64) -> Split {
    let mut h = splitmix(seed);
    for chunk in problem_text.trim().as_bytes().chunks(8) {
        let mut w = [0u8; 8];
        w[..chunk.len()].copy_from_slice(chunk);
        h = splitmix(h ^ u64::from_le_bytes(w));
    }
    let u = (h >> 11) as f64 / (1u64 << 53) as f64;
    if u < test_fraction {
        Split::Test
    } else {
        Split::Train
    }
}

/// Splits records into (train, test) with [`split_of`].
pub fn train_test_split(
    records: Vec<Record>,
    seed: u64,
    test_fraction: f64,
) -> (Vec<Record>, Vec<Record>) {
    records
        .into_iter()
        .partition(|r| split_of(&r.problem.problem, seed, test_fraction) == Split::Train)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn jsonl_with_hf_columns_and_errors() {
        let text = "{\"question\": \"1+1?\", \"ground_truth\": 2}\nnot json\n\n{\"prompt\": \"p\"}\n{\"problem\": \"q\", \"answer\": \"3\"}\n";
        let opts = LoadOptions {
            on_error: OnError::Skip,
            ..Default::default()
        };
        let mut it = JsonlRecords::new(Cursor::new(text), "data.jsonl", opts);
        let recs: Vec<Record> = it.by_ref().map(|r| r.unwrap()).collect();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].problem.answer, "2");
        assert_eq!(recs[0].id, "data.jsonl:1");
        assert_eq!(it.skipped.len(), 2);
        assert!(
            it.skipped[0].to_string().starts_with("data.jsonl:2:"),
            "{}",
            it.skipped[0]
        );
        assert!(it.skipped[1].to_string().starts_with("data.jsonl:4:"));

        let mut stop = JsonlRecords::new(Cursor::new(text), "data.jsonl", LoadOptions::default());
        assert!(stop.next().unwrap().is_ok());
        assert!(stop.next().unwrap().is_err());
        assert!(stop.next().is_none());
    }

    #[test]
    fn column_mapping() {
        let text = "{\"q\": \"x\", \"a\": \"1\"}\n";
        let columns = ColumnMap {
            problem: Some("q".into()),
            answer: Some("a".into()),
            ..Default::default()
        };
        let recs: Vec<Record> = JsonlRecords::new(
            Cursor::new(text),
            "f",
            LoadOptions {
                columns,
                ..Default::default()
            },
        )
        .map(|r| r.unwrap())
        .collect();
        assert_eq!(recs[0].problem.problem, "x");
    }

    #[test]
    fn splits_are_deterministic_and_disjoint() {
        let texts: Vec<String> = (0..1000).map(|i| format!("problem {i}")).collect();
        let a: Vec<Split> = texts.iter().map(|t| split_of(t, 7, 0.2)).collect();
        let b: Vec<Split> = texts.iter().map(|t| split_of(t, 7, 0.2)).collect();
        assert_eq!(a, b);
        let test = a.iter().filter(|s| **s == Split::Test).count();
        assert!((150..250).contains(&test), "{test}");
    }
}
