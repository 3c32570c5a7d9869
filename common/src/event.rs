//! The event: its wire form, its rules, and the one function that turns bytes into a valid event.
//!
//! Parse, don't validate: [`Event`] can only be built through [`Event::new`] or [`parse_event`],
//! both of which run the rules, so anything holding an `Event` holds a valid one.
//!
//! An array of events (`POST /events`, the propagator's events file) is read by
//! [`batch`](crate::batch), each item checked here (`EventSeed`).

use std::fmt;
use std::time::SystemTime;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::calendar::{parse_rfc3339, rfc3339_utc, Rfc3339Error};

/// Longest accepted `event_type`, in characters (Unicode scalar values).
pub const MAX_EVENT_TYPE_CHARS: usize = 255;

pub const EVENT_TYPE: &str = "event_type";
pub const EVENT_PAYLOAD: &str = "event_payload";
/// The key of the optional time the event happened (`POST /event` and `POST /events`).
pub const OCCURRED_AT: &str = "occurred_at";
/// The key of a batch item's idempotency key (`POST /events`).
pub const IDEMPOTENCY_KEY: &str = "idempotency_key";
/// The longest accepted idempotency key, in bytes (all ASCII).
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 255;

/// The rule for an idempotency key, in the `Idempotency-Key` header or a batch item: 1 to 255
/// visible ASCII characters. The error says what is wrong.
pub fn check_idempotency_key(key: &str) -> Result<(), &'static str> {
    if key.is_empty() {
        return Err("must not be empty");
    }
    if key.len() > MAX_IDEMPOTENCY_KEY_BYTES {
        return Err("must be at most 255 characters");
    }
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("must be visible ASCII characters only (no spaces or control characters)");
    }
    Ok(())
}

/// A validated event: `event_type` is 1 to 255 characters, neither string contains U+0000;
/// `occurred_at`, when the sender gave it, is the instant it named (its offset applied).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    event_type: String,
    event_payload: String,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_occurred_at"
    )]
    occurred_at: Option<SystemTime>,
}

/// `occurred_at` as it is read: RFC 3339 in UTC, to the nanosecond a `SystemTime` keeps.
fn serialize_occurred_at<S: Serializer>(
    time: &Option<SystemTime>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match time {
        Some(time) => serializer.serialize_str(&rfc3339_utc(*time, 9)),
        None => serializer.serialize_none(),
    }
}

impl Event {
    /// Builds an event, applying the same rules as [`parse_event`].
    pub fn new(
        event_type: impl Into<String>,
        event_payload: impl Into<String>,
    ) -> Result<Event, EventError> {
        let event_type = event_type.into();
        let event_payload = event_payload.into();
        let chars = event_type.chars().count();
        if chars == 0 {
            return Err(EventError::EmptyType);
        }
        if chars > MAX_EVENT_TYPE_CHARS {
            return Err(EventError::TypeTooLong { chars });
        }
        if event_type.contains('\0') {
            return Err(EventError::ContainsNul { field: EVENT_TYPE });
        }
        if event_payload.contains('\0') {
            return Err(EventError::ContainsNul {
                field: EVENT_PAYLOAD,
            });
        }
        Ok(Event {
            event_type,
            event_payload,
            occurred_at: None,
        })
    }

    /// The same event, happened at `occurred_at` (or at no time given).
    pub fn with_occurred_at(self, occurred_at: Option<SystemTime>) -> Event {
        Event {
            occurred_at,
            ..self
        }
    }

    pub fn event_type(&self) -> &str {
        &self.event_type
    }

    pub fn event_payload(&self) -> &str {
        &self.event_payload
    }

    /// When the event happened, as its sender said; `None` when it did not say.
    pub fn occurred_at(&self) -> Option<SystemTime> {
        self.occurred_at
    }
}

/// Why a body is not a valid event. [`EventError::is_malformed`] separates "not an event-shaped
/// JSON document at all" (HTTP 400) from "JSON that breaks the event rules" (HTTP 422).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventError {
    NotUtf8 {
        valid_up_to: usize,
    },
    InvalidJson {
        message: String,
    },
    NotAnObject {
        found: &'static str,
    },
    MissingField {
        field: &'static str,
    },
    /// A key the reader does not take; `known` lists those it does, for the message.
    UnknownField {
        name: String,
        known: &'static str,
    },
    DuplicateField {
        field: &'static str,
    },
    NotAString {
        field: &'static str,
        found: &'static str,
    },
    EmptyType,
    TypeTooLong {
        chars: usize,
    },
    ContainsNul {
        field: &'static str,
    },
    /// A batch item's `idempotency_key` breaks the rules of the `Idempotency-Key` header.
    BadKey {
        problem: &'static str,
    },
    /// `occurred_at` is a string but no RFC 3339 date-time with an offset.
    BadTime {
        problem: Rfc3339Error,
    },
}

