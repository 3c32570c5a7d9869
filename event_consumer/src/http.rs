//! The consumer's HTTP/1.1 layer: request framing, limits and timeouts over a blocking
//! [`TcpStream`], and response encoding.
//!
//! One [`Connection`] serves one keep-alive connection: [`Connection::read_request`] returns the
//! next request (bytes of pipelined requests stay buffered for the following call) and
//! [`Connection::write_response`] answers it with a single `write`. Every limit in [`Limits`] is
//! enforced before memory is spent on it, and every read runs against an absolute deadline, so a
//! hostile client can hold neither memory nor a thread for longer than the limits allow.
//! [`parse_request`] is the same framing code as a pure function over bytes, for tests and
//! fuzzing.
//!
//! Deliberately left out: TLS, HTTP/2, compression, chunked or streamed responses (every answer
//! is a small JSON document), routing. Why this exists instead of tiny_http: `crates.md`,
//! section 1 (an unchecked `Content-Length` aborts the process, and there are no timeouts or
//! header limits).

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::config::ConsumerConfig;

/// Lingering close: after our last answer, input is discarded for at most this long so the
/// client reads the answer instead of a TCP reset (which would discard it unread).
const LINGER_TIME: Duration = Duration::from_secs(2);
/// ... and for at most this many bytes, so a client that never stops sending is cut off.
const LINGER_BYTES: usize = 1024 * 1024;
/// Scratch buffer for the lingering drain; it lives on the stack.
const LINGER_CHUNK_BYTES: usize = 4 * 1024;
/// First size of a connection's read buffer; it grows up to the head limit only when needed.
const INITIAL_BUFFER_BYTES: usize = 4 * 1024;
/// Requests with at most this many headers are parsed with a header array on the stack.
const STACK_HEADERS: usize = 64;
/// Longest chunk-size line (size, extensions, CRLF). Nobody sends long extensions; a bound
/// keeps the decoder from spending the whole body deadline on one line.
const MAX_CHUNK_LINE_BYTES: usize = 1024;
/// Below this, the deadline counts as passed (and a zero socket timeout would mean "none").
const MIN_TIMEOUT: Duration = Duration::from_millis(1);
/// A socket timeout already set is kept while it ends within this much of the deadline: it
/// saves a `setsockopt` per read at the cost of overshooting a deadline by at most this much.
const TIMEOUT_SLACK: Duration = Duration::from_millis(5);

/// What a request may cost. Every limit is checked before the memory or time is spent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Request line plus all headers (and, separately, all chunked trailers); past it, 431.
    pub max_head_bytes: usize,
    /// Header count (and, separately, trailer count); past it, 431.
    pub max_headers: usize,
    /// Decoded body; past it, 413, refused as soon as it is known. The body buffer never
    /// grows past this.
    pub max_body_bytes: usize,
    /// Deadline for a whole head once its first byte arrived, then again for the whole body.
    /// Absolute: a client sending one byte a second cannot extend it.
    pub read_timeout: Duration,
    /// Keep-alive: how long to wait for the first byte of the next request.
    pub idle_timeout: Duration,
    /// Timeout of each `write` call of a response.
    pub write_timeout: Duration,
}

impl Limits {
    /// The limits configured for the consumer. The config has been checked (timeouts above 0
    /// and at most 86400 s); a value that slipped through is clamped rather than panicking.
    pub fn from_config(config: &ConsumerConfig) -> Limits {
        Limits {
            max_head_bytes: config.max_header_bytes,
            max_headers: config.max_headers,
            max_body_bytes: config.max_body_bytes,
            read_timeout: seconds(config.read_timeout_seconds),
            idle_timeout: seconds(config.idle_timeout_seconds),
            write_timeout: seconds(config.write_timeout_seconds),
        }
    }
}

impl Default for Limits {
    /// The limits of the default consumer configuration.
    fn default() -> Limits {
        Limits::from_config(&ConsumerConfig::default())
    }
}

fn seconds(value: f64) -> Duration {
    // `f64::max` turns NaN into 0; values too large for a Duration become a day.
    Duration::try_from_secs_f64(value.max(0.0)).unwrap_or(Duration::from_secs(86_400))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    /// Any other syntactically valid method; the router answers 405.
    Other,
}

impl Method {
    fn from_token(token: &str) -> Method {
        // Methods are case-sensitive (RFC 9110, section 9.1): `get` is not GET.
        match token {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            _ => Method::Other,
        }
    }
}

/// One request, framed and within the limits. Only the headers the service uses are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// The request target up to `?` (the query is dropped). An absolute-form target
    /// (`http://host/event`) is reduced to its path.
    pub path: String,
    pub content_type: Option<String>,
    pub authorization: Option<String>,
    /// The raw header value. Bytes that are not UTF-8 are replaced by U+FFFD, so the router's
    /// validation refuses the key instead of this layer guessing.
    pub idempotency_key: Option<String>,
    pub body: Vec<u8>,
    /// HTTP/1.1: true unless `Connection: close`. HTTP/1.0: false unless `Connection: keep-alive`.
    pub keep_alive: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Extra headers, e.g. `("Allow", "POST")`. `Date`, `Content-Type`, `Content-Length`,
    /// `Connection` and `Transfer-Encoding` belong to this layer: extra headers with those
    /// names are not written.
    pub headers: Vec<(&'static str, String)>,
    /// `application/json` for everything but the metrics text.
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(status: u16, body: Vec<u8>) -> Response {
        Response {
            status,
            headers: Vec::new(),
            content_type: "application/json",
            body,
        }
    }

    /// Prometheus text exposition format.
    pub fn metrics_text(status: u16, body: Vec<u8>) -> Response {
        Response {
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            ..Response::json(status, body)
        }
    }

    /// `{"error": message}`, with the message escaped by serde_json.
    pub fn error(status: u16, message: &str) -> Response {
        let mut body = Vec::with_capacity(message.len() + 12);
        body.extend_from_slice(b"{\"error\":");
        serde_json::to_writer(&mut body, message).expect("a string always serialises to JSON");
        body.push(b'}');
        Response::json(status, body)
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }
}

/// The reason phrase written after a status code; empty for codes the service never sends
/// (the phrase is optional in HTTP/1.1 and clients ignore it).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// Why [`Connection::read_request`] returned no request.
#[derive(Debug)]
pub enum ReadError {
    /// Nothing to answer: the client closed cleanly between requests, the keep-alive idle
    /// timeout passed before any byte of a new request, or the connection was shut down through
    /// [`Connection::shutdown_handle`] while idle.
    Closed,
    /// Send this answer (a 4xx, or 505) with [`Connection::reject_and_close`] and close: the
    /// request stream can no longer be framed.
    Reject(Response),
    /// Socket error or end of stream in the middle of a request: drop the connection.
    Io(io::Error),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Closed => write!(f, "connection closed between requests"),
            ReadError::Reject(response) => write!(f, "request refused with {}", response.status),
            ReadError::Io(_) => write!(f, "connection failed mid-request"),
        }
    }
}

impl std::error::Error for ReadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ReadError::Io(error) => Some(error),
            ReadError::Closed | ReadError::Reject(_) => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Framing, shared by `parse_request` and `Connection`.

/// Frames one request at the start of `buf`.
///
/// `Ok(None)`: the request is not complete yet. `Ok(Some((request, consumed)))`: the request
/// took the first `consumed` bytes; the rest belongs to the next request. `Err(response)`: the
/// 4xx (or 505) to send before closing. Never panics, whatever `buf` holds, and never allocates
/// more than the limits allow (a declared `Content-Length` is refused from the head alone).
pub fn parse_request(buf: &[u8], limits: &Limits) -> Result<Option<(Request, usize)>, Response> {
    let mut scanner = HeadScanner::default();
    let Some(head_end) = scanner.scan(buf, limits)? else {
        return Ok(None);
    };
    let head = parse_head(
        buf.get(scanner.head_start..head_end).unwrap_or_default(),
        scanner.header_count(),
        limits,
    )?;
    let rest = buf.get(head_end..).unwrap_or_default();
    match head.framing {
        Framing::Length(len) => match rest.get(..len) {
            Some(body) => {
                let body = body.to_vec();
                Ok(Some((head.into_request(body), head_end + len)))
            }
            None => Ok(None),
        },
        Framing::Chunked => {
            let mut decoder = ChunkedDecoder::default();
            let mut body = Vec::new();
            let (used, done) = decoder.feed(rest, &mut body, limits)?;
            if done {
                Ok(Some((head.into_request(body), head_end + used)))
            } else {
                Ok(None)
            }
        }
    }
}

/// Finds the end of a request head, incrementally: a later call on the same (grown) buffer
/// resumes where the previous one stopped, so a head arriving byte by byte is scanned once.
/// It enforces what httparse does not: CRLF line endings only, and the size and count limits
/// before the head is complete.
#[derive(Debug, Default)]
struct HeadScanner {
    /// Next byte to look at.
    pos: usize,
    /// Start of the line being scanned.
    line_start: usize,
    /// Start of the request line, after any empty lines (RFC 9112, section 2.2 allows them).
    head_start: usize,
    /// Complete non-empty lines so far: the request line and the headers.
    lines: usize,
}

