//! Refusals that come before the body (issue 12): a missing token is answered from the head
//! alone, a body that finds no room in the body budget gets 503, and bytes that cannot start a
//! request line (a TLS handshake) get 400 at once.

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;

use event_consumer::http::MAX_BUFFERED_BODY_BYTES;

use crate::helpers::{connect, read_response, RawResponse, TestApp};

/// A valid event whose body is exactly `len` bytes.
fn event_of(len: usize) -> String {
    let frame = r#"{"event_type":"large","event_payload":""}"#;
    format!(
        r#"{{"event_type":"large","event_payload":"{}"}}"#,
        "p".repeat(len - frame.len())
    )
}

fn head_declaring(len: usize, extra: &str) -> String {
    format!(
        "POST /event HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: application/json\r\n{extra}\
         Content-Length: {len}\r\n\r\n"
    )
}

/// Reads one answer, then the end of the stream: the server closed after it.
fn answer_then_closed(stream: TcpStream) -> RawResponse {
    let mut reader = BufReader::new(stream);
    let response = read_response(&mut reader).expect("an answer before the close");
    let mut rest = Vec::new();
    // A reset instead of a clean end is a close all the same; a timeout is not.
    if let Err(e) = reader.read_to_end(&mut rest) {
        assert!(
            !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "the connection stayed open after the {}",
            response.status
        );
    }
    assert!(rest.is_empty(), "more after the answer: {rest:?}");
    response
}

#[test]
fn an_unauthorized_request_declaring_a_large_body_gets_401_before_sending_it_and_is_closed() {
    let app =
        TestApp::spawn_with(|c| c.consumer.auth_token = Some(common::Secret::new("s3cret-token")));
    for (auth, what) in [
        ("", "no token"),
        ("Authorization: Bearer wrong\r\n", "a wrong token"),
    ] {
        let mut stream = connect(app.addr);
        // Only the head: the 401 must come without a byte of the 60,000 declared.
        stream
            .write_all(head_declaring(60_000, auth).as_bytes())
            .unwrap();
        let response = answer_then_closed(stream);
        assert_eq!(response.status, 401, "{what}: {}", response.body);
        assert_eq!(
            response.header("WWW-Authenticate"),
            Some("Bearer"),
            "{what}"
        );
        assert_eq!(response.header("Connection"), Some("close"), "{what}");
    }
    // With the token the same large body is read and stored.
    let body = event_of(60_000);
    let response = app.post(&body, &[("Authorization", "Bearer s3cret-token")]);
    assert_eq!(response.status, 201, "{}", response.body);
    assert_eq!(app.db.count_events(), 1);
    assert_eq!(
        app.metric("event_consumer_requests_total{route=\"/event\",status=\"401\"}"),
        Some(2.0)
    );
}

#[test]
fn a_body_that_does_not_fit_in_the_body_budget_gets_503_with_retry_after_and_the_other_is_stored() {
    // Room for one such body at a time: each is over half the budget (a constant, 8 MiB).
    let len = MAX_BUFFERED_BODY_BYTES / 2 + 1024;
    let app = TestApp::spawn_with(|c| c.consumer.max_body_bytes = len);
    let body = event_of(len);
    let (first, rest) = body.as_bytes().split_at(1000);
    // Two uploads start at once; whichever the server reaches second finds the budget taken.
    let (answered, answers) = mpsc::channel();
    let mut writers = Vec::new();
    for which in 0..2 {
        let mut stream = connect(app.addr);
        stream
            .write_all(head_declaring(body.len(), "").as_bytes())
            .unwrap();
        stream.write_all(first).unwrap();
        writers.push(stream.try_clone().unwrap());
        let answered = answered.clone();
        std::thread::spawn(move || {
            let _ = answered.send((which, answer_then_closed(stream)));
        });
    }
    // A reader that panicked drops its sender: then `recv` fails instead of waiting forever.
    drop(answered);
    let (refused, response) = answers.recv().expect("one upload is answered first");
    assert_eq!(response.status, 503, "{}", response.body);
    assert_eq!(response.header("Retry-After"), Some("1"));
    assert_eq!(response.header("Connection"), Some("close"));
    // The other holds its share and is still waiting for its body.
    let mut other = writers.swap_remove(1 - refused);
    other.write_all(rest).unwrap();
    let (_, response) = answers.recv().expect("the other upload is answered");
    assert_eq!(response.status, 201, "{}", response.body);
    assert_eq!(app.db.count_events(), 1);
}

#[test]
fn a_tls_client_hello_on_the_plain_port_gets_400_and_the_connection_closes() {
    let app = TestApp::spawn();
    let mut stream = connect(app.addr);
    // The start of a TLS 1.2 ClientHello record: handshake (0x16), version 3.1, length, type 1.
    let mut hello = vec![
        0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0x00, 0x00, 0xc4, 0x03, 0x03,
    ];
    hello.extend_from_slice(&[0x5a; 32]);
    stream.write_all(&hello).unwrap();
    // A 400, not the 408 that a head never completed would get after read_timeout_seconds.
    let response = answer_then_closed(stream);
    assert_eq!(response.status, 400, "{}", response.body);
    assert_eq!(response.header("Connection"), Some("close"));
    // Empty lines before a request line are still ignored.
    let mut stream = connect(app.addr);
    stream
        .write_all(b"\r\n\r\nGET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    assert_eq!(answer_then_closed(stream).status, 200);
}
