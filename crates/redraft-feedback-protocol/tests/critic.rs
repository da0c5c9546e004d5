//! The verifier critic and the correctness-only provider.

use redraft_feedback_protocol::{
    CORRECT_TEXT, CorrectnessOnly, CriticConfig, FeedbackKind, FeedbackProvider, FeedbackRequest,
    INCORRECT_TEXT, Pivot, VerifierCritic, critique,
};
use redraft_verifier::tasks::MathProblem;
use redraft_verifier::{
    Diagnosis, DiagnosisKind, Difficulty, FirstError, Problem, TaskFamily, Verdict,
};

fn problem(family: TaskFamily) -> Problem {
    match family {
        TaskFamily::Math => Problem::Math(MathProblem {
            problem: "What is 6*7?".into(),
            answer: "42".into(),
            solution: None,
        }),
        f => f.generate_one(7, 0, &Difficulty::default()).unwrap(),
    }
}

fn wrong(kind: DiagnosisKind, step: usize, expected: &str, found: &str, detail: &str) -> Verdict {
    Verdict::wrong(Diagnosis::new(kind, detail).with_first_error(FirstError {
        step,
        span: 0..1,
        expected: expected.into(),
        found: found.into(),
    }))
}

/// Hand-made verdicts covering each family's diagnosis kinds (values chosen to be searchable).
fn cases() -> Vec<(TaskFamily, &'static str, Verdict, Option<&'static str>)> {
    use DiagnosisKind::*;
    vec![
        (
            TaskFamily::Math,
            "wrong answer",
            wrong(
                WrongAnswer,
                0,
                "42",
                "41",
                "the answer is not equivalent to the reference",
            ),
            Some("42"),
        ),
        (
            TaskFamily::Math,
            "no answer",
            Verdict::malformed(Diagnosis::new(
                NoAnswer,
                "no final answer found (expected \\boxed{...}, <answer>...</answer>, or a final number)",
            )),
            None,
        ),
        (
            TaskFamily::Math,
            "timed out",
            Verdict::malformed(Diagnosis::new(
                TimedOut,
                "timed out while checking the answer",
            )),
            None,
        ),
        (
            TaskFamily::Math,
            "too large",
            Verdict::malformed(Diagnosis::new(TooLarge, "the answer is too large to check")),
            None,
        ),
        (
            TaskFamily::Arithmetic,
            "wrong step",
            wrong(
                WrongStep,
                1,
                "9087",
                "9077",
                "step 1 is wrong: expected 9087, found 9077",
            ),
            Some("9087"),
        ),
        (
            TaskFamily::Arithmetic,
            "wrong answer",
            wrong(
                WrongAnswer,
                3,
                "123456",
                "123356",
                "the result is wrong from column 2",
            ),
            Some("123456"),
        ),
        (
            TaskFamily::Arithmetic,
            "bad format",
            Verdict::malformed(
                Diagnosis::new(BadFormat, "the answer \"abc\" is not an integer").with_first_error(
                    FirstError {
                        step: 0,
                        span: 0..3,
                        expected: "an integer".into(),
                        found: "abc".into(),
                    },
                ),
            ),
            None,
        ),
        (
            TaskFamily::Countdown,
            "wrong step",
            wrong(
                WrongStep,
                0,
                "25*4=100",
                "25*4=90",
                "step 0 is wrong: 25*4=90 should be 25*4=100",
            ),
            Some("25*4=100"),
        ),
        (
            TaskFamily::Countdown,
            "wrong answer",
            wrong(
                WrongAnswer,
                0,
                "321",
                "320",
                "the expression equals 320, not 321",
            ),
            None,
        ),
        (
            TaskFamily::KnightsKnaves,
            "wrong answer",
            wrong(
                WrongAnswer,
                1,
                "Bob is a knight",
                "Bob is a knave",
                "2 of 3 inhabitants classified correctly; first wrong: Bob",
            ),
            Some("Bob is a knight"),
        ),
        (
            TaskFamily::KnightsKnaves,
            "missing person",
            wrong(
                WrongAnswer,
                0,
                "Ann is a knave",
                "nothing about Ann",
                "2 of 3",
            ),
            Some("Ann is a knave"),
        ),
        (
            TaskFamily::ShortestPath,
            "wrong step",
            wrong(WrongStep, 2, "U or R", "L", "move 2 (L) hits a wall"),
            Some("U or R"),
        ),
        (
            TaskFamily::ShortestPath,
            "leaves the grid",
            wrong(WrongStep, 0, "D", "U", "move 0 (U) leaves the grid"),
            Some("D"),
        ),
        (
            TaskFamily::ShortestPath,
            "stops early",
            wrong(
                WrongAnswer,
                4,
                "R",
                "end of path",
                "the path ends at row 1, column 2, not at G",
            ),
            Some("R"),
        ),
        (
            TaskFamily::ShortestPath,
            "detour",
            Verdict::partial(
                0.5,
                Diagnosis {
                    kind: Partial,
                    first_error: Some(FirstError {
                        step: 1,
                        span: 0..1,
                        expected: "D or R".into(),
                        found: "U".into(),
                    }),
                    detail: "a valid path of length 8, but the shortest has length 4".into(),
                },
            ),
            Some("D or R"),
        ),
        (
            TaskFamily::BinaryMatrix,
            "wrong cell",
            wrong(
                WrongAnswer,
                4,
                "7",
                "3",
                "8 of 9 cells right; first wrong at row 1, column 1",
            ),
            Some("7"),
        ),
        (
            TaskFamily::BinaryMatrix,
            "bad shape",
            Verdict::malformed(Diagnosis::new(
                BadFormat,
                "expected a 3x3 matrix, found rows of lengths [3, 2]",
            )),
            None,
        ),
        (
            TaskFamily::KnightsKnaves,
            "correct",
            Verdict::correct("everyone is classified correctly"),
            None,
        ),
    ]
}

