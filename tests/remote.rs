//! Rollouts on inference servers (`[rollout.remote]`), with real `redraft serve` processes on
//! 127.0.0.1: runs sampling on two servers equal the same runs in process (CPU, same seeds:
//! identical sampled tokens, log-prob gaps within 1e-4), weights are synced before every step
//! (LoRA adapters by name, full weights from disk), and servers that die or hang are worked
//! around, or the step fails cleanly and `--resume` continues.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use common::{files_in, records, spawn_serve, tiny_config};
use redraft::trainer::{Observer, RunDir, Silent, StepMetrics, TrainConfig, Trainer};
use serde_json::Value;

/// A `redraft serve` process, killed when dropped.
struct Server {
    child: Child,
    address: String,
}

impl Server {
    fn start(model: &Path, extra: &[&str]) -> Self {
        let (child, address) = spawn_serve(model, extra);
        Self { child, address }
    }

    /// A server on `port` (one a killed server held: the run's configuration names it).
    fn on_port(model: &Path, port: u16) -> Self {
        Self::start(model, &["--port", &port.to_string()])
    }

    fn url(&self) -> String {
        format!("http://{}/v1", self.address)
    }

    fn port(&self) -> u16 {
        self.address.rsplit(':').next().unwrap().parse().unwrap()
    }

    fn get(&self, path: &str) -> Value {
        ureq::get(&format!("http://{}{path}", self.address))
            .call()
            .unwrap()
            .into_json()
            .unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The tiny model every run and server here starts from (`redraft init-model`, seed 7), with a
/// context long enough for R^3L's reflection prompts.
fn tiny_model(dir: &Path) -> PathBuf {
    let (config, model) = (dir.join("config.json"), dir.join("tiny"));
    tiny_config(&config, |json| {
        json["max_position_embeddings"] = 4096.into()
    });
    common::ok(common::redraft(&[
        "init-model",
        "--config",
        config.to_str().unwrap(),
        "--out",
        model.to_str().unwrap(),
        "--seed",
        "7",
    ]));
    model
}

/// A run of `method` on the model in `model`, sampling in process or on `servers`.
fn config(method: &str, model: &Path, servers: &[String], extra: &str) -> TrainConfig {
    let remote = if servers.is_empty() {
        String::new()
    } else {
        let list: Vec<String> = servers.iter().map(|s| format!("{s:?}")).collect();
        format!(
            "[rollout.remote]\nservers = [{}]\ntimeout_s = 20\n",
            list.join(", ")
        )
    };
    let text = format!(
        r#"
        method = "{method}"
        steps = 3
        seed = 5
        [model]
        path = "{}"
        [task]
        family = "arithmetic"
        difficulty = {{ digits = 1, prompt = "plain" }}
        [rollout]
        prompts_per_step = 2
        group_size = 4
        max_new_tokens = 10
        [eval]
        problems = 2
        samples = 1
        at_start = false
        with_feedback = false
        [checkpoint]
        every = 1
        [templates]
        r3l_guidance_system = "Guidance: {{{{ guidance }}}}"
        {extra}
        {remote}
        "#,
        model.display()
    );
    TrainConfig::parse(&text, &[]).unwrap()
}

/// Runs `config` to its end in `dir`; returns the run folder.
fn run(config: TrainConfig, dir: &Path) -> PathBuf {
    let mut trainer = Trainer::new(config, dir).unwrap();
    trainer.run(&mut Silent).unwrap();
    dir.to_path_buf()
}

fn rl_metrics(run: &Path) -> Vec<StepMetrics> {
    RunDir::open(run)
        .metrics()
        .unwrap()
        .iter()
        .filter_map(|m| m.rl().cloned())
        .collect()
}

/// Numbers equal within `tol` (relative to their size, at least absolute), everything else
/// exactly.
fn assert_close(a: &Value, b: &Value, tol: f64, at: &str) {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!(
                (x - y).abs() <= tol * x.abs().max(y.abs()).max(1.0),
                "{at}: {x} vs {y}"
            );
        }
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().collect();
            keys.sort();
            let mut other: Vec<&String> = y.keys().collect();
            other.sort();
            assert_eq!(keys, other, "{at}: different fields");
            for k in keys {
                assert_close(&x[k], &y[k], tol, &format!("{at}.{k}"));
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{at}: different lengths");
            for (i, (x, y)) in x.iter().zip(y).enumerate() {
                assert_close(x, y, tol, &format!("{at}[{i}]"));
            }
        }
        _ => assert_eq!(a, b, "{at}"),
    }
}

