//! A small HTTP/1.1 layer on `std::net`: one request per connection, read under a deadline
//! (head and body), answered with `Connection: close`. Owning the socket is what lets the
//! server time out slow clients, notice clients that hang up, and stream server-sent events.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

/// Largest request head (request line and headers) accepted.
const MAX_HEAD_BYTES: usize = 32 * 1024;

/// A request whose head and body have been read.
pub(crate) struct Request {
    pub(crate) method: String,
    /// The path, without the query string.
    pub(crate) path: String,
    pub(crate) body: Vec<u8>,
}

/// Why no request could be read.
pub(crate) enum ReadError {
    /// The client closed the connection (nothing to answer).
    Closed,
    /// The deadline passed before the whole request arrived (answered 408).
    Timeout,
    /// The announced body is larger than the limit (answered 413).
    TooLarge(usize),
    /// Not a request this server understands (answered 400).
    Malformed(String),
}

/// Reads one request, giving up at `deadline`.
pub(crate) fn read_request(
    stream: &mut TcpStream,
    deadline: Instant,
    max_body: usize,
) -> Result<Request, ReadError> {
    let mut buffer = Vec::with_capacity(1024);
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        if buffer.len() > MAX_HEAD_BYTES {
            return Err(ReadError::Malformed(format!(
                "request head larger than {MAX_HEAD_BYTES} bytes"
            )));
        }
        read_some(stream, deadline, &mut buffer)?;
    };
    let head = std::str::from_utf8(&buffer[..head_end])
        .map_err(|_| ReadError::Malformed("the request head is not UTF-8".into()))?;
    let mut lines = head.split("\r\n");
    let mut parts = lines.next().unwrap_or("").split(' ');
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Err(ReadError::Malformed("bad request line".into()));
    };
    let (method, path) = (
        method.to_string(),
        target.split('?').next().unwrap_or("").to_string(),
    );
    let mut length = 0usize;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(ReadError::Malformed(format!("bad header line `{line}`")));
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("content-length") {
            length = value
                .parse()
                .map_err(|_| ReadError::Malformed(format!("bad Content-Length `{value}`")))?;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(ReadError::Malformed(
                "chunked request bodies are not supported; send Content-Length".into(),
            ));
        }
    }
    if length > max_body {
        return Err(ReadError::TooLarge(max_body));
    }
    let mut body = buffer.split_off(head_end + 4);
    while body.len() < length {
        read_some(stream, deadline, &mut body)?;
    }
    body.truncate(length);
    Ok(Request { method, path, body })
}

/// Appends what the socket has, waiting at most until `deadline`.
fn read_some(
    stream: &mut TcpStream,
    deadline: Instant,
    buffer: &mut Vec<u8>,
) -> Result<(), ReadError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(ReadError::Timeout);
    }
    stream
        .set_read_timeout(Some(left))
        .map_err(|_| ReadError::Closed)?;
    let mut chunk = [0u8; 8192];
    match stream.read(&mut chunk) {
        Ok(0) => Err(ReadError::Closed),
        Ok(n) => {
            buffer.extend_from_slice(&chunk[..n]);
            Ok(())
        }
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            Err(ReadError::Timeout)
        }
        Err(e) if e.kind() == ErrorKind::Interrupted => Ok(()),
        Err(_) => Err(ReadError::Closed),
    }
}

/// The reason phrase of the status codes this server sends.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    }
}

/// Writes a whole response and closes the connection. Errors mean the client left.
pub(crate) fn respond(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    extra_headers: &[(&str, String)],
    body: &[u8],
) {
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        reason(status),
        body.len()
    );
    for (name, value) in extra_headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body))
        .and_then(|()| stream.flush());
    close(stream);
}

/// Ends a connection so that the client reads the whole response: stop writing, then drain
/// (briefly) what it still sends, since closing on unread input resets the connection.
pub(crate) fn close(stream: &mut TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut sink = [0u8; 8192];
    let mut drained = 0usize;
    while drained < (1 << 20) {
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}

/// Starts a server-sent event stream (the body runs until the connection closes).
pub(crate) fn start_events(stream: &mut TcpStream) -> std::io::Result<()> {
    stream.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n",
    )
}

/// Sends one event: `data: <payload>` and a blank line.
pub(crate) fn send_event(stream: &mut TcpStream, payload: &str) -> std::io::Result<()> {
    stream.write_all(format!("data: {payload}\n\n").as_bytes())?;
    stream.flush()
}

/// Whether the client has closed its side of the connection (checked without blocking).
pub(crate) fn hung_up(stream: &TcpStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return true;
    }
    let mut probe = [0u8; 1];
    let gone = match stream.peek(&mut probe) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != ErrorKind::WouldBlock,
    };
    let _ = stream.set_nonblocking(false);
    gone
}
