//! Batches (`--batch-size`, `POST /events`) and gzip (`--gzip`) against the recording
//! receiver, in process and through the built binary. The receiver answers batches as the
//! consumer's contract says: one result per item, 200 when every item was a duplicate.

use std::collections::HashSet;
use std::time::Duration;

use event_propagator::{run, End, Outcome, Propagator, Settings, Stop, Tick};

use crate::helpers::*;

const LIMIT: Duration = Duration::from_secs(20);

/// Answers every batch 201 with every item created (and a single event 201).
fn accepting_batches() -> Receiver {
    Receiver::start(|request, _| match request.path.as_str() {
        "/event" => Reply::status(201),
        _ => Reply::batch(request, |_| false),
    })
}

fn batch_settings(dir: &TempDir, receiver: &Receiver, batch_size: usize) -> Settings {
    let mut settings = settings(dir, &receiver.url());
    settings.batch_size = batch_size;
    settings
}

fn one_tick(propagator: &mut Propagator) -> event_propagator::Sent {
    match propagator.tick(&Stop::new()) {
        Tick::Sent(sent) => sent,
        other => panic!("expected a send, got {other:?}"),
    }
}

#[test]
fn a_batch_of_five_is_one_post_to_events_with_five_keyed_items_and_five_logged_keys() {
    let dir = TempDir::new();
    let receiver = accepting_batches();
    let mut settings = batch_settings(&dir, &receiver, 5);
    // --count counts sends: one send of a batch of five.
    settings.count = Some(1);
    settings.keys_log = Some(dir.path().join("keys.log"));
    let summary = run(settings, &Stop::new()).unwrap();
    assert_eq!(
        (
            summary.sent,
            summary.batches,
            summary.delivered,
            summary.duplicates
        ),
        (5, 1, 5, 0)
    );
    assert_eq!(summary.exit_code(), 0);
    let requests = receiver.requests();
    assert_eq!(requests.len(), 1, "one request for the batch");
    let request = &requests[0];
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("POST", "/events"),
        "the sibling of /event"
    );
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(
        request.header("content-encoding"),
        None,
        "not gzipped by default"
    );
    assert_eq!(
        request.header("idempotency-key"),
        None,
        "a batch's keys are in its items"
    );
    let items = request.items();
    assert_eq!(items.len(), 5);
    for item in &items {
        assert!(["alpha", "beta", "gamma"].contains(&item["event_type"].as_str().unwrap()));
        assert!(item["event_payload"].is_string(), "{item}");
        let occurred_at = item["occurred_at"].as_str().unwrap_or_default();
        assert!(
            common::calendar::parse_rfc3339(occurred_at).is_ok(),
            "{item}"
        );
        assert_eq!(item.as_object().unwrap().len(), 4, "{item}");
    }
    let keys = request.item_keys();
    assert!(keys
        .iter()
        .all(|k| uuid::Uuid::parse_str(k).is_ok_and(|u| u.get_version_num() == 4)));
    assert_eq!(
        keys.iter().collect::<HashSet<_>>().len(),
        5,
        "a key per event"
    );
    assert_eq!(
        logged_keys(&dir),
        keys,
        "every key logged, in the items' order"
    );
}

#[test]
fn count_counts_requests_each_with_a_full_batch() {
    let dir = TempDir::new();
    let receiver = accepting_batches();
    let mut settings = batch_settings(&dir, &receiver, 3);
    settings.count = Some(4);
    let summary = run(settings, &Stop::new()).unwrap();
    assert_eq!(
        (summary.sent, summary.batches, summary.delivered),
        (12, 4, 12)
    );
    assert_eq!(summary.end, End::Count);
    let sizes: Vec<usize> = receiver
        .requests()
        .iter()
        .map(|r| r.items().len())
        .collect();
    assert_eq!(sizes, [3, 3, 3, 3]);
    assert!(receiver.requests().iter().all(|r| r.path == "/events"));
}

#[test]
fn batch_endpoint_overrides_the_sibling_path() {
    let dir = TempDir::new();
    let receiver = accepting_batches();
    let mut settings = batch_settings(&dir, &receiver, 2);
    // The endpoint itself could not give a sibling: the override is all that is used.
    settings.endpoints = vec![receiver.url().replace("/event", "/ingest")];
    settings.batch_endpoint = Some(receiver.url().replace("/event", "/bulk?tenant=a"));
    settings.count = Some(1);
    let summary = run(settings, &Stop::new()).unwrap();
    assert_eq!((summary.delivered, summary.batches), (2, 1));
    assert_eq!(receiver.requests()[0].path, "/bulk?tenant=a");
}

