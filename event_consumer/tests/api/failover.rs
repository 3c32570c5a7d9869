//! Several database hosts (`database.host: a,b`, libpq style) against real replication: a
//! primary and a hot standby made from it with `pg_basebackup -R`, a promotion, and a host
//! that accepts TCP but never answers. The consumer runs as a child so its log is what an
//! operator sees. A standby costs a base backup: each test makes its pair once and reuses it.

use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

use test_support::{repo_root, Cluster, TestDb};

use crate::helpers::{
    end_consumer_sessions, get_closing, post_event, stop_and_log, wait_until, ConsumerProcess,
    ProcessOptions,
};

/// Long enough for a promotion and the consumer's backoff (at most 5 s between attempts) on a
/// loaded machine; the tests end as soon as the condition holds.
const SWITCH_LIMIT: Duration = Duration::from_secs(30);

fn post_keyed(consumer: &ConsumerProcess, key: &str) -> u16 {
    let body = r#"{"event_type":"failover.test","event_payload":"p"}"#;
    post_event(consumer.addr, body, &[("Idempotency-Key", key)]).status
}

/// The idempotency keys stored in `dbname` on `cluster`, sorted.
fn stored_keys(cluster: &Cluster, dbname: &str) -> Vec<String> {
    let mut client = cluster.server().connect(dbname).unwrap();
    client
        .query(
            "SELECT idempotency_key FROM events WHERE idempotency_key IS NOT NULL ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// The idempotency keys in `dbname` on `cluster` once they are what `expected` says, waiting
/// (bounded) for a standby to replay them: until then its database or table may be missing.
/// The data itself, not the replay position: test clusters commit asynchronously, and a commit
/// was seen to become visible on the standby some 150 ms after `pg_last_wal_replay_lsn` had
/// passed it.
fn wait_for_keys(cluster: &Cluster, dbname: &str, expected: &[String]) {
    let keys = || -> Option<Vec<String>> {
        let mut client = cluster.server().connect(dbname).ok()?;
        let rows = client
            .query(
                "SELECT idempotency_key FROM events WHERE idempotency_key IS NOT NULL ORDER BY 1",
                &[],
            )
            .ok()?;
        Some(rows.iter().map(|row| row.get(0)).collect())
    };
    wait_until(
        &format!("{expected:?} in {dbname} on port {}", cluster.port),
        SWITCH_LIMIT,
        || keys().as_deref() == Some(expected),
    );
}

fn pair_hosts() -> &'static str {
    "127.0.0.1,127.0.0.1"
}

#[test]
fn with_a_standby_first_events_go_to_the_primary_and_after_a_promotion_to_the_new_one() {
    let primary = Cluster::start();
    let standby = Cluster::start_standby(&primary);
    let ports = format!("{},{}", standby.port, primary.port);
    let dbname = format!("failover_{}", std::process::id());

    // The shipped init script, given both hosts with the standby first, applies the schema on
    // the primary.
    let init = Command::new(repo_root().join("db_init_script.sh"))
        .current_dir(std::env::temp_dir())
        .env("DB_HOST", pair_hosts())
        .env("DB_PORT", &ports)
        .env("DB_USER", "postgres")
        .env("DB_PASSWORD", "")
        .env("DB_NAME", &dbname)
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&init.stdout).into_owned() + &String::from_utf8_lossy(&init.stderr);
    assert!(init.status.success(), "{said}");
    let primary_target = format!("127.0.0.1:{}", primary.port);
    let standby_target = format!("127.0.0.1:{}", standby.port);
    assert!(
        said.contains(&format!(
            "schema applied to {dbname} at {primary_target} (the primary of {standby_target},{primary_target})"
        )),
        "the script names the primary among the hosts: {said}"
    );
    let db = TestDb {
        server: primary.server(),
        name: dbname.clone(),
    };
    // The standby has the database too, so it is skipped for being read-only alone.
    wait_for_keys(&standby, &dbname, &[]);

    let consumer = ConsumerProcess::start_with(
        &db,
        ProcessOptions {
            db_host: Some(pair_hosts()),
            db_ports: Some(&ports),
            env: &[("LOG_LEVEL", "info")],
            ..ProcessOptions::default()
        },
    );
    let before: Vec<String> = (0..3).map(|i| format!("before-{i}")).collect();
    for key in &before {
        assert_eq!(post_keyed(&consumer, key), 201, "{key}");
    }
    assert_eq!(
        stored_keys(&primary, &dbname),
        before,
        "stored on the primary"
    );
    assert_eq!(get_closing(consumer.addr, "/readyz").status, 200);

    // The failover: everything acknowledged has reached the standby (asynchronous
    // replication: the README's trade-off), the primary dies, the standby is promoted.
    wait_for_keys(&standby, &dbname, &before);
    primary.stop("immediate");
    wait_until("not ready once the primary is gone", SWITCH_LIMIT, || {
        get_closing(consumer.addr, "/readyz").status == 503
    });
    let refused = post_keyed(&consumer, "during");
    assert_eq!(refused, 503, "no host takes writes: 503, not a 500");
    standby.promote();
    wait_until(
        "ready again on the promoted standby, without a restart",
        SWITCH_LIMIT,
        || get_closing(consumer.addr, "/readyz").status == 200,
    );
    // Over: ready stays ready, and writes go through at once.
    for i in 0..5 {
        assert_eq!(
            get_closing(consumer.addr, "/readyz").status,
            200,
            "readyz {i} after"
        );
    }
    let after: Vec<String> = (0..3).map(|i| format!("later-{i}")).collect();
    for key in &after {
        assert_eq!(post_keyed(&consumer, key), 201, "{key}");
    }
    let all: Vec<String> = before.iter().chain(&after).cloned().collect();
    assert_eq!(
        stored_keys(&standby, &dbname),
        all,
        "every acknowledged event is in the new primary, the refused one is not"
    );

    let log = stop_and_log(consumer);
    assert!(
        log.contains(&format!(
            "database sessions go to {primary_target} (read-write); skipped {standby_target}: "
        )) && log.contains("the session is read-only"),
        "the first session names its host and why the standby was skipped:\n{log}"
    );
    assert!(
        log.contains(&format!(
            "database sessions go to {standby_target} now (read-write), no longer to {primary_target}"
        )),
        "the switch is logged with both hosts:\n{log}"
    );
    assert!(
        log.contains(&format!(
            "database {standby_target},{primary_target} unavailable"
        )),
        "the outage names the host list:\n{log}"
    );
}

