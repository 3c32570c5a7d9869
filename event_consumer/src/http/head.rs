//! Request heads: finding where a head ends (incrementally, as bytes arrive) and turning a
//! complete head into a checked [`Head`]: method, path, the headers the service uses, and how
//! the body is framed. Pure functions over bytes; [`super::framer`] drives them.

use super::limits::Limits;
use super::request::{Method, Request, RequestHead};
use super::response::Response;
use super::status::Status;

/// Requests with at most this many headers are parsed with a header array on the stack.
const STACK_HEADERS: usize = 16;

/// Finds the end of a request head, incrementally: a later call on the same (grown) buffer
/// resumes where the previous one stopped, so a head arriving byte by byte is scanned once.
/// It enforces what httparse does not: CRLF line endings only, and the size and count limits
/// before the head is complete.
#[derive(Debug, Default)]
pub(super) struct HeadScanner {
    /// Next byte to look at.
    pos: usize,
    /// Start of the line being scanned.
    line_start: usize,
    /// Start of the request line, after any empty lines (RFC 9112, section 2.2 allows them).
    pub(super) head_start: usize,
    /// Complete non-empty lines so far: the request line and the headers.
    lines: usize,
    /// The space after the method was seen: the request line's first token is complete.
    method_done: bool,
}

impl HeadScanner {
    /// `Ok(Some(end))`: the head is `buf[self.head_start..end]`, ending with the empty line.
    pub(super) fn scan(&mut self, buf: &[u8], limits: &Limits) -> Result<Option<usize>, Response> {
        let limit = buf.len().min(limits.max_head_bytes);
        let mut i = self.pos;
        while let Some(&byte) = buf.get(i).filter(|_| i < limit) {
            match byte {
                b'\n' => {
                    if i == 0 || buf.get(i - 1) != Some(&b'\r') {
                        return Err(Response::error(
                            Status::BadRequest,
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
                // The byte after a CR is looked at only within the head limit, so whether a head
                // at the limit is refused as too large does not depend on how its bytes were
                // cut into reads (found by the http_framer fuzz target).
                b'\r' => match buf.get(i + 1).filter(|_| i + 1 < limit) {
                    Some(b'\n') => {}
                    Some(_) => {
                        return Err(Response::error(
                            Status::BadRequest,
                            "request head contains a CR that is not followed by LF",
                        ))
                    }
                    // Decide when the next byte is here (or refuse the head as too large).
                    None => break,
                },
                // The method is a token (RFC 9110, section 9.1): a byte that cannot be part of
                // one is refused at once, so a TLS handshake (0x16) or other binary protocol on
                // the plain port is answered 400 now rather than holding a thread until 408.
                _ if self.lines == 0 && !self.method_done => {
                    if byte == b' ' && i > self.line_start {
                        self.method_done = true;
                    } else if !is_tchar(byte) {
                        return Err(Response::error(
                            Status::BadRequest,
                            "not an HTTP/1.1 request: a request line starts with a method token \
                             (plain HTTP here, no TLS)",
                        ));
                    }
                }
                _ => {}
            }
            i += 1;
        }
        self.pos = i;
        if buf.len() >= limits.max_head_bytes {
            return Err(Response::error(
                Status::RequestHeaderFieldsTooLarge,
                &format!(
                    "request head is larger than {} bytes",
                    limits.max_head_bytes
                ),
            ));
        }
        Ok(None)
    }

    pub(super) fn header_count(&self) -> usize {
        self.lines.saturating_sub(1)
    }
}

fn too_many_headers(limits: &Limits) -> Response {
    Response::error(
        Status::RequestHeaderFieldsTooLarge,
        &format!("request has more than {} header fields", limits.max_headers),
    )
}

pub(super) fn body_too_large(limits: &Limits) -> Response {
    Response::error(
        Status::ContentTooLarge,
        &format!(
            "request body is larger than {} bytes",
            limits.max_body_bytes
        ),
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BodyFraming {
    /// Exactly this many body bytes follow (0 without `Content-Length`); within the limit.
    Length(usize),
    Chunked,
}

/// A parsed, checked head: the request without its body, plus how to read the body.
#[derive(Debug)]
pub(super) struct Head {
    method: Method,
    path: String,
    content_type: Option<String>,
    content_encoding: Option<String>,
    authorization: Option<String>,
    idempotency_key: Option<String>,
    keep_alive: bool,
    http10: bool,
    pub(super) framing: BodyFraming,
    pub(super) expect_continue: bool,
}

impl Head {
    pub(super) fn path(&self) -> &str {
        &self.path
    }

    pub(super) fn view(&self) -> RequestHead<'_> {
        RequestHead {
            method: self.method,
            path: &self.path,
            authorization: self.authorization.as_deref(),
        }
    }

    pub(super) fn into_request(self, body: Vec<u8>) -> Request {
        Request {
            method: self.method,
            path: self.path,
            content_type: self.content_type,
            content_encoding: self.content_encoding,
            authorization: self.authorization,
            idempotency_key: self.idempotency_key,
            body,
            keep_alive: self.keep_alive,
            http10: self.http10,
        }
    }
}

/// Parses a complete head (request line to the empty line) holding `header_count` headers.
#[inline(never)]
pub(super) fn parse_head(
    head: &[u8],
    header_count: usize,
    limits: &Limits,
) -> Result<Head, Response> {
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
        Ok(_) => {
            return Err(Response::error(
                Status::BadRequest,
                "malformed request head",
            ))
        }
        Err(httparse::Error::Version) => return Err(version_error(head)),
        Err(httparse::Error::TooManyHeaders) => return Err(too_many_headers(limits)),
        Err(error) => {
            return Err(Response::error(
                Status::BadRequest,
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
    let mut content_encoding = None;
    let mut authorization = None;
    let mut idempotency_key = None;
    for header in parsed.headers.iter() {
        let name = header.name;
        let value = header.value.trim_ascii();
        if name.eq_ignore_ascii_case("content-length") {
            let Some(length) = parse_content_length(value) else {
                return Err(Response::error(
                    Status::BadRequest,
                    "Content-Length must be a non-negative decimal number",
                ));
            };
            if content_length.is_some_and(|seen| seen != length) {
                return Err(Response::error(
                    Status::BadRequest,
                    "Content-Length is given twice with different values",
                ));
            }
            content_length = Some(length);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Anything but a single `chunked` is a framing we cannot read safely; 400, never
            // "guess chunked" (request smuggling).
            if chunked {
                return Err(Response::error(
                    Status::BadRequest,
                    "Transfer-Encoding is given twice",
                ));
            }
            if !value.eq_ignore_ascii_case(b"chunked") {
                return Err(Response::error(
                    Status::BadRequest,
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
                    Status::ExpectationFailed,
                    "unsupported Expect: only `100-continue` is accepted",
                ));
            }
            expect_continue = true;
        } else if name.eq_ignore_ascii_case("content-type") {
            set_once(&mut content_type, "Content-Type", value)?;
        } else if name.eq_ignore_ascii_case("content-encoding") {
            set_once(&mut content_encoding, "Content-Encoding", value)?;
        } else if name.eq_ignore_ascii_case("authorization") {
            set_once(&mut authorization, "Authorization", value)?;
        } else if name.eq_ignore_ascii_case("idempotency-key") {
            set_once(&mut idempotency_key, "Idempotency-Key", value)?;
        }
    }

    let framing = match (content_length, chunked) {
        (Some(_), true) => {
            return Err(Response::error(
                Status::BadRequest,
                "Content-Length and Transfer-Encoding must not both be given",
            ))
        }
        // RFC 9112, section 6.1: Transfer-Encoding in an HTTP/1.0 message is faulty framing.
        (None, true) if http10 => {
            return Err(Response::error(
                Status::BadRequest,
                "Transfer-Encoding is not allowed in HTTP/1.0",
            ))
        }
        (None, true) => BodyFraming::Chunked,
        (Some(length), false) => match usize::try_from(length) {
            Ok(length) if length <= limits.max_body_for(&path) => BodyFraming::Length(length),
            _ => return Err(body_too_large(&limits.for_body_of(&path))),
        },
        (None, false) => BodyFraming::Length(0),
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
        content_encoding,
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
        return Err(Response::error(
            Status::BadRequest,
            &format!("{name} is given twice"),
        ));
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
            Response::error(
                Status::HttpVersionNotSupported,
                "HTTP version not supported: use HTTP/1.1",
            )
        }
        _ => Response::error(
            Status::BadRequest,
            "malformed request line: no valid HTTP version",
        ),
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

/// The path of a head's request line, for counting a refused request under its route. Only
/// called for heads that were refused, which httparse may not have read to the end.
pub(super) fn path_of(head: &[u8]) -> Option<String> {
    let line = head.split(|&b| b == b'\r').next()?;
    let target = line.split(|&b| b == b' ').nth(1)?;
    let target = std::str::from_utf8(target).ok()?;
    Some(request_path(target).to_owned())
}

/// `tchar` of RFC 9110, section 5.6.2: the bytes a token (such as a method) is made of.
fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// Control bytes other than HTAB are refused in header values, chunk extensions and trailers.
pub(super) fn is_forbidden_control(byte: u8) -> bool {
    (byte < 0x20 && byte != b'\t') || byte == 0x7f
}
