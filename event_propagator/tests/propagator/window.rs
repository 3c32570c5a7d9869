//! Several sends in flight (`max_in_flight`), in process, against the recording receiver: a slow
//! consumer costs no slots while the window has room, the window bounds what is open at once,
//! and the seeded order, the count, the duration and the keys log hold with sends that overlap.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use event_propagator::events::Picker;
use event_propagator::{run, End, Stop};

use crate::helpers::*;

fn keys_log(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_window_of_one_sends_like_a_single_sender() {
    let dir = TempDir::new();
    let receiver = Receiver::start(|_, _| Reply::status(201).after(Duration::from_millis(25)));
    let mut settings = settings(&dir, &receiver.url());
    settings.period = Duration::from_millis(10);
    settings.count = Some(12);
    settings.max_in_flight = 1;
    let summary = run(settings, &Stop::new()).unwrap();
    assert_eq!(summary.delivered, 12, "{summary}");
    let requests = receiver.requests();
    assert_eq!(receiver.max_concurrent(), 1, "one request at a time");
    assert_eq!(receiver.connections(), 1, "on one connection");
    for pair in requests.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap >= Duration::from_millis(25),
            "the next send went out {gap:?} after the previous one, before its answer"
        );
    }
    // Each send overran by more than one period, so the next went out at once, late, and at
    // least one slot after it was skipped.
    assert!(summary.skipped_slots >= summary.sent - 1, "{summary}");
    assert!(
        summary.lateness_p50.unwrap() >= Duration::from_millis(10),
        "{summary}"
    );
}

#[test]
fn never_more_than_max_in_flight_requests_are_open_at_once() {
    let dir = TempDir::new();
    // Answers between 0 and 12 ms, so sends overlap and end in any order.
    let receiver = Receiver::start(|_, n| {
        Reply::status(201).after(Duration::from_millis((n as u64 * 7) % 13))
    });
    let mut settings = settings(&dir, &receiver.url());
    // Back to back: the window is full all the time.
    settings.period = Duration::ZERO;
    settings.count = Some(300);
    settings.max_in_flight = 8;
    let summary = run(settings, &Stop::new()).unwrap();
    assert_eq!((summary.sent, summary.delivered), (300, 300), "{summary}");
    assert_eq!(receiver.requests().len(), 300);
    assert_eq!(
        receiver.max_concurrent(),
        8,
        "the window is reached and never exceeded"
    );
    assert_eq!(summary.max_in_flight_used, 8, "{summary}");
    // The agent keeps a connection per send in flight alive (ureq keeps 3 per host unless
    // told otherwise, and would open new ones all the time here).
    assert!(
        receiver.connections() <= 8,
        "{} connections for 8 sends in flight",
        receiver.connections()
    );
}

#[test]
fn the_same_seed_picks_the_same_events_in_slot_order_whatever_the_window() {
    let dir = TempDir::new();
    let seed = 7;
    let picked = |max_in_flight: usize, log_name: &str| {
        // Answers of 0 to 8 ms at a 1 ms period: with a window, sends overlap and end out of
        // order.
        let receiver = Receiver::start(|_, n| {
            Reply::status(201).after(Duration::from_millis((n as u64 * 5) % 9))
        });
        let mut settings = settings(&dir, &receiver.url());
        settings.period = Duration::from_millis(1);
        settings.count = Some(60);
        settings.seed = Some(seed);
        settings.max_in_flight = max_in_flight;
        settings.keys_log = Some(dir.path().join(log_name));
        let summary = run(settings, &Stop::new()).unwrap();
        assert_eq!(summary.delivered, 60, "{summary}");
        let type_of: HashMap<String, String> = receiver
            .requests()
            .iter()
            .map(|r| (r.key(), r.event_type()))
            .collect();
        // The keys log is in slot order; the receiver tells each key's event.
        let sequence: Vec<String> = keys_log(&dir.path().join(log_name))
            .iter()
            .map(|key| type_of[key].clone())
            .collect();
        (sequence, receiver.max_concurrent())
    };
    let (one_at_a_time, _) = picked(1, "keys-1.log");
    let (windowed, concurrent) = picked(8, "keys-8.log");
    assert!(concurrent > 1, "the window was not used: {concurrent}");
    assert_eq!(windowed, one_at_a_time);
    // And it is the seeded picker's sequence.
    let types = ["alpha", "beta", "gamma"];
    let mut picker = Picker::new(types.len(), seed);
    let expected: Vec<String> = (0..60).map(|_| types[picker.pick()].to_owned()).collect();
    assert_eq!(windowed, expected);
}