impl EventError {
    /// True when the body is not UTF-8, not JSON, or not a JSON object.
    pub fn is_malformed(&self) -> bool {
        matches!(
            self,
            EventError::NotUtf8 { .. }
                | EventError::InvalidJson { .. }
                | EventError::NotAnObject { .. }
        )
    }

    /// The field at fault, when exactly one is.
    pub fn field(&self) -> Option<&str> {
        match self {
            EventError::MissingField { field }
            | EventError::DuplicateField { field }
            | EventError::NotAString { field, .. }
            | EventError::ContainsNul { field } => Some(field),
            EventError::UnknownField { name, .. } => Some(name),
            EventError::EmptyType | EventError::TypeTooLong { .. } => Some(EVENT_TYPE),
            EventError::BadKey { .. } => Some(IDEMPOTENCY_KEY),
            EventError::BadTime { .. } => Some(OCCURRED_AT),
            EventError::NotUtf8 { .. }
            | EventError::InvalidJson { .. }
            | EventError::NotAnObject { .. } => None,
        }
    }
}

impl fmt::Display for EventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventError::NotUtf8 { valid_up_to } => {
                write!(f, "body is not valid UTF-8 (invalid byte at offset {valid_up_to})")
            }
            EventError::InvalidJson { message } => write!(f, "body is not valid JSON: {message}"),
            EventError::NotAnObject { found } => {
                write!(f, "body must be a JSON object with event_type and event_payload, found {found}")
            }
            EventError::MissingField { field } => write!(f, "missing field `{field}`"),
            EventError::UnknownField { name, known } => {
                write!(f, "unknown field `{name}`: an event here has only {known}")
            }
            EventError::DuplicateField { field } => write!(f, "field `{field}` appears twice"),
            EventError::NotAString { field, found } => {
                write!(f, "field `{field}` must be a string, found {found}")
            }
            EventError::EmptyType => write!(f, "field `event_type` must not be empty"),
            EventError::TypeTooLong { chars } => write!(
                f,
                "field `event_type` is {chars} characters long, at most {MAX_EVENT_TYPE_CHARS} are allowed"
            ),
            EventError::ContainsNul { field } => write!(
                f,
                "field `{field}` contains the character U+0000, which cannot be stored"
            ),
            EventError::BadKey { problem } => write!(f, "field `{IDEMPOTENCY_KEY}` {problem}"),
            EventError::BadTime { problem } => write!(f, "field `{OCCURRED_AT}` {problem}"),
        }
    }
}

impl std::error::Error for EventError {}

/// Parses and validates one event from a request body.
///
/// Rules: UTF-8; one JSON object with exactly `event_type` and `event_payload`, both strings,
/// and optionally `occurred_at`, an RFC 3339 date-time with an offset; `event_type` 1 to 255
/// characters; no U+0000 anywhere. The first broken rule is reported.
pub fn parse_event(body: &[u8]) -> Result<Event, EventError> {
    if let Err(e) = std::str::from_utf8(body) {
        return Err(EventError::NotUtf8 {
            valid_up_to: e.valid_up_to(),
        });
    }
    match check_document(body, Fields::Event) {
        Ok(checked) => checked.map(|(event, _)| event),
        Err(e) => Err(EventError::InvalidJson {
            message: e.to_string(),
        }),
    }
}

/// A JSON value checked against the event rules: the event with the `idempotency_key` that came
/// with it, or the first rule it breaks.
pub(crate) type Checked = Result<(Event, Option<String>), EventError>;

/// The keys a reader takes besides `event_type` and `event_payload`; any other is an unknown
/// field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fields {
    /// `POST /event`: `occurred_at` (the key comes in a header).
    Event,
    /// An item of `POST /events`: `occurred_at` and `idempotency_key`.
    BatchItem,
    /// An event of the propagator's events file: nothing else. The propagator stamps each event
    /// it generates with `occurred_at` and a key, so the file has no use for either.
    EventsFile,
}

