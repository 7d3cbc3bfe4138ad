//! The HTTP/1.1 side: a thread per connection (at most [`MAX_CONNECTIONS`]), one request per
//! connection (`Connection: close`), bodies only with a `Content-Length` of at most
//! [`MAX_BODY_BYTES`], HTTP Basic auth, JSON replies, and a panic in a handler answered with
//! a 500 while the server goes on.
//!
//! Written on `std::net` rather than taken from a crate: tiny_http (0.12), the usual small
//! synchronous server, drains an unread body on drop into a buffer as large as the declared
//! `Content-Length`, so one request claiming a terabyte would abort the process. What the
//! A1111 API needs from HTTP is small enough to own and bound.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

/// Request bodies larger than this are refused (a 16384² PNG in base64 fits; A1111 has no
/// bound at all).
pub const MAX_BODY_BYTES: usize = 64 << 20;
/// Request line and headers together.
const MAX_HEAD_BYTES: u64 = 64 << 10;
const MAX_HEADERS: usize = 100;
/// Connections served at once; more are answered 503 at once. Each may hold a body of
/// [`MAX_BODY_BYTES`] and its decoded pictures.
const MAX_CONNECTIONS: usize = 32;
/// A client that sends nothing (or reads nothing) for this long is dropped. Waiting for a
/// generation is the server's time, not the socket's, and does not count.
const IO_TIMEOUT: Duration = Duration::from_secs(60);
/// The whole request (and the draining of a refused body) must arrive within this, so that
/// a client trickling a byte a minute cannot hold a connection for long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
/// After refusing a body, this much of it is still read (and dropped), so that the client,
/// still sending, gets the answer instead of a connection reset.
const MAX_DRAIN_BYTES: usize = 256 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Other,
}

/// A request as the routes see it: the body read in full.
#[derive(Debug)]
pub struct Request {
    pub method: Method,
    /// Without the query.
    pub path: String,
    /// After `?`, undecoded; empty when there is none.
    pub query: String,
    pub body: Vec<u8>,
}

/// What answers requests; the `Ok` value is sent as JSON with status 200.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, request: &Request) -> Result<Value, ApiError>;
}

/// A request answered with an error status and a JSON body
/// `{"error": KIND, "detail": MESSAGE}` (FastAPI's `detail`, which A1111 clients print).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{status} {kind}: {detail}")]
pub struct ApiError {
    pub status: u16,
    pub kind: &'static str,
    pub detail: String,
    /// The request fields at fault, when there are some.
    pub fields: Vec<String>,
}

impl ApiError {
    fn new(status: u16, kind: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            detail: detail.into(),
            fields: Vec::new(),
        }
    }

    /// The body is not what the endpoint reads (not JSON, not an object).
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", detail)
    }

    /// A field's value cannot be used.
    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(422, "InvalidRequest", detail)
    }

    /// Fields that would change the image in A1111 but are not supported here.
    pub fn unsupported(problems: Vec<(String, String)>) -> Self {
        let detail = problems
            .iter()
            .map(|(field, why)| format!("{field}: {why}"))
            .collect::<Vec<_>>()
            .join("; ");
        Self {
            status: 422,
            kind: "UnsupportedFields",
            detail: format!("not supported by this server: {detail}"),
            fields: problems.into_iter().map(|(field, _)| field).collect(),
        }
    }

    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(500, "InternalError", detail)
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(503, "Unavailable", detail)
    }

    fn body(&self) -> Value {
        let mut body = json!({ "error": self.kind, "detail": self.detail });
        if !self.fields.is_empty() {
            body["fields"] = json!(self.fields);
        }
        body
    }
}

/// One `user:password` pair allowed in (HTTP Basic).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    user: String,
    password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}:…)", self.user)
    }
}

impl Credentials {
    /// `user:password`, several separated by commas (A1111's `--api-auth` format).
    pub fn parse_list(text: &str) -> Result<Vec<Credentials>, String> {
        text.split(',')
            .map(|pair| match pair.split_once(':') {
                Some((user, password)) if !user.is_empty() && !password.is_empty() => {
                    Ok(Credentials {
                        user: user.to_string(),
                        password: password.to_string(),
                    })
                }
                _ => Err("give user:password (several separated by commas)".to_string()),
            })
            .collect()
    }

    /// Whether an `Authorization` header value carries these credentials.
    fn admit(&self, header: &str) -> bool {
        let Some(encoded) = header
            .strip_prefix("Basic ")
            .or_else(|| header.strip_prefix("basic "))
        else {
            return false;
        };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
            return false;
        };
        let expected = format!("{}:{}", self.user, self.password);
        same_bytes(&decoded, expected.as_bytes())
    }
}

/// Compares without stopping at the first difference, so timing does not tell how much of a
/// guessed password was right.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// The accept loop, on its own thread.
pub struct Listener {
    address: SocketAddr,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    credentials: Vec<Credentials>,
    handler: Arc<dyn Handler>,
    connections: AtomicUsize,
}

