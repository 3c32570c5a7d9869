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

    /// The `event_type` of event `index`.
    pub fn event_type(&self, index: usize) -> &str {
        &self.types[span(&self.type_ends, index)]
    }
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
}
