//! Hostile clients against the consumer binary (a child process, so its memory is its own):
//! idle and trickling connections, header bombs, huge declared bodies, smuggling shapes,
//! deep pipelining, half-closed sockets (file descriptors: `descriptors.rs`).
//!
//! For each: the client gets a 4xx or a closed connection (never a 5xx), the process stays up
//! with its peak resident memory (VmHWM) under [`RSS_BOUND_KIB`], and a normal request succeeds
//! afterwards.

use std::io::{BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use test_support::TestDb;

use crate::helpers::{
    connect, peak_rss_kib, post_event, read_response, ConsumerProcess, ProcessOptions, GOOD_EVENT,
};

/// Peak resident memory the consumer may reach under any abuse here. The largest measured peak
/// is about 28 MiB, with 1,200 open connections (a thread each, about 18 KiB resident per
/// connection); 10 MB header bombs and terabyte declarations stay near the 6 MiB baseline.
const RSS_BOUND_KIB: u64 = 64 * 1024;

/// The checks every abuse ends with: still running, memory within the bound, a normal request
/// stored. Prints the peak.
pub(crate) fn assert_survived(consumer: &mut ConsumerProcess, what: &str) {
    assert!(
        consumer.child.try_wait().unwrap().is_none(),
        "{what}: the consumer exited"
    );
    let peak = peak_rss_kib(consumer.pid());
    println!(
        "{what}: peak RSS {:.1} MiB (bound {} MiB)",
        peak as f64 / 1024.0,
        RSS_BOUND_KIB / 1024
    );
    assert!(
        peak > 0 && peak < RSS_BOUND_KIB,
        "{what}: peak RSS {peak} KiB, bound {RSS_BOUND_KIB} KiB"
    );
    let response = post_event(consumer.addr, GOOD_EVENT, &[]);
    assert_eq!(
        response.status, 201,
        "{what}: a normal request afterwards: {}",
        response.body
    );
}

/// What a hostile request got: a status, or the connection closed (EOF or reset) unanswered.
pub(crate) fn answer_or_close(stream: TcpStream, timeout: Duration) -> Option<u16> {
    stream.set_read_timeout(Some(timeout)).unwrap();
    read_response(&mut BufReader::new(stream)).map(|r| r.status)
}

fn assert_4xx_or_closed(answer: Option<u16>, what: &str) {
    if let Some(status) = answer {
        assert!((400..500).contains(&status), "{what}: answered {status}");
    }
}

/// Logs at warn so the piped stderr of the child (read only at exit) never fills.
pub(crate) const QUIET: &[(&str, &str)] = &[("LOG_LEVEL", "warn")];

fn start(db: &TestDb, consumer_yaml: &str) -> ConsumerProcess {
    ConsumerProcess::start_with(
        db,
        ProcessOptions {
            consumer_yaml,
            env: QUIET,
            ..ProcessOptions::default()
        },
    )
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[test]
fn a_normal_client_stays_fast_beside_1000_idle_and_200_trickling_connections() {
    // Alone, so that its p99 measures what idle and slow connections cost a normal client.
    let _alone = crate::measuring_alone();
    let db = TestDb::new();
    // A short head deadline, so the trickling clients are cut off within the test; room for
    // all 1,200 connections and the normal client (the shipped max_connections is 384).
    let mut consumer = start(
        &db,
        "  read_timeout_seconds: 4\n  idle_timeout_seconds: 60\n  max_connections: 2048\n",
    );
    let addr = consumer.addr;

    let limit = open_files_limit();
    assert!(
        limit >= 4096,
        "this test holds about 1,600 sockets, but ulimit -n is {limit}: raise it (ulimit -n 20000)"
    );
    let idle: Vec<TcpStream> = (0..1000).map(|_| connect(addr)).collect();
    let trickling: Vec<TcpStream> = (0..200).map(|_| connect(addr)).collect();
    let writers: Vec<TcpStream> = trickling.iter().map(|s| s.try_clone().unwrap()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let trickler = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let head = b"POST /event HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n";
            let mut writers = writers;
            for &byte in head.iter().cycle() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                // One byte a second on each connection; a cut-off one just fails its writes.
                for w in &mut writers {
                    let _ = w.write_all(&[byte]);
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(1500));

    let mut latencies = Vec::with_capacity(200);
    for i in 0..200 {
        let key = format!("normal-{i}");
        let started = Instant::now();
        let response = post_event(addr, GOOD_EVENT, &[("Idempotency-Key", &key)]);
        latencies.push(started.elapsed());
        assert_eq!(
            response.status, 201,
            "normal request {i}: {}",
            response.body
        );
    }
    latencies.sort();
    let p50 = percentile(&latencies, 0.50);
    let p99 = percentile(&latencies, 0.99);
    println!(
        "normal client beside 1000 idle + 200 one-byte-a-second connections: 200 requests, \
         p50 {p50:?}, p99 {p99:?}, max {:?}",
        latencies.last().unwrap()
    );
    assert!(p99 < Duration::from_millis(100), "p99 {p99:?}");

    // The trickling clients passed their 4 s head deadline: each got a 408 or was closed.
    std::thread::sleep(Duration::from_millis(3000));
    stop.store(true, Ordering::Relaxed);
    trickler.join().unwrap();
    let mut answered_408 = 0;
    for stream in trickling {
        let answer = answer_or_close(stream, Duration::from_secs(5));
        assert_4xx_or_closed(answer, "a one-byte-a-second client");
        answered_408 += usize::from(answer == Some(408));
    }
    println!("trickling clients: {answered_408} of 200 read a 408, the others found the connection closed");
    assert_survived(&mut consumer, "1000 idle + 200 trickling connections");
    drop(idle);
}

/// Sends `raw` from a thread (the server may answer and close before it is all written) and
/// returns what the connection got back.
fn send_bomb(addr: SocketAddr, raw: Arc<Vec<u8>>) -> Option<u16> {
    let stream = connect(addr);
    let mut writer = stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        for chunk in raw.chunks(64 * 1024) {
            if writer.write_all(chunk).is_err() {
                break;
            }
        }
    });
    let answer = answer_or_close(stream, Duration::from_secs(10));
    sender.join().unwrap();
    answer
}

#[test]
fn ten_megabyte_header_bombs_are_refused_and_memory_stays_bounded() {
    let _shared = crate::beside_other_abuse();
    let db = TestDb::new();
    let mut consumer = start(&db, "");
    let ten_mb = 10 * 1024 * 1024;

    let mut many_lines = b"POST /event HTTP/1.1\r\nHost: t\r\n".to_vec();
    let mut n = 0;
    while many_lines.len() < ten_mb {
        many_lines.extend_from_slice(format!("X-Bomb-{n}: {}\r\n", "b".repeat(90)).as_bytes());
        n += 1;
    }
    many_lines.extend_from_slice(b"\r\n");
    let mut one_line = b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Bomb: ".to_vec();
    one_line.resize(ten_mb, b'b');
    one_line.extend_from_slice(b"\r\n\r\n");
    let mut long_target = b"GET /".to_vec();
    long_target.resize(ten_mb, b'a');
    long_target.extend_from_slice(b" HTTP/1.1\r\nHost: t\r\n\r\n");

    let bombs = [
        ("10 MB of 100-byte header lines", Arc::new(many_lines)),
        ("one 10 MB header line", Arc::new(one_line)),
        ("a 10 MB request target", Arc::new(long_target)),
    ];
    for (what, raw) in &bombs {
        let answer = send_bomb(consumer.addr, Arc::clone(raw));
        println!("{what}: answered {answer:?}");
        assert_4xx_or_closed(answer, what);
    }
    // Eight at once, all of the first shape.
    let at_once: Vec<_> = (0..8)
        .map(|_| {
            let raw = Arc::clone(&bombs[0].1);
            let addr = consumer.addr;
            std::thread::spawn(move || send_bomb(addr, raw))
        })
        .collect();
    for bomb in at_once {
        assert_4xx_or_closed(bomb.join().unwrap(), "8 header bombs at once");
    }
    assert_survived(&mut consumer, "10 MB header bombs");
    assert_eq!(db.count_events(), 1, "only the normal request is stored");
}

#[test]
fn ten_thousand_requests_declaring_a_terabyte_body_get_413() {
    let _shared = crate::beside_other_abuse();
    let db = TestDb::new();
    let mut consumer = start(&db, "");
    let addr = consumer.addr;
    let started = Instant::now();
    let refused = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let refused = Arc::clone(&refused);
            std::thread::spawn(move || {
                for _ in 0..2500 {
                    let mut stream = connect(addr);
                    stream
                        .write_all(
                            b"POST /event HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
                              Content-Length: 1000000000000\r\n\r\n",
                        )
                        .unwrap();
                    let answer = answer_or_close(stream, Duration::from_secs(10));
                    assert_eq!(answer, Some(413), "a declared 10^12-byte body");
                    refused.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    println!(
        "10,000 requests declaring Content-Length 10^12: {} answered 413 in {:?}",
        refused.load(Ordering::Relaxed),
        started.elapsed()
    );
    assert_survived(&mut consumer, "10,000 declared terabyte bodies");
    assert_eq!(db.count_events(), 1, "only the normal request is stored");
}

/// A request that would be stored if it were ever parsed as a request of its own.
const SMUGGLED: &str = "POST /event HTTP/1.1\r\nHost: t\r\nContent-Length: 49\r\n\r\n\
{\"event_type\":\"smuggled\",\"event_payload\":\"oops!\"}";

#[test]
fn request_smuggling_shapes_get_a_4xx_and_nothing_behind_them_is_served() {
    let _shared = crate::beside_other_abuse();
    assert_eq!(SMUGGLED.len() - SMUGGLED.find("\r\n\r\n").unwrap() - 4, 49);
    let db = TestDb::new();
    let mut consumer = start(&db, "");
    let head = "POST /event HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n";
    let shapes: Vec<(&str, String)> = vec![
        (
            "Content-Length twice with different values",
            format!("{head}Content-Length: 0\r\nContent-Length: 4\r\n\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        ("Content-Length as a list", format!("{head}Content-Length: 0, 4\r\n\r\n{SMUGGLED}")),
        ("Content-Length with a sign", format!("{head}Content-Length: +0\r\n\r\n{SMUGGLED}")),
        ("Content-Length in hex", format!("{head}Content-Length: 0x0\r\n\r\n{SMUGGLED}")),
        (
            "Transfer-Encoding chunked with Content-Length",
            format!("{head}Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        (
            "Content-Length with Transfer-Encoding chunked",
            format!("{head}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        (
            "Transfer-Encoding: gzip, chunked",
            format!("{head}Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        (
            "Transfer-Encoding chunked twice",
            format!("{head}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        ("Transfer-Encoding: xchunked", format!("{head}Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n{SMUGGLED}")),
        (
            "space before the colon",
            format!("{head}Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        (
            "chunked in HTTP/1.0",
            format!("POST /event HTTP/1.0\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        ("bare LF line endings", format!("POST /event HTTP/1.1\nHost: t\nContent-Length: 0\n\n{SMUGGLED}")),
        ("bare LF after the head", format!("{head}Content-Length: 0\r\n\n{SMUGGLED}")),
        ("bare CR in a header", format!("{head}X-A: a\rContent-Length: 0\r\n\r\n{SMUGGLED}")),
        ("obs-fold header", format!("{head}X-A: a\r\n  folded\r\nContent-Length: 0\r\n\r\n{SMUGGLED}")),
        (
            "obs-fold of Content-Length",
            format!("{head}Content-Length:\r\n 0\r\n\r\n{SMUGGLED}"),
        ),
        ("NUL in a header value", format!("{head}X-A: a\0b\r\nContent-Length: 0\r\n\r\n{SMUGGLED}")),
        ("NUL in a header name", format!("{head}X-\0A: a\r\nContent-Length: 0\r\n\r\n{SMUGGLED}")),
        ("NUL in the request target", format!("POST /event\0 HTTP/1.1\r\nContent-Length: 0\r\n\r\n{SMUGGLED}")),
        (
            "chunk size overflowing 64 bits",
            format!("{head}Transfer-Encoding: chunked\r\n\r\n1ffffffffffffffff\r\nx\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        (
            "bare LF in the chunked framing",
            format!("{head}Transfer-Encoding: chunked\r\n\r\n0\n\n{SMUGGLED}"),
        ),
    ];
    for (what, raw) in &shapes {
        let mut stream = connect(consumer.addr);
        // The server may refuse and close before it has read everything.
        let _ = stream.write_all(raw.as_bytes());
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut reader = BufReader::new(stream);
        let first = read_response(&mut reader).map(|r| r.status);
        assert_4xx_or_closed(first, what);
        let second = read_response(&mut reader).map(|r| r.status);
        assert_eq!(
            second, None,
            "{what}: a second answer, to the request behind it"
        );
        println!(
            "{what}: {}",
            first.map_or("closed".to_owned(), |s| s.to_string())
        );
    }
    let smuggled: i64 = db
        .client()
        .query_one(
            "SELECT count(*) FROM events WHERE event_type = 'smuggled'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(smuggled, 0, "a smuggled request was stored");
    // Control: on its own, the request behind each shape is stored.
    let control = crate::helpers::send(
        consumer.addr,
        SMUGGLED
            .replacen("Host: t", "Connection: close", 1)
            .as_bytes(),
    );
    assert_eq!(
        control.status, 201,
        "the smuggled request on its own: {}",
        control.body
    );
    assert_survived(&mut consumer, "request smuggling shapes");
}

#[test]
fn a_thousand_pipelined_requests_on_one_connection_are_all_answered_in_order() {
    let _shared = crate::beside_other_abuse();
    let db = TestDb::new();
    let mut consumer = start(&db, "");
    let mut raw = Vec::new();
    for i in 0..1000 {
        let body = format!(r#"{{"event_type":"pipelined","event_payload":"{i}"}}"#);
        raw.extend_from_slice(
            format!(
                "POST /event HTTP/1.1\r\nHost: t\r\nIdempotency-Key: pipe-{i}\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
    }
    let stream = connect(consumer.addr);
    let mut writer = stream.try_clone().unwrap();
    // Written from a thread: the answers come back while the requests are still being sent,
    // and neither side may wait for the other's buffer to drain.
    let sender = std::thread::spawn(move || writer.write_all(&raw));
    let started = Instant::now();
    let mut reader = BufReader::new(stream);
    let mut last_id = 0;
    for i in 0..1000 {
        let response =
            read_response(&mut reader).unwrap_or_else(|| panic!("no answer to request {i}"));
        assert_eq!(response.status, 201, "request {i}: {}", response.body);
        let id = response.json()["id"].as_i64().unwrap();
        assert!(id > last_id, "answer {i} is out of order");
        last_id = id;
    }
    sender.join().unwrap().unwrap();
    println!(
        "1000 pipelined requests answered in order in {:?}",
        started.elapsed()
    );
    let stored: i64 = db
        .client()
        .query_one(
            "SELECT count(DISTINCT event_payload) FROM events WHERE event_type = 'pipelined'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(stored, 1000);
    assert_survived(&mut consumer, "1000 pipelined requests");
}

#[test]
fn a_client_that_half_closes_after_its_request_still_gets_the_answer() {
    let _shared = crate::beside_other_abuse();
    let db = TestDb::new();
    let mut consumer = start(&db, "");
    let post = |key: &str| {
        format!(
            "POST /event HTTP/1.1\r\nHost: t\r\nIdempotency-Key: {key}\r\nContent-Length: {}\r\n\r\n{GOOD_EVENT}",
            GOOD_EVENT.len()
        )
    };
    let cases: Vec<(&str, String, Vec<u16>)> = vec![
        ("one POST", post("half-1"), vec![201]),
        (
            "two pipelined POSTs",
            format!("{}{}", post("half-2"), post("half-3")),
            vec![201, 201],
        ),
        (
            "a GET",
            "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n".into(),
            vec![200],
        ),
        (
            "an HTTP/1.0 POST",
            post("half-4").replacen("HTTP/1.1", "HTTP/1.0", 1),
            vec![201],
        ),
        (
            "a refused request",
            "BREW /pot HTTP/1.1\r\nHost: t\r\n\r\n".into(),
            vec![404],
        ),
        (
            "half a head",
            "POST /event HTTP/1.1\r\nHost: t\r\nContent-Le".into(),
            vec![],
        ),
        (
            "half a body",
            post("half-5")[..post("half-5").len() - 10].to_owned(),
            vec![],
        ),
    ];
    for (what, raw, expected) in cases {
        let mut stream = connect(consumer.addr);
        stream.write_all(raw.as_bytes()).unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut reader = BufReader::new(stream);
        let mut got = Vec::new();
        while let Some(response) = read_response(&mut reader) {
            got.push(response.status);
        }
        // An incomplete request may also be answered 400 before the close.
        let acceptable =
            got == expected || (expected.is_empty() && got.iter().all(|s| (400..500).contains(s)));
        assert!(acceptable, "{what}: got {got:?}, expected {expected:?}");
        println!("{what}, then shutdown(Write): answers {got:?}, then closed");
    }
    let stored: i64 = db
        .client()
        .query_one(
            "SELECT count(*) FROM events WHERE idempotency_key LIKE 'half-%'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(stored, 4, "half-1 to half-4 stored, not the cut-off half-5");
    assert_survived(&mut consumer, "half-closed connections");
}

/// The soft limit on open files of this process (the consumer's own reading of it); unlimited
/// or unknown as `u64::MAX`.
pub(crate) fn open_files_limit() -> u64 {
    event_consumer::descriptors::open_files_limit().unwrap_or(u64::MAX)
}
