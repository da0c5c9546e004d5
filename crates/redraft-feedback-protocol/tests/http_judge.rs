//! The OpenAI-compatible client and the judges against a real HTTP server on 127.0.0.1.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Reply, TestServer};
use redraft_feedback_protocol::{
    ChatModel, ChatRequest, Error, ErrorKind, FeedbackKind, FeedbackProvider, FeedbackRequest,
    GroupJudge, GroupJudgeConfig, JudgeConfig, LlmJudge, OpenAiClient, OpenAiConfig,
    ProviderConfig, Templates,
};
use redraft_tokenizer::Message;
use redraft_verifier::Problem;
use redraft_verifier::tasks::MathProblem;

fn config(server: &TestServer) -> OpenAiConfig {
    let mut c = OpenAiConfig::new(server.base_url(), "judge-model");
    c.timeout_ms = 2_000;
    c.max_retries = 2;
    c.backoff_initial_ms = 5;
    c.backoff_max_ms = 20;
    c
}

fn hello() -> ChatRequest {
    ChatRequest::new(vec![Message::user("hello")])
}

fn math_request(question: &str, response: &str) -> FeedbackRequest {
    let problem = Problem::Math(MathProblem {
        problem: question.to_string(),
        answer: "42".to_string(),
        solution: None,
    });
    let verdict = problem.verify(response);
    FeedbackRequest::new(problem, response, verdict)
}

#[test]
fn happy_path_sends_the_openai_body_and_parses_the_completion() {
    let server = TestServer::start(|_, _| Reply::content("Hi there"));
    let mut c = config(&server);
    c.api_key_env = Some("PATH".to_string()); // any variable that is set
    let client = OpenAiClient::new(c).unwrap();
    let req = hello()
        .temperature(0.5)
        .max_tokens(16)
        .stop(vec!["</x>".into()]);
    let out = client.complete(&[req]);
    let resp = out[0].as_ref().unwrap();
    assert_eq!(resp.text, "Hi there");
    assert_eq!(resp.finish_reason.as_deref(), Some("stop"));
    assert_eq!(resp.model.as_deref(), Some("judge-model"));
    assert_eq!(resp.usage.unwrap().completion_tokens, 7);
    let got = server.received.lock().unwrap()[0].clone();
    assert_eq!(got.path, "/v1/chat/completions");
    assert_eq!(got.body["model"], "judge-model");
    assert_eq!(got.body["messages"][0]["role"], "user");
    assert_eq!(got.body["messages"][0]["content"], "hello");
    assert_eq!(got.body["temperature"], 0.5);
    assert_eq!(got.body["max_tokens"], 16);
    assert_eq!(got.body["stop"][0], "</x>");
    let key = std::env::var("PATH").unwrap();
    assert_eq!(got.authorization, Some(format!("Bearer {key}")));
    assert!(
        !format!("{client:?}").contains(&key),
        "the key is never printed"
    );
}

#[test]
fn a_missing_api_key_variable_is_a_typed_error() {
    let mut c = OpenAiConfig::new("http://127.0.0.1:9/v1", "m");
    c.api_key_env = Some("REDRAFT_TEST_SURELY_UNSET_KEY_VARIABLE".to_string());
    let err = OpenAiClient::new(c).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MissingApiKey);
}

#[test]
fn server_errors_are_retried_until_success() {
    let server = TestServer::start(|n, _| {
        if n < 2 {
            Reply::openai_error(500, "overloaded")
        } else {
            Reply::content("ok")
        }
    });
    let client = OpenAiClient::new(config(&server)).unwrap();
    let out = client.complete(&[hello()]);
    assert_eq!(out[0].as_ref().unwrap().text, "ok");
    assert_eq!(server.hits(), 3);
    assert_eq!(client.retries(), 2);
}

#[test]
fn rate_limits_are_retried_and_honour_retry_after() {
    let server = TestServer::start(|n, _| {
        if n == 0 {
            Reply::Status(
                429,
                r#"{"error":{"message":"slow down"}}"#.into(),
                Some("0".into()),
            )
        } else {
            Reply::content("ok")
        }
    });
    let client = OpenAiClient::new(config(&server)).unwrap();
    assert_eq!(client.complete(&[hello()])[0].as_ref().unwrap().text, "ok");
    assert_eq!(server.hits(), 2);
}

#[test]
fn exhausted_retries_return_the_typed_status_error() {
    let server = TestServer::start(|_, _| Reply::openai_error(503, "down for maintenance"));
    let mut c = config(&server);
    c.max_retries = 1;
    let client = OpenAiClient::new(c).unwrap();
    let err = client.complete(&[hello()]).pop().unwrap().unwrap_err();
    assert_eq!(
        err,
        Error::HttpStatus {
            status: 503,
            message: "down for maintenance".into()
        }
    );
    assert_eq!(err.kind(), ErrorKind::ServerError);
    assert_eq!(server.hits(), 2);
}

