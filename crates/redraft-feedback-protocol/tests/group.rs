//! MulFeRL's group judge over a scripted model: batching, partial failures, merging.

use std::sync::{Arc, Mutex};

use redraft_feedback_protocol::{
    ChatRequest, Error, ErrorKind, FeedbackProvider, FeedbackRequest, FnChatModel, GroupJudge,
    GroupJudgeConfig, Templates,
};
use redraft_verifier::Problem;
use redraft_verifier::tasks::MathProblem;

fn req(question: &str, response: &str) -> FeedbackRequest {
    let problem = Problem::Math(MathProblem {
        problem: question.into(),
        answer: "1".into(),
        solution: None,
    });
    let verdict = problem.verify(response);
    FeedbackRequest::new(problem, response, verdict)
}

#[test]
fn groups_are_batched_and_failures_stay_per_problem() {
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let model = {
        let log = log.clone();
        FnChatModel::new("judge", move |r: &ChatRequest| {
            let system = &r.messages[0].content;
            let user = &r.messages[1].content;
            let mode = if system.starts_with("You merge") {
                "merge"
            } else {
                "group"
            };
            log.lock().unwrap().push(mode.to_string());
            if user.contains("broken") {
                return Err(Error::Timeout(std::time::Duration::from_millis(1)));
            }
            if user.contains("half") && user.contains("\\boxed{2}") {
                return Err(Error::HttpStatus {
                    status: 500,
                    message: "x".into(),
                });
            }
            Ok(format!("<feedback>{mode} feedback</feedback>"))
        })
    };
    let judge = GroupJudge::new(
        Arc::new(model),
        Arc::new(Templates::new()),
        GroupJudgeConfig {
            group_size: 1,
            ..GroupJudgeConfig::default()
        },
    )
    .unwrap();
    let batch = vec![
        req("ok question", "\\boxed{2}"),
        req("broken question", "\\boxed{2}"),
        req("ok question", "\\boxed{3}"),
        req("half question", "\\boxed{2}"),
        req("half question", "\\boxed{3}"),
    ];
    let out = judge.feedback(&batch);
    assert_eq!(out[0].as_ref().unwrap().text, "merge feedback");
    assert_eq!(out[2].as_ref().unwrap().text, "merge feedback");
    assert_eq!(out[1].as_ref().unwrap_err().kind(), ErrorKind::Timeout);
    // One of the two groups failed: the other critique is used as is, no merge call.
    assert_eq!(out[3].as_ref().unwrap().text, "group feedback");
    assert_eq!(out[4].as_ref().unwrap().text, "group feedback");
    // 5 group calls first, then the single merge.
    let calls = log.lock().unwrap().clone();
    assert_eq!(
        calls,
        ["group", "group", "group", "group", "group", "merge"]
    );
    let stats = judge.stats();
    assert_eq!((stats.requests, stats.successes), (5, 4));
    assert_eq!(stats.failures[&ErrorKind::Timeout], 1);
}

#[test]
fn merge_of_nothing_is_an_error_and_of_one_is_that_one() {
    let model = FnChatModel::new("judge", |_: &ChatRequest| {
        Ok("<feedback>m</feedback>".into())
    });
    let judge = GroupJudge::new(
        Arc::new(model),
        Arc::new(Templates::new()),
        GroupJudgeConfig::default(),
    )
    .unwrap();
    assert_eq!(
        judge.merge("q", &[" ".into()]).unwrap_err().kind(),
        ErrorKind::EmptyOutput
    );
    assert_eq!(
        judge.merge("q", &["".into(), "only".into()]).unwrap(),
        "only"
    );
    assert_eq!(judge.merge("q", &["a".into(), "b".into()]).unwrap(), "m");
    assert!(
        GroupJudge::new(
            Arc::new(FnChatModel::new("j", |_: &ChatRequest| Ok(String::new()))),
            Arc::new(Templates::new()),
            GroupJudgeConfig {
                group_size: 0,
                ..GroupJudgeConfig::default()
            },
        )
        .is_err()
    );
}
