//! File descriptors. A low `ulimit -n` at start lowers `max_connections`, so the database
//! keeps its share and clients past it get the fast 503; a limit lowered under a running
//! consumer can still run out, and then the listener waits and the database side fails with
//! its cause until descriptors free up. No panic either way.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use event_consumer::descriptors::{connection_bound, PER_SESSION};
use test_support::TestDb;

use crate::abuse::{answer_or_close, assert_survived, QUIET};
use crate::helpers::{
    consumer_sessions, get_closing, post_event, stop_and_log, wait_until, ConsumerProcess,
    ProcessOptions, GOOD_EVENT,
};

/// Open file descriptors of a process.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// `prlimit --nofile=N:N` on a running process.
fn lower_open_files_limit(pid: u32, limit: u32) {
    let status = Command::new("prlimit")
        .args([format!("--pid={pid}"), format!("--nofile={limit}:{limit}")])
        .status()
        .expect("prlimit (util-linux) runs");
    assert!(status.success(), "prlimit --nofile={limit} failed");
}

/// What a client connection shows a moment after it was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// Accepted and waiting for a request (or still in the backlog).
    Open,
    Answered(u16),
    Closed,
}

fn seen(stream: &TcpStream) -> Seen {
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut buf = [0u8; 512];
    match (&*stream).read(&mut buf) {
        Ok(0) => Seen::Closed,
        Ok(n) => {
            let head = String::from_utf8_lossy(&buf[..n]);
            let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok());
            Seen::Answered(status.unwrap_or(0))
        }
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Seen::Open
        }
        Err(_) => Seen::Closed,
    }
}

/// The consumer binary (under `ulimit -n`, if given) once both workers' sessions are open. The
/// readiness probe opens its own at the first `/readyz`, which these tests ask at the moment
/// that matters.
fn start_with_workers_connected(db: &TestDb, max_open_files: Option<u32>) -> ConsumerProcess {
    let consumer = ConsumerProcess::start_with(
        db,
        ProcessOptions {
            env: QUIET,
            max_open_files,
            ..ProcessOptions::default()
        },
    );
    let mut admin = db.client();
    wait_until(
        "both workers' sessions open",
        Duration::from_secs(20),
        || consumer_sessions(&mut admin, &db.name) == 2,
    );
    consumer
}