#[test]
fn client_errors_are_not_retried() {
    let server = TestServer::start(|_, _| Reply::openai_error(400, "bad request: no model"));
    let client = OpenAiClient::new(config(&server)).unwrap();
    let err = client.complete(&[hello()]).pop().unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::HttpStatus);
    assert!(err.to_string().contains("bad request: no model"));
    assert_eq!(server.hits(), 1);
}

#[test]
fn a_short_timeout_returns_promptly() {
    let server = TestServer::start(|_, _| {
        Reply::Delay(
            Duration::from_millis(1500),
            Box::new(Reply::content("late")),
        )
    });
    let mut c = config(&server);
    c.timeout_ms = 200;
    c.max_retries = 1;
    let client = OpenAiClient::new(c).unwrap();
    let start = Instant::now();
    let err = client.complete(&[hello()]).pop().unwrap().unwrap_err();
    let took = start.elapsed();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    // Two attempts of 200 ms plus a backoff of at most 20 ms.
    assert!(took < Duration::from_millis(1000), "took {took:?}");
    assert_eq!(client.retries(), 1);
}

#[test]
fn a_budget_bounds_all_the_requests_of_a_client() {
    let server = TestServer::start(|_, _| {
        Reply::Delay(
            Duration::from_millis(5_000),
            Box::new(Reply::content("late")),
        )
    });
    let mut c = config(&server);
    c.max_concurrency = 2;
    c.budget_ms = 600;
    let judge = LlmJudge::new(
        Arc::new(OpenAiClient::new(c).unwrap()),
        Arc::new(Templates::new()),
        JudgeConfig::default(),
    );
    let requests: Vec<FeedbackRequest> = (0..5).map(|_| math_request("6*7?", "41")).collect();
    let start = Instant::now();
    let out = judge.feedback(&requests);
    let took = start.elapsed();
    // Two requests in flight are abandoned when the budget runs out; the other three are
    // never sent (without a budget: 3 attempts of 2 s each, for every request).
    assert!(took < Duration::from_millis(1_800), "took {took:?}");
    for r in &out {
        let e = r.as_ref().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BudgetExhausted, "{e}");
        assert!(e.to_string().contains("budget of 600ms"), "{e}");
    }
    assert_eq!(server.hits(), 2);
    // The budget is the client's: a later call finds it spent and sends nothing.
    let start = Instant::now();
    assert!(judge.feedback(&requests[..1])[0].is_err());
    assert!(start.elapsed() < Duration::from_millis(100));
    assert_eq!(server.hits(), 2);
    let stats = judge.stats();
    assert_eq!(stats.failures.get(&ErrorKind::BudgetExhausted), Some(&6));
}

#[test]
fn connection_refused_is_a_connection_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    }; // The listener is dropped: nothing listens there now.
    let mut c = OpenAiConfig::new(format!("http://127.0.0.1:{port}/v1"), "m");
    c.max_retries = 1;
    c.backoff_initial_ms = 1;
    c.timeout_ms = 500;
    let client = OpenAiClient::new(c).unwrap();
    let err = client.complete(&[hello()]).pop().unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connection, "{err}");
}

#[test]
fn a_dropped_connection_is_retried() {
    let server = TestServer::start(|n, _| {
        if n == 0 {
            Reply::Close
        } else {
            Reply::content("ok")
        }
    });
    let client = OpenAiClient::new(config(&server)).unwrap();
    assert_eq!(client.complete(&[hello()])[0].as_ref().unwrap().text, "ok");
    assert_eq!(server.hits(), 2);
}