#[test]
fn a_count_with_a_window_sends_exactly_n_and_logs_every_key_before_its_send() {
    let dir = TempDir::new();
    let log_path = dir.path().join("keys.log");
    let checked = log_path.clone();
    // The receiver refuses a key that is not in the keys log yet (as a consumer that could
    // store it before it is logged would show).
    let receiver = Receiver::start(move |request, n| {
        let logged = std::fs::read_to_string(&checked).unwrap_or_default();
        if !logged.lines().any(|line| line == request.key()) {
            return Reply::status(422).body(r#"{"error": "key not in the keys log yet"}"#);
        }
        Reply::status(201).after(Duration::from_millis((n as u64 * 3) % 7))
    });
    let mut settings = settings(&dir, &receiver.url());
    settings.period = Duration::from_micros(500);
    settings.count = Some(150);
    settings.max_in_flight = 16;
    settings.keys_log = Some(log_path.clone());
    let summary = run(settings, &Stop::new()).unwrap();
    assert_eq!(summary.end, End::Count);
    assert_eq!(
        (summary.sent, summary.delivered, summary.rejected),
        (150, 150, 0),
        "{summary}"
    );
    let logged = keys_log(&log_path);
    let received: HashSet<String> = receiver.requests().iter().map(|r| r.key()).collect();
    assert_eq!(logged.len(), 150);
    assert_eq!(
        logged.iter().cloned().collect::<HashSet<_>>(),
        received,
        "every sent key logged once, no other"
    );
    assert_eq!(
        receiver.requests().len(),
        150,
        "no send started past the count"
    );
}

#[test]
fn a_duration_with_a_window_starts_nothing_after_it_and_lets_the_sends_in_flight_finish() {
    let dir = TempDir::new();
    let receiver = Receiver::start(|_, _| Reply::status(201).after(Duration::from_millis(100)));
    let mut settings = settings(&dir, &receiver.url());
    settings.period = Duration::from_millis(10);
    settings.duration = Some(Duration::from_millis(250));
    settings.max_in_flight = 32;
    let summary = run(settings, &Stop::new()).unwrap();
    // Slots at 0, 10, ..., 240 ms fall inside 250 ms: each is sent or skipped, unless a stall
    // of the machine at the end leaves the last untaken (the soak binary's single-sender
    // duration test counts them exactly).
    assert_eq!(summary.end, End::Duration);
    assert!(summary.sent + summary.skipped_slots <= 25, "{summary}");
    assert_eq!(summary.delivered, summary.sent, "{summary}");
    let requests = receiver.requests();
    assert_eq!(requests.len() as u64, summary.sent);
    // Every answer is held 100 ms, so a run that waited for the last send lasts at least from
    // the first request to 100 ms after the last one.
    let span = requests.last().unwrap().at - requests[0].at;
    assert!(
        summary.elapsed >= span + Duration::from_millis(100),
        "ended before the sends in flight: {summary}"
    );
}

#[test]
fn a_stop_waits_for_the_sends_in_flight_then_abandons_the_rest() {
    let dir = TempDir::new();
    // Requests 0 to 2 are answered at once; the rest hang far beyond the shutdown allowance.
    // The stop is requested when the fourth hanging one (the seventh) fills the window.
    let stop = Stop::new();
    let stopper = stop.clone();
    let receiver = Receiver::start(move |_, n| match n {
        0..=2 => Reply::status(201),
        _ => {
            if n == 6 {
                stopper.request();
            }
            Reply::status(201).after(Duration::from_secs(20))
        }
    });
    let mut settings = settings(&dir, &receiver.url());
    settings.period = Duration::from_millis(5);
    settings.max_in_flight = 4;
    settings.request_timeout = Duration::from_secs(30);
    settings.shutdown_timeout = Duration::from_millis(300);
    let summary = run(settings, &stop).unwrap();
    let took = stop.requested_at().unwrap().elapsed();
    assert_eq!(
        summary.sent, 7,
        "3 answered, then 4 hanging fill the window: {summary}"
    );
    assert_eq!((summary.delivered, summary.abandoned), (3, 4), "{summary}");
    assert_eq!((summary.end, summary.exit_code()), (End::Stopped, 1));
    // How soon after the allowance it returns depends on the machine; that it did not wait for
    // the 30 s request timeout does not.
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(10),
        "returned {took:?} after the stop, expected just after the 300 ms allowance"
    );
}

#[test]
fn slots_skipped_while_a_stalled_consumer_held_every_sender_count_as_window_full() {
    let dir = TempDir::new();
    // The first four requests (the whole window) stall, then are answered at the same moment,
    // as a consumer that recovers answers everything it held: the senders are all free again
    // before the next slot is taken, yet the slots passed because none was free.
    let released = Arc::new(OnceLock::<Instant>::new());
    let release = Arc::clone(&released);
    let receiver = Receiver::start(move |_, n| {
        if n >= 4 {
            return Reply::status(201);
        }
        let at = *release.get_or_init(|| Instant::now() + Duration::from_millis(500));
        Reply::status(201).after(at.saturating_duration_since(Instant::now()))
    });
    let mut settings = settings(&dir, &receiver.url());
    // Long enough that a machine that is merely slow skips no slot of its own.
    settings.period = Duration::from_millis(50);
    settings.max_in_flight = 4;
    settings.count = Some(6);
    let summary = run(settings, &Stop::new()).unwrap();
    assert_eq!(summary.delivered, 6, "{summary}");
    assert!(
        summary.skipped_slots > 0,
        "the stall skipped nothing: {summary}"
    );
    assert_eq!(
        summary.skipped_window_full, summary.skipped_slots,
        "slots the full window skipped were blamed on this process: {summary}"
    );
}
