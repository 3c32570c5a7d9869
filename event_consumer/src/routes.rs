//! Routing: our own small request in, a decision out. No sockets and no database here, so
//! every rule of the HTTP contract is testable as a plain function.

use common::batch::{parse_json_batch, parse_ndjson_batch, BatchError, BatchErrorKind, BatchItem};
use common::config::Secret;
use common::event::check_idempotency_key;
use common::{parse_event, Event};

use crate::content_coding::{self, CodingError};

use crate::db::{Outcome, Saved, StoredEvent};
use crate::http::{Method, Request, RequestHead, Response, Status};
use crate::metrics::Route;
use crate::pipeline::QueueError;

/// What to do with a request.
#[derive(Debug)]
pub enum Action {
    /// Answer at once.
    Respond(Response),
    /// Store this validated event, then answer with its row.
    Store {
        event: Event,
        idempotency_key: Option<String>,
    },
    /// Store these validated items in one transaction, then answer with one result each.
    StoreBatch { items: Vec<BatchItem> },
    /// Answer 200 if the database answers, 503 otherwise.
    CheckReady,
    /// Answer with the metrics text.
    Metrics,
}

/// The longest accepted `Idempotency-Key`.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = common::event::MAX_IDEMPOTENCY_KEY_BYTES;

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
}

/// The API as OpenAPI 3.1 (`openapi.yaml` at the repository root), served at
/// `GET /openapi.yaml` so a client can fetch the contract of the very binary it talks to; it
/// costs the binary its size, about 20 KB.
pub const OPENAPI_YAML: &str = include_str!("../../openapi.yaml");

/// Which route a path belongs to, for metrics.
pub fn route_of(path: &str) -> Route {
    match path {
        "/event" => Route::Event,
        "/events" => Route::Events,
        "/healthz" => Route::Healthz,
        "/readyz" => Route::Readyz,
        "/metrics" => Route::Metrics,
        "/openapi.yaml" => Route::OpenApi,
        _ => Route::Other,
    }
}

/// Decides what a request gets. `auth_token` is the configured token, if any.
#[inline(never)]
pub fn route(request: &mut Request, auth_token: Option<&Secret>, rules: &BodyRules) -> Action {
    let get_only = |action: Action| match request.method {
        Method::Get | Method::Head => action,
        _ => Action::Respond(method_not_allowed("GET, HEAD")),
    };
    match request.path.as_str() {
        "/event" => match request.method {
            Method::Post => post_event(request, auth_token, rules),
            _ => Action::Respond(method_not_allowed("POST")),
        },
        "/events" => match request.method {
            Method::Post => post_events(request, auth_token, rules),
            _ => Action::Respond(method_not_allowed("POST")),
        },
        "/healthz" => get_only(Action::Respond(Response::json(
            Status::Ok,
            br#"{"status":"ok"}"#.to_vec(),
        ))),
        "/readyz" => get_only(Action::CheckReady),
        "/metrics" => get_only(Action::Metrics),
        "/openapi.yaml" => get_only(Action::Respond(Response {
            content_type: "application/yaml",
            ..Response::json(Status::Ok, OPENAPI_YAML.as_bytes().to_vec())
        })),
        _ => Action::Respond(Response::error(
            Status::NotFound,
            "no such resource: POST /event and POST /events take events (see GET /openapi.yaml)",
        )),
    }
}

/// A refusal decided from the head alone, before the body is read: today a missing or wrong
/// token on `POST /event`, the one route that requires it (the same check `route` makes), so an
/// unauthenticated client cannot make the server buffer its body.
pub fn refuse_head(head: RequestHead<'_>, auth_token: Option<&Secret>) -> Option<Response> {
    let protected = matches!(head.path, "/event" | "/events") && head.method == Method::Post;
    match auth_token {
        Some(token) if protected && !bearer_matches(head.authorization, token) => {
            Some(unauthorized())
        }
        _ => None,
    }
}

fn unauthorized() -> Response {
    Response::error(
        Status::Unauthorized,
        "missing or wrong bearer token: send Authorization: Bearer <token>",
    )
    .with_header("WWW-Authenticate", "Bearer")
}

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
        Outcome::Unavailable => Response::error(
            Status::ServiceUnavailable,
            "database unavailable, retry in a moment",
        )
        .with_header("Retry-After", "2"),
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

