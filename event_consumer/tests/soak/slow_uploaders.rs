//! Memory under slow uploaders (issue 12, part 2): 2,000 connections that each declare a
//! 60,000-byte body, send 59,000 bytes of it and then trickle; and, separately, 2,000 idle
//! keep-alive connections. The consumer binary runs with its shipped defaults (8 MiB body
//! budget) but room for all 2,000 (`max_connections: 2048`; the shipped default is 384)
//! as a child process, so its peak resident memory (VmHWM) is its own; a normal client beside
//! them must still get its 201s. What a memory cgroup charges for the same connections, and
//! the shipped `max_connections`, are in memory_cgroup.rs.
//!
//! Memory is measured on the binary that ships: `scripts/soak.sh` builds the release binary and
//! names it in `EVENTS_RELEASE_CONSUMER`. The debug build of the tests spends about 1.5 times
//! the stack per thread (unoptimised frames), which is not what a VM runs.

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use test_support::TestDb;

use crate::abuse::{open_files_limit, QUIET};
use crate::helpers::peak_rss_kib;
use crate::helpers::{connect, post_event, read_response, ConsumerProcess, ProcessOptions};

/// The target of issue 12 for 2,000 slow uploaders or 2,000 idle connections, on a 256 MB VM.
/// Met by the idle connections (about 45 MB measured, release binary).
const PEAK_RSS_TARGET_KIB: u64 = 48 * 1000 * 1000 / 1024;

/// The same target for the slow uploaders: the 8 MiB body budget (full) plus 2,000 threads of
/// 12 KiB of stack each (3 pages: glibc's thread block and std's start take 6 KiB before our
/// code runs) plus their buffers and a 6 MiB baseline.
const SLOW_UPLOADERS_BOUND_KIB: u64 = PEAK_RSS_TARGET_KIB;

const CONNECTIONS: usize = 2000;
const DECLARED: usize = 60_000;
const SENT: usize = 59_000;

/// Threads that write for the hostile connections, so no one blocked write holds up the rest.
const DRIVERS: usize = 8;

fn start(db: &TestDb) -> ConsumerProcess {
    let binary = std::env::var("EVENTS_RELEASE_CONSUMER").unwrap_or_default();
    assert!(
        std::path::Path::new(&binary).is_file(),
        "EVENTS_RELEASE_CONSUMER names no file ({binary:?}): run this test through \
         scripts/soak.sh, which builds the release binary and sets it"
    );
    ConsumerProcess::start_with(
        db,
        ProcessOptions {
            env: QUIET,
            binary: Some(&binary),
            consumer_yaml: "  max_connections: 2048\n",
            ..ProcessOptions::default()
        },
    )
}

fn assert_enough_descriptors() {
    let limit = open_files_limit();
    assert!(
        limit >= 4 * CONNECTIONS as u64,
        "this test holds {CONNECTIONS} sockets, but ulimit -n is {limit}: run it through \
         scripts/soak.sh, which raises it"
    );
}

/// Posts events one after another until `stop`, each on a new connection; every one must be
/// stored. Returns how many were.
fn normal_client(addr: SocketAddr, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut stored = 0;
        while !stop.load(Ordering::Relaxed) {
            let key = format!("normal-{stored}");
            let response = post_event(
                addr,
                r#"{"event_type":"normal","event_payload":"beside the slow ones"}"#,
                &[("Idempotency-Key", &key)],
            );
            assert_eq!(
                response.status, 201,
                "normal request {stored} beside the hostile connections: {}",
                response.body
            );
            stored += 1;
            std::thread::sleep(Duration::from_millis(100));
        }
        stored
    })
}

fn assert_within(consumer: &mut ConsumerProcess, what: &str, bound_kib: u64) -> u64 {
    assert!(
        consumer.child.try_wait().unwrap().is_none(),
        "{what}: the consumer exited"
    );
    let peak = peak_rss_kib(consumer.pid());
    println!(
        "{what}: peak RSS {:.1} MiB = {:.1} MB (bound {:.1} MB, target {} MB)",
        peak as f64 / 1024.0,
        peak as f64 * 1024.0 / 1e6,
        bound_kib as f64 * 1024.0 / 1e6,
        PEAK_RSS_TARGET_KIB * 1024 / 1_000_000
    );
    assert!(
        peak > 0 && peak <= bound_kib,
        "{what}: peak RSS {peak} KiB, bound {bound_kib} KiB"
    );
    peak
}

