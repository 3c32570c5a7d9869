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
