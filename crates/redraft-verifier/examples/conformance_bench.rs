//! Prints the verifier's throughput on the conformance set as JSON:
//! `cargo run --release -p redraft-verifier --example conformance_bench [CASES.jsonl]`.

use std::path::PathBuf;
use std::time::Duration;

use redraft_verifier::bench::{conformance_throughput, load_conformance};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let default = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/conformance/math_answer_equivalence.jsonl");
    let path = std::env::args().nth(1).map_or(default, PathBuf::from);
    let cases = load_conformance(&path)?;
    let stats = conformance_throughput(&cases, Duration::from_secs(2));
    println!("{}", serde_json::to_string(&stats)?);
    Ok(())
}
