//! TLS to PostgreSQL (`database.sslmode`, `database.sslrootcert`) against real servers: one
//! offering TLS with a certificate for `localhost` only (so connecting to 127.0.0.1 is a name
//! mismatch), and the shared one without TLS.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use test_support::{Cluster, Pki, TestDb};

use crate::helpers::{
    get_closing, stop_and_log, wait_until, ConsumerProcess, ProcessOptions, RawResponse, GOOD_EVENT,
};

/// A cluster with TLS on, its CA's certificate and an unrelated CA's, both copied into the
/// cluster's directory (removed with it when the test process ends).
struct TlsServer {
    cluster: Cluster,
    ca_file: PathBuf,
    stranger_ca_file: PathBuf,
}

fn tls_server() -> &'static TlsServer {
    static SERVER: OnceLock<TlsServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        let pki = Pki::new();
        let stranger = Pki::new();
        let cluster = Cluster::start_with_tls(&pki.server_cert("db", &["localhost"]));
        let ca_file = cluster.dir.join("ca.pem");
        let stranger_ca_file = cluster.dir.join("stranger-ca.pem");
        std::fs::copy(pki.ca_file(), &ca_file).unwrap();
        std::fs::copy(stranger.ca_file(), &stranger_ca_file).unwrap();
        TlsServer {
            cluster,
            ca_file,
            stranger_ca_file,
        }
    })
}

fn database_yaml(sslmode: &str, sslrootcert: Option<&Path>) -> String {
    let mut yaml = format!("  sslmode: {sslmode}\n");
    if let Some(ca) = sslrootcert {
        yaml.push_str(&format!("  sslrootcert: {}\n", ca.display()));
    }
    yaml
}

fn start(db: &TestDb, host: Option<&str>, database_yaml: &str) -> ConsumerProcess {
    ConsumerProcess::start_with(
        db,
        ProcessOptions {
            db_host: host,
            database_yaml,
            ..ProcessOptions::default()
        },
    )
}

fn post(consumer: &ConsumerProcess) -> RawResponse {
    crate::helpers::post_event(consumer.addr, GOOD_EVENT, &[])
}

/// Whether each of the consumer's sessions on `db` is encrypted (pg_stat_ssl), once it has one.
fn consumer_sessions_encrypted(db: &TestDb) -> Vec<bool> {
    let mut admin = db.client();
    let rows = admin
        .query(
            "SELECT ssl FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
             WHERE application_name = 'event_consumer' AND datname = $1",
            &[&db.name],
        )
        .unwrap();
    rows.iter().map(|row| row.get(0)).collect()
}

#[test]
fn verify_full_with_the_right_ca_stores_events_over_encrypted_sessions() {
    let server = tls_server();
    let db = TestDb::on(&server.cluster.server());
    let yaml = database_yaml("verify-full", Some(&server.ca_file));
    let consumer = start(&db, Some("localhost"), &yaml);
    let response = post(&consumer);
    assert_eq!(response.status, 201, "{}", response.body);
    assert_eq!(db.count_events(), 1);
    let sessions = consumer_sessions_encrypted(&db);
    assert!(!sessions.is_empty(), "no session of the consumer");
    assert!(sessions.iter().all(|&ssl| ssl), "{sessions:?}");
}

#[test]
fn verify_ca_accepts_a_certificate_for_another_name_which_verify_full_refuses() {
    let server = tls_server();
    let db = TestDb::on(&server.cluster.server());
    // The certificate names localhost; the consumer connects to 127.0.0.1.
    let consumer = start(
        &db,
        None,
        &database_yaml("verify-ca", Some(&server.ca_file)),
    );
    assert_eq!(post(&consumer).status, 201);
    assert!(consumer_sessions_encrypted(&db).iter().all(|&ssl| ssl));
    drop(consumer);

    let consumer = start(
        &db,
        None,
        &database_yaml("verify-full", Some(&server.ca_file)),
    );
    assert_eq!(get_closing(consumer.addr, "/readyz").status, 503);
    assert_eq!(post(&consumer).status, 503);
    let log = stop_and_log(consumer);
    assert!(
        log.contains("the certificate failed verification") && log.contains("127.0.0.1"),
        "{log}"
    );
}