impl HeadScanner {
    /// `Ok(Some(end))`: the head is `buf[self.head_start..end]`, ending with the empty line.
    fn scan(&mut self, buf: &[u8], limits: &Limits) -> Result<Option<usize>, Response> {
        let limit = buf.len().min(limits.max_head_bytes);
        let mut i = self.pos;
        while let Some(&byte) = buf.get(i).filter(|_| i < limit) {
            match byte {
                b'\n' => {
                    if i == 0 || buf.get(i - 1) != Some(&b'\r') {
                        return Err(Response::error(
                            400,
                            "request head lines must end with CRLF, found a bare LF",
                        ));
                    }
                    if i - 1 == self.line_start {
                        if self.lines > 0 {
                            self.pos = i + 1;
                            return Ok(Some(i + 1));
                        }
                        self.head_start = i + 1;
                    } else {
                        self.lines += 1;
                        if self.lines - 1 > limits.max_headers {
                            return Err(too_many_headers(limits));
                        }
                    }
                    self.line_start = i + 1;
                }
                b'\r' => match buf.get(i + 1) {
                    Some(b'\n') => {}
                    Some(_) => {
                        return Err(Response::error(
                            400,
                            "request head contains a CR that is not followed by LF",
                        ))
                    }
                    // Decide when the next byte is here.
                    None => break,
                },
                _ => {}
            }
            i += 1;
        }
        self.pos = i;
        if buf.len() >= limits.max_head_bytes {
            return Err(Response::error(
                431,
                &format!(
                    "request head is larger than {} bytes",
                    limits.max_head_bytes
                ),
            ));
        }
        Ok(None)
    }

    fn header_count(&self) -> usize {
        self.lines.saturating_sub(1)
    }
}

fn too_many_headers(limits: &Limits) -> Response {
    Response::error(
        431,
        &format!("request has more than {} header fields", limits.max_headers),
    )
}

fn body_too_large(limits: &Limits) -> Response {
    Response::error(
        413,
        &format!(
            "request body is larger than {} bytes",
            limits.max_body_bytes
        ),
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// Exactly this many body bytes follow (0 without `Content-Length`); within the limit.
    Length(usize),
    Chunked,
}

/// A parsed, checked head: the request without its body, plus how to read the body.
#[derive(Debug)]
struct Head {
    method: Method,
    path: String,
    content_type: Option<String>,
    authorization: Option<String>,
    idempotency_key: Option<String>,
    keep_alive: bool,
    http10: bool,
    framing: Framing,
    expect_continue: bool,
}

impl Head {
    fn into_request(self, body: Vec<u8>) -> Request {
        Request {
            method: self.method,
            path: self.path,
            content_type: self.content_type,
            authorization: self.authorization,
            idempotency_key: self.idempotency_key,
            body,
            keep_alive: self.keep_alive,
        }
    }
}

/// Parses a complete head (request line to the empty line) holding `header_count` headers.
fn parse_head(head: &[u8], header_count: usize, limits: &Limits) -> Result<Head, Response> {
    if header_count <= STACK_HEADERS {
        let mut headers = [httparse::EMPTY_HEADER; STACK_HEADERS];
        check_head(head, &mut headers[..header_count], limits)
    } else {
        let mut headers = vec![httparse::EMPTY_HEADER; header_count];
        check_head(head, &mut headers, limits)
    }
}

fn check_head<'b>(
    head: &'b [u8],
    headers: &mut [httparse::Header<'b>],
    limits: &Limits,
) -> Result<Head, Response> {
    let mut parsed = httparse::Request::new(headers);
    // httparse's defaults are the strict ones for requests: no obs-fold, no space before the
    // colon, single spaces in the request line, no control bytes (NUL, DEL) in values.
    match parsed.parse(head) {
        Ok(httparse::Status::Complete(len)) if len == head.len() => {}
        Ok(_) => return Err(Response::error(400, "malformed request head")),
        Err(httparse::Error::Version) => return Err(version_error(head)),
        Err(httparse::Error::TooManyHeaders) => return Err(too_many_headers(limits)),
        Err(error) => {
            return Err(Response::error(
                400,
                &format!("malformed request head: {error}"),
            ))
        }
    }
    let http10 = parsed.version == Some(0);
    let method = Method::from_token(parsed.method.unwrap_or_default());
    let path = request_path(parsed.path.unwrap_or_default()).to_owned();

    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut close = false;
    let mut keep_alive_token = false;
    let mut expect_continue = false;
    let mut content_type = None;
    let mut authorization = None;
    let mut idempotency_key = None;
    for header in parsed.headers.iter() {
        let name = header.name;
        let value = header.value.trim_ascii();
        if name.eq_ignore_ascii_case("content-length") {
            let Some(length) = parse_content_length(value) else {
                return Err(Response::error(
                    400,
                    "Content-Length must be a non-negative decimal number",
                ));
            };
            if content_length.is_some_and(|seen| seen != length) {
                return Err(Response::error(
                    400,
                    "Content-Length is given twice with different values",
                ));
            }
            content_length = Some(length);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Anything but a single `chunked` is a framing we cannot read safely; 400, never
            // "guess chunked" (request smuggling).
            if chunked {
                return Err(Response::error(400, "Transfer-Encoding is given twice"));
            }
            if !value.eq_ignore_ascii_case(b"chunked") {
                return Err(Response::error(
                    400,
                    "unsupported Transfer-Encoding: only `chunked` is accepted",
                ));
            }
            chunked = true;
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive_token |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case("expect") {
            if !value.eq_ignore_ascii_case(b"100-continue") {
                return Err(Response::error(
                    417,
                    "unsupported Expect: only `100-continue` is accepted",
                ));
            }
            expect_continue = true;
        } else if name.eq_ignore_ascii_case("content-type") {
            set_once(&mut content_type, "Content-Type", value)?;
        } else if name.eq_ignore_ascii_case("authorization") {
            set_once(&mut authorization, "Authorization", value)?;
        } else if name.eq_ignore_ascii_case("idempotency-key") {
            set_once(&mut idempotency_key, "Idempotency-Key", value)?;
        }
    }

    let framing = match (content_length, chunked) {
        (Some(_), true) => {
            return Err(Response::error(
                400,
                "Content-Length and Transfer-Encoding must not both be given",
            ))
        }
        // RFC 9112, section 6.1: Transfer-Encoding in an HTTP/1.0 message is faulty framing.
        (None, true) if http10 => {
            return Err(Response::error(
                400,
                "Transfer-Encoding is not allowed in HTTP/1.0",
            ))
        }
        (None, true) => Framing::Chunked,
        (Some(length), false) => match usize::try_from(length) {
            Ok(length) if length <= limits.max_body_bytes => Framing::Length(length),
            _ => return Err(body_too_large(limits)),
        },
        (None, false) => Framing::Length(0),
    };
    let keep_alive = if http10 {
        keep_alive_token && !close
    } else {
        !close
    };
    Ok(Head {
        method,
        path,
        content_type,
        authorization,
        idempotency_key,
        keep_alive,
        http10,
        framing,
        // RFC 9110, section 10.1.1: a 100-continue expectation in HTTP/1.0 is ignored.
        expect_continue: expect_continue && !http10,
    })
}

/// Single-valued headers given twice are ambiguous (which token, which key?): 400.
fn set_once(slot: &mut Option<String>, name: &str, value: &[u8]) -> Result<(), Response> {
    if slot.is_some() {
        return Err(Response::error(400, &format!("{name} is given twice")));
    }
    *slot = Some(String::from_utf8_lossy(value).into_owned());
    Ok(())
}

/// Digits only (no sign, no list, no spaces); a value too large for u64 saturates, which is
/// over any limit and is answered 413 like any other too-large length.
fn parse_content_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(value.iter().fold(0u64, |total, digit| {
        total
            .saturating_mul(10)
            .saturating_add(u64::from(digit - b'0'))
    }))
}

/// A well-formed version we do not speak (`HTTP/2.0`, `HTTP/1.2`) gets 505, garbage gets 400.
fn version_error(head: &[u8]) -> Response {
    let line_end = head.iter().position(|&b| b == b'\r').unwrap_or(head.len());
    let line = head.get(..line_end).unwrap_or_default();
    let version = line.rsplit(|&b| b == b' ').next().unwrap_or_default();
    match version {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            Response::error(505, "HTTP version not supported: use HTTP/1.1")
        }
        _ => Response::error(400, "malformed request line: no valid HTTP version"),
    }
}

/// The path of a request target: the query is dropped, an absolute-form target
/// (RFC 9112, section 3.2.2) loses its scheme and authority.
fn request_path(target: &str) -> &str {
    let target = target.split('?').next().unwrap_or_default();
    let lower_prefix = |prefix: &str| {
        target
            .get(..prefix.len())
            .is_some_and(|start| start.eq_ignore_ascii_case(prefix))
    };
    for scheme in ["http://", "https://"] {
        if lower_prefix(scheme) {
            let after = target.get(scheme.len()..).unwrap_or_default();
            return after.find('/').and_then(|i| after.get(i..)).unwrap_or("/");
        }
    }
    target
}