impl Listener {
    pub fn start(
        socket: TcpListener,
        credentials: Vec<Credentials>,
        handler: Arc<dyn Handler>,
    ) -> Listener {
        let address = socket.local_addr().expect("a bound socket has an address");
        let stopping = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared {
            credentials,
            handler,
            connections: AtomicUsize::new(0),
        });
        let stop = stopping.clone();
        let thread = std::thread::Builder::new()
            .name("http-accept".into())
            .spawn(move || accept_loop(socket, shared, stop))
            .expect("spawn the accept thread");
        Listener {
            address,
            stopping,
            thread: Some(thread),
        }
    }

    /// Blocks while the server runs.
    pub fn wait(mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    /// Stops accepting; connections being served finish on their own.
    pub fn stop(mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // `accept` only returns for a connection: make one.
        let _ = TcpStream::connect_timeout(&self.address, Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Counts a connection while it is served, also when its thread panics.
struct ConnectionSlot(Arc<Shared>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::SeqCst);
    }
}

fn accept_loop(socket: TcpListener, shared: Arc<Shared>, stopping: Arc<AtomicBool>) {
    for stream in socket.incoming() {
        if stopping.load(Ordering::SeqCst) {
            return;
        }
        let stream = match stream {
            Ok(stream) => stream,
            Err(err) => {
                // Out of file descriptors and the like: wait instead of spinning.
                eprintln!("serve: cannot accept a connection: {err}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
        let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
        if shared.connections.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            shared.connections.fetch_sub(1, Ordering::SeqCst);
            let busy = ApiError::unavailable(format!(
                "more than {MAX_CONNECTIONS} connections at once; try again shortly"
            ));
            let _ = write_reply(&stream, busy.status, &busy.body(), false);
            continue;
        }
        let slot = ConnectionSlot(shared.clone());
        let spawned = std::thread::Builder::new()
            .name("http-connection".into())
            .spawn(move || {
                let slot = slot;
                serve_connection(stream, &slot.0);
            });
        if let Err(err) = spawned {
            eprintln!("serve: cannot start a connection thread: {err}");
        }
    }
}

/// A request line and headers, before the body.
struct Head {
    method: Method,
    target: String,
    /// Names lower-cased.
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn serve_connection(stream: TcpStream, shared: &Shared) {
    let mut reader = BufReader::new(UntilDeadline {
        stream: &stream,
        deadline: Instant::now() + REQUEST_TIMEOUT,
    });
    // The answer, and how much the client may still be sending that was not read.
    let (status, body, unread) = match read_head(&mut reader) {
        Ok(None) => return, // the client went away or sent nothing in time
        Err(err) => (err.status, err.body(), MAX_HEAD_BYTES as usize),
        Ok(Some(head)) => match read_body(&mut reader, &stream, &head, shared) {
            Ok(None) => return,
            Err((err, unread)) => (err.status, err.body(), unread),
            Ok(Some(request)) => {
                let answer = catch_unwind(AssertUnwindSafe(|| shared.handler.handle(&request)))
                    .unwrap_or_else(|panic| {
                        Err(ApiError::internal(format!(
                            "internal error: {}",
                            panic_message(panic)
                        )))
                    });
                match answer {
                    Ok(value) => (200, value, 0),
                    Err(err) => (err.status, err.body(), 0),
                }
            }
        },
    };
    let _ = write_reply(&stream, status, &body, status == 401);
    // The answer is complete: a client reading to the end has it now. What it still sends
    // is read and dropped, because closing a socket with unread input resets the
    // connection, and the client might lose the answer.
    let _ = stream.shutdown(Shutdown::Write);
    if unread > 0 {
        drain(&mut reader, unread.min(MAX_DRAIN_BYTES));
    }
}

/// Reads from the socket until a deadline: each read waits at most until then.
struct UntilDeadline<'a> {
    stream: &'a TcpStream,
    deadline: Instant,
}

impl Read for UntilDeadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        self.stream.set_read_timeout(Some(left.min(IO_TIMEOUT)))?;
        let mut stream = self.stream;
        stream.read(buf)
    }
}

/// The request line and headers; `None` when the connection closed before a request.
fn read_head(reader: &mut impl BufRead) -> Result<Option<Head>, ApiError> {
    let mut head = reader.take(MAX_HEAD_BYTES);
    let too_long = || ApiError::new(431, "BadRequest", "request line and headers too long");
    let mut line = String::new();
    match head.read_line(&mut line) {
        Ok(0) | Err(_) => return Ok(None),
        Ok(_) if !line.ends_with('\n') => return Err(too_long()),
        Ok(_) => {}
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(ApiError::bad_request("malformed request line"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(ApiError::new(
            505,
            "BadRequest",
            "only HTTP/1.x is spoken here",
        ));
    }
    let method = match method {
        "GET" => Method::Get,
        "POST" => Method::Post,
        _ => Method::Other,
    };
    let target = target.to_string();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        match head.read_line(&mut line) {
            Ok(0) | Err(_) => return Ok(None),
            Ok(_) if !line.ends_with('\n') => return Err(too_long()),
            Ok(_) => {}
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            break;
        }
        if headers.len() == MAX_HEADERS {
            return Err(too_long());
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(ApiError::bad_request(format!("malformed header {line:?}")));
        };
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    Ok(Some(Head {
        method,
        target,
        headers,
    }))
}

/// Checks credentials and the body's size, then reads the body. An error comes with how
/// many body bytes the client may still be sending.
fn read_body(
    reader: &mut impl BufRead,
    mut stream: &TcpStream,
    head: &Head,
    shared: &Shared,
) -> Result<Option<Request>, (ApiError, usize)> {
    if head.header("transfer-encoding").is_some() {
        let err = ApiError::new(
            411,
            "BadRequest",
            "send the body with a Content-Length (chunked bodies are not read)",
        );
        return Err((err, 0));
    }
    let length = match head.header("content-length") {
        None => 0,
        Some(text) => text
            .parse::<usize>()
            .map_err(|_| (ApiError::bad_request("malformed Content-Length"), 0))?,
    };
    // A client that waits for "100 Continue" sends no body when refused.
    let expects_continue = head
        .header("expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    let unread = if expects_continue { 0 } else { length };
    if !shared.credentials.is_empty() {
        let admitted = head
            .header("authorization")
            .is_some_and(|value| shared.credentials.iter().any(|c| c.admit(value)));
        if !admitted {
            let err = ApiError::new(
                401,
                "Unauthorized",
                "this server needs a user and password (HTTP Basic)",
            );
            return Err((err, unread));
        }
    }
    if length > MAX_BODY_BYTES {
        let err = ApiError::new(
            413,
            "PayloadTooLarge",
            format!("the request body is {length} bytes; at most {MAX_BODY_BYTES} are read"),
        );
        return Err((err, unread));
    }
    if expects_continue && length > 0 && stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").is_err()
    {
        return Ok(None);
    }
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        // Closed or stalled before the whole body came: nobody to answer.
        return Ok(None);
    }
    let (path, query) = match head.target.split_once('?') {
        Some((path, query)) => (path.to_string(), query.to_string()),
        None => (head.target.clone(), String::new()),
    };
    Ok(Some(Request {
        method: head.method,
        path,
        query,
        body,
    }))
}

/// Reads and drops up to `bytes` bytes in small pieces.
fn drain(reader: &mut impl Read, bytes: usize) {
    let _ = std::io::copy(&mut reader.take(bytes as u64), &mut std::io::sink());
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Content Too Large",
        422 => "Unprocessable Entity",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

fn write_reply(
    mut stream: &TcpStream,
    status: u16,
    body: &Value,
    ask_for_password: bool,
) -> std::io::Result<()> {
    let body = serde_json::to_vec(body).map_err(std::io::Error::other)?;
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        reason(status),
        body.len()
    );
    if ask_for_password {
        head.push_str("WWW-Authenticate: Basic realm=\"latent-studio\"\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(&body)?;
    stream.flush()
}

pub fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        text.to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "unknown panic".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_parse_as_a1111_writes_them() {
        let list = Credentials::parse_list("ann:pw,bob:x:y").unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[1].password, "x:y");
        assert!(Credentials::parse_list("ann").is_err());
        assert!(Credentials::parse_list("ann:").is_err());
        assert!(Credentials::parse_list(":pw").is_err());
        let header = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("ann:pw")
        );
        assert!(list[0].admit(&header));
        assert!(!list[1].admit(&header));
        assert!(!list[0].admit("Bearer x"));
    }

    /// Panics on `/panic`, echoes the path otherwise.
    struct Panicky;

    impl Handler for Panicky {
        fn handle(&self, request: &Request) -> Result<Value, ApiError> {
            if request.path == "/panic" {
                panic!("boom");
            }
            Ok(json!({ "path": request.path }))
        }
    }

    #[test]
    fn a_panicking_handler_is_answered_500_and_the_server_goes_on() {
        let socket = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = socket.local_addr().unwrap();
        let listener = Listener::start(socket, Vec::new(), Arc::new(Panicky));
        let ask = |path: &str| {
            let mut stream = TcpStream::connect(address).unwrap();
            write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let mut answer = String::new();
            stream.read_to_string(&mut answer).unwrap();
            answer
        };
        let answer = ask("/panic");
        assert!(answer.starts_with("HTTP/1.1 500"), "{answer}");
        assert!(answer.contains("boom"), "{answer}");
        let answer = ask("/fine?x=1");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("{\"path\":\"/fine\"}"), "{answer}");
        listener.stop();
    }
}
