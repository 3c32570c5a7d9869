//! The public HTTP contract: every answer docs/http-api.md promises.

use test_support::Cluster;

use crate::helpers::{metric_in, send, TestApp, GOOD_EVENT};

#[test]
fn a_valid_event_is_stored_and_answered_201_with_its_row() {
    let app = TestApp::spawn();
    let response = app.post(GOOD_EVENT, &[]);
    assert_eq!(response.status, 201, "{}", response.body);
    let body = response.json();
    let id = body["id"].as_i64().expect("id is an integer");
    let received_at = body["received_at"]
        .as_str()
        .expect("received_at is a string");
    assert!(
        received_at.len() >= 20 && received_at.ends_with('Z'),
        "{received_at}"
    );
    let row = app
        .db
        .client()
        .query_one(
            "SELECT event_type, event_payload FROM events WHERE id = $1",
            &[&id],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "user.login");
    assert_eq!(row.get::<_, String>(1), "id=42");
}

#[test]
fn an_idempotent_retry_answers_200_with_the_same_row_and_stores_once() {
    let app = TestApp::spawn();
    let first = app.post(GOOD_EVENT, &[("Idempotency-Key", "order-17-attempt")]);
    let second = app.post(GOOD_EVENT, &[("Idempotency-Key", "order-17-attempt")]);
    assert_eq!(first.status, 201);
    assert_eq!(second.status, 200, "{}", second.body);
    assert_eq!(first.json(), second.json());
    assert_eq!(app.db.count_events(), 1);
}

#[test]
fn idempotency_holds_across_consumer_restarts_and_processes() {
    let app = TestApp::spawn();
    let first = app.post(GOOD_EVENT, &[("Idempotency-Key", "k-restart")]);
    let config = crate::helpers::test_config(&app.db, |_| {});
    let other = event_consumer::start(&config).unwrap();
    let second = crate::helpers::post_event(
        other.addr(),
        GOOD_EVENT,
        &[("Idempotency-Key", "k-restart")],
    );
    other.shutdown();
    assert_eq!((first.status, second.status), (201, 200));
    assert_eq!(first.json()["id"], second.json()["id"]);
    assert_eq!(app.db.count_events(), 1);
}

#[test]
fn bad_requests_get_their_4xx_a_json_error_and_store_nothing() {
    let app = TestApp::spawn_with(|c| c.consumer.max_body_bytes = 1024);
    let big = format!(
        r#"{{"event_type":"a","event_payload":"{}"}}"#,
        "x".repeat(2000)
    );
    let long_type = format!(
        r#"{{"event_type":"{}","event_payload":"p"}}"#,
        "t".repeat(256)
    );
    type Case<'a> = (
        String,
        Vec<(&'a str, &'a str)>,
        u16,
        Option<&'a str>,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        ("{not json".into(), vec![], 400, None, "broken JSON"),
        ("[1,2]".into(), vec![], 400, None, "an array"),
        (
            r#"{"event_type":"a"}"#.into(),
            vec![],
            422,
            Some("event_payload"),
            "missing payload",
        ),
        (
            r#"{"event_type":"a","event_payload":"b","extra":1}"#.into(),
            vec![],
            422,
            Some("extra"),
            "unknown key",
        ),
        (
            r#"{"event_type":7,"event_payload":"b"}"#.into(),
            vec![],
            422,
            Some("event_type"),
            "number type",
        ),
        (
            r#"{"event_type":"","event_payload":"b"}"#.into(),
            vec![],
            422,
            Some("event_type"),
            "empty type",
        ),
        (
            long_type,
            vec![],
            422,
            Some("event_type"),
            "256-character type",
        ),
        (
            r#"{"event_type":"a","event_payload":"\u0000"}"#.into(),
            vec![],
            422,
            Some("event_payload"),
            "NUL",
        ),
        (
            GOOD_EVENT.into(),
            vec![("Content-Type", "text/plain")],
            415,
            None,
            "text/plain",
        ),
        (big, vec![], 413, None, "body over max_body_bytes"),
        (
            GOOD_EVENT.into(),
            vec![("Idempotency-Key", "")],
            400,
            Some("Idempotency-Key"),
            "empty key",
        ),
    ];
    for (body, headers, status, field, reason) in cases {
        let response = app.post(&body, &headers);
        assert_eq!(response.status, status, "{reason}: {}", response.body);
        let json = response.json();
        assert!(
            json["error"].as_str().is_some_and(|m| !m.is_empty()),
            "{reason}: {}",
            response.body
        );
        if let Some(field) = field {
            assert_eq!(json["field"], field, "{reason}: {}", response.body);
        }
    }
    assert_eq!(app.db.count_events(), 0, "no 4xx stores a row");
}

#[test]
fn invalid_utf8_is_a_400() {
    let app = TestApp::spawn();
    let mut raw =
        b"POST /event HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nConnection: close\r\n\r\n"
            .to_vec();
    raw.extend_from_slice(b"\xff\xfe{}");
    assert_eq!(send(app.addr, &raw).status, 400);
}