impl Fields {
    fn occurred_at(self) -> bool {
        self != Fields::EventsFile
    }

    fn idempotency_key(self) -> bool {
        self == Fields::BatchItem
    }

    /// The keys taken, for the message about an unknown one.
    fn known(self) -> &'static str {
        match self {
            Fields::Event => "`event_type`, `event_payload` and `occurred_at`",
            Fields::BatchItem => {
                "`event_type`, `event_payload`, `occurred_at` and `idempotency_key`"
            }
            Fields::EventsFile => "`event_type` and `event_payload`",
        }
    }
}

/// Checks one JSON document (nothing but whitespace may follow it): a request body, or a line
/// of an NDJSON batch. A serde error means broken JSON, never a broken rule.
pub(crate) fn check_document(json: &[u8], fields: Fields) -> Result<Checked, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(json);
    let checked = EventSeed { fields }.deserialize(&mut de)?;
    de.end()?;
    Ok(checked)
}

/// Checks one JSON value where it stands, e.g. an item of an array (`batch.rs`). Rule
/// violations are carried in the value rather than as serde errors, so a serde error always
/// means broken JSON syntax.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EventSeed {
    pub(crate) fields: Fields,
}

impl<'de> DeserializeSeed<'de> for EventSeed {
    type Value = Checked;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Checked, D::Error> {
        deserializer.deserialize_any(EventVisitor {
            fields: self.fields,
        })
    }
}

/// The event rules over one JSON value, with the optional keys `fields` takes.
struct EventVisitor {
    fields: Fields,
}

impl<'de> Visitor<'de> for EventVisitor {
    type Value = Checked;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an event object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut event_type: Option<String> = None;
        let mut event_payload: Option<String> = None;
        let mut idempotency_key: Option<String> = None;
        let mut occurred_at: Option<String> = None;
        let mut first_error: Option<EventError> = None;
        let fields = self.fields;
        while let Some(key) = map.next_key::<KeyName>()? {
            let (field, slot) = match key.0.as_str() {
                EVENT_TYPE => (EVENT_TYPE, &mut event_type),
                EVENT_PAYLOAD => (EVENT_PAYLOAD, &mut event_payload),
                IDEMPOTENCY_KEY if fields.idempotency_key() => {
                    (IDEMPOTENCY_KEY, &mut idempotency_key)
                }
                OCCURRED_AT if fields.occurred_at() => (OCCURRED_AT, &mut occurred_at),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    first_error.get_or_insert(EventError::UnknownField {
                        name: key.0,
                        known: fields.known(),
                    });
                    continue;
                }
            };
            match map.next_value::<FieldValue>()? {
                FieldValue::String(_) if slot.is_some() => {
                    first_error.get_or_insert(EventError::DuplicateField { field });
                }
                FieldValue::String(s) => *slot = Some(s),
                FieldValue::Other(found) => {
                    first_error.get_or_insert(EventError::NotAString { field, found });
                }
            }
        }
        if let Some(error) = first_error {
            return Ok(Err(error));
        }
        let Some(event_type) = event_type else {
            return Ok(Err(EventError::MissingField { field: EVENT_TYPE }));
        };
        let Some(event_payload) = event_payload else {
            return Ok(Err(EventError::MissingField {
                field: EVENT_PAYLOAD,
            }));
        };
        let event = match Event::new(event_type, event_payload) {
            Ok(event) => event,
            Err(error) => return Ok(Err(error)),
        };
        if let Some(key) = &idempotency_key {
            if let Err(problem) = check_idempotency_key(key) {
                return Ok(Err(EventError::BadKey { problem }));
            }
        }
        let occurred_at = match occurred_at.as_deref().map(parse_rfc3339).transpose() {
            Ok(time) => time,
            Err(problem) => return Ok(Err(EventError::BadTime { problem })),
        };
        Ok(Ok((event.with_occurred_at(occurred_at), idempotency_key)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Err(EventError::NotAnObject { found: "an array" }))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Err(EventError::NotAnObject { found: "a string" }))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Err(EventError::NotAnObject { found: "a boolean" }))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Err(EventError::NotAnObject { found: "a number" }))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Err(EventError::NotAnObject { found: "a number" }))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Err(EventError::NotAnObject { found: "a number" }))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Err(EventError::NotAnObject { found: "null" }))
    }
}

