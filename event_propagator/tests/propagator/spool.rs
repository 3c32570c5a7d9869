//! The durable spool: outages longer than the retry budget, SIGKILL at random moments, damaged
//! spool files, a full spool, a spool on a full disk, a second propagator, rejected events.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use event_propagator::spool::{Spool, Spooled, DEAD_LETTER_FILE};
use event_propagator::{run, Stop};
use test_support::TestDb;

use crate::helpers::*;
use crate::tmpfs::Tmpfs;

/// A port on 127.0.0.1 that nothing listens on (for now).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spooled(i: usize) -> Spooled {
    Spooled {
        key: format!("00000000-0000-4000-8000-{i:012}"),
        generated_at_micros: 1_700_000_000_000_000,
        body: br#"{"event_type":"alpha","event_payload":"x"}"#.to_vec(),
    }
}

/// Every key the receiver was sent, single events and batch items alike.
fn received_keys(receiver: &Receiver) -> Vec<String> {
    receiver
        .requests()
        .iter()
        .flat_map(|r| match r.header("idempotency-key") {
            Some(key) => vec![key.to_owned()],
            None => r.item_keys(),
        })
        .collect()
}

#[test]
fn the_consumer_down_longer_than_max_retries_allows_then_up_stores_every_event_once() {
    let dir = TempDir::new();
    let db = TestDb::new();
    let port = free_port();
    let mut settings = settings(&dir, &format!("http://127.0.0.1:{port}/event"));
    // Without a spool, one retry within 50 ms and every event would be given up.
    settings.max_retries = 1;
    settings.period = Duration::from_millis(10);
    settings.max_in_flight = 4;
    settings.count = Some(20);
    settings.shutdown_timeout = Duration::from_secs(60);
    settings.keys_log = Some(dir.path().join("keys.log"));
    settings.spool_dir = Some(dir.path().join("spool"));
    let run = std::thread::spawn(move || run(settings, &Stop::new()).unwrap());
    // Down for well over the retry budget (every event's first attempt has failed by then).
    std::thread::sleep(Duration::from_millis(1500));
    let mut config = consumer_config(&db);
    config.consumer.port = port;
    let consumer = event_consumer::start(&config).unwrap();
    let summary = run.join().unwrap();
    consumer.shutdown();
    assert_eq!((summary.sent, summary.delivered), (20, 20), "{summary}");
    assert_eq!(
        (summary.given_up, summary.spooled),
        (0, Some(0)),
        "{summary}"
    );
    assert!(summary.retries >= 20, "the consumer was down: {summary}");
    assert_eq!(summary.exit_code(), 0, "{summary}");
    let logged: HashSet<String> = logged_keys(&dir).into_iter().collect();
    assert_eq!(logged.len(), 20);
    assert_eq!(db.count_events(), 20);
    assert_eq!(stored_keys(&db), logged);
}

#[test]
fn sigkill_at_twenty_random_moments_and_a_restart_each_time_store_every_logged_key_once() {
    let dir = TempDir::new();
    let db = TestDb::new();
    let consumer = event_consumer::start(&consumer_config(&db)).unwrap();
    write_config(
        &dir,
        &format!("http://{}/event", consumer.addr()),
        "  max_in_flight: 4\n  shutdown_timeout_seconds: 30\n",
    );
    let seed = fastrand::u64(..);
    let mut rng = fastrand::Rng::with_seed(seed);
    let args = [
        "--spool-dir",
        "spool",
        "--keys-log",
        "keys.log",
        "--period",
        "0.002",
    ];
    for round in 0..20 {
        let child = propagator(&dir, &args).spawn().unwrap();
        // Start-up (replay included) and steady sending both get hit: fsyncs, sends, and the
        // moments between an answer and the spool's update.
        std::thread::sleep(Duration::from_millis(rng.u64(20..400)));
        let mut child = child;
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert!(status.code().is_none(), "round {round}: exited by itself");
    }
    // A last run sends what is left in the spool, then ends.
    let (code, stderr) = run_binary(
        &dir,
        &[&args[..], &["--count", "1"]].concat(),
        Duration::from_secs(60),
    );
    consumer.shutdown();
    let summary = summary_line(&stderr);
    assert_eq!(code, 0, "seed {seed}: {summary}");
    assert!(summary.contains(" spooled=0 "), "seed {seed}: {summary}");
    let logged = logged_keys(&dir);
    assert!(logged.len() > 20, "seed {seed}: only {} keys", logged.len());
    let stored = stored_keys(&db);
    let missing: Vec<_> = logged.iter().filter(|k| !stored.contains(*k)).collect();
    assert!(
        missing.is_empty(),
        "seed {seed}: logged, not stored: {missing:?}"
    );
    // Stored once: the table refuses a key twice, and it holds no row per replayed attempt.
    assert_eq!(db.count_events() as usize, stored.len(), "seed {seed}");
    // And nothing stored that is in no log (a key spooled but not logged is logged at restart).
    let logged: HashSet<String> = logged.into_iter().collect();
    assert_eq!(stored, logged, "seed {seed}");
    assert_eq!(
        logged_keys(&dir).len(),
        logged.len(),
        "seed {seed}: a key logged twice"
    );
}

