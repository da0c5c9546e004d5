//! Rewards from a real external program (JSON lines on stdin/stdout) and a real HTTP endpoint
//! (tiny_http on 127.0.0.1): answers, weights, a program that dies, one that hangs, bad JSON,
//! retries and bounded concurrency. Every failure gives the fallback reward and is counted.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use redraft_feedback_protocol::{RewardConfig, RewardSet, validate_rewards};
use redraft_verifier::tasks::MathProblem;
use redraft_verifier::{Problem, Verifier};
use serde_json::Value;

fn math(answer: &str) -> Problem {
    Problem::Math(MathProblem {
        problem: "What is 40 + 2?".into(),
        answer: answer.into(),
        solution: None,
    })
}

/// `python3`, or `None` with the reason printed (the test is then skipped).
fn python() -> Option<&'static str> {
    let ok = std::process::Command::new("python3")
        .arg("-c")
        .arg("pass")
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        println!("skipped: python3 is not available");
    }
    ok.then_some("python3")
}

/// A reward program: reads request lines, answers by the response text:
/// `hang` sleeps, `bad` answers non-JSON, `die` exits without answering, `noreward` answers
/// without a reward; otherwise `{"reward": len(response) / 10, "note": ...}`. Each answer
/// also carries the process id so restarts are visible.
const SCRIPT: &str = r#"
import json, os, sys, time
for line in sys.stdin:
    req = json.loads(line)
    r = req["response"]
    assert "prompt" in req and req["problem"]["task"] == "math", req
    if r == "hang":
        time.sleep(60)
    elif r == "bad":
        print("this is not json", flush=True)
    elif r == "die":
        sys.exit(3)
    elif r == "noreward":
        print(json.dumps({"score": 1}), flush=True)
    else:
        print(json.dumps({"reward": len(r) / 10, "pid": os.getpid(), "note": "extra"}), flush=True)
"#;

fn command_config(dir: &Path, timeout_s: f64) -> RewardConfig {
    let script = dir.join("reward.py");
    std::fs::write(&script, SCRIPT).unwrap();
    toml::from_str(&format!(
        "type = \"command\"\ncommand = [\"python3\", {:?}]\ntimeout_s = {timeout_s}\nfallback = -1.0\nweight = 2.0",
        script.display().to_string()
    ))
    .unwrap()
}

#[test]
fn command_reward_answers_restarts_times_out_and_falls_back() {
    let Some(_) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let set = RewardSet::new(&[command_config(dir.path(), 1.0)]).unwrap();
    let p = math("42");
    let reward = |r: &str| set.verify(&p, r).components["command"];

    // Answers, kept alive between requests; the weight applies to the total only.
    assert_eq!(reward("12345"), 0.5);
    let v = set.verify(&p, "\\boxed{42}");
    assert!((v.components["command"] - 1.0).abs() < 1e-6);
    assert!((v.reward - 2.0).abs() < 1e-6, "weight 2: {v:?}");
    assert!(v.correct, "correctness comes from the built-in verifier");
    assert_eq!(set.stats()["command"].restarts, 0);

    // Bad JSON and a reply without a reward: fallback, counted, the program stays.
    assert_eq!(reward("bad"), -1.0);
    assert_eq!(reward("noreward"), -1.0);
    assert_eq!(reward("1234"), 0.4);
    assert_eq!(set.stats()["command"].failures, 2);
    assert_eq!(set.stats()["command"].restarts, 0);

    // A program that dies mid-run is started again; the request is retried once (and dies
    // again here, so it falls back), the next request is answered by a fresh process.
    assert_eq!(reward("die"), -1.0);
    assert_eq!(reward("12"), 0.2);
    let s = set.stats()["command"].clone();
    assert_eq!(s.failures, 3);
    assert!(s.restarts >= 2, "{s:?}");

    // A program that hangs: the request times out (fallback, counted) within the timeout, the
    // program is restarted for the next request.
    let start = Instant::now();
    assert_eq!(reward("hang"), -1.0);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(reward("123"), 0.3);
    let s = set.stats()["command"].clone();
    assert_eq!((s.failures, s.timeouts), (4, 1), "{s:?}");
    assert!(s.restarts >= 3, "{s:?}");
    assert_eq!(s.requests, 9);
}

#[test]
fn a_missing_program_falls_back_and_never_stops_the_run() {
    let config: RewardConfig =
        toml::from_str("type = \"command\"\ncommand = [\"/nonexistent/reward-program\"]").unwrap();
    let set = RewardSet::new(&[config]).unwrap();
    let v = set.verify(&math("42"), "\\boxed{42}");
    assert_eq!(v.components["command"], 0.0);
    assert_eq!(v.reward, 0.0);
    assert_eq!(set.stats()["command"].failures, 1);
}

#[test]
fn weighted_components_with_the_task_reward() {
    let Some(_) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let task: RewardConfig = toml::from_str("type = \"task\"\nweight = 0.5").unwrap();
    let set = RewardSet::new(&[task, command_config(dir.path(), 5.0)]).unwrap();
    let p = math("42");
    let items = [(&p, "\\boxed{42}"), (&p, "\\boxed{7}")];
    let v = set.verify_batch(&items);
    assert_eq!(v[0].components["task"], 1.0);
    assert_eq!(v[1].components["task"], 0.0);
    assert!((v[0].reward - (0.5 + 2.0 * 1.0)).abs() < 1e-6, "{:?}", v[0]);
    assert!((v[1].reward - 2.0 * 0.9).abs() < 1e-6, "{:?}", v[1]);
    assert!(v[0].correct && !v[1].correct);
}

