//! `redraft serve` as a real server on 127.0.0.1: the OpenAI protocol, batching of concurrent
//! requests, reproducible seeds, and OpenAI-style errors that leave the server running.

mod common;

use common::tiny_config;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use redraft::feedback::{
    ChatModel, ChatRequest, CritiqueParser, FeedbackKind, FeedbackProvider, FeedbackRequest,
    JudgeConfig, LlmJudge, OpenAiClient, OpenAiConfig, Templates,
};
use redraft::tokenizer::Message;
use redraft::verifier::Problem;
use redraft::verifier::tasks::MathProblem;
use serde_json::{Value, json};

/// A running server, killed when dropped.
struct Server {
    child: Child,
    address: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(extra: &[&str]) -> Server {
    start_with_context(extra, 512)
}

/// `redraft init-model` of `config` into `out` (with `seed`, or the command's default).
fn init_model(config: &Path, out: &Path, seed: Option<&str>) {
    let status = Command::new(env!("CARGO_BIN_EXE_redraft"))
        .args(["init-model", "--config"])
        .arg(config)
        .arg("--out")
        .arg(out)
        .args(seed.map(|s| ["--seed", s]).into_iter().flatten())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
}

/// A server for the tiny model, with its context set to `context` positions.
fn start_with_context(extra: &[&str], context: usize) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny");
    let config = dir.path().join("config.json");
    tiny_config(&config, |json| {
        json["max_position_embeddings"] = json!(context)
    });
    init_model(&config, &model, None);
    let (child, address) = common::spawn_serve(&model, extra);
    Server {
        child,
        address,
        _dir: dir,
    }
}

/// One HTTP/1.1 request; returns the status code and the JSON body.
fn request(server: &Server, method: &str, path: &str, body: &str) -> (u16, Value) {
    let (status, _, body) = raw(server, method, path, body);
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn post(server: &Server, path: &str, body: Value) -> (u16, Value) {
    request(server, "POST", path, &body.to_string())
}

#[test]
fn answers_the_openai_protocol() {
    let server = start(&[]);
    assert_eq!(request(&server, "GET", "/health", "").0, 200);
    let (status, models) = request(&server, "GET", "/v1/models", "");
    assert_eq!(status, 200);
    assert_eq!(models["data"][0]["id"], "tiny");

    let body = json!({"model": "tiny", "prompt": "12+34=", "max_tokens": 6, "n": 3, "seed": 5, "logprobs": 0});
    let (status, first) = post(&server, "/v1/completions", body.clone());
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["object"], "text_completion");
    let choices = first["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 3);
    for choice in choices {
        let logprobs = choice["logprobs"]["token_logprobs"].as_array().unwrap();
        assert!(!logprobs.is_empty() && logprobs.len() <= 6);
        assert!(logprobs.iter().all(|l| l.as_f64().unwrap() <= 0.0));
        assert!(["stop", "length"].contains(&choice["finish_reason"].as_str().unwrap()));
    }
    assert_eq!(first["usage"]["prompt_tokens"], 7);
    // Same seed, same choices; the choices of one request differ from each other.
    let (_, again) = post(&server, "/v1/completions", body);
    assert_eq!(first["choices"], again["choices"]);

    let chat = json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "logprobs": true, "temperature": 0});
    let (status, reply) = post(&server, "/v1/chat/completions", chat);
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["object"], "chat.completion");
    assert_eq!(reply["choices"][0]["message"]["role"], "assistant");
    assert!(
        reply["choices"][0]["logprobs"]["content"]
            .as_array()
            .unwrap()
            .len()
            <= 4
    );
}

#[test]
fn stop_strings_cut_the_text() {
    let server = start(&[]);
    let greedy = json!({"prompt": "abc", "max_tokens": 12, "temperature": 0});
    let (_, full) = post(&server, "/v1/completions", greedy.clone());
    let text = full["choices"][0]["text"].as_str().unwrap().to_string();
    let Some(stop) = text.chars().nth(2).map(String::from) else {
        return;
    };
    let mut with_stop = greedy;
    with_stop["stop"] = json!([stop]);
    let (status, cut) = post(&server, "/v1/completions", with_stop);
    assert_eq!(status, 200);
    assert_eq!(
        cut["choices"][0]["text"].as_str().unwrap(),
        &text[..text.find(&stop).unwrap()]
    );
    assert_eq!(cut["choices"][0]["finish_reason"], "stop");
}