/// Incremental chunked decoder (RFC 9112, section 7.1). It consumes input as it arrives and
/// appends decoded data to the body, so the socket path never buffers a whole chunked body
/// in raw form and a body split over many reads is decoded once.
#[derive(Debug, Default)]
struct ChunkedDecoder {
    state: ChunkState,
    /// Bytes of the current chunk-size line.
    line_bytes: usize,
    /// Bytes and lines of the trailer section, held to the head limits.
    trailer_bytes: usize,
    trailer_lines: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum ChunkState {
    /// At the first hex digit of a chunk size.
    #[default]
    SizeStart,
    Size(u64),
    /// Whitespace after the size: only more whitespace, `;` or CR may follow.
    SizeSpace(u64),
    /// A chunk extension, ignored up to CR.
    Extension(u64),
    SizeLf(u64),
    Data(u64),
    DataCr,
    DataLf,
    /// At the start of a trailer line or of the final empty line.
    TrailerStart,
    Trailer,
    TrailerLf {
        last: bool,
    },
    Done,
}

fn chunk_error(message: &str) -> Response {
    Response::error(400, &format!("malformed chunked body: {message}"))
}

/// Control bytes other than HTAB are refused in chunk extensions and trailers, as in headers.
fn is_forbidden_control(byte: u8) -> bool {
    (byte < 0x20 && byte != b'\t') || byte == 0x7f
}

impl ChunkedDecoder {
    /// Consumes bytes of `input`, appending decoded data to `body`. Returns how many bytes
    /// were consumed and whether the body (with its trailers) is complete; when it is not,
    /// all of `input` was consumed.
    fn feed(
        &mut self,
        input: &[u8],
        body: &mut Vec<u8>,
        limits: &Limits,
    ) -> Result<(usize, bool), Response> {
        use ChunkState::*;
        let mut i = 0;
        while let Some(&byte) = input.get(i) {
            let state = self.state;
            if let Data(remaining) = state {
                let available = input.len() - i;
                let take = usize::try_from(remaining).map_or(available, |r| r.min(available));
                extend_bounded(
                    body,
                    input.get(i..i + take).unwrap_or_default(),
                    limits.max_body_bytes,
                );
                i += take;
                let left = remaining - take as u64;
                self.state = if left == 0 { DataCr } else { Data(left) };
                continue;
            }
            i += 1;
            self.state = match state {
                SizeStart => match hex_value(byte) {
                    Some(digit) => size_digit(0, digit, body.len(), limits)?,
                    None => return Err(chunk_error("chunk size is not a hex number")),
                },
                Size(size) => match byte {
                    b';' => Extension(size),
                    b' ' | b'\t' => SizeSpace(size),
                    b'\r' => SizeLf(size),
                    _ => match hex_value(byte) {
                        Some(digit) => size_digit(size, digit, body.len(), limits)?,
                        None => return Err(chunk_error("chunk size is not a hex number")),
                    },
                },
                SizeSpace(size) => match byte {
                    b' ' | b'\t' => SizeSpace(size),
                    b';' => Extension(size),
                    b'\r' => SizeLf(size),
                    _ => return Err(chunk_error("unexpected byte after the chunk size")),
                },
                Extension(size) => match byte {
                    b'\r' => SizeLf(size),
                    _ if is_forbidden_control(byte) => {
                        return Err(chunk_error("control byte in a chunk extension"))
                    }
                    _ => Extension(size),
                },
                SizeLf(size) => match byte {
                    b'\n' if size == 0 => TrailerStart,
                    b'\n' => Data(size),
                    _ => return Err(chunk_error("chunk size line does not end with CRLF")),
                },
                DataCr => match byte {
                    b'\r' => DataLf,
                    _ => return Err(chunk_error("chunk data is not followed by CRLF")),
                },
                DataLf => match byte {
                    b'\n' => SizeStart,
                    _ => return Err(chunk_error("chunk data is not followed by CRLF")),
                },
                TrailerStart => match byte {
                    b'\r' => TrailerLf { last: true },
                    b' ' | b'\t' => return Err(chunk_error("folded trailer line")),
                    _ if is_forbidden_control(byte) => {
                        return Err(chunk_error("control byte in a trailer"))
                    }
                    _ => {
                        self.trailer_lines += 1;
                        if self.trailer_lines > limits.max_headers {
                            return Err(Response::error(
                                431,
                                &format!(
                                    "request has more than {} trailer fields",
                                    limits.max_headers
                                ),
                            ));
                        }
                        Trailer
                    }
                },
                Trailer => match byte {
                    b'\r' => TrailerLf { last: false },
                    _ if is_forbidden_control(byte) => {
                        return Err(chunk_error("control byte in a trailer"))
                    }
                    _ => Trailer,
                },
                TrailerLf { last } => match byte {
                    b'\n' if last => Done,
                    b'\n' => TrailerStart,
                    _ => return Err(chunk_error("trailer line does not end with CRLF")),
                },
                Data(_) | Done => {
                    // Data is handled above; Done is never fed further (see below).
                    return Ok((i - 1, state == Done));
                }
            };
            match state {
                SizeStart | Size(_) | SizeSpace(_) | Extension(_) | SizeLf(_) => {
                    self.line_bytes += 1;
                    if self.line_bytes > MAX_CHUNK_LINE_BYTES {
                        return Err(chunk_error("chunk size line is too long"));
                    }
                    if matches!(state, SizeLf(_)) {
                        self.line_bytes = 0;
                    }
                }
                TrailerStart | Trailer | TrailerLf { .. } => {
                    self.trailer_bytes += 1;
                    if self.trailer_bytes > limits.max_head_bytes {
                        return Err(Response::error(
                            431,
                            &format!(
                                "request trailers are larger than {} bytes",
                                limits.max_head_bytes
                            ),
                        ));
                    }
                }
                Data(_) | DataCr | DataLf | Done => {}
            }
            if self.state == Done {
                return Ok((i, true));
            }
        }
        Ok((i, self.state == Done))
    }
}

fn hex_value(byte: u8) -> Option<u64> {
    char::from(byte).to_digit(16).map(u64::from)
}

/// Adds a hex digit to a chunk size, refusing (413) as soon as the body would pass the limit.
fn size_digit(
    size: u64,
    digit: u64,
    decoded: usize,
    limits: &Limits,
) -> Result<ChunkState, Response> {
    let size = size
        .checked_mul(16)
        .and_then(|size| size.checked_add(digit))
        .ok_or_else(|| body_too_large(limits))?;
    let total = (decoded as u64).saturating_add(size);
    if total > limits.max_body_bytes as u64 {
        return Err(body_too_large(limits));
    }
    Ok(ChunkState::Size(size))
}

/// Appends `data`, growing the allocation geometrically but never past `max` (the caller has
/// checked that `body.len() + data.len() <= max`).
fn extend_bounded(body: &mut Vec<u8>, data: &[u8], max: usize) {
    let needed = body.len() + data.len();
    if needed > body.capacity() {
        let target = body
            .capacity()
            .saturating_mul(2)
            .max(needed)
            .max(256)
            .min(max.max(needed));
        body.reserve_exact(target - body.len());
    }
    body.extend_from_slice(data);
}

// ---------------------------------------------------------------------------------------------
// Responses.

/// Header names this layer writes itself; extra headers with these names are dropped.
const MANAGED_HEADERS: [&str; 5] = [
    "date",
    "content-type",
    "content-length",
    "connection",
    "transfer-encoding",
];

/// Encodes a whole response into `out`, so it leaves in one `write`.
fn encode_response(
    out: &mut Vec<u8>,
    response: &Response,
    keep_alive: bool,
    http10: bool,
    head_only: bool,
    date: &str,
) {
    let status = if (100..=999).contains(&response.status) {
        response.status
    } else {
        500
    };
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        "HTTP/1.1 {status} {}\r\nDate: {date}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
        reason_phrase(status),
        response.content_type,
        response.body.len()
    );
    for (name, value) in &response.headers {
        if MANAGED_HEADERS
            .iter()
            .any(|managed| name.eq_ignore_ascii_case(managed))
        {
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        // A CR or LF in a value would let it start a header of its own.
        out.extend(
            value
                .bytes()
                .map(|b| if is_forbidden_control(b) { b' ' } else { b }),
        );
        out.extend_from_slice(b"\r\n");
    }
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if http10 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(&response.body);
    }
}

/// The `Date` header value, formatted at most once a second per connection.
#[derive(Debug, Default)]
struct DateCache {
    second: u64,
    text: String,
}

impl DateCache {
    fn now(&mut self) -> &str {
        let now = SystemTime::now();
        let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if second != self.second || self.text.is_empty() {
            self.second = second;
            self.text = httpdate::fmt_http_date(now);
        }
        &self.text
    }
}

// ---------------------------------------------------------------------------------------------
// The connection.

/// One client connection: the socket, a reusable read buffer and the limits.
pub struct Connection {
    /// Shared with this connection's [`Answerer`], if it has one.
    stream: Arc<TcpStream>,
    /// Whether an [`Answerer`] is sending an answer; shared with it.
    outbox: Arc<Outbox>,
    limits: Limits,
    /// Read buffer; the unconsumed bytes are `buf[start..end]`.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// The read buffer grows up to this (the head limit, at least the initial size).
    buf_cap: usize,
    /// The read timeout currently set on the socket, to skip needless `setsockopt` calls.
    read_timeout_set: Option<Duration>,
    /// Whether the last request was HTTP/1.0 (its keep-alive must be confirmed explicitly).
    http10: bool,
    /// Response encoding buffer, reused.
    out: Vec<u8>,
    date: DateCache,
    peer: Option<SocketAddr>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("peer", &self.peer)
            .field("buffered", &(self.end - self.start))
            .finish_non_exhaustive()
    }
}

/// What stopped a read.
enum ReadStop {
    /// The deadline passed before any byte arrived.
    Deadline,
    Io(io::Error),
}

impl Connection {
    /// Takes over an accepted socket: blocking mode, `TCP_NODELAY`, the write timeout.
    pub fn new(stream: TcpStream, limits: Limits) -> Connection {
        // Failing socket options leave a working (if slower or less guarded) socket; the next
        // read or write reports a dead one.
        // A non-blocking listener passes O_NONBLOCK to accepted sockets on some systems.
        let _ = stream.set_nonblocking(false);
        // Small responses must leave at once, not wait for Nagle to coalesce them.
        let _ = stream.set_nodelay(true);
        let _ = stream.set_write_timeout(Some(limits.write_timeout.max(MIN_TIMEOUT)));
        let peer = stream.peer_addr().ok();
        let buf_cap = limits.max_head_bytes.max(INITIAL_BUFFER_BYTES);
        Connection {
            stream: Arc::new(stream),
            outbox: Arc::default(),
            limits,
            buf: vec![0; INITIAL_BUFFER_BYTES],
            start: 0,
            end: 0,
            buf_cap,
            read_timeout_set: None,
            http10: false,
            out: Vec::with_capacity(512),
            date: DateCache::default(),
            peer,
        }
    }

