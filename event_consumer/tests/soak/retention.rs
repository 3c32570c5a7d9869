//! Retention over many of its periods: a constant rate of `POST /event` with a retention of
//! 15 s for about three minutes. `event_consumer_table_size_bytes` (refreshed once a minute)
//! must level off, and every acknowledged event younger than the retention must be in the
//! table at every check. The closing lines print the size over time, the rate and the
//! retention (bench/notes/RETENTION.md keeps a run's).

use std::time::{Duration, Instant};

use common::calendar::days_from_civil;
use test_support::TestDb;

use crate::helpers::{metric_in, post_event, send, ConsumerProcess, GOOD_EVENT};

const RETENTION_SECONDS: f64 = 15.0;
const RATE_PER_SECOND: u32 = 200;
/// The size gauge is refreshed at start and then every minute: a sample a little after each.
const SAMPLES_AT: [u64; 4] = [5, 65, 125, 185];

/// `2026-12-07T03:06:18.123456Z` as seconds since 1970 (the consumer's `received_at`).
fn epoch_seconds(rfc3339: &str) -> f64 {
    let number = |range: std::ops::Range<usize>| -> f64 {
        rfc3339
            .get(range)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("received_at {rfc3339} is not RFC 3339"))
    };
    let days = days_from_civil(
        number(0..4) as i64,
        number(5..7) as u32,
        number(8..10) as u32,
    );
    days as f64 * 86_400.0 + number(11..13) * 3600.0 + number(14..16) * 60.0 + number(17..26)
}

#[test]
fn with_a_short_retention_the_table_size_levels_off_and_no_young_event_is_missing() {
    let _alone = crate::beside_other_abuse();
    let db = TestDb::new();
    let yaml = format!("  retention_days: {}\n", RETENTION_SECONDS / 86_400.0);
    let consumer = ConsumerProcess::start(&db, &yaml, &[("LOG_LEVEL", "info")]);
    let mut client = db.client();
    let size = || {
        let request = "GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
        metric_in(
            &send(consumer.addr, request.as_bytes()).body,
            "event_consumer_table_size_bytes",
        )
        .unwrap_or(0.0)
    };

    let start = Instant::now();
    let period = Duration::from_secs(1) / RATE_PER_SECOND;
    let mut acked: Vec<(i64, f64)> = Vec::new();
    let mut samples: Vec<(u64, f64, i64)> = Vec::new();
    let mut next_check = Duration::from_secs(10);
    let mut sent = 0u32;
    let mut checks = 0;
    while samples.len() < SAMPLES_AT.len() {
        let due = period * sent;
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        sent += 1;
        let response = post_event(consumer.addr, GOOD_EVENT, &[]);
        assert_eq!(response.status, 201, "{}", response.body);
        let body = response.json();
        acked.push((
            body["id"].as_i64().unwrap(),
            epoch_seconds(body["received_at"].as_str().unwrap()),
        ));
        let elapsed = start.elapsed();
        if elapsed.as_secs() >= SAMPLES_AT[samples.len()] {
            samples.push((elapsed.as_secs(), size(), db.count_events()));
        }
        if elapsed >= next_check {
            next_check += Duration::from_secs(10);
            checks += 1;
            let ids: Vec<i64> = acked.iter().map(|(id, _)| *id).collect();
            let row = client
                .query_one(
                    // clock_timestamp(), read after the statement's snapshot, bounds from above
                    // the moment the snapshot saw: a prune that committed before it used a now()
                    // no later. now(), the transaction's start, may come before such a prune
                    // (a run under CI's load missed two events by that gap).
                    "SELECT extract(epoch FROM clock_timestamp())::float8, \
                            coalesce(array_agg(id), '{}') FROM events WHERE id = ANY($1)",
                    &[&ids],
                )
                .unwrap();
            let (now, present): (f64, Vec<i64>) = (row.get(0), row.get(1));
            let present: std::collections::HashSet<i64> = present.into_iter().collect();
            let missing: Vec<i64> = acked
                .iter()
                .filter(|(id, at)| now - at < RETENTION_SECONDS - 0.01 && !present.contains(id))
                .map(|(id, _)| *id)
                .collect();
            assert!(
                missing.is_empty(),
                "acknowledged events younger than the retention are missing: {missing:?}"
            );
            // Acknowledged events are pruned by now, up to a prune interval and generous slack.
            let overdue = acked
                .iter()
                .filter(|(id, at)| now - at > RETENTION_SECONDS + 10.0 && present.contains(id))
                .count();
            assert_eq!(overdue, 0, "events kept 10 s past the retention");
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let log = crate::helpers::stop_and_log(consumer);
    eprintln!(
        "retention soak: {} events in {seconds:.0} s ({:.0}/s), retention {RETENTION_SECONDS} s, \
         {checks} checks of the acknowledged events",
        acked.len(),
        acked.len() as f64 / seconds
    );
    eprintln!("  t (s) | event_consumer_table_size_bytes | rows");
    for (t, bytes, rows) in &samples {
        eprintln!("  {t:>5} | {bytes:>31} | {rows}");
    }
    let pruned_lines = log.lines().filter(|l| l.contains(" pruned ")).count();
    assert!(pruned_lines >= 1, "{log}");
    // Levelled off: the last minute's growth is at most half the first minute's (without
    // retention every minute adds as much as the first).
    let growth = |a: usize, b: usize| samples[b].1 - samples[a].1;
    let (first, last) = (growth(0, 1), growth(2, 3));
    assert!(
        first > 0.0 && last <= first / 2.0,
        "the table still grows: {first} bytes in the first minute, {last} in the last: {samples:?}"
    );
}
