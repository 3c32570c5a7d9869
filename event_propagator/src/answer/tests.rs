//! How attempts are sorted: answers (a 2xx with or without the consumer's answer, a batch's
//! results, redirects), transport errors and timeouts, Retry-After, and the one-line messages
//! quoted from what came back.

use super::*;

#[test]
fn retry_after_parses_seconds_and_http_dates() {
    let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
    let cases = [
        ("0", Some(Duration::ZERO)),
        (" 7 ", Some(Duration::from_secs(7))),
        (
            "Sun, 06 Nov 1994 08:50:07 GMT",
            Some(Duration::from_secs(30)),
        ),
        ("Sun, 06 Nov 1994 08:00:00 GMT", Some(Duration::ZERO)),
        ("999999999999999999999", Some(MAX_RETRY_AFTER)),
        ("1.5", None),
        ("-3", None),
        ("soon", None),
        ("", None),
    ];
    for (value, expected) in cases {
        assert_eq!(parse_retry_after(value, now), expected, "{value:?}");
    }
}

#[test]
fn answers_are_sorted_into_delivered_retried_and_rejected() {
    let now = SystemTime::now();
    let stored = br#"{"id": 7, "received_at": "2026-12-07T02:00:00.000000Z"}"#;
    assert_eq!(classify(&Head::status(201), stored, now), Answer::Created);
    let replayed = Head {
        replayed: true,
        ..Head::status(200)
    };
    assert_eq!(classify(&replayed, stored, now), Answer::Duplicate);
    assert_eq!(
        classify(&Head::status(200), stored, now),
        Answer::Created,
        "a 200 the consumer does not mark as replayed is delivered, not a duplicate"
    );
    for status in [408, 429, 500, 502, 503, 504] {
        assert!(
            matches!(classify(&Head { retry_after: Some("2"), ..Head::status(status) }, b"", now), Answer::Retry { retry_after: Some(d), .. } if d == Duration::from_secs(2)),
            "{status} is retried"
        );
        let down = matches!(
            classify(&Head::status(status), b"", now),
            Answer::Retry {
                endpoint_down: true,
                ..
            }
        );
        assert_eq!(
            down,
            status == 503,
            "only 503 of the answers takes the endpoint out"
        );
    }
    for status in [400, 401, 403, 404, 409, 413, 415, 422, 501, 301] {
        assert!(
            matches!(classify(&Head::status(status), b"", now), Answer::Rejected { status: s, .. } if s == status),
            "{status} is not retried"
        );
    }
}

#[test]
fn a_2xx_without_the_consumers_answer_is_unconfirmed() {
    let now = SystemTime::now();
    for (status, body, reason) in [
        (200, &b""[..], "an empty 200"),
        (204, b"", "a 204"),
        (201, b"<html><body>Sign in</body></html>", "a login page"),
        (200, b"{\"ok\": true}", "JSON without the row's id"),
        (
            201,
            b"{\"id\": \"7\"}",
            "an id that is not the row's number",
        ),
        (202, b"[1, 2]", "not an object"),
    ] {
        assert_eq!(
            classify(&Head::status(status), body, now),
            Answer::Unconfirmed,
            "{reason}"
        );
        let replayed = Head {
            replayed: true,
            ..Head::status(status)
        };
        assert_eq!(
            classify(&replayed, body, now),
            Answer::Unconfirmed,
            "{reason}"
        );
    }
}

#[test]
fn what_came_back_is_described_on_one_line_with_its_start_escaped() {
    assert_eq!(describe_body(None, b""), "no Content-Type, empty body");
    assert_eq!(
        describe_body(
            Some("text/html; charset=utf-8"),
            b"<p>\r\nSign in\x1b[31m</p>"
        ),
        "Content-Type `text/html; charset=utf-8`, 21 bytes: \"<p>\\r\\nSign in\\u{1b}[31m</p>\""
    );
    let long = "x".repeat(5_000);
    let described = describe_body(Some("text/plain"), long.as_bytes());
    assert!(described.ends_with("x…\""), "{described}");
    assert!(described.len() < 200, "{described}");
}

#[test]
fn a_redirect_is_refused_naming_its_location_without_credentials() {
    let now = SystemTime::now();
    let head = Head {
        location: Some("https://user:pw@other.example/event"),
        ..Head::status(307)
    };
    let Answer::Rejected { status, message } = classify(&head, b"", now) else {
        panic!("a redirect is not followed");
    };
    assert_eq!(status, 307);
    assert_eq!(
        message,
        "a redirect, not followed (point the endpoint at the consumer itself): Location: \
         https://***@other.example/event"
    );
    let Answer::Rejected { message, .. } = classify(&Head::status(301), b"", now) else {
        panic!("a redirect is not followed");
    };
    assert!(message.ends_with(": no Location given"), "{message}");
}

