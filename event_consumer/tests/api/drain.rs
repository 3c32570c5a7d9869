//! The drain before a stop (`consumer.drain_seconds`): `/readyz` says "not ready" at once so a
//! load balancer takes the consumer out, while events are still stored until the drain ends;
//! then the usual graceful stop. The binary runs as a child, since signals are its interface.

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use test_support::TestDb;

use crate::helpers::{
    get_closing, read_response, wait_until, ConsumerProcess, ProcessOptions, RawResponse,
    GOOD_EVENT,
};

fn post_request(connection: &str) -> String {
    format!(
        "POST /event HTTP/1.1\r\nHost: t\r\nConnection: {connection}\r\nContent-Type: \
         application/json\r\nContent-Length: {}\r\n\r\n{GOOD_EVENT}",
        GOOD_EVENT.len()
    )
}

/// A POST on a new connection; None when the connection is refused or closed unanswered.
fn try_post_on_new_connection(addr: SocketAddr) -> Option<RawResponse> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    stream.write_all(post_request("close").as_bytes()).ok()?;
    read_response(&mut BufReader::new(stream))
}

/// One keep-alive connection, opened before the stop signal.
struct KeepAlive {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl KeepAlive {
    fn open(addr: SocketAddr) -> KeepAlive {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        KeepAlive { stream, reader }
    }

