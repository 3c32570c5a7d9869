//! Tests of the `consumer` section's checks.

use crate::config::tests::load;

#[test]
fn a_non_number_port_is_refused_naming_the_key() {
    let err = load("consumer:\n  port: eighty\n", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("consumer.port"), "{err}");
    let err = load("consumer:\n  port: 70000\n", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("consumer.port"), "{err}");
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
        let err = load(&text, &[]).unwrap_err().to_string();
        assert!(
            err.contains("consumer.drain_seconds"),
            "{reason}: key not named: {err}"
        );
        assert!(
            err.starts_with("config.yaml:"),
            "{reason}: file not named: {err}"
        );
        assert!(!err.contains('\n'), "{reason}: one line: {err}");
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
