//! `parse_event_list` never panics; an accepted list is non-empty, each entry valid, and it
//! survives a JSON round trip unchanged.
#![no_main]

use common::{parse_event, parse_event_list};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(events) = parse_event_list(data) {
        assert!(!events.is_empty(), "an empty list was accepted");
        for event in &events {
            let json = serde_json::to_vec(event).expect("an event serialises");
            assert_eq!(
                &parse_event(&json).expect("each entry is a valid event"),
                event
            );
        }
        let json = serde_json::to_vec(&events).expect("a list serialises");
        assert_eq!(
            parse_event_list(&json).expect("a serialised list parses"),
            events
        );
    }
});