    /// Reads the next request. Bytes past it stay buffered for the next call.
    ///
    /// Waits up to `idle_timeout` for the first byte, then up to `read_timeout` for the whole
    /// head, then up to `read_timeout` for the whole body. Sends `100 Continue` when the client
    /// asked for it and has not started sending the body.
    pub fn read_request(&mut self) -> Result<Request, ReadError> {
        let idle_deadline = deadline_after(self.limits.idle_timeout);
        let mut head_deadline =
            (self.end > self.start).then(|| deadline_after(self.limits.read_timeout));
        let mut scanner = HeadScanner::default();
        let head_end = loop {
            let pending = self.buf.get(self.start..self.end).unwrap_or_default();
            if let Some(end) = scanner
                .scan(pending, &self.limits)
                .map_err(ReadError::Reject)?
            {
                break end;
            }
            if !self.make_room() {
                // The scanner refuses a head at the limit before the buffer is full; this is
                // a safety net.
                return Err(ReadError::Reject(Response::error(
                    431,
                    "request head is too large",
                )));
            }
            let deadline = head_deadline.unwrap_or(idle_deadline);
            let dst = self.buf.get_mut(self.end..).unwrap_or_default();
            match read_before(&self.stream, &mut self.read_timeout_set, dst, deadline) {
                Ok(0) if self.start == self.end => return Err(ReadError::Closed),
                Ok(0) => return Err(ReadError::Io(io::ErrorKind::UnexpectedEof.into())),
                Ok(n) => {
                    self.end += n;
                    if head_deadline.is_none() {
                        head_deadline = Some(deadline_after(self.limits.read_timeout));
                    }
                }
                Err(ReadStop::Deadline) if head_deadline.is_none() => {
                    return Err(ReadError::Closed)
                }
                Err(ReadStop::Deadline) => return Err(ReadError::Reject(timed_out())),
                Err(ReadStop::Io(error)) => return Err(ReadError::Io(error)),
            }
        };
        let head_bytes = self
            .buf
            .get(self.start + scanner.head_start..self.start + head_end)
            .unwrap_or_default();
        let head = parse_head(head_bytes, scanner.header_count(), &self.limits)
            .map_err(ReadError::Reject)?;
        self.start += head_end;
        self.http10 = head.http10;
        let body = self.read_body(&head)?;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        Ok(head.into_request(body))
    }

    fn read_body(&mut self, head: &Head) -> Result<Vec<u8>, ReadError> {
        let nothing_buffered = self.start == self.end;
        match head.framing {
            Framing::Length(len) => {
                let buffered = self.end - self.start;
                if buffered >= len {
                    let body = self
                        .buf
                        .get(self.start..self.start + len)
                        .unwrap_or_default()
                        .to_vec();
                    self.start += len;
                    return Ok(body);
                }
                if head.expect_continue && nothing_buffered {
                    self.send_continue()?;
                }
                let deadline = deadline_after(self.limits.read_timeout);
                // `len` is within max_body_bytes (checked by parse_head), so this allocation
                // is bounded by the limit; the rest of the body is read straight into it.
                let mut body = vec![0; len];
                if let (Some(dst), Some(src)) =
                    (body.get_mut(..buffered), self.buf.get(self.start..self.end))
                {
                    dst.copy_from_slice(src);
                }
                self.start = 0;
                self.end = 0;
                let mut filled = buffered;
                while let Some(dst) = body.get_mut(filled..).filter(|d| !d.is_empty()) {
                    filled += self.read_body_bytes(dst, deadline)?;
                }
                Ok(body)
            }
            Framing::Chunked => {
                if head.expect_continue && nothing_buffered {
                    self.send_continue()?;
                }
                let deadline = deadline_after(self.limits.read_timeout);
                let mut decoder = ChunkedDecoder::default();
                let mut body = Vec::new();
                loop {
                    let pending = self.buf.get(self.start..self.end).unwrap_or_default();
                    let (used, done) = decoder
                        .feed(pending, &mut body, &self.limits)
                        .map_err(ReadError::Reject)?;
                    self.start += used;
                    if done {
                        return Ok(body);
                    }
                    // Everything buffered was consumed: read into the whole buffer. The buffer
                    // is at least INITIAL_BUFFER_BYTES long, so the read is never empty.
                    self.start = 0;
                    self.end = 0;
                    let mut buf = std::mem::take(&mut self.buf);
                    let read = self.read_body_bytes(&mut buf, deadline);
                    self.buf = buf;
                    self.end = read?;
                }
            }
        }
    }

