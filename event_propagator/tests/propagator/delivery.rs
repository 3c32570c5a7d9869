//! Sending against the recording receiver, in process, one tick or one run at a time.

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::Mutex;
use std::time::Duration;

use event_propagator::{run, End, Outcome, Propagator, Stop, Tick};

use crate::helpers::*;

fn one_tick(propagator: &mut Propagator) -> event_propagator::Sent {
    match propagator.tick(&Stop::new()) {
        Tick::Sent(sent) => sent,
        other => panic!("expected a send, got {other:?}"),
    }
}

#[test]
fn many_events_share_one_keep_alive_connection() {
    let dir = TempDir::new();
    let receiver = Receiver::accepting();
    let mut settings = settings(&dir, &receiver.url());
    settings.count = Some(30);
    let summary = run(settings, &Stop::new()).unwrap();
    assert_eq!((summary.sent, summary.delivered), (30, 30));
    assert_eq!(summary.end, End::Count);
    assert_eq!(summary.exit_code(), 0);
    let requests = receiver.requests();
    assert_eq!(requests.len(), 30);
    assert_eq!(
        receiver.connections(),
        1,
        "one TCP connection for all events"
    );
    let keys: HashSet<_> = requests.iter().map(|r| r.key()).collect();
    assert_eq!(keys.len(), 30, "a new key for every event");
    for request in &requests {
        assert_eq!(
            (request.method.as_str(), request.path.as_str()),
            ("POST", "/event")
        );
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert!(uuid::Uuid::parse_str(&request.key()).is_ok_and(|u| u.get_version_num() == 4));
        let body = common::parse_event(&request.body).expect("a valid event");
        assert!(["alpha", "beta", "gamma"].contains(&body.event_type()));
    }
}

#[test]
fn an_event_refused_three_times_with_503_is_delivered_once_under_one_key() {
    let dir = TempDir::new();
    let receiver = Receiver::start(|_, n| match n {
        0..=2 => Reply::status(503).header("Retry-After", "0"),
        _ => Reply::status(201),
    });
    let mut propagator = Propagator::new(settings(&dir, &receiver.url())).unwrap();
    let sent = one_tick(&mut propagator);
    assert_eq!(sent.delivery.outcome, Outcome::Delivered);
    assert_eq!(sent.delivery.attempts, 4);
    let requests = receiver.requests();
    assert_eq!(requests.len(), 4);
    assert!(
        requests.iter().all(|r| r.key() == sent.key()),
        "the same Idempotency-Key on every attempt"
    );
    assert!(requests.iter().all(|r| r.body == requests[0].body));
    let summary = propagator.summary_at(End::Count);
    assert_eq!(
        (summary.sent, summary.delivered, summary.retries),
        (1, 1, 3)
    );
}

#[test]
fn an_answer_lost_to_a_timeout_is_retried_and_acknowledged_as_a_duplicate() {
    let dir = TempDir::new();
    // Like the consumer: a key it has seen gets 200. The first answer comes too late.
    let seen = Mutex::new(HashSet::new());
    let receiver = Receiver::start(move |request, _| {
        if seen.lock().unwrap().insert(request.key()) {
            Reply::status(201).after(Duration::from_millis(800))
        } else {
            Reply::status(200).header("Idempotent-Replayed", "true")
        }
    });
    let mut settings = settings(&dir, &receiver.url());
    settings.request_timeout = Duration::from_millis(200);
    let mut propagator = Propagator::new(settings).unwrap();
    let sent = one_tick(&mut propagator);
    assert_eq!(sent.delivery.outcome, Outcome::Duplicate);
    assert_eq!(sent.delivery.attempts, 2);
    let summary = propagator.summary_at(End::Count);
    assert_eq!((summary.delivered, summary.duplicates), (1, 1));
    assert_eq!(summary.exit_code(), 0);
}