    fn post(&mut self) -> Option<RawResponse> {
        self.stream
            .write_all(post_request("keep-alive").as_bytes())
            .ok()?;
        read_response(&mut self.reader)
    }
}

fn created_id(response: &RawResponse) -> i64 {
    response.json()["id"].as_i64().unwrap()
}

fn stored_among(db: &TestDb, ids: &[i64]) -> usize {
    let stored: i64 = db
        .client()
        .query_one("SELECT count(*) FROM events WHERE id = ANY($1)", &[&ids])
        .unwrap()
        .get(0);
    stored as usize
}

#[test]
fn a_drain_answers_readyz_503_at_once_and_stores_events_until_it_ends_then_exits_0() {
    let db = TestDb::new();
    let consumer = ConsumerProcess::start(&db, "  drain_seconds: 2\n", &[]);
    let addr = consumer.addr;
    assert_eq!(
        get_closing(addr, "/readyz").status,
        200,
        "ready before the stop"
    );
    let mut keep_alive = KeepAlive::open(addr);
    let mut acknowledged = vec![created_id(&keep_alive.post().unwrap())];

    let signalled = Instant::now();
    consumer.signal("TERM");
    // The drain's whole point: not ready while it still serves. Within the drain, or the
    // POSTs below would find the port closed.
    wait_until(
        "/readyz answering 503 after SIGTERM",
        Duration::from_secs(2),
        || get_closing(addr, "/readyz").status == 503,
    );
    assert_eq!(
        get_closing(addr, "/healthz").status,
        200,
        "alive while draining"
    );

    // Requests spread over the drain, alternating the old keep-alive connection and a new
    // one, until the consumer stops accepting.
    let mut keep_alive_open = true;
    let mut last_new_connection_201 = None;
    let refused_at = loop {
        assert!(
            signalled.elapsed() < Duration::from_secs(15),
            "still accepting 15 s after SIGTERM with drain_seconds 2"
        );
        if keep_alive_open {
            match keep_alive.post() {
                Some(r) if r.status == 201 => acknowledged.push(created_id(&r)),
                Some(r) => {
                    assert_eq!(r.status, 503, "only 201, or 503 once the drain is over");
                    keep_alive_open = false;
                }
                None => keep_alive_open = false,
            }
        }
        let sent_at = signalled.elapsed();
        match try_post_on_new_connection(addr) {
            Some(r) if r.status == 201 => {
                acknowledged.push(created_id(&r));
                last_new_connection_201 = Some(sent_at);
            }
            Some(r) => {
                assert_eq!(r.status, 503, "only 201, or 503 once the drain is over");
                break sent_at;
            }
            None => break sent_at,
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // The drain starts when the signal arrives, after `signalled`: nothing may be refused
    // before 2 s have passed here, however slow the machine.
    assert!(
        refused_at >= Duration::from_secs(2),
        "a new connection was refused {refused_at:?} after SIGTERM, within the 2 s drain"
    );
    let last = last_new_connection_201.expect("a new connection got 201 during the drain");
    assert!(
        last >= Duration::from_millis(1500),
        "no new connection was served near the end of the drain (last at {last:?})"
    );

    let (code, log) = consumer.wait(Duration::from_secs(15));
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("draining for 2s"), "the drain's start: {log}");
    assert!(log.contains("drain over after"), "the drain's end: {log}");
    assert_eq!(
        stored_among(&db, &acknowledged),
        acknowledged.len(),
        "every 201 has its row"
    );
    println!(
        "{} events acknowledged, the last new connection served {last:?} after SIGTERM, \
         refused at {refused_at:?}",
        acknowledged.len()
    );
}

#[test]
fn a_second_signal_during_a_drain_cuts_it_short_and_the_stop_stays_graceful() {
    let db = TestDb::new();
    let consumer = ConsumerProcess::start(&db, "  drain_seconds: 600\n", &[]);
    let addr = consumer.addr;
    consumer.signal("TERM");
    wait_until(
        "/readyz answering 503 after SIGTERM",
        Duration::from_secs(10),
        || get_closing(addr, "/readyz").status == 503,
    );
    let response = try_post_on_new_connection(addr).expect("served while draining");
    assert_eq!(response.status, 201);
    consumer.signal("INT");
    // Far less than the 600 s drain: the second signal ended it, and exit 0 says the graceful
    // stop ran rather than the forced exit.
    let (code, log) = consumer.wait(Duration::from_secs(20));
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("drain cut short"), "{log}");
    assert!(log.contains("stopped; 1 events stored"), "{log}");
    assert_eq!(stored_among(&db, &[created_id(&response)]), 1);
}

#[test]
fn a_third_signal_exits_at_once_with_1_while_the_stop_after_a_drain_waits() {
    let db = TestDb::new();
    // Long enough that only the third signal can end the run within the test's bounds.
    let consumer = ConsumerProcess::start_with(
        &db,
        ProcessOptions {
            database_yaml: "  statement_timeout_seconds: 600\n",
            consumer_yaml: "  drain_seconds: 600\n  shutdown_timeout_seconds: 600\n",
            ..ProcessOptions::default()
        },
    );
    let addr = consumer.addr;
    // A request in flight that the graceful stop waits for: its insert waits on a lock.
    let mut locker = db.client();
    locker
        .batch_execute("BEGIN; LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    let mut waiting = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    waiting.write_all(post_request("close").as_bytes()).unwrap();
    let mut observer = db.client();
    wait_until(
        "the insert waiting on the lock",
        Duration::from_secs(10),
        || {
            let stuck: i64 = observer
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 \
                 AND application_name = 'event_consumer' AND wait_event_type = 'Lock'",
                    &[&db.name],
                )
                .unwrap()
                .get(0);
            stuck > 0
        },
    );
    consumer.signal("TERM");
    wait_until(
        "/readyz answering 503 after SIGTERM",
        Duration::from_secs(10),
        || get_closing(addr, "/readyz").status == 503,
    );
    consumer.signal("TERM");
    wait_until(
        "the graceful stop closing the port",
        Duration::from_secs(10),
        || TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err(),
    );
    let started = Instant::now();
    consumer.signal("TERM");
    let (code, log) = consumer.wait(Duration::from_secs(10));
    assert_eq!(code, Some(1), "a third signal exits at once with 1: {log}");
    assert!(log.contains("drain cut short"), "{log}");
    println!("exited {:?} after the third signal", started.elapsed());
    locker.batch_execute("ROLLBACK").unwrap();
    drop(waiting);
}
