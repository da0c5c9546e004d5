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
    // A name that is also the article of "is a knight".
    let p = knights_knaves(&["A", "Ann"]);
    assert!(p.verify(&p.solution()).correct);
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

// --- Fuzzing: arbitrary problems and arbitrary text through every verifier and parser ---

use proptest::prelude::*;
use redraft_verifier::dataset::{JsonlRecords, LoadOptions, OnError};
use redraft_verifier::jsonl::{VerifyOptions, verify_jsonl};
use redraft_verifier::tasks::binary_matrix::BinaryMatrixProblem;
use redraft_verifier::tasks::countdown::CountdownProblem;
use redraft_verifier::tasks::shortest_path::ShortestPathProblem;
use redraft_verifier::tasks::{MathProblem, TaskFamily};
use redraft_verifier::{DefaultVerifier, Difficulty, Verifier};

/// A check's time limit plus scheduling slack: a check past it is a hang, not a slow check.
fn within_budget<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let limit =
        Duration::from_millis(MathOptions::default().time_limit_ms) + Duration::from_secs(1);
    let start = Instant::now();
    let out = f();
    assert!(start.elapsed() < limit, "{what} took {:?}", start.elapsed());
    out
}

fn statement(people: usize) -> impl Strategy<Value = Statement> {
    let leaf = (0..people + 2, any::<bool>())
        .prop_map(|(person, knight)| Statement::Is { person, knight });
    leaf.prop_recursive(3, 16, 3, |inner| {
        prop_oneof![
            inner.clone().prop_map(|s| Statement::Not(Box::new(s))),
            prop::collection::vec(inner.clone(), 0..3).prop_map(Statement::And),
            prop::collection::vec(inner.clone(), 0..3).prop_map(Statement::Or),
            (inner.clone(), inner.clone())
                .prop_map(|(a, b)| Statement::Implies(Box::new(a), Box::new(b))),
            (inner.clone(), inner).prop_map(|(a, b)| Statement::Iff(Box::new(a), Box::new(b))),
        ]
    })
}

fn format() -> impl Strategy<Value = AnswerFormat> {
    prop_oneof![Just(AnswerFormat::Tag), Just(AnswerFormat::Boxed)]
}

/// Problems of every family with arbitrary fields: most are invalid, some are not.
fn any_problem() -> impl Strategy<Value = Problem> {
    let name = prop::sample::select(vec![
        "Ann", "Mary Ann", "ann", "Mary", "Ann Mary", "A", "", " ", "knight", "Bob-Ann", "é", "Zoë",
    ]);
    prop_oneof![
        (
            any::<u64>(),
            any::<u64>(),
            prop::sample::select(vec![Op::Add, Op::Sub, Op::Mul]),
            format()
        )
            .prop_map(|(a, b, op, format)| Problem::Arithmetic(ArithmeticProblem {
                a,
                b,
                op,
                format,
                prompt_style: PromptStyle::Chat
            })),
        (
            prop::collection::vec(any::<u64>(), 0..6),
            any::<u64>(),
            ".{0,20}",
            format()
        )
            .prop_map(|(numbers, target, reference, format)| Problem::Countdown(
                CountdownProblem {
                    numbers,
                    target,
                    reference,
                    reference_steps: vec![],
                    format,
                    prompt_style: PromptStyle::Chat,
                }
            )),
        (
            prop::collection::vec(name, 0..5),
            prop::collection::vec(statement(4), 0..5),
            prop::collection::vec(any::<bool>(), 0..5),
            any::<bool>(),
            format(),
        )
            .prop_map(|(names, mut statements, mut knights, consistent, format)| {
                if consistent {
                    // Shape the puzzle as the generator does, so that valid ones are common.
                    knights.resize(names.len(), true);
                    statements.resize(
                        names.len(),
                        Statement::Is {
                            person: 0,
                            knight: true,
                        },
                    );
                    statements = statements
                        .into_iter()
                        .zip(&knights)
                        .map(|(s, k)| {
                            if s.eval(&knights) == *k {
                                s
                            } else {
                                Statement::Not(Box::new(s))
                            }
                        })
                        .collect();
                }
                Problem::KnightsKnaves(KnightsKnavesProblem {
                    names: names.into_iter().map(String::from).collect(),
                    statements,
                    knights,
                    format,
                    prompt_style: PromptStyle::Chat,
                })
            }),
        (
            prop::collection::vec("[.#SGé]{0,6}", 0..6),
            0usize..12,
            format()
        )
            .prop_map(|(grid, shortest, format)| Problem::ShortestPath(
                ShortestPathProblem {
                    grid,
                    shortest,
                    format,
                    prompt_style: PromptStyle::Chat
                }
            )),
        (
            prop::collection::vec(prop::collection::vec(0u8..3, 0..5), 0..5),
            format()
        )
            .prop_map(
                |(matrix, format)| Problem::BinaryMatrix(BinaryMatrixProblem {
                    matrix,
                    format,
                    prompt_style: PromptStyle::Chat
                })
            ),
        (".{0,20}", ".{0,20}").prop_map(|(problem, answer)| Problem::Math(MathProblem {
            problem,
            answer,
            solution: None
        })),
    ]
}