#[test]
fn concurrent_requests_are_batched_and_all_answered() {
    let server = start(&[]);
    let answers: Vec<(u16, Value)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..6)
            .map(|i| {
                let server = &server;
                scope.spawn(move || {
                    post(
                        server,
                        "/v1/completions",
                        json!({"prompt": format!("{i}+1="), "max_tokens": 8, "seed": i}),
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, (status, body)) in answers.iter().enumerate() {
        assert_eq!(*status, 200, "{body}");
        // Batching does not change a seeded answer: it equals the same request made alone.
        let (_, alone) = post(
            &server,
            "/v1/completions",
            json!({"prompt": format!("{i}+1="), "max_tokens": 8, "seed": i}),
        );
        assert_eq!(body["choices"], alone["choices"], "request {i}");
    }
}

#[test]
fn bad_requests_get_openai_errors_and_the_server_survives() {
    let server = start(&["--max-body-bytes", "2000"]);
    let (status, body) = request(&server, "POST", "/v1/completions", "{\"prompt\": ");
    assert_eq!(status, 400);
    assert_eq!(body["error"]["type"], "invalid_request_error");

    let (status, body) = request(&server, "POST", "/v1/completions", &"x".repeat(5000));
    assert_eq!(status, 413, "{body}");

    let (status, body) = post(
        &server,
        "/v1/completions",
        json!({"prompt": "x".repeat(600)}),
    );
    assert_eq!(status, 400);
    assert_eq!(body["error"]["param"], "prompt");
    let (status, _) = post(&server, "/v1/completions", json!({"prompt": [1, 2, 99999]}));
    assert_eq!(status, 400);
    let (status, body) = post(
        &server,
        "/v1/completions",
        json!({"prompt": "a", "temperature": 7}),
    );
    assert_eq!(
        (status, body["error"]["param"].as_str()),
        (400, Some("temperature"))
    );
    let (status, _) = post(&server, "/v1/completions", json!({"prompt": "a", "n": 0}));
    assert_eq!(status, 400);
    let (status, _) = post(
        &server,
        "/v1/completions",
        json!({"prompt": "a", "model": "other"}),
    );
    assert_eq!(status, 404);
    assert_eq!(request(&server, "GET", "/v1/completions", "").0, 405);
    assert_eq!(request(&server, "GET", "/nowhere", "").0, 404);

    // A client that sends half a request and hangs up.
    let mut stream = TcpStream::connect(&server.address).unwrap();
    stream
        .write_all(b"POST /v1/completions HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"pro")
        .unwrap();
    drop(stream);

    let (status, _) = post(
        &server,
        "/v1/completions",
        json!({"prompt": "still alive", "max_tokens": 2}),
    );
    assert_eq!(status, 200);
}

#[test]
fn the_llm_judge_provider_works_against_redraft_serve() {
    let server = start_with_context(&[], 4096);
    let mut config = OpenAiConfig::new(format!("http://{}/v1", server.address), "tiny");
    config.timeout_ms = 120_000;
    let client = Arc::new(OpenAiClient::new(config).unwrap());

    // The client's chat completion is the server's: greedy, so a direct request agrees.
    let request = ChatRequest::new(vec![Message::user("hello")])
        .temperature(0.0)
        .max_tokens(8);
    let answer = client.complete(&[request]).remove(0).unwrap();
    let (status, direct) = post(
        &server,
        "/v1/chat/completions",
        json!({"messages": [{"role": "user", "content": "hello"}], "temperature": 0, "max_tokens": 8}),
    );
    assert_eq!(status, 200);
    assert_eq!(
        answer.text,
        direct["choices"][0]["message"]["content"].as_str().unwrap()
    );

    // The judge provider turns a failed attempt into a critique written by the served model.
    let judge_config = JudgeConfig {
        temperature: Some(1.0),
        max_tokens: Some(24),
        parser: CritiqueParser::Raw,
        ..JudgeConfig::default()
    };
    let judge = LlmJudge::new(client, Arc::new(Templates::default()), judge_config);
    let problem = Problem::Math(MathProblem {
        problem: "What is 6 * 7?".into(),
        answer: "42".into(),
        solution: None,
    });
    let verdict = problem.verify("6 * 7 = \\boxed{41}");
    assert!(!verdict.correct);
    let requests: Vec<FeedbackRequest> = (0..4)
        .map(|_| FeedbackRequest::new(problem.clone(), "6 * 7 = \\boxed{41}", verdict.clone()))
        .collect();
    let feedback = judge.feedback(&requests);
    // A random model may answer with only an end-of-turn token: that is a typed, counted
    // failure, never a hang or a panic. Everything else is a critique.
    let mut critiques = 0;
    for result in &feedback {
        match result {
            Ok(critique) => {
                assert_eq!(critique.kind, FeedbackKind::Critique);
                assert!(!critique.text.is_empty());
                critiques += 1;
            }
            Err(error) => assert!(
                matches!(error, redraft::feedback::Error::EmptyOutput(_)),
                "{error}"
            ),
        }
    }
    assert!(critiques > 0, "{feedback:?}");
    let stats = judge.stats();
    assert_eq!((stats.requests, stats.successes), (4, critiques));
}

/// Sends the head of a request announcing a 100 000-byte body, then one body byte, and holds.
fn slow_client(server: &Server) -> TcpStream {
    let mut stream = TcpStream::connect(&server.address).unwrap();
    stream
        .write_all(
            b"POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{",
        )
        .unwrap();
    stream
}

/// The raw response to a request: status, head and body.
fn raw(server: &Server, method: &str, path: &str, body: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(&server.address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split(' ').nth(1).unwrap().parse().unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (status, head.to_string(), body.to_string())
}

#[test]
fn slow_clients_do_not_stop_health_or_well_behaved_requests() {
    // 600 stalled requests stopped the tiny_http server from answering anything.
    let server = start(&[]);
    let slow: Vec<TcpStream> = (0..600).map(|_| slow_client(&server)).collect();
    std::thread::sleep(Duration::from_millis(500));
    let started = std::time::Instant::now();
    let mut health = TcpStream::connect(&server.address).unwrap();
    health
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    health
        .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    let _ = health.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    let (status, body) = post(
        &server,
        "/v1/completions",
        json!({"prompt": "a", "max_tokens": 2}),
    );
    assert_eq!(status, 200, "{body}");
    assert!(started.elapsed() < Duration::from_secs(20));
    drop(slow);
}

#[test]
fn full_server_answers_503_and_slow_reads_time_out() {
    let server = start(&["--max-connections", "8", "--request-timeout-secs", "2"]);
    let mut slow: Vec<TcpStream> = (0..8).map(|_| slow_client(&server)).collect();
    std::thread::sleep(Duration::from_millis(300));
    let (status, head, _) = raw(&server, "GET", "/health", "");
    assert_eq!(status, 503, "{head}");
    assert!(head.to_ascii_lowercase().contains("retry-after:"), "{head}");
    // The deadline ends the slow requests with 408 and frees their connections.
    for stream in &mut slow {
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    }
    drop(slow);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(request(&server, "GET", "/health", "").0, 200);
}

#[test]
fn abandoned_requests_are_cancelled() {
    let server = start(&[]);
    let heavy = json!({"prompt": "x", "n": 64, "max_tokens": 400, "temperature": 1.0}).to_string();
    let clients: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut stream = TcpStream::connect(&server.address).unwrap();
            write!(
                stream,
                "POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{heavy}",
                heavy.len()
            )
            .unwrap();
            stream
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    drop(clients);
    let started = std::time::Instant::now();
    let (status, body) = post(
        &server,
        "/v1/completions",
        json!({"prompt": "a", "max_tokens": 2}),
    );
    assert_eq!(status, 200, "{body}");
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(5), "waited {waited:?}");
}

/// The `data:` payloads of a server-sent event stream, `[DONE]` included.
fn data_events(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|event| event.trim().strip_prefix("data: "))
        .map(str::to_string)
        .collect()
}

#[test]
fn streaming_sends_openai_server_sent_events() {
    let server = start(&[]);
    let chat = json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 6, "temperature": 0, "logprobs": true});
    let (_, whole) = post(&server, "/v1/chat/completions", chat.clone());
    let mut streamed = chat;
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let (status, head, body) = raw(
        &server,
        "POST",
        "/v1/chat/completions",
        &streamed.to_string(),
    );
    assert_eq!(status, 200, "{body}");
    assert!(
        head.to_ascii_lowercase().contains("text/event-stream"),
        "{head}"
    );
    let events = data_events(&body);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{body}");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(
        text,
        whole["choices"][0]["message"]["content"].as_str().unwrap()
    );
    let logprobs: Vec<Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["logprobs"]["content"].as_array())
        .flatten()
        .cloned()
        .collect();
    assert_eq!(
        Value::from(logprobs),
        whole["choices"][0]["logprobs"]["content"]
    );
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"], whole["usage"]);
    assert!(
        chunks
            .iter()
            .any(|c| c["choices"][0]["finish_reason"].is_string())
    );

    let completion = json!({"prompt": "12+34=", "max_tokens": 5, "temperature": 0});
    let (_, whole) = post(&server, "/v1/completions", completion.clone());
    let mut streamed = completion;
    streamed["stream"] = json!(true);
    let (status, _, body) = raw(&server, "POST", "/v1/completions", &streamed.to_string());
    assert_eq!(status, 200);
    let events = data_events(&body);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let text: String = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str::<Value>(e).unwrap())
        .inspect(|c| assert_eq!(c["object"], "text_completion"))
        .filter_map(|c| c["choices"][0]["text"].as_str().map(str::to_string))
        .collect();
    assert_eq!(text, whole["choices"][0]["text"].as_str().unwrap());
}

