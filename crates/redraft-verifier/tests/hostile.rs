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

// --- Task problems and responses (hardening items 7 and 8) ---

use redraft_verifier::Problem;
use redraft_verifier::tasks::PromptStyle;
use redraft_verifier::tasks::answer::AnswerFormat;
use redraft_verifier::tasks::arithmetic::{ArithmeticProblem, Op};
use redraft_verifier::tasks::knights_knaves::{KnightsKnavesProblem, Statement};

fn knights_knaves(names: &[&str]) -> KnightsKnavesProblem {
    KnightsKnavesProblem {
        names: names.iter().map(|n| n.to_string()).collect(),
        statements: (0..names.len())
            .map(|i| Statement::Is {
                person: i,
                knight: true,
            })
            .collect(),
        knights: vec![true; names.len()],
        format: AnswerFormat::Tag,
        prompt_style: PromptStyle::Chat,
    }
}

#[test]
fn knights_knaves_names_overlapping_at_a_word_boundary_do_not_panic() {
    let p = knights_knaves(&["Mary Ann", "Ann"]);
    let v = p.verify("<answer>Mary Ann is a knight, Ann is a knight</answer>");
    assert!(v.correct, "{v:?}");
    let v = p.verify("<answer>Mary Ann is a knight, Ann is a knave</answer>");
    assert!(!v.correct, "{v:?}");
    assert_eq!(v.diagnosis.first_error.map(|e| e.step), Some(1));
    // Repeated names are an invalid problem, but verifying one still must not panic.
    let p = knights_knaves(&["Ann", "Ann"]);
    let v = p.verify("<answer>Ann is a knight, Ann is a knave</answer>");
    assert!((0.0..=1.0).contains(&v.reward));
}

#[test]
fn arithmetic_operands_near_two_to_the_64_are_exact() {
    for (a, b, op, want) in [
        (
            u64::MAX,
            u64::MAX,
            Op::Mul,
            "340282366920938463426481119284349108225",
        ),
        (u64::MAX, u64::MAX, Op::Add, "36893488147419103230"),
        (u64::MAX, 1, Op::Sub, "18446744073709551614"),
    ] {
        let p = ArithmeticProblem {
            a,
            b,
            op,
            format: AnswerFormat::Tag,
            prompt_style: PromptStyle::Chat,
        };
        let v = p.verify(&format!("<answer>{want}</answer>"));
        assert!(v.correct, "{a} {op:?} {b}: {v:?}");
        assert!(p.verify(&p.solution()).correct, "{a} {op:?} {b}");
    }
}

fn read_problem(json: serde_json::Value) -> Result<Problem, String> {
    serde_json::from_value::<Problem>(json).map_err(|e| e.to_string())
}

#[test]
fn invalid_problems_are_refused_when_read() {
    for (json, names) in [
        (
            serde_json::json!({"task": "knights_knaves", "problem": {"names": ["A", "B"],
                "statements": [{"is": {"person": 5, "knight": true}}, {"is": {"person": 0, "knight": true}}],
                "knights": [true, true]}}),
            "person 5",
        ),
        (
            serde_json::json!({"task": "knights_knaves", "problem": {"names": ["Ann", "ann"],
                "statements": [{"is": {"person": 0, "knight": true}}, {"is": {"person": 1, "knight": true}}],
                "knights": [true, true]}}),
            "repeated",
        ),
        (
            serde_json::json!({"task": "knights_knaves", "problem": {"names": ["A"],
                "statements": [], "knights": []}}),
            "statements",
        ),
        (
            serde_json::json!({"task": "binary_matrix", "problem": {"matrix": [[1, 1], [1, 1]]}}),
            "no 0",
        ),
        (
            serde_json::json!({"task": "binary_matrix", "problem": {"matrix": [[1, 0], [1]]}}),
            "row 1",
        ),
        (
            serde_json::json!({"task": "binary_matrix", "problem": {"matrix": [[2, 0]]}}),
            "2",
        ),
        (
            serde_json::json!({"task": "shortest_path", "problem": {"grid": ["S.", ".."], "shortest": 2}}),
            "G",
        ),
        (
            serde_json::json!({"task": "shortest_path", "problem": {"grid": ["S#", "#G"], "shortest": 2}}),
            "unreachable",
        ),
        (
            serde_json::json!({"task": "shortest_path", "problem": {"grid": ["S.", ".G"], "shortest": 5}}),
            "shortest",
        ),
        (
            serde_json::json!({"task": "arithmetic", "problem": {"a": 1, "b": 2, "op": "sub"}}),
            "a >= b",
        ),
        (
            serde_json::json!({"task": "countdown", "problem": {"numbers": [], "target": 3, "reference": ""}}),
            "numbers",
        ),
    ] {
        let err = read_problem(json.clone()).expect_err(&json.to_string());
        assert!(err.contains(names), "{json}: {err}");
    }
    // Constructed in code, the same problem is a typed error from `validate`.
    let p = Problem::KnightsKnaves(knights_knaves(&["Ann", "ann"]));
    assert!(matches!(
        p.validate(),
        Err(redraft_verifier::Error::InvalidProblem { .. })
    ));
    let ok = serde_json::json!({"task": "shortest_path", "problem": {"grid": ["S.", ".G"], "shortest": 2}});
    assert!(read_problem(ok).is_ok());
}

#[test]
fn byte_identical_answers_above_the_size_cap_are_equal() {
    let o = MathOptions::default();
    let big = "7".repeat(o.max_response_bytes + 10);
    let v = check_math(&big, &big, &o);
    assert!(v.correct, "{:?}", v.diagnosis.kind);
    let v = check_math(&big, &format!("{big}8"), &o);
    assert!(!v.correct);
}