/// A tiny_http endpoint on 127.0.0.1 answering with `behaviour(n, body)` = (status, body), on
/// `threads` threads; counts the most requests in flight at once.
struct Endpoint {
    url: String,
    hits: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
}

fn endpoint(
    threads: usize,
    behaviour: impl Fn(usize, &Value) -> (u16, String) + Send + Sync + 'static,
) -> Endpoint {
    let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
    let url = format!("http://{}/reward", server.server_addr().to_ip().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let max_in_flight = Arc::new(AtomicUsize::new(0));
    let behaviour = Arc::new(behaviour);
    for _ in 0..threads {
        let (server, hits, in_flight, max_in_flight, behaviour) = (
            server.clone(),
            hits.clone(),
            in_flight.clone(),
            max_in_flight.clone(),
            behaviour.clone(),
        );
        std::thread::spawn(move || {
            while let Ok(Some(mut req)) = server.recv_timeout(Duration::from_secs(20)) {
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                max_in_flight.fetch_max(now, Ordering::SeqCst);
                let n = hits.fetch_add(1, Ordering::SeqCst);
                let mut body = String::new();
                req.as_reader().read_to_string(&mut body).unwrap();
                let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                let (status, reply) = behaviour(n, &body);
                std::thread::sleep(Duration::from_millis(30));
                in_flight.fetch_sub(1, Ordering::SeqCst);
                let _ =
                    req.respond(tiny_http::Response::from_string(reply).with_status_code(status));
            }
        });
    }
    Endpoint {
        url,
        hits,
        max_in_flight,
    }
}

fn http_config(url: &str, extra: &str) -> RewardConfig {
    toml::from_str(&format!(
        "type = \"http\"\nurl = {url:?}\nfallback = -1.0\n{extra}"
    ))
    .unwrap()
}

#[test]
fn http_reward_posts_the_request_with_bounded_concurrency() {
    let ep = endpoint(8, |_, body| {
        assert!(body["prompt"].as_str().unwrap().contains("40 + 2"));
        assert_eq!(body["problem"]["task"], "math");
        let r = body["response"].as_str().unwrap().len() as f64 / 10.0;
        (
            200,
            serde_json::json!({"reward": r, "why": "length"}).to_string(),
        )
    });
    let set = RewardSet::new(&[http_config(&ep.url, "max_concurrency = 2")]).unwrap();
    let p = math("42");
    let responses: Vec<String> = (1..=8).map(|n| "x".repeat(n)).collect();
    let items: Vec<(&Problem, &str)> = responses.iter().map(|r| (&p, r.as_str())).collect();
    let v = set.verify_batch(&items);
    for (n, v) in v.iter().enumerate() {
        assert!((v.reward - (n + 1) as f32 / 10.0).abs() < 1e-6, "{v:?}");
    }
    assert_eq!(ep.hits.load(Ordering::SeqCst), 8);
    let most = ep.max_in_flight.load(Ordering::SeqCst);
    assert!((1..=2).contains(&most), "{most} in flight");
}

#[test]
fn http_reward_retries_then_falls_back_on_errors_and_bad_json() {
    // The first request gets a 503 then succeeds on retry; "bad" gets non-JSON; "hang"
    // answers after the timeout (the retries time out too).
    let ep = endpoint(4, |n, body| match body["response"].as_str().unwrap() {
        "bad" => (200, "not json".into()),
        "hang" => {
            std::thread::sleep(Duration::from_millis(1500));
            (200, r#"{"reward": 1}"#.into())
        }
        _ if n == 0 => (503, "busy".into()),
        _ => (200, r#"{"reward": 0.25}"#.into()),
    });
    let extra = "timeout_s = 0.5\nmax_retries = 1\nmax_concurrency = 1";
    let set = RewardSet::new(&[http_config(&ep.url, extra)]).unwrap();
    let p = math("42");
    assert_eq!(set.verify(&p, "ok").reward, 0.25);
    assert_eq!(set.verify(&p, "bad").reward, -1.0);
    let start = Instant::now();
    assert_eq!(set.verify(&p, "hang").reward, -1.0);
    assert!(start.elapsed() < Duration::from_secs(5));
    let s = set.stats()["http"].clone();
    assert_eq!((s.requests, s.failures, s.timeouts), (3, 2, 1), "{s:?}");
}

#[test]
fn reward_tables_are_validated() {
    let parse = |s: &str| toml::from_str::<RewardConfig>(s);
    assert!(parse("type = \"nope\"").is_err());
    assert!(parse("type = \"task\"\nbogus = 1").is_err());
    let empty = parse("type = \"command\"\ncommand = []").unwrap();
    let e = validate_rewards(&[empty]).unwrap_err().to_string();
    assert!(e.contains("command"), "{e}");
    let slow = parse("type = \"command\"\ncommand = [\"x\"]\ntimeout_s = 0").unwrap();
    assert!(
        validate_rewards(&[slow])
            .unwrap_err()
            .to_string()
            .contains("timeout_s")
    );
    let url = parse("type = \"http\"\nurl = \"ftp://x\"").unwrap();
    assert!(
        validate_rewards(&[url])
            .unwrap_err()
            .to_string()
            .contains("url")
    );
    let task = parse("type = \"task\"").unwrap();
    let e = validate_rewards(&[task.clone(), task.clone()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("distinct"), "{e}");
    let named = parse("type = \"task\"\nname = \"again\"").unwrap();
    assert!(validate_rewards(&[task, named]).is_ok());
}