    /// One read of body bytes: a timeout is 408, end of stream an I/O error.
    fn read_body_bytes(&mut self, dst: &mut [u8], deadline: Instant) -> Result<usize, ReadError> {
        match read_before(&self.stream, &mut self.read_timeout_set, dst, deadline) {
            Ok(0) => Err(ReadError::Io(io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => Ok(n),
            Err(ReadStop::Deadline) => Err(ReadError::Reject(timed_out())),
            Err(ReadStop::Io(error)) => Err(ReadError::Io(error)),
        }
    }

    fn send_continue(&mut self) -> Result<(), ReadError> {
        self.settle().map_err(ReadError::Io)?;
        (&*self.stream)
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .map_err(ReadError::Io)
    }

    /// Makes room at the end of the read buffer: compacts, or grows up to `buf_cap`.
    /// False when the buffer is full at its cap.
    fn make_room(&mut self) -> bool {
        if self.end < self.buf.len() {
            return true;
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            return true;
        }
        if self.buf.len() < self.buf_cap {
            let grown = self.buf.len().saturating_mul(2).min(self.buf_cap);
            self.buf.resize(grown, 0);
            return true;
        }
        false
    }

    /// Writes one response with a single `write` call (unless the socket takes it in parts).
    /// `keep_alive == false` adds `Connection: close`; an HTTP/1.0 client that is kept alive
    /// gets `Connection: keep-alive`. `head_only` (answering HEAD) sends the headers, with the
    /// `Content-Length` of the body, but not the body.
    pub fn write_response(
        &mut self,
        response: &Response,
        keep_alive: bool,
        head_only: bool,
    ) -> io::Result<()> {
        self.settle()?;
        self.out.clear();
        let date = self.date.now();
        encode_response(
            &mut self.out,
            response,
            keep_alive,
            self.http10,
            head_only,
            date,
        );
        (&*self.stream).write_all(&self.out)
    }

    /// How the answer to the request just read must be framed, for an [`Answerer`].
    pub fn framing(&self, keep_alive: bool, head_only: bool) -> AnswerFraming {
        AnswerFraming {
            keep_alive,
            http10: self.http10,
            head_only,
        }
    }

    /// A handle that answers on this connection from another thread; see [`Answerer`].
    pub fn answerer(&self) -> Answerer {
        Answerer {
            stream: Arc::clone(&self.stream),
            outbox: Arc::clone(&self.outbox),
            out: Vec::with_capacity(512),
            date: DateCache::default(),
        }
    }

    /// Announces that an [`Answerer`] will send the answer to the request just read: until it
    /// has, every write of this connection waits (see [`Connection::settle`]).
    pub fn expect_answer(&self) {
        *self.outbox.lock() = Outgoing::Expected;
    }

    /// Withdraws [`Connection::expect_answer`] when no answerer will send the answer after all
    /// (the caller made sure of that).
    pub fn cancel_expected_answer(&self) {
        let mut outgoing = self.outbox.lock();
        if matches!(*outgoing, Outgoing::Expected) {
            *outgoing = Outgoing::Idle;
        }
    }

    /// Waits until an answer expected from an [`Answerer`] has been sent, and writes the part of
    /// it the socket did not take at once. Every write of this connection does this first, so
    /// answers leave in the order of their requests. An error means the answer could not be
    /// sent: the connection is broken.
    pub fn settle(&mut self) -> io::Result<()> {
        let outgoing = {
            let mut outgoing = self.outbox.lock();
            while matches!(*outgoing, Outgoing::Expected) {
                outgoing = self
                    .outbox
                    .settled
                    .wait(outgoing)
                    .unwrap_or_else(|p| p.into_inner());
            }
            std::mem::take(&mut *outgoing)
        };
        match outgoing {
            Outgoing::Idle | Outgoing::Expected => Ok(()),
            Outgoing::Rest(rest) => (&*self.stream).write_all(&rest),
            Outgoing::Failed(kind) => Err(kind.into()),
        }
    }

    /// Answers a rejected request (with `Connection: close`) and closes with a lingering close.
    pub fn reject_and_close(mut self, response: &Response) {
        // A client that is gone cannot be answered; closing is all that is left. (The write
        // settles an expected answer first.)
        let _ = self.write_response(response, false, false);
        self.linger_close();
    }

    /// Closes from our side after the last response: shuts down our write half (the client sees
    /// the end of the stream after our answer), then discards input for at most 2 s and 1 MiB,
    /// so that unread input does not make the kernel send a reset that destroys our answer
    /// before the client has read it.
    pub fn linger_close(mut self) {
        let _ = self.settle();
        let _ = self.stream.shutdown(Shutdown::Write);
        let deadline = deadline_after(LINGER_TIME);
        let mut scratch = [0u8; LINGER_CHUNK_BYTES];
        let mut drained = 0;
        while drained < LINGER_BYTES {
            match read_before(
                &self.stream,
                &mut self.read_timeout_set,
                &mut scratch,
                deadline,
            ) {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    }

    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// A second handle on the socket. `shutdown(Shutdown::Both)` on it wakes a blocked
    /// [`Connection::read_request`]: while idle it returns [`ReadError::Closed`], mid-request
    /// [`ReadError::Io`]. Do not make it non-blocking: the flag is shared with this connection.
    pub fn shutdown_handle(&self) -> io::Result<TcpStream> {
        self.stream.try_clone()
    }
}

/// How to frame one answer: what [`Connection::write_response`] takes besides the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnswerFraming {
    keep_alive: bool,
    http10: bool,
    head_only: bool,
}

/// What [`Answerer::send`] managed to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    All,
    /// The socket took only part of it (the client is not reading): the connection's own
    /// thread writes the rest when it settles ([`Connection::settle`]).
    Part,
    /// The connection is broken.
    Failed,
}

/// What is under way between a connection and its [`Answerer`].
#[derive(Debug, Default)]
enum Outgoing {
    #[default]
    Idle,
    /// An answer is expected from the answerer.
    Expected,
    /// Sent in part: the connection's thread writes the rest.
    Rest(Vec<u8>),
    Failed(io::ErrorKind),
}

#[derive(Debug, Default)]
struct Outbox {
    state: Mutex<Outgoing>,
    settled: Condvar,
}

impl Outbox {
    fn lock(&self) -> MutexGuard<'_, Outgoing> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Sends an answer on a connection's socket from another thread (the one that stored the
/// request's event), so the client does not wait for the connection's thread, which need not
/// even wait for the answer: it may go back to reading the next request. The send never
/// blocks: what the socket does not take at once is left for the connection's thread, whose
/// writes all wait for the expected answer first ([`Connection::settle`]).
///
/// The send switches the socket to non-blocking mode for its duration (the mode is shared with
/// the connection): a read of the connection's thread at that moment sees "would block" and
/// retries, which its read loop does anyway.
#[derive(Debug)]
pub struct Answerer {
    stream: Arc<TcpStream>,
    outbox: Arc<Outbox>,
    out: Vec<u8>,
    date: DateCache,
}

impl Answerer {
    /// Sends the answer expected by the connection ([`Connection::expect_answer`]).
    pub fn send(&mut self, response: &Response, framing: AnswerFraming) -> Sent {
        let outcome = self.try_send(response, framing);
        let (sent, outgoing) = match outcome {
            Ok(0) => (Sent::All, Outgoing::Idle),
            Ok(left) => (
                Sent::Part,
                Outgoing::Rest(self.out[self.out.len() - left..].to_vec()),
            ),
            Err(e) => (Sent::Failed, Outgoing::Failed(e.kind())),
        };
        *self.outbox.lock() = outgoing;
        self.outbox.settled.notify_all();
        sent
    }

    /// Encodes and sends what the socket takes at once; returns how many bytes are left.
    fn try_send(&mut self, response: &Response, framing: AnswerFraming) -> io::Result<usize> {
        self.out.clear();
        let date = self.date.now();
        encode_response(
            &mut self.out,
            response,
            framing.keep_alive,
            framing.http10,
            framing.head_only,
            date,
        );
        self.stream.set_nonblocking(true)?;
        let mut sent = 0;
        let result = loop {
            match (&*self.stream).write(&self.out[sent..]) {
                Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    sent += n;
                    if sent == self.out.len() {
                        break Ok(0);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(self.out.len() - sent),
                Err(e) => break Err(e),
            }
        };
        // Back to blocking for the connection's thread; if that fails, its next read reports
        // an error and the connection ends, which is safe.
        let restored = self.stream.set_nonblocking(false);
        let left = result?;
        restored?;
        Ok(left)
    }
}

fn timed_out() -> Response {
    Response::error(408, "request was not received in time")
}

fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .or_else(|| now.checked_add(Duration::from_secs(86_400)))
        .unwrap_or(now)
}

/// One `read` into `dst` (which must not be empty) that gives up at `deadline`.
///
/// Linux reports an expired socket timeout as `WouldBlock`, other systems as `TimedOut`; both
/// mean "look at the deadline again". The socket timeout is set to the time left, so a client
/// trickling bytes cannot stretch the deadline.
fn read_before(
    mut stream: &TcpStream,
    timeout_set: &mut Option<Duration>,
    dst: &mut [u8],
    deadline: Instant,
) -> Result<usize, ReadStop> {
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining < MIN_TIMEOUT {
            return Err(ReadStop::Deadline);
        }
        let close_enough = timeout_set.is_some_and(|set| {
            set <= remaining + TIMEOUT_SLACK && remaining <= set + TIMEOUT_SLACK
        });
        if !close_enough {
            stream
                .set_read_timeout(Some(remaining))
                .map_err(ReadStop::Io)?;
            *timeout_set = Some(remaining);
        }
        match stream.read(dst) {
            Ok(n) => return Ok(n),
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::Interrupted
                        | io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                ) => {}
            Err(error) => return Err(ReadStop::Io(error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::sync::mpsc;
    use std::thread;

    fn limits() -> Limits {
        Limits {
            max_head_bytes: 8 * 1024,
            max_headers: 32,
            max_body_bytes: 1024,
            read_timeout: Duration::from_millis(300),
            idle_timeout: Duration::from_millis(300),
            write_timeout: Duration::from_secs(2),
        }
    }

    fn parsed(raw: &[u8]) -> (Request, usize) {
        match parse_request(raw, &limits()) {
            Ok(Some(done)) => done,
            Ok(None) => panic!("incomplete: {:?}", String::from_utf8_lossy(raw)),
            Err(response) => panic!(
                "refused with {}: {}",
                response.status,
                String::from_utf8_lossy(&response.body)
            ),
        }
    }

    fn refusal(raw: &[u8]) -> Option<u16> {
        parse_request(raw, &limits())
            .err()
            .map(|response| response.status)
    }

    // --- Pure parser -------------------------------------------------------------------------

    #[test]
    fn parses_a_simple_get() {
        let raw = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
        let (request, used) = parsed(raw);
        assert_eq!(used, raw.len());
        assert_eq!(request.method, Method::Get);
        assert_eq!(request.path, "/healthz");
        assert!(request.body.is_empty());
        assert!(request.keep_alive);
        assert_eq!(request.content_type, None);
    }

    #[test]
    fn parses_a_post_with_content_length_and_the_headers_the_service_uses() {
        let raw = b"POST /event?debug=1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
            authorization: Bearer abc\r\nIdempotency-Key:  k-1  \r\nContent-Length: 7\r\n\r\n{\"a\":1}";
        let (request, used) = parsed(raw);
        assert_eq!(used, raw.len());
        assert_eq!(request.method, Method::Post);
        assert_eq!(request.path, "/event");
        assert_eq!(request.content_type.as_deref(), Some("application/json"));
        assert_eq!(request.authorization.as_deref(), Some("Bearer abc"));
        assert_eq!(request.idempotency_key.as_deref(), Some("k-1"));
        assert_eq!(request.body, b"{\"a\":1}");
    }

    #[test]
    fn decodes_a_chunked_body_with_extensions_and_trailers() {
        let raw = b"POST /event HTTP/1.1\r\nTransfer-Encoding: Chunked \r\n\r\n\
            4;name=value\r\nWiki\r\n5 ; x\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-Trailer: yes\r\n\r\n";
        let (request, used) = parsed(raw);
        assert_eq!(used, raw.len());
        assert_eq!(request.body, b"Wikipedia in\r\n\r\nchunks.");
    }

    #[test]
    fn decodes_a_chunked_body_fed_one_byte_at_a_time() {
        let body = b"3\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nA: b\r\n\r\nNEXT";
        let mut decoder = ChunkedDecoder::default();
        let mut decoded = Vec::new();
        let mut consumed = 0;
        for byte in body.iter() {
            let (used, done) = decoder
                .feed(std::slice::from_ref(byte), &mut decoded, &limits())
                .unwrap_or_else(|r| panic!("refused with {}", r.status));
            consumed += used;
            if done {
                break;
            }
        }
        assert_eq!(decoded, b"abc0123456789abcdef");
        assert_eq!(
            &body[consumed..],
            b"NEXT",
            "the decoder stops at the end of the body"
        );
    }

    #[test]
    fn splits_two_pipelined_requests_in_one_buffer() {
        let raw = b"POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET /b HTTP/1.1\r\n\r\n";
        let (first, used) = parsed(raw);
        assert_eq!(
            (first.path.as_str(), first.body.as_slice()),
            ("/a", &b"abc"[..])
        );
        let (second, used_second) = parsed(&raw[used..]);
        assert_eq!(second.path, "/b");
        assert_eq!(used + used_second, raw.len());
    }

    #[test]
    fn asks_for_more_bytes_on_every_strict_prefix_of_a_request() {
        let requests: [&[u8]; 3] = [
            b"POST /event HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
            b"POST /event HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;e=1\r\nhello\r\n0\r\nT: 1\r\n\r\n",
            b"\r\n\r\nGET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        ];
        for raw in requests {
            for end in 0..raw.len() {
                let outcome = parse_request(&raw[..end], &limits());
                assert!(
                    matches!(outcome, Ok(None)),
                    "prefix of {end} bytes of {:?} should need more bytes",
                    String::from_utf8_lossy(raw)
                );
            }
            assert_eq!(parsed(raw).1, raw.len());
        }
    }

    #[test]
    fn works_out_keep_alive_from_the_version_and_the_connection_header() {
        let cases: [(&[u8], bool, &str); 6] = [
            (
                b"GET / HTTP/1.1\r\n\r\n",
                true,
                "HTTP/1.1 keeps alive by default",
            ),
            (
                b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n",
                false,
                "close is honoured",
            ),
            (
                b"GET / HTTP/1.1\r\nConnection: Keep-Alive, CLOSE\r\n\r\n",
                false,
                "close wins in a token list",
            ),
            (
                b"GET / HTTP/1.0\r\n\r\n",
                false,
                "HTTP/1.0 closes by default",
            ),
            (
                b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
                true,
                "HTTP/1.0 keep-alive is honoured",
            ),
            (
                b"GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n",
                false,
                "close wins across headers",
            ),
        ];
        for (raw, keep_alive, reason) in cases {
            assert_eq!(parsed(raw).0.keep_alive, keep_alive, "{reason}");
        }
    }

    #[test]
    fn reduces_the_request_target_to_its_path() {
        let cases = [
            ("/event?x=1&y=2", "/event", "the query is dropped"),
            (
                "http://example.com/event?x",
                "/event",
                "absolute form loses scheme and host",
            ),
            (
                "HTTPS://example.com:8443/a/b",
                "/a/b",
                "the scheme is case-insensitive",
            ),
            (
                "http://example.com",
                "/",
                "absolute form without a path is the root",
            ),
            ("*", "*", "asterisk form is kept for the router to refuse"),
        ];
        for (target, path, reason) in cases {
            let raw = format!("GET {target} HTTP/1.1\r\n\r\n");
            assert_eq!(parsed(raw.as_bytes()).0.path, path, "{reason}");
        }
    }

    #[test]
    fn maps_methods_case_sensitively() {
        let cases = [
            ("GET", Method::Get),
            ("HEAD", Method::Head),
            ("POST", Method::Post),
            ("PUT", Method::Other),
            ("get", Method::Other),
        ];
        for (token, method) in cases {
            let raw = format!("{token} / HTTP/1.1\r\n\r\n");
            assert_eq!(parsed(raw.as_bytes()).0.method, method, "method {token}");
        }
    }

    #[test]
    fn accepts_repeated_identical_content_lengths() {
        let raw = b"POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 02\r\n\r\nab";
        assert_eq!(parsed(raw).0.body, b"ab");
    }

    #[test]
    fn keeps_an_idempotency_key_that_is_not_utf8_lossily_for_the_router_to_refuse() {
        let raw = b"POST / HTTP/1.1\r\nIdempotency-Key: ab\xffcd\r\n\r\n";
        assert_eq!(
            parsed(raw).0.idempotency_key.as_deref(),
            Some("ab\u{fffd}cd")
        );
    }

    #[test]
    fn a_post_without_length_or_chunking_has_an_empty_body() {
        let (request, _) = parsed(b"POST /event HTTP/1.1\r\n\r\n");
        assert!(request.body.is_empty());
    }

    #[test]
    fn refuses_a_huge_content_length_from_the_head_alone_without_allocating_it() {
        // Allocating these sizes would abort the process (10^12) or panic with a capacity
        // overflow (u64::MAX); the test passing shows neither happened.
        for length in [
            "1000000000000",
            "18446744073709551615",
            "18446744073709551616",
        ] {
            let raw = format!("POST / HTTP/1.1\r\nContent-Length: {length}\r\n\r\n");
            assert_eq!(
                refusal(raw.as_bytes()),
                Some(413),
                "Content-Length {length}"
            );
        }
    }

    #[test]
    fn answers_hostile_requests_with_the_right_status() {
        let big_header = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(1024 * 1024));
        let many_headers = format!("GET / HTTP/1.1\r\n{}\r\n", "X-A: 1\r\n".repeat(100));
        let many_trailers = format!(
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n{}\r\n",
            "T: 1\r\n".repeat(100)
        );
        let big_trailer = format!(
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: {}\r\n\r\n",
            "a".repeat(9000)
        );
        let long_extension = format!(
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1;{}\r\na\r\n0\r\n\r\n",
            "e".repeat(2000)
        );
        let cases: Vec<(&[u8], u16, &str)> = vec![
            (b"POST / HTTP/1.1\r\nContent-Length: 1025\r\n\r\n", 413, "Content-Length just over the limit"),
            (b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999999999\r\n\r\n", 413, "Content-Length past u64 saturates to too large"),
            (b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400, "Content-Length twice with different values"),
            (b"POST / HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\na", 400, "Content-Length as a list"),
            (b"POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\na", 400, "Content-Length with a sign"),
            (b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400, "negative Content-Length"),
            (b"POST / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n", 400, "hex Content-Length"),
            (b"POST / HTTP/1.1\r\nContent-Length: 1 1\r\n\r\n", 400, "Content-Length with inner space"),
            (b"POST / HTTP/1.1\r\nContent-Length:\r\n\r\n", 400, "empty Content-Length"),
            (b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "Content-Length and Transfer-Encoding"),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 400, "Transfer-Encoding other than chunked alone"),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 400, "Transfer-Encoding gzip"),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n", 400, "Transfer-Encoding identity"),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "chunked twice"),
            (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "Transfer-Encoding in HTTP/1.0"),
            (b"GET / HTTP/1.1\nHost: x\r\n\r\n", 400, "bare LF after the request line"),
            (b"GET / HTTP/1.1\r\nHost: x\n\r\n", 400, "bare LF after a header"),
            (b"GET / HTTP/1.1\r\nHost: x\r\n\n", 400, "bare LF as the empty line"),
            (b"GET / HTTP/1.1\n\n", 400, "bare LF everywhere"),
            (b"GET / HTTP/1.1\r\nHost: x\ry\r\n\r\n", 400, "bare CR inside a header"),
            (b"GET / HTTP/1.1\r\nX-A: 1\r\n  continued\r\n\r\n", 400, "obs-fold continuation with spaces"),
            (b"GET / HTTP/1.1\r\nX-A: 1\r\n\tcontinued\r\n\r\n", 400, "obs-fold continuation with a tab"),
            (b"GET / HTTP/1.1\r\nX-A: a\0b\r\n\r\n", 400, "NUL in a header value"),
            (b"GET / HTTP/1.1\r\nX-A: a\x01b\r\n\r\n", 400, "control byte in a header value"),
            (b"GET / HTTP/1.1\r\nX-A: a\x7fb\r\n\r\n", 400, "DEL in a header value"),
            (b"GET / HTTP/1.1\r\nX\0A: ab\r\n\r\n", 400, "NUL in a header name"),
            (b"GET /a\0b HTTP/1.1\r\n\r\n", 400, "NUL in the path"),
            (b"GET /\xff HTTP/1.1\r\n\r\n", 400, "path that is not UTF-8"),
            (b"GET / HTTP/1.1\r\nContent-Length : 1\r\n\r\na", 400, "space before the colon"),
            (b"GET / HTTP/1.1\r\n: empty-name\r\n\r\n", 400, "empty header name"),
            (b"GET  / HTTP/1.1\r\n\r\n", 400, "double space in the request line"),
            (b"GET /\r\n\r\n", 400, "HTTP/0.9 request line"),
            (b"GET / HTTP/2.0\r\n\r\n", 505, "HTTP/2.0"),
            (b"GET / HTTP/1.2\r\n\r\n", 505, "HTTP/1.2"),
            (b"GET / HTTP/1.1x\r\n\r\n", 400, "garbage after the version"),
            (b"GET / FOO/1.1\r\n\r\n", 400, "not HTTP"),
            (b"GET / HTTP/1.1\r\nExpect: 200-ok\r\n\r\n", 417, "unknown expectation"),
            (b"GET / HTTP/1.1\r\nAuthorization: a\r\nAuthorization: b\r\n\r\n", 400, "Authorization twice"),
            (b"GET / HTTP/1.1\r\nIdempotency-Key: a\r\nidempotency-key: a\r\n\r\n", 400, "Idempotency-Key twice"),
            (big_header.as_bytes(), 431, "1 MB header line"),
            (many_headers.as_bytes(), 431, "100 headers"),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n401\r\n", 413, "one chunk over the limit"),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffffffffff\r\n", 413, "chunk size overflowing u64"),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400, "chunk size that is not hex"),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\r\n", 400, "empty chunk size"),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n", 400, "negative chunk size"),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1 2\r\nab\r\n", 400, "two numbers as a chunk size"),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\nab\r\n", 400, "bare LF after a chunk size"),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nabc\r\n", 400, "chunk longer than its size"),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\n0\r\n\r\n", 400, "bare LF after chunk data"),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1;a\0\r\na\r\n", 400, "NUL in a chunk extension"),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n folded\r\n\r\n", 400, "folded trailer"),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: a\0\r\n\r\n", 400, "NUL in a trailer"),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: a\n\r\n", 400, "bare LF in a trailer"),
            (many_trailers.as_bytes(), 431, "100 trailers"),
            (big_trailer.as_bytes(), 431, "trailers past the head size limit"),
            (long_extension.as_bytes(), 400, "chunk extension past the line limit"),
        ];
        for (raw, status, reason) in cases {
            assert_eq!(
                refusal(raw),
                Some(status),
                "{reason}: {:?}",
                String::from_utf8_lossy(&raw[..raw.len().min(120)])
            );
        }
    }

    #[test]
    fn refuses_a_chunked_body_whose_total_passes_the_limit() {
        // Each chunk fits; together they do not. 413 comes at the size of the second chunk,
        // before its data arrives.
        let mut raw = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n258\r\n".to_vec();
        raw.extend_from_slice(&[b'a'; 0x258]);
        raw.extend_from_slice(b"\r\n258\r\n");
        assert_eq!(refusal(&raw), Some(413));
    }

    #[test]
    fn accepts_a_head_exactly_at_the_size_limit_and_refuses_one_byte_more() {
        let limits = Limits {
            max_head_bytes: 256,
            ..limits()
        };
        let prefix = "GET / HTTP/1.1\r\nX: ";
        let fill = 256 - prefix.len() - 4;
        let exact = format!("{prefix}{}\r\n\r\n", "a".repeat(fill));
        assert_eq!(exact.len(), 256);
        assert!(matches!(
            parse_request(exact.as_bytes(), &limits),
            Ok(Some(_))
        ));
        let over = format!("{prefix}{}\r\n\r\n", "a".repeat(fill + 1));
        assert_eq!(
            parse_request(over.as_bytes(), &limits)
                .err()
                .map(|r| r.status),
            Some(431)
        );
    }

    #[test]
    fn accepts_exactly_max_headers_and_refuses_one_more() {
        let exact = format!("GET / HTTP/1.1\r\n{}\r\n", "X-A: 1\r\n".repeat(32));
        assert!(parsed(exact.as_bytes()).0.keep_alive);
        let over = format!("GET / HTTP/1.1\r\n{}\r\n", "X-A: 1\r\n".repeat(33));
        assert_eq!(refusal(over.as_bytes()), Some(431));
    }

    #[test]
    fn parses_requests_with_more_headers_than_the_stack_array_holds() {
        let limits = Limits {
            max_headers: 200,
            ..limits()
        };
        let raw = format!(
            "GET / HTTP/1.1\r\n{}Idempotency-Key: k\r\n\r\n",
            "X-A: 1\r\n".repeat(150)
        );
        let (request, _) = parse_request(raw.as_bytes(), &limits)
            .ok()
            .flatten()
            .expect("a request with 151 headers under a limit of 200");
        assert_eq!(request.idempotency_key.as_deref(), Some("k"));
    }

    #[test]
    fn never_panics_on_mutated_requests() {
        // A cheap deterministic fuzz pass; the property test elsewhere goes further.
        let seeds: [&[u8]; 3] = [
            b"POST /event HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello",
            b"POST /event HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;e\r\nhello\r\n0\r\nT: 1\r\n\r\n",
            b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.1\r\n\r\n",
        ];
        let alphabet = b"\r\n\0 \t:;0123456789abcdefABCDEF-,\xff\x7fHTTP/1.1chunkedContent-Length";
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let small = Limits {
            max_head_bytes: 128,
            max_headers: 4,
            max_body_bytes: 16,
            ..limits()
        };
        for round in 0..20_000 {
            let mut input = seeds[round % seeds.len()].to_vec();
            for _ in 0..(next() % 6 + 1) {
                let at = (next() as usize) % (input.len() + 1);
                match next() % 3 {
                    0 => input.insert(at, alphabet[(next() as usize) % alphabet.len()]),
                    1 if at < input.len() => {
                        input.remove(at);
                    }
                    _ if at < input.len() => input[at] = (next() % 256) as u8,
                    _ => {}
                }
            }
            for limits in [&limits(), &small] {
                if let Ok(Some((_, used))) = parse_request(&input, limits) {
                    assert!(used <= input.len(), "consumed more than given: {input:?}");
                }
            }
        }
    }

    // --- Responses ---------------------------------------------------------------------------

    fn encoded(response: &Response, keep_alive: bool, http10: bool, head_only: bool) -> String {
        let mut out = Vec::new();
        encode_response(
            &mut out,
            response,
            keep_alive,
            http10,
            head_only,
            "Sun, 06 Nov 1994 08:49:37 GMT",
        );
        String::from_utf8(out).expect("responses are ASCII here")
    }

    #[test]
    fn encodes_a_response_with_its_headers_and_body() {
        let response = Response::json(201, b"{\"id\":1}".to_vec()).with_header("Retry-After", "1");
        assert_eq!(
            encoded(&response, true, false, false),
            "HTTP/1.1 201 Created\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
             Content-Type: application/json\r\nContent-Length: 8\r\nRetry-After: 1\r\n\r\n{\"id\":1}"
        );
    }

    #[test]
    fn marks_the_connection_as_closing_or_kept_for_http10() {
        let response = Response::json(200, b"{}".to_vec());
        assert!(encoded(&response, false, false, false).contains("\r\nConnection: close\r\n"));
        assert!(encoded(&response, true, true, false).contains("\r\nConnection: keep-alive\r\n"));
        assert!(!encoded(&response, true, false, false).contains("Connection:"));
    }

    #[test]
    fn answers_head_with_the_length_but_without_the_body() {
        let text = encoded(
            &Response::json(200, b"{\"a\":1}".to_vec()),
            true,
            false,
            true,
        );
        assert!(text.contains("Content-Length: 7\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
    }

    #[test]
    fn does_not_let_extra_headers_inject_or_duplicate_headers() {
        let response = Response::error(405, "no")
            .with_header("Allow", "POST\r\nSet-Cookie: x=1")
            .with_header("content-length", "99")
            .with_header("Connection", "keep-alive");
        let text = encoded(&response, false, false, false);
        assert!(text.contains("Allow: POST  Set-Cookie: x=1\r\n"), "{text}");
        assert_eq!(text.matches("ontent-").count(), 2, "{text}");
        assert_eq!(text.matches("Connection:").count(), 1, "{text}");
    }

    #[test]
    fn every_status_the_service_uses_has_a_reason_phrase() {
        for status in [
            100, 200, 201, 400, 401, 404, 405, 408, 411, 413, 415, 417, 422, 429, 431, 500, 501,
            503, 505,
        ] {
            assert!(!reason_phrase(status).is_empty(), "status {status}");
        }
    }

    #[test]
    fn error_bodies_are_json_with_the_message_escaped() {
        let response = Response::error(400, "bad \"quote\"\n\u{1}");
        let value: serde_json::Value =
            serde_json::from_slice(&response.body).expect("error bodies are JSON");
        assert_eq!(value, serde_json::json!({"error": "bad \"quote\"\n\u{1}"}));
    }

    // --- Sockets -----------------------------------------------------------------------------

    /// What the test server saw on a connection.
    #[derive(Debug, PartialEq)]
    enum Seen {
        Request { path: String, body_len: usize },
        Closed,
        Rejected(u16),
        Io,
    }

    #[test]
    fn an_answerer_never_blocks_and_hands_back_what_the_socket_did_not_take() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let mut connection = Connection::new(server, limits());
        client
            .write_all(b"POST /event HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi")
            .unwrap();
        connection.read_request().expect("a request");
        let framing = connection.framing(true, false);
        let mut answerer = connection.answerer();

        // The client reads nothing: answers pile up until the socket takes only part of one.
        let body = vec![b'x'; 256 * 1024];
        let response = Response::json(200, body);
        let mut sent = 0usize;
        loop {
            connection.expect_answer();
            let started = Instant::now();
            let outcome = answerer.send(&response, framing);
            assert!(
                started.elapsed() < Duration::from_millis(500),
                "send blocked"
            );
            match outcome {
                Sent::All => {
                    sent += 1;
                    connection.settle().expect("nothing left to write");
                }
                Sent::Part => break,
                Sent::Failed => panic!("the send failed"),
            }
            assert!(sent < 1000, "the socket never filled up");
        }
        let mut one = Vec::new();
        encode_response(&mut one, &response, true, false, false, answerer.date.now());

        // The connection's thread writes the rest (blocking) while the client reads it all.
        let reader = thread::spawn(move || {
            let mut all = Vec::new();
            client
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut chunk = vec![0u8; 64 * 1024];
            loop {
                match client.read(&mut chunk) {
                    Ok(0) | Err(_) => break all,
                    Ok(n) => all.extend_from_slice(&chunk[..n]),
                }
            }
        });
        connection.settle().expect("the rest is written");
        // Blocking again: a read with a timeout waits for it instead of failing at once.
        connection
            .stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let started = Instant::now();
        let mut byte = [0u8; 1];
        assert!((&*connection.stream).read(&mut byte).is_err());
        assert!(
            started.elapsed() >= Duration::from_millis(150),
            "the socket was left non-blocking"
        );
        connection.stream.shutdown(Shutdown::Write).unwrap();
        let all = reader.join().unwrap();
        // Every answer arrived whole and in order: the complete ones, then the split one. (The
        // Date header may have turned a second meanwhile; it has a fixed length.)
        let without_date = |answer: &[u8]| {
            let mut answer = answer.to_vec();
            let at = answer.windows(8).position(|w| w == b"\r\nDate: ").unwrap() + 8;
            answer[at..at + 29].fill(b'-');
            answer
        };
        assert_eq!(all.len(), one.len() * (sent + 1));
        for (i, answer) in all.chunks(one.len()).enumerate() {
            assert!(
                without_date(answer) == without_date(&one),
                "answer {i} differs"
            );
        }
    }

    /// A server on 127.0.0.1:0 serving every connection with `Connection` in a loop: each
    /// request is answered 200 with the path and the body length. Threads are left to end
    /// with the test process.
    fn spawn_server(limits: Limits) -> (SocketAddr, mpsc::Receiver<Seen>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = listener.local_addr().expect("listener address");
        let (seen, events) = mpsc::channel();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (limits, seen) = (limits.clone(), seen.clone());
                thread::spawn(move || serve(Connection::new(stream, limits), seen));
            }
        });
        (addr, events)
    }

    fn serve(mut connection: Connection, seen: mpsc::Sender<Seen>) {
        loop {
            match connection.read_request() {
                Ok(request) => {
                    let body =
                        serde_json::json!({"path": request.path, "body_len": request.body.len()});
                    let response = Response::json(200, body.to_string().into_bytes());
                    let _ = seen.send(Seen::Request {
                        path: request.path.clone(),
                        body_len: request.body.len(),
                    });
                    let head_only = request.method == Method::Head;
                    if connection
                        .write_response(&response, request.keep_alive, head_only)
                        .is_err()
                    {
                        return;
                    }
                    if !request.keep_alive {
                        connection.linger_close();
                        return;
                    }
                }
                Err(ReadError::Closed) => {
                    let _ = seen.send(Seen::Closed);
                    return;
                }
                Err(ReadError::Reject(response)) => {
                    let _ = seen.send(Seen::Rejected(response.status));
                    connection.reject_and_close(&response);
                    return;
                }
                Err(ReadError::Io(_)) => {
                    let _ = seen.send(Seen::Io);
                    return;
                }
            }
        }
    }

    #[derive(Debug)]
    struct Reply {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Reply {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }

        fn json(&self) -> serde_json::Value {
            serde_json::from_slice(&self.body).expect("the test server answers JSON")
        }
    }

    /// A raw-socket client that reads responses one by one, keeping extra bytes.
    struct Client {
        stream: TcpStream,
        buf: Vec<u8>,
    }

    impl Client {
        fn connect(addr: SocketAddr) -> Client {
            let stream = TcpStream::connect(addr).expect("connect to the test server");
            // A safety net so a broken server fails the test instead of hanging it.
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .expect("set a client timeout");
            stream.set_nodelay(true).expect("set TCP_NODELAY");
            Client {
                stream,
                buf: Vec::new(),
            }
        }

        fn send(&mut self, bytes: &[u8]) {
            self.stream
                .write_all(bytes)
                .expect("send to the test server");
        }

        /// Reads more bytes; false at the end of the stream.
        fn fill(&mut self) -> bool {
            let mut chunk = [0u8; 4096];
            let n = self
                .stream
                .read(&mut chunk)
                .expect("read from the test server");
            self.buf.extend_from_slice(&chunk[..n]);
            n > 0
        }

        /// The next response; `head` for an answer to HEAD, which has no body.
        fn reply(&mut self, head: bool) -> Reply {
            loop {
                let mut headers = [httparse::EMPTY_HEADER; 32];
                let mut response = httparse::Response::new(&mut headers);
                if let httparse::Status::Complete(head_len) =
                    response.parse(&self.buf).expect("a well-formed response")
                {
                    let status = response.code.expect("a status");
                    let headers: Vec<(String, String)> = response
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_owned(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect();
                    let length: usize = headers
                        .iter()
                        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                        .map_or(0, |(_, v)| v.parse().expect("a numeric Content-Length"));
                    let length = if head || status == 100 { 0 } else { length };
                    while self.buf.len() < head_len + length {
                        assert!(self.fill(), "connection closed inside a response body");
                    }
                    let body = self.buf[head_len..head_len + length].to_vec();
                    self.buf.drain(..head_len + length);
                    return Reply {
                        status,
                        headers,
                        body,
                    };
                }
                assert!(self.fill(), "connection closed before a complete response");
            }
        }

        /// True when the server closed the connection (after any buffered responses).
        fn closed_by_server(&mut self) -> bool {
            self.buf.is_empty() && !self.fill()
        }
    }

    #[test]
    fn answers_pipelined_requests_in_order() {
        let (addr, _) = spawn_server(limits());
        let mut client = Client::connect(addr);
        client.send(
            b"GET /one HTTP/1.1\r\n\r\n\
              POST /two HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc\
              POST /three HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n2\r\ncd\r\n0\r\n\r\n\
              HEAD /four HTTP/1.1\r\n\r\n\
              GET /five HTTP/1.1\r\n\r\n",
        );
        for (path, body_len, head) in [
            ("/one", 0, false),
            ("/two", 3, false),
            ("/three", 4, false),
            ("/four", 0, true),
            ("/five", 0, false),
        ] {
            let reply = client.reply(head);
            assert_eq!(reply.status, 200, "{path}");
            if head {
                assert!(reply.body.is_empty(), "HEAD gets no body");
                assert_ne!(
                    reply.header("Content-Length"),
                    Some("0"),
                    "HEAD keeps the length"
                );
            } else {
                assert_eq!(
                    reply.json(),
                    serde_json::json!({"path": path, "body_len": body_len}),
                    "answers arrive in request order"
                );
            }
            assert!(reply.header("Date").is_some());
            assert_eq!(reply.header("Content-Type"), Some("application/json"));
        }
    }

    #[test]
    fn reads_a_body_that_arrives_in_pieces() {
        let (addr, events) = spawn_server(limits());
        let mut client = Client::connect(addr);
        let parts: [&[u8]; 6] = [
            b"POST /trickle HTTP/1.1\r\nTransfer-",
            b"Encoding: chunked\r\n\r",
            b"\n3\r",
            b"\nabc\r\n1",
            b"0\r\n0123456789abcdef\r\n0\r\n",
            b"\r\n",
        ];
        for part in parts {
            client.send(part);
            thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(client.reply(false).status, 200);
        assert_eq!(
            events.recv_timeout(Duration::from_secs(5)).ok(),
            Some(Seen::Request {
                path: "/trickle".into(),
                body_len: 19
            })
        );
    }

    #[test]
    fn cuts_off_a_client_that_sends_half_a_head_and_stalls() {
        let (addr, events) = spawn_server(limits());
        let mut client = Client::connect(addr);
        let started = Instant::now();
        client.send(b"POST /event HTTP/1.1\r\nContent-Le");
        let reply = client.reply(false);
        let waited = started.elapsed();
        assert_eq!(reply.status, 408);
        assert_eq!(reply.header("Connection"), Some("close"));
        assert!(
            waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
            "cut off after {waited:?}, read_timeout is 300 ms"
        );
        assert_eq!(
            events.recv_timeout(Duration::from_secs(5)).ok(),
            Some(Seen::Rejected(408))
        );
        assert!(client.closed_by_server());
    }

    #[test]
    fn cuts_off_a_client_that_drips_a_head_at_the_absolute_deadline() {
        let (addr, _) = spawn_server(limits());
        let mut client = Client::connect(addr);
        let started = Instant::now();
        // One byte every 50 ms never lets a per-read timeout expire; the deadline still does.
        let mut writer = client.stream.try_clone().expect("clone the client socket");
        let dripper = thread::spawn(move || {
            for byte in b"GET / HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter() {
                if writer.write_all(std::slice::from_ref(byte)).is_err() {
                    break;
                }
                thread::sleep(Duration::from_millis(50));
            }
        });
        let reply = client.reply(false);
        let waited = started.elapsed();
        assert_eq!(reply.status, 408);
        assert!(
            waited < Duration::from_millis(1500),
            "the head deadline is absolute, cut off after {waited:?}"
        );
        let _ = dripper.join();
    }

    #[test]
    fn cuts_off_a_body_that_stalls() {
        let (addr, events) = spawn_server(limits());
        let mut client = Client::connect(addr);
        client.send(b"POST /event HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc");
        assert_eq!(client.reply(false).status, 408);
        assert_eq!(
            events.recv_timeout(Duration::from_secs(5)).ok(),
            Some(Seen::Rejected(408))
        );
    }

    #[test]
    fn sends_100_continue_before_reading_the_body() {
        let (addr, _) = spawn_server(limits());
        let mut client = Client::connect(addr);
        client.send(b"POST /event HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
        let interim = client.reply(false);
        assert_eq!(interim.status, 100);
        client.send(b"hello");
        let reply = client.reply(false);
        assert_eq!(reply.status, 200);
        assert_eq!(reply.json()["body_len"], 5);
    }

    #[test]
    fn skips_100_continue_when_the_body_is_already_on_its_way() {
        let (addr, _) = spawn_server(limits());
        let mut client = Client::connect(addr);
        client.send(
            b"POST /event HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello",
        );
        let reply = client.reply(false);
        assert_eq!(reply.status, 200, "no 100 before the final answer");
    }

    #[test]
    fn refuses_an_oversized_expect_100_continue_with_413_and_no_100() {
        let (addr, _) = spawn_server(limits());
        let mut client = Client::connect(addr);
        client
            .send(b"POST /event HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n");
        let reply = client.reply(false);
        assert_eq!(reply.status, 413);
        assert_eq!(reply.header("Connection"), Some("close"));
    }

    #[test]
    fn delivers_413_for_a_huge_content_length_while_the_client_keeps_sending() {
        let (addr, events) = spawn_server(limits());
        let mut client = Client::connect(addr);
        // The head and the start of the body leave in one write, so the server has unread
        // input when it answers.
        let mut first = b"POST /event HTTP/1.1\r\nContent-Length: 1000000000000\r\n\r\n".to_vec();
        first.resize(first.len() + 64 * 1024, b'x');
        client.send(&first);
        assert_eq!(
            events.recv_timeout(Duration::from_secs(5)).ok(),
            Some(Seen::Rejected(413))
        );
        thread::sleep(Duration::from_millis(100));
        // The server has answered; the client, not reading yet, keeps sending its body. Had
        // the server closed with unread input, the kernel would have sent a reset and these
        // writes would fail with ECONNRESET or EPIPE, as they do for real clients.
        let junk = vec![b'x'; 16 * 1024];
        for _ in 0..16 {
            client.send(&junk);
        }
        let reply = client.reply(false);
        assert_eq!(reply.status, 413);
        assert_eq!(reply.header("Connection"), Some("close"));
        assert!(client.closed_by_server());
    }

    #[test]
    fn closes_an_idle_keep_alive_connection_after_the_idle_timeout() {
        let (addr, events) = spawn_server(limits());
        let mut client = Client::connect(addr);
        client.send(b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(client.reply(false).status, 200);
        let idle_since = Instant::now();
        assert!(client.closed_by_server());
        let idle = idle_since.elapsed();
        assert!(
            idle >= Duration::from_millis(250) && idle < Duration::from_secs(3),
            "closed after {idle:?} idle, idle_timeout is 300 ms"
        );
        assert!(matches!(
            events.recv_timeout(Duration::from_secs(5)),
            Ok(Seen::Request { .. })
        ));
        assert_eq!(
            events.recv_timeout(Duration::from_secs(5)).ok(),
            Some(Seen::Closed),
            "an idle timeout is a quiet close, not a 408"
        );
    }

    #[test]
    fn honours_connection_close() {
        let (addr, _) = spawn_server(limits());
        let mut client = Client::connect(addr);
        client.send(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\nGET /ignored HTTP/1.1\r\n\r\n");
        let reply = client.reply(false);
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("Connection"), Some("close"));
        assert!(client.closed_by_server(), "nothing is answered after close");
    }

    #[test]
    fn keeps_an_http10_client_alive_only_when_it_asks() {
        let (addr, _) = spawn_server(limits());
        let mut client = Client::connect(addr);
        client.send(b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        let reply = client.reply(false);
        assert_eq!(reply.header("Connection"), Some("keep-alive"));
        client.send(b"GET /b HTTP/1.0\r\n\r\n");
        let reply = client.reply(false);
        assert_eq!(reply.header("Connection"), Some("close"));
        assert!(client.closed_by_server());
    }

    #[test]
    fn a_shutdown_handle_wakes_an_idle_read() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let _client = TcpStream::connect(listener.local_addr().expect("address")).expect("connect");
        let (stream, _) = listener.accept().expect("accept");
        let mut connection = Connection::new(
            stream,
            Limits {
                idle_timeout: Duration::from_secs(30),
                ..limits()
            },
        );
        assert!(connection.peer_addr().is_some());
        let handle = connection.shutdown_handle().expect("clone the socket");
        let reader = thread::spawn(move || {
            let started = Instant::now();
            let closed = matches!(connection.read_request(), Err(ReadError::Closed));
            (closed, started.elapsed())
        });
        thread::sleep(Duration::from_millis(100));
        handle
            .shutdown(Shutdown::Both)
            .expect("shut the socket down");
        let (closed, waited) = reader.join().expect("the reader does not panic");
        assert!(closed, "an idle read ends as Closed");
        assert!(waited < Duration::from_secs(5), "woken after {waited:?}");
    }
}
