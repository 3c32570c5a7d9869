//! Counting sends, batches, abandoned and unconfirmed events, and the summary line they make.

use super::*;

/// The events of a send of `n`, keyed `k0`, `k1`, ...
fn batch(n: usize) -> Vec<InFlight> {
    (0..n)
        .map(|i| InFlight {
            key: format!("k{i}"),
            event_type: "t".into(),
            event_index: i,
        })
        .collect()
}

#[test]
fn the_summary_line_has_every_field_and_the_exit_code_follows_delivery() {
    let mut stats = Stats::default();
    let start = Instant::now();
    let event = || InFlight {
        key: "k".into(),
        event_type: "t".into(),
        event_index: 0,
    };
    let first = stats.record_send(start, Duration::from_micros(40), 0, vec![event()]);
    assert!(stats.record_delivery(
        first,
        &Delivery {
            outcome: Outcome::Delivered,
            attempts: 1,
            endpoint: Some(0),
        }
    ));
    let at = start + Duration::from_millis(10);
    let second = stats.record_send(at, Duration::from_micros(1_500), 2, vec![event()]);
    stats.skipped_window_full += 2;
    stats.record_delivery(
        second,
        &Delivery {
            outcome: Outcome::Duplicate,
            attempts: 3,
            endpoint: Some(1),
        },
    );
    let endpoints = [
        "http://a:1/event".to_owned(),
        "http://b:2/event?x=1,y=2".to_owned(),
        "http://c:3/event".to_owned(),
    ];
    let summary = stats.summary(Duration::from_millis(20), End::Count, &endpoints);
    assert_eq!(
        summary.to_string(),
        "sent=2 delivered=2 duplicates=1 rejected=0 given_up=0 abandoned=0 retries=2 \
         skipped_slots=2 elapsed=0.020s rate=100.00/s lateness_p50=0.040ms \
         lateness_p99=1.500ms lateness_max=1.500ms end=count max_in_flight_used=1 \
         skipped_window_full=2 batches=2 throughput=100.00/s \
         delivered_by_endpoint={\"http://a:1/event\":1,\"http://b:2/event?x=1,y=2\":1,\
         \"http://c:3/event\":0} unconfirmed=0"
    );
    // The new field reads back as JSON, whatever `:`, `,` or `=` its URLs hold.
    let line = summary.to_string();
    let field = line
        .split(' ')
        .find(|f| f.starts_with("delivered_by_endpoint="))
        .unwrap();
    let json = field.strip_prefix("delivered_by_endpoint=").unwrap();
    let counts: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(counts["http://b:2/event?x=1,y=2"], 1);
    assert_eq!(counts["http://c:3/event"], 0);
    assert_eq!(summary.exit_code(), 0);

    let at = start + Duration::from_millis(20);
    let third = stats.record_send(at, Duration::ZERO, 0, vec![event()]);
    stats.record_delivery(
        third,
        &Delivery {
            outcome: Outcome::Rejected {
                status: 422,
                message: "bad".into(),
            },
            attempts: 1,
            endpoint: Some(0),
        },
    );
    assert_eq!(
        stats.summary(Duration::ZERO, End::Count, &[]).exit_code(),
        1
    );
}

#[test]
fn sends_in_flight_at_once_are_counted_and_each_abandoned_once() {
    let start = Instant::now();
    let mut stats = Stats::default();
    let event = |key: &str| InFlight {
        key: key.into(),
        event_type: "t".into(),
        event_index: 0,
    };
    let numbers: Vec<u64> = ["a", "b", "c"]
        .into_iter()
        .zip(0u64..)
        .map(|(key, ms)| {
            let at = start + Duration::from_millis(10 * ms);
            stats.record_send(at, Duration::ZERO, 0, vec![event(key)])
        })
        .collect();
    assert_eq!(numbers, [0, 1, 2]);
    assert_eq!((stats.in_flight(), stats.max_in_flight_used), (3, 3));
    assert_eq!(stats.rate(), Some(100.0));
    // The second ends first: sends end in any order.
    let delivered = Delivery {
        outcome: Outcome::Delivered,
        attempts: 1,
        endpoint: Some(0),
    };
    assert!(stats.record_delivery(1, &delivered));
    assert!(!stats.record_delivery(1, &delivered), "counted once");
    let abandoned: Vec<String> = stats
        .abandon_in_flight()
        .into_iter()
        .map(|(_, e)| e.key)
        .collect();
    assert_eq!(abandoned, ["a", "c"], "the rest, in the order they started");
    // An answer that comes after the run gave up waiting changes nothing.
    assert!(!stats.record_delivery(0, &delivered));
    let summary = stats.summary(Duration::ZERO, End::Stopped, &[]);
    assert_eq!(
        (summary.sent, summary.delivered, summary.abandoned),
        (3, 1, 2)
    );
    assert_eq!(summary.max_in_flight_used, 3);
    assert!(summary.to_string().ends_with(
        " max_in_flight_used=3 skipped_window_full=0 batches=3 throughput=- \
         delivered_by_endpoint={} unconfirmed=0"
    ));
    assert_eq!(summary.exit_code(), 1);
}