/// An object key, owned: keys are short and an unknown one is quoted in the error.
struct KeyName(String);

impl<'de> Deserialize<'de> for KeyName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(KeyName)
    }
}

/// The value of a known field: a string, or the kind of JSON value found instead.
enum FieldValue {
    String(String),
    Other(&'static str),
}

impl<'de> Deserialize<'de> for FieldValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(FieldValueVisitor)
    }
}

struct FieldValueVisitor;

impl<'de> Visitor<'de> for FieldValueVisitor {
    type Value = FieldValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<FieldValue, E> {
        Ok(FieldValue::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<FieldValue, E> {
        Ok(FieldValue::String(v))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<FieldValue, E> {
        Ok(FieldValue::Other("a boolean"))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<FieldValue, E> {
        Ok(FieldValue::Other("a number"))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<FieldValue, E> {
        Ok(FieldValue::Other("a number"))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<FieldValue, E> {
        Ok(FieldValue::Other("a number"))
    }

    fn visit_unit<E: de::Error>(self) -> Result<FieldValue, E> {
        Ok(FieldValue::Other("null"))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<FieldValue, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(FieldValue::Other("an array"))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FieldValue, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(FieldValue::Other("an object"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_a_well_formed_event() {
        let event = parse_event(br#"{"event_type":"login","event_payload":"user 42"}"#).unwrap();
        assert_eq!(event.event_type(), "login");
        assert_eq!(event.event_payload(), "user 42");
    }

    #[test]
    fn accepts_an_empty_payload_and_keys_in_any_order() {
        let event = parse_event(br#" {"event_payload":"","event_type":"x"} "#).unwrap();
        assert_eq!(event.event_payload(), "");
    }

    #[test]
    fn accepts_a_type_of_exactly_255_multibyte_characters() {
        let t = "é".repeat(255);
        let body = format!(r#"{{"event_type":"{t}","event_payload":"p"}}"#);
        assert_eq!(parse_event(body.as_bytes()).unwrap().event_type(), t);
    }

    #[test]
    fn refuses_malformed_bodies_as_malformed() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "empty body"),
            (b"{", "truncated object"),
            (
                b"{\"event_type\":\"a\",\"event_payload\":\"b\"} x",
                "trailing garbage",
            ),
            (b"\xff\xfe{}", "not UTF-8"),
            (b"[]", "an array"),
            (b"\"login\"", "a string"),
            (b"null", "null"),
            (b"42", "a number"),
            (b"{\"event_type\":\"a\",}", "trailing comma"),
        ];
        for (body, reason) in cases {
            let err = parse_event(body).expect_err(reason);
            assert!(
                err.is_malformed(),
                "{reason}: expected malformed, got {err:?}"
            );
        }
    }

    #[test]
    fn refuses_rule_violations_naming_the_field() {
        let long = "t".repeat(256);
        let long_body = format!(r#"{{"event_type":"{long}","event_payload":"p"}}"#);
        let cases: Vec<(&[u8], &str, &str)> = vec![
            (br#"{"event_payload":"p"}"#, "event_type", "missing type"),
            (br#"{"event_type":"t"}"#, "event_payload", "missing payload"),
            (
                br#"{"event_type":"t","event_payload":"p","x":1}"#,
                "x",
                "unknown key",
            ),
            (
                br#"{"event_type":1,"event_payload":"p"}"#,
                "event_type",
                "number type",
            ),
            (
                br#"{"event_type":"t","event_payload":{"a":1}}"#,
                "event_payload",
                "object payload",
            ),
            (
                br#"{"event_type":"t","event_payload":null}"#,
                "event_payload",
                "null payload",
            ),
            (
                br#"{"event_type":"","event_payload":"p"}"#,
                "event_type",
                "empty type",
            ),
            (long_body.as_bytes(), "event_type", "256-character type"),
            (
                br#"{"event_type":"a\u0000b","event_payload":"p"}"#,
                "event_type",
                "NUL in type",
            ),
            (
                br#"{"event_type":"t","event_payload":"\u0000"}"#,
                "event_payload",
                "NUL in payload",
            ),
            (
                br#"{"event_type":"t","event_type":"u","event_payload":"p"}"#,
                "event_type",
                "duplicate key",
            ),
            (
                br#"{"event_type":"t","event_payload":"p","occurred_at":"2026-12-07T03:00:00"}"#,
                "occurred_at",
                "a time without an offset",
            ),
            (
                br#"{"event_type":"t","event_payload":"p","occurred_at":"2026-02-30T03:00:00Z"}"#,
                "occurred_at",
                "a day February does not have",
            ),
            (
                br#"{"event_type":"t","event_payload":"p","occurred_at":"yesterday"}"#,
                "occurred_at",
                "not a date-time",
            ),
            (
                br#"{"event_type":"t","event_payload":"p","occurred_at":1796612400}"#,
                "occurred_at",
                "a number of seconds",
            ),
            (
                br#"{"event_type":"t","event_payload":"p","occurred_at":null}"#,
                "occurred_at",
                "null",
            ),
            (
                br#"{"occurred_at":"2026-12-07T03:00:00Z","occurred_at":"2026-12-07T03:00:00Z","event_type":"t","event_payload":"p"}"#,
                "occurred_at",
                "occurred_at twice",
            ),
        ];
        for (body, field, reason) in cases {
            let err = parse_event(body).expect_err(reason);
            assert!(
                !err.is_malformed(),
                "{reason}: expected a rule violation, got {err:?}"
            );
            assert_eq!(err.field(), Some(field), "{reason}: {err}");
            assert!(
                err.to_string().contains(field),
                "{reason}: message `{err}` names no field"
            );
        }
    }

    #[test]
    fn an_event_keeps_the_instant_its_occurred_at_names() {
        let body = br#"{"event_type":"t","event_payload":"p","occurred_at":"2026-12-07T04:00:00.123+01:00"}"#;
        let event = parse_event(body).unwrap();
        let expected = crate::calendar::parse_rfc3339("2026-12-07T03:00:00.123Z").unwrap();
        assert_eq!(event.occurred_at(), Some(expected));
        let plain = parse_event(br#"{"event_type":"t","event_payload":"p"}"#).unwrap();
        assert_eq!(plain.occurred_at(), None, "absent stays absent");
    }

    #[test]
    fn an_event_is_written_as_json_that_reads_back_the_same() {
        let at = crate::calendar::parse_rfc3339("2026-12-07T04:00:00.123+01:00").unwrap();
        let event = Event::new("t", "p").unwrap().with_occurred_at(Some(at));
        let json = serde_json::to_string(&event).unwrap();
        assert_eq!(
            json,
            r#"{"event_type":"t","event_payload":"p","occurred_at":"2026-12-07T03:00:00.123000000Z"}"#
        );
        assert_eq!(parse_event(json.as_bytes()).unwrap(), event);
        let plain = Event::new("t", "p").unwrap();
        assert_eq!(
            serde_json::to_string(&plain).unwrap(),
            r#"{"event_type":"t","event_payload":"p"}"#,
            "no occurred_at written when there is none"
        );
    }

    #[test]
    fn a_request_takes_occurred_at_but_no_key_and_an_events_file_neither() {
        let with_time =
            br#"{"event_type":"t","event_payload":"p","occurred_at":"2026-12-07T03:00:00Z"}"#;
        let with_key = br#"{"event_type":"t","event_payload":"p","idempotency_key":"k"}"#;
        let cases = [
            (
                Fields::Event,
                &with_time[..],
                None,
                "a request takes a time",
            ),
            (
                Fields::Event,
                &with_key[..],
                Some("idempotency_key"),
                "a request's key is a header",
            ),
            (
                Fields::BatchItem,
                &with_time[..],
                None,
                "a batch item takes a time",
            ),
            (
                Fields::BatchItem,
                &with_key[..],
                None,
                "a batch item takes a key",
            ),
            (
                Fields::EventsFile,
                &with_time[..],
                Some("occurred_at"),
                "the propagator stamps the time",
            ),
            (
                Fields::EventsFile,
                &with_key[..],
                Some("idempotency_key"),
                "and the key",
            ),
        ];
        for (fields, json, unknown, why) in cases {
            let checked = check_document(json, fields).unwrap();
            match (checked, unknown) {
                (Ok(_), None) => {}
                (Err(error @ EventError::UnknownField { .. }), Some(field)) => {
                    assert_eq!(error.field(), Some(field), "{why}");
                    assert!(error.to_string().contains(fields.known()), "{why}: {error}");
                }
                (other, _) => panic!("{why}: {other:?}"),
            }
        }
    }
}