#[test]
fn a_422_is_rejected_at_once_with_the_consumers_message() {
    let dir = TempDir::new();
    let receiver = Receiver::start(|_, _| {
        Reply::status(422)
            .body(r#"{"error": "field `event_type` is too long", "field": "event_type"}"#)
    });
    let mut propagator = Propagator::new(settings(&dir, &receiver.url())).unwrap();
    let sent = one_tick(&mut propagator);
    let Outcome::Rejected { status, message } = &sent.delivery.outcome else {
        panic!("expected a rejection, got {:?}", sent.delivery);
    };
    assert_eq!(*status, 422);
    assert!(
        message.contains("too long") && message.contains("event_type"),
        "{message}"
    );
    assert_eq!(sent.delivery.attempts, 1);
    assert_eq!(receiver.requests().len(), 1, "a 422 is not retried");
    let summary = propagator.summary_at(End::Count);
    assert_eq!((summary.rejected, summary.exit_code()), (1, 1));
}

#[test]
fn an_event_is_given_up_after_max_retries() {
    let dir = TempDir::new();
    let receiver = Receiver::start(|_, _| Reply::status(500));
    let mut settings = settings(&dir, &receiver.url());
    settings.max_retries = 2;
    let mut propagator = Propagator::new(settings).unwrap();
    let sent = one_tick(&mut propagator);
    assert!(
        matches!(&sent.delivery.outcome, Outcome::GaveUp { reason } if reason.contains("500")),
        "{:?}",
        sent.delivery
    );
    assert_eq!(
        receiver.requests().len(),
        3,
        "the first attempt and 2 retries"
    );
    let summary = propagator.summary_at(End::Count);
    assert_eq!((summary.given_up, summary.retries), (1, 2));
    assert_eq!(summary.exit_code(), 1);
}

#[test]
fn a_refused_connection_is_retried_until_the_consumer_appears() {
    let dir = TempDir::new();
    // Reserve a port, then free it: connections to it are refused until the receiver binds it.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut settings = settings(&dir, &format!("http://127.0.0.1:{port}/event"));
    settings.max_retries = 100;
    let late_receiver = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        Receiver::on(TcpListener::bind(("127.0.0.1", port)).unwrap(), |_, _| {
            Reply::status(201)
        })
    });
    let mut propagator = Propagator::new(settings).unwrap();
    let sent = one_tick(&mut propagator);
    let receiver = late_receiver.join().unwrap();
    assert_eq!(sent.delivery.outcome, Outcome::Delivered);
    assert!(sent.delivery.attempts > 1, "{:?}", sent.delivery);
    let requests = receiver.requests();
    assert_eq!(requests.len(), 1, "refused attempts never reached it");
    assert_eq!(requests[0].key(), sent.key());
}

#[test]
fn retry_after_is_waited_for_even_when_the_backoff_is_shorter() {
    let dir = TempDir::new();
    let receiver = Receiver::start(|_, n| match n {
        0 => Reply::status(429).header("Retry-After", "1"),
        _ => Reply::status(201),
    });
    let mut settings = settings(&dir, &receiver.url());
    // The first retry's backoff is at most 0.1 s; `backoff_max_seconds` (2 s) caps Retry-After
    // too, and 1 s is under it.
    settings.backoff_max = Duration::from_secs(2);
    let mut propagator = Propagator::new(settings).unwrap();
    assert_eq!(
        one_tick(&mut propagator).delivery.outcome,
        Outcome::Delivered
    );
    let requests = receiver.requests();
    let gap = requests[1].at - requests[0].at;
    assert!(gap >= Duration::from_millis(990), "retried after {gap:?}");
    assert!(gap < Duration::from_secs(2), "retried after {gap:?}");
}

#[test]
fn the_auth_token_is_sent_as_a_bearer_header() {
    let dir = TempDir::new();
    let receiver = Receiver::accepting();
    let mut settings = settings(&dir, &receiver.url());
    settings.auth_token = Some(common::Secret::new("s3cr3t-t0ken"));
    let mut propagator = Propagator::new(settings).unwrap();
    one_tick(&mut propagator);
    assert_eq!(
        receiver.requests()[0].header("authorization"),
        Some("Bearer s3cr3t-t0ken")
    );
    assert!(
        !format!("{propagator:?}").contains("s3cr3t"),
        "Debug shows no token"
    );
}