#[test]
fn protocol_gaps_are_filled_or_refused_by_name() {
    let server = start(&[]);
    // Content given as a list of text parts is the same prompt as the string.
    let plain = json!({"messages": [{"role": "user", "content": "hello"}], "max_tokens": 4, "temperature": 0});
    let parts = json!({"messages": [{"role": "user", "content": [{"type": "text", "text": "hel"}, {"type": "text", "text": "lo"}]}], "max_tokens": 4, "temperature": 0});
    let (status, a) = post(&server, "/v1/chat/completions", plain);
    assert_eq!(status, 200, "{a}");
    let (status, b) = post(&server, "/v1/chat/completions", parts);
    assert_eq!(status, 200, "{b}");
    assert_eq!(a["choices"], b["choices"]);

    for (endpoint, field, value) in [
        ("/v1/completions", "echo", json!(true)),
        (
            "/v1/chat/completions",
            "tools",
            json!([{"type": "function", "function": {"name": "f"}}]),
        ),
        (
            "/v1/chat/completions",
            "response_format",
            json!({"type": "json_object"}),
        ),
        ("/v1/chat/completions", "top_logprobs", json!(21)),
        ("/v1/completions", "logprobs", json!(6)),
    ] {
        let mut body = if endpoint == "/v1/completions" {
            json!({"prompt": "a", "max_tokens": 2})
        } else {
            json!({"messages": [{"role": "user", "content": "a"}], "max_tokens": 2, "logprobs": true})
        };
        body[field] = value;
        let (status, answer) = post(&server, endpoint, body);
        assert_eq!(
            (status, answer["error"]["param"].as_str()),
            (400, Some(field)),
            "{answer}"
        );
    }

    // A prompt that fills the context leaves no room for a completion: refused, not empty.
    let (status, answer) = post(
        &server,
        "/v1/completions",
        json!({"prompt": "x".repeat(511)}),
    );
    assert_eq!(
        (status, answer["error"]["param"].as_str()),
        (400, Some("max_tokens")),
        "{answer}"
    );
}

/// Runs `command` until it exits or `limit` passes (then kills it); whether it succeeded.
fn run_bounded(command: &mut Command, limit: Duration) -> bool {
    let Ok(mut child) = command.stdout(Stdio::null()).stderr(Stdio::null()).spawn() else {
        return false;
    };
    let started = std::time::Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) if started.elapsed() < limit => std::thread::sleep(Duration::from_millis(200)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}