#[test]
fn charset_parameters_and_a_missing_content_type_are_accepted() {
    let app = TestApp::spawn();
    assert_eq!(
        app.post(
            GOOD_EVENT,
            &[("Content-Type", "application/json; charset=utf-8")]
        )
        .status,
        201
    );
    let raw = format!(
        "POST /event HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{GOOD_EVENT}",
        GOOD_EVENT.len()
    );
    assert_eq!(send(app.addr, raw.as_bytes()).status, 201);
}

#[test]
fn wrong_methods_get_405_with_allow_and_unknown_paths_404() {
    let app = TestApp::spawn();
    let response = app.get("/event");
    assert_eq!(response.status, 405);
    assert_eq!(response.header("Allow"), Some("POST"));
    let response = send(
        app.addr,
        b"DELETE /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(response.status, 405);
    assert!(response.header("Allow").is_some_and(|a| a.contains("GET")));
    let response = app.get("/events");
    assert_eq!(response.status, 405);
    assert_eq!(response.header("Allow"), Some("POST"));
    assert_eq!(app.get("/eventz").status, 404);
    assert_eq!(app.get("/").status, 404);
}

#[test]
fn a_configured_token_is_required() {
    let app =
        TestApp::spawn_with(|c| c.consumer.auth_token = Some(common::Secret::new("s3cret-token")));
    assert_eq!(app.post(GOOD_EVENT, &[]).status, 401);
    assert_eq!(
        app.post(GOOD_EVENT, &[("Authorization", "Bearer wrong")])
            .status,
        401
    );
    assert_eq!(
        app.post(GOOD_EVENT, &[("Authorization", "Basic czNjcmV0LXRva2Vu")])
            .status,
        401
    );
    assert_eq!(
        app.post(GOOD_EVENT, &[("Authorization", "Bearer s3cret-token")])
            .status,
        201
    );
    assert_eq!(app.db.count_events(), 1);
}

#[test]
fn health_readiness_and_metrics_answer() {
    let app = TestApp::spawn();
    assert_eq!(app.get("/healthz").status, 200);
    assert_eq!(app.get("/readyz").status, 200);
    app.post(GOOD_EVENT, &[]);
    let metrics = app.get("/metrics");
    assert_eq!(metrics.status, 200);
    assert!(metrics
        .header("Content-Type")
        .is_some_and(|t| t.starts_with("text/plain")));
    for needle in [
        "event_consumer_requests_total{route=\"/event\",status=\"201\"} 1",
        "event_consumer_events_stored_total 1",
        "event_consumer_db_errors_total",
        "event_consumer_request_duration_seconds_bucket",
    ] {
        assert!(
            metrics.body.contains(needle),
            "metrics lack {needle}:\n{}",
            metrics.body
        );
    }
}

/// The HTTP layer refuses these before any handler runs; they are still requests to
/// `/event`, and an operator watching that route must see them.
#[test]
fn post_event_refused_with_413_and_417_by_the_http_layer_is_counted_under_route_event() {
    let app = TestApp::spawn_with(|c| c.consumer.max_body_bytes = 1024);
    // Neither sends a body: both are refused on the head alone, and an unread body could turn
    // the close into a reset that loses the answer.
    let too_large = send(
        app.addr,
        b"POST /event HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
          Content-Length: 1025\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(too_large.status, 413, "{}", too_large.body);
    let unknown_expectation = send(
        app.addr,
        b"POST /event HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
          Content-Length: 2\r\nExpect: something-else\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(
        unknown_expectation.status, 417,
        "{}",
        unknown_expectation.body
    );
    // Counted before the answer leaves, so no wait is needed here.
    let metrics = app.get("/metrics").body;
    let requests: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("event_consumer_requests_total"))
        .collect();
    for status in ["413", "417"] {
        let sample =
            format!("event_consumer_requests_total{{route=\"/event\",status=\"{status}\"}}");
        assert_eq!(
            metric_in(&metrics, &sample),
            Some(1.0),
            "{sample} should be 1; the request counters are:\n{}",
            requests.join("\n")
        );
    }
    assert_eq!(app.db.count_events(), 0);
}

#[test]
fn a_stopped_database_gives_503_with_retry_after_and_service_recovers_without_restart() {
    let cluster = Cluster::start();
    let db = test_support::TestDb::on(&cluster.server());
    let config = crate::helpers::test_config(&db, |c| {
        c.database.connect_timeout_seconds = 1.0;
        c.consumer.workers = 3;
    });
    let running = event_consumer::start(&config).unwrap();
    let addr = running.addr();
    assert_eq!(
        crate::helpers::post_event(addr, GOOD_EVENT, &[]).status,
        201
    );

    cluster.stop("fast");
    // How soon the 503 comes is the soak's `a_stopped_database_is_answered_503_within_5_seconds`.
    for _ in 0..5 {
        let response = crate::helpers::post_event(addr, GOOD_EVENT, &[]);
        assert_eq!(response.status, 503, "{}", response.body);
        assert!(response.header("Retry-After").is_some());
    }
    let ready = send(
        addr,
        b"GET /readyz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(ready.status, 503);

    cluster.pg_ctl_start();
    // The first request after the restart already succeeds: stale connections are checked
    // before use once any worker saw the database fail.
    let response = crate::helpers::post_event(addr, GOOD_EVENT, &[]);
    assert_eq!(response.status, 201, "{}", response.body);
    for _ in 0..6 {
        assert_eq!(
            crate::helpers::post_event(addr, GOOD_EVENT, &[]).status,
            201
        );
    }
    running.shutdown();
    assert_eq!(db.count_events(), 8);
}

#[test]
fn the_consumer_starts_while_the_database_is_down_and_serves_once_it_is_up() {
    let cluster = Cluster::start();
    let db = test_support::TestDb::on(&cluster.server());
    cluster.stop("fast");
    let config = crate::helpers::test_config(&db, |c| c.database.connect_timeout_seconds = 1.0);
    let running = event_consumer::start(&config).unwrap();
    let addr = running.addr();
    assert_eq!(
        send(addr, b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n").status,
        200
    );
    assert_eq!(
        send(addr, b"GET /readyz HTTP/1.1\r\nConnection: close\r\n\r\n").status,
        503
    );
    cluster.pg_ctl_start();
    assert_eq!(
        send(addr, b"GET /readyz HTTP/1.1\r\nConnection: close\r\n\r\n").status,
        200
    );
    assert_eq!(
        crate::helpers::post_event(addr, GOOD_EVENT, &[]).status,
        201
    );
    running.shutdown();
}

/// Answers to stored events on kept-alive connections may be sent by the thread that stored
/// them (see `server.rs`): the same contract must hold there, under concurrency so that both
/// the own-thread and the queued paths run, with every request counted exactly once.
#[test]
fn kept_alive_connections_get_the_same_answers_and_every_request_is_counted_once() {
    use std::io::{BufReader, Write};

    use crate::helpers::{connect, read_response};

    const CLIENTS: usize = 8;
    const ROUNDS: usize = 30;
    let app = TestApp::spawn();
    let addr = app.addr;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            std::thread::spawn(move || {
                let stream = connect(addr);
                let mut writer = stream.try_clone().unwrap();
                let mut reader = BufReader::new(stream);
                let mut ask = |raw: String| {
                    writer.write_all(raw.as_bytes()).unwrap();
                    read_response(&mut reader).expect("an answer on the kept-alive connection")
                };
                let post = |key: &str, body: &str, version: &str| {
                    format!(
                        "POST /event {version}\r\nHost: t\r\nConnection: keep-alive\r\n\
                         Idempotency-Key: {key}\r\nContent-Type: application/json\r\n\
                         Content-Length: {}\r\n\r\n{body}",
                        body.len()
                    )
                };
                for r in 0..ROUNDS {
                    let key = format!("kept-{c}-{r}");
                    let body = format!(r#"{{"event_type":"kept","event_payload":"{c}-{r}"}}"#);
                    let version = if r % 5 == 0 { "HTTP/1.0" } else { "HTTP/1.1" };
                    let created = ask(post(&key, &body, version));
                    assert_eq!(created.status, 201, "{}", created.body);
                    assert!(created
                        .header("Content-Type")
                        .is_some_and(|t| t.starts_with("application/json")));
                    assert!(created.header("Date").is_some());
                    // Kept alive, and an HTTP/1.0 client is told so.
                    let connection = created.header("Connection").map(str::to_ascii_lowercase);
                    if version == "HTTP/1.0" {
                        assert_eq!(connection.as_deref(), Some("keep-alive"));
                    } else {
                        assert_eq!(connection, None);
                    }
                    let repeated = ask(post(&key, &body, "HTTP/1.1"));
                    assert_eq!(repeated.status, 200, "{}", repeated.body);
                    assert_eq!(repeated.json()["id"], created.json()["id"]);
                    assert_eq!(
                        repeated.json()["received_at"],
                        created.json()["received_at"]
                    );
                    let bad = ask(post(&format!("{key}-bad"), "{not json", "HTTP/1.1"));
                    assert_eq!(bad.status, 400, "{}", bad.body);
                    let ready = ask("GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n".to_string());
                    assert_eq!(ready.status, 200, "{}", ready.body);
                }
            })
        })
        .collect();
    for client in clients {
        client.join().expect("a client thread");
    }
    let n = CLIENTS * ROUNDS;
    assert_eq!(app.db.count_events(), n as i64);
    let metrics = app.get("/metrics").body;
    for needle in [
        format!("event_consumer_requests_total{{route=\"/event\",status=\"201\"}} {n}"),
        format!("event_consumer_requests_total{{route=\"/event\",status=\"200\"}} {n}"),
        format!("event_consumer_requests_total{{route=\"/event\",status=\"400\"}} {n}"),
        format!("event_consumer_requests_total{{route=\"/readyz\",status=\"200\"}} {n}"),
        format!("event_consumer_events_stored_total {n}"),
    ] {
        assert!(
            metrics.contains(&needle),
            "metrics lack {needle}:\n{metrics}"
        );
    }
}
