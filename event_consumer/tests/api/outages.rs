//! Databases that fail in the ways real deployments meet: read-only after a failover, frozen
//! (SIGSTOPped, as hung storage or a paused VM look). The consumer binary runs as a child so its
//! log and its exit are what an operator sees.

use std::process::Command;
use std::time::{Duration, Instant};

use test_support::{Cluster, TestDb};

use crate::helpers::{
    connect, consumer_sessions, end_consumer_sessions, get_closing, metric_in, post_event,
    set_read_only, wait_until, ConsumerProcess, ProcessOptions, GOOD_EVENT,
};

fn metric(consumer: &ConsumerProcess, sample: &str) -> f64 {
    metric_in(&get_closing(consumer.addr, "/metrics").body, sample)
        .unwrap_or_else(|| panic!("{sample} is in /metrics"))
}

#[test]
fn a_database_turned_read_only_gets_503_and_not_ready_at_the_backoff_pace_and_recovers_by_itself() {
    let db = TestDb::new();
    let consumer = ConsumerProcess::start(&db, "", &[("LOG_LEVEL", "info")]);
    assert_eq!(post_event(consumer.addr, GOOD_EVENT, &[]).status, 201);
    let mut admin = db.client();

    // What a failover to a standby or `default_transaction_read_only` gives: every new session
    // is read-only, and the old ones are gone.
    set_read_only(&mut admin, &db.name, true);
    end_consumer_sessions(&mut admin, &db.name);
    let connects_before = metric(&consumer, "event_consumer_db_connects_total");
    let outage = Instant::now();
    let mut most_sessions = 0;
    for i in 0..60 {
        let response = post_event(consumer.addr, GOOD_EVENT, &[]);
        assert_eq!(response.status, 503, "request {i} during the outage");
        assert!(response.header("Retry-After").is_some(), "request {i}");
        most_sessions = most_sessions.max(consumer_sessions(&mut admin, &db.name));
        std::thread::sleep(Duration::from_millis(50));
    }
    let outage_seconds = outage.elapsed().as_secs_f64();
    assert_eq!(
        get_closing(consumer.addr, "/readyz").status,
        503,
        "not ready while writes fail"
    );
    assert_eq!(metric(&consumer, "event_consumer_database_outage"), 1.0);
    let connects = metric(&consumer, "event_consumer_db_connects_total") - connects_before;
    // Backoff 0.1 s doubling to 5 s over about 3.5 s: 6 attempts or so, where each request
    // used to cost two new sessions (120 here).
    assert!(
        connects <= 12.0,
        "{connects} connects in {outage_seconds:.1} s for 60 requests: not at the backoff pace"
    );
    assert!(
        most_sessions <= 2,
        "{most_sessions} sessions open at once; the consumer has 2 connections"
    );

    // Writable again: served again without a restart, within the longest backoff.
    set_read_only(&mut admin, &db.name, false);
    wait_until(
        "201 again after the database is writable",
        Duration::from_secs(15),
        || post_event(consumer.addr, GOOD_EVENT, &[]).status == 201,
    );
    assert_eq!(get_closing(consumer.addr, "/readyz").status, 200);
    assert_eq!(metric(&consumer, "event_consumer_database_outage"), 0.0);

    consumer.signal("TERM");
    let (code, log) = consumer.wait(Duration::from_secs(20));
    assert_eq!(code, Some(0), "{log}");
    eprintln!("{log}");
    let outage_lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("database 127.0.0.1:"))
        .collect();
    assert!(
        (2..=5).contains(&outage_lines.len()),
        "a handful of lines per outage, not one per request:\n{log}"
    );
    assert!(
        outage_lines.iter().any(|l| l.contains("25006")),
        "the cause is logged with its SQLSTATE:\n{log}"
    );
    let end = outage_lines.last().unwrap();
    assert!(end.contains("available again"), "{log}");
    let refused: u64 = end
        .split_whitespace()
        .zip(end.split_whitespace().skip(1))
        .find(|(_, next)| *next == "requests")
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| panic!("the end line counts the refused requests: {end}"));
    assert!(refused >= 60, "{refused} counted, 60 were refused: {end}");
    assert_eq!(db.count_events(), 2, "only the two 201s are stored");
}

