//! The one array parser, as both its readers drive it: `read_event_list` (the events file) and
//! `parse_json_batch` (`POST /events`) never panic; an accepted events file is non-empty, each
//! item valid, it survives a JSON round trip unchanged, and the same text as a batch holds the
//! same events, without keys.
#![no_main]

use common::batch::parse_json_batch;
use common::{parse_event, read_event_list, Event};
use libfuzzer_sys::fuzz_target;

fn event_list(json: &[u8]) -> Option<Vec<Event>> {
    let mut events = Vec::new();
    let read = read_event_list(json, |event| events.push(event)).expect("a slice reads");
    read.ok().map(|n| {
        assert_eq!(n, events.len(), "the count is of the events handed over");
        events
    })
}

fuzz_target!(|data: &[u8]| {
    let as_batch = parse_json_batch(data, usize::MAX);
    if let Some(events) = event_list(data) {
        assert!(!events.is_empty(), "an empty list was accepted");
        for event in &events {
            let json = serde_json::to_vec(event).expect("an event serialises");
            assert_eq!(
                &parse_event(&json).expect("each item is a valid event"),
                event
            );
        }
        let json = serde_json::to_vec(&events).expect("a list serialises");
        assert_eq!(
            event_list(&json).expect("a serialised list parses"),
            events
        );
        // The file skips a byte order mark, a request body does not.
        if !data.starts_with(b"\xEF\xBB\xBF") {
            let items = as_batch.expect("an events file is a valid batch");
            assert!(items.iter().all(|item| item.idempotency_key.is_none()));
            let from_batch: Vec<Event> = items.into_iter().map(|item| item.event).collect();
            assert_eq!(from_batch, events, "the same events as a batch");
        }
    }
});
