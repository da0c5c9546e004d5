//! A small HTTP/1.1 layer on `std::net`: requests read under a deadline (head and body,
//! `Content-Length` or chunked), several per connection (keep-alive), answered with
//! `Content-Length`; server-sent event streams end their connection. Owning the socket is what
//! lets the server time out slow clients, notice clients that hang up, and stream events.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

/// Largest request head (request line and headers) accepted.
const MAX_HEAD_BYTES: usize = 32 * 1024;
/// Largest chunk-size line or trailer section of a chunked body.
const MAX_CHUNK_LINE_BYTES: usize = 4 * 1024;

/// A request whose head and body have been read.
pub(crate) struct Request {
    pub(crate) method: String,
    /// The path, without the query string.
    pub(crate) path: String,
    pub(crate) body: Vec<u8>,
    /// The client asked to close the connection after the answer (`Connection: close`, or
    /// HTTP/1.0 without `Connection: keep-alive`).
    pub(crate) close: bool,
}

/// Why no request could be read.
pub(crate) enum ReadError {
    /// The client closed the connection (nothing to answer).
    Closed,
    /// The deadline passed before the whole request arrived (answered 408).
    Timeout,
    /// The body is larger than the limit (answered 413).
    TooLarge(usize),
    /// Not a request this server understands (answered 400).
    Malformed(String),
}

/// How a request's body is framed.
enum Framing {
    Length(usize),
    Chunked,
}

/// Reads the requests of one connection: bytes that arrive after a request (a pipelined next
/// one) are kept for the next read.
#[derive(Default)]
pub(crate) struct Reader {
    buffer: Vec<u8>,
}

impl Reader {
    /// Waits until the next request starts arriving; false when the client closed the
    /// connection or sent nothing by `until`.
    pub(crate) fn wait_for_request(&mut self, stream: &mut TcpStream, until: Instant) -> bool {
        !self.buffer.is_empty() || read_some(stream, until, &mut self.buffer).is_ok()
    }

    /// Reads one request, giving up at `deadline`; a body over `max_body` bytes is refused.
    pub(crate) fn read_request(
        &mut self,
        stream: &mut TcpStream,
        deadline: Instant,
        max_body: usize,
    ) -> Result<Request, ReadError> {
        let head_end = loop {
            if let Some(at) = self.buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break at;
            }
            if self.buffer.len() > MAX_HEAD_BYTES {
                return Err(ReadError::Malformed(format!(
                    "request head larger than {MAX_HEAD_BYTES} bytes"
                )));
            }
            read_some(stream, deadline, &mut self.buffer)?;
        };
        let head = std::str::from_utf8(&self.buffer[..head_end])
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
        let http10 = parts.next() == Some("HTTP/1.0");
        let (mut length, mut chunked) = (None, false);
        let (mut close, mut keep_alive) = (false, false);
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                return Err(ReadError::Malformed(format!("bad header line `{line}`")));
            };
            let (name, value) = (name.trim(), value.trim());
            if name.eq_ignore_ascii_case("content-length") {
                length =
                    Some(value.parse::<usize>().map_err(|_| {
                        ReadError::Malformed(format!("bad Content-Length `{value}`"))
                    })?);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                if !value.eq_ignore_ascii_case("chunked") {
                    return Err(ReadError::Malformed(format!(
                        "Transfer-Encoding `{value}` is not supported (only `chunked`)"
                    )));
                }
                chunked = true;
            } else if name.eq_ignore_ascii_case("connection") {
                for option in value.split(',').map(str::trim) {
                    close |= option.eq_ignore_ascii_case("close");
                    keep_alive |= option.eq_ignore_ascii_case("keep-alive");
                }
            }
        }
        let framing = match (length, chunked) {
            (Some(_), true) => {
                return Err(ReadError::Malformed(
                    "both Content-Length and Transfer-Encoding are given".into(),
                ));
            }
            (_, true) => Framing::Chunked,
            (length, false) => Framing::Length(length.unwrap_or(0)),
        };
        self.buffer.drain(..head_end + 4);
        let body = match framing {
            Framing::Length(length) => {
                if length > max_body {
                    return Err(ReadError::TooLarge(max_body));
                }
                while self.buffer.len() < length {
                    read_some(stream, deadline, &mut self.buffer)?;
                }
                self.buffer.drain(..length).collect()
            }
            Framing::Chunked => self.read_chunked(stream, deadline, max_body)?,
        };
        Ok(Request {
            method,
            path,
            body,
            close: close || (http10 && !keep_alive),
        })
    }

    /// Reads a chunked body (chunks, the last empty one, trailers) from the buffer's start.
    fn read_chunked(
        &mut self,
        stream: &mut TcpStream,
        deadline: Instant,
        max_body: usize,
    ) -> Result<Vec<u8>, ReadError> {
        let mut body = Vec::new();
        let mut at = 0;
        loop {
            let end = self.line_end(stream, deadline, at)?;
            let line = std::str::from_utf8(&self.buffer[at..end]).unwrap_or("");
            let digits = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(digits, 16)
                .map_err(|_| ReadError::Malformed(format!("bad chunk size `{line}`")))?;
            at = end + 2;
            if size == 0 {
                // Trailers, up to the empty line that ends the body.
                loop {
                    let end = self.line_end(stream, deadline, at)?;
                    let empty = end == at;
                    at = end + 2;
                    if empty {
                        self.buffer.drain(..at);
                        return Ok(body);
                    }
                }
            }
            if size > max_body - body.len() {
                return Err(ReadError::TooLarge(max_body));
            }
            while self.buffer.len() < at + size + 2 {
                read_some(stream, deadline, &mut self.buffer)?;
            }
            body.extend_from_slice(&self.buffer[at..at + size]);
            if &self.buffer[at + size..at + size + 2] != b"\r\n" {
                return Err(ReadError::Malformed(
                    "a chunk does not end with CRLF".into(),
                ));
            }
            at += size + 2;
        }
    }

    /// Where the line starting at `at` ends (its CR), reading more as needed.
    fn line_end(
        &mut self,
        stream: &mut TcpStream,
        deadline: Instant,
        at: usize,
    ) -> Result<usize, ReadError> {
        loop {
            if let Some(end) = self.buffer[at..].windows(2).position(|w| w == b"\r\n") {
                return Ok(at + end);
            }
            if self.buffer.len() - at > MAX_CHUNK_LINE_BYTES {
                return Err(ReadError::Malformed(format!(
                    "chunk line longer than {MAX_CHUNK_LINE_BYTES} bytes"
                )));
            }
            read_some(stream, deadline, &mut self.buffer)?;
        }
    }
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

/// Writes a whole response; closes the connection unless `keep_alive`. Errors mean the client
/// left.
pub(crate) fn respond(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    extra_headers: &[(&str, String)],
    body: &[u8],
    keep_alive: bool,
) {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: {connection}\r\n",
        reason(status),
        body.len()
    );
    for (name, value) in extra_headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let written = stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body))
        .and_then(|()| stream.flush());
    if written.is_err() || !keep_alive {
        close(stream);
    }
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

/// Starts a server-sent event stream (the body runs until the connection closes, so a stream
/// is a connection's last answer).
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
