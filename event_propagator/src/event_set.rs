//! The checked events of a run, kept compactly: every event's JSON body end to end in one
//! buffer and every event type in another, with the end offset of each.
//!
//! Events never change after loading, and a send needs only its body (and the type for log
//! lines), so there is one allocation per buffer instead of two `String`s and a body per event.
//! A 120 MB events file costs about its own size in memory (see [`crate::events::load`]).

use common::event::{IDEMPOTENCY_KEY, OCCURRED_AT};
use common::Event;

/// The events of a run, by their position in the events file.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EventSet {
    bodies: Vec<u8>,
    body_ends: Vec<usize>,
    types: String,
    type_ends: Vec<usize>,
}

impl EventSet {
    /// An empty set whose body buffer has room for `bytes` without growing.
    pub fn with_capacity(bytes: usize) -> EventSet {
        EventSet {
            bodies: Vec::with_capacity(bytes),
            ..EventSet::default()
        }
    }

    /// The set of `events`, in order.
    pub fn from_events(events: &[Event]) -> EventSet {
        let mut set = EventSet::default();
        for event in events {
            set.push(event);
        }
        set
    }

    /// Adds `event` after the others.
    pub fn push(&mut self, event: &Event) {
        serde_json::to_writer(&mut self.bodies, event).expect("writing to a Vec cannot fail");
        self.body_ends.push(self.bodies.len());
        self.types.push_str(event.event_type());
        self.type_ends.push(self.types.len());
    }

    /// Gives back the room the buffers did not use.
    pub fn shrink_to_fit(&mut self) {
        self.bodies.shrink_to_fit();
        self.body_ends.shrink_to_fit();
        self.types.shrink_to_fit();
        self.type_ends.shrink_to_fit();
    }

    pub fn len(&self) -> usize {
        self.body_ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.body_ends.is_empty()
    }

    /// The JSON body of event `index` as the events file gave it: its type and payload.
    pub fn body(&self, index: usize) -> &[u8] {
        &self.bodies[span(&self.body_ends, index)]
    }

    /// Appends event `index` to `out` as `POST /event` sends it: its body with
    /// `"occurred_at": occurred_at` added.
    pub fn write_event(&self, index: usize, occurred_at: &str, out: &mut Vec<u8>) {
        write_with(self.body(index), &[(OCCURRED_AT, occurred_at)], out);
    }

    /// Appends event `index` to `out` as an item of a batch: its body with
    /// `"occurred_at": occurred_at` and `"idempotency_key": key` added.
    pub fn write_batch_item(&self, index: usize, key: &str, occurred_at: &str, out: &mut Vec<u8>) {
        write_with(
            self.body(index),
            &[(OCCURRED_AT, occurred_at), (IDEMPOTENCY_KEY, key)],
            out,
        );
    }

    /// The `event_type` of event `index`.
    pub fn event_type(&self, index: usize) -> &str {
        &self.types[span(&self.type_ends, index)]
    }
}

/// Appends `body` (an event's body as sent, its `occurred_at` included) to `out` as an item of
/// a batch, with `"idempotency_key": key` added. `key` must need no JSON escaping (a UUID does
/// not).
pub fn write_batch_item(body: &[u8], key: &str, out: &mut Vec<u8>) {
    write_with(body, &[(IDEMPOTENCY_KEY, key)], out);
}

/// Appends `body` to `out` with `fields` added, whose values must need no JSON escaping (a UUID
/// and an RFC 3339 time do not).
fn write_with(body: &[u8], fields: &[(&str, &str)], out: &mut Vec<u8>) {
    // Every body is a JSON object written by serde_json, so it ends with its closing brace.
    let open = body.strip_suffix(b"}").unwrap_or(body);
    out.extend_from_slice(open);
    for (name, value) in fields {
        for part in [",\"", name, "\":\"", value, "\""] {
            out.extend_from_slice(part.as_bytes());
        }
    }
    out.push(b'}');
}

/// The range of entry `index` in a buffer whose entries end at `ends`.
fn span(ends: &[usize], index: usize) -> std::ops::Range<usize> {
    let start = if index == 0 { 0 } else { ends[index - 1] };
    start..ends[index]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_event_keeps_its_own_body_and_type() {
        let events = [
            Event::new("alpha", "{\"n\": 1}").unwrap(),
            Event::new("β", "").unwrap(),
            Event::new("gamma", "Température ✓ \"quoted\"").unwrap(),
        ];
        let mut set = EventSet::from_events(&events);
        set.shrink_to_fit();
        assert_eq!(set.len(), 3);
        for (index, event) in events.iter().enumerate() {
            assert_eq!(set.event_type(index), event.event_type(), "type {index}");
            let body = set.body(index);
            assert_eq!(body, serde_json::to_vec(event).unwrap(), "body {index}");
            assert_eq!(&common::parse_event(body).unwrap(), event, "body {index}");
        }
        assert!(EventSet::default().is_empty());
    }

    #[test]
    fn a_batch_item_is_the_event_with_its_idempotency_key() {
        let events = [
            Event::new("alpha", "{\"n\": 1}").unwrap(),
            Event::new("β", "").unwrap(),
        ];
        let set = EventSet::from_events(&events);
        let mut out = Vec::new();
        set.write_batch_item(0, "k-0", "2026-12-07T03:00:00.000Z", &mut out);
        out.push(b',');
        set.write_batch_item(1, "k-1", "2026-12-07T03:00:00.001Z", &mut out);
        let items: serde_json::Value =
            serde_json::from_slice(&[b"[", &out[..], b"]"].concat()).unwrap();
        for (index, event) in events.iter().enumerate() {
            let item = &items[index];
            assert_eq!(item["event_type"], event.event_type(), "item {index}");
            assert_eq!(item["event_payload"], event.event_payload(), "item {index}");
            assert_eq!(
                item["idempotency_key"],
                format!("k-{index}"),
                "item {index}"
            );
            assert_eq!(
                item["occurred_at"],
                format!("2026-12-07T03:00:00.00{index}Z"),
                "item {index}"
            );
            assert_eq!(
                item.as_object().unwrap().len(),
                4,
                "item {index}: no other field"
            );
        }
    }

    #[test]
    fn an_event_is_sent_with_its_occurred_at_and_the_consumer_reads_it() {
        let event = Event::new("gamma", "Température ✓ \"quoted\"").unwrap();
        let set = EventSet::from_events(std::slice::from_ref(&event));
        let mut body = Vec::new();
        set.write_event(0, "2026-12-07T03:00:00.123Z", &mut body);
        let at = common::calendar::parse_rfc3339("2026-12-07T03:00:00.123Z").unwrap();
        assert_eq!(
            common::parse_event(&body).unwrap(),
            event.with_occurred_at(Some(at))
        );
    }
}