/// The remote run sampled exactly the in-process run's tokens (its transcripts are equal), its
/// metrics are the same within 1e-4 (losses: the learner re-scores what the servers sampled),
/// and the servers' log-probs were within 1e-4 of the learner's at every step.
fn assert_same_run(local: &Path, remote: &Path) {
    let transcripts = |run: &Path| records(&run.join("transcripts.jsonl"));
    assert_eq!(
        transcripts(local),
        transcripts(remote),
        "sampled tokens differ"
    );
    let strip = |run: &Path| -> Vec<Value> {
        records(&run.join("metrics.jsonl"))
            .into_iter()
            .map(|mut m| {
                m.remove("sampler");
                Value::Object(m)
            })
            .collect()
    };
    assert_close(
        &Value::Array(strip(local)),
        &Value::Array(strip(remote)),
        1e-4,
        "metrics",
    );
    for m in rl_metrics(remote) {
        let s = m.sampler.expect("a remote step records its sampler");
        assert!(s.tokens > 0);
        assert!(
            s.logprob_gap_max <= 1e-4,
            "step {}: gap {}",
            m.step,
            s.logprob_gap_max
        );
        assert_eq!(s.weight_version, format!("redraft-step-{}", m.step - 1));
    }
}

#[test]
fn grpo_on_two_servers_samples_what_it_samples_in_process() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let (a, b) = (Server::start(&model, &[]), Server::start(&model, &[]));
    let local = run(config("grpo", &model, &[], ""), &dir.path().join("local"));
    let remote = run(
        config("grpo", &model, &[a.url(), b.url()], ""),
        &dir.path().join("remote"),
    );
    assert_same_run(&local, &remote);
    for m in rl_metrics(&remote) {
        let s = m.sampler.unwrap();
        assert_eq!((s.servers_ready, s.servers, s.retries), (2, 2, 0));
    }
    // Full fine-tuning syncs weights from disk: both servers hold the last step's version, and
    // only its folder is left.
    for server in [&a, &b] {
        assert_eq!(server.get("/health")["weight_version"], "redraft-step-2");
    }
    assert_eq!(files_in(&remote.join("rollout-sync")), ["redraft-step-2"]);
}

#[test]
fn r3l_reflections_and_retries_sample_on_the_servers_too() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let (a, b) = (Server::start(&model, &[]), Server::start(&model, &[]));
    let local = run(config("r3l", &model, &[], ""), &dir.path().join("local"));
    let remote = run(
        config("r3l", &model, &[a.url(), b.url()], ""),
        &dir.path().join("remote"),
    );
    assert_same_run(&local, &remote);
    // The self-reflections were sampled on the servers (the model is too small to write valid
    // ones, but each was answered).
    for m in rl_metrics(&remote) {
        assert!(m.feedback_requests > 0, "step {}", m.step);
        assert_eq!(m.feedback_failures, 0, "step {}", m.step);
    }
}

#[test]
fn a_lora_run_loads_its_adapter_on_the_servers_every_step() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let (a, b) = (Server::start(&model, &[]), Server::start(&model, &[]));
    let lora =
        "[lora]\nrank = 4\nalpha = 8\ntarget_modules = [\"q_proj\", \"v_proj\", \"down_proj\"]";
    let local = run(config("grpo", &model, &[], lora), &dir.path().join("local"));
    let remote = run(
        config("grpo", &model, &[a.url(), b.url()], lora),
        &dir.path().join("remote"),
    );
    assert_same_run(&local, &remote);
    // Each step's adapter replaced the one before: the servers list only the last.
    for server in [&a, &b] {
        let models = server.get("/v1/models");
        let adapters: Vec<&str> = models["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| !m["parent"].is_null())
            .map(|m| m["id"].as_str().unwrap())
            .collect();
        assert_eq!(adapters, ["redraft-step-2"]);
    }
}

/// How a [`faulty_server`] fails its completions.
#[derive(Clone, Copy)]
enum Fault {
    /// Never answers: it hangs mid-step.
    Hang,
    /// Closes the connection without an answer: it dies mid-request.
    Crash,
}

/// A server that syncs like any other (it answers weight updates and lists a model) but fails
/// every completion with `fault`.
fn faulty_server(fault: Fault) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n) = stream.read(&mut buf) {
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
                if complete(&request) {
                    break;
                }
            }
            let head = String::from_utf8_lossy(&request);
            let body = if head.starts_with("POST /update_weights_from_disk") {
                r#"{"success": true}"#
            } else if head.starts_with("GET /v1/models") {
                r#"{"data": [{"id": "tiny"}]}"#
            } else {
                match fault {
                    Fault::Hang => held.push(stream),
                    Fault::Crash => drop(stream),
                }
                continue;
            };
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

/// Whether `request` holds its headers and the whole body they announce.
fn complete(request: &[u8]) -> bool {
    let text = String::from_utf8_lossy(request);
    let Some(end) = text.find("\r\n\r\n") else {
        return false;
    };
    let length = text[..end]
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    request.len() >= end + 4 + length
}

