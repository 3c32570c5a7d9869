//! `/readyz` and waits on the database when the database misbehaves in ways TCP does not
//! report: a session orphaned in a transaction (a lost `ROLLBACK`), a database that stops
//! answering (SIGSTOPped, as hung storage or a paused VM look).

use std::time::{Duration, Instant};

use test_support::{Cluster, TestDb};

use crate::helpers::{
    get_closing, post_event, readyz_timed, stop_and_log, wait_until, with_statement_timeout_2_s,
    ConsumerProcess, ProcessOptions, GOOD_EVENT,
};
use crate::outages::{signal_all, Frozen};

/// Opens a session as the consumer opens its own (the same settings), and leaves it as a
/// consumer of an earlier release left one whose probe's `ROLLBACK` never arrived: idle in a
/// transaction that holds the probe's row `-1`. Returns the session and its backend pid.
fn orphaned_probe(db: &TestDb, statement_timeout_seconds: f64) -> (postgres::Client, i32) {
    let mut config = db.database_config();
    config.statement_timeout_seconds = statement_timeout_seconds;
    let mut pg = postgres::Config::new();
    pg.host(&config.host).port(config.port.as_slice()[0]);
    event_consumer::db::session::apply(&config, "event_consumer", &mut pg);
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
    let (_orphan, pid) = orphaned_probe(&db, 5.0);
    let orphaned_at = Instant::now();
    assert_eq!(
        session_state(&mut admin, pid).as_deref(),
        Some("idle in transaction")
    );
    // As the orphan's: it is ended after statement_timeout_seconds idle in its transaction.
    let consumer = ConsumerProcess::start_with(
        &db,
        ProcessOptions {
            database_yaml: "  statement_timeout_seconds: 5\n",
            ..ProcessOptions::default()
        },
    );
    let answers = readyz_timed(consumer.addr, 3);
    eprintln!("orphaned probe: /readyz {answers:?}");
    for (status, took) in &answers {
        assert_eq!(
            *status, 200,
            "ready although a probe's row -1 is held: {answers:?}"
        );
        assert!(*took < Duration::from_secs(2), "{answers:?}");
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
    // idle_in_transaction_session_timeout = statement_timeout_seconds (5 s) + a loaded machine.
    wait_until(
        "the orphaned session ended by the server",
        Duration::from_secs(10),
        || session_state(&mut admin, pid).is_none(),
    );
    let lived = orphaned_at.elapsed();
    eprintln!("orphaned probe: the session ended {lived:?} after its INSERT");
    assert!(
        lived < Duration::from_secs(10),
        "the orphan lived {lived:?}"
    );
    stop_and_log(consumer);
}

#[test]
fn with_its_database_silent_readyz_answers_503_within_2_s_and_requests_within_statement_timeout_and_1_s(
) {
    let cluster = Cluster::start();
    let db = TestDb::on(&cluster.server());
    let consumer = with_statement_timeout_2_s(&db);
    assert_eq!(post_event(consumer.addr, GOOD_EVENT, &[]).status, 201);
    assert_eq!(get_closing(consumer.addr, "/readyz").status, 200);

    let frozen = Frozen::freeze(&cluster);
    let readyz = readyz_timed(consumer.addr, 3);
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

/// The backends of the consumer's pipeline, stopped until the guard is dropped: the server
/// takes new sessions and answers everyone else, the readiness probe's session included.
struct StoppedBackends(Vec<u32>);

impl StoppedBackends {
    fn stop(admin: &mut postgres::Client, dbname: &str) -> StoppedBackends {
        let pids: Vec<u32> = admin
            .query(
                "SELECT pid FROM pg_stat_activity \
                 WHERE datname = $1 AND application_name = 'event_consumer' \
                 AND query NOT LIKE 'DO $probe$%'",
                &[&dbname],
            )
            .unwrap()
            .iter()
            .map(|row| row.get::<_, i32>(0) as u32)
            .collect();
        assert!(!pids.is_empty(), "the consumer has sessions");
        assert!(signal_all(&pids, "STOP"), "kill -STOP {pids:?}");
        StoppedBackends(pids)
    }
}

impl Drop for StoppedBackends {
    fn drop(&mut self) {
        signal_all(&self.0, "CONT");
    }
}

#[test]
fn with_its_pipelines_backends_stopped_the_consumer_answers_503_in_time_and_is_not_ready() {
    let db = TestDb::new();
    let mut admin = db.client();
    let consumer = with_statement_timeout_2_s(&db);
    assert_eq!(get_closing(consumer.addr, "/readyz").status, 200);
    wait_until(
        "both connections and the probe's session open",
        Duration::from_secs(10),
        || {
            let n: i64 = admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity \
                     WHERE datname = $1 AND application_name = 'event_consumer'",
                    &[&db.name],
                )
                .unwrap()
                .get(0);
            n == 3
        },
    );
    let stopped = StoppedBackends::stop(&mut admin, &db.name);
    // One request stored by its own thread on one connection, then two that queue behind it
    // and go as one batch on the other: both connections stuck.
    let post = |i: usize| {
        let addr = consumer.addr;
        std::thread::spawn(move || {
            let sent = Instant::now();
            let key = format!("stopped-{i}");
            let status = post_event(addr, GOOD_EVENT, &[("Idempotency-Key", &key)]).status;
            (status, sent.elapsed())
        })
    };
    let first = post(0);
    std::thread::sleep(Duration::from_millis(300));
    let posts: Vec<_> = [first, post(1), post(2)].into_iter().collect();
    let posts: Vec<(u16, Duration)> = posts.into_iter().map(|h| h.join().unwrap()).collect();
    let asked = Instant::now();
    let ready = get_closing(consumer.addr, "/readyz").status;
    let ready_took = asked.elapsed();
    let asked = Instant::now();
    let later = post_event(consumer.addr, GOOD_EVENT, &[]).status;
    let later_took = asked.elapsed();
    drop(stopped);

    eprintln!(
        "backends stopped: POST /event {posts:?}, then /readyz {ready} in {ready_took:?}, \
         POST /event {later} in {later_took:?}"
    );
    for (status, took) in &posts {
        assert_eq!(*status, 503, "{posts:?}");
        // statement_timeout_seconds (2) + 1 s.
        assert!(*took < Duration::from_secs(3), "{posts:?}");
    }
    // The probe's own session works: only the pipeline's state says that nothing can be stored.
    assert_eq!(ready, 503, "not ready while every connection is stuck");
    assert!(
        ready_took < Duration::from_secs(1),
        "at once: {ready_took:?}"
    );
    assert_eq!(later, 503, "queued behind the stuck connections");
    assert!(later_took < Duration::from_secs(3), "{later_took:?}");
    wait_until(
        "ready again once the backends run",
        Duration::from_secs(30),
        || get_closing(consumer.addr, "/readyz").status == 200,
    );
    // Counted as what the clients got, not as the late commit's answer that went nowhere.
    let metrics = get_closing(consumer.addr, "/metrics").body;
    let count = |status: &str| {
        let series =
            format!("event_consumer_requests_total{{route=\"/event\",status=\"{status}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series.as_str()))
            .map_or(0, |n| n.parse::<u64>().unwrap())
    };
    assert_eq!((count("503"), count("201")), (4, 0), "{metrics}");
    let log = stop_and_log(consumer);
    assert!(
        log.contains("no answer within statement_timeout_seconds + 0.5 s (2.5 s): timed out"),
        "{log}"
    );
}