#[test]
fn two_thousand_slow_uploaders_are_held_to_the_body_budget_and_a_normal_client_is_still_served() {
    let _shared = crate::beside_other_abuse();
    assert_enough_descriptors();
    let db = TestDb::new();
    let mut consumer = start(&db);
    let addr = consumer.addr;
    let started = Instant::now();

    let streams: Vec<TcpStream> = (0..CONNECTIONS).map(|_| connect(addr)).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let normal = normal_client(addr, Arc::clone(&stop));
    let mut first = format!(
        "POST /event HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         Content-Length: {DECLARED}\r\n\r\n"
    )
    .into_bytes();
    first.resize(first.len() + SENT, b'x');
    let first = Arc::new(first);
    // Each driver sends the 59,000 bytes on its share of the connections, then one more byte a
    // second on each until the test stops it. A refused connection just fails its writes.
    let drivers: Vec<_> = streams
        .chunks(CONNECTIONS / DRIVERS)
        .map(|share| {
            let mut writers: Vec<TcpStream> =
                share.iter().map(|s| s.try_clone().unwrap()).collect();
            let first = Arc::clone(&first);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                for w in &mut writers {
                    w.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
                    let _ = w.write_all(&first);
                }
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_secs(1));
                    for w in &mut writers {
                        let _ = w.write_all(b"x");
                    }
                }
            })
        })
        .collect();

    // The budget-waiting uploaders are answered 503 within about a second; the others trickle
    // until their body deadline (read_timeout_seconds, 10 s by default) answers them 408.
    let mut answers = std::collections::BTreeMap::new();
    for stream in streams {
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let response = read_response(&mut BufReader::new(stream));
        if let Some(response) = &response {
            assert!(
                matches!(response.status, 408 | 503),
                "a slow uploader was answered {}: {}",
                response.status,
                response.body
            );
            if response.status == 503 {
                assert!(
                    response.header("Retry-After").is_some(),
                    "a 503 without Retry-After"
                );
            }
        }
        *answers
            .entry(response.map_or("closed".to_owned(), |r| r.status.to_string()))
            .or_insert(0) += 1;
    }
    stop.store(true, Ordering::Relaxed);
    for driver in drivers {
        driver.join().unwrap();
    }
    let stored = normal.join().expect("every normal request got a 201");
    println!(
        "{CONNECTIONS} slow uploaders (Content-Length {DECLARED}, {SENT} bytes sent, then one \
         byte a second): answers {answers:?} after {:?}; the normal client stored {stored} events \
         meanwhile",
        started.elapsed()
    );
    assert!(stored > 0, "the normal client stored nothing");
    assert_within(
        &mut consumer,
        "2000 slow uploaders",
        SLOW_UPLOADERS_BOUND_KIB,
    );
    assert_eq!(db.count_events(), stored as i64);
}

#[test]
fn two_thousand_idle_keep_alive_connections_stay_under_48_mb_and_a_normal_client_is_served() {
    let _shared = crate::beside_other_abuse();
    assert_enough_descriptors();
    let db = TestDb::new();
    let mut consumer = start(&db);
    let addr = consumer.addr;
    // Each connection is served once and then left open. Every tenth first posts a body near
    // the limit, so its buffers must have shrunk back for it to idle cheaply.
    let big = format!(
        r#"{{"event_type":"big","event_payload":"{}"}}"#,
        "b".repeat(DECLARED)
    );
    let mut idle = Vec::with_capacity(CONNECTIONS);
    for i in 0..CONNECTIONS {
        let mut stream = connect(addr);
        let request = if i % 10 == 0 {
            format!(
                "POST /event HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
                 Idempotency-Key: big-{i}\r\nContent-Length: {}\r\n\r\n{big}",
                big.len()
            )
        } else {
            "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n".to_owned()
        };
        stream.write_all(request.as_bytes()).unwrap();
        let mut reader = BufReader::new(stream);
        let response = read_response(&mut reader).expect("an answer before idling");
        assert!(
            matches!(response.status, 200 | 201),
            "connection {i}: {}",
            response.body
        );
        idle.push(reader);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let normal = normal_client(addr, Arc::clone(&stop));
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let stored = normal.join().expect("every normal request got a 201");
    println!(
        "{CONNECTIONS} idle keep-alive connections (one in ten after a {}-byte body): the normal \
         client stored {stored} events beside them",
        big.len()
    );
    assert!(stored > 0, "the normal client stored nothing");
    assert_within(
        &mut consumer,
        "2000 idle keep-alive connections",
        PEAK_RSS_TARGET_KIB,
    );
    drop(idle);
}
