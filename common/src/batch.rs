//! A batch of events (`POST /events`): a JSON array or NDJSON (one item per line), each item
//! an event with the rules of [`parse_event`](crate::parse_event), optionally with its
//! `idempotency_key` (the rules of the `Idempotency-Key` header).
//!
//! All or nothing: the first bad item fails the whole batch, with its index, so a client never
//! gets "a prefix stored, then an error" and a retry cannot duplicate a stored part.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::event::{CheckedItem, Event, EventError};

/// One item of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchItem {
    pub event: Event,
    pub idempotency_key: Option<String>,
}

/// Why a batch is refused; nothing of it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchError {
    /// The body is not UTF-8 (400).
    NotUtf8 { valid_up_to: usize },
    /// The body (or, in NDJSON, the line of item `index`) is not JSON (400).
    InvalidJson {
        index: Option<usize>,
        message: String,
    },
    /// A JSON body that is not an array (400).
    NotAnArray { found: &'static str },
    /// No item at all (422).
    Empty,
    /// More items than the limit (413).
    TooMany { max: usize },
    /// Item `index` breaks the event rules (422).
    Invalid { index: usize, error: EventError },
}

/// How the answer classes the failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchErrorKind {
    /// 400: not a readable batch.
    Malformed,
    /// 413: over `max_batch_events`.
    TooLarge,
    /// 422: readable, but breaks the rules.
    Invalid,
}

impl BatchError {
    pub fn kind(&self) -> BatchErrorKind {
        match self {
            BatchError::NotUtf8 { .. }
            | BatchError::InvalidJson { .. }
            | BatchError::NotAnArray { .. } => BatchErrorKind::Malformed,
            BatchError::TooMany { .. } => BatchErrorKind::TooLarge,
            BatchError::Empty | BatchError::Invalid { .. } => BatchErrorKind::Invalid,
        }
    }

    /// The index of the item at fault, from 0.
    pub fn index(&self) -> Option<usize> {
        match self {
            BatchError::InvalidJson { index, .. } => *index,
            BatchError::Invalid { index, .. } => Some(*index),
            _ => None,
        }
    }

    /// The field of the item at fault, when one is.
    pub fn field(&self) -> Option<&str> {
        match self {
            BatchError::Invalid { error, .. } => error.field(),
            _ => None,
        }
    }
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BatchError::NotUtf8 { valid_up_to } => {
                write!(
                    f,
                    "body is not valid UTF-8 (invalid byte at offset {valid_up_to})"
                )
            }
            BatchError::InvalidJson {
                index: Some(index),
                message,
            } => write!(f, "line of item {index} is not valid JSON: {message}"),
            BatchError::InvalidJson {
                index: None,
                message,
            } => write!(f, "body is not valid JSON: {message}"),
            BatchError::NotAnArray { found } => {
                write!(f, "body must be a JSON array of events, found {found}")
            }
            BatchError::Empty => write!(f, "the batch holds no events"),
            BatchError::TooMany { max } => {
                write!(f, "the batch holds more than {max} events")
            }
            BatchError::Invalid { index, error } => write!(f, "item {index}: {error}"),
        }
    }
}

impl std::error::Error for BatchError {}

fn utf8(body: &[u8]) -> Result<(), BatchError> {
    std::str::from_utf8(body)
        .map(|_| ())
        .map_err(|e| BatchError::NotUtf8 {
            valid_up_to: e.valid_up_to(),
        })
}

/// A JSON array of items, at most `max_items`.
pub fn parse_json_batch(body: &[u8], max_items: usize) -> Result<Vec<BatchItem>, BatchError> {
    utf8(body)?;
    let mut de = serde_json::Deserializer::from_slice(body);
    let outcome = ArraySeed { max_items }
        .deserialize(&mut de)
        .and_then(|outcome| de.end().map(|()| outcome))
        .map_err(|e| BatchError::InvalidJson {
            index: None,
            message: e.to_string(),
        })?;
    let items = outcome?;
    if items.is_empty() {
        return Err(BatchError::Empty);
    }
    Ok(items)
}

/// NDJSON: one item per line; blank lines are ignored, a final newline is optional. The index
/// of an item counts items, not lines.
pub fn parse_ndjson_batch(body: &[u8], max_items: usize) -> Result<Vec<BatchItem>, BatchError> {
    utf8(body)?;
    let mut items = Vec::new();
    for line in body.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let index = items.len();
        if index == max_items {
            return Err(BatchError::TooMany { max: max_items });
        }
        let CheckedItem(outcome) =
            serde_json::from_slice(line).map_err(|e| BatchError::InvalidJson {
                index: Some(index),
                message: e.to_string(),
            })?;
        let (event, idempotency_key) =
            outcome.map_err(|error| BatchError::Invalid { index, error })?;
        items.push(BatchItem {
            event,
            idempotency_key,
        });
    }
    if items.is_empty() {
        return Err(BatchError::Empty);
    }
    Ok(items)
}

struct ArraySeed {
    max_items: usize,
}