/// Every process of the cluster whose postmaster has `pid`: the postmaster and its children.
fn cluster_processes(postmaster: u32) -> Vec<u32> {
    let mut pids = vec![postmaster];
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // The parent pid is the second field after the parenthesised command name.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(postmaster) {
            pids.push(pid);
        }
    }
    pids
}

/// Sends `signal` to each pid; false when some had exited meanwhile (a backend ends when its
/// client goes).
pub fn signal_all(pids: &[u32], signal: &str) -> bool {
    Command::new("kill")
        .arg(format!("-{signal}"))
        .args(pids.iter().map(u32::to_string))
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The postmaster's pid, from the first line of `postmaster.pid`.
fn postmaster_pid(cluster: &Cluster) -> u32 {
    std::fs::read_to_string(cluster.data_dir().join("postmaster.pid"))
        .unwrap()
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .expect("postmaster.pid starts with the pid")
}

/// A cluster of its own whose processes are stopped until the guard is dropped.
pub struct Frozen(Vec<u32>);

impl Frozen {
    pub fn freeze(cluster: &Cluster) -> Frozen {
        let pids = cluster_processes(postmaster_pid(cluster));
        // The postmaster itself must be stopped; a child that just exited is not an error.
        assert!(
            signal_all(&pids[..1], "STOP"),
            "kill -STOP the postmaster {}",
            pids[0]
        );
        signal_all(&pids[1..], "STOP");
        Frozen(pids)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        signal_all(&self.0, "CONT");
    }
}

/// Starts requests that will wait on the frozen database: each on its own connection, sent
/// and left waiting for the answer.
fn requests_left_waiting(consumer: &ConsumerProcess, n: usize) -> Vec<std::net::TcpStream> {
    static SENT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    (0..n)
        .map(|_| {
            let i = SENT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut stream = connect(consumer.addr);
            let request = format!(
                "POST /event HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
                 Idempotency-Key: frozen-{i}\r\nContent-Length: {}\r\n\r\n{GOOD_EVENT}",
                GOOD_EVENT.len()
            );
            std::io::Write::write_all(&mut stream, request.as_bytes()).unwrap();
            stream
        })
        .collect()
}

#[test]
fn with_its_database_frozen_the_consumer_answers_503_and_exits_within_the_shutdown_bound() {
    let cluster = Cluster::start();
    let db = TestDb::on(&cluster.server());
    let consumer = ConsumerProcess::start_with(
        &db,
        ProcessOptions {
            consumer_yaml: "  shutdown_timeout_seconds: 1\n",
            env: &[("LOG_LEVEL", "info")],
            ..ProcessOptions::default()
        },
    );
    assert_eq!(post_event(consumer.addr, GOOD_EVENT, &[]).status, 201);
    let frozen = Frozen::freeze(&cluster);
    let waiting = requests_left_waiting(&consumer, 8);
    std::thread::sleep(Duration::from_millis(300));

    consumer.signal("TERM");
    let stopped = Instant::now();
    let answers: Vec<Option<u16>> = waiting
        .into_iter()
        .map(|stream| {
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            crate::helpers::read_response(&mut std::io::BufReader::new(stream)).map(|r| r.status)
        })
        .collect();
    let (code, log) = consumer.wait(Duration::from_secs(15));
    let took = stopped.elapsed();
    drop(frozen);
    assert_eq!(code, Some(0), "{log}");
    // shutdown_timeout_seconds (1) + the workers' grace (2) + slack for a loaded machine; a
    // consumer that waits on the database never exits while it is frozen.
    assert!(
        took < Duration::from_secs(8),
        "exited {took:?} after SIGTERM:\n{log}"
    );
    assert!(
        answers.iter().all(|a| *a == Some(503)),
        "every waiting request is answered 503: {answers:?}\n{log}"
    );
    assert!(log.contains("still in flight"), "{log}");
}

#[test]
fn a_second_sigterm_exits_at_once_while_the_first_waits_for_a_frozen_database() {
    let cluster = Cluster::start();
    let db = TestDb::on(&cluster.server());
    let mut consumer = ConsumerProcess::start_with(
        &db,
        ProcessOptions {
            consumer_yaml: "  shutdown_timeout_seconds: 60\n",
            ..ProcessOptions::default()
        },
    );
    assert_eq!(post_event(consumer.addr, GOOD_EVENT, &[]).status, 201);
    let frozen = Frozen::freeze(&cluster);
    let _waiting = requests_left_waiting(&consumer, 2);
    std::thread::sleep(Duration::from_millis(300));
    consumer.signal("TERM");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        consumer.is_running(),
        "the first SIGTERM waits up to shutdown_timeout_seconds"
    );
    consumer.signal("TERM");
    let (code, log) = consumer.wait(Duration::from_secs(5));
    drop(frozen);
    assert_eq!(
        code,
        Some(1),
        "a second signal exits at once with 1:\n{log}"
    );
}