#[test]
fn a_batch_counts_its_events_and_one_request_and_its_duplicates_per_item() {
    let start = Instant::now();
    let mut stats = Stats::default();
    let outcomes = [
        Outcome::PartlyDuplicate { duplicates: 3 },
        Outcome::Duplicate,
        Outcome::Rejected {
            status: 422,
            message: "bad".into(),
        },
    ];
    for (ms, outcome) in (0u64..).zip(outcomes) {
        let at = start + Duration::from_millis(10 * ms);
        let number = stats.record_send(at, Duration::ZERO, 0, batch(10));
        assert_eq!(number, ms, "one send number per request");
        let delivery = Delivery {
            outcome,
            attempts: 2,
            endpoint: Some(0),
        };
        assert!(stats.record_delivery(number, &delivery));
    }
    let number = stats.record_send(
        start + Duration::from_millis(30),
        Duration::ZERO,
        0,
        batch(4),
    );
    assert_eq!(stats.in_flight(), 1, "a batch is one send in flight");
    // 30 events (the last batch's 4 left out) over the 30 ms from the first start to the last.
    assert_eq!(stats.rate(), Some(1000.0));
    let abandoned = stats.abandon_in_flight();
    assert_eq!(abandoned.len(), 4);
    assert!(abandoned.iter().all(|(n, _)| *n == number));
    let summary = stats.summary(Duration::from_millis(40), End::Stopped, &[]);
    assert_eq!(
        (
            summary.sent,
            summary.batches,
            summary.delivered,
            summary.duplicates
        ),
        (34, 4, 20, 13)
    );
    assert_eq!(
        (summary.rejected, summary.abandoned, summary.retries),
        (10, 4, 3)
    );
    let line = summary.to_string();
    assert!(line.contains(" rate=1000.00/s "), "{line}");
    assert!(
        line.ends_with(" batches=4 throughput=500.00/s delivered_by_endpoint={} unconfirmed=0"),
        "{line}"
    );
}

#[test]
fn unconfirmed_events_are_counted_apart_from_delivered_and_make_the_exit_code_1() {
    let mut stats = Stats::default();
    for (n, outcome) in [(1, Outcome::Delivered), (3, Outcome::Unconfirmed)] {
        let number = stats.record_send(Instant::now(), Duration::ZERO, 0, batch(n));
        let delivery = Delivery {
            outcome,
            attempts: 1,
            endpoint: Some(0),
        };
        assert!(stats.record_delivery(number, &delivery));
    }
    let summary = stats.summary(Duration::ZERO, End::Count, &["http://a/event".into()]);
    assert_eq!(
        (summary.sent, summary.delivered, summary.unconfirmed),
        (4, 1, 3)
    );
    assert_eq!(
        summary.delivered_by_endpoint,
        [("http://a/event".into(), 1)]
    );
    assert!(summary.to_string().ends_with(" unconfirmed=3"), "{summary}");
    assert_eq!(
        summary.exit_code(),
        1,
        "not every event is confirmed stored"
    );
}

#[test]
fn an_empty_run_prints_dashes_and_exits_zero() {
    let summary = Stats::default().summary(Duration::ZERO, End::Stopped, &[]);
    let line = summary.to_string();
    assert!(
        line.contains("rate=- lateness_p50=- lateness_p99=- lateness_max=-"),
        "{line}"
    );
    assert!(
        line.ends_with(
            "end=signal max_in_flight_used=0 skipped_window_full=0 batches=0 throughput=- \
             delivered_by_endpoint={} unconfirmed=0"
        ),
        "{line}"
    );
    assert_eq!(summary.exit_code(), 0);
}