#[test]
fn malformed_bodies_are_typed_and_not_retried() {
    let server = TestServer::start(|n, _| match n {
        0 => Reply::Raw("this is not json".into()),
        _ => Reply::Raw(r#"{"choices": []}"#.into()),
    });
    let client = OpenAiClient::new(config(&server)).unwrap();
    let a = client.complete(&[hello()]).pop().unwrap().unwrap_err();
    let b = client.complete(&[hello()]).pop().unwrap().unwrap_err();
    assert_eq!(a.kind(), ErrorKind::MalformedResponse);
    assert_eq!(b.kind(), ErrorKind::MalformedResponse);
    assert_eq!(server.hits(), 2);
}

#[test]
fn the_concurrency_bound_holds() {
    let server = TestServer::start(|_, _| {
        Reply::Delay(Duration::from_millis(80), Box::new(Reply::content("ok")))
    });
    let mut c = config(&server);
    c.max_concurrency = 2;
    let client = OpenAiClient::new(c).unwrap();
    let reqs = vec![hello(); 6];
    let start = Instant::now();
    let out = client.complete(&reqs);
    assert!(out.iter().all(|r| r.is_ok()));
    let max = server
        .max_in_flight
        .load(std::sync::atomic::Ordering::SeqCst);
    assert!(max <= 2, "{max} requests in flight");
    assert_eq!(max, 2, "the two workers do run in parallel");
    assert!(start.elapsed() >= Duration::from_millis(3 * 80));
}

#[test]
fn one_failure_does_not_lose_the_batch() {
    let server = TestServer::start(|_, body| {
        if body["messages"][0]["content"]
            .as_str()
            .unwrap_or("")
            .contains("FAIL")
        {
            Reply::openai_error(400, "rejected")
        } else {
            Reply::content("Thinking: fine.\nCritique: Check the sign in step 2.")
        }
    });
    let judge = LlmJudge::new(
        Arc::new(OpenAiClient::new(config(&server)).unwrap()),
        Arc::new(Templates::new()),
        JudgeConfig::default(),
    );
    let reqs = vec![
        math_request("What is 6*7?", "\\boxed{41}"),
        math_request("FAIL this one", "\\boxed{1}"),
        math_request("What is 40+2?", "\\boxed{43}"),
    ];
    let out = judge.feedback(&reqs);
    assert_eq!(out[0].as_ref().unwrap().text, "Check the sign in step 2.");
    assert_eq!(out[1].as_ref().unwrap_err().kind(), ErrorKind::HttpStatus);
    assert_eq!(out[2].as_ref().unwrap().kind, FeedbackKind::Critique);
    let stats = judge.stats();
    assert_eq!(stats.requests, 3);
    assert_eq!(stats.successes, 2);
    assert_eq!(stats.failures[&ErrorKind::HttpStatus], 1);
    assert_eq!(
        out[0].as_ref().unwrap().source.model.as_deref(),
        Some("judge-model")
    );
}

#[test]
fn the_judge_sees_the_reference_only_when_configured_and_allowed() {
    let server = TestServer::start(|_, _| Reply::content("Critique: no."));
    let client: Arc<dyn ChatModel> = Arc::new(OpenAiClient::new(config(&server)).unwrap());
    let templates = Arc::new(Templates::new());
    let allowed = math_request("What is 6*7?", "\\boxed{41}").with_reference(true);
    let hidden = LlmJudge::new(client.clone(), templates.clone(), JudgeConfig::default());
    let shown = LlmJudge::new(
        client,
        templates,
        JudgeConfig {
            send_reference: true,
            ..JudgeConfig::default()
        },
    );
    hidden.feedback(std::slice::from_ref(&allowed));
    shown.feedback(&[allowed.clone(), allowed.clone().with_reference(false)]);
    let got = server.received.lock().unwrap().clone();
    let prompt = |i: usize| {
        got[i].body["messages"][0]["content"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let with_gt = (0..3)
        .filter(|&i| prompt(i).contains("Correct Final Answer"))
        .count();
    assert_eq!(
        with_gt, 1,
        "only the configured judge on the allowing request"
    );
}

#[test]
fn the_group_judge_critiques_groups_and_merges_them() {
    let server = TestServer::start(|_, body| {
        let system = body["messages"][0]["content"].as_str().unwrap_or("");
        if system.starts_with("You merge") {
            Reply::content("<feedback>Issue: merged root mistake")
        } else {
            Reply::content("<feedback>Issue: a group mistake")
        }
    });
    let judge = GroupJudge::new(
        Arc::new(OpenAiClient::new(config(&server)).unwrap()),
        Arc::new(Templates::new()),
        GroupJudgeConfig::default(),
    )
    .unwrap();
    let mut reqs: Vec<FeedbackRequest> = (0..4)
        .map(|i| math_request("What is 6*7?", &format!("\\boxed{{{i}}}")))
        .collect();
    reqs.push(math_request("What is 2+2?", "\\boxed{5}"));
    let out = judge.feedback(&reqs);
    // Problem 1: 2 group calls + 1 merge; problem 2: 1 group call, no merge needed.
    assert_eq!(server.hits(), 4);
    for fb in &out[..4] {
        let fb = fb.as_ref().unwrap();
        assert_eq!(fb.kind, FeedbackKind::GroupCritique);
        assert_eq!(fb.text, "Issue: merged root mistake");
    }
    assert_eq!(out[4].as_ref().unwrap().text, "Issue: a group mistake");
    let got = server.received.lock().unwrap().clone();
    for r in &got {
        assert_eq!(r.body["temperature"], 0.0);
        assert_eq!(r.body["max_tokens"], 1024);
        assert_eq!(r.body["stop"][0], "</feedback>");
    }
}

#[test]
fn a_judge_built_from_config_reaches_the_server() {
    let server = TestServer::start(|_, _| Reply::content("Critique: Recheck your arithmetic."));
    let toml_text = format!(
        r#"
type = "llm_judge"
[endpoint]
base_url = "{}"
model = "qwen"
timeout_ms = 1000
max_retries = 0
max_concurrency = 2
[judge]
send_reference = true
"#,
        server.base_url()
    );
    let cfg: ProviderConfig = toml::from_str(&toml_text).unwrap();
    let provider = cfg.build(None).unwrap();
    assert_eq!(provider.name(), "llm_judge");
    let out = provider.feedback(&[math_request("What is 6*7?", "\\boxed{41}")]);
    assert_eq!(out[0].as_ref().unwrap().text, "Recheck your arithmetic.");
}