#[test]
fn a_batch_answer_is_sorted_by_its_results() {
    let now = SystemTime::now();
    let results = |statuses: &[&str]| {
        let items: Vec<String> = statuses
            .iter()
            .map(|s| format!(r#"{{"id": 1, "received_at": "x", "status": "{s}"}}"#))
            .collect();
        format!(r#"{{"results": [{}]}}"#, items.join(","))
    };
    let body = results(&["created", "duplicate", "created"]);
    assert_eq!(
        classify_batch(&Head::status(201), body.as_bytes(), 3, now),
        Answer::PartlyDuplicate { duplicates: 1 }
    );
    let body = results(&["created", "created"]);
    assert_eq!(
        classify_batch(&Head::status(201), body.as_bytes(), 2, now),
        Answer::Created
    );
    let body = results(&["duplicate", "duplicate"]);
    assert_eq!(
        classify_batch(&Head::status(201), body.as_bytes(), 2, now),
        Answer::Duplicate,
        "every item a duplicate, even under 201"
    );
    for (body, reason) in [
        (&b"{\"id\": 1}"[..], "no results"),
        (b"", "no body"),
        (b"not json", "not JSON"),
        (
            br#"{"results": [{"status": "created"}]}"#,
            "fewer results than items",
        ),
    ] {
        assert_eq!(
            classify_batch(&Head::status(201), body, 2, now),
            Answer::Unconfirmed,
            "{reason}: not the consumer's answer"
        );
    }
    assert!(matches!(
        classify_batch(
            &Head {
                retry_after: Some("1"),
                ..Head::status(503)
            },
            b"",
            2,
            now
        ),
        Answer::Retry { .. }
    ));
    assert!(matches!(
        classify_batch(&Head::status(413), b"", 2, now),
        Answer::Rejected { status: 413, .. }
    ));
}

#[test]
fn a_rejection_quotes_the_consumers_message_on_one_line() {
    let body = br#"{"error": "field `event_type` must not be empty", "field": "event_type"}"#;
    let Answer::Rejected { message, .. } = classify(&Head::status(422), body, SystemTime::now())
    else {
        panic!("not a rejection");
    };
    assert_eq!(
        message,
        "field `event_type` must not be empty (field `event_type`)"
    );
    let body =
        br#"{"error": "field `event_type` must not be empty", "index": 7, "field": "event_type"}"#;
    let Answer::Rejected { message, .. } = classify(&Head::status(422), body, SystemTime::now())
    else {
        panic!("not a rejection");
    };
    assert_eq!(
        message, "field `event_type` must not be empty (item 7, field `event_type`)",
        "a batch's refusal names the item"
    );
    let body = br#"{"error": "item 1: field `event_type` must not be empty", "field": "event_type", "index": 1}"#;
    let Answer::Rejected { message, .. } = classify(&Head::status(422), body, SystemTime::now())
    else {
        panic!("not a rejection");
    };
    assert_eq!(
        message, "item 1: field `event_type` must not be empty (field `event_type`)",
        "the consumer's own item prefix is not repeated"
    );
    let Answer::Rejected { message, .. } =
        classify(&Head::status(400), b"plain\ntext", SystemTime::now())
    else {
        panic!("not a rejection");
    };
    assert_eq!(message, "plain text");
    let long = "x".repeat(5_000);
    let Answer::Rejected { message, .. } =
        classify(&Head::status(400), long.as_bytes(), SystemTime::now())
    else {
        panic!("not a rejection");
    };
    assert_eq!(message.chars().count(), MAX_MESSAGE_CHARS + 1);
}

const LIMITS: Limits<'static> = Limits {
    request: Duration::from_secs(10),
    shutdown: false,
    resolve: Duration::from_secs(5),
    connect: Duration::from_secs(3),
    host: "consumer.example",
};

#[test]
fn a_timeout_names_the_setting_that_bounded_it_and_its_value() {
    let reason =
        |timeout, limits: &Limits<'_>| match classify_error(&ureq::Error::Timeout(timeout), limits)
        {
            Answer::Retry { reason, .. } => reason,
            other => panic!("{other:?}"),
        };
    use ureq::Timeout as T;
    assert_eq!(
        reason(T::Global, &LIMITS),
        "no answer within request_timeout_seconds (10 s)"
    );
    let stopping = Limits {
        request: Duration::from_millis(1_250),
        shutdown: true,
        ..LIMITS
    };
    assert_eq!(
        reason(T::Global, &stopping),
        "no answer within the 1.25 s left of shutdown_timeout_seconds"
    );
    assert_eq!(
        reason(T::Resolve, &LIMITS),
        "the name lookup of consumer.example hung: no address within 5 s (is the DNS \
         server reachable?)"
    );
    assert_eq!(
        reason(T::Connect, &LIMITS),
        "no connection to consumer.example within 3 s (TCP and TLS connect)"
    );
}

#[test]
fn transport_errors_are_retried_unless_our_setup_is_wrong() {
    let retried = [
        ureq::Error::ConnectionFailed,
        ureq::Error::HostNotFound,
        ureq::Error::Timeout(ureq::Timeout::Global),
        ureq::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
    ];
    for error in retried {
        assert!(
            matches!(classify_error(&error, &LIMITS), Answer::Retry { .. }),
            "{error}"
        );
    }
    for error in [
        ureq::Error::ConnectionFailed,
        ureq::Error::Timeout(ureq::Timeout::Connect),
        ureq::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
        ureq::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
    ] {
        assert!(
            matches!(
                classify_error(&error, &LIMITS),
                Answer::Retry {
                    endpoint_down: true,
                    ..
                }
            ),
            "{error} takes the endpoint out"
        );
    }
    for error in [
        ureq::Error::Timeout(ureq::Timeout::Global),
        ureq::Error::Timeout(ureq::Timeout::RecvResponse),
    ] {
        assert!(
            matches!(
                classify_error(&error, &LIMITS),
                Answer::Retry {
                    endpoint_down: false,
                    ..
                }
            ),
            "{error}: a slow answer, the endpoint is still there"
        );
    }
    for error in [ureq::Error::TlsRequired, ureq::Error::BadUri("x".into())] {
        assert!(
            matches!(classify_error(&error, &LIMITS), Answer::Fatal { .. }),
            "{error}"
        );
    }
}
