//! Tests of the `propagator` section's checks and its endpoints.

use std::path::Path;

use super::*;
use crate::config::tests::{load, refused};

#[test]
fn max_in_flight_outside_1_to_1024_is_refused_naming_the_key_and_the_file() {
    let cases = [
        ("0", "zero sends in flight could never send"),
        ("2000", "above the 1024 limit"),
        ("abc", "not a number"),
        ("-1", "negative"),
        ("2.5", "not a whole number"),
    ];
    for (value, reason) in cases {
        let text = format!("propagator:\n  max_in_flight: {value}\n");
        refused(&text, "propagator.max_in_flight", reason);
    }
    for value in [1, 32, 1024] {
        let text = format!("propagator:\n  max_in_flight: {value}\n");
        let config = load(&text, &[]).unwrap();
        assert_eq!(config.propagator.max_in_flight, value);
    }
    // Through the shipped file's variable, as an operator would set it.
    let text = include_str!("../../../../config.yaml");
    let env = [("DB_PASSWORD", "x"), ("PROPAGATOR_MAX_IN_FLIGHT", "8")];
    assert_eq!(load(text, &env).unwrap().propagator.max_in_flight, 8);
    let env = [("DB_PASSWORD", "x"), ("PROPAGATOR_MAX_IN_FLIGHT", "0")];
    let err = load(text, &env).unwrap_err().to_string();
    assert!(err.contains("propagator.max_in_flight"), "{err}");
    let config = load(text, &[("DB_PASSWORD", "x")]).unwrap();
    assert_eq!(config.propagator.max_in_flight, DEFAULT_MAX_IN_FLIGHT);
}

#[test]
fn endpoints_is_a_list_of_urls_instead_of_endpoint() {
    let text = "propagator:\n  endpoints:\n    - http://a:8080/event\n    - https://b/event\n";
    let config = load(text, &[]).unwrap();
    assert_eq!(
        config.propagator.endpoint_list(),
        ["http://a:8080/event", "https://b/event"]
    );
    let config = load("propagator:\n  endpoint: http://one/event\n", &[]).unwrap();
    assert_eq!(config.propagator.endpoint_list(), ["http://one/event"]);
    assert_eq!(
        load("", &[]).unwrap().propagator.endpoint_list(),
        [DEFAULT_ENDPOINT]
    );
    let cases = [
        (
            "propagator:\n  endpoint: http://a/event\n  endpoints: [http://b/event]\n",
            "propagator.endpoint",
            "both keys set",
        ),
        (
            "propagator:\n  endpoints: []\n",
            "at least one",
            "an empty list",
        ),
        (
            "propagator:\n  endpoints: [http://a/event, b:1/event]\n",
            "item 1",
            "a URL without scheme",
        ),
        (
            "propagator:\n  endpoints: [http://a/event, http://a/event]\n",
            "listed twice",
            "the same URL twice",
        ),
        (
            "propagator:\n  endpoints: http://a/event\n",
            "propagator.endpoints",
            "a string, not a list",
        ),
        (
            "propagator:\n  endpoints: [http://a/event, http://b/event]\n  \
             batch_endpoint: http://a/events\n",
            "propagator.batch_endpoint",
            "one batch URL for several endpoints",
        ),
    ];
    for (text, needle, reason) in cases {
        let err = load(text, &[]).unwrap_err().to_string();
        assert!(err.contains(needle), "{reason}: {err}");
        assert!(
            err.starts_with("config.yaml:"),
            "{reason}: file not named: {err}"
        );
        assert!(
            err.contains("propagator.endpoint") || err.contains("propagator.batch_endpoint"),
            "{reason}: key not named: {err}"
        );
    }
    let both = "propagator:\n  endpoint: http://a/event\n  endpoints: [http://b/event]\n";
    let err = load(both, &[]).unwrap_err().to_string();
    assert!(
        err.contains("propagator.endpoints") && err.contains("remove propagator.endpoint"),
        "names both keys and what to do: {err}"
    );
    // One endpoint in the list may still name its batch URL.
    let text = "propagator:\n  endpoints: [http://a/event]\n  batch_endpoint: http://a/bulk\n";
    assert!(load(text, &[]).is_ok());
}

#[test]
fn batch_size_outside_1_to_1000_is_refused_naming_the_key_and_the_file() {
    let cases = [
        ("0", "an empty batch"),
        ("1001", "above the consumer's default max_batch_events"),
        ("ten", "not a number"),
        ("-1", "negative"),
        ("2.5", "not a whole number"),
    ];
    for (value, reason) in cases {
        let text = format!("propagator:\n  batch_size: {value}\n");
        refused(&text, "propagator.batch_size", reason);
    }
    for value in [1, 100, 1000] {
        let text = format!("propagator:\n  batch_size: {value}\n");
        assert_eq!(load(&text, &[]).unwrap().propagator.batch_size, value);
    }
}

