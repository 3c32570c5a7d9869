//! `/readyz` and waits on the database when the database misbehaves in ways TCP does not
//! report: a session orphaned in a transaction (a lost `ROLLBACK`), a database that stops
//! answering (SIGSTOPped, as hung storage or a paused VM look).

use std::time::{Duration, Instant};

use test_support::{Cluster, TestDb};

use crate::helpers::{
    post_event, send, stop_and_log, wait_until, ConsumerProcess, ProcessOptions, RawResponse,
    GOOD_EVENT,
};
use crate::outages::Frozen;

fn get_closing(addr: std::net::SocketAddr, path: &str) -> RawResponse {
    send(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

/// Opens a session as the consumer opens its own (the same settings), and leaves it as a
/// consumer of an earlier release left one whose probe's `ROLLBACK` never arrived: idle in a
/// transaction that holds the probe's row `-1`. Returns the session and its backend pid.
fn orphaned_probe(db: &TestDb) -> (postgres::Client, i32) {
    let config = db.database_config();
    let mut pg = postgres::Config::new();
    pg.host(&config.host).port(config.port.as_slice()[0]);
    event_consumer::db::session::apply(&config, &mut pg);
    let mut client = pg.connect(postgres::NoTls).unwrap();
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    client
        .batch_execute(
            "BEGIN; INSERT INTO events (id, event_type, event_payload) \
             OVERRIDING SYSTEM VALUE VALUES (-1, 'readiness probe', '') \
             ON CONFLICT DO NOTHING",
        )
        .unwrap();
    (client, pid)
}

fn session_state(admin: &mut postgres::Client, pid: i32) -> Option<String> {
    admin
        .query_opt("SELECT state FROM pg_stat_activity WHERE pid = $1", &[&pid])
        .unwrap()
        .map(|row| row.get(0))
}

#[test]
fn a_probe_whose_rollback_was_lost_neither_blocks_another_consumers_readyz_nor_outlives_its_timeout(
) {
    let db = TestDb::new();
    let mut admin = db.client();
    let (_orphan, pid) = orphaned_probe(&db);
    assert_eq!(
        session_state(&mut admin, pid).as_deref(),
        Some("idle in transaction")
    );
    // Short enough for a test; the orphan is ended after it (statement_timeout_seconds).
    let consumer = ConsumerProcess::start_with(
        &db,
        ProcessOptions {
            database_yaml: "  statement_timeout_seconds: 3\n",
            ..ProcessOptions::default()
        },
    );
    let orphaned_at = Instant::now();
    for _ in 0..3 {
        let asked = Instant::now();
        let status = get_closing(consumer.addr, "/readyz").status;
        let took = asked.elapsed();
        assert_eq!(status, 200, "ready although a probe's row -1 is held");
        assert!(took < Duration::from_secs(2), "/readyz took {took:?}");
    }
    let in_transaction: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 \
             AND application_name = 'event_consumer' AND state LIKE 'idle in transaction%'",
            &[&db.name],
        )
        .unwrap()
        .get(0);
    // The consumer's own sessions and the orphan (which is opened as the consumer's are).
    assert_eq!(
        in_transaction, 1,
        "only the orphan is idle in a transaction"
    );
    // idle_in_transaction_session_timeout = statement_timeout_seconds (3 s) + a loaded machine.
    wait_until(
        "the orphaned session ended by the server",
        Duration::from_secs(10),
        || session_state(&mut admin, pid).is_none(),
    );
    let lived = orphaned_at.elapsed();
    assert!(lived < Duration::from_secs(8), "the orphan lived {lived:?}");
    stop_and_log(consumer);
}

#[test]
fn with_its_database_silent_readyz_answers_503_within_2_s_and_requests_within_statement_timeout_and_1_s(
) {
    let cluster = Cluster::start();
    let db = TestDb::on(&cluster.server());
    let consumer = ConsumerProcess::start_with(
        &db,
        ProcessOptions {
            database_yaml: "  statement_timeout_seconds: 2\n",
            env: &[("LOG_LEVEL", "info")],
            ..ProcessOptions::default()
        },
    );
    assert_eq!(post_event(consumer.addr, GOOD_EVENT, &[]).status, 201);
    assert_eq!(get_closing(consumer.addr, "/readyz").status, 200);

    let frozen = Frozen::freeze(&cluster);
    let mut readyz = Vec::new();
    for _ in 0..3 {
        let asked = Instant::now();
        let status = get_closing(consumer.addr, "/readyz").status;
        readyz.push((status, asked.elapsed()));
    }
    let posted = Instant::now();
    let post = post_event(
        consumer.addr,
        GOOD_EVENT,
        &[("Idempotency-Key", "silent-1")],
    );
    let post_took = posted.elapsed();
    drop(frozen);

    eprintln!(
        "silent database: /readyz {readyz:?}, POST /event {} in {post_took:?}",
        post.status
    );
    for (status, took) in &readyz {
        assert_eq!(*status, 503, "{readyz:?}");
        assert!(*took < Duration::from_secs(2), "{readyz:?}");
    }
    assert_eq!(post.status, 503);
    // statement_timeout_seconds (2) + 1 s.
    assert!(
        post_took < Duration::from_secs(3),
        "POST /event waited {post_took:?}"
    );
    wait_until(
        "ready again once the database answers",
        Duration::from_secs(30),
        || get_closing(consumer.addr, "/readyz").status == 200,
    );
    stop_and_log(consumer);
}
