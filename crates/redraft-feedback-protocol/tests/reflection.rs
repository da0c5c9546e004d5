//! R^3L reflection parsing, validation and the self-reflection provider.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use redraft_feedback_protocol::{
    ChatRequest, Error, FeedbackKind, FeedbackProvider, FeedbackRequest, FnChatModel,
    InvalidReflection, Pivot, ProviderConfig, ReflectionOutcome, SelfReflection,
    SelfReflectionConfig, Templates, TrajectoryOutcome, parse_reflection,
};
use redraft_tokenizer::Message;
use redraft_verifier::Problem;
use redraft_verifier::tasks::MathProblem;

fn report(outcome: &str, suggestion: &str, step: &str) -> String {
    format!(
        r#"{{"trajectory_summary": "s", "root_cause_analysis": "r", "trajectory_outcome": "{outcome}", "improvement_suggestion": "{suggestion}", "retry_from_step": {step}}}"#
    )
}

fn reason(o: ReflectionOutcome) -> InvalidReflection {
    match o {
        ReflectionOutcome::Invalid { reason, .. } => reason,
        ReflectionOutcome::Valid { report } => panic!("expected invalid, got {report:?}"),
    }
}

#[test]
fn parsing_takes_the_first_brace_to_the_last() {
    let text = format!(
        "Sure! Here is my analysis:\n```json\n{}\n```\nDone.",
        report("failure", "check", "1")
    );
    let o = parse_reflection(&text, 3);
    let r = o.report().unwrap();
    assert_eq!(r.trajectory_outcome, TrajectoryOutcome::Failure);
    assert_eq!(r.retry_from_step, Some(1));
    assert!(o.triggers_retry());
}

#[test]
fn validation_follows_the_code() {
    // success is valid whatever the suggestion and step, and does not retry.
    let o = parse_reflection(&report("success", "", "\"n/a\""), 2);
    assert!(o.is_valid() && !o.triggers_retry());
    // success_but_inefficient is retried.
    assert!(
        parse_reflection(&report("success_but_inefficient", "shorter", "0"), 1).triggers_retry()
    );
    // step must be an integer in 0..turns.
    assert!(matches!(
        reason(parse_reflection(&report("failure", "x", "2"), 2)),
        InvalidReflection::BadRetryStep(_)
    ));
    assert!(matches!(
        reason(parse_reflection(&report("failure", "x", "-1"), 2)),
        InvalidReflection::BadRetryStep(_)
    ));
    assert!(matches!(
        reason(parse_reflection(&report("failure", "x", "1.0"), 2)),
        InvalidReflection::BadRetryStep(_)
    ));
    assert!(matches!(
        reason(parse_reflection(&report("failure", "x", "\"1\""), 2)),
        InvalidReflection::BadRetryStep(_)
    ));
    assert!(matches!(
        reason(parse_reflection(&report("failure", "x", "0"), 0)),
        InvalidReflection::BadRetryStep(_)
    ));
    // suggestion must be non-empty unless success.
    assert_eq!(
        reason(parse_reflection(&report("failure", "", "0"), 2)),
        InvalidReflection::EmptySuggestion
    );
    // outcome must be known.
    assert!(matches!(
        reason(parse_reflection(&report("partial", "x", "0"), 2)),
        InvalidReflection::UnknownOutcome(_)
    ));
    // keys must be present.
    assert_eq!(
        reason(parse_reflection(
            r#"{"trajectory_summary": "s", "trajectory_outcome": "success"}"#,
            2
        )),
        InvalidReflection::MissingKey("root_cause_analysis".into())
    );
    assert_eq!(
        reason(parse_reflection("no json here", 2)),
        InvalidReflection::NoJsonObject
    );
    assert_eq!(
        reason(parse_reflection("} backwards {", 2)),
        InvalidReflection::NoJsonObject
    );
    assert!(matches!(
        reason(parse_reflection("{not json}", 2)),
        InvalidReflection::BadJson(_)
    ));
    assert!(matches!(
        reason(parse_reflection("{} and {}", 2)),
        InvalidReflection::BadJson(_)
    ));
}