#[test]
fn batch_size_one_keeps_posting_single_events_to_the_endpoint() {
    let dir = TempDir::new();
    let receiver = Receiver::accepting();
    let mut settings = batch_settings(&dir, &receiver, 1);
    settings.batch_endpoint = Some(receiver.url().replace("/event", "/bulk"));
    settings.count = Some(2);
    let summary = run(settings, &Stop::new()).unwrap();
    assert_eq!(
        (summary.sent, summary.batches, summary.delivered),
        (2, 2, 2)
    );
    for request in receiver.requests() {
        assert_eq!(request.path, "/event");
        common::parse_event(&request.body).expect("a single event, not an array");
        assert!(request.header("idempotency-key").is_some());
    }
}

#[test]
fn a_batch_refused_with_503_is_retried_whole_with_the_same_keys() {
    let dir = TempDir::new();
    let receiver = Receiver::start(|request, n| match n {
        0 => Reply::status(503).header("Retry-After", "0"),
        _ => Reply::batch(request, |_| false),
    });
    let mut propagator = Propagator::new(batch_settings(&dir, &receiver, 4)).unwrap();
    let sent = one_tick(&mut propagator);
    assert_eq!(sent.delivery.outcome, Outcome::Delivered);
    assert_eq!(sent.delivery.attempts, 2);
    assert_eq!(sent.events.len(), 4);
    let requests = receiver.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[0].body, requests[1].body,
        "the same batch, byte for byte"
    );
    let sent_keys: Vec<String> = sent.events.iter().map(|e| e.key.clone()).collect();
    assert_eq!(requests[1].item_keys(), sent_keys);
    let summary = propagator.summary_at(End::Count);
    assert_eq!(
        (
            summary.sent,
            summary.batches,
            summary.delivered,
            summary.retries
        ),
        (4, 1, 4, 1),
        "retries count requests, the rest events"
    );
}