#[test]
fn critiques_for_every_family_and_kind() {
    let mut out = String::new();
    for (family, label, verdict, secret) in cases() {
        let p = problem(family);
        let hidden = critique(&p, &verdict, false);
        let shown = critique(&p, &verdict, true);
        if let Some(secret) = secret {
            assert!(
                !hidden.text().contains(secret),
                "{family} {label}: hidden critique reveals {secret:?}: {}",
                hidden.text()
            );
            assert!(
                shown.text().contains(secret),
                "{family} {label}: revealing critique lacks {secret:?}: {}",
                shown.text()
            );
        }
        let expected_pivot = verdict
            .diagnosis
            .first_error
            .as_ref()
            .map(|e| Pivot::step(e.step));
        assert_eq!(hidden.pivot, expected_pivot);
        out.push_str(&format!(
            "## {family} / {label}\nhidden: {}\nshown:  {}\n\n",
            hidden.text(),
            shown.text()
        ));
    }
    insta::assert_snapshot!("critiques", out);
}

#[test]
fn critic_provider_respects_request_and_config() {
    let p = problem(TaskFamily::Math);
    let verdict = p.verify("so \\boxed{41}");
    assert_eq!(verdict.diagnosis.kind, DiagnosisKind::WrongAnswer);
    let req = FeedbackRequest::new(p, "so \\boxed{41}", verdict.clone());

    // By default the critic never reveals, even when the request allows the reference.
    let critic = VerifierCritic::default();
    let out = critic.feedback(&[req.clone(), req.clone().with_reference(true)]);
    let (a, b) = (out[0].as_ref().unwrap(), out[1].as_ref().unwrap());
    assert_eq!(a.kind, FeedbackKind::Critique);
    assert!(!a.text.contains("42"), "{}", a.text);
    assert!(!b.text.contains("42"), "{}", b.text);
    // `reveal_answer` reveals, and only where the request allows the reference.
    let revealing = VerifierCritic::new(CriticConfig {
        reveal_answer: true,
        closing_sentence: false,
    });
    let out = revealing.feedback(&[req.clone(), req.clone().with_reference(true)]);
    assert!(!out[0].as_ref().unwrap().text.contains("42"));
    assert!(out[1].as_ref().unwrap().text.contains("42"));
    assert_eq!(a.pivot, Some(Pivot::step(0)));
    assert_eq!(a.verdict.as_ref(), Some(&verdict));
    assert_eq!(a.source.provider, "verifier_critic");
    assert!(!a.hints.is_empty());

    let never = VerifierCritic::new(CriticConfig {
        reveal_answer: false,
        closing_sentence: true,
    });
    let c = never
        .feedback(&[req.with_reference(true)])
        .pop()
        .unwrap()
        .unwrap();
    assert!(!c.text.contains("42"), "{}", c.text);
    assert!(c.text.ends_with(INCORRECT_TEXT));
    assert_eq!(critic.stats().requests, 2);
    assert_eq!(critic.stats().successes, 2);
}

#[test]
fn critic_on_real_verdicts_of_generated_problems() {
    for family in [
        TaskFamily::Arithmetic,
        TaskFamily::Countdown,
        TaskFamily::KnightsKnaves,
        TaskFamily::ShortestPath,
        TaskFamily::BinaryMatrix,
    ] {
        let p = problem(family);
        for response in ["", "<answer>1</answer>", "\\boxed{x}", &p.solution()] {
            let verdict = p.verify(response);
            let c = critique(&p, &verdict, false);
            assert!(!c.what.is_empty(), "{family}: {response:?}");
            if verdict.correct {
                assert!(c.what.contains("correct"), "{family}: {}", c.what);
            }
        }
    }
}

#[test]
fn correctness_only_is_the_papers_sentence() {
    let p = problem(TaskFamily::Math);
    let right = FeedbackRequest::new(p.clone(), "\\boxed{42}", p.verify("\\boxed{42}"));
    let wrong = FeedbackRequest::new(p.clone(), "\\boxed{4}", p.verify("\\boxed{4}"));
    let provider = CorrectnessOnly::new();
    let out = provider.feedback(&[right, wrong]);
    assert_eq!(out[0].as_ref().unwrap().text, CORRECT_TEXT);
    assert_eq!(
        out[1].as_ref().unwrap().text,
        "Your previous attempt was incorrect."
    );
    assert_eq!(out[1].as_ref().unwrap().kind, FeedbackKind::CorrectnessOnly);
    assert_eq!(provider.stats().requests, 2);
}
