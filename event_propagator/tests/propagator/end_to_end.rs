//! The propagator against the real consumer and a throwaway PostgreSQL database.

use std::collections::HashSet;
use std::time::Duration;

use event_propagator::{run, End, Stop};
use test_support::TestDb;

use crate::helpers::*;

fn consumer_config(db: &TestDb) -> common::Config {
    let mut config = common::Config {
        database: db.database_config(),
        ..Default::default()
    };
    config.consumer.host = "127.0.0.1".into();
    config.consumer.port = 0;
    config.consumer.workers = 2;
    config
}

#[test]
fn two_hundred_events_at_10_ms_are_stored_exactly_once_at_the_configured_pace() {
    let dir = TempDir::exclusive();
    let db = TestDb::new();
    let consumer = event_consumer::start(&consumer_config(&db)).unwrap();
    let mut options = options(&dir, &format!("http://{}/event", consumer.addr()));
    options.events_file = test_support::repo_root().join("events.json");
    options.period = Duration::from_millis(10);
    options.count = Some(200);
    options.keys_log = Some(dir.path().join("keys.log"));
    let summary = run(options, &Stop::new()).unwrap();
    consumer.shutdown();

    assert_eq!(summary.end, End::Count);
    assert_eq!((summary.sent, summary.delivered), (200, 200), "{summary}");
    assert_eq!(summary.exit_code(), 0, "{summary}");
    assert_eq!(db.count_events(), 200);

    // Every generated key is stored, once.
    let logged: HashSet<String> = logged_keys(&dir).into_iter().collect();
    let stored = stored_keys(&db);
    assert_eq!(logged.len(), 200);
    assert_eq!(stored, logged);

    // The pace: 199 intervals of 10 ms between the first and the last send, within 5 %.
    let rate = summary.rate.unwrap();
    assert!((rate - 100.0).abs() <= 5.0, "{summary}");
    let elapsed = summary.elapsed.as_secs_f64();
    assert!((elapsed - 1.99).abs() <= 1.99 * 0.05, "{summary}");
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
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .new_agent();
        let mut answer = agent
            .post(&upstream)
            .header("Content-Type", "application/json")
            .header("Idempotency-Key", request.key())
            .send(&request.body[..])
            .unwrap();
        let status = answer.status().as_u16();
        let body = answer.body_mut().read_to_string().unwrap();
        match n {
            0 => Reply::status(504),
            _ => Reply::status(status).body(&body),
        }
    });
    let dir = TempDir::new();
    let mut options = options(&dir, &proxy.url());
    options.count = Some(1);
    let summary = run(options, &Stop::new()).unwrap();
    consumer.shutdown();
    assert_eq!(
        (summary.delivered, summary.duplicates, summary.retries),
        (1, 1, 1),
        "{summary}"
    );
    assert_eq!(db.count_events(), 1);
}

#[test]
fn a_window_of_sends_at_1_khz_stores_exactly_the_logged_keys() {
    let dir = TempDir::exclusive();
    let db = TestDb::new();
    let consumer = event_consumer::start(&consumer_config(&db)).unwrap();
    let mut options = options(&dir, &format!("http://{}/event", consumer.addr()));
    options.events_file = test_support::repo_root().join("events.json");
    options.period = Duration::from_millis(1);
    options.count = Some(500);
    options.max_in_flight = 16;
    options.keys_log = Some(dir.path().join("keys.log"));
    let summary = run(options, &Stop::new()).unwrap();
    consumer.shutdown();
    eprintln!("window 16 at 1 kHz against the consumer: {summary}");

    assert_eq!(summary.end, End::Count);
    assert_eq!((summary.sent, summary.delivered), (500, 500), "{summary}");
    assert_eq!(summary.exit_code(), 0, "{summary}");
    assert!(summary.max_in_flight_used <= 16, "{summary}");
    let logged = logged_keys(&dir);
    let stored = stored_keys(&db);
    assert_eq!(logged.len(), 500);
    assert_eq!(db.count_events(), 500);
    assert_eq!(
        stored,
        logged.into_iter().collect::<HashSet<_>>(),
        "every logged key stored once, no other"
    );
}

/// The keys the propagator logged in `keys.log`, in order.
fn logged_keys(dir: &TempDir) -> Vec<String> {
    std::fs::read_to_string(dir.path().join("keys.log"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The idempotency keys in the table.
fn stored_keys(db: &TestDb) -> HashSet<String> {
    db.client()
        .query("SELECT idempotency_key FROM events", &[])
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}
