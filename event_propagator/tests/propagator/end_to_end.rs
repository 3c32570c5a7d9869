//! The propagator against the real consumer and a throwaway PostgreSQL database.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use event_propagator::{run, End, Stop};
use test_support::TestDb;

use crate::helpers::*;

/// Sends `request` (one event) on to the consumer at `upstream` and gives back its answer.
fn forward(upstream: &str, request: &Request) -> Reply {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut answer = agent
        .post(upstream)
        .header("Content-Type", "application/json")
        .header("Idempotency-Key", request.key())
        .send(&request.body[..])
        .unwrap();
    let status = answer.status().as_u16();
    let replayed = answer.headers().contains_key("idempotent-replayed");
    let body = answer.body_mut().read_to_string().unwrap();
    let reply = Reply::status(status).body(&body);
    if replayed {
        reply.header("Idempotent-Replayed", "true")
    } else {
        reply
    }
}

#[test]
fn a_retried_event_is_stored_once_and_acknowledged_as_a_duplicate() {
    let db = TestDb::new();
    let consumer = event_consumer::start(&consumer_config(&db)).unwrap();
    // A proxy that forwards every request but drops the consumer's first answer, as a network
    // failure after the commit would: the propagator must retry, and the consumer must
    // recognise the key.
    let upstream = format!("http://{}/event", consumer.addr());
    let proxy = Receiver::start(move |request, n| {
        let reply = forward(&upstream, request);
        if n == 0 {
            Reply::status(504)
        } else {
            reply
        }
    });
    let dir = TempDir::new();
    let mut settings = settings(&dir, &proxy.url());
    settings.count = Some(1);
    let summary = run(settings, &Stop::new()).unwrap();
    consumer.shutdown();
    assert_eq!(
        (summary.delivered, summary.duplicates, summary.retries),
        (1, 1, 1),
        "{summary}"
    );
    assert_eq!(db.count_events(), 1);
}

#[test]
fn an_event_delivered_late_is_stored_with_the_time_it_was_generated() {
    let db = TestDb::new();
    let consumer = event_consumer::start(&consumer_config(&db)).unwrap();
    // The first attempt is answered 503 only after a delay, as an outage would; the retry is
    // forwarded, and must carry the time of the first attempt's generation, not its own.
    const DELAY: Duration = Duration::from_millis(400);
    let upstream = format!("http://{}/event", consumer.addr());
    let proxy = Receiver::start(move |request, n| match n {
        0 => Reply::status(503).after(DELAY),
        _ => forward(&upstream, request),
    });
    let dir = TempDir::new();
    let mut settings = settings(&dir, &proxy.url());
    settings.count = Some(1);
    let started = SystemTime::now();
    let summary = run(settings, &Stop::new()).unwrap();
    consumer.shutdown();
    assert_eq!((summary.delivered, summary.retries), (1, 1), "{summary}");

    let requests = proxy.requests();
    assert_eq!(
        requests[0].body, requests[1].body,
        "a retry sends the same body"
    );
    let sent = common::parse_event(&requests[0].body).unwrap();
    let row = db
        .client()
        .query_one("SELECT occurred_at, received_at FROM events", &[])
        .unwrap();
    let (occurred_at, received_at): (Option<SystemTime>, SystemTime) = (row.get(0), row.get(1));
    assert_eq!(occurred_at, sent.occurred_at(), "stored as sent");
    let occurred_at = occurred_at.expect("the propagator always sends occurred_at");
    // Sent with milliseconds, cut: at most 1 ms before the run started.
    assert!(occurred_at + Duration::from_millis(1) >= started);
    let age = received_at.duration_since(occurred_at).unwrap_or_default();
    assert!(
        age >= DELAY,
        "received {age:?} after it occurred, the outage lasted {DELAY:?}"
    );
}

/// The exactly-once check of the soak's paced and 1 kHz runs, without a pace: back to back
/// with a window, so it needs no timing to hold.
#[test]
fn a_window_of_sends_back_to_back_stores_exactly_the_logged_keys_once() {
    let dir = TempDir::new();
    let db = TestDb::new();
    let consumer = event_consumer::start(&consumer_config(&db)).unwrap();
    let mut settings = settings(&dir, &format!("http://{}/event", consumer.addr()));
    settings.events_file = test_support::repo_root().join("events.json");
    settings.count = Some(100);
    settings.max_in_flight = 8;
    settings.keys_log = Some(dir.path().join("keys.log"));
    let summary = run(settings, &Stop::new()).unwrap();
    consumer.shutdown();

    assert_eq!(summary.end, End::Count);
    assert_eq!((summary.sent, summary.delivered), (100, 100), "{summary}");
    assert_eq!(summary.exit_code(), 0, "{summary}");
    assert!(summary.max_in_flight_used <= 8, "{summary}");
    let logged = logged_keys(&dir);
    assert_eq!(logged.len(), 100);
    assert_eq!(db.count_events(), 100);
    assert_eq!(
        stored_keys(&db),
        logged.into_iter().collect::<HashSet<_>>(),
        "every logged key stored once, no other"
    );
}

/// The consumer over HTTPS, with client certificates required when `client_ca` is given.
fn https_consumer(
    db: &TestDb,
    server: &test_support::CertFiles,
    client_ca: Option<&std::path::Path>,
) -> event_consumer::Running {
    let mut config = consumer_config(db);
    config.consumer.tls_cert_file = Some(server.cert.clone());
    config.consumer.tls_key_file = Some(server.key.clone());
    config.consumer.tls_client_ca_file = client_ca.map(|p| p.to_owned());
    event_consumer::start(&config).unwrap()
}