#[test]
fn a_spool_with_a_torn_tail_and_a_flipped_byte_replays_its_intact_records_and_counts_the_bad_one() {
    let dir = TempDir::new();
    let spool_dir = dir.path().join("spool");
    let events: Vec<Spooled> = (0..4).map(spooled).collect();
    {
        let (spool, _) = Spool::open(&spool_dir, 1 << 20, None).unwrap();
        spool.add(&events).unwrap();
    }
    let segment = std::fs::read_dir(&spool_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "log"))
        .unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    let record = bytes.len() / 4;
    bytes[record + record / 2] ^= 0x08; // inside the second record
    bytes.truncate(bytes.len() - 5); // the fourth record, cut short
    std::fs::write(&segment, &bytes).unwrap();

    let receiver = Receiver::accepting();
    let mut settings = settings(&dir, &receiver.url());
    settings.spool_dir = Some(spool_dir.clone());
    settings.count = Some(1);
    let summary = run(settings, &Stop::new()).unwrap();
    assert_eq!(summary.replayed, 2, "{summary}");
    assert_eq!(
        (summary.spooled, summary.exit_code()),
        (Some(0), 0),
        "{summary}"
    );
    let received = received_keys(&receiver);
    assert!(received.contains(&events[0].key) && received.contains(&events[2].key));
    assert!(!received.contains(&events[1].key) && !received.contains(&events[3].key));
    assert_eq!(received.len(), 3, "two replayed and one new: {received:?}");
    let aside = std::fs::read_dir(&spool_dir)
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            name.to_string_lossy().starts_with("corrupted-")
        })
        .count();
    assert_eq!(aside, 1, "the damaged record is moved aside");
}