#[test]
fn sighup_is_logged_and_the_consumer_keeps_serving() {
    let db = TestDb::new();
    let consumer = ConsumerProcess::start(&db, "", &[("LOG_LEVEL", "info")]);
    // Signals that arrive between two looks of the main loop (50 ms) count once: space them.
    for _ in 0..2 {
        consumer.signal("HUP");
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(post_event(consumer.addr, GOOD_EVENT, &[]).status, 201);
    }
    consumer.signal("TERM");
    let (code, log) = consumer.wait(Duration::from_secs(20));
    assert_eq!(code, Some(0), "SIGHUP did not end it:\n{log}");
    assert_eq!(
        log.matches("SIGHUP").count(),
        2,
        "one line per SIGHUP:\n{log}"
    );
}

#[test]
fn a_login_refused_mid_run_is_logged_as_a_new_cause_and_logins_follow_the_backoff() {
    let db = TestDb::new();
    let role = format!("{}_writer", db.name);
    let mut admin = db.client();
    admin
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN; GRANT INSERT, SELECT ON events TO {role}"
        ))
        .unwrap();
    let consumer = ConsumerProcess::start_with(
        &db,
        ProcessOptions {
            db_user: Some(&role),
            env: &[("LOG_LEVEL", "info")],
            ..ProcessOptions::default()
        },
    );
    assert_eq!(post_event(consumer.addr, GOOD_EVENT, &[]).status, 201);
    // Both workers' sessions open first: a worker still logging in at the NOLOGIN below would
    // make the refused login the first cause.
    wait_until("both sessions open", Duration::from_secs(10), || {
        consumer_sessions(&mut admin, &db.name) == 2
    });
    // What a changed password or a locked account gives: the sessions end, logins fail.
    admin
        .batch_execute(&format!("ALTER ROLE {role} NOLOGIN"))
        .unwrap();
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
            &[&role],
        )
        .unwrap();
    let connects_before = metric(&consumer, "event_consumer_db_connects_total");
    for i in 0..60 {
        let status = post_event(consumer.addr, GOOD_EVENT, &[]).status;
        assert_eq!(status, 503, "request {i} while logins fail");
        std::thread::sleep(Duration::from_millis(50));
    }
    let logins = metric(&consumer, "event_consumer_db_connects_total") - connects_before;
    assert!(
        logins <= 12.0,
        "{logins} login attempts for 60 requests: a lockout policy would lock the account"
    );
    admin
        .batch_execute(&format!("ALTER ROLE {role} LOGIN"))
        .unwrap();
    wait_until(
        "201 again once logins work",
        Duration::from_secs(15),
        || post_event(consumer.addr, GOOD_EVENT, &[]).status == 201,
    );
    consumer.signal("TERM");
    let (code, log) = consumer.wait(Duration::from_secs(20));
    assert_eq!(code, Some(0), "{log}");
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("database 127.0.0.1:"))
        .collect();
    assert!(lines.len() <= 5, "a handful of lines:\n{log}");
    // The first cause is the terminated session: 57P01, or the closed or reset socket when
    // the client finds it before it reads the server's message.
    assert!(
        lines[0].contains(" unavailable: ") && !lines[0].contains("28000"),
        "the first cause:\n{log}"
    );
    assert!(
        lines.iter().any(|l| l.contains("28000")),
        "the refused login is logged when the cause changes, with its SQLSTATE:\n{log}"
    );
    admin
        .batch_execute(&format!(
            "REVOKE ALL ON events FROM {role}; DROP ROLE {role}"
        ))
        .unwrap();
}

