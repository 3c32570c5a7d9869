//! A batch of events: a JSON array whose every item is an event with the rules of
//! [`parse_event`](crate::parse_event). One visitor and one error type ([`BatchError`]: the
//! item's index, the field at fault) for both readers of such an array:
//!
//! - `POST /events` ([`parse_json_batch`], or NDJSON, one item per line: [`parse_ndjson_batch`]):
//!   an item may carry its `idempotency_key` (the rules of the `Idempotency-Key` header) and
//!   its `occurred_at`, at most `max_batch_events` items.
//! - The propagator's events file ([`read_event_list`]): a batch without keys or times (either
//!   is an unknown field), of any length, read from the file as it is parsed.
//!
//! All or nothing: the first bad item fails the whole batch, with its index, so a client never
//! gets "a prefix stored, then an error" and a retry cannot duplicate a stored part. Every item
//! is still parsed to the end, so that broken JSON further on is reported as such (a 400, not
//! the 422 of an earlier item).

use std::fmt;
use std::io::{self, BufRead};

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::event::{check_document, Checked, Event, EventError, EventSeed, Fields};

/// One item of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchItem {
    pub event: Event,
    pub idempotency_key: Option<String>,
}

/// Why a batch is refused; nothing of it is stored (or, of an events file, used). `Display` is
/// worded for `POST /events`, whose answers quote it; the events file words its own message
/// from the same variants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchError {
    /// The body is not UTF-8 (400). The events file reports this as invalid JSON.
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
    /// More items than the limit (413; an events file has none).
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

