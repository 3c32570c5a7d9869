//! The router: our own small request in, an [`Action`] out. The checks every route shares come
//! from its [`Route`] (404, 405 with `Allow`, 401), in that order; then the route's handler.

use common::batch::BatchItem;
use common::config::Secret;
use common::Event;

use super::bodies::{post_event, post_events, BodyRules};
use super::openapi::OPENAPI_YAML;
use super::token::bearer_matches;
use crate::http::{Method, Request, RequestHead, Response, Route, Status};

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

/// Decides what a request gets. `auth_token` is the configured token, if any.
#[inline(never)]
pub fn route(request: &mut Request, auth_token: Option<&Secret>, rules: &BodyRules) -> Action {
    let route = Route::of(&request.path);
    // `Other` takes no method, yet is a 404 whatever the method (its arm below).
    if route != Route::Other && !route.allows(request.method) {
        return Action::Respond(method_not_allowed(route));
    }
    if let Some(refusal) = refuse_token(
        route,
        request.method,
        request.authorization.as_deref(),
        auth_token,
    ) {
        return Action::Respond(refusal);
    }
    match route {
        Route::Event => post_event(request, rules),
        Route::Events => post_events(request, rules),
        Route::Healthz => {
            Action::Respond(Response::json(Status::Ok, br#"{"status":"ok"}"#.to_vec()))
        }
        Route::Readyz => Action::CheckReady,
        Route::Metrics => Action::Metrics,
        Route::OpenApi => Action::Respond(Response {
            content_type: "application/yaml",
            ..Response::json(Status::Ok, OPENAPI_YAML.as_bytes().to_vec())
        }),
        Route::Other => Action::Respond(not_found()),
    }
}

/// A refusal decided from the head alone, before the body is read: a missing or wrong token
/// where the route needs it (the same check [`route`] makes), so an unauthenticated client
/// cannot make the server buffer its body. A 404 or 405 waits for the body like any answer,
/// so the connection stays open for the next request.
pub fn refuse_head(head: RequestHead<'_>, auth_token: Option<&Secret>) -> Option<Response> {
    refuse_token(
        Route::of(head.path),
        head.method,
        head.authorization,
        auth_token,
    )
}

/// 401 when a token is configured, the route needs it, the method is one the route takes, and
/// `authorization` does not carry the token.
fn refuse_token(
    route: Route,
    method: Method,
    authorization: Option<&str>,
    auth_token: Option<&Secret>,
) -> Option<Response> {
    let token = auth_token?;
    let protected = route.needs_token() && route.allows(method);
    (protected && !bearer_matches(authorization, token)).then(unauthorized)
}

fn unauthorized() -> Response {
    Response::error(
        Status::Unauthorized,
        "missing or wrong bearer token: send Authorization: Bearer <token>",
    )
    .with_header("WWW-Authenticate", "Bearer")
}

fn method_not_allowed(route: Route) -> Response {
    let allow = route.allow();
    Response::error(
        Status::MethodNotAllowed,
        &format!("method not allowed here; allowed: {allow}"),
    )
    .with_header("Allow", allow)
}

fn not_found() -> Response {
    Response::error(
        Status::NotFound,
        "no such resource: POST /event and POST /events take events (see GET /openapi.yaml)",
    )
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::routes) fn request(method: Method, path: &str, body: &str) -> Request {
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

    pub(in crate::routes) const RULES: BodyRules = BodyRules {
        max_body_bytes: 64 * 1024,
        max_batch_bytes: 1024 * 1024,
        max_batch_events: 1000,
    };

    pub(in crate::routes) const GOOD: &str = r#"{"event_type":"a","event_payload":"b"}"#;

    pub(in crate::routes) fn status_of(action: Action) -> u16 {
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
                head(Method::Post, "/events", None),
                Some(&token),
                true,
                "no token for a batch",
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
}