#[test]
fn a_database_that_is_not_there_is_logged_with_its_host_and_port_and_tried_at_the_backoff_pace() {
    let db = TestDb::new();
    let nowhere = test_support::free_port();
    let consumer = ConsumerProcess::start_with(
        &db,
        ProcessOptions {
            db_port: Some(nowhere),
            env: &[("LOG_LEVEL", "info")],
            ..ProcessOptions::default()
        },
    );
    for _ in 0..40 {
        assert_eq!(post_event(consumer.addr, GOOD_EVENT, &[]).status, 503);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(get_closing(consumer.addr, "/readyz").status, 503);
    let connects = metric(&consumer, "event_consumer_db_connects_total");
    assert!(connects <= 12.0, "{connects} connects in about 2 s");
    consumer.signal("TERM");
    let (code, log) = consumer.wait(Duration::from_secs(20));
    assert_eq!(code, Some(0), "{log}");
    let target = format!("database 127.0.0.1:{nowhere} unavailable");
    assert_eq!(
        log.matches(&target).count(),
        1,
        "logged once, naming host and port:\n{log}"
    );
    assert!(log.contains("refused"), "{log}");
}

#[test]
fn the_queued_events_gauge_counts_the_requests_waiting_behind_a_stuck_database() {
    let db = TestDb::new();
    let consumer = ConsumerProcess::start(&db, "", &[]);
    assert_eq!(post_event(consumer.addr, GOOD_EVENT, &[]).status, 201);
    // The second connection opens on its own in the background; its last prepared statement
    // is the lookup of stored keys. Opened under the lock, it would be the one stuck, in its
    // prepare, and the second request would queue.
    let mut watcher = db.client();
    wait_until(
        "both connections open and prepared",
        Duration::from_secs(10),
        || {
            let ready: i64 = watcher
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 \
                     AND application_name = 'event_consumer' AND state = 'idle' \
                     AND (query LIKE '%= ANY($1::text[])%' OR query LIKE '%VALUES ($1, $2, $3, $4)%')",
                    &[&db.name],
                )
                .unwrap()
                .get(0);
            ready == 2
        },
    );
    // Both connections stuck on a lock: one POST each, one at a time (sent together, one
    // connection would take them all as a single batch), then more that must queue.
    let mut locker = db.client();
    locker
        .batch_execute("BEGIN; LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    let mut observer = db.client();
    let mut stuck = || -> i64 {
        observer
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 \
                 AND application_name = 'event_consumer' AND wait_event_type = 'Lock'",
                &[&db.name],
            )
            .unwrap()
            .get(0)
    };
    let mut waiting = Vec::new();
    for i in 0..2 {
        waiting.extend(requests_left_waiting(&consumer, 1));
        wait_until(
            &format!("connection {i} stuck"),
            Duration::from_secs(10),
            || stuck() > i,
        );
    }
    waiting.extend(requests_left_waiting(&consumer, 7));
    wait_until(
        "7 events queued in the gauge",
        Duration::from_secs(10),
        || metric(&consumer, "event_consumer_queued_events") == 7.0,
    );
    locker.batch_execute("ROLLBACK").unwrap();
    wait_until("the queue drained", Duration::from_secs(10), || {
        metric(&consumer, "event_consumer_queued_events") == 0.0
    });
    drop(waiting);
}
