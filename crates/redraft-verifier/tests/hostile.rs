//! Hostile inputs end as "timed out" / "too large" verdicts, quickly, without panics or stack
//! overflows. The time bound is a hang guard, far above the milliseconds these take.

use std::time::{Duration, Instant};

use redraft_verifier::math::{MathOptions, check_math};
use redraft_verifier::{DiagnosisKind, Verdict};

fn timed(gold: &str, pred: &str) -> Verdict {
    let start = Instant::now();
    let v = check_math(gold, pred, &MathOptions::default());
    let head: String = pred.chars().take(30).collect();
    println!(
        "{:?} for {head:?}... ({} bytes): {:?}",
        start.elapsed(),
        pred.len(),
        v.diagnosis.kind
    );
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "took {:?}",
        start.elapsed()
    );
    v
}

fn limited(v: &Verdict) -> bool {
    matches!(
        v.diagnosis.kind,
        DiagnosisKind::TimedOut | DiagnosisKind::TooLarge
    )
}

#[test]
fn power_towers() {
    for e in [
        "2^2^2^2^2^2^2",
        "9^{9^{9^{9}}}",
        "10^{10^{10}}",
        "(10^{10^{10}})!",
        "2000!!",
    ] {
        let v = timed("4", &format!("\\boxed{{{e}}}"));
        assert!(limited(&v), "{e}: {v:?}");
        assert!(!v.correct);
    }
}

#[test]
fn huge_answers() {
    let big = format!("\\boxed{{{}}}", "1+".repeat(50_000) + "1");
    assert_eq!(timed("2", &big).diagnosis.kind, DiagnosisKind::TooLarge);
    let huge = "9".repeat(2_000_000);
    assert_eq!(timed("2", &huge).diagnosis.kind, DiagnosisKind::TooLarge);
}

#[test]
fn deep_nesting() {
    for pred in [
        format!("\\boxed{{{}1{}}}", "(".repeat(1500), ")".repeat(1500)),
        format!("\\boxed{{{}}}", "(".repeat(100_000)),
        format!("\\boxed{{{}1{}}}", "\\sqrt{".repeat(1000), "}".repeat(1000)),
        "$".repeat(100_000),
        "\\boxed{".repeat(20_000),
        "\\(".repeat(50_000),
    ] {
        let v = timed("1", &pred);
        assert!(!v.correct || pred.starts_with("\\boxed{((("), "{v:?}");
    }
}

#[test]
fn a_long_reasoning_with_a_final_answer_still_verifies() {
    let pred = format!(
        "{} so the answer is \\boxed{{42}}",
        "Let me think. ".repeat(20_000)
    );
    assert!(timed("42", &pred).correct);
}