impl<'de> DeserializeSeed<'de> for ArraySeed {
    type Value = Result<Vec<BatchItem>, BatchError>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl ArraySeed {
    fn not_an_array<E>(found: &'static str) -> Result<Result<Vec<BatchItem>, BatchError>, E> {
        Ok(Err(BatchError::NotAnArray { found }))
    }
}

impl<'de> Visitor<'de> for ArraySeed {
    type Value = Result<Vec<BatchItem>, BatchError>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of events")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        let mut first_error = None;
        let mut index = 0;
        // Every item is parsed to the end, so that broken JSON further on is a 400, not the
        // 422 of an earlier item; nothing is kept after the first bad one.
        while let Some(CheckedItem(outcome)) = seq.next_element::<CheckedItem>()? {
            if first_error.is_none() {
                if index == self.max_items {
                    first_error = Some(BatchError::TooMany {
                        max: self.max_items,
                    });
                    items = Vec::new();
                } else {
                    match outcome {
                        Ok((event, idempotency_key)) => items.push(BatchItem {
                            event,
                            idempotency_key,
                        }),
                        Err(error) => {
                            first_error = Some(BatchError::Invalid { index, error });
                            items = Vec::new();
                        }
                    }
                }
            }
            index += 1;
        }
        Ok(match first_error {
            Some(error) => Err(error),
            None => Ok(items),
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Self::not_an_array("an object")
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Self::not_an_array("a string")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Self::not_an_array("a boolean")
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Self::not_an_array("a number")
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Self::not_an_array("a number")
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Self::not_an_array("a number")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Self::not_an_array("null")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(t: &str, key: Option<&str>) -> String {
        match key {
            Some(k) => {
                format!(r#"{{"event_type":"{t}","event_payload":"p","idempotency_key":"{k}"}}"#)
            }
            None => format!(r#"{{"event_type":"{t}","event_payload":"p"}}"#),
        }
    }

    #[test]
    fn parses_an_array_and_ndjson_to_the_same_items_in_order() {
        let items = [
            item("a", Some("k-1")),
            item("b", None),
            item("c", Some("k-3")),
        ];
        let array = format!("[{}]", items.join(","));
        let ndjson = format!("{}\n\n{}\r\n{}", items[0], items[1], items[2]);
        let from_array = parse_json_batch(array.as_bytes(), 10).unwrap();
        let from_ndjson = parse_ndjson_batch(ndjson.as_bytes(), 10).unwrap();
        assert_eq!(from_array, from_ndjson);
        assert_eq!(from_array.len(), 3);
        assert_eq!(from_array[0].idempotency_key.as_deref(), Some("k-1"));
        assert_eq!(from_array[1].idempotency_key, None);
        assert_eq!(from_array[2].event.event_type(), "c");
    }

    #[test]
    fn the_first_bad_item_fails_the_batch_with_its_index_and_field() {
        let mut items: Vec<String> = (0..10).map(|i| item(&format!("t{i}"), None)).collect();
        items[7] = r#"{"event_type":"","event_payload":"p"}"#.into();
        items[8] = r#"{"event_type":5,"event_payload":"p"}"#.into();
        let array = format!("[{}]", items.join(","));
        let error = parse_json_batch(array.as_bytes(), 100).unwrap_err();
        assert_eq!(error.index(), Some(7));
        assert_eq!(error.field(), Some("event_type"));
        assert_eq!(error.kind(), BatchErrorKind::Invalid);
        let error = parse_ndjson_batch(items.join("\n").as_bytes(), 100).unwrap_err();
        assert_eq!(error.index(), Some(7));
    }

    #[test]
    fn bad_batches_get_the_right_class_of_answer() {
        let cases: [(&[u8], BatchErrorKind, &str); 9] = [
            (b"[", BatchErrorKind::Malformed, "truncated JSON"),
            (b"{}", BatchErrorKind::Malformed, "an object, not an array"),
            (b"\xff[]", BatchErrorKind::Malformed, "not UTF-8"),
            (b"[]", BatchErrorKind::Invalid, "empty"),
            (
                b"[1]",
                BatchErrorKind::Invalid,
                "an item that is not an object",
            ),
            (
                br#"[{"event_type":"a","event_payload":"b","idempotency_key":""}]"#,
                BatchErrorKind::Invalid,
                "an empty key",
            ),
            (
                br#"[{"event_type":"a","event_payload":"b","idempotency_key":"has space"}]"#,
                BatchErrorKind::Invalid,
                "a key with a space",
            ),
            (
                br#"[{"event_type":"a","event_payload":"b","extra":1}]"#,
                BatchErrorKind::Invalid,
                "an unknown key",
            ),
            (
                br#"[{"event_type":"a","event_payload":"b"}] x"#,
                BatchErrorKind::Malformed,
                "trailing garbage",
            ),
        ];
        for (body, kind, why) in cases {
            let error = parse_json_batch(body, 10).expect_err(why);
            assert_eq!(error.kind(), kind, "{why}: {error}");
        }
        let ndjson = format!("{}\nnot json\n", item("a", None));
        let error = parse_ndjson_batch(ndjson.as_bytes(), 10).unwrap_err();
        assert_eq!(
            (error.kind(), error.index()),
            (BatchErrorKind::Malformed, Some(1)),
            "a line that is not JSON is a 400 naming its item"
        );
        assert_eq!(parse_ndjson_batch(b"\n\n", 10), Err(BatchError::Empty));
    }

    #[test]
    fn more_items_than_the_limit_is_too_large() {
        let three = format!(
            "[{},{},{}]",
            item("a", None),
            item("b", None),
            item("c", None)
        );
        assert!(parse_json_batch(three.as_bytes(), 3).is_ok());
        assert_eq!(
            parse_json_batch(three.as_bytes(), 2),
            Err(BatchError::TooMany { max: 2 })
        );
        let lines = format!(
            "{}\n{}\n{}\n",
            item("a", None),
            item("b", None),
            item("c", None)
        );
        assert_eq!(
            parse_ndjson_batch(lines.as_bytes(), 2),
            Err(BatchError::TooMany { max: 2 })
        );
    }
}
