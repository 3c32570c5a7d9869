//! The checked events of a run, kept compactly: every event's JSON body end to end in one
//! buffer and every event type in another, with the end offset of each.
//!
//! Events never change after loading, and a send needs only its body (and the type for log
//! lines), so there is one allocation per buffer instead of two `String`s and a body per event.
//! A 120 MB events file costs about its own size in memory (see [`crate::events::load`]).

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

    /// The JSON body of event `index`, as the consumer receives it.
    pub fn body(&self, index: usize) -> &[u8] {
        &self.bodies[span(&self.body_ends, index)]
    }

    /// Appends event `index` to `out` as an item of a batch: its body with
    /// `"idempotency_key": key` added. `key` must need no JSON escaping (a UUID does not).
    pub fn write_batch_item(&self, index: usize, key: &str, out: &mut Vec<u8>) {
        write_batch_item(self.body(index), key, out);
    }

    /// The `event_type` of event `index`.
    pub fn event_type(&self, index: usize) -> &str {
        &self.types[span(&self.type_ends, index)]
    }
}

/// Appends `body` (a JSON object written by serde_json) to `out` as an item of a batch, with
/// `"idempotency_key": key` added. `key` must need no JSON escaping (a UUID does not).
pub fn write_batch_item(body: &[u8], key: &str, out: &mut Vec<u8>) {
    // serde_json writes an object with its closing brace last, and no space after it.
    let open = body.strip_suffix(b"}").unwrap_or(body);
    out.extend_from_slice(open);
    out.extend_from_slice(b",\"idempotency_key\":\"");
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\"}");
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
        set.write_batch_item(0, "k-0", &mut out);
        out.push(b',');
        set.write_batch_item(1, "k-1", &mut out);
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
                item.as_object().unwrap().len(),
                3,
                "item {index}: no other field"
            );
        }
    }
}
