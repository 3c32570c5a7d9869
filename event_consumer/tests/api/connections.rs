//! The `max_connections` bound: past it a new connection gets a fast 503 and is closed; the
//! connections already open keep being served, and a slot that frees up is used again.

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::helpers::{connect, read_response, wait_until, TestApp};

const HEALTHZ_KEPT_ALIVE: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";

/// A response read to the end of the connection, checked for framing byte by byte: a head of
/// CRLF-terminated lines, then exactly `Content-Length` bytes and nothing after them.
struct WholeResponse {
    status_line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl WholeResponse {
    fn parse(raw: &[u8]) -> WholeResponse {
        let text = String::from_utf8_lossy(raw);
        let end = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no complete head (no CRLF CRLF) in {text:?}"));
        let head = std::str::from_utf8(&raw[..end])
            .unwrap_or_else(|_| panic!("the head is not UTF-8: {text:?}"));
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default().to_owned();
        let headers = lines
            .map(|line| {
                assert!(
                    !line.contains('\r') && !line.contains('\n'),
                    "a bare CR or LF in header line {line:?}"
                );
                let (name, value) = line
                    .split_once(':')
                    .unwrap_or_else(|| panic!("header line without a colon: {line:?}"));
                assert!(
                    !name.is_empty() && !name.contains(char::is_whitespace),
                    "malformed header name {name:?}"
                );
                (name.to_owned(), value.trim().to_owned())
            })
            .collect();
        WholeResponse {
            status_line,
            headers,
            body: raw[end + 4..].to_vec(),
        }
    }

    fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers_named(name).first().copied()
    }
}

/// A new connection asking `/healthz`: its status, or None when it was refused in a way that
/// lost the answer (a reset: the server may close before it has read the request).
fn healthz_on_a_new_connection(app: &TestApp) -> Option<u16> {
    let mut stream = connect(app.addr);
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .ok()?;
    read_response(&mut BufReader::new(stream)).map(|r| r.status)
}

#[test]
fn past_max_connections_a_new_connection_reads_a_well_formed_503_and_is_served_once_one_closes() {
    const MAX_CONNECTIONS: usize = 4;
    let app = TestApp::spawn_with(|c| c.consumer.max_connections = MAX_CONNECTIONS);

    // Each held connection has had a request answered: the server has taken it, not just the
    // kernel's listen backlog.
    let mut held: Vec<BufReader<TcpStream>> = (0..MAX_CONNECTIONS)
        .map(|i| {
            let mut reader = BufReader::new(connect(app.addr));
            reader.get_mut().write_all(HEALTHZ_KEPT_ALIVE).unwrap();
            let answer = read_response(&mut reader)
                .unwrap_or_else(|| panic!("held connection {i}: no answer to GET /healthz"));
            assert_eq!(answer.status, 200, "held connection {i}: {}", answer.body);
            reader
        })
        .collect();

    // One more. It sends nothing, so the close after the answer cannot become a reset.
    let mut extra = connect(app.addr);
    let mut raw = Vec::new();
    extra
        .read_to_end(&mut raw)
        .expect("an answer and then a close within 15 s on the connection past the bound");
    let busy = WholeResponse::parse(&raw);
    let text = String::from_utf8_lossy(&raw);
    assert!(
        busy.status_line.starts_with("HTTP/1.1 503 ") && busy.status_line.len() > 13,
        "status line {:?} in {text:?}",
        busy.status_line
    );
    let retry_after = busy
        .header("Retry-After")
        .unwrap_or_else(|| panic!("no Retry-After in {text:?}"));
    assert!(
        retry_after.parse::<u32>().is_ok(),
        "Retry-After {retry_after:?} is not a number of seconds"
    );
    let lengths = busy.headers_named("Content-Length");
    assert_eq!(
        lengths.len(),
        1,
        "Content-Length headers {lengths:?} in {text:?}"
    );
    assert_eq!(
        lengths[0].parse::<usize>().ok(),
        Some(busy.body.len()),
        "Content-Length says {}, the body has {} bytes: {text:?}",
        lengths[0],
        busy.body.len()
    );
    assert!(
        busy.header("Content-Type")
            .is_some_and(|t| t.starts_with("application/json")),
        "Content-Type in {text:?}"
    );
    let json: serde_json::Value = serde_json::from_slice(&busy.body)
        .unwrap_or_else(|e| panic!("the 503 body is not JSON ({e}): {text:?}"));
    assert!(
        json["error"].as_str().is_some_and(|m| !m.is_empty()),
        "no error message in {text:?}"
    );

    // The connections already open are untouched by the refusal.
    held[0].get_mut().write_all(HEALTHZ_KEPT_ALIVE).unwrap();
    let still = read_response(&mut held[0]).expect("a held connection still answers");
    assert_eq!(still.status, 200, "{}", still.body);

    // One closes; once the server has noticed, a new connection is served normally.
    drop(held.pop());
    wait_until(
        "a new connection served (GET /healthz 200) after one held connection closed",
        Duration::from_secs(10),
        || {
            let status = healthz_on_a_new_connection(&app);
            assert!(
                matches!(status, None | Some(200) | Some(503)),
                "a new connection got {status:?}"
            );
            status == Some(200)
        },
    );
    drop(held);
}
