//! Conformance with the Math-Verify test suite: 255 (gold, prediction, expected) cases.
//!
//! Prints the agreement and every disagreement; fails under 95%.

use std::path::PathBuf;

use redraft_verifier::math::{MathOptions, check_math};

#[derive(serde::Deserialize)]
struct Case {
    gold: String,
    pred: String,
    expected: bool,
    category: String,
}

fn cases() -> Vec<Case> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/conformance/math_answer_equivalence.jsonl");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("valid case"))
        .collect()
}

#[test]
fn math_verify_agreement_is_at_least_95_percent() {
    let cases = cases();
    assert_eq!(cases.len(), 255);
    let options = MathOptions::default();
    let mut agree = 0;
    for (i, c) in cases.iter().enumerate() {
        let v = check_math(&c.gold, &c.pred, &options);
        if v.correct == c.expected {
            agree += 1;
        } else {
            let short = |s: &str| s.chars().take(160).collect::<String>().replace('\n', "\\n");
            println!(
                "DISAGREE #{i} [{}] expected {} got {} ({:?}): gold={:?} pred={:?}",
                c.category,
                c.expected,
                v.correct,
                v.diagnosis,
                short(&c.gold),
                short(&c.pred)
            );
        }
    }
    let rate = agree as f64 / cases.len() as f64;
    println!(
        "math-verify agreement: {agree}/{} = {:.1}%",
        cases.len(),
        100.0 * rate
    );
    assert!(rate >= 0.95, "agreement {:.1}% is under 95%", 100.0 * rate);
}