#[test]
fn with_target_session_attrs_any_the_standby_first_is_taken_and_writes_wait_for_its_promotion() {
    let primary = Cluster::start();
    let db = TestDb::on(&primary.server());
    let standby = Cluster::start_standby(&primary);
    wait_for_keys(&standby, &db.name, &[]);
    let ports = format!("{},{}", standby.port, primary.port);
    let consumer = ConsumerProcess::start_with(
        &db,
        ProcessOptions {
            db_host: Some(pair_hosts()),
            db_ports: Some(&ports),
            database_yaml: "  target_session_attrs: any\n",
            env: &[("LOG_LEVEL", "info")],
            ..ProcessOptions::default()
        },
    );
    // libpq's `any`: the first host that accepts, a standby included. Its writes fail, so the
    // consumer is not ready and answers 503; it does not fall back to the writable second host.
    assert_eq!(get_closing(consumer.addr, "/readyz").status, 503);
    for i in 0..5 {
        assert_eq!(post_keyed(&consumer, &format!("refused-{i}")), 503, "{i}");
    }
    assert!(
        stored_keys(&primary, &db.name).is_empty(),
        "nothing on the primary"
    );

    // It keeps trying on the standby, which takes writes once promoted.
    standby.promote();
    wait_until("201 on the promoted standby", SWITCH_LIMIT, || {
        post_keyed(&consumer, "promoted") == 201
    });
    assert_eq!(stored_keys(&standby, &db.name), ["promoted"]);
    assert!(stored_keys(&primary, &db.name).is_empty());

    let log = stop_and_log(consumer);
    let standby_target = format!("127.0.0.1:{}", standby.port);
    assert!(
        log.contains(&format!("database sessions go to {standby_target} (any)")),
        "{log}"
    );
    assert!(
        log.contains("25006"),
        "the read-only refusal is logged with its SQLSTATE:\n{log}"
    );
    assert!(
        !log.contains(&format!("sessions go to 127.0.0.1:{}", primary.port)),
        "never the second host:\n{log}"
    );
}

#[test]
fn a_host_that_accepts_but_never_answers_is_given_up_after_connect_timeout_for_the_next() {
    // A listener nobody accepts from: the kernel completes the TCP handshake and then nothing
    // answers, as with a frozen server or a paused VM.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let db = TestDb::new();
    let ports = format!("{silent_port},{}", db.server.port);
    let consumer = ConsumerProcess::start_with(
        &db,
        ProcessOptions {
            db_host: Some(pair_hosts()),
            db_ports: Some(&ports),
            // The helper's file says connect_timeout_seconds: 2.
            env: &[("LOG_LEVEL", "debug")],
            ..ProcessOptions::default()
        },
    );
    assert_eq!(post_keyed(&consumer, "first"), 201);
    // New sessions again and again (each kill makes the next write reconnect): the silent
    // host is skipped while an attempt still waits on it, so attempts do not pile up.
    let mut admin = db.client();
    for round in 0..3 {
        end_consumer_sessions(&mut admin, &db.name);
        wait_until(
            &format!("201 again after the sessions were ended (round {round})"),
            SWITCH_LIMIT,
            || post_keyed(&consumer, &format!("round-{round}")) == 201,
        );
    }
    silent.set_nonblocking(true).unwrap();
    let waiting = std::iter::from_fn(|| silent.accept().ok()).count();
    assert!(
        (1..=3).contains(&waiting),
        "{waiting} connections wait on the silent host: at most one per session the consumer \
         keeps (2 database workers, the retention thread)"
    );
    let log = stop_and_log(consumer);
    let silent_target = format!("127.0.0.1:{silent_port}");
    assert!(
        log.contains(&format!(
            "skipped {silent_target}: no session within connect_timeout_seconds (2.0 s)"
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "database host skipped: {silent_target}: an earlier attempt"
        )),
        "a host still hanging is skipped at once:\n{log}"
    );
}
