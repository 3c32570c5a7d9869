//! Tests of the `consumer` section's checks.

use crate::config::tests::{load, refused};

#[test]
fn a_non_number_port_is_refused_naming_the_key() {
    refused(
        "consumer:\n  port: eighty\n",
        "consumer.port",
        "not a number",
    );
    refused("consumer:\n  port: 70000\n", "consumer.port", "above 65535");
}

#[test]
fn drain_seconds_outside_0_to_3600_is_refused_naming_the_key_and_the_file() {
    let cases = [
        ("-1", "a negative drain"),
        ("3600.5", "above the hour's bound"),
        (".nan", "NaN"),
        (".inf", "infinite"),
        ("five", "not a number"),
    ];
    for (value, reason) in cases {
        let text = format!("consumer:\n  drain_seconds: {value}\n");
        refused(&text, "consumer.drain_seconds", reason);
    }
    for (value, seconds) in [("0", 0.0), ("2.5", 2.5), ("3600", 3600.0)] {
        let text = format!("consumer:\n  drain_seconds: {value}\n");
        let config = load(&text, &[]).unwrap();
        assert_eq!(config.consumer.drain_seconds, seconds, "{value}");
    }
    assert_eq!(
        load("", &[]).unwrap().consumer.drain_seconds,
        0.0,
        "no drain unless asked for: a stop behaves as before"
    );
}

#[test]
fn https_files_are_both_or_neither_and_client_certificates_need_https() {
    let cases = [
        (
            "consumer:\n  tls_cert_file: c.pem\n",
            "consumer.tls_cert_file: is set but consumer.tls_key_file",
            "a certificate without its key",
        ),
        (
            "consumer:\n  tls_key_file: k.pem\n  tls_cert_file: \"\"\n",
            "consumer.tls_key_file: is set but consumer.tls_cert_file",
            "a key without its certificate (empty is unset)",
        ),
        (
            "consumer:\n  tls_client_ca_file: ca.pem\n",
            "consumer.tls_client_ca_file: client certificates need HTTPS",
            "mutual TLS without TLS",
        ),
    ];
    for (text, expected, reason) in cases {
        let err = refused(text, expected, reason);
        assert!(err.starts_with("config.yaml: "), "{reason}: {err}");
    }
    let both = "consumer:\n  tls_cert_file: c.pem\n  tls_key_file: k.pem\n";
    let files = load(both, &[]).unwrap().consumer.tls_files().unwrap();
    assert_eq!(
        (files.cert.to_str(), files.client_ca),
        (Some("c.pem"), None)
    );
    assert_eq!(
        load("", &[]).unwrap().consumer.tls_files(),
        None,
        "plain HTTP"
    );
}

#[test]
fn retention_days_must_be_a_positive_number_of_days_and_absent_or_empty_keeps_everything() {
    let cases = [
        ("0", "zero would delete every event at once"),
        ("-1", "a negative retention"),
        (".nan", "NaN"),
        (".inf", "infinite"),
        ("36501", "past a century"),
        ("thirty", "not a number"),
        ("\"30\"", "a string, not a number"),
    ];
    for (value, reason) in cases {
        let text = format!("consumer:\n  retention_days: {value}\n");
        refused(&text, "consumer.retention_days", reason);
    }
    for (value, seconds) in [
        ("30", 2_592_000.0),
        ("0.5", 43_200.0),
        ("0.0000231481", 2.0),
    ] {
        let text = format!("consumer:\n  retention_days: {value}\n");
        let config = load(&text, &[]).unwrap();
        let kept = config.consumer.retention().unwrap().as_secs_f64();
        assert!((kept - seconds).abs() < 0.01, "{value}: {kept}");
    }
    let shipped_style = "consumer:\n  retention_days: ${RETENTION_DAYS:-}\n";
    assert_eq!(
        load(shipped_style, &[]).unwrap().consumer.retention(),
        None,
        "an unset variable keeps everything"
    );
    let set = load(shipped_style, &[("RETENTION_DAYS", "7")]).unwrap();
    assert_eq!(set.consumer.retention_days, Some(7.0));
    assert_eq!(load("", &[]).unwrap().consumer.retention(), None, "absent");
}