#[test]
fn parsing_never_panics_on_odd_text() {
    for text in [
        "",
        "{",
        "}",
        "{}",
        "[{}]",
        "{\"a\":}",
        "{{{{}}}}",
        "\u{0}{\u{ffff}}",
        "{\"trajectory_outcome\": null}",
    ] {
        let _ = parse_reflection(text, 3);
    }
}

fn request() -> FeedbackRequest {
    let problem = Problem::Math(MathProblem {
        problem: "What is 6*7?".into(),
        answer: "42".into(),
        solution: None,
    });
    let transcript = vec![
        Message::system("Solve the problem."),
        Message::user("What is 6*7?"),
        Message::assistant("<answer>41</answer>"),
        Message::user("Feedback: Incorrect. Your answer 41 does not match. Please try again."),
        Message::assistant("<answer>40</answer>"),
    ];
    let verdict = problem.verify("<answer>40</answer>");
    FeedbackRequest::new(problem, "<answer>40</answer>", verdict).with_transcript(transcript)
}

#[test]
fn the_provider_reflects_retries_and_counts_invalid_reports() {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen: Arc<std::sync::Mutex<Vec<ChatRequest>>> = Arc::default();
    let model = {
        let (calls, seen) = (calls.clone(), seen.clone());
        FnChatModel::new("policy", move |req: &ChatRequest| {
            seen.lock().unwrap().push(req.clone());
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 => Ok(report("failure", "Multiply carefully.", "1")),
                1 => Ok("I think it went fine.".to_string()),
                2 => Ok(report("success", "", "0")),
                _ => Err(Error::Model("out of memory".into())),
            }
        })
    };
    let provider = SelfReflection::new(
        Arc::new(model),
        Arc::new(Templates::new()),
        SelfReflectionConfig::default(),
    );
    let out = provider.feedback(&[request(), request(), request(), request()]);

    let fb = out[0].as_ref().unwrap();
    assert_eq!(fb.kind, FeedbackKind::SelfReflection);
    assert_eq!(fb.pivot, Some(Pivot::turn(1)));
    assert!(fb.triggers_retry());
    assert!(
        fb.text
            .starts_with("Your previous attempt encountered issues.")
    );
    assert!(
        fb.text
            .contains("\"improvement_suggestion\": \"Multiply carefully.\"")
    );
    assert_eq!(fb.source.model.as_deref(), Some("policy"));

    let invalid = out[1].as_ref().unwrap();
    assert!(!invalid.triggers_retry());
    assert!(invalid.text.is_empty());
    assert_eq!(
        invalid.reflection.as_ref().map(|r| r.is_valid()),
        Some(false)
    );

    let success = out[2].as_ref().unwrap();
    assert!(success.reflection.as_ref().unwrap().is_valid());
    assert!(!success.triggers_retry());

    assert!(out[3].is_err());
    let stats = provider.stats();
    assert_eq!(
        (stats.requests, stats.successes, stats.invalid_reflections),
        (4, 3, 1)
    );
    assert_eq!(stats.failed(), 1);

    let req = seen.lock().unwrap()[0].clone();
    assert_eq!(req.temperature, Some(1.0));
    assert_eq!(req.max_tokens, Some(4096));
    assert_eq!(req.messages[0].role, "system");
    insta::assert_snapshot!("reflection_user_message", req.messages[1].content);
}

#[test]
fn self_reflection_from_config_needs_the_policy() {
    let cfg: ProviderConfig =
        serde_json::from_str(r#"{"type": "self_reflection", "reflection": {"temperature": 0.7}}"#)
            .unwrap();
    assert!(cfg.build(None).is_err());
    let model = FnChatModel::new("p", |_: &ChatRequest| Ok(String::new()));
    let provider = cfg.build(Some(Arc::new(model))).unwrap();
    assert_eq!(provider.name(), "self_reflection");
}
