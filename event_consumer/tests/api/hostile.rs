//! Raw-socket tests of the HTTP layer through the whole consumer, hostile inputs included.

use std::io::{BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use test_support::TestDb;

use crate::helpers::{
    connect, read_response, send, wait_until, ConsumerProcess, TestApp, GOOD_EVENT,
};

#[test]
fn a_declared_100_gb_body_is_refused_413_and_memory_stays_flat() {
    let db = TestDb::new();
    let consumer = ConsumerProcess::start(&db, "", &[]);
    let before = consumer.rss_kib();
    for _ in 0..20 {
        let response = send(
            consumer.addr,
            b"POST /event HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 100000000000\r\n\r\n{",
        );
        assert_eq!(response.status, 413);
    }
    let after = consumer.rss_kib();
    println!("RSS before {before} KiB, after 20 x 100 GB declared bodies {after} KiB");
    assert!(
        after < before + 4096,
        "RSS grew from {before} to {after} KiB"
    );
}

#[test]
fn a_1_mb_header_line_is_refused() {
    let app = TestApp::spawn();
    let mut raw = b"GET /healthz HTTP/1.1\r\nX-Big: ".to_vec();
    raw.extend(std::iter::repeat_n(b'a', 1024 * 1024));
    raw.extend_from_slice(b"\r\n\r\n");
    let mut stream = connect(app.addr);
    // The server may answer and close before all of it is written.
    let _ = stream.write_all(&raw);
    let response = read_response(&mut BufReader::new(stream)).expect("an answer");
    assert!(
        matches!(response.status, 431 | 400),
        "got {}",
        response.status
    );
}

/// Only the outcome; how soon the cut comes is measured in the soak binary (`deadlines.rs`).
#[test]
fn a_client_that_sends_half_a_request_and_stalls_is_cut_off_with_408_or_a_close() {
    let app = TestApp::spawn_with(|c| c.consumer.read_timeout_seconds = 0.5);
    let mut stream = connect(app.addr);
    stream
        .write_all(b"POST /event HTTP/1.1\r\nHost: t\r\nContent-Le")
        .unwrap();
    // `connect` set a 15 s read timeout: far past the 0.5 s deadline, it only stops a hang.
    let mut rest = Vec::new();
    if let Err(e) = stream.read_to_end(&mut rest) {
        assert!(
            !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "still open 15 s after the half request, with read_timeout_seconds 0.5"
        );
        // Reset instead of closed: cut off all the same.
    }
    let text = String::from_utf8_lossy(&rest);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let app = TestApp::spawn();
    let mut raw = Vec::new();
    for i in 0..5 {
        let body = format!(r#"{{"event_type":"pipelined","event_payload":"{i}"}}"#);
        raw.extend_from_slice(
            format!(
                "POST /event HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
    }
    raw.extend_from_slice(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let mut stream = connect(app.addr);
    stream.write_all(&raw).unwrap();
    let mut reader = BufReader::new(stream);
    let mut client = app.db.client();
    for i in 0..5 {
        let response = read_response(&mut reader).expect("a response per request");
        assert_eq!(response.status, 201);
        let id = response.json()["id"].as_i64().unwrap();
        let payload: String = client
            .query_one("SELECT event_payload FROM events WHERE id = $1", &[&id])
            .unwrap()
            .get(0);
        assert_eq!(payload, i.to_string(), "answer {i} belongs to request {i}");
    }
    assert_eq!(read_response(&mut reader).unwrap().status, 200);
}

#[test]
fn a_chunked_body_within_the_limit_is_accepted() {
    let app = TestApp::spawn();
    let (a, b) = GOOD_EVENT.split_at(10);
    let raw = format!(
        "POST /event HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
        a.len(),
        b.len()
    );
    let response = send(app.addr, raw.as_bytes());
    assert_eq!(response.status, 201, "{}", response.body);
}

#[test]
fn request_smuggling_shapes_are_refused_with_400() {
    let app = TestApp::spawn();
    let shapes: [(&str, &[u8]); 5] = [
        (
            "Content-Length and Transfer-Encoding",
            b"POST /event HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "two different Content-Lengths",
            b"POST /event HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}x",
        ),
        (
            "gzip, chunked",
            b"POST /event HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        ),
        ("bare LF line endings", b"POST /event HTTP/1.1\nHost: t\nContent-Length: 2\n\n{}"),
        (
            "obs-fold header",
            b"POST /event HTTP/1.1\r\nHost: t\r\nX-A: a\r\n  folded\r\nContent-Length: 2\r\n\r\n{}",
        ),
    ];
    for (reason, raw) in shapes {
        let response = send(app.addr, raw);
        assert_eq!(response.status, 400, "{reason}");
    }
    assert_eq!(app.db.count_events(), 0);
}

/// How fast the request is beside idle (and trickling) connections is the soak's p99 test.
#[test]
fn two_hundred_idle_connections_do_not_stop_a_normal_request() {
    let app = TestApp::spawn();
    let idle: Vec<TcpStream> = (0..200).map(|_| connect(app.addr)).collect();
    // All accepted before the normal request is sent; the metrics request is one more.
    wait_until(
        "the consumer counting the 200 idle connections as open",
        Duration::from_secs(10),
        || app.metric("event_consumer_open_connections") >= Some(201.0),
    );
    let response = app.post(GOOD_EVENT, &[]);
    assert_eq!(response.status, 201, "{}", response.body);
    drop(idle);
}