#[test]
fn duplicates_are_counted_per_item_from_the_results() {
    let dir = TempDir::new();
    // Batch 0: items 1 and 3 were already stored (201); batch 1: every item (200); batch 2: a
    // 201 whose body is not the results array (not the consumer's answer: unconfirmed).
    let receiver = Receiver::start(|request, n| match n {
        0 => Reply::batch(request, |i| i % 2 == 1),
        1 => Reply::batch(request, |_| true),
        _ => Reply::status(201).body(r#"{"id": 1}"#),
    });
    let mut propagator = Propagator::new(batch_settings(&dir, &receiver, 4)).unwrap();
    let outcomes: Vec<Outcome> = (0..3)
        .map(|_| one_tick(&mut propagator).delivery.outcome)
        .collect();
    assert_eq!(
        outcomes,
        [
            Outcome::PartlyDuplicate { duplicates: 2 },
            Outcome::Duplicate,
            Outcome::Unconfirmed
        ]
    );
    let summary = propagator.summary_at(End::Count);
    assert_eq!(
        (
            summary.sent,
            summary.delivered,
            summary.duplicates,
            summary.unconfirmed
        ),
        (12, 8, 6, 4)
    );
    assert_eq!(summary.exit_code(), 1, "4 events not confirmed stored");
}

#[test]
fn a_batch_refused_with_422_is_not_retried_and_rejects_every_event_in_it() {
    let dir = TempDir::new();
    let receiver = Receiver::start(|_, _| {
        Reply::status(422).body(
            r#"{"error": "field `event_type` must not be empty", "index": 2, "field": "event_type"}"#,
        )
    });
    let mut propagator = Propagator::new(batch_settings(&dir, &receiver, 3)).unwrap();
    let sent = one_tick(&mut propagator);
    assert!(
        matches!(&sent.delivery.outcome, Outcome::Rejected { status: 422, message } if message.contains("must not be empty (item 2, field `event_type`)")),
        "{:?}",
        sent.delivery
    );
    assert_eq!(receiver.requests().len(), 1, "a 422 is not retried");
    let summary = propagator.summary_at(End::Count);
    assert_eq!(
        (summary.sent, summary.rejected, summary.delivered),
        (3, 3, 0)
    );
    assert_eq!(summary.exit_code(), 1);
}

#[test]
fn the_same_seed_sends_the_same_events_whatever_the_batch_size() {
    let types = |batch_size: usize| -> Vec<String> {
        let dir = TempDir::new();
        let receiver = accepting_batches();
        let mut settings = batch_settings(&dir, &receiver, batch_size);
        // 12 events whatever the batch size: --count counts sends.
        settings.count = Some((12 / batch_size) as u64);
        settings.seed = Some(99);
        run(settings, &Stop::new()).unwrap();
        receiver
            .requests()
            .iter()
            .flat_map(|r| match batch_size {
                1 => vec![r.event_type()],
                _ => r
                    .items()
                    .iter()
                    .map(|i| i["event_type"].as_str().unwrap().to_owned())
                    .collect(),
            })
            .collect()
    };
    let single = types(1);
    assert_eq!(single.len(), 12);
    assert_eq!(types(4), single);
    assert_eq!(types(6), single);
}

#[test]
fn gzip_compresses_batches_and_single_events_and_says_so() {
    for batch_size in [1, 3] {
        let dir = TempDir::new();
        let receiver = Receiver::start(move |request, _| match batch_size {
            1 => Reply::status(201),
            _ => Reply::batch(request, |_| false),
        });
        let mut settings = batch_settings(&dir, &receiver, batch_size);
        settings.gzip = true;
        settings.count = Some((3 / batch_size) as u64);
        let summary = run(settings, &Stop::new()).unwrap();
        assert_eq!(summary.delivered, 3, "batch size {batch_size}");
        for request in receiver.requests() {
            assert_eq!(
                request.header("content-encoding"),
                Some("gzip"),
                "batch size {batch_size}"
            );
            assert_eq!(&request.body[..2], [0x1f, 0x8b], "a gzip member");
            let json = request.decoded_body();
            match batch_size {
                1 => {
                    common::parse_event(&json).expect("gunzips to the event");
                }
                _ => assert_eq!(request.items().len(), 3),
            }
        }
    }
}

#[test]
fn the_binary_sends_batches_and_its_summary_counts_them() {
    let dir = TempDir::new();
    let receiver = accepting_batches();
    write_config(&dir, &receiver.url(), "  batch_size: 4\n");
    let (code, stderr) = run_binary(
        &dir,
        &["--count", "3", "--gzip", "--keys-log", "keys.log"],
        LIMIT,
    );
    assert_eq!(code, 0, "{stderr}");
    let summary = summary_line(&stderr);
    for field in [
        "sent=12 ",
        "delivered=12 ",
        "duplicates=0 ",
        "rate=",
        " batches=3",
    ] {
        assert!(summary.contains(field), "{field} missing from {summary}");
    }
    let requests = receiver.requests();
    assert_eq!(requests.len(), 3);
    let mut sent: Vec<String> = requests.iter().flat_map(|r| r.item_keys()).collect();
    let mut logged = logged_keys(&dir);
    sent.sort_unstable();
    logged.sort_unstable();
    assert_eq!(logged.len(), 12);
    assert_eq!(logged, sent);
    let start = stderr.lines().find(|l| l.contains("sending ")).unwrap();
    assert!(
        start.contains("batches of 4") && start.contains("/events") && start.contains("gzipped"),
        "{start}"
    );
}

#[test]
fn a_batch_size_out_of_range_or_an_endpoint_without_a_sibling_exits_2_naming_what_to_fix() {
    let dir = TempDir::new();
    write_config(&dir, "http://127.0.0.1:9/event", "");
    for (args, needle) in [
        (&["--batch-size", "0"][..], "--batch-size"),
        (&["--batch-size", "1001"][..], "--batch-size"),
        (&["--batch-endpoint", "bulk"][..], "--batch-endpoint"),
        (
            &[
                "--batch-size",
                "2",
                "--endpoint",
                "http://127.0.0.1:9/ingest",
            ][..],
            "propagator.batch_endpoint",
        ),
    ] {
        let (code, stderr) = run_binary(&dir, args, LIMIT);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
    }
    write_config(&dir, "http://127.0.0.1:9/event", "  batch_size: 1001\n");
    let (code, stderr) = run_binary(&dir, &[], LIMIT);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("config.yaml") && stderr.contains("propagator.batch_size"),
        "{stderr}"
    );
    // The sibling's absence matters only for batches.
    write_config(&dir, "http://127.0.0.1:9/ingest", "  batch_size: 2\n");
    let (code, stderr) = run_binary(&dir, &["--batch-size", "1", "--count", "1"], LIMIT);
    assert_ne!(code, 2, "{stderr}");
}