/// Responses built from the problem's own words (names, moves, numbers) as well as noise.
fn response() -> impl Strategy<Value = String> {
    let word = prop::sample::select(vec![
        "Ann",
        "Mary Ann",
        "ann",
        "Mary",
        "is a",
        "knight",
        "knave",
        "and",
        ",",
        " ",
        "U",
        "D",
        "L",
        "R",
        "0",
        "1",
        "-",
        "+",
        "*",
        "/",
        "(",
        ")",
        "=",
        ";",
        "\n",
        "<answer>",
        "</answer>",
        "\\boxed{",
        "}",
        "18446744073709551615",
        "é",
    ]);
    prop_oneof![
        any::<String>(),
        prop::collection::vec(word, 0..24).prop_map(|w| w.concat()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn no_problem_or_response_panics_or_hangs(p in any_problem(), r in response(), inner in response()) {
        let valid = p.validate().is_ok();
        for r in [r, format!("<answer>{inner}</answer>"), format!("\\boxed{{{inner}}}")] {
            let v = within_budget("verify", || DefaultVerifier::default().verify(&p, &r));
            prop_assert!((0.0..=1.0).contains(&v.reward), "{v:?}");
        }
        // A problem that reads back is one the task defines: its reference solution verifies.
        let json = serde_json::to_string(&p).unwrap();
        let back = serde_json::from_str::<Problem>(&json);
        prop_assert_eq!(back.is_ok(), valid, "{}", json);
        if valid && !matches!(p, Problem::Countdown(_) | Problem::Math(_)) {
            let _ = (p.prompt(), p.chat());
            let v = within_budget("verify", || p.verify(&p.solution()));
            prop_assert!(v.correct, "{json}: {v:?}");
        }
    }

    #[test]
    fn arbitrary_text_never_panics_any_parser(text in any::<String>(), family in ".{0,12}") {
        let _ = serde_json::from_str::<Problem>(&text);
        let _ = text.parse::<Difficulty>();
        let _ = family.parse::<TaskFamily>();
        let o = MathOptions::default();
        let v = within_budget("check_math", || check_math(&text, &text, &o));
        prop_assert!((0.0..=1.0).contains(&v.reward));
        let opts = VerifyOptions { on_error: OnError::Skip, ..Default::default() };
        within_budget("verify_jsonl", || verify_jsonl(text.as_bytes(), Vec::new(), &opts)).unwrap();
        let options = LoadOptions { on_error: OnError::Skip, ..Default::default() };
        for record in JsonlRecords::new(text.as_bytes(), "fuzz.jsonl", options) {
            let _ = record;
        }
    }

    #[test]
    fn arbitrary_problem_json_is_refused_or_verified(
        task in prop::sample::select(vec!["math", "arithmetic", "countdown", "knights_knaves", "shortest_path", "binary_matrix", "other"]),
        body in any::<String>(),
        n in any::<i64>(),
        r in response(),
    ) {
        for problem in [
            serde_json::Value::String(body.clone()),
            serde_json::json!({"a": n, "b": n, "op": body, "numbers": [n], "target": n, "reference": body,
                "names": [body], "statements": [{"is": {"person": n, "knight": true}}], "knights": [true],
                "grid": [body], "shortest": n, "matrix": [[n]], "problem": body, "answer": body}),
        ] {
            let line = serde_json::json!({"task": task, "problem": problem, "response": r});
            let opts = VerifyOptions { on_error: OnError::Skip, ..Default::default() };
            let s = within_budget("verify_jsonl", || verify_jsonl(format!("{line}\n").as_bytes(), Vec::new(), &opts)).unwrap();
            prop_assert_eq!(s.verified + s.malformed, 1);
        }
    }

    #[test]
    fn arbitrary_difficulty_knobs_never_panic(
        family in prop::sample::select(TaskFamily::ALL.to_vec()),
        knob in prop::sample::select(vec!["level", "digits", "digits_b", "op", "count", "max", "max_target", "people", "depth", "width", "rows", "cols", "ones", "height", "walls", "format", "prompt", "x"]),
        value in prop_oneof![".{0,6}", (0u64..200).prop_map(|n| n.to_string()), any::<u64>().prop_map(|n| n.to_string())],
        seed in any::<u64>(),
    ) {
        let d = Difficulty::from_pairs([(knob, value.as_str())]);
        if let Ok(p) = within_budget("generate", || family.generate_one(seed, 0, &d)) {
            prop_assert!(p.validate().is_ok());
            prop_assert!(p.verify(&p.solution()).correct);
        }
    }
}
