//! Throughput benchmark core: verdicts per second on the conformance set.
//!
//! `cargo xtask bench verifier` calls [`conformance_throughput`] and runs
//! `crates/redraft-verifier/bench/math_verify_bench.py` on the same file to compare with
//! Math-Verify (Python) in the same run.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::math::{MathOptions, check_math};

/// One conformance case: does `pred` match `gold`?
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConformanceCase {
    /// The gold answer.
    pub gold: String,
    /// The prediction.
    pub pred: String,
    /// Whether they should be judged equivalent.
    pub expected: bool,
}

/// Benchmark results.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ThroughputStats {
    /// Cases in the set.
    pub cases: usize,
    /// Full passes over the set.
    pub passes: usize,
    /// Verdicts computed.
    pub verdicts: usize,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Verdicts per second.
    pub verdicts_per_second: f64,
    /// Fraction of cases where the verdict agrees with `expected`.
    pub agreement: f64,
}

/// Reads a conformance JSONL file (`{"gold", "pred", "expected", ...}` per line).
pub fn load_conformance(path: &Path) -> Result<Vec<ConformanceCase>> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        file: path.to_path_buf(),
        source,
    })?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| Error::MalformedLine {
                file: path.to_path_buf(),
                line: i + 1,
                message: e.to_string(),
            })
        })
        .collect()
}

/// Verifies every case repeatedly for at least `min_time` (at least one pass) and reports the
/// throughput, single-threaded, with default limits.
pub fn conformance_throughput(cases: &[ConformanceCase], min_time: Duration) -> ThroughputStats {
    let options = MathOptions::default();
    let start = Instant::now();
    let mut passes = 0;
    let mut agree = 0;
    loop {
        for c in cases {
            let v = check_math(&c.gold, &c.pred, &options);
            if passes == 0 && v.correct == c.expected {
                agree += 1;
            }
        }
        passes += 1;
        if start.elapsed() >= min_time || cases.is_empty() {
            break;
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let verdicts = passes * cases.len();
    ThroughputStats {
        cases: cases.len(),
        passes,
        verdicts,
        seconds,
        verdicts_per_second: if seconds > 0.0 {
            verdicts as f64 / seconds
        } else {
            0.0
        },
        agreement: if cases.is_empty() {
            0.0
        } else {
            agree as f64 / cases.len() as f64
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures() {
        let cases = vec![ConformanceCase {
            gold: "1/2".into(),
            pred: "0.5".into(),
            expected: true,
        }];
        let s = conformance_throughput(&cases, Duration::from_millis(1));
        assert!(s.passes >= 1 && s.verdicts >= 1);
        assert_eq!(s.agreement, 1.0);
    }
}
