//! Raw-socket tests of the HTTP layer through the whole consumer, hostile inputs included.

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use test_support::TestDb;

use crate::helpers::{connect, read_response, send, ConsumerProcess, TestApp, GOOD_EVENT};

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
fn a_10_mb_body_is_refused_quickly_without_being_held_in_memory() {
    let db = TestDb::new();
    let consumer = ConsumerProcess::start(&db, "", &[]);
    let before = consumer.rss_kib();
    let started = Instant::now();
    let mut stream = connect(consumer.addr);
    let body_len = 10 * 1024 * 1024;
    let head = format!("POST /event HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {body_len}\r\n\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    // Keep sending the body in a thread: the answer must come without reading it all.
    let mut writer = stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let chunk = vec![b'x'; 64 * 1024];
        let mut sent = 0;
        while sent < body_len {
            if writer.write_all(&chunk).is_err() {
                break;
            }
            sent += chunk.len();
        }
    });
    let response =
        read_response(&mut BufReader::new(stream)).expect("a 413 before the connection closes");
    let elapsed = started.elapsed();
    assert_eq!(response.status, 413);
    assert!(elapsed < Duration::from_secs(3), "413 took {elapsed:?}");
    let _ = sender.join();
    let after = consumer.rss_kib();
    println!("10 MB body: 413 after {elapsed:?}; RSS {before} -> {after} KiB");
    assert!(
        after < before + 4096,
        "RSS grew from {before} to {after} KiB"
    );
    assert_eq!(db.count_events(), 0);
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

#[test]
fn a_client_that_sends_half_a_request_and_stalls_is_cut_off_after_the_read_timeout() {
    let app = TestApp::spawn_with(|c| c.consumer.read_timeout_seconds = 0.5);
    let mut stream = connect(app.addr);
    stream
        .write_all(b"POST /event HTTP/1.1\r\nHost: t\r\nContent-Le")
        .unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(400) && elapsed < Duration::from_secs(5),
        "cut after {elapsed:?}"
    );
    let text = String::from_utf8_lossy(&rest);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
}

#[test]
fn a_slow_body_is_cut_off_at_the_deadline_even_if_bytes_keep_trickling() {
    let app = TestApp::spawn_with(|c| c.consumer.read_timeout_seconds = 0.6);
    let mut stream = connect(app.addr);
    stream
        .write_all(b"POST /event HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n")
        .unwrap();
    let started = Instant::now();
    let mut cut = false;
    for _ in 0..30 {
        std::thread::sleep(Duration::from_millis(100));
        if stream.write_all(b"x").is_err() {
            cut = true;
            break;
        }
        let mut probe = [0u8; 512];
        stream
            .set_read_timeout(Some(Duration::from_millis(1)))
            .unwrap();
        if let Ok(n) = stream.read(&mut probe) {
            cut = true;
            let text = String::from_utf8_lossy(&probe[..n]);
            assert!(n == 0 || text.starts_with("HTTP/1.1 408"), "{text}");
            break;
        }
    }
    assert!(cut, "a body trickling one byte per 100 ms was not cut off");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "cut after {:?}",
        started.elapsed()
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

#[test]
fn two_hundred_idle_connections_do_not_stop_a_normal_request() {
    let app = TestApp::spawn();
    let idle: Vec<TcpStream> = (0..200).map(|_| connect(app.addr)).collect();
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let response = app.post(GOOD_EVENT, &[]);
    let elapsed = started.elapsed();
    assert_eq!(response.status, 201);
    println!("with 200 idle connections open, a request took {elapsed:?}");
    assert!(elapsed < Duration::from_secs(1), "took {elapsed:?}");
    drop(idle);
}
