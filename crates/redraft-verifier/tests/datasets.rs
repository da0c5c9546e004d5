//! Loading datasets from files: JSONL and snappy-compressed Parquet with HF-style columns.

use std::io::Write;
use std::path::PathBuf;

use redraft_verifier::dataset::{ColumnMap, LoadOptions, OnError, load};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

#[test]
fn parquet_with_snappy_and_a_missing_value() {
    // tests/data/tiny.parquet: columns question, answer, level; row 3 has no question.
    let skip = LoadOptions {
        on_error: OnError::Skip,
        ..Default::default()
    };
    let (records, skipped) = load(&fixture("tiny.parquet"), &skip).unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(records[1].problem.answer, "\\frac{1}{2}");
    assert_eq!(records[0].id, "tiny.parquet:1");
    assert_eq!(skipped.len(), 1);
    assert!(
        skipped[0].to_string().contains("tiny.parquet:3:"),
        "{}",
        skipped[0]
    );
    let err = load(&fixture("tiny.parquet"), &LoadOptions::default()).unwrap_err();
    assert!(err.to_string().contains("tiny.parquet:3:"));

    let mapped = LoadOptions {
        columns: ColumnMap {
            answer: Some("level".into()),
            ..Default::default()
        },
        on_error: OnError::Skip,
        ..Default::default()
    };
    let (records, _) = load(&fixture("tiny.parquet"), &mapped).unwrap();
    assert_eq!(records[0].problem.answer, "1");
}

#[test]
fn jsonl_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.jsonl");
    let mut f = std::fs::File::create(&path).unwrap();
    writeln!(
        f,
        "{{\"problem\": \"p\", \"solution\": \"so \\\\boxed{{3}}\"}}"
    )
    .unwrap();
    drop(f);
    let (records, skipped) = load(&path, &LoadOptions::default()).unwrap();
    assert!(skipped.is_empty());
    assert_eq!(records.len(), 1);
    assert!(redraft_verifier::math_equivalent(
        &records[0].problem.answer,
        "3"
    ));
}