/// A Python that can `import openai`: `python3` itself, or a venv made in `dir` with the
/// package installed from PyPI; `Err` says why there is none.
fn python_with_openai(dir: &Path) -> Result<std::path::PathBuf, String> {
    let imports = |python: &Path| {
        run_bounded(
            Command::new(python).args(["-c", "import openai"]),
            Duration::from_secs(60),
        )
    };
    let system = Path::new("python3");
    if imports(system) {
        return Ok(system.to_path_buf());
    }
    let venv = dir.join("venv");
    if !run_bounded(
        Command::new("python3").args(["-m", "venv", venv.to_str().unwrap()]),
        Duration::from_secs(120),
    ) {
        return Err("python3 -m venv failed (no python3, or no venv module)".into());
    }
    let python = venv.join("bin/python");
    if !run_bounded(
        Command::new(&python).args(["-m", "pip", "install", "-q", "openai"]),
        Duration::from_secs(300),
    ) || !imports(&python)
    {
        return Err("pip install openai failed (no access to PyPI?)".into());
    }
    Ok(python)
}

#[test]
fn the_official_openai_python_client_streams_from_redraft_serve() {
    let dir = tempfile::tempdir().unwrap();
    let python = match python_with_openai(dir.path()) {
        Ok(python) => python,
        Err(reason) => {
            println!("skipped: {reason}");
            return;
        }
    };
    let server = start(&[]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/openai_client_check.py");
    let output = Command::new(python)
        .arg(script)
        .arg(format!("http://{}/v1", server.address))
        .arg("tiny")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "ok");
}

#[test]
fn token_bytes_are_the_tokens_real_bytes() {
    let server = start(&[]);
    let body = json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 16, "n": 8, "seed": 3, "temperature": 1.5, "logprobs": true});
    let (status, answer) = post(&server, "/v1/chat/completions", body);
    assert_eq!(status, 200, "{answer}");
    let entries: Vec<&Value> = answer["choices"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["logprobs"]["content"].as_array().unwrap())
        .collect();
    let mut partial = 0;
    for entry in &entries {
        let token = entry["token"].as_str().unwrap();
        let bytes: Vec<u8> = entry["bytes"]
            .as_array()
            .unwrap_or_else(|| panic!("no bytes: {entry}"))
            .iter()
            .map(|b| b.as_u64().unwrap() as u8)
            .collect();
        if token == "\u{FFFD}" {
            // A byte that is not a character alone: its own byte, never U+FFFD's UTF-8.
            assert!(bytes.len() == 1 && bytes[0] >= 0x80, "{entry}");
            partial += 1;
        } else {
            assert_eq!(String::from_utf8(bytes).unwrap(), token);
        }
    }
    // The random byte model samples bytes >= 0x80 among 128 tokens: the case is exercised.
    assert!(partial > 0, "{entries:?}");
}

#[test]
fn top_logprobs_list_the_most_likely_tokens() {
    let server = start(&[]);
    let chat = json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5, "temperature": 0, "logprobs": true, "top_logprobs": 4});
    let (status, answer) = post(&server, "/v1/chat/completions", chat.clone());
    assert_eq!(status, 200, "{answer}");
    let content = answer["choices"][0]["logprobs"]["content"]
        .as_array()
        .unwrap();
    assert!(!content.is_empty());
    for entry in content {
        let top = entry["top_logprobs"].as_array().unwrap();
        assert_eq!(top.len(), 4, "{entry}");
        let values: Vec<f64> = top.iter().map(|t| t["logprob"].as_f64().unwrap()).collect();
        assert!(values.windows(2).all(|w| w[0] >= w[1]), "{entry}");
        assert!(
            top.iter()
                .all(|t| t["bytes"].is_array() && t["token"].is_string())
        );
        // Greedy: the sampled token is the most likely one.
        assert_eq!(top[0]["logprob"], entry["logprob"], "{entry}");
        assert_eq!(top[0]["bytes"], entry["bytes"], "{entry}");
    }
    // Streamed, each token's chunk carries the same alternatives.
    let mut streamed = chat;
    streamed["stream"] = json!(true);
    let (_, _, body) = raw(
        &server,
        "POST",
        "/v1/chat/completions",
        &streamed.to_string(),
    );
    let entries: Vec<Value> = data_events(&body)
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter_map(|c| c["choices"][0]["logprobs"]["content"].as_array().cloned())
        .flatten()
        .collect();
    assert_eq!(
        &Value::from(entries),
        &answer["choices"][0]["logprobs"]["content"]
    );

    // Completions: `logprobs: N` gives a {token: logprob} map per token.
    let completion = json!({"prompt": "12+34=", "max_tokens": 5, "temperature": 0, "logprobs": 3});
    let (status, answer) = post(&server, "/v1/completions", completion);
    assert_eq!(status, 200, "{answer}");
    let logprobs = &answer["choices"][0]["logprobs"];
    let tops = logprobs["top_logprobs"].as_array().unwrap();
    let tokens = logprobs["tokens"].as_array().unwrap();
    assert_eq!(tops.len(), tokens.len());
    for (t, top) in tops.iter().enumerate() {
        let top = top.as_object().unwrap();
        assert!(!top.is_empty() && top.len() <= 3, "{top:?}");
        let token = tokens[t].as_str().unwrap();
        assert_eq!(top[token], logprobs["token_logprobs"][t], "{top:?}");
    }

    // OpenAI's limits: 0 to 20 alternatives (chat, with `logprobs: true`), 0 to 5 (completions).
    for (endpoint, body, param) in [
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": "a"}], "logprobs": true, "top_logprobs": 21}),
            "top_logprobs",
        ),
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": "a"}], "top_logprobs": 2}),
            "top_logprobs",
        ),
        (
            "/v1/completions",
            json!({"prompt": "a", "logprobs": 6}),
            "logprobs",
        ),
    ] {
        let (status, answer) = post(&server, endpoint, body);
        assert_eq!(
            (status, answer["error"]["param"].as_str()),
            (400, Some(param)),
            "{answer}"
        );
    }
}