#[test]
fn delivers_over_https_to_the_consumer_with_tls_ca_file_and_every_key_is_stored_once() {
    let pki = test_support::Pki::new();
    let server = pki.server_cert("consumer", &["localhost", "127.0.0.1"]);
    let db = TestDb::new();
    let consumer = https_consumer(&db, &server, None);
    let dir = TempDir::new();
    let url = format!("https://localhost:{}/event", consumer.addr().port());
    let mut settings = settings(&dir, &url);
    settings.tls.ca_file = Some(pki.ca_file().to_owned());
    settings.keys_log = Some(dir.path().join("keys.log"));
    settings.count = Some(20);
    let summary = run(settings, &Stop::new()).unwrap();
    consumer.shutdown();
    assert_eq!((summary.sent, summary.delivered), (20, 20), "{summary}");
    let keys: HashSet<String> = logged_keys(&dir).into_iter().collect();
    let stored: HashSet<String> = db
        .client()
        .query("SELECT idempotency_key FROM events", &[])
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(keys.len(), 20);
    assert_eq!(stored, keys);
}

#[test]
fn a_device_with_its_client_certificate_delivers_to_an_mtls_consumer_and_one_without_cannot() {
    let pki = test_support::Pki::new();
    let server = pki.server_cert("consumer", &["localhost", "127.0.0.1"]);
    let device = pki.client_cert("device", "device-7");
    let db = TestDb::new();
    let consumer = https_consumer(&db, &server, Some(pki.ca_file()));
    let url = format!("https://127.0.0.1:{}/event", consumer.addr().port());

    let dir = TempDir::new();
    let mut with_cert = settings(&dir, &url);
    with_cert.tls.ca_file = Some(pki.ca_file().to_owned());
    with_cert.tls.client_identity = Some((device.cert.clone(), device.key.clone()));
    with_cert.count = Some(5);
    let summary = run(with_cert, &Stop::new()).unwrap();
    assert_eq!(summary.delivered, 5, "{summary}");

    let other = TempDir::new();
    let mut without = settings(&other, &url);
    without.tls.ca_file = Some(pki.ca_file().to_owned());
    without.count = Some(1);
    without.max_retries = 1;
    let summary = run(without, &Stop::new());
    consumer.shutdown();
    let delivered = summary.map(|s| s.delivered).unwrap_or(0);
    assert_eq!(delivered, 0, "refused at the handshake");
    assert_eq!(db.count_events(), 5);
}

#[test]
fn count_20_batches_of_50_gzipped_store_1000_rows_whose_keys_are_the_keys_log() {
    let db = TestDb::new();
    let consumer = event_consumer::start(&consumer_config(&db)).unwrap();
    let dir = TempDir::new();
    let mut settings = settings(&dir, &format!("http://{}/event", consumer.addr()));
    settings.keys_log = Some(dir.path().join("keys.log"));
    settings.count = Some(20);
    settings.batch_size = 50;
    settings.gzip = true;
    let started = SystemTime::now();
    let summary = run(settings, &Stop::new()).unwrap();
    assert_eq!((summary.sent, summary.delivered), (1000, 1000), "{summary}");
    assert_eq!(summary.batches, 20, "{summary}");
    // The same keys again, as a retry would send them: every item a duplicate.
    let keys = logged_keys(&dir);
    let items: Vec<String> = keys
        .iter()
        .map(|k| format!(r#"{{"event_type":"again","event_payload":"","idempotency_key":"{k}"}}"#))
        .collect();
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut answer = agent
        .post(&format!("http://{}/events", consumer.addr()))
        .header("Content-Type", "application/json")
        .send(format!("[{}]", items[..100].join(",")))
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    let body = answer.body_mut().read_to_string().unwrap();
    assert_eq!(body.matches("\"duplicate\"").count(), 100);
    consumer.shutdown();
    let stored: HashSet<String> = db
        .client()
        .query("SELECT idempotency_key FROM events", &[])
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(keys.len(), 1000);
    assert_eq!(stored, keys.into_iter().collect::<HashSet<_>>());
    // Every item carried its generation time: after the start (cut to the millisecond), not
    // after it was received.
    let started = started - Duration::from_millis(1);
    let untimed: i64 = db
        .client()
        .query_one(
            "SELECT count(*) FROM events \
             WHERE occurred_at IS NULL OR occurred_at < $1 OR occurred_at > received_at",
            &[&started],
        )
        .unwrap()
        .get(0);
    assert_eq!(untimed, 0, "rows without their generation time");
}

#[test]
fn without_a_config_file_the_flags_alone_run_it_and_an_explicit_missing_config_exits_2() {
    let db = TestDb::new();
    let consumer = event_consumer::start(&consumer_config(&db)).unwrap();
    // An empty working directory: no config.yaml, no .env, no events.json.
    let empty = TempDir::new();
    let files = TempDir::new();
    let events = files.path().join("events.json");
    std::fs::write(&events, r#"[{"event_type":"a","event_payload":"b"}]"#).unwrap();
    let endpoint = format!("http://{}/event", consumer.addr());
    let events = events.to_str().unwrap();
    let (code, stderr) = run_binary(
        &empty,
        &[
            "--endpoint",
            &endpoint,
            "--count",
            "3",
            "--period",
            "0",
            "--events-file",
            events,
        ],
        Duration::from_secs(30),
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("no --config and no config.yaml in the working directory"),
        "{stderr}"
    );
    assert_eq!(db.count_events(), 3);
    let (code, stderr) = run_binary(
        &empty,
        &[
            "--config",
            "missing.yaml",
            "--endpoint",
            &endpoint,
            "--count",
            "1",
        ],
        Duration::from_secs(30),
    );
    assert_eq!(code, 2, "an explicit --config must be readable: {stderr}");
    assert!(stderr.contains("missing.yaml"), "{stderr}");
    assert_eq!(db.count_events(), 3);
    consumer.shutdown();
}
