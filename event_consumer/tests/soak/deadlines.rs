//! Deadlines measured on the wall clock: how soon a refusal comes, how long a stalled or
//! trickling client is kept. `make test` checks the same behaviour without the clock (see
//! `tests/api/hostile.rs` and `tests/api/contract.rs`); here each bound is asserted, alone.

use std::io::{BufReader, Read, Write};
use std::time::{Duration, Instant};

use test_support::{Cluster, TestDb};

use crate::helpers::GOOD_EVENT;
use crate::helpers::{connect, post_event, read_response, test_config, ConsumerProcess, TestApp};

#[test]
fn a_10_mb_body_is_refused_quickly_without_being_held_in_memory() {
    let _alone = crate::measuring_alone();
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
fn a_client_that_sends_half_a_request_and_stalls_is_cut_off_after_the_read_timeout() {
    let _alone = crate::measuring_alone();
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
    let _alone = crate::measuring_alone();
    let app = TestApp::spawn_with(|c| c.consumer.read_timeout_seconds = 0.6);
    let mut stream = connect(app.addr);
    stream
        .write_all(b"POST /event HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n")
        .unwrap();
    let started = Instant::now();
    let mut cut = false;
    for _ in 0..30 {
        // The pace of the trickle, not a wait for the server.
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

/// `make test` checks the 503 and the recovery
/// (`a_stopped_database_gives_503_with_retry_after_and_service_recovers_without_restart`);
/// this checks that the 503 does not wait much longer than one connect timeout.
#[test]
fn a_stopped_database_is_answered_503_within_5_seconds() {
    let _alone = crate::measuring_alone();
    let cluster = Cluster::start();
    let db = TestDb::on(&cluster.server());
    let config = test_config(&db, |c| {
        c.database.connect_timeout_seconds = 1.0;
        c.consumer.workers = 3;
    });
    let running = event_consumer::start(&config).unwrap();
    let addr = running.addr();
    assert_eq!(post_event(addr, GOOD_EVENT, &[]).status, 201);

    cluster.stop("fast");
    for i in 0..5 {
        let started = Instant::now();
        let response = post_event(addr, GOOD_EVENT, &[]);
        let elapsed = started.elapsed();
        assert_eq!(response.status, 503, "request {i}: {}", response.body);
        assert!(
            elapsed < Duration::from_secs(5),
            "request {i}: 503 took {elapsed:?}"
        );
    }
    cluster.pg_ctl_start();
    running.shutdown();
}