/// Reads one response whose body has a Content-Length, leaving the connection open.
fn read_response(reader: &mut BufReader<TcpStream>) -> (u16, String, String) {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let length = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .map_or(0, |(_, v)| v.trim().parse().unwrap());
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    (status, head, String::from_utf8(body).unwrap())
}

/// A connection to `server`: a reader of responses and the stream to write requests to.
fn connect(server: &Server) -> (BufReader<TcpStream>, TcpStream) {
    let stream = TcpStream::connect(&server.address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    (BufReader::new(stream.try_clone().unwrap()), stream)
}

/// Whether the server has closed the connection (end of stream within a few seconds).
fn closed(reader: &mut BufReader<TcpStream>) -> bool {
    reader
        .get_ref()
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    matches!(reader.read(&mut [0u8; 1]), Ok(0))
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let server = start(&[]);
    let (mut reader, mut writer) = connect(&server);
    write!(writer, "GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let (status, head, _) = read_response(&mut reader);
    assert_eq!(status, 200, "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );
    let body = json!({"prompt": "1+1=", "max_tokens": 3, "seed": 1}).to_string();
    let (_, alone) = post(
        &server,
        "/v1/completions",
        serde_json::from_str(&body).unwrap(),
    );
    for _ in 0..2 {
        write!(
            writer,
            "POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let (status, head, answer) = read_response(&mut reader);
        assert_eq!(status, 200, "{head}");
        let answer: Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(answer["choices"], alone["choices"]);
    }
    // Two requests sent at once (pipelined) are answered in order.
    write!(
        writer,
        "GET /health HTTP/1.1\r\nHost: localhost\r\n\r\nGET /v1/models HTTP/1.1\r\nHost: localhost\r\n\r\n"
    )
    .unwrap();
    assert_eq!(
        read_response(&mut reader).2,
        r#"{"status":"ok","weight_version":"0"}"#
    );
    assert!(read_response(&mut reader).2.contains("\"tiny\""));
    // `Connection: close` is honoured: answered, then closed.
    write!(
        writer,
        "GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let (status, head, _) = read_response(&mut reader);
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );
    assert!(closed(&mut reader));
}

#[test]
fn keep_alive_connections_are_bounded_by_a_request_cap_and_an_idle_timeout() {
    let server = start(&[
        "--max-requests-per-connection",
        "2",
        "--keep-alive-secs",
        "1",
    ]);
    let (mut reader, mut writer) = connect(&server);
    for i in 0..2 {
        write!(writer, "GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
        let (status, head, _) = read_response(&mut reader);
        assert_eq!(status, 200, "{head}");
        assert_eq!(
            head.to_ascii_lowercase().contains("connection: close"),
            i == 1,
            "{head}"
        );
    }
    assert!(closed(&mut reader));
    // An idle connection is closed after the keep-alive timeout, without an answer.
    let (mut reader, mut writer) = connect(&server);
    write!(writer, "GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut reader).0, 200);
    let started = std::time::Instant::now();
    assert!(closed(&mut reader));
    assert!(started.elapsed() < Duration::from_secs(4));
}

/// Sends `chunks` as a chunked request body (without the final empty chunk when `finish` is
/// false) and returns the connection.
fn chunked_post(server: &Server, path: &str, chunks: &[&str], finish: bool) -> TcpStream {
    let mut stream = TcpStream::connect(&server.address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    for chunk in chunks {
        request.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
    }
    if finish {
        request.push_str("0\r\n\r\n");
    }
    stream.write_all(request.as_bytes()).unwrap();
    stream
}

fn response_of(mut stream: TcpStream) -> (u16, Value) {
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[test]
fn chunked_request_bodies_are_read() {
    let server = start(&[]);
    let body = json!({"prompt": "1+1=", "max_tokens": 3, "seed": 4}).to_string();
    let (a, b) = body.split_at(7);
    let (status, answer) = response_of(chunked_post(&server, "/v1/completions", &[a, b], true));
    assert_eq!(status, 200, "{answer}");
    let (_, alone) = post(
        &server,
        "/v1/completions",
        serde_json::from_str(&body).unwrap(),
    );
    assert_eq!(answer["choices"], alone["choices"]);
}

#[test]
fn chunked_bodies_over_the_limit_get_413() {
    let server = start(&["--max-body-bytes", "2000"]);
    let piece = "x".repeat(1000);
    let stream = chunked_post(&server, "/v1/completions", &[&piece, &piece, &piece], true);
    let (status, answer) = response_of(stream);
    assert_eq!(status, 413, "{answer}");
    assert_eq!(
        post(
            &server,
            "/v1/completions",
            json!({"prompt": "a", "max_tokens": 1})
        )
        .0,
        200
    );
}

#[test]
fn slow_chunked_bodies_get_408() {
    let server = start(&["--request-timeout-secs", "1"]);
    let started = std::time::Instant::now();
    let stream = chunked_post(&server, "/v1/completions", &["{\"prompt\": "], false);
    let (status, answer) = response_of(stream);
    assert_eq!(status, 408, "{answer}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn streamed_tokens_are_sent_as_they_are_sampled() {
    let server = start(&[]);
    let request =
        json!({"prompt": "x", "max_tokens": 400, "temperature": 0.7, "seed": 29, "logprobs": 0});
    let (_, whole) = post(&server, "/v1/completions", request.clone());
    let tokens = whole["choices"][0]["logprobs"]["tokens"]
        .as_array()
        .unwrap()
        .len();
    assert!(
        tokens >= 100,
        "the setting samples too few tokens to time: {whole}"
    );
    let mut streamed = request;
    streamed["stream"] = json!(true);
    let body = streamed.to_string();
    let (mut reader, mut writer) = connect(&server);
    let sent = std::time::Instant::now();
    write!(
        writer,
        "POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let (mut first, mut last) = (None, Duration::ZERO);
    let mut events = String::new();
    let mut line = String::new();
    while reader.read_line(&mut line).unwrap_or(0) > 0 {
        if line.starts_with("data: {") && first.is_none() {
            first = Some(sent.elapsed());
        }
        if line.starts_with("data: ") {
            last = sent.elapsed();
            events.push_str(&line);
            events.push('\n');
        }
        line.clear();
    }
    let first = first.expect("no chunk");
    // The first token's chunk arrives long before the last one's (sent as it is sampled).
    assert!(
        first * 4 < last,
        "first chunk after {first:?}, last after {last:?}"
    );
    let chunks: Vec<Value> = data_events(&events)
        .iter()
        .filter_map(|e| serde_json::from_str(e).ok())
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["text"].as_str())
        .collect();
    assert_eq!(text, whole["choices"][0]["text"].as_str().unwrap());
    let logprobs: Vec<Value> = chunks
        .iter()
        .filter_map(|c| {
            c["choices"][0]["logprobs"]["token_logprobs"]
                .as_array()
                .cloned()
        })
        .flatten()
        .collect();
    assert_eq!(
        Value::from(logprobs),
        whole["choices"][0]["logprobs"]["token_logprobs"]
    );
}

#[test]
fn streamed_text_never_includes_a_stop_string() {
    let server = start(&[]);
    let greedy = json!({"prompt": "abc", "max_tokens": 24, "temperature": 0});
    let (_, full) = post(&server, "/v1/completions", greedy.clone());
    let text: Vec<char> = full["choices"][0]["text"]
        .as_str()
        .unwrap()
        .chars()
        .collect();
    if text.len() < 6 {
        return;
    }
    // Stop strings of one and of several characters (spanning tokens).
    for stop in [text[3..5].iter().collect::<String>(), text[2].to_string()] {
        let mut request = greedy.clone();
        request["stop"] = json!([stop]);
        let (_, cut) = post(&server, "/v1/completions", request.clone());
        request["stream"] = json!(true);
        let (status, _, body) = raw(&server, "POST", "/v1/completions", &request.to_string());
        assert_eq!(status, 200);
        let pieces: Vec<String> = data_events(&body)
            .iter()
            .filter_map(|e| serde_json::from_str::<Value>(e).ok())
            .filter_map(|c| c["choices"][0]["text"].as_str().map(str::to_string))
            .collect();
        assert!(pieces.iter().all(|p| !p.contains(&stop)), "{pieces:?}");
        assert_eq!(pieces.concat(), cut["choices"][0]["text"].as_str().unwrap());
        assert_eq!(cut["choices"][0]["finish_reason"], "stop");
    }
}

// The rollout server: what a trainer driving `redraft serve` needs (docs/SERVING.md).

/// The name the test server serves its model under (its folder's name).
const BASE: &str = "tiny";

/// The served model's folder and the config.json it was made from.
fn served_model(server: &Server) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = server._dir.path();
    (dir.join("tiny"), dir.join("config.json"))
}

/// Log-probs of `completion` after `prompt` under the model in `dir` (with the adapter in
/// `adapter`), computed in this process by the library.
fn library_logprobs(
    dir: &Path,
    adapter: Option<&Path>,
    prompt: &[u32],
    completion: &[u32],
) -> Vec<f32> {
    use redraft::model::burn::tensor::{Int, Tensor, TensorData};
    use redraft::model::{CausalLm, DeviceSpec};
    let device = DeviceSpec::Cpu.device().unwrap();
    let mut model = CausalLm::load(dir, &device).unwrap();
    if let Some(adapter) = adapter {
        model = model.with_adapter(adapter, &device).unwrap();
    }
    let ids: Vec<i64> = prompt
        .iter()
        .chain(completion)
        .map(|&t| i64::from(t))
        .collect();
    let n = ids.len();
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, n]), &device);
    let (lp, _) = model.next_token_stats(tokens, None, 1.0, false).unwrap();
    let lp = lp.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
    lp[prompt.len() - 1..].to_vec()
}

/// A PEFT adapter for the model in `model_dir` with non-zero B (so it changes the model),
/// written to `out`.
fn write_adapter(model_dir: &Path, out: &Path) {
    use redraft::model::{CausalLm, DeviceSpec, LoraConfig, SaveDType, safetensors_bytes};
    let device = DeviceSpec::Cpu.device().unwrap();
    let config = LoraConfig {
        rank: 4,
        alpha: 8.0,
        dropout: 0.0,
        target_modules: vec!["q_proj".into(), "v_proj".into(), "down_proj".into()],
        use_rslora: false,
    };
    let model = CausalLm::load(model_dir, &device)
        .unwrap()
        .with_new_lora(&config, "test", 5, &device)
        .unwrap();
    let mut tensors = model.export_lora();
    for t in tensors.iter_mut().filter(|t| t.name.contains("lora_B")) {
        for (i, v) in t.values.iter_mut().enumerate() {
            *v = ((i % 7) as f32 - 3.0) * 0.2;
        }
    }
    std::fs::create_dir_all(out).unwrap();
    std::fs::write(
        out.join("adapter_config.json"),
        config.to_peft_json().to_string(),
    )
    .unwrap();
    std::fs::write(
        out.join("adapter_model.safetensors"),
        safetensors_bytes(&tensors, SaveDType::F32).unwrap(),
    )
    .unwrap();
}

/// A completion of token-id `prompt` by `model`, asking for token ids back.
fn sample_ids(server: &Server, model: &str, prompt: &[u32]) -> (u16, Value) {
    post(
        server,
        "/v1/completions",
        json!({"model": model, "prompt": prompt, "max_tokens": 6, "temperature": 1.0, "seed": 11,
               "logprobs": 0, "return_tokens_as_token_ids": true, "return_token_ids": true}),
    )
}

/// The sampled ids and their log-probs, checked to agree with `logprobs.tokens`.
fn ids_and_logprobs(body: &Value) -> (Vec<u32>, Vec<f32>) {
    let choice = &body["choices"][0];
    let ids: Vec<u32> = serde_json::from_value(choice["token_ids"].clone()).unwrap();
    let names: Vec<String> = serde_json::from_value(choice["logprobs"]["tokens"].clone()).unwrap();
    let named: Vec<String> = ids.iter().map(|id| format!("token_id:{id}")).collect();
    assert_eq!(names, named, "{body}");
    let lp: Vec<f32> =
        serde_json::from_value(choice["logprobs"]["token_logprobs"].clone()).unwrap();
    (ids, lp)
}

fn max_gap(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).fold(0.0, |m, (x, y)| m.max((x - y).abs()))
}

#[test]
fn token_ids_go_in_and_come_back_with_their_logprobs() {
    let server = start(&[]);
    let prompt: Vec<u32> = "12+30=".bytes().map(u32::from).collect();
    let (status, body) = sample_ids(&server, BASE, &prompt);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["prompt_token_ids"], json!(prompt));
    assert_eq!(body["weight_version"], "0");
    let (ids, lp) = ids_and_logprobs(&body);
    assert!(!ids.is_empty());
    let (model, _) = served_model(&server);
    let gap = max_gap(&lp, &library_logprobs(&model, None, &prompt, &ids));
    assert!(gap <= 1e-4, "served log-probs are {gap} off a re-score");
    // Chat answers carry them too, and the alternatives are named by id.
    let (status, body) = post(
        &server,
        "/v1/chat/completions",
        json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "logprobs": true,
               "top_logprobs": 2, "return_tokens_as_token_ids": true, "return_token_ids": true}),
    );
    assert_eq!(status, 200, "{body}");
    let choice = &body["choices"][0];
    let ids: Vec<u32> = serde_json::from_value(choice["token_ids"].clone()).unwrap();
    let content = choice["logprobs"]["content"].as_array().unwrap();
    assert_eq!(content.len(), ids.len());
    for (entry, id) in content.iter().zip(&ids) {
        assert_eq!(entry["token"], format!("token_id:{id}"));
        for alt in entry["top_logprobs"].as_array().unwrap() {
            assert!(
                alt["token"].as_str().unwrap().starts_with("token_id:"),
                "{alt}"
            );
        }
    }
    assert!(!body["prompt_token_ids"].as_array().unwrap().is_empty());
}

#[test]
fn lora_adapters_are_loaded_served_and_unloaded_by_name() {
    let server = start(&[]);
    let (model, _) = served_model(&server);
    let adapter = server._dir.path().join("adapter-1");
    write_adapter(&model, &adapter);
    let load = |name: &str, path: &Path| {
        post(
            &server,
            "/v1/load_lora_adapter",
            json!({"lora_name": name, "lora_path": path}),
        )
    };
    let (status, body) = load("step-1", &adapter);
    assert_eq!(status, 200, "{body}");
    let (_, models) = request(&server, "GET", "/v1/models", "");
    let names: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(names, [BASE, "step-1"]);
    assert_eq!(models["data"][1]["parent"], BASE);
    // Requests naming the adapter sample with it: their log-probs are the adapter's.
    let prompt: Vec<u32> = "7+5=".bytes().map(u32::from).collect();
    let (status, body) = sample_ids(&server, "step-1", &prompt);
    assert_eq!(status, 200, "{body}");
    let (ids, lp) = ids_and_logprobs(&body);
    let with = library_logprobs(&model, Some(&adapter), &prompt, &ids);
    let without = library_logprobs(&model, None, &prompt, &ids);
    assert!(max_gap(&lp, &with) <= 1e-4, "{lp:?} vs {with:?}");
    assert!(
        max_gap(&lp, &without) > 1e-3,
        "the adapter must change the model"
    );
    // A second load under the same name, a missing folder and an empty name are refused by
    // name; the server goes on.
    let (status, body) = load("step-1", &adapter);
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already loaded"),
        "{body}"
    );
    let missing = server._dir.path().join("nowhere");
    let (status, body) = load("step-2", &missing);
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nowhere"),
        "{body}"
    );
    let (status, _) = load("", &adapter);
    assert_eq!(status, 400);
    // Unloaded, the name is no longer served.
    let (status, _) = post(
        &server,
        "/v1/unload_lora_adapter",
        json!({"lora_name": "step-1"}),
    );
    assert_eq!(status, 200);
    let (status, body) = sample_ids(&server, "step-1", &prompt);
    assert_eq!(status, 404, "{body}");
    let (status, _) = post(
        &server,
        "/v1/unload_lora_adapter",
        json!({"lora_name": "step-1"}),
    );
    assert_eq!(status, 404);
    let (status, _) = sample_ids(&server, BASE, &prompt);
    assert_eq!(status, 200);
}