/// The answer to a request the queue did not take.
pub fn refused(error: QueueError) -> Response {
    match error {
        QueueError::Full => Response::error(
            Status::ServiceUnavailable,
            "server busy: too many events waiting to be stored, retry in a moment",
        )
        .with_header("Retry-After", "1"),
        QueueError::Closed => shutting_down(),
    }
}

pub fn shutting_down() -> Response {
    Response::error(
        Status::ServiceUnavailable,
        "shutting down, retry in a moment",
    )
    .with_header("Retry-After", "1")
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
    Response::error(
        Status::ServiceUnavailable,
        "too many open connections, retry in a moment",
    )
    .with_header("Retry-After", "1")
}

fn row_json(row: &StoredEvent) -> Vec<u8> {
    format!(r#"{{"id":{},"received_at":"{}"}}"#, row.id, row.received_at).into_bytes()
}

fn method_not_allowed(allow: &'static str) -> Response {
    Response::error(
        Status::MethodNotAllowed,
        &format!("method not allowed here; allowed: {allow}"),
    )
    .with_header("Allow", allow)
}

fn post_event(request: &mut Request, auth_token: Option<&Secret>, rules: &BodyRules) -> Action {
    if let Some(token) = auth_token {
        if !bearer_matches(request.authorization.as_deref(), token) {
            return Action::Respond(unauthorized());
        }
    }
    if let Some(content_type) = request.content_type.as_deref() {
        if !is_json(content_type) {
            return Action::Respond(Response::error(
                Status::UnsupportedMediaType,
                &format!(
                    "Content-Type must be application/json, got `{}`",
                    printable(content_type)
                ),
            ));
        }
    }
    let body = match content_coding::decode(
        request.content_encoding.as_deref(),
        &request.body,
        rules.max_body_bytes,
    ) {
        Ok(body) => body,
        Err(e) => return Action::Respond(coding_refusal(&e)),
    };
    let idempotency_key = match request.idempotency_key.take() {
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
fn post_events(request: &mut Request, auth_token: Option<&Secret>, rules: &BodyRules) -> Action {
    if let Some(token) = auth_token {
        if !bearer_matches(request.authorization.as_deref(), token) {
            return Action::Respond(unauthorized());
        }
    }
    let ndjson = match request.content_type.as_deref() {
        None => false,
        Some(ct) if is_json(ct) => false,
        Some(ct) if is_media_type(ct, "application/x-ndjson") => true,
        Some(ct) => {
            return Action::Respond(Response::error(
                Status::UnsupportedMediaType,
                &format!(
                    "Content-Type must be application/json (an array) or application/x-ndjson, got `{}`",
                    printable(ct)
                ),
            ))
        }
    };
    let body = match content_coding::decode(
        request.content_encoding.as_deref(),
        &request.body,
        rules.max_batch_bytes,
    ) {
        Ok(body) => body,
        Err(e) => return Action::Respond(coding_refusal(&e)),
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
        body.push_str(&format!(
            r#"{{"id":{},"received_at":"{}","status":"{status}"}}"#,
            row.id, row.received_at
        ));
    }
    body.push_str("]}");
    let status = if all_existing {
        Status::Ok
    } else {
        Status::Created
    };
    Response::json(status, body.into_bytes())
}

/// An error body naming the field at fault: `{"error": "...", "field": "..."}`.
pub fn error_with_field(status: Status, message: &str, field: &str) -> Response {
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

/// `Bearer <token>` compared in constant time, so response timing does not reveal how much of
/// a guess was right.
fn bearer_matches(header: Option<&str>, token: &Secret) -> bool {
    let Some(header) = header else { return false };
    let Some((scheme, given)) = header.trim().split_once(' ') else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return false;
    }
    constant_time_eq(given.trim().as_bytes(), token.expose().as_bytes())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    // Compare over the longer length so the time depends only on the lengths.
    let len = a.len().max(b.len());
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..len {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

/// A header value quoted in an error message: at most 64 characters, no control characters.
fn printable(value: &str) -> String {
    value.chars().filter(|c| !c.is_control()).take(64).collect()
}

/// [`OPENAPI_YAML`] parsed, for the tests that hold it to the code.
#[cfg(test)]
pub(crate) fn openapi_document() -> serde_norway::Value {
    serde_norway::from_str(OPENAPI_YAML).expect("openapi.yaml is valid YAML")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: Method, path: &str, body: &str) -> Request {
        Request {
            method,
            path: path.into(),
            content_type: Some("application/json".into()),
            content_encoding: None,
            authorization: None,
            idempotency_key: None,
            body: body.as_bytes().to_vec(),
            keep_alive: true,
            http10: false,
        }
    }

    const RULES: BodyRules = BodyRules {
        max_body_bytes: 64 * 1024,
        max_batch_bytes: 1024 * 1024,
        max_batch_events: 1000,
    };

    const GOOD: &str = r#"{"event_type":"a","event_payload":"b"}"#;

    fn status_of(action: Action) -> u16 {
        match action {
            Action::Respond(r) => r.status.code(),
            Action::Store { .. } | Action::StoreBatch { .. } => 0,
            Action::CheckReady => 1,
            Action::Metrics => 2,
        }
    }

    #[test]
    fn a_valid_event_is_stored() {
        let mut r = request(Method::Post, "/event", GOOD);
        assert!(matches!(route(&mut r, None, &RULES), Action::Store { .. }));
    }

    #[test]
    fn each_refusal_gets_its_status() {
        let token = Secret::new("t0ken");
        let cases: Vec<(Request, Option<&Secret>, u16, &str)> = vec![
            (
                request(Method::Get, "/event", ""),
                None,
                405,
                "GET on /event",
            ),
            (
                request(Method::Post, "/healthz", ""),
                None,
                405,
                "POST on /healthz",
            ),
            (
                request(Method::Post, "/nope", GOOD),
                None,
                404,
                "unknown path",
            ),
            (
                request(Method::Post, "/event", "{"),
                None,
                400,
                "broken JSON",
            ),
            (
                request(Method::Post, "/event", "[1]"),
                None,
                400,
                "not an object",
            ),
            (
                request(Method::Post, "/event", r#"{"event_type":"a"}"#),
                None,
                422,
                "missing field",
            ),
            (
                request(Method::Post, "/event", GOOD),
                Some(&token),
                401,
                "no token",
            ),
            (
                Request {
                    content_type: Some("text/plain".into()),
                    ..request(Method::Post, "/event", GOOD)
                },
                None,
                415,
                "text/plain",
            ),
            (
                Request {
                    idempotency_key: Some("has space".into()),
                    ..request(Method::Post, "/event", GOOD)
                },
                None,
                400,
                "key with a space",
            ),
            (
                Request {
                    idempotency_key: Some("k".repeat(256)),
                    ..request(Method::Post, "/event", GOOD)
                },
                None,
                400,
                "256-character key",
            ),
            (
                Request {
                    authorization: Some("Bearer wrong".into()),
                    ..request(Method::Post, "/event", GOOD)
                },
                Some(&token),
                401,
                "wrong token",
            ),
        ];
        for (mut req, auth, status, reason) in cases {
            assert_eq!(status_of(route(&mut req, auth, &RULES)), status, "{reason}");
        }
    }

    #[test]
    fn allowed_variants_pass() {
        let token = Secret::new("t0ken");
        let mut r = Request {
            content_type: Some("Application/JSON; charset=utf-8".into()),
            authorization: Some("bearer t0ken".into()),
            idempotency_key: Some("k".repeat(255)),
            ..request(Method::Post, "/event", GOOD)
        };
        assert!(matches!(
            route(&mut r, Some(&token), &RULES),
            Action::Store { .. }
        ));
        let mut no_type = Request {
            content_type: None,
            ..request(Method::Post, "/event", GOOD)
        };
        assert!(matches!(
            route(&mut no_type, None, &RULES),
            Action::Store { .. }
        ));
    }

    #[test]
    fn a_405_names_the_allowed_methods() {
        let mut r = request(Method::Get, "/event", "");
        let Action::Respond(resp) = route(&mut r, None, &RULES) else {
            panic!("expected a response")
        };
        assert!(resp
            .headers
            .iter()
            .any(|(k, v)| *k == "Allow" && v == "POST"));
    }

    #[test]
    fn a_head_is_refused_only_where_route_would_refuse_it_for_the_token() {
        let token = Secret::new("t0ken");
        let head = |method, path, authorization| RequestHead {
            method,
            path,
            authorization,
        };
        let cases = [
            (
                head(Method::Post, "/event", None),
                Some(&token),
                true,
                "no token",
            ),
            (
                head(Method::Post, "/event", Some("Bearer nope")),
                Some(&token),
                true,
                "wrong token",
            ),
            (
                head(Method::Post, "/event", Some("Bearer t0ken")),
                Some(&token),
                false,
                "right token",
            ),
            (
                head(Method::Post, "/event", None),
                None,
                false,
                "no token configured",
            ),
            (
                head(Method::Get, "/event", None),
                Some(&token),
                false,
                "GET /event is a 405",
            ),
            (
                head(Method::Get, "/metrics", None),
                Some(&token),
                false,
                "metrics is open",
            ),
            (
                head(Method::Post, "/other", None),
                Some(&token),
                false,
                "unknown path is a 404",
            ),
        ];
        for (head, auth, refused, reason) in cases {
            let refusal = refuse_head(head, auth);
            assert_eq!(refusal.is_some(), refused, "{reason}");
            if let Some(response) = refusal {
                assert_eq!(response.status.code(), 401, "{reason}");
                assert!(
                    response
                        .headers
                        .iter()
                        .any(|(k, v)| *k == "WWW-Authenticate" && v == "Bearer"),
                    "{reason}"
                );
            }
        }
    }

    /// The methods OpenAPI can name, in the order `Allow` lists them.
    const OPENAPI_METHODS: [&str; 8] = [
        "get", "head", "post", "put", "delete", "options", "patch", "trace",
    ];

    #[test]
    fn each_documented_path_takes_exactly_the_documented_methods() {
        let document = openapi_document();
        let paths = document["paths"]
            .as_mapping()
            .expect("openapi.yaml has paths");
        assert!(!paths.is_empty(), "openapi.yaml lists no path");
        for (path, item) in paths {
            let path = path.as_str().expect("a path is a string");
            let documented: Vec<&str> = OPENAPI_METHODS
                .into_iter()
                .filter(|m| item.get(*m).is_some())
                .collect();
            assert!(!documented.is_empty(), "{path}: no method documented");
            for name in &documented {
                let Some(method) = method_named(name) else {
                    panic!("{path}: the document lists {name}, which the router cannot tell from any other method");
                };
                let status = status_of(route(&mut request(method, path, GOOD), None, &RULES));
                assert!(
                    ![404, 405].contains(&status),
                    "{path}: the document lists {name}, the router answers {status}"
                );
            }
            let allow = documented
                .iter()
                .map(|m| m.to_ascii_uppercase())
                .collect::<Vec<_>>()
                .join(", ");
            let undocumented = [Method::Get, Method::Head, Method::Post, Method::Other]
                .into_iter()
                .filter(|m| !documented.iter().any(|d| method_named(d) == Some(*m)));
            for method in undocumented {
                let Action::Respond(response) =
                    route(&mut request(method, path, GOOD), None, &RULES)
                else {
                    panic!("{path}: {method:?} is not documented, yet the router takes it");
                };
                assert_eq!(
                    response.status,
                    Status::MethodNotAllowed,
                    "{path}: {method:?}"
                );
                assert!(
                    response
                        .headers
                        .iter()
                        .any(|(k, v)| *k == "Allow" && *v == allow),
                    "{path}: {method:?} must name Allow: {allow}, got {:?}",
                    response.headers
                );
            }
        }
    }

    fn method_named(name: &str) -> Option<Method> {
        match name {
            "get" => Some(Method::Get),
            "head" => Some(Method::Head),
            "post" => Some(Method::Post),
            _ => None,
        }
    }

    #[test]
    fn the_openapi_document_is_served_as_yaml() {
        let Action::Respond(response) =
            route(&mut request(Method::Get, "/openapi.yaml", ""), None, &RULES)
        else {
            panic!("expected a response")
        };
        assert_eq!(response.status, Status::Ok);
        assert_eq!(response.content_type, "application/yaml");
        assert_eq!(response.body, OPENAPI_YAML.as_bytes());
        assert_eq!(openapi_document()["openapi"].as_str(), Some("3.1.0"));
        assert_eq!(
            route_of("/openapi.yaml"),
            Route::OpenApi,
            "its own metrics label"
        );
    }

    #[test]
    fn constant_time_comparison_is_exact() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
        assert!(constant_time_eq(b"", b""));
    }
}
