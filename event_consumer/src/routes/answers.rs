//! The answers the service builds after routing: to the outcome of a stored job, and the
//! refusals the server and the pipeline give (busy, shutting down, draining, a bug).

use std::fmt::Write as _;

use crate::db::{Outcome, Saved, StoredEvent};
use crate::http::{Response, Status};

/// The answer to a job once the pipeline has its outcome.
pub fn answer_to(outcome: &Outcome) -> Response {
    match outcome {
        Outcome::Saved(Saved::Created(row)) => Response::json(Status::Created, row_json(row)),
        // The mark a client can tell a replay by (Stripe's header), where the body is the same.
        Outcome::Saved(Saved::Existing(row)) => {
            Response::json(Status::Ok, row_json(row)).with_header("Idempotent-Replayed", "true")
        }
        Outcome::SavedBatch(saved) => batch_results(saved),
        Outcome::Ready => Response::json(Status::Ok, br#"{"status":"ready"}"#.to_vec()),
        Outcome::Unavailable => retry_later("database unavailable, retry in a moment", "2"),
        Outcome::Internal => internal_error(),
    }
}

/// The answer to a request that failed because of a bug (a panic); the cause is logged.
pub fn internal_error() -> Response {
    Response::error(
        Status::InternalServerError,
        "internal error, it has been logged",
    )
}

/// The answer to a request the full queue did not take.
pub fn queue_full() -> Response {
    retry_later(
        "server busy: too many events waiting to be stored, retry in a moment",
        "1",
    )
}

pub fn shutting_down() -> Response {
    retry_later("shutting down, retry in a moment", "1")
}

/// `/readyz` while draining before a stop: not ready, so a load balancer takes this consumer
/// out; no `Retry-After`, since it will not be back.
pub fn draining() -> Response {
    Response::error(
        Status::ServiceUnavailable,
        "draining before a stop: send new work to another consumer",
    )
}

/// The answer to a connection past `max_connections`, written by the acceptor.
pub fn too_many_connections() -> Response {
    retry_later("too many open connections, retry in a moment", "1")
}

/// 503 with `Retry-After: seconds`: a refusal the same request may try again.
fn retry_later(message: &str, seconds: &'static str) -> Response {
    Response::error(Status::ServiceUnavailable, message).with_header("Retry-After", seconds)
}

fn row_json(row: &StoredEvent) -> Vec<u8> {
    format!(r#"{{"id":{},"received_at":"{}"}}"#, row.id, row.received_at).into_bytes()
}

/// 201 with one result per item; 200 when every item was already stored.
fn batch_results(saved: &[Saved]) -> Response {
    let all_existing = saved.iter().all(|s| matches!(s, Saved::Existing(_)));
    let mut body = String::with_capacity(16 + saved.len() * 80);
    body.push_str(r#"{"results":["#);
    for (i, s) in saved.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        let status = match s {
            Saved::Created(_) => "created",
            Saved::Existing(_) => "duplicate",
        };
        let row = s.stored();
        // Written in place: a String's fmt::Write cannot fail.
        let _ = write!(
            body,
            r#"{{"id":{},"received_at":"{}","status":"{status}"}}"#,
            row.id, row.received_at
        );
    }
    body.push_str("]}");
    let status = if all_existing {
        Status::Ok
    } else {
        Status::Created
    };
    Response::json(status, body.into_bytes())
}