#[test]
fn a_full_spool_skips_slots_and_drops_nothing_then_the_next_run_sends_it_all() {
    let dir = TempDir::new();
    let down = Receiver::start(|_, _| Reply::status(503));
    let mut settings = settings(&dir, &down.url());
    settings.spool_dir = Some(dir.path().join("spool"));
    settings.spool_max_bytes = 4096;
    settings.period = Duration::from_millis(2);
    settings.max_in_flight = 64;
    settings.duration = Some(Duration::from_millis(600));
    settings.shutdown_timeout = Duration::from_millis(200);
    settings.keys_log = Some(dir.path().join("keys.log"));
    let summary = run(settings.clone(), &Stop::new()).unwrap();
    assert!(summary.skipped_spool_full > 0, "{summary}");
    assert_eq!(summary.spooled, Some(summary.sent), "{summary}");
    assert_eq!(summary.exit_code(), 3, "{summary}");
    let logged = logged_keys(&dir);
    assert_eq!(logged.len() as u64, summary.sent);

    // The first run's sender threads outlive it briefly (their sends were abandoned at the
    // deadline); the last of them releases the spool's lock, as the process's exit would.
    let deadline = Instant::now() + Duration::from_secs(20);
    while Spool::open(&dir.path().join("spool"), 4096, None).is_err() {
        assert!(
            Instant::now() < deadline,
            "the first run kept the spool locked"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let up = Receiver::accepting();
    settings.endpoints = vec![up.url()];
    settings.duration = None;
    settings.count = Some(1);
    settings.shutdown_timeout = Duration::from_secs(30);
    let second = run(settings, &Stop::new()).unwrap();
    assert_eq!(second.replayed, summary.sent, "{second}");
    assert_eq!(
        (second.spooled, second.exit_code()),
        (Some(0), 0),
        "{second}"
    );
    let received: HashSet<String> = received_keys(&up).into_iter().collect();
    let missing: Vec<_> = logged.iter().filter(|k| !received.contains(*k)).collect();
    assert!(missing.is_empty(), "dropped from the spool: {missing:?}");
}

#[test]
fn a_spool_on_a_full_disk_sends_without_it_logs_that_rate_limited_and_leaves_no_torn_record() {
    let dir = TempDir::new();
    let Some(tmpfs) = Tmpfs::mount(&dir, "full", "64k") else {
        return;
    };
    let spool_dir = tmpfs.path.join("spool");
    // One free page: a few dozen records fit, then a write stops part way and every later one
    // fails.
    let filler = tmpfs.fill_leaving(1);
    let receiver = Receiver::accepting();
    write_config(&dir, &receiver.url(), "");
    let spool_arg = spool_dir.to_str().unwrap();
    let (code, stderr) = run_binary(
        &dir,
        &["--spool-dir", spool_arg, "--count", "300"],
        Duration::from_secs(60),
    );
    let summary = summary_line(&stderr);
    assert_eq!(code, 0, "{stderr}");
    assert!(summary.contains(" spooled=0 "), "{summary}");
    let received: HashSet<String> = received_keys(&receiver).into_iter().collect();
    assert_eq!(received.len(), 300, "every event sent, spooled or not");
    let errors = stderr
        .lines()
        .filter(|l| l.contains("cannot write to spool"))
        .count();
    assert!(
        (1..=3).contains(&errors),
        "{errors} lines for one full disk, not one an event:\n{stderr}"
    );

    // The failed writes were cut off: what the disk holds is whole records.
    std::fs::remove_file(filler).unwrap();
    let (_spool, recovered) = Spool::open(&spool_dir, 1 << 20, None).unwrap();
    assert_eq!(
        (recovered.torn_bytes, recovered.corrupt),
        (0, 0),
        "a torn record left behind"
    );
}

#[test]
fn a_second_propagator_on_the_same_spool_exits_2_naming_the_directory() {
    let dir = TempDir::new();
    let receiver = Receiver::accepting();
    write_config(&dir, &receiver.url(), "");
    let spool_dir = dir.path().join("spool");
    let (_first, _) = Spool::open(&spool_dir, 1 << 20, None).unwrap();
    let (code, stderr) = run_binary(
        &dir,
        &["--spool-dir", "spool", "--count", "1"],
        Duration::from_secs(30),
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("spool directory spool is in use by another propagator"),
        "{stderr}"
    );
    assert!(
        receiver.requests().is_empty(),
        "the second one sent nothing"
    );
}

#[test]
fn a_refused_event_lands_in_rejected_ndjson_with_the_status_and_the_error() {
    let dir = TempDir::new();
    let receiver = Receiver::start(|_, _| {
        Reply::status(422).body(r#"{"error": "event_type: unknown type", "field": "event_type"}"#)
    });
    let mut settings = settings(&dir, &receiver.url());
    settings.spool_dir = Some(dir.path().join("spool"));
    settings.count = Some(1);
    let summary = run(settings, &Stop::new()).unwrap();
    assert_eq!(
        (summary.rejected, summary.dead_lettered),
        (1, 1),
        "{summary}"
    );
    assert_eq!(
        (summary.spooled, summary.exit_code()),
        (Some(0), 1),
        "{summary}"
    );
    let text = std::fs::read_to_string(dir.path().join("spool").join(DEAD_LETTER_FILE)).unwrap();
    let line: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
    assert_eq!(line["idempotency_key"], receiver.requests()[0].key());
    assert_eq!(line["status"], 422);
    assert!(
        line["error"]
            .as_str()
            .unwrap()
            .contains("event_type: unknown type"),
        "{line}"
    );
    assert!(line["event"]["event_type"].is_string(), "{line}");
}

#[test]
fn a_run_that_ends_with_events_left_in_the_spool_exits_3_and_says_how_many() {
    let dir = TempDir::new();
    let down = Receiver::start(|_, _| Reply::status(503));
    write_config(&dir, &down.url(), "  shutdown_timeout_seconds: 0.3\n");
    let started = Instant::now();
    let (code, stderr) = run_binary(
        &dir,
        &[
            "--spool-dir",
            "spool",
            "--count",
            "2",
            "--max-in-flight",
            "2",
        ],
        Duration::from_secs(30),
    );
    let summary = summary_line(&stderr);
    assert_eq!(code, 3, "{summary}");
    assert!(summary.contains(" spooled=2 "), "{summary}");
    assert!(summary.contains(" given_up=0 "), "{summary}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "bounded by the shutdown allowance"
    );
    assert!(Path::new(&dir.path().join("spool")).is_dir());
}

#[test]
fn a_replayed_event_is_stored_with_its_own_generation_time_not_the_replays() {
    let dir = TempDir::new();
    let db = TestDb::new();
    let down = Receiver::start(|_, _| Reply::status(503));
    let mut first = settings(&dir, &down.url());
    first.count = Some(3);
    first.period = Duration::ZERO;
    first.shutdown_timeout = Duration::from_millis(300);
    first.spool_dir = Some(dir.path().join("spool"));
    let generated_before = std::time::SystemTime::now();
    let kept = run(first, &Stop::new()).unwrap();
    assert_eq!(kept.spooled, Some(3), "{kept}");
    // The replay comes well after the events were generated.
    std::thread::sleep(Duration::from_millis(1500));
    let consumer = event_consumer::start(&consumer_config(&db)).unwrap();
    let mut second = settings(&dir, &format!("http://{}/event", consumer.addr()));
    second.count = Some(1);
    second.spool_dir = Some(dir.path().join("spool"));
    let replayed = run(second, &Stop::new()).unwrap();
    consumer.shutdown();
    assert_eq!(
        (replayed.replayed, replayed.spooled),
        (3, Some(0)),
        "{replayed}"
    );
    let rows = db
        .client()
        .query(
            "SELECT occurred_at, received_at FROM events ORDER BY occurred_at",
            &[],
        )
        .unwrap();
    assert_eq!(rows.len(), 4);
    for row in &rows[..3] {
        let occurred: std::time::SystemTime = row.get(0);
        let received: std::time::SystemTime = row.get(1);
        assert!(occurred >= generated_before - Duration::from_millis(1));
        let late = received.duration_since(occurred).unwrap_or_default();
        assert!(
            late >= Duration::from_millis(1400),
            "a replayed event keeps its generation time: {late:?} between it and its storing"
        );
    }
}