/// Kills `server` when the run has done `after` RL steps.
struct KillAfter {
    after: u64,
    server: Option<Server>,
}

impl Observer for KillAfter {
    fn rl_step(&mut self, step: u64, _total: u64, _metrics: &StepMetrics) {
        if step == self.after {
            self.server.take();
        }
    }
}

#[test]
fn servers_killed_hanging_or_crashing_mid_run_leave_the_work_to_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let local = run(config("grpo", &model, &[], ""), &dir.path().join("local"));

    let a = Server::start(&model, &[]);
    let b = Server::start(&model, &[]);
    let servers = [
        a.url(),
        b.url(),
        faulty_server(Fault::Hang),
        faulty_server(Fault::Crash),
    ];
    let mut cfg = config("grpo", &model, &servers, "");
    cfg.rollout.remote.as_mut().unwrap().timeout_s = 2.0;
    let run_dir = dir.path().join("remote");
    let mut trainer = Trainer::new(cfg, &run_dir).unwrap();
    let mut kill = KillAfter {
        after: 1,
        server: Some(b),
    };
    trainer.run(&mut kill).unwrap();

    assert_same_run(&local, &run_dir);
    let steps = rl_metrics(&run_dir);
    for m in &steps {
        let s = m.sampler.as_ref().unwrap();
        // The faulty servers synced every step and took requests, which hung (timing out) or
        // lost their connection, and were retried on the others.
        assert!(s.retries > 0, "step {}: no retry", m.step);
        // b was killed after step 1: its next sync failed and it was not used again.
        let expected = if m.step == 1 { 2 } else { 1 };
        assert_eq!(s.servers_ready, expected, "step {}", m.step);
    }
    drop(a);
}

#[test]
fn with_no_server_left_a_step_fails_cleanly_and_resume_continues() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let local = run(config("grpo", &model, &[], ""), &dir.path().join("local"));

    let server = Server::start(&model, &[]);
    let (port, url) = (server.port(), server.url());
    let run_dir = dir.path().join("remote");
    let mut trainer = Trainer::new(
        config("grpo", &model, std::slice::from_ref(&url), ""),
        &run_dir,
    )
    .unwrap();
    let mut kill = KillAfter {
        after: 1,
        server: Some(server),
    };
    let error = trainer.run(&mut kill).unwrap_err().to_string();
    assert!(error.contains("no rollout server left"), "{error}");
    assert!(error.contains(&url), "the server is named: {error}");
    // Nothing of the failed step was written.
    assert_eq!(rl_metrics(&run_dir).len(), 1);
    assert!(
        files_in(&run_dir).iter().all(|f| !f.contains(".tmp")),
        "{:?}",
        files_in(&run_dir)
    );
    drop(trainer);

    // The server is back at the same address: the run resumes and ends as the in-process run.
    let _server = Server::on_port(&model, port);
    let mut resumed = Trainer::resume(&run_dir).unwrap();
    resumed.run(&mut Silent).unwrap();
    assert_same_run(&local, &run_dir);
}

#[test]
fn a_server_on_other_weights_is_detected_by_version_and_left_out() {
    use redraft::rollout::{
        Policy, RemoteOptions, RemotePolicy, RowRequest, SamplingParams, ServerStatus, row_rng,
    };
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let (a, b) = (Server::start(&model, &[]), Server::start(&model, &[]));
    // b first: with no work in flight the first request goes to it.
    let policy = RemotePolicy::new(
        RemoteOptions {
            servers: vec![b.url(), a.url()],
            timeout: Duration::from_secs(20),
            max_attempts: 2,
            max_concurrency: 4,
        },
        4096,
    )
    .unwrap();
    assert_eq!(policy.sync_weights(&model, "v1").unwrap(), 2);
    // b reloads other weights behind the trainer's back.
    let answer: Value = ureq::post(&format!("http://{}/update_weights_from_disk", b.address))
        .send_json(serde_json::json!({"model_path": model, "weight_version": "other"}))
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(answer["weight_version"], "other");
    let rows: Vec<RowRequest> = (0..6)
        .map(|i| RowRequest {
            prompt: vec![72, 105],
            params: SamplingParams {
                max_new_tokens: 4,
                ..SamplingParams::default()
            },
            rng: row_rng(1, i),
        })
        .collect();
    let out = policy.generate(rows, &|_, _| false).unwrap();
    assert!(out.iter().all(|c| c.tokens.len() == 4));
    assert!(
        policy.take_retries() >= 1,
        "b's answer was refused and retried"
    );
    let status = policy.servers();
    assert_eq!(status[1].1, ServerStatus::Ready);
    match &status[0].1 {
        ServerStatus::Stale(why) => assert!(why.contains("`other`"), "{why}"),
        other => panic!("b should be stale, is {other:?}"),
    }
}
