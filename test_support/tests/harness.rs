//! The harness itself and the shipped `db_init_script.sh`, against a real PostgreSQL.

use std::path::Path;
use std::process::Command;

use test_support::{repo_root, Cluster, TestDb};

#[test]
fn a_test_database_has_an_empty_events_table() {
    let db = TestDb::new();
    assert_eq!(db.count_events(), 0);
}

fn run_init_script(cluster: &Cluster, dbname: &str, password: &str) -> std::process::Output {
    run_init_script_at(&repo_root(), cluster, dbname, password)
}

/// Runs `dir/db_init_script.sh`, which applies the `schema.sql` beside it.
fn run_init_script_at(
    dir: &Path,
    cluster: &Cluster,
    dbname: &str,
    password: &str,
) -> std::process::Output {
    init_script_at(dir, cluster, dbname, password)
        .output()
        .unwrap()
}

fn init_script_at(dir: &Path, cluster: &Cluster, dbname: &str, password: &str) -> Command {
    let workdir = std::env::temp_dir();
    let mut command = Command::new(dir.join("db_init_script.sh"));
    command
        .current_dir(workdir)
        .env("DB_HOST", "127.0.0.1")
        .env("DB_PORT", cluster.port.to_string())
        .env("DB_USER", "postgres")
        .env("DB_PASSWORD", password)
        .env("DB_NAME", dbname);
    command
}

#[test]
fn the_init_script_is_safe_to_run_twice_and_creates_one_events_table() {
    let cluster = Cluster::start();
    for run in 1..=2 {
        let out = run_init_script(&cluster, "events_twice", "");
        assert!(
            out.status.success(),
            "run {run}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut client = cluster.server().connect("events_twice").unwrap();
    let tables: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE tablename = 'events'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(tables, 1);
    let columns: Vec<(String, String, String)> = client
        .query(
            "SELECT column_name::text, data_type::text, is_nullable::text FROM information_schema.columns \
             WHERE table_name = 'events' ORDER BY ordinal_position",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let expected = [
        ("id", "bigint", "NO"),
        ("event_type", "text", "NO"),
        ("event_payload", "text", "NO"),
        ("received_at", "timestamp with time zone", "NO"),
        ("idempotency_key", "text", "YES"),
        ("occurred_at", "timestamp with time zone", "YES"),
    ];
    let expected: Vec<(String, String, String)> = expected
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
    assert_eq!(columns, expected);
}

#[test]
fn the_init_script_fails_in_one_line_when_the_server_is_unreachable() {
    let cluster = Cluster::start();
    cluster.stop("fast");
    let out = run_init_script(&cluster, "events", "");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("cannot connect"), "{stderr}");
}

/// `schema.sql` as released before `occurred_at` (commit 324edc0); its `db_init_script.sh`
/// was the one of today, which applies the `schema.sql` beside it.
const SCHEMA_BEFORE_OCCURRED_AT: &str = "CREATE TABLE IF NOT EXISTS events (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_type      text        NOT NULL,
    event_payload   text        NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now(),
    idempotency_key text UNIQUE
);
";

#[test]
fn the_init_script_adds_occurred_at_to_a_database_of_the_previous_version_keeping_its_rows() {
    let cluster = Cluster::start();
    let previous =
        std::env::temp_dir().join(format!("evtest-schema-324edc0-{}", std::process::id()));
    std::fs::create_dir_all(&previous).unwrap();
    std::fs::copy(
        repo_root().join("db_init_script.sh"),
        previous.join("db_init_script.sh"),
    )
    .unwrap();
    std::fs::write(previous.join("schema.sql"), SCHEMA_BEFORE_OCCURRED_AT).unwrap();
    let out = run_init_script_at(&previous, &cluster, "events_upgrade", "");
    std::fs::remove_dir_all(&previous).unwrap();
    assert!(
        out.status.success(),
        "previous version: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut client = cluster.server().connect("events_upgrade").unwrap();
    let has_column = |client: &mut postgres::Client| -> bool {
        client
            .query_one(
                "SELECT count(*) = 1 FROM information_schema.columns \
                 WHERE table_name = 'events' AND column_name = 'occurred_at' AND is_nullable = 'YES' \
                   AND data_type = 'timestamp with time zone'",
                &[],
            )
            .unwrap()
            .get(0)
    };
    assert!(
        !has_column(&mut client),
        "the previous version has no occurred_at"
    );
    client
        .execute(
            "INSERT INTO events (event_type, event_payload, idempotency_key) VALUES ('old', 'kept', 'k-old')",
            &[],
        )
        .unwrap();

    for run in 1..=2 {
        let out = run_init_script(&cluster, "events_upgrade", "");
        assert!(
            out.status.success(),
            "run {run}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(has_column(&mut client), "run {run}: occurred_at added");
    }
    let rows: Vec<(String, Option<std::time::SystemTime>)> = client
        .query("SELECT event_payload, occurred_at FROM events", &[])
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(
        rows,
        [("kept".to_string(), None)],
        "the old row is kept, with no time"
    );
    client
        .execute(
            "INSERT INTO events (event_type, event_payload, occurred_at) \
             VALUES ('new', 'p', '2026-12-07T04:00:00+01:00')",
            &[],
        )
        .unwrap();
}

#[test]
fn the_init_script_takes_no_lock_on_a_current_table_so_a_long_transaction_does_not_hold_it_up() {
    let cluster = Cluster::start();
    let out = run_init_script(&cluster, "events_locked", "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A transaction reading the table (a pg_dump) holds a lock that ALTER TABLE would wait for.
    let mut reader = cluster.server().connect("events_locked").unwrap();
    let mut transaction = reader.transaction().unwrap();
    transaction
        .batch_execute("LOCK TABLE events IN ACCESS SHARE MODE")
        .unwrap();
    let out = init_script_at(&repo_root(), &cluster, "events_locked", "")
        .env("PGOPTIONS", "-c lock_timeout=5s")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the second run waited for the lock: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    transaction.commit().unwrap();
}
