//! Retention (`consumer.retention_days`): expired rows go within a prune interval and younger
//! ones stay, a pruned key is new again, several consumers prune once, an outage pauses
//! pruning, no key keeps everything, bad values stop the binary, and `db_init_script.sh`
//! upgrades a database of the previous version in place.

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use test_support::{repo_root, shared_server, TestDb};

use crate::helpers::{
    end_consumer_sessions, metric_in, post_event, send, set_read_only, wait_until, ConsumerProcess,
    ProcessOptions, TestApp, GOOD_EVENT,
};
use crate::lifecycle::run_with_config;

const DAY: f64 = 86_400.0;

/// `retention_days` for a retention of `seconds`.
fn days(seconds: f64) -> f64 {
    seconds / DAY
}

/// Inserts `n` rows whose `received_at` is `age` in the past, as a deployment that ran for a
/// while has them; returns their ids.
fn backdated(client: &mut postgres::Client, n: i64, age: &str) -> Vec<i64> {
    client
        .query(
            "INSERT INTO events (event_type, event_payload, received_at) \
             SELECT 'old.event', 'n=' || i, now() - $2::text::interval \
             FROM generate_series(1, $1::bigint) AS i RETURNING id",
            &[&n, &age],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

fn metric(consumer: &ConsumerProcess, sample: &str) -> Option<f64> {
    let request = "GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    metric_in(&send(consumer.addr, request.as_bytes()).body, sample)
}

fn pruned(consumer: &ConsumerProcess) -> f64 {
    metric(consumer, "event_consumer_pruned_events_total").unwrap_or(-1.0)
}

/// The consumer's `consumer:` lines for a retention of `seconds`.
fn retention_yaml(seconds: f64) -> String {
    format!("  retention_days: {}\n", days(seconds))
}

fn lines_at(log: &str, level: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.split_whitespace().nth(1) == Some(level))
        .map(str::to_owned)
        .collect()
}

#[test]
fn rows_past_the_retention_are_deleted_within_a_prune_interval_and_younger_rows_are_kept() {
    let retention = 4.0;
    // A tenth of the retention; a noisy machine may add seconds, never take any away.
    let interval = retention / 10.0;
    let slack = 2.0;
    let app = TestApp::spawn_with(|c| c.consumer.retention_days = Some(days(retention)));
    let mut client = app.db.client();
    // Each row with its received_at and the time it was stored (seconds since 1970): a row
    // stored already expired can go only after it was stored. Read as they are inserted: the
    // expired ones may be gone by the next query.
    let mut rows: HashMap<i64, (f64, f64)> = HashMap::new();
    for age in ["1 hour", "2 seconds"] {
        let inserted = client
            .query(
                "INSERT INTO events (event_type, event_payload, received_at) \
                 SELECT 'old.event', 'n=' || i, now() - $1::text::interval \
                 FROM generate_series(1, 3) AS i \
                 RETURNING id, extract(epoch FROM received_at)::float8, \
                     extract(epoch FROM now())::float8",
                &[&age],
            )
            .unwrap();
        rows.extend(inserted.iter().map(|row| {
            let id: i64 = row.get(0);
            (id, (row.get(1), row.get(2)))
        }));
    }
    // Expire 2 s from now (above), and 4 s from now (POSTed).
    for _ in 0..3 {
        let response = app.post(GOOD_EVENT, &[]);
        assert_eq!(response.status, 201, "{}", response.body);
        let id = response.json()["id"].as_i64().unwrap();
        let at: f64 = client
            .query_one(
                "SELECT extract(epoch FROM received_at)::float8 FROM events WHERE id = $1",
                &[&id],
            )
            .unwrap()
            .get(0);
        rows.insert(id, (at, at));
    }
    assert_eq!(rows.len(), 9);

    let deadline = Instant::now() + Duration::from_secs_f64(retention + 20.0);
    let mut latest = 0.0_f64;
    loop {
        let row = client
            .query_one(
                "SELECT extract(epoch FROM now())::float8, \
                        coalesce(array_agg(id ORDER BY id), '{}') FROM events",
                &[],
            )
            .unwrap();
        let (now, present): (f64, Vec<i64>) = (row.get(0), row.get(1));
        for (&id, &(received, stored)) in &rows {
            let age = now - received;
            let here = present.contains(&id);
            assert!(
                here || age > retention - 0.01,
                "row {id} deleted {age:.2} s after it was received, before its {retention} s"
            );
            if !here {
                continue;
            }
            let overdue = now - (received + retention).max(stored);
            latest = latest.max(overdue);
            assert!(
                overdue < interval + slack,
                "row {id} still there {overdue:.2} s after it was due ({present:?})"
            );
        }
        if present.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "rows left: {present:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("latest deletion seen: {latest:.2} s after the row was due (interval {interval} s)");
    assert_eq!(app.metric("event_consumer_pruned_events_total"), Some(9.0));
    let size = app.metric("event_consumer_table_size_bytes").unwrap();
    assert!(size >= 8192.0, "the table's size is measured: {size}");
}

#[test]
fn a_key_whose_row_was_pruned_is_stored_again_with_201() {
    let app = TestApp::spawn_with(|c| c.consumer.retention_days = Some(days(3.0)));
    let key = [("Idempotency-Key", "pruned-key-1")];
    let first = app.post(GOOD_EVENT, &key);
    assert_eq!(first.status, 201, "{}", first.body);
    let mut client = app.db.client();
    let updated = client
        .execute(
            "UPDATE events SET received_at = now() - interval '1 day' \
             WHERE idempotency_key = 'pruned-key-1'",
            &[],
        )
        .unwrap();
    assert_eq!(updated, 1);
    wait_until("the expired row pruned", Duration::from_secs(20), || {
        app.db.count_events() == 0
    });
    let again = app.post(GOOD_EVENT, &key);
    assert_eq!(again.status, 201, "a new event: {}", again.body);
    assert_ne!(again.json()["id"], first.json()["id"]);
    assert_eq!(app.db.count_events(), 1);
}

#[test]
fn two_consumers_on_one_database_prune_without_errors_and_each_row_once() {
    let db = TestDb::new();
    let yaml = retention_yaml(2.0);
    let env = [("LOG_LEVEL", "info")];
    let a = ConsumerProcess::start(&db, &yaml, &env);
    let b = ConsumerProcess::start(&db, &yaml, &env);
    // More than one chunk, so the prunes take a while and overlap.
    let expired = 12_000;
    backdated(&mut db.client(), expired, "1 day");
    let fresh = post_event(a.addr, GOOD_EVENT, &[]);
    assert_eq!(fresh.status, 201);
    wait_until("every expired row pruned", Duration::from_secs(60), || {
        pruned(&a) + pruned(&b) >= expired as f64
    });
    assert_eq!(
        pruned(&a) + pruned(&b),
        expired as f64,
        "each row pruned once, by one consumer or the other"
    );
    assert_eq!(db.count_events(), 1, "the fresh row stays");
    for consumer in [a, b] {
        let log = crate::helpers::stop_and_log(consumer);
        assert!(
            log.contains("keeping events for 0.000023 days (2.0 s)"),
            "{log}"
        );
        let trouble = [lines_at(&log, "WARN"), lines_at(&log, "ERROR")].concat();
        assert!(trouble.is_empty(), "{trouble:?}\n{log}");
    }
}

#[test]
fn a_read_only_database_pauses_pruning_and_it_resumes_by_itself() {
    let db = TestDb::new();
    let consumer = ConsumerProcess::start(&db, &retention_yaml(2.0), &[("LOG_LEVEL", "info")]);
    let mut admin = db.client();
    set_read_only(&mut admin, &db.name, true);
    end_consumer_sessions(&mut admin, &db.name);
    // This session predates the change: it still writes.
    backdated(&mut admin, 100, "1 day");
    wait_until(
        "the retention thread finds the database read-only",
        Duration::from_secs(20),
        || metric(&consumer, "event_consumer_database_outage") == Some(1.0),
    );
    // Several prune intervals (0.2 s) with the database read-only: nothing pruned.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(db.count_events(), 100);
    assert_eq!(pruned(&consumer), 0.0);

    set_read_only(&mut admin, &db.name, false);
    wait_until(
        "pruning resumes once the database is writable",
        Duration::from_secs(30),
        || db.count_events() == 0,
    );
    assert_eq!(pruned(&consumer), 100.0);
    let log = crate::helpers::stop_and_log(consumer);
    // Which cause each attempt met (the session ended, then read-only) depends on timing.
    assert!(
        log.contains("unavailable") && log.contains("available again"),
        "the outage's start and end are logged:\n{log}"
    );
    assert!(log.contains("pruned 100 events"), "{log}");
}

#[test]
fn without_a_retention_every_row_is_kept_however_old() {
    let db = TestDb::new();
    // The shipped file's line with RETENTION_DAYS unset: the key as good as removed.
    let consumer = ConsumerProcess::start_with(
        &db,
        ProcessOptions {
            consumer_yaml: "  retention_days: ${RETENTION_DAYS:-}\n",
            env: &[("LOG_LEVEL", "info")],
            ..ProcessOptions::default()
        },
    );
    backdated(&mut db.client(), 10, "10 years");
    wait_until("the table's size measured", Duration::from_secs(20), || {
        metric(&consumer, "event_consumer_table_size_bytes").is_some()
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(db.count_events(), 10);
    assert_eq!(pruned(&consumer), 0.0);
    let log = crate::helpers::stop_and_log(consumer);
    assert!(log.contains("keeping events forever"), "{log}");

    let app = TestApp::spawn();
    backdated(&mut app.db.client(), 10, "10 years");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(app.db.count_events(), 10, "no key at all: kept too");
}

#[test]
fn a_retention_of_zero_a_negative_one_or_not_a_number_exits_2_naming_the_key_and_the_file() {
    for (value, reason) in [("0", "zero"), ("-1", "negative"), ("thirty", "a word")] {
        let yaml = format!("consumer:\n  retention_days: {value}\n");
        let (code, stderr) = run_with_config(&yaml, &[]);
        assert_eq!(code, Some(2), "{reason}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{reason}: {stderr}");
        assert!(
            stderr.contains("consumer.retention_days") && stderr.contains("config-"),
            "{reason}: the key and the file: {stderr}"
        );
    }
    let (code, stderr) = run_with_config(
        "consumer:\n  retention_days: ${RETENTION_DAYS:-}\n",
        &[("RETENTION_DAYS", "-3")],
    );
    assert_eq!(code, Some(2), "through the variable: {stderr}");
    assert!(stderr.contains("consumer.retention_days"), "{stderr}");
}

/// The commit whose `db_init_script.sh` and `schema.sql` made databases before retention.
const PREVIOUS_VERSION: &str = "324edc0";

fn run_init_script(dir: &std::path::Path, script: &std::path::Path, dbname: &str) -> String {
    let server = shared_server();
    let out = Command::new("bash")
        // A statement that waits for a lock fails instead of hanging the test.
        .env("PGOPTIONS", "-c lock_timeout=5s")
        .arg(script)
        .current_dir(dir)
        .env("DB_HOST", &server.host)
        .env("DB_PORT", server.port.to_string())
        .env("DB_USER", &server.user)
        .env("DB_PASSWORD", &server.password)
        .env("DB_NAME", dbname)
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}: {said}", script.display());
    said
}

#[test]
fn db_init_script_upgrades_a_database_of_the_previous_version_in_place_and_runs_twice() {
    let dir = std::env::temp_dir().join(format!("retention-upgrade-{}", std::process::id()));
    let previous = dir.join("previous");
    std::fs::create_dir_all(&previous).unwrap();
    for file in ["db_init_script.sh", "schema.sql"] {
        let out = Command::new("git")
            .args(["show", &format!("{PREVIOUS_VERSION}:{file}")])
            .current_dir(repo_root())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "the previous version's {file} from git (a clone with history is needed): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(previous.join(file), out.stdout).unwrap();
    }
    let db = TestDb {
        server: shared_server().clone(),
        name: format!("upgrade_{}", std::process::id()),
    };
    run_init_script(&dir, &previous.join("db_init_script.sh"), &db.name);
    let mut client = db.client();
    let index = |client: &mut postgres::Client| -> Option<bool> {
        client
            .query_opt(
                "SELECT indisvalid FROM pg_index \
                 WHERE indexrelid = to_regclass('events_received_at')",
                &[],
            )
            .unwrap()
            .map(|row| row.get(0))
    };
    assert_eq!(
        index(&mut client),
        None,
        "the previous version had no index"
    );
    backdated(&mut client, 1000, "1 hour");

    let current = repo_root().join("db_init_script.sh");
    let said = run_init_script(&dir, &current, &db.name);
    assert!(said.contains("schema applied"), "first run: {said}");
    assert_eq!(index(&mut client), Some(true), "first run");
    assert_eq!(db.count_events(), 1000, "first run: rows kept");
    // The second run on a current table, with an insert's transaction open (the lock every
    // consumer's write holds): it must take no lock that waits for it, as CREATE INDEX does
    // even when the index exists (lock_timeout would fail the run).
    let mut writer = db.client();
    let mut insert = writer.transaction().unwrap();
    insert
        .batch_execute("INSERT INTO events (event_type, event_payload) VALUES ('in', 'flight')")
        .unwrap();
    let said = run_init_script(&dir, &current, &db.name);
    assert!(said.contains("schema applied"), "second run: {said}");
    insert.rollback().unwrap();
    assert_eq!(index(&mut client), Some(true), "second run");
    assert_eq!(db.count_events(), 1000, "second run: rows kept");
    let plan: String = client
        .query(
            "EXPLAIN SELECT id FROM events ORDER BY received_at LIMIT 10",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| row.get::<_, String>(0))
        .collect();
    assert!(plan.contains("events_received_at"), "{plan}");
    drop(client);
    let _ = std::fs::remove_dir_all(&dir);
}