#[test]
fn an_unknown_ca_under_verify_ca_is_not_ready_and_logged_once_with_the_reason() {
    let server = tls_server();
    let db = TestDb::on(&server.cluster.server());
    let yaml = database_yaml("verify-ca", Some(&server.stranger_ca_file));
    let consumer = start(&db, None, &yaml);
    assert_eq!(get_closing(consumer.addr, "/readyz").status, 503);
    // Several attempts at the backoff pace (0.1 s doubling) still make one line.
    wait_until("a few connection attempts", Duration::from_secs(20), || {
        crate::helpers::metric_in(
            &get_closing(consumer.addr, "/metrics").body,
            "event_consumer_db_connects_total",
        )
        .is_some_and(|n| n >= 4.0)
    });
    assert_eq!(post(&consumer).status, 503);
    let log = stop_and_log(consumer);
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("unavailable")).collect();
    assert_eq!(lines.len(), 1, "one line for the outage: {log}");
    let line = lines[0];
    for needle in [
        "database 127.0.0.1:",
        "error performing TLS handshake: the certificate failed verification",
        "UnknownIssuer",
        "stranger-ca.pem",
    ] {
        assert!(line.contains(needle), "{needle} missing: {line}");
    }
}

#[test]
fn disable_talks_plain_text_to_a_server_that_offers_tls() {
    let server = tls_server();
    let db = TestDb::on(&server.cluster.server());
    let consumer = start(&db, None, &database_yaml("disable", None));
    assert_eq!(post(&consumer).status, 201);
    let sessions = consumer_sessions_encrypted(&db);
    assert!(
        !sessions.is_empty() && sessions.iter().all(|&ssl| !ssl),
        "{sessions:?}"
    );
}

#[test]
fn require_encrypts_without_checking_the_certificate() {
    let server = tls_server();
    let db = TestDb::on(&server.cluster.server());
    let consumer = start(&db, None, &database_yaml("require", None));
    assert_eq!(post(&consumer).status, 201);
    let sessions = consumer_sessions_encrypted(&db);
    assert!(
        !sessions.is_empty() && sessions.iter().all(|&ssl| ssl),
        "{sessions:?}"
    );
}

#[test]
fn require_against_a_server_without_tls_is_unavailable_rather_than_plain_text() {
    let db = TestDb::new();
    let consumer = start(&db, None, &database_yaml("require", None));
    assert_eq!(get_closing(consumer.addr, "/readyz").status, 503);
    assert_eq!(post(&consumer).status, 503);
    assert_eq!(db.count_events(), 0);
    assert!(consumer_sessions_encrypted(&db).is_empty());
    let log = stop_and_log(consumer);
    assert!(log.contains("server does not support TLS"), "{log}");
}

#[test]
fn prefer_falls_back_to_plain_text_against_a_server_without_tls() {
    let db = TestDb::new();
    let consumer = start(&db, None, &database_yaml("prefer", None));
    assert_eq!(post(&consumer).status, 201);
    let sessions = consumer_sessions_encrypted(&db);
    assert!(
        !sessions.is_empty() && sessions.iter().all(|&ssl| !ssl),
        "{sessions:?}"
    );
}

#[test]
fn a_missing_sslrootcert_file_exits_2_naming_the_key_and_the_file() {
    let dir = std::env::temp_dir().join(format!("consumer-tls-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        "database:\n  sslmode: verify-full\n  sslrootcert: /nonexistent/root.crt\n\
         consumer:\n  host: 127.0.0.1\n  port: 0\n",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_event_consumer"))
        .arg("--config")
        .arg(&config)
        .current_dir(&dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("database.sslrootcert: cannot read /nonexistent/root.crt"),
        "{stderr}"
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn verify_full_with_several_hosts_checks_each_certificate_against_the_host_connected_to() {
    let server = tls_server();
    let db = TestDb::on(&server.cluster.server());
    // The same server twice: first as 127.0.0.1, which its certificate (for localhost) does
    // not name, then as localhost, which it does. Checked against the host each session goes
    // to, the first is skipped and the second taken; checked against one name for both, both
    // would fail (127.0.0.1) or the first would pass (localhost).
    let yaml = database_yaml("verify-full", Some(&server.ca_file));
    let consumer = start(&db, Some("127.0.0.1,localhost"), &yaml);
    let response = post(&consumer);
    assert_eq!(response.status, 201, "{}", response.body);
    assert!(consumer_sessions_encrypted(&db).iter().all(|&ssl| ssl));
    let log = stop_and_log(consumer);
    let port = server.cluster.port;
    let went_to = format!(
        "database sessions go to localhost:{port} (read-write); skipped 127.0.0.1:{port}: "
    );
    let line = log
        .lines()
        .find(|l| l.contains(&went_to))
        .unwrap_or_else(|| panic!("the session goes to localhost after 127.0.0.1:\n{log}"));
    assert!(
        line.contains("the certificate failed verification")
            && line.contains(r#"certificate not valid for name "127.0.0.1""#),
        "127.0.0.1 is skipped for its name: {line}"
    );
}