#[test]
fn under_a_low_open_file_limit_clients_past_its_share_get_503_and_the_database_keeps_its_own() {
    let _shared = crate::beside_other_abuse();
    let db = TestDb::new();
    let mut consumer = start_with_workers_connected(&db, Some(64));
    let addr = consumer.addr;
    let pid = consumer.pid();
    // Two workers, the readiness probe, retention, one host: what the consumer reserves.
    let bound = connection_bound(384, Some(64), 5).unwrap().connections;
    let mut clients: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connects"))
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let fds = open_fds(pid);
    let seen: Vec<Seen> = clients.iter().map(seen).collect();
    let open = seen.iter().filter(|s| **s == Seen::Open).count();
    let refused = seen.iter().filter(|s| **s == Seen::Answered(503)).count();
    println!(
        "ulimit -n 64: of 200 connections {open} held, {refused} answered 503 at once \
         (the bound: {bound}); the consumer holds {fds} descriptors"
    );
    assert_eq!((open, refused), (bound, 200 - bound), "{seen:?}");
    assert!(
        fds + PER_SESSION as usize <= 64,
        "no room left for a database session: {fds} descriptors open"
    );

    // The database side has its share: the readiness probe's first session opens now, and an
    // event is stored, each on a connection the consumer holds.
    let mut held = clients
        .drain(..)
        .zip(seen)
        .filter(|(_, s)| *s == Seen::Open)
        .map(|(c, _)| c);
    let mut ask = |request: &[u8]| {
        let mut stream = held.next().expect("a held connection");
        stream.write_all(request).unwrap();
        answer_or_close(stream, Duration::from_secs(10))
    };
    let ready = ask(b"GET /readyz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let post = format!(
        "POST /event HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{GOOD_EVENT}",
        GOOD_EVENT.len()
    );
    let stored = ask(post.as_bytes());
    println!("on held connections: /readyz {ready:?}, POST /event {stored:?}");
    assert_eq!((ready, stored), (Some(200), Some(201)));
    drop(held);

    assert_survived(&mut consumer, "ulimit -n 64");
    let log = stop_and_log(consumer);
    let lowered = format!("max_connections 384 lowered to {bound}");
    assert!(log.contains(&lowered), "no line says {lowered:?}:\n{log}");
    assert!(!log.contains("Too many open files"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}

/// A limit lowered under a running consumer (`prlimit`), below what it reserved at start, can
/// still run out. Then the listener waits and the database side fails with its cause: the
/// driver's runtime needs descriptors too, and `postgres` panics without them (caught, see
/// `db/driver_panic.rs`). In CI a worker's first connect met such an exhaustion by chance and
/// the panic's backtrace took a debug build to 99 MiB; here a session is opened on purpose
/// while no descriptor is free.
#[test]
fn a_limit_lowered_at_run_time_runs_out_the_listener_waits_and_the_database_fails_cleanly() {
    let _shared = crate::beside_other_abuse();
    let db = TestDb::new();
    let mut consumer = start_with_workers_connected(&db, None);
    let addr = consumer.addr;
    let pid = consumer.pid();
    lower_open_files_limit(pid, 64);
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..200 {
        // Past the listen backlog the kernel drops the handshake: a short timeout, not a failure.
        match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            Ok(stream) => held.push(stream),
            Err(_) => refused += 1,
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let fds_at_limit = open_fds(pid);
    println!(
        "prlimit --nofile=64: {} of 200 connections opened ({refused} timed out in the backlog), \
         the consumer holds {fds_at_limit} descriptors",
        held.len()
    );
    assert!(
        fds_at_limit >= 60,
        "the descriptors were not exhausted ({fds_at_limit} open)"
    );
    assert!(
        consumer.child.try_wait().unwrap().is_none(),
        "the consumer exited at EMFILE"
    );

    // A connection accepted before the exhaustion asks for `/readyz`: the probe's first
    // session finds no descriptor for the driver. A clear 503, no panic.
    let mut accepted = held.remove(0);
    accepted
        .write_all(b"GET /readyz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let during = answer_or_close(accepted, Duration::from_secs(10));
    println!("/readyz while no descriptor was free: {during:?}");
    assert_eq!(during, Some(503), "/readyz while no descriptor was free");

    // The last connection sits in the listen backlog, not yet accepted: its request is served
    // once the other held connections close and free their descriptors.
    let mut waiting = held.pop().expect("some connections were opened");
    waiting
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        consumer.child.try_wait().unwrap().is_none(),
        "the consumer exited at EMFILE"
    );
    let freed = Instant::now();
    drop(held);
    let answer = answer_or_close(waiting, Duration::from_secs(10));
    assert_eq!(
        answer,
        Some(200),
        "the queued request after descriptors freed up"
    );
    println!(
        "after the held connections closed, a queued request was answered in {:?}",
        freed.elapsed()
    );
    wait_until(
        "ready again once descriptors were free",
        Duration::from_secs(15),
        || get_closing(addr, "/readyz").status == 200,
    );
    println!("ready again {:?} after they were freed", freed.elapsed());
    assert_survived(&mut consumer, "file-descriptor exhaustion");
    // And the descriptors are really free again: many more clients come and go.
    for i in 0..100 {
        let response = post_event(addr, GOOD_EVENT, &[]);
        assert_eq!(response.status, 201, "request {i} after the exhaustion");
    }
    let log = stop_and_log(consumer);
    assert!(!log.contains("panicked"), "the consumer panicked:\n{log}");
    let cause = log
        .lines()
        .find(|l| l.contains("unavailable") && l.contains("Too many open files"))
        .unwrap_or_else(|| panic!("no outage named the exhausted descriptors:\n{log}"));
    println!("logged: {cause}");
}
