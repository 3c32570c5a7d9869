//! The propagator against the real consumer and a throwaway PostgreSQL database, at a paced
//! rate and at 1 kHz with a window.

use std::collections::HashSet;
use std::time::Duration;

use event_propagator::{run, End, Stop};
use test_support::TestDb;

use crate::helpers::*;

#[test]
fn two_hundred_events_at_10_ms_are_stored_exactly_once_at_the_configured_pace() {
    let dir = TempDir::running_alone();
    let db = TestDb::new();
    let consumer = event_consumer::start(&consumer_config(&db)).unwrap();
    let mut settings = settings(&dir, &format!("http://{}/event", consumer.addr()));
    settings.events_file = test_support::repo_root().join("events.json");
    settings.period = Duration::from_millis(10);
    settings.count = Some(200);
    settings.keys_log = Some(dir.path().join("keys.log"));
    let summary = run(settings, &Stop::new()).unwrap();
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
fn a_window_of_sends_at_1_khz_stores_exactly_the_logged_keys() {
    let dir = TempDir::running_alone();
    let db = TestDb::new();
    let consumer = event_consumer::start(&consumer_config(&db)).unwrap();
    let mut settings = settings(&dir, &format!("http://{}/event", consumer.addr()));
    settings.events_file = test_support::repo_root().join("events.json");
    settings.period = Duration::from_millis(1);
    settings.count = Some(500);
    settings.max_in_flight = 16;
    settings.keys_log = Some(dir.path().join("keys.log"));
    let summary = run(settings, &Stop::new()).unwrap();
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