#[test]
fn each_key_is_in_the_keys_log_before_its_first_attempt() {
    let dir = TempDir::new();
    let keys_log = dir.path().join("keys.log");
    let checked = keys_log.clone();
    // The receiver looks in the file when the request arrives; an unlogged key gets a 422.
    let receiver = Receiver::start(move |request, n| {
        let logged = std::fs::read_to_string(&checked).unwrap_or_default();
        if !logged.lines().any(|line| line == request.key()) {
            return Reply::status(422).body(r#"{"error": "key not in the keys log yet"}"#);
        }
        if n % 3 == 0 {
            Reply::status(503).header("Retry-After", "0")
        } else {
            Reply::status(201)
        }
    });
    let mut settings = settings(&dir, &receiver.url());
    settings.count = Some(20);
    settings.keys_log = Some(keys_log.clone());
    let summary = run(settings, &Stop::new()).unwrap();
    assert_eq!((summary.delivered, summary.rejected), (20, 0), "{summary}");
    let logged: Vec<String> = std::fs::read_to_string(&keys_log)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let mut sent: Vec<String> = Vec::new();
    for request in receiver.requests() {
        if sent.last() != Some(&request.key()) {
            sent.push(request.key());
        }
    }
    assert_eq!(
        logged, sent,
        "one line per event, in order, retries not repeated"
    );
}

#[test]
fn the_same_seed_sends_the_same_events_in_the_same_order() {
    let dir = TempDir::new();
    let sequence = |seed| {
        let receiver = Receiver::accepting();
        let mut settings = settings(&dir, &receiver.url());
        settings.count = Some(25);
        settings.seed = Some(seed);
        run(settings, &Stop::new()).unwrap();
        receiver
            .requests()
            .iter()
            .map(|r| r.event_type())
            .collect::<Vec<_>>()
    };
    let first = sequence(7);
    assert_eq!(first, sequence(7));
    assert_ne!(first, sequence(8));
    let kinds: HashSet<_> = first.iter().collect();
    assert_eq!(kinds.len(), 3, "all three events appear in 25 picks");
}

#[test]
fn a_stop_request_ends_the_wait_for_the_next_slot_at_once() {
    let dir = TempDir::new();
    let receiver = Receiver::accepting();
    let mut settings = settings(&dir, &receiver.url());
    settings.period = Duration::from_secs(3600);
    let mut propagator = Propagator::new(settings).unwrap();
    let stop = Stop::new();
    assert!(
        matches!(propagator.tick(&stop), Tick::Sent(_)),
        "slot 0 is due at once"
    );
    let ticker_stop = stop.clone();
    let (ticked, ticks) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let first = propagator.tick(&ticker_stop);
        let second = propagator.tick(&ticker_stop);
        let _ = ticked.send((first, second));
    });
    // Not a synchronisation: a tick that has not started waiting yet sees the request at once.
    std::thread::sleep(Duration::from_millis(100));
    stop.request();
    // A broken wake-up would wait for the slot due in an hour: fail instead of hanging.
    let (first, second) = ticks
        .recv_timeout(Duration::from_secs(10))
        .expect("a stop request did not end the wait for a slot due in an hour");
    assert_eq!(first, Tick::Finished(End::Stopped));
    assert_eq!(second, Tick::Finished(End::Stopped), "stays finished");
}

#[test]
fn a_send_that_hangs_past_the_shutdown_timeout_is_abandoned() {
    let dir = TempDir::new();
    // The stop comes while the send hangs: the receiver asks for it when the request arrives.
    let stop = Stop::new();
    let stopper = stop.clone();
    let receiver = Receiver::start(move |_, _| {
        stopper.request();
        Reply::status(201).after(Duration::from_secs(20))
    });
    let mut settings = settings(&dir, &receiver.url());
    settings.request_timeout = Duration::from_secs(30);
    settings.shutdown_timeout = Duration::from_millis(300);
    let summary = run(settings, &stop).unwrap();
    let took = stop.requested_at().unwrap().elapsed();
    // How soon after the allowance it returns depends on the machine; that it did not wait for
    // the 30 s request timeout does not.
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(10),
        "returned {took:?} after the stop, expected just after the 300 ms allowance"
    );
    assert_eq!((summary.sent, summary.abandoned), (1, 1), "{summary}");
    assert_eq!((summary.end, summary.exit_code()), (End::Stopped, 1));
}