#[test]
fn the_shipped_file_takes_batch_size_batch_endpoint_and_gzip_from_the_environment() {
    let text = include_str!("../../../../config.yaml");
    let config = load(text, &[("DB_PASSWORD", "x")]).unwrap();
    assert_eq!(config.propagator.batch_size, 1);
    assert_eq!(config.propagator.batch_endpoint(), None);
    assert!(!config.propagator.gzip);
    let env = [
        ("DB_PASSWORD", "x"),
        ("PROPAGATOR_BATCH_SIZE", "100"),
        ("PROPAGATOR_BATCH_ENDPOINT", "http://h:1/bulk"),
        ("PROPAGATOR_GZIP", "true"),
    ];
    let config = load(text, &env).unwrap();
    assert_eq!(config.propagator.batch_size, 100);
    assert_eq!(config.propagator.batch_endpoint(), Some("http://h:1/bulk"));
    assert!(config.propagator.gzip);
    let env = [("DB_PASSWORD", "x"), ("PROPAGATOR_GZIP", "yes please")];
    let err = load(text, &env).unwrap_err().to_string();
    assert!(err.contains("propagator.gzip"), "{err}");
    let env = [
        ("DB_PASSWORD", "x"),
        ("PROPAGATOR_BATCH_ENDPOINT", "h:1/bulk"),
    ];
    let err = load(text, &env).unwrap_err().to_string();
    assert!(err.contains("propagator.batch_endpoint"), "{err}");
}

#[test]
fn the_batch_endpoint_is_the_sibling_events_of_the_event_endpoint() {
    let cases = [
        ("http://h:8080/event", "http://h:8080/events"),
        ("https://h/api/v1/event", "https://h/api/v1/events"),
        ("http://h/event?tenant=a", "http://h/events?tenant=a"),
        ("http://h/event#frag", "http://h/events"),
        ("http://u:p@h/event", "http://u:p@h/events"),
    ];
    for (endpoint, expected) in cases {
        assert_eq!(
            sibling_batch_endpoint(endpoint).as_deref(),
            Ok(expected),
            "{endpoint}"
        );
    }
    let refused = [
        ("http://h:8080/ingest", "another last segment"),
        (
            "http://h:8080/event/",
            "a trailing slash: the last segment is empty",
        ),
        ("http://h:8080/events", "already the batch path"),
        ("http://h:8080/myevent", "a segment that only ends in event"),
        ("http://h:8080", "no path"),
        ("http://event", "a host named event is not a path"),
        ("http://h?x=/event", "a query that looks like the path"),
    ];
    for (endpoint, reason) in refused {
        let err = sibling_batch_endpoint(endpoint).unwrap_err();
        assert!(err.contains("propagator.batch_endpoint"), "{reason}: {err}");
    }
}

#[test]
fn a_client_certificate_without_its_key_or_the_reverse_is_refused_naming_both_keys() {
    let cases = [
        (
            "propagator:\n  tls_client_cert_file: c.pem\n",
            "propagator.tls_client_cert_file: is set but propagator.tls_client_key_file",
        ),
        (
            "propagator:\n  tls_client_key_file: k.pem\n  tls_client_cert_file: ''\n",
            "propagator.tls_client_key_file: is set but propagator.tls_client_cert_file",
        ),
    ];
    for (text, expected) in cases {
        let err = load(text, &[]).unwrap_err().to_string();
        assert!(err.contains(expected), "{text}: {err}");
    }
    let both = "propagator:\n  tls_client_cert_file: c.pem\n  tls_client_key_file: k.pem\n";
    let config = load(both, &[]).unwrap();
    assert_eq!(
        config.propagator.tls_client_identity_files(),
        Some((Path::new("c.pem"), Path::new("k.pem")))
    );
}

#[test]
fn the_spool_is_off_unless_a_directory_is_named_and_its_bound_has_a_floor() {
    // The shipped file: off by default, on through its variable.
    let text = include_str!("../../../../config.yaml");
    let config = load(text, &[("DB_PASSWORD", "x")]).unwrap();
    assert_eq!(config.propagator.spool_dir(), None, "empty means no spool");
    assert_eq!(config.propagator.spool_max_bytes, DEFAULT_SPOOL_MAX_BYTES);
    let env = [
        ("DB_PASSWORD", "x"),
        ("PROPAGATOR_SPOOL_DIR", "/var/spool/p"),
    ];
    let config = load(text, &env).unwrap();
    assert_eq!(
        config.propagator.spool_dir(),
        Some(Path::new("/var/spool/p"))
    );
    for (value, reason) in [
        ("100", "below the floor"),
        ("-1", "negative"),
        ("x", "not a number"),
    ] {
        let text = format!("propagator:\n  spool_max_bytes: {value}\n");
        refused(&text, "propagator.spool_max_bytes", reason);
    }
    let config = load("propagator:\n  spool_max_bytes: 4096\n", &[]).unwrap();
    assert_eq!(config.propagator.spool_max_bytes, MIN_SPOOL_MAX_BYTES);
}