#[test]
fn new_weights_are_read_from_disk_under_a_version() {
    let server = start(&[]);
    let (model, config) = served_model(&server);
    let adapter = server._dir.path().join("adapter");
    write_adapter(&model, &adapter);
    let (status, _) = post(
        &server,
        "/v1/load_lora_adapter",
        json!({"lora_name": "lora", "lora_path": adapter}),
    );
    assert_eq!(status, 200);
    // The same configuration, other weights.
    let next = server._dir.path().join("next");
    init_model(&config, &next, Some("11"));
    let update = |path: &Path, version: Option<&str>| {
        post(
            &server,
            "/update_weights_from_disk",
            json!({"model_path": path, "weight_version": version}),
        )
    };
    let (status, body) = update(&next, Some("step-1"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], true);
    let (_, version) = request(&server, "GET", "/get_weight_version", "");
    assert_eq!(version["weight_version"], "step-1");
    let prompt: Vec<u32> = "3+4=".bytes().map(u32::from).collect();
    let (_, body) = sample_ids(&server, BASE, &prompt);
    assert_eq!(body["weight_version"], "step-1");
    let (ids, lp) = ids_and_logprobs(&body);
    assert!(max_gap(&lp, &library_logprobs(&next, None, &prompt, &ids)) <= 1e-4);
    // The adapter was read again onto the new weights.
    let (_, body) = sample_ids(&server, "lora", &prompt);
    let (ids, lp) = ids_and_logprobs(&body);
    assert!(max_gap(&lp, &library_logprobs(&next, Some(&adapter), &prompt, &ids)) <= 1e-4);
    // Without a version, the next number; a model of another shape is refused and the served
    // weights stay.
    let (status, body) = update(&model, None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["weight_version"], "1");
    let other = server._dir.path().join("other");
    other_shaped_model(&other);
    let (status, body) = update(&other, Some("bad"));
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("configuration"),
        "{body}"
    );
    let (_, version) = request(&server, "GET", "/health", "");
    assert_eq!(version["weight_version"], "1");
    let (status, body) = update(&server._dir.path().join("missing"), None);
    assert_eq!(status, 400, "{body}");
    let (status, _) = sample_ids(&server, BASE, &prompt);
    assert_eq!(status, 200);
}

