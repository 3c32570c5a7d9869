//! The bodies of `POST /event` and `POST /events`: media type, content coding, then parsed into
//! validated events, or refused with the status and the field at fault.

use std::borrow::Cow;

use common::batch::{parse_json_batch, parse_ndjson_batch, BatchError, BatchErrorKind};
use common::event::check_idempotency_key;
use common::parse_event;

use super::router::Action;
use crate::content_coding::{self, CodingError};
use crate::http::{Body, Request, Response, Status};

/// What the router enforces on bodies once they are read (the HTTP layer enforced the sizes of
/// what arrived; these apply to what it decodes to).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyRules {
    pub max_body_bytes: usize,
    pub max_batch_bytes: usize,
    pub max_batch_events: usize,
}

impl BodyRules {
    pub fn from_config(config: &common::config::ConsumerConfig) -> BodyRules {
        BodyRules {
            max_body_bytes: config.max_body_bytes,
            max_batch_bytes: config.max_batch_bytes,
            max_batch_events: config.max_batch_events,
        }
    }

    /// The largest a body of this kind may be once decoded.
    fn max_decoded(&self, body: Body) -> usize {
        match body {
            Body::Event => self.max_body_bytes,
            Body::Batch => self.max_batch_bytes,
            Body::Ignored => 0,
        }
    }
}

/// `POST /event`: one JSON object, with an optional `Idempotency-Key`.
pub(super) fn post_event(request: &mut Request, rules: &BodyRules) -> Action {
    if let Some(content_type) = request.content_type.as_deref() {
        if !is_json(content_type) {
            return wrong_type("application/json", content_type);
        }
    }
    // Taken before the body is borrowed, checked after it is decoded: a coding error is the
    // first refusal, as it always was.
    let idempotency_key = request.idempotency_key.take();
    let body = match decode(request, rules.max_decoded(Body::Event)) {
        Ok(body) => body,
        Err(refusal) => return Action::Respond(refusal),
    };
    let idempotency_key = match idempotency_key {
        Some(key) => match check_idempotency_key(&key) {
            Ok(()) => Some(key),
            Err(problem) => {
                return Action::Respond(error_with_field(
                    Status::BadRequest,
                    &format!("Idempotency-Key {problem}"),
                    "Idempotency-Key",
                ))
            }
        },
        None => None,
    };
    match parse_event(&body) {
        Ok(event) => Action::Store {
            event,
            idempotency_key,
        },
        Err(e) => {
            let status = if e.is_malformed() {
                Status::BadRequest
            } else {
                Status::UnprocessableContent
            };
            Action::Respond(match e.field() {
                Some(field) => error_with_field(status, &e.to_string(), field),
                None => Response::error(status, &e.to_string()),
            })
        }
    }
}

/// `POST /events`: a JSON array or NDJSON of items, all valid or none stored.
pub(super) fn post_events(request: &mut Request, rules: &BodyRules) -> Action {
    let ndjson = match request.content_type.as_deref() {
        None => false,
        Some(ct) if is_json(ct) => false,
        Some(ct) if is_media_type(ct, "application/x-ndjson") => true,
        Some(ct) => return wrong_type("application/json (an array) or application/x-ndjson", ct),
    };
    let body = match decode(request, rules.max_decoded(Body::Batch)) {
        Ok(body) => body,
        Err(refusal) => return Action::Respond(refusal),
    };
    let parsed = if ndjson {
        parse_ndjson_batch(&body, rules.max_batch_events)
    } else {
        parse_json_batch(&body, rules.max_batch_events)
    };
    match parsed {
        Ok(items) => Action::StoreBatch { items },
        Err(e) => Action::Respond(batch_refusal(&e)),
    }
}

/// The body with its `Content-Encoding` undone, at most `max_bytes` of it.
fn decode(request: &Request, max_bytes: usize) -> Result<Cow<'_, [u8]>, Response> {
    content_coding::decode(
        request.content_encoding.as_deref(),
        &request.body,
        max_bytes,
    )
    .map_err(|e| coding_refusal(&e))
}

/// 415, quoting the media type that was sent.
fn wrong_type(expected: &str, got: &str) -> Action {
    Action::Respond(Response::error(
        Status::UnsupportedMediaType,
        &format!("Content-Type must be {expected}, got `{}`", printable(got)),
    ))
}

fn batch_refusal(error: &BatchError) -> Response {
    let status = match error.kind() {
        BatchErrorKind::Malformed => Status::BadRequest,
        BatchErrorKind::TooLarge => Status::ContentTooLarge,
        BatchErrorKind::Invalid => Status::UnprocessableContent,
    };
    let mut body = serde_json::json!({ "error": error.to_string() });
    if let Some(index) = error.index() {
        body["index"] = index.into();
    }
    if let Some(field) = error.field() {
        body["field"] = field.into();
    }
    Response::json(status, body.to_string().into_bytes())
}

fn coding_refusal(error: &CodingError) -> Response {
    let status = match error {
        CodingError::Unsupported(_) => Status::UnsupportedMediaType,
        CodingError::Corrupt(_) => Status::BadRequest,
        CodingError::TooLarge { .. } => Status::ContentTooLarge,
    };
    Response::error(status, &error.to_string())
}

/// An error body naming the field at fault: `{"error": "...", "field": "..."}`.
fn error_with_field(status: Status, message: &str, field: &str) -> Response {
    let body = serde_json::json!({ "error": message, "field": field });
    Response::json(status, body.to_string().into_bytes())
}

/// `application/json`, with parameters such as `charset=utf-8` allowed; case-insensitive.
fn is_json(content_type: &str) -> bool {
    is_media_type(content_type, "application/json")
}

fn is_media_type(content_type: &str, wanted: &str) -> bool {
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    media_type.eq_ignore_ascii_case(wanted)
}

/// A header value quoted in an error message: at most 64 characters, no control characters.
fn printable(value: &str) -> String {
    value.chars().filter(|c| !c.is_control()).take(64).collect()
}