#[test]
fn an_attempt_started_after_a_stop_is_cut_to_the_shutdown_allowance() {
    let dir = TempDir::new();
    // The first attempt gets a 503, and the stop is requested while it waits for it; the
    // retry then hangs.
    let stop = Stop::new();
    let stopper = stop.clone();
    let receiver = Receiver::start(move |_, n| match n {
        0 => {
            stopper.request();
            Reply::status(503).after(Duration::from_millis(100))
        }
        _ => Reply::status(201).after(Duration::from_secs(20)),
    });
    let mut settings = settings(&dir, &receiver.url());
    settings.request_timeout = Duration::from_secs(30);
    settings.shutdown_timeout = Duration::from_millis(600);
    let mut propagator = Propagator::new(settings).unwrap();
    let Tick::Sent(sent) = propagator.tick(&stop) else {
        panic!("expected a send");
    };
    let took = stop.requested_at().unwrap().elapsed();
    assert_eq!(sent.delivery.outcome, Outcome::Abandoned);
    assert_eq!(receiver.requests().len(), 2, "the retry was still made");
    // The retry's timeout is what is left of the allowance, not the 30 s request timeout.
    assert!(
        took >= Duration::from_millis(600).mul_f64(0.9) && took < Duration::from_secs(10),
        "tick returned {took:?} after the stop, expected just after the 600 ms allowance"
    );
}

#[test]
fn a_stop_during_retries_lets_the_event_finish_within_the_shutdown_timeout() {
    let dir = TempDir::new();
    // The second part's stop, requested by the receiver when the third attempt arrives.
    let during_retries = Stop::new();
    let stopper = during_retries.clone();
    let receiver = Receiver::start(move |_, n| match n {
        0..=4 => {
            if n == 2 {
                stopper.request();
            }
            Reply::status(503).header("Retry-After", "0")
        }
        _ => Reply::status(201),
    });
    let mut settings = settings(&dir, &receiver.url());
    settings.backoff_max = Duration::from_millis(60);
    let stop = Stop::new();
    stop.request();
    // Stop was requested before the tick: nothing new is sent.
    let mut propagator = Propagator::new(settings.clone()).unwrap();
    assert_eq!(propagator.tick(&stop), Tick::Finished(End::Stopped));
    assert!(receiver.requests().is_empty());

    // Requested while the event is being retried: it still gets its allowance to finish.
    let mut propagator = Propagator::new(settings).unwrap();
    let stop = during_retries;
    let Tick::Sent(sent) = propagator.tick(&stop) else {
        panic!("expected a send");
    };
    assert_eq!(sent.delivery.outcome, Outcome::Delivered);
    assert_eq!(sent.delivery.attempts, 6);
    assert_eq!(propagator.tick(&stop), Tick::Finished(End::Stopped));
}

#[test]
fn an_event_larger_than_the_connection_buffers_is_sent_whole() {
    let dir = TempDir::new();
    let receiver = Receiver::accepting();
    let mut settings = settings(&dir, &receiver.url());
    // 200 KB of payload: more than ten times the client's write buffer.
    let payload = "0123456789".repeat(20_000);
    let events = format!(r#"[{{"event_type": "big", "event_payload": "{payload}"}}]"#);
    settings.events_file = dir.write("big.json", &events);
    let mut propagator = Propagator::new(settings).unwrap();
    assert_eq!(
        one_tick(&mut propagator).delivery.outcome,
        Outcome::Delivered
    );
    let requests = receiver.requests();
    let body = common::parse_event(&requests[0].body).expect("the whole event arrived");
    assert_eq!(body.event_payload(), payload);
}

#[test]
fn a_200_without_the_replayed_mark_is_delivered_not_a_duplicate() {
    // A server other than ours that answers 200 for an event it stored now.
    let dir = TempDir::new();
    let receiver = Receiver::start(|_, _| Reply::status(200));
    let mut settings = settings(&dir, &receiver.url());
    settings.count = Some(2);
    let summary = run(settings, &Stop::new()).unwrap();
    assert_eq!((summary.delivered, summary.duplicates), (2, 0), "{summary}");
    assert_eq!(summary.exit_code(), 0);
}
