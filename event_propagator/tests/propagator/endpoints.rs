//! Several endpoints (`propagator.endpoints`, repeated `--endpoint`): round-robin over the
//! consumers that are up, an endpoint that is out skipped and used again once it is back, and
//! retries that keep their key from one endpoint to the next. The consumers share one
//! database, which is what makes the same key on another consumer exactly-once.

use std::collections::HashSet;
use std::thread;
use std::time::{Duration, Instant};

use event_propagator::{run, Propagator, Stop, Summary};
use test_support::TestDb;

use crate::helpers::*;

/// A URL on a loopback port nobody listens on (reserved for this process, so no other test
/// starts a server there).
fn nobody_listens() -> (u16, String) {
    let port = test_support::free_port();
    (port, format!("http://127.0.0.1:{port}/event"))
}

fn consumer_on(db: &TestDb, port: u16) -> event_consumer::Running {
    let mut config = consumer_config(db);
    config.consumer.port = port;
    event_consumer::start(&config).unwrap()
}

fn delivered_at(summary: &Summary, url: &str) -> u64 {
    summary
        .delivered_by_endpoint
        .iter()
        .find(|(name, _)| name == url)
        .unwrap_or_else(|| panic!("{url} not in {summary}"))
        .1
}

/// Polls `condition` until it holds or fails the test after `limit`.
fn wait_until(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// Requests the stop when dropped, however the test ends.
struct StopOnDrop<'a>(&'a Stop);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.request();
    }
}

fn assert_table_holds_the_logged_keys_once(db: &TestDb, dir: &TempDir, count: usize) {
    let logged = logged_keys(dir);
    assert_eq!(logged.len(), count);
    assert_eq!(db.count_events(), count as i64, "no key stored twice");
    assert_eq!(
        stored_keys(db),
        logged.into_iter().collect::<HashSet<_>>(),
        "every logged key stored once, no other"
    );
}

#[test]
fn with_one_of_two_endpoints_down_every_event_goes_through_the_other() {
    let dir = TempDir::new();
    let db = TestDb::new();
    let consumer = consumer_on(&db, 0);
    let up = format!("http://{}/event", consumer.addr());
    let (_, down) = nobody_listens();
    let mut settings = settings(&dir, &down);
    settings.endpoints = vec![down.clone(), up.clone()];
    settings.count = Some(40);
    settings.max_in_flight = 2;
    settings.keys_log = Some(dir.path().join("keys.log"));
    let summary = run(settings, &Stop::new()).unwrap();
    consumer.shutdown();

    assert_eq!((summary.sent, summary.delivered), (40, 40), "{summary}");
    assert_eq!(summary.exit_code(), 0, "{summary}");
    assert_eq!(delivered_at(&summary, &down), 0, "{summary}");
    assert_eq!(delivered_at(&summary, &up), 40, "{summary}");
    let line = summary.to_string();
    assert!(
        line.ends_with(&format!(
            " delivered_by_endpoint={{\"{down}\":0,\"{up}\":40}} unconfirmed=0"
        )),
        "{line}"
    );
    // Round-robin without the rest would give the dead endpoint the first attempt of every
    // other event (20 retries); resting, it costs the sends that picked it before it was
    // known to be out, and a probe per rest.
    assert!(
        summary.retries <= 10,
        "the dead endpoint was not skipped: {summary}"
    );
    assert_table_holds_the_logged_keys_once(&db, &dir, 40);
}