/// A model of another shape (the shipped tiny config with one more layer) at `out`.
fn other_shaped_model(out: &Path) {
    let config = out.with_extension("json");
    tiny_config(&config, |json| {
        json["num_hidden_layers"] = json!(json["num_hidden_layers"].as_u64().unwrap() + 1);
    });
    init_model(&config, out, None);
}

#[test]
fn vllm_sampling_parameters_and_exact_generators_are_honoured_or_refused_by_name() {
    let server = start(&[]);
    let ask = |extra: Value| {
        let mut body = json!({"prompt": [72, 105, 33], "max_tokens": 8, "temperature": 1.0,
            "logprobs": 0, "return_token_ids": true, "return_tokens_as_token_ids": true,
            "ignore_eos": true});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (status, answer) = post(&server, "/v1/completions", body);
        assert_eq!(status, 200, "{answer}");
        let (ids, _) = ids_and_logprobs(&answer);
        (ids, answer["choices"][0]["finish_reason"].clone())
    };
    let (greedy, _) = ask(json!({"temperature": 0.0}));
    assert_eq!(greedy.len(), 8, "ignore_eos: only the length ends it");
    // top_k = 1 keeps only the most likely token: greedy decoding at any temperature.
    assert_eq!(ask(json!({"top_k": 1, "seed": 3})).0, greedy);
    // A stop token id ends the choice with it, whatever the model's own end tokens.
    let stop = greedy[2];
    let (ids, finish) = ask(json!({"temperature": 0.0, "stop_token_ids": [stop]}));
    let first = greedy.iter().position(|&t| t == stop).unwrap();
    assert_eq!(ids, greedy[..=first], "ends at the stop id, kept");
    assert_eq!(finish, "stop");
    // rng_state: the generator itself travels; the draws are the library's for that generator.
    let mut rng = redraft::rollout::row_rng(99, 4);
    let state = redraft::rollout::rng_state(&rng);
    let (served, _) = ask(json!({"rng_state": state, "seed": 1}));
    let (again, _) = ask(json!({"rng_state": state, "seed": 2}));
    assert_eq!(served, again, "rng_state overrides seed");
    rng.set_word_pos(16);
    let (moved, _) = ask(json!({"rng_state": redraft::rollout::rng_state(&rng)}));
    assert_ne!(
        moved, served,
        "another position of the stream draws otherwise"
    );

    for (field, value) in [
        ("top_k", json!(-2)),
        ("min_p", json!(1.5)),
        ("stop_token_ids", json!([100_000])),
        ("rng_state", json!({"seed": "00", "stream": 0})),
    ] {
        let mut body = json!({"prompt": [72], "max_tokens": 2});
        body[field] = value;
        let (status, answer) = post(&server, "/v1/completions", body);
        assert_eq!(
            (status, answer["error"]["param"].as_str()),
            (400, Some(field)),
            "{answer}"
        );
    }
}

#[test]
fn a_request_joins_the_running_batch_instead_of_waiting_for_it() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let server = start(&["--max-batch-rows", "64"]);
    let long =
        json!({"prompt": "x", "n": 16, "max_tokens": 480, "temperature": 1.0, "ignore_eos": true});
    let long_done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let long = scope.spawn(|| {
            let answer = post(&server, "/v1/completions", long);
            long_done.store(true, Ordering::SeqCst);
            answer
        });
        std::thread::sleep(Duration::from_millis(400));
        let (status, body) = post(
            &server,
            "/v1/completions",
            json!({"prompt": "a", "max_tokens": 3, "ignore_eos": true}),
        );
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["choices"][0]["finish_reason"], "length", "{body}");
        // Answered while the long request is still decoding: it joined the running batch.
        assert!(
            !long_done.load(Ordering::SeqCst),
            "the short request waited for the long one to end"
        );
        let (status, body) = long.join().unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["choices"].as_array().unwrap().len(), 16);
    });
}
