//! A small OpenAI-compatible test server on 127.0.0.1 (real TCP, no mocks of the HTTP layer).
//!
//! It answers `POST /v1/chat/completions` with what a behaviour function says for each request,
//! records the requests, measures how many were in flight at once, and stops by itself: it
//! accepts at most `max_connections` connections and gives up accepting after `lifetime`.

#![allow(dead_code, unreachable_pub)] // Each test file uses a different part of this module.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// What the server does with one request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// 200 with a chat completion whose content is this text.
    Content(String),
    /// This status and body, with an optional `Retry-After` header.
    Status(u16, String, Option<String>),
    /// 200 with this raw body (malformed on purpose).
    Raw(String),
    /// Sleep, then reply.
    Delay(Duration, Box<Reply>),
    /// Close the connection without answering.
    Close,
}

impl Reply {
    pub fn content(s: &str) -> Self {
        Reply::Content(s.to_string())
    }

    pub fn openai_error(status: u16, message: &str) -> Self {
        Reply::Status(
            status,
            json!({"error": {"message": message, "type": "server_error"}}).to_string(),
            None,
        )
    }
}

/// One request the server received.
#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub authorization: Option<String>,
    pub body: Value,
}

type Behaviour = dyn Fn(usize, &Value) -> Reply + Send + Sync;

pub struct TestServer {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Vec<Received>>>,
    pub max_in_flight: Arc<AtomicUsize>,
}

impl TestServer {
    /// A server answering request number `n` (0-based, in arrival order) with
    /// `behaviour(n, body)`.
    pub fn start(behaviour: impl Fn(usize, &Value) -> Reply + Send + Sync + 'static) -> Self {
        Self::start_with(64, Duration::from_secs(15), behaviour)
    }

    pub fn start_with(
        max_connections: usize,
        lifetime: Duration,
        behaviour: impl Fn(usize, &Value) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("local addr");
        let received = Arc::new(Mutex::new(Vec::new()));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let max_in_flight = Arc::new(AtomicUsize::new(0));
        let counter = Arc::new(AtomicUsize::new(0));
        let behaviour: Arc<Behaviour> = Arc::new(behaviour);
        {
            let received = received.clone();
            let max_in_flight = max_in_flight.clone();
            thread::spawn(move || {
                let deadline = Instant::now() + lifetime;
                let mut accepted = 0;
                while accepted < max_connections && Instant::now() < deadline {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            accepted += 1;
                            let (received, behaviour) = (received.clone(), behaviour.clone());
                            let (in_flight, max_in_flight) =
                                (in_flight.clone(), max_in_flight.clone());
                            let counter = counter.clone();
                            thread::spawn(move || {
                                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                                max_in_flight.fetch_max(now, Ordering::SeqCst);
                                handle(stream, &received, &counter, &*behaviour);
                                in_flight.fetch_sub(1, Ordering::SeqCst);
                            });
                        }
                        Err(_) => thread::sleep(Duration::from_millis(2)),
                    }
                }
            });
        }
        Self {
            addr,
            received,
            max_in_flight,
        }
    }

    /// The base URL (`http://127.0.0.1:PORT/v1`).
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// How many requests arrived.
    pub fn hits(&self) -> usize {
        self.received.lock().unwrap().len()
    }
}

fn handle(
    mut stream: TcpStream,
    received: &Mutex<Vec<Received>>,
    counter: &AtomicUsize,
    behaviour: &Behaviour,
) {
    stream.set_nonblocking(false).ok();
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    // Headers.
    let header_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if buf.len() > 1 << 20 {
            return;
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_string();
    let mut lines = head.lines();
    let path = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("")
        .to_string();
    let mut content_length = 0;
    let mut authorization = None;
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "content-length" => content_length = v.trim().parse().unwrap_or(0),
                "authorization" => authorization = Some(v.trim().to_string()),
                _ => {}
            }
        }
    }
    while buf.len() < header_end + content_length {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body: Value = serde_json::from_slice(&buf[header_end..header_end + content_length])
        .unwrap_or(Value::Null);
    let n = counter.fetch_add(1, Ordering::SeqCst);
    received.lock().unwrap().push(Received {
        path: path.clone(),
        authorization,
        body: body.clone(),
    });
    let reply = if path == "/v1/chat/completions" {
        behaviour(n, &body)
    } else {
        Reply::openai_error(404, "not found")
    };
    respond(&mut stream, reply, &body);
}

fn respond(stream: &mut TcpStream, reply: Reply, request: &Value) {
    let (status, body, retry_after) = match reply {
        Reply::Delay(d, inner) => {
            thread::sleep(d);
            return respond(stream, *inner, request);
        }
        Reply::Close => return,
        Reply::Content(text) => (
            200,
            json!({
                "id": "chatcmpl-test",
                "object": "chat.completion",
                "model": request.get("model").cloned().unwrap_or(Value::Null),
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop"
                }],
                "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
            })
            .to_string(),
            None,
        ),
        Reply::Raw(body) => (200, body, None),
        Reply::Status(s, body, ra) => (s, body, ra),
    };
    let mut head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if let Some(ra) = retry_after {
        head.push_str(&format!("Retry-After: {ra}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body.as_bytes());
    let _ = stream.flush();
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