/// A JSON array of items, at most `max_items`.
pub fn parse_json_batch(body: &[u8], max_items: usize) -> Result<Vec<BatchItem>, BatchError> {
    utf8(body)?;
    let mut items = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(body);
    let rules = Rules {
        fields: Fields::BatchItem,
        max_items,
    };
    // First broken JSON (a serde error), then the batch's own verdict.
    parse_array(&mut de, rules, |item| items.push(item)).map_err(|e| {
        BatchError::InvalidJson {
            index: None,
            message: e.to_string(),
        }
    })??;
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
        let checked =
            check_document(line, Fields::BatchItem).map_err(|e| BatchError::InvalidJson {
                index: Some(index),
                message: e.to_string(),
            })?;
        let (event, idempotency_key) =
            checked.map_err(|error| BatchError::Invalid { index, error })?;
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

/// The events file: a batch without keys read from `reader` (a leading UTF-8 byte order mark
/// is skipped), each valid event handed to `each` as soon as it is parsed, so that neither the
/// text nor a list of events is ever held whole. After a bad item `each` is not called again.
///
/// The outer error is the reader's (the file could not be read); the inner result is what the
/// file holds: how many events were handed over, or why the batch is refused.
pub fn read_event_list<R: io::Read>(
    reader: R,
    mut each: impl FnMut(Event),
) -> io::Result<Result<usize, BatchError>> {
    let mut reader = io::BufReader::new(reader);
    if reader.fill_buf()?.starts_with(crate::file::UTF8_BOM) {
        reader.consume(crate::file::UTF8_BOM.len());
    }
    let mut de = serde_json::Deserializer::from_reader(reader);
    let rules = Rules {
        fields: Fields::EventsFile,
        max_items: usize::MAX,
    };
    match parse_array(&mut de, rules, |item| each(item.event)) {
        Ok(outcome) => Ok(outcome),
        Err(e) if e.is_io() => Err(e.into()),
        Err(e) => Ok(Err(BatchError::InvalidJson {
            index: None,
            message: e.to_string(),
        })),
    }
}

fn utf8(body: &[u8]) -> Result<(), BatchError> {
    std::str::from_utf8(body)
        .map(|_| ())
        .map_err(|e| BatchError::NotUtf8 {
            valid_up_to: e.valid_up_to(),
        })
}

/// What a reader of the array accepts.
#[derive(Debug, Clone, Copy)]
struct Rules {
    /// The keys an item may carry besides its type and payload.
    fields: Fields,
    max_items: usize,
}

/// The one array parser: the array, each item checked and handed to `each` until the first bad
/// one, then the end of the input (only whitespace may follow). A serde error is broken JSON
/// (or the reader's error); the inner result is the batch's verdict: how many items, or why not.
fn parse_array<'de, R: serde_json::de::Read<'de>>(
    de: &mut serde_json::Deserializer<R>,
    rules: Rules,
    each: impl FnMut(BatchItem),
) -> Result<Result<usize, BatchError>, serde_json::Error> {
    let outcome = ArraySeed { rules, each }.deserialize(&mut *de)?;
    de.end()?;
    Ok(match outcome {
        Ok(0) => Err(BatchError::Empty),
        other => other,
    })
}

struct ArraySeed<F> {
    rules: Rules,
    each: F,
}

type Verdict = Result<usize, BatchError>;

impl<'de, F: FnMut(BatchItem)> DeserializeSeed<'de> for ArraySeed<F> {
    type Value = Verdict;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Verdict, D::Error> {
        deserializer.deserialize_any(self)
    }
}

fn not_an_array<E>(found: &'static str) -> Result<Verdict, E> {
    Ok(Err(BatchError::NotAnArray { found }))
}

impl<'de, F: FnMut(BatchItem)> Visitor<'de> for ArraySeed<F> {
    type Value = Verdict;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of events")
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Verdict, A::Error> {
        let Rules { fields, max_items } = self.rules;
        let mut first_error = None;
        let mut index = 0;
        while let Some(checked) = seq.next_element_seed(EventSeed { fields })? {
            if first_error.is_none() {
                first_error = if index == max_items {
                    Some(BatchError::TooMany { max: max_items })
                } else {
                    self.take(index, checked)
                };
            }
            index += 1;
        }
        Ok(match first_error {
            Some(error) => Err(error),
            None => Ok(index),
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Verdict, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        not_an_array("an object")
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Verdict, E> {
        not_an_array("a string")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Verdict, E> {
        not_an_array("a boolean")
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Verdict, E> {
        not_an_array("a number")
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Verdict, E> {
        not_an_array("a number")
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Verdict, E> {
        not_an_array("a number")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Verdict, E> {
        not_an_array("null")
    }
}

impl<F: FnMut(BatchItem)> ArraySeed<F> {
    /// Hands a good item over; a bad one becomes the batch's error.
    fn take(&mut self, index: usize, checked: Checked) -> Option<BatchError> {
        match checked {
            Ok((event, idempotency_key)) => {
                (self.each)(BatchItem {
                    event,
                    idempotency_key,
                });
                None
            }
            Err(error) => Some(BatchError::Invalid { index, error }),
        }
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

    /// The events file's reading, collected.
    fn event_list(json: &[u8]) -> Result<Vec<Event>, BatchError> {
        let mut events = Vec::new();
        let read = read_event_list(json, |event| events.push(event)).expect("a slice reads");
        read.map(|n| {
            assert_eq!(n, events.len(), "the count is of the events handed over");
            events
        })
    }

    #[test]
    fn an_events_file_error_names_the_index_and_field_of_the_bad_item() {
        let json =
            br#"[{"event_type":"a","event_payload":"b"},{"event_type":"","event_payload":"b"}]"#;
        let error = event_list(json).unwrap_err();
        assert_eq!(
            (error.index(), error.field()),
            (Some(1), Some("event_type"))
        );
    }

    #[test]
    fn an_events_file_after_a_utf8_byte_order_mark_is_accepted() {
        let json = b"\xEF\xBB\xBF[{\"event_type\":\"a\",\"event_payload\":\"b\"}]";
        let events = event_list(json).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event_type(), "a");
    }

    #[test]
    fn an_events_file_is_a_batch_without_keys() {
        let json = br#"[{"event_type":"a","event_payload":"b","idempotency_key":"k-1"}]"#;
        assert_eq!(
            parse_json_batch(json, 10).unwrap().len(),
            1,
            "a batch takes a key"
        );
        let error = event_list(json).unwrap_err();
        assert_eq!(
            (error.index(), error.field()),
            (Some(0), Some("idempotency_key")),
            "the events file refuses it as an unknown field: {error}"
        );
    }

    #[test]
    fn an_events_file_and_a_json_batch_of_the_same_text_agree() {
        let cases: [(&[u8], &str); 8] = [
            (br#"[{"event_type":"a","event_payload":"b"}, {"event_payload":"\u00e9","event_type":"c"}]"#, "two events"),
            (br#"[{"event_type":"a","event_payload":"b"},{"event_type":"","event_payload":"b"}]"#, "a bad second item"),
            (br#"[{"event_type":"","event_payload":"b"},{"#, "a bad item, then broken JSON"),
            (b"[]", "empty"),
            (b"{}", "an object"),
            (b"[{]", "broken JSON"),
            (br#"[{"event_type":"a","event_payload":"b"}] x"#, "trailing garbage"),
            (b"", "nothing at all"),
        ];
        for (json, reason) in cases {
            let from_file = event_list(json);
            let as_batch = parse_json_batch(json, usize::MAX)
                .map(|items| items.into_iter().map(|item| item.event).collect::<Vec<_>>());
            match (from_file, as_batch) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{reason}"),
                (Err(a), Err(b)) => {
                    assert_eq!(a.kind(), b.kind(), "{reason}");
                    assert_eq!((a.index(), a.field()), (b.index(), b.field()), "{reason}");
                }
                (a, b) => panic!("{reason}: as a file {a:?}, as a batch {b:?}"),
            }
        }
    }

    #[test]
    fn an_events_file_that_cannot_be_read_is_the_readers_error() {
        struct Failing;
        impl io::Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::from(io::ErrorKind::PermissionDenied))
            }
        }
        let error = read_event_list(Failing, |_| {}).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::PermissionDenied);
        let mut midway = io::Read::chain(&b"[{\"event_type\":\"a\","[..], Failing);
        let error = read_event_list(&mut midway, |_| {}).unwrap_err();
        assert_eq!(
            error.kind(),
            io::ErrorKind::PermissionDenied,
            "an error after the first bytes too"
        );
    }
}
