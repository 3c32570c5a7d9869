//! The harness itself and the shipped `db_init_script.sh`, against a real PostgreSQL.

use std::process::Command;

use test_support::{repo_root, Cluster, TestDb};

#[test]
fn a_test_database_has_an_empty_events_table() {
    let db = TestDb::new();
    assert_eq!(db.count_events(), 0);
}

fn run_init_script(cluster: &Cluster, dbname: &str, password: &str) -> std::process::Output {
    let workdir = std::env::temp_dir();
    Command::new(repo_root().join("db_init_script.sh"))
        .current_dir(workdir)
        .env("DB_HOST", "127.0.0.1")
        .env("DB_PORT", cluster.port.to_string())
        .env("DB_USER", "postgres")
        .env("DB_PASSWORD", password)
        .env("DB_NAME", dbname)
        .output()
        .unwrap()
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
