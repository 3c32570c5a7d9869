//! `parse_event` never panics, and an accepted event obeys the rules and survives a JSON round
//! trip unchanged (its `occurred_at`, written back in UTC, names the same instant).
#![no_main]

use common::parse_event;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(event) = parse_event(data) {
        let chars = event.event_type().chars().count();
        assert!(
            (1..=255).contains(&chars),
            "event_type of {chars} characters accepted"
        );
        assert!(!event.event_type().contains('\0') && !event.event_payload().contains('\0'));
        let json = serde_json::to_vec(&event).expect("an event serialises");
        assert_eq!(
            parse_event(&json).expect("a serialised event parses"),
            event
        );
    }
});
