//! Response encoding: a whole response into one buffer, so it leaves in one `write`.

use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use super::head::is_forbidden_control;
use super::response::Response;

/// How one answer is framed on its connection, decided when its request was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseFraming {
    /// False adds `Connection: close`.
    pub keep_alive: bool,
    /// A kept-alive HTTP/1.0 client gets `Connection: keep-alive`.
    pub http10: bool,
    /// An answer to HEAD: the headers, with the `Content-Length` of the body, but no body.
    pub head_only: bool,
}

impl ResponseFraming {
    /// The answer that ends a connection (a refusal, the busy answer).
    pub const CLOSING: ResponseFraming = ResponseFraming {
        keep_alive: false,
        http10: false,
        head_only: false,
    };
}

/// Header names the encoder writes itself; extra headers with these names are dropped.
const MANAGED_HEADERS: [&str; 5] = [
    "date",
    "content-type",
    "content-length",
    "connection",
    "transfer-encoding",
];

/// Encodes a whole response into `out` (appending), with `date` as its `Date` header.
#[inline(never)]
pub fn encode_response(
    out: &mut Vec<u8>,
    response: &Response,
    framing: ResponseFraming,
    date: Option<&str>,
) {
    let status = response.status;
    // Writing into a Vec cannot fail.
    let _ = write!(out, "HTTP/1.1 {} {}\r\n", status.code(), status.reason());
    // RFC 9110, section 6.6.1: a 5xx may go without Date; only the busy answer, encoded once
    // at start, does.
    if let Some(date) = date {
        let _ = write!(out, "Date: {date}\r\n");
    }
    let _ = write!(
        out,
        "Content-Type: {}\r\nContent-Length: {}\r\n",
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
    if !framing.keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if framing.http10 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !framing.head_only {
        out.extend_from_slice(&response.body);
    }
}

/// The `Date` header value, formatted at most once a second per connection.
#[derive(Debug, Default)]
pub struct DateCache {
    second: u64,
    text: String,
}

impl DateCache {
    pub fn now(&mut self) -> &str {
        let now = SystemTime::now();
        let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if second != self.second || self.text.is_empty() {
            self.second = second;
            self.text = httpdate::fmt_http_date(now);
        }
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Status;

    fn encoded(response: &Response, keep_alive: bool, http10: bool, head_only: bool) -> String {
        let mut out = Vec::new();
        let framing = ResponseFraming {
            keep_alive,
            http10,
            head_only,
        };
        encode_response(
            &mut out,
            response,
            framing,
            Some("Sun, 06 Nov 1994 08:49:37 GMT"),
        );
        String::from_utf8(out).expect("responses are ASCII here")
    }

    #[test]
    fn encodes_a_response_with_its_headers_and_body() {
        let response =
            Response::json(Status::Created, b"{\"id\":1}".to_vec()).with_header("Retry-After", "1");
        assert_eq!(
            encoded(&response, true, false, false),
            "HTTP/1.1 201 Created\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
             Content-Type: application/json\r\nContent-Length: 8\r\nRetry-After: 1\r\n\r\n{\"id\":1}"
        );
    }

    #[test]
    fn marks_the_connection_as_closing_or_kept_for_http10() {
        let response = Response::json(Status::Ok, b"{}".to_vec());
        assert!(encoded(&response, false, false, false).contains("\r\nConnection: close\r\n"));
        assert!(encoded(&response, true, true, false).contains("\r\nConnection: keep-alive\r\n"));
        assert!(!encoded(&response, true, false, false).contains("Connection:"));
    }

    #[test]
    fn answers_head_with_the_length_but_without_the_body() {
        let text = encoded(
            &Response::json(Status::Ok, b"{\"a\":1}".to_vec()),
            true,
            false,
            true,
        );
        assert!(text.contains("Content-Length: 7\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
    }

    #[test]
    fn does_not_let_extra_headers_inject_or_duplicate_headers() {
        let response = Response::error(Status::MethodNotAllowed, "no")
            .with_header("Allow", "POST\r\nSet-Cookie: x=1")
            .with_header("content-length", "99")
            .with_header("Connection", "keep-alive");
        let text = encoded(&response, false, false, false);
        assert!(text.contains("Allow: POST  Set-Cookie: x=1\r\n"), "{text}");
        assert_eq!(text.matches("ontent-").count(), 2, "{text}");
        assert_eq!(text.matches("Connection:").count(), 1, "{text}");
    }

    #[test]
    fn the_declared_length_is_the_length_of_the_body_sent() {
        let response = Response::error(Status::ServiceUnavailable, "too many open connections")
            .with_header("Retry-After", "1");
        let text = encoded(&response, false, false, false);
        let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
        assert!(
            head.contains(&format!("Content-Length: {}\r\n", body.len())),
            "{text}"
        );
    }
}