#[test]
fn an_endpoint_that_comes_back_is_used_again() {
    let dir = TempDir::new();
    let db = TestDb::new();
    let first = consumer_on(&db, 0);
    let first_url = format!("http://{}/event", first.addr());
    let (later_port, later_url) = nobody_listens();
    let mut settings = settings(&dir, &first_url);
    settings.endpoints = vec![later_url.clone(), first_url.clone()];
    settings.period = Duration::from_millis(10);
    settings.max_in_flight = 2;
    settings.keys_log = Some(dir.path().join("keys.log"));
    let stop = Stop::new();
    let propagator = Propagator::new(settings).unwrap();
    let summary = thread::scope(|scope| {
        let running = scope.spawn(|| propagator.run_until_stopped(&stop));
        // A failed wait must end the run too, or the scope would wait for it forever.
        let _stop_on_panic = StopOnDrop(&stop);
        wait_until(
            "20 events stored through the first consumer",
            Duration::from_secs(30),
            || db.count_events() >= 20,
        );
        let later = consumer_on(&db, later_port);
        // It rests at most 10 s after its last failure; then the probe finds it back.
        wait_until(
            "the consumer that came back storing events",
            Duration::from_secs(30),
            || later.metrics().events_stored() >= 5,
        );
        stop.request();
        let summary = running.join().unwrap();
        later.shutdown();
        summary
    });
    first.shutdown();

    assert_eq!(summary.delivered, summary.sent, "{summary}");
    assert_eq!(summary.exit_code(), 0, "{summary}");
    assert!(delivered_at(&summary, &later_url) >= 5, "{summary}");
    assert!(delivered_at(&summary, &first_url) >= 20, "{summary}");
    assert_table_holds_the_logged_keys_once(&db, &dir, summary.sent as usize);
}

#[test]
fn a_retry_after_a_503_goes_to_the_other_endpoint_with_the_same_key() {
    let dir = TempDir::new();
    let db = TestDb::new();
    let consumer = consumer_on(&db, 0);
    let stored_by_consumer = format!("http://{}/event", consumer.addr());
    // A consumer that cannot store anything now, as one whose database is down answers.
    let unavailable = Receiver::start(|_, _| Reply::status(503).header("Retry-After", "10"));
    let mut settings = settings(&dir, &unavailable.url());
    settings.endpoints = vec![unavailable.url(), stored_by_consumer.clone()];
    settings.count = Some(20);
    settings.keys_log = Some(dir.path().join("keys.log"));
    let started = Instant::now();
    let summary = run(settings, &Stop::new()).unwrap();
    consumer.shutdown();

    assert_eq!((summary.sent, summary.delivered), (20, 20), "{summary}");
    assert_eq!(delivered_at(&summary, &unavailable.url()), 0, "{summary}");
    assert_eq!(delivered_at(&summary, &stored_by_consumer), 20, "{summary}");
    let refused: Vec<String> = unavailable.requests().iter().map(Request::key).collect();
    assert!(
        !refused.is_empty(),
        "the first event tried the 503 endpoint first"
    );
    assert!(
        refused.len() < 20,
        "the 503 endpoint rests instead of getting every event's first attempt: {refused:?}"
    );
    let stored = stored_keys(&db);
    for key in &refused {
        assert!(
            stored.contains(key),
            "{key}: retried elsewhere under another key"
        );
    }
    assert_table_holds_the_logged_keys_once(&db, &dir, 20);
    // Its Retry-After (10 s) was about itself: the other endpoint took the retry at once.
    assert!(started.elapsed() < Duration::from_secs(10), "{summary}");
}

#[test]
fn repeated_endpoint_flags_send_round_robin_and_the_summary_counts_each() {
    let dir = TempDir::new();
    let a = Receiver::accepting();
    let b = Receiver::accepting();
    write_config(&dir, &a.url(), "  max_in_flight: 1\n");
    let (code, stderr) = run_binary(
        &dir,
        &[
            "--count",
            "10",
            "--endpoint",
            &b.url(),
            "--endpoint",
            &a.url(),
        ],
        Duration::from_secs(60),
    );
    assert_eq!(code, 0, "{stderr}");
    // One sender: strictly in turn, from the first flag's endpoint.
    assert_eq!((a.requests().len(), b.requests().len()), (5, 5));
    let summary = summary_line(&stderr);
    let field = summary
        .split(' ')
        .find(|f| f.starts_with("delivered_by_endpoint="))
        .unwrap();
    let counts: serde_json::Value =
        serde_json::from_str(field.strip_prefix("delivered_by_endpoint=").unwrap()).unwrap();
    assert_eq!(
        counts,
        serde_json::json!({ b.url(): 5, a.url(): 5 }),
        "{summary}"
    );
    assert!(
        summary.starts_with("summary: sent=10 delivered=10 ")
            || summary.contains(" summary: sent=10 delivered=10 "),
        "the existing fields stay first: {summary}"
    );
    let start = stderr.lines().find(|l| l.contains("sending to")).unwrap();
    assert!(
        start.contains(&format!("{}, {}", b.url(), a.url())),
        "{start}"
    );
}
