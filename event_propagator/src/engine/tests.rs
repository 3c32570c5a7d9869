//! Taking slots without sending: the end of a run, what skipped slots are blamed on, and the
//! sends in flight.

use super::*;

/// An engine over one event for `settings`, whose sends are never made: slots are only
/// taken (and their ends recorded by hand).
fn engine_with(settings: Settings) -> Engine {
    let settings = Arc::new(settings);
    let target = Target {
        event_url: common::config::DEFAULT_ENDPOINT.into(),
        batch_url: None,
        name: common::config::DEFAULT_ENDPOINT.into(),
        batch_name: None,
    };
    let sender = Sender::new(Arc::clone(&settings), vec![target], Default::default(), 1);
    let event = common::parse_event(br#"{"event_type": "t", "event_payload": "p"}"#).unwrap();
    Engine::new(
        settings,
        sender,
        EventSet::from_events(&[event]),
        None,
        1,
        None,
    )
}

fn settings() -> Settings {
    Settings::from_config(&common::Config::default().propagator)
}

/// An engine whose slots are all due at once, ending after `count`.
fn engine(count: u64) -> Engine {
    let mut settings = settings();
    settings.period = Duration::ZERO;
    settings.count = Some(count);
    engine_with(settings)
}

#[test]
fn the_first_end_seen_is_the_one_every_later_slot_sees() {
    let engine = engine(1);
    let stop = Stop::new();
    assert_eq!(engine.end(), None);
    assert!(engine.take_slot(&stop).is_ok(), "slot 0 is due at once");
    assert_eq!(engine.take_slot(&stop).err(), Some(End::Count));
    stop.request();
    assert_eq!(
        engine.take_slot(&stop).err(),
        Some(End::Count),
        "a later stop does not change why the run ended"
    );
    assert_eq!(engine.end(), Some(End::Count));
}

#[test]
fn slots_skipped_while_the_window_was_full_count_as_window_full_after_it_empties() {
    let mut settings = settings();
    settings.period = Duration::from_millis(5);
    settings.max_in_flight = 2;
    let engine = engine_with(settings);
    let stop = Stop::new();
    let first = engine.take_slot(&stop).unwrap();
    let second = engine.take_slot(&stop).unwrap();
    // Both senders wait for a stalled consumer while slots pass (more than CATCH_UP late)...
    std::thread::sleep(Duration::from_millis(60));
    // ...then every answer arrives at once: both senders are free before either takes the
    // next slot, which the window, not this process, held up.
    let delivered = Delivery {
        attempts: 1,
        outcome: Outcome::Delivered,
        endpoint: Some(0),
    };
    engine.finish(first, delivered.clone());
    engine.finish(second, delivered);
    let late = engine.take_slot(&stop).unwrap();
    let stats = engine.stats();
    assert!(late.slot.skipped > 0, "no slot was skipped: {late:?}");
    assert_eq!(stats.skipped_slots, late.slot.skipped);
    assert_eq!(
        stats.skipped_window_full, stats.skipped_slots,
        "skipped slots blamed on this process although the window was full"
    );
}

#[test]
fn slots_skipped_with_senders_to_spare_are_not_counted_as_window_full() {
    let mut settings = settings();
    settings.period = Duration::from_millis(5);
    settings.max_in_flight = 2;
    let engine = engine_with(settings);
    let stop = Stop::new();
    let first = engine.take_slot(&stop).unwrap();
    let delivered = Delivery {
        attempts: 1,
        outcome: Outcome::Delivered,
        endpoint: Some(0),
    };
    engine.finish(first, delivered);
    // One sender was free all along: the slots passed because nothing took them.
    std::thread::sleep(Duration::from_millis(60));
    let late = engine.take_slot(&stop).unwrap();
    let stats = engine.stats();
    assert!(late.slot.skipped > 0, "no slot was skipped: {late:?}");
    assert_eq!(stats.skipped_window_full, 0, "{stats:?}");
}

#[test]
fn a_taken_slot_is_in_flight_until_it_is_abandoned() {
    let engine = engine(3);
    let stop = Stop::new();
    let first = engine.take_slot(&stop).unwrap();
    let second = engine.take_slot(&stop).unwrap();
    assert_eq!((first.number, second.number), (0, 1));
    assert_ne!(first.events[0].key, second.events[0].key, "a key per send");
    let load = engine.load();
    assert_eq!(load.in_flight, 2);
    assert!(load.next_due.is_some(), "the next slot's due time is known");
    engine.abandon_in_flight();
    assert_eq!(engine.load().in_flight, 0);
    let stats = engine.stats();
    assert_eq!((stats.sent, stats.abandoned), (2, 2));
    assert_eq!(engine.end(), None, "abandoning sends does not end the run");
}
